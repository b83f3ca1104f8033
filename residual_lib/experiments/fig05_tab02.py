"""Figure 5 and Table 2 (and 6, 16): ResiDual alignment (Section 4.2).

Per model and task: the test accuracy of the model (Base), of the linear aligner (Lin), of the ResiDual
variants (RD, RD*, RDY) and of full finetuning, with each method's trained-parameter count; the learning
rates the range tests picked; what RD amplified (per-head and per-PC scales, OMP descriptions of the most
amplified components) and how that compares with linear probes of each head; the paper's tables beside ours.
Every method trains once per seed of `seeds` (Full finetuning on the first seed only unless `finetune_every_seed`);
tables and figures show the mean over seeds with its spread. The toy CLIP classifies from text (zero-shot); a
real network without a text tower (`real_models`) from the class means of k labelled images (`section4`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..report import results, style
from ..alignment.tasks import (DEFAULT_K_SHOT, Trained, describe_components, full_finetuning, head_scale_grid,
                               in_memory, load_task, resolve_logit_scale, residual_alignment, task_caches, test_size,
                               top_components)
from ..data.datasets import dataset_spec
from ..store.cache import CacheKey, extract
from ..models.registry import load_model
from ..paper.reference import reference
from ..report.plots_spectral import dataset_display, model_display
from ..analysis.probe import probe_accuracy
from ..alignment.residual import Architecture, make_method
from ..store.stored import stored
from ..toy.checkpoint import weights_id
from ..data.text_dictionary import text_dictionary
from ..alignment.training import protocol_config
from . import section4
from .base import (
    CacheDtype, ComputeParams, Dictionary, ParamsError, Result, computes, nonempty, positive, readings_text)

TABLE2_METHODS = ["Lin", "RD", "RD*", "RDY"]  # Table 2's columns, in the paper's order
FIG5_BARS = ["Base", "Lin", "Full finetuning", "RD"]  # Figure 5's bars, left to right
# The paper's models whose architectures open_clip knows: their counts follow without weights.
PAPER_ARCHITECTURES = [("CLIP-L", "ViT-L-14"), ("OpenCLIP-L", "ViT-L-14"), ("CLIP-B", "ViT-B-32"),
                       ("OpenCLIP-B", "ViT-B-32")]

Method = Literal["Lin", "RD", "RD*", "RDY"]
# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol); the paper profile sets these.
AUTHORS = {"protocol": "authors_code", "logit_scale": "model", "prompts": "authors", "back_projection": "authors_code"}


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["toy-clip"])  # registered names or open_clip architectures
    datasets: list[str] = field(default_factory=lambda: ["toy-shape", "toy-colour", "toy-pattern", "toy-position",
                                                         "toy-size"])  # zero-shot tasks
    reference_dataset: str = "toy-mixed"  # where Phi and mu come from (the paper: ImageNet train)
    n_reference: int | None = 2000  # reference images for the PCA; None: the whole split
    n_train: int | None = 2000  # training images per task; None: the whole split
    n_val: int | None = 500  # validation images (early stopping); None: all
    n_test: int | None = 1000  # test images; None: all
    seed: int = 0  # which subset of each split (and of the k-shot images)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # training seeds (data order, initialisation)
    # Real networks without a text tower: their own tasks, reference and counts, classified by class means
    real_models: list[str] = field(default_factory=list)
    real_datasets: list[str] = field(default_factory=lambda: ["fashion-mnist", "sklearn-digits"])
    real_reference_dataset: str = "fashion-mnist"  # the real-model page's reference: one cache for both pages
    real_n_reference: int | None = 2000
    real_n_train: int | None = 400  # the k-shot images come out of these
    real_n_val: int | None = 100
    real_n_test: int | None = 360
    real_finetune: list[str] = field(default_factory=list)  # "model/task" pairs of real networks to finetune fully
    # A real tower's step costs seconds on a CPU: its own finetuning budget (None: finetune_lr's reading)
    real_finetune_max_epochs: int = 3
    real_finetune_lr: float | None = None
    classifier: Literal["auto", "zero_shot", "class_mean"] = "auto"  # auto: zero-shot when the model has text
    k_shot: int = DEFAULT_K_SHOT  # labelled images per class of a class-mean classifier
    methods: list[Method] = field(default_factory=lambda: ["Lin", "RD", "RD*", "RDY"])  # Table 2's columns
    rd_star_variance: float = 0.9  # RD*: explained variance kept per head (the paper: 90%)
    max_epochs: int = 30  # the paper: 30
    patience: int = 5  # the paper: 5
    range_steps: int = 100  # batches of each method's LR range test (paper_text; TrainConfig's default)
    train_batch_size: int = 64  # the authors: 64
    finetune: bool = True  # Full finetuning of the vision tower
    finetune_every_seed: bool = False  # False: on the first seed only (it is most of the page's cost)
    finetune_max_epochs: int = 8  # finetuning budget (the paper: 30)
    finetune_lr: float | None = None  # None: the protocol's (paper_text: the LR range test; authors_code: 1e-5)
    finetune_range_steps: int = 100  # batches of finetuning's LR range test (paper_text); each is a full tower step
    dictionary: Dictionary = "toy"  # text dictionary for the OMP descriptions of amplified components
    probe_dataset: str = "toy-colour"  # the task whose per-PC scales are drawn head by head
    n_components_described: int = 6
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    # Readings where the paper's text and the authors' code differ (residual_lib.paper.protocol; the paper profile
    # sets the authors'):
    protocol: Literal["paper_text", "authors_code"] = "paper_text"  # learning rates, init (training.protocol_config)
    logit_scale: float | Literal["model"] = 100.0  # the loss's temperature; "model": the model's own
    prompts: Literal["manifest", "authors"] = "manifest"  # class names and templates (templates.prompts)
    back_projection: Literal["orthonormal", "authors_code"] = "orthonormal"  # RD's map back (residual.BACK_PROJECTIONS)

    def check(self) -> None:
        nonempty(self, "models", "datasets", "methods")
        section4.check_models_and_seeds(self)
        pairs = {f"{m}/{d}" for m in self.real_models for d in self.real_datasets}
        unknown = sorted(set(self.real_finetune) - pairs)
        if unknown:
            raise ParamsError(f"real_finetune {unknown} are not model/task pairs of real_models and real_datasets; "
                              f"valid: {', '.join(sorted(pairs))}")
        if self.logit_scale != "model":
            positive(self, "logit_scale")
        positive(self, "n_reference", "real_n_reference", "real_n_train", "real_n_val", "real_n_test", "n_train",
                 "n_val", "n_test", "max_epochs", "patience", "range_steps", "train_batch_size",
                 "finetune_max_epochs", "finetune_lr", "finetune_range_steps", "real_finetune_max_epochs",
                 "real_finetune_lr", "n_components_described",
                 "batch_size")
        if "RD" not in self.methods:
            raise ParamsError(f"parameter methods={self.methods!r} must include 'RD': the page's scale maps, "
                              "component descriptions and probe comparison read RD's scales")
        if not 0 < self.rd_star_variance <= 1:
            raise ParamsError(f"parameter rd_star_variance={self.rd_star_variance!r} must be in (0, 1]")


# A real network's stand-ins for the toy parameters (section4.model_params)
REAL_FIELDS = {"datasets": "real_datasets", "reference_dataset": "real_reference_dataset",
               "n_reference": "real_n_reference", "n_train": "real_n_train", "n_val": "real_n_val",
               "n_test": "real_n_test", "finetune_max_epochs": "real_finetune_max_epochs",
               "finetune_lr": "real_finetune_lr"}


def caches(p: Params) -> list[CacheKey]:
    """Per model: the reference dataset's train cache, then every task's train, val and test caches."""
    keys = []
    for m in section4.all_models(p):
        q = section4.model_params(p, m, REAL_FIELDS)
        keys.append(CacheKey(m, q.reference_dataset, "train", q.n_reference, q.seed, q.cache_dtype))
        keys += [k for d in q.datasets for k in task_caches(m, d, q.n_train, q.n_val, q.n_test, q.seed, q.cache_dtype)]
    return list(dict.fromkeys(keys))


# Parameters that do not change what one (model, task, seed) trains: which pairs and seeds, how the page describes
# them, the real_* ones (read into the fields they stand in for) and where finetuning runs (`finetunes`, keyed).
# (device and threads: the same computation, which may differ only in the last bits.)
PAGE_ONLY = ("models", "datasets", "real_models", *REAL_FIELDS.values(), "seeds", "finetune", "finetune_every_seed",
             "real_finetune", "dictionary", "probe_dataset", "n_components_described", "device", "threads")


def training_pairs(p: Params) -> list[tuple[str, str]]:
    """The (model, task) pairs `run` trains, each one job of the paper profile (`residual_lib.store.jobs.TrainJob`)."""
    return section4.training_pairs(p, REAL_FIELDS)


def finetunes(p: Params, model_name: str, dataset: str, seed: int) -> bool:
    """Whether Full finetuning runs for this (model, task, seed): on the first seed (every seed with
    `finetune_every_seed`), on every toy task, on the real networks' tasks listed in `real_finetune`."""
    task_ok = model_name not in p.real_models or f"{model_name}/{dataset}" in p.real_finetune
    return p.finetune and task_ok and (p.finetune_every_seed or seed == p.seeds[0])


