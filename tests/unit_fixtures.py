"""Shared helpers for the decomposition and cache tests: small random open_clip models and image sets."""

from __future__ import annotations

import time

import open_clip
import torch
from torch.utils.data import Dataset

from residual_lib.models.open_clip import OpenClipAdapter
from residual_lib.data.datasets import DatasetSpec

TINY_CFG = dict(
    embed_dim=24,
    vision_cfg=dict(image_size=32, layers=3, width=64, patch_size=8, head_width=16),
    text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
)


def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Add noise to every 1-d parameter (biases, norm gains, LayerScale) so none is at its trivial init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 1:
                p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def open_clip_model(arch: str, seed: int = 0, **kw) -> OpenClipAdapter:
    """A random-init open_clip architecture (biases and gains perturbed), wrapped."""
    torch.manual_seed(seed)
    return OpenClipAdapter(perturb(open_clip.create_model(arch, pretrained=None, **kw), seed), arch)


def tiny_model(seed: int = 0, **vision) -> OpenClipAdapter:
    """A 3-layer, 4-head, width-64 open_clip ViT on 32x32 images (fast on the CPU)."""
    cfg = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], **vision}}
    return open_clip_model("ViT-B-32", seed, **cfg)


def make_spec(name: str = "tinyimages", n_classes: int = 3) -> DatasetSpec:
    return DatasetSpec(name=name, title=name, role="task", source={"kind": "generated"},
                       splits={"train": {"size": 0}}, class_names=tuple(f"c{i}" for i in range(n_classes)),
                       templates=("a photo of {}.",))


class RandomImages(Dataset):
    """`size` random uint8 (3, S, S) images with labels i % 3; optional delay per item (for kill tests)."""

    def __init__(self, size: int, image_size: int = 32, seed: int = 0, delay: float = 0.0, name: str = "tinyimages"):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (size, 3, image_size, image_size), generator=g, dtype=torch.uint8)
        self.delay = delay
        self.spec = make_spec(name)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(self.delay)
        return self.images[i], i % 3
