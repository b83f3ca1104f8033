"""What opening a paper-scale unit cache costs: sha256 of every byte at open (before) against per-file xxh3-128
checks on first read (now), measured per GB on a smaller cache of the same layout and extrapolated.

The cache is a ViT-L/14 layout (24 layers, 16 heads, r = 66, E = 768) in float16 with random values, written
with the library's own manifest and digests, so `UnitCache` opens it as any extracted cache; 80k images of it
are 7.4 GB. Files are warm in the page cache (just written): the numbers are hashing costs, not disk reads,
which a cold cache pays under either scheme when its values are first used.

    .venv/bin/python bench/bench_cache_open.py [--n 8192] [--shard 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from residual_lib.store.cache import DIGEST, FORMAT, SHARD_FILES, UnitCache, _content_hash
from residual_lib.files import file_digest
from residual_lib.units.unit_set import unit_names

L, H, R, E = 24, 16, 66, 768  # ViT-L/14: layers, heads, d_head + 2, embedding width
PAPER_N = 80_000


def bytes_per_image() -> int:
    """Shard bytes per image of the float16 ViT-L/14 layout (embedding float32, label int64)."""
    return (E + L * H * R + L * E) * 2 + E * 4 + 8


def write_cache(root: Path, n: int, shard: int, seed: int = 0) -> Path:
    """A complete cache of random float16 values at `root`, with manifest and per-shard digests."""
    rng = np.random.default_rng(seed)
    files = {}
    for name, shape in (("head_basis", (L, H, R, E)), ("head_offset", (L, H, E))):
        np.save(root / f"{name}.npy", rng.standard_normal(shape, dtype=np.float32))
        files[f"{name}.npy"] = file_digest(root / f"{name}.npy", DIGEST)
    n_shards = -(-n // shard)
    for k in range(n_shards):
        m = min(shard, n - k * shard)
        folder = root / "shards" / f"{k:05d}"
        folder.mkdir(parents=True)
        arrays = {"emb": (m, E), "head_coords": (L, H, m, R), "mlp": (L, m, E), "embedding": (m, E)}
        hashes = {}
        for f in SHARD_FILES:
            value = (np.arange(m, dtype=np.int64) % 10 if f == "labels" else
                     rng.standard_normal(arrays[f], dtype=np.float32).astype("float32" if f == "embedding" else "float16"))
            np.save(folder / f"{f}.npy", value)
            hashes[f"{f}.npy"] = file_digest(folder / f"{f}.npy", DIGEST)
        (folder / "hashes.json").write_text(json.dumps({"algorithm": DIGEST, "files": hashes}))
        files.update({f"shards/{k:05d}/{f}": h for f, h in hashes.items()})
    params = {"format": FORMAT, "model": "bench-vit-l", "n": n, "n_shards": n_shards, "shard_size": shard,
              "n_layers": L, "n_heads": H, "r": R, "embed_dim": E, "units": unit_names(L, H), "dataset": "bench",
              "split": "train", "convention": "paper", "dtype": "float16"}
    (root / "manifest.json").write_text(json.dumps({"params": params, "complete": True, "hash": DIGEST, "files": files,
                                                    "content_sha256": _content_hash(files)}))
    return root


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` wall-clock seconds (the machine is shared; the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="images in the measured cache")
    parser.add_argument("--shard", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="folder for the temporary cache (default: the system's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = write_cache(Path(tmp), args.n, args.shard)
        every = sorted(p for p in root.rglob("*.npy"))
        shard_files = [p for p in every if "shards" in p.parts]
        total = sum(p.stat().st_size for p in every) / 1e9
        shards_gb = sum(p.stat().st_size for p in shard_files) / 1e9
        bases_gb = total - shards_gb
        paper_gb = bytes_per_image() * PAPER_N / 1e9
        print(f"cache: ViT-L/14 float16 layout, n={args.n} in {len(shard_files) // len(SHARD_FILES)} shards: "
              f"{shards_gb:.2f} GB of shards + {bases_gb * 1e3:.0f} MB of head bases; 80k images: "
              f"{paper_gb:.2f} GB of shards")
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")

        sha = timed(lambda: [file_digest(p, "sha256") for p in every], repeat=2)
        sha_per_gb = sha / total
        print(f"before: open = sha256 of every byte: {sha:.2f} s for {total:.2f} GB = {sha_per_gb:.2f} s/GB "
              f"({1 / sha_per_gb:.2f} GB/s); at 80k images: {sha_per_gb * (paper_gb + bases_gb):.1f} s per open")

        t_open = timed(lambda: UnitCache(root))
        stat_per_file = timed(lambda: [p.is_file() for p in shard_files]) / len(shard_files)
        paper_files = -(-PAPER_N // args.shard) * len(SHARD_FILES)
        open_paper = t_open + stat_per_file * (paper_files - len(shard_files))
        print(f"now: open = stat every file + xxh3-128 of the head bases ({bases_gb * 1e3:.0f} MB, the same at any n): "
              f"{t_open:.3f} s; at 80k images ({paper_files} shard files): {open_paper:.3f} s per open")

        xxh = timed(lambda: [file_digest(p, DIGEST) for p in shard_files])
        xxh_per_gb = xxh / shards_gb
        print(f"now: each shard file hashed (xxh3-128) once, on its first read: {xxh_per_gb:.3f} s/GB "
              f"({1 / xxh_per_gb:.1f} GB/s); at 80k images, if a page reads every file: "
              f"{xxh_per_gb * paper_gb:.1f} s, paid once per process")

        def read_heads(cache: UnitCache) -> None:
            for u in cache.heads:
                np.asarray(cache.coords(u))
        plain = timed(lambda: read_heads(UnitCache(root, verify=False)), repeat=2)
        checked = timed(lambda: read_heads(UnitCache(root)), repeat=2)
        heads_gb = sum(p.stat().st_size for p in shard_files if p.name == "head_coords.npy") / 1e9
        print(f"reading every head's coords ({heads_gb:.2f} GB): {plain:.2f} s unverified, {checked:.2f} s with "
              f"first-read checks (+{(checked - plain) / heads_gb:.3f} s/GB); at 80k images: "
              f"{plain * PAPER_N / args.n:.1f} s and {checked * PAPER_N / args.n:.1f} s")


if __name__ == "__main__":
    main()
