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
# # Figure 3 (and 8): TextSpan against OMP on a principal component
#
# Section 3.2 of the paper asks whether TextSpan, which explains a head's whole representation with
# a few text descriptions, is mostly describing the head's first principal component. For every head
# of the last layers it picks `k` descriptions with **TextSpan** (Gandelsman et al. 2024) on the
# head's samples and `k` with **OMP** on one principal component of the head (PC1: Figure 3; PC2:
# Figure 8), and scores how close the two sets are with a Z-score.
#
# **The score, as this page computes it** (`residual_lib.agreement`). The paper compares "the cosine
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

# %% tags=["parameters"]
model_name = "toy-clip"  # a registered model with a text tower, or an open_clip architecture
dataset = "toy-mixed"  # the samples each head is decomposed on (the paper: ImageNet)
split = "train"
n = 2000  # images in the cache
seed = 0
cache_dtype = "float32"
batch_size = 64
device = "auto"
dictionary = "toy"  # text dictionary by name: "toy" or "gandelsman-general" (the paper's)
k = 5  # descriptions per head and method
pc = 1  # OMP on this principal component (PC1 for Figure 3, PC2 for Figure 8)
last_layers = 4  # heads of the last this-many layers (the paper: 4 of OpenCLIP-L's 24)
project = True  # project the dictionary on each head's span first (TextSpan's preprocessing)
probe_attributes = True  # the dataset's images have known attributes (toy world): check against linear probes
probe_test_fraction = 0.3

# %%
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from residual_lib import cache, results, style
from residual_lib.agreement import textspan_omp_agreement
from residual_lib.models import load_model
from residual_lib.paper import reference
from residual_lib.plots_pursuit import plot_agreement
from residual_lib.pursuit import signals_from_units, text_atoms
from residual_lib.text_dictionary import text_dictionary
from residual_lib.units import parse_unit

style.apply()
pd.set_option("display.max_colwidth", None)
model = load_model(model_name, device=device)
units = cache.extract(model, dataset, split=split, n=n, seed=seed, device=device, batch_size=batch_size,
                      dtype=cache_dtype)
texts = text_dictionary(dictionary)
atoms = text_atoms(model, texts)
first_layer = model.n_layers - last_layers
heads = [u for u in units.heads if parse_unit(u)[1] >= first_layer]
signals = signals_from_units(units, heads, device=device)
table = textspan_omp_agreement(signals, atoms, k=k, pc=pc, project=project, seed=seed, device=device)
table["TextSpan"] = [[texts[j] for j in row] for row in table.textspan]
table[f"OMP{pc}"] = [[texts[j] for j in row] for row in table.omp]

# %% [markdown]
# ## Agreement per head
#
# Left: this build, |Z| for every head of the last layers. Right: the paper's values for OpenCLIP-L
# (layers 20-23, 16 heads each), for the same principal component.

# %%
fig = plot_agreement(table, reference("fig3_agreement"), pc, model_name)

# %%
z = table.z.abs()
glue("n_heads", len(table), display=False)
glue("z_mean", float(z.mean()), display=False)
glue("z_max", float(z.max()), display=False)
glue("z_max_head", table.unit[z.idxmax()], display=False)
glue("z_min_head", table.unit[z.idxmin()], display=False)
glue("z_min", float(z.min()), display=False)
glue("share_z1", float((z > 1).mean()), display=False)
glue("share_zset2", float((table.z_set.abs() > 2).mean()), display=False)
paper_z = reference("fig3_agreement").query("pc == @pc").z
glue("paper_z_mean", float(paper_z.mean()), display=False)
glue("paper_share_z1", float((paper_z > 1).mean()), display=False)
glue("pc", pc, display=False)
figure_no = {1: "3", 2: "8"}.get(pc, f"3 (PC{pc})")
_ = results.save(table.assign(figure=figure_no, pc=pc, z=z)[["figure", "pc", "layer", "head", "z"]], "fig3_agreement")

# %% [markdown]
# Over the {glue:text}`n_heads` heads, the mean |Z| is {glue:text}`z_mean:.2f` (the paper's
# OpenCLIP-L panel for this PC: {glue:text}`paper_z_mean:.2f`), and a share of
# {glue:text}`share_z1:.2f` of the heads have |Z| > 1 (paper: {glue:text}`paper_share_z1:.2f`).
# The head whose OMP on PC{glue:text}`pc` agrees most with TextSpan is {glue:text}`z_max_head`
# (|Z| = {glue:text}`z_max:.2f`), the one that agrees least is {glue:text}`z_min_head`
# (|Z| = {glue:text}`z_min:.2f`). With the set-level null, a share of {glue:text}`share_zset2:.2f`
# of the heads lie more than two standard scores from a random description set.

