"""Figures of the toy-world page: sample grids, the training curve, zero-shot accuracy beside chance."""

from __future__ import annotations

from collections.abc import Sequence
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..report.style import OURS


def image_grid(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 8,
               width: float = 1.6, wrap: int = 22, fontsize: float = 7,
               row_labels: Sequence[str] | None = None) -> Figure:
    """uint8 (N, 3, S, S) images in a grid, each under its (wrapped) title; `width` inches per image; each row's
    label, if given, left of the row."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    lines = max((len(textwrap.wrap(t, wrap)) for t in titles), default=0) if titles is not None else 0
    line = fontsize / 72 * 1.3  # inches per title line
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * (width + line * lines)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(np.transpose(images[k], (1, 2, 0)), interpolation="nearest")
            if titles is not None:
                ax.set_title("\n".join(textwrap.wrap(titles[k], wrap)), fontsize=fontsize)
    for ax, label in zip(axes[:, 0], row_labels or []):
        ax.text(-0.08, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=fontsize)
    fig.tight_layout()
    return fig


def training_curve(curve: pd.DataFrame, window: int = 20) -> Figure:
    """Loss per step (raw and a centred moving average) and the learned logit scale."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax.plot(curve["step"], curve["loss"], color=OURS, alpha=0.25, lw=0.8, label="per step")
    ax.plot(curve["step"], curve["loss"].rolling(window, center=True, min_periods=1).mean(), color=OURS,
            label=f"moving mean ({window} steps)")
    ax.set(xlabel="step", ylabel="contrastive loss", title="Training loss")
    ax.legend()
    ax2.plot(curve["step"], curve["logit_scale"], color=OURS)
    ax2.set(xlabel="step", ylabel="logit scale (1 / temperature)", title="Learned temperature")
    fig.tight_layout()
    return fig


def zero_shot_bars(table: pd.DataFrame) -> Figure:
    """Zero-shot accuracy per dataset (bars) with chance (black ticks); columns dataset, accuracy, chance."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(table)), 3.4))
    x = np.arange(len(table))
    ax.bar(x, table["accuracy"], color=OURS, label="zero-shot accuracy (this build)")
    ax.scatter(x, table["chance"], marker="_", s=600, color="black", zorder=3, label="chance (1 / classes)")
    for xi, acc in zip(x, table["accuracy"]):
        ax.text(xi, acc + 0.02, f"{acc:.0%}", ha="center", fontsize=8)
    ax.set_xticks(x, [d.removeprefix("toy-") for d in table["dataset"]], rotation=30, ha="right")
    ax.set(ylim=(0, 1.1), ylabel="accuracy (test split)", title="Zero-shot accuracy per toy dataset")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
