"""A random `UnitSet` with a model's unit layout, for tests and benchmarks that need no model."""

from __future__ import annotations

import numpy as np

from .unit_set import UnitSet, head_name, mlp_name


def random_unit_set(n: int = 200, n_layers: int = 2, n_heads: int = 3, r: int = 10, embed_dim: int = 32,
                    latent_dim: int = 4, seed: int = 0, dtype: np.dtype = np.float32) -> UnitSet:
    """n samples; heads: (n, r) coords of `latent_dim`-dim data plus noise in a random r-dim subspace with an offset.

    EMB and the MLPs use the identity basis (as in a real cache), with (n, embed_dim) low-rank data.
    Head l.h gets latent dimension latent_dim + l so layers differ. Deterministic under `seed`.
    """
    if r > embed_dim:
        raise ValueError(f"r={r} exceeds embed_dim={embed_dim}; a head subspace must fit in the output space")
    rng = np.random.default_rng(seed)

    def low_rank(width: int, rank: int) -> np.ndarray:
        rank = min(rank, width)
        scales = np.geomspace(3.0, 0.3, rank)
        z = rng.standard_normal((n, rank)) * scales
        return (z @ rng.standard_normal((rank, width)) + 0.01 * rng.standard_normal((n, width))).astype(dtype)

    coords, bases, offsets = {}, {}, {}
    eye, zero = np.eye(embed_dim, dtype=dtype), np.zeros(embed_dim, dtype=dtype)
    coords["EMB"], bases["EMB"], offsets["EMB"] = low_rank(embed_dim, latent_dim), eye, zero
    for l in range(n_layers):
        for h in range(n_heads):
            u = head_name(l, h)
            q = np.linalg.qr(rng.standard_normal((embed_dim, r)))[0].T
            coords[u], bases[u] = low_rank(r, latent_dim + l), q.astype(dtype)
            offsets[u] = rng.standard_normal(embed_dim).astype(dtype)
    for l in range(n_layers):
        u = mlp_name(l)
        coords[u], bases[u], offsets[u] = low_rank(embed_dim, latent_dim + l), eye, zero
    embedding = sum(coords[u] @ bases[u] + offsets[u] for u in coords)
    return UnitSet(coords, bases, offsets, embedding.astype(dtype), np.full(n, -1))
