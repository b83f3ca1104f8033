"""The paper's model adapters (timm ViT-L / DINOv2-L, BLIP-L) on random weights, and the paper's model manifests.

Invariant for every architecture: the units sum to the model's own image embedding (float32, max abs error
< 1e-4 relative to the embedding's max abs value), in both LayerNorm conventions; and one layer's heads plus
its bias share sum to that layer's attention output as the library computes it, so an error cannot hide in a
compensating term.
"""

import pandas as pd
import pytest
import torch
import yaml

from residual_lib.report import results
from residual_lib.models import blip as blip_adapter
from residual_lib.models import timm_vit
from residual_lib.units.decompose import decompose
from residual_lib.paths import MANIFESTS
from residual_lib.alignment.residual import Architecture, make_method

torch.set_num_threads(1)
PAPER_MODELS = {"clip-b": "CLIP-B", "clip-l": "CLIP-L", "openclip-b": "OpenCLIP-B", "openclip-l": "OpenCLIP-L",
                "blip-l": "BLIP-L", "dinov2-l": "DINOv2-L", "vit-l": "ViT-L"}


def manifest(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / "models" / f"{name}.yaml").read_text())


def _randomise_norms(module: torch.nn.Module) -> None:
    """LayerNorm affine weights and LayerScale gammas away from their init, so the test sees them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or "gamma" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name.endswith(("weight", "gamma")) else 0.0))


def assert_units_sum_to_embedding(model, images: torch.Tensor) -> None:
    with torch.no_grad():
        embedding = model.encode_image(images)
        for convention in ("paper", "centred"):
            units = decompose(model, images, convention)
            assert len(units) == 1 + model.n_layers * (model.n_heads + 1)
            total = torch.stack(list(units.values())).sum(0)
            err = (total - embedding).abs().max() / embedding.abs().max()
            assert err < 1e-4, (convention, float(err))


def head_sum_equals_attention_output(model, images: torch.Tensor, layer: int, attention_output) -> None:
    """The captured value mixes times the out-projection rows (plus bias) equal the layer's real output."""
    capture = model.capture(images)
    readout = model.readout()
    ours = torch.einsum("bhd,hdw->bw", capture.z[:, layer], readout.out_weight[layer]) + readout.out_bias[layer]
    torch.testing.assert_close(ours, attention_output, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ timm


def tiny_timm(layer_scale: bool, **kw):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    module = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, num_classes=0,
                               init_values=1e-5 if layer_scale else None, **kw)
    _randomise_norms(module)
    return timm_vit.TimmViTAdapter(module, "tiny-timm")


@pytest.mark.parametrize("layer_scale", [True, False], ids=["layerscale", "plain"])
def test_timm_units_sum_to_the_embedding(layer_scale):
    model = tiny_timm(layer_scale)
    assert_units_sum_to_embedding(model, torch.randn(4, 3, 32, 32))


def test_timm_heads_of_one_layer_sum_to_its_attention_output():
    """Oracle: timm's own block, read through a forward hook on its LayerScale (attention output, class token)."""
    model = tiny_timm(layer_scale=True)
    images = torch.randn(3, 3, 32, 32)
    seen = {}
    block = model.module.blocks[1]
    handle = block.ls1.register_forward_hook(lambda mod, inp, out: seen.update(out=out[:, 0]))
    model.encode_image(images)
    handle.remove()
    head_sum_equals_attention_output(model, images, 1, seen["out"])


def test_timm_embedding_is_timms_pre_logits_class_token():
    model = tiny_timm(layer_scale=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.capture(images).embedding
        timm_out = model.module(images)  # num_classes=0: the head is the identity
    torch.testing.assert_close(ours, timm_out, rtol=1e-5, atol=1e-5)
    assert model.embed_dim == model.width == 64


def test_timm_rejects_unsupported_pooling():
    from timm.models.vision_transformer import VisionTransformer

    module = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, num_classes=0,
                               global_pool="avg")
    with pytest.raises(ValueError, match="Supported: timm VisionTransformer"):
        timm_vit.TimmViTAdapter(module, "avg-pooled")


def test_timm_load_builds_random_weights_from_a_manifest_entry():
    model = timm_vit.load({"name": "tiny", "arch": "vit_tiny_patch16_224", "kwargs": {"img_size": 32}}, None)
    assert (model.n_layers, model.n_heads, model.d_head, model.image_size) == (12, 3, 64, 32)
    assert model.weights is None and not model.has_text


