"""Residual decomposition: units sum to the model's own embedding, per-unit formulas, head bases.

Oracles: open_clip's own `encode_image` (the sum of units), the real `nn.MultiheadAttention` of a block
run on its captured LayerNorm input (the per-head sum of one layer), and the LayerNorm distribution
written out directly in output space for every unit (the compact head coordinates).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU

from residual_lib.models.open_clip import OpenClipAdapter
from residual_lib.units.decompose import decompose, distribute
from residual_lib.units.unit_set import unit_names
from unit_fixtures import open_clip_model, perturb, tiny_model

torch.set_num_threads(1)

TOL = 1e-4  # max abs error, float32


def _images(model, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, model.image_size, model.image_size, generator=g)


def _check_exact(model, images) -> None:
    with torch.no_grad():
        ref = model.module.encode_image(images, normalize=False)
        for convention in ("paper", "centred"):
            units = decompose(model, images, convention)
            assert list(units) == unit_names(model.n_layers, model.n_heads)
            total = torch.stack(list(units.values())).sum(0)
            err = (total - ref).abs().max().item()
            rel = ((total - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
            assert err < TOL, f"{model.name} {convention}: max abs error {err:.2e}"
            assert rel < 1e-5, f"{model.name} {convention}: error relative to the embedding's norm {rel:.2e}"


def test_tiny_model_units_sum_to_open_clip_encode_image():
    model = tiny_model()
    _check_exact(model, _images(model, 4))


def test_tiny_quickgelu_layerscale_units_sum_to_open_clip_encode_image():
    torch.manual_seed(1)
    import open_clip

    from unit_fixtures import TINY_CFG

    module = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True, embed_dim=24,
                                    vision_cfg={**TINY_CFG["vision_cfg"], "ls_init_value": 0.5},
                                    text_cfg=TINY_CFG["text_cfg"])
    model = OpenClipAdapter(perturb(module, 1), "tiny-ls-quickgelu")
    blk = module.visual.transformer.resblocks[0]
    assert isinstance(blk.mlp.gelu, QuickGELU) and hasattr(blk.ls_1, "gamma")
    _check_exact(model, _images(model, 4))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-16", "ViT-B-16-quickgelu",
                                  "ViT-M-16-alt"])
def test_open_clip_architectures_sum_to_encode_image(arch):
    """Random-init open_clip architectures at 224x224 (ViT-M-16-alt is open_clip's LayerScale config)."""
    model = open_clip_model(arch)
    blk = model.module.visual.transformer.resblocks[0]
    assert isinstance(blk.mlp.gelu, QuickGELU) == arch.endswith("quickgelu")
    assert hasattr(blk.ls_1, "gamma") == (arch == "ViT-M-16-alt")
    _check_exact(model, _images(model, 2))


@pytest.mark.slow
@pytest.mark.parametrize("arch, size", [("ViT-L-14", None), ("ViT-L-14-quickgelu", 112)])
def test_vit_l14_sums_to_encode_image(arch, size):
    """ViT-L/14 at 224x224; the QuickGELU variant at 112x112 (same blocks, 65 tokens) to keep the suite short."""
    model = open_clip_model(arch, force_image_size=size)
    assert model.n_layers == 24 and model.n_heads == 16 and model.embed_dim == 768
    _check_exact(model, _images(model, 2))


def _block_inputs(model, images):
    """Hooks on modules that open_clip does call: ln_pre output, each block's ln_1 output, MLP output, ln_post input."""
    visual = model.module.visual
    seen = {"ln_1": [], "mlp": []}
    hooks = [visual.ln_pre.register_forward_hook(lambda m, i, o: seen.__setitem__("emb", o)),
             visual.ln_post.register_forward_hook(lambda m, i, o: seen.__setitem__("total", i[0]))]
    for blk in visual.transformer.resblocks:
        hooks.append(blk.ln_1.register_forward_hook(lambda m, i, o: seen["ln_1"].append(o)))
        hooks.append(blk.mlp.register_forward_hook(lambda m, i, o, b=blk: seen["mlp"].append(b.ls_2(o))))
    with torch.no_grad():
        model.module.encode_image(images)
    for h in hooks:
        h.remove()
    return seen


def test_head_sum_equals_multihead_attention_output():
    """Oracle: each block's own nn.MultiheadAttention on its captured ln_1 output, class-token row."""
    model = tiny_model(ls_init_value=0.3)
    images = _images(model, 3)
    seen = _block_inputs(model, images)
    cap = model.capture(images)
    ro = model.readout()
    visual = model.module.visual
    for l, blk in enumerate(visual.transformer.resblocks):
        with torch.no_grad():
            h = seen["ln_1"][l]
            ref = blk.ls_1(blk.attn(h, h, h, need_weights=False)[0])[:, 0]
        heads = torch.einsum("bhd,hdw->bhw", cap.z[:, l], ro.out_weight[l]) + ro.out_bias[l] / model.n_heads
        torch.testing.assert_close(heads.sum(1), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cap.mlp[:, l], seen["mlp"][l][:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cap.emb, seen["emb"][:, 0])


@pytest.mark.parametrize("convention", ["paper", "centred"])
def test_each_unit_matches_the_distribution_written_in_output_space(convention):
    """Oracle: rep(U) = ((U - share) / sigma * gamma + w_U beta) P computed directly, per unit (no QR)."""
    model = tiny_model(ls_init_value=0.3)
    images = _images(model, 3)
    seen = _block_inputs(model, images)
    cap, ro = model.capture(images), model.readout()
    units = decompose(model, images, convention)
    total = seen["total"][:, 0]
    L, H = model.n_layers, model.n_heads
    N = 2 * L + 1
    mu = total.mean(-1, keepdim=True)
    sigma = (total.var(-1, unbiased=False, keepdim=True) + ro.norm_eps).sqrt()

    def rep(u, w):
        centre = mu * w if convention == "paper" else u.mean(-1, keepdim=True)
        return ((u - centre) / sigma * ro.norm_weight + w * ro.norm_bias) @ ro.proj

    expected = {"EMB": rep(seen["emb"][:, 0], 1 / N)}
    for l in range(L):
        for h in range(H):
            raw = cap.z[:, l, h] @ ro.out_weight[l, h] + ro.out_bias[l] / H
            expected[f"L{l}.H{h}"] = rep(raw, 1 / (N * H))
        expected[f"L{l}.MLP"] = rep(seen["mlp"][l][:, 0], 1 / N)
    for name, value in expected.items():
        torch.testing.assert_close(units[name], value, atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("convention", ["paper", "centred"])
def test_head_bases_are_orthonormal_and_preserve_distances(convention):
    model = tiny_model()
    bases = model.head_bases(convention)
    L, H, r, E = bases.basis.shape
    assert r == model.d_head + 2 and E == model.embed_dim
    gram = bases.basis @ bases.basis.transpose(-1, -2)
    torch.testing.assert_close(gram, torch.eye(r).expand(L, H, r, r), atol=1e-5, rtol=0)
    images = _images(model, 5)
    dec = model.decompose_batch(images, convention)
    units = dec.to_units(bases)
    coords = dec.head_coords[:, 1, 2]
    torch.testing.assert_close(torch.cdist(coords, coords), torch.cdist(units["L1.H2"], units["L1.H2"]),
                               atol=1e-5, rtol=1e-4)


def test_paper_convention_is_default_and_differs_from_centred():
    model = tiny_model()
    images = _images(model, 2)
    default, paper, centred = (decompose(model, images, *c) for c in ((), ("paper",), ("centred",)))
    torch.testing.assert_close(default["L0.H0"], paper["L0.H0"])
    assert (paper["L0.H0"] - centred["L0.H0"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="valid: paper, centred"):
        decompose(model, images, "uniform")


def test_distribute_without_projection_uses_the_normed_stream():
    """A tower without final projection (open_clip's prune_head): output space is the stream width."""
    model = tiny_model()
    images = _images(model, 2)
    cap, ro = model.capture(images), model.readout()
    ro_np = type(ro)(ro.out_weight, ro.out_bias, ro.norm_weight, ro.norm_bias, ro.norm_eps, None)
    dec, bases = distribute(type(cap)(cap.emb, cap.z, cap.mlp), ro_np)
    units = dec.to_units(bases)
    visual = model.module.visual
    with torch.no_grad():
        ref = visual.ln_post(visual.transformer(visual._embeds(images))[:, 0])
    torch.testing.assert_close(sum(units.values()), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dec.embedding, ref, atol=1e-5, rtol=1e-5)


def _amp_errors(model, images, device_type: str, amp: torch.dtype) -> tuple[float, float, float]:
    """Max relative errors (to the norm) under autocast: own embedding vs fp32, units sum vs fp32, units sum vs own."""
    ref = model.decompose_batch(images).embedding
    with torch.autocast(device_type, dtype=amp):
        dec = model.decompose_batch(images)
    total = sum(dec.to_units(model.head_bases()).values())

    def rel(a, b):
        return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()

    return rel(dec.embedding, ref), rel(total, ref), rel(total, dec.embedding)


# bf16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3) and the stream is rounded at every
# residual addition; 5e-2 allows about a dozen roundoffs accumulated over the layers.
AMP_BOUND = 5e-2


def test_bfloat16_autocast_error_against_float32_on_cpu():
    """Reported: bf16 autocast errors relative to the fp32 embedding's norm (tiny model, CPU)."""
    model = tiny_model()
    own, units, units_own = _amp_errors(model, _images(model, 4), "cpu", torch.bfloat16)
    print(f"bf16 autocast on CPU: embedding vs fp32 {own:.2e}, units sum vs fp32 {units:.2e}, "
          f"units sum vs bf16 embedding {units_own:.2e}")
    assert 0 < own < AMP_BOUND and units < AMP_BOUND and units_own < AMP_BOUND


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_autocast_error_against_float32_on_gpu(amp):
    model = tiny_model().to("cuda")
    own, units, units_own = _amp_errors(model, _images(model, 8).cuda(), "cuda", amp)
    print(f"{amp} autocast on CUDA: embedding vs fp32 {own:.2e}, units sum vs fp32 {units:.2e}, "
          f"units sum vs own embedding {units_own:.2e}")
    assert own < AMP_BOUND and units < AMP_BOUND and units_own < AMP_BOUND


def test_preprocess_accepts_pil_and_uint8_and_rejects_wrong_size():
    from PIL import Image

    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    torch.testing.assert_close(model.preprocess(img), model.preprocess(pil), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"expected a uint8 \(3, 32, 32\) tensor for model 'ViT-B-32'.*\(3, 40, 40\)"):
        model.preprocess(torch.zeros(3, 40, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode_image(torch.zeros(2, 3, 40, 40))
    assert model.preprocess(pil.resize((50, 70))).shape == (3, 32, 32)


def test_encode_text_returns_raw_embeddings():
    model = tiny_model()
    with torch.no_grad():
        text = model.encode_text(["a red circle", "a blue square"])
    assert model.has_text and text.shape == (2, model.embed_dim)
    assert not torch.allclose(text.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("vision, match", [
    ({"pool_type": "avg"}, "pool_type 'avg'"),
    ({"attentional_pool": True}, "attentional pooler"),
    ({"qk_norm": True}, "CustomResidualAttentionBlock"),
])
def test_unsupported_towers_raise_naming_what_is_supported(vision, match):
    with pytest.raises(ValueError, match=match) as err:
        tiny_model(**vision)
    assert "Supported: open_clip VisionTransformer" in str(err.value)


def test_resnet_tower_is_rejected():
    import open_clip

    module = open_clip.create_model("RN50", pretrained=None, embed_dim=16,
                                    vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16),
                                    text_cfg=dict(context_length=8, vocab_size=49408, width=16, heads=2, layers=1))
    with pytest.raises(ValueError, match="ModifiedResNet, not an open_clip VisionTransformer"):
        OpenClipAdapter(module, "RN50")


def test_decomposition_is_per_image():
    """A unit of one image does not depend on the other images in its batch."""
    model = tiny_model()
    images = _images(model, 4)
    full = decompose(model, images)
    alone = decompose(model, images[2:3])
    for name in ("EMB", "L2.H3", "L1.MLP"):
        np.testing.assert_allclose(full[name][2:3].numpy(), alone[name].numpy(), atol=1e-5)


def test_project_toy_configs_sum_to_encode_image():
    """Every open_clip config the toy world registers (random weights): units sum to encode_image."""
    import open_clip

    pytest.importorskip("residual_lib.toy.model", reason="the toy model module is not in this checkout yet")
    toy = [name for name in open_clip.list_models() if name.startswith("toy")]
    if not toy:
        pytest.skip("residual_lib.toy.model registers no open_clip config named toy*")
    for i, name in enumerate(toy):
        model = open_clip_model(name, seed=i)
        _check_exact(model, _images(model, 3))
