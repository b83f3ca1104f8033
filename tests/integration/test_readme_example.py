"""Runs the README's "Using residual_lib" example for real (random weights, generated images)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import residual_lib

README = Path(__file__).resolve().parents[2] / "README.md"

EXAMPLE = '''\
import torch
import residual_lib

dataset = residual_lib.load_dataset("random")  # the paper's "Random" set: generated 224x224 noise, no download
model = residual_lib.load_model("ViT-B-32", pretrained=None)  # pretrained="openai": OpenAI's weights (downloaded)
images = torch.stack([model.preprocess(dataset[i][0]) for i in range(4)])  # PIL or uint8 (3, 224, 224)
units = residual_lib.decompose(model, images)     # {unit: (4, 512)}, summing to model.encode_image(images)
cache = residual_lib.extract(model, dataset, split="train", n=16, device="auto")  # artifacts/cache/..., resumable
cache.units                      # ['EMB', 'L0.H0', ..., 'L11.H11', 'L0.MLP', ..., 'L11.MLP']
cache.output_space("L10.H3")     # (16, 512) float32, in the model's image-embedding space
cache.coords("L10.H3")           # (16, 66) the same points in orthonormal coordinates, r = d_head + 2
cache.embedding                  # (16, 512) the model's own image embedding
'''


def _readme_block() -> str | None:
    """The first python block under the README heading "Using residual_lib", if there is one."""
    text = README.read_text()
    m = re.search(r"^## Using residual_lib\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if m is None:
        return None
    block = re.search(r"```python\n(.*?)```", m.group(1), flags=re.S)
    return block.group(1) if block else None


@pytest.mark.slow
def test_readme_example_runs_and_does_what_it_says(tmp_path, monkeypatch):
    assert _readme_block() == EXAMPLE, "README's 'Using residual_lib' example differs from the one this test runs"
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    torch.set_num_threads(1)
    ns = {}
    exec(compile(EXAMPLE, "README example", "exec"), ns)
    model, units, cache = ns["model"], ns["units"], ns["cache"]
    with torch.no_grad():
        ref = model.encode_image(ns["images"])
    assert (sum(units.values()) - ref).abs().max() < 1e-4
    assert cache.units[:2] == ["EMB", "L0.H0"] and cache.units[-1] == "L11.MLP" and len(cache.units) == 1 + 144 + 12
    assert cache.output_space("L10.H3").shape == (16, 512) and cache.output_space("L10.H3").dtype == np.float32
    assert cache.coords("L10.H3").shape == (16, 66) and cache.embedding.shape == (16, 512)
    assert str(cache.path).startswith(str(tmp_path / "cache"))


EXPERIMENT = '''\
from residual_lib.experiments import fig02

result = fig02.run(fig02.Params(models=["ViT-B-32"], dataset="random", n=64))  # Figure 2 for any model/dataset
result.tables["layers"]          # per layer: model, layer, linear_id, twonn_id, ratio_mean_of_heads, evr1, ...
result.findings["ratio_first"]   # a number the page quotes, by name
fig = fig02.plot(result)         # the page's figure, the paper's panel beside ours
'''


def _readme_blocks() -> list[str]:
    text = README.read_text()
    m = re.search(r"^## Using residual_lib\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return re.findall(r"```python\n(.*?)```", m.group(1), flags=re.S) if m else []


@pytest.mark.slow
def test_readme_experiment_example_runs(tmp_path, monkeypatch):
    assert _readme_blocks()[1:2] == [EXPERIMENT], "README's experiment example differs from the one this test runs"
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    torch.set_num_threads(1)
    ns = {}
    exec(compile(EXPERIMENT, "README experiment example", "exec"), ns)
    layers = ns["result"].tables["layers"]
    assert list(layers["layer"]) == list(range(12)) and set(layers["model"]) == {"ViT-B-32"}
    assert {"linear_id", "twonn_id", "ratio_mean_of_heads", "evr1"} <= set(layers.columns)
    assert ns["result"].findings["ratio_first"] == pytest.approx(layers["ratio_mean_of_heads"].iloc[0])
    assert ns["fig"] is not None
