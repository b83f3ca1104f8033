"""Our numbers, saved by each notebook in the paper's long format, and their comparison with the paper's.

A notebook that rebuilds one of the paper's tables or figures calls ``save(df, name)`` with `name` one of
`residual_lib.paper.reference.REFERENCES` ("table1", "fig2", ...) and `df` in the same columns as the paper's CSV
(`residual_lib.paper.reference.reference(name)`), model and dataset names spelled as the paper prints them
("CLIP-L", "CIFAR10"). Rows are written to ``artifacts_dir()/results/<run>/<name>.csv``; `<run>` is the
environment variable ``RESIDUAL_PROFILE`` (the book runner's profile) or "interactive". The reproduction
report joins them with the paper's numbers (`compare`, `comparisons`) and states a verdict against a
tolerance (`TOLERANCES`). `run_summary` counts what a run itself produced (never the paper's total) and
says when a build ran none of the paper's models; the parameter counts that follow from the paper's
architectures (`architecture_params`) are computed by the report itself, so every build can compare them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_file
from ..paper.reference import REFERENCES, reference
from ..paths import artifacts_dir

RUN_ENV = "RESIDUAL_PROFILE"
NOTEBOOK_ENV = "RESIDUAL_NOTEBOOK"  # set by the book runner to the notebook it executes


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


def current_notebook() -> str | None:
    """The book notebook being executed ($RESIDUAL_NOTEBOOK, set by the book runner), or None outside the runner."""
    return os.environ.get(NOTEBOOK_ENV, "").strip() or None


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

    df: the columns of `residual_lib.paper.reference.reference(name)` when `name` is one of its keys (any columns otherwise).
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
    """Per reference: how many paper numbers, how many have ours beside them ("compared"), and how many
    of those match or differ; the rest were not run."""
    rows = []
    for name, comp in comparisons.items():
        counts = comp["verdict"].value_counts()
        rows.append({"reference": name, "paper numbers": len(comp),
                     "compared": int(counts.get("match", 0) + counts.get("differs", 0)),
                     **{v: int(counts.get(v, 0)) for v in VERDICTS}})
    return pd.DataFrame(rows)


# The paper's models whose trained-parameter counts follow from the architecture alone (open_clip configs,
# no weights), and those methods (RD* needs the reference data's PCA; BLIP-L is not an open_clip model).
PAPER_ARCHITECTURES = {"CLIP-L": "ViT-L-14", "OpenCLIP-L": "ViT-L-14", "CLIP-B": "ViT-B-32",
                       "OpenCLIP-B": "ViT-B-32"}
ARCHITECTURE_METHODS = ("Lin", "RD", "RDY")


def architecture_params() -> pd.DataFrame:
    """The paper's parameter counts computed in this build from its models' architectures: model, method, params."""
    from ..alignment.residual import Architecture, make_method

    archs = {name: Architecture.from_open_clip(name) for name in set(PAPER_ARCHITECTURES.values())}
    return pd.DataFrame([{"model": model, "method": method, "params": make_method(method, archs[arch]).n_params}
                         for model, arch in PAPER_ARCHITECTURES.items() for method in ARCHITECTURE_METHODS])


def comparisons(run: str | None = None, architecture: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Every reference compared with what `run` saved; the parameter counts also with `architecture`
    (default: `architecture_params()`), a run's own trained counts taking precedence over them."""
    architecture = architecture_params() if architecture is None else architecture
    out = {}
    for name in KEYS:
        ours = load(name, run)
        if name == "table2_params":
            ours = architecture if ours is None else pd.concat([architecture, ours], ignore_index=True)
        out[name] = compare(name, ours)
    return out


def paper_models() -> set[str]:
    """Every model name the paper's tables print."""
    names: set[str] = set()
    for name in REFERENCES:
        ref = reference(name)
        for column in ("model", "model_a", "model_b"):
            if column in ref.columns:
                names |= set(ref[column].astype(str))
    return names


