"""Zero-shot accuracy of a toy CLIP on the toy world's tasks and out-of-distribution sets.

`python -m residual_lib.toy.evaluate --profile toy` prints, per dataset, the test-split accuracy of the
manifest's class names and prompt templates (`residual_lib.alignment.classifier`), beside chance (1 / classes).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from ..data.datasets import dataset_spec, load_dataset
from ..alignment.classifier import Classifier

TASKS = ("toy-shape", "toy-colour", "toy-pattern", "toy-position", "toy-size")
OOD = ("toy-sketch", "toy-textured", "toy-digits", "toy-noise")


@torch.no_grad()
def image_embeddings(model, images: Tensor, batch_size: int = 500) -> Tensor:
    """uint8 (N, 3, S, S) images -> (N, E) raw image embeddings of a ResidualModel with a `preprocess`."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = torch.stack([model.preprocess(im) for im in images[i:i + batch_size]]).to(model.device)
        out.append(model.encode_image(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def zero_shot_table(model, datasets: Sequence[str] = TASKS + OOD, split: str = "test",
                    n: int | None = None) -> pd.DataFrame:
    """One row per dataset: role, classes, chance, n and zero-shot accuracy of the model's embedding.

    n: the first n images of each split (None: all).
    """
    rows = []
    for name in datasets:
        spec = dataset_spec(name)
        data = load_dataset(name, split)
        classifier = Classifier.for_dataset(model, name)
        images, labels = data.images[:n], data.labels[:n]
        accuracy = classifier.accuracy(image_embeddings(model, images), labels)
        rows.append({"dataset": name, "role": spec.role, "classes": spec.n_classes, "chance": 1 / spec.n_classes,
                     "n": len(labels), "accuracy": accuracy})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Zero-shot accuracy of the toy CLIP per toy dataset.")
    parser.add_argument("--profile", default="toy", choices=("toy", "smoke"))
    parser.add_argument("--checkpoint", type=Path, help="a safetensors file (default: the profile's trained model)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    from ..models.open_clip import OpenClipAdapter
    from .model import from_checkpoint, preprocess_of, tokenizer_of
    from .train import ensure_model

    module = from_checkpoint(args.profile, args.checkpoint or ensure_model(args.profile))
    model = OpenClipAdapter(module, f"toy:{args.profile}", preprocess=preprocess_of(module),
                            tokenizer=tokenizer_of(args.profile))
    table = zero_shot_table(model, split=args.split)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
