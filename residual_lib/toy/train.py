"""Train the toy CLIP on the toy world, deterministically: `python -m residual_lib.toy.train --profile toy|smoke`.

The loss is CLIP's symmetric contrastive loss with every caption that is true of an image counted as a
positive (a caption that says only "a star" matches every star in the batch, so treating it as a
negative for all but one would teach the model to ignore shape). Images come from a pool generated once
from the seed; every step draws a batch from the pool and fresh captions for it. Captions state 1 to 6
attributes, and every batch also holds `value_copies` captions stating each attribute value alone (the
zero-shot prompts' form), so every step asks every image to match its shape, colour, pattern, position
and size words: without them only colour was learnt within the budget.

Outputs, under `artifacts_dir()/toy/<profile>/`: `model.safetensors`, `curve.csv` (step, loss, lr,
logit scale) and `manifest.json` (version, config, sha256 of the checkpoint, training time), written
last so that a checkpoint without a matching manifest is never taken as complete. The same seed gives
the same checkpoint bytes on the same machine: deterministic algorithms, a fixed thread count and
seeded generators for data, captions and initialisation.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..files import DamagedFileError, atomic_file, folder_lock, read_json, sha256_file, write_text
from ..paths import artifacts_dir
from . import data
from .captions import captions, consistent, value_captions
from .model import ARCHS, arch_of, create, tokenizer_of

# Bump when a change to the world, the captions or the loop changes what a config trains.
VERSION = 2
_POOL_STREAM, _BATCH_STREAM = 10, 11  # seed-sequence suffixes, independent of the dataset manifests' streams


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with VERSION and the machine)."""

    profile: str
    steps: int
    batch_size: int
    pool_size: int                    # images generated once, batches drawn from them
    lr: float
    text_lr_scale: float = 1.0        # text-tower learning rate = lr * text_lr_scale
    warmup: float = 0.05              # fraction of steps of linear warmup before the cosine decay
    weight_decay: float = 0.05        # on weight matrices only
    n_stated: tuple[float, ...] = (2, 1, 1, 1, 1, 1)  # relative odds of a caption stating 1..6 attributes
    value_copies: int = 1             # single-value captions of every attribute value added to each batch
    seed: int = 0
    threads: int = 1                  # a loaded machine runs one thread faster (the checkpoint's bits depend on it)
    precision: str = "fp32"           # "bf16": matrix products under bfloat16 autocast, weights and optimiser in fp32

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")


CONFIGS = {
    # Shape is the attribute that needs the steps (zero-shot on the validation split, bench/bench_toy_train.py, one
    # thread, bf16, 1,200 steps unless named): lr 2e-3 for both towers 0.41 (fp32), 5e-4 0.74; the text tower at a
    # tenth of the vision tower's 2e-3 0.88 (a half 0.87, a twentieth 0.89; the vision tower at 3e-3 0.83); then a
    # warmup of a tenth of the steps 0.93 in 1,100. fp32 (issue 22): bf16's speed depends on optional instruction sets
    # (AVX512-BF16, AMX); on an AVX2-only CPU its matrix products were reported 68 times slower than fp32's, an hour
    # of training. fp32 on AVX2, 2 cores, load 0.9: 0.285 s a step on two threads (0.39 on one), so these 1,100
    # steps take 5.5 to 7 min, over the 240 s budget. Cuts measured there (fp32, pool 20,000; shape lowest every
    # time, the rest >= 0.93): 700 steps of 128 0.63; steps of 64: 1,100 at 2e-3 0.76, 1,000 at 1e-3 0.67, 1.5e-3
    # 0.73, 3e-3 0.53, 4e-3 0.27. None kept shape >= 0.90 within 240 s, so the recipe is unchanged. One thread
    # (issue 22): the book runner trains beside the pages that read no toy model (the real-model page), where a
    # second training thread only waits for a busy core. Measured with bench/bench_toy_train.py at load 3 (the
    # real profile building beside it): one thread 427 s wall, 378 CPU-s (343 ms a step), zero-shot on val: shape 0.912, size 0.994, the rest >= 0.998;
    # the two-thread checkpoint 898ac637 it replaces: shape 0.922, size 0.988 (500 images each, SE about 0.012).
    "toy": TrainConfig(profile="toy", steps=1100, batch_size=128, pool_size=30000, lr=2e-3, text_lr_scale=0.1,
                       warmup=0.1, value_copies=4, threads=1, precision="fp32"),
    "smoke": TrainConfig(profile="smoke", steps=60, batch_size=64, pool_size=2000, lr=3e-3),
}


