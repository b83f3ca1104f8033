# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (residual_lib)
#     language: python
#     name: residual
# ---

# %% [markdown]
# # Reproduction report
#
# Every number of the paper that this companion rebuilds, beside ours: the paper's value (transcribed
# in `data_manifests/paper/`), this build's value, their difference, and a verdict against a stated
# tolerance. The notebooks file their numbers with `residual_lib.results.save` in the paper's own
# columns; this page joins them.

# %% tags=["parameters"]
results_run = "toy"  # which build's saved results to compare: "paper" after `make reproduce`, else toy/smoke
show_rows = 15  # rows shown per reference, largest differences first (the full tables are saved as CSV)

# %%
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from residual_lib import results, style
from residual_lib.paper import REFERENCES

style.apply()
comparisons = {name: results.compare(name, results.load(name, run=results_run)) for name in REFERENCES}
table = results.summary(comparisons)
n_paper = int(table["paper numbers"].sum())
n_ours = int(n_paper - table["not run"].sum())
n_match = int(table["match"].sum())
glue("n_paper", n_paper, display=False)
glue("n_ours", n_ours, display=False)
glue("n_match", n_match, display=False)
glue("results_run", results_run, display=False)
glue("status", (f"This build compared {n_ours} of the paper's numbers with its own; {n_match} agree within tolerance."
                if n_ours else
                "No paper-scale run is part of this build: the paper's models and datasets need a GPU, the network "
                "and ImageNet (see the README's 'Reproduce the paper'). Every number below is the paper's, and "
                "each verdict reads 'not run'."), display=False)
table

# %% [markdown]
# The paper reports {glue:text}`n_paper` numbers that the notebooks rebuild (tables 1, 2 and 6,
# the parameter counts, and the numbers printed inside Figures 2, 3, 4, 7-15 and 9). Results
# compared: the run {glue:text}`results_run`. {glue:text}`status`
#
# **Tolerances.** Accuracies match within 0.03 (prompt templates, splits, seeds and early stopping
# move them by a few points); parameter counts within 2% (the paper prints 43k for 43,008);
# intrinsic dimensions within 2 (a mean over heads of integers, on another 80k subset), their
# ratio within 0.15 and EVR1 within 0.03; agreement Z-scores within 0.5; cross-model Pearson
# correlations within 0.05; descriptions and dataset orders must be the same text.

# %%
pd.DataFrame([{"reference": name, "quantity": q, "tolerance": "exact text" if tol is None else
               (f"±{tol.absolute:g}" if tol.absolute else f"±{tol.relative:.0%} of the paper's value"),
               "why": "same description / same rank" if tol is None else tol.why}
              for name, quantities in results.TOLERANCES.items() for q, tol in quantities.items()])

# %%
fig = results.plot_agreement(comparisons)

# %% [markdown]
# Each panel plots our value against the paper's (on the diagonal when they agree; the shaded band
# is the tolerance). Where this build has none of a quantity, the panel shows the distribution of
# the paper's values instead.
#
# ## Per reference
#
# The rows with the largest differences first; rows without our number keep the paper's value.

# %%
for name, comp in comparisons.items():
    display(Markdown(f"### {name}"))
    numeric = pd.to_numeric(comp["diff"], errors="coerce").abs()
    display(comp.assign(_order=numeric.fillna(-1)).sort_values("_order", ascending=False)
            .drop(columns="_order").head(show_rows))
