"""Loaders for the real datasets declared in `data_manifests/datasets/*.yaml`.

Each loader is `(spec, split, root) -> torch Dataset of (PIL RGB image, int label)` with a `.targets`
array, and is picked by `source.kind` (see `SOURCE_LOADERS` in `residual_lib.data.datasets`):

- ``torchvision``: a `torchvision.datasets` class (`source.dataset`), constructor arguments per source
  split in `source.split_args`, downloaded into ``<root>/<source.path>`` when allowed.
- ``hf-datasets``: a Hugging Face dataset repository at a pinned revision, read with the `datasets` library
  (`residual_lib.data.hf_datasets`).
- ``imagefolder``: ``<root>/<source.path>/<source split>/<class folder>/<image>``, classes in sorted order.
- ``generated``: images made on the fly from (seed, split, index); no files at all.
- ``idx``: idx files (MNIST's format, gzip or plain) from the first of `source.dirs` that has them (e.g.
  Debian's dataset-fashion-mnist package), else the `source.torchvision` class's copy under
  ``<root>/<source.path>`` (downloaded when allowed).
- ``sklearn`` / ``skimage``: an image array bundled with scikit-learn (`source.loader`, e.g. load_digits) or
  scikit-image (`source.array`, e.g. lfw_subset, labelled by `source.label_runs`); nothing to download.

A manifest split names its source split (`from`, default the split's own name) and optionally carves it:
`carve` is a list of stratified cuts (`fraction`, `keep: part | rest`, seed = the manifest's seed; `by:
sklearn` (default) or `by: datasets`, Hugging Face's `train_test_split` as the authors cut, see
`residual_lib.data.splits`) and `subset: n` keeps a stratified n-sample (ImageNet's 80k). A split cut only by `datasets`
steps keeps the row order `datasets` returns (the authors number samples in it); other splits are sorted. Without
data and without network, loading raises
`MissingDataError` naming the dataset, the source and what to do. Downloads are off when
``RESIDUAL_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import io
import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..files import read_bytes
from .datasets import DatasetSpec
from .images import to_rgb


class MissingDataError(FileNotFoundError):
    """A dataset's files are absent and cannot be fetched; the message says what to do."""


def downloads_allowed() -> bool:
    """False when the user asked for offline mode (RESIDUAL_OFFLINE=1 or HF_HUB_OFFLINE=1)."""
    return not any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes")
                   for var in ("RESIDUAL_OFFLINE", "HF_HUB_OFFLINE"))


def describe_source(spec: DatasetSpec) -> str:
    """One line naming where a dataset comes from (repository and revision, torchvision class, folder)."""
    src = spec.source
    kind = src["kind"]
    if kind == "torchvision":
        return f"torchvision.datasets.{src['dataset']}"
    if kind == "hf-datasets":
        config = f", config {src['config']}" if src.get("config") else ""
        return f"Hugging Face dataset {src['repo']}{config} at revision {src['revision']} (read with `datasets`)"
    if kind == "imagefolder":
        return f"image folders under <data root>/{src['path']}"
    if kind == "class-blobs":
        return "generated (the authors' Gaussian class blobs, residual_lib.data.random_blobs)"
    if kind == "idx":
        return f"idx files in {' or '.join(src.get('dirs', []))} (else torchvision.datasets.{src['torchvision']})"
    if kind == "sklearn":
        return f"sklearn.datasets.{src['loader']} (bundled with scikit-learn)"
    if kind == "skimage":
        return f"skimage.data.{src['array']} (bundled with scikit-image)"
    return f"generated ({src.get('pattern', 'uniform-noise')})"


def _missing(spec: DatasetSpec, where: Path, todo: str) -> MissingDataError:
    return MissingDataError(
        f"dataset {spec.name!r} ({spec.title}) is not available: source {describe_source(spec)}, expected under {where}. "
        f"{todo}")


def _offline_todo(spec: DatasetSpec) -> str:
    if spec.source.get("instructions"):
        return spec.source["instructions"]
    return ("Downloads are switched off (RESIDUAL_OFFLINE or HF_HUB_OFFLINE is set) or the network is unreachable: "
            "run once with network access (unset those variables) to download it, or copy the files there.")


# ---------------------------------------------------------------------------------------------- splits


def _source_split(spec: DatasetSpec, split: str) -> str:
    return spec.splits[split].get("from", split)


