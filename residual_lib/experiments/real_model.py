"""Section 3's geometry on a real pretrained ViT (DINOv2-S), with ground truth the paper did not have.

On one model and a labelled reference dataset (Fashion-MNIST train by default):

- Figure 2's per-layer means (linear ID, TwoNN ID, their ratio, EVR1; `residual_lib.analysis.intrinsic_dim`) beside
  the paper's DINOv2-L panel, on one axis of depth (the layer as a fraction of the model's depth);
- Figure 4's spectral similarity of every head between the reference and each other dataset
  (`residual_lib.analysis.spectral`), the dataset order beside the paper's Figure 14 (DINOv2-L), the heads that stand out;
- a linear probe of the reference class on every head (`residual_lib.analysis.probe`), and for the heads that stand
  out (best probe, most dataset-specific) the images at both ends of their first principal component
  (`residual_lib.analysis.pc_extremes`);
- the claim ledger's verdicts on these tables (`residual_lib.claims`), filed as the Figure 2 and Figure 4
  pages' tables of this model.

A compared dataset is named ``dataset`` (its `split`) or ``dataset/split`` (e.g. the reference's own test split).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import claims
from ..store import cache
from ..report import plots_spectral, style
from ..store.cache import CacheKey
from ..data.datasets import dataset_spec, load_dataset
from ..analysis.intrinsic_dim import layer_summary, unit_intrinsic_dimensions
from ..models.registry import load_model
from ..paper.reference import reference
from ..analysis.pc_extremes import pc_extremes, plot_pc_extremes
from ..analysis.pca import UnitPCA
from ..report.plots_spectral import dataset_display, model_display, order_agreement, order_table
from ..analysis.probe import probe_accuracy
from ..analysis.spectral import dataset_order, dataset_similarities, similarity_matrix, standout_heads
from ..units.unit_set import UnitSet, parse_unit
from .base import CacheDtype, ComputeParams, ParamsError, Result, computes, in_range, nonempty, positive

PAPER_MODEL = "DINOv2-L"  # the paper's model of this family: Figure 2's panel, Figure 14's order
PAGE_IDS = "fig02_intrinsic_dimension", "fig04_spectral_dataset_similarity"  # whose claims this page tests
# Offline datasets nearest in kind to one of the paper's Figure 4 datasets: where each falls in the order
COUNTERPARTS = {"sklearn-digits": "MNIST", "mnist": "MNIST", "random": "Random", "random-blobs": "Random"}


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "dinov2-s"  # a registered model (data_manifests/models)
    reference_dataset: str = "fashion-mnist"  # labelled: its class is what the probes decode
    datasets: list[str] = field(default_factory=lambda: ["fashion-mnist/test", "sklearn-digits", "lfw-subset",
                                                         "random"])  # compared with the reference
    split: str = "train"  # of the reference, and of each compared dataset named without "/split"
    n: int | None = 400  # images per compared dataset (a split no larger is used whole)
    n_reference: int | None = 2000  # images of the reference dataset
    seed: int = 0  # which subset of each split
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    threshold: float = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
    discard_fraction: float = 0.1  # TwoNN: largest ratios left out of the fit
    evr_threshold: float = 0.9  # spectral similarity: each head's basis keeps this much variance
    probe_test_fraction: float = 0.3  # held-out share of the reference images for the class probes
    n_standout: int = 3  # most dataset-specific heads shown with thumbnails (besides the best probe head)
    n_thumbnails: int = 6  # images at each end of a head's first principal component

    def check(self) -> None:
        nonempty(self, "datasets")
        positive(self, "n", "n_reference", "batch_size", "n_standout", "n_thumbnails")
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


def _key(p: Params, entry: str, wanted: int | None) -> CacheKey:
    name, split = compared(entry, p.split)
    return CacheKey(p.model_name, name, split, _n_for(name, split, wanted), p.seed, p.cache_dtype)


def caches(p: Params) -> list[CacheKey]:
    """The reference dataset's cache, then one per compared dataset (n=None: a split no larger than wanted)."""
    return [_key(p, p.reference_dataset, p.n_reference), *[_key(p, d, p.n) for d in p.datasets]]


def _extract(model, key: CacheKey, p: Params):
    return cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())


def _compared_beside(keys: list[CacheKey], p: Params):
    """On the CPU, the compared datasets' caches are extracted by a helper process while this one extracts the
    reference's (two cores, each on its own forward passes); on a GPU, one after the other here."""
    from ..device import resolve_device
    from ..store.jobs import ExtractJob, beside

    if resolve_device(p.device).type != "cpu":
        return nullcontext()
    return beside([ExtractJob(k, device="cpu", batch_size=p.batch_size) for k in keys], threads=p.threads)


