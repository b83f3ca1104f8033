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
# # Build environment
#
# The software and the machine this build of the book ran on. Every other page's provenance block
# names its device and commit; this page adds the versions of the packages the numbers depend on. The commit
# is the checkout's last commit; a build from a checkout with uncommitted changes names the files that differ.

# %% tags=["parameters", "hide-input"]
device = "auto"  # torch device of the build: "auto" (CUDA when visible, else CPU), "cpu" or "cuda"
packages = [  # distributions whose installed versions are listed
    "torch", "torchvision", "open_clip_torch", "timm", "transformers", "numpy", "scipy", "scikit-learn",
    "scikit-dimension", "pandas", "matplotlib", "jupyter-book", "myst-nb", "papermill", "jupytext",
]

# %%
import pandas as pd
from myst_nb import glue

from residual_lib import __version__
from residual_lib.book import provenance

machine = provenance.machine(device)
versions = provenance.package_versions(packages)
glue("cpus", machine["cpus"], display=False)
glue("device", machine["device"], display=False)
glue("gpu_seen", "a CUDA GPU was visible" if machine["cuda_available"] else "no CUDA GPU was visible",
     display=False)
commit = provenance.describe_commit(provenance.git_commit(), provenance.changed_files())
pd.DataFrame({"value": {"residual_lib": __version__, "commit": commit, **machine}}).rename_axis("machine")

# %% [markdown]
# This build ran on {glue:text}`cpus` CPU cores; {glue:text}`gpu_seen`, and the notebooks computed on
# the device {glue:text}`device`.

# %%
pd.DataFrame({"version": versions}).rename_axis("package")
