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
# # Figure 4 (and 9-15): spectral similarity of heads across datasets
#
# Section 3.3 of the paper: does a head do the same thing on every input distribution? For each
# head, its principal components on the reference dataset are compared with its principal
# components on another dataset by the **normalised spectral cosine similarity** (Eq. 2-4): absolute
# cosines between the two sets of components, greedily matched largest first, each matched pair
# weighted by the two components' eigenvalues, normalised to [0, 1]. A value near 1 means the head
# spans the same directions with the same weights on both datasets. The heatmap has one row per
# dataset (ordered by mean similarity, most similar first, as in the paper) and one column per
# head, layer by layer. With several models, the correlation of their dataset profiles is Figure 9.

# %% tags=["parameters"]
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
evr_threshold = 0.9  # each head's basis keeps the components that explain this much variance
n_standout = 3  # heads described with SOMP (Fig 4b)
dictionary = "toy"  # text dictionary for SOMP: "toy", or "gandelsman-general" (the paper's)
somp_k = 5  # descriptions per head
somp_aggregate = "l2"  # l2: SOMP equals TextSpan (App. A.2); l1: the variant in the authors code
attribute_probe = True  # toy world only: check the descriptions against linear probes of the known attributes

# %%
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from myst_nb import glue

from residual_lib import cache, results, style
from residual_lib.datasets import dataset_spec
from residual_lib.models import load_model
from residual_lib.paper import reference
from residual_lib.plots_spectral import (dataset_display, model_display, order_agreement, order_table,
                                         plot_cross_model_correlation, plot_similarity_heatmaps)
from residual_lib.spectral import cross_model_correlation, dataset_order, dataset_similarities, similarity_matrix

style.apply()
pd.set_option("display.max_colwidth", None)  # SOMP descriptions are read in full


def n_for(name: str, wanted: int) -> int | None:
    """`wanted` images, or None (the whole split) when the split is smaller."""
    return None if dataset_spec(name).splits[split]["size"] <= wanted else wanted


tables, reference_caches, loaded = [], {}, {}
for name in models:
    model = load_model(name, device=device)
    label = model_display(name)
    extract = dict(split=split, seed=seed, device=device, batch_size=batch_size, dtype=cache_dtype)
    ref = cache.extract(model, reference_dataset, n=n_for(reference_dataset, n_reference), **extract)
    others = {dataset_display(d): cache.extract(model, d, n=n_for(d, n), **extract) for d in datasets}
    tables.append(dataset_similarities(ref, others, evr_threshold=evr_threshold, device=device).assign(model=label))
    reference_caches[label], loaded[label] = ref, model
similarities = pd.concat(tables, ignore_index=True)

# %% [markdown]
# ## Head-by-head similarity with the reference dataset (Fig 4a, 10-15)

# %%
matrices = {m: similarity_matrix(t) for m, t in similarities.groupby("model", sort=False)}
fig = plot_similarity_heatmaps(matrices, dataset_display(reference_dataset))

# %% [markdown]
# ## Dataset order: this build beside the paper's
#
# The paper orders the rows of each heatmap by mean similarity with ImageNet. For a model of the
# paper, the table sets our order beside the paper's figure for that model; for another model
# (the toy build), beside Figure 4a (OpenCLIP-L), whose datasets are not ours.

# %%
paper_orders = reference("fig4_order")
order_rows, agreements = [], {}
for m, table in similarities.groupby("model", sort=False):
    ours = dataset_order(table)
    paper_model = m if m in set(paper_orders["model"]) else "OpenCLIP-L"
    theirs = paper_orders[paper_orders["model"] == paper_model]
    figure = theirs["figure"].iloc[0] if m == paper_model else "ours"
    order_rows += [{"figure": figure, "model": m, "rank": i + 1, "dataset": d} for i, d in enumerate(ours)]
    agreements[m] = order_agreement(ours, theirs)
    print(m)
    display(order_table(ours, theirs))
_ = results.save(pd.DataFrame(order_rows), "fig4_order")

# %%
first = next(iter(matrices))
first_table = similarities[similarities["model"] == first]
by_layer = first_table.groupby("layer")["similarity"].mean()
by_dataset = first_table.groupby("dataset")["similarity"].mean().sort_values(ascending=False)
glue("first_model", first, display=False)
glue("reference_name", dataset_display(reference_dataset), display=False)
glue("sim_first_layer", float(by_layer.iloc[0]), display=False)
glue("sim_last_layer", float(by_layer.iloc[-1]), display=False)
glue("top_dataset", by_dataset.index[0], display=False)
glue("top_sim", float(by_dataset.iloc[0]), display=False)
glue("bottom_dataset", by_dataset.index[-1], display=False)
glue("bottom_sim", float(by_dataset.iloc[-1]), display=False)
glue("median_k", float(first_table["k_b"].median()), display=False)
roles = {dataset_display(d): dataset_spec(d).role for d in datasets}
by_role = first_table.assign(role=first_table["dataset"].map(roles)).groupby("role")["similarity"].mean()
glue("role_text", "; ".join(f"{role} datasets {value:.2f}" for role, value in by_role.items()), display=False)
rho = agreements[first]
glue("order_rho", "not defined (fewer than three datasets in common with the paper's)" if np.isnan(rho)
     else f"{rho:.2f}", display=False)
