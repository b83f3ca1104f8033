"""The paper's claims as checks: each a function over tidy tables returning a `Verdict`.

Every criterion is a constant below, read from the paper's wording before any build ran and never fitted
to a build's numbers. A check returns "not testable" when its tables lack what the criterion needs (a
second model, a Full finetuning run, a dataset of random images, ...). The columns each table needs are
listed in `residual_lib.claims.ledger.TABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

STATUSES = ("holds", "does not hold", "not testable")

# --- Criteria, fixed before any build ran ----------------------------------------------------------------
TREND = 0.5  # |Spearman rho| over layers that counts as a rising / falling trend
EARLY_FRACTION = 0.25  # "early layers": the first quarter of a model's layers (at least one)
EARLY_MAX_RATIO = 2.0  # near-linear: TwoNN finds at least half the dimensions PCA needs (L / N <= 2)
LOW_DIM_SHARE = 0.5  # "low-dimensional": TwoNN ID at most this share of the head's ambient dimension
HUNCHBACK_DROP = 0.9  # TwoNN "decreases towards the last layers": last layer <= 90% of the peak
Z_STRONG = 3.0  # an agreement |Z| this large means OMP on PC1 recovers TextSpan's descriptions
Z_WEAK = 1.0  # below this the two description sets are no closer than a typical dictionary entry
Z_MEAN = 1.0  # TextSpan and OMP agree beyond chance on average: mean |Z| over heads >= this
SKILL_MARGIN = 0.1  # named attributes decode better than unnamed ones by at least this probe skill
AGREE_SHARE = 0.5  # ... and the most-named attribute is the probe's best for at least this share of heads
DATASET_SPREAD = 0.1  # similarity "varies by dataset": most and least similar dataset differ by this
STANDOUT_N = 5  # heads that stand out on a dataset: at most the N furthest below their layer's mean ...
STANDOUT_GAP = 0.1  # ... and at least this far below it
RANDOM_DATASETS = ("Random", "toy-noise")  # datasets of random pixels (the paper's; the toy world's)
CROSS_MODEL_R = 0.8  # dataset profiles consistent across models: mean Pearson r between models >= this
NEAR = 0.03  # "comparable" accuracy: the tolerance the reproduction report uses for accuracies
ABOVE_RANDOM = 0.1  # "well above R": at least this much accuracy over random heads
HEADS_SHARE = 0.85  # "around 90% of alignment comes from heads": mean H / B >= this
IMPROVES = 0.05  # a trained aligner improves on the base model by at least this mean accuracy
FEWER_PARAMS = 0.01  # "far fewer parameters" than full finetuning: at most 1% of them
RDSTAR_PARAMS = 0.5  # RD* is the cheaper configuration: at most half of RD's parameters
RDY_GAP = 0.05  # RDY "behind RD on some tasks": at least one dataset this much below RD
SOMP_TOLERANCE = 1e-5  # largest |R_TextSpan - R_SOMP| entry that counts as equal (float64 runs)


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome on some tables: status, the numbers that decided it, the criterion as a sentence."""

    status: str
    numbers: dict[str, Any]
    criterion: str
    reason: str = ""  # for "not testable": what the build lacks

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r}; valid: {', '.join(STATUSES)}")


def untestable(criterion: str, reason: str) -> Verdict:
    """A "not testable" verdict saying what the tables lack."""
    return Verdict("not testable", {}, criterion, reason)


def _decide(ok: bool, numbers: dict[str, Any], criterion: str) -> Verdict:
    return Verdict("holds" if ok else "does not hold", {k: _plain(v) for k, v in numbers.items()}, criterion)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _spearman(x: pd.Series, y: pd.Series) -> float:
    return float(spearmanr(x.to_numpy(dtype=float), y.to_numpy(dtype=float)).statistic)


# --- Section 3.1: intrinsic dimension across depth (per model) --------------------------------------------

