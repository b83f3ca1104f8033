"""What the experiment modules' tests share: a page's smoke-profile parameters (the smoke model's artifacts folder is
tests/conftest.py's `smoke_artifacts`)."""

from __future__ import annotations

from pathlib import Path

from residual_lib.book import layout as book_layout, runner as book
from residual_lib.experiments import experiment
from residual_lib.paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def notebook_parameters(notebook: str, profile: str, overrides: dict | None = None) -> dict:
    """A page's parameters as the book runner merges them for a profile (only the keys the files set)."""
    return book.notebook_parameters(book_layout.Layout(REPO_ROOT), notebook, profile, dict(overrides or {}))[2]


def declared_defaults(source: Path) -> dict:
    """The literal values of a Jupytext page's parameters cell."""
    import ast

    import jupytext

    nb = jupytext.read(source)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign) for t in node.targets}


def smoke_params(notebook: str):
    """The page's experiment `Params` as the book runner merges them for the smoke profile."""
    return experiment(notebook).Params.from_dict(notebook_parameters(notebook, "smoke"))


def cell_defaults(notebook: str) -> dict:
    """The literal values of the notebook's parameters cell."""
    return declared_defaults(NOTEBOOKS_DIR / f"{notebook}.py")


def planner_jobs_agree(notebook: str, profile: str, overrides: dict | None = None) -> bool:
    """Whether the experiment's `caches` under a profile's merged parameters are all among the planner's jobs."""
    from residual_lib.reproduce.plan import plan

    values = notebook_parameters(notebook, profile, overrides)
    module = experiment(notebook)
    ours = module.caches(module.Params.from_dict({k: v for k, v in values.items() if k in module.Params.names()}))
    return bool(ours) and set(ours) <= set(plan(profile, overrides))
