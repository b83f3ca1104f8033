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
# # Figure 5 and Table 2 (and 6, 16): ResiDual alignment
#
# Section 4.2 of the paper. ResiDual rescales each residual unit along its principal components,
# `RD(X) = Phi^-1 diag(lambda) Phi (X - mu)` (Eq. 6), and sums the rescaled units (Eq. 7); only the
# scales lambda are trained, with the task's zero-shot classifier frozen. Phi and mu come from the
# reference dataset (the paper: ImageNet; the toy world: its mixed distribution). Variants: **RD** (all
# heads and MLPs), **RD\*** (heads only, PCs up to 90% explained variance), **RDY** (ResiDual on the
# output embedding). Baselines: **Base** (the model), **Lin** (an affine map of the output embedding) and
# **Full finetuning** of the vision tower. Every method trains with one loop: Schedule-Free AdamW, the
# learning rate from an LR range test, at most 30 epochs, early stopping with patience 5 on validation
# accuracy, best weights restored.
#
# Choices where the paper is silent (all in `residual_lib.residual`, tested): mu is not added back
# (as in the authors' code); lambda starts at exactly 1 rather than 1 plus noise (each lambda has its
# own gradient, so there is no symmetry to break, and the untrained method is the centred model); RD
# keeps the top d_head PCs of each head (a head's points span d_head + 2 dimensions, the paper's
# parameter count keeps d_head) and all PCs of each MLP, and passes the embedding unit through
# centred and unscaled; Lin has a bias (the paper's BLIP-L count, 65.8k = 256^2 + 256, has one) and
# sees the output centred on the reference mean, as RDY does, so it starts where RDY starts and can
# represent every RDY (without centring its bias must first travel the length of the mean).
# Epoch 0 of every run is the untrained method, so early stopping can keep it.

# %% tags=["parameters"]
models = ["toy-clip"]  # registered model names or open_clip architectures
datasets = ["toy-shape", "toy-colour", "toy-pattern", "toy-position", "toy-size"]  # zero-shot tasks
reference_dataset = "toy-mixed"  # where Phi and mu come from (the paper: ImageNet train)
n_reference = 2000  # reference images for the PCA (the Figure 2 page uses the same cache); None: the whole split
n_train = 2000  # training images per task; None: the whole split
n_val = 500  # validation images (early stopping); None: all
n_test = 1000  # test images; None: all
seed = 0
methods = ["Lin", "RD", "RD*", "RDY"]  # Table 2's columns
rd_star_variance = 0.9  # RD*: explained variance kept per head (the paper: 90%)
max_epochs = 30  # the paper: 30
patience = 5  # the paper: 5
train_batch_size = 64  # the authors: 64
finetune = True  # Full finetuning of the vision tower (expensive beyond the toy model: GPU)
finetune_max_epochs = 8  # finetuning budget (the paper: 30; the toy build keeps it short)
finetune_lr = None  # None: the LR range test picks it
dictionary = "toy"  # text dictionary for the OMP descriptions of amplified components
probe_dataset = "toy-colour"  # the task whose per-PC scales are drawn head by head
n_components_described = 6
cache_dtype = "float32"
batch_size = 64
device = "auto"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue
from scipy.stats import spearmanr

from residual_lib import results, style
from residual_lib.alignment import (describe_components, full_finetuning, head_scale_grid, in_memory, load_task,
                                    residual_alignment, top_components)
from residual_lib.cache import extract
from residual_lib.device import resolve_device
from residual_lib.models import load_model
from residual_lib.paper import reference
from residual_lib.plots_spectral import dataset_display, model_display
from residual_lib.residual import Architecture
from residual_lib.training import TrainConfig

style.apply()
dev = str(resolve_device(device))
config = TrainConfig(max_epochs=max_epochs, patience=patience, batch_size=train_batch_size, device=dev, seed=seed)
ft_config = TrainConfig(max_epochs=finetune_max_epochs, patience=patience, batch_size=train_batch_size, device=dev,
                        seed=seed, lr=finetune_lr, max_lr=1e-1)