def output_dir(profile: str) -> Path:
    """Where the profile's checkpoint, curve and manifest live."""
    arch_of(profile)
    return artifacts_dir() / "toy" / profile


def _expected(config: TrainConfig) -> dict:
    return {"version": VERSION, "arch": arch_of(config.profile), "config": asdict(config),
            "open_clip": open_clip.__version__, "torch": torch.__version__}


def is_current(out: Path, config: TrainConfig) -> bool:
    """Whether `out` holds a complete checkpoint trained with `config` by this code version."""
    manifest = out / "manifest.json"
    checkpoint = out / "model.safetensors"
    if not manifest.is_file() or not checkpoint.is_file():
        return False
    try:
        saved = read_json(manifest)
    except DamagedFileError as err:
        print(f"toy checkpoint {out}: {err}; the checkpoint counts as stale and is retrained when next needed",
              file=sys.stderr, flush=True)
        return False
    expected = _expected(config)
    expected["config"] = json.loads(json.dumps(expected["config"]))  # tuples as JSON lists, as saved
    return all(saved.get(k) == v for k, v in expected.items()) and saved.get("sha256") == sha256_file(checkpoint)


def contrastive_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor, positives: Tensor) -> Tensor:
    """Symmetric InfoNCE with several positives: unit-norm (B, E) images and (C, E) texts, bool (B, C) positives.

    Each image's target is uniform over the captions true of it, each caption's over the images it is true of;
    a caption true of no image in the batch (possible for the added single-value captions) only serves as a negative.
    """
    logits = logit_scale * image_features @ text_features.T
    targets = positives.float()
    image_loss = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    per_caption = -(targets / targets.sum(0, keepdim=True).clamp(min=1) * F.log_softmax(logits, dim=0)).sum(0)
    text_loss = per_caption[positives.any(0)].mean()
    return (image_loss + text_loss) / 2


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Vision and text parameters at their own learning rates; decay only on weight matrices."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        is_text = not name.startswith("visual.") and name != "logit_scale"
        decay = p.ndim >= 2 and "embedding" not in name
        groups.setdefault((is_text, decay), []).append(p)
    return [{"params": params, "lr": config.lr * (config.text_lr_scale if is_text else 1.0),
             "weight_decay": config.weight_decay if decay else 0.0}
            for (is_text, decay), params in sorted(groups.items())]


def _schedule(step: int, config: TrainConfig) -> float:
    """Learning-rate factor: linear warmup, then cosine decay to zero."""
    warm = max(1, round(config.warmup * config.steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, config.steps - warm)))


def _memoised(tokenize: Callable[[list[str]], Tensor]) -> Callable[[list[str]], Tensor]:
    """`tokenize` with each distinct text tokenised once: captions repeat, and BPE took a tenth of a step."""
    rows: dict[str, Tensor] = {}

    def cached(texts: list[str]) -> Tensor:
        new = list(dict.fromkeys(t for t in texts if t not in rows))
        if new:
            rows.update(zip(new, tokenize(new)))
        return torch.stack([rows[t] for t in texts])

    return cached


@contextmanager
def _deterministic(threads: int):
    """Deterministic algorithms and a fixed thread count for the duration, restored afterwards."""
    import torch.utils.deterministic as det

    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(), det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    # Filling every new tensor with NaN (a debugging aid that deterministic mode turns on) took a quarter of a step.
    det.fill_uninitialized_memory = False
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])
        det.fill_uninitialized_memory = previous[2]


@contextmanager
def _precision(precision: str):
    """The forward pass's arithmetic: fp32, or bf16 autocast with attention on the math kernel."""
    if precision == "fp32":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # The CPU flash-attention kernel's bf16 backward took 60 ms a layer, thirteen times its fp32 time; the math
    # kernel runs attention as batched matrix products, which bf16 speeds up like the rest.
    with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
        yield


