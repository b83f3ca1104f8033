"""Full finetuning (Section 4.2's upper bound): every weight of the vision tower trained, the text classifier frozen.

The image tower is wrapped as a module mapping preprocessed images (N, 3, S, S) to embeddings (N, E), so the
shared training loop (`residual_lib.alignment.training.fit`: Schedule-Free AdamW, LR range test, early stopping) runs
it exactly as it runs ResiDual; only the features differ (images instead of cached units). The wrapped model
is a copy: the original stays as loaded.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .training import FINETUNE_MAX_LR, TrainConfig, TrainResult, fit, protocol_config
from .classifier import Classifier

__all__ = ["FINETUNE_MAX_LR", "VisionTower", "finetune", "preprocessed_images", "vision_tower"]


def vision_tower(module: nn.Module) -> nn.Module:
    """The image encoder of a model's module: open_clip's `visual`; BLIP's `vision_model` with its `vision_proj`
    (the text encoder is not finetuned and not counted); else the whole module (image-only models)."""
    if hasattr(module, "visual"):
        return module.visual
    if hasattr(module, "vision_model") and hasattr(module, "vision_proj"):
        return nn.ModuleList([module.vision_model, module.vision_proj])
    return module


class VisionTower(nn.Module):
    """A copy of a `ResidualModel`'s image encoder as a trainable module; `visual` holds the trained weights."""

    name = "Full finetuning"

    def __init__(self, model):
        super().__init__()
        self.model = copy.deepcopy(model)
        module = self.model.module
        self.visual = vision_tower(module)
        for p in module.parameters():
            p.requires_grad_(False)
        for p in self.visual.parameters():
            p.requires_grad_(True)

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_image(images)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.visual.parameters())


def preprocessed_images(model, dataset, index: np.ndarray | None = None, progress: bool = True) -> tuple[Tensor, np.ndarray]:
    """((N, 3, S, S) float images, (N,) labels) of a torch Dataset of (image, label), preprocessed for `model`."""
    index = np.arange(len(dataset)) if index is None else np.asarray(index)
    images, labels = [], []
    for i in tqdm(index, desc="preprocess images", disable=not progress, leave=False):
        image, label = dataset[int(i)]
        images.append(model.preprocess(image))
        labels.append(int(label))
    return torch.stack(images), np.asarray(labels)


def finetune(model, classifier: Classifier, train: tuple[Tensor, np.ndarray], val: tuple[Tensor, np.ndarray],
             config: TrainConfig | None = None, protocol: str = "paper_text") -> tuple[VisionTower, TrainResult]:
    """Finetune a copy of the model's vision tower on (images, labels) with the frozen classifier.

    Without a config, the protocol's (`training.protocol_config`): the range test up to FINETUNE_MAX_LR
    ("paper_text") or the authors' lr 1e-5, batch 128, gradient norm clipped to 1.0 ("authors_code").
    """
    config = config or protocol_config("finetune", protocol)
    tower = VisionTower(model)
    result = fit(tower, classifier, train, val, config)
    return tower, result
