"""Figure 2 (and 7): intrinsic dimension of attention heads across depth (Section 3.1).

Per head: linear ID (components for `threshold` of the variance), TwoNN ID, their ratio and EVR1,
averaged over each layer's heads; the paper's panel beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from ..store import cache
from ..store.cache import CacheKey
from ..data.datasets import dataset_spec
from ..analysis.intrinsic_dim import layer_summary, paper_ratio_check, unit_intrinsic_dimensions
from ..models.registry import load_model
from ..paper.reference import reference
from ..report.plots_spectral import model_display, plot_intrinsic_dimension, side_table
from .base import (
    CacheDtype, ComputeParams, ParamsError, Result, computes, in_range, nonempty, positive, readings_text)


# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol).
AUTHORS = {"ratio": "of_means", "sample": "authors_code"}
# The authors' sample (experiments/experiment1.py, sample_limit): this many rows of the split, uniform, seed 42.
AUTHORS_SAMPLE, AUTHORS_SEED = 50_000, 42


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["toy-clip"])  # registered names or open_clip architectures
    dataset: str = "toy-mixed"  # the reference dataset (the paper: 80k stratified ImageNet train)
    split: str = "train"
    n: int | None = 2000  # images per cache; None: the whole split
    seed: int = 0  # which subset of the split
    cache_dtype: CacheDtype = "float32"  # storage of the unit cache
    batch_size: int = 64
    device: str = "auto"
    threshold: float = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
    discard_fraction: float = 0.1  # TwoNN: largest ratios left out of the fit (Facco et al.)
    # the saved `ratio` column (what the claim ledger reads): "mean_of_heads", the mean over a layer's heads of
    # linear / TwoNN, or "of_means", the layer's mean linear ID / its mean TwoNN ID. The authors' notebook
    # experiments/experiment1.ipynb (Flegyas/ResiDual) took the first in its code release (13b306c, 2024-12-01:
    # `(pca_id[m] / twonn_id[m]).mean(dim=1)`) and the second from 1fd5654 (2025-01-19) on, 004b0aa included
    # (`ratio_mean = pca_mean / twonn_mean`); the paper's printed table matches the first (the page checks it)
    ratio: Literal["mean_of_heads", "of_means"] = "mean_of_heads"
    # which rows: n of the split (seed), the paper's text (80k stratified ImageNet train in the paper profile), or
    # the authors' code: AUTHORS_SAMPLE rows of the split drawn uniformly without replacement, seed 42 (all of them
    # when fewer); n and seed then do not apply
    sample: Literal["paper_text", "authors_code"] = "paper_text"

    def check(self) -> None:
        nonempty(self, "models")
        positive(self, "n", "batch_size")
        if not 0 < self.threshold < 1:
            raise ParamsError(f"parameter threshold={self.threshold!r} must be in (0, 1)")
        in_range(self, "(0, 1)", "discard_fraction")  # TwoNN fits on what is left after the discard


def rows(p: Params) -> tuple[int | None, int]:
    """(n, seed) of the cache's subsample under the chosen sample reading."""
    if p.sample == "paper_text":
        return p.n, p.seed
    return min(AUTHORS_SAMPLE, int(dataset_spec(p.dataset).splits[p.split]["size"])), AUTHORS_SEED


def caches(p: Params) -> list[CacheKey]:
    """One cache of the reference dataset per model."""
    n, seed = rows(p)
    return [CacheKey(m, p.dataset, p.split, n, seed, p.cache_dtype) for m in p.models]


@computes
def run(p: Params) -> Result:
    """Per-head and per-layer intrinsic dimensions for every model; findings for the page's prose."""
    per_head, summaries, d_head = {}, {}, {}
    for key in caches(p):
        model = load_model(key.model, device=p.device)
        units = cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())
        label = model_display(key.model)
        d_head[label] = model.d_head
        per_head[label] = unit_intrinsic_dimensions(units, threshold=p.threshold,
                                                    discard_fraction=p.discard_fraction, device=p.device)
        summaries[label] = layer_summary(per_head[label])
    layers = pd.concat([s.assign(model=m) for m, s in summaries.items()], ignore_index=True)
    heads = pd.concat([h.assign(model=m) for m, h in per_head.items()], ignore_index=True)
    paper = reference("fig2")
    check = paper_ratio_check(paper)
    return Result(p, tables={"layers": layers, "heads": heads, "paper": paper, "paper_ratio_check": check,
                             "fig2": layers.rename(columns={f"ratio_{p.ratio}": "ratio"})[
                                 ["model", "layer", "linear_id", "twonn_id", "ratio", "evr1"]]},
                  findings=_findings(summaries, paper, check) | {"readings": readings_text(p, AUTHORS)},
                  artifacts={"summaries": summaries, "d_head": d_head})


def _findings(summaries: dict[str, pd.DataFrame], paper: pd.DataFrame, check: pd.DataFrame) -> dict:
    first = next(iter(summaries))
    s0 = summaries[first]
    worst = check.loc[check["printed_minus_ratio_of_means"].abs().idxmax()]
    ours_all = pd.concat(summaries.values())
    gap = (ours_all["ratio_mean_of_heads"] - ours_all["ratio_of_means"]).abs()
    ends = paper.groupby("model").agg(ratio_first=("ratio", "first"), ratio_last=("ratio", "last"),
                                      evr_first=("evr1", "first"), evr_last=("evr1", "last"))
    span = {k: f"{ends[k].min():.2f}-{ends[k].max():.2f}" for k in ends}
    mean_ratio = float(s0["ratio_mean_of_heads"].mean())
    return {
        "models_text": ", ".join(summaries), "first_model": first, "n_layers": len(s0),
        "lin_first": float(s0["linear_id"].iloc[0]), "lin_last": float(s0["linear_id"].iloc[-1]),
        "nn_first": float(s0["twonn_id"].iloc[0]), "nn_last": float(s0["twonn_id"].iloc[-1]),
        "nn_peak": float(s0["twonn_id"].max()), "nn_peak_layer": int(s0.loc[s0["twonn_id"].idxmax(), "layer"]),
        "ratio_first": float(s0["ratio_mean_of_heads"].iloc[0]),
        "ratio_last": float(s0["ratio_mean_of_heads"].iloc[-1]),
        "evr_first": float(s0["evr1"].iloc[0]), "evr_last": float(s0["evr1"].iloc[-1]),
        "mean_ratio": mean_ratio,
        "n_paper_rows": len(check), "n_paper_off": int((~check["matches_ratio_of_means"]).sum()),
        "paper_worst": f"{worst['model']} layer {worst['layer']}: printed {worst['ratio']:.2f}, "
                       f"L / N of the printed means {worst['ratio_of_means']:.2f}",
        "our_max_gap": float(gap.max()), "our_mean_gap": float(gap.mean()),
        "paper_ratio_first": span["ratio_first"], "paper_ratio_last": span["ratio_last"],
        "paper_evr_first": span["evr_first"], "paper_evr_last": span["evr_last"],
    }


def side_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The paper's side table (per-layer means) for each model of the build."""
    return {label: side_table(s) for label, s in result.artifacts["summaries"].items()}


def plot(result: Result):
    """Linear ID, TwoNN ID, ratio and EVR1 per layer, ours above the paper's panel."""
    p = result.params
    return plot_intrinsic_dimension(result.artifacts["summaries"], result.tables["paper"],
                                    title=f"Intrinsic dimension of heads on {p.dataset} ({p.split}, n={rows(p)[0]})")


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`)."""
    layers = result.tables["fig2"]
    return {"layers": layers.assign(d_head=layers["model"].map(result.artifacts["d_head"]))}
