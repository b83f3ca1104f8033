"""The toy world page: samples with captions, out-of-distribution sets, the toy CLIP's training and zero-shot accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..store.cache import CacheKey
from .base import ComputeParams, Result, computes, nonempty, positive


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "toy-clip"  # a registered toy model (data_manifests/models)
    training_profile: str = "toy"  # its training profile (the manifest's `pretrained`): where its curve lives
    tasks: list[str] = field(default_factory=lambda: ["toy-shape", "toy-colour", "toy-pattern", "toy-position",
                                                      "toy-size"])
    ood: list[str] = field(default_factory=lambda: ["toy-sketch", "toy-textured", "toy-digits", "toy-noise"])
    split: str = "test"
    n_eval: int = 2000  # images per dataset for the zero-shot accuracies (the first n of the split)
    n_samples: int = 16  # images in the sample grid
    seed: int = 0

    def check(self) -> None:
        nonempty(self, "tasks")
        positive(self, "n_eval", "n_samples")


def caches(p: Params) -> list[CacheKey]:
    """None: the page classifies images directly, without unit caches."""
    return []


@computes
def run(p: Params) -> Result:
    """Sample grid, out-of-distribution rows, the training record and the zero-shot table."""
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
    table = zero_shot_table(model, p.tasks + p.ood, split=p.split, n=p.n_eval)
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
    }
    return Result(p, tables={"zero_shot": table, "curve": curve}, findings=findings,
                  artifacts={"samples": (images, captions), "ood": (ood_images, ood_titles)})


def plot_samples(result: Result):
    """The sample grid with each image's caption, four to a row so that the captions read at the page's width."""
    from ..toy import plots

    return plots.image_grid(*result.artifacts["samples"], ncols=4, width=2.6, wrap=30, fontsize=10)


def plot_ood(result: Result):
    """Eight images of each out-of-distribution set, one row per set."""
    from ..toy import plots

    return plots.image_grid(*result.artifacts["ood"], ncols=8)


def plot_training(result: Result):
    """The training loss curve."""
    from ..toy import plots

    return plots.training_curve(result.tables["curve"])


def plot_zero_shot(result: Result):
    """Zero-shot accuracy per dataset beside chance."""
    from ..toy import plots

    return plots.zero_shot_bars(result.tables["zero_shot"])