def train_task(p: Params, model_name: str, dataset: str, model=None) -> dict[int, dict[str, Trained]]:
    """Per training seed: Base, every method of `p.methods` and (see `finetunes`) full finetuning on one (model,
    task), each seed stored once and reused."""
    return {s: stored("fig05_tab02", train_key(p, model_name, dataset, s),
                      lambda s=s: _train_task(p, model_name, dataset, model, s)) for s in p.seeds}


def train_keys(p: Params, model_name: str, dataset: str) -> list[dict]:
    """The stored results `train_task` reads: one per seed."""
    return [train_key(p, model_name, dataset, s) for s in p.seeds]


def train_key(p: Params, model_name: str, dataset: str, seed: int) -> dict:
    """What decides one (model, task, seed)'s stored result: the triple, the toy weights (`weights_id`), whether it
    finetunes and every parameter but the page-only ones (a real network's: after `section4.model_params`)."""
    q = section4.model_params(p, model_name, REAL_FIELDS)
    return {"model": model_name, "dataset": dataset, "weights": weights_id(model_name), "train seed": seed,
            "finetunes": finetunes(p, model_name, dataset, seed),
            **{k: v for k, v in q.to_dict().items() if k not in PAGE_ONLY}}


def _train_task(p: Params, model_name: str, dataset: str, model=None, seed: int | None = None) -> dict[str, Trained]:
    seed = p.seeds[0] if seed is None else seed
    finetuned = finetunes(p, model_name, dataset, seed)
    p = section4.model_params(p, model_name, REAL_FIELDS)
    model = model if model is not None else load_model(model_name, device=p.device)
    shared = {"patience": p.patience, "device": p.device, "seed": seed}
    reference_units = in_memory(extract(model, p.reference_dataset, split="train", n=p.n_reference, seed=p.seed,
                                        device=p.device, batch_size=p.batch_size, dtype=p.cache_dtype))
    task = load_task(model, dataset, n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, seed=p.seed, device=p.device,
                     batch_size=p.batch_size, dtype=p.cache_dtype, logit_scale=resolve_logit_scale(model, p.logit_scale),
                     prompts=p.prompts, classifier=p.classifier, k_shot=p.k_shot)
    out = residual_alignment(task, Architecture.from_model(model), reference_units, p.methods,
                             variance=p.rd_star_variance, protocol=p.protocol,
                             overrides={**shared, "max_epochs": p.max_epochs, "batch_size": p.train_batch_size,
                                        "range_steps": p.range_steps,
                                        "back_projection": p.back_projection})
    out["Base"].extra["classifier"] = task.classifier.kind
    if finetuned:
        # finetuning keeps its protocol's batch (authors_code: 128) and rate unless finetune_lr is given
        ft = {**shared, "max_epochs": p.finetune_max_epochs, "range_steps": p.finetune_range_steps}
        ft |= {"batch_size": p.train_batch_size} if p.protocol == "paper_text" else {}
        ft |= {"lr": p.finetune_lr} if p.finetune_lr is not None else {}
        out["Full finetuning"] = full_finetuning(model, task, p.n_train, p.n_val, p.n_test, p.seed,
                                                 protocol_config("finetune", p.protocol, **ft))
    return out


