"""The claims once, as data (statement, section, page, check), and the ledger of a build's verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from ..files import folder_lock, write_text
from ..paths import artifacts_dir
from ..report.results import current_notebook, current_run
from .checks import (Verdict, agreement_varies, dataset_order_consistent, descriptions_name_what_heads_encode,
                     early_heads_near_linear, evr1_falls, heads_carry_alignment, heads_low_dimensional,
                     heads_specialise, lin_near_full, linear_id_rises, nonlinearity_rises, optimized_weights_best,
                     random_activates_unspecific_heads, rdstar_near_rd, rdy_behind_rd, residual_improves_base,
                     residual_near_full_with_few_params, residual_near_lin, selected_heads_near_base,
                     similarity_falls_with_depth, textspan_equals_somp, textspan_omp_agree, twonn_hunchback,
                     untestable)

PAGE_TITLES = {"fig02_intrinsic_dimension": "Figure 2", "fig03_textspan_vs_omp": "Figure 3",
               "fig04_spectral_dataset_similarity": "Figure 4", "tab01_coarse_unit_alignment": "Table 1",
               "fig05_tab02_residual_alignment": "Figure 5, Table 2", "appA2_textspan_equals_somp": "Appendix A.2"}
PAGES = tuple(PAGE_TITLES)  # the notebooks whose claims the ledger tests, in the book's order
# Notebooks that file tables under another page's claims (`record(..., source=)`), and the pages they file under.
FILERS = {"real_model": ("Real pretrained ViT", ("fig02_intrinsic_dimension", "fig04_spectral_dataset_similarity"))}
SOURCE_TITLES = PAGE_TITLES | {name: title for name, (title, _) in FILERS.items()}
SOURCES = tuple(SOURCE_TITLES)  # every notebook that can file verdicts
SOURCE = "source"  # the column `record` adds to each filed row: the notebook that computed it
TABLES: dict[str, dict[str, list[str]]] = {
    "fig02_intrinsic_dimension": {"layers": ["model", "layer", "linear_id", "twonn_id", "ratio", "evr1"]},
    "fig03_textspan_vs_omp": {"agreement": ["unit", "pc", "z"],
                              "probe": ["unit", "agree", "named_skill", "unnamed_skill"]},
    "fig04_spectral_dataset_similarity": {"similarity": ["model", "dataset", "unit", "layer", "similarity"],
                                          "null": ["model", "unit", "layer", "draw", "similarity"]},
    "tab01_coarse_unit_alignment": {"accuracy": ["model", "dataset", "method", "accuracy"]},
    "fig05_tab02_residual_alignment": {"accuracy": ["model", "dataset", "method", "accuracy"],
                                       "params": ["model", "method", "params"]},
    "appA2_textspan_equals_somp": {"equivalence": ["unit", "identical_atoms", "max_residual_difference"]},
}
# Columns a table may carry and a check reads when present (kept by `record`).
OPTIONAL_COLUMNS: dict[str, dict[str, list[str]]] = {
    "fig02_intrinsic_dimension": {"layers": ["d_head"]},
    # z_random95: the |z| that 95% of random description sets stay under (z's null spread, analysis.agreement)
    "fig03_textspan_vs_omp": {"agreement": ["model", "z_random95"], "probe": ["model"]},
    # the dataset's role (reference | task | ood): specialisation compares datasets that differ in content
    "fig04_spectral_dataset_similarity": {"similarity": ["role"], "null": ["model"]},
    # test images and chance level of each accuracy (its interval, and whether the task is above chance);
    # healthy: the training run passed `alignment.training.health` (Base and untrained rows: true); seed: the
    # training seed of the row (the checks average over seeds and report their spread); classifier: how the frozen
    # classifier was built ("zero-shot (text)", "class-mean, k=10"), named in the verdict's caveat
    "tab01_coarse_unit_alignment": {"accuracy": ["n", "chance", "seed", "classifier", "healthy"]},
    "fig05_tab02_residual_alignment": {"accuracy": ["n", "chance", "healthy", "seed", "classifier"]},
    "appA2_textspan_equals_somp": {"equivalence": ["model"]},
}


def _required(page: str, table: str) -> list[str]:
    optional = OPTIONAL_COLUMNS.get(page, {}).get(table, [])
    return [c for c in TABLES[page][table] if c not in optional]


def _kept(page: str, table: str) -> list[str]:
    optional = OPTIONAL_COLUMNS.get(page, {}).get(table, [])
    return TABLES[page][table] + [c for c in optional if c not in TABLES[page][table]]


# --- The claims, once -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, where, which page tests it, and the check that does."""

    id: str
    statement: str
    section: str
    page: str
    check: Callable[..., Verdict]
    tables: tuple[str, ...]  # the page's tables the check reads, in its argument order
    per_model: bool = True


