"""Intrinsic dimension of units (paper Sec. 3.1): linear ID from PCA, TwoNN (Facco et al. 2017).

Linear ID rule: the smallest k whose cumulative explained-variance ratio is *strictly greater*
than the threshold (0.99), as the authors' code is reported to do; a unit whose spectrum reaches
exactly 0.99 at k therefore gets k + 1. An ID never exceeds the number of components.

TwoNN: for each point, mu = r2 / r1 (distances to its second and first nearest neighbours) follows
a Pareto law with shape d, so -log(1 - F(mu)) = d log(mu). We fit that line through the origin on
the smallest (1 - discard_fraction) of the ratios with the empirical F = i / N, i = 1..N (as
scikit-dimension does). Neighbours are exact: a float32 matrix-product search over query chunks
(memory bounded by `chunk_elements`) proposes `n_candidates` neighbours per point, whose distances
are then recomputed directly in float64.

Duplicate and tied points: exact duplicate rows are collapsed to one point first (a repeated sample
is one location on the manifold; keeping it would give r1 = 0 and an undefined ratio). Near-duplicates
are collapsed the same way: rows closer than `duplicate_rtol` times the largest row norm of X (default
8 machine epsilons of X's dtype: 9.5e-7 for float32, 7.8e-3 for float16), i.e. copies that differ only by
rounding, as one image stored twice does after batch-dependent float arithmetic. Left in, a 1-ulp copy
gives a ratio near 2^23 and pulls the estimate down (a float32 swiss roll with 5% such copies: 1.35
instead of 1.92). Rows are also near-duplicates when closer than `duplicate_scale` (1e-3) times the data's own
nearest-neighbour scale, the median distance of a point to its second neighbour (a duplicated point's second
neighbour is a genuine one, so the scale holds however many copies there are): copies with noise far above
rounding but far below the data's spacing (2,000 points on a 5-dim subspace of R^64 plus 200 copies with 1e-5
noise gave 0.201 for a clean 5.111). Points linked by such near-neighbour pairs form groups, of which one point is
kept; `n_near_duplicates_` says how many, and a warning too when they are more than 1% of the points.
Then a point whose first two neighbour distances are equal (mu = 1 exactly, a probability-zero event
under the model that marks lattice or quantisation artefacts) is dropped. `n_duplicates_` (exact and
near), `n_near_duplicates_` and `n_ties_` report how many points each rule removed. NaN or inf
coordinates are refused. An estimate below 1 comes with a warning that says what it means.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from ..device import resolve_device
from .pca import UnitPCA
from ..units.unit_set import Units, parse_unit


def linear_id(evr: np.ndarray, threshold: float = 0.99) -> int:
    """(k,) explained-variance ratios (of the unit's total variance) -> first k with cumulative ratio > threshold.

    Returns len(evr) when the given components never pass the threshold (e.g. a truncated PCA).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold!r}; must be in (0, 1)")
    cum = np.cumsum(np.asarray(evr, dtype=np.float64))
    return int(min(np.searchsorted(cum, threshold, side="right") + 1, len(cum)))


