"""Section 4's experiments, one task at a time: load the caches, run the coarse selection and the alignment
methods, return tables in the paper's long format (model, dataset, method, accuracy).

Splits follow the authors: methods train on train, early-stop and score heads on validation (the dataset's
own `val` split when it declares one, else a stratified 10% of train, seed 42) and are reported on test.
A class-mean classifier's k labelled images per class are carved out of the train cache first (`k_shot_split`),
before the validation split, so no image serves both the classifier and training, validation or test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..store.cache import CacheKey
from ..data.datasets import dataset_spec
from .residual import METHODS, AlignmentMethod, Architecture, make_method
from .selection import SCORES, SWEEP_FRACTIONS, coarse_selection, fraction_sweep, head_scores
from ..models.text import encode_texts
from .training import (AUTHORS_LEARNING_RATES, TrainConfig, TrainResult, evaluate, fit, health, protocol_config,
                       scale_range, validation_split)
from ..units.unit_set import Units, UnitSet
from .classifier import DEFAULT_LOGIT_SCALE, Classifier, model_logit_scale


def in_memory(units, index: np.ndarray | None = None) -> UnitSet:
    """Every unit of a UnitSet/UnitCache in memory, optionally only the rows `index` (analyses reread units often)."""
    rows = slice(None) if index is None else np.asarray(index)
    names = units.units
    return UnitSet({u: np.asarray(units.coords(u))[rows] for u in names}, {u: np.asarray(units.basis(u)) for u in names},
                   {u: np.asarray(units.offset(u)) for u in names}, np.asarray(units.embedding)[rows],
                   np.asarray(units.labels)[rows])


@dataclass
class Task:
    """One task: its frozen classifier (zero-shot or class-mean) and its train / validation / test units."""

    dataset: str
    classifier: Classifier
    train: Units
    val: Units
    test: Units
    k_shot: int | None = None  # a class-mean classifier's images per class, carved out of train (None: zero-shot)


CLASSIFIERS = ("zero_shot", "class_mean", "auto")  # "auto": zero-shot when the model has a text tower
DEFAULT_K_SHOT = 10  # labelled images per class of a class-mean classifier


def classifier_kind(model, requested: str = "auto") -> str:
    """"zero_shot" or "class_mean": as requested, or for "auto" zero-shot exactly when the model has a text tower."""
    if requested not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {requested!r}; valid: {', '.join(CLASSIFIERS)}")
    if requested == "auto":
        return "zero_shot" if getattr(model, "has_text", False) else "class_mean"
    return requested


def k_shot_split(labels: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, shots): row indices of `labels` split so that `shots` holds k seeded random rows of every class
    (stratified, exact), `rest` every other row; both sorted."""
    labels = np.asarray(labels)
    if k < 1:
        raise ValueError(f"k_shot={k!r} must be at least 1")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    short = {int(c): int(n) for c, n in zip(classes, counts) if n <= k}
    if short:
        raise ValueError(f"k_shot={k} leaves no training image of classes {short} (class: images in the train "
                         "cache); lower k_shot or raise n_train")
    shots = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes]))
    return np.setdiff1d(np.arange(len(labels)), shots), shots


def load_task(model, dataset: str, n_train: int | None = None, n_val: int | None = None, n_test: int | None = None,
              seed: int = 0, logit_scale: float | str = DEFAULT_LOGIT_SCALE, prompts: str = "manifest",
              classifier: str = "auto", k_shot: int = DEFAULT_K_SHOT, **extract_kw) -> Task:
    """Classifier and unit caches of a dataset's splits (extracted once, reused after).

    logit_scale: the classifier's temperature in the training loss, a number or "model" (the model's own).
    prompts: the zero-shot classifier's class names and templates, "manifest" or "authors" (`templates.prompts`).
    classifier: `CLASSIFIERS`; a class-mean classifier averages the output embeddings of `k_shot` train-cache
    images per class (seeded by `seed`), which then leave the train split.
    """
    from ..store.cache import extract

    spec = dataset_spec(dataset)
    if "test" not in spec.splits:
        raise ValueError(f"dataset {dataset!r} has no test split (splits: {', '.join(spec.splits)})")
    train = in_memory(extract(model, dataset, split="train", n=n_train, seed=seed, **extract_kw))
    if classifier_kind(model, classifier) == "zero_shot":
        frozen, k_shot = Classifier.for_dataset(model, dataset, prompts=prompts, logit_scale=logit_scale), None
    else:
        rest, shots = k_shot_split(train.labels, k_shot, seed)
        frozen = Classifier.from_class_means(train.embedding[shots], train.labels[shots], spec.class_names,
                                             logit_scale=logit_scale)
        train = in_memory(train, rest)
    if "val" in spec.splits:
        val = in_memory(extract(model, dataset, split="val", n=n_val, seed=seed, **extract_kw))
    else:
        keep, held = validation_split(train.labels)
        train, val = in_memory(train, keep), in_memory(train, held)
    test = in_memory(extract(model, dataset, split="test", n=n_test, seed=seed, **extract_kw))
    return Task(dataset, frozen, train, val, test, k_shot)


