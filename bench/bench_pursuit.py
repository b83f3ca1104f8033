"""TextSpan and SOMP over every head of a model: ours (batched torch on the cache's factored heads) against a
straightforward per-head numpy loop on dense (n, E) head outputs, measured in the same run.

    .venv/bin/python bench/bench_pursuit.py            # 144 heads, n=2000, E=512, m=3500, k=5 (ViT-B-sized)
    .venv/bin/python bench/bench_pursuit.py --quick    # 24 heads, n=500, m=1000, k=5

The per-head loop costs the same for every head, so it is timed on --baseline-heads heads and scaled to all
of them (stated in the output). Both sides use the same number of threads (--threads, default 1; BLAS and torch) and
float64, and both must pick the same atoms on the heads they share.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--heads", type=int, default=144)
    p.add_argument("--n", type=int, default=2000, help="samples per head")
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--rank", type=int, default=66, help="coordinates per head (d_head + 2)")
    p.add_argument("--m", type=int, default=3500, help="dictionary size")
    p.add_argument("--k", type=int, default=5, help="atoms per head (the paper describes heads with 5)")
    p.add_argument("--baseline-heads", type=int, default=4, help="heads the per-head loop is timed on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="device for ours: cpu, cuda or auto")
    a = p.parse_args()
    if a.quick:
        a.heads, a.n, a.m, a.k, a.baseline_heads = 24, 500, 1000, 5, 2
    return a


def textspan_loop(x: np.ndarray, d: np.ndarray, k: int) -> list[int]:
    """Per-head TextSpan as usually written: project on every atom, take the largest variance, orthogonalise."""
    r, d, picked = x - x.mean(0), d.copy(), []
    for _ in range(k):
        var = (r @ d.T).var(axis=0)
        var[picked] = -np.inf
        p = int(var.argmax())
        picked.append(p)
        t = d[p] / np.linalg.norm(d[p])
        r -= np.outer(r @ t, t)
        d -= np.outer(d @ t, t)
    return picked


def somp_loop(x: np.ndarray, d: np.ndarray, k: int) -> list[int]:
    """Per-head SOMP (L1) as usually written: sum of |D R^T| per atom, least-squares refit of all chosen atoms."""
    x = x - x.mean(0)
    r, picked = x, []
    for _ in range(k):
        score = np.abs(d @ r.T).sum(axis=1)
        score[picked] = -np.inf
        picked.append(int(score.argmax()))
        w = np.linalg.lstsq(d[picked].T, x.T, rcond=None)[0]
        r = x - w.T @ d[picked]
    return picked


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    a = _args()
    threadpool_limits(a.threads)  # numpy's BLAS, for the loop

    from residual_lib.analysis.pursuit import signals_from_units, somp, textspan
    from residual_lib.units.unit_set import UnitSet

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    names = [f"L{h // 12}.H{h % 12}" for h in range(a.heads)]
    scales = np.linspace(3, 0.1, a.rank)
    coords = {u: rng.normal(size=(a.n, a.rank)) * scales for u in names}
    bases = {u: np.linalg.qr(rng.normal(size=(a.embed_dim, a.rank)))[0].T for u in names}
    offsets = {u: 0.1 * rng.normal(size=a.embed_dim) for u in names}
    units = UnitSet(coords, bases, offsets, np.zeros((a.n, a.embed_dim)), np.zeros(a.n, dtype=int))
    d = rng.normal(size=(a.m, a.embed_dim))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    print(f"{a.heads} heads, n={a.n}, E={a.embed_dim}, r={a.rank}, m={a.m}, k={a.k}, "
          f"threads={a.threads}, ours on {a.device}")

    sig, t_factor = _timed(lambda: signals_from_units(units, names, device=a.device))
    ts, t_ts = _timed(lambda: textspan(sig, d, a.k, device=a.device, progress=False))
    l1, t_l1 = _timed(lambda: somp(sig, d, a.k, aggregate="l1", device=a.device, progress=False))
    if a.device != "cpu":
        torch.cuda.synchronize()

    b = min(a.baseline_heads, a.heads)
    dense = [units.output_space(u).astype(np.float64) for u in names[:b]]
    base_ts, t_base_ts = _timed(lambda: [textspan_loop(x, d, a.k) for x in dense])
    base_l1, t_base_l1 = _timed(lambda: [somp_loop(x, d, a.k) for x in dense])
    scale = a.heads / b
    assert [list(r) for r in ts.atoms[:b]] == base_ts, "TextSpan: ours and the loop picked different atoms"
    assert [list(r) for r in l1.atoms[:b]] == base_l1, "SOMP (L1): ours and the loop picked different atoms"

    print(f"factor heads (QR of coords): {t_factor:8.2f} s (ours only; the loop reads dense outputs)")
    for name, ours, base in (("TextSpan", t_ts + t_factor, t_base_ts), ("SOMP (L1)", t_l1 + t_factor, t_base_l1)):
        print(f"{name:10s} ours {ours:8.2f} s | per-head numpy loop {base * scale:8.2f} s "
              f"({base:.2f} s on {b} heads x {scale:.1f}) | ratio {base * scale / ours:6.1f}x")
    print(f"same atoms as the loop on the {b} shared heads: yes")


if __name__ == "__main__":
    main()
