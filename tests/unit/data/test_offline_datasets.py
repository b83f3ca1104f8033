"""Real labelled images available without a download: Fashion-MNIST (Debian's package, or torchvision's copy),
scikit-learn's digits and scikit-image's lfw_subset. No network is reached here."""

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd

from residual_lib.data import sources
from residual_lib.data.datasets import dataset_spec, load_dataset
from residual_lib.data.sources import MissingDataError, read_idx, split_indices

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(tvd.utils, "download_url", no_network)
    return tmp_path


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    payload = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_idx_reader_round_trips_shape_and_values(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, images, compress)
    assert np.array_equal(read_idx(path), images)


def test_idx_reader_rejects_a_wrong_header(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\0\0\x0d\x01" + struct.pack(">I", 1) + b"\0\0\0\0")
    with pytest.raises(ValueError, match="not an idx file of unsigned bytes"):
        read_idx(path)


def test_idx_reader_names_a_truncated_gzip_file(tmp_path):
    """Issue 28 case 13: a cut-off Fashion-MNIST .gz gave a bare EOFError naming no file."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((50, 28, 28), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=f"{path} is truncated or damaged .*delete it"):
        read_idx(path)


@pytest.mark.parametrize("name, n_classes, splits", [
    ("fashion-mnist", 10, {"train": 54000, "val": 6000, "test": 10000}),
    ("sklearn-digits", 10, {"train": 1437, "test": 360}),
    ("lfw-subset", 2, {"train": 160, "test": 40}),
])
def test_manifests_state_classes_and_split_sizes_the_cuts_produce(name, n_classes, splits):
    spec = dataset_spec(name)
    assert spec.n_classes == n_classes and len(set(spec.class_names)) == n_classes
    assert spec.licence and spec.notes and all(t.count("{}") == 1 for t in spec.templates)
    assert {s: e["size"] for s, e in spec.splits.items()} == splits
    rng = np.random.default_rng(0)
    for split, entry in spec.splits.items():
        source = entry.get("from", split)
        labels = rng.permutation(np.arange(spec.source["split_sizes"][source]) % n_classes)
        assert len(split_indices(labels, spec, split)) == entry["size"]


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debians_package(offline):
    spec = dataset_spec("fashion-mnist")
    assert spec.class_names == FASHION_CLASSES
    test = load_dataset("fashion-mnist", "test", root=offline)
    assert len(test) == 10000 and Counter(test.targets.tolist()) == {c: 1000 for c in range(10)}
    image, label = test[0]
    assert image.size == (28, 28) and image.mode == "RGB" and label == 9  # the first test image is an ankle boot
    train, val = load_dataset("fashion-mnist", "train", root=offline), load_dataset("fashion-mnist", "val", root=offline)
    assert (len(train), len(val)) == (54000, 6000) and not set(train.indices) & set(val.indices)
    assert Counter(val.targets.tolist()) == {c: 600 for c in range(10)}


def test_fashion_mnist_falls_back_to_torchvisions_copy(offline, monkeypatch):
    """Without Debian's files, torchvision's FashionMNIST layout under the data root is read (no download)."""
    monkeypatch.setitem(dataset_spec("fashion-mnist").source, "dirs", [str(offline / "no-debian-here")])
    raw = offline / "fashion-mnist" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 100), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), False)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), False)
    test = load_dataset("fashion-mnist", "test", root=offline)
    assert len(test) == 20 and Counter(test.targets.tolist()) == {c: 2 for c in range(10)}
    image, label = test[3]
    assert image.size == (28, 28) and image.mode == "RGB" and label == 3
    assert len(load_dataset("fashion-mnist", "val", root=offline)) == 10


def test_fashion_mnist_without_any_copy_says_what_to_do(offline, monkeypatch):
    monkeypatch.setitem(dataset_spec("fashion-mnist").source, "dirs", [str(offline / "no-debian-here")])
    with pytest.raises(MissingDataError) as err:
        load_dataset("fashion-mnist", "train", root=offline)
    message = str(err.value)
    assert "dataset-fashion-mnist" in message and "torchvision" in message and "switched off" in message


def test_sklearn_digits_are_scaled_to_full_range(offline):
    train, test = load_dataset("sklearn-digits", "train"), load_dataset("sklearn-digits", "test")
    assert (len(train), len(test)) == (1437, 360) and not set(train.indices) & set(test.indices)
    assert set(Counter(test.targets.tolist())) == set(range(10))
    image, _ = test[0]
    assert image.size == (8, 8) and image.mode == "RGB"
    pixels = np.stack([np.asarray(train[i][0]) for i in range(50)])
    assert pixels.max() == 255 and pixels.min() == 0


def test_lfw_subset_is_faces_then_non_faces(offline):
    pytest.importorskip("skimage")
    train, test = load_dataset("lfw-subset", "train"), load_dataset("lfw-subset", "test")
    assert Counter(train.targets.tolist()) == {0: 80, 1: 80} and Counter(test.targets.tolist()) == {0: 20, 1: 20}
    assert all((train.indices[train.targets == 0] < 100)) and all(train.indices[train.targets == 1] >= 100)
    image, _ = train[0]
    assert image.size == (25, 25) and image.mode == "RGB"


def test_skimage_label_runs_must_cover_the_images(monkeypatch):
    pytest.importorskip("skimage")
    spec = dataset_spec("lfw-subset")
    monkeypatch.setitem(spec.source, "label_runs", [100, 99])
    with pytest.raises(ValueError, match="label_runs"):
        sources.load_skimage(spec, "train", Path("."))