trained, archs, first_model = {}, {}, None
for name in models:
    model = load_model(name, device=dev)
    label = model_display(name)
    first_model = first_model or (name, model)
    archs[label] = Architecture.from_model(model)
    reference_units = in_memory(extract(model, reference_dataset, split="train", n=n_reference, seed=seed, device=dev,
                                        batch_size=batch_size, dtype=cache_dtype))
    for ds in datasets:
        task = load_task(model, ds, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, device=dev,
                         batch_size=batch_size, dtype=cache_dtype)
        out = residual_alignment(task, archs[label], reference_units, methods, config, rd_star_variance)
        if finetune:
            out["Full finetuning"] = full_finetuning(model, task, n_train, n_val, n_test, seed, ft_config)
        trained[(label, dataset_display(ds))] = out
accuracy = pd.DataFrame([{"model": m, "dataset": d, "method": k, "accuracy": t.test_accuracy}
                         for (m, d), out in trained.items() for k, t in out.items()])
params = pd.DataFrame([{"model": m, "method": k, "params": int(np.median(
    [trained[(m, d)][k].method.n_params for d in accuracy.loc[accuracy["model"] == m, "dataset"].unique()]))}
    for m in archs for k in methods])

# %% [markdown]
# ## Figure 5: Base, Lin, ResiDual and Full finetuning per task
#
# Test accuracy of each alignment method per task (ResiDual here is RD, the paper's original
# formulation). The paper's Figure 5 values are not transcribed; its Table 2 (Lin and the ResiDual
# variants, below) carries the same comparison.

# %%
bars = ["Base", "Lin", "Full finetuning", "RD"]
bars = [b for b in bars if b in set(accuracy["method"])]
shades = {"Base": "#b0b0b0", "Lin": "#7fa6d6", "Full finetuning": "#2a9d8f", "RD": style.OURS}
fig, axes = plt.subplots(1, len(archs), figsize=(max(6, 1.3 * len(datasets)) * len(archs), 3.8), squeeze=False)
for ax, label in zip(axes.flat, archs):
    part = accuracy[accuracy["model"] == label].pivot(index="dataset", columns="method", values="accuracy")
    part = part.reindex([dataset_display(d) for d in datasets])
    x = np.arange(len(part))
    width = 0.8 / len(bars)
    for i, b in enumerate(bars):
        ax.bar(x + i * width, part[b].to_numpy(), width, color=shades[b], label="ResiDual (RD)" if b == "RD" else b)
    ax.set(xticks=x + 0.4 - width / 2, ylim=(0, 1.05), ylabel="test accuracy", title=label)
    ax.set_xticklabels(part.index, rotation=30, ha="right")
axes.flat[0].legend(fontsize=8, ncol=2, loc="lower left")
fig.tight_layout()

# %% [markdown]
# ## Table 2: Lin, RD, RD*, RDY and their parameter counts
#
# Test accuracy per task with the mean over tasks and the number of trained parameters (RD* keeps PCs up
# to an explained-variance threshold, so its count can vary a little between tasks: the median is
# shown). The paper's Table 2 (BLIP-L, CLIP-L, OpenCLIP-L) and Table 6 (CLIP-B, OpenCLIP-B) follow,
# labelled as the paper's; where a model of this build is one of the paper's, the difference follows too.

# %%
table_methods = [m for m in ["Base", *methods, "Full finetuning"] if m in set(accuracy["method"])]


def with_counts(wide: pd.DataFrame, counts: dict, add_average: bool = True, decimals: int = 3) -> pd.DataFrame:
    """Accuracies (3 decimals), their Average (unless the table has its own), then a #params row."""
    wide = wide.copy()
    if add_average:
        wide.loc["Average"] = wide.mean()
    shown = wide.map(lambda v: "" if pd.isna(v) else f"{v:.{decimals}f}")
    shown.loc["#params"] = [f"{int(counts[m]):,}" if m in counts else "" for m in wide.columns]
    return shown


for label in archs:
    part = accuracy[accuracy["model"] == label].pivot(index="dataset", columns="method", values="accuracy")
    part = part.reindex(index=[dataset_display(d) for d in datasets], columns=table_methods)
    counts = dict(params[params["model"] == label].set_index("method")["params"])
    counts["Base"] = 0
    if "Full finetuning" in table_methods:
        counts["Full finetuning"] = trained[(label, part.index[0])]["Full finetuning"].method.n_params
    print(label)
    display(with_counts(part, counts))

