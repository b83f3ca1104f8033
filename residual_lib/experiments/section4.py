"""What the two Section 4 pages (Table 1, Figure 5 / Table 2) share: the real networks beside the toy CLIP, and
the spread of their trained methods over training seeds.

A real network (`real_models`: no text tower) runs its own tasks and counts (the page's `real_*` parameters)
with a class-mean classifier; the toy CLIP keeps its zero-shot tasks. Training runs once per seed of `seeds`
(data order and initialisation); the unit caches' subsets stay those of `seed`.
"""

from __future__ import annotations

import pandas as pd

from .base import ParamsError


def model_params(p, name: str, real_fields: dict[str, str]):
    """The page's parameters as they apply to one model: a real network reads each field of `real_fields` (field ->
    the real_* parameter standing in for it) from its real_* parameter."""
    if name not in p.real_models:
        return p
    return p.replace(**{field: getattr(p, real) for field, real in real_fields.items()})


def all_models(p) -> list[str]:
    """The toy models, then the real networks."""
    return [*p.models, *p.real_models]


def training_pairs(p, real_fields: dict[str, str]) -> list[tuple[str, str]]:
    """Every (model, task) a Section 4 page computes: each model with its own tasks."""
    return [(m, d) for m in all_models(p) for d in model_params(p, m, real_fields).datasets]


def check_models_and_seeds(p) -> None:
    """A model is toy or real, never both; at least one training seed, none repeated."""
    both = sorted(set(p.models) & set(p.real_models))
    if both:
        raise ParamsError(f"models {both} are in both models and real_models; list each once")
    if not p.seeds or len(set(p.seeds)) != len(p.seeds):
        raise ParamsError(f"parameter seeds={p.seeds!r} must be a non-empty list of distinct training seeds")
    if p.real_models and not p.real_datasets:
        raise ParamsError(f"real_models={p.real_models!r} need real_datasets (their tasks)")
    if p.k_shot < 1:
        raise ParamsError(f"parameter k_shot={p.k_shot!r} must be at least 1")


def seed_spread(table: pd.DataFrame, keys: list[str], value: str = "accuracy") -> pd.DataFrame:
    """Per group of `keys`: the mean of `value` over seeds, its standard deviation (0 for one seed), min, max and
    the number of seeds."""
    grouped = table.groupby(keys, sort=False)[value]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1).fillna(0.0), "min": grouped.min(),
                         "max": grouped.max(), "seeds": grouped.size()}).reset_index()


def mean_sd_text(mean: float, sd: float, seeds: int) -> str:
    """'0.812 ± 0.004' over several seeds, '0.812' for one."""
    return f"{mean:.3f}" if seeds < 2 else f"{mean:.3f} ± {sd:.3f}"


def classifier_text(accuracy: pd.DataFrame, base: str) -> str:
    """One sentence per model with a class-mean classifier: its k and the model's own accuracy (`base`: "B" or
    "Base") per task; or that every model of the build classifies from text."""
    rows = accuracy[accuracy["method"] == base]
    parts = []
    for model, part in rows[~rows["classifier"].str.startswith("zero-shot")].groupby("model", sort=False):
        means = part.groupby("dataset", sort=False)["accuracy"].mean()
        chance = part.groupby("dataset", sort=False)["chance"].first()
        tasks = ", ".join(f"{d} {a:.3f} (chance {chance[d]:.2f})" for d, a in means.items())
        parts.append(f"{model} has no text tower: its classifier is {part['classifier'].iloc[0]} (the centroid of "
                     f"the model's own output embedding over k labelled images per class, not text), and the model "
                     f"itself reaches {tasks}")
    return "; ".join(parts) + "." if parts else "every model of this build has a text tower and a zero-shot classifier."


def training_health(result) -> pd.DataFrame:
    """A Section 4 page's training-health table (its `training` table: per model, task, seed and trained method the
    rate and its place in the range test, the epoch kept, epochs run, cap hit, scale range, flags and the remedy
    that ran), with `healthy` spelled out; flagged runs are left out of the claim verdicts."""
    table = result.tables["training"].copy()
    table["healthy"] = table["healthy"].map({True: "yes", False: "FLAGGED"})
    return table
