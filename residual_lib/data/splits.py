"""The authors' train / validation / test carving, with the call that made it, so split indices equal theirs.

The authors' code (``src/residual/data/dataset.py``) cuts every dataset with Hugging Face ``datasets``'
``Dataset.train_test_split(test_size=..., seed=42, stratify_by_column=<label>)``. Given the same rows in the
same order, the same call returns the same rows, so the function here runs that call's steps on the label column
(`train_test_indices`) and returns which rows went where. The manifests of the paper's datasets state these cuts as
carve steps ``by: datasets`` (`residual_lib.data.sources.split_indices`). Three schemes:

- ``("holdout", f)``: validation is a stratified fraction f of the source's train split, test is the
  source's test split (MNIST, CIFAR-10/100 and GTSRB f = 0.1; SVHN, DTD, Stanford Cars, ImageNet f = 0.2);
- ``("three_way",)``: one pool of rows cut 80 / 20, the 20 cut again 50 / 50 into validation and test
  (EuroSAT, SUN397, PACS, ImageNet-Sketch, Random);
- ``("given",)``: the source's own train / validation / test (RESISC45).

Row order inside each returned split is the order ``datasets`` gives (the authors number samples in it).
"""

from __future__ import annotations

from math import ceil

import numpy as np

AUTHORS_SEED = 42
# manifest name -> scheme (data_manifests/datasets/*.yaml); "random-blobs" is the authors' Random set
AUTHORS_SCHEMES: dict[str, tuple] = {
    "mnist": ("holdout", 0.1), "cifar10": ("holdout", 0.1), "cifar100": ("holdout", 0.1), "gtsrb": ("holdout", 0.1),
    "svhn": ("holdout", 0.2), "dtd": ("holdout", 0.2), "cars": ("holdout", 0.2), "imagenet": ("holdout", 0.2),
    "eurosat": ("three_way",), "sun397": ("three_way",), "pacs": ("three_way",), "imagenet-sketch": ("three_way",),
    "random-blobs": ("three_way",), "resisc45": ("given",),
}


def train_test_indices(labels: np.ndarray, test_size: float, seed: int = AUTHORS_SEED,
                       stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) row indices of ``Dataset.train_test_split(test_size, seed, stratify_by_column)`` on labels.

    Runs the library's own steps on the label array: its sizes (test = ceil(test_size n), train = the rest), its
    generator (``default_rng(seed)``) and its stratified sampler (``datasets.utils.stratify``). The method itself
    reads the label column back one row at a time in `datasets` 5 (40 s for 100,000 rows); the rows are the same
    (tests/unit/test_splits.py compares both on small tables).
    """
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ValueError(f"labels must be a 1-D array of non-negative class indices; got {labels.dtype} {labels.shape}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size={test_size!r} must be a fraction in (0, 1)")
    n_test = ceil(test_size * len(labels))
    n_train = len(labels) - n_test
    rng = np.random.default_rng(seed)
    if not stratify:
        permutation = rng.permutation(len(labels))
        return permutation[n_test:], permutation[:n_test]
    first, second = next(stratified_shuffle_split_generate_indices(labels, n_train, n_test, rng=rng))
    return np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)


def holdout_indices(train_labels: np.ndarray, fraction: float, seed: int = AUTHORS_SEED) -> dict[str, np.ndarray]:
    """{"train", "val"}: rows of the source train split; validation a stratified `fraction` of it."""
    train, val = train_test_indices(train_labels, fraction, seed)
    return {"train": train, "val": val}


def three_way_indices(labels: np.ndarray, seed: int = AUTHORS_SEED) -> dict[str, np.ndarray]:
    """{"train", "val", "test"}: rows of one pool cut 80 / 10 / 10 as the authors do (two stratified cuts)."""
    labels = np.asarray(labels)
    train, rest = train_test_indices(labels, 0.2, seed)
    val, test = train_test_indices(labels[rest], 0.5, seed)
    return {"train": train, "val": rest[val], "test": rest[test]}


def authors_split_indices(dataset: str, labels: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """{split: (source split, row indices)} of a paper dataset from the labels of its source splits.

    labels: the label column of each source split the scheme reads ("train" and "test"; "train" alone for
    three_way; "train", "validation", "test" for given), rows in the source's order.
    """
    if dataset not in AUTHORS_SCHEMES:
        raise KeyError(f"no authors' split scheme for {dataset!r}; known: {', '.join(sorted(AUTHORS_SCHEMES))}")
    scheme = AUTHORS_SCHEMES[dataset]
    need = {"holdout": ("train", "test"), "three_way": ("train",), "given": ("train", "validation", "test")}[scheme[0]]
    missing = [s for s in need if s not in labels]
    if missing:
        raise KeyError(f"{dataset!r} ({scheme[0]}) needs the labels of source splits {list(need)}; missing {missing}")
    if scheme[0] == "holdout":
        cut = holdout_indices(labels["train"], scheme[1])
        return {"train": ("train", cut["train"]), "val": ("train", cut["val"]),
                "test": ("test", np.arange(len(labels["test"])))}
    if scheme[0] == "three_way":
        return {split: ("train", rows) for split, rows in three_way_indices(labels["train"]).items()}
    return {"train": ("train", np.arange(len(labels["train"]))),
            "val": ("validation", np.arange(len(labels["validation"]))),
            "test": ("test", np.arange(len(labels["test"])))}
