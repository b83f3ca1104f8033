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
# # Figure 2: intrinsic dimension of attention heads across depth
#
# Section 3.1 of the paper asks how many dimensions each attention head's representation occupies, how far
# from linear it is, and how both change with depth. The paper's Figure 7 is the same analysis on its ViT-B
# models: a build draws it when `models` lists them (the paper profile does); this build's models are in the
# provenance block below.

# %% tags=["parameters", "hide-input"]
models = ["toy-clip"]  # registered model names (data_manifests/models) or open_clip architectures
dataset = "toy-mixed"  # the reference dataset (the paper: an 80k stratified subset of ImageNet train)
split = "train"
n = 2000  # images per cache
seed = 0  # which subset of the split
cache_dtype = "float32"  # storage of the unit cache
batch_size = 64
device = "auto"
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)
threshold = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
discard_fraction = 0.1  # TwoNN: largest ratios left out of the fit (Facco et al.)
ratio = "mean_of_heads"  # saved ratio: "mean_of_heads" (the paper's table), or "of_means" (the authors' later notebook)
sample = "paper_text"  # rows: n of the split, or "authors_code": 50,000 uniform rows, seed 42 (their experiment1.py)

# %% tags=["hide-input"]
from residual_lib.book import page
from residual_lib.report import results, style
from residual_lib.experiments import fig02

style.apply()
result = fig02.run(page.params(fig02.Params, globals()))
page.glue_findings(result.findings)
page.glue_atlas(models[0], model=None)
_ = results.save(result.tables["fig2"], "fig2")

# %% [markdown]
# ## What this build shows
#
# The paper's claims that this page tests, each with the criterion stated before the build ran and the numbers
# that decided it (the [front page](index) gathers every page's verdicts).

# %% tags=["remove-input"]
page.claims(fig02, result)

# %% [markdown]
# **Readings.** Where the paper's text and the authors' code can be read two ways (the Protocol
# page lists each choice), this build used: {glue:text}`readings`.

# %% [markdown]
# ## How it is measured
#
# Each head's representation of the reference dataset is a cloud of n
# points in the output space. Its **linear ID** (L) is the number of principal components that
# explain 99% of its variance; its **TwoNN ID** (N, Facco et al. 2017) is a nonlinear estimate
# from the ratio of each point's two nearest-neighbour distances. Their ratio L / N grows when the
# head's manifold is curved, and the explained-variance ratio of the first component (EVR1) says how
# much a single direction dominates. Everything is averaged over the heads of each layer. With the
# ViT-Large models this is Figure 2; with the ViT-Base models, Figure 7 (same notebook, other `models`).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Intrinsic dimension per layer, averaged over each layer's heads: linear ID (PCA, 99% of the variance), TwoNN ID, their ratio and the EVR of PC1. Top: this build; bottom: the paper's Figures 2 and 7."}, "image": {"alt": "Intrinsic dimension per layer, averaged over each layer's heads: linear ID (PCA, 99% of the variance), TwoNN ID, their ratio and the EVR of PC1. Top: this build; bottom: the paper's Figures 2 and 7."}}
fig = fig02.plot(result)

# %% [markdown]
# ## Per-layer means (the paper's side table)
#
# `Ratio` is the mean over the layer's heads of each head's L / N, the aggregation that the paper's
# table follows (see the check below); the figure also draws the other one, the ratio of the two
# layer means, dashed.

# %% tags=["hide-input"]
for label, table in fig02.side_tables(result).items():
    page.show(table, caption=label, decimals=2)

# %% [markdown]
# **Which ratio does the paper print?** In {glue:text}`n_paper_off` of the paper's
# {glue:text}`n_paper_rows` rows the printed Ratio is more than 0.02 away from L / N of the
# printed means (largest: {glue:text}`paper_worst`). Two averages that differ like that are the
# mean of per-head ratios and the ratio of means: they coincide only when every head of a layer has
# the same N, and the printed values fall below L / N in early layers and above it in late ones,
# which is what averaging per-head ratios does when N varies across a layer's heads. The paper's
# Figure 2 caption defines Ratio = L / N per head, so this page files the mean of per-head ratios
# as its `ratio`. In this build the two aggregations differ by {glue:text}`our_mean_gap:.3f` on
# average over layers (at most {glue:text}`our_max_gap:.3f`).

# %% tags=["hide-input"]
check = result.tables["paper_ratio_check"]
page.show(check.loc[~check["matches_ratio_of_means"], ["model", "layer", "linear_id", "twonn_id", "ratio",
                                                        "ratio_of_means", "printed_minus_ratio_of_means"]].head(10),
          caption="The paper's rows whose printed ratio is not L / N of the printed means (first 10)")

# %% [markdown]
# ## This build's numbers in detail
#
# Models in this build: {glue:text}`models_text`. For {glue:text}`first_model`
# ({glue:text}`n_layers` layers), the linear ID goes from {glue:text}`lin_first:.1f` in the first
# layer to {glue:text}`lin_last:.1f` in the last, the TwoNN ID from {glue:text}`nn_first:.1f` to
# {glue:text}`nn_last:.1f` (largest, {glue:text}`nn_peak:.1f`, at layer {glue:text}`nn_peak_layer`),
# and their per-head ratio from {glue:text}`ratio_first:.2f` to {glue:text}`ratio_last:.2f`. PC1
# explains {glue:text}`evr_first:.2f` of a head's variance in the first layer and
# {glue:text}`evr_last:.2f` in the last. Every head's IDs and spectrum are on its card in the
# {glue:md}`model_atlas`.
#
# The paper's panel (bottom row) is a different set of models: ViT-Large and ViT-Base encoders on
# 80,000 ImageNet images, where L rises towards the head dimension (64) and N rises then falls (the
# "hunchback"), so L / N grows from {glue:text}`paper_ratio_first` in the first layer to
# {glue:text}`paper_ratio_last` in the last (range over the seven models), while EVR1 falls from
# {glue:text}`paper_evr_first` to {glue:text}`paper_evr_last`. A toy
# build uses a tiny CLIP trained on the synthetic attribute world, so only the direction of these
# trends is comparable, not their values; the paper profile (`notebooks/params/paper/`) runs the
# paper's seven models on ImageNet.
#
# Choices, tested in `tests/unit/test_intrinsic_dim.py`: linear ID counts components until the cumulative
# ratio is strictly greater than 0.99 (as the authors' code is reported to do); TwoNN fits the line
# through the origin on the smallest 90% of the ratios with exact neighbours, collapses exact
# duplicate points and drops points whose two nearest distances tie, and agrees with
# scikit-dimension's TwoNN on the same data. TwoNN runs on each head's coordinates in its
# (d_head + 2)-dimensional subspace, an isometric copy of its output-space points.
