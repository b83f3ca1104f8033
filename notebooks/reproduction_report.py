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
# tolerance. The notebooks file their numbers with `residual_lib.report.results.save` in the paper's own
# columns; this page joins them.

# %% tags=["parameters", "hide-input"]
results_run = "toy"  # which build's saved results to compare: "paper" after `make reproduce`, else toy/smoke
show_rows = 15  # rows shown per reference, largest differences first (the full tables are saved as CSV)

# %% tags=["hide-input"]
from residual_lib.book import page
from residual_lib.report import style
from residual_lib.experiments import reproduction_report

style.apply()
result = reproduction_report.run(page.params(reproduction_report.Params, globals()))
page.glue_findings(result.findings)
page.show(result.tables["summary"])

# %% [markdown]
# Results compared: the run {glue:text}`results_run`. {glue:text}`status`
#
# **Tolerances.** Accuracies match within 0.03 (prompt templates, splits, seeds and early stopping
# move them by a few points); parameter counts within 2% (the paper prints 43k for 43,008);
# intrinsic dimensions within 2 (a mean over heads of integers, on another 80k subset), their
# ratio within 0.15 and EVR1 within 0.03; agreement Z-scores within 0.5; cross-model Pearson
# correlations within 0.05; descriptions and dataset orders must be the same text.

# %% tags=["hide-input"]
page.show(result.tables["tolerances"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "This build's values against the paper's for every quantity both have; the band is the stated tolerance."}, "image": {"alt": "This build's values against the paper's for every quantity both have; the band is the stated tolerance."}}
fig = reproduction_report.plot(result)

# %% [markdown]
# Each panel plots our value minus the paper's against the paper's, for a quantity this build can compare (on
# the zero line when they agree; the shaded band is the tolerance). Quantities this build has no counterpart for are left
# out of the figure and of the tables below.
#
# ## Per reference
#
# The compared rows of each reference, the largest differences first.

# %% tags=["hide-input"]
reproduction_report.show_largest(result)
