"""What the paper profile costs: per unit cache its images, FLOPs per image, GPU hours and disk, and the total.

Computed, not typed in: the caches are the plan's (`plan.plan`, the pages' `caches(params)` under the profile's
parameter files), the images each cache's `n` or its split's size from the dataset manifest, the FLOPs those of
one extraction pass (`ResidualModel.decompose_batch`, which runs the model and splits its output) counted by
`torch.utils.flop_counter` on the architecture built on the meta device, and the disk the cache format's
(`store.cache.cache_bytes`). Hours assume a GPU's peak float32 rate (the extraction runs in float32 unless a
page asks for autocast) and a utilisation: both are stated beside the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data.datasets import dataset_spec
from ..models.registry import display_name, load_architecture
from ..store.cache import CacheKey, cache_bytes
from .plan import plan, plan_training


@dataclass(frozen=True)
class Gpu:
    """The assumption behind the hours: a GPU's peak float32 rate and the share of it an extraction reaches."""

    name: str = "NVIDIA A100 (SXM, 80 GB)"
    peak_tflops: float = 19.5  # float32 without TF32 (PyTorch's default for matmuls), NVIDIA's data sheet
    utilisation: float = 0.5

    def hours(self, flops: float) -> float:
        return flops / (self.peak_tflops * 1e12 * self.utilisation) / 3600


@cache
def architecture(model: str) -> dict:
    """Layers, heads, d_head, E and FLOPs per image of one extraction pass (the batch's fixed costs left out)."""
    arch = load_architecture(model)
    size = arch.image_size

    def flops(batch: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            arch.decompose_batch(torch.empty(batch, 3, size, size, device="meta"))
        return counter.get_total_flops()

    return {"n_layers": arch.n_layers, "n_heads": arch.n_heads, "d_head": arch.d_head, "embed_dim": arch.embed_dim,
            "image_size": size, "flops_per_image": flops(2) - flops(1)}


def images(key: CacheKey) -> int:
    """How many images a cache holds: its `n`, capped by (or, for None, equal to) its split's declared size."""
    size = int(dataset_spec(key.dataset).splits[key.split]["size"])
    return size if key.n is None else min(key.n, size)


def cache_costs(keys: list[CacheKey], gpu: Gpu = Gpu()) -> pd.DataFrame:
    """One row per cache: model, dataset, split, images, GFLOPs per image, GPU hours, disk (GB)."""
    rows = []
    for key in keys:
        arch, n = architecture(key.model), images(key)
        rows.append({"model": display_name(key.model), "dataset": key.dataset, "split": key.split, "images": n,
                     "image_size": arch["image_size"], "gflops_per_image": arch["flops_per_image"] / 1e9,
                     "gpu_hours": gpu.hours(arch["flops_per_image"] * n),
                     "disk_gb": cache_bytes(arch["n_layers"], arch["n_heads"], arch["d_head"], arch["embed_dim"], n,
                                            key.dtype) / 1e9})
    return pd.DataFrame(rows)


def profile_cost(profile: str = "paper", gpu: Gpu = Gpu()) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(per cache, per model, totals) of extracting every unit cache of `profile`'s pages."""
    per_cache = cache_costs(plan(profile), gpu)
    per_model = (per_cache.groupby("model", sort=False)
                 .agg(caches=("dataset", "size"), images=("images", "sum"), image_size=("image_size", "first"),
                      gflops_per_image=("gflops_per_image", "first"), gpu_hours=("gpu_hours", "sum"),
                      disk_gb=("disk_gb", "sum")).reset_index())
    totals = {"n_caches": len(per_cache), "n_models": len(per_model), "images": int(per_cache["images"].sum()),
              "n_training_jobs": len(plan_training(profile)),
              "gpu_hours": float(per_cache["gpu_hours"].sum()), "disk_gb": float(per_cache["disk_gb"].sum()),
              "gpu": gpu.name, "peak_tflops": gpu.peak_tflops, "utilisation": gpu.utilisation}
    return per_cache, per_model, totals


def by_dataset(per_cache: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset: images, GFLOPs per image, GPU hours and disk over its caches (splits and sizes)."""
    return (per_cache.groupby(["model", "dataset"], sort=False)
            .agg(images=("images", "sum"), gflops_per_image=("gflops_per_image", "first"),
                 gpu_hours=("gpu_hours", "sum"), disk_gb=("disk_gb", "sum")).reset_index())
