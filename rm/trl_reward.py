"""A reward model as a TRL reward function: `reward_funcs=[reward_function(checkpoint)]` in GRPO or
RLOO.

TRL calls a reward function with keyword arguments `prompts` and `completions` (plus the dataset's
other columns, which this one ignores) and takes one float per completion. Both of TRL's data
formats are understood: standard (`prompts` and `completions` are strings) and conversational
(`prompts` are lists of messages, `completions` lists holding the assistant's message). An
ensemble checkpoint gives the mean of its members (or their min: `combine="min"`, a pessimistic
reward that is harder to hack).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from prefcurate.rm.score import RewardScorer


def _as_pair(prompt, completion) -> tuple[str, str, str | None]:
    """(prompt text, response text, the prompt's messages as JSON or None) for one item."""
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        response = "".join(str(message.get("content", "")) for message in completion
                           if message.get("role", "assistant") == "assistant")
    else:
        response = str(completion)
    if isinstance(prompt, list):
        users = [message for message in prompt if message.get("role") == "user"]
        text = str(users[-1]["content"]) if users else ""
        return text, response, json.dumps(prompt)
    return str(prompt), response, None


def reward_function(checkpoint: str | Path, device: str = "cpu", max_length: int = 1024, batch_size: int = 16,
                    precision: str = "auto", combine: str = "mean") -> Callable[..., list[float]]:
    """A TRL reward function scoring with the checkpoint (one model or an ensemble)."""
    if combine not in ("mean", "min"):
        raise ValueError(f"combine must be 'mean' or 'min', got {combine!r}")
    scorer = RewardScorer(checkpoint, device, max_length, precision)

    def prefcurate_reward(prompts: list, completions: list, **_columns) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        pairs = [_as_pair(prompt, completion) for prompt, completion in zip(prompts, completions)]
        members = scorer.score_members([p for p, _, _ in pairs], [r for _, r, _ in pairs], batch_size,
                                       [m for _, _, m in pairs])
        pick = min if combine == "min" else (lambda values: sum(values) / len(values))
        return [float(pick(values)) for values in zip(*members)]

    return prefcurate_reward
