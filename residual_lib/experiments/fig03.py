"""Figure 3 (and 8): TextSpan against OMP on one principal component of each head (Section 3.2).

For every head of the last `last_layers` layers: `k` descriptions by TextSpan on the head's samples,
`k` by OMP on its principal component `pc`, and the Z-score of their agreement
(`residual_lib.analysis.agreement`); on the toy world, linear probes say which attribute each head carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..store import cache
from ..report import plots_pursuit, style
from ..analysis.agreement import textspan_omp_agreement
from ..store.cache import CacheKey
from ..models.registry import load_model
from ..paper.reference import reference
from ..report.plots_spectral import model_display
from ..analysis.pursuit import signals_from_units, text_atoms
from ..data.text_dictionary import text_dictionary
from ..units.unit_set import parse_unit
from .base import CacheDtype, ComputeParams, Dictionary, ParamsError, Result, computes, positive, readings_text


# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol); the paper profile sets these.
AUTHORS = {"textspan_center": False, "omp_normalize": False}
PAPER_MODEL = "OpenCLIP-L"  # the model whose heads Figures 3, 4b and 8 name


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "toy-clip"  # a registered model with a text tower, or an open_clip architecture
    dataset: str = "toy-mixed"  # the samples each head is decomposed on (the paper: ImageNet)
    split: str = "train"
    n: int | None = 2000  # images in the cache; None: the whole split
    seed: int = 0
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    dictionary: Dictionary = "toy"  # "gandelsman-general" is the paper's
    k: int = 5  # descriptions per head and method
    pc: int = 1  # OMP on this principal component (PC1 for Figure 3, PC2 for Figure 8)
    extra_pcs: list[int] = field(default_factory=list)  # also computed and saved, not drawn ([2]: Figure 8)
    last_layers: int = 4  # heads of the last this-many layers (the paper: 4 of OpenCLIP-L's 24)
    project: bool = True  # project the dictionary on each head's span first (TextSpan's preprocessing)
    probe_attributes: bool = True  # the images have known attributes (toy world): check against linear probes
    probe_test_fraction: float = 0.3
    # where the paper's text and the authors' code differ (residual_lib.paper.protocol; the paper profile sets theirs):
    textspan_center: bool = True  # project on the centred span (True) or the uncentred samples' (the authors')
    omp_normalize: bool = True  # OMP on unit-norm projected atoms (True) or on the atoms as projected (the authors')

    def check(self) -> None:
        positive(self, "n", "batch_size", "k", "pc", "last_layers")
        if any(pc < 1 or pc == self.pc for pc in self.extra_pcs):
            raise ParamsError(f"parameter extra_pcs={self.extra_pcs!r} must hold PCs >= 1 other than pc={self.pc}")
        if not 0 < self.probe_test_fraction < 1:
            raise ParamsError(f"parameter probe_test_fraction={self.probe_test_fraction!r} must be in (0, 1)")


def caches(p: Params) -> list[CacheKey]:
    """The one cache of the model on the dataset."""
    return [CacheKey(p.model_name, p.dataset, p.split, p.n, p.seed, p.cache_dtype)]


def figure_number(pc: int) -> str:
    """The paper's figure for OMP on PC `pc`: 3 (PC1), 8 (PC2), else '3 (PCn)'."""
    return {1: "3", 2: "8"}.get(pc, f"3 (PC{pc})")


