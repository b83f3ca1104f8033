"""Section 3's geometry on real pretrained ViTs (DINOv2-S, CLIP-B/16's image tower), with ground truth the paper did
not have.

On each model of `models` and a labelled reference dataset (Fashion-MNIST train by default), every table with a
model column:

- Figure 2's per-layer means (linear ID, TwoNN ID, their ratio, EVR1; `residual_lib.analysis.intrinsic_dim`) beside
  the paper's panel of the model's family (its manifest's `paper_model`: DINOv2-L for DINOv2-S, CLIP-B for CLIP
  ViT-B/16), on one axis of depth (the layer as a fraction of the model's depth);
- Figure 4's spectral similarity of every head between the reference and each other dataset
  (`residual_lib.analysis.spectral`), the dataset order beside the paper's figure for the family (Figure 14, 12),
  the heads that stand out; across models, Figure 9's correlation of their dataset profiles on the datasets both saw;
- a linear probe of the reference class on every head (`residual_lib.analysis.probe`), and for the heads that stand
  out (best probe, most dataset-specific) the images at both ends of their first principal component
  (`residual_lib.analysis.pc_extremes`);
- the claim ledger's verdicts on these tables (`residual_lib.claims`), filed as the Figure 2 and Figure 4
  pages' tables of these models (so the cross-model claim reads every real network).

A compared dataset is named ``dataset`` (its `split`) or ``dataset/split`` (e.g. the reference's own test split).
"""

from __future__ import annotations

from contextlib import nullcontext
from itertools import combinations
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import claims
from ..store import cache
from ..report import plots_spectral, style
from ..store.cache import CacheKey
from ..data.datasets import dataset_spec, load_dataset
from ..analysis.intrinsic_dim import layer_summary, unit_intrinsic_dimensions
from ..models.registry import load_model, model_spec
from ..paper.reference import reference
from ..analysis.pc_extremes import pc_extremes, plot_pc_extremes
from ..analysis.pca import UnitPCA
from ..report.plots_spectral import dataset_display, model_display, order_agreement, order_table
from ..analysis.probe import probe_accuracy
from ..claims.checks import MIN_SHARED_DATASETS
from ..analysis.spectral import dataset_order, sampling_null, dataset_similarities, similarity_matrix, standout_heads
from ..units.unit_set import UnitSet, parse_unit
from .base import CacheDtype, ComputeParams, ParamsError, Result, computes, in_range, nonempty, positive

