"""The paper's claims as checks: each a function over tidy tables returning a `Verdict`.

Every criterion is a constant below, read from the paper's wording before any build ran and never fitted
to a build's numbers, and so is the minimum evidence it needs (the `MIN_*` constants): below it a check
returns "not testable" with the reason (too few layers for a depth trend, a task where the model itself is
near chance, no healthy training run, no second model, ...). Above it, the criterion's number is read with
its uncertainty (`evidence`): "holds" or "does not hold" when the 95% interval (or the permutation p-value of
a trend) decides, "inconclusive" when the interval straddles the threshold. The columns each table needs
are listed in `residual_lib.claims.ledger.TABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from .evidence import ALPHA, all_of, any_of, combination, compare, interval_text, trend, trend_outcome, wilson

STATUSES = ("holds", "does not hold", "inconclusive", "not testable")

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
NEAR_IDENTICAL = 0.9  # "early heads almost identical across distributions": first-layer mean similarity >= this
NULL_SD = 2.0  # a dataset differs from the reference beyond sampling: below the sampling null's mean by this many sd

# --- Minimum evidence, fixed with the criteria: below it a verdict is "not testable" -----------------------
MIN_TREND_LAYERS = 6  # a depth trend (or a peak inside the network) needs this many layers and p < ALPHA
MIN_LAYERS = 3  # early against late layers: at least a first, a middle and a last layer
MIN_ABOVE_CHANCE = 0.10  # a Section 4 task counts when the model itself (Base / B) is this far above chance
MIN_SHARED_DATASETS = 3  # a correlation of dataset profiles between models needs this many datasets in common
MIN_CONTENT_DATASETS = 2  # specialisation: datasets that differ from the reference in content, not sampling
CONTENT_ROLES = ("ood",)  # dataset roles whose images differ in content (the manifests' role field)
MIN_NULL_DRAWS = 5  # the sampling null's spread: at least this many draws of two halves of the reference


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome on some tables: status, the numbers that decided it, the criterion as a sentence."""

    status: str
    numbers: dict[str, Any]
    criterion: str
    reason: str = ""  # for "not testable": what the build lacks
    caveat: str = ""  # what the verdict leaves out or rests on (tasks dropped, unhealthy runs, ...)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r}; valid: {', '.join(STATUSES)}")


def untestable(criterion: str, reason: str) -> Verdict:
    """A "not testable" verdict saying what the tables lack."""
    return Verdict("not testable", {}, criterion, reason)


def _decide(ok: bool | str, numbers: dict[str, Any], criterion: str, caveat: str = "") -> Verdict:
    """A verdict from a bool (a criterion without uncertainty) or an outcome of `evidence`."""
    status = ok if isinstance(ok, str) else ("holds" if ok else "does not hold")
    return Verdict(status, {k: _plain(v) for k, v in numbers.items()}, criterion, caveat=caveat)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- Section 3.1: intrinsic dimension across depth (per model) --------------------------------------------

def _layers_ok(layers: pd.DataFrame | None, criterion: str, need: int = MIN_LAYERS) -> Verdict | None:
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
                    "early layers": n}, criterion, caveat="no interval: one estimate per layer")


