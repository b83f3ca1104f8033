"""The paper's datasets read with `datasets` at pinned revisions and carved as the authors carve them, offline:
a tiny local parquet folder stands in for each Hub repository (no network is reached here)."""

import dataclasses
import io
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from residual_lib.data import hf_datasets
from residual_lib.data.datasets import dataset_spec, list_datasets
from residual_lib.data.sources import MissingDataError, split_indices
from residual_lib.data.splits import AUTHORS_SCHEMES, authors_split_indices, three_way_indices

HF = [n for n in list_datasets() if dataset_spec(n).source["kind"] == "hf-datasets"]
# Repositories with a loading script only: read from the Hub's parquet conversion, which has no fixed commit here.
SCRIPT_ONLY = {"eurosat", "imagenet-sketch"}


def test_the_paper_datasets_read_the_authors_repositories():
    repos = {n: dataset_spec(n).source["repo"] for n in HF}
    assert repos == {"mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100",
                     "svhn": "ufldl-stanford/svhn", "eurosat": "mikewang/EuroSAT", "sun397": "1aurent/SUN397",
                     "dtd": "tanganke/dtd", "resisc45": "timm/resisc45", "cars": "tanganke/stanford_cars",
                     "pacs": "flwrlabs/pacs", "gtsrb": "bazyl/GTSRB", "imagenet-sketch": "songweig/imagenet_sketch"}
    assert dataset_spec("svhn").source["config"] == "cropped_digits"


@pytest.mark.parametrize("name", HF)
def test_revision_is_a_commit_or_the_parquet_conversion(name):
    revision = dataset_spec(name).source["revision"]
    if name in SCRIPT_ONLY:
        assert revision == hf_datasets.PARQUET_CONVERSION
    else:
        assert re.fullmatch(r"[0-9a-f]{40}", revision), revision


@pytest.mark.parametrize("name", [n for n in HF if n in AUTHORS_SCHEMES])
def test_manifest_splits_equal_the_authors_carve(name):
    """Index equality: the manifest's carve steps pick the rows `splits.authors_split_indices` picks, in its order."""
    spec = dataset_spec(name)
    rng = np.random.default_rng(1)
    labels = {s: rng.permutation(np.arange(n) % spec.n_classes) for s, n in spec.source["split_sizes"].items()}
    theirs = authors_split_indices(name, labels)
    for split, entry in spec.splits.items():
        source_split, rows = theirs[split]
        assert entry.get("from", split) == source_split
        np.testing.assert_array_equal(split_indices(labels[source_split], spec, split), rows)
        assert len(rows) == entry["size"]


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (6, 4), value).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """`datasets.load_dataset` answered from local parquet files; records every call's arguments."""
    import datasets

    calls, tables = [], {}

    def fake_load_dataset(path, name=None, revision=None, split=None, cache_dir=None, **kwargs):
        calls.append({"path": path, "name": name, "revision": revision, "split": split,
                      "offline": datasets.config.HF_HUB_OFFLINE})
        return datasets.Dataset.from_parquet(str(tables[(path, split)]), cache_dir=str(tmp_path / "arrow"))

    def add(repo: str, split: str, columns: dict, features) -> None:
        tables[(repo, split)] = tmp_path / f"{repo.replace('/', '__')}-{split}.parquet"
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tables[(repo, split)]))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    return calls, add


def _resized(name: str, **sizes: int):
    spec = dataset_spec(name)
    return dataclasses.replace(spec, source={**spec.source, "split_sizes": sizes})