PAGE_IDS = "fig02_intrinsic_dimension", "fig04_spectral_dataset_similarity"  # whose claims this page tests
# Offline datasets nearest in kind to one of the paper's Figure 4 datasets: where each falls in the order
COUNTERPARTS = {"sklearn-digits": "MNIST", "mnist": "MNIST", "random": "Random", "random-blobs": "Random"}


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["dinov2-s", "clip-b16-image-112"])  # registered, each with a
    # paper_model in its manifest (data_manifests/models)
    reference_dataset: str = "fashion-mnist"  # labelled: its class is what the probes decode
    datasets: list[str] = field(default_factory=lambda: ["fashion-mnist/test", "sklearn-digits", "lfw-subset",
                                                         "random"])  # compared with the reference
    split: str = "train"  # of the reference, and of each compared dataset named without "/split"
    # images per compared dataset (a split no larger is used whole) and of the reference: one count for every model,
    # or a list with one per model
    n: int | None | list[int | None] = field(default_factory=lambda: [400, 100])
    n_reference: int | None | list[int | None] = field(default_factory=lambda: [2000, 400])
    seed: int = 0  # which subset of each split
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    threshold: float = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
    discard_fraction: float = 0.1  # TwoNN: largest ratios left out of the fit
    evr_threshold: float = 0.9  # spectral similarity: each head's basis keeps this much variance
    null_draws: int = 10  # the sampling null: draws of two disjoint random halves of the reference dataset
    probe_test_fraction: float = 0.3  # held-out share of the reference images for the class probes
    n_standout: int = 3  # most dataset-specific heads shown with thumbnails (besides the best probe head)
    n_thumbnails: int = 6  # images at each end of a head's first principal component

    def check(self) -> None:
        nonempty(self, "models", "datasets")
        positive(self, "batch_size", "n_standout", "n_thumbnails")
        if len(set(self.models)) < len(self.models):
            raise ParamsError(f"parameter models={self.models!r} names a model twice")
        for name in ("n", "n_reference"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.models):
                raise ParamsError(f"parameter {name}={value!r} has {len(value)} counts for {len(self.models)} models "
                                  f"{self.models}; give one count, or one per model")
            if any(v is not None and v <= 0 for v in (value if isinstance(value, list) else [value])):
                raise ParamsError(f"parameter {name}={value!r} must be positive")
        for model in self.models:
            try:
                paper_model(model)
            except KeyError as err:
                raise ParamsError(f"model {model!r}: {err.args[0]}") from None
        for name in ("threshold", "probe_test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ParamsError(f"parameter {name}={getattr(self, name)!r} must be in (0, 1)")
        if not 0 < self.evr_threshold <= 1:
            raise ParamsError(f"parameter evr_threshold={self.evr_threshold!r} must be in (0, 1]")
        in_range(self, "(0, 1)", "discard_fraction")  # TwoNN fits on what is left after the discard
        for entry in [self.reference_dataset, *self.datasets]:
            name, split = compared(entry, self.split)
            try:
                spec = dataset_spec(name)
            except KeyError as err:
                raise ParamsError(f"dataset {entry!r}: {err.args[0]}") from None
            if split not in spec.splits:
                raise ParamsError(f"dataset {entry!r}: {name} has no split {split!r}; valid: {', '.join(spec.splits)}")
        if compared(self.reference_dataset, self.split) in [compared(d, self.split) for d in self.datasets]:
            raise ParamsError(f"datasets repeat the reference {self.reference_dataset!r} ({self.split}); "
                              "compare another split of it, e.g. 'fashion-mnist/test'")
        labels = [label(d, self.split) for d in self.datasets]
        if len(set(labels)) < len(labels):
            raise ParamsError(f"datasets {self.datasets} are shown under the same name twice ({labels}); "
                              "keep one of each")


def paper_model(name: str) -> str:
    """The paper's model of a registered model's family (its manifest's `paper_model`): the panels shown beside it."""
    papers = sorted(set(reference("fig2")["model"]) & set(reference("fig4_order")["model"]))
    found = model_spec(name).extra.get("paper_model")
    if found not in papers:
        raise KeyError(f"its manifest's paper_model is {found!r}; this page needs one of {', '.join(papers)}")
    return found


def per_model(p: Params, name: str) -> dict[str, int | None]:
    """A count parameter (`n`, `n_reference`) as {model: count}."""
    value = getattr(p, name)
    return dict(zip(p.models, value if isinstance(value, list) else [value] * len(p.models)))


def compared(entry: str, split: str) -> tuple[str, str]:
    """("dataset", "split") of a compared-dataset entry: "name" (in `split`) or "name/other-split"."""
    name, _, own = entry.partition("/")
    return name, own or split


def label(entry: str, split: str) -> str:
    """How a compared dataset is shown: its paper name, with its split when that is not `split`."""
    name, own = compared(entry, split)
    return dataset_display(name) + ("" if own == split else f" ({own})")


def _n_for(dataset: str, split: str, wanted: int | None) -> int | None:
    """`wanted` images, or None (the whole split) when the split is no larger."""
    return None if wanted is None or dataset_spec(dataset).splits[split]["size"] <= wanted else wanted


def _key(p: Params, model: str, entry: str, wanted: int | None) -> CacheKey:
    name, split = compared(entry, p.split)
    return CacheKey(model, name, split, _n_for(name, split, wanted), p.seed, p.cache_dtype)


def model_caches(p: Params, model: str) -> list[CacheKey]:
    """One model's reference cache, then one per compared dataset (n=None: a split no larger than wanted)."""
    n, n_reference = per_model(p, "n")[model], per_model(p, "n_reference")[model]
    return [_key(p, model, p.reference_dataset, n_reference), *[_key(p, model, d, n) for d in p.datasets]]


def caches(p: Params) -> list[CacheKey]:
    """Per model: the reference dataset's cache, then one per compared dataset."""
    return [k for model in p.models for k in model_caches(p, model)]


def _extract(model, key: CacheKey, p: Params):
    return cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())


