"""Held-out measurement: the pair sets a round's gate reads, and the figures of a reward model on
them. The fixed held-out set is the first model's test split (frozen when the loop starts); the
on-policy set is this round's held-out prompts' pairs, labelled as curation labels them; the
round's policy responses give the within-prompt reward variance and the reward-length correlation."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefcurate.core.config import PrefcurateConfig
from prefcurate.core.local_models import pick_device
from prefcurate.core.store import Store
from prefcurate.curation.labels import labelled_pairs
from prefcurate.rm import metrics as m

if TYPE_CHECKING:
    from prefcurate.rm.score import RewardScorer


@dataclass(frozen=True)
class HeldOutSets:
    fixed: list[dict]  # {prompt, prompt_messages, chosen, rejected}
    on_policy: list[dict]  # the same, for this round's held-out pairs with a decided label
    responses: list[dict]  # {prompt_id, prompt, prompt_messages, text}: the round's policy responses


def load_heldout_sets(store: Store, config: PrefcurateConfig, round_index: int) -> HeldOutSets:
    fixed = store.con.sql("""
        SELECT t.prompt, t.prompt_messages,
               CASE f.chosen_candidate WHEN t.candidate_a THEN t.text_a ELSE t.text_b END AS chosen,
               CASE f.chosen_candidate WHEN t.candidate_a THEN t.text_b ELSE t.text_a END AS rejected
        FROM refresh_fixed_heldout AS f
        JOIN pair_texts AS t ON t.pair_id = f.pair_id
        ORDER BY f.pair_id""").to_arrow_table().to_pylist()
    on_policy = store.con.sql(f"""
        SELECT t.prompt, t.prompt_messages,
               CASE l.label WHEN 'a' THEN t.text_a ELSE t.text_b END AS chosen,
               CASE l.label WHEN 'a' THEN t.text_b ELSE t.text_a END AS rejected
        FROM ({labelled_pairs(config.curate)}) AS l
        JOIN round_pairs AS rp ON rp.pair_id = l.pair_id AND rp.round_index = $round AND rp.heldout
        JOIN pair_texts AS t ON t.pair_id = l.pair_id
        WHERE l.label IN ('a', 'b')
        ORDER BY l.pair_id""", params={"round": round_index}).to_arrow_table().to_pylist()
    responses = store.con.sql("""
        SELECT rc.prompt_id, t.prompt, t.prompt_messages, t.text
        FROM round_candidates AS rc
        JOIN candidate_texts AS t ON t.candidate_id = rc.candidate_id
        WHERE rc.round_index = $round ORDER BY rc.candidate_id""", params={"round": round_index}
    ).to_arrow_table().to_pylist()
    return HeldOutSets(fixed, on_policy, responses)


def open_scorer(checkpoint: str, config: PrefcurateConfig) -> RewardScorer:
    from prefcurate.rm.score import RewardScorer  # torch: imported when a model is measured, not with the flows

    return RewardScorer(checkpoint, pick_device(config.train.device), config.train.max_length, config.evaluate.precision,
                        config.evaluate.compile)


def measure(checkpoint: str, config: PrefcurateConfig, sets: HeldOutSets) -> dict:
    """A reward model's figures for the gate: per-pair results and accuracy on both held-out sets,
    and how it rewards the round's policy responses: the within-prompt spread, also relative to its
    reward spread on the fixed held-out responses (`normalized_spread`: rescaling rewards cannot
    move it). The model is loaded here and let go on return."""
    scorer = open_scorer(checkpoint, config)
    batch = config.evaluate.batch_size
    fixed = pair_accuracy(scorer, sets.fixed, batch)
    on_policy = pair_accuracy(scorer, sets.on_policy, batch)
    policy = policy_reward_figures(scorer, sets.responses, batch)
    spread, scale = policy.get("mean_within_prompt_std"), fixed.get("reward_std")
    return {"fixed_accuracy": fixed["accuracy"], "fixed_pairs": fixed["pairs"], "fixed_correct": fixed["correct"],
            "on_policy_accuracy": on_policy["accuracy"], "on_policy_pairs": on_policy["pairs"],
            "on_policy_correct": on_policy["correct"], "fixed_reward_std": scale,
            "normalized_spread": spread / scale if spread is not None and scale else None, **policy}


def _mean(per_member: list[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*per_member)]


def pair_accuracy(scorer: RewardScorer, pairs: list[dict], batch_size: int) -> dict:
    """pairs: {prompt, prompt_messages, chosen, rejected}. Accuracy = share ranked chosen > rejected."""
    if not pairs:
        return {"accuracy": None, "pairs": 0, "correct": [], "reward_std": None}
    prompts = [p["prompt"] for p in pairs]
    messages = [p.get("prompt_messages") for p in pairs]
    chosen = _mean(scorer.score_members(prompts, [p["chosen"] for p in pairs], batch_size, messages, "held-out chosen"))
    rejected = _mean(scorer.score_members(prompts, [p["rejected"] for p in pairs], batch_size, messages,
                                          "held-out rejected"))
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": m.accuracy(margins), "pairs": len(margins), "mean_margin": statistics.fmean(margins),
            "correct": [1.0 if margin > 0 else 0.0 for margin in margins],
            "reward_std": statistics.pstdev(chosen + rejected)}


def policy_reward_figures(scorer: RewardScorer, responses: list[dict], batch_size: int) -> dict:
    """responses: {prompt_id, prompt, prompt_messages, text}. Within-prompt reward variance (a teacher
    with none gives the policy no signal) and the reward-length correlation."""
    if not responses:
        return {"reward_variance": None, "mean_within_prompt_std": None, "reward_length_correlation": None}
    rewards = _mean(scorer.score_members([r["prompt"] for r in responses], [r["text"] for r in responses], batch_size,
                                         [r.get("prompt_messages") for r in responses], "on-policy responses"))
    by_prompt: dict[str, list[float]] = {}
    for response, reward in zip(responses, rewards):
        by_prompt.setdefault(response["prompt_id"], []).append(reward)
    spread = m.within_prompt_reward_spread(by_prompt)
    return {"reward_variance": spread["mean_within_prompt_variance"], "mean_within_prompt_std": spread["mean_within_prompt_std"],
            "reward_length_correlation": m.pearson(rewards, [float(len(r["text"])) for r in responses])}
