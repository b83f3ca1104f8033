"""Figures and tables of the spectral-geometry pages (Fig 2/7, Fig 4/9-15): ours beside the paper's."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import style
from ..data.datasets import dataset_spec
from ..models.registry import display_name

ID_COLUMNS = {"linear_id": "linear ID (L, PCA 99%)", "twonn_id": "TwoNN ID (N)", "ratio": "ratio L / N",
              "evr1": "EVR of PC1"}


def model_display(name: str) -> str:
    """The paper's spelling of a registered model ("openclip-l" -> "OpenCLIP-L"); other names unchanged."""
    return display_name(name)


def dataset_display(name: str) -> str:
    """The paper's spelling of a registered dataset ("imagenet-sketch" -> "Sketch"); other names unchanged."""
    try:
        return dataset_spec(name).extra.get("paper_name", name)
    except KeyError:
        return name


def side_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A `layer_summary` in the paper's side-table layout: L, N, Ratio (mean of per-head ratios), EVR1."""
    return (summary.set_index("layer")[["linear_id", "twonn_id", "ratio_mean_of_heads", "evr1"]]
            .set_axis(["L", "N", "Ratio", "EVR1"], axis=1).round(2))


def plot_intrinsic_dimension(ours: dict[str, pd.DataFrame], paper: pd.DataFrame, title: str = ""):
    """Top row: this build's per-layer means (one line per model); bottom row: the paper's Fig 2/7 values.

    ours: {model: layer_summary}; for the ratio, solid = mean of per-head ratios, dashed = ratio of means.
    """
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.2), sharex="row")
    colours = plt.get_cmap("tab10")
    for i, (model, summ) in enumerate(ours.items()):
        c = style.OURS if len(ours) == 1 else colours(i)
        for ax, col in zip(axes[0], ID_COLUMNS):
            y = summ["ratio_mean_of_heads" if col == "ratio" else col]
            ax.plot(summ["layer"], y, "o-", color=c, ms=3, label=model)
            if col == "ratio":
                ax.plot(summ["layer"], summ["ratio_of_means"], "--", color=c, lw=1,
                        label=f"{model}: ratio of layer means")
    for i, (model, ref) in enumerate(paper.groupby("model", sort=False)):
        for ax, col in zip(axes[1], ID_COLUMNS):
            ax.plot(ref["layer"], ref[col], "o-", ms=2, color=colours(i), label=model)
    for row, who in enumerate(("this build", style.paper_label("Fig 2/7"))):
        for ax, col in zip(axes[row], ID_COLUMNS):
            ax.set_title(f"{ID_COLUMNS[col]}\n{who}", fontsize=9)
            ax.set_xlabel("layer")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            # Every axis from 0 (EVR up to 1): a change of 0.5 in an ID of 6 must not look like a steep trend.
            ax.set_ylim(0, 1.0 if col == "evr1" else max(ax.get_ylim()[1], 1.0))
    # Legends beside the last panel of each row, never over a curve.
    axes[0, 3].legend(*axes[0, 2].get_legend_handles_labels(), fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.02, 1), frameon=False)
    axes[1, 3].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_similarity_heatmaps(matrices: dict[str, pd.DataFrame], reference_name: str):
    """One heatmap per model: rows = datasets (most similar first), columns = heads, layer by layer."""
    fig, axes = plt.subplots(len(matrices), 1, figsize=(11, 0.45 * sum(len(m) for m in matrices.values()) + 1.6 * len(matrices)),
                             squeeze=False)
    for ax, (model, mat) in zip(axes[:, 0], matrices.items()):
        im = ax.imshow(mat.to_numpy(), aspect="auto", vmin=0, vmax=1, cmap=style.CMAP_SEQ, interpolation="nearest")
        layers = np.array([int(u.split(".")[0][1:]) for u in mat.columns])
        edges = np.flatnonzero(np.diff(layers)) + 0.5
        for x in edges:
            ax.axvline(x, color="white", lw=0.8)
        starts = np.concatenate([[-0.5], edges])
        ends = np.concatenate([edges, [len(layers) - 0.5]])
        ax.set_xticks((starts + ends) / 2, [str(l) for l in np.unique(layers)])
        ax.set_yticks(range(len(mat)), list(mat.index))
        ax.set_xlabel("layer (heads left to right within a layer)")
        ax.set_title(f"{model}: spectral cosine similarity of each head with {reference_name}")
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return fig


