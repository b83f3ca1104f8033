"""Verdicts on a page: coloured badges in an html table, or markdown bullets."""

from __future__ import annotations

import html
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .checks import STATUSES
from .ledger import SOURCE_TITLES

# --- Rendering ----------------------------------------------------------------------------------------------

BADGE_COLOURS = {"holds": "#2e7d32", "does not hold": "#c62828", "inconclusive": "#ef6c00", "not testable": "#757575"}


def format_numbers(numbers: Mapping[str, Any]) -> str:
    """The deciding numbers as text: 'RD 0.983, Lin 0.981, ...' (3 decimals, integers with separators)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool) or isinstance(v, str):
            return str(v)
        if isinstance(v, (int, np.integer)):
            return f"{v:,}"
        if not isinstance(v, (float, np.floating)):
            return str(v)
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.1e}"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    return ", ".join(f"{k.strip()} {fmt(v)}" for k, v in numbers.items())


def _evidence(row: pd.Series) -> str:
    """The deciding numbers (with their intervals or p-values) and the caveat, or why the claim is not testable."""
    if row["status"] == "not testable":
        return row["reason"]
    caveat = row.get("caveat", "")
    return format_numbers(row["numbers"]) + (f". Caveat: {caveat}" if caveat else "")


def badge(status: str) -> str:
    """A coloured html badge for a verdict status."""
    if status not in BADGE_COLOURS:
        raise ValueError(f"verdict status {status!r}; valid: {', '.join(STATUSES)}")
    return (f'<span style="background:{BADGE_COLOURS[status]};color:white;border-radius:3px;padding:1px 6px;'
            f'white-space:nowrap">{status}</span>')


def verdicts_html(verdicts: pd.DataFrame, links: bool = False, link_prefix: str = "") -> str:
    """An html table of ledger rows: badge, claim, model, criterion and the numbers (or why not testable).

    links: add a column linking each row to the page that computed it (the front page); link_prefix is prepended
    to each row's `link` (e.g. "../" from a page inside a folder).
    """
    multi_model = verdicts["model"].nunique() > 1
    head = ["verdict", "section", "claim"] + (["model"] if multi_model else []) + ["criterion", "this build"] \
        + (["page"] if links else [])
    body = []
    for _, r in verdicts.iterrows():
        cells = [badge(r["status"]), html.escape(r["section"]), html.escape(r["statement"])]
        if multi_model:
            cells.append(html.escape(r["model"]))
        cells += [html.escape(r["criterion"]), html.escape(_evidence(r))]
        if links:
            title = SOURCE_TITLES[r.get("source") or r["page"]]
            cells.append(f'<a href="{html.escape(link_prefix + r["link"])}">{html.escape(title)}</a>')
        body.append("<tr>" + "".join(f'<td style="text-align:left">{c}</td>' for c in cells) + "</tr>")
    header = "".join(f'<th style="text-align:left">{h}</th>' for h in head)
    return f'<table class="claim-ledger"><thead><tr>{header}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    """Ledger rows as markdown bullets: '**holds** (model) - claim - criterion: numbers'."""
    lines = []
    for _, r in verdicts.iterrows():
        who = f" ({r['model']})" if r["model"] else ""
        lines.append(f"- **{r['status']}**{who}: {r['statement']} Criterion: {r['criterion']}. "
                     f"This build: {_evidence(r)}.")
    return "\n".join(lines)


def show_verdicts(verdicts: pd.DataFrame, links: bool = False, link_prefix: str = "") -> None:
    """Display `verdicts_html` in a notebook."""
    from IPython.display import HTML, display

    display(HTML(verdicts_html(verdicts, links=links, link_prefix=link_prefix)))


def counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """How many verdicts of each status (every status present, zero if none)."""
    found = verdicts["status"].value_counts()
    return {s: int(found.get(s, 0)) for s in STATUSES}
