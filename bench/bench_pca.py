"""PCA of every unit of a ViT-B/32-sized cache: one batched `UnitPCA` call against a per-unit scikit-learn loop.

Synthetic cache: 144 heads (12 layers x 12) with r = 66 coordinates, 12 MLPs and EMB at E = 512,
n = 10k samples. The baseline is what a user would write: `sklearn.decomposition.PCA` on each unit's
output-space points. By default the baseline runs on a sample of units of each kind and is scaled to all
units (each unit of a kind has the same shape, hence the same cost); `--full` runs it on every unit.
Usage: python bench/bench_pca.py [--quick] [--full] [--threads N] [--device cpu|cuda]
"""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="n = 2k samples instead of 10k")
parser.add_argument("--full", action="store_true", help="run the scikit-learn baseline on every unit")
parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads for both implementations")
parser.add_argument("--device", default="cpu", help="device for ours")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (thread variables must be set before numpy loads BLAS)
import torch  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from residual_lib.analysis.pca import UnitPCA, fix_signs  # noqa: E402
from residual_lib.units.synthetic import random_unit_set  # noqa: E402

torch.set_num_threads(args.threads)
n = 2_000 if args.quick else 10_000
units = random_unit_set(n=n, n_layers=12, n_heads=12, r=66, embed_dim=512, latent_dim=20, seed=0)
print(f"synthetic ViT-B/32 cache: {len(units.heads)} heads (r=66) + {len(units.units) - len(units.heads)} "
      f"EMB/MLP units (E=512), n={n}; {args.threads} thread(s), ours on {args.device}")

cpu, wall = time.process_time(), time.perf_counter()
ours = UnitPCA(device=args.device, dtype=torch.float64, progress=False).fit(units)
t_ours, w_ours = time.process_time() - cpu, time.perf_counter() - wall

kinds = {"head": units.heads, "EMB/MLP": [u for u in units.units if u not in set(units.heads)]}
t_base, worst_var, worst_comp = 0.0, 0.0, 0.0
for kind, names in kinds.items():
    sample = names if args.full else names[:: max(1, len(names) // 4)][:4]
    start = time.process_time()
    for u in sample:
        ref = PCA(svd_solver="full").fit(units.output_space(u).astype(np.float64))
        k = len(ours.explained_variance_[u])
        worst_var = max(worst_var, np.max(np.abs(ref.explained_variance_[:k] - ours.explained_variance_[u])
                                          / ref.explained_variance_[0]))
        worst_comp = max(worst_comp, np.abs(fix_signs(ref.components_[:5]) - ours.components_[u][:5]).max())
    per_unit = (time.process_time() - start) / len(sample)
    t_base += per_unit * len(names)
    print(f"  scikit-learn, {kind}: {per_unit:.3f} CPU s per unit, measured on {len(sample)} of {len(names)} units")

print(f"ours (batched, all units): {t_ours:.2f} CPU s ({w_ours:.2f} wall s)")
print(f"scikit-learn loop, all units{'' if args.full else ' (scaled from the sample)'}: {t_base:.2f} CPU s")
print(f"speedup: {t_base / t_ours:.1f}x; max |variance diff| / PC1 variance = {worst_var:.1e}, "
      f"max |component diff| (PC1-5) = {worst_comp:.1e}")
