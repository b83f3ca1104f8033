"""The paper's dataset manifests and their loaders, offline: no download is ever attempted here."""

import inspect
from collections import Counter

import numpy as np
import pytest
import torchvision.datasets as tvd
from PIL import Image

from residual_lib.data import sources
from residual_lib.data.datasets import DatasetSpec, dataset_spec, load_dataset
from residual_lib.data.sources import MissingDataError, describe_source, split_indices

PAPER_DATASETS = ["imagenet", "cifar10", "cifar100", "mnist", "svhn", "eurosat", "gtsrb", "dtd", "resisc45", "cars",
                  "sun397", "imagenet-sketch", "pacs", "random"]
# The paper's display names (Tables 1-2, Figures 4 and 10-15).
PAPER_NAMES = {"CIFAR10", "CIFAR100", "Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN",
               "Sketch", "PACS", "Random", "ImageNet"}
EXPECTED_CLASSES = {"imagenet": 1000, "cifar10": 10, "cifar100": 100, "mnist": 10, "svhn": 10, "eurosat": 10,
                    "gtsrb": 43, "dtd": 47, "resisc45": 45, "cars": 196, "sun397": 397, "imagenet-sketch": 1000,
                    "pacs": 7, "random": 1}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Downloads switched off, and any attempt to reach the network fails the test."""
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "artifacts"))

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")
    import huggingface_hub
    import urllib.request
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(tvd.utils, "download_url", no_network)
    return tmp_path


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_manifest_class_names_and_sizes(name):
    spec = dataset_spec(name)
    assert spec.n_classes == EXPECTED_CLASSES[name]
    assert len(set(spec.class_names)) == spec.n_classes, "class names must be distinct"
    assert spec.extra["paper_name"] in PAPER_NAMES
    assert spec.templates and all(t.count("{}") == 1 for t in spec.templates)
    assert spec.licence and spec.notes
    assert all(int(entry["size"]) > 0 for entry in spec.splits.values())


@pytest.mark.parametrize("name", [n for n in PAPER_DATASETS if n != "random"])
def test_manifest_splits_have_the_stated_sizes(name):
    """Cutting fake labels of each source split's official size yields exactly the manifest's split sizes."""
    spec = dataset_spec(name)
    rng = np.random.default_rng(0)
    by_source = {}
    for split, entry in spec.splits.items():
        source_split = entry.get("from", split)
        total = spec.source["split_sizes"][source_split]
        labels = by_source.setdefault(source_split, rng.permutation(np.arange(total) % spec.n_classes))
        idx = split_indices(labels, spec, split)
        assert len(idx) == entry["size"], (split, len(idx), entry["size"])
        assert len(np.unique(idx)) == len(idx)


def test_validation_is_a_stratified_tenth_of_train_disjoint_from_train():
    spec = dataset_spec("cifar10")
    labels = np.repeat(np.arange(10), 5000)
    train, val = split_indices(labels, spec, "train"), split_indices(labels, spec, "val")
    assert not set(train) & set(val) and len(train) + len(val) == len(labels)
    assert Counter(labels[val]) == {c: 500 for c in range(10)}
    assert np.array_equal(val, split_indices(labels, spec, "val")), "the split must be deterministic (seed 42)"


def test_imagenet_train_is_a_stratified_80k_subset():
    spec = dataset_spec("imagenet")
    labels = np.repeat(np.arange(1000), 1281)
    idx = split_indices(labels, spec, "train")
    assert len(idx) == 80000 and set(Counter(labels[idx]).values()) == {80}


@pytest.mark.parametrize("name", [n for n in PAPER_DATASETS if dataset_spec(n).source["kind"] == "torchvision"])
def test_torchvision_loader_object_builds_offline(name):
    """The torchvision class exists and accepts each split's arguments (checked on the signature, no download)."""
    spec = dataset_spec(name)
    cls = getattr(tvd, spec.source["dataset"])
    params = inspect.signature(cls).parameters
    for args in spec.source["split_args"].values():
        assert set(args) <= set(params), (name, args)
    assert spec.source.get("download", True) == ("download" in params)