def train(config: TrainConfig, out: Path, progress: bool = True) -> Path:
    """Train a toy CLIP with `config`, write checkpoint, curve and manifest to `out`; the checkpoint path."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _deterministic(config.threads):
        torch.manual_seed(config.seed)
        model = create(config.profile).train()
        tokenize = _memoised(tokenizer_of(config.profile))
        cfg = open_clip.get_model_preprocess_cfg(model)
        mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        images, attributes = data.generate(config.pool_size, [config.seed, _POOL_STREAM])
        images = torch.from_numpy(images)
        rng = np.random.default_rng([config.seed, _BATCH_STREAM])
        optimizer = torch.optim.AdamW(_param_groups(model, config), betas=(0.9, 0.98), eps=1e-6, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, config))
        curve = []
        bar = tqdm(range(config.steps), desc=f"training {arch_of(config.profile)}", disable=not progress)
        for step in bar:
            rows = rng.choice(config.pool_size, size=config.batch_size, replace=False)
            batch = {k: v[rows] for k, v in attributes.items()}
            texts, mentioned = captions(batch, rng, n_stated=np.asarray(config.n_stated))
            if config.value_copies:
                extra, stated = value_captions(rng, config.value_copies)
                texts += extra
                mentioned = {a: np.concatenate([mentioned[a], stated[a]]) for a in mentioned}
            positives = torch.from_numpy(consistent(mentioned, batch))
            x = (images[rows].float() / 255.0 - mean) / std
            with _precision(config.precision):
                image_features, text_features, logit_scale = model(x, tokenize(texts))
            loss = contrastive_loss(image_features.float(), text_features.float(), logit_scale, positives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            curve.append((step, loss.item(), optimizer.param_groups[0]["lr"], logit_scale.item()))
            bar.set_postfix(loss=f"{curve[-1][1]:.3f}")
    seconds = time.perf_counter() - start
    return _save(model, curve, config, out, seconds)


def _save(model: nn.Module, curve: list[tuple], config: TrainConfig, out: Path, seconds: float) -> Path:
    """Write checkpoint and curve under temporary names, rename, then write the manifest that vouches for them."""
    checkpoint = out / "model.safetensors"
    (out / "manifest.json").unlink(missing_ok=True)
    with atomic_file(checkpoint) as tmp:  # safetensors writes 0600; atomic_file gives the umask's mode
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_file(out / "curve.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr", "logit_scale"])
        writer.writerows(curve)
    manifest = {**_expected(config), "sha256": sha256_file(checkpoint), "train_seconds": round(seconds, 1),
                "n_parameters": sum(p.numel() for p in model.parameters())}
    write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    return checkpoint


def training_profile(book_profile: str) -> str:
    """The toy profile whose model a book profile's toy pages read: the paper and real profiles show the toy model."""
    return "toy" if book_profile in ("paper", "real") else book_profile


def ensure_model(profile: str = "toy", progress: bool = True) -> Path:
    """The checkpoint of `profile`, trained first when missing or out of date."""
    if profile not in CONFIGS:
        raise ValueError(f"unknown toy profile {profile!r}; valid: {', '.join(CONFIGS)}")
    config, out = CONFIGS[profile], output_dir(profile)
    if is_current(out, config):
        return out / "model.safetensors"
    with folder_lock(out):  # concurrent callers wait for one training instead of each running their own
        if not is_current(out, config):
            train(config, out, progress=progress)
    return out / "model.safetensors"


def training_record(profile: str = "toy") -> tuple[pd.DataFrame, dict]:
    """The curve (step, loss, lr, logit_scale) and manifest of the profile's checkpoint, trained first if missing."""
    out = ensure_model(profile).parent
    return pd.read_csv(out / "curve.csv"), read_json(out / "manifest.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the toy CLIP (a no-op when the checkpoint is current).")
    parser.add_argument("--profile", default="toy", choices=sorted(ARCHS) + ["paper", "real"],
                        help="toy profile; the book's paper and real profiles show the toy pages with the toy model")
    parser.add_argument("--steps", type=int, help="override the profile's step count (writes to --out)")
    parser.add_argument("--seed", type=int, help="override the profile's seed (writes to --out)")
    parser.add_argument("--out", type=Path, help="output folder for an overridden run")
    args = parser.parse_args(argv)
    args.profile = training_profile(args.profile)
    if args.steps is None and args.seed is None:
        path = ensure_model(args.profile)
    else:
        config = CONFIGS[args.profile]
        config = replace(config, steps=args.steps or config.steps,
                         seed=config.seed if args.seed is None else args.seed)
        path = train(config, args.out or output_dir(args.profile).with_name(f"{args.profile}-custom"))
    manifest = read_json(path.parent / "manifest.json")
    print(f"{path} sha256 {manifest['sha256']} trained in {manifest['train_seconds']} s")


if __name__ == "__main__":
    main()