paper_acc, paper_params = reference("table2"), reference("table2_params")
print(style.paper_label("Tables 2 and 6"))
paper_tables = []
for label, part in paper_acc.groupby("model", sort=False):
    wide = part.pivot(index="dataset", columns="method", values="accuracy").reindex(
        index=part["dataset"].unique(), columns=["Lin", "RD", "RD*", "RDY"])
    counts = dict(paper_params[paper_params["model"] == label].set_index("method")["params"])
    paper_tables.append(with_counts(wide, counts, add_average=False, decimals=2).assign(model=label).set_index("model", append=True).swaplevel())
display(pd.concat(paper_tables))
shared = sorted(set(archs) & set(paper_acc["model"]))
for label in shared:
    merged = accuracy[accuracy["model"] == label].merge(paper_acc, on=["model", "dataset", "method"], suffixes=("", "_paper"))
    merged["ours - paper"] = merged["accuracy"] - merged["accuracy_paper"]
    print(f"{label}: ours minus the paper's")
    display(merged.pivot(index="dataset", columns="method", values="ours - paper").round(3))
glue("shared_models", ", ".join(shared) if shared else "none", display=False)

# %% [markdown]
# Models shared with the paper in this build: {glue:text}`shared_models`.
#
# **Parameter counts without weights.** The same method objects report their counts from an
# architecture alone (open_clip's configs, no weights loaded): the paper's RD and Lin counts follow
# from the architectures, RD* needs the reference data.

# %%
from residual_lib.residual import make_method  # noqa: E402

arch_rows = []
for paper_model, arch_name in [("CLIP-L", "ViT-L-14"), ("OpenCLIP-L", "ViT-L-14"), ("CLIP-B", "ViT-B-32"),
                               ("OpenCLIP-B", "ViT-B-32")]:
    arch = Architecture.from_open_clip(arch_name)
    for method in ["Lin", "RD", "RDY"]:
        arch_rows.append({"model": paper_model, "method": method, "ours (from the architecture)":
                          make_method(method, arch).n_params})
count_check = pd.DataFrame(arch_rows).merge(paper_params, on=["model", "method"]).rename(
    columns={"params": style.paper_label("#params")})
display(count_check)

# %% [markdown]
# ## The learning-rate range test
#
# For the first model and every task, each method's training loss over one exponential sweep of
# learning rates (Smith 2017; faint: each step's batch, solid: smoothed); the dashed line is the rate the
# test picked (steepest descent of the smoothed loss). A task the model cannot read gives a flat curve,
# and the picked rate is then noise. The table gives the epoch that early stopping kept (0: the
# untrained method).

