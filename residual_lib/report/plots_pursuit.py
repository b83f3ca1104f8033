"""Figures of the sparse text decompositions: agreement heatmaps (Fig 3, 8) and probe skill per head."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import BoundaryNorm, ListedColormap
import numpy as np
import pandas as pd

from . import style
from ..units.unit_set import parse_unit


def _heatmap(ax, grid: pd.DataFrame, title: str, vmax: float, cmap: str, fmt: str = "{:.2f}") -> None:
    im = ax.imshow(grid.to_numpy(dtype=float).T, cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(grid.shape[0]), grid.index)
    ax.set_yticks(range(grid.shape[1]), grid.columns)
    ax.set_xlabel(grid.index.name or "")
    ax.set_ylabel(grid.columns.name or "")
    ax.set_title(title)
    ax.grid(False)
    if grid.size <= 100:
        for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
            ax.text(i, j, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 * vmax else "black")
    plt.colorbar(im, ax=ax, fraction=0.04)


def plot_agreement(ours: pd.DataFrame, paper: pd.DataFrame, pc: int, model_label: str) -> plt.Figure:
    """|Z| per layer x head: this build's (left) beside the paper's OpenCLIP-L panel for the same PC (right)."""
    grid = ours.assign(z=ours.z.abs()).pivot(index="layer", columns="head", values="z")
    ref = paper[paper.pc == pc].pivot(index="layer", columns="head", values="z")
    vmax = float(np.nanmax([grid.to_numpy(dtype=float).max(), ref.to_numpy(dtype=float).max()]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    _heatmap(axes[0], grid, f"|Z|, TextSpan vs OMP on PC{pc}: {model_label}", vmax, style.CMAP_SEQ)
    _heatmap(axes[1], ref, style.paper_label(f"|Z|, OpenCLIP-L, PC{pc}"), vmax, style.CMAP_SEQ)
    fig.tight_layout()
    return fig


def plot_probe_skill(skills: pd.DataFrame, named: pd.Series, title: str) -> plt.Figure:
    """Probe skill per head (rows) and attribute (columns); boxes mark the attributes ("a, b") each head's descriptions name most."""
    fig, ax = plt.subplots(figsize=(1.1 * skills.shape[1] + 2.5, 0.32 * skills.shape[0] + 1.5))
    im = ax.imshow(skills.to_numpy(dtype=float), cmap=style.CMAP_SEQ, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(skills.shape[1]), skills.columns, rotation=30, ha="right")
    ax.set_yticks(range(skills.shape[0]), skills.index)
    ax.grid(False)
    for i, unit in enumerate(skills.index):
        value = named.get(unit)
        for attribute in value.split(", ") if isinstance(value, str) else []:
            if attribute in skills.columns:
                j = list(skills.columns).index(attribute)
                ax.add_patch(plt.Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, edgecolor="red", linewidth=1.8))
    ax.set_title(title)
    plt.colorbar(im, ax=ax, fraction=0.04, label="probe skill (0 = chance, 1 = perfect)")
    fig.tight_layout()
    return fig


def plot_equivalence(tables: dict[str, pd.DataFrame], k: int) -> plt.Figure:
    """Per head (layer x head), for each dictionary: log10 max |R_TextSpan - R_SOMP| and L1 SOMP's first departure."""
    fig, axes = plt.subplots(len(tables), 2, figsize=(11, 3.4 * len(tables)), squeeze=False)
    for row, (name, t) in zip(axes, tables.items()):
        grid = t.assign(layer=t.unit.map(lambda u: parse_unit(u)[1]), head=t.unit.map(lambda u: parse_unit(u)[2]))
        diff = grid.pivot(index="layer", columns="head", values="max_residual_diff")
        dep = grid.pivot(index="layer", columns="head", values="l1_first_departure")
        logd = np.log10(diff.clip(lower=1e-18))
        im = row[0].imshow(logd.to_numpy(dtype=float), cmap=style.CMAP_SEQ, aspect="auto", vmin=-17, vmax=-5)
        plt.colorbar(im, ax=row[0], fraction=0.04, label="log10 (tolerance 1e-5 at -5)")
        # 0 ("never departs") in grey, apart from the ramp of pick numbers: on one ramp it looked like 1
        picks = ListedColormap(["#d9d9d9", *plt.get_cmap("viridis")(np.linspace(0.0, 0.9, k))])
        im = row[1].imshow(dep.to_numpy(dtype=float), cmap=picks, aspect="auto",
                           norm=BoundaryNorm(np.arange(-0.5, k + 1), picks.N))
        bar = plt.colorbar(im, ax=row[1], fraction=0.04, ticks=range(k + 1), label="first pick that differs")
        bar.ax.set_yticklabels(["never", "1 (first)", *map(str, range(2, k + 1))])
        for ax, g in zip(row, (logd, dep)):
            ax.set_xticks(range(g.shape[1]), g.columns)
            ax.set_yticks(range(g.shape[0]), g.index)
            ax.set_xlabel("head")
            ax.set_ylabel(f"{name}\nlayer")
            ax.grid(False)
    # Column titles once, dictionaries as row labels: long per-panel titles overlapped their neighbours.
    axes[0, 0].set_title("max |R_TextSpan - R_SOMP(L2)| per head", fontsize=10)
    axes[0, 1].set_title("SOMP (L1): first pick that differs from TextSpan", fontsize=10)
    fig.tight_layout()
    return fig
