"""Our numbers, saved by each notebook in the paper's long format, and their comparison with the paper's.

A notebook that rebuilds one of the paper's tables or figures calls ``save(df, name)`` with `name` one of
`residual_lib.paper.REFERENCES` ("table1", "fig2", ...) and `df` in the same columns as the paper's CSV
(`residual_lib.paper.reference(name)`), model and dataset names spelled as the paper prints them
("CLIP-L", "CIFAR10"). Rows are written to ``artifacts_dir()/results/<run>/<name>.csv``; `<run>` is the
environment variable ``RESIDUAL_PROFILE`` (the book runner's profile) or "interactive". The reproduction
report joins them with the paper's numbers (`compare`) and states a verdict against a tolerance
(`TOLERANCES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_file
from .paper import REFERENCES, reference
from .paths import artifacts_dir

RUN_ENV = "RESIDUAL_PROFILE"


@dataclass(frozen=True)
class Tolerance:
    """|ours - paper| <= absolute + relative * |paper| counts as a match."""

    absolute: float = 0.0
    relative: float = 0.0
    why: str = ""

    def bound(self, paper: np.ndarray) -> np.ndarray:
        return self.absolute + self.relative * np.abs(paper)


# Per reference: the key columns, and for each value column its tolerance (numbers) or None (exact text).
KEYS = {
    "table1": ["model", "dataset", "method"],
    "table2": ["model", "dataset", "method"],
    "table2_params": ["model", "method"],
    "fig2": ["model", "layer"],
    "fig3_agreement": ["figure", "pc", "layer", "head"],
    "fig3_descriptions": ["figure", "layer", "head", "method", "rank"],
    "fig4_order": ["model", "rank"],  # each model has its own figure (4a, 10-15), so the label is not needed
    "fig9": ["model_a", "model_b"],
}
TOLERANCES: dict[str, dict[str, Tolerance | None]] = {
    "table1": {"accuracy": Tolerance(0.03, why="zero-shot accuracy: prompt templates, splits and head ties move it by a few points")},
    "table2": {"accuracy": Tolerance(0.03, why="accuracy after training: seeds, early stopping and splits move it by a few points")},
    "table2_params": {"params": Tolerance(relative=0.02, why="the paper prints abbreviations (43k, 15.4k); 2% covers the rounding")},
    "fig2": {"linear_id": Tolerance(2.0, why="a mean over heads of integers; a different 80k subset moves it by about 1"),
             "twonn_id": Tolerance(2.0, why="TwoNN on 80k points varies by about 1 with the subset"),
             "ratio": Tolerance(0.15, why="mean of per-head ratios; follows the two estimates"),
             "evr1": Tolerance(0.03, why="explained variance ratio of PC1, stable to about 0.01")},
    "fig3_agreement": {"z": Tolerance(0.5, why="a Z-score against a sampled null distribution")},
    "fig3_descriptions": {"text": None},
    "fig4_order": {"dataset": None},
    "fig9": {"pearson": Tolerance(0.05, why="correlation of 13 x heads similarities; the data subsets move it slightly")},
}
VERDICTS = ("match", "differs", "not run")


def current_run() -> str:
    """The run name results are filed under: $RESIDUAL_PROFILE, or 'interactive'."""
    return os.environ.get(RUN_ENV, "").strip() or "interactive"


def results_path(name: str, run: str | None = None) -> Path:
    """Where `save(df, name)` writes for a run (default: the current one)."""
    return artifacts_dir() / "results" / (run or current_run()) / f"{name}.csv"


def _check_columns(df: pd.DataFrame, name: str) -> None:
    if name in REFERENCES:
        expected = list(reference(name).columns)
        missing = [c for c in expected if c not in df.columns]
        if missing:
            raise ValueError(f"results {name!r} lack columns {missing}; the paper's {name} has columns {expected}")


def save(df: pd.DataFrame, name: str, run: str | None = None) -> Path:
    """Write a notebook's numbers in the paper's long format; rows with the same keys as older ones replace them.

    df: the columns of `residual_lib.paper.reference(name)` when `name` is one of its keys (any columns otherwise).
    Returns the CSV path. Several notebooks (or several models run apart) may add rows to one name.
    """
    _check_columns(df, name)
    path = results_path(name, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = df.copy()
    if path.exists():
        old = pd.read_csv(path, keep_default_na=False)
        keys = [k for k in KEYS.get(name, []) if k in rows.columns and k in old.columns]
        if keys:
            new_keys = set(map(tuple, rows[keys].astype(str).to_numpy()))
            old = old[[tuple(r) not in new_keys for r in old[keys].astype(str).to_numpy()]]
        rows = pd.concat([old, rows], ignore_index=True)
    with atomic_file(path) as tmp:
        rows.to_csv(tmp, index=False)
    return path


def load(name: str, run: str | None = None) -> pd.DataFrame | None:
    """The saved results `name` of a run, or None when that run never saved them."""
    path = results_path(name, run)
    return pd.read_csv(path, keep_default_na=False) if path.exists() else None


def compare(name: str, ours: pd.DataFrame | None) -> pd.DataFrame:
    """Every paper number of reference `name` beside ours: keys, quantity, paper, ours, diff, tolerance, verdict.

    Numbers match when |ours - paper| is within `TOLERANCES[name]`; texts (descriptions, dataset order)
    match when equal ignoring case and surrounding spaces. Paper rows without ours get verdict 'not run'.
    """
    if name not in KEYS:
        raise KeyError(f"no comparison defined for {name!r}; valid: {', '.join(KEYS)}")
    paper = reference(name)
    keys = KEYS[name]
    frames = []
    for quantity, tol in TOLERANCES[name].items():
        left = paper[keys + [quantity]].rename(columns={quantity: "paper"})
        if ours is not None and quantity in ours.columns:
            right = ours[keys + [quantity]].rename(columns={quantity: "ours"}).copy()
            for k in keys:
                right[k] = right[k].astype(left[k].dtype) if left[k].dtype != object else right[k].astype(str)
            right = right.drop_duplicates(keys, keep="last")
            merged = left.merge(right, on=keys, how="left")
        else:
            merged = left.assign(ours=np.nan if tol is not None else None)
        merged.insert(len(keys), "quantity", quantity)
        if tol is None:
            has = merged["ours"].notna() & (merged["ours"].astype(str) != "nan")
            same = merged["paper"].astype(str).str.strip().str.lower() == merged["ours"].astype(str).str.strip().str.lower()
            merged["diff"] = np.where(has, np.where(same, "same", "different"), "")
            merged["tolerance"] = "exact text"
            merged["verdict"] = np.where(has, np.where(same, "match", "differs"), "not run")
        else:
            p = merged["paper"].astype(float).to_numpy()
            o = pd.to_numeric(merged["ours"], errors="coerce").to_numpy(dtype=float)
            diff = o - p
            merged["diff"] = diff
            merged["tolerance"] = tol.bound(p)
            merged["verdict"] = np.where(np.isnan(o), "not run", np.where(np.abs(diff) <= tol.bound(p), "match", "differs"))
        frames.append(merged)
    return pd.concat(frames, ignore_index=True)


def summary(comparisons: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per reference: how many paper numbers, and how many match, differ, or were not run."""
    rows = []
    for name, comp in comparisons.items():
        counts = comp["verdict"].value_counts()
        rows.append({"reference": name, "paper numbers": len(comp),
                     **{v: int(counts.get(v, 0)) for v in VERDICTS}})
    return pd.DataFrame(rows)