def _compared_beside(keys: list[CacheKey], p: Params):
    """On the CPU, the compared datasets' caches are extracted by a helper process while this one extracts the
    reference's (two cores, each on its own forward passes); on a GPU, one after the other here. With `threads=1`
    (the toy and smoke books, two pages at once on two cores) the page keeps to its one core: a helper would only
    share it with the page beside, after paying for its own interpreter and model load."""
    from ..device import resolve_device
    from ..store.jobs import ExtractJob, beside

    if resolve_device(p.device).type != "cpu" or p.threads == 1:
        return nullcontext()
    return beside([ExtractJob(k, device="cpu", batch_size=p.batch_size) for k in keys], threads=p.threads)


def depth_fraction(layers: pd.Series) -> pd.Series:
    """Layer index as a fraction of depth: 0 for the first layer, 1 for the last."""
    return layers.astype(float) / max(1, int(layers.max()))


@computes
def run(p: Params) -> Result:
    """Per model: IDs per layer, similarities per head and dataset, class probes per head, PC-end images; across
    models: Figure 9's correlation on the shared datasets; the claim verdicts on every model's tables."""
    data = load_dataset(p.reference_dataset, compared(p.reference_dataset, p.split)[1])
    each = [_one_model(p, name, data) for name in p.models]
    tables = {k: pd.concat([t[k] for t, _ in each], ignore_index=True) for k in each[0][0]}
    tables["cross_model"] = cross_model_table(tables["similarity"])
    tables["verdicts"] = verdicts(tables)
    artifacts = {"models": {name: a for name, (_, a) in zip(p.models, each)}, "dataset": data,
                 "extremes": {f"{a['display']} {u}": ends for _, a in each for u, ends in a["extremes"].items()}}
    return Result(p, tables=tables, findings=_findings(p, tables, artifacts), artifacts=artifacts)


