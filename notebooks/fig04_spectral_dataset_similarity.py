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
# # Figure 4: spectral similarity of heads across datasets
#
# Section 3.3 of the paper asks whether a head does the same thing on every input distribution, by comparing
# its principal components across datasets. The paper's Figures 9-15 are the same analysis across its other
# models: a build draws them when `models` lists several (the paper profile does).

# %% tags=["parameters", "hide-input"]
models = ["toy-clip"]  # registered model names or open_clip architectures; several -> Fig 9
reference_dataset = "toy-mixed"  # the paper: ImageNet (train)
datasets = ["toy-colour", "toy-shape", "toy-pattern", "toy-position", "toy-size", "toy-background",
            "toy-sketch", "toy-textured", "toy-digits", "toy-noise"]
split = "train"
n = 1000  # images per cache (all of a split if it is smaller)
n_reference = 2000  # images of the reference dataset
seed = 0
cache_dtype = "float32"
batch_size = 64
device = "auto"
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)
evr_threshold = 0.9  # each head's basis keeps the components that explain this much variance
null_draws = 10  # the sampling null: draws of two disjoint random halves of the reference dataset
n_standout = 3  # heads described with SOMP (Fig 4b)
dictionary = "toy"  # text dictionary for SOMP: "toy", or "gandelsman-general" (the paper's)
somp_k = 5  # descriptions per head
somp_aggregate = "l2"  # l2: SOMP equals TextSpan (App. A.2); l1: the variant in the authors code
attribute_probe = True  # toy world only: check the descriptions against linear probes of the known attributes
similarity_matching = "cosine"  # Eq. 3: "cosine" (the text), "weighted" (the authors' code), "index"

# %% tags=["hide-input"]
from residual_lib.book import page
from residual_lib.report import results, style
from residual_lib.experiments import fig04

style.apply()
result = fig04.run(page.params(fig04.Params, globals()))
page.glue_findings(result.findings)
page.glue_atlas(models[0], model=None)
_ = results.save_present(result.tables, {"fig4_order": "fig4_order", "fig9": "fig9",  # fig9: several models
                                         "fig4b_descriptions": "fig3_descriptions"})  # the heads Fig 4b names

# %% [markdown]
# ## What this build shows
#
# The paper's claims that this page tests, each with the criterion stated before the build ran and the numbers
# that decided it (the [front page](index) gathers every page's verdicts).

# %% tags=["remove-input"]
page.claims(fig04, result)

# %% [markdown]
# **Readings.** Where the paper's text and the authors' code can be read two ways (the Protocol
# page lists each choice), this build used: {glue:text}`readings`.

# %% [markdown]
# ## How it is measured
#
# For each head, its principal components on the reference dataset are compared with its principal
# components on another dataset by the **normalised spectral cosine similarity** (Eq. 2-4): absolute
# cosines between the two sets of components, greedily matched largest first, each matched pair
# weighted by the two components' eigenvalues, normalised to [0, 1]. A value near 1 means the head
# spans the same directions with the same weights on both datasets. The heatmap has one row per
# dataset (ordered by mean similarity, most similar first, as in the paper) and one column per
# head, layer by layer. With several models, the correlation of their dataset profiles is Figure 9.
#
# **The sampling null.** A head compared with itself on a fresh sample of the same distribution is not at 1:
# its components move with the sample. Splitting the reference images into two disjoint random halves and
# comparing the halves as two datasets are compared gives what "same distribution" reads; over
# {glue:text}`null_draws` draws, for {glue:text}`first_model`, the mean over heads is
# {glue:text}`null_mean:.3f`, with a low end (mean minus two standard deviations over draws) of
# {glue:text}`null_low:.3f`. {glue:text}`n_below_null` of the {glue:text}`n_datasets` datasets fall below it
# (at or above it: {glue:text}`above_null_text`). The specialisation claim counts a dataset as different only
# below this low end. Each half holds half the reference images, so the null is, if anything, lower than a
# same-size comparison would give.

# %% [markdown]
# ## Head-by-head similarity with the reference dataset (Fig 4a, 10-15)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Spectral similarity of every head between the reference dataset and each other dataset (rows, most similar first); heads grouped by layer."}, "image": {"alt": "Spectral similarity of every head between the reference dataset and each other dataset (rows, most similar first); heads grouped by layer."}}
fig = fig04.plot_heatmaps(result)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Mean similarity over each layer's heads per dataset, beside the sampling null: two disjoint random halves of the reference dataset (black, shaded to two standard deviations over draws)."}, "image": {"alt": "Mean similarity per layer for each dataset and for two halves of the reference dataset."}}
fig = fig04.plot_by_layer(result)