def _layers_ok(layers: pd.DataFrame | None, criterion: str, need: int = 3) -> Verdict | None:
    if layers is None or layers["layer"].nunique() < need:
        n = 0 if layers is None else layers["layer"].nunique()
        return untestable(criterion, f"needs at least {need} layers; this model has {n}")
    return None


def early_heads_near_linear(layers: pd.DataFrame | None) -> Verdict:
    """Early heads are near-linear: L/N small in the first quarter of layers, smaller than in the last."""
    criterion = (f"mean L/N over the first {EARLY_FRACTION:.0%} of layers <= {EARLY_MAX_RATIO:g} and below the "
                 f"mean over the last {EARLY_FRACTION:.0%}")
    if (bad := _layers_ok(layers, criterion)) is not None:
        return bad
    ordered = layers.sort_values("layer")
    n = max(1, int(len(ordered) * EARLY_FRACTION))
    early, late = float(ordered["ratio"].head(n).mean()), float(ordered["ratio"].tail(n).mean())
    return _decide(early <= EARLY_MAX_RATIO and early < late,
                   {"early L/N": early, "late L/N": late, "early linear ID": float(ordered["linear_id"].head(n).mean()),
                    "early layers": n}, criterion)


def _trend(layers: pd.DataFrame | None, column: str, label: str, sign: int) -> Verdict:
    op = ">" if sign > 0 else "<"
    criterion = f"Spearman(layer, {label}) {op} {sign * TREND:g}"
    if (bad := _layers_ok(layers, criterion)) is not None:
        return bad
    rho = _spearman(layers["layer"], layers[column])
    ordered = layers.sort_values("layer")
    return _decide(rho * sign > TREND, {"Spearman rho": rho, f"{label} first layer": float(ordered[column].iloc[0]),
                                        f"{label} last layer": float(ordered[column].iloc[-1])}, criterion)


def linear_id_rises(layers: pd.DataFrame | None) -> Verdict:
    """The linear (PCA) intrinsic dimension grows with depth."""
    return _trend(layers, "linear_id", "linear ID", +1)


def nonlinearity_rises(layers: pd.DataFrame | None) -> Verdict:
    """The ratio L/N (nonlinearity of head manifolds) grows with depth."""
    return _trend(layers, "ratio", "L/N", +1)


def evr1_falls(layers: pd.DataFrame | None) -> Verdict:
    """The variance explained by the first PC falls with depth."""
    return _trend(layers, "evr1", "EVR1", -1)


def heads_low_dimensional(layers: pd.DataFrame | None) -> Verdict:
    """Head representations have an intrinsic (TwoNN) dimension far below their ambient dimension."""
    criterion = f"mean TwoNN ID over layers <= {LOW_DIM_SHARE:g} x the head dimension d_head"
    if layers is None or "d_head" not in layers.columns:
        return untestable(criterion, "needs the head dimension (column d_head) beside the per-layer IDs")
    twonn, d_head = float(layers["twonn_id"].mean()), int(layers["d_head"].iloc[0])
    return _decide(twonn <= LOW_DIM_SHARE * d_head, {"mean TwoNN ID": twonn, "d_head": d_head}, criterion)


def twonn_hunchback(layers: pd.DataFrame | None) -> Verdict:
    """The TwoNN dimension rises, peaks inside the network and falls towards the last layers."""
    criterion = (f"TwoNN ID peaks at neither the first nor the last layer, and the last layer is "
                 f"<= {HUNCHBACK_DROP:g} x the peak")
    if (bad := _layers_ok(layers, criterion)) is not None:
        return bad
    ordered = layers.sort_values("layer").reset_index(drop=True)
    peak = int(ordered["twonn_id"].idxmax())
    top, last = float(ordered["twonn_id"].iloc[peak]), float(ordered["twonn_id"].iloc[-1])
    inside = 0 < peak < len(ordered) - 1
    return _decide(inside and last <= HUNCHBACK_DROP * top,
                   {"peak layer": int(ordered["layer"].iloc[peak]), "peak TwoNN": top, "last TwoNN": last,
                    "first TwoNN": float(ordered["twonn_id"].iloc[0])}, criterion)


