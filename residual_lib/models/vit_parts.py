"""Pieces every ViT adapter needs in the same form: image input checks and the class-token attention inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..units.decompose import distribute, head_bases
from ..units.adapter import Convention, Decomposition, HeadBases


class ImageInput:
    """`preprocess` and the batch check for an adapter with `name`, `image_size`, `_pil_transform`, `_mean`, `_std`."""

    name: str
    image_size: int
    _pil_transform: Callable
    _mean: Tensor  # (3, 1, 1)
    _std: Tensor   # (3, 1, 1)

    def preprocess(self, image: Any) -> Tensor:
        """PIL image or uint8 (3, S, S) tensor -> float (3, S, S) normalised as the model expects."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(image)
        if not isinstance(image, Tensor):
            return self._pil_transform(image)
        S = self.image_size
        if image.dtype != torch.uint8 or tuple(image.shape) != (3, S, S):
            raise ValueError(f"expected a uint8 (3, {S}, {S}) tensor for model {self.name!r}, got "
                             f"{image.dtype} {tuple(image.shape)}; resize in the dataset or pass PIL images")
        return (image.float() / 255.0 - self._mean) / self._std

    def _check_images(self, images: Tensor) -> None:
        S = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, S, S):
            raise ValueError(f"expected preprocessed images of shape (B, 3, {S}, {S}) for model {self.name!r}, "
                             f"got {tuple(images.shape)}")


def packed_qkv(h: Tensor, weight: Tensor, bias: Tensor | None, n_heads: int, d_head: int,
               class_query_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, W) normed stream and a packed (3 H d, W) in-projection -> q, k, v each (B, H, T, d).

    With `class_query_only` the query is the class token's alone (B, H, 1, d): the last block, whose
    other tokens nothing reads.
    """
    B, T, _ = h.shape
    if not class_query_only:
        return F.linear(h, weight, bias).view(B, T, 3, n_heads, d_head).permute(2, 0, 3, 1, 4).unbind(0)
    inner = n_heads * d_head
    wq, wkv = weight.split([inner, 2 * inner])
    bq, bkv = bias.split([inner, 2 * inner]) if bias is not None else (None, None)
    q = F.linear(h[:, :1], wq, bq).view(B, 1, n_heads, d_head).transpose(1, 2)
    k, v = F.linear(h, wkv, bkv).view(B, T, 2, n_heads, d_head).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


@dataclass
class BlockView:
    """One pre-norm block seen through its parts, whatever the library calls them.

    norm1: the attention's input norm; qkv: the packed in-projection (a Linear to 3 H d);
    out: (B, T, H d) head outputs -> (B, T, W) attention branch (out-projection and LayerScale);
    mlp: (B, T, W) stream -> (B, T, W) MLP branch (its norm, the MLP and LayerScale).
    """

    norm1: Callable[[Tensor], Tensor]
    qkv: nn.Linear
    out: Callable[[Tensor], Tensor]
    mlp: Callable[[Tensor], Tensor]


def run_class_token(x: Tensor, blocks: list[BlockView], n_heads: int, d_head: int) -> tuple[Tensor, Tensor, Tensor]:
    """Run the blocks on the (B, T, W) stream; returns the final class token (B, W), each head's value
    mix at the class token z (B, L, H, d) and each MLP branch at the class token (B, L, W)."""
    zs, mlps = [], []
    for i, blk in enumerate(blocks):
        B = x.shape[0]
        last = i == len(blocks) - 1
        q, k, v = packed_qkv(blk.norm1(x), blk.qkv.weight, blk.qkv.bias, n_heads, d_head, class_query_only=last)
        if last:
            x = x[:, :1]
        o = F.scaled_dot_product_attention(q, k, v)                       # (B, H, T or 1, d)
        zs.append(o[:, :, 0])
        x = x + blk.out(o.transpose(1, 2).reshape(B, -1, n_heads * d_head))
        mlp = blk.mlp(x)
        mlps.append(mlp[:, 0])
        x = x + mlp
    return x[:, 0], torch.stack(zs, 1), torch.stack(mlps, 1)


class ReadoutDecomposition:
    """`head_bases` and `decompose_batch` for an adapter that provides `readout() -> Readout` and
    `capture(images) -> ClassTokenCapture` (`residual_lib.units.decompose`)."""

    def head_bases(self, convention: Convention = "paper") -> HeadBases:
        """The fixed per-head subspaces for a convention."""
        return head_bases(self.readout(), convention)

    def decompose_batch(self, images: Tensor, convention: Convention = "paper") -> Decomposition:
        """(B, 3, S, S) -> the batch's units in compact form (heads in `head_bases(convention)`)."""
        return distribute(self.capture(images), self.readout(), convention)[0]