@computes
def run(p: Params) -> Result:
    """Train (or read the stored training of) every method on every model, task and seed; tables, findings, plots'
    data. Interpretations (scale maps, amplified components, probes) read the first model's first seed."""
    trained, by_seed, archs, tasks_of, first_model = {}, {}, {}, {}, None
    for name in section4.all_models(p):
        model = load_model(name, device=p.device)
        label = model_display(name)
        first_model = first_model or model
        archs[label] = Architecture.from_model(model)
        tasks_of[label] = [dataset_display(d) for d in section4.model_params(p, name, REAL_FIELDS).datasets]
        for ds in section4.model_params(p, name, REAL_FIELDS).datasets:
            runs = train_task(p, name, ds, model)
            trained[(label, dataset_display(ds))] = runs[p.seeds[0]]
            by_seed |= {(label, dataset_display(ds), s): out for s, out in runs.items()}
    accuracy = accuracy_table(by_seed)
    params = params_table(trained, p.methods)
    label0 = model_display(p.models[0])
    tasks = [dataset_display(d) for d in p.datasets]
    # interpretations (scale maps, amplified components) only where RD trained healthily
    moved = [d for d in tasks if _health(trained[(label0, d)]["RD"])["healthy"]]
    probe, per_task = probe_table(first_model, p, {d: trained[(label0, d)]["RD"].method for d in tasks},
                                  archs[label0], moved)
    paper_acc, paper_params = reference("table2"), reference("table2_params")
    spread = section4.seed_spread(accuracy, ["model", "dataset", "method"])
    means = spread.rename(columns={"mean": "accuracy"})[["model", "dataset", "method", "accuracy"]]
    tables = {
        "accuracy": accuracy, "table2_params": params,
        "table2": means[means["method"].isin(TABLE2_METHODS)].reset_index(drop=True),
        "paper": paper_acc, "paper_params": paper_params,
        "ours_minus_paper": ours_minus_paper(means, paper_acc),
        "count_check": count_check(paper_params), "training": training_table(by_seed),
        "spread": spread,
        "described": described_table(first_model, {d: trained[(label0, d)]["RD"].method
                                                    for d in improved(trained, label0, moved)},
                                     text_dictionary(p.dictionary), p.n_components_described),
        "probe": probe, "gap": gap_table(accuracy, list(p.methods)),
        "tasks": pd.DataFrame([{"model": model_display(m), "dataset": dataset_display(d),
                                "n": test_size(d, section4.model_params(p, m, REAL_FIELDS).n_test),
                                "chance": 1 / len(dataset_spec(d).class_names),
                                "classifier": trained[(model_display(m), dataset_display(d))]["Base"].extra["classifier"]}
                               for m, d in training_pairs(p)]),
    }
    return Result(p, tables=tables, findings=_findings(p, tables, archs, label0, moved,
                                                       improved(trained, label0, moved)),
                  artifacts={"trained": trained, "archs": archs, "first_label": label0, "tasks": tasks,
                             "tasks_of": tasks_of, "probe_per_task": per_task})