@computes
def run(p: Params) -> Result:
    """Agreement of TextSpan and OMP per head (for `pc` and each of `extra_pcs`), the descriptions of the extreme
    heads (and of the heads the paper names, on its model), and the probe check."""
    key, = caches(p)
    model = load_model(key.model, device=p.device)
    if not 1 <= p.last_layers <= model.n_layers:
        raise ParamsError(f"fig03: parameter last_layers={p.last_layers!r} must be between 1 and "
                          f"{model.n_layers}, the layers of {key.model}")
    units = cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())
    texts = text_dictionary(p.dictionary)
    first_layer = model.n_layers - p.last_layers
    heads = [u for u in units.heads if parse_unit(u)[1] >= first_layer]
    signals = signals_from_units(units, heads, device=p.device)
    atoms = text_atoms(model, texts)
    runs = {pc: _agreement(signals, atoms, texts, p, pc) for pc in [p.pc, *p.extra_pcs]}
    table, figure, chosen, _ = runs[p.pc]
    omp = f"OMP{p.pc}"
    paper = reference("fig3_agreement")
    tables = {
        "agreement": table,
        "fig3_agreement": pd.concat([_figure_rows(t, f, pc) for pc, (t, f, _, _) in runs.items()], ignore_index=True),
        "descriptions": pd.concat([
            pd.DataFrame({"head": row.unit, "|Z|": abs(row.z), "random sets' |Z| (95%)": row.z_random95,
                          "z_set": row.z_set, "rank": range(1, p.k + 1),
                          "TextSpan": row.TextSpan, omp: row[omp]}) for _, row in table.loc[chosen].iterrows()],
            ignore_index=True),
        "fig3_descriptions": pd.concat([_description_rows(*run, pc, p.k) for pc, run in runs.items()],
                                       ignore_index=True),
        "paper_descriptions": _paper_descriptions(figure),
    }
    findings = _findings(table, paper[paper.pc == p.pc].z, p.pc) | {"figures_text": figures_text(p)}
    artifacts = {"paper_agreement": paper}
    if p.probe_attributes:
        skills, check, text = _probe(units, heads, table, p)
        tables |= {"probe_skill": skills, "probe_check": check}
        artifacts["probe_named"] = check.set_index("unit").text_attribute
    else:
        text = ("This dataset's images have no known attributes (parameter `probe_attributes` is off), "
                "so there is no probe check on this build.")
    return Result(p, tables=tables, findings=findings | {"probe_text": text, "readings": readings_text(p, AUTHORS)},
                  artifacts=artifacts)


def _agreement(signals, atoms, texts: list[str], p: Params, pc: int):
    """(per-head agreement with the descriptions as text, figure, rows described, {row: role}) for OMP on PC pc.

    Described: each layer's heads of highest and lowest |Z|, and, on the paper's model, the heads its figure names.
    """
    table = textspan_omp_agreement(signals, atoms, k=p.k, pc=pc, project=p.project, seed=p.seed, device=p.device,
                                   center=p.textspan_center, normalize=p.omp_normalize)
    table["TextSpan"] = [[texts[j] for j in row] for row in table.textspan]
    table[f"OMP{pc}"] = [[texts[j] for j in row] for row in table.omp]
    figure = figure_number(pc)
    by_layer = table.assign(absz=table.z.abs()).groupby("layer").absz
    roles = paper_heads(figure) if model_display(p.model_name) == PAPER_MODEL else {}
    named = {i: roles[(row.layer, row["head"])] for i, row in table.iterrows() if (row.layer, row["head"]) in roles}
    return table, figure, sorted(set(by_layer.idxmax()) | set(by_layer.idxmin()) | set(named)), named


def paper_heads(figure: str) -> dict[tuple[int, int], str]:
    """(layer, head) -> role of the heads the paper's figure describes (OpenCLIP-L)."""
    paper = reference("fig3_descriptions")
    paper = paper[paper.figure == figure]
    return {(int(r.layer), int(r["head"])): r.role for _, r in paper.drop_duplicates(["layer", "head"]).iterrows()}


def _figure_rows(table: pd.DataFrame, figure: str, pc: int) -> pd.DataFrame:
    return table.assign(figure=figure, pc=pc, z=table.z.abs())[["figure", "pc", "layer", "head", "z"]]


def _description_rows(table: pd.DataFrame, figure: str, chosen: list, named: dict, pc: int, k: int) -> pd.DataFrame:
    """The described heads in the paper's long format (figure, layer, head, role, method, rank, text)."""
    return pd.concat([
        pd.DataFrame({"figure": figure, "layer": row.layer, "head": row["head"], "role": named.get(i, ""),
                      "method": method, "rank": range(1, k + 1), "text": row[method]})
        for i, row in table.loc[chosen].iterrows() for method in ("TextSpan", f"OMP{pc}")], ignore_index=True)


FIGURE_OF_PC = {1: "Figure 3", 2: "Figure 8"}  # the paper's figure of each principal component


def figures_text(p: Params) -> str:
    """Which of the paper's figures this run computed (the page's title names only Figure 3)."""
    ran = [p.pc, *p.extra_pcs]
    named = [f"PC{pc} ({FIGURE_OF_PC[pc]})" if pc in FIGURE_OF_PC else f"PC{pc}" for pc in ran]
    missing = [f"{figure} (PC{pc}; parameter extra_pcs=[{pc}])" for pc, figure in FIGURE_OF_PC.items() if pc not in ran]
    return (f"This build computed {' and '.join(named)}" + (f", not {' or '.join(missing)}" if missing else "")
            + "; the figures below draw PC" + f"{p.pc}.")


