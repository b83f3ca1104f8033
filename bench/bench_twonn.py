"""TwoNN: residual_lib's chunked torch search against scikit-dimension's TwoNN on the same data.

Prints both estimates and the speed ratio per size. Both sides get the same thread count
(default 1: this machine is shared). Usage: python bench/bench_twonn.py [--quick] [--threads N] [--repeats R] [--device cpu|cuda]
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="n = 2k and 5k instead of 5k and 20k")
parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads for both implementations")
parser.add_argument("--device", default="cpu", help="device for ours (skdim is CPU only)")
parser.add_argument("--dim", type=int, default=64, help="ambient dimension")
parser.add_argument("--repeats", type=int, default=2, help="runs per implementation and size; the fastest counts")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (thread variables must be set before numpy loads BLAS)
import skdim  # noqa: E402
import torch  # noqa: E402

from residual_lib.analysis.intrinsic_dim import TwoNN  # noqa: E402

torch.set_num_threads(args.threads)


def curved_data(n: int, dim: int, latent: int = 10, seed: int = 0) -> np.ndarray:
    """(n, dim) points on a curved `latent`-dimensional manifold."""
    rng = np.random.default_rng(seed)
    return np.tanh(rng.normal(size=(n, latent)) @ rng.normal(size=(latent, dim)) / np.sqrt(latent))


def timed(fn):
    """Result, CPU seconds of this process (robust on a shared machine), wall seconds; fastest of --repeats runs."""
    best = (None, float("inf"), float("inf"))
    for _ in range(args.repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn()
        best = min(best, (out, time.process_time() - cpu, time.perf_counter() - wall), key=lambda t: t[1])
    return best


sizes = (2_000, 5_000) if args.quick else (5_000, 20_000)
print(f"TwoNN, {args.dim} dims, {args.threads} thread(s), ours on {args.device}")
print("times: CPU seconds of the process (wall seconds in brackets); speedup = skdim / ours in CPU time")
print(f"{'n':>7} {'ours_s':>15} {'skdim_s':>15} {'speedup':>8} {'ours_id':>9} {'skdim_id':>9} {'rel_diff':>9}")
worst = 0.0
for n in sizes:
    x = curved_data(n, args.dim)
    TwoNN(device=args.device).fit(x[:200])  # warm-up (allocator, kernels)
    ours, t_ours, w_ours = timed(lambda: TwoNN(device=args.device).fit(x).dimension_)
    theirs, t_theirs, w_theirs = timed(lambda: skdim.id.TwoNN(discard_fraction=0.1).fit(x).dimension_)
    rel = abs(ours - theirs) / theirs
    worst = max(worst, rel)
    print(f"{n:>7} {t_ours:>6.2f} ({w_ours:>6.2f}) {t_theirs:>6.2f} ({w_theirs:>6.2f}) {t_theirs / t_ours:>7.1f}x "
          f"{ours:>9.4f} {theirs:>9.4f} {rel:>9.1e}")
sys.exit(0 if worst < 0.02 else "estimates differ by more than 2%")