def plot_similarity_by_layer(similarities: pd.DataFrame, null: pd.DataFrame, reference_name: str, n_sd: float):
    """One panel per model: each dataset's mean similarity over a layer's heads, against the sampling null (two
    disjoint random halves of the reference: mean over draws, shaded to n_sd standard deviations over draws)."""
    models = list(dict.fromkeys(similarities["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        ours = similarities[similarities["model"] == model].groupby(["dataset", "layer"])["similarity"].mean()
        for dataset, curve in ours.groupby(level="dataset"):
            ax.plot(curve.index.get_level_values("layer"), curve.to_numpy(), marker="o", ms=3, lw=1, label=dataset)
        per_draw = null[null["model"] == model].groupby(["layer", "draw"])["similarity"].mean().groupby(level="layer")
        mean, sd = per_draw.mean(), per_draw.std(ddof=1)
        ax.plot(mean.index, mean.to_numpy(), color="black", lw=2, label=f"{reference_name}: half vs half (null)")
        ax.fill_between(mean.index, mean - n_sd * sd, mean + n_sd * sd, color="black", alpha=0.15)
        ax.set(xlabel="layer", title=model)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel(f"mean similarity with {reference_name}")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def order_table(ours: list[str], paper_order: pd.DataFrame) -> pd.DataFrame:
    """Rank-by-rank table of our dataset order beside the paper's for one figure (its `fig4_order` rows)."""
    theirs = paper_order.sort_values("rank")["dataset"].tolist()
    n = max(len(ours), len(theirs))
    label = style.paper_label(f"Fig {paper_order['figure'].iloc[0]}, {paper_order['model'].iloc[0]}")
    return pd.DataFrame({"rank": range(1, n + 1), "this build": list(ours) + [""] * (n - len(ours)),
                         label: theirs + [""] * (n - len(theirs))})


ROLE_NAMES = {"task": "task datasets", "ood": "out-of-distribution sets", "reference": "reference sets",
              "standin": "stand-in sets"}


def dataset_role(display: str) -> str:
    """The manifest role of a dataset named as the paper or a figure names it ("Sketch" -> "ood")."""
    from ..data.datasets import list_datasets

    roles = {dataset_display(d): dataset_spec(d).role for d in list_datasets()}
    return roles.get(display, "task")


def order_by_role(ours: list[str], paper_order: pd.DataFrame) -> pd.DataFrame:
    """Where each kind of dataset falls in our order and in the paper's, for orders over different datasets.

    Ranks are only comparable between orders of the same datasets; across different ones, what compares is the
    position of a kind (task datasets, out-of-distribution sets such as Sketch or Random) in its own order:
    0 first (most similar to the reference), 1 last.
    """
    theirs = paper_order.sort_values("rank")["dataset"].tolist()
    label = style.paper_label(f"Fig {paper_order['figure'].iloc[0]}, {paper_order['model'].iloc[0]}")

    def place(order: list[str], role: str) -> tuple[str, str]:
        ranks = {d: i for i, d in enumerate(order) if dataset_role(d) == role}
        if not ranks:
            return "none", "none"
        names = ", ".join(f"{d} ({i + 1} of {len(order)})" for d, i in ranks.items())
        return names, f"{np.mean([i / max(len(order) - 1, 1) for i in ranks.values()]):.2f}"

    rows = []
    for role in dict.fromkeys(dataset_role(d) for d in [*ours, *theirs]):
        (mine, my_pos), (paper, paper_pos) = place(ours, role), place(theirs, role)
        rows.append({"kind": ROLE_NAMES.get(role, role), "this build": mine, "position": my_pos, label: paper,
                     style.paper_label("position"): paper_pos})
    return pd.DataFrame(rows)


def order_agreement(ours: list[str], paper_order: pd.DataFrame) -> float:
    """Spearman correlation between our ranks and the paper's over the datasets both orders contain (nan if < 3)."""
    theirs = paper_order.sort_values("rank")["dataset"].tolist()
    common = [d for d in ours if d in theirs]
    if len(common) < 3:
        return float("nan")
    return float(spearmanr([ours.index(d) for d in common], [theirs.index(d) for d in common]).statistic)


def plot_cross_model_correlation(ours: pd.DataFrame | None, paper: pd.DataFrame):
    """Fig 9: Pearson correlation of per-dataset mean similarities across models, ours (if any) beside the paper's."""
    ref = paper.pivot(index="model_a", columns="model_b", values="pearson")
    order = list(dict.fromkeys(paper["model_a"]))
    panels = ([("this build", ours)] if ours is not None else []) + [(style.paper_label("Fig 9"), ref.loc[order, order])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (title, mat) in zip(axes[0], panels):
        im = ax.imshow(mat.to_numpy(dtype=float), vmin=min(0.8, np.nanmin(mat.to_numpy(dtype=float))), vmax=1,
                       cmap=style.CMAP_SEQ)
        ax.set_xticks(range(len(mat.columns)), list(mat.columns), rotation=45, ha="right")
        ax.set_yticks(range(len(mat.index)), list(mat.index))
        for (i, j), v in np.ndenumerate(mat.to_numpy(dtype=float)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.9 else "black")
        ax.set_title(title)
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
