"""The shared training loop: early stopping, restoring the best weights, LR range test, determinism."""

import numpy as np
import pandas as pd
import pytest
import torch

from residual_lib.alignment.residual import Architecture, LinearAligner, make_method
from residual_lib.alignment.training import (FINETUNE_MAX_LR, PROTOCOL_LOGIT_SCALES, TrainConfig, backward, evaluate, fit,
                                   lr_range_test, protocol_config, validation_split)
from residual_lib.alignment.classifier import Classifier
from unitset_factory import random_unitset


def _separable(n: int = 300, dim: int = 8, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(n_classes, dim)), dtype=torch.float32))
    labels = np.arange(n) % n_classes
    x = classes[labels] * 3 + 0.3 * torch.tensor(rng.normal(size=(n, dim)), dtype=torch.float32)
    return x, labels, Classifier(classes, tuple(map(str, range(n_classes))), logit_scale=10.0)


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


@pytest.mark.parametrize("method,lr", [("O", 0.8), ("RD", 0.8), ("RD*", 0.8), ("RDY", 1e-3), ("Lin", 1e-3)])
def test_authors_protocol_fixes_each_methods_rate(method, lr):
    """conf/train/*.gin of the authors: fixed rates, batch 64, no clipping, lambda = 1 + N(0, 1)."""
    config = protocol_config(method, "authors_code")
    assert (config.lr, config.batch_size, config.grad_clip, config.lambda_init_noise) == (lr, 64, None, 1.0)
    assert config.lin_init == "pytorch"
    text = protocol_config(method, "paper_text")
    assert text == TrainConfig() and text.lr is None  # the range test picks the rate; today's defaults


def test_finetuning_protocols():
    authors = protocol_config("finetune", "authors_code")
    assert (authors.lr, authors.batch_size, authors.grad_clip) == (1e-5, 128, 1.0)
    text = protocol_config("finetune", "paper_text")
    assert text.lr is None and text.max_lr == FINETUNE_MAX_LR and text.grad_clip is None
    assert protocol_config("finetune", "authors_code", batch_size=8).batch_size == 8  # overrides win
    with pytest.raises(ValueError, match="valid: paper_text, authors_code"):
        protocol_config("RD", "lightning")
    with pytest.raises(ValueError, match="valid: O, RD"):
        protocol_config("XYZ", "authors_code")
    assert PROTOCOL_LOGIT_SCALES == {"paper_text": 100.0, "authors_code": "model"}


def test_backward_clips_the_total_gradient_norm_by_hand():
    """loss = 100 * sum(w), w in R^4: gradient 100 per entry, norm 200; clipped to 1: 0.5 per entry."""
    w = torch.nn.Parameter(torch.zeros(4))
    assert backward(100 * w.sum(), [w], grad_clip=1.0) == pytest.approx(200.0)
    np.testing.assert_allclose(w.grad.numpy(), np.full(4, 0.5), rtol=1e-6)
    v = torch.nn.Parameter(torch.zeros(4))
    assert backward(100 * v.sum(), [v]) is None
    np.testing.assert_allclose(v.grad.numpy(), np.full(4, 100.0))


def test_fit_clips_every_step_when_asked(monkeypatch):
    x, labels, clf = _separable(n=64)
    seen = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return original(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    fit(LinearAligner(x.shape[1]), clf, (x, labels), (x, labels), TrainConfig(lr=0.01, max_epochs=2, batch_size=32,
                                                                             patience=5, progress=False))
    assert seen == []
    fit(LinearAligner(x.shape[1]), clf, (x, labels), (x, labels), TrainConfig(lr=0.01, max_epochs=2, batch_size=32,
                                                                             patience=5, progress=False, grad_clip=1.0))
    assert seen == [1.0] * 4  # 2 epochs x 2 batches of 32


def test_lambda_init_statistics_under_a_seed():
    """lambda = 1 + N(0, 1): over 20,000 heads the mean and standard deviation are 1 within 4 standard errors."""
    heads = [f"L{i}.H0" for i in range(20_000)]
    noisy = make_method("O", Architecture(20_000, 1, 4, 8), init_noise=1.0, seed=3).weights.detach().numpy()
    assert abs(noisy.mean() - 1) < 4 / np.sqrt(len(heads)) and abs(noisy.std() - 1) < 4 / np.sqrt(2 * len(heads))
    again = make_method("O", Architecture(20_000, 1, 4, 8), init_noise=1.0, seed=3).weights.detach().numpy()
    other = make_method("O", Architecture(20_000, 1, 4, 8), init_noise=1.0, seed=4).weights.detach().numpy()
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    assert np.all(make_method("O", Architecture(3, 2, 4, 8)).weights.detach().numpy() == 1.0)


def test_authors_protocol_starts_residual_lambdas_noisy_through_train_method():
    from residual_lib.alignment.tasks import Task, train_method

    train, clf = random_unitset(n=120, seed=1)
    val, _ = random_unitset(n=60, seed=2)
    reference, _ = random_unitset(n=200, seed=4)
    task = Task("synthetic", clf, train, val, val)
    arch = Architecture(2, 4, 6, 16)
    config = protocol_config("RD*", "authors_code", max_epochs=0, progress=False)
    scales = train_method("RD*", arch, task, reference, config).method.scales.detach()
    expected = 1.0 + torch.randn(len(scales), generator=torch.Generator().manual_seed(config.seed))
    torch.testing.assert_close(scales, expected)
    today = train_method("RD*", arch, task, reference, TrainConfig(lr=0.1, max_epochs=0, progress=False))
    assert torch.all(today.method.scales == 1.0)


def test_train_config_resolves_auto_to_a_device():
    from residual_lib.alignment.training import TrainConfig

    assert TrainConfig(device="auto").device == ("cuda" if torch.cuda.is_available() else "cpu")
