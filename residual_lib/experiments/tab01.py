"""Table 1 (and 3-5): coarse unit alignment by selecting heads (Section 4.1).

Per model and task: the test accuracy of the top 5% of heads by U, U|T and S, of random heads (R), of all
heads (H), of the model (B) and of trained per-head weights (O, over training seeds); the sweep over the share of
heads kept; the paper's tables beside ours. The toy CLIP classifies from text (zero-shot); a real network without
a text tower (`real_models`) from the class means of k labelled images (`section4`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..report import style
from ..alignment.tasks import (DEFAULT_K_SHOT, coarse_unit_alignment, load_task, resolve_logit_scale,
                               task_caches, test_size)
from ..store.cache import CacheKey
from ..models.registry import load_model
from ..paper.reference import reference
from ..report.plots_spectral import dataset_display, model_display
from ..analysis.probe import probe_accuracy
from ..alignment.residual import Architecture
from ..alignment.selection import head_scores, top_heads
from ..store.stored import stored
from ..toy.checkpoint import weights_id
from ..alignment.training import protocol_config
from . import section4
from .base import CacheDtype, ComputeParams, ParamsError, Result, computes, nonempty, positive, readings_text

METHODS = ["U", "U|T", "S", "R", "H", "B", "O"]  # Table 1's columns, in the paper's order
# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol); the paper profile sets these.
AUTHORS = {"head_score": "per_direction", "head_count": "authors", "random_rule": "randn_topk",
           "protocol": "authors_code", "logit_scale": "model", "prompts": "authors"}


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["toy-clip"])  # registered names or open_clip architectures
    datasets: list[str] = field(default_factory=lambda: ["toy-shape", "toy-colour", "toy-pattern", "toy-position",
                                                         "toy-size"])  # zero-shot tasks
    n_train: int | None = 2000  # training images per task (O); None: the whole split
    n_val: int | None = 500  # validation images (head scores, early stopping); None: all
    n_test: int | None = 1000  # test images (every reported accuracy); None: all
    seed: int = 0  # which subset of each split (and of the k-shot images)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # O's training seeds (data order, initialisation)
    # Real networks without a text tower: their own tasks and counts, classified by class means (section4)
    real_models: list[str] = field(default_factory=list)
    real_datasets: list[str] = field(default_factory=lambda: ["fashion-mnist", "sklearn-digits"])
    real_n_train: int | None = 400  # the k-shot images come out of these
    real_n_val: int | None = 100
    real_n_test: int | None = 360
    classifier: Literal["auto", "zero_shot", "class_mean"] = "auto"  # auto: zero-shot when the model has text
    k_shot: int = DEFAULT_K_SHOT  # labelled images per class of a class-mean classifier
    fraction: float = 0.05  # share of heads kept by U, U|T, S and R (the paper: 5%)
    n_random: int = 10  # seeds of the random control R
    fractions: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.05, 0.10, 0.25, 0.50])  # 0.0: one head
    max_epochs: int = 30  # O: training budget (the paper: 30)
    patience: int = 5  # O: early stopping on validation accuracy (the paper: 5)
    range_steps: int = 100  # O: batches of its LR range test (paper_text; TrainConfig's default)
    train_batch_size: int = 64  # O: batch size (the authors: 64)
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64  # images per forward pass when extracting caches
    device: str = "auto"
    # Readings where the paper's text and the authors' code differ (residual_lib.paper.protocol; the paper profile
    # sets the authors'):
    head_score: Literal["per_sample", "per_direction"] = "per_sample"  # U and U|T (selection.head_scores)
    head_count: Literal["round", "authors"] = "round"  # heads a fraction keeps (selection.n_kept)
    random_rule: Literal["choice", "randn_topk"] = "choice"  # how R draws its heads (selection.random_heads)
    protocol: Literal["paper_text", "authors_code"] = "paper_text"  # O's training (training.protocol_config)
    logit_scale: float | Literal["model"] = 100.0  # O's loss temperature; "model": the model's own
    prompts: Literal["manifest", "authors"] = "manifest"  # class names and templates (templates.prompts)

    def check(self) -> None:
        nonempty(self, "models", "datasets")
        section4.check_models_and_seeds(self)
        positive(self, "n_train", "n_val", "n_test", "real_n_train", "real_n_val", "real_n_test", "n_random", "max_epochs", "patience", "range_steps",
                 "train_batch_size",
                 "batch_size")
        if self.logit_scale != "model":
            positive(self, "logit_scale")
        if not 0 < self.fraction <= 1:
            raise ParamsError(f"parameter fraction={self.fraction!r} must be in (0, 1]")
        bad = [f for f in self.fractions if not 0 <= f <= 1]
        if bad or not self.fractions:
            raise ParamsError(f"parameter fractions={self.fractions!r} must be a non-empty list of shares in [0, 1] "
                              "(0 stands for a single head)")


# A real network's stand-ins for the toy parameters (section4.model_params)
REAL_FIELDS = {"datasets": "real_datasets", "n_train": "real_n_train", "n_val": "real_n_val",
               "n_test": "real_n_test"}


def caches(p: Params) -> list[CacheKey]:
    """Every task's train, val and test caches, per model."""
    keys = []
    for m, d in training_pairs(p):
        q = section4.model_params(p, m, REAL_FIELDS)
        keys += task_caches(m, d, q.n_train, q.n_val, q.n_test, q.seed, q.cache_dtype)
    return keys


