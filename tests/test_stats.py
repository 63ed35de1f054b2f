"""Bootstrap intervals against a reference written out plainly, and against the normal approximation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from prefcurate.rm.stats import bootstrap_mean, paired_difference, resample_indices


def reference_percentile_interval(values: list[float], draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The textbook percentile bootstrap, one loop per resample, sorted by hand."""
    means = sorted(sum(values[i] for i in row) / len(values) for row in draws.tolist())
    def quantile(q):  # linear interpolation between order statistics, as numpy's default
        position = q * (len(means) - 1)
        low, high = math.floor(position), math.ceil(position)
        return means[low] + (means[high] - means[low]) * (position - low)
    tail = (1 - confidence) / 2
    return quantile(tail), quantile(1 - tail)


def test_the_interval_matches_the_plain_reference_and_the_normal_approximation():
    rng = random.Random(4)
    correct = [1.0 if rng.random() < 0.62 else 0.0 for _ in range(400)]
    interval = bootstrap_mean(correct, resamples=3000, seed=7)
    low, high = reference_percentile_interval(correct, resample_indices(400, 3000, 7), 0.95)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    p = sum(correct) / 400
    half_width = 1.96 * math.sqrt(p * (1 - p) / 400)  # Wald, for a check of scale
    assert interval.estimate == pytest.approx(p)
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.12)


def test_paired_differences_average_seeds_per_item_and_are_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    hard = rng.random(300) < 0.4  # items both models find hard: shared, so the pairing cancels it
    first = np.stack([(~hard) | (rng.random(300) < 0.3) for _ in range(3)], axis=1).astype(float)
    second = np.stack([(~hard) & (rng.random(300) < 0.9) for _ in range(3)], axis=1).astype(float)
    difference = paired_difference(first, second, seed=1)
    assert difference.estimate == pytest.approx(first.mean() - second.mean())
    separate = bootstrap_mean(first, seed=1), bootstrap_mean(second, seed=1)
    assert difference.high - difference.low < (separate[0].high - separate[0].low) + (separate[1].high - separate[1].low)
    assert difference.low > 0  # the first model is better and the interval says so
    with pytest.raises(ValueError, match="same items"):
        paired_difference(first[:10], second)
