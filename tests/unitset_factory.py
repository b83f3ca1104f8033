"""Random UnitSets with a known class structure, for the alignment tests (no model, no cache)."""

from __future__ import annotations

import numpy as np
import torch

from residual_lib.units.unit_set import UnitSet, head_name, mlp_name
from residual_lib.alignment.classifier import Classifier


def class_embeddings(n_classes: int, embed_dim: int, seed: int = 0) -> np.ndarray:
    """(C, E) random unit vectors."""
    t = np.random.default_rng(seed).normal(size=(n_classes, embed_dim))
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def random_unitset(n: int = 240, n_layers: int = 2, n_heads: int = 4, d_head: int = 6, embed_dim: int = 16,
                   n_classes: int = 4, signal_heads: tuple[str, ...] = ("L1.H2",), signal: float = 3.0,
                   seed: int = 0, class_seed: int = 0, model_seed: int = 0) -> tuple[UnitSet, Classifier]:
    """Units whose `signal_heads` point along the class embedding of each sample's label; the rest is noise.

    The subspaces (bases, offsets) belong to the "model" (`model_seed`), the samples to `seed`: two sets of
    one model share their bases, as two caches of one model do.
    """
    rng, model = np.random.default_rng(seed), np.random.default_rng(model_seed)
    t = class_embeddings(n_classes, embed_dim, class_seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    r = d_head + 2
    coords, bases, offsets = {}, {}, {}
    coords["EMB"] = (np.ones((n, 1)) + 0.05 * rng.normal(size=(n, 1))) * model.normal(size=(1, embed_dim))
    bases["EMB"], offsets["EMB"] = np.eye(embed_dim), np.zeros(embed_dim)
    for layer in range(n_layers):
        for head in range(n_heads):
            name = head_name(layer, head)
            q, _ = np.linalg.qr(np.concatenate([t.T, model.normal(size=(embed_dim, embed_dim))], axis=1))
            random_basis = np.linalg.qr(model.normal(size=(embed_dim, r)))[0].T
            basis = q[:, :r].T if name in signal_heads else random_basis
            points = rng.normal(size=(n, embed_dim)) * model.uniform(0.2, 1.0, size=embed_dim)
            if name in signal_heads:
                points += signal * t[labels]
            bases[name], offsets[name] = basis, 0.1 * model.normal(size=embed_dim)
            coords[name] = points @ basis.T
    for layer in range(n_layers):
        name = mlp_name(layer)
        coords[name] = rng.normal(size=(n, embed_dim)) * model.uniform(0.1, 1.0, size=embed_dim) + 0.5 * t[labels]
        bases[name], offsets[name] = np.eye(embed_dim), np.zeros(embed_dim)
    order = ["EMB", *[head_name(l, h) for l in range(n_layers) for h in range(n_heads)],
             *[mlp_name(l) for l in range(n_layers)]]
    coords = {u: coords[u].astype(np.float32) for u in order}
    bases = {u: bases[u].astype(np.float32) for u in order}
    offsets = {u: offsets[u].astype(np.float32) for u in order}
    embedding = sum(coords[u] @ bases[u] + offsets[u] for u in order).astype(np.float32)
    units = UnitSet(coords, bases, offsets, embedding, labels)
    classifier = Classifier(torch.from_numpy(t.astype(np.float32)), tuple(f"c{i}" for i in range(n_classes)))
    return units, classifier