def plot_agreement(comparisons: dict[str, pd.DataFrame]):
    """One panel per numeric quantity: ours against the paper's, tolerance band shaded; paper-only quantities
    show the paper's values alone. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    from .style import OURS, PAPER, paper_label

    panels = [(name, q, comp[comp["quantity"] == q]) for name, comp in comparisons.items()
              for q, tol in TOLERANCES[name].items() if tol is not None]
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, quantity, comp) in zip(axes.flat, panels):
        p = comp["paper"].astype(float).to_numpy()
        o = pd.to_numeric(comp["ours"], errors="coerce").to_numpy(dtype=float)
        lo, hi = float(np.nanmin(p)), float(np.nanmax(p))
        grid = np.linspace(lo, hi, 50)
        tol = TOLERANCES[name][quantity]
        if np.isnan(o).all():
            ax.hist(p, bins=20, color=PAPER)
            ax.set_xlabel(paper_label(quantity))
            ax.set_ylabel("count")
        else:
            ax.fill_between(grid, grid - tol.bound(grid), grid + tol.bound(grid), color=PAPER, alpha=0.15, lw=0)
            ax.plot(grid, grid, color=PAPER, lw=0.8)
            ax.scatter(p, o, s=8, color=OURS)
            ax.set_xlabel(paper_label(quantity))
            ax.set_ylabel(f"{quantity} (ours)")
            if quantity == "params":  # counts span 256 to 590k
                ax.set_xscale("log")
                ax.set_yscale("log")
        ax.set_title(f"{name}: {quantity}")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
