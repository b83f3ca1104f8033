"""Sparse text decompositions of unit representations: TextSpan, SOMP and OMP (paper Section 3.2, App. A.2).

All three explain a signal with a few atoms of a dictionary D (m, E) of text embeddings:

* **TextSpan** (Gandelsman et al. 2024; the paper's Algorithm 1) works on a matrix of samples X (n, E),
  centred on its mean. At each step it scores every *current* atom t_j by the variance over samples of
  its projection, ``Var_i(R_t t_j)`` (R_t the residual), picks the best, removes the projection on that
  atom from the residual and from every atom of the dictionary (Gram-Schmidt), and repeats k times.
  Atoms are not renormalised after the removal, as in the authors' code.
* **SOMP** (Tropp et al. 2006; Algorithm 2) keeps the dictionary fixed, scores each atom by an
  aggregate over samples of its correlations with the residual, ``agg_i |<R_t[i], d_j>|``, and refits all
  chosen atoms by least squares, ``R = X - argmin_W ||X - W D_S||_F``.
* **OMP** (Pati et al. 1993) is SOMP on one vector (e.g. a principal component) with unit-norm atoms:
  ``argmax_j |<r, d_j>| / ||d_j||`` and a least-squares refit (oracle: scikit-learn's `orthogonal_mp`);
  ``normalize=False`` drops the division (below).

**When TextSpan equals SOMP (Appendix A.2).** Give both the same centred X and the same dictionary
(rows as given, *not* renormalised) and let SOMP aggregate with the L2 norm (``aggregate="l2"``). The
SOMP residual is orthogonal to the chosen atoms, so ``<R, d_j> = <R, t_j>`` with t_j the TextSpan atom
after Gram-Schmidt, and because X is centred ``sum_i <R[i], t_j>^2 = n Var_i(R t_j)``: both rank atoms by
the same number, pick the same atoms in the same order and leave the same residual ``X (I - P_S)``
(P_S the orthogonal projector onto the chosen atoms' span). The authors' SOMP (``aggregate="l1"``) sums
absolute correlations instead, which weights many small correlations more than a few large ones and
so can pick other atoms; renormalising the orthogonalised atoms (order-recursive MP) would also break
the equality. Gandelsman et al. first project the dictionary on the span of the head's representation
(`project_dictionary`); App. A.2 treats that as preprocessing given to both algorithms alike, so the
equality holds for either reading of that span below.

Two readings where the authors' code differs from ours (both offered):

* the span TextSpan projects on: ours is the span of the *centred* samples (``center=True``); the
  authors' code takes the top right singular vectors of the *uncentred* samples X (80 of them), which
  adds the direction of the mean (``project_dictionary(..., center=False)``);
* OMP's atoms: ours divides each atom by its norm before scoring (``normalize=True``), so projected
  atoms compete on direction alone; the authors score ``|<r, d_j>|`` on the atoms as given
  (``normalize=False``), so a projected atom that kept more of its length wins more often. The two agree
  on unit-norm atoms.

Everything runs batched over units (H, ...) in torch (GPU when present), in float64 so that the
equality holds to round-off. A unit set of n samples enters through a thin factorisation of its centred
samples, ``X - mean = Q F`` with Q (n, r) orthonormal columns and F (r, E): TextSpan, L2 SOMP and every
least-squares fit only need F (r = d_head + 2 for cached heads), L1 SOMP also needs Q for the per-sample
correlations, and the residual is ``Q F_residual``. TextSpan's Gram-Schmidt'd dictionary is kept as the
low-rank correction ``D - (D U^T) U`` (U the orthonormalised picks), so a shared dictionary meets all
units in one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..device import resolve_device
from ..models.text import encode_texts
from ..units.unit_set import Units

AGGREGATES = ("l2", "l1")
_DTYPE = torch.float64
_CHUNK_BYTES = 256 * 2**20  # working memory per chunk of units: bounds the (units, m, r or n) score tensors


@dataclass
class Signals:
    """Centred samples of H units in factored form: ``X[h] - mean[h] = q[h] @ f[h]``.

    q:    (H, n, r) orthonormal columns
    f:    (H, r, E)
    mean: (H, E) the mean that was removed (zero when built with center=False)
    names: the H unit names
    """

    q: torch.Tensor
    f: torch.Tensor
    mean: torch.Tensor
    names: list[str]

    @property
    def n(self) -> int:
        return int(self.q.shape[1])

    def dense(self) -> np.ndarray:
        """(H, n, E) the centred samples as one array."""
        return (self.q @ self.f).cpu().numpy()

    def components(self, k: int) -> np.ndarray:
        """(H, k, E) the first k principal directions of each unit (rows of V^T in X - mean = U S V^T)."""
        return torch.linalg.svd(self.f, full_matrices=False).Vh[:, :k].cpu().numpy()


@dataclass
class TextDecomposition:
    """What a pursuit returns for H units.

    atoms:     (H, k) dictionary indices in the order they were picked
    explained: (H, k) fraction of the centred signal's energy ||X - mean||_F^2 explained after each pick
    residual:  (H, n, E) the final residual (only when asked for; None otherwise)
    names:     the H unit names
    """

    atoms: np.ndarray
    explained: np.ndarray
    residual: np.ndarray | None
    names: list[str]

    def texts(self, dictionary_texts: list[str]) -> dict[str, list[str]]:
        """{unit: [the k chosen descriptions in order]}."""
        return {u: [dictionary_texts[j] for j in row] for u, row in zip(self.names, self.atoms)}


def signals_from_array(x: np.ndarray | torch.Tensor, names: list[str] | None = None, *, center: bool = True,
                       device: str = "auto") -> Signals:
    """Factor samples (n, E) or (H, n, E) into `Signals` (thin QR of the centred samples)."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"samples have shape {tuple(x.shape)}; expected (n, E) or (H, n, E)")
    x = x.to(device=resolve_device(device), dtype=_DTYPE)
    mean = x.mean(dim=1) if center else torch.zeros_like(x[:, 0])
    q, f = torch.linalg.qr(x - mean[:, None, :])
    return Signals(q, f, mean, names or [f"unit{i}" for i in range(x.shape[0])])