def split_indices(labels: np.ndarray, spec: DatasetSpec, split: str) -> np.ndarray:
    """Indices into the source split that make up the manifest split `split` (stratified cuts, seed): in the order
    `datasets` returns when every cut is `by: datasets` (the authors' order), sorted otherwise."""
    from sklearn.model_selection import train_test_split

    entry = spec.splits[split]
    idx = np.arange(len(labels))
    for step in entry.get("carve", []):
        if step["keep"] not in ("part", "rest"):
            raise ValueError(f"dataset {spec.name!r} split {split!r}: carve keep {step['keep']!r} is not 'part' or 'rest'")
        by = step.get("by", "sklearn")
        if by == "datasets":
            from .splits import train_test_indices

            first, second = train_test_indices(labels[idx], step["fraction"], seed=spec.seed)
            rest, part = idx[first], idx[second]
        elif by == "sklearn":
            rest, part = train_test_split(idx, test_size=step["fraction"], stratify=labels[idx], random_state=spec.seed)
        else:
            raise ValueError(f"dataset {spec.name!r} split {split!r}: carve by {by!r} is not 'sklearn' or 'datasets'")
        idx = part if step["keep"] == "part" else rest
    if "subset" in entry and entry["subset"] < len(idx):
        idx, _ = train_test_split(idx, train_size=entry["subset"], stratify=labels[idx], random_state=spec.seed)
    carve = entry.get("carve", [])
    authors_order = bool(carve) and all(step.get("by") == "datasets" for step in carve) and "subset" not in entry
    return idx if authors_order else np.sort(idx)


class SplitView(Dataset):
    """The rows `indices` of a base dataset, as (RGB PIL image, int label); `.targets` without decoding images.
    `name` (the dataset's) names a row whose image cannot be made RGB."""

    def __init__(self, base: Any, indices: np.ndarray, targets: np.ndarray, name: str = ""):
        self.base, self.indices, self.targets = base, np.asarray(indices), np.asarray(targets)[indices]
        self.name = name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        image, _ = self.base[int(self.indices[i])]
        if not isinstance(image, Image.Image):
            image = Image.open(io.BytesIO(image))
        return to_rgb(image, f"dataset {self.name!r} row {i}"), int(self.targets[i])


def _view(spec: DatasetSpec, split: str, base: Any, targets: np.ndarray) -> SplitView:
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) and (targets.min() < 0 or targets.max() >= spec.n_classes):
        raise ValueError(f"dataset {spec.name!r}: source labels span {targets.min()}..{targets.max()} but the manifest "
                         f"lists {spec.n_classes} class names")
    return SplitView(base, split_indices(targets, spec, split), targets, spec.name)


# ---------------------------------------------------------------------------------------------- torchvision


def _targets_of(ds: Any) -> np.ndarray:
    for attr in ("targets", "labels", "_labels"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr))
    if hasattr(ds, "_samples"):
        return np.asarray([label for _, label in ds._samples])
    raise TypeError(f"cannot read labels of {type(ds).__name__} without decoding images")


