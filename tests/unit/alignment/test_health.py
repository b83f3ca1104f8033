"""Training health: a run that kept epoch 0, diverged or picked an edge rate is flagged, and the page says so."""

import numpy as np
import torch

from residual_lib.alignment.tasks import Trained
from residual_lib.alignment.training import LRRangeTest, TrainConfig, TrainResult, health, scale_range
from residual_lib.experiments.fig05_tab02 import training_table


def run(best_epoch=3, losses=(1.0, 0.8, 0.7), lr=0.1, lrs=np.geomspace(1e-5, 10, 100)):
    history = [{"epoch": 0, "train_loss": float("nan"), "val_accuracy": 0.5}]
    history += [{"epoch": i + 1, "train_loss": loss, "val_accuracy": 0.6} for i, loss in enumerate(losses)]
    sweep = LRRangeTest(lrs=lrs, raw_losses=np.ones(len(lrs)), losses=np.ones(len(lrs)), suggestion=lr)
    return TrainResult(lr=lr, best_epoch=best_epoch, best_val_accuracy=0.6, history=history, lr_range=sweep)


def test_a_healthy_run_has_no_flags_and_its_rate_sits_inside_the_sweep():
    h = health(run(), TrainConfig(max_epochs=30), (0.4, 2.0))
    assert h["healthy"] and h["flags"] == ""
    assert 0 < h["lr position in range test"] < 1 and not h["cap hit"]


def test_a_planted_diverging_run_is_flagged_on_every_count():
    """The issue's RD on toy-sketch: lr 5 at the top of its sweep, lambda from -103.6 to 72.8, epoch 0 kept."""
    lrs = np.geomspace(1e-5, 5.0, 60)  # the sweep stopped at divergence: 5 is the last rate it reached
    method = torch.nn.Module()
    method.scales = torch.nn.Parameter(torch.tensor([-103.6, 1.0, 72.8]))
    h = health(run(best_epoch=0, losses=(2.0, float("inf")), lr=5.0, lrs=lrs), TrainConfig(max_epochs=2),
               scale_range(method))
    assert not h["healthy"] and h["cap hit"] and h["lr position in range test"] == 1.0
    for flag in ("kept epoch 0", "non-finite", "edge of the range test", "scales beyond"):
        assert flag in h["flags"]
    trained = {("toy", "toy-sketch", 0): {"Base": Trained(None, None, 0.5),
                                       "RD": Trained(method, run(), 0.2, {"health": h, "remedy": "authors' rate"})}}
    table = training_table(trained)
    assert list(table["method"]) == ["RD"] and not table["healthy"].iloc[0] and table["remedy"].iloc[0]
    assert table["seed"].iloc[0] == 0
