"""Agreement between two description sets as a Z-score (paper Section 3.2, Figures 3 and 8).

The paper scores "the cosine similarity (sim) between [the TextSpan and OMP descriptions], compared
with the average cosine similarity mu between the descriptions selected by TextSpan and the entire
dictionary": Z = |sim - mu| / sigma. This module makes that precise as follows. Each set is represented
by the mean of its unit-normalised text embeddings (its centroid c_A, c_B), and

    sim(A, B)  = cos(c_A, c_B)
    mu, sigma  = mean and standard deviation of cos(c_A, e_j) over every dictionary entry j   (null="atom")

so identical sets give sim = 1, the largest value any entry can reach, and Z >= 0; a set no closer to
A than a typical entry gives Z near 0. (Averaging pairwise cosines instead would let two identical but
internally diverse sets score *below* mu, and the paper's |.| would then count that as agreement.)

Because c_B averages |B| entries, single entries spread more than centroids of random sets, so the
paper's sigma understates significance. ``null="set"`` replaces mu and sigma by the mean and standard
deviation of cos(c_A, c_R) over `n_null` random sets R of |B| distinct entries (drawn with `seed`):
under that null Z is a standard score. The figures show |Z| as the paper does; functions return the
signed value. `random_set_z` gives the paper's Z of random sets themselves: the spread of |Z| that chance
alone reaches on the paper's scale (column z_random95 of `textspan_omp_agreement`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .pursuit import Signals, omp, project_dictionary, textspan
from ..units.unit_set import parse_unit

NULLS = ("atom", "set")


def agreement_z(embeddings: np.ndarray, a: Sequence[int], b: Sequence[int], *,
                null: Literal["atom", "set"] = "atom", n_null: int = 2000, seed: int = 0) -> float:
    """Signed Z-score of cos(centroid A, centroid B) against the dictionary (module docstring); embeddings (m, E)."""
    if null not in NULLS:
        raise ValueError(f"null={null!r}; valid: {', '.join(NULLS)}")
    e = np.asarray(embeddings, dtype=np.float64)
    m = e.shape[0]
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    for name, idx in (("a", a), ("b", b)):
        if idx.size == 0 or idx.min() < 0 or idx.max() >= m:
            raise ValueError(f"set {name} = {idx.tolist()}; needs at least one index in [0, {m})")
    if null == "set" and not 1 <= b.size < m:
        raise ValueError(f"null='set' needs 1 <= |b| < m; got |b| = {b.size}, m = {m}")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    c_a = _unit(e[a].mean(axis=0))
    sim = float(c_a @ _unit(e[b].mean(axis=0)))
    null_sims = e @ c_a if null == "atom" else _random_set_sims(e, c_a, b.size, n_null, seed)
    return float((sim - null_sims.mean()) / null_sims.std())


def random_set_z(embeddings: np.ndarray, a: Sequence[int], size: int, *, n_null: int = 2000,
                 seed: int = 0) -> np.ndarray:
    """(n_null,) the paper's Z (null="atom") of random sets of `size` distinct entries against set A.

    Its spread is what chance reaches on the paper's scale: a centroid of random entries sits closer to c_A than
    one entry does, so random sets already score a Z away from 0. Same draws as `agreement_z(null="set")`.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if not 1 <= size < e.shape[0]:
        raise ValueError(f"size={size}; a random set needs 1 <= size < {e.shape[0]} (the dictionary's entries)")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    c_a = _unit(e[np.asarray(a, dtype=int)].mean(axis=0))
    atoms = e @ c_a
    return (_random_set_sims(e, c_a, size, n_null, seed) - atoms.mean()) / atoms.std()


def _random_set_sims(e: np.ndarray, c_a: np.ndarray, size: int, n_null: int, seed: int) -> np.ndarray:
    """cos(c_A, centroid) of n_null random sets of `size` distinct rows of the normalised dictionary e."""
    rng = np.random.default_rng(seed)
    sets = np.argpartition(rng.random((n_null, e.shape[0])), size - 1, axis=1)[:, :size]  # without replacement
    return _unit(e[sets].mean(axis=1)) @ c_a


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def textspan_omp_agreement(signals: Signals, embeddings: np.ndarray, k: int = 5, pc: int = 1, *,
                           project: bool = True, seed: int = 0, device: str = "auto",
                           progress: bool = True, center: bool = True, normalize: bool = True) -> pd.DataFrame:
    """Figure 3 / 8 per unit: TextSpan on the unit against OMP on its PC `pc`, and their agreement Z.

    embeddings: (m, E) text embeddings of the dictionary (the Z-score uses them normalised, unprojected)
    project:    give both algorithms the dictionary projected on each unit's span (TextSpan's preprocessing)
    seed:       random sets of the set-level null (z_set)
    center:     project on the centred span (True) or the uncentred X's singular directions (False, authors')
    normalize:  OMP on unit-norm projected atoms (True) or on the atoms as projected (False, authors')
    Columns: unit, layer, head, textspan (k atom indices), omp (k atom indices), z (paper's null), z_set, and
    z_random95: the 95th percentile of |z| over random sets of k entries (`random_set_z`), z's null spread.
    """
    if not 1 <= pc <= signals.f.shape[1]:
        raise ValueError(f"pc={pc}; must be between 1 and the units' rank {signals.f.shape[1]}")
    dictionary = project_dictionary(embeddings, signals, center=center) if project else np.asarray(embeddings)
    ts = textspan(signals, dictionary, k, device=device, progress=progress).atoms
    direction = signals.components(pc)[:, pc - 1]
    om = np.stack([omp(direction[i], dictionary[i] if project else dictionary, k, normalize=normalize,
                       device=device)[0][0]
                   for i in range(len(direction))])
    rows = []
    for name, a, b in zip(signals.names, ts, om):
        _, layer, head = parse_unit(name)
        rows.append({"unit": name, "layer": layer, "head": head, "textspan": a.tolist(), "omp": b.tolist(),
                     "z": agreement_z(embeddings, a, b), "z_set": agreement_z(embeddings, a, b, null="set", seed=seed),
                     "z_random95": float(np.quantile(np.abs(random_set_z(embeddings, a, b.size, seed=seed)), 0.95))})
    return pd.DataFrame(rows)
