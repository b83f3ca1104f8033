"""Text embeddings in batches: the one place every text-tower caller (classifiers, dictionaries) encodes through."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..files import DamagedFileError, atomic_file, file_lock, read
from ..paths import artifacts_dir


def encode_texts(encode_text: Callable[[list[str]], Tensor], texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """(N, E) float32 CPU embeddings of `texts`, encoded `batch_size` at a time without gradients."""
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode")
    with torch.no_grad():
        return torch.cat([encode_text(texts[i:i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)])


def tower_digest(module: nn.Module, context_length: int | None) -> str:
    """sha256 over a CLIP's text side: every parameter and buffer outside `visual.` (`digest.weights_digest`) and the
    tokenizer's context length. Two models with this digest embed every text alike."""
    from .digest import weights_digest

    return weights_digest([(n, t) for n, t in module.state_dict().items() if not n.startswith("visual.")],
                          prefix=f"context_length={context_length}")


def stored_embeddings(tower: str, texts: list[str], encode: Callable[[list[str]], Tensor]) -> Tensor:
    """`encode(texts)` stored under `<artifacts>/text/<tower>/<sha256 of the texts>.pt` and read back on the next call.

    The pages that describe heads in text (Figures 3-5, Appendix A.2, the atlas) embed the same dictionary with the
    same model, each in its own process: 414 toy texts through the stand-in's ViT-S text tower took 25 s on one
    thread. `tower` names the model and its text weights (`tower_digest`). Callers of one list at once wait for
    each other (two pages starting together): one encodes, the others read. A damaged file is named and encoded
    again.
    """
    digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
    path = artifacts_dir() / "text" / tower / f"{digest}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            try:
                return read(path, lambda p: torch.load(p, weights_only=True), (RuntimeError, EOFError,
                                                                                pickle.UnpicklingError))
            except DamagedFileError as err:
                print(f"stored text embeddings: {err}; encoding them again", file=sys.stderr, flush=True)
        out = encode(texts)
        with atomic_file(path) as tmp:
            torch.save(out.detach().cpu(), tmp)
    return out
