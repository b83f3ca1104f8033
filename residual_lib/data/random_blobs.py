"""The authors' Random set: ten Gaussian class blobs drawn in image-tensor space, then turned into bytes.

The paper says "random images, 10000 samples with RGB values in [-1, 1]"; the authors' code (``dataset.py``,
``_generate_synthetic_data`` and ``build_random``) draws, under ``torch.manual_seed(42)`` and class by class:

1. a class centre: a per-pixel shift N(0, 0.05^2) around ``c_k``, the k-th of 10 values evenly spaced on
   [-0.2, 0.2] (the range [-1, 1] narrowed by 0.8 on each side);
2. the class's N / 10 images: per pixel N(0, 0.1^2) around that centre.

The float tensors become images through torchvision's ``ToPILImage``: multiplied by 255 and cast to bytes,
which keeps the integer part modulo 256. A value v >= 0 lands at trunc(255 v), a value v < 0 at
256 + trunc(255 v): the class centred at +0.2 sits near byte 51, the one at -0.2 near byte 205, and a pixel
that crosses 0 jumps between the two ends of the byte range.
Draws follow the authors' order and shapes, so with the same torch CPU generator the pixels equal theirs.
The 80 / 10 / 10 split is `splits.three_way_indices` (their two stratified cuts, seed 42).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

CENTRE_RANGE = (-0.2, 0.2)  # linspace(-1 + 0.8, 1 - 0.8, n_classes)
CENTRE_SHIFT = 0.05         # per-pixel standard deviation of a class centre around c_k
SPREAD = 0.1                # per-pixel standard deviation of an image around its class centre


def blob_blocks(n_samples: int = 10_000, shape: tuple[int, ...] = (3, 224, 224), n_classes: int = 10,
                seed: int = 42) -> Iterator[tuple[int, torch.Tensor]]:
    """(class k, float tensor (N / n_classes, *shape)) for k = 0 .. n_classes - 1, in the authors' draw order."""
    if n_samples % n_classes:
        raise ValueError(f"n_samples ({n_samples}) must be a multiple of n_classes ({n_classes})")
    per_class = n_samples // n_classes
    generator = torch.Generator().manual_seed(seed)
    levels = torch.linspace(*CENTRE_RANGE, n_classes)
    for k in range(n_classes):
        centre = torch.randn(*shape, generator=generator) * CENTRE_SHIFT + levels[k]
        yield k, torch.randn(per_class, *shape, generator=generator) * SPREAD + centre


def to_bytes(x: torch.Tensor) -> torch.Tensor:
    """ToPILImage's float-to-byte step, written out: trunc(255 x) modulo 256, as uint8."""
    return torch.remainder(torch.trunc(x.float() * 255).to(torch.int64), 256).to(torch.uint8)


def class_blobs(n_samples: int = 10_000, shape: tuple[int, ...] = (3, 224, 224), n_classes: int = 10, seed: int = 42,
                out: np.ndarray | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W, C), labels (N,)) of the Random set; `out` (e.g. a memmap) receives the images."""
    c, h, w = shape
    images = np.empty((n_samples, h, w, c), dtype=np.uint8) if out is None else out
    if images.shape != (n_samples, h, w, c):
        raise ValueError(f"out has shape {images.shape}; need {(n_samples, h, w, c)}")
    per_class = n_samples // max(n_classes, 1)
    for k, block in tqdm(blob_blocks(n_samples, shape, n_classes, seed), total=n_classes, desc="random blobs",
                         disable=not progress, leave=False):
        images[k * per_class:(k + 1) * per_class] = to_bytes(block).permute(0, 2, 3, 1).numpy()
    return images, np.repeat(np.arange(n_classes), per_class)


class BlobImages(Dataset):
    """Rows `indices` of the Random set's images as (RGB PIL image, label); `.targets` without decoding."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        self.images, self.indices = images, np.asarray(indices)
        self.targets = np.asarray(labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(np.asarray(self.images[self.indices[i]]), "RGB"), int(self.targets[i])


def load_split(spec, split: str, root: Path) -> BlobImages:
    """One split of a `class-blobs` manifest; the images are generated once into `root`/<name>/ (a .npy memmap)."""
    from .splits import three_way_indices

    src = spec.source
    n, size = int(src.get("n_samples", 10_000)), int(src.get("image_size", 224))
    shape = (3, size, size)
    path = Path(root) / spec.name / f"blobs-seed{spec.seed}-n{n}-{size}px.npy"
    if path.exists():
        images = np.load(path, mmap_mode="r")
        labels = np.repeat(np.arange(spec.n_classes), n // spec.n_classes)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        images, labels = class_blobs(n, shape, spec.n_classes, spec.seed, out=out)
        out.flush()
        del out, images
        partial.rename(path)
        images = np.load(path, mmap_mode="r")
    parts = three_way_indices(labels, seed=spec.seed)
    if split not in parts:
        raise KeyError(f"dataset {spec.name!r} has no split {split!r}; valid: {', '.join(parts)}")
    return BlobImages(images, labels, parts[split])
