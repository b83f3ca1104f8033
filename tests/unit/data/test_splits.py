"""The authors' split carving: Hugging Face datasets' train_test_split, seed 42, stratified (offline, in memory)."""

import numpy as np
import pytest

from residual_lib.data.splits import (AUTHORS_SCHEMES, authors_split_indices, holdout_indices, three_way_indices,
                                 train_test_indices)


def test_indices_equal_the_same_call_on_a_dataset_with_other_columns():
    """The label-only table picks the same rows as the call on a dataset that also holds the samples."""
    from datasets import ClassLabel, Dataset, Features, Value

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=60)
    full = Dataset.from_dict({"x": [f"image {i}" for i in range(60)], "label": labels.tolist()},
                             features=Features({"x": Value("string"), "label": ClassLabel(names=list("abcd"))}))
    theirs = full.train_test_split(test_size=0.2, seed=42, stratify_by_column="label")
    first, second = train_test_indices(labels, 0.2)
    assert [f"image {i}" for i in first] == theirs["train"]["x"]
    assert [f"image {i}" for i in second] == theirs["test"]["x"]


@pytest.mark.parametrize("n,classes,test_size", [(97, 3, 0.1), (250, 7, 0.2), (60, 4, 0.5), (1003, 11, 0.25)])
def test_indices_equal_the_library_call_across_sizes_and_fractions(n, classes, test_size):
    """Oracle: `Dataset.train_test_split` itself, on uneven class counts and sizes that round."""
    from datasets import ClassLabel, Dataset, Features, Value

    labels = np.random.default_rng(n).integers(0, classes, size=n)
    labels[:2 * classes] = np.repeat(np.arange(classes), 2)  # every class at least twice, as the call requires
    table = Dataset.from_dict({"y": labels.tolist(), "row": list(range(n))},
                              features=Features({"y": ClassLabel(num_classes=classes), "row": Value("int64")}))
    theirs = table.train_test_split(test_size=test_size, seed=42, stratify_by_column="y")
    first, second = train_test_indices(labels, test_size)
    np.testing.assert_array_equal(first, theirs["train"].select_columns(["row"]).to_dict()["row"])
    np.testing.assert_array_equal(second, theirs["test"].select_columns(["row"]).to_dict()["row"])


def test_unstratified_split_is_numpys_seeded_permutation():
    """Oracle: without stratification, datasets takes test = the first ceil(0.2 n) of default_rng(42).permutation(n)."""
    perm = np.random.default_rng(42).permutation(50)
    first, second = train_test_indices(np.zeros(50, dtype=int), 0.2, stratify=False)
    np.testing.assert_array_equal(second, perm[:10])
    np.testing.assert_array_equal(first, perm[10:])


def test_three_way_is_80_10_10_and_stratified():
    labels = np.repeat(np.arange(5), 20)  # 100 rows, 20 per class
    parts = three_way_indices(labels)
    assert {k: len(v) for k, v in parts.items()} == {"train": 80, "val": 10, "test": 10}
    assert sorted(np.concatenate(list(parts.values()))) == list(range(100))  # disjoint and complete
    assert np.all(np.bincount(labels[parts["train"]]) == 16)
    assert np.all(np.bincount(labels[parts["val"]]) == 2) and np.all(np.bincount(labels[parts["test"]]) == 2)


@pytest.mark.parametrize("fraction,n_val", [(0.1, 20), (0.2, 40)])
def test_holdout_fraction_and_stratification(fraction, n_val):
    labels = np.tile(np.arange(4), 50)  # 200 rows, 50 per class
    parts = holdout_indices(labels, fraction)
    assert len(parts["val"]) == n_val and len(parts["train"]) == 200 - n_val
    assert not set(parts["train"]) & set(parts["val"])
    assert np.all(np.bincount(labels[parts["val"]]) == n_val // 4)


def test_authors_schemes_per_dataset():
    assert AUTHORS_SCHEMES["mnist"] == ("holdout", 0.1) and AUTHORS_SCHEMES["svhn"] == ("holdout", 0.2)
    labels = {"train": np.tile(np.arange(4), 25), "test": np.arange(12) % 4}
    mnist = authors_split_indices("mnist", labels)
    assert mnist["val"][0] == "train" and len(mnist["val"][1]) == 10
    np.testing.assert_array_equal(mnist["test"][1], np.arange(12))
    eurosat = authors_split_indices("eurosat", {"train": labels["train"]})
    assert [len(eurosat[s][1]) for s in ("train", "val", "test")] == [80, 10, 10]
    given = authors_split_indices("resisc45", {"train": np.zeros(5, int), "validation": np.zeros(3, int),
                                               "test": np.zeros(2, int)})
    assert given["val"][0] == "validation" and list(given["val"][1]) == [0, 1, 2]
    with pytest.raises(KeyError, match="missing \\['test'\\]"):
        authors_split_indices("cifar10", {"train": labels["train"]})
    with pytest.raises(KeyError, match="known: "):
        authors_split_indices("toy-shape", labels)
    with pytest.raises(ValueError, match="non-negative class indices"):
        train_test_indices(np.array([0.5, 1.0]), 0.5)


def test_manifest_carve_by_datasets_reproduces_the_authors_cuts():
    """A manifest can state the authors' cuts: carve steps `by: datasets` give three_way_indices' rows."""
    from residual_lib.data.datasets import DatasetSpec
    from residual_lib.data.sources import split_indices

    first_cut = {"fraction": 0.2, "by": "datasets"}
    splits = {"train": {"carve": [{**first_cut, "keep": "rest"}]},
              "val": {"carve": [{**first_cut, "keep": "part"}, {"fraction": 0.5, "keep": "rest", "by": "datasets"}]},
              "test": {"carve": [{**first_cut, "keep": "part"}, {"fraction": 0.5, "keep": "part", "by": "datasets"}]}}
    spec = DatasetSpec(name="fake", title="fake", role="task", source={}, splits=splits, class_names=tuple("abcde"),
                       templates=("{}",), seed=42)
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(5), 30))
    expected = three_way_indices(labels)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(split_indices(labels, spec, split), expected[split])  # datasets' row order
    bad = DatasetSpec(name="fake", title="fake", role="task", source={}, class_names=tuple("abcde"), templates=("{}",),
                      splits={"train": {"carve": [{"fraction": 0.2, "keep": "rest", "by": "torch"}]}})
    with pytest.raises(ValueError, match="not 'sklearn' or 'datasets'"):
        split_indices(labels, bad, "train")
