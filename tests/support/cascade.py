"""A judge cascade scenario with a known answer: pairs whose right response is marked, gold built
here, a cheap judge that is right (and sure) only when the right response is much longer, and
judge rules for a strong judge. Shared by tests/test_cascade.py and the Argilla test of its human level."""

from __future__ import annotations

import pyarrow as pa

from prefcurate.core.hashing import content_hash
from tests.support.builders import add_candidates, add_pair, add_prompt
from tests.support.judging import judge_config

MARK = "CORRECT"


def marked_wins(response_a: str, response_b: str) -> str:
    return "A" if MARK in response_a else "B"


def longer_wins(response_a: str, response_b: str) -> str:
    return "A" if len(response_a) > len(response_b) else "B"


def sure_when_far_apart(response_a: str, response_b: str) -> float:
    return 0.97 if abs(len(response_a) - len(response_b)) >= 30 else 0.6


def build_pairs(store, n_gold: int = 60, n_open: int = 30) -> dict:
    """Half the pairs have the marked (right) response much longer: the cheap judge gets them right and
    is sure; in the other half it is slightly shorter: the cheap judge is wrong and unsure."""
    pairs, references = {}, []
    for index in range(n_gold + n_open):
        easy = index % 2 == 0
        prompt = add_prompt(store, f"Cascade question {index}: which answer is right?")
        right = f"{MARK} answer {index}" + (" with a long and careful explanation of why" if easy else "")
        wrong = f"Wrong answer number {index}" + ("" if easy else " xx")
        first, second = add_candidates(store, prompt, [right, wrong])
        pair_id, stored_a, _ = add_pair(store, prompt, first, second)
        label = "a" if stored_a == first else "b"
        pairs[pair_id] = {"easy": easy, "label": label, "gold": index < n_gold}
        if index < n_gold:
            references.append({"reference_label_id": content_hash("ref", pair_id), "pair_id": pair_id, "winner": label,
                               "dataset": "built-gold", "dataset_format": "plain"})
    store.insert_new("reference_labels", pa.Table.from_pylist(references))
    return pairs


def cascade_config(cheap, strong, **cascade):
    return judge_config(cheap, strong, members=[
        {"server": 0, "name": "cheap", "output_format": "json_schema"},
        {"server": 1, "name": "strong", "output_format": "json_schema"}],
        max_imported_pairs=None,
        cascade={"levels": ["cheap", "strong"], "target_agreement": 0.9, "confidence": 0.95, "min_gold": 20,
                 **cascade})
