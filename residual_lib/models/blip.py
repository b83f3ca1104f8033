"""BLIP's image tower and its image-text projection (the paper's BLIP-L) as a `ResidualModel`.

The image embedding is BLIP's retrieval feature before normalisation,
``vision_proj(post_layernorm(x)[:, 0])`` (transformers' `BlipForImageTextRetrieval` with
`use_itm_head=False`): a pre-norm ViT (no pre-norm on the embeddings, no LayerScale) followed by
the final LayerNorm and an affine projection to 256 dimensions. The projection's bias ``c`` is folded
into the LayerNorm's beta as ``beta' = beta + c P^+`` (so that ``beta' P = beta P + c``; exact because P
has full column rank), which splits it over the units exactly as the paper's convention splits beta.
The final LayerNorm is distributed by `residual_lib.units.decompose.distribute`. Text goes through BLIP's
unimodal text encoder and `text_proj`, as in BLIP's image-text contrastive scores.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..units.decompose import ClassTokenCapture, Readout
from ..units.adapter import ResidualModel
from .vit_parts import BlockView, ImageInput, ReadoutDecomposition, run_class_token

# BlipImageProcessor's settings for the BLIP checkpoints: resize (no crop), bicubic, CLIP's mean and std.
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def blip_transform(image_size: int) -> Callable:
    """PIL image -> float (3, S, S): BLIP's evaluation preprocessing (square resize, bicubic, normalise)."""
    from torchvision import transforms as T

    return T.Compose([T.Lambda(lambda im: im.convert("RGB")),
                      T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC),
                      T.ToTensor(), T.Normalize(BLIP_MEAN, BLIP_STD)])


class BlipAdapter(ImageInput, ReadoutDecomposition, ResidualModel):
    """A transformers `BlipForImageTextRetrieval` (or any module with `vision_model` and `vision_proj`)."""

    def __init__(self, module: nn.Module, name: str, tokenizer: Callable | None = None,
                 preprocess: Callable | None = None):
        if not hasattr(module, "vision_model") or not hasattr(module, "vision_proj"):
            raise ValueError(f"model {name!r} is not supported: a BLIP retrieval model needs `vision_model` and "
                             f"`vision_proj` (transformers BlipForImageTextRetrieval); got {type(module).__name__}")
        self.module = module.eval()
        self.name = name
        config = module.vision_model.config
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.width = config.hidden_size
        self.d_head = self.width // self.n_heads
        self.embed_dim = module.vision_proj.out_features
        self.image_size = int(config.image_size)
        self._pil_transform = preprocess or blip_transform(self.image_size)
        self._mean = torch.tensor(BLIP_MEAN).view(3, 1, 1)
        self._std = torch.tensor(BLIP_STD).view(3, 1, 1)
        self._tokenizer = tokenizer
        self._readouts: dict[torch.device, Readout] = {}

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, E) BLIP's unnormalised retrieval image feature, by transformers' own forward."""
        self._check_images(images)
        hidden = self.module.vision_model(pixel_values=images).last_hidden_state
        return self.module.vision_proj(hidden[:, 0])

    @property
    def has_text(self) -> bool:
        return hasattr(self.module, "text_encoder") and hasattr(self.module, "text_proj")

    def encode_text(self, texts: list[str]) -> Tensor:
        """(N,) strings -> (N, E) unnormalised text features of BLIP's unimodal text encoder."""
        if self._tokenizer is None:
            raise ValueError(f"model {self.name!r} has no tokenizer; pass one to BlipAdapter (load() does)")
        tokens = self._tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        hidden = self.module.text_encoder(input_ids=tokens["input_ids"],
                                          attention_mask=tokens["attention_mask"]).last_hidden_state
        return self.module.text_proj(hidden[:, 0])

    def readout(self) -> Readout:
        """Out-projections, the final norm (projection bias folded into beta) and the projection."""
        device = self.device
        if device not in self._readouts:
            layers = self.module.vision_model.encoder.layers
            weights = torch.stack([l.self_attn.projection.weight.detach().T.reshape(self.n_heads, self.d_head, self.width)
                                   for l in layers])
            biases = torch.stack([l.self_attn.projection.bias.detach() for l in layers])
            norm, proj = self.module.vision_model.post_layernorm, self.module.vision_proj
            P = proj.weight.detach().T.double()                                   # (W, E)
            beta = norm.bias.detach().double()
            if proj.bias is not None:
                beta = beta + proj.bias.detach().double() @ torch.linalg.pinv(P)
            self._readouts[device] = Readout(
                out_weight=weights.float(), out_bias=biases.float(), norm_weight=norm.weight.detach().float(),
                norm_bias=beta.float(), norm_eps=norm.eps, proj=P.float())
        return self._readouts[device]

    @torch.no_grad()
    def capture(self, images: Tensor) -> ClassTokenCapture:
        """(B, 3, S, S) -> the class-token residual pieces and the model's own embedding, in one forward pass."""
        self._check_images(images)
        vision = self.module.vision_model
        x = vision.embeddings(images)                                    # (B, T, W); BLIP has no pre-norm
        emb = x[:, 0]
        views = [BlockView(norm1=l.layer_norm1, qkv=l.self_attn.qkv, out=l.self_attn.projection,
                           mlp=lambda y, l=l: l.mlp(l.layer_norm2(y))) for l in vision.encoder.layers]
        cls, z, mlp = run_class_token(x, views, self.n_heads, self.d_head)
        pooled = self.module.vision_proj(vision.post_layernorm(cls))
        return ClassTokenCapture(emb=emb, z=z, mlp=mlp, embedding=pooled)


def load(entry: dict, pretrained: str | None = None, **kw) -> BlipAdapter:
    """A model manifest entry (family blip) -> adapter.

    entry: `arch` (Hugging Face repository, e.g. Salesforce/blip-itm-large-flickr), optional `config`
    (BlipConfig overrides, used for random weights). `pretrained`: a repository revision (e.g. "main" or a
    commit) to download the weights at; None builds the architecture from `arch`'s config with seeded random
    weights (offline when `config` gives vision_config and text_config in full).
    """
    from transformers import AutoTokenizer, BlipConfig, BlipForImageTextRetrieval

    if pretrained:
        module = BlipForImageTextRetrieval.from_pretrained(entry["arch"], revision=pretrained, **kw)
        tokenizer = AutoTokenizer.from_pretrained(entry["arch"], revision=pretrained)
    else:
        overrides = entry.get("config")
        config = BlipConfig(**overrides) if overrides else BlipConfig.from_pretrained(entry["arch"])
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random weights are the same on every load, so their caches are reused
            module = BlipForImageTextRetrieval(config)
        tokenizer = None
    model = BlipAdapter(module, entry["name"], tokenizer=tokenizer)
    model.weights = f"{entry['arch']}@{pretrained}" if pretrained else None
    return model