def load_torchvision(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """A torchvision dataset (downloaded into <root>/<path> when allowed), cut to the manifest split."""
    import torchvision.datasets as tvd

    src = spec.source
    cls = getattr(tvd, src["dataset"], None)
    if cls is None:
        raise ValueError(f"dataset {spec.name!r}: torchvision has no dataset class {src['dataset']!r}")
    where = Path(root) / src.get("path", spec.name)
    kwargs = dict(src["split_args"][_source_split(spec, split)])
    try:
        base = cls(str(where), **kwargs) if not src.get("download", True) else cls(str(where), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as missing:
        if not src.get("download", True) or not downloads_allowed():
            raise _missing(spec, where, _offline_todo(spec)) from missing
        try:
            base = cls(str(where), download=True, **kwargs)
        except Exception as failed:  # network errors come in many types (URLError, HTTPError, OSError, RuntimeError)
            raise _missing(spec, where, f"The download failed ({type(failed).__name__}: {failed}). "
                           "Check the network, or download the files by hand into that folder.") from failed
    return _view(spec, split, base, _targets_of(base))


# ---------------------------------------------------------------------------------------------- image folders


def load_imagefolder(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """Images in <root>/<path>/<source split>/<class folder>/; class folders in sorted order are labels 0..K-1."""
    from torchvision.datasets import ImageFolder

    where = Path(root) / spec.source["path"] / _source_split(spec, split)
    if not where.is_dir():
        raise _missing(spec, where, spec.source.get("instructions") or
                       "Put one folder per class (sorted names = label order) with the images inside.")
    base = ImageFolder(str(where))
    if len(base.classes) != spec.n_classes:
        raise ValueError(f"dataset {spec.name!r}: {where} has {len(base.classes)} class folders, the manifest "
                         f"lists {spec.n_classes} class names")
    return _view(spec, split, base, base.targets)


# ---------------------------------------------------------------------------------------------- generated


class GeneratedImages(Dataset):
    """Images computed from (seed, split, index): uniform RGB noise, or class-coloured noise ("class-tinted")."""

    def __init__(self, n: int, n_classes: int, image_size: int, pattern: str, seed: int):
        if pattern not in ("uniform-noise", "class-tinted"):
            raise ValueError(f"unknown generated pattern {pattern!r}; valid: 'uniform-noise', 'class-tinted'")
        self.n, self.n_classes, self.image_size, self.pattern, self.seed = n, n_classes, image_size, pattern, seed
        self.targets = np.arange(n) % n_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} generated images")
        rng = np.random.default_rng([self.seed, i])
        pixels = rng.integers(0, 256, size=(self.image_size, self.image_size, 3), dtype=np.uint8)
        label = int(self.targets[i])
        if self.pattern == "class-tinted":
            # A fixed per-class colour mixed into the noise, so that labels are learnable by a probe.
            tint = np.random.default_rng([self.seed, 10**6 + label]).integers(0, 256, size=3)
            pixels = ((pixels.astype(np.uint16) + 3 * tint) // 4).astype(np.uint8)
        return Image.fromarray(pixels, "RGB"), label


def load_generated(spec: DatasetSpec, split: str, root: Path) -> GeneratedImages:
    """Generated images of the manifest split's size; the split's position salts the seed, so splits differ."""
    src = spec.source
    salt = list(spec.splits).index(split)
    return GeneratedImages(n=int(spec.splits[split]["size"]), n_classes=spec.n_classes,
                           image_size=int(src.get("image_size", 224)), pattern=src.get("pattern", "uniform-noise"),
                           seed=spec.seed * 1000 + salt)


# ---------------------------------------------------------------------------------------------- in-memory arrays


class ArrayImages(Dataset):
    """uint8 images (N, H, W) grey or (N, H, W, 3) RGB with int labels, as (PIL image, label)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray):
        if images.dtype != np.uint8 or len(images) != len(targets):
            raise ValueError(f"expected uint8 images and one label each, got {images.dtype} {images.shape} and "
                             f"{len(targets)} labels")
        self.images, self.targets = images, np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[i]), int(self.targets[i])


def to_uint8(images: np.ndarray, max_value: float) -> np.ndarray:
    """Pixel values in [0, max_value] -> uint8 in [0, 255], rounded."""
    if images.min() < 0 or images.max() > max_value:
        raise ValueError(f"pixel values span {images.min()}..{images.max()}, outside [0, {max_value}]")
    return np.round(np.asarray(images, dtype=np.float64) * (255.0 / max_value)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- idx files


@lru_cache(maxsize=4)
def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (MNIST's format; gzip when the name ends in .gz) as an array of its shape."""
    data = read_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes (header {data[:4].hex()}, expected 0000 08 <ndim>)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} values), the file holds {values.size}")
    return values.reshape(shape)


def load_idx(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """idx files from the first listed folder that has them, else torchvision's copy (downloaded when allowed)."""
    src = spec.source
    source_split = _source_split(spec, split)
    images_file, labels_file = src["files"][source_split]
    for folder in map(Path, src.get("dirs", [])):
        if (folder / images_file).exists() and (folder / labels_file).exists():
            base = ArrayImages(read_idx(folder / images_file), read_idx(folder / labels_file))
            return _view(spec, split, base, base.targets)
    import torchvision.datasets as tvd

    cls = getattr(tvd, src["torchvision"])
    where = Path(root) / src.get("path", spec.name)
    todo = src.get("instructions", "")
    try:
        base = cls(str(where), download=False, **src["split_args"][source_split])
    except (RuntimeError, FileNotFoundError, OSError) as missing:
        if not downloads_allowed():
            raise _missing(spec, where, f"{todo} Downloads are switched off (RESIDUAL_OFFLINE or HF_HUB_OFFLINE).") from missing
        try:
            base = cls(str(where), download=True, **src["split_args"][source_split])
        except Exception as failed:  # network errors come in many types (URLError, HTTPError, OSError, RuntimeError)
            raise _missing(spec, where, f"{todo} torchvision's download failed ({type(failed).__name__}: {failed}).") from failed
    arrays = ArrayImages(base.data.numpy(), base.targets.numpy())
    return _view(spec, split, arrays, arrays.targets)


# ---------------------------------------------------------------------------------------------- bundled arrays


def load_sklearn(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """An image set bundled with scikit-learn (e.g. load_digits: 8x8, values 0..16), cut to the manifest split."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, spec.source["loader"])()
    base = ArrayImages(to_uint8(bunch.images, spec.source["max_value"]), bunch.target)
    return _view(spec, split, base, base.targets)


def load_skimage(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """An image array bundled with scikit-image (uint8, or floats in [0, 1]); labels by runs: the first `label_runs[0]`
    images are class 0, the next `label_runs[1]` class 1, and so on (lfw_subset: 100 faces, then 100 non-faces)."""
    try:
        import skimage.data
    except ImportError as missing:
        raise _missing(spec, Path("(site-packages)"), "Install scikit-image (pip install scikit-image).") from missing
    images = getattr(skimage.data, spec.source["array"])()
    runs = spec.source["label_runs"]
    if sum(runs) != len(images) or len(runs) != spec.n_classes:
        raise ValueError(f"dataset {spec.name!r}: label_runs {runs} must cover the {len(images)} images with one run "
                         f"per class ({spec.n_classes})")
    pixels = images if images.dtype == np.uint8 else to_uint8(images, 1.0)
    base = ArrayImages(pixels, np.repeat(np.arange(len(runs)), runs))
    return _view(spec, split, base, base.targets)
