"""The toy CLIP: open_clip's own architecture at the toy world's image size, registered as `toy-clip*` configs.

The configs are JSON files in `model_configs/` (open_clip's format) added to open_clip's registry on
import, so `open_clip.create_model("toy-clip")` builds the book's model and `"toy-clip-smoke"` the tiny
one the tests train. Both read 32x32 images with 8x8 patches and use open_clip's CLIP tokenizer with a
24-token context (the longest caption, all six attributes stated, is 24 tokens with its start and end).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import open_clip
import torch
from safetensors.torch import load_file
from torch import nn

CONFIG_DIR = Path(__file__).with_name("model_configs")
# profile -> registered open_clip config name
from . import ARCHS  # noqa: F401 (the toy profiles' architectures, re-exported)


def register_configs() -> None:
    """Add the toy configs to open_clip's registry (idempotent)."""
    if not set(ARCHS.values()) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)


register_configs()


def arch_of(profile: str) -> str:
    """The open_clip config name of a toy profile."""
    if profile not in ARCHS:
        raise ValueError(f"unknown toy profile {profile!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[profile]


def create(profile: str) -> nn.Module:
    """A randomly initialised toy CLIP (open_clip `CLIP`) for `profile`, from the current torch seed."""
    # open_clip warns on the root logger whenever pretrained=None; for the toy model (whose weights are
    # loaded right after, or trained from scratch) that warning would only clutter every book page.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(arch_of(profile), pretrained=None)
    finally:
        root.setLevel(level)


class SharedTokenizer:
    """open_clip's tokenizer at a toy profile's context length, shared by every copy of a model.

    It holds fixed vocabularies of about 50,000 entries. Full finetuning deep-copies the model it tunes (and
    the LR range test copies that again), and stored results pickle it: copying and pickling the vocabularies
    took seconds each time, so a deep copy returns the same tokenizer and a pickle records only the profile.
    """

    def __init__(self, profile: str):
        arch = arch_of(profile)
        self.profile = profile
        self.context_length = open_clip.get_model_config(arch)["text_cfg"]["context_length"]
        self._tokenize = open_clip.get_tokenizer(arch, context_length=self.context_length)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self._tokenize(texts)

    def __deepcopy__(self, memo: dict) -> "SharedTokenizer":
        return self

    def __reduce__(self):
        return SharedTokenizer, (self.profile,)


def tokenizer_of(profile: str) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's tokenizer at the profile's context length: (N,) strings -> int64 (N, context_length)."""
    return SharedTokenizer(profile)


def preprocess_of(model: nn.Module) -> Callable:
    """PIL image or uint8 (3, S, S) tensor -> float (3, S, S), normalised with the model's mean and std."""
    from torchvision.transforms import v2

    cfg = open_clip.get_model_preprocess_cfg(model)
    size = model.visual.image_size[0]
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg["mean"]), std=list(cfg["std"])),
    ])


def from_checkpoint(profile: str, checkpoint: str | Path) -> nn.Module:
    """The toy CLIP of `profile` with the weights of a safetensors `checkpoint`, in eval mode."""
    model = create(profile)
    model.load_state_dict(load_file(str(checkpoint)))
    return model.eval()
