"""The frozen classifier of Section 4: unit-norm class embeddings, and the accuracy of any image representation.

Two ways to build the class embeddings, one recipe: embeddings are normalised, averaged per class and
renormalised (the authors' `build_centroid_classifier`).

- zero-shot (`Classifier.from_texts`, `Classifier.for_dataset`): per class, every prompt template filled with
  the class name and encoded by the text tower (the CLIP recipe);
- class-mean (`Classifier.from_class_means`): per class, the model's own output embedding of k labelled
  images (a nearest-class-mean classifier), for a model without a text tower.

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
class Classifier:
    """Unit-norm class embeddings (C, E), the temperature used when logits feed a loss, and how it was built
    (`kind`: "zero-shot (text)" or "class-mean, k=<k>", as pages and the claim ledger name it)."""

    weights: Tensor
    class_names: tuple[str, ...]
    logit_scale: float = DEFAULT_LOGIT_SCALE
    kind: str = "zero-shot (text)"

    @classmethod
    def from_class_means(cls, embeddings: Tensor | np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                         logit_scale: float = DEFAULT_LOGIT_SCALE) -> "Classifier":
        """The nearest-class-mean classifier of labelled embeddings (N, E): per class, the mean of its normalised
        embeddings, renormalised. Every class needs at least one embedding."""
        x = F.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32), dim=-1)
        labels = np.asarray(labels)
        counts = np.bincount(labels, minlength=len(class_names))
        if len(counts) != len(class_names) or (counts == 0).any():
            empty = [class_names[c] for c in np.flatnonzero(counts == 0)] if len(counts) == len(class_names) else []
            raise ValueError(f"class-mean classifier needs every one of {len(class_names)} classes among the "
                             f"labels 0..{len(class_names) - 1}; got labels up to {labels.max()}, no images of "
                             f"{empty or 'the extra labels'}")
        means = torch.stack([x[torch.as_tensor(labels == c)].mean(dim=0) for c in range(len(class_names))])
        k = int(counts.min()) if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"
        return cls(weights=F.normalize(means, dim=-1), class_names=tuple(class_names), logit_scale=logit_scale,
                   kind=f"class-mean, k={k}")

    @classmethod
    def from_texts(cls, encode_text: Callable[[list[str]], Tensor], class_names: Sequence[str],
                   templates: Sequence[str], batch_size: int = 256,
                   logit_scale: float = DEFAULT_LOGIT_SCALE) -> "Classifier":
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
    def for_dataset(cls, model, dataset: str, prompts: str = "manifest", **kwargs) -> "Classifier":
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


def accuracy(units, classifier: Classifier, names: Sequence[str] | None = None) -> float:
    """Zero-shot accuracy on a unit set's own embedding (names=None) or on the sum of the named units."""
    features = units.embedding if names is None else unit_sum(units, names)
    return classifier.accuracy(features, units.labels)
