"""The judge cascade (issue 18, part 3), against two of the suite's servers: a cheap judge that is
right only when it is sure, a strong one that is right everywhere (or not), and gold built here, so
the right thresholds are known."""

from __future__ import annotations

import pyarrow as pa
import pytest

from prefcurate.core.config import AnnotationPushConfig, ArgillaConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.annotation.push import select_pairs
from prefcurate.curation.judging.cascade import agreement_lower_bound, fit_threshold
from tests.support.builders import add_candidates, add_pair, add_prompt
from tests.support.judging import judge_config, run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer, always_a

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


def asked_pairs(server, texts: dict) -> set[str]:
    return {pair for pair, (a, b) in texts.items()
            for body in server.requests if a in body["messages"][-1]["content"] and b in body["messages"][-1]["content"]}


def pair_texts(store) -> dict:
    return {row[0]: (row[1], row[2]) for row in store.con.execute("SELECT pair_id, text_a, text_b FROM pair_texts").fetchall()}


def test_the_lower_bound_is_clopper_pearson():
    assert agreement_lower_bound(30, 30, 0.95) == pytest.approx(0.05 ** (1 / 30), abs=1e-6)
    assert agreement_lower_bound(0, 10, 0.95) == 0.0
    assert 0.5 < agreement_lower_bound(45, 50, 0.95) < 0.9


def test_fixed_sequence_fitting_stops_at_the_first_threshold_that_fails():
    scored = [(0.99, True)] * 40 + [(0.8, False)] * 20 + [(0.7, True)] * 40
    fit = fit_threshold(scored, target=0.9, confidence=0.95, min_gold=10)
    assert fit.threshold == 0.99 and fit.gold_accepted == 40  # 0.8 fails; 0.7 (which would pass) is never tried


def test_the_strong_judge_sees_only_what_the_cheap_one_was_unsure_of(store):
    pairs = build_pairs(store)
    with OpenAICompatServer(Behaviour(judge_rule=longer_wins, judge_confidence_rule=sure_when_far_apart)) as cheap, \
            OpenAICompatServer(Behaviour(judge_rule=marked_wins, judge_confidence=0.95)) as strong:
        report = run_judge(store, cascade_config(cheap, strong))
        texts = pair_texts(store)
        asked_strong = asked_pairs(strong, texts)
    first, second = report.details["cascade"]["levels"]
    assert first["threshold"] > 0.95 and first["agreement"] == 1.0 and first["agreement_low"] >= 0.9
    assert first["pairs_accepted"] == 45  # every easy pair
    assert second["pairs_seen"] == 45 and second["pairs_accepted"] == 45 and report.details["cascade"]["to_humans"] == 0
    easy_open = {pair for pair, info in pairs.items() if info["easy"] and not info["gold"]}
    assert not asked_strong & easy_open  # the cheap judge settled those: the strong one never saw them
    assert {pair for pair, info in pairs.items() if not info["easy"]} <= asked_strong
    rows = store.con.execute("SELECT pair_id, label_by_balanced, label_source_by_balanced FROM labelled_pairs").fetchall()
    open_rows = [(pair, label, source) for pair, label, source in rows if not pairs[pair]["gold"]]
    assert all(source == "cascade" and label == pairs[pair]["label"] for pair, label, source in open_rows)


def test_a_target_the_strong_judge_cannot_reach_sends_the_rest_to_humans(store):
    pairs = build_pairs(store)
    with OpenAICompatServer(Behaviour(judge_rule=longer_wins, judge_confidence_rule=sure_when_far_apart)) as cheap, \
            OpenAICompatServer(Behaviour(judge_rule=always_a, judge_confidence=0.95)) as strong:
        report = run_judge(store, cascade_config(cheap, strong))
    first, second = report.details["cascade"]["levels"]
    assert first["pairs_accepted"] == 45, first
    assert second["threshold"] is None and "target not reached" in second["note"]
    assert report.details["cascade"]["to_humans"] == 15  # the hard pairs without gold
    labels = dict(store.con.execute("SELECT pair_id, label_by_balanced FROM labelled_pairs").fetchall())
    hard_open = [pair for pair, info in pairs.items() if not info["easy"] and not info["gold"]]
    assert all(labels[pair] is None for pair in hard_open)  # no judge label until people give one
    pushed = select_pairs(store, ArgillaConfig(push=AnnotationPushConfig(policy="uncertain")), "balanced")
    assert {row["pair_id"] for row in pushed if "cascade" in row["reasons"]} == set(hard_open)


def test_too_little_gold_is_said_plainly(store):
    build_pairs(store, n_gold=10, n_open=10)
    with OpenAICompatServer(Behaviour(judge_rule=longer_wins, judge_confidence_rule=sure_when_far_apart)) as cheap, \
            OpenAICompatServer(Behaviour(judge_rule=marked_wins)) as strong:
        report = run_judge(store, cascade_config(cheap, strong))
    for level in report.details["cascade"]["levels"]:
        assert level["threshold"] is None and "too little gold: 10 gold pairs" in level["note"]
    assert report.details["cascade"]["to_humans"] == 10
