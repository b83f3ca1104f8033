"""Manifests under `data_manifests/`: the fields all of them share and the one reader that checks a folder of them
against its pydantic schema (datasets: `residual_lib.data.datasets.DatasetManifest`, models:
`residual_lib.models.registry.ModelManifest`, each beside the loaders whose choices it lists).

A manifest that cannot be read (invalid YAML, a missing or mistyped field, a value outside its choices) never
stops the others from loading: `read_manifests` keeps its error, a `ManifestError` naming the file and the
field, and raises it when that manifest is asked for; listing warns with it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ManifestError(ValueError):
    """A manifest file is not valid YAML or does not fit its schema; the message names the file and the field."""


class Manifest(BaseModel):
    """Fields every manifest has; unknown top-level keys are kept (a family's or a source's own settings)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    notes: str = ""
    licence: str = ""

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


M = TypeVar("M", bound=Manifest)


def _where(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def problems(err: ValidationError) -> str:
    """Each field a schema refused, with the value it got: 'field family: Input should be ... (got 'keras')'."""
    return "; ".join(f"field {_where(e)}: {e['msg']} (got {e['input']!r})" if e["type"] != "missing"
                     else f"field {_where(e)}: missing" for e in err.errors())


def parse_manifest(path: Path, schema: type[M]) -> M:
    """The manifest at `path` checked against `schema`; ManifestError naming the file, field and value otherwise."""
    try:
        with path.open() as f:  # a stream, so that the parser's message gives the file's name and line
            raw = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ManifestError(f"manifest {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest {path} must be a mapping of fields, not {type(raw).__name__}")
    try:
        manifest = schema.model_validate(raw)
    except ValidationError as err:
        raise ManifestError(f"manifest {path}: {problems(err)}; the fields and their choices: "
                            f"{schema.__module__}.{schema.__name__}") from err
    if manifest.name != path.stem:
        raise ManifestError(f"manifest {path}: field name: {manifest.name!r} must match the file name {path.stem!r}")
    return manifest


def read_manifests(folder: Path, schema: type[M]) -> dict[str, M | ManifestError]:
    """Every `*.yaml` in `folder` by file name: the checked manifest, or the error that names what is wrong."""
    found: dict[str, M | ManifestError] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            found[path.stem] = parse_manifest(path, schema)
        except ManifestError as err:
            found[path.stem] = err
    return found


def valid(found: dict[str, M | ManifestError], what: str) -> dict[str, M]:
    """The readable manifests of `found`; a warning names each one that is not."""
    for err in found.values():
        if isinstance(err, ManifestError):
            warnings.warn(f"{what} skipped: {err}", stacklevel=3)
    return {name: m for name, m in found.items() if not isinstance(m, ManifestError)}
