"""A reward model as a TRL reward function (issue 17): called as GRPO/RLOO call it, with keyword
`prompts` and `completions` in TRL's standard and conversational formats, plus dataset columns."""

from __future__ import annotations

import json

import pytest

from prefcurate.rm.score import RewardScorer
from prefcurate.rm.trl_reward import reward_function


def test_standard_format_scores_as_the_scorer_does(reward_model_dir):
    reward = reward_function(reward_model_dir, precision="fp32")
    prompts = ["Name a colour.", "What is 2 + 2?"]
    completions = ["Blue.", "It is four, because two and two make four."]
    rewards = reward(prompts=prompts, completions=completions, ground_truth=["x", "y"])  # extra columns: ignored
    assert rewards == pytest.approx(RewardScorer(reward_model_dir).score(prompts, completions), abs=1e-5)
    assert all(isinstance(value, float) for value in rewards)


def test_conversational_format_scores_the_whole_conversation(reward_model_dir):
    reward = reward_function(reward_model_dir, precision="fp32")
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    rewards = reward(prompts=[conversation], completions=[[{"role": "assistant", "content": "Blue."}]])
    expected = RewardScorer(reward_model_dir).score(["Name a colour."], ["Blue."], prompt_messages=[json.dumps(conversation)])
    assert rewards == pytest.approx(expected, abs=1e-5)
    plain = RewardScorer(reward_model_dir).score(["Name a colour."], ["Blue."])
    assert rewards != pytest.approx(plain, abs=1e-6)  # the system turn was read, not dropped


def test_mismatched_lengths_and_unknown_combine_are_refused(reward_model_dir):
    with pytest.raises(ValueError, match="combine must be"):
        reward_function(reward_model_dir, combine="max")
    reward = reward_function(reward_model_dir, precision="fp32")
    with pytest.raises(ValueError, match="2 prompts for 1 completions"):
        reward(prompts=["a", "b"], completions=["c"])
