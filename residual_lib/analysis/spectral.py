"""Spectral cosine similarity between two weighted sets of principal components (paper Eq. 2-4, Sec. 3.3).

For sets S1 = {u_i} (k1 vectors) and S2 = {v_j} (k2 vectors) in the same space, with weights w1, w2:

  1. C_ij = |u_i . v_j| / (|u_i| |v_j|): absolute cosines, because a principal component has no sign.
  2. Greedy matching, m = min(k1, k2) steps: take the largest remaining entry C_{i_n j_n}, then remove
     row i_n and column j_n. s_n = C_{i_n j_n} * w1_{i_n} * w2_{j_n}            (Eq. 3)
     The maximum is over cosines alone; the weights only scale the matched pair.
  3. sim = sqrt( sum_n s_n^2 / sum_n (w1_(n) w2_(n))^2 )                          (Eq. 4)
     where w_(n) is the n-th largest weight. By the rearrangement inequality the denominator bounds
     the numerator, so sim lies in [0, 1], and it is 1 when the two sets coincide.

Matching rule (`matching`), where the paper's text and the authors' code differ:
  * "cosine" (the text's reading, above): the greedy maximum is over |cosines| alone.
  * "weighted" (the authors' code, `normalized_spectral_cosine` with weights, used for Fig 4): the
    greedy maximum is over the weighted entries C_ij w1_i w2_j, and s_n is that weighted entry. The
    same Eq. 4 normalisation applies; the authors divide by the same-index weight products, which
    equal the sorted ones for PCA weights (already in descending order).
  * "index": component n of one set is paired with component n of the other, n < min(k1, k2). With
    unit weights this is what the authors' code computes when called without weights.
All three give 1 for identical orthonormal sets, are symmetric, and lie in [0, 1].

Choices (the paper leaves them open; these follow the authors' code, `conf` of experiment 2):
  * weights are the PCA eigenvalues (explained variances). sim is unchanged when either weight
    set is rescaled, so eigenvalues and explained-variance ratios give the same number; singular
    values (the paper's "e.g.") would weight by their square roots instead.
  * each basis is truncated to the components that explain 90% of its unit's variance, with the
    same rule as the linear ID (first k with cumulative ratio > 0.9).
  * the same unit is compared across datasets (one model, two caches).

Unweighted, and with the two sets being *principal vectors* of a pair of subspaces (so that their
cosine matrix is diagonal), step 2 selects cos(theta_n) for every principal angle theta_n, and sim
is the root mean square of those cosines: the case tested against scipy's `subspace_angles`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..device import resolve_device
from .intrinsic_dim import linear_id
from .pca import UnitPCA
from ..units.unit_set import Units, parse_unit

MATCHINGS = ("cosine", "weighted", "index")


def check_matching(matching: str) -> str:
    """The matching rule's name, or ValueError naming the valid ones."""
    if matching not in MATCHINGS:
        raise ValueError(f"unknown matching rule {matching!r}; valid: {', '.join(MATCHINGS)}")
    return matching


def batched_spectral_similarity(u1: torch.Tensor, w1: torch.Tensor, u2: torch.Tensor, w2: torch.Tensor,
                                k1: torch.Tensor | None = None, k2: torch.Tensor | None = None,
                                matching: str = "cosine") -> torch.Tensor:
    """u1 (B, K1, E), w1 (B, K1), u2 (B, K2, E), w2 (B, K2) -> (B,) Eq. 4 for each of the B pairs.

    k1, k2 (B,) give how many leading rows of each set are real; the rest is padding (ignored).
    matching: one of MATCHINGS (module docstring).
    """
    check_matching(matching)
    b, K1, K2 = u1.shape[0], u1.shape[1], u2.shape[1]
    dev = u1.device
    k1 = torch.full((b,), K1, device=dev) if k1 is None else k1.to(dev)
    k2 = torch.full((b,), K2, device=dev) if k2 is None else k2.to(dev)
    valid1 = torch.arange(K1, device=dev)[None, :] < k1[:, None]
    valid2 = torch.arange(K2, device=dev)[None, :] < k2[:, None]
    w1, w2 = w1 * valid1, w2 * valid2
    n1 = u1.norm(dim=-1).clamp_min(torch.finfo(u1.dtype).tiny)
    n2 = u2.norm(dim=-1).clamp_min(torch.finfo(u2.dtype).tiny)
    cos = ((u1 / n1[..., None]) @ (u2 / n2[..., None]).transpose(1, 2)).abs()
    # -1 marks removed or padded entries: below every real |cos|, so never picked while a real one remains
    cos = cos.masked_fill(~(valid1[:, :, None] & valid2[:, None, :]), -1.0)
    m = torch.minimum(k1, k2)
    rows = torch.arange(b, device=dev)
    num = torch.zeros(b, dtype=u1.dtype, device=dev)
    # the matrix the greedy maximum runs over; weighted entries stay >= 0, so -1 still marks "gone"
    score = cos * w1[:, :, None] * w2[:, None, :] if matching == "weighted" else cos
    score = score.masked_fill(cos < 0, -1.0)
    for step in range(int(m.max())):
        if matching == "index":
            i = j = torch.full((b,), step, device=dev)
        else:
            flat = score.reshape(b, -1).argmax(dim=1)
            i, j = flat // K2, flat % K2
        active = step < m
        s = cos[rows, i, j].clamp_min(0.0) * w1[rows, i] * w2[rows, j]
        num = num + torch.where(active, s * s, torch.zeros_like(s))
        score[rows, i, :] = -1.0
        score[rows, :, j] = -1.0
    sorted1 = w1.sort(dim=1, descending=True).values
    sorted2 = w2.sort(dim=1, descending=True).values
    kmin = min(K1, K2)
    prod = (sorted1[:, :kmin] * sorted2[:, :kmin]) ** 2
    prod = prod * (torch.arange(kmin, device=dev)[None, :] < m[:, None])
    den = prod.sum(dim=1)
    return torch.where(den > 0, (num / den.clamp_min(torch.finfo(den.dtype).tiny)).sqrt(), torch.zeros_like(den))