# Parameters that do not change what one (model, task) computes (the real_* ones are read into the fields they
# stand in for). (device and threads: the same computation, which may differ only in the last bits.)
PAGE_ONLY = ("models", "datasets", "real_models", *REAL_FIELDS.values(), "device", "threads")


def training_pairs(p: Params) -> list[tuple[str, str]]:
    """The (model, task) pairs `run` computes, each one job of the paper profile (`residual_lib.store.jobs.TrainJob`)."""
    return section4.training_pairs(p, REAL_FIELDS)


def train_task(p: Params, model_name: str, dataset: str, model=None) -> tuple[dict, pd.DataFrame, int, pd.DataFrame]:
    """Table 1's row (O: its test accuracy per training seed, a dict; classifier: how the classifier was built), the
    fraction sweep, the number of classes and the kept heads beside the probe (`kept_heads`) of one (model, task),
    stored once and reused."""
    return stored("tab01", train_key(p, model_name, dataset), lambda: _train_task(p, model_name, dataset, model))


def train_keys(p: Params, model_name: str, dataset: str) -> list[dict]:
    """The stored results `train_task` reads: one, holding every seed."""
    return [train_key(p, model_name, dataset)]


def train_key(p: Params, model_name: str, dataset: str) -> dict:
    """What decides one (model, task)'s stored result: the pair, the toy weights (`weights_id`) and every
    parameter but the page-only ones."""
    q = section4.model_params(p, model_name, REAL_FIELDS)
    return {"model": model_name, "dataset": dataset, "weights": weights_id(model_name),
            **{k: v for k, v in q.to_dict().items() if k not in PAGE_ONLY}}


def _train_task(p: Params, model_name: str, dataset: str, model=None) -> tuple[dict, pd.DataFrame, int, pd.DataFrame]:
    p = section4.model_params(p, model_name, REAL_FIELDS)
    model = model if model is not None else load_model(model_name, device=p.device)
    config = protocol_config("O", p.protocol, max_epochs=p.max_epochs, patience=p.patience, range_steps=p.range_steps,
                             batch_size=p.train_batch_size, device=p.device, seed=p.seeds[0])
    task = load_task(model, dataset, n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, seed=p.seed, device=p.device,
                     batch_size=p.batch_size, dtype=p.cache_dtype, logit_scale=resolve_logit_scale(model, p.logit_scale),
                     prompts=p.prompts, classifier=p.classifier, k_shot=p.k_shot)
    row, sweep, optimised = coarse_unit_alignment(task, Architecture.from_model(model), p.fraction, p.n_random,
                                                  p.fractions, config, head_score=p.head_score,
                                                  head_count=p.head_count, random_rule=p.random_rule, seeds=p.seeds)
    row |= {"O": {s: t.test_accuracy for s, t in optimised.items()}, "classifier": task.classifier.kind,
            "O health": {s: {**t.extra["health"], "remedy": t.extra.get("remedy", "")} for s, t in optimised.items()}}
    return row, sweep, task.classifier.n_classes, kept_heads(task, row["k"], p.head_score)