_F2, _F3, _F4 = "fig02_intrinsic_dimension", "fig03_textspan_vs_omp", "fig04_spectral_dataset_similarity"
_T1, _T2, _A2 = "tab01_coarse_unit_alignment", "fig05_tab02_residual_alignment", "appA2_textspan_equals_somp"
CLAIMS: tuple[Claim, ...] = (
    Claim("heads_low_dimensional", "Head representations have an intrinsic dimension even lower than their "
          "ambient space.", "3.1", _F2, heads_low_dimensional, ("layers",)),
    Claim("early_near_linear", "Heads in early layers are close to linear: PCA and TwoNN "
          "estimates are similar.", "3.1", _F2, early_heads_near_linear, ("layers",)),
    Claim("linear_id_rises", "The linear (PCA) intrinsic dimension of heads grows steadily with depth.", "3.1", _F2,
          linear_id_rises, ("layers",)),
    Claim("twonn_hunchback", "The nonlinear (TwoNN) dimension rises in the first half and decreases towards the "
          "last layers.", "3.1", _F2, twonn_hunchback, ("layers",)),
    Claim("nonlinearity_rises", "Nonlinearity of head manifolds (L/N) increases monotonically with depth.", "3.1",
          _F2, nonlinearity_rises, ("layers",)),
    Claim("evr1_falls", "The variance explained by a head's first principal component (EVR1) falls with depth.", "3.1", _F2, evr1_falls, ("layers",)),
    Claim("descriptions_faithful", "A head's text decomposition describes what the head encodes (its "
          "specialisation).", "3.2", _F3, descriptions_name_what_heads_encode, ("probe",)),
    Claim("textspan_omp_agree", "TextSpan on a head and OMP on its first principal component select agreeing "
          "descriptions.", "3.2", _F3, textspan_omp_agree, ("agreement",)),
    Claim("pc1_sometimes_enough", "For some heads the first principal component carries nearly all of the "
          "head's semantics; for others they spread over several components.", "3.2", _F3, agreement_varies,
          ("agreement",)),
    Claim("heads_specialise", "How similar a head is between the reference and another dataset depends on the "
          "dataset: specialisation shows in the spectral similarity.", "3.3", _F4, heads_specialise,
          ("similarity", "null")),
    Claim("similarity_falls_with_depth", "Head similarity across datasets decreases with depth; early heads are "
          "almost identical across data distributions.", "3.3", _F4, similarity_falls_with_depth,
          ("similarity", "null")),
    Claim("random_unspecific", "Random images activate some of the heads that stand out on real datasets, "
          "signalling those heads are not specific.", "3.3", _F4, random_activates_unspecific_heads,
          ("similarity",)),
    Claim("order_consistent", "The ordering of datasets by similarity is consistent across encoders (mean "
          "correlation 0.97).", "3.3", _F4, dataset_order_consistent, ("similarity",), per_model=False),
    Claim("selected_near_base", "The top 5% of heads chosen by U|T or S come close to the full model (B) and "
          "far above random heads (R).", "4.1", _T1, selected_heads_near_base, ("accuracy",)),
    Claim("heads_near_base", "All heads alone (H) give about 90% of the model's alignment (B).", "4.1", _T1,
          heads_carry_alignment, ("accuracy",)),
    Claim("optimized_best", "Optimised head weights (O) score best, above the original model (B).", "4.1", _T1,
          optimized_weights_best, ("accuracy",)),
    Claim("rd_improves_base", "ResiDual improves the model's zero-shot alignment over the base model.", "4.2", _T2,
          residual_improves_base, ("accuracy",)),
    Claim("rd_near_lin", "ResiDual attains results comparable to (if not better than) the linear aligner on all "
          "datasets.", "4.2", _T2, residual_near_lin, ("accuracy",)),
    Claim("lin_near_full", "A linear transformation of the output approximates full finetuning.", "4.2", _T2,
          lin_near_full, ("accuracy",)),
    Claim("rd_near_full", "ResiDual closely approximates full finetuning with far fewer parameters.", "4.2", _T2,
          residual_near_full_with_few_params, ("accuracy", "params")),
    Claim("rdstar_near_rd", "RD* (heads only, PCs to 90% variance) is comparable to RD with about 30% of its "
          "parameters.", "4.2", _T2, rdstar_near_rd, ("accuracy", "params")),
    Claim("rdy_behind_rd", "ResiDual on the output alone (RDY) falls behind RD on some tasks.", "4.2", _T2, rdy_behind_rd, ("accuracy",)),
    Claim("textspan_equals_somp", "TextSpan is Simultaneous Orthogonal Matching Pursuit with the row-variance "
          "criterion: same atoms, same residual.", "A.2", _A2, textspan_equals_somp, ("equivalence",)),
)
CLAIM_IDS = tuple(c.id for c in CLAIMS)