def accuracy_table(by_seed: dict[tuple[str, str, int], dict[str, Trained]]) -> pd.DataFrame:
    """Long table (model, dataset, seed, method, accuracy, params) of every trained method's test accuracy."""
    return pd.DataFrame([{"model": m, "dataset": d, "seed": s, "method": k, "accuracy": t.test_accuracy,
                          "params": 0 if t.method is None else int(t.method.n_params)}
                         for (m, d, s), out in by_seed.items() for k, t in out.items()])


def params_table(trained: dict[tuple[str, str], dict[str, Trained]], methods: list[str]) -> pd.DataFrame:
    """(model, method, params): each method's trained-parameter count, the median over tasks (RD* varies)."""
    models = list(dict.fromkeys(m for m, _ in trained))
    return pd.DataFrame([{"model": m, "method": k, "params": int(np.median(
        [out[k].method.n_params for (mm, _), out in trained.items() if mm == m]))} for m in models for k in methods])


GAP = 0.20  # a task leaves room for alignment when Full finetuning beats Base by this much


def gap_table(accuracy: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per model and task where Full finetuning beats Base by `GAP` or more: the gap, and the share of it each
    method closes, (method - Base) / (Full - Base) (0: Base, 1: Full finetuning, below 0: worse than Base)."""
    wide = accuracy.pivot_table(index=["model", "dataset"], columns="method", values="accuracy", sort=False)
    if "Full finetuning" not in wide:
        return pd.DataFrame(columns=["model", "dataset", "gap", *methods])
    gap = wide["Full finetuning"] - wide["Base"]
    room = wide[gap >= GAP - 1e-9]
    closed = room[methods].sub(room["Base"], axis=0).div(gap[room.index], axis=0)
    return closed.assign(gap=gap[room.index])[["gap", *methods]].reset_index().rename_axis(columns=None)


def beyond_full(gap: pd.DataFrame, methods: list[str]) -> str:
    """The tasks of a `gap_table` on which a method beat Full finetuning (share above 1), each with those methods."""
    several = gap["model"].nunique() > 1
    rows = [(f"{r['model']} " if several else "") + f"{r['dataset']} ({', '.join(m for m in methods if r[m] > 1)})"
            for _, r in gap.iterrows() if any(r[m] > 1 for m in methods)]
    return "; ".join(rows) or "none"


def ours_minus_paper(accuracy: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table (model, dataset, method, ours, paper, ours - paper) where the paper reports our model."""
    merged = accuracy[["model", "dataset", "method", "accuracy"]].rename(columns={"accuracy": "ours"}).merge(
        paper.rename(columns={"accuracy": "paper"}), on=["model", "dataset", "method"])
    return merged.assign(**{"ours - paper": merged["ours"] - merged["paper"]})


def count_check(paper_params: pd.DataFrame) -> pd.DataFrame:
    """Lin, RD and RDY parameter counts from open_clip architectures alone, beside the paper's."""
    rows = []
    for paper_model, arch_name in PAPER_ARCHITECTURES:
        arch = Architecture.from_open_clip(arch_name)
        rows += [{"model": paper_model, "method": method, "ours (from the architecture)":
                  make_method(method, arch).n_params} for method in ["Lin", "RD", "RDY"]]
    return pd.DataFrame(rows).merge(paper_params, on=["model", "method"]).rename(
        columns={"params": style.paper_label("#params")})


def _health(t: Trained) -> dict:
    """A run's `training.health` (recorded when it trained; a run stored before health was recorded is judged on
    its epoch kept alone)."""
    return t.extra.get("health") or {"lr": t.result.lr, "epoch kept": t.result.best_epoch,
                                     "flags": "kept epoch 0 (untrained)" if t.result.best_epoch == 0 else "",
                                     "healthy": t.result.best_epoch > 0}


def training_table(by_seed: dict[tuple[str, str, int], dict[str, Trained]]) -> pd.DataFrame:
    """Per model, task, seed and trained method (Base has no training): its `training.health` (rate and where it
    sits in the range test, epoch kept, epochs run, cap hit, scale range, flags, healthy) and the remedy that ran."""
    return pd.DataFrame([{"model": m, "dataset": d, "seed": s, "method": k, **_health(t),
                          "remedy": t.extra.get("remedy", "")}
                         for (m, d, s), out in by_seed.items() for k, t in out.items() if t.result is not None])


def described_table(model, methods: dict, dictionary: list[str], k: int) -> pd.DataFrame:
    """(task, unit, pc, scale, description): each task's k most amplified components, described by OMP."""
    columns = ["task", "unit", "pc", "scale", "description"]
    if not methods:
        return pd.DataFrame(columns=columns)
    return pd.concat([describe_components(m, top_components(m, k), dictionary, model.encode_text).assign(task=d)
                      for d, m in methods.items()])[columns].reset_index(drop=True)


def probe_table(model, p: Params, rd: dict, arch: Architecture, moved: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per task: the heads a linear probe reads best beside RD's most amplified heads, and their Spearman.

    Returns the summary (one row per task) and, per task, the per-head table (accuracy, chance, mean lambda).
    """
    rows, per_task = [], {}
    for ds in p.datasets:
        d = dataset_display(ds)
        units = load_task(model, ds, n_train=p.n_train, n_val=p.n_val, n_test=p.n_test, seed=p.seed,
                          device=p.device, batch_size=p.batch_size, dtype=p.cache_dtype).test
        table = probe_accuracy(units, {d: units.labels}, names=units.heads, progress=False).set_index("unit")
        table["mean lambda"] = head_scale_grid(rd[d], arch).stack().to_numpy()
        per_task[d] = table
        top_probe, top_scale = list(table["accuracy"].nlargest(3).index), list(table["mean lambda"].nlargest(3).index)
        rho = spearmanr(table["accuracy"], table["mean lambda"])[0] if table["mean lambda"].std() > 0 else np.nan
        if d not in moved:  # every scale is 1: no head is amplified
            top_scale, rho = [], np.nan
        rows.append({"task": d, "RD trained": d in moved, "best probe heads": ", ".join(top_probe),
                     "most amplified heads": ", ".join(top_scale), "in common": len(set(top_probe) & set(top_scale)),
                     "Spearman(probe, lambda)": rho})
    return pd.DataFrame(rows), per_task


def improved(trained: dict, label: str, tasks: list[str]) -> list[str]:
    """The tasks on which RD's test accuracy beat the model's own (Base): only their amplified components are
    worth describing as what the task needed."""
    return [d for d in tasks if trained[(label, d)]["RD"].test_accuracy > trained[(label, d)]["Base"].test_accuracy]


def _findings(p: Params, tables: dict[str, pd.DataFrame], archs: dict, label0: str, moved: list[str],
              described: list[str]) -> dict:
    accuracy, params, probe = tables["accuracy"], tables["table2_params"], tables["probe"].set_index("task")
    shared = sorted(set(archs) & set(tables["paper"]["model"]))
    tasks = [dataset_display(d) for d in p.datasets]
    probe_task = dataset_display(p.probe_dataset)
    colour = probe.loc[probe_task] if probe_task in probe.index else None
    if colour is None:
        probe_moved = "was not trained in this build (the task is not among its datasets)"
    elif colour["RD trained"]:
        probe_moved = "was trained"
    else:
        probe_moved = "kept its untrained scales (early stopping found no epoch better than the model itself)"
    means = accuracy.groupby("method")["accuracy"].mean()
    counts = params.set_index(["model", "method"])["params"]
    gap = tables["gap"]
    closed = {m: float(gap[m].mean()) if m in gap and len(gap) else float("nan") for m in TABLE2_METHODS}
    return {
        "n_gap_tasks": len(gap), "gap_tasks": ", ".join(dict.fromkeys(gap["dataset"])) or "none",
        "gap_rd": closed["RD"], "gap_lin": closed["Lin"], "gap_rdstar": closed["RD*"], "gap_rdy": closed["RDY"],
        "n_rd_beats_lin": int((gap["RD"] > gap["Lin"]).sum()) if "Lin" in gap else 0,
        "n_rd_half": int((gap["RD"] >= 0.5).sum()),
        "beyond_full": beyond_full(gap, [m for m in TABLE2_METHODS if m in gap]),
        "finetune_epochs": p.finetune_max_epochs,
        "shared_models": ", ".join(shared) if shared else "none",
        "untrained_tasks": ", ".join(d for d in tasks if d not in moved) or "none",
        "described_tasks": ", ".join(described) or "none",
        "ft_text": (f"full finetuning {means['Full finetuning']:.3f}" if "Full finetuning" in means
                    else "full finetuning did not run in this build"),
        "probe_task": probe_task, "probe_moved": probe_moved,
        "probe_top": colour["best probe heads"] if colour is not None else "",
        "scale_top": (colour["most amplified heads"] or "none") if colour is not None else "",
        "mean_rho_moved": float(probe.loc[probe["RD trained"], "Spearman(probe, lambda)"].mean())
        if moved else float("nan"),
        **{key: float(means.get(method, np.nan)) for key, method in [
            ("avg_base", "Base"), ("avg_lin", "Lin"), ("avg_rd", "RD"), ("avg_rdstar", "RD*"), ("avg_rdy", "RDY"),
            ("avg_ft", "Full finetuning")]},
        "first_label": label0, "rd_params": int(counts.get((label0, "RD"), 0)),
        "rdstar_params": int(counts.get((label0, "RD*"), 0)), "lin_params": int(counts.get((label0, "Lin"), 0)),
        "readings": readings_text(p, AUTHORS),
        "classifier_text": section4.classifier_text(accuracy.merge(tables["tasks"]), "Base"), "n_seeds": len(p.seeds),
        "finetune_seeds": ("every training seed" if p.finetune_every_seed else
                           f"the first training seed only ({p.seeds[0]}): it is most of the page's cost"),
    }


def with_counts(wide: pd.DataFrame, counts: dict, add_average: bool = True, decimals: int = 3) -> pd.DataFrame:
    """Accuracies as text (`decimals`), their Average row (unless the table has its own), then a #params row."""
    wide = wide.copy()
    if add_average:
        wide.loc["Average"] = wide.mean()
    shown = wide.map(lambda v: "" if pd.isna(v) else f"{v:.{decimals}f}")
    shown.loc["#params"] = [f"{int(counts[m]):,}" if m in counts else "" for m in wide.columns]
    return shown


def _table_methods(result: Result) -> list[str]:
    present = set(result.tables["accuracy"]["method"])
    return [m for m in ["Base", *result.params.methods, "Full finetuning"] if m in present]


def table2_tables(result: Result) -> dict[str, pd.DataFrame]:
    """Per model, caption -> accuracy per task and method as 'mean ± sd over seeds', the Average row (its spread:
    of the per-seed averages) and the #params row (text cells)."""
    accuracy, params, tasks = result.tables["accuracy"], result.tables["table2_params"], result.tables["tasks"]
    methods, out = _table_methods(result), {}
    for label in result.artifacts["archs"]:
        part = accuracy[accuracy["model"] == label]
        average = part.groupby(["method", "seed"], as_index=False)["accuracy"].mean().assign(dataset="Average")
        spread = section4.seed_spread(pd.concat([part, average]), ["dataset", "method"])
        spread["text"] = [section4.mean_sd_text(*v) for v in zip(spread["mean"], spread["sd"], spread["seeds"])]
        shown = spread.pivot(index="dataset", columns="method", values="text").reindex(
            index=[*result.artifacts["tasks_of"][label], "Average"], columns=methods).astype(object).fillna("")
        counts = dict(params[params["model"] == label].set_index("method")["params"])
        counts["Base"] = 0
        if "Full finetuning" in set(part["method"]):  # the same tower for every task: its count on the first task
            counts["Full finetuning"] = part.loc[part["method"] == "Full finetuning", "params"].iloc[0]
        shown.loc["#params"] = [f"{int(counts[m]):,}" if m in counts else "" for m in methods]
        own = tasks[tasks["model"] == label]
        caption = (f"{label}: classifier {own['classifier'].iloc[0]}; mean ± sd over "
                   f"{part['seed'].nunique()} training seeds")
        out[caption] = shown.rename_axis(index="dataset", columns=None).reset_index()
    return out


def paper_table(result: Result) -> pd.DataFrame:
    """The paper's Tables 2 and 6: accuracy per model, task and method (its own Average row), then #params."""
    paper, paper_params = result.tables["paper"], result.tables["paper_params"]
    parts = []
    for label, part in paper.groupby("model", sort=False):
        wide = part.pivot(index="dataset", columns="method", values="accuracy").reindex(
            index=part["dataset"].unique(), columns=TABLE2_METHODS)
        counts = dict(paper_params[paper_params["model"] == label].set_index("method")["params"])
        shown = with_counts(wide, counts, add_average=False, decimals=2).rename_axis(index="dataset", columns=None)
        parts.append(shown.reset_index().assign(model=label))
    table = pd.concat(parts, ignore_index=True)
    return table[["model", "dataset", *TABLE2_METHODS]]


def difference_tables(result: Result) -> dict[str, pd.DataFrame]:
    """Per model the paper also reports, caption -> ours minus the paper's per task and method."""
    return {f"{label}: ours minus the paper's": part.pivot(index="dataset", columns="method", values="ours - paper")
            .rename_axis(columns=None).reset_index()
            for label, part in result.tables["ours_minus_paper"].groupby("model", sort=False)}


def table2_panels(result: Result) -> dict[str, pd.DataFrame]:
    """Caption -> table, in the page's order: ours per model, the paper's Tables 2 and 6, ours minus the paper's."""
    return {**table2_tables(result), style.paper_label("Tables 2 and 6"): paper_table(result),
            **difference_tables(result)}


def plot_bars(result: Result):
    """Figure 5: test accuracy per task of Base, Lin, Full finetuning and ResiDual (RD), one panel per model: the mean
    over training seeds, the error bar their standard deviation; chance as a short dash per task."""
    spread, archs, tasks = result.tables["spread"], result.artifacts["archs"], result.tables["tasks"]
    bars = [b for b in FIG5_BARS if b in set(spread["method"])]
    shades = {"Base": "#b0b0b0", "Lin": "#7fa6d6", "Full finetuning": "#2a9d8f", "RD": style.OURS}
    widths = [max(4, 1.3 * len(result.artifacts["tasks_of"][label])) for label in archs]
    # Two panels a row: three in one row shrank every label below reading size in the book's column
    cols = min(len(archs), 2)
    rows = -(-len(archs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(sum(widths) if rows == 1 else cols * max(widths), 3.8 * rows),
                             squeeze=False, gridspec_kw={"width_ratios": widths} if rows == 1 else None)
    for ax in axes.flat[len(archs):]:
        ax.axis("off")
    for ax, label in zip(axes.flat, archs):
        own = spread[spread["model"] == label]
        mean, sd = (own.pivot(index="dataset", columns="method", values=v).reindex(
            index=result.artifacts["tasks_of"][label], columns=bars) for v in ("mean", "sd"))  # NaN: did not run
        x = np.arange(len(mean))
        width = 0.8 / len(bars)
        for i, b in enumerate(bars):
            ax.bar(x + i * width, mean[b].to_numpy(), width, yerr=sd[b].to_numpy(), capsize=2, color=shades[b],
                   label="ResiDual (RD)" if b == "RD" else b)
        chance = tasks[tasks["model"] == label].set_index("dataset")["chance"].reindex(mean.index)
        ax.hlines(chance.to_numpy(), x - width / 2, x + 0.8 - width / 2, colors="black", lw=0.8, linestyles=":",
                  label="chance")
        ax.set(xticks=x + 0.4 - width / 2, ylim=(0, 1.05), ylabel="test accuracy", title=label)
        ax.set_xticklabels(mean.index, rotation=30, ha="right")
    # Above the panels: inside, the legend hid the low bars of the tasks with room.
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=len(bars) + 1, loc="upper center", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.08 / rows))
    return fig


def plot_lr_range(result: Result):
    """Each method's LR range test for the first model, one panel per task (picked rate in the legend)."""
    trained, label0 = result.artifacts["trained"], result.artifacts["first_label"]
    keys = [k for k in trained if k[0] == label0]
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for method, t in trained[key].items():
            if t.result is not None and t.result.lr_range is not None:
                t.result.lr_range.plot(ax, label=f"{method} ({t.result.lr:.2g})")
        ax.set_title(key[1])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        else:  # every method of this task trained at a fixed rate (a retrained unhealthy run, authors_code)
            _note(ax, "no LR range test")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"LR range tests, {label0} (picked rate in the legend)")
    fig.tight_layout()
    return fig