def kept_heads(task, k: int, head_score: str = "per_sample") -> pd.DataFrame:
    """The ground truth beside the coarse selection: per head, a linear probe's held-out accuracy for the task's
    label on the test units (`residual_lib.analysis.probe`), its rank (1: the best), and which rules keep it among their k.

    Columns: head, accuracy, chance, rank, kept_by (the rules, comma-separated; empty: none).
    """
    heads = task.test.heads
    table = probe_accuracy(task.test, {"label": task.test.labels}, names=heads, progress=False)
    table = table.rename(columns={"unit": "head"}).drop(columns="attribute")
    table["rank"] = table["accuracy"].rank(ascending=False, method="min").astype(int)
    kept = {rule: set(top_heads(head_scores(task.val, task.classifier, rule, head_score), k)) for rule in ("U|T", "S")}
    table["kept_by"] = [", ".join(rule for rule, chosen in kept.items() if h in chosen) for h in table["head"]]
    return table


@computes
def run(p: Params) -> Result:
    """Table 1's row per model and task (O: the mean over training seeds, with its spread), the fraction sweep, the
    paper's tables and the page's findings."""
    rows, sweeps, probes, n_heads, training = [], [], [], {}, []
    for name in section4.all_models(p):
        model = load_model(name, device=p.device)
        n_heads[model_display(name)] = len(Architecture.from_model(model).heads)
        for ds in section4.model_params(p, name, REAL_FIELDS).datasets:
            row, sweep, n_classes, probe = train_task(p, name, ds, model)
            labels = {"model": model_display(name), "dataset": dataset_display(ds)}
            health = row.pop("O health", {})  # absent from results stored before O's health was recorded
            rows += [{**labels, "seed": seed, "chance": 1 / n_classes, **row, "O": o} for seed, o in row["O"].items()]
            training += [{**labels, "seed": seed, "method": "O", **h} for seed, h in health.items()]
            sweeps.append(sweep.assign(**labels))
            probes.append(probe.assign(**labels))
    per_seed = pd.DataFrame(rows)
    o_spread = section4.seed_spread(per_seed, ["model", "dataset"], "O")
    ours = (per_seed.drop(columns=["seed", "O"]).drop_duplicates(["model", "dataset"])
            .merge(o_spread.rename(columns={"mean": "O", "sd": "O sd", "min": "O min", "max": "O max"})))
    probe = pd.concat(probes, ignore_index=True)
    paper = reference("table1")
    table1 = ours.melt(id_vars=["model", "dataset"], value_vars=METHODS, var_name="method", value_name="accuracy")
    table1_seeds = per_seed.melt(id_vars=["model", "dataset", "seed", "chance", "classifier"], value_vars=METHODS,
                                 var_name="method", value_name="accuracy")
    training = pd.DataFrame(training, columns=["model", "dataset", "seed", "method", "healthy"] if not training else None)
    # O is the one trained column: a run that kept epoch 0, diverged or picked an edge rate is left out of the verdicts
    table1_seeds = table1_seeds.merge(training[["model", "dataset", "seed", "method", "healthy"]], how="left")
    table1_seeds["healthy"] = table1_seeds["healthy"].fillna(True).astype(bool)
    differences = ours_minus_paper(table1, paper)
    heads = pd.DataFrame({"model": list(n_heads), "heads": list(n_heads.values()),
                          "kept": [int(ours.loc[ours["model"] == m, "k"].iloc[0]) for m in n_heads]})
    kept = kept_summary(probe)
    return Result(p, tables={"table1": table1, "ours": ours, "sweep": pd.concat(sweeps, ignore_index=True),
                             "heads": heads, "paper": paper, "ours_minus_paper": differences, "probe": probe,
                             "kept": kept, "table1_seeds": table1_seeds, "training": training},
                  findings=_findings(ours, n_heads, sorted(set(ours["model"]) & set(paper["model"])))
                  | _kept_findings(kept, ours) | {"readings": readings_text(p, AUTHORS),
                                                  "classifier_text": section4.classifier_text(table1_seeds, "B"),
                                                  "n_seeds": len(p.seeds),
                                                  "n_o_flagged": int((~training["healthy"].astype(bool)).sum()),
                                                  "n_o_runs": len(training)})