# %% [markdown]
# ## Dataset order: this build beside the paper's
#
# The paper orders the rows of each heatmap by mean similarity with ImageNet. Ranks compare only over the
# same datasets: where this build shares three or more datasets with the paper's figure for its model, the
# table sets the two orders of those datasets side by side. Otherwise (the toy build, whose datasets are not
# the paper's) it says where each kind of dataset falls in each order, beside Figure 4a (OpenCLIP-L): the task
# datasets and the out-of-distribution sets (Sketch, PACS and Random in the paper), with their ranks and their
# mean position (0: first, most similar to the reference; 1: last).

# %% tags=["hide-input"]
page.show(result.tables["order"], caption="Datasets by mean similarity with the reference, most similar first")
page.show(result.tables["by_layer"], caption=f"{result.findings['first_model']}: mean similarity per layer")

# %% [markdown]
# ## Heads that stand out, described with SOMP (Fig 4b)
#
# A head "stands out" for a dataset when its similarity falls furthest below the mean of its
# layer's heads on that dataset. Each such head is described by SOMP over the model's text
# embeddings of the dictionary (unit-normalised), run on the head's representation of the
# **reference** dataset: the description says what the head encodes in general, the heatmap says
# on which dataset that changes. Models without a text tower have no descriptions.

# %% tags=["hide-input"]
page.show(result.tables["standout"], caption="Standout heads of the first model")

# %% [markdown]
# **Ground truth (toy world).** The toy images have known attributes, so a linear probe on each
# standout head's reference representation says what the head really carries (skill: 0 at chance,
# 1 perfect). The table sets the attribute the SOMP descriptions name most beside the attribute the
# probe decodes best. Read it with the skill table: an attribute that nearly every head decodes
# (one that changes many pixels, such as the background) makes agreement cheap, so the specific
# attributes (the other columns) say more about what a head is for.

# %% tags=["hide-input"]
page.show_present(result.tables, {"standout_skill": "Probe skill of the standout heads",
                                  "standout_check": "Attributes SOMP names against the probe's best"}, decimals=2)
page.show(result.tables["paper_4b"])

# %% [markdown]
# ## Cross-model correlation of dataset profiles (Fig 9)
#
# For each model, the mean similarity (over heads) of every dataset with the reference gives a
# profile over datasets; Figure 9 is the Pearson correlation of these profiles between models. It
# needs at least two models in `models`; with one, there is no figure of this build's, and the paper's values
# follow as a table.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Correlation between models of the per-dataset mean head similarity."}, "image": {"alt": "Correlation between models of the per-dataset mean head similarity."}}
fig = fig04.plot_correlation(result)

# %% tags=["hide-input"]
page.show(fig04.paper_correlation(result), caption=style.paper_label("Fig 9"), decimals=2)

# %% [markdown]
# ## This build's numbers in detail
#
# For {glue:text}`first_model`, the mean similarity with {glue:text}`reference_name` over heads and
# datasets is {glue:text}`sim_first_layer:.2f` in the first layer and {glue:text}`sim_last_layer:.2f`
# in the last (the paper reports a decreasing trend with depth). The dataset closest to the
# reference is {glue:text}`top_dataset` ({glue:text}`top_sim:.2f`), the furthest
# {glue:text}`bottom_dataset` ({glue:text}`bottom_sim:.2f`). Spearman correlation of our dataset
# order with the paper's over the datasets both contain: {glue:text}`order_rho`.
# {glue:text}`corr_text` The paper's Figure 9 averages {glue:text}`paper_corr_mean:.2f` between its five ViT-L models.
# {glue:text}`probe_text`
#
# In the toy build the "task" datasets (colour, shape, ...) are fresh images of the reference
# distribution labelled by one attribute, so their heads should look like the reference's
# (similarity near 1 up to sampling noise); the out-of-distribution sets (sketches, textures,
# digits, noise) are where heads can differ. The measure compares representations, not labels.
# Mean similarity by the datasets' role in their manifests: {glue:text}`role_text`. Each head's similarity
# to every dataset, with its descriptions and the images at the ends of its components, is on its card in
# the {glue:md}`model_atlas`.
#
# **Choices** (Eq. 3-4 leave them open; tested in `tests/unit/test_spectral.py`): the weights are the PCA
# eigenvalues (the measure does not change when a weight set is rescaled, so explained-variance
# ratios would give the same number); each basis keeps the leading components that explain more
# than 90% of the head's variance (median kept here: {glue:text}`median_k:.0f`); under the `cosine`
# reading the greedy matching maximises the cosine alone and the weights only scale the matched pair
# (under the authors' `weighted` reading it maximises the weighted cosine; see Readings above); the
# normaliser pairs the n-th largest weights of the two sets, which bounds the measure by 1. Each
# dataset's PCA is computed on its own subset, so the measure needs no sample alignment.
