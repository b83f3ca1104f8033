"""timm Vision Transformers (the paper's supervised ViT-L and DINOv2-L) as `ResidualModel`s.

These models have no text tower and no projection: the image embedding is the final LayerNorm of the
class token (timm's pre-logits features with `global_pool='token'`), so E = W. DINOv2 scales every
attention and MLP output by a learned LayerScale vector; the adapter folds it into the out-projection
rows and bias (`Readout`) and into the captured MLP outputs, as `residual_lib.units.decompose` expects. The
forward pass is timm's own, block by block; the last block computes the class-token query only. The
final LayerNorm is distributed by `residual_lib.units.decompose.distribute`.

Supported: `timm.models.vision_transformer.VisionTransformer` with a class token, `global_pool='token'`,
no attention pooler, identity `fc_norm`, pre-norm `Block`s whose `Attention` has no q/k norm, no output
norm and no gate (register tokens are fine: only the class token is read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..units.decompose import ClassTokenCapture, Readout
from ..units.adapter import ResidualModel
from .vit_parts import BlockView, ImageInput, ReadoutDecomposition, run_class_token

SUPPORTED = ("timm VisionTransformer with a class token, global_pool 'token', pre-norm Blocks and plain "
             "Attention (no qk-norm, no scale-norm, no gate), with or without LayerScale; e.g. "
             "vit_large_patch16_224, vit_large_patch14_dinov2")


def check_supported(module: nn.Module, name: str) -> None:
    """Raise a ValueError naming what is supported when `module` cannot be decomposed."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block, VisionTransformer

    problem = None
    if not isinstance(module, VisionTransformer):
        problem = f"it is a {type(module).__name__}, not a timm VisionTransformer"
    elif module.cls_token is None or module.global_pool != "token":
        problem = f"it pools with {module.global_pool!r} instead of its class token"
    elif module.attn_pool is not None or not isinstance(module.fc_norm, nn.Identity):
        problem = "it has an attention pooler or an fc_norm after pooling"
    elif getattr(module, "dynamic_img_size", False):
        problem = "it resizes its position embedding per input (dynamic_img_size)"
    else:
        for i, blk in enumerate(module.blocks):
            attn = getattr(blk, "attn", None)
            if (type(blk) is not Block or type(attn) is not Attention or not isinstance(attn.q_norm, nn.Identity)
                    or not isinstance(attn.k_norm, nn.Identity) or not isinstance(attn.norm, nn.Identity)
                    or attn.gate is not None):
                problem = f"block {i} ({type(blk).__name__} with {type(attn).__name__}) is not a plain pre-norm block"
                break
    if problem:
        raise ValueError(f"model {name!r} is not supported: {problem}. Supported: {SUPPORTED}")


def _layer_scale(ls: nn.Module) -> Tensor | None:
    return ls.gamma.detach() if hasattr(ls, "gamma") else None


class TimmViTAdapter(ImageInput, ReadoutDecomposition, ResidualModel):
    """A timm ViT whose class-token embedding (after the final norm) is decomposed into residual units.

    `preprocess` takes a PIL image (timm's evaluation transform for the model's pretrained config, with
    `data_config` overrides such as crop_pct) or a uint8 (3, S, S) tensor already at the model's image size.
    """

    def __init__(self, module: nn.Module, name: str, preprocess: Callable | None = None,
                 data_config: dict | None = None):
        import timm.data

        check_supported(module, name)
        self.module = module.eval()
        self.name = name
        blocks = module.blocks
        attn = blocks[0].attn
        self.n_layers = len(blocks)
        self.n_heads = attn.num_heads
        self.d_head = attn.head_dim
        self.width = module.embed_dim
        self.embed_dim = self.width
        size = module.patch_embed.img_size
        if size[0] != size[1]:
            raise ValueError(f"model {name!r} has non-square image size {size}; only square images are supported")
        self.image_size = int(size[0])
        # The model's own input size wins over its pretrained config's (e.g. DINOv2 built at 224, not 518).
        config = timm.data.resolve_data_config({**(data_config or {}), "input_size": (3, *size)}, model=module)
        self._pil_transform = preprocess or timm.data.create_transform(**config, is_training=False)
        self._mean = torch.as_tensor(config["mean"], dtype=torch.float32).view(3, 1, 1)
        self._std = torch.as_tensor(config["std"], dtype=torch.float32).view(3, 1, 1)
        self._readouts: dict[torch.device, Readout] = {}

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, W) timm's own pre-logits class-token features."""
        self._check_images(images)
        return self.module.forward_head(self.module.forward_features(images), pre_logits=True)

    def readout(self) -> Readout:
        """Out-projections (LayerScale folded in) and the final norm, on the model's device; no projection."""
        device = self.device
        if device not in self._readouts:
            weights, biases = [], []
            for blk in self.module.blocks:
                proj, ls = blk.attn.proj, _layer_scale(blk.ls1)
                w = proj.weight.detach().T.reshape(self.n_heads, self.d_head, self.width)
                b = proj.bias.detach() if proj.bias is not None else torch.zeros(self.width, device=device)
                weights.append(w if ls is None else w * ls)
                biases.append(b if ls is None else b * ls)
            norm = self.module.norm
            self._readouts[device] = Readout(
                out_weight=torch.stack(weights).float(), out_bias=torch.stack(biases).float(),
                norm_weight=norm.weight.detach().float(), norm_bias=norm.bias.detach().float(), norm_eps=norm.eps,
                proj=None)
        return self._readouts[device]

    @torch.no_grad()
    def capture(self, images: Tensor) -> ClassTokenCapture:
        """(B, 3, S, S) -> the class-token residual pieces and the pooled output, in one forward pass."""
        self._check_images(images)
        m = self.module
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))   # (B, T, W)
        emb = x[:, 0]
        views = [BlockView(norm1=b.norm1, qkv=b.attn.qkv, out=lambda o, b=b: b.ls1(b.attn.proj(o)),
                           mlp=lambda y, b=b: b.ls2(b.mlp(b.norm2(y)))) for b in m.blocks]
        cls, z, mlp = run_class_token(x, views, self.n_heads, self.d_head)
        return ClassTokenCapture(emb=emb, z=z, mlp=mlp, embedding=m.norm(cls))


