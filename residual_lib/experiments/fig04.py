"""Figure 4 (and 9-15): spectral similarity of each head between a reference dataset and others (Section 3.3).

Per model and dataset, every head's normalised spectral cosine similarity with its reference-dataset
self (`residual_lib.analysis.spectral`); the dataset order beside the paper's; the heads that stand out,
described by SOMP over the first model's text embeddings (Fig 4b) and, on the toy world, checked with
linear probes; with several models, the correlation of their dataset profiles (Fig 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ..store import cache
from ..report import plots_spectral, style
from ..store.cache import CacheKey
from ..data.datasets import dataset_spec
from ..models.registry import load_model
from ..models.text import encode_texts
from ..paper.reference import reference
from ..report.plots_spectral import order_by_role, dataset_display, model_display, order_agreement, order_table
from ..analysis.pursuit import signals_from_units, somp
from ..analysis.spectral import (cross_model_correlation, dataset_order, dataset_similarities, sampling_null,
                                 similarity_matrix, standout_heads)
from ..claims.checks import NULL_SD
from ..data.text_dictionary import text_dictionary
from ..units.unit_set import head_name, parse_unit
from .base import (
    CacheDtype, ComputeParams, Dictionary, ParamsError, Result, computes, nonempty, positive, readings_text)
from .fig03 import PAPER_MODEL, paper_heads

# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol); the paper profile sets these.
AUTHORS = {"similarity_matching": "weighted", "somp_aggregate": "l1"}
TOY_DATASETS = ["toy-colour", "toy-shape", "toy-pattern", "toy-position", "toy-size", "toy-background",
                "toy-sketch", "toy-textured", "toy-digits", "toy-noise"]


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["toy-clip"])  # several -> Fig 9
    reference_dataset: str = "toy-mixed"  # the paper: ImageNet (train)
    datasets: list[str] = field(default_factory=lambda: list(TOY_DATASETS))
    split: str = "train"
    n: int | None = 1000  # images per cache (all of a split if it is smaller); None: every split whole
    n_reference: int | None = 2000  # images of the reference dataset
    seed: int = 0
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    evr_threshold: float = 0.9  # each head's basis keeps the components that explain this much variance
    null_draws: int = 10  # the sampling null: draws of two disjoint random halves of the reference dataset
    n_standout: int = 3  # heads described with SOMP (Fig 4b)
    dictionary: Dictionary = "toy"  # for SOMP; "gandelsman-general" is the paper's
    somp_k: int = 5  # descriptions per head
    somp_aggregate: Literal["l2", "l1"] = "l2"  # l2: SOMP equals TextSpan (App. A.2); l1: the authors' code
    attribute_probe: bool = True  # toy world only: check the descriptions against linear probes
    # where the paper's text and the authors' code differ (residual_lib.paper.protocol; the paper profile sets theirs):
    similarity_matching: Literal["cosine", "weighted", "index"] = "cosine"  # Eq. 3's greedy matching (spectral)

    def check(self) -> None:
        nonempty(self, "models", "datasets")
        positive(self, "n", "n_reference", "batch_size", "n_standout", "somp_k", "null_draws")
        if not 0 < self.evr_threshold <= 1:
            raise ParamsError(f"parameter evr_threshold={self.evr_threshold!r} must be in (0, 1]")


def _n_for(dataset: str, split: str, wanted: int | None) -> int | None:
    """`wanted` images, or None (the whole split) when the split is no larger."""
    return None if wanted is None or dataset_spec(dataset).splits[split]["size"] <= wanted else wanted


def _model_caches(p: Params, model: str) -> tuple[CacheKey, list[CacheKey]]:
    """The reference cache of one model, and its cache of each dataset."""
    def key(dataset: str, wanted: int | None) -> CacheKey:
        return CacheKey(model, dataset, p.split, _n_for(dataset, p.split, wanted), p.seed, p.cache_dtype)
    return key(p.reference_dataset, p.n_reference), [key(d, p.n) for d in p.datasets]


def caches(p: Params) -> list[CacheKey]:
    """Per model: the reference dataset's cache, then one per dataset (n=None: a split no larger than wanted)."""
    keys = []
    for model in p.models:
        ref, others = _model_caches(p, model)
        keys += [ref, *others]
    return keys