# %% [markdown]
# ## Descriptions side by side
#
# For each layer, the head with the highest |Z| and the one with the lowest: TextSpan's `k`
# descriptions (in pick order) beside OMP's on the principal component. Below, the paper's examples.

# %%
by_layer = table.assign(absz=z).groupby("layer").absz
chosen = sorted(set(by_layer.idxmax()) | set(by_layer.idxmin()))
for i in chosen:
    row = table.loc[i]
    print(f"{row.unit}  |Z| = {abs(row.z):.2f}  (z_set = {row.z_set:.2f})")
    display(pd.DataFrame({"TextSpan": row.TextSpan, f"OMP{pc}": row[f"OMP{pc}"]}, index=range(1, k + 1)))

# %%
paper_desc = reference("fig3_descriptions")
paper_desc = paper_desc[paper_desc.figure == figure_no] if figure_no in set(paper_desc.figure) else paper_desc.iloc[:0]
paper_panel = (paper_desc.assign(head=lambda d: "L" + d.layer.astype(str) + ".H" + d["head"].astype(str) + " (" + d.role + ")")
               .pivot_table(index=["head", "rank"], columns="method", values="text", aggfunc="first"))
paper_panel.columns = [style.paper_label(c) for c in paper_panel.columns]
paper_panel

# %%
_ = results.save(pd.concat([
    pd.DataFrame({"figure": figure_no, "layer": row.layer, "head": row["head"], "role": "", "method": method,
                  "rank": range(1, k + 1), "text": row[col]})
    for _, row in table.loc[chosen].iterrows() for method, col in (("TextSpan", "TextSpan"), (f"OMP{pc}", f"OMP{pc}"))]),
    "fig3_descriptions")

# %% [markdown]
# ## Does a linear probe agree with the text decomposition?
#
# The paper cannot check what a head "really" encodes; the toy world can. For each head and each
# attribute of the images (shape, colour, ...), a logistic-regression probe is trained on a stratified
# part of the head's samples and scored on the rest (`residual_lib.probe`); its **skill** is
# (accuracy - chance) / (1 - chance). A head's descriptions *name* an attribute when they mention
# its values ("a red object" names colour); each head gets the attribute its TextSpan descriptions
# name most (several when tied). The boxes in each row mark those attributes; the colour is what the
# probe finds.

# %%
if probe_attributes:
    from residual_lib.plots_pursuit import plot_probe_skill
    from residual_lib.probe import cache_attributes, mentioned_attributes, probe_accuracy, skill, text_vs_probe
    from residual_lib.toy.world import ATTRIBUTES

    labels = cache_attributes(units)
    skills = skill(probe_accuracy(units, labels, heads, test_fraction=probe_test_fraction, seed=seed))
    check = text_vs_probe(dict(zip(table.unit, table.TextSpan)), skills, ATTRIBUTES)
    fig = plot_probe_skill(skills, check.set_index("unit").text_attribute,
                           f"Linear-probe skill per head ({model_name}, {dataset}); "
                           "boxes: attributes its TextSpan descriptions name most")
    named = check.dropna(subset=["text_attribute"])
    mentioned = {a for described in table.TextSpan for t in described for a in mentioned_attributes(t, ATTRIBUTES)}
    glue("probe_text", (
        f"The descriptions of {len(named)} of the {len(check)} heads name an attribute of the toy world. For "
        f"{int(named.agree.sum())} of them the attribute named most (ties counted) is the one the probe decodes "
        f"best from that head; the best-named attribute's skill averages {named.text_attribute_skill.mean():.2f} "
        f"against {named.probe_skill.mean():.2f} for the head's best attribute. Averaged over heads, the "
        f"attributes a head's descriptions name at least once have probe skill {check.named_skill.mean():.2f}, "
        f"the attributes they never name {check.unnamed_skill.mean():.2f}. Attributes no head's descriptions "
        f"mention at all: {', '.join(sorted(set(skills.columns) - mentioned)) or 'none'}."), display=False)
    display(check.round(2))
else:
    glue("probe_text", "This dataset's images have no known attributes (parameter `probe_attributes` is off), "
         "so there is no probe check on this build.", display=False)

# %% [markdown]
# {glue:text}`probe_text`
#
# Where the probe and the descriptions disagree, TextSpan's words name something the head does not
# separate linearly (or the head carries several attributes and the dictionary's pairs name the
# other one); where they agree, the text decomposition is a faithful label for the head.