# --- Section 3.2: text decompositions and principal components --------------------------------------------

def _pc1(agreement: pd.DataFrame | None) -> pd.Series | None:
    if agreement is None:
        return None
    z = agreement.loc[agreement["pc"] == 1, "z"].abs()
    return z if len(z) else None


def agreement_varies(agreement: pd.DataFrame | None) -> Verdict:
    """For some heads OMP on PC1 recovers TextSpan's descriptions; for others the semantics spread over PCs."""
    criterion = f"max |Z| over heads (PC1) >= {Z_STRONG:g} and min |Z| < {Z_WEAK:g}"
    z = _pc1(agreement)
    if z is None:
        return untestable(criterion, "no TextSpan-vs-OMP agreement on the first principal component")
    return _decide(z.max() >= Z_STRONG and z.min() < Z_WEAK,
                   {"max |Z|": float(z.max()), "min |Z|": float(z.min()), "heads": len(z)}, criterion)


def textspan_omp_agree(agreement: pd.DataFrame | None) -> Verdict:
    """TextSpan's descriptions and OMP's on each head's first PC agree beyond chance on average."""
    criterion = f"mean |Z| over heads (PC1) >= {Z_MEAN:g}"
    z = _pc1(agreement)
    if z is None:
        return untestable(criterion, "no TextSpan-vs-OMP agreement on the first principal component")
    return _decide(z.mean() >= Z_MEAN, {"mean |Z|": float(z.mean()), "share |Z| > 1": float((z > 1).mean()),
                                        "heads": len(z)}, criterion)


def descriptions_name_what_heads_encode(probe: pd.DataFrame | None) -> Verdict:
    """A head's text descriptions name the attributes the head carries (checked against linear probes)."""
    criterion = (f"attributes the descriptions name decode better than those they never name by >= {SKILL_MARGIN:g} "
                 f"probe skill, and the most-named attribute is the probe's best for >= {AGREE_SHARE:.0%} of heads")
    if probe is None or probe.empty:
        return untestable(criterion, "needs images with known attributes (the toy world) for a probe")
    margin = float((probe["named_skill"] - probe["unnamed_skill"]).mean())
    share = float(probe["agree"].astype(bool).mean())
    return _decide(margin >= SKILL_MARGIN and share >= AGREE_SHARE,
                   {"named skill": float(probe["named_skill"].mean()),
                    "unnamed skill": float(probe["unnamed_skill"].mean()), "share agreeing": share,
                    "heads": len(probe)}, criterion)


# --- Section 3.3: spectral similarity across datasets -----------------------------------------------------

def _dataset_means(similarity: pd.DataFrame) -> pd.Series:
    return similarity.groupby("dataset")["similarity"].mean().sort_values(ascending=False)


def _random_names(similarity: pd.DataFrame, random_datasets: tuple[str, ...]) -> list[str]:
    wanted = {r.lower() for r in random_datasets}
    return [d for d in similarity["dataset"].unique() if str(d).lower() in wanted]


def heads_specialise(similarity: pd.DataFrame | None) -> Verdict:
    """Heads' similarity with the reference dataset depends on the dataset (specialisation generalises unevenly)."""
    criterion = f"mean similarity of the most and the least similar dataset differ by >= {DATASET_SPREAD:g}"
    if similarity is None or similarity["dataset"].nunique() < 2:
        return untestable(criterion, "needs at least two datasets compared with the reference")
    means = _dataset_means(similarity)
    return _decide(means.iloc[0] - means.iloc[-1] >= DATASET_SPREAD,
                   {"most similar": means.index[0], "top mean": float(means.iloc[0]),
                    "least similar": means.index[-1], "bottom mean": float(means.iloc[-1])}, criterion)