def _extract(model, key: CacheKey, p: Params):
    return cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())


@computes
def run(p: Params) -> Result:
    """Similarities per model, dataset and head; dataset orders; standout heads; the cross-model correlation."""
    tables, nulls, first = [], [], None
    for name in p.models:
        model = load_model(name, device=p.device)
        ref_key, keys = _model_caches(p, name)
        ref = _extract(model, ref_key, p)
        others = {dataset_display(k.dataset): _extract(model, k, p) for k in keys}
        tables.append(dataset_similarities(ref, others, evr_threshold=p.evr_threshold, device=p.device,
                                           matching=p.similarity_matching)
                      .assign(model=model_display(name)))
        nulls.append(sampling_null(ref, n_draws=p.null_draws, seed=p.seed, evr_threshold=p.evr_threshold,
                                   device=p.device, matching=p.similarity_matching).assign(model=model_display(name)))
        first = first or (name, model, ref)
    similarities, null = pd.concat(tables, ignore_index=True), pd.concat(nulls, ignore_index=True)
    matrices = {m: similarity_matrix(t) for m, t in similarities.groupby("model", sort=False)}
    order, fig4_order, agreements = _orders(similarities)
    first_label = next(iter(matrices))
    first_table = similarities[similarities["model"] == first_label]
    by_layer = first_table.groupby("layer")["similarity"].mean()
    first_null = null[null["model"] == first_label]
    standout, probe_tables, probe_text = _standout(first_table, *first, p)
    paper_corr = reference("fig9")
    corr = _correlation(similarities, set(paper_corr["model_a"]))
    out = {"similarities": similarities, "null": null, "order": order, "fig4_order": fig4_order,
           "by_layer": by_layer.rename("mean similarity over heads and datasets").reset_index().merge(
               null_band(first_null, "layer"), on="layer"),
           "standout": standout, **probe_tables, "paper_4b": _paper_4b()}
    if corr is not None:
        out["fig9"] = corr.rename_axis(index="model_a", columns="model_b").stack().rename("pearson").reset_index()
    findings = _findings(first_table, by_layer, agreements[first_label], p) | _null_findings(first_table, first_null) | {
        "probe_text": probe_text, "corr_text": _corr_text(corr), "readings": readings_text(p, AUTHORS),
        "paper_corr_mean": float(paper_corr.loc[paper_corr["model_a"] != paper_corr["model_b"], "pearson"].mean())}
    return Result(p, tables=out, findings=findings,
                  artifacts={"matrices": matrices, "correlation": corr, "paper_correlation": paper_corr})


