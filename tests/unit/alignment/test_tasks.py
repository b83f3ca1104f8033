"""Section 4 experiment drivers on random unit sets: table rows, trained methods, lambda summaries."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from residual_lib.alignment import tasks
from residual_lib.alignment.classifier import Classifier
from residual_lib.store import cache
from residual_lib.units.unit_set import UnitSet
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
                                                  config=CONFIG, seeds=[0, 1])
    assert {"U", "U|T", "S", "R", "R_std", "H", "B", "O", "k"} <= set(row)
    assert set(optimised) == {0, 1} and row["O"] == pytest.approx(np.mean([t.test_accuracy for t in optimised.values()]))
    for t in optimised.values():
        assert t.result.best_val_accuracy >= t.result.history[0]["val_accuracy"]
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


def _spec(splits, n_classes=4):
    return SimpleNamespace(splits=splits, class_names=[f"c{i}" for i in range(n_classes)])


def _indexed(units, offset: int = 0):
    """The units with each row's index (plus offset) written into its EMB coordinate: rows stay traceable."""
    coords = {u: units.coords(u).copy() for u in units.units}
    coords["EMB"] = (np.arange(units.n) + offset)[:, None] * np.ones_like(coords["EMB"])
    return UnitSet(coords, {u: units.basis(u) for u in units.units}, {u: units.offset(u) for u in units.units},
                   units.embedding, units.labels)


def _fake_caches(monkeypatch, splits, parts: dict):
    monkeypatch.setattr(tasks, "dataset_spec", lambda name: _spec(splits))
    monkeypatch.setattr(cache, "extract", lambda model, dataset, split, **kw: parts[split])


def _rows(units) -> set[int]:
    return set(units.coords("EMB")[:, 0].round().astype(int))


@pytest.mark.parametrize("splits", [("train", "test"), ("train", "val", "test")])
def test_k_shot_images_are_disjoint_from_train_val_and_test(monkeypatch, splits):
    """Every train-cache row goes to exactly one of k-shot, train and (when carved) val; test is its own cache."""
    parts = {"train": _indexed(random_unitset(n=200, seed=1)[0]), "val": _indexed(random_unitset(n=40, seed=2)[0], 1000),
             "test": _indexed(random_unitset(n=60, seed=3)[0], 2000)}
    _fake_caches(monkeypatch, splits, parts)
    task = tasks.load_task(SimpleNamespace(has_text=False), "d", classifier="auto", k_shot=5, seed=7)
    _, shots = tasks.k_shot_split(parts["train"].labels, 5, 7)
    assert np.bincount(parts["train"].labels[shots]).tolist() == [5, 5, 5, 5]
    shot_rows, train_rows, val_rows = set(shots.tolist()), _rows(task.train), _rows(task.val)
    assert not shot_rows & train_rows and not shot_rows & val_rows and not train_rows & val_rows
    assert not (shot_rows | train_rows | val_rows) & _rows(task.test)
    if "val" not in splits:  # val carved from what the k-shot carve left
        assert shot_rows | train_rows | val_rows == set(range(200))
    expected = Classifier.from_class_means(parts["train"].embedding[shots], parts["train"].labels[shots],
                                           _spec(splits).class_names)
    torch.testing.assert_close(task.classifier.weights, expected.weights)
    assert task.classifier.kind == "class-mean, k=5"


def test_auto_classifier_is_zero_shot_with_a_text_tower_and_rejects_unknown_kinds():
    assert tasks.classifier_kind(SimpleNamespace(has_text=True)) == "zero_shot"
    assert tasks.classifier_kind(SimpleNamespace(has_text=True), "class_mean") == "class_mean"
    with pytest.raises(ValueError, match="valid: zero_shot, class_mean, auto"):
        tasks.classifier_kind(SimpleNamespace(), "text")
    with pytest.raises(ValueError, match="k_shot=20 leaves no training image"):
        tasks.k_shot_split(np.arange(40) % 4, 20)


def _planted(n: int, seed: int, signal: float = 2.0, noise: float = 2.0):
    """Units where head L1.H2 carries the class (a shift along the class direction) and every other unit noise
    scaled by `noise`: the model's own embedding is near chance, rescaling L1.H2's components is the answer."""
    units, _ = random_unitset(n=n, seed=seed, signal_heads=("L1.H2",), signal=signal)
    rng = np.random.default_rng(seed + 100)
    coords = {u: units.coords(u) * (1.0 if u == "L1.H2" else noise) for u in units.units}
    coords.update({u: rng.normal(size=units.coords(u).shape).astype(np.float32) * noise
                   for u in units.units if "MLP" in u})
    bases = {u: units.basis(u) for u in units.units}
    offsets = {u: units.offset(u) for u in units.units}
    embedding = sum(coords[u] @ bases[u] + offsets[u] for u in units.units).astype(np.float32)
    return UnitSet(coords, bases, offsets, embedding, units.labels)


def test_residual_beats_base_with_a_class_mean_classifier_on_a_planted_task(monkeypatch):
    """RD aligns a model to its class-mean classifier: with one weak signal head among loud noise, rescaling that
    head's components lifts test accuracy well above the class-mean Base."""
    _fake_caches(monkeypatch, ("train", "test"), {"train": _planted(400, 1), "test": _planted(300, 2)})
    task = tasks.load_task(SimpleNamespace(has_text=False), "planted", k_shot=10)
    out = residual_alignment(task, ARCH, _planted(400, 3), methods=("RD",),
                             config=TrainConfig(max_epochs=30, patience=5, progress=False))
    base, rd = out["Base"].test_accuracy, out["RD"].test_accuracy
    assert out["RD"].extra["health"]["healthy"] and base < 0.4, (base, out["RD"].extra["health"])
    assert rd >= base + 0.2, (base, rd)