def similarity_falls_with_depth(similarity: pd.DataFrame | None) -> Verdict:
    """Head similarity across datasets decreases with depth; first-layer heads are nearly identical."""
    criterion = f"Spearman(layer, mean similarity over heads and datasets) < {-TREND:g}"
    if similarity is None or similarity["layer"].nunique() < 3:
        return untestable(criterion, "needs similarities for at least 3 layers")
    by_layer = similarity.groupby("layer")["similarity"].mean()
    rho = _spearman(pd.Series(by_layer.index), by_layer.reset_index(drop=True))
    return _decide(rho < -TREND, {"Spearman rho": rho, "first layer": float(by_layer.iloc[0]),
                                  "last layer": float(by_layer.iloc[-1])}, criterion)


def _standouts(part: pd.DataFrame, n: int) -> set[str]:
    gap = part.groupby("layer")["similarity"].transform("mean") - part["similarity"]
    return set(part.assign(gap=gap)[gap >= STANDOUT_GAP].nlargest(n, "gap")["unit"])


def random_activates_unspecific_heads(similarity: pd.DataFrame | None,
                                      random_datasets: tuple[str, ...] = RANDOM_DATASETS) -> Verdict:
    """Some heads that stand out on a real dataset also stand out on random images: they are not specific."""
    criterion = (f"a head standing out on random images (one of the {STANDOUT_N} furthest below its layer's mean, "
                 f"by >= {STANDOUT_GAP:g}) also stands out on some other dataset")
    if similarity is None:
        return untestable(criterion, "no similarity table")
    randoms = _random_names(similarity, random_datasets)
    others = [d for d in similarity["dataset"].unique() if d not in randoms]
    if not randoms or not others:
        return untestable(criterion, f"needs a dataset of random images ({', '.join(random_datasets)}) and another")
    on_random = set().union(*(_standouts(similarity[similarity["dataset"] == r], STANDOUT_N) for r in randoms))
    shared = {d: sorted(on_random & _standouts(similarity[similarity["dataset"] == d], STANDOUT_N)) for d in others}
    shared = {d: u for d, u in shared.items() if u}
    listed = "; ".join(f"{d}: {', '.join(u)}" for d, u in shared.items()) or "none"
    return _decide(bool(shared), {"random dataset": ", ".join(randoms), "shared heads": listed}, criterion)


def dataset_order_consistent(similarity: pd.DataFrame | None) -> Verdict:
    """Datasets are ordered alike across models: their mean similarities correlate between models."""
    criterion = f"mean Pearson r between models' per-dataset mean similarities >= {CROSS_MODEL_R:g}"
    if similarity is None or similarity["model"].nunique() < 2:
        n = 0 if similarity is None else similarity["model"].nunique()
        return untestable(criterion, f"needs at least two models; the build has {n}")
    profile = similarity.groupby(["dataset", "model"])["similarity"].mean().unstack("model").dropna()
    if len(profile) < 3:
        return untestable(criterion, "needs at least three datasets shared by the models")
    corr = profile.corr(method="pearson").to_numpy()
    mean_r = float(corr[~np.eye(len(corr), dtype=bool)].mean())
    return _decide(mean_r >= CROSS_MODEL_R, {"mean Pearson r": mean_r, "models": profile.shape[1],
                                             "datasets": len(profile)}, criterion)


# --- Sections 4.1 and 4.2: accuracies (per model) ---------------------------------------------------------

def _wide(accuracy: pd.DataFrame) -> pd.DataFrame:
    """datasets x methods; a printed table's "Average" row is not a dataset and is left out."""
    rows = accuracy[accuracy["dataset"].astype(str).str.lower() != "average"]
    return rows.pivot_table(index="dataset", columns="method", values="accuracy", aggfunc="mean")


def _method_means(accuracy: pd.DataFrame | None, methods: list[str]) -> pd.Series | None:
    """Mean accuracy per method over the datasets every one of `methods` was run on; None when one is missing."""
    if accuracy is None:
        return None
    wide = _wide(accuracy)
    if any(m not in wide.columns for m in methods):
        return None
    wide = wide[methods].dropna()
    return wide.mean() if len(wide) else None


def _missing(methods: list[str]) -> str:
    return f"needs accuracies of {', '.join(methods)} on common datasets"


