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
# # ResiDual companion
#
# **The paper in three sentences.** *ResiDual Transformer Alignment with Spectral Decomposition*
# ([arXiv 2411.00246](https://arxiv.org/abs/2411.00246); the authors' code:
# [github.com/Flegyas/ResiDual](https://github.com/Flegyas/ResiDual)) splits a vision transformer's output into the exact sum of its residual units (every attention
# head, every MLP) and finds that heads live on low-dimensional, increasingly nonlinear manifolds whose
# principal components carry nameable meaning and specialise to some datasets more than to others. Keeping
# only a few task-relevant heads keeps most of the zero-shot accuracy, and rescaling each unit along its
# principal components (ResiDual) aligns a frozen model to a task about as well as a linear aligner, with far
# fewer parameters. This book rebuilds each of its figures and tables with the library `residual_lib`, and
# tests each of its claims on what this build computed.

# %% tags=["parameters", "hide-input"]
results_run = "toy"  # whose claim tables to read: the profile the pages ran under
executed = "book/notebooks"  # where the runner wrote the executed pages (relative to the project root)
max_thumbnails = 40  # figures shown as thumbnails, in the book's order

# %% tags=["remove-input"]
from residual_lib.book import page
from residual_lib.report import style
from residual_lib.experiments import front

style.apply()
result = front.run(page.params(front.Params, globals()))
page.glue_findings(result.findings)

# %% [markdown]
# ## What this build ran
#
# Profile {glue:text}`results_run`; models with recorded results: {glue:text}`models_text`. Of the
# {glue:text}`n_pages` pages that test claims (the six figure and table pages, and the real-model page, which
# tests Figures 2 and 4 on its model), {glue:text}`n_pages_ran` filed verdicts in this build (not run:
# {glue:text}`not_run_text`); the table below lists them. The paper's own models and datasets need a GPU and
# the network; the default build runs the project's own tiny CLIP on a synthetic world whose ground truth is
# known, and two real pretrained networks, DINOv2 ViT-S/14 and the image tower of OpenAI's CLIP ViT-B/16, on
# Fashion-MNIST and other offline sets (see the toy world and real-model pages). **On the real networks, which have
# no text tower here, the Section 4 verdicts rest on class-mean classifiers**: the centroid of the network's own
# embeddings of k labelled images per class (images kept out of training, validation and test), not text prompts;
# the Table 1 and Figure 5 pages give k and the network's accuracy with it (Base) per task.
#
# **Against the paper's numbers** ({doc}`reproduction_report`): of the paper's {glue:text}`repro_numbers`
# numbers, this build computed a counterpart for {glue:text}`repro_compared`, and {glue:text}`repro_matched`
# of those agree within tolerance; of the parameter counts that follow from the paper's architectures alone,
# {glue:text}`repro_arch_matched` of {glue:text}`repro_arch_compared` match.

# %% tags=["remove-input"]
page.show(result.tables["ran"], caption="Pages that filed verdicts: their models and the claims they test")

# %% [markdown]
# ## The paper's claims, tested
#
# {glue:text}`n_claims` claims, read once from the paper, each with a criterion fixed in advance
# (`residual_lib.claims`), and with the least evidence it needs. Over the models of this build
# ({glue:text}`n_rows` verdicts): {glue:text}`n_holds` hold, {glue:text}`n_fails` do not hold,
# {glue:text}`n_inconclusive` are inconclusive (the 95% interval of the criterion's number straddles its
# threshold, or a trend's permutation p-value is not below 0.05), and {glue:text}`n_untestable` are not
# testable on this build, each with its reason (too few layers for a depth trend, a task where the model
# itself is near chance, no healthy training run, no second model, ...). A "does not hold" on a toy model
# is a finding about that model, not evidence against the paper's models.

# %% tags=["remove-input"] mystnb={"figure": {"caption": "The verdict of each of the paper's claims for each model of this build."}, "image": {"alt": "The verdict of each of the paper's claims for each model of this build."}}
fig = front.plot_ledger(result)

# %% tags=["remove-input"]
front.show_ledger(result)
page.show(result.tables["counts"], caption="Verdicts per model: the rows of the ledger above, counted")

# %% [markdown]
# **Weights.** {glue:text}`weights_text`

# %% [markdown]
# ## Every figure of this build
#
# Each thumbnail links to the page that computed it.

# %% tags=["remove-input"]
front.show_thumbnails(result)

# %% [markdown]
# ## How to read a page
#
# - **What this build shows** opens every page: the verdicts of the claims it tests, with the numbers that
#   decided them. The prose below it describes the figures; it never concludes more than a verdict carries.
# - **Ours and the paper's.** Each figure or table shows what this build computed; the paper's values are
#   always labelled as the paper's. In the toy profile the two come from different models and data:
#   compare directions and orderings, not digits. Numbers in the prose are inserted by the notebook itself.
# - **The provenance block** after each page's parameters says where its numbers came from: profile,
#   parameters, git commit, library version, device, runtime and peak memory.
# - **The code** is short and collapsed: each page calls one experiment of `residual_lib.experiments`,
#   where the computation lives and is tested. How to rerun a page, the book or the paper's profile:
#   {doc}`reproduce`; how to run any page on a model of your own: {doc}`../own_model`.