def spectral_cosine_similarity(u1: np.ndarray, u2: np.ndarray, w1: np.ndarray | None = None,
                               w2: np.ndarray | None = None, matching: str = "cosine") -> float:
    """u1 (k1, E), u2 (k2, E) component sets with weights (k1,), (k2,) (None: all 1) -> Eq. 4 in [0, 1]."""
    u1, u2 = np.atleast_2d(u1), np.atleast_2d(u2)
    if u1.shape[1] != u2.shape[1]:
        raise ValueError(f"component sets live in different spaces: {u1.shape} vs {u2.shape}")
    w1 = np.ones(len(u1)) if w1 is None else np.asarray(w1, dtype=np.float64)
    w2 = np.ones(len(u2)) if w2 is None else np.asarray(w2, dtype=np.float64)
    if w1.shape != (len(u1),) or w2.shape != (len(u2),) or (w1 < 0).any() or (w2 < 0).any():
        raise ValueError(f"weights must be non-negative with shapes ({len(u1)},), ({len(u2)},); got {w1.shape}, {w2.shape}")
    def batch_of_one(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float64))[None]  # a copy: no negative strides

    return float(batched_spectral_similarity(*map(batch_of_one, (u1, w1, u2, w2)), matching=matching)[0])


def truncated_basis(pca: UnitPCA, unit: str, evr_threshold: float | None = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """A fitted unit's components (k, E) and eigenvalue weights (k,), cut at evr_threshold (None: all)."""
    evr = pca.explained_variance_ratio_[unit]
    k = len(evr) if evr_threshold is None else linear_id(evr, evr_threshold)
    return pca.components_[unit][:k], pca.explained_variance_[unit][:k]


def unit_similarities(pca_a: UnitPCA, pca_b: UnitPCA, units: list[str] | None = None,
                      evr_threshold: float | None = 0.9, device: str = "auto",
                      matching: str = "cosine") -> pd.DataFrame:
    """Eq. 4 between the same units of two fitted PCAs -> DataFrame (unit, kind, layer, head, similarity, k_a, k_b)."""
    check_matching(matching)
    names = [u for u in pca_a.units_ if u in set(pca_b.units_)] if units is None else list(units)
    missing = [u for u in names if u not in pca_a.components_ or u not in pca_b.components_]
    if missing:
        raise KeyError(f"units {missing[:5]} are not fitted in both PCAs")
    if not names:
        raise ValueError("the two PCAs share no units")
    dev = resolve_device(device)
    a = [truncated_basis(pca_a, u, evr_threshold) for u in names]
    b = [truncated_basis(pca_b, u, evr_threshold) for u in names]

    def pad(sets):
        K, E = max(len(w) for _, w in sets), sets[0][0].shape[1]
        comps = torch.zeros(len(sets), K, E, dtype=torch.float64)
        weights = torch.zeros(len(sets), K, dtype=torch.float64)
        for i, (c, w) in enumerate(sets):
            comps[i, :len(w)], weights[i, :len(w)] = torch.from_numpy(c), torch.from_numpy(w)
        return comps.to(dev), weights.to(dev), torch.tensor([len(w) for _, w in sets], device=dev)

    (ua, wa, ka), (ub, wb, kb) = pad(a), pad(b)
    sim = batched_spectral_similarity(ua, wa, ub, wb, ka, kb, matching=matching).cpu().numpy()
    parsed = [parse_unit(u) for u in names]
    return pd.DataFrame({"unit": names, "kind": [p[0] for p in parsed],
                         "layer": pd.array([p[1] for p in parsed], dtype="Int64"),
                         "head": pd.array([p[2] for p in parsed], dtype="Int64"),
                         "similarity": sim, "k_a": ka.cpu().numpy(), "k_b": kb.cpu().numpy()})


def dataset_similarities(reference: Units | UnitPCA, others: Mapping[str, Units | UnitPCA], heads_only: bool = True,
                         evr_threshold: float | None = 0.9, device: str = "auto", progress: bool = True,
                         matching: str = "cosine") -> pd.DataFrame:
    """Each dataset's units against the reference dataset's (same model) -> long DataFrame with a `dataset` column."""
    def fitted(x):
        if isinstance(x, UnitPCA):
            return x
        return UnitPCA(units=x.heads if heads_only else None, device=device, progress=False).fit(x)

    ref = fitted(reference)
    frames = []
    for name, units in tqdm(others.items(), desc="spectral similarity", disable=not progress):
        frames.append(unit_similarities(ref, fitted(units), evr_threshold=evr_threshold, device=device,
                                        matching=matching)
                      .assign(dataset=name))
    return pd.concat(frames, ignore_index=True)


def sampling_null(units: Units, n_draws: int = 10, seed: int = 0, heads_only: bool = True,
                  evr_threshold: float | None = 0.9, device: str = "auto", matching: str = "cosine") -> pd.DataFrame:
    """Each unit's similarity between two disjoint random halves of one dataset: what "same distribution" reads.

    A head compared with itself on a fresh sample of the same images is not at 1: its principal components and
    eigenvalues move with the sample. Two halves of `units` (n // 2 images each, drawn without replacement with
    `seed`), fitted and compared as `dataset_similarities` compares two datasets, `n_draws` times. Components are
    fitted in each unit's own coordinates, where cosines equal those in output space (orthonormal bases).
    Returns unit, kind, layer, head, similarity, k_a, k_b and draw (0 .. n_draws - 1).
    """
    if n_draws < 1 or units.n < 4:
        raise ValueError(f"sampling_null needs n_draws >= 1 and at least 4 images; got n_draws={n_draws}, n={units.n}")
    names = units.heads if heads_only else units.units
    coords = {u: units.coords(u) for u in names}
    rng = np.random.default_rng(seed)
    half = units.n // 2
    frames = []
    for draw in range(n_draws):
        order = rng.permutation(units.n)
        a, b = (UnitPCA(units=names, device=device, progress=False).fit({u: x[rows] for u, x in coords.items()})
                for rows in (order[:half], order[half:2 * half]))
        frames.append(unit_similarities(a, b, evr_threshold=evr_threshold, device=device, matching=matching)
                      .assign(draw=draw))
    return pd.concat(frames, ignore_index=True)


def dataset_order(similarities: pd.DataFrame) -> list[str]:
    """Datasets sorted by mean similarity to the reference, most similar first (the heatmap's rows)."""
    return similarities.groupby("dataset")["similarity"].mean().sort_values(ascending=False).index.tolist()


def similarity_matrix(similarities: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Long table -> (datasets x units) matrix, rows in `order` (default: dataset_order), columns layer by layer."""
    order = dataset_order(similarities) if order is None else order
    units = similarities.drop_duplicates("unit").sort_values(["layer", "head"], na_position="first")["unit"]
    return similarities.pivot(index="dataset", columns="unit", values="similarity").loc[order, units.tolist()]


def cross_model_correlation(similarities: pd.DataFrame) -> pd.DataFrame:
    """Long table with a `model` column -> Pearson correlation (models x models) of per-dataset mean similarities."""
    if "model" not in similarities:
        raise KeyError("cross_model_correlation needs a 'model' column (one similarity table per model, concatenated)")
    profile = similarities.groupby(["dataset", "model"])["similarity"].mean().unstack("model")
    return profile.corr(method="pearson")


def standout_heads(similarities: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The n distinct heads that fall furthest below their layer's mean similarity for some dataset.

    gap = (mean similarity of that dataset over the head's layer) - (the head's similarity): a head that
    changes much more than its neighbours between the reference and one dataset (Fig 4b's "stand out").
    Returns unit, layer, head, dataset, similarity, gap; largest gap first.
    """
    heads = similarities[similarities["kind"] == "head"].copy()
    if heads.empty:
        raise ValueError("no head rows in the similarity table")
    heads["gap"] = heads.groupby(["dataset", "layer"])["similarity"].transform("mean") - heads["similarity"]
    best = heads.sort_values("gap", ascending=False).drop_duplicates("unit").head(n)
    return best[["unit", "layer", "head", "dataset", "similarity", "gap"]].reset_index(drop=True)
