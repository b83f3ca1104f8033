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
# # Head atlas
#
# Every attention head of every model in this build, the way the paper reads them. The grid has one
# cell per head (rows: layers, input first), coloured by the quantity chosen above it: linear ID,
# TwoNN ID, L / N, EVR1 (Section 3.1), spectral similarity to another dataset (Section 3.3) or, in the
# toy world, a linear probe's accuracy for one attribute. Clicking a head opens its card: its IDs and
# spectrum; its first principal components, each with the images at both ends and, for a model with a
# text tower, OMP's descriptions of the component (Section 3.2) beside the end each points to; its
# TextSpan and SOMP descriptions, each placed by the component it lines up with; its similarity to
# each dataset; and, in the toy world, what a linear probe decodes from it (the ground truth beside
# the words). The search box ranks heads by the share of their variance that the descriptions using a
# word explain ("colour", "striped", "red"), each with its probe accuracy for the attribute the word
# names. The real networks (DINOv2-S, CLIP-B/16's image tower) have no text tower, so their cards have no
# descriptions; their probes decode the class of the real reference images (Fashion-MNIST), and their
# similarities are to the real-model page's datasets. Everything is one static file per model (its data inlined, about 200 lines of
# JavaScript, no network); a link below each opens it on its own, and `#unit=L3.H1` in its address
# opens that head's card.

# %% tags=["parameters", "hide-input"]
models = ["toy-clip"]  # one atlas per model (registered names or open_clip architectures)
reference_dataset = "toy-mixed"  # the heads' PCA, IDs, descriptions, thumbnails and probes
datasets = ["toy-colour", "toy-shape", "toy-pattern", "toy-position", "toy-size", "toy-background",
            "toy-sketch", "toy-textured", "toy-digits", "toy-noise"]  # spectral similarity to each
split = "train"
n_reference = 2000  # images of the reference dataset (as Figures 2-4)
n = 1000  # images of every other dataset (all of a split if it is smaller; as Figure 4)
seed = 0
cache_dtype = "float32"
batch_size = 64
device = "auto"
dictionary = "toy"  # text dictionary: "toy" or "gandelsman-general" (the paper's)
k = 3  # descriptions per head and method, and per component
n_pcs = 3  # principal components on each card
n_thumbs = 4  # images at each end of a component
thumbnail_size = 32  # px on the longer side
threshold = 0.99  # linear ID
discard_fraction = 0.1  # TwoNN
evr_threshold = 0.9  # spectral similarity basis
probe_attributes = True  # the reference images have known attributes (toy world)
probe_test_fraction = 0.3
top = 5  # heads compared between the description and the probe rankings
network_models = ["dinov2-s", "clip-b16-image-112"]  # one atlas per real network, on the real-model page's caches
network_reference_dataset = "fashion-mnist"  # labelled: the probes decode its class
network_datasets = ["fashion-mnist/test", "sklearn-digits", "lfw-subset", "random"]  # "dataset" or "dataset/split"
network_n = [400, 100]  # images per compared dataset: one count, or one per real network (as the real-model page)
network_n_reference = [2000, 400]  # reference images: one count, or one per real network (as the real-model page)
page_dir = "book/_static/atlas"  # where the pages are written, relative to the repository root
embed_images = True  # thumbnails inside the page; false: files beside it, fetched per card (large models)
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)

# %% tags=["hide-input"]
import os

from IPython.display import HTML, display

from residual_lib.book import page
from residual_lib.experiments import atlas

result = atlas.run(page.params(atlas.Params, globals()))
page.glue_findings(result.findings)

# %% [markdown]
# Models: {glue:text}`atlas_models` ({glue:text}`atlas_n_heads` heads). The pages weigh
# {glue:text}`atlas_weight_kb:.0f` KiB together (the largest {glue:text}`atlas_largest_kb:.0f` KiB), most of
# it the {glue:text}`atlas_images` thumbnails, each stored once however many components it ends.

# %% tags=["hide-input"]
for name, path in result.artifacts["pages"].items():
    src = os.path.relpath(path, "book/notebooks")  # this notebook's folder in the book
    display(HTML(f'<p><a href="{src}" target="_blank">Open the atlas of {result.artifacts["docs"][name]["model_display"]} '
                 f'on its own page</a> ({atlas.page_weight(path) / 1024:.0f} KiB)</p>'
                 f'<iframe src="{src}" title="Head atlas of {name}" style="width:100%;height:1150px;'
                 f'border:1px solid #dde3ea;border-radius:6px"></iframe>'))

# %% [markdown]
# ## Do the words agree with the probes?
#
# For each attribute, the heads whose descriptions use it most (the page's search ranking, by the share
# of variance those descriptions explain) against the heads from which a linear probe decodes it best
# (skill, accuracy above chance scaled to 0-1), as many heads from each list as the parameter `top`
# says; `in_both` counts the heads on both lists. A model without a text tower, or a dataset without known attributes, has no rows.

# %% tags=["hide-input"]
page.show(result.tables["description_vs_probe"], caption="Top heads by description against top heads by probe")

# %% [markdown]
# {glue:text}`atlas_agreement`
