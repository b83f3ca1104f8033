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
# # Figure 3: TextSpan against OMP on a principal component
#
# Section 3.2 of the paper asks whether TextSpan's text descriptions of a head mostly describe the head's
# first principal component (Figure 3), and its Figure 8 asks the same of the second. {glue:text}`figures_text`

# %% tags=["parameters", "hide-input"]
model_name = "toy-clip"  # a registered model with a text tower, or an open_clip architecture
dataset = "toy-mixed"  # the samples each head is decomposed on (the paper: ImageNet)
split = "train"
n = 2000  # images in the cache
seed = 0
cache_dtype = "float32"
batch_size = 64
device = "auto"
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)
dictionary = "toy"  # text dictionary by name: "toy" or "gandelsman-general" (the paper's)
k = 5  # descriptions per head and method
pc = 1  # OMP on this principal component (PC1 for Figure 3, PC2 for Figure 8)
extra_pcs = []  # PCs also computed and saved, not drawn ([2]: Figure 8 beside Figure 3)
last_layers = 4  # heads of the last this-many layers (the paper: 4 of OpenCLIP-L's 24)
project = True  # project the dictionary on each head's span first (TextSpan's preprocessing)
probe_attributes = True  # the dataset's images have known attributes (toy world): check against linear probes
probe_test_fraction = 0.3
textspan_center = True  # project on the centred span; False: the uncentred samples' (the authors')
omp_normalize = True  # OMP on unit-norm projected atoms; False: as projected (the authors')

# %% tags=["hide-input"]
from residual_lib.book import page
from residual_lib.report import results, style
from residual_lib.experiments import fig03

style.apply()
result = fig03.run(page.params(fig03.Params, globals()))
page.glue_findings(result.findings)
page.glue_atlas(model_name, z_max_head=result.findings["z_max_head"], z_min_head=result.findings["z_min_head"])
_ = results.save(result.tables["fig3_agreement"], "fig3_agreement")
_ = results.save(result.tables["fig3_descriptions"], "fig3_descriptions")

# %% [markdown]
# ## What this build shows
#
# The paper's claims that this page tests, each with the criterion stated before the build ran and the numbers
# that decided it (the [front page](index) gathers every page's verdicts).

# %% tags=["remove-input"]
page.claims(fig03, result)

# %% [markdown]
# **Readings.** Where the paper's text and the authors' code can be read two ways (the Protocol
# page lists each choice), this build used: {glue:text}`readings`.

# %% [markdown]
# ## How it is measured
#
# TextSpan explains a head's whole representation with a few text descriptions. For every head
# of the last layers this page picks `k` descriptions with **TextSpan** (Gandelsman et al. 2024) on the
# head's samples and `k` with **OMP** on one principal component of the head (PC1: Figure 3; PC2:
# Figure 8), and scores how close the two sets are with a Z-score.
#
# **The score, as this page computes it** (`residual_lib.analysis.agreement`). The paper compares "the cosine
# similarity between" the two sets with "the average cosine similarity mu between the descriptions
# selected by TextSpan and the entire dictionary", Z = |sim - mu| / sigma. Here each set is its centroid
# (the mean of its unit-normalised text embeddings, c_A for TextSpan, c_B for OMP); sim = cos(c_A, c_B),
# and mu, sigma are the mean and standard deviation of cos(c_A, e_j) over every dictionary entry j. Two
# identical sets then get sim = 1, the most any entry can reach, so their Z is positive (averaging
# pairwise cosines instead can put two identical but diverse sets below mu). A negative Z means the OMP
# set is farther from TextSpan's than a typical entry; the paper's |Z| counts that as agreement too, so
# the heatmap shows |Z| as the paper does and the tables keep the sign. A centroid of k entries varies
# less than one entry, so the paper's sigma understates significance; the table also gives `z_set`,
# with mu and sigma taken over random sets of k distinct entries (seeded), under which Z is a
# standard score.
#
# Both algorithms get the same dictionary: the text embeddings projected on each head's span (the
# preprocessing in Gandelsman et al.'s code; parameter `project`).

