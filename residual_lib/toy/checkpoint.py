"""The trained toy CLIP of a profile, ready to use: trained first when its checkpoint is missing or stale."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..files import read_json
from ..models.open_clip import OpenClipAdapter
from ..units.adapter import ResidualModel
from .model import create, from_checkpoint, preprocess_of, tokenizer_of
from .train import CONFIGS, ensure_model, is_current, output_dir


def load_toy_clip(profile: str = "toy") -> tuple[nn.Module, Callable, Callable]:
    """The trained toy CLIP of `profile` in eval mode, its preprocess and tokenizer (trains it first if missing)."""
    model = from_checkpoint(profile, ensure_model(profile))
    return model, preprocess_of(model), tokenizer_of(profile)


def load_entry(entry: dict, weights: str | None, **kw) -> ResidualModel:
    """The toy family's loader (`residual_lib.models.registry.LOADERS`): weights name a training profile, whose
    trained CLIP is returned (trained first if needed); None gives the architecture with seeded random weights."""
    profile = weights or entry.get("pretrained") or "toy"
    if weights is not None:
        module, preprocess, tokenizer = load_toy_clip(profile)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = create(profile).eval()
        preprocess, tokenizer = preprocess_of(module), tokenizer_of(profile)
    model = OpenClipAdapter(module, entry["name"], preprocess=preprocess, tokenizer=tokenizer)
    model.weights = f"toy:{profile}" if weights is not None else None
    return model


def weights_id(model_name: str) -> str | None:
    """The sha256 of a toy-family model's current checkpoint (None: not a toy model, or not trained yet).

    Results stored per (model, task) carry it in their key, so retraining the toy CLIP never serves results
    computed with the old weights; other families' weights are fixed by their manifest's name and tag.
    """
    from ..models.registry import model_spec

    try:
        spec = model_spec(model_name)
    except KeyError:  # an open_clip architecture named directly: not a toy model
        return None
    if spec.family != "toy":
        return None
    profile = spec.pretrained or "toy"
    if profile not in CONFIGS or not is_current(output_dir(profile), CONFIGS[profile]):
        return None
    return read_json(output_dir(profile) / "manifest.json")["sha256"]