def timm_from_transformers_vit(hf: nn.Module) -> nn.Module:
    """A transformers `ViTModel` (e.g. google/vit-large-patch16-224) as the identical timm VisionTransformer.

    Same weights, same LayerNorm epsilon (transformers' ViT uses 1e-12), exact GELU, class-token pooling after
    the final norm: timm's pre-logits features equal ``ViTModel(x).last_hidden_state[:, 0]``.
    """
    from functools import partial

    import torch
    from timm.models.vision_transformer import VisionTransformer

    cfg = hf.config
    if cfg.hidden_act != "gelu":
        raise ValueError(f"transformers ViT with activation {cfg.hidden_act!r} is not supported; valid: 'gelu'")
    module = VisionTransformer(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.hidden_size,
                               depth=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
                               mlp_ratio=cfg.intermediate_size / cfg.hidden_size, qkv_bias=cfg.qkv_bias, num_classes=0,
                               norm_layer=partial(nn.LayerNorm, eps=cfg.layer_norm_eps))
    src = hf.state_dict()
    state = {"cls_token": src["embeddings.cls_token"], "pos_embed": src["embeddings.position_embeddings"],
             "patch_embed.proj.weight": src["embeddings.patch_embeddings.projection.weight"],
             "patch_embed.proj.bias": src["embeddings.patch_embeddings.projection.bias"],
             "norm.weight": src["layernorm.weight"], "norm.bias": src["layernorm.bias"]}
    for i in range(cfg.num_hidden_layers):
        a, b = f"layers.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            state[b + f"attn.qkv.{kind}"] = torch.cat([src[a + f"attention.{p}_proj.{kind}"] for p in "qkv"])
            state[b + f"attn.proj.{kind}"] = src[a + f"attention.o_proj.{kind}"]
            state[b + f"norm1.{kind}"] = src[a + f"layernorm_before.{kind}"]
            state[b + f"norm2.{kind}"] = src[a + f"layernorm_after.{kind}"]
            state[b + f"mlp.fc1.{kind}"] = src[a + f"mlp.fc1.{kind}"]
            state[b + f"mlp.fc2.{kind}"] = src[a + f"mlp.fc2.{kind}"]
    module.load_state_dict(state)
    return module


WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def is_weights_file(pretrained: str) -> bool:
    """Whether a `pretrained` value names a local weights file rather than a tag."""
    return os.sep in pretrained or pretrained.endswith(WEIGHTS_SUFFIXES)


def load_weights_file(module: nn.Module, path: Path, name: str) -> None:
    """Load a state dict (safetensors, or a torch pickle of tensors) into `module`, failing with the file named."""
    if not path.is_file():
        raise FileNotFoundError(f"model {name!r}: weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}  # the classifier is removed anyway
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"model {name!r}: weights file {path} does not fit the architecture: {err}") from err


def load(entry: dict, pretrained: str | bool | None = None, **kw) -> TimmViTAdapter:
    """A model manifest entry (family timm) -> adapter; None = random weights (seeded: the same on every load).

    entry: `arch` (timm architecture, e.g. vit_large_patch14_dinov2), optional `kwargs` for
    `timm.create_model` (e.g. img_size: 224) and `data_config` for the evaluation transform (e.g.
    crop_pct). A `pretrained` that names a file (a path, or a name ending in .safetensors, .pt, .pth or .bin) is
    a state dict of the architecture, loaded strictly (the classifier head may be absent). With `transformers_repo`, `pretrained` is that repository's revision and its `ViTModel`
    weights are converted to timm (`timm_from_transformers_vit`); a tag listed in `converted_weights`
    ({tag: "module:function"}) builds the module with that function (called with the kwargs, e.g. weights
    converted from another format); otherwise `pretrained` is a timm weights tag. The classifier head is
    removed (num_classes=0).
    """
    import importlib

    import timm

    converters = entry.get("converted_weights", {})
    if isinstance(pretrained, str) and is_weights_file(pretrained):
        with torch.random.fork_rng():
            module = timm.create_model(entry["arch"], pretrained=False,
                                       **{**entry.get("kwargs", {}), **kw, "num_classes": 0})
        load_weights_file(module, Path(pretrained).expanduser(), entry["name"])
        weights = pretrained
    elif isinstance(pretrained, str) and pretrained in converters:
        module_name, func = converters[pretrained].split(":")
        create = getattr(importlib.import_module(module_name), func)
        module = create(**{**entry.get("kwargs", {}), **kw, "num_classes": 0})
        weights = pretrained
    elif pretrained and entry.get("transformers_repo"):
        from transformers import ViTModel

        hf = ViTModel.from_pretrained(entry["transformers_repo"], revision=pretrained, add_pooling_layer=False)
        module = timm_from_transformers_vit(hf)
        weights = f"{entry['transformers_repo']}@{pretrained}"
    else:
        name = entry["arch"] if not isinstance(pretrained, str) else f"{entry['arch']}.{pretrained}"
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random weights are the same on every load, so their caches are reused
            module = timm.create_model(name, pretrained=bool(pretrained),
                                       **{**entry.get("kwargs", {}), **kw, "num_classes": 0})
        weights = pretrained or None
    model = TimmViTAdapter(module, entry["name"], data_config=entry.get("data_config"))
    model.weights = weights
    return model