def _one_model(p: Params, name: str, data) -> tuple[dict[str, pd.DataFrame], dict]:
    """One model's tables (each with its display name in a `model` column) and artifacts."""
    model = load_model(name, device=p.device)  # converts the weights (once) before any helper starts
    display, paper = model_display(name), paper_model(name)
    ref_key, *keys = model_caches(p, name)
    with _compared_beside(keys, p):
        ref = _extract(model, ref_key, p)
    others = {label(d, p.split): _extract(model, k, p) for d, k in zip(p.datasets, keys)}
    pca = UnitPCA(units=ref.heads, device=p.device, progress=False).fit(ref)

    heads = unit_intrinsic_dimensions(ref, pca=pca, threshold=p.threshold, discard_fraction=p.discard_fraction,
                                      device=p.device)
    layers = (layer_summary(heads).rename(columns={"ratio_mean_of_heads": "ratio"}).assign(d_head=model.d_head))
    layers["depth"] = depth_fraction(layers["layer"])
    paper_layers = reference("fig2").query("model == @paper").reset_index(drop=True)
    paper_layers["depth"] = depth_fraction(paper_layers["layer"])

    # role: another sample of the reference dataset differs from it in sampling only ("reference"), the others in
    # content ("ood"): the specialisation claim compares only the latter (`claims.checks.heads_specialise`)
    roles = {label(d, p.split): "reference" if compared(d, p.split)[0] == p.reference_dataset else "ood"
             for d in p.datasets}
    similarity = dataset_similarities(pca, others, evr_threshold=p.evr_threshold, device=p.device)
    similarity["role"] = similarity["dataset"].map(roles)
    null = sampling_null(ref, n_draws=p.null_draws, seed=p.seed, evr_threshold=p.evr_threshold, device=p.device)
    ours_order = dataset_order(similarity)
    paper_order = reference("fig4_order").query("model == @paper")
    standout = standout_heads(similarity, n=p.n_standout)

    probes = probe_accuracy(ref, {"class": ref.labels}, names=ref.heads, test_fraction=p.probe_test_fraction,
                            seed=p.seed)
    probes = probes.assign(layer=[parse_unit(u)[1] for u in probes["unit"]],
                           head=[parse_unit(u)[2] for u in probes["unit"]])
    shown = _shown_heads(probes, standout)
    extremes = {u: pc_extremes(ref, u, k=min(p.n_thumbnails, ref.n // 2)) for u in shown["unit"]}
    output = _output_probe(ref, p)
    tables = {"layers": layers, "heads": heads, "paper_layers": paper_layers, "similarity": similarity, "null": null,
              "order": order_table(ours_order, paper_order).set_axis(["rank", "this build", "paper's order"], axis=1)
              .assign(paper_figure=paper_order["figure"].iloc[0]),
              "standout": standout, "probes": probes, "shown": shown.merge(_end_classes(data, extremes), on="unit"),
              "counts": _counts(p, ref_key, keys, ref, others),
              "output_probe": pd.DataFrame([output]).assign(image_size=getattr(model, "image_size", None))}
    tables = {k: t.assign(model=display) for k, t in tables.items()}
    tables["paper_layers"] = tables["paper_layers"].assign(model=display, paper_model=paper)
    artifacts = {"display": display, "paper_model": paper, "matrix": similarity_matrix(similarity),
                 "extremes": extremes, "weights": getattr(model, "weights", None),
                 "image_size": getattr(model, "image_size", None), "order": ours_order, "paper_order": paper_order}
    return tables, artifacts


def cross_model_table(similarity: pd.DataFrame) -> pd.DataFrame:
    """Figure 9 on this page: per pair of models, the Pearson correlation of their per-dataset mean similarities
    over the datasets both saw (NaN below the ledger's minimum), beside the paper's mean over its five ViT-L models."""
    paper = reference("fig9")
    paper_mean = float(paper.loc[paper["model_a"] != paper["model_b"], "pearson"].astype(float).mean())
    profile = similarity.groupby(["dataset", "model"], sort=False)["similarity"].mean().unstack("model")
    rows = []
    for a, b in combinations(list(dict.fromkeys(similarity["model"])), 2):
        both = profile[[a, b]].dropna()
        rows.append({"model_a": a, "model_b": b, "datasets": len(both), "shared": ", ".join(both.index),
                     "pearson": float(both[a].corr(both[b])) if len(both) >= MIN_SHARED_DATASETS else np.nan,
                     "paper (Fig 9, mean over ViT-L pairs)": paper_mean})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "datasets", "shared", "pearson",
                                       "paper (Fig 9, mean over ViT-L pairs)"])


def claim_tables(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, pd.DataFrame]]:
    """The claim ledger's tables of the Figure 2 and Figure 4 pages for these models ({page: {table: frame}})."""
    fig02, fig04 = PAGE_IDS
    return {fig02: {"layers": tables["layers"][["model", "layer", "linear_id", "twonn_id", "ratio", "evr1", "d_head"]]},
            fig04: {"similarity": tables["similarity"][["model", "dataset", "unit", "layer", "similarity", "role"]],
                    "null": tables["null"][["model", "unit", "layer", "draw", "similarity"]]}}