@pytest.mark.slow
@pytest.mark.parametrize("name, image_size", [("vit-l", 64), ("dinov2-l", 56)])
def test_timm_paper_architectures_at_exact_dims(name, image_size):
    """The paper's ViT-L and DINOv2-L (LayerScale) with random weights, at a small image size for the CPU."""
    entry = manifest(name)
    model = timm_vit.load({**entry, "kwargs": {**entry.get("kwargs", {}), "img_size": image_size}}, None)
    assert (model.n_layers, model.n_heads, model.d_head, model.embed_dim) == (24, 16, 64, 1024)
    has_ls = [hasattr(b.ls1, "gamma") for b in model.module.blocks]
    assert all(has_ls) == (name == "dinov2-l") and any(has_ls) == (name == "dinov2-l")
    _randomise_norms(model.module)
    assert_units_sum_to_embedding(model, torch.randn(2, 3, image_size, image_size))


# ------------------------------------------------------------------------------------------------ BLIP


class _VisionOnly(torch.nn.Module):
    """BLIP's image tower and projection without the text tower (the exact-dims test needs no text)."""

    def __init__(self, config):
        from transformers import BlipVisionModel

        super().__init__()
        self.vision_model = BlipVisionModel(config.vision_config)
        self.vision_proj = torch.nn.Linear(config.vision_config.hidden_size, config.image_text_hidden_size)


TINY_BLIP = {"vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
                               "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
             "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "vocab_size": 200, "encoder_hidden_size": 64,
                             "bos_token_id": 1, "sep_token_id": 2, "pad_token_id": 0},
             "image_text_hidden_size": 16}


def tiny_blip():
    torch.manual_seed(0)
    model = blip_adapter.load({"name": "tiny-blip", "arch": "Salesforce/blip-itm-large-flickr", "config": TINY_BLIP})
    _randomise_norms(model.module.vision_model)
    with torch.no_grad():
        model.module.vision_proj.bias.normal_()
    return model


def test_blip_units_sum_to_the_projected_embedding_with_its_bias():
    model = tiny_blip()
    assert model.module.vision_proj.bias.abs().max() > 0.1
    assert_units_sum_to_embedding(model, torch.randn(4, 3, 32, 32))


def test_blip_embedding_is_transformers_retrieval_feature():
    """Oracle: transformers' own BlipForImageTextRetrieval(use_itm_head=False) image feature, before normalising."""
    model = tiny_blip()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.module(input_ids=torch.tensor([[1, 5, 6, 2]] * 2), pixel_values=images, use_itm_head=False)
        feature = model.module.vision_proj(out.last_hidden_state[:, 0])
    torch.testing.assert_close(model.capture(images).embedding, feature, rtol=1e-5, atol=1e-5)


def test_blip_heads_of_one_layer_sum_to_its_attention_output():
    """Oracle: transformers' BlipAttention output for the layer, read through a forward hook."""
    model = tiny_blip()
    images = torch.randn(3, 3, 32, 32)
    seen = {}
    attn = model.module.vision_model.encoder.layers[2].self_attn
    handle = attn.register_forward_hook(lambda mod, inp, out: seen.update(out=out[0][:, 0]))
    with torch.no_grad():
        model.encode_image(images)
    handle.remove()
    head_sum_equals_attention_output(model, images, 2, seen["out"])


def test_blip_text_features_use_the_unimodal_encoder(tmp_path):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "a", "photo", "of", "dog", "cat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(200 - len(vocab))]))
    model = tiny_blip()
    model._tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    with torch.no_grad():
        feats = model.encode_text(["a photo of a dog", "a cat"])
    assert feats.shape == (2, 16) and model.has_text
    assert not torch.allclose(feats[0], feats[1])


def test_blip_rejects_a_module_without_projection():
    with pytest.raises(ValueError, match="vision_proj"):
        blip_adapter.BlipAdapter(torch.nn.Linear(2, 2), "not-blip")


