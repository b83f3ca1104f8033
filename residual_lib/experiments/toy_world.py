"""The toy world page: samples with captions, out-of-distribution sets, the toy CLIP's training and zero-shot accuracy,
and the definition of every task the Section 4 pages (Table 1, Figure 5) run, read from their parameter files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..book.layout import PROFILES, Layout, page_parameters
from ..paths import REPO_ROOT
from ..store.cache import CacheKey
from .base import ComputeParams, Result, computes, nonempty, positive

SECTION4_PAGES = ("tab01_coarse_unit_alignment", "fig05_tab02_residual_alignment")


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "toy-clip"  # a registered toy model (data_manifests/models)
    training_profile: str = "toy"  # its training profile (the manifest's `pretrained`): where its curve lives
    tasks: list[str] = field(default_factory=lambda: ["toy-shape", "toy-colour", "toy-pattern", "toy-position",
                                                      "toy-size"])
    ood: list[str] = field(default_factory=lambda: ["toy-sketch", "toy-textured", "toy-digits", "toy-noise"])
    split: str = "test"
    n_eval: int = 2000  # images per dataset for the zero-shot accuracies (the first n of the split)
    n_samples: int = 12  # images in the sample grid
    section4_profile: Literal[PROFILES] = "toy"  # whose Table 1 and Figure 5 parameter files name the tasks defined
    n_examples: int = 6  # example images per Section 4 task
    seed: int = 0

    def check(self) -> None:
        nonempty(self, "tasks")
        positive(self, "n_eval", "n_samples", "n_examples")


def section4_tasks(profile: str, root: Path = REPO_ROOT) -> list[str]:
    """The tasks the Section 4 pages run in `profile`, in order, each once: their `datasets` as the book merges them."""
    from . import experiment

    tasks: list[str] = []
    for page in SECTION4_PAGES:
        merged = page_parameters(Layout(root), page, profile, {})[2]
        tasks += [t for t in merged.get("datasets", experiment(page).Params().datasets) if t not in tasks]
    return tasks


def caches(p: Params) -> list[CacheKey]:
    """None: the page classifies images directly, without unit caches."""
    return []


@computes
def run(p: Params) -> Result:
    """Sample grid, out-of-distribution rows, the training record, the zero-shot table and the Section 4 tasks."""
    from ..data.datasets import dataset_spec, load_dataset
    from ..models.registry import load_model
    from ..toy.data import captioned_samples
    from ..toy.evaluate import zero_shot_table
    from ..toy.train import training_record

    model = load_model(p.model_name, device="cpu")
    curve, manifest = training_record(p.training_profile)
    images, captions = captioned_samples(p.n_samples, p.seed)
    ood_images, ood_titles = [], []
    for name in p.ood:
        data, spec = load_dataset(name, p.split), dataset_spec(name)
        ood_images += [data.images[i].numpy() for i in range(8)]
        ood_titles += [f"{name.removeprefix('toy-')}: {spec.class_names[int(data.labels[i])]}"
                       if name != "toy-noise" else "noise" for i in range(8)]
    section4 = section4_tasks(p.section4_profile)
    every = zero_shot_table(model, list(dict.fromkeys(p.tasks + p.ood + section4)), split=p.split, n=p.n_eval)
    table = every[every["dataset"].isin(p.tasks + p.ood)].reset_index(drop=True)
    definitions, examples = _section4(every.set_index("dataset").loc[section4].reset_index(), p)
    task_rows = table[table["dataset"].isin(p.tasks)]
    digits = table.loc[table["dataset"] == "toy-digits", "accuracy"]
    findings = {
        "train_steps": int(manifest["config"]["steps"]), "train_batch": int(manifest["config"]["batch_size"]),
        "train_minutes": manifest["train_seconds"] / 60, "n_parameters": manifest["n_parameters"] / 1e6,
        "checkpoint_sha": manifest["sha256"][:12],
        "worst_task": task_rows.loc[task_rows["accuracy"].idxmin(), "dataset"],
        "worst_task_acc": 100 * float(task_rows["accuracy"].min()),
        "mean_task_acc": 100 * float(task_rows["accuracy"].mean()),
        "digits_acc": 100 * float(digits.iloc[0]) if len(digits) else float("nan"),
        "section4_profile": p.section4_profile, "n_section4": len(section4), "section4_text": ", ".join(section4),
        "section4_min_margin": 100 * float((definitions["zero-shot"] - definitions["chance"]).min()),
    }
    return Result(p, tables={"zero_shot": table, "curve": curve, "section4": definitions}, findings=findings,
                  artifacts={"samples": (images, captions), "ood": (ood_images, ood_titles),
                             "section4_examples": examples})


def _section4(zero_shot, p: Params):
    """Each Section 4 task's definition (attribute, rendering, classes, chance, zero-shot accuracy and its 95% Wilson
    interval), and example images spread over its classes with their class names."""
    import pandas as pd

    from ..claims.evidence import wilson
    from ..data.datasets import dataset_spec, load_dataset
    from ..toy.data import rendering_text, spread_over_classes

    rows, images, titles = [], [], []
    for row in zero_shot.itertuples():
        spec, data = dataset_spec(row.dataset), load_dataset(row.dataset, p.split)
        low, high = wilson(row.accuracy, row.n)
        rows.append({"task": row.dataset, "what it is": spec.title, "class from": spec.source.get("label", "digit"),
                     "rendering": rendering_text(spec.source), "classes": ", ".join(spec.class_names),
                     "chance": row.chance, "zero-shot": row.accuracy, "95% interval": f"{low:.3f} to {high:.3f}",
                     "test images": row.n})
        shown = spread_over_classes(data.labels[:p.n_eval].numpy(), p.n_examples)
        images += [data.images[i].numpy() for i in shown]
        titles += [spec.class_names[int(data.labels[i])] for i in shown]
    return pd.DataFrame(rows), (images, titles, list(zero_shot["dataset"]))


def plot_samples(result: Result):
    """The sample grid with each image's caption, three to a row in 13 pt: readable at the page's width."""
    from ..toy import plots

    return plots.image_grid(*result.artifacts["samples"], ncols=3, width=2.4, wrap=24, fontsize=13)


def plot_ood(result: Result):
    """Eight images of each out-of-distribution set, one row per set."""
    from ..toy import plots

    return plots.image_grid(*result.artifacts["ood"], ncols=8)


def plot_section4_examples(result: Result):
    """A row of examples per Section 4 task, each image under its class, the task's name left of its row."""
    from ..toy import plots

    images, titles, tasks = result.artifacts["section4_examples"]
    return plots.image_grid(images, titles, ncols=result.params.n_examples, width=1.5, fontsize=12,
                            row_labels=[t.removeprefix("toy-") for t in tasks])


def plot_training(result: Result):
    """The training loss curve."""
    from ..toy import plots

    return plots.training_curve(result.tables["curve"])


def plot_zero_shot(result: Result):
    """Zero-shot accuracy per dataset beside chance."""
    from ..toy import plots

    return plots.zero_shot_bars(result.tables["zero_shot"])