def _note(ax, text: str) -> None:
    """A panel that says why it has nothing to draw, instead of an empty plot."""
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes)


def plot_head_scales(result: Result):
    """Per task, the first model's RD scales averaged over each head's PCs (layer x head; 1: unchanged)."""
    trained, label0 = result.artifacts["trained"], result.artifacts["first_label"]
    arch = result.artifacts["archs"][label0]
    grids = {d: head_scale_grid(trained[(label0, d)]["RD"].method, arch) for d in result.artifacts["tasks"]}
    cols = min(5, len(grids))
    rows = -(-len(grids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.7 * rows), squeeze=False)
    for ax, (d, g) in zip(axes.flat, grids.items()):
        values = g.to_numpy(dtype=float)
        if not (h := _health(trained[(label0, d)]["RD"]))["healthy"]:  # not interpreted
            _note(ax, f"{d}\n\nRD's run is flagged:\n{h['flags']}")
            continue
        span = max(1e-3, float(np.nanmax(np.abs(values - 1))))  # each task on its own scale, centred at 1
        im = ax.imshow(values, cmap=style.CMAP_DIV, vmin=1 - span, vmax=1 + span)
        # The range in the title: a colour scale stretched over 1.000-1.001 must not read as a strong effect.
        ax.set(title=f"{d}\nmean lambda {np.nanmin(values):.3f} to {np.nanmax(values):.3f}", xlabel="head",
               ylabel="layer", xticks=range(arch.n_heads), yticks=range(arch.n_layers))
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.75)
    for ax in list(axes.flat)[len(grids):]:
        ax.axis("off")
    fig.suptitle("mean RD lambda over each head's PCs (1: unchanged)")
    fig.tight_layout()
    return fig


