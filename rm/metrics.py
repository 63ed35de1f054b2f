"""Reward-model metrics on plain lists of numbers, so each is easy to check by hand.

A margin is r(chosen) - r(rejected); under Bradley-Terry, sigmoid(margin) is the model's
probability that the chosen response is preferred.
"""

from __future__ import annotations

import math
import statistics

DIFFICULTY_BUCKETS = (("hard", 0.0, 0.65), ("medium", 0.65, 0.8), ("easy", 0.8, 1.0001))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def accuracy(margins: list[float]) -> float | None:
    return sum(m > 0 for m in margins) / len(margins) if margins else None


def accuracy_by_difficulty(margins: list[float], label_strength: list[float | None]) -> dict:
    """Accuracy per bucket of how clear the label was (its confidence, or judge agreement).
    Easy pairs below 90% or hard pairs below 60% raise an alarm: the RM misses what is plain, or
    the hard labels are noise."""
    buckets = {}
    for name, low, high in DIFFICULTY_BUCKETS:
        picked = [m for m, s in zip(margins, label_strength) if s is not None and low <= s < high]
        buckets[name] = {"pairs": len(picked), "accuracy": accuracy(picked)}
    unknown = [m for m, s in zip(margins, label_strength) if s is None]
    if unknown:
        buckets["unknown"] = {"pairs": len(unknown), "accuracy": accuracy(unknown)}
    alarms = []
    if buckets["easy"]["pairs"] and buckets["easy"]["accuracy"] < 0.9:
        alarms.append(f"easy pairs at {buckets['easy']['accuracy']:.0%} accuracy (expected above 90%)")
    if buckets["hard"]["pairs"] and buckets["hard"]["accuracy"] < 0.6:
        alarms.append(f"hard pairs at {buckets['hard']['accuracy']:.0%} accuracy (below 60%)")
    return {"buckets": buckets, "alarms": alarms}


def expected_calibration_error(margins: list[float], bins: int = 10) -> dict:
    """ECE of sigmoid(margin) against the observed preference. Each pair counts in both orientations
    (p for chosen-vs-rejected, observed 1; 1 - p for the reverse, observed 0), so a model that is
    always 99% sure and right is calibrated only if it is right 99% of the time."""
    points = [(sigmoid(m), 1.0) for m in margins] + [(1 - sigmoid(m), 0.0) for m in margins]
    table, total = [], 0.0
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        inside = [(p, y) for p, y in points if low <= p < high or (index == bins - 1 and p == 1.0)]
        if not inside:
            continue
        confidence = statistics.fmean(p for p, _ in inside)
        observed = statistics.fmean(y for _, y in inside)
        table.append({"bin": [round(low, 2), round(high, 2)], "count": len(inside), "confidence": confidence,
                      "observed": observed})
        total += len(inside) / len(points) * abs(confidence - observed)
    return {"ece": total if points else None, "bins": table}


def within_prompt_reward_spread(rewards_by_prompt: dict[str, list[float]]) -> dict:
    """How much the RM separates candidates of the same prompt. An accurate RM with little spread is
    a poor teacher for RL (Razin et al. 2025): the policy gets almost no signal."""
    spreads = [statistics.pstdev(values) for values in rewards_by_prompt.values() if len(values) > 1]
    everything = [value for values in rewards_by_prompt.values() for value in values]
    overall = statistics.pstdev(everything) if len(everything) > 1 else None
    mean_std = statistics.fmean(spreads) if spreads else None
    return {"prompts": len(spreads), "mean_within_prompt_std": mean_std,
            "mean_within_prompt_variance": statistics.fmean(s * s for s in spreads) if spreads else None,
            "overall_std": overall,
            "within_share": None if not mean_std or not overall else mean_std / overall}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return None
    return statistics.correlation(xs, ys)


def length_bias(chosen_rewards: list[float], rejected_rewards: list[float], chosen_lengths: list[int],
                rejected_lengths: list[int]) -> dict:
    """Reward-length correlation over every scored response, and how often the RM prefers the longer
    response of a pair, next to how often the labels did."""
    rewards = chosen_rewards + rejected_rewards
    lengths = [float(n) for n in chosen_lengths + rejected_lengths]
    differ = [(c, r, lc, lr) for c, r, lc, lr in zip(chosen_rewards, rejected_rewards, chosen_lengths, rejected_lengths)
              if lc != lr]
    rm_longer = [(c > r) == (lc > lr) for c, r, lc, lr in differ]
    labels_longer = [lc > lr for _, _, lc, lr in differ]
    return {"reward_length_correlation": pearson(rewards, lengths),
            "rm_longer_win_rate": sum(rm_longer) / len(rm_longer) if rm_longer else None,
            "label_longer_win_rate": sum(labels_longer) / len(labels_longer) if labels_longer else None}


def ensemble_disagreement(member_margins: list[list[float]]) -> dict | None:
    """member_margins[k][i]: member k's margin on pair i. Mean std of margins across members, and the
    share of pairs the members do not all order the same way."""
    if len(member_margins) < 2:
        return None
    per_pair = list(zip(*member_margins))
    return {"members": len(member_margins),
            "mean_margin_std": statistics.fmean(statistics.pstdev(values) for values in per_pair),
            "split_decisions": sum(len({m > 0 for m in values}) > 1 for values in per_pair) / len(per_pair)}
