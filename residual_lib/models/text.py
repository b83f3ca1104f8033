"""Text embeddings in batches: the one place every text-tower caller (classifiers, dictionaries) encodes through."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def encode_texts(encode_text: Callable[[list[str]], Tensor], texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """(N, E) float32 CPU embeddings of `texts`, encoded `batch_size` at a time without gradients."""
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode")
    with torch.no_grad():
        return torch.cat([encode_text(texts[i:i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)])