def claim(claim_id: str) -> Claim:
    """The claim with this id."""
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; valid: {', '.join(CLAIM_IDS)}")


def criterion(claim_id: str) -> str:
    """A claim's criterion as a sentence (the same text its verdicts carry)."""
    c = claim(claim_id)
    return c.check(*[None] * len(c.tables)).criterion


def page_link(page: str, prefix: str = "notebooks/") -> str:
    """The html name of a page that files verdicts, relative to the book's root (prefix "" from another notebook
    page)."""
    if page not in SOURCES:
        raise KeyError(f"unknown page {page!r}; valid: {', '.join(SOURCES)}")
    return f"{prefix}{page}.html"


# --- Evaluating claims on a build's tables ----------------------------------------------------------------

def _page_tables(page: str, given: Mapping[str, pd.DataFrame] | pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if given is None:
        return {}
    spec = TABLES[page]
    if isinstance(given, pd.DataFrame):
        if len(spec) != 1:
            raise ValueError(f"page {page} has tables {', '.join(spec)}; pass them as a mapping")
        given = {next(iter(spec)): given}
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise KeyError(f"page {page}: unknown table(s) {', '.join(unknown)}; valid: {', '.join(spec)}")
    out = {}
    for name, table in given.items():
        if table is None:
            continue
        missing = [c for c in _required(page, name) if c not in table.columns]
        if missing:
            raise ValueError(f"page {page}, table {name!r} lacks columns {missing}; it needs {spec[name]}")
        out[name] = table
    return out


def _models(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    seen: dict[str, None] = {}
    for t in tables.values():
        if "model" in t.columns:
            seen.update(dict.fromkeys(t["model"].astype(str)))
    return list(seen)


def evaluate(c: Claim, tables: Mapping[str, pd.DataFrame], model: str | None = None) -> Verdict:
    """One claim on a page's tables, restricted to `model`'s rows when given."""
    args = []
    for name in c.tables:
        t = tables.get(name)
        if t is not None and model is not None and "model" in t.columns:
            t = t[t["model"].astype(str) == model]
        args.append(t if t is not None and len(t) else None)
    return c.check(*args)


NOT_RUN = "this build did not run the page"  # the reason of a claim whose page filed no tables
LEDGER_COLUMNS = ["claim", "section", "page", "source", "link", "model", "status", "statement", "criterion", "numbers", "reason",
                  "caveat"]


def ledger(tables_by_page: Mapping[str, Mapping[str, pd.DataFrame] | pd.DataFrame | None]) -> pd.DataFrame:
    """Every claim evaluated on what the build has: one row per claim and model (per claim if not per model).

    tables_by_page: {page: {table name: DataFrame}} (or the DataFrame itself for single-table pages);
    see `TABLES`. A page left out gives "not testable" rows saying it was not built.
    Columns: LEDGER_COLUMNS; `numbers` holds the deciding numbers as a dict; `source` is the notebook that filed
    the model's rows (`record`'s source column; the claim's page for tables without one), `link` its html name.
    """
    unknown = sorted(set(tables_by_page) - set(PAGES))
    if unknown:
        raise KeyError(f"unknown page(s) {', '.join(unknown)}; valid: {', '.join(PAGES)}")
    rows = []
    for c in CLAIMS:
        base = {"claim": c.id, "section": c.section, "page": c.page, "statement": c.statement}
        if c.page not in tables_by_page:
            v = untestable(criterion(c.id), NOT_RUN)
            rows.append({**base, **_source(c, {}, None), "model": "", **_verdict_row(v)})
            continue
        tables = _page_tables(c.page, tables_by_page[c.page])
        models = _models(tables) if c.per_model else []
        for model in models or [None]:
            rows.append({**base, **_source(c, tables, model), "model": model or "",
                         **_verdict_row(evaluate(c, tables, model))})
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS)


def _source(c: Claim, tables: Mapping[str, pd.DataFrame], model: str | None) -> dict[str, str]:
    """The notebook that filed the rows a claim reads for `model` (every model's with None), and its link.

    Rows filed without a source (older records, tables passed directly) belong to the claim's page, and so does a
    verdict over rows of several notebooks (a claim across models).
    """
    found = set()
    for name in c.tables:
        t = tables.get(name)
        if t is None or SOURCE not in t.columns:
            continue
        if model is not None and "model" in t.columns:
            t = t[t["model"].astype(str) == model]
        found |= {s for s in t[SOURCE] if isinstance(s, str) and s}
    source = found.pop() if len(found) == 1 else c.page
    return {"source": source, "link": page_link(source)}


def _verdict_row(v: Verdict) -> dict[str, Any]:
    return {"status": v.status, "criterion": v.criterion, "numbers": v.numbers, "reason": v.reason,
            "caveat": v.caveat}


def page_verdicts(page: str, tables: Mapping[str, pd.DataFrame] | pd.DataFrame) -> pd.DataFrame:
    """The ledger rows of one page's claims, from that page's tables (what the page shows first)."""
    return ledger({page: tables}).query("page == @page").reset_index(drop=True)


# --- Filing a page's tables for the front page -------------------------------------------------------------

def _records_dir(run: str | None) -> Path:
    return artifacts_dir() / "claims" / (run or current_run())


def record(page: str, tables: Mapping[str, pd.DataFrame] | pd.DataFrame, run: str | None = None,
           source: str | None = None) -> list[Path]:
    """File a page's claim tables under the run (artifacts/claims/<run>/<page>/<table>.csv).

    A table with a model column replaces only the rows of its own models, so two pages can file the same
    claims for different models (the toy CLIP's Figure 2 page, the real-model page); others are replaced.
    source: the notebook that computed the tables (one of `SOURCES`), kept in each row's `source` column so that
    the ledger links the rows to it; default: the notebook the book runner is executing, else `page`.

    The front page, which runs apart from the pages, builds the ledger from `recorded(run)`.
    """
    if page not in PAGES:
        raise KeyError(f"unknown page {page!r}; valid: {', '.join(PAGES)}")
    source = source or current_notebook() or page
    if source not in SOURCES:
        raise KeyError(f"unknown source {source!r} of page {page}'s tables; valid: {', '.join(SOURCES)}")
    folder = _records_dir(run) / page
    paths = []
    with folder_lock(folder):  # two pages filing rows of the same table at once would each drop the other's
        for name, table in _page_tables(page, tables).items():
            path = folder / f"{name}.csv"
            table = table[[c for c in _kept(page, name) if c in table.columns]].assign(**{SOURCE: source})
            if path.is_file() and "model" in table.columns:  # rows of the models another page filed stay
                old = pd.read_csv(path, dtype={"model": str, "dataset": str})
                kept = old[~old["model"].isin(set(table["model"]))] if "model" in old.columns else old.iloc[:0]
                if len(kept):
                    table = pd.concat([kept.reindex(columns=table.columns), table], ignore_index=True)
            write_text(path, table.to_csv(index=False))
            paths.append(path)
    return paths


def clear_records(run: str | None = None) -> None:
    """Forget every page's filed tables for the run (a full build starts from none)."""
    import shutil

    shutil.rmtree(_records_dir(run), ignore_errors=True)


def recorded(run: str | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Every page's tables filed by `record` under the run: the argument `ledger` takes."""
    root = _records_dir(run)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for page in PAGES:
        files = sorted((root / page).glob("*.csv")) if (root / page).is_dir() else []
        if files:
            out[page] = {f.stem: pd.read_csv(f, dtype={"model": str, "dataset": str}) for f in files}
    return out
