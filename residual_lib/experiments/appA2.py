"""Appendix A.2: TextSpan equals SOMP with the L2 criterion, checked on every head of a model.

TextSpan, SOMP (L2) and the authors' SOMP (L1) run on every head in float64 with two dictionaries: the
text embeddings as they are and projected on each head's span (`pursuit.compare_textspan_somp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..store import cache
from ..report import plots_pursuit
from ..store.cache import CacheKey
from ..models.registry import load_model
from ..report.plots_spectral import model_display
from ..analysis.pursuit import compare_textspan_somp, project_dictionary, signals_from_units, text_atoms
from ..data.text_dictionary import text_dictionary
from .base import CacheDtype, ComputeParams, Dictionary, Result, computes, positive, readings_text

RAW, PROJECTED = "raw dictionary", "projected on each head's span"


# The reading parameters and the authors' code's value of each (residual_lib.paper.protocol); the paper profile sets these.
AUTHORS = {"textspan_center": False}


@dataclass(frozen=True)
class Params(ComputeParams):
    model_name: str = "toy-clip"  # a registered model with a text tower, or an open_clip architecture
    dataset: str = "toy-mixed"
    split: str = "train"
    n: int | None = 2000  # images in the cache; None: the whole split
    seed: int = 0
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    dictionary: Dictionary = "toy"  # "gandelsman-general" is the paper's
    k: int = 10  # atoms per head
    tolerance: float = 1e-5  # largest allowed |R_TextSpan - R_SOMP| entry
    # the span the projected dictionary is projected on: centred (True) or the uncentred samples' (the authors')
    textspan_center: bool = True

    def check(self) -> None:
        positive(self, "n", "batch_size", "k", "tolerance")


def caches(p: Params) -> list[CacheKey]:
    """The one cache of the model on the dataset."""
    return [CacheKey(p.model_name, p.dataset, p.split, p.n, p.seed, p.cache_dtype)]


@computes
def run(p: Params) -> Result:
    """TextSpan against SOMP (L2 and L1) on every head, with the raw and the projected dictionary."""
    key, = caches(p)
    model = load_model(key.model, device=p.device)
    units = cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())
    atoms = text_atoms(model, text_dictionary(p.dictionary))
    signals = signals_from_units(units, units.heads, device=p.device)
    by_dictionary = {
        RAW: compare_textspan_somp(signals, atoms, p.k, device=p.device),
        PROJECTED: compare_textspan_somp(signals, project_dictionary(atoms, signals, center=p.textspan_center), p.k, device=p.device),
    }
    heads = pd.concat([t.assign(dictionary=name) for name, t in by_dictionary.items()], ignore_index=True)
    return Result(p, tables={"summary": _summary(by_dictionary, p.k),
                             "heads": heads[["dictionary", *by_dictionary[RAW].columns]]},
                  findings=_findings(by_dictionary, p), artifacts={"by_dictionary": by_dictionary})


def _summary(by_dictionary: dict[str, pd.DataFrame], k: int) -> pd.DataFrame:
    """One row per measure, one column per dictionary, formatted as the page prints them."""
    return pd.DataFrame({name: {
        "heads": len(t),
        "same atoms, same order (TextSpan vs SOMP L2)": int(t.same_atoms.sum()),
        "max |R_TextSpan - R_SOMP| over all heads": f"{t.max_residual_diff.max():.1e}",
        "median residual norm per sample": f"{t.residual_norm.median():.3f}",
        "heads where SOMP L1 picks the same sequence": int(t.l1_same_atoms.sum()),
        "mean atoms shared by SOMP L1 and TextSpan": f"{t.l1_overlap.mean():.2f} of {k}",
    } for name, t in by_dictionary.items()}, dtype=object).rename_axis("measure").reset_index()


def _findings(by_dictionary: dict[str, pd.DataFrame], p: Params) -> dict:
    raw, proj = by_dictionary[RAW], by_dictionary[PROJECTED]
    both = pd.concat(by_dictionary.values())
    departed = both[both.l1_first_departure > 0].l1_first_departure
    return {
        "n_heads": len(raw), "k": p.k,
        "equal_text": "every head, with both dictionaries" if both.same_atoms.all() else
        f"{int(raw.same_atoms.sum())} heads with the raw dictionary and {int(proj.same_atoms.sum())} with the "
        "projected one (ties between atoms scored equal to round-off decide the rest)",
        "max_diff": float(both.max_residual_diff.max()),
        "within_tol": "within" if both.max_residual_diff.max() < p.tolerance else "NOT within",
        "tolerance": p.tolerance,
        "l1_same_raw": int(raw.l1_same_atoms.sum()), "l1_same_proj": int(proj.l1_same_atoms.sum()),
        "l1_first_median": float(departed.median()) if len(departed) else float("nan"),
        "l1_overlap": float(both.l1_overlap.mean()),
        "l1_first_same": float((both.l1_first_departure != 1).mean()),
        "readings": readings_text(p, AUTHORS),
    }


def per_head(result: Result, dictionary: str = RAW) -> pd.DataFrame:
    """The per-head comparison with one dictionary, residual differences in scientific notation for reading."""
    t = result.tables["heads"]
    t = t[t.dictionary == dictionary].drop(columns="dictionary")
    return t.assign(max_residual_diff=t.max_residual_diff.map("{:.1e}".format))


def plot(result: Result):
    """Per head and dictionary: log10 of the TextSpan-SOMP residual difference and L1 SOMP's first departure."""
    return plots_pursuit.plot_equivalence(result.artifacts["by_dictionary"], result.params.k)


def claim_tables(result: Result) -> dict[str, pd.DataFrame]:
    """The tables the claim ledger reads from this page (`residual_lib.claims.TABLES`): every head, both dictionaries."""
    heads = result.tables["heads"]
    return {"equivalence": pd.DataFrame({"model": model_display(result.params.model_name), "unit": heads["unit"],
                                         "identical_atoms": heads["same_atoms"].astype(bool),
                                         "max_residual_difference": heads["max_residual_diff"]})}
