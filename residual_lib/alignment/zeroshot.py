"""Zero-shot classification: class embeddings from prompt templates, accuracy of any image representation.

Per class, every template is filled with the class name and encoded; the text embeddings are normalised,
averaged over templates and renormalised (the CLIP recipe, and what the authors' code is reported to do).
An image representation (the model's embedding, or any sum of its residual units) is classified by the
cosine similarity to the class embeddings. Shapes: N samples, C classes, T templates, E embed_dim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.text import encode_texts

# CLIP's learned temperature saturates at 100; used as the default logit scale for training losses.
DEFAULT_LOGIT_SCALE = 100.0


@dataclass
class ZeroShotClassifier:
    """Unit-norm class embeddings (C, E) and the temperature used when logits feed a loss."""

    weights: Tensor
    class_names: tuple[str, ...]
    logit_scale: float = DEFAULT_LOGIT_SCALE

    @classmethod
    def from_texts(cls, encode_text: Callable[[list[str]], Tensor], class_names: Sequence[str],
                   templates: Sequence[str], batch_size: int = 256,
                   logit_scale: float = DEFAULT_LOGIT_SCALE) -> "ZeroShotClassifier":
        """Encode every (class, template) prompt with `encode_text` ((N,) strings -> (N, E)) and average."""
        if not class_names or not templates:
            raise ValueError(f"need at least one class name and one template; got {len(class_names)} classes, "
                             f"{len(templates)} templates")
        bad = [t for t in templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"templates must contain exactly one '{{}}'; bad: {bad}")
        prompts = [t.format(c) for c in class_names for t in templates]
        encoded = encode_texts(encode_text, prompts, batch_size)
        per_template = F.normalize(encoded, dim=-1).reshape(len(class_names), len(templates), -1)
        weights = F.normalize(per_template.mean(dim=1), dim=-1)
        return cls(weights=weights, class_names=tuple(class_names), logit_scale=logit_scale)

    @classmethod
    def for_dataset(cls, model, dataset: str, prompts: str = "manifest", **kwargs) -> "ZeroShotClassifier":
        """The classifier of a declared dataset for a text model.

        prompts: "manifest" (its manifest's class names and templates) or "authors" (those of the authors'
        code, `templates.prompts`). ``logit_scale="model"`` takes the model's own temperature
        (`model_logit_scale`) instead of a number.
        """
        from ..data.templates import prompts as prompt_lists

        if not getattr(model, "has_text", False):
            raise ValueError(f"model {getattr(model, 'name', model)!r} has no text tower; a zero-shot classifier needs one")
        if kwargs.get("logit_scale") == "model":
            kwargs["logit_scale"] = model_logit_scale(model)
        class_names, templates = prompt_lists(dataset, prompts)
        return cls.from_texts(model.encode_text, class_names, templates, **kwargs)

    @property
    def n_classes(self) -> int:
        return int(self.weights.shape[0])

    def logits(self, features: Tensor | np.ndarray) -> Tensor:
        """(N, E) image representations -> (N, C) scaled cosine similarities."""
        x = torch.as_tensor(features, dtype=torch.float32)
        if x.shape[-1] != self.weights.shape[1]:
            raise ValueError(f"features have dimension {x.shape[-1]}, the class embeddings {self.weights.shape[1]}")
        weights = self.weights.to(x.device)
        return self.logit_scale * F.normalize(x, dim=-1) @ weights.T

    def predict(self, features: Tensor | np.ndarray) -> np.ndarray:
        """(N, E) -> (N,) predicted class indices."""
        with torch.no_grad():
            return self.logits(features).argmax(dim=-1).cpu().numpy()

    def accuracy(self, features: Tensor | np.ndarray, labels: np.ndarray | Tensor) -> float:
        """Fraction of the N samples whose predicted class equals the label."""
        labels = np.asarray(torch.as_tensor(labels).cpu())
        return float(np.mean(self.predict(features) == labels))


def model_logit_scale(model) -> float:
    """exp(logit_scale) of a CLIP-style model (a ResidualModel or its module): its learned temperature."""
    module = getattr(model, "module", model)
    scale = getattr(module, "logit_scale", None)
    if scale is None:
        raise ValueError(f"model {getattr(model, 'name', type(module).__name__)!r} carries no logit_scale; "
                         f"pass a number as the logit scale (e.g. DEFAULT_LOGIT_SCALE = {DEFAULT_LOGIT_SCALE})")
    return float(torch.as_tensor(scale).detach().float().exp().cpu())


def unit_sum(units, names: Sequence[str], weights: Sequence[float] | None = None) -> np.ndarray:
    """(N, E) the output-space sum of the named units of a UnitSet/UnitCache (optionally weighted); zero if none."""
    total = np.zeros((units.n, units.embed_dim), dtype=np.float32)
    weights = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(names):
        raise ValueError(f"{len(names)} unit names but {len(weights)} weights")
    for name, w in zip(names, weights):
        if w != 0:
            total += np.float32(w) * units.output_space(name)
    return total


def accuracy(units, classifier: ZeroShotClassifier, names: Sequence[str] | None = None) -> float:
    """Zero-shot accuracy on a unit set's own embedding (names=None) or on the sum of the named units."""
    features = units.embedding if names is None else unit_sum(units, names)
    return classifier.accuracy(features, units.labels)
