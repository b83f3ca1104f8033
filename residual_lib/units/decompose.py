r"""Distribute a pre-norm ViT's final LayerNorm and projection over its residual units.

Every adapter (open_clip, timm, transformers, BLIP) captures the same raw pieces of the class-token
residual stream and calls `distribute`; the math lives here once.

Notation (one image; W stream width, E output dim, L layers, H heads, d = W / H, N = 2L + 1):

    Y = x0 + sum_l [ sum_h (z_lh A_lh + b_l / H) ] + sum_l m_l                 (W,)

x0 the class token after ``ln_pre``; z_lh (d,) head h's value mix at the class token (softmax
attention weights times values, before the out-projection); A_lh (d, W) the rows of the
out-projection that act on head h, LayerScale folded in; b_l (W,) the out-projection bias, LayerScale
folded in; m_l (W,) the MLP output, LayerScale folded in. The model's output is

    y = LN(Y) P = ((Y - mu) / sigma * gamma + beta) P,   mu = mean(Y),  sigma = sqrt(var(Y) + eps)

(biased variance over the W features, as LayerNorm uses; P (W, E) the final projection, identity if
there is none). Each unit U gets a weight w_U: 1/N for x0 and each MLP, 1/(N H) for each head, so
the weights sum to 1.

Convention ``"paper"`` (the authors' and TextSpan's; the default): every unit is divided by the
std of the *total* stream, multiplied by gamma, and takes its weight's share of the mean and of beta:

    rep(U) = ((U - w_U mu) / sigma * gamma + w_U beta) P

Convention ``"centred"``: every unit is centred on its own feature mean (TransformerLens style):

    rep(U) = ((U - mean(U)) / sigma * gamma + w_U beta) P

Both sum exactly to y over all units (sum_U w_U = 1; sum_U mean(U) = mu).

A head's representation lives in a fixed (d+2)-dim affine subspace. With
u = [z / sigma, -mu / sigma, 1 / sigma] (d + 2,) it is ``rep = u M + c`` where

    paper:     M = [A gamma P ;  w gamma P ;  (b / H * gamma) P],            c = w beta P
    centred:   M = [A~ gamma P;  0         ;  (b/H - mean(b/H)) gamma P],  c = w beta P

(A~ = A with each row centred; "gamma P" means diag(gamma) P). With the QR factorisation
M^T = Q R (Q (E, r) orthonormal columns, signs fixed so diag(R) >= 0, computed in float64), a head
is stored as coords = u R^T (r,) and mapped back as coords Q^T + c. The basis Q^T and offset c are
fixed per model and convention (`HeadBases`). Every head has r = d + 2 coordinates; where M has
lower rank (the centred convention's zero row, a zero bias) the extra coordinates are identically
zero, which leaves distances and PCA unchanged. Distances between images are the same in
coordinates and in output space, since Q has orthonormal columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .adapter import CONVENTIONS, Convention, Decomposition, HeadBases, ResidualModel


@dataclass
class Readout:
    """The fixed weights that carry the class-token stream to the output (one per model and device).

    out_weight: (L, H, d, W) out-projection rows acting on each head's value mix, LayerScale folded in
    out_bias:   (L, W) out-projection bias, LayerScale folded in
    norm_weight, norm_bias: (W,) the final LayerNorm's gamma and beta; norm_eps its epsilon
    proj: (W, E) the final projection, or None when the output is the normed stream itself
    """

    out_weight: Tensor
    out_bias: Tensor
    norm_weight: Tensor
    norm_bias: Tensor
    norm_eps: float
    proj: Tensor | None
    _factors: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_layers(self) -> int:
        return self.out_weight.shape[0]

    @property
    def n_heads(self) -> int:
        return self.out_weight.shape[1]

    @property
    def n_units(self) -> int:
        """Layer-level units that share the mean and beta: embedding, L attentions, L MLPs."""
        return 2 * self.n_layers + 1


@dataclass
class ClassTokenCapture:
    """One batch's raw class-token residual pieces, before the final norm.

    emb: (B, W) the class token after ln_pre (start of the stream)
    z:   (B, L, H, d) each head's value mix at the class token
    mlp: (B, L, W) each MLP's output at the class token, LayerScale folded in
    embedding: (B, E) the model's own pooled output for these images, when the adapter computed it
    """

    emb: Tensor
    z: Tensor
    mlp: Tensor
    embedding: Tensor | None = None


@dataclass
class _HeadFactors:
    coef: Tensor   # (L, H, r, r) R^T: coords = u @ coef
    bases: HeadBases


def check_convention(convention: str) -> str:
    """Return `convention` or raise naming the valid ones."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    return convention


def _proj(readout: Readout, x: Tensor) -> Tensor:
    return x if readout.proj is None else x @ readout.proj.to(x.dtype)