def selected_heads_near_base(accuracy: pd.DataFrame | None) -> Verdict:
    """The top 5% of heads by U|T or S come near the whole model (B) and far above random heads (R)."""
    criterion = (f"mean accuracy of U|T and of S each >= B - {NEAR:g} and >= R + {ABOVE_RANDOM:g}")
    methods = ["U|T", "S", "B", "R"]
    mean = _method_means(accuracy, methods)
    if mean is None:
        return untestable(criterion, _missing(methods))
    ok = all(mean[m] >= mean["B"] - NEAR and mean[m] >= mean["R"] + ABOVE_RANDOM for m in ("U|T", "S"))
    return _decide(ok, {m: float(mean[m]) for m in methods}, criterion)


def heads_carry_alignment(accuracy: pd.DataFrame | None) -> Verdict:
    """All heads alone (H) come near the whole model (B): about 90% of the alignment comes from heads."""
    criterion = f"mean over datasets of H / B >= {HEADS_SHARE:g}"
    if accuracy is None:
        return untestable(criterion, _missing(["H", "B"]))
    wide = _wide(accuracy)
    if not {"H", "B"} <= set(wide.columns) or wide[["H", "B"]].dropna().empty:
        return untestable(criterion, _missing(["H", "B"]))
    wide = wide[["H", "B"]].dropna()
    share = float((wide["H"] / wide["B"]).mean())
    return _decide(share >= HEADS_SHARE, {"H / B": share, "H": float(wide["H"].mean()), "B": float(wide["B"].mean())},
                   criterion)


def optimized_weights_best(accuracy: pd.DataFrame | None) -> Verdict:
    """Optimised head weights (O) score best of all selections and above the model itself (B)."""
    criterion = "mean accuracy of O above that of B and of every other selection (U, U|T, S, R, H)"
    methods = ["O", "B", "U", "U|T", "S", "R", "H"]
    mean = _method_means(accuracy, methods)
    if mean is None:
        return untestable(criterion, _missing(methods))
    return _decide(bool((mean.drop("O") < mean["O"]).all()), {m: float(mean[m]) for m in methods}, criterion)


def residual_near_lin(accuracy: pd.DataFrame | None) -> Verdict:
    """ResiDual (RD) is comparable to, if not better than, the linear aligner (Lin) on every dataset."""
    criterion = f"RD >= Lin - {NEAR:g} on every dataset (differences rounded to 2 decimals, as the paper prints)"
    if accuracy is None:
        return untestable(criterion, _missing(["RD", "Lin"]))
    wide = _wide(accuracy)
    if not {"RD", "Lin"} <= set(wide.columns) or wide[["RD", "Lin"]].dropna().empty:
        return untestable(criterion, _missing(["RD", "Lin"]))
    diff = (wide["RD"] - wide["Lin"]).dropna()
    worst = diff.idxmin()
    return _decide(bool((diff.round(2) >= -NEAR).all()),
                   {"RD": float(wide.loc[diff.index, "RD"].mean()), "Lin": float(wide.loc[diff.index, "Lin"].mean()),
                    "worst dataset": worst, "RD - Lin there": float(diff[worst])}, criterion)


def _params(params: pd.DataFrame | None, method: str) -> float | None:
    if params is None:
        return None
    rows = params.loc[params["method"] == method, "params"]
    return float(rows.iloc[0]) if len(rows) else None


def residual_improves_base(accuracy: pd.DataFrame | None) -> Verdict:
    """Training ResiDual improves on the base model's zero-shot accuracy (Figure 5)."""
    criterion = f"mean accuracy of RD >= Base + {IMPROVES:g}"
    mean = _method_means(accuracy, ["RD", "Base"])
    if mean is None:
        return untestable(criterion, _missing(["RD", "Base"]))
    return _decide(mean["RD"] >= mean["Base"] + IMPROVES, {"RD": float(mean["RD"]), "Base": float(mean["Base"])},
                   criterion)