def ours_minus_paper(table1: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table (model, dataset, method, ours, paper, ours - paper) for the models the paper also reports."""
    merged = table1.rename(columns={"accuracy": "ours"}).merge(
        paper.rename(columns={"accuracy": "paper"}), on=["model", "dataset", "method"], how="inner")
    return merged.assign(**{"ours - paper": merged["ours"] - merged["paper"]})[
        ["model", "dataset", "method", "ours", "paper", "ours - paper"]]


def _findings(ours: pd.DataFrame, n_heads: dict[str, int], shared: list[str]) -> dict:
    avg = ours[METHODS].mean()
    return {
        "shared_models": ", ".join(shared) if shared else "none",
        "avg_b": float(avg["B"]), "avg_h": float(avg["H"]), "avg_o": float(avg["O"]), "avg_u": float(avg["U"]),
        "avg_ut": float(avg["U|T"]), "avg_s": float(avg["S"]), "avg_r": float(avg["R"]),
        "n_o_beats_b": int((ours["O"] > ours["B"]).sum()), "n_rows": len(ours),
        "h_share_of_b": float((ours["H"] / ours["B"]).mean()),
        "heads_text": ", ".join(f"{m} {h} heads" for m, h in n_heads.items()),
        "k_text": ", ".join(f"{m}: {k}" for m, k in ours.groupby("model", sort=False)["k"].first().items()),
    }


def kept_summary(probe: pd.DataFrame) -> pd.DataFrame:
    """Per model and task: the head the probe reads the label from best, and for U|T and S the head(s) kept with
    their probe accuracy and rank (1: the probe's best head), beside the probe's chance."""
    rows = []
    for (m, d), part in probe.groupby(["model", "dataset"], sort=False):
        best = part.loc[part["accuracy"].idxmax()]
        row = {"model": m, "dataset": d, "probe's best head": best["head"], "its probe accuracy": best["accuracy"],
               "probe chance": float(part["chance"].iloc[0])}
        for rule in ("U|T", "S"):
            chosen = part[part["kept_by"].str.split(", ").apply(lambda rules, r=rule: r in rules)]
            row[f"{rule} keeps"] = ", ".join(chosen["head"])
            row[f"{rule}: probe accuracy"] = float(chosen["accuracy"].mean())
            row[f"{rule}: probe rank"] = int(chosen["rank"].min())
        rows.append(row)
    return pd.DataFrame(rows)


def _kept_findings(kept: pd.DataFrame, ours: pd.DataFrame) -> dict:
    """How often each rule keeps one of the probe's top three heads, and whether that lifts the kept heads'
    zero-shot accuracy above random heads."""
    n = len(kept)
    top3 = {rule: int((kept[f"{rule}: probe rank"] <= 3).sum()) for rule in ("U|T", "S")}
    return {"n_tasks": n, "ut_top3": top3["U|T"], "s_top3": top3["S"],
            "s_top1": int((kept["S: probe rank"] == 1).sum()),
            "n_s_beats_r": int((ours["S"] > ours["R"]).sum()), "n_ut_beats_r": int((ours["U|T"] > ours["R"]).sum()),
            "mean_best_probe": float(kept["its probe accuracy"].mean())}


def with_average(table: pd.DataFrame, label: str = "dataset") -> pd.DataFrame:
    """`table` with an 'Average' row (in column `label`): the mean of every numeric column."""
    average = table.mean(numeric_only=True).to_frame().T.assign(**{label: "Average"})
    return pd.concat([table, average], ignore_index=True)[list(table.columns)]


def model_tables(result: Result) -> dict[str, pd.DataFrame]:
    """Per model, caption -> its tasks' accuracies by method (R's standard deviation over random draws as 'R sd', O's
    over training seeds as 'O sd'), with the average."""
    ours, heads = result.tables["ours"], result.tables["heads"].set_index("model")
    out = {}
    for label, part in ours.groupby("model", sort=False):
        shown = part[["dataset", "chance", *METHODS, "R_std", "O sd"]].rename(columns={"R_std": "R sd"})
        shown = shown.reset_index(drop=True)
        caption = (f"{label}: {heads.loc[label, 'heads']} heads, {heads.loc[label, 'kept']} kept by U, U|T, S and R; "
                   f"classifier {part['classifier'].iloc[0]}; O over {int(part['seeds'].iloc[0])} seeds")
        out[caption] = with_average(shown)
    return out


def paper_table(result: Result) -> pd.DataFrame:
    """The paper's Tables 1 and 3-5: one row per model and dataset, one column per method."""
    paper = result.tables["paper"]
    wide = paper.pivot_table(index=["model", "dataset"], columns="method", values="accuracy", sort=False)
    return wide[METHODS].reset_index().rename_axis(columns=None)


def difference_tables(result: Result) -> dict[str, pd.DataFrame]:
    """Per model the paper also reports, caption -> ours minus the paper's, one column per method."""
    out = {}
    for label, part in result.tables["ours_minus_paper"].groupby("model", sort=False):
        wide = part.pivot_table(index="dataset", columns="method", values="ours - paper", sort=False)
        out[f"{label}: ours minus the paper's"] = wide.reindex(columns=METHODS).reset_index().rename_axis(columns=None)
    return out


def plot_averages(result: Result):
    """Mean test accuracy per method: this build's models (bars) beside the paper's Average rows (markers)."""
    ours, paper = result.tables["ours"], result.tables["paper"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    average = ours.groupby("model", sort=False)[METHODS].mean()
    x = np.arange(len(METHODS))
    width = 0.8 / len(average)
    for i, (label, values) in enumerate(average.iterrows()):
        axes[0].bar(x + i * width, values.to_numpy(), width, color=style.OURS, alpha=1 - 0.3 * i, label=label)
    axes[0].set(xticks=x + 0.4 - width / 2, xticklabels=METHODS, ylim=(0, 1), ylabel="mean test accuracy",
                title=f"This build: mean over {len(result.params.datasets)} tasks")
    axes[0].legend(fontsize=8)
    paper_avg = paper[paper["dataset"] == "Average"].pivot(index="model", columns="method", values="accuracy")[METHODS]
    for i, (label, values) in enumerate(paper_avg.iterrows()):
        axes[1].plot(x + (i - 2) * 0.08, values.to_numpy(), marker="osD^v"[i % 5], ls="none", color=style.PAPER,
                     label=label)
    axes[1].set(xticks=x, xticklabels=METHODS, ylim=(0, 1), title=style.paper_label("Average row of Tables 1, 3-5"))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_sweep(result: Result):
    """Test accuracy against the number of top heads kept, per model and task; R as mean +- sd, H, B, chance."""
    ours, sweep = result.tables["ours"], result.tables["sweep"]
    labels = list(dict.fromkeys(sweep["model"] + " / " + sweep["dataset"]))
    cols = min(3, len(labels))
    rows_n = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.0 * cols, 3.0 * rows_n), squeeze=False, sharey=True)
    colours = {"U": "#1f5fa8", "U|T": "#2ca02c", "S": "#9467bd"}
    for ax, label in zip(axes.flat, labels):
        m, d = label.split(" / ")
        part = sweep[(sweep["model"] == m) & (sweep["dataset"] == d)]
        for rule, colour in colours.items():
            line = part[part["rule"] == rule].groupby("k")["accuracy"].mean()
            ax.plot(line.index, line.to_numpy(), marker="o", ms=3, color=colour, label=rule)
        rand = part[part["rule"] == "R"].groupby("k")["accuracy"].agg(["mean", "std"])
        ax.plot(rand.index, rand["mean"], color="grey", ls="--", label="R")
        ax.fill_between(rand.index, rand["mean"] - rand["std"], rand["mean"] + rand["std"], color="grey", alpha=0.2)
        row = ours[(ours["model"] == m) & (ours["dataset"] == d)].iloc[0]
        ax.axhline(row["H"], color="black", lw=0.8, ls=":", label="H")
        ax.axhline(row["B"], color="black", lw=0.8, label="B")
        ax.axhline(row["chance"], color="grey", lw=0.8, ls="-.", label="chance")
        ax.set(xscale="log", title=d if len(result.params.models) == 1 else label, xlabel="heads kept (log scale)",
               ylim=(0, 1.02))
        ax.set_xticks(rand.index, [str(k) for k in rand.index])
        ax.minorticks_off()
    axes[0, 0].set_ylabel("test accuracy")
    axes.flat[0].legend(fontsize=7, ncol=2)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`): one row per seed (the checks
    average them; the methods that do not train repeat their accuracy)."""
    p = result.params
    sizes = pd.DataFrame([{"model": model_display(m), "dataset": dataset_display(d),
                           "n": test_size(d, section4.model_params(p, m, REAL_FIELDS).n_test)}
                          for m, d in training_pairs(p)])
    return {"accuracy": result.tables["table1_seeds"].merge(sizes)}
