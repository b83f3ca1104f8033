"""Datasets declared in `data_manifests/datasets/<name>.yaml`, resolved by one factory.

A manifest has: name, title, role (reference | task | ood), source ({kind: ..., and the
kind's own fields}), splits ({split: {size: int}}), class_names, templates (prompt templates with
one `{}`), seed, licence, notes. `source.kind` picks the loader; loaders live beside the data they
know (`residual_lib.toy.data` for the toy world, `residual_lib.data.sources` for real datasets) and are
imported only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..paths import MANIFESTS, artifacts_dir

# source.kind -> "module:function"; the function is (spec, split, root) -> torch Dataset of (image, label).
SOURCE_LOADERS = {
    "toy": "residual_lib.toy.data:load_split",
    "torchvision": "residual_lib.data.sources:load_torchvision",
    "hf-datasets": "residual_lib.data.hf_datasets:load_split",
    "imagefolder": "residual_lib.data.sources:load_imagefolder",
    "generated": "residual_lib.data.sources:load_generated",
    "class-blobs": "residual_lib.data.random_blobs:load_split",
    "idx": "residual_lib.data.sources:load_idx",
    "sklearn": "residual_lib.data.sources:load_sklearn",
    "skimage": "residual_lib.data.sources:load_skimage",
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    role: str
    source: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    seed: int = 0
    licence: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


_FIELDS = {"name", "title", "role", "source", "splits", "class_names", "templates", "seed", "licence", "notes"}


@cache
def _specs() -> dict[str, DatasetSpec]:
    specs = {}
    for path in sorted((MANIFESTS / "datasets").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        missing = {"name", "role", "source", "splits", "class_names", "templates"} - raw.keys()
        if missing:
            raise ValueError(f"dataset manifest {path} lacks {sorted(missing)}")
        if raw["source"].get("kind") not in SOURCE_LOADERS:
            raise ValueError(f"dataset manifest {path}: source.kind {raw['source'].get('kind')!r} is not one of {sorted(SOURCE_LOADERS)}")
        specs[raw["name"]] = DatasetSpec(
            name=raw["name"], title=raw.get("title", raw["name"]), role=raw["role"], source=raw["source"],
            splits=raw["splits"], class_names=tuple(raw["class_names"]), templates=tuple(raw["templates"]),
            seed=raw.get("seed", 0), licence=raw.get("licence", ""), notes=raw.get("notes", ""),
            extra={k: v for k, v in raw.items() if k not in _FIELDS},
        )
    return specs


def list_datasets(role: str | None = None) -> list[str]:
    """Names of the declared datasets, optionally only those of one role."""
    return [n for n, s in _specs().items() if role is None or s.role == role]


def dataset_spec(name: str) -> DatasetSpec:
    """The manifest of `name`; KeyError naming the valid datasets otherwise."""
    specs = _specs()
    if name not in specs:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(sorted(specs))}")
    return specs[name]


def load_dataset(name: str, split: str = "train", root: str | Path | None = None):
    """A torch Dataset of (image, label) for one split; `.spec` holds the manifest."""
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise KeyError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(spec.splits)}")
    module, func = SOURCE_LOADERS[spec.source["kind"]].split(":")
    loader = getattr(importlib.import_module(module), func)
    dataset = loader(spec, split, Path(root) if root else artifacts_dir() / "data")
    dataset.spec = spec
    return dataset