def _findings(table: pd.DataFrame, paper_z: pd.Series, pc: int) -> dict:
    z = table.z.abs()
    return {
        "n_heads": len(table), "z_mean": float(z.mean()), "z_max": float(z.max()),
        "z_max_head": table.unit[z.idxmax()], "z_min_head": table.unit[z.idxmin()], "z_min": float(z.min()),
        "share_z1": float((z > 1).mean()), "share_zset2": float((table.z_set.abs() > 2).mean()),
        # z's null spread on the paper's scale: the |Z| that 95% of random description sets stay under
        "z_random95_mean": float(table.z_random95.mean()), "share_above_random": float((z > table.z_random95).mean()),
        "paper_z_mean": float(paper_z.mean()), "paper_share_z1": float((paper_z > 1).mean()), "pc": pc,
    }


def _paper_descriptions(figure: str) -> pd.DataFrame:
    """The paper's descriptions for this figure: one row per head and rank, one column per method."""
    paper = reference("fig3_descriptions")
    paper = paper[paper.figure == figure] if figure in set(paper.figure) else paper.iloc[:0]
    panel = (paper.assign(head=lambda d: "L" + d.layer.astype(str) + ".H" + d["head"].astype(str) + " (" + d.role + ")")
             .pivot_table(index=["head", "rank"], columns="method", values="text", aggfunc="first"))
    panel.columns = [style.paper_label(c) for c in panel.columns]
    return panel.reset_index()


def _probe(units, heads: list[str], table: pd.DataFrame, p: Params) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Probe skill per head and attribute, the text-vs-probe check per head, and the sentence the page quotes."""
    from ..analysis.probe import cache_attributes, mentioned_attributes, probe_accuracy, skill, text_vs_probe
    from ..toy.world import ATTRIBUTES

    skills = skill(probe_accuracy(units, cache_attributes(units), heads, test_fraction=p.probe_test_fraction,
                                  seed=p.seed))
    check = text_vs_probe(dict(zip(table.unit, table.TextSpan)), skills, ATTRIBUTES)
    named = check.dropna(subset=["text_attribute"])
    mentioned = {a for described in table.TextSpan for t in described for a in mentioned_attributes(t, ATTRIBUTES)}
    best = check.probe_attribute.value_counts()
    text = (
        f"The descriptions of {len(named)} of the {len(check)} heads name an attribute of the toy world. For "
        f"{int(named.agree.sum())} of them the attribute named most (ties counted) is the one the probe decodes "
        f"best from that head; the best-named attribute's skill averages {named.text_attribute_skill.mean():.2f} "
        f"against {named.probe_skill.mean():.2f} for the head's best attribute. Averaged over heads, the "
        f"attributes a head's descriptions name at least once have probe skill {check.named_skill.mean():.2f}, "
        f"the attributes they never name {check.unnamed_skill.mean():.2f}. Attributes no head's descriptions "
        f"mention at all: {', '.join(sorted(set(skills.columns) - mentioned)) or 'none'}. The attribute the "
        f"probe decodes best is {best.index[0]} on {int(best.iloc[0])} of the {len(check)} heads.")
    return skills, check, text


def plot_agreement(result: Result):
    """|Z| per layer and head: this build's beside the paper's OpenCLIP-L panel for the same PC."""
    p = result.params
    return plots_pursuit.plot_agreement(result.tables["agreement"], result.artifacts["paper_agreement"], p.pc,
                                        p.model_name)


def plot_probe(result: Result):
    """Probe skill per head and attribute, boxes on the attributes its descriptions name most (None without probes)."""
    if "probe_skill" not in result.tables:
        return None
    p = result.params
    return plots_pursuit.plot_probe_skill(result.tables["probe_skill"], result.artifacts["probe_named"],
                                          f"Linear-probe skill per head ({p.model_name}, {p.dataset}); "
                                          "boxes: attributes its TextSpan descriptions name most")


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`)."""
    model = model_display(result.params.model_name)  # the ledger's row for this page names the model it ran
    tables = {"agreement": result.tables["agreement"].assign(model=model, pc=result.params.pc)[
        ["model", "unit", "pc", "z", "z_random95"]]}
    if "probe_check" in result.tables:
        tables["probe"] = result.tables["probe_check"].assign(model=model)[
            ["model", "unit", "agree", "named_skill", "unnamed_skill"]]
    return tables
