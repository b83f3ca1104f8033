"""Toy-world datasets: the loader behind manifests with `source: {kind: toy, variant: ..., label: ...}`.

`variant` is a rendering of `residual_lib.toy.world` (plain, sketch, textured, noisy), `noise` or
`digits`; `label` names the attribute that is the class (shape, colour, pattern, position, size,
background) or `object` (colour and shape together, 48 classes: the mixed reference set). A sketch may set
`outline` (its line width in pixels) and a textured set `texture` (the texture's opacity, 0 to 1): the strength
of the shift. Splits are
generated from the manifest's seed: `test` on its own stream, `train` and `val` from one pool with
`val` a stratified split of it (random_state 42, the paper's policy). Each generated pool is kept in
memory and stored under `artifacts/toy_images/`, keyed by the digest of the drawing code: the book's pages
run in separate processes and would each draw the same sketch and textured images again (seconds per split).
"""

from __future__ import annotations

import hashlib
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ..files import atomic_file
from ..paths import artifacts_dir
from . import world

LABELS = tuple(world.ATTRIBUTES) + ("object",)
VARIANTS = world.VARIANTS + ("noise", "digits")
STRENGTHS = {"outline": "sketch", "texture": "textured"}  # manifest field -> the variant whose shift it sets
Strength = tuple[tuple[str, float], ...]  # a rendering's shift strength: sorted (manifest field, value) pairs
VAL_SEED = 42
_STREAMS = {"trainval": 0, "test": 1}  # independent random streams per manifest seed
_CHUNK = 2048  # images rendered per call, bounding the supersampled masks' memory


class ToyDataset(Dataset):
    """Images uint8 (N, 3, S, S), integer labels (N,) and, where known, every attribute {name: (N,)}."""

    # Drawn, not photographed: a network with another input size sees them through its own resizing (the unit
    # cache hands them over as PIL images), as Section 4 runs toy-world tasks on DINOv2-S and CLIP-B/16.
    resizable = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                 attributes: dict[str, np.ndarray] | None = None):
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.class_names = class_names
        self.attributes = attributes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def object_class_names() -> tuple[str, ...]:
    """Names of the 48 colour-and-shape classes, in label order (label = colour * n_shapes + shape)."""
    return tuple(f"{c} {s}" for c in world.COLOURS for s in world.SHAPES)


def labels_of(attributes: dict[str, np.ndarray], label: str) -> np.ndarray:
    """Class index (N,) of each image under the labelling `label` (one of LABELS)."""
    if label == "object":
        return attributes["colour"] * len(world.SHAPES) + attributes["shape"]
    return attributes[label]


@lru_cache(maxsize=1)
def drawing_id() -> str:
    """Digest of the code that draws toy images (world.py, this module): stored pools are reused only while it holds."""
    code = Path(world.__file__).read_bytes() + Path(__file__).read_bytes()
    return hashlib.sha256(code).hexdigest()[:16]


def stored_pool_path(n: int, seed: int, stream: int, variant: str, strength: Strength = ()) -> Path:
    """Where `_generated` stores a pool."""
    rendering = variant + "".join(f"-{field}{value:g}" for field, value in strength)
    return artifacts_dir() / "toy_images" / f"{rendering}-n{n}-seed{seed}-stream{stream}-{drawing_id()}.npz"