def verdicts(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The ledger rows of the Figure 2 and Figure 4 claims on these models' tables (the cross-model claim once)."""
    return pd.concat([claims.page_verdicts(page, t) for page, t in claim_tables(tables).items()], ignore_index=True)


def record_claims(result: Result) -> None:
    """File these models' Figure 2 and Figure 4 tables with the claim ledger (other models' rows stay)."""
    for page, t in claim_tables(result.tables).items():
        claims.record(page, t)


def provenance_table(result: Result) -> pd.DataFrame:
    """Where each model's weights come from: its manifest, and the conversion record for converted weights."""
    from ..models import clip_onnx, dinov2_onnx

    converted = {w.weights_tag: w for w in (dinov2_onnx.WEIGHTS, clip_onnx.WEIGHTS)}
    rows = []
    for name, a in result.artifacts["models"].items():
        spec = model_spec(name)
        fields = {"architecture": spec.arch, "weights": a["weights"], "image size (px)": a["image_size"]}
        if a["weights"] in converted:
            fields |= {k: v for k, v in converted[a["weights"]].manifest().items() if not isinstance(v, dict)}
        else:
            fields["notes"] = spec.notes
        rows += [{"model": a["display"], "field": k, "value": str(v)} for k, v in fields.items()]
    return pd.DataFrame(rows)


def _output_probe(ref, p: Params) -> dict:
    """The same class probe on the model's own output (the sum of every unit), for scale."""
    emb = np.asarray(ref.embedding, dtype=np.float64)
    whole = UnitSet({"output": emb}, {"output": np.eye(emb.shape[1])}, {"output": np.zeros(emb.shape[1])},
                    emb, ref.labels)
    row = probe_accuracy(whole, {"class": ref.labels}, test_fraction=p.probe_test_fraction, seed=p.seed,
                         progress=False).iloc[0]
    return {"accuracy": float(row["accuracy"]), "chance": float(row["chance"])}


def _shown_heads(probes: pd.DataFrame, standout: pd.DataFrame) -> pd.DataFrame:
    """The best probe head, then the standout heads (each once): unit and why it is shown."""
    best = probes.loc[probes["accuracy"].idxmax()]
    rows = [{"unit": best["unit"], "why": f"best class probe ({best['accuracy']:.2f})"}]
    for _, s in standout.iterrows():
        why = f"stands out on {s['dataset']} ({s['gap']:.2f} below its layer)"
        if s["unit"] == rows[0]["unit"]:
            rows[0]["why"] += f"; {why}"
        else:
            rows.append({"unit": s["unit"], "why": why})
    return pd.DataFrame(rows)


def _end_classes(data, extremes: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Per shown head: the most frequent class among the images at each end of PC1, and its share."""
    names = data.spec.class_names
    rows = []
    for unit, (low, high) in extremes.items():
        row = {"unit": unit}
        for end, idx in (("low", low), ("high", high)):
            found = pd.Series([names[data[int(i)][1]] for i in idx]).value_counts()
            row[f"{end} end"], row[f"{end} share"] = found.index[0], float(found.iloc[0] / len(idx))
        rows.append(row)
    return pd.DataFrame(rows)


def _counts(p: Params, ref_key: CacheKey, keys: list[CacheKey], ref, others: dict) -> pd.DataFrame:
    """Images per dataset (what the page states it used)."""
    rows = [{"dataset": label(p.reference_dataset, p.split) + " (reference)", "split": ref_key.split, "images": ref.n}]
    rows += [{"dataset": lab, "split": k.split, "images": u.n} for (lab, u), k in zip(others.items(), keys)]
    return pd.DataFrame(rows)


def _claim_text(v: pd.DataFrame) -> dict[str, str]:
    def listed(*statuses: str) -> str:
        rows = v[v["status"].isin(statuses)]
        return ", ".join(f"{r['claim'].replace('_', ' ')} ({r['section']}, {r['model'] or 'across models'})"
                         for _, r in rows.iterrows()) or "none"
    return {"n_claims": len(v), "n_hold": int((v["status"] == "holds").sum()),
            "n_fail": int((v["status"] == "does not hold").sum()),
            "n_open": int(v["status"].isin(["inconclusive", "not testable"]).sum()),
            "claims_hold": listed("holds"), "claims_fail": listed("does not hold"),
            "claims_open": listed("inconclusive", "not testable")}


def _per_model(tables: dict[str, pd.DataFrame], model: str) -> dict[str, pd.DataFrame]:
    return {k: t[t["model"] == model].reset_index(drop=True) for k, t in tables.items() if "model" in t.columns}


def _ids_sentence(name: str, paper: str, t: dict[str, pd.DataFrame]) -> str:
    """Figure 2's numbers of one model beside its paper panel's, first layer to last."""
    ours, theirs = t["layers"], t["paper_layers"]
    peak, paper_peak = ours.loc[ours["twonn_id"].idxmax()], theirs.loc[theirs["twonn_id"].idxmax()]

    def span(col: str, digits: int) -> str:
        return (f"{ours[col].iloc[0]:.{digits}f} to {ours[col].iloc[-1]:.{digits}f} "
                f"(paper {theirs[col].iloc[0]:.{digits}f} to {theirs[col].iloc[-1]:.{digits}f})")
    return (f"{name} beside the paper's {paper}: linear ID {span('linear_id', 1)}; TwoNN ID {span('twonn_id', 1)}, "
            f"largest {peak['twonn_id']:.1f} at {peak['depth']:.2f} of the depth (paper {paper_peak['twonn_id']:.1f} "
            f"at {paper_peak['depth']:.2f}); L / N {span('ratio', 2)}; EVR1 {span('evr1', 2)}.")


def _similarity_sentence(name: str, t: dict[str, pd.DataFrame], a: dict, split: str, datasets: list[str]) -> str:
    """Figure 4's numbers of one model: its order, the trend over depth, the head that stands out, the paper's order."""
    sim = t["similarity"]
    by_layer, means = sim.groupby("layer")["similarity"].mean(), sim.groupby("dataset")["similarity"].mean()
    top, ours, paper_order = t["standout"].iloc[0], a["order"], a["paper_order"]
    theirs = paper_order.sort_values("rank")["dataset"].tolist()
    rho = order_agreement(ours, paper_order)
    placed = [(label(d, split), COUNTERPARTS[compared(d, split)[0]]) for d in datasets
              if compared(d, split)[0] in COUNTERPARTS]
    counterparts = "; ".join(f"{o} ranks {ours.index(o) + 1} of {len(ours)} here, {c} {theirs.index(c) + 1} of "
                             f"{len(theirs)} in the paper's" for o, c in placed) or "no dataset here has a counterpart"
    common = [d for d in ours if d in theirs]
    return (f"{name}: {', '.join(f'{d} ({means[d]:.2f})' for d in ours)}; mean similarity "
            f"{by_layer.iloc[0]:.2f} in the first layer and {by_layer.iloc[-1]:.2f} in the last (lowest "
            f"{by_layer.min():.2f}, layer {int(by_layer.idxmin())}); the head that stands out most is {top['unit']}, "
            f"{top['similarity']:.2f} on {top['dataset']}, {top['gap']:.2f} below its layer. The paper's Figure "
            f"{paper_order['figure'].iloc[0]} ({a['paper_model']}): {', '.join(theirs)}; in both orders: "
            f"{', '.join(common) or 'none'} (Spearman rho "
            f"{'not defined, fewer than three in common' if np.isnan(rho) else f'{rho:.2f}'}); {counterparts}.")


def _probe_sentence(name: str, t: dict[str, pd.DataFrame]) -> str:
    probes, output = t["probes"], t["output_probe"].iloc[0]
    best, worst = probes.loc[probes["accuracy"].idxmax()], probes.loc[probes["accuracy"].idxmin()]
    layer = probes.groupby("layer")["accuracy"].mean()
    return (f"{name}: best head {best['unit']} ({best['accuracy']:.2f}; the model's output "
            f"{output['accuracy']:.2f}, chance {output['chance']:.2f}), worst {worst['unit']} "
            f"({worst['accuracy']:.2f}), "
            f"median {probes['accuracy'].median():.2f}; layer means {layer.iloc[0]:.2f} in the first layer, "
            f"{layer.iloc[-1]:.2f} in the last, highest {layer.max():.2f} in layer {int(layer.idxmax())}.")


def _findings(p: Params, tables: dict[str, pd.DataFrame], artifacts: dict) -> dict:
    models = artifacts["models"]
    each = {a["display"]: (_per_model(tables, a["display"]), a) for a in models.values()}
    cross = tables["cross_model"]
    tested = cross.dropna(subset=["pearson"])
    cross_text = ("; ".join(f"{r['model_a']} and {r['model_b']}: r = {r['pearson']:.2f} over {r['datasets']} "
                            f"datasets ({r['shared']})" for _, r in tested.iterrows())
                  if len(tested) else "no two models of this build share three compared datasets")
    sizes = ", ".join(f"{name} at {a['image_size']} px on {t['counts']['images'].sum():,} images "
                      f"({', '.join(f'{r.dataset} {r.images:,}' for r in t['counts'].itertuples())})"
                      for name, (t, a) in each.items())
    return {
        "models_text": ", ".join(each), "paper_models_text": ", ".join(
            f"{a['paper_model']} for {name}" for name, (_, a) in each.items()),
        "reference_name": label(p.reference_dataset, p.split), "counts_text": sizes,
        "ids_text": " ".join(_ids_sentence(name, a["paper_model"], t) for name, (t, a) in each.items()),
        "similarity_text": " ".join(_similarity_sentence(name, t, a, p.split, p.datasets)
                                    for name, (t, a) in each.items()),
        "probe_text": " ".join(_probe_sentence(name, t) for name, (t, _) in each.items()),
        "ends_text": "; ".join(f"{name} {r['unit']}: {r['low share']:.0%} {r['low end']} at the low end, "
                               f"{r['high share']:.0%} {r['high end']} at the high end"
                               for name, (t, _) in each.items() for _, r in t["shown"].iterrows()),
        "cross_text": cross_text,
        "paper_cross_mean": float(cross["paper (Fig 9, mean over ViT-L pairs)"].iloc[0]) if len(cross) else np.nan,
        **_claim_text(tables["verdicts"]),
    }


# --- Figures ------------------------------------------------------------------------------------------------

_ID_PANELS = {"linear_id": "linear ID (L, PCA 99%)", "twonn_id": "TwoNN ID (N)", "ratio": "ratio L / N",
              "evr1": "EVR of PC1"}


def plot_intrinsic_dimension(result: Result):
    """Figure 2's four per-layer means of every model (solid) beside its paper panel's (dashed, same colour), over
    the fraction of depth."""
    import matplotlib.pyplot as plt

    t, f = result.tables, result.findings
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
    d_heads = sorted(set(t["layers"]["d_head"]))
    for i, (model, ours) in enumerate(t["layers"].groupby("model", sort=False)):
        theirs = t["paper_layers"][t["paper_layers"]["model"] == model]
        paper = theirs["paper_model"].iloc[0]
        for ax, col in zip(axes, _ID_PANELS):
            ax.plot(ours["depth"], ours[col], "o-", ms=3.5, color=colours(i),
                    label=f"{model} ({len(ours)} layers), this build")
            ax.plot(theirs["depth"], theirs[col], "s--", ms=2.5, lw=1, color=colours(i), alpha=0.7,
                    label=style.paper_label(f"{paper} ({len(theirs)} layers), Fig {2 if len(theirs) == 24 else 7}"))
    for ax, (col, title) in zip(axes, _ID_PANELS.items()):
        if col in ("linear_id", "twonn_id"):
            for d in d_heads:
                ax.axhline(d, color="grey", lw=0.8, ls=":")
                ax.annotate(f"d_head = {d}", (0.02, d), textcoords="offset points", xytext=(0, -10), fontsize=7,
                            color="grey")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer / (layers - 1)")
        ax.set_xlim(-0.04, 1.04)
    axes[0].set_ylabel("mean over the layer's heads")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Intrinsic dimension of the heads of {f['models_text']} on {f['reference_name']}", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * t["layers"]["model"].nunique(), 1, 1))
    return fig


def plot_similarity(result: Result):
    """Figure 4's heatmap per model: each head's spectral similarity with the reference, one row per dataset."""
    matrices = {a["display"]: a["matrix"] for a in result.artifacts["models"].values()}
    return plots_spectral.plot_similarity_heatmaps(matrices, result.findings["reference_name"])


def plot_probes(result: Result):
    """Per model, a layer x head heatmap of the class probe's held-out accuracy, with the model output's for scale."""
    import matplotlib.pyplot as plt

    t = result.tables
    grids = {m: g.pivot(index="layer", columns="head", values="accuracy")
             for m, g in t["probes"].groupby("model", sort=False)}
    outputs = t["output_probe"].set_index("model")
    widths = [max(3.0, 0.42 * g.shape[1] + 1.4) for g in grids.values()]
    fig, axes = plt.subplots(1, len(grids), figsize=(sum(widths), 0.36 * max(len(g) for g in grids.values()) + 1.9),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (model, grid) in zip(axes[0], grids.items()):
        chance, output = outputs.loc[model, "chance"], outputs.loc[model, "accuracy"]
        values = grid.to_numpy()
        im = ax.imshow(values, aspect="auto", cmap=style.CMAP_SEQ, vmin=chance, vmax=max(output, values.max()))
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6 if grid.shape[1] > 8 else 7,
                    color="white" if v < (chance + output) / 2 else "black")
        ax.set_xticks(range(grid.shape[1]), [str(h) for h in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [str(l) for l in grid.index])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.grid(False)
        ax.set_title(f"{model}\n(output {output:.2f}, chance {chance:.2f})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="accuracy")
    fig.suptitle(f"Linear probe of the {result.findings['reference_name']} class per head (held-out accuracy)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_extremes(result: Result):
    """Thumbnails of the reference images at both ends of PC1 of the heads the page singles out, every model's."""
    fig = plot_pc_extremes(result.artifacts["dataset"], result.artifacts["extremes"])
    fig.subplots_adjust(top=1 - 0.45 / fig.get_figheight())  # room for the two ends' captions above the first row
    return fig
