"""open_clip CLIP models (ViT image towers) as `ResidualModel`s.

The adapter runs the image tower block by block with the module's own weights through the shared
`vit_parts.run_class_token`: per layer q, k, v are computed once, `scaled_dot_product_attention` runs
for all tokens, and each head's value mix at the class token is read straight from the attention
output (no second attention pass, no hooks: open_clip 3.3's `nn.MultiheadAttention` never calls its
`out_proj` module). In the last block only the class token's query, out-projection and MLP are
computed, since no later layer reads the others. The final LayerNorm and projection are distributed
by `residual_lib.units.decompose.distribute`.

Supported: `open_clip.transformer.VisionTransformer` towers with class-token pooling (`pool_type
'tok'`), no attentional pooler, standard `ResidualAttentionBlock`s (`nn.MultiheadAttention` with a
packed in-projection), GELU or QuickGELU, with or without LayerScale, with or without `ln_pre` and
the final projection. Weights are read once, when first needed: treat the wrapped model as frozen.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch
from torch import Tensor, nn

from ..units.decompose import ClassTokenCapture, Readout
from ..units.adapter import ResidualModel
from .vit_parts import BlockView, ImageInput, ReadoutDecomposition, run_class_token

SUPPORTED = ("open_clip VisionTransformer image towers with class-token pooling (pool_type 'tok'), "
             "no attentional pooler, standard ResidualAttentionBlocks (nn.MultiheadAttention); "
             "e.g. ViT-B-32, ViT-B-16, ViT-L-14 and their -quickgelu variants")


def check_supported(model: nn.Module, name: str) -> None:
    """Raise a ValueError naming what is supported when `model`'s image tower cannot be decomposed."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", None)
    problem = None
    if not isinstance(visual, VisionTransformer):
        problem = f"its image tower is a {type(visual).__name__}, not an open_clip VisionTransformer"
    elif visual.attn_pool is not None:
        problem = "its image tower pools with an attentional pooler"
    elif visual.pool_type != "tok":
        problem = f"its image tower pools with pool_type {visual.pool_type!r}"
    else:
        for i, blk in enumerate(visual.transformer.resblocks):
            attn = getattr(blk, "attn", None)
            if (not isinstance(blk, ResidualAttentionBlock) or not isinstance(attn, nn.MultiheadAttention)
                    or not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn
                    or hasattr(blk, "ln_1_kv")):
                problem = f"block {i} is a {type(blk).__name__} that is not a plain self-attention block"
                break
    if problem:
        raise ValueError(f"model {name!r} is not supported: {problem}. Supported: {SUPPORTED}")


def _normalize_of(transform: Callable) -> tuple[Tensor, Tensor] | None:
    """The (mean, std) of the first Normalize step in a torchvision Compose, if any."""
    for t in getattr(transform, "transforms", []):
        if hasattr(t, "mean") and hasattr(t, "std"):
            return torch.tensor(t.mean, dtype=torch.float32), torch.tensor(t.std, dtype=torch.float32)
    return None


