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

# %% tags=["parameters"]
model_name = "toy-clip"  # a registered toy model (data_manifests/models)
training_profile = "toy"  # its training profile (the manifest's `pretrained`): where its curve lives
tasks = ["toy-shape", "toy-colour", "toy-pattern", "toy-position", "toy-size"]
ood = ["toy-sketch", "toy-textured", "toy-digits", "toy-noise"]
split = "test"
n_eval = 2000  # images per dataset for the zero-shot accuracies (the first n of the split)
n_samples = 16  # images in the sample grid
seed = 0

# %%
from IPython.display import display
from myst_nb import glue

from residual_lib import style
from residual_lib.datasets import dataset_spec, load_dataset
from residual_lib.models import load_model
from residual_lib.toy import plots
from residual_lib.toy.data import captioned_samples
from residual_lib.toy.evaluate import zero_shot_table
from residual_lib.toy.train import training_record

style.apply()
model = load_model(model_name, device="cpu")
curve, manifest = training_record(training_profile)

# %% [markdown]
# ## Samples and their captions
#
# Each image holds one object. Its caption states a random subset of the attributes in one of several
# phrasings, so the text tower has to learn each attribute word rather than one template. During training
# every caption that is true of an image counts as a positive for it.

# %%
images, captions = captioned_samples(n_samples, seed)
fig = plots.image_grid(images, captions, ncols=8)

# %% [markdown]
# ## Out-of-distribution sets
#
# One row each: sketches (outlines only, the ImageNet-Sketch analogue), the same objects on random
# textures, scikit-learn's bundled handwritten digits (real images, upsampled to 32 pixels) and uniform
# noise (the paper's "Random").

# %%
rows, titles = [], []
for name in ood:
    data = load_dataset(name, split)
    spec = dataset_spec(name)
    for i in range(8):
        rows.append(data.images[i].numpy())
        titles.append(f"{name.removeprefix('toy-')}: {spec.class_names[int(data.labels[i])]}"
                      if name != "toy-noise" else "noise")
fig = plots.image_grid(rows, titles, ncols=8)

# %% [markdown]
# ## Training
#
# Symmetric contrastive (CLIP) loss over image-caption batches, with every true caption a positive, from
# a seeded pool of generated images; the checkpoint's sha256 is recorded in its manifest and the same seed
# gives the same bytes on the same machine.

# %%
fig = plots.training_curve(curve)
glue("train_steps", int(manifest["config"]["steps"]), display=False)
glue("train_batch", int(manifest["config"]["batch_size"]), display=False)
glue("train_minutes", manifest["train_seconds"] / 60, display=False)
glue("n_parameters", manifest["n_parameters"] / 1e6, display=False)
glue("checkpoint_sha", manifest["sha256"][:12], display=False)

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

# %%
table = zero_shot_table(model, tasks + ood, split=split, n=n_eval)
display(table.style.format({"chance": "{:.1%}", "accuracy": "{:.1%}"}).hide(axis="index"))
fig = plots.zero_shot_bars(table)
task_rows = table[table["dataset"].isin(tasks)]
glue("worst_task", task_rows.loc[task_rows["accuracy"].idxmin(), "dataset"], display=False)
glue("worst_task_acc", 100 * float(task_rows["accuracy"].min()), display=False)
glue("mean_task_acc", 100 * float(task_rows["accuracy"].mean()), display=False)
glue("digits_acc", 100 * float(table.loc[table["dataset"] == "toy-digits", "accuracy"].iloc[0])
     if "toy-digits" in set(table["dataset"]) else float("nan"), display=False)

# %% [markdown]
# Mean zero-shot accuracy over the attribute tasks: {glue:text}`mean_task_acc:.1f`%; the weakest task is
# {glue:text}`worst_task` at {glue:text}`worst_task_acc:.1f`%. On the digits, which no caption ever
# describes, it is {glue:text}`digits_acc:.1f`% (chance 10%).
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
