"""The judge cascade (issue 18, part 3), against two of the suite's servers: a cheap judge that is
right only when it is sure, a strong one that is right everywhere (or not), and gold built here, so
the right thresholds are known."""

from __future__ import annotations

import pytest

from prefcurate.core.config import AnnotationPushConfig, ArgillaConfig, CurateConfig
from prefcurate.curation.annotation.push import select_pairs
from prefcurate.curation.judging.cascade import agreement_lower_bound, fit_threshold
from tests.support.cascade import build_pairs, cascade_config, longer_wins, marked_wins, sure_when_far_apart
from tests.support.judging import run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer, always_a

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
    pushed = select_pairs(store, ArgillaConfig(push=AnnotationPushConfig(policy="uncertain")), CurateConfig())
    assert {row["pair_id"] for row in pushed if "cascade" in row["reasons"]} == set(hard_open)


def test_too_little_gold_is_said_plainly(store):
    build_pairs(store, n_gold=10, n_open=10)
    with OpenAICompatServer(Behaviour(judge_rule=longer_wins, judge_confidence_rule=sure_when_far_apart)) as cheap, \
            OpenAICompatServer(Behaviour(judge_rule=marked_wins)) as strong:
        report = run_judge(store, cascade_config(cheap, strong))
    for level in report.details["cascade"]["levels"]:
        assert level["threshold"] is None and "too little gold: 10 gold pairs" in level["note"]
    assert report.details["cascade"]["to_humans"] == 10