def test_holdout_dataset_loads_at_its_pin_with_the_authors_validation(hub, tmp_path):
    """SVHN: the pinned revision and config reach `datasets`; validation is the stratified 20% the authors carve."""
    import datasets

    calls, add = hub
    spec = _resized("svhn", train=100, test=20)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list("0123456789"))})
    train_labels = np.random.default_rng(0).permutation(np.arange(100) % 10)
    add("ufldl-stanford/svhn", "train", {"image": [_png(int(v) * 20) for v in train_labels],
                                         "label": train_labels.tolist()}, features)
    add("ufldl-stanford/svhn", "test", {"image": [_png(0)] * 20, "label": (np.arange(20) % 10).tolist()}, features)
    parts = {s: hf_datasets.load_split(spec, s, tmp_path) for s in ("train", "val", "test")}
    assert {c["revision"] for c in calls} == {"f9e1717d73324ebbc1ece84267ccd80d0aca0690"}
    assert {c["name"] for c in calls} == {"cropped_digits"} and all(c["offline"] for c in calls)
    assert {s: len(p) for s, p in parts.items()} == {"train": 80, "val": 20, "test": 20}
    assert Counter(parts["val"].targets) == {c: 2 for c in range(10)}  # stratified: 20% of each class
    np.testing.assert_array_equal(parts["val"].indices, authors_split_indices("svhn", {
        "train": train_labels, "test": np.arange(20) % 10})["val"][1])
    image, label = parts["val"][3]
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (label * 20,) * 3  # the row's own pixels


def test_a_row_count_other_than_the_manifests_is_an_error(hub, tmp_path):
    import datasets

    _, add = hub
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=7)})
    add("flwrlabs/pacs", "train", {"image": [_png(1)] * 14, "label": (np.arange(14) % 7).tolist()}, features)
    with pytest.raises(ValueError, match="has 14 rows, the manifest expects 9991"):
        hf_datasets.load_split(dataset_spec("pacs"), "train", tmp_path)


def test_string_labels_are_numbered_by_first_appearance_before_the_carve(hub, tmp_path):
    """EuroSAT: the authors' ClassLabel follows first appearance; targets follow the manifest; pixels are the
    user's files found by name."""
    import datasets

    _, add = hub
    spec = _resized("eurosat", train=200)
    names = spec.source["label_names"]
    order = [names[i] for i in (9, 3, 0, 7, 1, 5, 2, 8, 6, 4)]  # first appearance differs from the manifest's order
    classes = [order[i % 10] for i in range(200)]
    paths = [f"/cache/EuroSAT/2750/{c}/{c}_{i}.jpg" for i, c in enumerate(classes)]
    add("mikewang/EuroSAT", "train", {"image_id": list(range(200)), "image_path": paths, "class": classes},
        datasets.Features({"image_id": datasets.Value("int64"), "image_path": datasets.Value("string"),
                           "class": datasets.Value("string")}))
    for i, (c, p) in enumerate(zip(classes, paths)):
        folder = tmp_path / "eurosat" / "2750" / c
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / p.rsplit("/", 1)[1])
    test = hf_datasets.load_split(spec, "test", tmp_path)
    first_appearance = np.arange(200) % 10
    np.testing.assert_array_equal(test.indices, three_way_indices(first_appearance)["test"])
    assert list(test.targets) == [names.index(classes[i]) for i in test.indices]
    image, _ = test[0]
    assert image.getpixel((0, 0)) == (int(test.indices[0]), 0, 0)


def test_missing_image_folder_says_where_to_put_the_files(hub, tmp_path):
    import datasets

    _, add = hub
    add("bazyl/GTSRB", "test", {"ClassId": list(range(43)), "Path": [f"Test/{i:05d}.png" for i in range(43)]},
        datasets.Features({"ClassId": datasets.Value("int64"), "Path": datasets.Value("string")}))
    with pytest.raises(MissingDataError, match=r"gtsrb.*Kaggle GTSRB"):
        hf_datasets.load_split(_resized("gtsrb", test=43), "test", tmp_path)


def test_offline_without_a_cache_names_repository_and_revision(monkeypatch, tmp_path):
    """The real `datasets` in offline mode: no request, a MissingDataError saying what to run."""
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    with pytest.raises(MissingDataError, match=r"ylecun/mnist at revision 77f3279092a1c1579b2250db8eafed0ad422088c"):
        hf_datasets.load_split(dataset_spec("mnist"), "test", tmp_path)
