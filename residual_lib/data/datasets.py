"""Datasets declared in `data_manifests/datasets/<name>.yaml`, resolved by one factory.

A manifest has: name, title, role (reference | task | ood | standin), source ({kind: ..., and the
kind's own fields}), splits ({split: {size: int}}), class_names, templates (prompt templates with
one `{}`), seed, licence, notes; `DatasetManifest` declares their types and choices, and a manifest that does
not fit is named (file and field) when that dataset is asked for, never breaking the others.
`source.kind` picks the loader; loaders live beside the data they
know (`residual_lib.toy.data` for the toy world, `residual_lib.data.sources` for real datasets) and are
imported only when used.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..paths import MANIFESTS, artifacts_dir
from .manifests import Manifest, ManifestError, read_manifests, valid

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


class Carve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(gt=0, lt=1)
    keep: Literal["part", "rest"]
    by: Literal["sklearn", "datasets"] = "sklearn"


class Split(BaseModel):
    """One manifest split: its size, the source split it is cut from, and the cuts (see `residual_lib.data.sources`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size: int = Field(ge=0, strict=True)
    from_: str | None = Field(default=None, alias="from")
    carve: list[Carve] = []
    subset: int | None = Field(default=None, gt=0, strict=True)


class Source(BaseModel):
    """Where the images come from: `kind` picks the loader; the kind's own fields are kept as given."""

    model_config = ConfigDict(extra="allow")

    kind: Literal[tuple(SOURCE_LOADERS)]


class DatasetManifest(Manifest):
    title: str = ""
    role: Literal["reference", "task", "ood", "standin"]
    source: Source
    splits: dict[str, Split] = Field(min_length=1)
    class_names: list[str] = Field(min_length=1)
    templates: list[str] = Field(min_length=1)
    seed: int = Field(default=0, strict=True)

    @field_validator("templates")
    @classmethod
    def _one_slot(cls, templates: list[str]) -> list[str]:
        bad = [t for t in templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"each template needs exactly one {{}} for the class name: {bad!r}")
        return templates


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

    def images_digest(self) -> str:
        """sha256 of the manifest fields that decide the images and labels: source, every split's definition (the toy
        world draws train and val from one pool, so one split's size moves another's images), seed and class names
        (some loaders count or match them). Text no loader reads (title, notes, licence, templates, role, extra
        fields) is left out, so editing it keeps the unit caches."""
        decided = {"source": self.source, "splits": self.splits, "seed": self.seed, "class_names": list(self.class_names)}
        return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()


@cache
def _manifests() -> dict[str, DatasetManifest | ManifestError]:
    return read_manifests(MANIFESTS / "datasets", DatasetManifest)


def _spec(m: DatasetManifest) -> DatasetSpec:
    return DatasetSpec(
        name=m.name, title=m.title or m.name, role=m.role, source=m.source.model_dump(),
        splits={k: v.model_dump(by_alias=True, exclude_unset=True) for k, v in m.splits.items()},
        class_names=tuple(m.class_names), templates=tuple(m.templates), seed=m.seed, licence=m.licence,
        notes=m.notes, extra=m.extras)


@cache
def _specs() -> dict[str, DatasetSpec]:
    """The readable dataset manifests; a warning names each unreadable one."""
    return {name: _spec(m) for name, m in valid(_manifests(), "dataset manifest").items()}


def list_datasets(role: str | None = None) -> list[str]:
    """Names of the declared datasets, optionally only those of one role."""
    return [n for n, s in _specs().items() if role is None or s.role == role]


def dataset_spec(name: str) -> DatasetSpec:
    """The manifest of `name`; KeyError naming the valid datasets otherwise."""
    found = _manifests().get(name)
    if isinstance(found, ManifestError):
        raise found
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