def _trend(layers: pd.DataFrame | None, column: str, label: str, sign: int) -> Verdict:
    op = ">" if sign > 0 else "<"
    criterion = f"Spearman(layer, {label}) {op} {sign * TREND:g} with permutation p < {ALPHA:g}"
    if (bad := _layers_ok(layers, criterion, MIN_TREND_LAYERS)) is not None:
        return bad
    rho, p = trend(layers["layer"], layers[column])
    ordered = layers.sort_values("layer")
    return _decide(trend_outcome(rho, p, sign, TREND),
                   {"Spearman rho": rho, "p": p, f"{label} first layer": float(ordered[column].iloc[0]),
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
    return _decide(twonn <= LOW_DIM_SHARE * d_head, {"mean TwoNN ID": twonn, "d_head": d_head}, criterion,
                   caveat="no interval: one estimate per layer")


def twonn_hunchback(layers: pd.DataFrame | None) -> Verdict:
    """The TwoNN dimension rises, peaks inside the network and falls towards the last layers."""
    criterion = (f"TwoNN ID peaks at neither the first nor the last layer, and the last layer is "
                 f"<= {HUNCHBACK_DROP:g} x the peak")
    if (bad := _layers_ok(layers, criterion, MIN_TREND_LAYERS)) is not None:
        return bad
    ordered = layers.sort_values("layer").reset_index(drop=True)
    peak = int(ordered["twonn_id"].idxmax())
    top, last = float(ordered["twonn_id"].iloc[peak]), float(ordered["twonn_id"].iloc[-1])
    inside = 0 < peak < len(ordered) - 1
    return _decide(inside and last <= HUNCHBACK_DROP * top,
                   {"peak layer": int(ordered["layer"].iloc[peak]), "peak TwoNN": top, "last TwoNN": last,
                    "first TwoNN": float(ordered["twonn_id"].iloc[0])}, criterion,
                   caveat="no interval: one estimate per layer")


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
    numbers, caveat = _z_chance(agreement, z, {"max |Z|": float(z.max()), "min |Z|": float(z.min()), "heads": len(z)})
    return _decide(z.max() >= Z_STRONG and z.min() < Z_WEAK, numbers, criterion,
                   caveat="no interval: one Z per head" + (f"; {caveat}" if caveat else ""))


def _z_chance(agreement: pd.DataFrame, z: pd.Series, numbers: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The numbers with Z's null spread added (column z_random95, when the page filed it), and a caveat saying when
    random description sets reach Z_MEAN on the paper's scale, or that no null spread was filed."""
    if "z_random95" not in agreement.columns:
        return numbers, "no null spread"
    chance = agreement.loc[z.index, "z_random95"]
    numbers = numbers | {"random sets' |Z| (95%, mean over heads)": float(chance.mean()),
                         "share |Z| above random sets'": float((z > chance).mean())}
    return numbers, ("random description sets reach this mean |Z| by chance on the paper's scale (Figure 3 page)"
                     if chance.mean() >= Z_MEAN else "")


def textspan_omp_agree(agreement: pd.DataFrame | None) -> Verdict:
    """TextSpan's descriptions and OMP's on each head's first PC agree beyond chance on average."""
    criterion = f"mean |Z| over heads (PC1) >= {Z_MEAN:g}"
    z = _pc1(agreement)
    if z is None:
        return untestable(criterion, "no TextSpan-vs-OMP agreement on the first principal component")
    numbers, caveat = _z_chance(agreement, z, {"mean |Z|": float(z.mean()), "share |Z| > 1": float((z > 1).mean()),
                                               "heads": len(z)})
    return _decide(z.mean() >= Z_MEAN, numbers, criterion, caveat=caveat)


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
                    "heads": len(probe)}, criterion, caveat="no interval: one held-out probe per head and attribute")


# --- Section 3.3: spectral similarity across datasets -----------------------------------------------------

def _dataset_means(similarity: pd.DataFrame) -> pd.Series:
    return similarity.groupby("dataset")["similarity"].mean().sort_values(ascending=False)


def _random_names(similarity: pd.DataFrame, random_datasets: tuple[str, ...]) -> list[str]:
    wanted = {r.lower() for r in random_datasets}
    return [d for d in similarity["dataset"].unique() if str(d).lower() in wanted]


def _sampling_null(null: pd.DataFrame | None) -> tuple[float, float, int] | None:
    """The sampling null's mean similarity over heads (mean over draws), its low end (mean - NULL_SD sd over
    draws) and the number of draws; None below `MIN_NULL_DRAWS`."""
    if null is None or null["draw"].nunique() < MIN_NULL_DRAWS:
        return None
    per_draw = null.groupby("draw")["similarity"].mean()
    return float(per_draw.mean()), float(per_draw.mean() - NULL_SD * per_draw.std(ddof=1)), len(per_draw)


def _null_missing(null: pd.DataFrame | None) -> str:
    draws = 0 if null is None else null["draw"].nunique()
    return (f"needs the sampling null (two disjoint random halves of the reference dataset, at least "
            f"{MIN_NULL_DRAWS} draws; table null); these tables have {draws} draw(s)")


def heads_specialise(similarity: pd.DataFrame | None, null: pd.DataFrame | None) -> Verdict:
    """Heads' similarity with the reference depends on the dataset's content, not merely on a distribution shift.

    Only datasets whose images differ from the reference in content (role in `CONTENT_ROLES`, random pixels
    left out) are compared: a fresh sample of the reference distribution against any other dataset would
    differ by the shift alone. A dataset counts as different only below the sampling null's spread (`null`:
    each head's similarity between two disjoint random halves of the reference, `analysis.spectral.sampling_null`).
    """
    criterion = (f"over datasets that differ from the reference in content (not random pixels), the least similar "
                 f"falls below the sampling null (mean similarity over heads < the null's mean - {NULL_SD:g} sd over "
                 f"draws of two disjoint halves of the reference), and the mean similarity of the most and the least "
                 f"similar differ by >= {DATASET_SPREAD:g}")
    need = f"needs at least {MIN_CONTENT_DATASETS} datasets that differ from the reference in content"
    if similarity is None or "role" not in similarity.columns:
        return untestable(criterion, need + " (column role)")
    if (band := _sampling_null(null)) is None:
        return untestable(criterion, _null_missing(null))
    randoms = _random_names(similarity, RANDOM_DATASETS)
    content = similarity[similarity["role"].isin(CONTENT_ROLES) & ~similarity["dataset"].isin(randoms)]
    if content["dataset"].nunique() < MIN_CONTENT_DATASETS:
        found = ", ".join(sorted(content["dataset"].unique())) or "none"
        return untestable(criterion, f"{need}; this build has {found}")
    means = _dataset_means(content)
    left_out = sorted(set(similarity["dataset"]) - set(content["dataset"]))
    null_mean, null_low, draws = band
    below = means.index[means < null_low]
    return _decide(means.iloc[0] - means.iloc[-1] >= DATASET_SPREAD and means.iloc[-1] < null_low,
                   {"most similar": means.index[0], "top mean": float(means.iloc[0]),
                    "least similar": means.index[-1], "bottom mean": float(means.iloc[-1]),
                    "sampling null": f"{null_mean:.3f} (low end {null_low:.3f}, {draws} draws)",
                    "below the null": ", ".join(below) or "none"}, criterion,
                   caveat=f"left out (same content as the reference, or random): {', '.join(left_out) or 'none'}")


def similarity_falls_with_depth(similarity: pd.DataFrame | None, null: pd.DataFrame | None = None) -> Verdict:
    """Head similarity across datasets decreases with depth; first-layer heads are nearly identical.

    With a sampling null (`heads_specialise`), its first- and last-layer means are shown beside the datasets': how
    far a fresh sample of the reference itself falls with depth."""
    criterion = (f"Spearman(layer, mean similarity over heads and datasets) < {-TREND:g} with permutation p < "
                 f"{ALPHA:g}, and first-layer mean similarity >= {NEAR_IDENTICAL:g}")
    if similarity is None or similarity["layer"].nunique() < MIN_TREND_LAYERS:
        n = 0 if similarity is None else similarity["layer"].nunique()
        return untestable(criterion, f"needs at least {MIN_TREND_LAYERS} layers; this model has {n}")
    by_layer = similarity.groupby("layer")["similarity"].mean()
    rho, p = trend(by_layer.index, by_layer.to_numpy())
    first = float(by_layer.iloc[0])
    numbers = {"Spearman rho": rho, "p": p, "first layer": first, "last layer": float(by_layer.iloc[-1])}
    if _sampling_null(null) is not None:
        null_by_layer = null.groupby("layer")["similarity"].mean()
        numbers |= {"sampling null first layer": float(null_by_layer.iloc[0]),
                    "sampling null last layer": float(null_by_layer.iloc[-1])}
    return _decide(all_of([trend_outcome(rho, p, -1, TREND), "holds" if first >= NEAR_IDENTICAL else "does not hold"]),
                   numbers, criterion, caveat="" if len(numbers) > 4 else "no sampling null")


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
    return _decide(bool(shared), {"random dataset": ", ".join(randoms), "shared heads": listed}, criterion,
                   caveat="no null: standout heads of one sample of each dataset")


def dataset_order_consistent(similarity: pd.DataFrame | None) -> Verdict:
    """Datasets are ordered alike across models: their mean similarities correlate between models.

    Each pair of models is compared on the datasets both saw (a build mixes models measured on different dataset
    sets: the toy CLIP on the toy world, the real networks on real images), and a pair counts when it shares at
    least `MIN_SHARED_DATASETS`; the criterion reads the mean of those pairs' correlations.
    """
    criterion = (f"mean over pairs of models of the Pearson r between their per-dataset mean similarities, on the "
                 f"datasets both saw (at least {MIN_SHARED_DATASETS}), >= {CROSS_MODEL_R:g}")
    profile = (pd.DataFrame() if similarity is None else
               similarity.groupby(["dataset", "model"])["similarity"].mean().unstack("model"))
    pairs = {}
    for a, b in combinations(profile.columns, 2):
        both = profile[[a, b]].dropna()
        if len(both) >= MIN_SHARED_DATASETS:
            pairs[f"{a} / {b}"] = (float(both[a].corr(both[b])), len(both))
    if not pairs:  # one reason for one model and for models on different datasets
        return untestable(criterion, f"needs at least two models sharing at least {MIN_SHARED_DATASETS} datasets; "
                                     f"these tables have {profile.shape[1]} model(s), no two sharing that many")
    mean_r = float(np.mean([r for r, _ in pairs.values()]))
    return _decide(mean_r >= CROSS_MODEL_R,
                   {"mean Pearson r": mean_r,
                    "pairs": "; ".join(f"{pair}: {r:.2f} over {n} datasets" for pair, (r, n) in pairs.items())},
                   criterion, caveat="a correlation over a few datasets is decided mostly by the least similar one; "
                                     "no interval")


# --- Sections 4.1 and 4.2: accuracies (per model) ---------------------------------------------------------
# An accuracy table may carry, per row, n (test images), chance (1 / classes) and healthy (the training run
# passed `alignment.training.health`); without n and chance no comparison is testable.

BASES = ("B", "Base")  # the model itself: Table 1's B, Figure 5's Base


def _wide(accuracy: pd.DataFrame, column: str = "accuracy") -> pd.DataFrame:
    """datasets x methods; a printed table's "Average" row is not a dataset and is left out."""
    rows = accuracy[accuracy["dataset"].astype(str).str.lower() != "average"]
    return rows.pivot_table(index="dataset", columns="method", values=column, aggfunc="mean")


def _missing(methods: list[str]) -> str:
    return f"needs accuracies of {', '.join(methods)} on common datasets"


@dataclass(frozen=True)
class Accuracies:
    """The datasets a Section 4 criterion may read: accuracies (datasets x methods), test images, caveat."""

    wide: pd.DataFrame
    n: pd.Series
    caveat: str

    def interval(self, weights: dict[str, float], rows: list[str] | None = None) -> tuple[float, float, float]:
        wide = self.wide if rows is None else self.wide.loc[rows]
        return combination(wide, self.n[wide.index], weights)


def _accuracies(accuracy: pd.DataFrame | None, methods: list[str], criterion: str) -> Accuracies | Verdict:
    """The datasets with every method of `methods` from a healthy run and the model well above chance there, or
    a "not testable" verdict saying what is missing (`MIN_ABOVE_CHANCE`, healthy runs, n and chance)."""
    if accuracy is None or not set(methods) <= set(accuracy["method"]):
        return untestable(criterion, _missing(methods))
    if not {"n", "chance"} <= set(accuracy.columns):
        return untestable(criterion, "needs each accuracy's number of test images and chance level")
    caveats = []
    rows = accuracy[accuracy["method"].isin(methods) | accuracy["method"].isin(BASES)]
    if "healthy" in rows.columns:
        sick = rows[~rows["healthy"].fillna(True).astype(bool)]
        if len(sick):
            runs = Counter(f"{r.method} on {r.dataset}" for r in sick.itertuples())  # one entry per seed flagged
            caveats.append("unhealthy runs left out: " + ", ".join(
                run + (f" ({n} seeds)" if n > 1 else "") for run, n in runs.items()))
            rows = rows.drop(sick.index)
    wide = _wide(rows)
    base = next((b for b in BASES if b in wide.columns), None)
    if base is None:
        return untestable(criterion, f"needs the model's own accuracy ({' or '.join(BASES)}) to check it is above chance")
    chance = _wide(rows, "chance")[base]
    near = wide.index[wide[base] < chance + MIN_ABOVE_CHANCE]
    if len(near):
        caveats.append("tasks at chance left out: " + ", ".join(
            f"{d} ({base} {wide.loc[d, base]:.3f}, chance {chance[d]:.3f})" for d in near))
    wide = wide.drop(near).reindex(columns=methods).dropna()
    if wide.empty:
        return untestable(criterion, f"needs a task where {base} is >= {MIN_ABOVE_CHANCE:g} above chance and "
                                     f"healthy runs of {', '.join(methods)}; " + "; ".join(caveats))
    n = _wide(rows, "n").loc[wide.index].max(axis=1)
    caveats.append(f"{len(wide)} task(s), 95% intervals over test images")
    if "seed" in rows.columns and rows["seed"].nunique() > 1:
        caveats.append(_seed_spread(rows, list(wide.index), methods))
    if "classifier" in rows.columns and not rows["classifier"].str.startswith("zero-shot").all():
        caveats.append("classifier: " + ", ".join(sorted(rows["classifier"].unique()))
                       + " (class means of labelled images, not text)")
    return Accuracies(wide, n, "; ".join(caveats))


def _seed_spread(rows: pd.DataFrame, datasets: list[str], methods: list[str]) -> str:
    """'accuracies are means over 3 training seeds; seed sd of the mean over tasks: RD 0.004, ...' for the methods
    whose accuracy differs between seeds."""
    kept = rows[rows["dataset"].isin(datasets) & rows["method"].isin(methods)]
    per_seed = kept.groupby(["method", "seed"])["accuracy"].mean().groupby("method").std(ddof=1).dropna()
    moving = ", ".join(f"{m} {per_seed[m]:.3f}" for m in methods if per_seed.get(m, 0) > 0)
    return (f"accuracies are means over {rows['seed'].nunique()} training seeds; seed sd of the mean over tasks: "
            f"{moving or 'none (no method varied)'}")


def _part(acc: Accuracies, weights: dict[str, float], threshold: float, label: str,
          numbers: dict[str, Any], rows: list[str] | None = None) -> str:
    value, low, high = acc.interval(weights, rows)
    numbers[label] = interval_text(value, low, high)
    return compare(low, high, threshold)


def _means(acc: Accuracies, methods: list[str]) -> dict[str, Any]:
    """Each method's mean accuracy with its 95% interval (Wilson's on a single task)."""
    if len(acc.wide) == 1:
        d = acc.wide.index[0]
        return {m: interval_text(acc.wide.loc[d, m], *wilson(acc.wide.loc[d, m], int(acc.n[d]))) for m in methods}
    return {m: interval_text(*acc.interval({m: 1.0})) for m in methods}


def selected_heads_near_base(accuracy: pd.DataFrame | None) -> Verdict:
    """The top 5% of heads by U|T or S come near the whole model (B) and far above random heads (R)."""
    criterion = (f"mean accuracy of U|T and of S each >= B - {NEAR:g} and >= R + {ABOVE_RANDOM:g}")
    methods = ["U|T", "S", "B", "R"]
    if isinstance(acc := _accuracies(accuracy, methods, criterion), Verdict):
        return acc
    numbers = _means(acc, methods)
    parts = [_part(acc, {m: 1.0, "B": -1.0}, -NEAR, f"{m} - B", numbers) for m in ("U|T", "S")]
    parts += [_part(acc, {m: 1.0, "R": -1.0}, ABOVE_RANDOM, f"{m} - R", numbers) for m in ("U|T", "S")]
    return _decide(all_of(parts), numbers, criterion, acc.caveat)


def heads_carry_alignment(accuracy: pd.DataFrame | None) -> Verdict:
    """All heads alone (H) come near the whole model (B): about 90% of the alignment comes from heads."""
    criterion = f"mean over datasets of H - {HEADS_SHARE:g} B >= 0 (H / B >= {HEADS_SHARE:g})"
    if isinstance(acc := _accuracies(accuracy, ["H", "B"], criterion), Verdict):
        return acc
    numbers = {"H / B": float((acc.wide["H"] / acc.wide["B"]).mean()), **_means(acc, ["H", "B"])}
    status = _part(acc, {"H": 1.0, "B": -HEADS_SHARE}, 0.0, f"H - {HEADS_SHARE:g} B", numbers)
    return _decide(status, numbers, criterion, acc.caveat)


def optimized_weights_best(accuracy: pd.DataFrame | None) -> Verdict:
    """Optimised head weights (O) score best of all selections and above the model itself (B)."""
    criterion = "mean accuracy of O above that of B and of every other selection (U, U|T, S, R, H)"
    methods = ["O", "B", "U", "U|T", "S", "R", "H"]
    if isinstance(acc := _accuracies(accuracy, methods, criterion), Verdict):
        return acc
    numbers = _means(acc, ["O", "B"])
    parts = [_part(acc, {"O": 1.0, m: -1.0}, 1e-12, f"O - {m}", numbers) for m in methods[1:]]
    return _decide(all_of(parts), numbers, criterion, acc.caveat)


def residual_near_lin(accuracy: pd.DataFrame | None) -> Verdict:
    """ResiDual (RD) is comparable to, if not better than, the linear aligner (Lin) on every dataset."""
    criterion = f"RD >= Lin - {NEAR:g} on every dataset"
    if isinstance(acc := _accuracies(accuracy, ["RD", "Lin"], criterion), Verdict):
        return acc
    numbers = _means(acc, ["RD", "Lin"])
    parts = {d: _part(acc, {"RD": 1.0, "Lin": -1.0}, -NEAR, f"RD - Lin on {d}", {}, [d]) for d in acc.wide.index}
    worst = (acc.wide["RD"] - acc.wide["Lin"]).idxmin()
    _part(acc, {"RD": 1.0, "Lin": -1.0}, -NEAR, f"RD - Lin on {worst} (worst)", numbers, [worst])
    return _decide(all_of(list(parts.values())), numbers, criterion, acc.caveat)


def _params(params: pd.DataFrame | None, method: str) -> float | None:
    if params is None:
        return None
    rows = params.loc[params["method"] == method, "params"]
    return float(rows.iloc[0]) if len(rows) else None


def residual_improves_base(accuracy: pd.DataFrame | None) -> Verdict:
    """Training ResiDual improves on the base model's zero-shot accuracy (Figure 5)."""
    criterion = f"mean accuracy of RD >= Base + {IMPROVES:g}"
    if isinstance(acc := _accuracies(accuracy, ["RD", "Base"], criterion), Verdict):
        return acc
    numbers = _means(acc, ["RD", "Base"])
    return _decide(_part(acc, {"RD": 1.0, "Base": -1.0}, IMPROVES, "RD - Base", numbers), numbers, criterion,
                   acc.caveat)


def lin_near_full(accuracy: pd.DataFrame | None) -> Verdict:
    """A linear aligner on the output approximates full finetuning."""
    criterion = f"mean accuracy of Lin >= Full finetuning - {NEAR:g}"
    methods = ["Lin", "Full finetuning"]
    if isinstance(acc := _accuracies(accuracy, methods, criterion), Verdict):
        return acc
    numbers = _means(acc, methods)
    return _decide(_part(acc, {"Lin": 1.0, "Full finetuning": -1.0}, -NEAR, "Lin - Full", numbers), numbers,
                   criterion, acc.caveat)


def residual_near_full_with_few_params(accuracy: pd.DataFrame | None, params: pd.DataFrame | None) -> Verdict:
    """ResiDual comes close to full finetuning with far fewer trained parameters."""
    criterion = (f"mean accuracy of RD >= Full finetuning - {NEAR:g}, with at most {FEWER_PARAMS:.0%} "
                 "of its parameters")
    methods = ["RD", "Full finetuning"]
    n_rd, n_full = _params(params, "RD"), _params(params, "Full finetuning")
    if n_rd is None or n_full is None:
        return untestable(criterion, _missing(methods) + " and both parameter counts")
    if isinstance(acc := _accuracies(accuracy, methods, criterion), Verdict):
        return acc
    numbers = {**_means(acc, methods), "RD params": int(n_rd), "Full finetuning params": int(n_full)}
    close = _part(acc, {"RD": 1.0, "Full finetuning": -1.0}, -NEAR, "RD - Full", numbers)
    return _decide(all_of([close, "holds" if n_rd <= FEWER_PARAMS * n_full else "does not hold"]), numbers,
                   criterion, acc.caveat)


def rdstar_near_rd(accuracy: pd.DataFrame | None, params: pd.DataFrame | None) -> Verdict:
    """RD* (heads only, PCs to 90% variance) is comparable to RD with a fraction of its parameters."""
    criterion = f"mean accuracy of RD* >= RD - {NEAR:g}, with at most {RDSTAR_PARAMS:.0%} of RD's parameters"
    n_star, n_rd = _params(params, "RD*"), _params(params, "RD")
    if n_star is None or n_rd is None:
        return untestable(criterion, _missing(["RD*", "RD"]) + " and both parameter counts")
    if isinstance(acc := _accuracies(accuracy, ["RD*", "RD"], criterion), Verdict):
        return acc
    numbers = {**_means(acc, ["RD*", "RD"]), "RD* / RD params": n_star / n_rd}
    close = _part(acc, {"RD*": 1.0, "RD": -1.0}, -NEAR, "RD* - RD", numbers)
    return _decide(all_of([close, "holds" if n_star <= RDSTAR_PARAMS * n_rd else "does not hold"]), numbers,
                   criterion, acc.caveat)


def rdy_behind_rd(accuracy: pd.DataFrame | None) -> Verdict:
    """ResiDual on the output alone (RDY) falls behind RD on some tasks: output components are not aligned."""
    criterion = f"RD - RDY >= {RDY_GAP:g} on at least one dataset"
    if isinstance(acc := _accuracies(accuracy, ["RD", "RDY"], criterion), Verdict):
        return acc
    parts = [_part(acc, {"RD": 1.0, "RDY": -1.0}, RDY_GAP, d, {}, [d]) for d in acc.wide.index]
    gap = acc.wide["RD"] - acc.wide["RDY"]
    numbers: dict[str, Any] = {"on": gap.idxmax()}
    _part(acc, {"RD": 1.0, "RDY": -1.0}, RDY_GAP, "largest gap", numbers, [gap.idxmax()])
    return _decide(any_of(parts), numbers, criterion, acc.caveat)


# --- Appendix A.2 -----------------------------------------------------------------------------------------

def textspan_equals_somp(equivalence: pd.DataFrame | None) -> Verdict:
    """TextSpan and SOMP (row-variance criterion) pick the same atoms and leave the same residual."""
    criterion = f"same atoms in the same order on every head, and every |R_TextSpan - R_SOMP| <= {SOMP_TOLERANCE:g}"
    if equivalence is None or equivalence.empty:
        return untestable(criterion, "no TextSpan-vs-SOMP comparison")
    same = equivalence["identical_atoms"].astype(bool)
    worst = float(equivalence["max_residual_difference"].max())
    return _decide(bool(same.all()) and worst <= SOMP_TOLERANCE,
                   {"heads": equivalence["unit"].nunique(), "comparisons (head x dictionary)": len(equivalence),
                    "with identical atoms": int(same.sum()),
                    "max residual difference": worst}, criterion,
                   caveat="deterministic: no sampling, equality up to a float64 tolerance")
