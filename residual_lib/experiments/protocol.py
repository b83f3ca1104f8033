"""The Protocol page: every choice where the paper's text and the authors' code differ, and how much it moves.

One row per choice of `residual_lib.paper.protocol.CHOICES`: what the paper says, what the authors' code does,
the library option and the experiments' parameters that switch it, the value each profile's parameter files
set, and, where this build can measure it without training, how much the result moves between the two
readings on this build's model:

- spectral similarity (Fig 4): every head's similarity under the text's matching and the authors';
- U and U|T (Table 1): the heads each score keeps under the per-sample and the per-direction reading;
- kept-head count: heads kept at each fraction under both rules;
- TextSpan / OMP (Fig 3): descriptions and agreement Z under the centred and the authors' pursuits;
- logit scale: the model's own temperature beside the fixed 100;
- training protocol (Table 2): the first task's methods trained by Table 2's page function
  (`fig05_tab02.train_task`) under the LR finder of the text and under the authors' fixed rates and initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..store import cache
from ..analysis.agreement import textspan_omp_agreement
from ..alignment.tasks import load_task, resolve_logit_scale, task_caches
from ..store.cache import CacheKey
from ..models.registry import load_model
from ..paths import REPO_ROOT
from ..paper.protocol import protocol_table
from ..analysis.pursuit import signals_from_units, text_atoms
from ..alignment.selection import HEAD_SCORES, SCORES, head_scores, kept_accuracy, n_kept, top_heads
from ..analysis.spectral import MATCHINGS, dataset_similarities
from ..data.text_dictionary import text_dictionary
from ..alignment.training import PROTOCOLS
from ..units.unit_set import parse_unit
from ..alignment.classifier import DEFAULT_LOGIT_SCALE
from . import fig05_tab02
from .base import CacheDtype, ComputeParams, Dictionary, ParamsError, Result, computes, nonempty, positive
from .fig04 import _n_for

# Each experiment parameter that switches a reading -> the topic of its row in residual_lib.paper.protocol.CHOICES.
SWITCHES: dict[str, str] = {
    "similarity_matching": "Spectral similarity matching (Eq. 3)",
    "head_score": "U and U|T head scores (Sec. 4.1)",
    "protocol": "Learning rate (Sec. 4.2)",
    "logit_scale": "Logit scale of the training loss",
    "prompts": "Prompt templates and class names",
    "textspan_center": "TextSpan projection",
    "omp_normalize": "OMP dictionary",
    "random_rule": "Table 1 control R: how random heads are drawn",
    "head_count": "Number of kept heads",
    "ratio": "Figure 2 ratio column",
    "sample": "Figure 2 sample",
}
# protocol also sets these two (training.protocol_config)
ALSO_BY_PROTOCOL = ("Lambda initialisation", "Lin initialisation")
PROFILES = ("toy", "paper")


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "toy-clip"  # a registered model with a text tower
    reference_dataset: str = "toy-mixed"  # spectral reference and the pursuits' samples (the paper: ImageNet)
    datasets: list[str] = field(default_factory=lambda: ["toy-shape", "toy-sketch"])  # the first is the U/U|T task
    split: str = "train"
    n: int | None = 1000  # images per compared dataset (as Figure 4's page)
    n_reference: int | None = 2000  # images of the reference dataset (as Figures 3 and 4's pages)
    n_train: int | None = 2000  # the task's splits (as Table 1's page)
    n_val: int | None = 500
    n_test: int | None = 1000
    seed: int = 0
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    evr_threshold: float = 0.9
    fraction: float = 0.25  # share of heads kept by U and U|T (the paper: 5%, one head of the toy model's 16)
    dictionary: Dictionary = "toy"
    k: int = 5  # descriptions per head
    last_layers: int = 2  # heads of the last this-many layers in the pursuit comparison
    # Table 2's methods trained on the first task under both protocols (must include RD); [] skips the training
    training_methods: list[str] = field(default_factory=lambda: ["RD"])

    def check(self) -> None:
        nonempty(self, "datasets")
        positive(self, "n", "n_reference", "n_train", "n_val", "n_test", "batch_size", "k", "last_layers")
        if not 0 < self.fraction <= 1:
            raise ParamsError(f"parameter fraction={self.fraction!r} must be in (0, 1]")
        if self.training_methods:
            try:
                self._training_params("paper_text")
            except ParamsError as err:
                raise ParamsError(f"parameter training_methods={self.training_methods!r}: {err}") from None

    def _training_params(self, protocol: str) -> "fig05_tab02.Params":
        """Table 2's parameters for the first task under `protocol`, on this page's caches, without finetuning."""
        return fig05_tab02.Params(
            models=[self.model_name], datasets=[self.datasets[0]], reference_dataset=self.reference_dataset,
            n_reference=_n_for(self.reference_dataset, self.split, self.n_reference), n_train=self.n_train,
            n_val=self.n_val, n_test=self.n_test, seed=self.seed, seeds=[self.seed], methods=list(self.training_methods),
            finetune=False, cache_dtype=self.cache_dtype, batch_size=self.batch_size, device=self.device,
            protocol=protocol)


def _reference_key(p: Params) -> CacheKey:
    return CacheKey(p.model_name, p.reference_dataset, p.split, _n_for(p.reference_dataset, p.split, p.n_reference),
                    p.seed, p.cache_dtype)


def _dataset_keys(p: Params) -> list[CacheKey]:
    return [CacheKey(p.model_name, d, p.split, _n_for(d, p.split, p.n), p.seed, p.cache_dtype) for d in p.datasets]


def caches(p: Params) -> list[CacheKey]:
    """The reference cache, each compared dataset's cache, and the first dataset's task caches."""
    keys = [_reference_key(p), *_dataset_keys(p)]
    keys += task_caches(p.model_name, p.datasets[0], p.n_train, p.n_val, p.n_test, p.seed, p.cache_dtype)
    return list(dict.fromkeys(keys))


def _extract(model, key: CacheKey, p: Params):
    return cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())


@computes
def run(p: Params) -> Result:
    """The choices table with each profile's values and this build's measured effects."""
    model = load_model(p.model_name, device=p.device)
    ref = _extract(model, _reference_key(p), p)
    spectral = matching_effect(ref, {k.dataset: _extract(model, k, p) for k in _dataset_keys(p)}, p.evr_threshold,
                               p.device)
    task = load_task(model, p.datasets[0], n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, seed=p.seed,
                     device=p.device, batch_size=p.batch_size, dtype=p.cache_dtype)
    selections = head_score_effect(task, p.fraction)
    counts = head_count_effect(len(ref.heads))
    first_layer = model.n_layers - min(p.last_layers, model.n_layers)
    heads = [u for u in ref.heads if parse_unit(u)[1] >= first_layer]
    pursuits = pursuit_effect(signals_from_units(ref, heads, device=p.device),
                              text_atoms(model, text_dictionary(p.dictionary)), p.k, p.seed, p.device)
    own_scale = resolve_logit_scale(model, "model")
    training = training_effect(p, model)
    effects = effect_texts(spectral, selections, counts, pursuits, own_scale, p) | training_texts(training, p)
    table = choices_table(profile_values(), effects)
    return Result(p, tables={"choices": table, "spectral": spectral, "selections": selections, "counts": counts,
                             "pursuits": pursuits, "training": training},
                  findings={"n_choices": len(table), "n_measured": int((table["measured here"] != "").sum()),
                            "model": p.model_name, "task": p.datasets[0]})


def training_effect(p: Params, model) -> pd.DataFrame:
    """Per protocol and method on the first task: test accuracy, the learning rate used (as text: rates span
    1e-5 to 0.8) and the epochs run (Table 2's `train_task`, stored once and reused)."""
    rows = []
    for protocol in PROTOCOLS if p.training_methods else ():
        q = p._training_params(protocol)
        trained = fig05_tab02.train_task(q, p.model_name, p.datasets[0], model)[q.seeds[0]]
        for method, t in trained.items():
            rows.append({"protocol": protocol, "method": method, "test accuracy": t.test_accuracy,
                         "learning rate": f"{t.result.lr:.2g}" if t.result else "",
                         "epochs": t.result.epochs_run if t.result else 0})
    return pd.DataFrame(rows, columns=["protocol", "method", "test accuracy", "learning rate", "epochs"])


def training_texts(training: pd.DataFrame, p: Params) -> dict[str, str]:
    """topic -> the sentence on the training protocol's effect (the rates and the initialisations move together)."""
    trained = training[training["method"] != "Base"]
    if trained.empty:
        return {}
    parts = []
    for method, rows in trained.groupby("method", sort=False):
        by = rows.set_index("protocol")
        parts.append(f"{method}: " + " -> ".join(
            f"{by.loc[r, 'test accuracy']:.3f} (lr {by.loc[r, 'learning rate']}, {int(by.loc[r, 'epochs'])} epochs)"
            for r in PROTOCOLS))
    text = "; ".join(parts) + f" ({p.datasets[0]} test accuracy; paper_text -> authors_code)"
    together = "with the learning rate (one protocol switch): " + text
    return {SWITCHES["protocol"]: text, ALSO_BY_PROTOCOL[0]: together,
            **({ALSO_BY_PROTOCOL[1]: together} if "Lin" in set(trained["method"]) else {})}


def matching_effect(reference, others: dict, evr_threshold: float, device: str) -> pd.DataFrame:
    """Per dataset and head: the spectral similarity under every matching rule (one column each)."""
    frames = [dataset_similarities(reference, others, evr_threshold=evr_threshold, device=device, progress=False,
                                   matching=m).set_index(["dataset", "unit"])["similarity"].rename(m)
              for m in MATCHINGS]
    return pd.concat(frames, axis=1).reset_index()


def head_score_effect(task, fraction: float) -> pd.DataFrame:
    """Per score (U, U|T) and reading: the kept heads, their overlap with the other reading's, test accuracy."""
    heads = task.val.heads
    k = n_kept(len(heads), fraction)
    rows = []
    for score in [s for s in SCORES if s != "S"]:
        scores = {r: head_scores(task.val, task.classifier, score, r) for r in HEAD_SCORES}
        kept = {r: top_heads(s, k) for r, s in scores.items()}
        rho = float(spearmanr(*[scores[r].reindex(heads) for r in HEAD_SCORES]).statistic)
        for r in HEAD_SCORES:
            rows.append({"score": score, "reading": r, "k": k, "kept": ", ".join(kept[r]),
                         "shared with the other reading": len(set(kept[HEAD_SCORES[0]]) & set(kept[HEAD_SCORES[1]])),
                         "Spearman between readings": rho,
                         "test accuracy": kept_accuracy(task.test, task.classifier, kept[r])})
    return pd.DataFrame(rows)


def head_count_effect(n_heads: int, fractions=(0.01, 0.05, 0.10, 0.25, 0.50)) -> pd.DataFrame:
    """Heads kept at each fraction under both counting rules, for a model with n_heads heads."""
    return pd.DataFrame([{"fraction": f, "round": n_kept(n_heads, f, "round"), "authors": n_kept(n_heads, f, "authors")}
                         for f in fractions])


def pursuit_effect(signals, atoms: np.ndarray, k: int, seed: int, device: str) -> pd.DataFrame:
    """Per head: TextSpan and OMP picks and agreement |Z| under this build's pursuits and the authors'."""
    ours = textspan_omp_agreement(signals, atoms, k=k, seed=seed, device=device, progress=False)
    theirs = textspan_omp_agreement(signals, atoms, k=k, seed=seed, device=device, progress=False, center=False,
                                    normalize=False)
    return pd.DataFrame({
        "unit": ours.unit,
        "TextSpan atoms shared": [len(set(a) & set(b)) for a, b in zip(ours.textspan, theirs.textspan)],
        "OMP atoms shared": [len(set(a) & set(b)) for a, b in zip(ours.omp, theirs.omp)],
        "|Z| ours": ours.z.abs(), "|Z| authors": theirs.z.abs(), "k": k})


def effect_texts(spectral: pd.DataFrame, selections: pd.DataFrame, counts: pd.DataFrame, pursuits: pd.DataFrame,
                 own_scale: float, p: Params) -> dict[str, str]:
    """topic -> one sentence on how much the result moves between the readings in this build."""
    diff = (spectral["weighted"] - spectral["cosine"]).abs()
    per_dataset = spectral.groupby("dataset")[["cosine", "weighted"]].mean()
    shared = selections.drop_duplicates("score").set_index("score")
    k = int(selections["k"].iloc[0])
    differing = counts[counts["round"] != counts["authors"]]
    return {
        SWITCHES["similarity_matching"]: (
            f"{len(spectral)} head-dataset pairs: |weighted - cosine| mean {diff.mean():.3f}, max {diff.max():.3f}; "
            "mean similarity per dataset "
            + ", ".join(f"{d} {r.cosine:.3f} -> {r.weighted:.3f}" for d, r in per_dataset.iterrows())),
        SWITCHES["head_score"]: "; ".join(
            f"{s}: {int(r['shared with the other reading'])} of {k} kept heads shared, Spearman {r['Spearman between readings']:.2f}"
            f", test accuracy " + " -> ".join(f"{a:.3f}" for a in selections.loc[selections.score == s, "test accuracy"])
            for s, r in shared.iterrows()) + f" ({p.datasets[0]}; per_sample -> per_direction)",
        SWITCHES["head_count"]: ("equal at every fraction for this model" if differing.empty else "differs at "
                                 + ", ".join(f"{f:.0%} ({a} vs {b})" for f, a, b in
                                             zip(differing.fraction, differing["round"], differing.authors))),
        SWITCHES["textspan_center"]: (
            f"{len(pursuits)} heads: TextSpan shares {pursuits['TextSpan atoms shared'].mean():.1f} of {p.k} atoms "
            f"on average; agreement mean |Z| {pursuits['|Z| ours'].mean():.2f} -> {pursuits['|Z| authors'].mean():.2f}"),
        SWITCHES["omp_normalize"]: (f"with the projection above: OMP shares {pursuits['OMP atoms shared'].mean():.1f} "
                                    f"of {p.k} atoms on average"),
        SWITCHES["logit_scale"]: (f"{p.model_name}'s own scale is {own_scale:.1f} (fixed: {DEFAULT_LOGIT_SCALE:.0f}); "
                                  "accuracy is unchanged, the training loss's temperature is not"),
    }


def profile_values(root=REPO_ROOT, profiles=PROFILES) -> pd.DataFrame:
    """(topic, parameter, page, profile, value): each reading parameter as each profile's parameter files set it."""
    from ..book.layout import Layout, page_parameters
    from . import PAGES, experiment

    layout, rows = Layout(root), []
    for notebook, module in PAGES.items():
        params = experiment(notebook).Params
        for name in [n for n in params.names() if n in SWITCHES]:
            for profile in profiles:
                value = page_parameters(layout, notebook, profile, {})[2].get(name, getattr(params(), name))
                rows.append({"topic": SWITCHES[name], "parameter": f"{module}.{name}", "profile": profile,
                             "value": value})
    return pd.DataFrame(rows, columns=["topic", "parameter", "profile", "value"])


def _joined(values: pd.Series) -> str:
    return ", ".join(dict.fromkeys(map(str, values)))


def choices_table(profiles: pd.DataFrame, effects: dict[str, str]) -> pd.DataFrame:
    """One row per protocol choice: the readings, the option, the page parameters, each profile's value, the effect."""
    table = protocol_table()
    by_topic = profiles.assign(topic=profiles["topic"])
    protocol_rows = by_topic[by_topic["parameter"].str.endswith(".protocol")]
    by_topic = pd.concat([by_topic, *[protocol_rows.assign(topic=t) for t in ALSO_BY_PROTOCOL]])
    columns: dict[str, Any] = {"page parameters": by_topic.groupby("topic")["parameter"].agg(_joined)}
    for profile in PROFILES:
        part = by_topic[by_topic["profile"] == profile]
        columns[f"{profile} profile"] = part.groupby("topic")["value"].agg(_joined)
    out = table[["topic", "paper_text", "authors_code", "option"]].rename(
        columns={"paper_text": "paper text", "authors_code": "authors' code", "option": "library option"})
    for name, values in columns.items():
        out[name] = out["topic"].map(values).fillna("")
    out["measured here"] = out["topic"].map(effects).fillna("")
    return out


def spectral_means(result: Result) -> pd.DataFrame:
    """Mean spectral similarity with the reference per dataset, one column per matching rule."""
    return result.tables["spectral"].groupby("dataset")[list(MATCHINGS)].mean().reset_index()
