"""Reward-model metrics on constructed scores with known answers."""

import math

import pytest

from prefcurate.rm import metrics as m


def test_accuracy_by_difficulty_buckets_and_alarms():
    margins = [1, 1, -1, 1, -1, -1, 1, 1]
    strength = [0.9, 0.95, 0.85, 0.7, 0.7, 0.55, 0.6, None]
    result = m.accuracy_by_difficulty(margins, strength)
    assert result["buckets"]["easy"] == {"pairs": 3, "accuracy": 2 / 3}
    assert result["buckets"]["medium"] == {"pairs": 2, "accuracy": 0.5}
    assert result["buckets"]["hard"] == {"pairs": 2, "accuracy": 0.5}
    assert result["buckets"]["unknown"] == {"pairs": 1, "accuracy": 1.0}
    assert len(result["alarms"]) == 2 and "easy pairs at 67%" in result["alarms"][0]


def test_calibration_error_is_zero_when_confidence_matches_the_hit_rate():
    p = 0.8
    logit = math.log(p / (1 - p))
    calibrated = [logit] * 8 + [-logit] * 2  # 80% sure every time, right 80% of the time
    assert m.expected_calibration_error(calibrated)["ece"] == pytest.approx(0.0, abs=1e-9)
    overconfident = [10.0] * 6 + [-10.0] * 4  # ~100% sure, right 60% of the time
    assert m.expected_calibration_error(overconfident)["ece"] == pytest.approx(0.4, abs=1e-3)


def test_within_prompt_spread_separates_a_flat_teacher_from_a_useful_one():
    flat = m.within_prompt_reward_spread({"p1": [1.0, 1.0, 1.0], "p2": [5.0, 5.0, 5.0]})
    assert flat["mean_within_prompt_std"] == 0.0 and flat["overall_std"] == pytest.approx(2.0)
    assert flat["within_share"] is None  # no spread at all: a useless teacher
    useful = m.within_prompt_reward_spread({"p1": [0.0, 2.0], "p2": [4.0, 6.0]})
    assert useful["mean_within_prompt_std"] == pytest.approx(1.0)
    assert useful["mean_within_prompt_variance"] == pytest.approx(1.0)


def test_length_bias_and_ensemble_disagreement():
    # rewards proportional to length: a pure length hacker
    bias = m.length_bias(chosen_rewards=[1.0, 0.1, 0.5], rejected_rewards=[0.1, 1.0, 0.5],
                         chosen_lengths=[100, 10, 50], rejected_lengths=[10, 100, 50])
    assert bias["rm_longer_win_rate"] == 1.0  # both pairs of unequal length: the RM preferred the longer
    assert bias["label_longer_win_rate"] == 0.5
    assert bias["reward_length_correlation"] == pytest.approx(1.0)
    members = [[1.0, -1.0, 2.0], [1.0, 1.0, 2.0]]
    disagreement = m.ensemble_disagreement(members)
    assert disagreement["split_decisions"] == pytest.approx(1 / 3)
    assert disagreement["mean_margin_std"] == pytest.approx(1 / 3)
    assert m.ensemble_disagreement([[1.0]]) is None
