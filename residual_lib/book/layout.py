"""Where the book's pages, parameter files and executed notebooks live, and how a page's parameters are merged.

`book/_toc.yml` is the single list of pages: every entry under `notebooks/` is a notebook whose Jupytext source is
`notebooks/<name>.py`. Parameters come from `notebooks/params/<profile>/_defaults.yaml` (keys a notebook does not
declare are skipped) overlaid by `notebooks/params/<profile>/<name>.yaml` (keys must be declared), overlaid by
overrides. This module only reads files, so the experiments that list the pages (the front page, the Protocol
page) may import it; the runner (`residual_lib.book.runner`) checks the merged values against each page's
experiment before executing it.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from residual_lib.paths import REPO_ROOT

PROFILES = ("toy", "smoke", "paper", "real")
DEFAULTS_FILE = "_defaults.yaml"


class BookError(RuntimeError):
    """A notebook, parameter file, toc entry or site build is wrong; the message says which and how."""


@dataclass(frozen=True)
class Layout:
    """Where a project's book, notebook sources, parameter files and executed notebooks live."""

    root: Path = REPO_ROOT

    @property
    def book_dir(self) -> Path:
        return self.root / "book"

    @property
    def toc(self) -> Path:
        return self.book_dir / "_toc.yml"

    @property
    def params_dir(self) -> Path:
        return self.root / "notebooks" / "params"

    @property
    def report(self) -> Path:
        return self.book_dir / "_generated" / "build_report.csv"

    @property
    def build_log(self) -> Path:
        return self.book_dir / "_build" / "build.log"

    def source(self, name: str) -> Path:
        return self.root / "notebooks" / f"{name}.py"

    def run_log(self, name: str) -> Path:
        return self.book_dir / "_generated" / "logs" / f"{name}.log"

    def executed(self, name: str) -> Path:
        return self.book_dir / "notebooks" / f"{name}.ipynb"


def toc_files(toc: Path) -> list[str]:
    """Every page named by a Jupyter Book toc, in reading order (root first)."""
    if not toc.is_file():
        raise BookError(f"table of contents {toc} does not exist")
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    found.append(str(node[key]))
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc.read_text()))
    return found


def toc_notebooks(layout: Layout) -> list[str]:
    """Names of the notebooks the toc lists (entries `notebooks/<name>`), checking each has a source."""
    names = [entry.split("/", 1)[1] for entry in toc_files(layout.toc) if entry.startswith("notebooks/")]
    missing = [str(layout.source(n)) for n in names if not layout.source(n).is_file()]
    if missing:
        raise BookError(f"{layout.toc} lists notebooks without a Jupytext source: {', '.join(missing)}")
    return names


def select(names: list[str], only: list[str] | None) -> list[str]:
    """The notebooks to run: all of `names`, or those in `only` (each must be a toc notebook)."""
    if not only:
        return names
    unknown = [n for n in only if n not in names]
    if unknown:
        raise BookError(f"unknown notebook(s) {', '.join(unknown)}; the toc lists: {', '.join(names) or 'none'}")
    return [n for n in names if n in only]


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise BookError(f"{path} must hold a mapping of parameter names to values, not {type(data).__name__}")
    return data


def parameter_files(params_dir: Path, profile: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile defaults, the notebook's own parameters) read from `<params_dir>/<profile>/`."""
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    folder = params_dir / profile
    own = folder / f"{name}.yaml"
    if not own.is_file():
        raise BookError(f"no parameter file {own} for notebook {name!r} in profile {profile!r}")
    defaults = folder / DEFAULTS_FILE
    return (_read_yaml(defaults) if defaults.is_file() else {}), _read_yaml(own)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings to a dict; values are parsed as YAML (`n=100` is an int, `ds=[a,b]` a list)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise BookError(f"override {item!r} is not of the form key=value (key a Python identifier)")
        if not value.strip():  # YAML reads an empty value as null, which would silently mean "all images"
            raise BookError(f"override {item!r} has no value; write {key.strip()}=null for None, or a value")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (worker and job counts, batch sizes), refused before any work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def merge_parameters(name: str, declared: list[str], defaults: dict[str, Any], own: dict[str, Any],
                     overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults (declared keys only) < the notebook's file < overrides (declared keys only)."""
    unknown = sorted(set(own) - set(declared))
    if unknown:
        raise BookError(f"parameter file of {name!r} sets {', '.join(unknown)}, which the notebook's "
                        f"parameters cell does not declare; declared: {', '.join(declared) or 'none'}")
    merged = {k: v for k, v in defaults.items() if k in declared}
    merged.update(own)
    merged.update({k: v for k, v in overrides.items() if k in declared})
    return merged


def declared_parameters(source: str) -> list[str]:
    """Names assigned at top level in a parameters cell's source."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def literal_parameters(source: str) -> dict[str, Any]:
    """The parameters a parameters cell assigns a literal value (the page's defaults); others are left out."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            values.update({t.id: value for t in targets if isinstance(t, ast.Name)})
    return values


def parameters_cell(nb, name: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return i
    raise BookError(f"notebook {name!r} has no cell tagged 'parameters' (add `# %% tags=[\"parameters\"]`)")


def load_notebook(layout: Layout, name: str):
    """The Jupytext source of `name` as a notebook, with its declared parameter names."""
    import jupytext

    nb = jupytext.read(layout.source(name))
    declared = declared_parameters(nb.cells[parameters_cell(nb, name)].source)
    return nb, declared


def page_parameters(layout: Layout, name: str, profile: str, overrides: dict[str, Any]):
    """(source notebook, declared names, merged parameters) of page `name` in `profile`, not yet checked against
    the page's experiment (`residual_lib.book.runner.notebook_parameters` checks them)."""
    nb, declared = load_notebook(layout, name)
    defaults, own = parameter_files(layout.params_dir, profile, name)
    return nb, declared, merge_parameters(name, declared, defaults, own, overrides)
