"""The trained toy CLIP of a profile, ready to use: trained first when its checkpoint is missing or stale."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .model import from_checkpoint, preprocess_of, tokenizer_of
from .train import ensure_model


def load_toy_clip(profile: str = "toy") -> tuple[nn.Module, Callable, Callable]:
    """The trained toy CLIP of `profile` in eval mode, its preprocess and tokenizer (trains it first if missing)."""
    model = from_checkpoint(profile, ensure_model(profile))
    return model, preprocess_of(model), tokenizer_of(profile)
