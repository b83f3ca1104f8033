"""What every model adapter provides: the image embedding and its exact residual decomposition.

Shapes: B batch, L layers, H heads, d = d_head, r = d_head + 2, E = embed_dim (the output space).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from .unit_set import head_name, mlp_name

Convention = Literal["paper", "centred"]
CONVENTIONS: tuple[str, ...] = ("paper", "centred")


@dataclass
class HeadBases:
    """Fixed per-head affine subspaces: head (l, h) = coords @ basis[l, h] + offset[l, h]."""

    basis: Tensor   # (L, H, r, E), orthonormal rows
    offset: Tensor  # (L, H, E)


@dataclass
class Decomposition:
    """One batch's units in compact form; `to_units` expands it to output space."""

    emb: Tensor          # (B, E)
    head_coords: Tensor  # (B, L, H, r)
    mlp: Tensor          # (B, L, E)
    embedding: Tensor    # (B, E) the model's own image embedding for the same images

    def to_units(self, bases: HeadBases) -> dict[str, Tensor]:
        """{unit: (B, E)} in output space, in canonical order (`units.unit_names`)."""
        B, L, H, _ = self.head_coords.shape
        heads = torch.einsum("blhr,lhre->blhe", self.head_coords, bases.basis.to(self.head_coords)) \
            + bases.offset.to(self.head_coords)
        out = {"EMB": self.emb}
        out.update({head_name(l, h): heads[:, l, h] for l in range(L) for h in range(H)})
        out.update({mlp_name(l): self.mlp[:, l] for l in range(L)})
        return out


class ResidualModel(ABC):
    """A vision transformer whose pooled output is decomposed into units summing to `encode_image`.

    Subclasses set the architecture attributes and implement the three abstract methods.
    """

    name: str
    n_layers: int
    n_heads: int
    d_head: int
    width: int
    embed_dim: int
    image_size: int
    preprocess: Callable  # PIL image or uint8 (3, H, W) tensor -> float (3, image_size, image_size)
    module: torch.nn.Module
    weights: str | None = None  # weights tag or path as loaded (None: random init); recorded in cache manifests

    @abstractmethod
    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) preprocessed images -> (B, E) the model's own image embedding."""

    @abstractmethod
    def decompose_batch(self, images: Tensor, convention: Convention = "paper") -> Decomposition:
        """(B, 3, S, S) -> the batch's units in compact form (heads in `head_bases(convention)`)."""

    @abstractmethod
    def head_bases(self, convention: Convention = "paper") -> HeadBases:
        """The fixed per-head subspaces for a convention."""

    @property
    def has_text(self) -> bool:
        return False

    def encode_text(self, texts: list[str]) -> Tensor:
        """(N,) strings -> (N, E) text embeddings (models with a text tower only)."""
        raise NotImplementedError(f"model {self.name!r} has no text tower")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device: torch.device | str) -> "ResidualModel":
        self.module.to(device)
        return self
