"""Hand-built store contents for tests: prompts, candidates, pairs and judge calls, and a whole judged store."""

from __future__ import annotations

import json
import math

import pyarrow as pa

from prefcurate.core.hashing import content_hash, prompt_id
from prefcurate.core.store import Store
from prefcurate.curation import orientation
from prefcurate.curation.generation.pairing import pair_id


def add_prompt(store, text: str) -> str:
    key = prompt_id(text)
    store.insert_new("prompts", pa.Table.from_pylist([{"prompt_id": key, "text": text, "source": "test"}]))
    return key


def add_candidates(store, prompt_key: str, texts: list[str]) -> list[str]:
    rows = [{"candidate_id": content_hash("cand", prompt_key, i), "prompt_id": prompt_key, "generator_key": "g",
             "generator": "test", "sample_index": i, "text": text} for i, text in enumerate(texts)]
    store.insert_new("candidates", pa.Table.from_pylist(rows))
    return [row["candidate_id"] for row in rows]


def add_pair(store, prompt_key: str, first: str, second: str) -> tuple[str, str, str]:
    """Returns (pair_id, candidate_a, candidate_b) in the stored orientation."""
    a, b = sorted((first, second))
    key = pair_id(a, b)
    store.insert_new("pairs", pa.Table.from_pylist([{"pair_id": key, "prompt_id": prompt_key, "candidate_a": a,
                                                     "candidate_b": b, "strategy": "test"}]))
    return key, a, b


def add_call(store, pair_key: str, order: str, verdict_shown: str | None, *, judge: str = "j",
             principle: str = "p", p_first: float | None = None) -> None:
    """One judge call. verdict_shown None stores an invalid call. p_first: P(A) as shown, with P(B)=1-P(A)."""
    valid = verdict_shown is not None
    first_logit = None if p_first is None else math.log(p_first) - math.log(1 - p_first)
    row = {
        "judgment_id": content_hash("call", pair_key, order, judge, principle), "pair_id": pair_key, "judge": judge,
        "principle_id": principle, "shown_order": order, "template_version": "t", "constitution_version": "c",
        "raw_response": verdict_shown or "???", "verdict_shown": verdict_shown,
        "winner": orientation.to_pair(verdict_shown, order),
        "confidence": None if p_first is None or not valid else (p_first if verdict_shown == "A" else 1 - p_first),
        "confidence_source": "logprobs" if p_first is not None else "none",
        "verdict_probs": None if p_first is None else json.dumps({"A": p_first, "B": 1 - p_first, "tie": 0.0}),
        "preference_logit": orientation.to_pair_logit(first_logit, order), "valid": valid, "invalid_reason": None if valid else "unparseable: test",
    }
    store.insert_new("judgments", pa.Table.from_pylist([row]))


def judged_store(path, n: int) -> None:
    """A store at path with n prompts of one pair each, both orders judged for the same response
    (with logprobs, P=0.9): curation keeps every pair."""
    with Store(path) as store:
        for index in range(n):
            prompt = add_prompt(store, f"Judged question {index}: what makes the number {index} special?")
            first, second = add_candidates(store, prompt, [f"{index} is special because it follows {index - 1}.",
                                                           f"Nothing about {index}."])
            key, _, _ = add_pair(store, prompt, first, second)
            add_call(store, key, "ab", "A", p_first=0.9)
            add_call(store, key, "ba", "B", p_first=0.1)
