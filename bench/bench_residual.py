"""One ResiDual (RD) training epoch: ours, from precomputed PCA coefficients (one (B, K) x (K, E) product per
batch), against the same epoch computed unit by unit from the cached coordinates in a Python loop, in one run.

    .venv/bin/python bench/bench_residual.py            # ViT-B/32-sized: 12x12 heads, d_head 64, E 512, n=10k, 15,360 scales
    .venv/bin/python bench/bench_residual.py --quick    # 4x4 heads, d_head 16, E 64, n=2000

Both sides train the same scales with the same Schedule-Free AdamW, batch 64, forward + backward + step, and
must produce the same output on the first batch. Each side is timed on --batches batches and the time per epoch
is that per-batch time times the number of batches in an epoch (stated in the output; --batches 0 runs the
whole epoch). Threads: --threads (default 1) for both.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import schedulefree
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from residual_lib.alignment.residual import Architecture, make_method
from residual_lib.units.unit_set import UnitSet, unit_names


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--n", type=int, default=10_000, help="training samples (one epoch)")
    p.add_argument("--n-reference", type=int, default=1024, help="reference samples for the PCA")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=20, help="batches timed per side (0: the whole epoch)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.quick:
        a.layers, a.heads, a.d_head, a.embed_dim, a.n, a.n_reference, a.batches = 4, 4, 16, 64, 2000, 256, 0
    return a


def random_units(arch: Architecture, n: int, seed: int) -> UnitSet:
    """Units of a random 'model' (bases fixed by seed 0) with n random samples (seed)."""
    model, rng = np.random.default_rng(0), np.random.default_rng(seed)
    r, e = arch.d_head + 2, arch.embed_dim
    coords, bases, offsets = {}, {}, {}
    for u in unit_names(arch.n_layers, arch.n_heads):
        head = u.startswith("L") and ".H" in u
        bases[u] = np.linalg.qr(model.normal(size=(e, r)))[0].T.astype(np.float32) if head else np.eye(e, dtype=np.float32)
        offsets[u] = (0.1 * model.normal(size=e)).astype(np.float32)
        coords[u] = rng.normal(size=(n, r if head else e)).astype(np.float32)
    embedding = sum(coords[u] @ bases[u] + offsets[u] for u in coords).astype(np.float32)
    return UnitSet(coords, bases, offsets, embedding, rng.integers(0, 10, size=n))


class UnitLoopResiDual(nn.Module):
    """The same RD, evaluated per unit from the cached coordinates: Phi (X_u - mu_u) recomputed every batch."""

    def __init__(self, rd, units: UnitSet):
        super().__init__()
        self.scales = nn.Parameter(rd.scales.detach().clone())
        self.coords = {u: torch.from_numpy(units.coords(u)) for u, _ in rd.blocks}
        self.fixed = {u: torch.from_numpy(units.coords(u)) for u in rd.fixed_units}
        self.maps, self.shifts, self.components, self.slices = {}, {}, {}, {}
        start = 0
        for u, k in rd.blocks:
            phi = rd.pca.components_[u][:k]
            self.maps[u] = torch.from_numpy((units.basis(u).astype(np.float64) @ phi.T).astype(np.float32))
            self.shifts[u] = torch.from_numpy(((units.offset(u) - rd.pca.mean_[u]) @ phi.T).astype(np.float32))
            self.components[u] = torch.from_numpy(phi.astype(np.float32))
            self.slices[u] = slice(start, start + k)
            start += k
        self.fixed_shift = {u: torch.from_numpy((units.offset(u) - rd.pca.mean_[u]).astype(np.float32))
                            for u in rd.fixed_units}
        self.fixed_basis = {u: torch.from_numpy(units.basis(u)) for u in rd.fixed_units}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = 0
        for u, coords in self.coords.items():
            coef = coords[idx] @ self.maps[u] + self.shifts[u]
            out = out + (coef * self.scales[self.slices[u]]) @ self.components[u]
        for u, coords in self.fixed.items():
            out = out + coords[idx] @ self.fixed_basis[u] + self.fixed_shift[u]
        return out


def time_epoch(forward, params, inputs, labels, classes, batch_size: int, n_batches: int) -> float:
    """Seconds per batch of forward + backward + Schedule-Free step over the first n_batches batches."""
    optimizer = schedulefree.AdamWScheduleFree(params, lr=1e-3)
    optimizer.train()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    batches = [order[i:i + batch_size] for i in range(0, len(labels), batch_size)][:n_batches]
    start = time.perf_counter()
    for idx in batches:
        logits = 100 * F.normalize(forward(inputs(idx)), dim=-1) @ classes.T
        loss = F.cross_entropy(logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    with threadpool_limits(a.threads):
        run(a)


def run(a: argparse.Namespace) -> None:
    arch = Architecture(a.layers, a.heads, a.d_head, a.embed_dim)
    reference, task = random_units(arch, a.n_reference, 1), random_units(arch, a.n, 2)
    rd = make_method("RD", arch).fit_reference(reference)
    start = time.perf_counter()
    features = rd.features(task)
    precompute = time.perf_counter() - start
    loop = UnitLoopResiDual(rd, task)
    first = torch.arange(min(a.batch_size, a.n))
    with torch.no_grad():
        expected = loop(first)
        gap = float((rd(features[first]) - expected).abs().max())
    assert gap < 1e-3 * float(expected.abs().max()), f"the two paths disagree by {gap}"

    labels = torch.from_numpy(task.labels).long()
    classes = F.normalize(torch.randn(a.classes, a.embed_dim, generator=torch.Generator().manual_seed(3)), dim=-1)
    per_epoch = -(-a.n // a.batch_size)
    timed = per_epoch if a.batches == 0 else min(a.batches, per_epoch)
    ours = time_epoch(rd, [rd.scales], lambda idx: features[idx], labels, classes, a.batch_size, timed)
    base = time_epoch(loop, [loop.scales], lambda idx: idx, labels, classes, a.batch_size, timed)
    print(f"RD on {a.layers}x{a.heads} heads (d_head {a.d_head}) + {a.layers} MLPs, E={a.embed_dim}: "
          f"{rd.n_params:,} scales, n={a.n:,}, batch {a.batch_size} ({per_epoch} batches per epoch, "
          f"{timed} timed per side), {a.threads} thread(s)")
    print(f"precomputing the coefficients once: {precompute:.2f} s ({features.shape[0]:,} x {features.shape[1]:,} floats)")
    print(f"unit-by-unit loop : {base * per_epoch:8.2f} s per epoch")
    print(f"precomputed (ours): {ours * per_epoch:8.2f} s per epoch")
    print(f"ratio loop / ours : {base / ours:8.2f}x")


if __name__ == "__main__":
    main()
