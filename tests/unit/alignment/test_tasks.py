"""Section 4 experiment drivers on random unit sets: table rows, trained methods, lambda summaries."""

import numpy as np
import pytest
import torch

from residual_lib.alignment.tasks import (Task, coarse_unit_alignment, describe_components, head_scale_grid, in_memory,
                                    residual_alignment, top_components)
from residual_lib.alignment.residual import Architecture
from residual_lib.alignment.training import TrainConfig
from unitset_factory import random_unitset

ARCH = Architecture(2, 4, 6, 16)
CONFIG = TrainConfig(lr=0.02, max_epochs=3, progress=False)


@pytest.fixture(scope="module")
def task():
    train, clf = random_unitset(n=200, seed=1)
    val, _ = random_unitset(n=80, seed=2)
    test, _ = random_unitset(n=80, seed=3)
    return Task("synthetic", clf, train, val, test)


def test_in_memory_subset_keeps_rows_and_bases(task):
    sub = in_memory(task.train, np.array([3, 5, 7]))
    assert sub.n == 3 and list(sub.labels) == list(task.train.labels[[3, 5, 7]])
    np.testing.assert_array_equal(sub.coords("L0.H1"), task.train.coords("L0.H1")[[3, 5, 7]])
    np.testing.assert_array_equal(sub.basis("L0.H1"), task.train.basis("L0.H1"))


def test_coarse_row_has_every_column_and_o_is_trained(task):
    row, sweep, optimised = coarse_unit_alignment(task, ARCH, fraction=0.05, n_random=3, fractions=(0.0, 0.25),
                                                  config=CONFIG)
    assert {"U", "U|T", "S", "R", "R_std", "H", "B", "O", "k"} <= set(row)
    assert row["O"] == optimised.test_accuracy
    assert optimised.result.best_val_accuracy >= optimised.result.history[0]["val_accuracy"]
    assert set(sweep["fraction"]) == {0.0, 0.25}


def test_residual_alignment_and_lambda_summaries(task):
    reference, _ = random_unitset(n=300, seed=4)
    out = residual_alignment(task, ARCH, reference, methods=("Lin", "RD", "RDY"), config=CONFIG)
    assert set(out) == {"Base", "Lin", "RD", "RDY"}
    assert out["Base"].test_accuracy == task.classifier.accuracy(task.test.embedding, task.test.labels)
    rd = out["RD"].method
    grid = head_scale_grid(rd, ARCH)
    assert grid.shape == (2, 4) and grid.notna().all().all()
    assert grid.loc[1, 2] == pytest.approx(rd.unit_scales()["L1.H2"].mean())
    top = top_components(rd, k=4)
    assert len(top) == 4 and top["scale"].is_monotonic_decreasing
    texts = [f"text {i}" for i in range(10)]
    table = np.random.default_rng(0).normal(size=(10, 16))
    encode = lambda batch: torch.tensor(table[[int(t.split()[1]) for t in batch]], dtype=torch.float32)  # noqa: E731
    described = describe_components(rd, top, texts, encode, k=2)
    assert described["description"].str.count(r"\|").eq(1).all()
    with pytest.raises(ValueError, match="valid: O, RD"):
        residual_alignment(task, ARCH, reference, methods=("XYZ",))


def test_task_caches_are_the_splits_the_dataset_declares():
    from residual_lib.alignment.tasks import task_caches

    keys = task_caches("m", "toy-shape", n_train=200, n_val=None, n_test=100, seed=3, dtype="float16")
    assert [(k.model, k.dataset, k.split, k.n, k.seed, k.dtype) for k in keys] == [
        ("m", "toy-shape", "train", 200, 3, "float16"), ("m", "toy-shape", "val", None, 3, "float16"),
        ("m", "toy-shape", "test", 100, 3, "float16")]
    with pytest.raises(KeyError):
        task_caches("m", "no-such-dataset")


def test_task_caches_without_a_val_split_read_train_and_test(monkeypatch):
    import types

    from residual_lib.alignment import tasks as alignment

    monkeypatch.setattr(alignment, "dataset_spec", lambda name: types.SimpleNamespace(splits={"train": {}, "test": {}}))
    assert [k.split for k in alignment.task_caches("m", "d", 10, 5, 7)] == ["train", "test"]
