"""Hugging Face dataset repositories read with the `datasets` library at a pinned revision, as the authors' code reads
them (``load_dataset(repo, config)`` in their ``src/residual/data/dataset.py``), so that the same carving call
(`residual_lib.data.splits`) picks the same rows.

A manifest source of ``kind: hf-datasets`` has

- ``repo``, ``config`` (optional), ``revision``: a commit id of the repository, or ``refs/convert/parquet`` for a
  repository that only has a loading script (`datasets` 4 and later no longer run scripts; the Hub's parquet
  conversion of the script's output is read instead, in the order the script yielded its rows);
- ``image_column``, ``label_column``, ``split_sizes`` (rows of each source split, checked on load);
- ``label_names`` (optional): the source's label spellings in the manifest's class order, for string labels;
  ``label_encoding: first_appearance`` numbers string labels in their order of first appearance before carving,
  as the authors' EuroSAT does (the stratified carve draws classes in label order, so the numbering moves rows);
- ``image_files`` (optional, ``{column, folder, instructions}``): the column holds file paths, not pixels; the
  images are the user's copy under ``<data root>/<folder>``, found by file name.

Rows keep the repository's order; a split carved only by ``by: datasets`` steps keeps the order `datasets` returns.
Where a parquet conversion can move an index against the authors' run of the script: the conversion holds the rows
in the order the script yielded them on the Hub's machine, which equals the authors' order only if the script's order
does not depend on the machine (a script that lists a folder yields the file system's order); the Hub converts at
most a few GB, so a large dataset may be cut short (the row count check stops that); and the conversion branch is
rebuilt whenever the repository changes, so it names no fixed commit.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .datasets import DatasetSpec
from .sources import MissingDataError, SplitView, describe_source, downloads_allowed, split_indices

PARQUET_CONVERSION = "refs/convert/parquet"


def _source_split(spec: DatasetSpec, split: str) -> str:
    return spec.splits[split].get("from", split)


@contextlib.contextmanager
def _offline_unless_allowed() -> Iterator[None]:
    """Hub access off for the call when the user switched downloads off (`datasets` then reads its cache only)."""
    import datasets.config
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    offline = not downloads_allowed()
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = saved[0] or offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def read_split(spec: DatasetSpec, source_split: str, root: Path):
    """One source split of the repository as a `datasets.Dataset` (downloaded into <root>/hf-datasets once)."""
    import datasets

    src = spec.source
    cache = Path(root) / "hf-datasets"
    try:
        with _offline_unless_allowed():
            table = datasets.load_dataset(src["repo"], src.get("config"), revision=src["revision"],
                                          split=source_split, cache_dir=str(cache))
    except Exception as failed:  # the Hub, the cache and `datasets` raise many unrelated types
        todo = ("Downloads are switched off (RESIDUAL_OFFLINE or HF_HUB_OFFLINE is set): run once with network "
                "access to download it." if not downloads_allowed() else "The download failed: check the network "
                f"and that https://huggingface.co/datasets/{src['repo']} still has revision {src['revision']}.")
        raise MissingDataError(f"dataset {spec.name!r} ({spec.title}) is not available: source {describe_source(spec)}, "
                               f"split {source_split!r}, cache {cache}. {todo} ({type(failed).__name__}: {failed})"
                               ) from failed
    expected = src.get("split_sizes", {}).get(source_split)
    if expected is not None and len(table) != expected:
        raise ValueError(f"dataset {spec.name!r}: {describe_source(spec)} split {source_split!r} has {len(table)} rows, the "
                         f"manifest expects {expected}; a partial parquet conversion or another revision changes "
                         f"which rows the carve picks, so the manifest must be checked")
    return table


def label_codes(spec: DatasetSpec, column: list | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(carve labels, targets): the labels the authors' carve stratifies on, and the manifest's class indices."""
    src = spec.source
    values = list(column)
    if not values or not isinstance(values[0], str):
        codes = np.asarray(values, dtype=np.int64)
        if len(codes) and (codes.min() < 0 or codes.max() >= spec.n_classes):
            raise ValueError(f"dataset {spec.name!r}: source labels span {codes.min()}..{codes.max()} but the "
                             f"manifest lists {spec.n_classes} class names")
        return codes, codes
    names = list(src.get("label_names") or [])
    if len(names) != spec.n_classes:
        raise ValueError(f"dataset {spec.name!r}: string labels need source.label_names, one per class name "
                         f"({spec.n_classes}); got {len(names)}")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"dataset {spec.name!r}: labels {unknown[:5]} are not in source.label_names {names}")
    position = {name: i for i, name in enumerate(names)}
    targets = np.asarray([position[v] for v in values], dtype=np.int64)
    encoding = src.get("label_encoding", "manifest")
    if encoding == "manifest":
        return targets, targets
    if encoding != "first_appearance":
        raise ValueError(f"dataset {spec.name!r}: label_encoding {encoding!r} is not 'manifest' or 'first_appearance'")
    order = {name: i for i, name in enumerate(dict.fromkeys(values))}
    return np.asarray([order[v] for v in values], dtype=np.int64), targets