def signals_from_units(units: Units, names: list[str], *, device: str = "auto") -> Signals:
    """Centre and factor the named units of a `UnitSet`/`UnitCache` from (coords, basis), never forming (n, E)."""
    if not names:
        raise ValueError("no units named; pass e.g. units.heads")
    dev = resolve_device(device)
    coords = [np.asarray(units.coords(u)) for u in names]
    shapes = {c.shape for c in coords}
    if len(shapes) != 1:
        raise ValueError(f"units {names[:3]}... have different coordinate shapes {sorted(shapes)}; "
                         "decompose groups of equal shape (e.g. the heads) separately")
    c = torch.as_tensor(np.stack(coords)).to(device=dev, dtype=_DTYPE)
    basis = torch.as_tensor(np.stack([np.asarray(units.basis(u)) for u in names])).to(device=dev, dtype=_DTYPE)
    offset = torch.as_tensor(np.stack([np.asarray(units.offset(u)) for u in names])).to(device=dev, dtype=_DTYPE)
    c_mean = c.mean(dim=1)
    q, r = torch.linalg.qr(c - c_mean[:, None, :])
    return Signals(q, r @ basis, (c_mean[:, None, :] @ basis)[:, 0] + offset, list(names))


def text_atoms(model, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(m, E) float64 unit-norm text embeddings of `texts` from a model with a text tower (`model.encode_text`)."""
    e = encode_texts(model.encode_text, texts, batch_size).double()
    return (e / e.norm(dim=1, keepdim=True)).numpy()


def project_dictionary(dictionary: np.ndarray, signals: Signals, rank: int | None = None,
                       center: bool = True) -> np.ndarray:
    """(m, E) -> (H, m, E): each atom projected on the span of a unit's top-`rank` singular directions.

    This is TextSpan's preprocessing (Gandelsman et al. keep the text component inside the head's
    span). center=True: directions of the centred samples (principal directions); center=False: right
    singular vectors of the uncentred samples, as the authors' code (rank 80 there). rank=None keeps all.
    """
    f = signals.f
    if not center:
        # X = Q F + 1 mean^T and Q's columns are orthogonal to the all-ones vector (centred columns sum to 0),
        # so X = [Q, 1/sqrt(n)] [F; sqrt(n) mean^T] with orthonormal left factor: X's right singular vectors
        # are those of the stacked (r + 1, E) matrix.
        f = torch.cat([f, (signals.n ** 0.5) * signals.mean[:, None, :]], dim=1)
    _, sv, v = torch.linalg.svd(f, full_matrices=False)
    # directions of (numerically) zero singular value are not in the span: zero rows drop out of V^T V
    v = v * (sv > sv[:, :1] * 1e-10)[..., None]
    v = v if rank is None else v[:, :rank]
    d = torch.as_tensor(np.asarray(dictionary), device=v.device, dtype=_DTYPE)
    return ((d @ v.transpose(1, 2)) @ v).cpu().numpy()


def textspan(signals: Signals | np.ndarray, dictionary: np.ndarray, k: int, *, return_residual: bool = False,
             device: str = "auto", progress: bool = True) -> TextDecomposition:
    """TextSpan (Algorithm 1) on every unit: k atoms by largest residual variance, Gram-Schmidt on the dictionary.

    signals:    `Signals`, or samples (n, E) / (H, n, E) which are centred first
    dictionary: (m, E) shared by all units, or (H, m, E) one per unit (e.g. from `project_dictionary`)
    """
    signals = _as_signals(signals, device)
    d_all = _check_dictionary(dictionary, signals, k)
    r = signals.f.shape[1]
    atoms, explained, residuals = [], [], []
    for sl in _chunks(signals, d_all.shape[-2] * (r + k), progress, "TextSpan"):
        f = signals.f[sl].clone()
        total = _energy(f)
        d = _dictionary_chunk(d_all, sl, f)
        rows = torch.arange(f.shape[0], device=f.device)
        picked = torch.zeros(f.shape[0], d.shape[-2], dtype=torch.bool, device=f.device)
        u = f.new_zeros(f.shape[0], 0, f.shape[2])  # orthonormal directions of the atoms picked so far
        chosen, frac = [], []
        for _ in range(k):
            # The Gram-Schmidt'd dictionary is D - (D U^T) U; it is applied as that low-rank correction
            # instead of rewriting (H, m, E) atoms at every step.
            proj = _times(d, f) - _times(d, u) @ (u @ f.transpose(1, 2))  # (h, m, r): atoms against R's rows
            # ||R t_j||^2 = n Var_i(R t_j) because R is centred: TextSpan's variance criterion.
            p = (proj ** 2).sum(-1).masked_fill(picked, -torch.inf).argmax(dim=1)
            picked[rows, p] = True
            t = _rows(d, rows, p)
            t = t - ((t[:, None, :] @ u.transpose(1, 2)) @ u)[:, 0]
            t = t / t.norm(dim=1, keepdim=True).clamp_min(torch.finfo(_DTYPE).tiny)
            f = f - (f @ t[:, :, None]) @ t[:, None, :]
            u = torch.cat([u, t[:, None, :]], dim=1)
            chosen.append(p)
            frac.append(1 - _energy(f) / total)
        atoms.append(torch.stack(chosen, 1))
        explained.append(torch.stack(frac, 1))
        if return_residual:
            residuals.append(signals.q[sl] @ f)
    return _result(atoms, explained, residuals, signals.names)


def somp(signals: Signals | np.ndarray, dictionary: np.ndarray, k: int, *, aggregate: Literal["l2", "l1"] = "l2",
         return_residual: bool = False, device: str = "auto", progress: bool = True) -> TextDecomposition:
    """SOMP (Algorithm 2) on every unit: k atoms by aggregated |correlation| with the residual, least-squares refit.

    aggregate: "l2" (sum of squared correlations: the criterion under which SOMP equals TextSpan) or
               "l1" (sum of absolute correlations: the authors' published variant)
    signals, dictionary: as in `textspan`
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r}; valid: {', '.join(AGGREGATES)}")
    signals = _as_signals(signals, device)
    d_all = _check_dictionary(dictionary, signals, k)
    r = signals.f.shape[1]
    atoms, explained, residuals = [], [], []
    for sl in _chunks(signals, d_all.shape[-2] * (r + k), progress, f"SOMP ({aggregate})"):
        f0, q = signals.f[sl], signals.q[sl]
        total = _energy(f0)
        d = _dictionary_chunk(d_all, sl, f0)
        rows = torch.arange(f0.shape[0], device=f0.device)
        picked = torch.zeros(f0.shape[0], d.shape[-2], dtype=torch.bool, device=f0.device)
        f, chosen, frac = f0, [], []
        for _ in range(k):
            corr = _times(d, f)  # (h, m, r): correlations with the residual's rows, in Q's basis
            if aggregate == "l2":
                score = (corr ** 2).sum(-1)  # Q has orthonormal columns, so this is sum_i <R[i], d_j>^2
            else:
                score = _l1_scores(corr, q)
            p = score.masked_fill(picked, -torch.inf).argmax(dim=1)
            picked[rows, p] = True
            chosen.append(p)
            support = torch.stack([_rows(d, rows, c) for c in chosen], 1)  # (h, s, E)
            # Refit every chosen atom: the least-squares fit of X = Q F is Q times the fit of F's rows.
            w = torch.linalg.lstsq(support.transpose(1, 2), f0.transpose(1, 2)).solution  # (h, s, r)
            f = f0 - w.transpose(1, 2) @ support
            frac.append(1 - _energy(f) / total)
        atoms.append(torch.stack(chosen, 1))
        explained.append(torch.stack(frac, 1))
        if return_residual:
            residuals.append(q @ f)
    return _result(atoms, explained, residuals, signals.names)