@pytest.mark.slow
def test_blip_l_architecture_at_exact_dims():
    """BLIP-L's image tower and projection from the manifest's config (random weights), at 64 px for the CPU."""
    from transformers import BlipConfig

    config = BlipConfig(**manifest("blip-l")["config"])
    config.vision_config.image_size = 64
    torch.manual_seed(0)
    module = _VisionOnly(config)
    _randomise_norms(module.vision_model)
    with torch.no_grad():
        module.vision_proj.bias.normal_()
    model = blip_adapter.BlipAdapter(module, "blip-l")
    assert (model.n_layers, model.n_heads, model.d_head, model.embed_dim) == (24, 16, 64, 256)
    assert_units_sum_to_embedding(model, torch.randn(2, 3, 64, 64))


# ------------------------------------------------------------------------------------------------ manifests


def paper_architecture(name: str) -> Architecture:
    """The vision tower's dimensions from the manifest alone (no weights, no download)."""
    entry = manifest(name)
    if entry["family"] == "open_clip":
        return Architecture.from_open_clip(entry["arch"])
    if entry["family"] == "blip":
        vision = entry["config"]["vision_config"]
        heads = vision["num_attention_heads"]
        return Architecture(vision["num_hidden_layers"], heads, vision["hidden_size"] // heads,
                            entry["config"]["image_text_hidden_size"])
    raise ValueError(f"{name} has no text tower and no Table 2 row")


def test_rd_parameter_counts_match_the_papers_params_row():
    """RD = 64 per head + E per MLP, RDY = E, Lin = E^2 + E, against Tables 2/6 within the report's tolerance."""
    rows = []
    for name in ("clip-b", "clip-l", "openclip-b", "openclip-l", "blip-l"):
        arch = paper_architecture(name)
        for method in ("RD", "RDY", "Lin"):
            rows.append({"model": PAPER_MODELS[name], "method": method,
                         "params": make_method(method, arch).n_params})
    ours = pd.DataFrame(rows)
    assert ours.set_index(["model", "method"]).loc[("BLIP-L", "RD"), "params"] == 384 * 64 + 24 * 256 == 30720
    assert ours.set_index(["model", "method"]).loc[("CLIP-L", "RD"), "params"] == 43008
    comp = results.compare("table2_params", ours)
    compared = comp[comp["verdict"] != "not run"]
    assert len(compared) == 15 and set(compared["verdict"]) == {"match"}, compared


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_model_manifests_name_valid_weights_offline(name):
    import open_clip
    import timm

    entry = manifest(name)
    assert entry["display"] == PAPER_MODELS[name] and entry["notes"] and entry["licence"]
    if entry["family"] == "open_clip":
        assert open_clip.is_pretrained_cfg(entry["arch"], entry["pretrained"])
        assert entry["quick_gelu"] == (entry["pretrained"] == "openai")
    elif entry["family"] == "timm":
        assert entry["arch"] in timm.list_models() and entry["text"] is False
        if "transformers_repo" not in entry:
            assert f"{entry['arch']}.{entry['pretrained']}" in timm.list_pretrained(entry["arch"] + "*")
    else:
        assert entry["family"] == "blip" and entry["config"]["image_text_hidden_size"] == 256


def test_transformers_vit_converts_to_the_identical_timm_model():
    """Oracle: transformers' own ViTModel (the authors' ViT-L loader); its class token after the final norm
    equals the converted timm model's embedding, and the units of the conversion sum to it."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                       image_size=32, patch_size=8)
    hf = ViTModel(config, add_pooling_layer=False).eval()
    _randomise_norms(hf)
    module = timm_vit.timm_from_transformers_vit(hf)
    model = timm_vit.TimmViTAdapter(module, "converted")
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        theirs = hf(pixel_values=images).last_hidden_state[:, 0]
    torch.testing.assert_close(model.encode_image(images).detach(), theirs, rtol=1e-4, atol=1e-5)
    assert module.norm.eps == config.layer_norm_eps
    assert_units_sum_to_embedding(model, images)


def test_random_weights_are_the_same_on_every_load():
    """Seeded random init: a stand-in's caches (keyed by a hash of the weights) are found again by the next load."""
    entry = {"name": "tiny", "arch": "vit_tiny_patch16_224", "kwargs": {"img_size": 32}}
    a, b = timm_vit.load(entry, None), timm_vit.load(entry, None)
    assert all(torch.equal(p, q) for p, q in zip(a.module.parameters(), b.module.parameters()))
    blip_entry = {"name": "tiny-blip", "arch": "x", "config": TINY_BLIP}
    c, d = blip_adapter.load(blip_entry), blip_adapter.load(blip_entry)
    assert torch.equal(c.module.vision_proj.weight, d.module.vision_proj.weight)