def lin_near_full(accuracy: pd.DataFrame | None) -> Verdict:
    """A linear aligner on the output approximates full finetuning."""
    criterion = f"mean accuracy of Lin >= Full finetuning - {NEAR:g}"
    methods = ["Lin", "Full finetuning"]
    mean = _method_means(accuracy, methods)
    if mean is None:
        return untestable(criterion, _missing(methods))
    return _decide(mean["Lin"] >= mean["Full finetuning"] - NEAR, {m: float(mean[m]) for m in methods}, criterion)


def residual_near_full_with_few_params(accuracy: pd.DataFrame | None, params: pd.DataFrame | None) -> Verdict:
    """ResiDual comes close to full finetuning with far fewer trained parameters."""
    criterion = (f"mean accuracy of RD >= Full finetuning - {NEAR:g}, with at most {FEWER_PARAMS:.0%} "
                 "of its parameters")
    methods = ["RD", "Full finetuning"]
    mean = _method_means(accuracy, methods)
    n_rd, n_full = _params(params, "RD"), _params(params, "Full finetuning")
    if mean is None or n_rd is None or n_full is None:
        return untestable(criterion, _missing(methods) + " and both parameter counts")
    return _decide(mean["RD"] >= mean["Full finetuning"] - NEAR and n_rd <= FEWER_PARAMS * n_full,
                   {"RD": float(mean["RD"]), "Full finetuning": float(mean["Full finetuning"]),
                    "RD params": int(n_rd), "Full finetuning params": int(n_full)}, criterion)


def rdstar_near_rd(accuracy: pd.DataFrame | None, params: pd.DataFrame | None) -> Verdict:
    """RD* (heads only, PCs to 90% variance) is comparable to RD with a fraction of its parameters."""
    criterion = f"mean accuracy of RD* >= RD - {NEAR:g}, with at most {RDSTAR_PARAMS:.0%} of RD's parameters"
    mean = _method_means(accuracy, ["RD*", "RD"])
    n_star, n_rd = _params(params, "RD*"), _params(params, "RD")
    if mean is None or n_star is None or n_rd is None:
        return untestable(criterion, _missing(["RD*", "RD"]) + " and both parameter counts")
    return _decide(mean["RD*"] >= mean["RD"] - NEAR and n_star <= RDSTAR_PARAMS * n_rd,
                   {"RD*": float(mean["RD*"]), "RD": float(mean["RD"]), "RD* / RD params": n_star / n_rd}, criterion)


def rdy_behind_rd(accuracy: pd.DataFrame | None) -> Verdict:
    """ResiDual on the output alone (RDY) falls behind RD on some tasks: output components are not aligned."""
    criterion = f"RD - RDY >= {RDY_GAP:g} on at least one dataset"
    if accuracy is None:
        return untestable(criterion, _missing(["RD", "RDY"]))
    wide = _wide(accuracy)
    if not {"RD", "RDY"} <= set(wide.columns) or wide[["RD", "RDY"]].dropna().empty:
        return untestable(criterion, _missing(["RD", "RDY"]))
    gap = (wide["RD"] - wide["RDY"]).dropna()
    return _decide(gap.max() >= RDY_GAP, {"largest gap": float(gap.max()), "on": gap.idxmax(),
                                          "mean gap": float(gap.mean())}, criterion)


# --- Appendix A.2 -----------------------------------------------------------------------------------------

def textspan_equals_somp(equivalence: pd.DataFrame | None) -> Verdict:
    """TextSpan and SOMP (row-variance criterion) pick the same atoms and leave the same residual."""
    criterion = f"same atoms in the same order on every head, and every |R_TextSpan - R_SOMP| <= {SOMP_TOLERANCE:g}"
    if equivalence is None or equivalence.empty:
        return untestable(criterion, "no TextSpan-vs-SOMP comparison")
    same = equivalence["identical_atoms"].astype(bool)
    worst = float(equivalence["max_residual_difference"].max())
    return _decide(bool(same.all()) and worst <= SOMP_TOLERANCE,
                   {"heads": len(equivalence), "heads with identical atoms": int(same.sum()),
                    "max residual difference": worst}, criterion)
