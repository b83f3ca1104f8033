"""What the paper profile costs: disk from the cache format, FLOPs from the architecture, hours from both."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from residual_lib.data.datasets import dataset_spec
from residual_lib.models.registry import load_model
from residual_lib.reproduce import cost
from residual_lib.store.cache import CacheKey, cache_bytes, extract

MODEL, DATASET = "standin-dino", "standin-cifar10"  # a random timm ViT-Ti at 64 px; generated images


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cache_bytes_is_what_an_extracted_cache_takes_on_disk(tmp_artifacts, dtype):
    model = load_model(MODEL, device="cpu")
    folder = extract(model, DATASET, split="train", n=12, dtype=dtype, device="cpu", shard_size=5).path
    on_disk = sum(f.stat().st_size for f in folder.rglob("*.npy"))
    n_files = len(list(folder.rglob("*.npy")))
    expected = cache_bytes(model.n_layers, model.n_heads, model.d_head, model.embed_dim, 12, dtype)
    assert expected <= on_disk <= expected + 128 * n_files  # an .npy header is 128 bytes


def test_flops_per_image_on_the_meta_device_are_those_of_the_real_model():
    arch = cost.architecture(MODEL)
    model = load_model(MODEL, device="cpu")
    size = model.image_size
    counted = []
    for batch in (1, 3):
        # the math kernel: the CPU's fused attention kernel is one op the counter does not count
        with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            model.decompose_batch(torch.rand(batch, 3, size, size))
        counted.append(counter.get_total_flops())
    assert arch["flops_per_image"] == (counted[1] - counted[0]) // 2
    # the textbook estimate: two FLOPs per weight of the blocks per token (ViT-Ti at 64 px: 17 tokens)
    weights = sum(p.numel() for n, p in model.module.blocks.named_parameters() if p.dim() == 2)
    assert 0.7 < arch["flops_per_image"] / (2 * weights * 17) < 1.3
    assert (arch["n_layers"], arch["n_heads"], arch["d_head"], arch["embed_dim"]) == (12, 3, 64, 192)


def test_cache_costs_count_images_hours_and_disk():
    gpu = cost.Gpu("a GPU", peak_tflops=10.0, utilisation=0.25)
    split_size = int(dataset_spec(DATASET).splits["train"]["size"])
    keys = [CacheKey(MODEL, DATASET, "train", n=None), CacheKey(MODEL, DATASET, "train", n=10, dtype="float16"),
            CacheKey(MODEL, DATASET, "train", n=10**6)]
    table = cost.cache_costs(keys, gpu)
    assert list(table["images"]) == [split_size, 10, split_size]
    flops = cost.architecture(MODEL)["flops_per_image"]
    assert table["gpu_hours"].iloc[0] == pytest.approx(flops * split_size / (10e12 * 0.25) / 3600)
    assert table["disk_gb"].iloc[1] == pytest.approx(cache_bytes(12, 3, 64, 192, 10, "float16") / 1e9)
    per_dataset = cost.by_dataset(table)
    assert len(per_dataset) == 1 and per_dataset["images"].iloc[0] == 2 * split_size + 10


@pytest.mark.slow
def test_the_paper_profile_costs_every_planned_cache_of_its_seven_models():
    from residual_lib.reproduce.plan import plan

    per_cache, per_model, totals = cost.profile_cost("paper")
    assert totals["n_caches"] == len(plan("paper")) == len(per_cache)
    assert {"CLIP-L", "OpenCLIP-L", "BLIP-L", "DINOv2-L", "ViT-L", "CLIP-B", "OpenCLIP-B"} <= set(per_model["model"])
    assert totals["gpu_hours"] == pytest.approx(per_model["gpu_hours"].sum())
    assert totals["disk_gb"] == pytest.approx(per_cache["disk_gb"].sum()) and totals["images"] > 10**6
    large = per_model.set_index("model")["gflops_per_image"]
    assert large["BLIP-L"] > large["CLIP-L"] > large["CLIP-B"]  # 384 px > 224 px; ViT-L > ViT-B
