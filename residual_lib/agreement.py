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