# The authors' classifier for a model without a learned temperature (BLIP's retrieval checkpoint): their code scales
# the class embeddings by the text encoder's exp(logit_scale) (src/residual/nn/classifier.py, added in 3b5288a),
# which BLIP's text encoder does not have, and the same commit drops BLIP from the classifiers it builds; BLIP's
# classifier is the one their earlier code built, without any scale, so its logits are plain cosines.
UNSCALED_LOGIT_SCALE = 1.0


def resolve_logit_scale(model, requested: float | str) -> float:
    """A number as given; "model": the model's own exp(logit_scale), or, for a model that carries none (BLIP's
    retrieval checkpoint), UNSCALED_LOGIT_SCALE as the authors' BLIP classifier, so one profile names the authors'
    choice for every model."""
    if requested != "model":
        return float(requested)
    try:
        return model_logit_scale(model)
    except ValueError:
        return UNSCALED_LOGIT_SCALE


def test_size(dataset: str, n_test: int | None) -> int:
    """How many test images a task scores: n_test, or the whole test split when None."""
    if n_test is not None:
        return n_test
    from ..data.datasets import load_dataset

    return len(load_dataset(dataset, "test"))


def task_caches(model: str, dataset: str, n_train: int | None = None, n_val: int | None = None,
                n_test: int | None = None, seed: int = 0, dtype: str = "float32") -> list[CacheKey]:
    """The unit caches `load_task` reads: train, val (when the dataset declares one) and test."""
    splits = [("train", n_train), ("val", n_val), ("test", n_test)]
    return [CacheKey(model, dataset, s, n, seed, dtype) for s, n in splits if s in dataset_spec(dataset).splits]


@dataclass
class Trained:
    """A trained method: the module, its training record and its test accuracy."""

    method: AlignmentMethod
    result: TrainResult | None
    test_accuracy: float
    extra: dict = field(default_factory=dict)


def train_method(name: str, arch: Architecture, task: Task, reference=None, config: TrainConfig | None = None,
                 variance: float = 0.9, protocol: str = "paper_text", overrides: dict | None = None) -> Trained:
    """Fit the reference (ResiDual), precompute features, train with early stopping, score on test.

    Without a config, the protocol's for this method (`training.protocol_config`) with `overrides` applied.
    """
    config = config or protocol_config(name, protocol, **(overrides or {}))
    trained = _train_once(name, arch, task, reference, config, variance)
    if trained.extra["health"]["healthy"] or config.lr is not None:
        return trained
    # The remedy for a range-test run that kept epoch 0, diverged or picked an edge rate: the authors' fixed
    # rate for this method (their camera-ready configs), the run that replaces it recorded beside it.
    fallback = _train_once(name, arch, task, reference, replace(config, lr=AUTHORS_LEARNING_RATES[name]), variance)
    fallback.extra["remedy"] = (f"authors' fixed rate {AUTHORS_LEARNING_RATES[name]:g} (the range test's rate "
                                f"{trained.result.lr:.3g}: {trained.extra['health']['flags']})")
    return fallback


def _train_once(name: str, arch: Architecture, task: Task, reference, config: TrainConfig, variance: float) -> Trained:
    method = make_method(name, arch, variance=variance, init_noise=config.lambda_init_noise, seed=config.seed,
                         lin_init=config.lin_init, back_projection=config.back_projection)
    if name in ("RD", "RD*", "RDY"):
        if reference is None:
            raise ValueError(f"{name} needs the reference dataset's units for its PCA bases and means")
        method.fit_reference(reference)
    elif name == "Lin" and reference is not None:
        method.fit_reference(reference)
    x_train, x_val, x_test = (method.features(s) for s in (task.train, task.val, task.test))
    result = fit(method, task.classifier, (x_train, task.train.labels), (x_val, task.val.labels), config)
    return Trained(method, result, evaluate(method, task.classifier, x_test, task.test.labels),
                   {"health": health(result, config, scale_range(method)), "remedy": ""})