def check_names(spec: DatasetSpec, table) -> None:
    """Error if the source declares another number of classes; warning if its names differ from ours in order."""
    feature = table.features.get(spec.source.get("label_column", "label"))
    theirs = getattr(feature, "names", None)
    if theirs is None:
        return
    if len(theirs) != spec.n_classes:
        raise ValueError(f"dataset {spec.name!r}: {spec.source['repo']} declares {len(theirs)} labels, the manifest "
                         f"lists {spec.n_classes} class names; fix the manifest")

    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(spec.class_names, theirs)) if norm(a) != norm(b)]
    if differ:
        # Wording often differs (e.g. 'AnnualCrop' vs 'annual crop land'); the order is what must agree.
        warnings.warn(f"dataset {spec.name!r}: {len(differ)} of the source's label names differ from the manifest's, "
                      f"first {differ[:3]} (index, ours, theirs); check that the label order agrees", stacklevel=2)


@lru_cache(maxsize=4)
def _files_by_name(folder: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            found.setdefault(name, os.path.join(dirpath, name))
    return found


class RepositoryImages(Dataset):
    """Rows of a `datasets.Dataset` as (PIL image, target): pixels from the image column, or from the user's
    files named by a path column."""

    def __init__(self, spec: DatasetSpec, table, targets: np.ndarray, root: Path):
        src = spec.source
        files = src.get("image_files")
        self.column = files["column"] if files else src.get("image_column", "image")
        self.images = table.select_columns([self.column])
        self.targets = np.asarray(targets, dtype=np.int64)
        self.folder = None
        if files:
            self.folder = Path(root) / files["folder"]
            if not self.folder.is_dir():
                raise MissingDataError(f"dataset {spec.name!r} ({spec.title}): {describe_source(spec)} names its images by "
                                       f"file path; put them under {self.folder}. {files.get('instructions', '')}")

    def __len__(self) -> int:
        return len(self.targets)

    def _image(self, cell: Any) -> Image.Image:
        if self.folder is not None:
            name = Path(str(cell).replace("\\", "/")).name
            path = _files_by_name(str(self.folder)).get(name)
            if path is None:
                raise MissingDataError(f"image {cell!r} (file {name!r}) is not under {self.folder}")
            return Image.open(path)
        if isinstance(cell, dict):
            cell = cell.get("bytes") or cell.get("path")
        return cell if isinstance(cell, Image.Image) else Image.open(io.BytesIO(cell) if isinstance(cell, bytes) else cell)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self._image(self.images[int(i)][self.column]), int(self.targets[i])  # SplitView makes it RGB


def load_split(spec: DatasetSpec, split: str, root: Path) -> SplitView:
    """A manifest split of a Hugging Face repository: rows carved as the manifest says, in `datasets`' order."""
    table = read_split(spec, _source_split(spec, split), root)
    check_names(spec, table)
    column = spec.source.get("label_column", "label")
    carve_labels, targets = label_codes(spec, table.select_columns([column]).to_dict()[column])
    return SplitView(RepositoryImages(spec, table, targets, root), split_indices(carve_labels, spec, split), targets,
                     spec.name)
