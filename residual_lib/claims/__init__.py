"""The paper's claims (Sections 3.1-4.2, Appendix A.2) as data, each tested on this build's tables.

Modules: `checks` (the criteria and one check per claim), `ledger` (the claims as data, the ledger of
a build, filing a page's tables), `render` (badges, html and markdown for pages).

A claim is one sentence of the paper, the page of the book that rebuilds its evidence, and a criterion
stated in advance (the constants of `checks`, read from the paper's wording, never fitted to a build's
numbers). Its check is a function over tidy tables that returns a `Verdict`: "holds", "does not hold",
or "not testable" (the build lacks what the criterion needs: a second model, a Full finetuning run, a
dataset of random images, ...), with the numbers that decided it.

The tables each page provides (`TABLES`), as page / table: what a row is: its columns.

- fig02_intrinsic_dimension / "layers": layer of a model: model, layer, linear_id, twonn_id, ratio (mean
  over the layer's heads of linear_id / twonn_id), evr1 (`intrinsic_dim.layer_summary`, its
  ratio_mean_of_heads renamed ratio; the experiment's table "fig2"); optional d_head (the head's ambient
  dimension, for the low-dimensionality claim).
- fig03_textspan_vs_omp / "agreement": head and principal component: unit, pc, z (the agreement Z of
  TextSpan against OMP on that PC; |z| is used), optional z_random95 (the |z| random sets stay under, 95%); optional "probe": head (`probe.text_vs_probe`): unit,
  agree, named_skill, unnamed_skill.
- fig04_spectral_dataset_similarity / "similarity": head of a model on a dataset: model, dataset, unit,
  layer, similarity (spectral similarity with the reference dataset; `spectral.dataset_similarities`
  with a model column). A model's dataset order is its datasets sorted by mean similarity. "null": head of
  a model in one draw of two disjoint random halves of the reference: model, unit, layer, draw, similarity
  (`spectral.sampling_null`), the spread a fresh sample of the same distribution gives.
- tab01_coarse_unit_alignment / "accuracy": model, dataset, method (B, H, O, R, S, U, U|T), accuracy.
- fig05_tab02_residual_alignment / "accuracy": model, dataset, method (Base, Lin, RD, RD*, RDY,
  Full finetuning), accuracy; "params": model, method, params (trained parameters).
- appA2_textspan_equals_somp / "equivalence": head: unit, identical_atoms (bool), max_residual_difference.

`model` may be left out of the fig03 and appA2 tables (one model); `OPTIONAL_COLUMNS` lists the columns
a table may leave out or add. A notebook other than the claim's page may file its tables (`FILERS`: the
real-model page files Figures 2 and 4 for its model); `record` keeps the filing notebook in a `source` column
and the ledger links each row to it. `ledger(tables_by_page)` evaluates every claim, once per model where the
claim is about a model; a page files its tables with `record` so that the front page can build the
ledger from `recorded()`; `verdicts_html` and `verdict_markdown` render verdicts for a page.
"""

from .checks import STATUSES, Verdict
from .ledger import (CLAIM_IDS, CLAIMS, FILERS, LEDGER_COLUMNS, NOT_RUN, OPTIONAL_COLUMNS, PAGE_TITLES, PAGES,
                     SOURCE_TITLES, SOURCES, TABLES, Claim, claim, clear_records, criterion, evaluate, ledger, page_link,
                     page_verdicts, record, recorded)
from .render import BADGE_COLOURS, badge, counts, format_numbers, show_verdicts, verdict_markdown, verdicts_html

__all__ = ["BADGE_COLOURS", "CLAIMS", "CLAIM_IDS", "Claim", "FILERS", "LEDGER_COLUMNS", "NOT_RUN", "OPTIONAL_COLUMNS",
           "PAGES", "PAGE_TITLES", "SOURCES", "SOURCE_TITLES", "STATUSES", "TABLES", "Verdict", "badge", "claim",
           "clear_records", "counts", "criterion", "evaluate", "format_numbers", "ledger", "page_link", "page_verdicts",
           "record", "recorded", "show_verdicts", "verdict_markdown", "verdicts_html"]