# %%
keys = [k for k in trained if k[0] == model_display(first_model[0])]
cols = min(3, len(keys))
fig, axes = plt.subplots(-(-len(keys) // cols), cols, figsize=(4.6 * cols, 3.4 * -(-len(keys) // cols)), squeeze=False)
for ax, key in zip(axes.flat, keys):
    for method, t in trained[key].items():
        if t.result is not None and t.result.lr_range is not None:
            t.result.lr_range.plot(ax, label=f"{method} ({t.result.lr:.2g})")
    ax.set_title(key[1])
    ax.legend(fontsize=6)
for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
fig.suptitle(f"LR range tests, {keys[0][0]} (picked rate in the legend)")
fig.tight_layout()
epochs = pd.DataFrame([{"model": m, "dataset": d, "method": k, "lr": t.result.lr, "epochs run": t.result.epochs_run,
                        "best epoch": t.result.best_epoch} for (m, d), out in trained.items() for k, t in out.items()
                       if t.result is not None])
display(epochs.pivot_table(index=["model", "dataset"], columns="method", values="best epoch").astype(int))

# %% [markdown]
# ## What ResiDual amplified
#
# What only an interpretable method can show. For the first model, each task's RD scales averaged over
# the PCs of each head (a layer x head map; 1 is "unchanged", above 1 amplified, below suppressed), then
# the scale of every kept PC of every head for one task.

# %%
label0 = model_display(first_model[0])
arch0 = archs[label0]
tasks0 = [dataset_display(d) for d in datasets]
grids = {d: head_scale_grid(trained[(label0, d)]["RD"].method, arch0) for d in tasks0}
cols = min(5, len(grids))
fig, axes = plt.subplots(-(-len(grids) // cols), cols, figsize=(3.0 * cols, 2.7 * -(-len(grids) // cols)), squeeze=False)
for ax, (d, g) in zip(axes.flat, grids.items()):
    span = max(1e-3, float(np.nanmax(np.abs(g.to_numpy() - 1))))  # each task on its own scale, centred at 1
    im = ax.imshow(g.to_numpy(), cmap=style.CMAP_DIV, vmin=1 - span, vmax=1 + span)
    ax.set(title=d, xlabel="head", ylabel="layer", xticks=range(arch0.n_heads), yticks=range(arch0.n_layers))
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.75)
for ax in list(axes.flat)[len(grids):]:
    ax.axis("off")
fig.suptitle("mean RD lambda over each head's PCs (1: unchanged)")
fig.tight_layout()

# %%
probe_task = dataset_display(probe_dataset)
rd_probe = trained[(label0, probe_task)]["RD"].method
scales = rd_probe.unit_scales()
heads = [u for u in scales if ".H" in u]
matrix = np.array([scales[h] for h in heads])
fig, ax = plt.subplots(figsize=(7, 0.25 * len(heads) + 1.2))
pc_span = max(1e-3, float(np.abs(matrix - 1).max()))
im = ax.imshow(matrix, aspect="auto", cmap=style.CMAP_DIV, vmin=1 - pc_span, vmax=1 + pc_span, interpolation="nearest")
ax.grid(False)
ax.set(yticks=range(len(heads)), yticklabels=heads, xlabel="principal component (reference PCA order)",
       title=f"RD scales per head and PC, {label0} on {probe_task}")
fig.colorbar(im, ax=ax, label="lambda")
fig.tight_layout()

# %% [markdown]
# ### The most amplified components, described in words
#
# The components with the largest scale for each task, each described by the three texts of the
# dictionary that orthogonal matching pursuit (OMP, `residual_lib.pursuit.omp`; on one vector SOMP is
# OMP) picks for its direction in the output space (sign: whether the text points along or against it).
# Tasks where early stopping kept the untrained method (every lambda 1) have nothing to describe; here:
# {glue:text}`untrained_tasks`.

# %%
from residual_lib.text_dictionary import text_dictionary  # noqa: E402

texts = text_dictionary(dictionary)
moved = [d for d in tasks0 if trained[(label0, d)]["RD"].result.best_epoch > 0]
kept_untrained = [d for d in tasks0 if d not in moved]
if moved:
    described = pd.concat([describe_components(trained[(label0, d)]["RD"].method,
                                               top_components(trained[(label0, d)]["RD"].method, n_components_described),
                                               texts, first_model[1].encode_text).assign(task=d) for d in moved])
    display(described[["task", "unit", "pc", "scale", "description"]].round(3))
glue("untrained_tasks", ", ".join(kept_untrained) if kept_untrained else "none", display=False)

# %% [markdown]
# ### Does ResiDual amplify the heads that carry the task's attribute?
#
# The toy world knows every image's attributes, so a linear probe per head (`residual_lib.probe`,
# held-out accuracy of a logistic regression on the head's coordinates of the task's test images) says
# which heads carry each task's attribute. Beside it, each head's mean RD scale for that task; the
# scatter plots show the tasks where RD was trained.

# %%
from residual_lib.probe import probe_accuracy  # noqa: E402

rows, per_task = [], {}
for ds in datasets:
    d = dataset_display(ds)
    units = load_task(first_model[1], ds, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, device=dev,
                      batch_size=batch_size, dtype=cache_dtype).test
    table = probe_accuracy(units, {d: units.labels}, names=units.heads, progress=False).set_index("unit")
    table["mean lambda"] = head_scale_grid(trained[(label0, d)]["RD"].method, arch0).stack().to_numpy()
    per_task[d] = table
    top_probe, top_scale = list(table["accuracy"].nlargest(3).index), list(table["mean lambda"].nlargest(3).index)
    rho = spearmanr(table["accuracy"], table["mean lambda"])[0] if table["mean lambda"].std() > 0 else np.nan
    if d not in moved:  # every scale is 1: no head is amplified
        top_scale, rho = [], np.nan
    rows.append({"task": d, "RD trained": d in moved, "best probe heads": ", ".join(top_probe),
                 "most amplified heads": ", ".join(top_scale), "in common": len(set(top_probe) & set(top_scale)),
                 "Spearman(probe, lambda)": rho})
probe_summary = pd.DataFrame(rows).set_index("task")
display(probe_summary.round(2))
fig, axes = plt.subplots(1, len(moved) or 1, figsize=(4.2 * max(1, len(moved)), 3.6), squeeze=False)
for ax, d in zip(axes.flat, moved):
    table = per_task[d]
    ax.scatter(table["accuracy"], table["mean lambda"], color=style.OURS)
    for h, r in table.iterrows():
        ax.annotate(h, (r["accuracy"], r["mean lambda"]), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.axhline(1, color="grey", lw=0.8)
    ax.axvline(float(table["chance"].iloc[0]), color="grey", lw=0.8, ls=":")
    ax.set(xlabel="probe accuracy (held out)", ylabel="mean RD lambda", title=d)
if not moved:
    axes[0, 0].axis("off")
fig.tight_layout()
colour = probe_summary.loc[probe_task] if probe_task in probe_summary.index else None
glue("probe_task", probe_task, display=False)
glue("probe_moved", "was trained" if colour is not None and colour["RD trained"] else
     "kept its untrained scales (early stopping found no epoch better than the model itself)", display=False)
glue("probe_top", colour["best probe heads"] if colour is not None else "", display=False)
glue("scale_top", (colour["most amplified heads"] or "none") if colour is not None else "", display=False)
glue("mean_rho_moved", float(probe_summary.loc[probe_summary["RD trained"], "Spearman(probe, lambda)"].mean())
     if moved else float("nan"), display=False)

# %% [markdown]
# On {glue:text}`probe_task`, ResiDual {glue:text}`probe_moved`; the heads whose probes read the
# attribute best are {glue:text}`probe_top`, the heads with the largest mean scale {glue:text}`scale_top`.
# Over the tasks where RD was trained, the mean Spearman correlation between a head's probe accuracy and
# its mean scale is {glue:text}`mean_rho_moved:.2f`. A probe measures what a head *carries*; a scale
# measures what the classifier *needed from it* beyond what the rest of the residual already supplies, so
# the two need not agree: a task the output already solves leaves every scale at 1.

# %%
means = accuracy.groupby("method")["accuracy"].mean()
for key, method in [("avg_base", "Base"), ("avg_lin", "Lin"), ("avg_rd", "RD"), ("avg_rdstar", "RD*"),
                    ("avg_rdy", "RDY"), ("avg_ft", "Full finetuning")]:
    glue(key, float(means.get(method, np.nan)), display=False)
rd_params = params.set_index(["model", "method"])["params"]
glue("first_label", label0, display=False)
glue("rd_params", int(rd_params.get((label0, "RD"), 0)), display=False)
glue("rdstar_params", int(rd_params.get((label0, "RD*"), 0)), display=False)
glue("lin_params", int(rd_params.get((label0, "Lin"), 0)), display=False)
_ = results.save(accuracy[accuracy["method"].isin(["Lin", "RD", "RD*", "RDY"])], "table2")
_ = results.save(params, "table2_params")

# %% [markdown]
# ## What this build shows
#
# Averaged over tasks and models, the unmodified model reaches {glue:text}`avg_base:.3f`; the linear
# aligner {glue:text}`avg_lin:.3f`, RD {glue:text}`avg_rd:.3f`, RD\* {glue:text}`avg_rdstar:.3f`, RDY
# {glue:text}`avg_rdy:.3f`, and full finetuning {glue:text}`avg_ft:.3f` (nan when switched off). On
# {glue:text}`first_label` these cost {glue:text}`lin_params` parameters (Lin), {glue:text}`rd_params`
# (RD) and {glue:text}`rdstar_params` (RD\*). The paper's claims to check against
# these numbers: RD matches Lin with far fewer parameters, RD\* stays close to RD with about a third of
# them, and RDY falls behind, most where the task's features are not aligned at the output.
