"""What a book page does with an experiment's `Result`: glue its findings, show its tables cleanly."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report.tables import name_any_model, show, show_present

# What a notebook calls as `page.<name>`; the table helpers live with the other shared views in `report`.
__all__ = ["glue_findings", "show", "name_any_model", "params", "claims", "glue_atlas", "show_present"]


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, so glue renders them like any number."""
    return value.item() if isinstance(value, np.generic) else value


def glue_findings(findings: dict[str, Any]) -> None:
    """`myst_nb.glue` every finding under its own name (display=False), for `{glue:text}` in the prose."""
    from myst_nb import glue

    for name, value in findings.items():
        glue(name, _plain(value), display=False)


def params(cls, namespace: dict[str, Any]):
    """An experiment's `Params` from a notebook's namespace (the parameters cell, after papermill's injection)."""
    return cls.from_dict({name: namespace[name] for name in cls.names() if name in namespace})


def claims(module, result) -> None:
    """File the page's claim tables for the front page's ledger, and show this page's verdicts as badges."""
    from .. import claims as ledger
    from ..experiments import PAGES

    notebook = next(name for name, mod in PAGES.items() if module.__name__.endswith(f".{mod}"))
    tables = module.claim_tables(result)
    ledger.record(notebook, tables)
    verdicts = ledger.page_verdicts(notebook, tables)
    ledger.show_verdicts(name_any_model(verdicts))


def glue_atlas(model: str, /, **units: str | None) -> None:
    """Glue `<name>_atlas` as a markdown link to each unit's card in the head atlas (None: the model's whole
    atlas), for `{glue:md}` in the prose."""
    from IPython.display import Markdown
    from myst_nb import glue

    from ..report.atlas import page_href

    for name, unit in units.items():
        # Raw html, not a markdown link: Sphinx would take the static page for a download and copy it.
        glue(f"{name}_atlas", Markdown(f'<a href="{page_href(model, unit)}">{unit or "head atlas"}</a>'),
             display=False)