by_layer.rename("mean similarity over heads and datasets").to_frame().T.round(3)

# %% [markdown]
# ## Heads that stand out, described with SOMP (Fig 4b)
#
# A head "stands out" for a dataset when its similarity falls furthest below the mean of its
# layer's heads on that dataset. Each such head is described by SOMP over the model's text
# embeddings of the dictionary (unit-normalised), run on the head's representation of the
# **reference** dataset: the description says what the head encodes in general, the heatmap says
# on which dataset that changes. Models without a text tower have no descriptions.

# %%
from residual_lib.pursuit import signals_from_units, somp  # noqa: E402
from residual_lib.spectral import standout_heads  # noqa: E402
from residual_lib.text_dictionary import text_dictionary  # noqa: E402

standout = standout_heads(first_table, n=n_standout)
model = loaded[first]
if model.has_text:
    texts = text_dictionary(dictionary)
    with torch.no_grad():
        atoms = model.encode_text(texts).float()
    atoms = (atoms / atoms.norm(dim=1, keepdim=True)).cpu().numpy()
    signals = signals_from_units(reference_caches[first], standout["unit"].tolist(), device=device)
    described = somp(signals, atoms, k=somp_k, aggregate=somp_aggregate, device=device).texts(texts)
    standout["SOMP descriptions"] = [" | ".join(described[u]) for u in standout["unit"]]
display(standout.round(3))

# %% [markdown]
# **Ground truth (toy world).** The toy images have known attributes, so a linear probe on each
# standout head's reference representation says what the head really carries (skill: 0 at chance,
# 1 perfect). The table sets the attribute the SOMP descriptions name most beside the attribute the
# probe decodes best. Read it with the skill table: an attribute that nearly every head decodes
# (one that changes many pixels, such as the background) makes agreement cheap, so the specific
# attributes (the other columns) say more about what a head is for.

# %%
probe_text = "No attribute probe in this build (the datasets have no known attributes)."
if attribute_probe and model.has_text:
    from residual_lib.probe import cache_attributes, probe_accuracy, skill, text_vs_probe  # noqa: E402
    from residual_lib.toy.world import ATTRIBUTES  # noqa: E402

    ref = reference_caches[first]
    skills = skill(probe_accuracy(ref, cache_attributes(ref), names=standout["unit"].tolist(), seed=seed))
    check = text_vs_probe(described, skills, ATTRIBUTES)
    probe_text = (f"For {int(check['agree'].sum())} of the {len(check)} standout heads the attribute named most "
                  "by the SOMP descriptions is the one a linear probe decodes best.")
    display(skills.round(2))
    display(check.round(2))
glue("probe_text", probe_text, display=False)

# %%
paper_4b = reference("fig3_descriptions")
paper_4b = paper_4b[paper_4b["figure"] == "4b"]
(paper_4b.assign(head=lambda d: "L" + d["layer"].astype(str) + ".H" + d["head"].astype(str))
 .groupby(["head", "role"], sort=False)["text"].apply(" | ".join).rename(style.paper_label("Fig 4b, OpenCLIP-L"))
 .to_frame())

# %% [markdown]
# ## Cross-model correlation of dataset profiles (Fig 9)
#
# For each model, the mean similarity (over heads) of every dataset with the reference gives a
# profile over datasets; Figure 9 is the Pearson correlation of these profiles between models. It
# needs at least two models in `models`; otherwise only the paper's panel is drawn.

# %%
corr = cross_model_correlation(similarities) if len(matrices) > 1 else None
if corr is not None:
    _ = results.save(corr.rename_axis(index="model_a", columns="model_b").stack().rename("pearson").reset_index(), "fig9")
    off = corr.to_numpy()[~np.eye(len(corr), dtype=bool)]
    glue("corr_text", f"The mean off-diagonal correlation across this build's {len(corr)} models is {off.mean():.2f}.",
         display=False)
else:
    glue("corr_text", "This build has one model, so it has no cross-model correlation of its own.", display=False)
paper_corr = reference("fig9")
glue("paper_corr_mean", float(paper_corr.loc[paper_corr["model_a"] != paper_corr["model_b"], "pearson"].mean()),
     display=False)
fig = plot_cross_model_correlation(corr, paper_corr)

# %% [markdown]
# ## What this build shows
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
# Mean similarity by the datasets' role in their manifests: {glue:text}`role_text`.
#
# **Choices** (Eq. 3-4 leave them open; tested in `tests/test_spectral.py`): the weights are the PCA
# eigenvalues (the measure does not change when a weight set is rescaled, so explained-variance
# ratios would give the same number); each basis keeps the leading components that explain more
# than 90% of the head's variance (median kept here: {glue:text}`median_k:.0f`); the greedy
# matching maximises the cosine alone and the weights only scale the matched pair; the
# normaliser pairs the n-th largest weights of the two sets, which bounds the measure by 1. Each
# dataset's PCA is computed on its own subset, so the measure needs no sample alignment.