@lru_cache(maxsize=8)
def _generated(n: int, seed: int, stream: int, variant: str,
               strength: Strength = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`generate` memoised per (size, seed, stream, rendering) in memory and on disk: train and val share one pool."""
    path = stored_pool_path(n, seed, stream, variant, strength)
    try:
        with np.load(path) as stored:
            return stored["images"], {k.removeprefix("attribute_"): stored[k] for k in stored.files if k != "images"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # missing, or damaged (zip's CRC fails): draw it
        pass
    images, attributes = generate(n, [seed, stream], variant, **dict(strength))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=images, **{f"attribute_{k}": v for k, v in attributes.items()})
    return images, attributes


def generate(n: int, seed_sequence: list[int], variant: str = "plain",
             **strength: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n images uint8 (n, 3, S, S) of `variant` (shifted by `strength`, `world.render`'s) and their attributes."""
    rng = np.random.default_rng(seed_sequence)
    attributes = world.sample_attributes(n, rng)
    if variant == "noise":
        return world.noise_images(n, rng), attributes
    images = [world.render({k: v[i:i + _CHUNK] for k, v in attributes.items()}, rng, variant, **strength)
              for i in range(0, n, _CHUNK)]
    return np.concatenate(images) if images else np.zeros((0, 3, world.IMAGE_SIZE, world.IMAGE_SIZE), np.uint8), attributes


def captioned_samples(n: int, seed: int, variant: str = "plain") -> tuple[np.ndarray, list[str]]:
    """n images uint8 (n, 3, S, S) of `variant` with one training-style caption each."""
    from .captions import captions

    images, attributes = generate(n, [seed, 3], variant)
    return images, captions(attributes, np.random.default_rng([seed, 4]))[0]


def _check(source: dict) -> tuple[str, str, Strength]:
    """(variant, label, the shift's strength as sorted (field, value) pairs) of a toy manifest's source."""
    variant, label = source.get("variant", "plain"), source.get("label", "shape")
    if variant not in VARIANTS:
        raise ValueError(f"toy source variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if variant != "digits" and label not in LABELS:
        raise ValueError(f"toy source label {label!r} is not one of {', '.join(LABELS)}")
    unknown = sorted(set(source) - {"kind", "variant", "label", *STRENGTHS})
    if unknown:
        raise ValueError(f"toy source has unknown field(s) {', '.join(unknown)}; valid: kind, variant, label, "
                         f"{', '.join(STRENGTHS)}")
    strength = tuple(sorted((f, source[f]) for f in STRENGTHS if f in source))
    for field, value in strength:
        if variant != STRENGTHS[field]:
            raise ValueError(f"toy source field {field!r} sets the {STRENGTHS[field]} variant's shift, "
                             f"not variant {variant!r}")
        top = 1 if field == "texture" else world.IMAGE_SIZE
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
            raise ValueError(f"toy source {field} {value!r} is not a number in (0, {top}]")
    return variant, label, strength


def rendering_text(source: dict) -> str:
    """How a toy manifest's images are drawn, in words: the shift from the training images and its strength."""
    variant, _, strength = _check(source)
    strength = dict(strength)
    return {
        "plain": "as in training",
        "sketch": f"dark outline on white, lines {strength.get('outline', world.OUTLINE):g} px wide",
        "textured": f"random coloured texture behind the object at {strength.get('texture', 1.0):.0%} opacity",
        "noisy": f"pixel noise of std {world.HEAVY_NOISE:g} instead of {world.PIXEL_NOISE:g}",
        "noise": "uniform pixel noise, no object",
        "digits": f"scikit-learn's handwritten digits, upsampled to {world.IMAGE_SIZE} px",
    }[variant]


def spread_over_classes(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of n examples (n,) taking each class in turn: the first of every class, then the second, ..."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], labels[order])  # where each image's class begins in `order`
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts  # the image's place among its class's images
    return np.lexsort((labels, rank))[:n]


def _split_pool(labels: np.ndarray, n_val: int, split: str) -> np.ndarray:
    """Indices of `split` (train or val) in a pool: val is a stratified n_val of it (seed 42)."""
    if n_val == 0:
        return np.arange(len(labels)) if split == "train" else np.arange(0)
    train, val = train_test_split(np.arange(len(labels)), test_size=n_val, stratify=labels, random_state=VAL_SEED)
    return np.sort(train if split == "train" else val)


@lru_cache(maxsize=16)
def _build(name: str, seed: int, variant: str, strength: Strength, label: str,
           sizes: tuple[tuple[str, int], ...], split: str, class_names: tuple[str, ...]) -> ToyDataset:
    size = dict(sizes)
    if variant == "digits":
        images, labels = world.digit_images()
        pool, test = train_test_split(np.arange(len(labels)), test_size=size.get("test", 0) or None,
                                      stratify=labels, random_state=seed)
        rows = np.sort(test) if split == "test" else pool[_split_pool(labels[pool], size.get("val", 0), split)]
        return ToyDataset(images[rows], labels[rows], class_names)
    if split == "test":
        images, attributes = _generated(size["test"], seed, _STREAMS["test"], variant, strength)
        rows = np.arange(len(images))
    else:
        n_pool = size.get("train", 0) + size.get("val", 0)
        images, attributes = _generated(n_pool, seed, _STREAMS["trainval"], variant, strength)
        rows = _split_pool(labels_of(attributes, label), size.get("val", 0), split)
    attributes = {k: v[rows] for k, v in attributes.items()}
    labels = labels_of(attributes, label)
    if variant == "noise":
        # Noise has no class or attributes: its labels are uniform draws, kept so every dataset has a label column.
        labels = np.random.default_rng([seed, 2]).integers(0, len(class_names), size=len(rows))
        attributes = None
    return ToyDataset(images[rows], labels, class_names, attributes)


def load_split(spec, split: str, root: Path | None = None) -> ToyDataset:
    """The `split` of a toy manifest as a ToyDataset; `root` is unused (generation is fast, nothing is cached)."""
    variant, label, strength = _check(spec.source)
    if split not in ("train", "val", "test"):
        raise KeyError(f"toy dataset {spec.name!r} has no split {split!r}; valid: train, val, test")
    sizes = tuple(sorted((k, int(v["size"])) for k, v in spec.splits.items()))
    dataset = _build(spec.name, int(spec.seed), variant, strength, label, sizes, split, tuple(spec.class_names))
    if len(dataset) != dict(sizes)[split]:
        raise ValueError(f"toy dataset {spec.name!r} split {split!r}: built {len(dataset)} images, manifest says {dict(sizes)[split]}")
    return dataset
