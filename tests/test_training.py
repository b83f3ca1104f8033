"""The shared training loop: early stopping, restoring the best weights, LR range test, determinism."""

import numpy as np
import pandas as pd
import pytest
import torch

from residual_lib.residual import Architecture, LinearAligner, make_method
from residual_lib.training import TrainConfig, evaluate, fit, lr_range_test, validation_split
from residual_lib.zeroshot import ZeroShotClassifier
from unitset_factory import random_unitset


def _separable(n: int = 300, dim: int = 8, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(n_classes, dim)), dtype=torch.float32))
    labels = np.arange(n) % n_classes
    x = classes[labels] * 3 + 0.3 * torch.tensor(rng.normal(size=(n, dim)), dtype=torch.float32)
    return x, labels, ZeroShotClassifier(classes, tuple(map(str, range(n_classes))), logit_scale=10.0)


def test_early_stopping_restores_the_best_epoch():
    """Validation accuracy peaks before training (identity is perfect); training labels are shifted by one."""
    x, labels, clf = _separable()
    method = LinearAligner(x.shape[1])
    config = TrainConfig(lr=0.05, max_epochs=30, patience=5, batch_size=32, progress=False)
    result = fit(method, clf, (x, (labels + 1) % 4), (x, labels), config)
    accs = result.frame()["val_accuracy"].to_numpy()
    assert accs[0] == 1.0 and accs[1:].max() < 1.0
    assert result.best_epoch == 0 and result.epochs_run == config.patience
    np.testing.assert_allclose(method.linear.weight.detach().numpy(), np.eye(x.shape[1]), atol=1e-6)
    assert evaluate(method, clf, x, labels) == result.best_val_accuracy == 1.0


def test_training_improves_and_keeps_the_best_validation_accuracy():
    train, clf = random_unitset(n=400, seed=1)
    val, _ = random_unitset(n=200, seed=2)
    method = make_method("O", Architecture(2, 4, 6, 16))
    x_train, x_val = method.features(train), method.features(val)
    result = fit(method, clf, (x_train, train.labels), (x_val, val.labels),
                 TrainConfig(lr=0.05, max_epochs=8, progress=False))
    accs = result.frame()["val_accuracy"]
    assert result.best_val_accuracy == accs.max() > accs[0]
    assert result.best_epoch == int(accs.idxmax())
    assert evaluate(method, clf, x_val, val.labels) == result.best_val_accuracy
    assert result.epochs_run <= 8


def test_lr_range_test_returns_a_rate_in_range_before_divergence():
    x, labels, clf = _separable()
    method = LinearAligner(x.shape[1])
    config = TrainConfig(min_lr=1e-4, max_lr=50.0, range_steps=60, batch_size=32, progress=False)
    sweep = lr_range_test(method, clf, x, labels, config)
    assert config.min_lr <= sweep.suggestion <= config.max_lr
    assert np.all(np.isfinite(sweep.losses)) and len(sweep.lrs) == len(sweep.losses)
    assert sweep.losses[list(sweep.lrs).index(sweep.suggestion)] <= sweep.losses[0]
    np.testing.assert_allclose(method.linear.weight.detach().numpy(), np.eye(x.shape[1]))  # trained a copy
    with pytest.raises(ValueError, match="min_lr"):
        lr_range_test(method, clf, x, labels, TrainConfig(min_lr=1.0, max_lr=0.1))


def test_fit_without_rate_uses_the_range_test_and_is_deterministic():
    x, labels, clf = _separable(seed=3)
    config = TrainConfig(max_epochs=3, range_steps=30, progress=False, seed=7)
    runs = []
    for _ in range(2):
        method = LinearAligner(x.shape[1])
        result = fit(method, clf, (x[:240], labels[:240]), (x[240:], labels[240:]), config)
        runs.append((result, method.linear.weight.detach().clone()))
    (a, wa), (b, wb) = runs
    assert a.lr_range is not None and a.lr == a.lr_range.suggestion
    pd.testing.assert_frame_equal(a.frame(), b.frame())
    assert torch.equal(wa, wb)


def test_validation_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(5), 40)
    train, val = validation_split(labels)
    assert len(val) == 20 and not set(train) & set(val) and len(train) + len(val) == 200
    assert np.all(np.bincount(labels[val]) == 4)
    assert np.array_equal(val, validation_split(labels)[1])
