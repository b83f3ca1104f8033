"""Digests of a module's weights: what a cache or a stored embedding is keyed by, so new weights never reuse them."""

from __future__ import annotations

import hashlib
from typing import Iterable

import torch


def weights_digest(state: Iterable[tuple[str, torch.Tensor]], prefix: str = "") -> str:
    """sha256 over named tensors (names, shapes, dtypes and bytes, sorted by name), after the text `prefix`."""
    h = hashlib.sha256(prefix.encode())
    for name, t in sorted(state, key=lambda item: item[0]):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
