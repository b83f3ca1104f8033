"""One training loop for every alignment method (O, RD, RD*, RDY, Lin) and for full finetuning.

A method is any ``nn.Module`` mapping a batch of precomputed features (N, ...) to image representations
(N, E); the loss is the cross-entropy of the frozen zero-shot classifier's logits. As in the paper (Section
4.2): Schedule-Free AdamW (the ``schedulefree`` package, switched between its train and eval modes: the
averaged weights it evaluates are the ones saved), the learning rate picked by an LR range test (Smith 2017,
the rule of PyTorch Lightning's ``lr_find``: steepest descent of the smoothed loss), at most 30 epochs, early
stopping with patience 5 on validation accuracy, the best weights restored. Epoch 0 is the untrained method,
so training can never return something worse on validation than where it started.

Two protocols (`protocol_config`), because the paper's text and the authors' code differ:

- ``"paper_text"``: the LR range test above for every method (finetuning sweeps up to ``FINETUNE_MAX_LR``),
  batch 64, no gradient clipping, lambda starting at exactly 1.
- ``"authors_code"``: the camera-ready configs of the authors' repository (``conf/train/*.gin``, where the
  range test is switched off): fixed rates ``AUTHORS_LEARNING_RATES``, batch 64, finetuning at batch 128 with
  the gradient norm clipped to 1.0, lambda = 1 + N(0, 1) at initialisation (their ``randn + 1``), and Lin
  as PyTorch's default-initialised ``nn.Linear`` on the uncentred output.
The logit scale of the loss is the third difference; it belongs to the classifier (`PROTOCOL_LOGIT_SCALES`,
`classifier.Classifier.for_dataset`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import schedulefree
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter1d
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from tqdm.auto import tqdm

from .classifier import DEFAULT_LOGIT_SCALE, Classifier

VALIDATION_SEED = 42  # the authors' stratified 10% validation split of train
PROTOCOLS = ("paper_text", "authors_code")
# conf/train/{residual_coarse,residual_fine,residual_full,spectral_adapter,linear_adapter,finetune}.gin
AUTHORS_LEARNING_RATES = {"O": 0.8, "RD": 0.8, "RD*": 0.8, "RDY": 1e-3, "Lin": 1e-3, "finetune": 1e-5}
# A ViT diverges long before the range test's default 10; the sweep stops at divergence anyway.
FINETUNE_MAX_LR = 1e-1
# A run is unhealthy (`health`) when it kept epoch 0, its loss went non-finite, its range test picked the first or
# last rate it swept, or a scale (lambda, head weight; all start at 1) left [-SCALE_LIMIT, SCALE_LIMIT].
SCALE_LIMIT = 10.0
# the loss's temperature: fixed 100 (paper_text), or the model's own exp(logit_scale) as the authors' classifier
PROTOCOL_LOGIT_SCALES: dict[str, float | str] = {"paper_text": DEFAULT_LOGIT_SCALE, "authors_code": "model"}


@dataclass
class TrainConfig:
    """Training settings; the defaults are the paper's (lr=None: chosen by the LR range test)."""

    max_epochs: int = 30
    patience: int = 5                  # epochs without a validation improvement before stopping
    batch_size: int = 64               # the authors' batch size
    lr: float | None = None
    weight_decay: float = 0.0          # scales and head weights are not meant to shrink towards 0
    min_lr: float = 1e-5               # LR range test: exponential sweep from min_lr to max_lr
    max_lr: float = 10.0
    range_steps: int = 100
    seed: int = 0
    device: str = "cpu"                # "auto": CUDA when visible, else the CPU (resolved on creation)
    progress: bool = True
    grad_clip: float | None = None     # clip the gradient's total norm to this before every step (None: never)
    lambda_init_noise: float = 0.0     # lambda = 1 + lambda_init_noise * N(0, 1) under `seed`, for the methods
                                       # built from this config (alignment.train_method); 0: exactly 1
    lin_init: str = "identity"         # Lin's start (residual.LIN_INITS): identity on the centred output, or
                                       # "pytorch", nn.Linear's default init on the uncentred output
    back_projection: str = "orthonormal"  # RD's and RD*'s map back to the residual (residual.BACK_PROJECTIONS)

    def __post_init__(self) -> None:
        from ..device import resolve_device

        self.device = str(resolve_device(self.device))