class OpenClipAdapter(ImageInput, ReadoutDecomposition, ResidualModel):
    """An open_clip CLIP whose image embedding is decomposed into residual units.

    `encode_image` and `encode_text` return raw (unnormalised) embeddings; normalising belongs to the
    zero-shot classifier. `preprocess` takes a PIL image (resized and cropped by the model's own
    transform) or a uint8 (3, S, S) tensor already at the model's image size.
    """

    def __init__(self, module: nn.Module, name: str, preprocess: Callable | None = None,
                 tokenizer: Callable | None = None):
        import open_clip

        check_supported(module, name)
        self.module = module.eval()
        self.name = name
        visual = module.visual
        blocks = visual.transformer.resblocks
        self.n_layers = len(blocks)
        self.n_heads = blocks[0].attn.num_heads
        self.width = visual.transformer.width
        self.d_head = self.width // self.n_heads
        self.embed_dim = visual.proj.shape[1] if visual.proj is not None else self.width
        size = visual.image_size
        if size[0] != size[1]:
            raise ValueError(f"model {name!r} has non-square image size {size}; only square images are supported")
        self.image_size = int(size[0])
        cfg = open_clip.get_model_preprocess_cfg(module)
        self._pil_transform = preprocess or open_clip.image_transform(
            self.image_size, is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
            interpolation=cfg.get("interpolation"), resize_mode=cfg.get("resize_mode"))
        norm = _normalize_of(self._pil_transform)
        if norm is None:
            norm = (torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32),
                    torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32))
        self._mean, self._std = (t.view(3, 1, 1) for t in norm)
        self._tokenizer = tokenizer
        self._text_tower: str | None = None  # "<name>-<digest of the text weights>", on the first encode_text
        self._readouts: dict[torch.device, Readout] = {}

    # -- outputs --------------------------------------------------------------------------------
    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, E) raw image embedding from open_clip's own forward."""
        self._check_images(images)
        return self.module.encode_image(images, normalize=False)

    @property
    def has_text(self) -> bool:
        return hasattr(self.module, "encode_text")

    def encode_text(self, texts: list[str]) -> Tensor:
        """(N,) strings -> (N, E) raw (unnormalised) text embeddings; without gradients, stored per text tower and
        list of texts and read back on the next call (`text.stored_embeddings`)."""
        texts = list(texts)
        if torch.is_grad_enabled():
            return self._encode_text(texts)
        from .text import stored_embeddings, tower_digest

        if self._text_tower is None:
            digest = tower_digest(self.module, getattr(self.module, "context_length", None))
            self._text_tower = f"{self.name}-{digest[:12]}"
        return stored_embeddings(self._text_tower, texts, self._encode_text).to(self.device)

    def _encode_text(self, texts: list[str]) -> Tensor:
        import open_clip

        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(
                self.name, context_length=getattr(self.module, "context_length", None))
        tokens = self._tokenizer(texts).to(self.device)
        return self.module.encode_text(tokens, normalize=False)

    def readout(self) -> Readout:
        """The fixed out-projection, final-norm and projection weights on the model's device."""
        device = self.device
        if device not in self._readouts:
            visual = self.module.visual
            weights, biases = [], []
            for blk in visual.transformer.resblocks:
                ls = blk.ls_1.gamma.detach() if hasattr(blk.ls_1, "gamma") else None
                w = blk.attn.out_proj.weight.detach().T.reshape(self.n_heads, self.d_head, self.width)
                b = blk.attn.out_proj.bias.detach() if blk.attn.out_proj.bias is not None \
                    else torch.zeros(self.width, device=device)
                weights.append(w if ls is None else w * ls)
                biases.append(b if ls is None else b * ls)
            ln = visual.ln_post
            self._readouts[device] = Readout(
                out_weight=torch.stack(weights).float(), out_bias=torch.stack(biases).float(),
                norm_weight=ln.weight.detach().float(), norm_bias=ln.bias.detach().float(), norm_eps=ln.eps,
                proj=visual.proj.detach().float() if visual.proj is not None else None)
        return self._readouts[device]

    def _block_views(self) -> list[BlockView]:
        return [BlockView(norm1=blk.ln_1,
                          qkv=SimpleNamespace(weight=blk.attn.in_proj_weight, bias=blk.attn.in_proj_bias),
                          out=lambda o, blk=blk: blk.ls_1(blk.attn.out_proj(o)),
                          mlp=lambda x, blk=blk: blk.ls_2(blk.mlp(blk.ln_2(x))))
                for blk in self.module.visual.transformer.resblocks]

    @torch.no_grad()
    def capture(self, images: Tensor) -> ClassTokenCapture:
        """(B, 3, S, S) -> the class-token residual pieces and the pooled output, in one forward pass."""
        self._check_images(images)
        visual = self.module.visual
        x = visual._embeds(images)                                    # (B, T, W) after ln_pre
        final, z, mlp = run_class_token(x, self._block_views(), self.n_heads, self.d_head)
        pooled = visual.ln_post(final)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return ClassTokenCapture(emb=x[:, 0], z=z, mlp=mlp, embedding=pooled)
