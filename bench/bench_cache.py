"""Cache bytes per image against the naive layout (every unit in output space), and cache read speeds.

Per image the cache stores EMB and L MLPs in output space (E each), L*H heads as d_head + 2
coordinates, the model's embedding (E, float32) and a label (int64); the naive layout stores all
1 + L*H + L units as E floats. Ratios come from the shapes of ViT-B-32 and ViT-L-14; a real
extraction (random-init ViT-B-32, 224x224, CPU) checks the formula against bytes on disk and times
an open and `coords()` reads; bench/bench_cache_open.py measures what integrity checks cost at paper scale.

    .venv/bin/python bench/bench_cache.py [--n 64] [--arch ViT-B-32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

from residual_lib.models.open_clip import OpenClipAdapter
from residual_lib.store.cache import UnitCache, extract
from residual_lib.data.datasets import DatasetSpec

SHAPES = {"ViT-B-32": (12, 12, 64, 512), "ViT-L-14": (24, 16, 64, 768)}  # L, H, d_head, E


def bytes_per_image(L: int, H: int, d: int, E: int, itemsize: int) -> tuple[int, int]:
    """(cache, naive) bytes per image for storage itemsize; the embedding is float32 in both."""
    cache = (E + L * H * (d + 2) + L * E) * itemsize + E * 4 + 8
    naive = (1 + L * H + L) * E * itemsize + E * 4 + 8
    return cache, naive


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int):
        self.images = torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0),
                                    dtype=torch.uint8)
        self.spec = DatasetSpec(name="bench-random", title="random", role="task", source={"kind": "generated"},
                                splits={"train": {"size": n}}, class_names=("a", "b"), templates=("{}",))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i % 2


def layout_read_times(n: int, shard: int, L: int, H: int, r: int) -> tuple[float, float]:
    """Seconds to read every head's (n, r) float16 coordinates from memory-mapped shards, in the cache's
    unit-major layout (L, H, m, r) and in the row-major alternative (m, L, H, r); files warm in the page cache."""
    rng = np.random.default_rng(0)
    times = []
    with tempfile.TemporaryDirectory() as root:
        for layout in ("unit", "row"):
            paths = []
            for k in range(n // shard):
                block = rng.standard_normal((L, H, shard, r)).astype(np.float16)
                paths.append(Path(root, f"{layout}{k}.npy"))
                np.save(paths[-1], block if layout == "unit" else block.transpose(2, 0, 1, 3).copy())
            arrays = [np.load(p, mmap_mode="r") for p in paths]
            t0 = time.perf_counter()
            for l in range(L):
                for h in range(H):
                    np.concatenate([a[l, h] if layout == "unit" else a[:, l, h] for a in arrays])
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="images in the real extraction")
    parser.add_argument("--arch", default="ViT-B-32")
    args = parser.parse_args()
    torch.set_num_threads(1)

    for arch, (L, H, d, E) in SHAPES.items():
        for dtype, size in (("float16", 2), ("float32", 4)):
            cache, naive = bytes_per_image(L, H, d, E, size)
            print(f"{arch} {dtype}: cache {cache / 1024:.1f} KiB/image, naive {naive / 1024:.1f} KiB/image, "
                  f"ratio naive/cache {naive / cache:.2f}; 80k images: {cache * 80e3 / 1e9:.1f} GB vs "
                  f"{naive * 80e3 / 1e9:.1f} GB")

    torch.manual_seed(0)
    model = OpenClipAdapter(open_clip.create_model(args.arch, pretrained=None), args.arch)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        cache = extract(model, _Images(args.n, model.image_size), n=None, device="cpu", batch_size=32,
                        shard_size=32, root=root, dtype="float16")
        t_extract = time.perf_counter() - t0
        shard_bytes = sum(p.stat().st_size for p in Path(cache.path, "shards").rglob("*.npy"))
        L, H, d, E = model.n_layers, model.n_heads, model.d_head, model.embed_dim
        formula, naive = bytes_per_image(L, H, d, E, 2)
        print(f"real {args.arch} float16 extraction of {args.n} images ({t_extract:.1f} s): "
              f"{shard_bytes / args.n / 1024:.1f} KiB/image on disk (formula {formula / 1024:.1f}), "
              f"naive/cache on disk {naive * args.n / shard_bytes:.2f}")
        total = sum(p.stat().st_size for p in Path(cache.path).rglob("*.npy"))
        t0 = time.perf_counter()
        UnitCache(cache.path, verify=True)
        t_verify = time.perf_counter() - t0
        print(f"open (each file checked on its first read, not here): {total / 2**20:.1f} MiB in {t_verify:.3f} s "
              f"({total / 2**20 / t_verify:.0f} MiB/s)")
        opened = UnitCache(cache.path, verify=False)
        t0 = time.perf_counter()
        for u in opened.heads:
            np.asarray(opened.coords(u))
        t_heads = time.perf_counter() - t0
        print(f"coords() of all {len(opened.heads)} heads: {t_heads * 1e3:.1f} ms "
              f"({t_heads / len(opened.heads) * 1e6:.0f} us per head)")
    unit, row = layout_read_times(8192, 1024, 12, 12, 66)
    print(f"all 144 ViT-B-32 heads, n=8192 in 8 shards, float16: unit-major {unit:.3f} s, row-major {row:.3f} s, "
          f"row/unit {row / unit:.1f}x")


if __name__ == "__main__":
    main()
