"""Reward-model figures on explicit pair sets (the refresh loop's fixed and on-policy held-out
pairs) and on a round's policy responses."""

from __future__ import annotations

import statistics

from prefcurate.rm import metrics as m
from prefcurate.rm.score import RewardScorer


def _mean(per_member: list[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*per_member)]


def pair_accuracy(scorer: RewardScorer, pairs: list[dict], batch_size: int) -> dict:
    """pairs: {prompt, prompt_messages, chosen, rejected}. Accuracy = share ranked chosen > rejected."""
    if not pairs:
        return {"accuracy": None, "pairs": 0}
    prompts = [p["prompt"] for p in pairs]
    messages = [p.get("prompt_messages") for p in pairs]
    chosen = _mean(scorer.score_members(prompts, [p["chosen"] for p in pairs], batch_size, messages, "held-out chosen"))
    rejected = _mean(scorer.score_members(prompts, [p["rejected"] for p in pairs], batch_size, messages,
                                          "held-out rejected"))
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": m.accuracy(margins), "pairs": len(margins), "mean_margin": statistics.fmean(margins)}


def policy_reward_figures(scorer: RewardScorer, responses: list[dict], batch_size: int) -> dict:
    """responses: {prompt_id, prompt, prompt_messages, text}. Within-prompt reward variance (a teacher
    with none gives the policy no signal) and the reward-length correlation."""
    if not responses:
        return {"reward_variance": None, "reward_length_correlation": None}
    rewards = _mean(scorer.score_members([r["prompt"] for r in responses], [r["text"] for r in responses], batch_size,
                                         [r.get("prompt_messages") for r in responses], "on-policy responses"))
    by_prompt: dict[str, list[float]] = {}
    for response, reward in zip(responses, rewards):
        by_prompt.setdefault(response["prompt_id"], []).append(reward)
    spread = m.within_prompt_reward_spread(by_prompt)
    return {"reward_variance": spread["mean_within_prompt_variance"],
            "reward_length_correlation": m.pearson(rewards, [float(len(r["text"])) for r in responses])}
