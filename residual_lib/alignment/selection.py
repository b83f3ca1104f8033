"""Coarse unit alignment (Section 4.1, Table 1): score heads, keep the top ones, zero-ablate the rest.

Scores (one per head, higher is better):

- ``U``: the mean over samples of the Pearson correlation between the head's output-space vector and the
  model's output vector for the same sample (correlation across the E coordinates);
- ``U|T``: the same after projecting both vectors onto the span of the task's class embeddings (the
  orthogonal projector, so the score does not depend on a choice of basis for the span);
- ``S``: the head's own zero-shot accuracy (the head alone, every other unit ablated).

Two readings of the correlation scores (``head_score``):

- ``"per_sample"`` (the paper's text, above): correlation across the E coordinates, one per sample,
  averaged over samples.
- ``"per_direction"`` (the authors' code, ``score_unit_correlation`` as called by their experiment 3):
  an orthonormal basis is taken by QR decomposition of the model outputs (N, E) for ``U``, or of the
  class embeddings (C, E) for ``U|T``; along each basis direction, the head's projections over the N
  samples are correlated (Pearson) with the projections of the *sum of all heads* (the quantity their
  code correlates against); the score is the mean over directions. The QR basis depends on the order
  of the rows (Gram-Schmidt order), so it is not invariant to a change of basis of the span.

Controls: ``R`` random heads (mean and spread over seeds, and ``R0`` the first seed alone: the authors'
Table 1 shows seed 0), ``H`` all heads, ``B`` the model itself.

How many heads a fraction keeps (``head_count``) and how random heads are drawn (``random_rule``) also have
the authors' readings: ``int(fraction * n)`` with at least 1 (at least 2 for 1%), and the top k of one
``torch.randn(n)`` draw per seed (``experiments/experiment3.py``).
``O`` (one trained weight per head) uses `residual.HeadWeights` and the shared training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .classifier import Classifier, unit_sum

SCORES = ("U", "U|T", "S")
HEAD_SCORES = ("per_sample", "per_direction")
HEAD_COUNTS = ("round", "authors")
RANDOM_RULES = ("choice", "randn_topk")
SWEEP_FRACTIONS = (0.0, 0.01, 0.05, 0.10, 0.25, 0.50)  # 0.0 stands for "one head"


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) Pearson correlation of each row of a with the same row of b; 0 where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), denom, out=np.zeros(len(a)), where=denom > 0)


def span_projector(classifier: Classifier) -> np.ndarray:
    """(E, E) orthogonal projector onto the span of the class embeddings."""
    weights = classifier.weights.detach().cpu().numpy().astype(np.float64)
    u, s, _ = np.linalg.svd(weights.T, full_matrices=False)
    basis = u[:, s > s.max() * 1e-8]
    return basis @ basis.T


def correlation_scores(units, projector: np.ndarray | None = None) -> pd.Series:
    """Per head: mean over samples of corr(head vector, output vector), optionally inside a projector's range."""
    output = np.asarray(units.embedding, dtype=np.float64)
    if projector is not None:
        output = output @ projector
    scores = {}
    for head in units.heads:
        rep = units.output_space(head).astype(np.float64)
        scores[head] = float(_row_pearson(rep if projector is None else rep @ projector, output).mean())
    return pd.Series(scores, name="score")


def _column_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,) Pearson correlation of each column of a with the same column of b; 0 where a column is constant."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return np.divide((a * b).sum(axis=0), denom, out=np.zeros(a.shape[1]), where=denom > 0)


def qr_basis(rows: np.ndarray) -> np.ndarray:
    """(E, K) orthonormal columns from the QR decomposition of rows.T ((M, E) -> K = min(M, E)), in row order."""
    return np.linalg.qr(np.asarray(rows, dtype=np.float64).T, mode="reduced")[0]


def direction_scores(units, basis: np.ndarray) -> pd.Series:
    """Per head: mean over the basis directions (E, K) of corr over samples(head . q, sum of heads . q)."""
    target = unit_sum(units, units.heads).astype(np.float64) @ basis
    scores = {h: float(_column_pearson(units.output_space(h).astype(np.float64) @ basis, target).mean())
              for h in units.heads}
    return pd.Series(scores, name="score")


def supervised_scores(units, classifier: Classifier) -> pd.Series:
    """Per head: zero-shot accuracy of the head alone on (validation) units."""
    return pd.Series({h: classifier.accuracy(units.output_space(h), units.labels) for h in units.heads}, name="score")