# %% [markdown]
# ## Agreement per head
#
# Left: this build, |Z| for every head of the last layers. Right: the paper's values for OpenCLIP-L
# (layers 20-23, 16 heads each), for the same principal component. The paper's Z compares the two
# description sets by another similarity than this page's (above), so the panels show where each model's
# heads agree, not numbers on one scale.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "|Z| agreement between TextSpan's descriptions of each head and OMP's descriptions of its principal component, per head of the last layers: this build (left) and the paper's OpenCLIP-L panel (right)."}, "image": {"alt": "|Z| agreement between TextSpan's descriptions of each head and OMP's descriptions of its principal component, per head of the last layers: this build (left) and the paper's OpenCLIP-L panel (right)."}}
fig = fig03.plot_agreement(result)

# %% [markdown]
# Over the {glue:text}`n_heads` heads, the mean |Z| is {glue:text}`z_mean:.2f`, and a share of
# {glue:text}`share_z1:.2f` of the heads have |Z| > 1.
# The head whose OMP on PC{glue:text}`pc` agrees most with TextSpan is {glue:md}`z_max_head_atlas`
# (|Z| = {glue:text}`z_max:.2f`), the one that agrees least is {glue:md}`z_min_head_atlas`
# (|Z| = {glue:text}`z_min:.2f`); each name opens the head's card in the head atlas. With the set-level
# null, a share of {glue:text}`share_zset2:.2f`
# of the heads lie more than two standard scores from a random description set.
#
# **Chance on the paper's scale.** A random set of k descriptions, scored with the paper's Z against a head's
# TextSpan set, is not at 0: the centroid of k entries sits closer to TextSpan's centroid than one entry does.
# The |Z| that 95% of 2,000 random sets stay under averages {glue:text}`z_random95_mean:.2f` over the heads
# (column "random sets' |Z| (95%)" below); a share of {glue:text}`share_above_random:.2f` of the heads have an
# OMP set whose |Z| exceeds its head's.

# %% [markdown]
# ## Descriptions side by side
#
# For each layer, the head with the highest |Z| and the one with the lowest: TextSpan's `k`
# descriptions (in pick order) beside OMP's on the principal component. Below, the paper's examples.

# %% tags=["hide-input"]
page.show(result.tables["descriptions"], caption="TextSpan's descriptions (pick order) beside OMP's, "
          "for the heads with the highest and lowest |Z| of each layer", decimals=2)
page.show(result.tables["paper_descriptions"], caption=style.paper_label("Examples"))

# %% [markdown]
# ## Does a linear probe agree with the text decomposition?
#
# The paper cannot check what a head "really" encodes; the toy world can. For each head and each
# attribute of the images (shape, colour, ...), a logistic-regression probe is trained on a stratified
# part of the head's samples and scored on the rest (`residual_lib.analysis.probe`); its **skill** is
# (accuracy - chance) / (1 - chance). A head's descriptions *name* an attribute when they mention
# its values ("a red object" names colour); each head gets the attribute its TextSpan descriptions
# name most (several when tied). The boxes in each row mark those attributes; the colour is what the
# probe finds.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Linear-probe skill of every attribute for each head; boxes mark the attributes the head's TextSpan descriptions name most."}, "image": {"alt": "Linear-probe skill of every attribute for each head; boxes mark the attributes the head's TextSpan descriptions name most."}}
fig = fig03.plot_probe(result)

# %% tags=["hide-input"]
if "probe_check" in result.tables:
    page.show(result.tables["probe_check"], caption="Attributes the descriptions name against the probe's best",
              decimals=2, missing="named_skill when the descriptions name no attribute, unnamed_skill when they "
              "name every one")

# %% [markdown]
# {glue:text}`probe_text`
#
# Whether the attributes the descriptions name are the ones the probes decode best, often enough to call the
# descriptions faithful labels, is decided at the top of this page against its stated criterion; the table
# above gives the evidence head by head.
