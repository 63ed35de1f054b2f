"""Confidence intervals for reward-model figures: percentile bootstrap over held-out pairs.

Accuracy on a few hundred pairs moves by several points between samples of them, so every figure
that compares models (the curation benchmark's arms, the refresh gate, evaluation reports) comes
with an interval. Comparisons are paired: both models are scored on the same resampled pairs, so
the interval is of the difference itself, much narrower than two separate intervals suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}estimate" if prefix else "estimate": self.estimate, f"{prefix}ci_low": self.low,
                f"{prefix}ci_high": self.high, f"{prefix}n": self.n}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_mean(values, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """The mean of per-item values (e.g. 1/0 for a pair ranked right) with a percentile interval.
    Items may be rows of a (items, seeds) array: each item's seeds average first, so the interval
    is over items (the held-out pairs), as the spread a new sample of them would show."""
    values = np.asarray(values, dtype=float)
    per_item = values.mean(axis=1) if values.ndim == 2 else values
    if len(per_item) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    means = per_item[resample_indices(len(per_item), resamples, seed)].mean(axis=1)
    tail = (1 - confidence) / 2
    return Interval(float(per_item.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)),
                    len(per_item))


def paired_difference(first, second, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> Interval:
    """mean(first) - mean(second) over the same items (rows), resampled together."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"paired figures need the same items: {first.shape[0]} vs {second.shape[0]}")
    first = first.mean(axis=1) if first.ndim == 2 else first
    second = second.mean(axis=1) if second.ndim == 2 else second
    return bootstrap_mean(first - second, resamples, confidence, seed)