def head_scores(units, classifier: Classifier, score: str, head_score: str = "per_sample") -> pd.Series:
    """Per-head scores by one rule of SCORES (U, U|T, S); head_score picks the reading of U and U|T."""
    if head_score not in HEAD_SCORES:
        raise ValueError(f"unknown head_score {head_score!r}; valid: {', '.join(HEAD_SCORES)}")
    if score == "U":
        if head_score == "per_direction":
            return direction_scores(units, qr_basis(units.embedding))
        return correlation_scores(units)
    if score == "U|T":
        if head_score == "per_direction":
            return direction_scores(units, qr_basis(classifier.weights.detach().cpu().numpy()))
        return correlation_scores(units, span_projector(classifier))
    if score == "S":
        return supervised_scores(units, classifier)
    raise ValueError(f"unknown head score {score!r}; valid: {', '.join(SCORES)}")


def n_kept(n_heads: int, fraction: float, head_count: str = "round") -> int:
    """Number of heads a fraction keeps (fraction 0 means one head).

    head_count "round": round(fraction * n_heads), at least one; "authors": int(fraction * n_heads), at least
    one, and at least two for the 1% row.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction of heads must be in [0, 1]; got {fraction}")
    if head_count not in HEAD_COUNTS:
        raise ValueError(f"unknown head_count {head_count!r}; valid: {', '.join(HEAD_COUNTS)}")
    if head_count == "authors":
        return 1 if fraction == 0 else max(2 if fraction == 0.01 else 1, int(fraction * n_heads))
    return max(1, int(round(fraction * n_heads)))


def top_heads(scores: pd.Series, k: int) -> list[str]:
    """The k best-scoring heads; ties broken by unit order (stable)."""
    order = np.argsort(-scores.to_numpy(), kind="stable")
    return [scores.index[i] for i in order[:k]]


def random_heads(heads: Sequence[str], k: int, seed: int, random_rule: str = "choice") -> list[str]:
    """k heads drawn without replacement under a seed (in unit order).

    random_rule "choice": numpy's choice without replacement; "randn_topk": the k largest of
    torch.randn(len(heads)) under torch.Generator().manual_seed(seed), as the authors' code.
    """
    if random_rule not in RANDOM_RULES:
        raise ValueError(f"unknown random_rule {random_rule!r}; valid: {', '.join(RANDOM_RULES)}")
    if random_rule == "randn_topk":
        import torch

        draw = torch.randn(len(heads), generator=torch.Generator().manual_seed(seed))
        return [heads[i] for i in sorted(draw.topk(k).indices.tolist())]
    rng = np.random.default_rng(seed)
    return [heads[i] for i in sorted(rng.choice(len(heads), size=k, replace=False))]


def kept_accuracy(units, classifier: Classifier, kept: Sequence[str]) -> float:
    """Zero-shot accuracy of the sum of the kept units, every other unit zero-ablated (Eq. 5)."""
    return classifier.accuracy(unit_sum(units, list(kept)), units.labels)


def coarse_selection(score_units, test_units, classifier: Classifier, fraction: float = 0.05,
                     n_random: int = 10, scores: dict[str, pd.Series] | None = None,
                     head_score: str = "per_sample", head_count: str = "round",
                     random_rule: str = "choice") -> dict[str, float]:
    """Test accuracies of U, U|T, S (top heads scored on `score_units`), R (mean, `R_std`, seed 0 `R0`), H and B."""
    scores = scores or {s: head_scores(score_units, classifier, s, head_score) for s in SCORES}
    heads = test_units.heads
    k = n_kept(len(heads), fraction, head_count)
    result = {s: kept_accuracy(test_units, classifier, top_heads(scores[s], k)) for s in SCORES}
    random = [kept_accuracy(test_units, classifier, random_heads(heads, k, seed, random_rule))
              for seed in range(n_random)]
    result.update(R=float(np.mean(random)), R_std=float(np.std(random)), R0=random[0], k=k,
                  H=kept_accuracy(test_units, classifier, heads),
                  B=classifier.accuracy(test_units.embedding, test_units.labels))
    return result


def fraction_sweep(score_units, test_units, classifier: Classifier,
                   fractions: Sequence[float] = SWEEP_FRACTIONS, n_random: int = 10,
                   scores: dict[str, pd.Series] | None = None, head_score: str = "per_sample",
                   head_count: str = "round", random_rule: str = "choice") -> pd.DataFrame:
    """Long table (fraction, k, rule, accuracy) of test accuracy against the number of top heads kept."""
    scores = scores or {s: head_scores(score_units, classifier, s, head_score) for s in SCORES}
    heads = test_units.heads
    rows = []
    for fraction in fractions:
        k = n_kept(len(heads), fraction, head_count)
        for rule in SCORES:
            rows.append({"fraction": fraction, "k": k, "rule": rule,
                         "accuracy": kept_accuracy(test_units, classifier, top_heads(scores[rule], k))})
        for seed in range(n_random):
            rows.append({"fraction": fraction, "k": k, "rule": "R", "seed": seed,
                         "accuracy": kept_accuracy(test_units, classifier, random_heads(heads, k, seed, random_rule))})
    return pd.DataFrame(rows)