def check_protocol(protocol: str) -> str:
    """The protocol's name, or ValueError naming the valid ones."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown training protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    return protocol


def protocol_config(method: str, protocol: str = "paper_text", **overrides) -> TrainConfig:
    """The TrainConfig of one method (residual.METHODS or "finetune") under a protocol; overrides win."""
    check_protocol(protocol)
    if method not in AUTHORS_LEARNING_RATES:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(AUTHORS_LEARNING_RATES)}")
    finetuning = method == "finetune"
    if protocol == "paper_text":
        base = {"max_lr": FINETUNE_MAX_LR} if finetuning else {}
    else:
        base = {"lr": AUTHORS_LEARNING_RATES[method], "batch_size": 128 if finetuning else 64,
                "grad_clip": 1.0 if finetuning else None, "lambda_init_noise": 0.0 if finetuning else 1.0,
                "lin_init": "pytorch"}
    return TrainConfig(**{**base, **overrides})


@dataclass
class LRRangeTest:
    """Loss against learning rate over one exponential sweep, and the rate it suggests."""

    lrs: np.ndarray
    raw_losses: np.ndarray  # the loss of each step's batch
    losses: np.ndarray      # centred moving average of raw_losses (no lag in the learning rate)
    suggestion: float

    def plot(self, ax=None, label: str | None = None):
        """Loss against learning rate (log x): raw steps faint, smoothed solid, the suggestion dashed."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        line, = ax.plot(self.lrs, self.losses, label=label)
        ax.plot(self.lrs, self.raw_losses, color=line.get_color(), alpha=0.2, lw=0.8)
        ax.axvline(self.suggestion, color=line.get_color(), ls="--", lw=1)
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss")
        return ax


@dataclass
class TrainResult:
    """What a training run chose and saw: the rate, the per-epoch history, the restored epoch."""

    lr: float
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    lr_range: LRRangeTest | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history) - 1

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)


def validation_split(labels: np.ndarray, fraction: float = 0.1, seed: int = VALIDATION_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a stratified `fraction` of the samples held out."""
    index = np.arange(len(labels))
    counts = np.bincount(np.asarray(labels))
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def _loss(method: nn.Module, classifier: Classifier, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(classifier.logits(method(x)), y)


def embed(method: nn.Module, features: Tensor, batch_size: int = 1024, device: str = "cpu") -> Tensor:
    """(N, E) the method's output for every sample, without gradients, on the CPU."""
    method.eval()
    with torch.no_grad():
        return torch.cat([method(features[i:i + batch_size].to(device)).cpu()
                          for i in range(0, len(features), batch_size)])


def evaluate(method: nn.Module, classifier: Classifier, features: Tensor, labels, batch_size: int = 1024,
             device: str = "cpu") -> float:
    """Zero-shot accuracy of the method's output on (features, labels)."""
    return classifier.accuracy(embed(method, features, batch_size, device), labels)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def backward(loss: Tensor, params: list[nn.Parameter], grad_clip: float | None = None) -> float | None:
    """Backpropagate the loss; with grad_clip, scale the gradients to total norm <= grad_clip, return the norm before."""
    loss.backward()
    if grad_clip is None:
        return None
    return float(torch.nn.utils.clip_grad_norm_(params, grad_clip))


def _optimizer(method: nn.Module, lr: float, weight_decay: float) -> schedulefree.AdamWScheduleFree:
    params = [p for p in method.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(method).__name__} has no trainable parameters (fit_reference / features first?)")
    return schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=weight_decay)