def plot_pc_scales(result: Result):
    """The first model's RD scale of every kept PC of every head on `probe_dataset`; None if it is not a task."""
    trained, label0 = result.artifacts["trained"], result.artifacts["first_label"]
    probe_task = dataset_display(result.params.probe_dataset)
    if (label0, probe_task) not in trained or not _health(trained[(label0, probe_task)]["RD"])["healthy"]:
        return None  # not a task of this build, or RD's run is flagged (the page says which)
    scales = trained[(label0, probe_task)]["RD"].method.unit_scales()
    heads = [u for u in scales if ".H" in u]
    matrix = np.array([scales[h] for h in heads])
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(heads) + 1.2))
    span = max(1e-3, float(np.abs(matrix - 1).max()))
    im = ax.imshow(matrix, aspect="auto", cmap=style.CMAP_DIV, vmin=1 - span, vmax=1 + span, interpolation="nearest")
    ax.grid(False)
    ax.set(yticks=range(len(heads)), yticklabels=heads, xlabel="principal component (reference PCA order)",
           title=f"RD scales per head and PC, {label0} on {probe_task} (lambda {matrix.min():.3f} to "
                 f"{matrix.max():.3f})")
    fig.colorbar(im, ax=ax, label="lambda")
    fig.tight_layout()
    return fig