def depth_fraction(layers: pd.Series) -> pd.Series:
    """Layer index as a fraction of depth: 0 for the first layer, 1 for the last."""
    return layers.astype(float) / max(1, int(layers.max()))


@computes
def run(p: Params) -> Result:
    """IDs per layer, similarities per head and dataset, class probes per head, PC-end images, claim verdicts."""
    model = load_model(p.model_name, device=p.device)  # converts the weights (once) before any helper starts
    name = model_display(p.model_name)
    ref_key, *keys = caches(p)
    with _compared_beside(keys, p):
        ref = _extract(model, ref_key, p)
    others = {label(d, p.split): _extract(model, k, p) for d, k in zip(p.datasets, keys)}
    pca = UnitPCA(units=ref.heads, device=p.device, progress=False).fit(ref)

    heads = unit_intrinsic_dimensions(ref, pca=pca, threshold=p.threshold, discard_fraction=p.discard_fraction,
                                      device=p.device)
    layers = (layer_summary(heads).rename(columns={"ratio_mean_of_heads": "ratio"})
              .assign(model=name, d_head=model.d_head))
    layers["depth"] = depth_fraction(layers["layer"])
    paper = reference("fig2").query("model == @PAPER_MODEL").reset_index(drop=True)
    paper["depth"] = depth_fraction(paper["layer"])

    # role: another sample of the reference dataset differs from it in sampling only ("reference"), the others in
    # content ("ood"): the specialisation claim compares only the latter (`claims.checks.heads_specialise`)
    roles = {label(d, p.split): "reference" if compared(d, p.split)[0] == p.reference_dataset else "ood"
             for d in p.datasets}
    similarity = dataset_similarities(pca, others, evr_threshold=p.evr_threshold, device=p.device).assign(model=name)
    similarity["role"] = similarity["dataset"].map(roles)
    ours_order = dataset_order(similarity)
    paper_order = reference("fig4_order").query("model == @PAPER_MODEL")
    order = order_table(ours_order, paper_order)
    standout = standout_heads(similarity, n=p.n_standout)

    probes = probe_accuracy(ref, {"class": ref.labels}, names=ref.heads, test_fraction=p.probe_test_fraction,
                            seed=p.seed)
    output = _output_probe(ref, p)
    probes = probes.assign(layer=[parse_unit(u)[1] for u in probes["unit"]],
                           head=[parse_unit(u)[2] for u in probes["unit"]])
    shown = _shown_heads(probes, standout)
    extremes = {u: pc_extremes(ref, u, k=min(p.n_thumbnails, ref.n // 2)) for u in shown["unit"]}
    data = load_dataset(ref_key.dataset, ref_key.split)
    ends = _end_classes(data, extremes)

    tables = {"layers": layers, "heads": heads, "paper_layers": paper, "similarity": similarity,
              "order": order, "standout": standout, "probes": probes, "shown": shown.merge(ends, on="unit"),
              "counts": _counts(p, ref_key, keys, ref, others)}
    tables["verdicts"] = verdicts(tables)
    findings = _findings(p, name, tables, ours_order, paper_order, output)
    return Result(p, tables=tables, findings=findings,
                  artifacts={"matrix": similarity_matrix(similarity), "extremes": extremes, "dataset": data,
                             "output_probe": output, "weights": getattr(model, "weights", None),
                             "image_size": getattr(model, "image_size", None)})


def claim_tables(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, pd.DataFrame]]:
    """The claim ledger's tables of the Figure 2 and Figure 4 pages for this model ({page: {table: frame}})."""
    fig02, fig04 = PAGE_IDS
    return {fig02: {"layers": tables["layers"][["model", "layer", "linear_id", "twonn_id", "ratio", "evr1", "d_head"]]},
            fig04: {"similarity": tables["similarity"][["model", "dataset", "unit", "layer", "similarity", "role"]]}}


def verdicts(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The ledger rows of the Figure 2 and Figure 4 claims on this model's tables."""
    return pd.concat([claims.page_verdicts(page, t) for page, t in claim_tables(tables).items()], ignore_index=True)


def record_claims(result: Result) -> None:
    """File this model's Figure 2 and Figure 4 tables with the claim ledger (other models' rows stay)."""
    for page, t in claim_tables(result.tables).items():
        claims.record(page, t)


def provenance_table(result: Result) -> pd.DataFrame:
    """Where the model's weights come from: its manifest, and the conversion record for converted weights."""
    from ..models import dinov2_onnx
    from ..models.registry import model_spec

    spec = model_spec(result.params.model_name)
    rows = {"model": spec.name, "architecture": spec.arch, "weights": result.artifacts["weights"],
            "image size (px)": result.artifacts["image_size"]}
    if result.artifacts["weights"] == dinov2_onnx.WEIGHTS_TAG:
        rows |= {k: v for k, v in dinov2_onnx.manifest().items() if not isinstance(v, dict)}
    else:
        rows["notes"] = spec.notes
    return pd.DataFrame({"field": list(rows), "value": [str(v) for v in rows.values()]})


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
    def listed(status: str) -> str:
        rows = v[v["status"] == status]
        return ", ".join(f"{r['claim'].replace('_', ' ')} ({r['section']})" for _, r in rows.iterrows()) or "none"
    return {"n_claims": len(v), "n_hold": int((v["status"] == "holds").sum()),
            "n_fail": int((v["status"] == "does not hold").sum()),
            "n_untestable": int((v["status"] == "not testable").sum()),
            "claims_hold": listed("holds"), "claims_fail": listed("does not hold"),
            "claims_untestable": listed("not testable")}


def _findings(p: Params, name: str, t: dict[str, pd.DataFrame], ours_order: list[str], paper_order: pd.DataFrame,
              output: dict) -> dict:
    layers, paper, sim, probes = t["layers"], t["paper_layers"], t["similarity"], t["probes"]
    by_layer = sim.groupby("layer")["similarity"].mean()
    means = sim.groupby("dataset")["similarity"].mean()
    best = probes.loc[probes["accuracy"].idxmax()]
    worst = probes.loc[probes["accuracy"].idxmin()]
    layer_probe = probes.groupby("layer")["accuracy"].mean()
    top = t["standout"].iloc[0]
    theirs = paper_order.sort_values("rank")["dataset"].tolist()
    rho = order_agreement(ours_order, paper_order)
    common = [d for d in ours_order if d in theirs]
    placed = [(label(d, p.split), COUNTERPARTS[compared(d, p.split)[0]]) for d in p.datasets
              if compared(d, p.split)[0] in COUNTERPARTS]
    counterpart_text = "; ".join(f"{ours} ranks {ours_order.index(ours) + 1} of {len(ours_order)} here, "
                                 f"{theirs_name} {theirs.index(theirs_name) + 1} of {len(theirs)} in the paper's"
                                 for ours, theirs_name in placed) or "no dataset of this build has one"
    peak = layers.loc[layers["twonn_id"].idxmax()]
    paper_peak = paper.loc[paper["twonn_id"].idxmax()]
    shown = t["shown"]
    ends = "; ".join(f"{r['unit']}: {r['low share']:.0%} {r['low end']} at the low end, {r['high share']:.0%} "
                     f"{r['high end']} at the high end" for _, r in shown.iterrows())
    return {
        "model": name, "paper_model": PAPER_MODEL, "n_layers": len(layers), "n_heads": int(layers["n_heads"].iloc[0]),
        "d_head": int(layers["d_head"].iloc[0]), "reference_name": label(p.reference_dataset, p.split),
        "n_reference_images": int(t["counts"]["images"].iloc[0]),
        "n_reference_text": f"{int(t['counts']['images'].iloc[0]):,}",
        "counts_text": ", ".join(f"{r['dataset']} {r['images']:,}" for _, r in t["counts"].iterrows()),
        "lin_first": float(layers["linear_id"].iloc[0]), "lin_last": float(layers["linear_id"].iloc[-1]),
        "nn_first": float(layers["twonn_id"].iloc[0]), "nn_last": float(layers["twonn_id"].iloc[-1]),
        "nn_peak": float(peak["twonn_id"]), "nn_peak_layer": int(peak["layer"]), "nn_peak_depth": float(peak["depth"]),
        "ratio_first": float(layers["ratio"].iloc[0]), "ratio_last": float(layers["ratio"].iloc[-1]),
        "evr_first": float(layers["evr1"].iloc[0]), "evr_last": float(layers["evr1"].iloc[-1]),
        "paper_lin_first": float(paper["linear_id"].iloc[0]), "paper_lin_last": float(paper["linear_id"].iloc[-1]),
        "paper_nn_first": float(paper["twonn_id"].iloc[0]), "paper_nn_last": float(paper["twonn_id"].iloc[-1]),
        "paper_nn_peak": float(paper_peak["twonn_id"]), "paper_nn_peak_depth": float(paper_peak["depth"]),
        "paper_ratio_first": float(paper["ratio"].iloc[0]), "paper_ratio_last": float(paper["ratio"].iloc[-1]),
        "paper_evr_first": float(paper["evr1"].iloc[0]), "paper_evr_last": float(paper["evr1"].iloc[-1]),
        "sim_first_layer": float(by_layer.iloc[0]), "sim_last_layer": float(by_layer.iloc[-1]),
        "sim_min_layer": int(by_layer.idxmin()), "sim_min": float(by_layer.min()),
        "order_text": ", ".join(f"{d} ({means[d]:.2f})" for d in ours_order),
        "paper_order_text": ", ".join(theirs),
        "order_common": ", ".join(common) or "none", "counterpart_text": counterpart_text,
        "order_rho": "not defined (fewer than three datasets in common)" if np.isnan(rho) else f"{rho:.2f}",
        "standout_unit": top["unit"], "standout_dataset": top["dataset"], "standout_sim": float(top["similarity"]),
        "standout_gap": float(top["gap"]),
        "probe_best_unit": best["unit"], "probe_best": float(best["accuracy"]),
        "probe_worst_unit": worst["unit"], "probe_worst": float(worst["accuracy"]),
        "probe_chance": float(best["chance"]), "probe_median": float(probes["accuracy"].median()),
        "probe_best_layer": int(layer_probe.idxmax()), "probe_best_layer_mean": float(layer_probe.max()),
        "probe_first_layer_mean": float(layer_probe.iloc[0]), "probe_last_layer_mean": float(layer_probe.iloc[-1]),
        "probe_output": output["accuracy"], "ends_text": ends,
        **_claim_text(t["verdicts"]),
    }


# --- Figures ------------------------------------------------------------------------------------------------

_ID_PANELS = {"linear_id": "linear ID (L, PCA 99%)", "twonn_id": "TwoNN ID (N)", "ratio": "ratio L / N",
              "evr1": "EVR of PC1"}


def plot_intrinsic_dimension(result: Result):
    """Figure 2's four per-layer means of this model beside the paper's DINOv2-L, over the fraction of depth."""
    import matplotlib.pyplot as plt

    t, f = result.tables, result.findings
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    ours_label = f"{f['model']} ({f['n_layers']} layers), this build"
    paper_label = style.paper_label(f"{PAPER_MODEL} (24 layers), Fig 2")
    for ax, (col, title) in zip(axes, _ID_PANELS.items()):
        ax.plot(t["layers"]["depth"], t["layers"][col], "o-", ms=3.5, color=style.OURS, label=ours_label)
        ax.plot(t["paper_layers"]["depth"], t["paper_layers"][col], "s--", ms=2.5, lw=1, color=style.PAPER,
                label=paper_label)
        if col in ("linear_id", "twonn_id"):
            ax.axhline(f["d_head"], color="grey", lw=0.8, ls=":")
            ax.annotate(f"d_head = {f['d_head']}", (0.02, f["d_head"]), textcoords="offset points", xytext=(0, -10),
                        fontsize=7, color="grey")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer / (layers - 1)")
        ax.set_xlim(-0.04, 1.04)
    axes[0].set_ylabel("mean over the layer's heads")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    p = result.params
    fig.suptitle(f"Intrinsic dimension of {f['model']}'s heads on {f['reference_name']} "
                 f"({p.split}, n={f['n_reference_images']:,})", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_similarity(result: Result):
    """Figure 4's heatmap: each head's spectral similarity with the reference, one row per dataset."""
    return plots_spectral.plot_similarity_heatmaps({result.findings["model"]: result.artifacts["matrix"]},
                                                   result.findings["reference_name"])


def plot_probes(result: Result):
    """Layer x head heatmap of the class probe's held-out accuracy, with the model output's for scale."""
    import matplotlib.pyplot as plt

    f = result.findings
    grid = result.tables["probes"].pivot(index="layer", columns="head", values="accuracy")
    fig, ax = plt.subplots(figsize=(5.6, 0.36 * len(grid) + 1.6))
    im = ax.imshow(grid.to_numpy(), aspect="auto", cmap=style.CMAP_SEQ, vmin=f["probe_chance"],
                   vmax=max(f["probe_output"], grid.to_numpy().max()))
    for (i, j), v in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < (f["probe_chance"] + f["probe_output"]) / 2 else "black")
    ax.set_xticks(range(grid.shape[1]), [str(h) for h in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(l) for l in grid.index])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.grid(False)
    ax.set_title(f"Linear probe of the {f['reference_name']} class per head\n(held-out accuracy; model output "
                 f"{f['probe_output']:.2f}, chance {f['probe_chance']:.2f})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="accuracy")
    fig.tight_layout()
    return fig


def plot_extremes(result: Result):
    """Thumbnails of the reference images at both ends of PC1 of the heads the page singles out."""
    fig = plot_pc_extremes(result.artifacts["dataset"], result.artifacts["extremes"])
    fig.subplots_adjust(top=1 - 0.45 / fig.get_figheight())  # room for the two ends' captions above the first row
    return fig
