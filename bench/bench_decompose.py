"""Decomposed extraction against open_clip's plain `encode_image` on the same inputs (throughput ratio).

Default: random-init ViT-B-32, batch 32, 224x224, CPU, one thread. With CUDA (or --device cuda) also
ViT-L-14 at batch 256, with peak GPU memory. Prints images/s for both passes and their ratio
(decomposed / plain; the target is >= 0.8).

    .venv/bin/python bench/bench_decompose.py [--device cpu|cuda|auto] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import open_clip
import torch

from residual_lib.models.open_clip import OpenClipAdapter
from residual_lib.device import resolve_device


def _seconds(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(arch: str, batch: int, device: torch.device, repeats: int, dtype: str) -> dict:
    """Throughput of plain and decomposed passes for one architecture (random weights)."""
    torch.manual_seed(0)
    model = OpenClipAdapter(open_clip.create_model(arch, pretrained=None), arch).to(device)
    images = torch.randn(batch, 3, model.image_size, model.image_size, device=device)
    amp = torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype != "float32" else torch.autocast(device.type, enabled=False)
    model.head_bases("paper")

    def plain():
        with torch.no_grad(), amp:
            model.encode_image(images)

    def decomposed():
        with torch.no_grad(), amp:
            model.decompose_batch(images, "paper")

    # Interleaved pairs: on a shared machine the load drifts, so each ratio compares neighbouring runs.
    plain(), decomposed()
    pairs = [(_seconds(plain, device), _seconds(decomposed, device)) for _ in range(repeats)]
    out = {"plain": batch / float(np.median([p for p, _ in pairs])),
           "decomposed": batch / float(np.median([d for _, d in pairs])),
           "ratio": float(np.median([p / d for p, d in pairs]))}
    if device.type == "cuda":
        for name, fn in (("plain", plain), ("decomposed", decomposed)):
            torch.cuda.reset_peak_memory_stats()
            fn()
            out[name + "_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    runs = [("ViT-B-32", 32)] + ([("ViT-L-14", 256)] if device.type == "cuda" else [])
    print(f"device {device}, threads {args.threads}, dtype {args.dtype}, {args.repeats} interleaved pairs")
    for arch, batch in runs:
        r = bench(arch, batch, device, args.repeats, args.dtype)
        mem = (f"  peak GiB plain {r['plain_peak_gib']:.2f} decomposed {r['decomposed_peak_gib']:.2f}"
               if "plain_peak_gib" in r else "")
        print(f"{arch} batch {batch}: plain {r['plain']:.1f} img/s, decomposed {r['decomposed']:.1f} img/s, "
              f"ratio decomposed/plain (median of per-pair ratios) {r['ratio']:.3f}{mem}")


if __name__ == "__main__":
    main()
