"""The uncertainty a verdict reads: accuracy intervals, interval-decided comparisons, trend p-values.

A criterion compares a number with a threshold. With its 95% interval the comparison has three outcomes:
the interval lies above ("holds"), below ("does not hold"), or straddles the threshold ("inconclusive").

- Accuracies are proportions of n test images: a single accuracy gets Wilson's interval
  (`scipy.stats.binomtest(...).proportion_ci`); a linear combination of accuracies (a difference of two
  methods, a mean over datasets) gets the normal interval of its binomial variance, the methods' errors
  taken as independent. Two methods scored on the same images are positively correlated, so this interval
  is wider than the paired one: it can call a comparison inconclusive that a paired test would decide, never
  the reverse.
- A depth trend is Spearman's rho with an exact permutation p-value (`scipy.stats.permutation_test` over
  the layer orderings).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm, permutation_test, rankdata

CONFIDENCE = 0.95
ALPHA = 0.05  # a trend counts when its permutation p-value is below this
Z = float(norm.ppf(0.5 + CONFIDENCE / 2))
OUTCOMES = ("holds", "does not hold", "inconclusive")


def wilson(accuracy: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy measured on n images."""
    ci = binomtest(int(round(accuracy * n)), int(n)).proportion_ci(CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def combination(wide: pd.DataFrame, n: pd.Series, weights: Mapping[str, float]) -> tuple[float, float, float]:
    """(value, low, high): the mean over datasets (rows) of sum_m weights[m] * accuracy[m], with its 95% interval.

    wide: datasets x methods accuracies; n: test images per dataset (same index).
    """
    value = sum(w * wide[m] for m, w in weights.items())
    variance = sum(w ** 2 * wide[m] * (1 - wide[m]) / n for m, w in weights.items())
    mean = float(value.mean())
    half = Z * float(np.sqrt(variance.sum())) / len(wide)
    return mean, mean - half, mean + half


def compare(low: float, high: float, threshold: float) -> str:
    """'holds' when the interval lies at or above the threshold, 'does not hold' below it, else 'inconclusive'."""
    if low >= threshold:
        return "holds"
    if high < threshold:
        return "does not hold"
    return "inconclusive"


def all_of(outcomes: list[str]) -> str:
    """Every part must hold: one failing part fails the claim; otherwise any undecided part leaves it undecided."""
    if "does not hold" in outcomes:
        return "does not hold"
    return "inconclusive" if "inconclusive" in outcomes else "holds"


def any_of(outcomes: list[str]) -> str:
    """Some part must hold: one holding part decides it; otherwise any undecided part leaves it undecided."""
    if "holds" in outcomes:
        return "holds"
    return "inconclusive" if "inconclusive" in outcomes else "does not hold"


def _pearson(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))


def trend(x, y, seed: int = 0) -> tuple[float, float]:
    """(Spearman rho, two-sided permutation p-value) of y against x: exact up to 8 layers (40,320 orderings),
    else 49,999 random orderings. Spearman's rho is Pearson's r of the ranks (ties averaged)."""
    rx, ry = rankdata(np.asarray(x, dtype=float)), rankdata(np.asarray(y, dtype=float))
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0, 1.0
    test = permutation_test((rx, ry), _pearson, permutation_type="pairings", vectorized=True,
                            n_resamples=49_999, alternative="two-sided", random_state=seed)
    return float(test.statistic), float(test.pvalue)


def trend_outcome(rho: float, p: float, sign: int, threshold: float) -> str:
    """A trend in direction `sign` holds when sign*rho > threshold with p < ALPHA, fails when sign*rho <= 0 (no
    trend that way), and is inconclusive in between (a weak or not significant trend)."""
    if sign * rho > threshold and p < ALPHA:
        return "holds"
    return "does not hold" if sign * rho <= 0 else "inconclusive"


def interval_text(value: float, low: float, high: float) -> str:
    """'0.123 [0.100, 0.146]'."""
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"