def two_nearest(x: torch.Tensor, chunk_elements: int | None = None, n_candidates: int = 8,
                block: int = 64, return_index: bool = False) -> tuple[torch.Tensor, ...]:
    """(n, d) distinct points -> (r1, r2), each (n,) float64: distances to the first and second neighbour.

    With return_index, also (n,) int64: the row of each point's first neighbour.

    Per query row, the k = n_candidates smallest entries lie in the k blocks (of `block` columns) with
    the smallest minima, so a cheap block-wise min replaces a top-k over the full row. chunk_elements
    (distance entries held at once) defaults to 2^21 on the CPU (cache-sized) and 2^28 on a GPU
    (1 GiB, few kernel launches).
    """
    n, dev = x.shape[0], x.device
    if chunk_elements is None:
        chunk_elements = 2 ** 28 if dev.type == "cuda" else 2 ** 21
    x64 = (x - x.mean(0)).to(torch.float64)
    n_blocks = -(-n // block)
    # padding points with |x|^2 = inf are never anyone's neighbour
    x32 = torch.zeros(n_blocks * block, x.shape[1], dtype=torch.float32, device=dev)
    x32[:n] = x64
    sq = torch.full((n_blocks * block,), float("inf"), device=dev)
    sq[:n] = (x32[:n] * x32[:n]).sum(1)
    k = min(n_candidates, n - 1)
    kb = min(k, n_blocks)
    chunk = max(1, chunk_elements // (n_blocks * block))
    r1, r2 = torch.empty(n, dtype=torch.float64, device=dev), torch.empty(n, dtype=torch.float64, device=dev)
    i1 = torch.empty(n, dtype=torch.int64, device=dev)
    buffer = torch.empty(min(chunk, n), n_blocks * block, device=dev)  # reused: no allocation per chunk
    offsets = torch.arange(block, device=dev)
    for start in range(0, n, chunk):
        q = x32[start:min(start + chunk, n)]
        rows = torch.arange(q.shape[0], device=dev)
        # |q - x|^2 minus the row constant |q|^2, which does not change each row's ranking
        key = torch.addmm(sq[None, :], q, x32.T, alpha=-2.0, out=buffer[:q.shape[0]])
        key[rows, rows + start] = float("inf")  # a point is not its own neighbour
        blocks = key.view(q.shape[0], n_blocks, block)
        best = blocks.amin(dim=2).topk(kb, dim=1, largest=False).indices  # (c, kb)
        cand = blocks.gather(1, best[:, :, None].expand(-1, -1, block)).reshape(q.shape[0], -1)
        pos = cand.topk(k, dim=1, largest=False).indices
        idx = (best[:, :, None] * block + offsets).reshape(q.shape[0], -1).gather(1, pos)
        exact = (x64[idx] - x64[start:start + q.shape[0], None, :]).norm(dim=2)
        two, order = exact.topk(2, dim=1, largest=False, sorted=True)
        r1[start:start + q.shape[0]], r2[start:start + q.shape[0]] = two[:, 0], two[:, 1]
        i1[start:start + q.shape[0]] = idx.gather(1, order[:, :1])[:, 0]
    return (r1, r2, i1) if return_index else (r1, r2)


def collapse_near_duplicates(x: torch.Tensor, tol: float, chunk_elements: int | None = None, scale: float = 0.0
                             ) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor, float]:
    """(n, d) distinct points -> (kept points, number removed, r1, r2 of the kept points, the distance used).

    Points whose nearest neighbour is within the larger of `tol` and `scale` times the median second-neighbour
    distance are linked to it; each connected group keeps its first point. Repeated until no point has a
    neighbour that close (a removal can expose a new pair).
    """
    removed, first = 0, True
    while True:
        if x.shape[0] < 3:
            raise ValueError(f"X has {x.shape[0]} points left after collapsing near-duplicates (closer than "
                             f"{tol:.3g}); TwoNN needs at least 3")
        r1, r2, i1 = two_nearest(x, chunk_elements, return_index=True)
        if first:
            tol, first = max(tol, scale * float(r2.median())), False
        close = (r1 <= tol).nonzero()[:, 0].cpu().numpy()
        if len(close) == 0:
            return x, removed, r1, r2, tol
        n = x.shape[0]
        links = coo_matrix((np.ones(len(close)), (close, i1.cpu().numpy()[close])), shape=(n, n))
        _, group = connected_components(links, directed=False)
        keep = np.sort(np.unique(group, return_index=True)[1])
        removed += n - len(keep)
        x = x[torch.from_numpy(keep).to(x.device)]


def unique_rows(x: torch.Tensor) -> torch.Tensor:
    """(n, d) -> the distinct rows (order not kept). Sorting a random projection puts equal rows side by side,
    which is much cheaper than `torch.unique(dim=0)`; if distinct rows share a projection value, fall back to it."""
    gen = torch.Generator(device=x.device).manual_seed(0)  # a private generator: the caller's RNG stays untouched
    proj = x @ torch.randn(x.shape[1], dtype=x.dtype, device=x.device, generator=gen)
    order = proj.argsort()
    xs, ps = x[order], proj[order]
    same_row = (xs[1:] == xs[:-1]).all(dim=1)
    if bool(((ps[1:] == ps[:-1]) & ~same_row).any()):
        return torch.unique(x, dim=0)
    return xs[torch.cat([torch.ones(1, dtype=torch.bool, device=x.device), ~same_row])]


def twonn_fit(mu: np.ndarray, discard_fraction: float) -> float:
    """(N,) ratios r2/r1 (all > 1) -> slope through the origin of -log(1 - F_emp) against log(mu)."""
    n = len(mu)
    n_keep = int(n * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError(f"only {n_keep} ratios left after discarding {discard_fraction:.0%} of {n}; need at least 2")
    x = np.log(np.sort(mu)[:n_keep])
    y = -np.log(1.0 - np.arange(1, n_keep + 1) / n)
    return float((x @ y) / (x @ x))


class TwoNN:
    """TwoNN intrinsic dimension (Facco et al. 2017); `TwoNN().fit(X).dimension_`.

    discard_fraction: largest ratios left out of the fit, in (0, 1) (the paper's 0.1).
    device:           'auto' (CUDA when present), 'cpu' or 'cuda'.
    chunk_elements:   distance-matrix entries held at once (memory bound of the neighbour search;
                      None: 2^21 on the CPU, 2^28 on a GPU).

    duplicate_rtol:   rows closer than this times the largest row norm count as duplicates (None: 8 machine
                      epsilons of X's dtype; 0: exact duplicates only).
    duplicate_scale:  rows closer than this times the median second-neighbour distance count as duplicates too
                      (0: off).
    """

    def __init__(self, discard_fraction: float = 0.1, device: str = "auto", chunk_elements: int | None = None,
                 duplicate_rtol: float | None = None, duplicate_scale: float = 1e-3):
        self.discard_fraction = discard_fraction
        self.device = device
        self.chunk_elements = chunk_elements
        self.duplicate_rtol = duplicate_rtol
        self.duplicate_scale = duplicate_scale

    def fit(self, X: np.ndarray | torch.Tensor) -> "TwoNN":
        """X (n, d) points -> self with dimension_, mu_ (kept ratios), n_duplicates_, n_near_duplicates_, n_ties_."""
        if not 0.0 < self.discard_fraction < 1.0:
            raise ValueError(f"discard_fraction={self.discard_fraction!r}; must be in (0, 1)")
        if self.duplicate_rtol is not None and not self.duplicate_rtol >= 0:
            raise ValueError(f"duplicate_rtol={self.duplicate_rtol!r}; must be >= 0 (or None for 8 epsilons of X's dtype)")
        if not 0 <= self.duplicate_scale < 1:
            raise ValueError(f"duplicate_scale={self.duplicate_scale!r}; must be in [0, 1)")
        x = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
        if x.ndim != 2:
            raise ValueError(f"X has shape {tuple(x.shape)}; expected (n_points, n_features)")
        if x.shape[0] == 0:
            raise ValueError("X has 0 rows; TwoNN needs at least 3 distinct points")
        rtol = self.duplicate_rtol
        if rtol is None:
            rtol = 8 * float(torch.finfo(x.dtype if x.dtype.is_floating_point else torch.float64).eps)
        x = x.to(resolve_device(self.device), torch.float64)
        finite = torch.isfinite(x).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero()[:, 0]
            raise ValueError(f"X has {len(bad)} row(s) with NaN or inf (first: row {int(bad[0])}); "
                             "TwoNN needs finite coordinates")
        unique = unique_rows(x)
        if unique.shape[0] < 3:
            raise ValueError(f"X has {unique.shape[0]} distinct points; TwoNN needs at least 3")
        tol = rtol * float(unique.norm(dim=1).max())
        n_distinct = unique.shape[0]
        unique, self.n_near_duplicates_, r1, r2, self.duplicate_distance_ = collapse_near_duplicates(
            unique, tol, self.chunk_elements, self.duplicate_scale)
        tied = r2 == r1
        self.n_duplicates_ = int(x.shape[0] - unique.shape[0])
        self.n_ties_ = int(tied.sum())
        self.mu_ = (r2[~tied] / r1[~tied]).cpu().numpy()
        self.dimension_ = twonn_fit(self.mu_, self.discard_fraction)
        set_aside = (f"{self.n_near_duplicates_:,} of {n_distinct:,} distinct points set aside as near-duplicates "
                     f"(nearest neighbour within {self.duplicate_distance_:.3g})")
        if self.n_near_duplicates_ > 0.01 * n_distinct:  # a few (one image stored twice) need no word
            warnings.warn(f"TwoNN: {set_aside}; the estimate {self.dimension_:.3f} uses the rest", stacklevel=2)
        if self.dimension_ < 1:
            warnings.warn(f"TwoNN: estimate {self.dimension_:.3f} is below 1, which no manifold has: the points hold "
                          f"clusters of copies closer than the rest of the data but farther apart than "
                          f"{self.duplicate_distance_:.3g} (raise duplicate_scale to set them aside), or too few "
                          f"points; {set_aside}", stacklevel=2)
        return self


def unit_intrinsic_dimensions(units: Units, pca: UnitPCA | None = None, heads_only: bool = True,
                              threshold: float = 0.99, discard_fraction: float = 0.1,
                              device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Per unit: linear ID, TwoNN ID, their ratio and PC1's EVR, as a tidy DataFrame.

    Columns: unit, kind ('emb'/'head'/'mlp'), layer, head, linear_id, twonn_id, ratio (linear/TwoNN
    of that unit), evr1. TwoNN runs on the unit's coordinates (an isometric copy of its output-space
    points). `pca` (fitted on the same units) is reused when given.
    """
    names = units.heads if heads_only else units.units
    if pca is None:
        pca = UnitPCA(units=names, device=device, progress=progress).fit(units)
    rows = []
    for u in tqdm(names, desc="intrinsic dimension", disable=not progress):
        kind, layer, head = parse_unit(u)
        evr = pca.explained_variance_ratio_[u]
        lin = linear_id(evr, threshold)
        nn = TwoNN(discard_fraction, device=device).fit(units.coords(u)).dimension_
        rows.append({"unit": u, "kind": kind, "layer": layer, "head": head, "linear_id": lin,
                     "twonn_id": nn, "ratio": lin / nn, "evr1": float(evr[0])})
    df = pd.DataFrame(rows)
    return df.astype({"layer": "Int64", "head": "Int64"})


def layer_summary(per_unit: pd.DataFrame) -> pd.DataFrame:
    """Per-head rows -> per layer: means of linear_id, twonn_id, evr1 and both ratio aggregations.

    ratio_mean_of_heads = mean over heads of linear_id / twonn_id (what the paper's table matches);
    ratio_of_means      = mean linear_id / mean twonn_id.
    """
    heads = per_unit[per_unit["kind"] == "head"]
    if heads.empty:
        raise ValueError("no head rows in the table; layer_summary averages over heads")
    out = heads.groupby("layer").agg(linear_id=("linear_id", "mean"), twonn_id=("twonn_id", "mean"),
                                     ratio_mean_of_heads=("ratio", "mean"), evr1=("evr1", "mean"),
                                     n_heads=("unit", "size")).reset_index()
    out["ratio_of_means"] = out["linear_id"] / out["twonn_id"]
    return out


def paper_ratio_check(reference: pd.DataFrame, tol: float = 0.02) -> pd.DataFrame:
    """The paper's Fig 2/7 rows with the ratio of its printed means and whether the printed ratio is within tol of it."""
    ref = reference.copy()
    ref["ratio_of_means"] = ref["linear_id"].astype(float) / ref["twonn_id"].astype(float)
    ref["printed_minus_ratio_of_means"] = ref["ratio"].astype(float) - ref["ratio_of_means"]
    ref["matches_ratio_of_means"] = ref["printed_minus_ratio_of_means"].abs() <= tol
    return ref