@pytest.mark.parametrize("name", [n for n in PAPER_DATASETS if n != "random"])
def test_missing_data_error_names_dataset_source_and_remedy(name, offline):
    spec = dataset_spec(name)
    split = next(iter(spec.splits))
    with pytest.raises(MissingDataError) as err:
        load_dataset(name, split, root=offline / "data")
    message = str(err.value)
    assert repr(name) in message and describe_source(spec) in message
    assert "download" in message.lower() or "put" in message.lower()
    if spec.source["kind"] == "hf-datasets":
        assert spec.source["repo"] in message and spec.source["revision"] in message


def test_imagenet_error_says_where_to_put_the_official_files(offline):
    with pytest.raises(MissingDataError, match="ILSVRC2012_devkit_t12.tar.gz"):
        load_dataset("imagenet", "val", root=offline / "data")


def test_random_images_are_deterministic_uniform_noise(offline):
    ds = load_dataset("random", "train")
    assert len(ds) == 10000
    image, label = ds[7]
    assert image.mode == "RGB" and image.size == (224, 224) and label == 0
    again = np.asarray(load_dataset("random", "train")[7][0])
    assert np.array_equal(np.asarray(image), again)
    assert not np.array_equal(again, np.asarray(ds[8][0]))
    pixels = np.asarray(image).astype(float)
    assert abs(pixels.mean() - 127.5) < 3 and pixels.min() == 0 and pixels.max() == 255


def test_class_tinted_generated_images_carry_their_label():
    spec = DatasetSpec(name="g", title="g", role="standin", source={"kind": "generated", "pattern": "class-tinted",
                       "image_size": 16}, splits={"train": {"size": 40}}, class_names=("a", "b", "c", "d"),
                       templates=("{}",), seed=3)
    ds = sources.load_generated(spec, "train", None)
    means = {}
    for i in range(len(ds)):
        image, label = ds[i]
        means.setdefault(label, []).append(np.asarray(image).reshape(-1, 3).mean(0))
    centres = np.stack([np.mean(means[c], 0) for c in range(4)])
    spread = max(np.std(means[c], 0).max() for c in range(4))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a in range(4) for b in range(a)) > 5 * spread


def test_torchvision_path_reads_local_files_without_download(offline):
    """EuroSAT through torchvision on a tiny local copy in torchvision's layout; its stratified cuts partition it."""
    carve = lambda *steps: [{"fraction": f, "keep": k} for f, k in steps]  # noqa: E731
    spec = DatasetSpec(name="eurosat-tv", title="EuroSAT via torchvision", role="task",
                       source={"kind": "torchvision", "dataset": "EuroSAT", "path": "eurosat", "split_args": {"all": {}}},
                       splits={"train": {"from": "all", "carve": carve((0.2, "rest"), (0.1, "rest"))},
                               "val": {"from": "all", "carve": carve((0.2, "rest"), (0.1, "part"))},
                               "test": {"from": "all", "carve": carve((0.2, "part"))}},
                       class_names=dataset_spec("eurosat").class_names, templates=("{}",), seed=42)
    classes = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
               "Residential", "River", "SeaLake"]
    base = offline / "data" / "eurosat" / "eurosat" / "2750"
    for c in classes:
        (base / c).mkdir(parents=True)
        for i in range(20):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(base / c / f"{c}_{i}.jpg")
    parts = {s: sources.load_torchvision(spec, s, offline / "data") for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 144, "val": 16, "test": 40}
    assert not set(parts["train"].indices) & set(parts["test"].indices)
    assert Counter(parts["test"].targets) == {c: 4 for c in range(10)}
    image, label = parts["val"][0]
    assert image.mode == "RGB" and 0 <= label < 10


def test_imagefolder_source_checks_class_count(tmp_path):
    spec = DatasetSpec(name="folders", title="f", role="task", source={"kind": "imagefolder", "path": "f"},
                       splits={"train": {"size": 4}}, class_names=("a", "b", "c"), templates=("{}",), seed=42)
    for c in ("a", "b"):
        (tmp_path / "f" / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (4, 4)).save(tmp_path / "f" / "train" / c / f"{i}.png")
    with pytest.raises(ValueError, match="2 class folders"):
        sources.load_imagefolder(spec, "train", tmp_path)
    with pytest.raises(MissingDataError, match="'folders'"):
        sources.load_imagefolder(spec, "train", tmp_path / "nowhere")
