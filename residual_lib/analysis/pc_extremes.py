"""The images at the two ends of a unit's principal components: what a head's main direction of variation
separates, shown with thumbnails (the ground truth for models without a text tower).

A unit's score on component c is its centred representation projected on that component, with the sign
convention of `residual_lib.analysis.pca.UnitPCA` (each component's largest output-space entry is positive), so the
"low" and "high" ends are the same on every run. Rows of a unit cache are mapped back to indices of the
dataset split it was extracted from, so the thumbnails are the images the model saw.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from .pca import UnitPCA


def dataset_rows(units: Any) -> np.ndarray:
    """(n,) dataset indices of a unit set's rows: a `UnitCache`'s subsample of its split (checked against the hash
    its manifest keeps), or 0..n-1 for anything without a manifest (an in-memory `UnitSet` of a whole split)."""
    from ..store.cache import subsample
    from ..data.datasets import dataset_spec

    manifest = getattr(units, "manifest", None)
    if manifest is None:
        return np.arange(units.n)
    p = manifest["params"]
    size = int(dataset_spec(p["dataset"]).splits[p["split"]]["size"])
    rows = subsample(size, p["n_requested"], p["seed"])
    if hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest() != p["indices_sha256"]:
        raise ValueError(f"the rows of the cache at {units.path} are not the seeded subsample of "
                         f"{p['dataset']!r}/{p['split']} of size {size}; the manifest's split size changed, rebuild it")
    return rows


def pc_scores(units: Any, unit: str, component: int = 0) -> np.ndarray:
    """(n,) each sample's coordinate on the unit's principal component `component` (0 = the first), centred."""
    if component < 0:
        raise ValueError(f"component={component}; must be >= 0 (0 is the first principal component)")
    pca = UnitPCA(n_components=component + 1, units=[unit], progress=False, device="cpu").fit(units)
    direction = pca.coord_components_[unit]
    if len(direction) <= component:
        raise ValueError(f"unit {unit!r} has only {len(direction)} principal components; asked for index {component}")
    x = np.asarray(units.coords(unit), dtype=np.float64)
    return (x - x.mean(axis=0)) @ direction[component]


def pc_extremes(units: Any, unit: str, k: int = 8, component: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dataset indices of the k samples lowest on the unit's principal component (lowest first) and of the k
    highest (highest first); indices into the split the unit set was extracted from (see `dataset_rows`)."""
    scores = pc_scores(units, unit, component)
    if not 1 <= k <= len(scores) // 2:
        raise ValueError(f"k={k}; must be in 1..{len(scores) // 2} (half of the {len(scores)} samples)")
    order = np.argsort(scores, kind="stable")
    rows = dataset_rows(units)
    return rows[order[:k]], rows[order[::-1][:k]]


def plot_pc_extremes(dataset: Any, extremes: Mapping[str, tuple[np.ndarray, np.ndarray]], component: int = 0,
                     thumb: float = 0.55):
    """Thumbnail grid: one row per unit, its low-end images on the left and its high-end images on the right.

    dataset: the split the indices point into (items are (PIL image, label)); extremes: {unit: (low, high)}
    as returned by `pc_extremes`; thumb: inches per thumbnail. Each thumbnail is titled with its class name.
    """
    import matplotlib.pyplot as plt

    if not extremes:
        raise ValueError("no units given; pass {unit: (low, high)} from pc_extremes")
    k = max(max(len(lo), len(hi)) for lo, hi in extremes.values())
    names = getattr(getattr(dataset, "spec", None), "class_names", None)
    fig, axes = plt.subplots(len(extremes), 2 * k + 1, squeeze=False,
                             figsize=(thumb * (2 * k + 1), thumb * 1.35 * len(extremes)),
                             gridspec_kw={"width_ratios": [1] * k + [0.35] + [1] * k})
    for r, (unit, (low, high)) in enumerate(extremes.items()):
        cells = [*low, *([None] * (k - len(low))), None, *high, *([None] * (k - len(high)))]
        for c, (ax, index) in enumerate(zip(axes[r], cells)):
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if index is None:
                ax.axis("off")
                continue
            image, label = dataset[int(index)]
            ax.imshow(np.asarray(image), cmap="gray")
            ax.set_title(names[label] if names else str(label), fontsize=6, pad=2)
        axes[r][0].set_ylabel(unit, rotation=0, ha="right", va="center", fontsize=8)
    axes[0][0].annotate(f"low end of PC{component + 1}", (0, 1.45), xycoords="axes fraction", fontsize=8)
    axes[0][k + 1].annotate(f"high end of PC{component + 1}", (0, 1.45), xycoords="axes fraction", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.45)
    return fig
