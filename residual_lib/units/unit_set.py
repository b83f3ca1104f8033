"""The unit vocabulary (`EMB`, `L{l}.H{h}`, `L{l}.MLP`) and an in-memory set of unit representations.

Every unit u is stored as coordinates in an orthonormal basis of the affine subspace it lives in:
``output_space(u) = coords(u) @ basis(u) + offset(u)``. Heads use a (d_head + 2)-dim basis (DESIGN.md,
"Residual units"); `EMB` and MLPs use the identity basis of the output space and a zero offset.
`UnitSet` (in memory) and `UnitCache` (on disk, `residual_lib.store.cache`) share this interface, so every
analysis accepts either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_UNIT = re.compile(r"^(?:EMB|L(\d+)\.H(\d+)|L(\d+)\.MLP)$")


def unit_names(n_layers: int, n_heads: int) -> list[str]:
    """All units in canonical order: EMB, every head layer by layer, then every MLP."""
    heads = [head_name(l, h) for l in range(n_layers) for h in range(n_heads)]
    return ["EMB", *heads, *[mlp_name(l) for l in range(n_layers)]]


def head_name(layer: int, head: int) -> str:
    return f"L{layer}.H{head}"


def mlp_name(layer: int) -> str:
    return f"L{layer}.MLP"


def parse_unit(name: str) -> tuple[str, int | None, int | None]:
    """('emb', None, None), ('head', layer, head) or ('mlp', layer, None); ValueError on anything else."""
    m = _UNIT.match(name)
    if m is None:
        raise ValueError(f"not a unit name: {name!r}; valid forms: 'EMB', 'L<layer>.H<head>', 'L<layer>.MLP'")
    if name == "EMB":
        return "emb", None, None
    if m.group(1) is not None:
        return "head", int(m.group(1)), int(m.group(2))
    return "mlp", int(m.group(3)), None


def is_head(name: str) -> bool:
    return parse_unit(name)[0] == "head"


class Units(Protocol):
    """What every analysis reads from a set of unit representations: `UnitSet` (memory), `UnitCache` (disk)."""

    @property
    def units(self) -> list[str]: ...

    @property
    def heads(self) -> list[str]: ...

    @property
    def n(self) -> int: ...

    @property
    def embedding(self) -> np.ndarray: ...

    @property
    def labels(self) -> np.ndarray: ...

    def coords(self, unit: str) -> np.ndarray: ...

    def basis(self, unit: str) -> np.ndarray: ...

    def offset(self, unit: str) -> np.ndarray: ...

    def output_space(self, unit: str) -> np.ndarray: ...


@dataclass
class UnitSet:
    """Unit representations held in memory (numpy), with the same interface as an on-disk cache.

    unit_coords:  {unit: (n, r_u) array}
    unit_bases:   {unit: (r_u, embed_dim) array with orthonormal rows}
    unit_offsets: {unit: (embed_dim,) array}
    embedding: (n, embed_dim) the model's own image embedding (sum of all units)
    labels:   (n,) integer class labels (or -1 where there are none)
    """

    unit_coords: dict[str, np.ndarray]
    unit_bases: dict[str, np.ndarray]
    unit_offsets: dict[str, np.ndarray]
    embedding: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def units(self) -> list[str]:
        return list(self.unit_coords)

    @property
    def heads(self) -> list[str]:
        return [u for u in self.units if is_head(u)]

    @property
    def n(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.embedding.shape[1])

    def coords(self, unit: str) -> np.ndarray:
        """(n, r_u) the unit's points in the orthonormal coordinates of its subspace."""
        return self.unit_coords[self._check(unit)]

    def basis(self, unit: str) -> np.ndarray:
        """(r_u, embed_dim) orthonormal rows spanning the unit's subspace."""
        return self.unit_bases[self._check(unit)]

    def offset(self, unit: str) -> np.ndarray:
        """(embed_dim,) the fixed vector every point of the unit shares."""
        return self.unit_offsets[self._check(unit)]

    def output_space(self, unit: str) -> np.ndarray:
        """(n, embed_dim) float32: the unit in the model's image-embedding space."""
        u = self._check(unit)
        return (self.unit_coords[u].astype(np.float32) @ self.unit_bases[u].astype(np.float32)
                + self.unit_offsets[u].astype(np.float32))

    def _check(self, unit: str) -> str:
        if unit not in self.unit_coords:
            shown = ", ".join(self.units[:4] + ["..."] + self.units[-2:]) if len(self.units) > 6 else ", ".join(self.units)
            raise KeyError(f"unknown unit {unit!r}; this set has {len(self.units)} units: {shown}")
        return unit
