"""Linear probes per unit and attribute: the toy world's ground truth for what a head carries.

For each unit and each attribute (a label per sample), a multinomial logistic regression is fitted on a
stratified training split of the unit's representation and scored on the held-out rest. The features
are the unit's orthonormal coordinates, standardised: an orthonormal basis plus a shared offset is an
isometry of the output space, so a linear probe sees the same geometry at r = d_head + 2 features
instead of E. Accuracy is reported beside chance (the held-out share of the most frequent class).
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..device import cpu_threads
from ..units.unit_set import Units


def probe_accuracy(units: Units, labels: Mapping[str, np.ndarray], names: list[str] | None = None, *,
                   test_fraction: float = 0.3, C: float = 1.0, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Held-out accuracy of a linear probe for every (unit, attribute): columns unit, attribute, accuracy, chance.

    labels: {attribute: (n,) labels of the unit set's samples}
    names:  units to probe (None: all of the set's units)

    On a unit cache the table is stored (`residual_lib.store.stored`), keyed by the cache's content hash, the
    labels and the settings: the real-model page and the head atlas probe the same caches' heads, and the second
    reads the first's table.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r}; must be in (0, 1)")
    names = list(units.units) if names is None else list(names)
    compute = lambda: _probe_table(units, labels, names, test_fraction, C, seed, progress)  # noqa: E731
    content = (getattr(units, "manifest", None) or {}).get("content_sha256")
    if content is None:  # not a cache: nothing to key it by
        return compute()
    from ..store.stored import stored

    key = {"units": content, "names": names, "test_fraction": test_fraction, "C": C, "seed": seed,
           "labels": {a: hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest() for a, y in labels.items()}}
    return stored("probes", key, compute)


def _probe_table(units: Units, labels: Mapping[str, np.ndarray], names: list[str], test_fraction: float, C: float,
                 seed: int, progress: bool) -> pd.DataFrame:
    rows = []
    splits = {a: _split(np.asarray(y), test_fraction, seed, a) for a, y in labels.items()}
    # One BLAS/OpenMP thread: each fit is a few hundred tiny (n, r) products, for which threads cost more in
    # synchronisation than they save (16 heads x 6 attributes: 150 s -> 20 s wall on a loaded 2-core machine).
    with cpu_threads(1):
        for u in tqdm(names, desc="linear probes", disable=not progress):
            x = np.asarray(units.coords(u), dtype=np.float64)
            for attribute, (train, test, y) in splits.items():
                if len(y) != len(x):
                    raise ValueError(f"labels[{attribute!r}] has {len(y)} entries; unit {u!r} has {len(x)} samples")
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
                clf.fit(x[train], y[train])
                chance = np.unique(y[test], return_counts=True)[1].max() / len(test)
                rows.append((u, attribute, float(clf.score(x[test], y[test])), float(chance)))
    return pd.DataFrame(rows, columns=["unit", "attribute", "accuracy", "chance"])


def best_units(table: pd.DataFrame) -> pd.DataFrame:
    """Per attribute, the unit with the highest probe accuracy above chance: columns attribute, unit, accuracy, chance."""
    gain = table.assign(gain=table.accuracy - table.chance)
    return gain.loc[gain.groupby("attribute", sort=False).gain.idxmax(), ["attribute", "unit", "accuracy", "chance"]]


def skill(table: pd.DataFrame) -> pd.DataFrame:
    """Unit x attribute table of (accuracy - chance) / (1 - chance): 0 at chance, 1 perfect, comparable across attributes."""
    t = table.assign(skill=(table.accuracy - table.chance) / (1 - table.chance))
    return t.pivot(index="unit", columns="attribute", values="skill").loc[list(dict.fromkeys(t.unit))]


def cache_attributes(cache) -> dict[str, np.ndarray]:
    """{attribute: (n,) values} of a toy-dataset cache's samples, in cache row order (from its manifest)."""
    from ..store.cache import subsample
    from ..data.datasets import load_dataset

    p = cache.manifest["params"]
    data = load_dataset(p["dataset"], p["split"])
    if getattr(data, "attributes", None) is None:
        raise ValueError(f"dataset {p['dataset']!r} has no known attributes; only toy-world renderings do")
    rows = subsample(len(data), p["n_requested"], p["seed"])
    if not np.array_equal(np.asarray(data.labels)[rows], cache.labels):
        raise ValueError(f"cache at {cache.path} does not match {p['dataset']!r}/{p['split']} rows; rebuild it")
    return {a: np.asarray(v)[rows] for a, v in data.attributes.items()}


def mentioned_attributes(text: str, vocabulary: Mapping[str, Sequence[str]]) -> list[str]:
    """Attributes (keys of vocabulary {attribute: value words}) with a value occurring in text as whole words."""
    words = f" {re.sub(r'[^a-z ]', ' ', text.lower())} "
    return [a for a, values in vocabulary.items() if any(f" {v.lower()} " in words for v in values)]


def text_vs_probe(texts: Mapping[str, list[str]], skills: pd.DataFrame,
                  vocabulary: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per unit: the attributes its descriptions name most against the attribute its probes decode best.

    texts: {unit: descriptions}; skills: `skill` table. Columns: unit; text_attribute (the most-named
    attributes, ties joined by ", "); text_share (share of descriptions naming them); probe_attribute;
    probe_skill; text_attribute_skill (best skill among the most-named); agree (the probe's best is among
    the most-named); named_skill / unnamed_skill (mean skill of the attributes named at least once / never).
    """
    rows = []
    for unit, descriptions in texts.items():
        counts = pd.Series([a for t in descriptions for a in mentioned_attributes(t, vocabulary)], dtype=object)
        counts = counts.value_counts()
        top = sorted(counts.index[counts == counts.max()]) if len(counts) else []
        best = skills.loc[unit].idxmax()
        top_in = [a for a in top if a in skills.columns]
        named = skills.columns.isin(counts.index)
        rows.append({"unit": unit, "text_attribute": ", ".join(top) or None,
                     "text_share": counts.max() / len(descriptions) if len(counts) else 0.0,
                     "probe_attribute": best, "probe_skill": float(skills.loc[unit, best]),
                     "text_attribute_skill": float(skills.loc[unit, top_in].max()) if top_in else np.nan,
                     "agree": best in top,
                     "named_skill": float(skills.loc[unit, named].mean()) if named.any() else np.nan,
                     "unnamed_skill": float(skills.loc[unit, ~named].mean()) if (~named).any() else np.nan})
    return pd.DataFrame(rows)


def _split(y: np.ndarray, test_fraction: float, seed: int, attribute: str):
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"labels[{attribute!r}] has a single class {classes.tolist()}; a probe needs at least 2")
    stratify = y if counts.min() >= 2 else None
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=stratify)
    return train, test, y
