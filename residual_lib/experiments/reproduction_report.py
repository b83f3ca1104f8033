"""The reproduction report: every number of the paper beside this build's, with a verdict against a tolerance."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..report import results
from ..store.cache import CacheKey
from .base import Params as BaseParams
from .base import Result, positive

SUMMARY = True  # reads the results the other pages saved, so it runs after them


@dataclass(frozen=True)
class Params(BaseParams):
    results_run: str = "toy"  # which build's saved results to compare: "paper" after `make reproduce`, else toy/smoke
    show_rows: int = 15  # rows shown per reference, largest differences first (the full tables are saved as CSV)

    def check(self) -> None:
        positive(self, "show_rows")


def caches(p: Params) -> list[CacheKey]:
    """None: the report reads saved results only."""
    return []


def tolerances() -> pd.DataFrame:
    """The stated tolerance of every compared quantity, with its reason."""
    return pd.DataFrame([{"reference": name, "quantity": q, "tolerance": "exact text" if tol is None else
                          (f"±{tol.absolute:g}" if tol.absolute else f"±{tol.relative:.0%} of the paper's value"),
                          "why": "same description / same rank" if tol is None else tol.why}
                         for name, quantities in results.TOLERANCES.items() for q, tol in quantities.items()])


def run(p: Params) -> Result:
    """Join each reference with the run's saved results; the summary and per-reference comparisons."""
    comparisons = results.comparisons(p.results_run)
    summary = results.summary(comparisons)
    built = results.run_summary(p.results_run)
    status = built.text()
    largest = {}
    for name, comp in comparisons.items():
        comp = comp[comp["verdict"] != "not run"]  # only what this build can set beside the paper's
        if comp.empty:
            continue
        order = pd.to_numeric(comp["diff"], errors="coerce").abs().fillna(-1)
        largest[name] = comp.assign(_order=order).sort_values("_order", ascending=False).drop(
            columns="_order").head(p.show_rows)
    return Result(p, tables={"summary": summary, "tolerances": tolerances(), **{f"largest:{k}": v
                                                                                 for k, v in largest.items()}},
                  findings={"n_paper": built.paper_numbers, "n_produced": built.produced, "n_ours": built.compared,
                            "n_match": built.matched, "results_run": p.results_run, "status": status},
                  artifacts={"comparisons": {k: v for k, v in comparisons.items() if k in largest}})


def plot(result: Result):
    """Our value against the paper's for every compared quantity, tolerance band shaded."""
    return results.plot_agreement(result.artifacts["comparisons"])


def show_largest(result: Result) -> None:
    """Per reference, a heading and its rows with the largest differences."""
    from IPython.display import Markdown, display

    from ..report.tables import show

    for key, table in result.tables.items():
        if key.startswith("largest:"):
            display(Markdown(f"### {key.removeprefix('largest:')}"))
            show(table)
