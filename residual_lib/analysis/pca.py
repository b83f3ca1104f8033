"""Per-unit PCA, batched over every unit of a `UnitSet` / `UnitCache` (CPU or GPU).

A unit is stored as coordinates in an orthonormal basis of its affine subspace
(``output_space = coords @ basis + offset``). An orthonormal map preserves means, variances and
angles, so PCA of the coordinates, with the components mapped through ``basis``, *is* PCA of the
output-space points; it costs r^2 instead of E^2 per sample (r = d_head + 2 for heads). Units that
share r (all heads of a model) are stacked into one (U, n, r) tensor and decomposed in one batched
`torch.linalg.eigh` of their covariance matrices.

Conventions (those of scikit-learn's `PCA`, which the tests use as the oracle): data are centred
on the unit mean, variances use the n - 1 denominator, components are sorted by decreasing
variance. Each component's sign is fixed so that its largest-|.| output-space entry is positive,
so two runs (or two datasets) give comparable components.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..device import resolve_device
from ..units.unit_set import Units


def fix_signs(components: np.ndarray) -> np.ndarray:
    """(..., k, E) -> the same components, each flipped so its largest-|.| entry is positive."""
    idx = np.abs(components).argmax(axis=-1)[..., None]
    signs = np.sign(np.take_along_axis(components, idx, axis=-1))
    signs[signs == 0] = 1.0
    return components * signs


def _as_unit_arrays(units: Units | Mapping[str, np.ndarray], names: list[str]):
    """Yield (name, coords (n, r), basis (r, E) or None, offset (E,) or None) for each unit."""
    if isinstance(units, Mapping):
        for u in names:
            x = np.asarray(units[u])
            if x.ndim != 2:
                raise ValueError(f"unit {u!r} has shape {x.shape}; expected (n, d)")
            yield u, x, None, None
    else:
        for u in names:
            yield u, units.coords(u), units.basis(u), units.offset(u)


def _batched_pca(x: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, n, r) -> mean (U, r), components (U, k, r), variances (U, k), total variance (U,)."""
    mean = x.mean(dim=1)
    xc = x - mean[:, None, :]
    cov = xc.transpose(1, 2) @ xc / (x.shape[1] - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals = evals.flip(-1)[:, :n_components].clamp_min(0.0)
    comps = evecs.flip(-1)[:, :, :n_components].transpose(1, 2)
    total = cov.diagonal(dim1=1, dim2=2).sum(-1)
    return mean, comps, evals, total


class UnitPCA:
    """PCA of every unit at once; learned state is a dict per unit.

    n_components: components kept per unit (None: all, i.e. min(n - 1, r_u)).
    units:        which units (None: all of the input's units).
    device:       'auto' (CUDA when present), 'cpu' or 'cuda'.
    dtype:        working precision; float64 by default so small variances are exact.
    batch_size:   units stacked per eigh call (bounds memory at batch_size * n * r floats).

    After `fit`, for each unit u:
      components_[u]               (k, E) orthonormal rows in output space, decreasing variance
      explained_variance_[u]       (k,) variances (n - 1 denominator)
      explained_variance_ratio_[u] (k,) variance / the unit's total variance
      mean_[u]                     (E,) the unit's mean in output space
      coord_components_[u]         (k, r) the same components in the unit's own coordinates
    """

    def __init__(self, n_components: int | None = None, units: list[str] | None = None,
                 device: str = "auto", dtype: torch.dtype = torch.float64, batch_size: int = 32,
                 progress: bool = True):
        self.n_components = n_components
        self.units = units
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.progress = progress

    def fit(self, units: Units | Mapping[str, np.ndarray]) -> "UnitPCA":
        """Fit one PCA per unit; `units` is a UnitSet/UnitCache or a dict {name: (n, d) array}."""
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"n_components={self.n_components!r}; must be a positive int or None")
        device = resolve_device(self.device)
        available = list(units) if isinstance(units, Mapping) else list(units.units)
        names = available if self.units is None else list(self.units)
        missing = [u for u in names if u not in available]
        if missing:
            raise KeyError(f"units {missing} not in the input; available: {available[:5]} ... ({len(available)} units)")

        by_shape: dict[tuple[int, int], list] = defaultdict(list)
        for item in _as_unit_arrays(units, names):
            by_shape[item[1].shape].append(item)

        self.components_, self.explained_variance_, self.explained_variance_ratio_ = {}, {}, {}
        self.mean_, self.coord_components_ = {}, {}
        n_batches = sum(-(-len(v) // self.batch_size) for v in by_shape.values())
        bar = tqdm(total=n_batches, desc="PCA per unit", disable=not self.progress)
        for (n, r), items in by_shape.items():
            if n < 2:
                raise ValueError(f"units {[i[0] for i in items][:3]} have n={n} samples; PCA needs at least 2")
            k = min(n - 1, r) if self.n_components is None else min(self.n_components, n - 1, r)
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                x = torch.from_numpy(np.stack([c[1] for c in chunk])).to(device=device, dtype=self.dtype)
                mean, comps, evals, total = (t.cpu().numpy() for t in _batched_pca(x, k))
                for i, (u, _, basis, offset) in enumerate(chunk):
                    self._store(u, mean[i], comps[i], evals[i], total[i], basis, offset)
                bar.update(1)
        bar.close()
        self.units_ = names
        return self

    def _store(self, u: str, mean: np.ndarray, comps: np.ndarray, evals: np.ndarray, total: float,
               basis: np.ndarray | None, offset: np.ndarray | None) -> None:
        if basis is None:
            out, out_mean = comps, mean
        else:
            b = np.asarray(basis, dtype=comps.dtype)
            out, out_mean = comps @ b, mean @ b + np.asarray(offset, dtype=comps.dtype)
        fixed = fix_signs(out)
        flips = np.sign((fixed * out).sum(-1))  # the same flips, applied to the coordinate form
        self.components_[u] = fixed
        self.coord_components_[u] = comps * flips[:, None]
        self.explained_variance_[u] = evals
        self.explained_variance_ratio_[u] = evals / total if total > 0 else np.zeros_like(evals)
        self.mean_[u] = out_mean
