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
# # Reproduce
#
# The paper: *ResiDual Transformer Alignment with Spectral Decomposition*,
# [arXiv 2411.00246](https://arxiv.org/abs/2411.00246). The authors' code:
# [github.com/Flegyas/ResiDual](https://github.com/Flegyas/ResiDual) (where this companion's reading of the paper
# differs from that code, the {doc}`Protocol <protocol>` page says so). To run the pages on a model of your own:
# {doc}`../own_model`.
#
# Everything starts from a clone of the repository on a machine with Python 3.11. The first command
# creates the environment in `.venv` (pinned versions from `pyproject.toml`; conda users can use
# `environment.yml`, which holds the same pins) and installs the Jupyter kernel `residual`.

# %% [markdown]
# ## Toy profile (default, CPU, no network)
#
# ```bash
# make book            # trains the toy CLIP, executes every notebook, builds the site
# make test            # the test suite, including a build of the smoke book checked in headless Chromium
# ```
#
# The site is `book/_build/html/index.html`. The toy model and the unit caches are kept under
# `artifacts/`, so a second `make book` reuses them.

# %% [markdown]
# ## Smoke profile (smallest counts, every code path)
#
# ```bash
# make book PROFILE=smoke
# ```

# %% [markdown]
# ## Paper profile (the paper's models and datasets, GPU and network)
#
# ```bash
# make reproduce PROFILE=paper MODELS="clip-b openclip-b" DATASETS="cifar10 dtd"
# ```
#
# `make reproduce` first extracts the unit caches the notebooks need
# (`python -m residual_lib.reproduce --profile paper --models ... --datasets ...`; resumable, and
# `EXECUTOR=slurm` submits them as a Slurm job array), then builds the book in that profile with the matching
# `-p` overrides (printed by `python -m residual_lib.reproduce --book-args`). Without `MODELS` and
# `DATASETS` it runs everything the paper profile's parameter files name. Models are the registered
# names (`clip-b`, `clip-l`, `openclip-b`, `openclip-l`, `blip-l`, `dinov2-l`, `vit-l`); datasets the
# manifests in `data_manifests/datasets/`.

# %% tags=["parameters", "hide-input"]
cost_profile = "paper"  # whose unit caches to cost: the profile's parameter files
gpu = "NVIDIA A100 (SXM, 80 GB)"  # the GPU the hours assume
peak_tflops = 19.5  # its peak float32 rate without TF32 (NVIDIA's data sheet; PyTorch's default for matmuls)
utilisation = 0.5  # the share of that peak an extraction reaches (an assumption, stated on the page)

# %% [markdown]
# ## What the paper profile costs
#
# The paper profile's GPU work is extracting the unit caches its pages read (`python -m residual_lib.reproduce`):
# {glue:text}`n_caches` caches of {glue:text}`n_models` models, {glue:text}`images:,` images in all. Extracting them
# takes about **{glue:text}`gpu_hours:.0f` GPU hours** and **{glue:text}`disk_gb:,.0f` GB** of disk, assuming
# {glue:text}`gpu` at {glue:text}`utilisation:.0%` of its peak float32 rate ({glue:text}`peak_tflops` TFLOP/s; the
# extraction runs in float32). The hours count arithmetic only: reading, decoding and resizing the images on the CPU
# can take longer than the GPU's work for the base-size models, so give each GPU several data-loading cores.
# Section 4's {glue:text}`n_training_jobs` training runs (linear, ResiDual and finetuned aligners on the caches) are
# not in this estimate.
#
# How it is computed (`residual_lib.reproduce.cost`), with no number typed in: the caches are the planner's (each
# page's `caches(params)` under the profile's parameter files); a cache's images are its `n`, or its split's size in
# the dataset manifest; the FLOPs per image are those of one extraction pass (the model's forward pass and its split
# into units), counted by `torch.utils.flop_counter` on the architecture built without weights; the disk is the cache
# format's (per image, d_head + 2 coordinates for every head, the EMB and MLP units in the cache's dtype, the model's
# embedding in float32; per model, the head bases).

# %% tags=["remove-input"]
from residual_lib.book import page
from residual_lib.reproduce import cost

per_cache, per_model, totals = cost.profile_cost(cost_profile, cost.Gpu(gpu, peak_tflops, utilisation))
page.glue_findings(totals)
page.show(per_model, caption="Per model: images, FLOPs per image, GPU hours and disk of its unit caches",
          decimals=1)

# %% tags=["remove-input"]
page.show(cost.by_dataset(per_cache), caption="Per model and dataset (all splits and sample sizes together)",
          decimals=2)

# %% [markdown]
# ## One notebook, other parameters
#
# ```bash
# .venv/bin/python -m residual_lib.book run --profile smoke --only environment -p device=cpu
# ```
#
# executes one page into `book/notebooks/` with its profile's parameter file and the override;
# `make book` (or `python -m residual_lib.book build`) rebuilds the site around it. A notebook whose
# cell raises makes `run`, `build`, `make book` and `make test` fail with the notebook's name, the
# cell's number and source, and the exception.

# %% [markdown]
# ## What is measured
#
# The runtime and peak memory of each notebook in the build you are reading are on the
# {doc}`build report <../build_report>` page; the machine it ran on is on the {doc}`environment <environment>` page.

# %% [markdown]
# ## Rerunning a page with other parameters
#
# Each notebook has one parameters cell; its values for each profile live in
# `notebooks/params/<profile>/<name>.yaml` (with shared keys in `notebooks/params/<profile>/_defaults.yaml`).
# From the repository root:
#
# ```bash
# # one page, smoke profile, one parameter changed; writes book/notebooks/environment.ipynb
# .venv/bin/python -m residual_lib.book run --profile smoke --only environment -p device=cpu
# # every page of a profile, then the site
# .venv/bin/python -m residual_lib.book build --profile toy
# ```
#
# `-p key=value` takes a YAML value (`-p n_images=500`, `-p datasets=[toy-colour,toy-shape]`) and applies to
# every selected notebook that declares the key. Plain papermill works too, without the provenance block:
#
# ```bash
# .venv/bin/jupytext --to ipynb notebooks/environment.py -o /tmp/environment.ipynb
# .venv/bin/papermill -k residual --cwd . /tmp/environment.ipynb /tmp/environment-out.ipynb \
#     -f notebooks/params/smoke/environment.yaml -p device cpu
# ```