def _head_factors(readout: Readout, convention: Convention) -> _HeadFactors:
    """QR of each head's (r, E) map M (module docstring), cached on the readout."""
    if convention in readout._factors:
        return readout._factors[convention]
    dt = torch.float64
    A = readout.out_weight.to(dt)                                    # (L, H, d, W)
    L, H, d, W = A.shape
    gamma, beta = readout.norm_weight.to(dt), readout.norm_bias.to(dt)
    bias = readout.out_bias.to(dt)[:, None, :].expand(L, H, W) / H   # (L, H, W)
    w = 1.0 / (readout.n_units * H)
    if convention == "paper":
        g_row = (w * gamma).expand(L, H, 1, W)
    else:
        A = A - A.mean(-1, keepdim=True)
        bias = bias - bias.mean(-1, keepdim=True)
        g_row = torch.zeros(L, H, 1, W, dtype=dt, device=A.device)
    M = torch.cat([A * gamma, g_row, (bias * gamma)[:, :, None, :]], dim=2)   # (L, H, r, W)
    P = readout.proj.to(dt) if readout.proj is not None else None
    if P is not None:
        M = M @ P                                                             # (L, H, r, E)
    Q, R = torch.linalg.qr(M.transpose(-1, -2))                               # (L,H,E,r), (L,H,r,r)
    sign = torch.where(torch.diagonal(R, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(dt)
    Q, R = Q * sign[..., None, :], R * sign[..., :, None]
    offset = (w * beta if P is None else (w * beta) @ P).expand(L, H, -1)     # (L, H, E)
    f32 = torch.float32
    factors = _HeadFactors(
        coef=R.transpose(-1, -2).to(f32).contiguous(),
        bases=HeadBases(basis=Q.transpose(-1, -2).to(f32).contiguous(), offset=offset.to(f32).contiguous()),
    )
    readout._factors[convention] = factors
    return factors


def head_bases(readout: Readout, convention: Convention = "paper") -> HeadBases:
    """The fixed per-head affine subspaces: basis (L, H, r, E) orthonormal rows, offset (L, H, E)."""
    return _head_factors(readout, check_convention(convention)).bases


def distribute(capture: ClassTokenCapture, readout: Readout,
               convention: Convention = "paper") -> tuple[Decomposition, HeadBases]:
    """Distribute the final LayerNorm and projection over the units (module docstring), in float32.

    Returns the batch's `Decomposition` (emb (B, E), head_coords (B, L, H, r), mlp (B, L, E),
    embedding (B, E)) and the `HeadBases` its head coordinates refer to.
    """
    check_convention(convention)
    f32 = torch.float32
    emb, z, mlp = capture.emb.to(f32), capture.z.to(f32), capture.mlp.to(f32)
    A, b = readout.out_weight.to(f32), readout.out_bias.to(f32)
    gamma, beta = readout.norm_weight.to(f32), readout.norm_bias.to(f32)
    n_units = readout.n_units

    attn = torch.einsum("blhd,lhdw->blw", z, A) + b                    # (B, L, W)
    total = emb + attn.sum(1) + mlp.sum(1)                             # (B, W)
    mu = total.mean(-1, keepdim=True)                                  # (B, 1)
    sigma = torch.sqrt(total.var(-1, unbiased=False, keepdim=True) + readout.norm_eps)

    def layer_unit(x: Tensor) -> Tensor:
        """(..., W) embedding or MLP output -> (..., E) in output space."""
        share_mu = mu.view(-1, *([1] * (x.dim() - 2)), 1) / n_units
        centre = share_mu if convention == "paper" else x.mean(-1, keepdim=True)
        s = sigma.view(-1, *([1] * (x.dim() - 2)), 1)
        return _proj(readout, (x - centre) / s * gamma + beta / n_units)

    factors = _head_factors(readout, convention)
    B, L, H, _ = z.shape
    inv = (1.0 / sigma).view(B, 1, 1, 1)
    u = torch.cat([z * inv, (-mu * inv.view(B, 1)).view(B, 1, 1, 1).expand(B, L, H, 1),
                   inv.expand(B, L, H, 1)], dim=-1)                    # (B, L, H, r)
    coords = torch.einsum("blhr,lhrs->blhs", u, factors.coef)

    embedding = capture.embedding
    if embedding is None:
        embedding = _proj(readout, F.layer_norm(total, (total.shape[-1],), gamma, beta, readout.norm_eps))
    dec = Decomposition(emb=layer_unit(emb), head_coords=coords, mlp=layer_unit(mlp), embedding=embedding.to(f32))
    return dec, factors.bases


def decompose(model: ResidualModel, images: Tensor, convention: Convention = "paper") -> dict[str, Tensor]:
    """(B, 3, S, S) preprocessed images -> {unit: (B, E)} in output space, canonical order; sums to encode_image."""
    check_convention(convention)
    return model.decompose_batch(images, convention).to_units(model.head_bases(convention))


def decomposition_error(model: ResidualModel, images: Tensor, convention: Convention = "paper") -> float:
    """Largest |sum of the units - encode_image| over `images`, relative to the embedding's largest |entry|.

    The invariant every adapter keeps; float32 sums of a few hundred units land near 1e-6, and an adapter that
    misses a piece of the residual stream (a gate, a norm, a LayerScale) lands far above 1e-4.
    """
    with torch.no_grad():
        units = decompose(model, images, convention)
        embedding = model.encode_image(images).float()
    total = torch.stack(list(units.values())).sum(0)
    return float((total - embedding).abs().max() / embedding.abs().max())
