"""The trained toy CLIP of a profile, ready to use: trained first when its checkpoint is missing or stale."""

from __future__ import annotations

import json
from typing import Callable

from torch import nn

from .model import from_checkpoint, preprocess_of, tokenizer_of
from .train import CONFIGS, ensure_model, is_current, output_dir


def load_toy_clip(profile: str = "toy") -> tuple[nn.Module, Callable, Callable]:
    """The trained toy CLIP of `profile` in eval mode, its preprocess and tokenizer (trains it first if missing)."""
    model = from_checkpoint(profile, ensure_model(profile))
    return model, preprocess_of(model), tokenizer_of(profile)


def weights_id(model_name: str) -> str | None:
    """The sha256 of a toy-family model's current checkpoint (None: not a toy model, or not trained yet).

    Results stored per (model, task) carry it in their key, so retraining the toy CLIP never serves results
    computed with the old weights; other families' weights are fixed by their manifest's name and tag.
    """
    from ..models import model_spec

    try:
        spec = model_spec(model_name)
    except KeyError:  # an open_clip architecture named directly: not a toy model
        return None
    if spec.family != "toy":
        return None
    profile = spec.pretrained or "toy"
    if profile not in CONFIGS or not is_current(output_dir(profile), CONFIGS[profile]):
        return None
    return json.loads((output_dir(profile) / "manifest.json").read_text())["sha256"]