def null_band(null: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """The sampling null's mean similarity over heads (per `by` group, e.g. layer) and its spread over draws: mean
    over draws, and the low end mean - NULL_SD sd (what a dataset must fall below to differ beyond sampling)."""
    keys = ["draw"] + ([by] if by else [])
    per_draw = null.groupby(keys)["similarity"].mean()
    grouped = per_draw.groupby(level=by) if by else per_draw.groupby(lambda _: 0)
    band = pd.DataFrame({"sampling null": grouped.mean(), "null sd": grouped.std(ddof=1)})
    band["null low end"] = band["sampling null"] - NULL_SD * band["null sd"]
    return band.reset_index() if by else band.reset_index(drop=True)


def _null_findings(first_table: pd.DataFrame, first_null: pd.DataFrame) -> dict:
    band = null_band(first_null).iloc[0]
    means = first_table.groupby("dataset")["similarity"].mean()
    below = means.index[means < band["null low end"]]
    return {"null_mean": float(band["sampling null"]), "null_low": float(band["null low end"]),
            "null_draws": int(first_null["draw"].nunique()), "n_below_null": len(below), "n_datasets": len(means),
            "above_null_text": ", ".join(means.index[means >= band["null low end"]]) or "none"}


def _correlation(similarities: pd.DataFrame, paper_models: set[str]) -> pd.DataFrame | None:
    """Fig 9 over the paper's Fig 9 models when the build has two of them (its B models have Figs 12-13 only),
    else over every model; None with one model."""
    models = list(dict.fromkeys(similarities["model"]))
    shared = [m for m in models if m in paper_models]
    chosen = shared if len(shared) > 1 else models
    if len(chosen) < 2:
        return None
    return cross_model_correlation(similarities[similarities["model"].isin(chosen)])


def _orders(similarities: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Per model: our dataset order beside the paper's (display and `fig4_order` rows) and their Spearman rho."""
    paper_orders = reference("fig4_order")
    shown, rows, agreements = [], [], {}
    for m, table in similarities.groupby("model", sort=False):
        ours = dataset_order(table)
        paper_model = m if m in set(paper_orders["model"]) else "OpenCLIP-L"
        theirs = paper_orders[paper_orders["model"] == paper_model]
        figure = theirs["figure"].iloc[0] if m == paper_model else "ours"
        rows += [{"figure": figure, "model": m, "rank": i + 1, "dataset": d} for i, d in enumerate(ours)]
        agreements[m] = order_agreement(ours, theirs)
        common = [d for d in ours if d in set(theirs["dataset"])]
        if len(common) >= 3:  # ranks compare only over the same datasets
            table = order_table(common, theirs[theirs["dataset"].isin(common)]).set_axis(
                ["rank among shared", "this build", style.paper_label("order")], axis=1)
        else:
            table = order_by_role(ours, theirs)
        shown.append(table.assign(model=m, compared_with=f"Fig {theirs['figure'].iloc[0]}, {paper_model}")
                     [["model", "compared_with", *table.columns]])
    return pd.concat(shown, ignore_index=True), pd.DataFrame(rows), agreements


def _findings(first_table: pd.DataFrame, by_layer: pd.Series, rho: float, p: Params) -> dict:
    by_dataset = first_table.groupby("dataset")["similarity"].mean().sort_values(ascending=False)
    roles = {dataset_display(d): dataset_spec(d).role for d in p.datasets}
    by_role = first_table.assign(role=first_table["dataset"].map(roles)).groupby("role")["similarity"].mean()
    return {
        "first_model": first_table["model"].iloc[0], "reference_name": dataset_display(p.reference_dataset),
        "sim_first_layer": float(by_layer.iloc[0]), "sim_last_layer": float(by_layer.iloc[-1]),
        "top_dataset": by_dataset.index[0], "top_sim": float(by_dataset.iloc[0]),
        "bottom_dataset": by_dataset.index[-1], "bottom_sim": float(by_dataset.iloc[-1]),
        "median_k": float(first_table["k_b"].median()),
        "role_text": "; ".join(f"{role} datasets {value:.2f}" for role, value in by_role.items()),
        "order_rho": "not defined (fewer than three datasets in common with the paper's)" if np.isnan(rho)
        else f"{rho:.2f}",
    }


def _standout(first_table: pd.DataFrame, name: str, model, ref, p: Params) -> tuple[pd.DataFrame, dict, str]:
    """The standout heads of the first model, their SOMP descriptions on the reference dataset (and, on the paper's
    model, those of the heads Fig 4b names, as `fig4b_descriptions`), the probe check."""
    standout = standout_heads(first_table, n=p.n_standout)
    no_probe = "No attribute probe in this build (the datasets have no known attributes)."
    if not model.has_text:
        return standout, {}, no_probe
    texts = text_dictionary(p.dictionary)
    # float32 embeddings, normalised before the float64 pursuit: the page's numbers were made this way; encoded in
    # the batches every other page uses, so they read the same stored embeddings (`models.text.stored_embeddings`)
    atoms = encode_texts(model.encode_text, texts)
    atoms = (atoms / atoms.norm(dim=1, keepdim=True)).cpu().numpy()
    named = paper_heads("4b") if model_display(name) == PAPER_MODEL else {}
    named_units = {head_name(*lh): role for lh, role in named.items() if head_name(*lh) in set(ref.heads)}
    units = list(dict.fromkeys([*standout["unit"], *named_units]))
    signals = signals_from_units(ref, units, device=p.device)
    described = somp(signals, atoms, k=p.somp_k, aggregate=p.somp_aggregate, device=p.device).texts(texts)
    standout["SOMP descriptions"] = [" | ".join(described[u]) for u in standout["unit"]]
    extra = {"fig4b_descriptions": _named_rows(described, named_units)} if named_units else {}
    if not p.attribute_probe:
        return standout, extra, no_probe
    from ..analysis.probe import cache_attributes, probe_accuracy, skill, text_vs_probe
    from ..toy.world import ATTRIBUTES

    skills = skill(probe_accuracy(ref, cache_attributes(ref), names=standout["unit"].tolist(), seed=p.seed))
    check = text_vs_probe(described, skills, ATTRIBUTES)
    text = (f"For {int(check['agree'].sum())} of the {len(check)} standout heads the attribute named most "
            "by the SOMP descriptions is the one a linear probe decodes best.")
    return standout, extra | {"standout_skill": skills, "standout_check": check}, text


def _named_rows(described: dict[str, list[str]], roles: dict[str, str]) -> pd.DataFrame:
    """SOMP's descriptions of the heads Fig 4b names, in the paper's long format (figure, layer, ..., text)."""
    rows = []
    for unit, role in roles.items():
        _, layer, head = parse_unit(unit)
        rows += [{"figure": "4b", "layer": layer, "head": head, "role": role, "method": "SOMP", "rank": rank,
                  "text": text} for rank, text in enumerate(described[unit], start=1)]
    return pd.DataFrame(rows)


def _corr_text(corr: pd.DataFrame | None) -> str:
    if corr is None:
        return "This build has one model, so it has no cross-model correlation of its own."
    off = corr.to_numpy()[~np.eye(len(corr), dtype=bool)]
    return f"The mean off-diagonal correlation across this build's {len(corr)} models is {off.mean():.2f}."


def _paper_4b() -> pd.DataFrame:
    """The paper's Fig 4b descriptions of OpenCLIP-L's standout heads, one row per head."""
    paper = reference("fig3_descriptions")
    paper = paper[paper["figure"] == "4b"]
    return (paper.assign(head=lambda d: "L" + d["layer"].astype(str) + ".H" + d["head"].astype(str))
            .groupby(["head", "role"], sort=False)["text"].apply(" | ".join)
            .rename(style.paper_label("Fig 4b, OpenCLIP-L")).reset_index())


def plot_heatmaps(result: Result):
    """Per model: each head's similarity with the reference dataset, one row per dataset (Fig 4a, 10-15)."""
    return plots_spectral.plot_similarity_heatmaps(result.artifacts["matrices"],
                                                   dataset_display(result.params.reference_dataset))


def plot_by_layer(result: Result):
    """Per model: each dataset's mean similarity per layer beside the sampling null's band (two halves of the
    reference): how far each dataset falls below what a fresh sample of the reference itself gives."""
    return plots_spectral.plot_similarity_by_layer(result.tables["similarities"], result.tables["null"],
                                                   dataset_display(result.params.reference_dataset), NULL_SD)


def plot_correlation(result: Result):
    """Fig 9: the correlation of the models' dataset profiles, this build's beside the paper's; None with a single
    model (the paper's values alone are a table, `paper_correlation`: a figure of this build draws what it computed)."""
    if result.artifacts["correlation"] is None:
        return None
    return plots_spectral.plot_cross_model_correlation(result.artifacts["correlation"],
                                                       result.artifacts["paper_correlation"])


def paper_correlation(result: Result) -> pd.DataFrame:
    """The paper's Figure 9 as a model x model table."""
    paper = result.artifacts["paper_correlation"]
    order = list(dict.fromkeys(paper["model_a"]))
    return paper.pivot(index="model_a", columns="model_b", values="pearson").loc[order, order].rename_axis(
        index="model", columns=None)


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`)."""
    roles = {dataset_display(d): dataset_spec(d).role for d in result.params.datasets}
    table = result.tables["similarities"][["model", "dataset", "unit", "layer", "similarity"]]
    return {"similarity": table.assign(role=table["dataset"].map(roles)),
            "null": result.tables["null"][["model", "unit", "layer", "draw", "similarity"]]}
