"""The page "Run it on your own model", worked on a real case: a timm ViT whose random weights the test writes.

Every command of book/own_model.md runs here, with its paths pointed at temporary ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import residual_lib
from residual_lib.models import registry
from residual_lib.paths import REPO_ROOT

PAGE = REPO_ROOT / "book" / "own_model.md"
WEIGHTS = "/data/weights/my_vit.safetensors"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.fixture
def own_vit(tmp_path, monkeypatch) -> Path:
    """The page's step 1 run for real: a weights file of random values and the manifest that names it."""
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("HOME", str(tmp_path))
    torch.manual_seed(7)
    module = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0)
    weights = tmp_path / "my_vit.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    register = blocks("bash")[0].replace(WEIGHTS, str(weights))
    env_line = next(line for line in register.splitlines() if line.startswith("export "))
    subprocess.run(["bash", "-c", register], check=True)
    folder = Path(env_line.split("=", 1)[1].replace("~", str(tmp_path)))
    monkeypatch.setenv(registry.MANIFEST_DIRS_ENV, str(folder))
    monkeypatch.setattr(registry, "_REGISTERED", {})
    return weights


def test_a_timm_vit_registered_from_a_weights_file_loads_those_weights_and_decomposes_exactly(own_vit):
    ns = {}
    for block in blocks("python")[:2]:
        exec(compile(block.replace(WEIGHTS, str(own_vit)), str(PAGE), "exec"), ns)
    from safetensors.torch import load_file

    model = ns["model"]
    assert torch.equal(model.module.blocks[1].attn.qkv.weight, load_file(own_vit)["blocks.1.attn.qkv.weight"])
    assert model.weights == str(own_vit) and (model.n_layers, model.n_heads, model.image_size) == (12, 3, 32)
    assert ns["error"] < 1e-4
    in_memory = residual_lib.load_model("my-vit-2", device="cpu")  # register_model's, same file
    assert torch.equal(in_memory.module.pos_embed, model.module.pos_embed)


def test_a_weights_file_that_does_not_fit_is_named(own_vit, tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"cls_token": torch.zeros(1, 1, 7)}, str(wrong))
    residual_lib.register_model("wrong-vit", "timm", "vit_tiny_patch16_224", pretrained=str(wrong), text=False,
                                kwargs={"img_size": 32})
    with pytest.raises(ValueError, match=f"weights file {re.escape(str(wrong))} does not fit"):
        residual_lib.load_model("wrong-vit", device="cpu")
    with pytest.raises(ValueError, match="register_model\\('k'\\): field family: Input should be 'open_clip'"):
        residual_lib.register_model("k", "keras", "x")


@pytest.mark.slow
def test_the_pages_experiment_and_page_run_on_the_registered_model(own_vit, tmp_path):
    ns = {}
    exec(compile(blocks("python")[2], str(PAGE), "exec"), ns)
    layers = ns["result"].tables["layers"]
    assert list(layers["layer"]) == list(range(12)) and set(layers["model"]) == {"My ViT-Ti"}
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "_generated", "notebooks"))
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    command = blocks("bash")[1].strip().replace(".venv/bin/python", sys.executable).replace("\\\n", " ")
    # the page's kernel imports the library under test, wherever the interpreter's own copy is installed from
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(["bash", "-c", f"{command} --root {root} --quiet"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    executed = (root / "book" / "notebooks" / "fig02_intrinsic_dimension.ipynb").read_text()
    assert "My ViT-Ti" in executed and "my-vit" in executed
