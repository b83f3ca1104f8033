"""One module per paper figure or table: `Params`, `caches(params)`, `run(params) -> Result`, plots.

    from residual_lib.experiments import fig05_tab02
    result = fig05_tab02.run(fig05_tab02.Params(models=["toy-clip"], datasets=["toy-shape"]))
    result.tables["table2"]

`PAGES` ties each book notebook to its experiment; the book runner validates a notebook's merged
parameters with its experiment's `Params` before the kernel starts, and the planner asks `caches`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

from .base import Params, ParamsError, Result

# notebook (notebooks/<name>.py) -> experiment module (residual_lib/experiments/<module>.py)
PAGES: dict[str, str] = {
    "fig02_intrinsic_dimension": "fig02",
    "fig03_textspan_vs_omp": "fig03",
    "fig04_spectral_dataset_similarity": "fig04",
    "real_model": "real_model",
    "tab01_coarse_unit_alignment": "tab01",
    "fig05_tab02_residual_alignment": "fig05_tab02",
    "appA2_textspan_equals_somp": "appA2",
    "toy_world": "toy_world",
    "reproduction_report": "reproduction_report",
    "index": "front",
    "atlas": "atlas",
    "protocol": "protocol",
}


def experiment(notebook: str) -> ModuleType | None:
    """The experiment module of a book notebook, or None for pages without one."""
    module = PAGES.get(notebook)
    return importlib.import_module(f"{__name__}.{module}") if module else None


def page_params(notebook: str, values: Mapping[str, Any]) -> Params | None:
    """A notebook's merged parameters as its experiment's validated `Params` (None without an experiment).

    `device` is a page-wide setting that every experiment accepts.
    """
    module = experiment(notebook)
    return None if module is None else module.Params.from_dict(values)


__all__ = ["PAGES", "Params", "ParamsError", "Result", "experiment", "page_params"]