@dataclass(frozen=True)
class RunSummary:
    """What a build's run produced and how much of it the paper's numbers can be set beside."""

    run: str
    models: list[str]  # models the run saved numbers for
    paper_models: list[str]  # those among the paper's models
    produced: int  # values the run saved (every value column of every saved row, any model)
    paper_numbers: int  # the paper's numbers with a comparison defined
    compared: int  # of the paper's numbers, those the run saved a counterpart for
    matched: int  # of those, within tolerance
    architecture_compared: int  # the paper's parameter counts computed from architectures in this build
    architecture_matched: int

    def text(self) -> str:
        """One paragraph for the reproduction report: what this build can and cannot compare."""
        arch = (f"The parameter counts that follow from the paper's architectures alone (Lin, RD and RDY of "
                f"{', '.join(PAPER_ARCHITECTURES)}, computed in this build from open_clip's configurations "
                f"without weights): {self.architecture_matched} of {self.architecture_compared} match the "
                f"paper's within {TOLERANCES['table2_params']['params'].relative:.0%}.")
        if not self.paper_models:
            saved = "It saved no values of its own." if not self.produced else (
                f"Of the {self.produced} values it saved, "
                + (f"{self.compared} have a counterpart among the paper's ({self.matched} within tolerance); "
                   "the rest are" if self.compared else "none has a counterpart among the paper's: they are")
                + f" for {', '.join(self.models) or 'its own models'}, which the paper did not study.")
            return (f"This build (run '{self.run}') ran none of the paper's models: they need a GPU, the network "
                    f"and ImageNet (see the README's 'Reproduce the paper'). {saved} {arch}")
        return (f"This build (run '{self.run}') ran {', '.join(self.paper_models)} of the paper's models and saved "
                f"{self.produced} values; {self.compared} of the paper's {self.paper_numbers} numbers have a "
                f"counterpart among them, and {self.matched} of those agree within tolerance. {arch}")


def run_summary(run: str | None = None, architecture: pd.DataFrame | None = None) -> RunSummary:
    """Count what `run` saved and compare it with the paper apart from the architecture-derived counts."""
    architecture = architecture_params() if architecture is None else architecture
    models: dict[str, None] = {}
    produced = compared = matched = paper_numbers = 0
    for name in KEYS:
        ours = load(name, run)
        comp = compare(name, ours)
        paper_numbers += len(comp)
        counts = comp["verdict"].value_counts()
        compared += int(counts.get("match", 0) + counts.get("differs", 0))
        matched += int(counts.get("match", 0))
        if ours is not None:
            values = ours[[c for c in TOLERANCES[name] if c in ours.columns]]
            blank = values.astype(str).apply(lambda c: c.str.strip()) == ""  # a missing value read back from CSV
            produced += int((values.notna() & ~blank).to_numpy().sum())
            for column in ("model", "model_a"):
                if column in ours.columns:
                    models.update(dict.fromkeys(ours[column].astype(str)))
    arch = compare("table2_params", architecture).dropna(subset=["ours"])
    known = paper_models()
    return RunSummary(run=run or current_run(), models=list(models), paper_models=[m for m in models if m in known],
                      produced=produced, paper_numbers=paper_numbers, compared=compared, matched=matched,
                      architecture_compared=len(arch), architecture_matched=int((arch["verdict"] == "match").sum()))


def plot_agreement(comparisons: dict[str, pd.DataFrame]):
    """One panel per numeric quantity this build and the paper both have: ours against the paper's, tolerance band
    shaded. A quantity with the paper's values alone has no panel: a figure of this build draws what it computed.
    Returns the matplotlib Figure (None without any panel)."""
    import matplotlib.pyplot as plt

    from .style import OURS, PAPER, paper_label

    panels = [(name, q, comp[comp["quantity"] == q]) for name, comp in comparisons.items()
              for q, tol in TOLERANCES[name].items() if tol is not None
              and pd.to_numeric(comp.loc[comp["quantity"] == q, "ours"], errors="coerce").notna().any()]
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, quantity, comp) in zip(axes.flat, panels):
        p = comp["paper"].astype(float).to_numpy()
        o = pd.to_numeric(comp["ours"], errors="coerce").to_numpy(dtype=float)
        tol = TOLERANCES[name][quantity]
        # the band spans every point, ours included, with a margin: over the paper's range alone it was a sliver
        # (a single paper value made it a point)
        values = np.concatenate([p, o[~np.isnan(o)]])
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        margin = 0.1 * (hi - lo) or 0.1 * max(abs(hi), 1e-9)
        grid = (np.geomspace(max(lo, 1.0) / 1.5, hi * 1.5, 50) if quantity == "params"
                else np.linspace(lo - margin, hi + margin, 50))
        # ours - paper against the paper's value: the tolerance band stays visible at any scale (a 2% band
        # around the diagonal of a log-log plot of counts was thinner than a pixel)
        ax.fill_between(grid, -tol.bound(grid), tol.bound(grid), color=PAPER, alpha=0.3, lw=0, label="tolerance")
        ax.axhline(0, color=PAPER, lw=0.8)
        ax.scatter(p, o - p, s=8, color=OURS, zorder=3)
        ax.set_xlabel(paper_label(quantity))
        ax.set_ylabel("ours - paper")
        if quantity == "params":  # counts span 256 to 590k
            ax.set_xscale("log")
        ax.set_title(f"{name}: {quantity}")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def save_present(tables: dict[str, pd.DataFrame], names: dict[str, str], run: str | None = None) -> list[Path]:
    """Save each of `tables` that is present under its result name (`names`: table key -> result name)."""
    return [save(tables[key], name, run) for key, name in names.items() if key in tables]