def lr_range_test(method: nn.Module, classifier: Classifier, features: Tensor, labels,
                  config: TrainConfig | None = None) -> LRRangeTest:
    """Train a copy of `method` for `range_steps` batches at exponentially growing rates; suggest a rate.

    The losses are smoothed by a centred moving average (a tenth of the sweep; an exponential average would
    lag by many steps, i.e. by a large factor in the rate), and the suggestion is Lightning's rule, the rate
    where the smoothed loss falls fastest per log-rate, searched within the two decades below the rate of the
    smoothed minimum (so that noise on the initial plateau cannot win). The sweep stops once the loss
    exceeds 4x its smoothed best (divergence).
    """
    config = config or TrainConfig()
    if not 0 < config.min_lr < config.max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr; got min_lr={config.min_lr}, max_lr={config.max_lr}")
    torch.manual_seed(config.seed)
    probe = copy.deepcopy(method).to(config.device)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    optimizer = _optimizer(probe, config.min_lr, 0.0)
    generator = torch.Generator().manual_seed(config.seed)
    lrs = config.min_lr * (config.max_lr / config.min_lr) ** np.linspace(0, 1, config.range_steps)
    window = max(3, config.range_steps // 10) | 1
    batches: list[Tensor] = []
    raw: list[float] = []
    best_recent = math.inf
    probe.train()
    optimizer.train()
    for lr in lrs:
        if not batches:
            batches = _batches(len(features), config.batch_size, generator)
        idx = batches.pop()
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        loss = _loss(probe, classifier, features[idx].to(config.device), labels[idx].to(config.device))
        optimizer.zero_grad()
        backward(loss, [p for p in probe.parameters() if p.requires_grad], config.grad_clip)
        optimizer.step()
        raw.append(loss.item())
        recent = float(np.median(raw[-window:]))
        best_recent = min(best_recent, recent) if len(raw) >= window else best_recent
        if not math.isfinite(raw[-1]) or recent > 4 * best_recent:
            break
    raw_losses = np.nan_to_num(np.array(raw), nan=np.inf, posinf=np.finfo(np.float32).max)
    smooth = uniform_filter1d(raw_losses, size=min(window, len(raw_losses)), mode="nearest")
    lrs = lrs[:len(raw_losses)]
    lowest = int(np.argmin(smooth))
    start = max(window // 2, int(np.searchsorted(lrs, lrs[lowest] / 100)))
    if lowest - start >= 1:
        slope = np.gradient(smooth, np.log(lrs))
        best = start + int(np.argmin(slope[start:lowest + 1]))
    else:
        best = lowest
    return LRRangeTest(lrs=lrs, raw_losses=raw_losses, losses=smooth, suggestion=float(lrs[best]))


def fit(method: nn.Module, classifier: Classifier, train: tuple[Tensor, np.ndarray],
        val: tuple[Tensor, np.ndarray], config: TrainConfig | None = None) -> TrainResult:
    """Train `method` in place on (features, labels) `train`, early-stopped on `val`; best weights restored."""
    config = config or TrainConfig()
    (x_train, y_train), (x_val, y_val) = train, val
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError(f"features and labels differ in length: train {len(x_train)} vs {len(y_train)}, "
                         f"val {len(x_val)} vs {len(y_val)}")
    method.to(config.device)
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    range_test = None
    lr = config.lr
    if lr is None:
        range_test = lr_range_test(method, classifier, x_train, y_train, config)
        lr = range_test.suggestion
    torch.manual_seed(config.seed)
    optimizer = _optimizer(method, lr, config.weight_decay)
    trainable = [p for p in method.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(config.seed)

    optimizer.eval()
    best_acc = evaluate(method, classifier, x_val, y_val, device=config.device)
    best_state, best_epoch, waited = copy.deepcopy(method.state_dict()), 0, 0
    history = [{"epoch": 0, "train_loss": float("nan"), "val_accuracy": best_acc}]
    bar = tqdm(range(1, config.max_epochs + 1), desc=f"train {getattr(method, 'name', '') or type(method).__name__}",
               disable=not config.progress, leave=False)
    for epoch in bar:
        method.train()
        optimizer.train()
        total = 0.0
        for idx in _batches(len(x_train), config.batch_size, generator):
            loss = _loss(method, classifier, x_train[idx].to(config.device), y_train[idx].to(config.device))
            optimizer.zero_grad()
            backward(loss, trainable, config.grad_clip)
            optimizer.step()
            total += loss.item() * len(idx)
        optimizer.eval()
        acc = evaluate(method, classifier, x_val, y_val, device=config.device)
        history.append({"epoch": epoch, "train_loss": total / len(x_train), "val_accuracy": acc})
        bar.set_postfix(val_acc=f"{acc:.3f}")
        if acc > best_acc:
            best_acc, best_epoch, waited = acc, epoch, 0
            best_state = copy.deepcopy(method.state_dict())
        else:
            waited += 1
            if waited >= config.patience:
                break
    method.load_state_dict(best_state)
    method.eval()
    return TrainResult(lr=lr, best_epoch=best_epoch, best_val_accuracy=best_acc, history=history, lr_range=range_test)


def scale_range(method: nn.Module) -> tuple[float, float] | None:
    """(min, max) of a method's trained scales (ResiDual's lambda, O's head weights); None for other methods."""
    values = getattr(method, "scales", None)
    values = getattr(method, "weights", None) if values is None else values
    if not isinstance(values, torch.Tensor) or values.numel() == 0:
        return None
    values = values.detach()
    return float(values.min()), float(values.max())


def health(result: TrainResult, config: TrainConfig, scales: tuple[float, float] | None = None) -> dict:
    """What a reviewer checks of one run: the rate and where it sits in the range test's sweep (0: its first
    rate, 1: its last), the epoch kept, whether the epoch cap was hit, the scale range, and the flags that
    make it unhealthy (see `SCALE_LIMIT`); `healthy` is True when there are none."""
    flags = []
    if result.best_epoch == 0:
        flags.append("kept epoch 0 (untrained)")
    if not all(math.isfinite(h["train_loss"]) for h in result.history[1:]):
        flags.append("diverged (non-finite loss)")
    position = None
    if result.lr_range is not None:
        swept = result.lr_range.lrs
        position = float(np.log(result.lr / swept[0]) / np.log(swept[-1] / swept[0])) if len(swept) > 1 else 0.0
        if result.lr in (swept[0], swept[-1]):
            flags.append("rate at the edge of the range test")
    if scales is not None and max(abs(scales[0]), abs(scales[1])) > SCALE_LIMIT:
        flags.append(f"scales beyond +-{SCALE_LIMIT:g} (diverged)")
    return {"lr": result.lr, "lr position in range test": position, "epoch kept": result.best_epoch,
            "epochs run": result.epochs_run, "cap hit": result.epochs_run >= config.max_epochs,
            "scale min": None if scales is None else scales[0], "scale max": None if scales is None else scales[1],
            "flags": "; ".join(flags), "healthy": not flags}
