"""The toy-world page's figures build from the shapes they document."""

import numpy as np
import pandas as pd

from residual_lib.toy import plots


def test_image_grid_has_one_titled_panel_per_image():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    fig = plots.image_grid(images, [f"caption {i}" for i in range(5)], ncols=3)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(panels) == 5
    assert [ax.get_title() for ax in panels] == [f"caption {i}" for i in range(5)]
    np.testing.assert_array_equal(panels[2].images[0].get_array(), images[2].transpose(1, 2, 0))


def test_image_grid_labels_each_row_left_of_its_first_image():
    images = np.zeros((6, 3, 32, 32), dtype=np.uint8)
    fig = plots.image_grid(images, ["a"] * 6, ncols=3, row_labels=["sketch-3px", "faint-textured-colour"])
    first = [fig.axes[0], fig.axes[3]]
    assert [[t.get_text() for t in ax.texts] for ax in first] == [["sketch-3px"], ["faint-textured-colour"]]
    assert all(ax.texts[0].get_position()[0] < 0 and ax.texts[0].get_ha() == "right" for ax in first)
    assert not any(ax.texts for ax in fig.axes if ax not in first)


def test_zero_shot_bars_show_accuracy_and_chance():
    table = pd.DataFrame({"dataset": ["toy-shape", "toy-size"], "accuracy": [0.9, 0.5], "chance": [1 / 6, 1 / 3]})
    fig = plots.zero_shot_bars(table)
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [0.9, 0.5])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["shape", "size"]


def test_training_curve_plots_loss_and_logit_scale():
    curve = pd.DataFrame({"step": range(30), "loss": np.linspace(5, 3, 30), "lr": 1e-3, "logit_scale": 14.0})
    fig = plots.training_curve(curve)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
