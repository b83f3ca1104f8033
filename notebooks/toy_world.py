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
# # The toy world
#
# Pretrained CLIP weights cannot be downloaded on the machine that builds this book, yet every analysis of
# the paper needs a real vision-language transformer with real attention heads. So the project makes its
# own: a procedurally generated world of small images whose attributes are known (shape, colour, pattern,
# position, size, background), captions that describe them, and a tiny CLIP with open_clip's own
# architecture trained on it, deterministically, on the CPU. Because the ground truth is known, the book
# can check the paper's claims about heads against it (does the head that SOMP calls "colour" carry colour
# under a linear probe?).

# %% tags=["parameters", "hide-input"]
model_name = "toy-clip"  # a registered toy model (data_manifests/models)
training_profile = "toy"  # its training profile (the manifest's `pretrained`): where its curve lives
tasks = ["toy-shape", "toy-colour", "toy-pattern", "toy-position", "toy-size"]
ood = ["toy-sketch", "toy-textured", "toy-digits", "toy-noise"]
split = "test"
n_eval = 2000  # images per dataset for the zero-shot accuracies (the first n of the split)
n_samples = 12  # images in the sample grid
section4_profile = "toy"  # whose Table 1 and Figure 5 parameter files name the tasks defined below
n_examples = 6  # example images per Section 4 task
seed = 0
threads = None  # CPU threads of torch, BLAS and OpenMP (None: the libraries' own; the toy profile: 1)

# %% tags=["hide-input"]
from residual_lib.book import page
from residual_lib.report import style
from residual_lib.experiments import toy_world

style.apply()
result = toy_world.run(page.params(toy_world.Params, globals()))
page.glue_findings(result.findings)

# %% [markdown]
# ## Samples and their captions
#
# Each image holds one object. Its caption states a random subset of the attributes in one of several
# phrasings, so the text tower has to learn each attribute word rather than one template. During training
# every caption that is true of an image counts as a positive for it.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Generated toy images with one of their captions."}, "image": {"alt": "Generated toy images with one of their captions."}}
fig = toy_world.plot_samples(result)

# %% [markdown]
# ## Out-of-distribution sets
#
# One row each: sketches (outlines only, the ImageNet-Sketch analogue), the same objects on random
# textures, scikit-learn's bundled handwritten digits (real images, upsampled to 32 pixels) and uniform
# noise (the paper's "Random").

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The out-of-distribution sets: sketches, textured objects, scikit-learn's digits and noise."}, "image": {"alt": "The out-of-distribution sets: sketches, textured objects, scikit-learn's digits and noise."}}
fig = toy_world.plot_ood(result)

# %% [markdown]
# ## Training
#
# Symmetric contrastive (CLIP) loss over image-caption batches, with every true caption a positive, from
# a seeded pool of generated images; the checkpoint's sha256 is recorded in its manifest and the same seed
# gives the same bytes on the same machine.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The toy CLIP's contrastive training loss."}, "image": {"alt": "The toy CLIP's contrastive training loss."}}
fig = toy_world.plot_training(result)

# %% [markdown]
# The model ({glue:text}`n_parameters:.1f` M parameters, most of them the tokenizer's 49,408-row embedding) was
# trained for {glue:text}`train_steps` steps of {glue:text}`train_batch` images in
# {glue:text}`train_minutes:.1f` minutes; checkpoint sha256 {glue:text}`checkpoint_sha` (first 12 hex digits).

# %% [markdown]
# ## Zero-shot accuracy
#
# Each attribute is a classification task with the manifest's class names and prompt templates
# (e.g. "a photo of a {}." for shape), classified by cosine similarity to the averaged template
# embeddings. The captions never mention numbers, sketches or noise, so the out-of-distribution
# accuracies measure transfer, not skill the training taught.

# %% tags=["hide-input"]
page.show(result.tables["zero_shot"], caption="Zero-shot accuracy on the test split (chance: one over the classes)")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Zero-shot accuracy of the toy CLIP per task, beside chance."}, "image": {"alt": "Zero-shot accuracy of the toy CLIP per task, beside chance."}}
fig = toy_world.plot_zero_shot(result)

# %% [markdown]
# Mean zero-shot accuracy over the attribute tasks: {glue:text}`mean_task_acc:.1f`%; the weakest task is
# {glue:text}`worst_task` at {glue:text}`worst_task_acc:.1f`%. On the digits, which no caption ever
# describes, it is {glue:text}`digits_acc:.1f`% (chance 10%).
#
# (toy-world-section4-tasks)=
# ## The tasks of Section 4
#
# Table 1 and Figure 5 (the paper's Section 4) align the model to tasks, so they need tasks with room and signal:
# where the toy CLIP's zero-shot accuracy is well above chance (there is something to align) and well below what
# finetuning reaches (there is room to gain). In the table above the toy CLIP has no room on the plain attribute
# tasks (near their ceiling) and no signal on the full shifts (near chance), so the toy profile's tasks are
# *partial shifts*: sketches drawn with bolder lines, textures laid faintly over the usual background. The
# {glue:text}`section4_profile` profile's {glue:text}`n_section4` tasks, read from the Section 4 pages' own
# parameter files ({glue:text}`section4_text`), with the toy CLIP's zero-shot accuracy on the test split and its
# 95% Wilson interval:

# %% tags=["hide-input"]
page.show(result.tables["section4"], caption="The Section 4 tasks, their chance and the toy CLIP's zero-shot accuracy")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Test images of each Section 4 task, each under its class."}, "image": {"alt": "Test images of each Section 4 task, each under its class."}}
fig = toy_world.plot_section4_examples(result)

# %% [markdown]
# The smallest margin of zero-shot accuracy over chance among these tasks is {glue:text}`section4_min_margin:.1f`
# points; Table 1 and Figure 5 read their own zero-shot accuracy (B, Base) on their own test images, with the
# gap to full finetuning on the Figure 5 page.
#
# ## How this world maps onto the paper's
#
# The paper decomposes CLIP-like models trained on web data and probes them with ImageNet (the reference
# distribution that the model's training resembles) and a dozen task datasets, each of which isolates some
# property: digits (MNIST, SVHN), textures (DTD), scenes (SUN397), satellites (EuroSAT, RESISC45), and
# shifted renderings (ImageNet-Sketch, PACS), plus pure noise ("Random") as a dataset with no content at all.
# Here `toy-mixed` (every attribute drawn at random) plays ImageNet's reference role, each attribute task
# (`toy-shape`, `toy-colour`, ...) plays a task dataset that isolates one property, `toy-sketch` and
# `toy-textured` are the shifted renderings, scikit-learn's digits are real images far outside the
# training distribution, and `toy-noise` is "Random". The world is small enough to train in minutes on a
# CPU, and, unlike the paper's data, the true attribute of every image is known.