def plot_probe(result: Result):
    """Per task where RD was trained: each head's probe accuracy against its mean RD scale."""
    probe, per_task = result.tables["probe"], result.artifacts["probe_per_task"]
    moved = list(probe.loc[probe["RD trained"], "task"])
    fig, axes = plt.subplots(1, len(moved) or 1, figsize=(4.2 * max(1, len(moved)), 3.6), squeeze=False)
    for ax, d in zip(axes.flat, moved):
        table = per_task[d]
        ax.scatter(table["accuracy"], table["mean lambda"], color=style.OURS)
        for h, r in table.iterrows():
            ax.annotate(h, (r["accuracy"], r["mean lambda"]), fontsize=7, xytext=(2, 2), textcoords="offset points")
        ax.axhline(1, color="grey", lw=0.8)
        ax.axvline(float(table["chance"].iloc[0]), color="grey", lw=0.8, ls=":")
        ax.set(xlabel="probe accuracy (held out)", ylabel="mean RD lambda", title=d)
    if not moved:
        axes[0, 0].axis("off")
    fig.tight_layout()
    return fig


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`), with Full finetuning's
    trained-parameter count beside the aligners' when it ran."""
    params = result.tables["table2_params"][["model", "method", "params"]]
    finetuned = [{"model": m, "method": "Full finetuning", "params": out["Full finetuning"].method.n_params}
                 for (m, _), out in result.artifacts["trained"].items() if "Full finetuning" in out]
    if finetuned:
        params = pd.concat([params, pd.DataFrame(finetuned).drop_duplicates("model")], ignore_index=True)
    health = result.tables["training"][["model", "dataset", "seed", "method", "healthy"]]
    accuracy = (result.tables["accuracy"][["model", "dataset", "seed", "method", "accuracy"]]
                .merge(result.tables["tasks"], on=["model", "dataset"]).merge(health, how="left"))
    return {"accuracy": accuracy.fillna({"healthy": True}), "params": params}


def save_results(result: Result) -> list:
    """Table 2 and its parameter counts in the paper's format, for the reproduction report."""
    return [results.save(result.tables["table2"], "table2"),
            results.save(result.tables["table2_params"], "table2_params")]
