"""Agreement between two description sets as a Z-score (paper Section 3.2, Figures 3 and 8).

Let ``e_j`` be the unit-normalised text embedding of dictionary entry j (m entries), A the set chosen by
TextSpan and B the set chosen by OMP on a principal component, and

    s_A(j)  = mean_{a in A} cos(e_a, e_j)        how close entry j is to set A,
    sim(A, B) = mean_{b in B} s_A(b)              the mean pairwise cosine between the two sets,
    mu, sigma = mean and standard deviation of s_A(j) over the whole dictionary (j = 1..m).

The paper's score (``null="atom"``) is ``Z = (sim(A, B) - mu) / sigma`` and its figures show |Z|: how far
the OMP descriptions sit from a typical dictionary entry, in units of the spread of single entries.
Because sim(A, B) averages |B| entries, that sigma is wider than the spread of sim for a *random* B, so
the paper's |Z| understates significance. ``null="set"`` divides instead by the exact standard deviation
of sim(A, B) when B is |B| distinct entries drawn uniformly from the dictionary (sampling without
replacement): ``sigma * sqrt((m - |B|) / (|B| (m - 1)))``. Under that null Z has mean 0 and variance 1.
Both are closed-form, so the score is deterministic and needs no seed.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .pursuit import Signals, omp, project_dictionary, textspan
from .units import parse_unit

NULLS = ("atom", "set")


def agreement_z(embeddings: np.ndarray, a: Sequence[int], b: Sequence[int], *,
                null: Literal["atom", "set"] = "atom") -> float:
    """Signed Z-score of sim(A, B) against the dictionary (module docstring); embeddings (m, E), a, b indices."""
    if null not in NULLS:
        raise ValueError(f"null={null!r}; valid: {', '.join(NULLS)}")
    e = np.asarray(embeddings, dtype=np.float64)
    m = e.shape[0]
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    for name, idx in (("a", a), ("b", b)):
        if idx.size == 0 or idx.min() < 0 or idx.max() >= m:
            raise ValueError(f"set {name} = {idx.tolist()}; needs at least one index in [0, {m})")
    if null == "set" and not 1 <= len(set(b.tolist())) == b.size < m:
        raise ValueError(f"null='set' needs 1 <= |b| < m distinct indices; got |b| = {b.size}, m = {m}")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s_a = (e[a] @ e.T).mean(axis=0)
    sigma = s_a.std()
    if null == "set":
        sigma *= np.sqrt((m - b.size) / (b.size * (m - 1)))
    return float((s_a[b].mean() - s_a.mean()) / sigma)


def textspan_omp_agreement(signals: Signals, embeddings: np.ndarray, k: int = 5, pc: int = 1, *,
                           project: bool = True, device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Figure 3 / 8 per unit: TextSpan on the unit against OMP on its PC `pc`, and their agreement Z.

    embeddings: (m, E) text embeddings of the dictionary (the Z-score uses them normalised, unprojected)
    project:    give both algorithms the dictionary projected on each unit's span (TextSpan's preprocessing)
    Columns: unit, layer, head, textspan (k atom indices), omp (k atom indices), z (paper's null), z_set.
    """
    if not 1 <= pc <= signals.f.shape[1]:
        raise ValueError(f"pc={pc}; must be between 1 and the units' rank {signals.f.shape[1]}")
    dictionary = project_dictionary(embeddings, signals) if project else np.asarray(embeddings)
    ts = textspan(signals, dictionary, k, device=device, progress=progress).atoms
    direction = signals.components(pc)[:, pc - 1]
    om = np.stack([omp(direction[i], dictionary[i] if project else dictionary, k, device=device)[0][0]
                   for i in range(len(direction))])
    rows = []
    for name, a, b in zip(signals.names, ts, om):
        _, layer, head = parse_unit(name)
        rows.append({"unit": name, "layer": layer, "head": head, "textspan": a.tolist(), "omp": b.tolist(),
                     "z": agreement_z(embeddings, a, b), "z_set": agreement_z(embeddings, a, b, null="set")})
    return pd.DataFrame(rows)