def omp(vectors: np.ndarray, dictionary: np.ndarray, k: int, *, normalize: bool = True,
        device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """OMP of vectors (E,) or (H, E): (atoms (H, k) in pick order, coefs (H, k) on the atoms scored).

    normalize=True scores and fits unit-norm atoms (d_j / ||d_j||); False uses the atoms as given (the
    authors' code), so longer atoms score higher.
    """
    y = torch.as_tensor(np.asarray(vectors), device=resolve_device(device), dtype=_DTYPE)
    y = y[None] if y.ndim == 1 else y
    d = torch.as_tensor(np.asarray(dictionary), device=y.device, dtype=_DTYPE)
    if d.ndim != 2 or d.shape[1] != y.shape[1]:
        raise ValueError(f"dictionary has shape {tuple(d.shape)}; expected (m, {y.shape[1]})")
    if not 1 <= k <= min(d.shape):
        raise ValueError(f"k={k}; must be between 1 and min(m, E) = {min(d.shape)}")
    if normalize:
        d = d / d.norm(dim=1, keepdim=True).clamp_min(torch.finfo(_DTYPE).tiny)
    rows = torch.arange(y.shape[0], device=y.device)
    picked = torch.zeros(y.shape[0], d.shape[0], dtype=torch.bool, device=y.device)
    r, chosen = y, []
    for _ in range(k):
        p = (r @ d.T).abs().masked_fill(picked, -torch.inf).argmax(dim=1)
        picked[rows, p] = True
        chosen.append(p)
        support = d[torch.stack(chosen, 1)]  # (H, s, E)
        coef = torch.linalg.lstsq(support.transpose(1, 2), y[:, :, None]).solution[..., 0]
        r = y - (coef[:, None, :] @ support)[:, 0]
    return torch.stack(chosen, 1).cpu().numpy(), coef.cpu().numpy()


def _as_signals(signals: Signals | np.ndarray, device: str) -> Signals:
    return signals if isinstance(signals, Signals) else signals_from_array(signals, device=device)


def _check_dictionary(dictionary: np.ndarray, signals: Signals, k: int) -> torch.Tensor:
    d = torch.as_tensor(np.asarray(dictionary))
    h, e = signals.f.shape[0], signals.f.shape[2]
    if d.ndim not in (2, 3) or d.shape[-1] != e or (d.ndim == 3 and d.shape[0] != h):
        raise ValueError(f"dictionary has shape {tuple(d.shape)}; expected (m, {e}) or ({h}, m, {e})")
    if not 1 <= k <= d.shape[-2]:
        raise ValueError(f"k={k}; must be between 1 and the dictionary size {d.shape[-2]}")
    return d


def _chunks(signals: Signals, floats_per_unit: int, progress: bool, desc: str):
    h = signals.f.shape[0]
    size = max(1, _CHUNK_BYTES // (8 * floats_per_unit))
    for start in tqdm(range(0, h, size), desc=desc, disable=not progress or h <= size):
        yield slice(start, min(start + size, h))


def _dictionary_chunk(dictionary: torch.Tensor, sl: slice, like: torch.Tensor) -> torch.Tensor:
    """The chunk's dictionary: (m, E) when shared (kept 2-D so products with it are one matrix product)."""
    d = dictionary[sl] if dictionary.ndim == 3 else dictionary
    return d.to(device=like.device, dtype=_DTYPE)


def _times(d: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(m, E) or (h, m, E) times (h, s, E)^T -> (h, m, s); a shared dictionary meets all units in one product."""
    if d.ndim == 3:
        return d @ v.transpose(1, 2)
    h, s, e = v.shape
    return (d @ v.reshape(h * s, e).T).reshape(d.shape[0], h, s).transpose(0, 1)


def _l1_scores(corr: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(h, m, r), (h, n, r) -> (h, m): sum_i |<R[i], d_j>|, one unit at a time in a reused (m, n) buffer."""
    buf = corr.new_empty(corr.shape[1], q.shape[1])
    out = corr.new_empty(corr.shape[:2])
    for i in range(corr.shape[0]):
        torch.matmul(corr[i], q[i].T, out=buf)
        out[i] = buf.abs_().sum(-1)
    return out


def _rows(d: torch.Tensor, rows: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(h, E): atom p[i] of unit i's dictionary."""
    return d[rows, p] if d.ndim == 3 else d[p]


def _energy(f: torch.Tensor) -> torch.Tensor:
    return (f ** 2).sum(dim=(1, 2))


def _result(atoms: list, explained: list, residuals: list, names: list[str]) -> TextDecomposition:
    return TextDecomposition(torch.cat(atoms).cpu().numpy(), torch.cat(explained).cpu().numpy(),
                             torch.cat(residuals).cpu().numpy() if residuals else None, names)


def compare_textspan_somp(signals: Signals, dictionary: np.ndarray, k: int, *, device: str = "auto",
                          progress: bool = True) -> pd.DataFrame:
    """App. A.2 per unit: TextSpan against L2 SOMP (should be equal) and L1 SOMP (the authors' variant).

    Columns: unit; same_atoms (TextSpan and L2 SOMP pick the same atoms in the same order);
    max_residual_diff (max |R_TextSpan - R_SOMP| over the (n, E) residual); residual_norm (||R||_F / sqrt(n));
    l1_same_atoms; l1_first_departure (1-based pick where L1 SOMP first differs, 0 if never);
    l1_overlap (atoms L1 SOMP shares with TextSpan, in any order).
    """
    ts = textspan(signals, dictionary, k, return_residual=True, device=device, progress=progress)
    l2 = somp(signals, dictionary, k, aggregate="l2", return_residual=True, device=device, progress=progress)
    l1 = somp(signals, dictionary, k, aggregate="l1", device=device, progress=progress)
    differs = l1.atoms != ts.atoms
    return pd.DataFrame({
        "unit": ts.names,
        "same_atoms": (ts.atoms == l2.atoms).all(axis=1),
        "max_residual_diff": np.abs(ts.residual - l2.residual).max(axis=(1, 2)),
        "residual_norm": np.linalg.norm(ts.residual, axis=(1, 2)) / np.sqrt(signals.n),
        "l1_same_atoms": ~differs.any(axis=1),
        "l1_first_departure": np.where(differs.any(axis=1), differs.argmax(axis=1) + 1, 0),
        "l1_overlap": [len(set(a) & set(b)) for a, b in zip(ts.atoms, l1.atoms)],
    })