def coarse_unit_alignment(task: Task, arch: Architecture, fraction: float = 0.05, n_random: int = 10,
                          fractions=SWEEP_FRACTIONS, config: TrainConfig | None = None,
                          head_score: str = "per_sample", protocol: str = "paper_text", head_count: str = "round",
                          random_rule: str = "choice", seeds=None) -> tuple[dict, pd.DataFrame, dict[int, Trained]]:
    """Table 1 row (U, U|T, S, R, R_std, R0, H, B, O, k), the fraction sweep, and O trained once per seed of
    `seeds` (default: the config's seed); the row's O is their mean test accuracy."""
    scores = {s: head_scores(task.val, task.classifier, s, head_score) for s in SCORES}
    counting = {"head_count": head_count, "random_rule": random_rule}
    row = coarse_selection(task.val, task.test, task.classifier, fraction, n_random, scores=scores, **counting)
    sweep = fraction_sweep(task.val, task.test, task.classifier, fractions, n_random, scores=scores, **counting)
    config = config or protocol_config("O", protocol)
    optimised = {s: train_method("O", arch, task, config=replace(config, seed=s), protocol=protocol)
                 for s in (seeds or [config.seed])}
    row["O"] = float(np.mean([t.test_accuracy for t in optimised.values()]))
    return row, sweep, optimised


def residual_alignment(task: Task, arch: Architecture, reference, methods=("Lin", "RD", "RD*", "RDY"),
                       config: TrainConfig | None = None, variance: float = 0.9,
                       protocol: str = "paper_text", overrides: dict | None = None) -> dict[str, Trained]:
    """Base and each trained method of `methods` (see residual.METHODS) on one task.

    Without a config, each method trains with its protocol's config (`training.protocol_config`) and `overrides`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; valid: {', '.join(METHODS)}")
    out = {"Base": Trained(None, None, task.classifier.accuracy(task.test.embedding, task.test.labels))}
    for name in methods:
        out[name] = train_method(name, arch, task, reference, config, variance, protocol, overrides)
    return out


def full_finetuning(model, task: Task, n_train: int | None = None, n_val: int | None = None,
                    n_test: int | None = None, seed: int = 0, config: TrainConfig | None = None,
                    protocol: str = "paper_text") -> Trained:
    """Finetune the vision tower on the same images the task's caches hold (less a class-mean classifier's k-shot
    images, as `load_task` carves them); test accuracy of the result."""
    from ..store.cache import subsample
    from ..data.datasets import load_dataset
    from .finetune import finetune, preprocessed_images

    config = config or protocol_config("finetune", protocol)
    spec = dataset_spec(task.dataset)

    def images(split: str, n: int | None):
        data = load_dataset(task.dataset, split)
        return preprocessed_images(model, data, subsample(len(data), n, seed), progress=config.progress)

    train = images("train", n_train)
    if task.k_shot is not None:
        rest, _ = k_shot_split(train[1], task.k_shot, seed)
        train = (train[0][rest], train[1][rest])
    if "val" in spec.splits:
        val = images("val", n_val)
    else:
        keep, held = validation_split(train[1])
        train, val = (train[0][keep], train[1][keep]), (train[0][held], train[1][held])
    test = images("test", n_test)
    tower, result = finetune(model, task.classifier, train, val, config)
    return Trained(tower, result, evaluate(tower, task.classifier, test[0], test[1], batch_size=256,
                                           device=config.device), {"health": health(result, config), "remedy": ""})


def head_scale_grid(method, arch: Architecture, reduce=np.mean) -> pd.DataFrame:
    """(layers x heads) a summary (default: mean) of each head's trained lambdas."""
    scales = method.unit_scales()
    grid = np.full((arch.n_layers, arch.n_heads), np.nan)
    for layer in range(arch.n_layers):
        for head in range(arch.n_heads):
            values = scales.get(f"L{layer}.H{head}")
            if values is not None and len(values):
                grid[layer, head] = reduce(values)
    return pd.DataFrame(grid, index=pd.Index(range(arch.n_layers), name="layer"),
                        columns=pd.Index(range(arch.n_heads), name="head"))


def top_components(method, k: int = 5) -> pd.DataFrame:
    """The k (unit, PC) pairs with the largest trained lambda: unit, pc, scale."""
    rows = [(u, i, float(v)) for u, values in method.unit_scales().items() for i, v in enumerate(values)]
    table = pd.DataFrame(rows, columns=["unit", "pc", "scale"])
    return table.nlargest(k, "scale").reset_index(drop=True)


def describe_components(method, table: pd.DataFrame, dictionary: list[str], encode_text, k: int = 3) -> pd.DataFrame:
    """Add to `top_components` the k texts OMP picks for each component direction (unit-norm text atoms)."""
    from ..analysis.pursuit import omp

    atoms = encode_texts(encode_text, dictionary)
    directions = np.stack([method.pca.components_[u][pc] for u, pc in zip(table["unit"], table["pc"])])
    picked, coefs = omp(directions, atoms.numpy(), k, device="cpu")
    texts = [[f"{'+' if c > 0 else '-'} {dictionary[i]}" for i, c in zip(row, crow)] for row, crow in zip(picked, coefs)]
    return table.assign(description=[" | ".join(t) for t in texts])
