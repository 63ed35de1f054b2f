"""Human agreement views on constructed annotations with known answers, and the push side's
selection and A/B mapping (no Argilla server: see test_argilla.py for the real one)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from prefcurate.core.config import ArgillaConfig, CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.annotation.pull import ANNOTATION_SCHEMA, annotation_rows
from prefcurate.curation.annotation.push import build_record, select_pairs, shown_order_for
from prefcurate.curation.funnel.curate import curate
from prefcurate.curation.orientation import to_shown
from tests.support.annotation import reference_alpha_and_kappa
from tests.support.builders import add_call, add_candidates, add_pair, add_prompt


def add_votes(store, votes: dict[str, list[str | None]], status: str = "submitted") -> None:
    """votes: pair id -> one winner per annotator (ann0, ann1, ...); None = no answer."""
    rows = []
    for pair, winners in votes.items():
        for index, winner in enumerate(winners):
            if winner is None:
                continue
            rows.append({"annotation_id": content_hash(pair, index, status), "pair_id": pair, "annotator": f"ann{index}",
                         "winner": winner, "shown_winner": winner, "strength": 2, "rationale": None,
                         "status": status, "source_record": pair, "response_updated_at": None})
    store.upsert("annotations", pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA))


def agreement(store) -> dict:
    return store.con.sql("SELECT * FROM annotation_agreement").to_arrow_table().to_pylist()[0]




def test_agreement_on_a_hand_computed_case(store):
    # u1 (a, a), u2 (a, b): alpha = 1 - 3 * (4 - 2) / (16 - 10) = 0; kappa = (0.5 - 10/16) / (6/16) = -1/3.
    add_votes(store, {"p1": ["a", "a"], "p2": ["a", "b"], "p3": ["b"]})  # p3: one vote, not pairable
    result = agreement(store)
    assert result["n_pairs"] == 2 and result["n_votes"] == 4 and result["n_annotators"] == 2
    assert result["krippendorff_alpha"] == pytest.approx(0.0)
    assert result["fleiss_kappa"] == pytest.approx(-1 / 3)
    assert result["observed_agreement"] == pytest.approx(0.5)


def test_agreement_matches_the_definitions_on_random_votes(store):
    rng = random.Random(7)
    votes = {}
    for index in range(60):
        truth = rng.choice("ab")
        # 2 to 5 annotators, each right 75% of the time, sometimes a tie
        votes[f"p{index}"] = [truth if rng.random() < 0.75 else rng.choice(["a", "b", "tie"])
                              for _ in range(rng.randint(2, 5))]
    add_votes(store, votes)
    alpha, kappa = reference_alpha_and_kappa(votes)
    result = agreement(store)
    assert result["krippendorff_alpha"] == pytest.approx(alpha)
    assert result["fleiss_kappa"] == pytest.approx(kappa)
    assert 0.2 < alpha < 0.9  # noisy but far from chance


def test_perfect_agreement_is_one_and_drafts_and_discards_do_not_vote(store):
    add_votes(store, {"p1": ["a", "a", "a"], "p2": ["b", "b"], "p3": ["tie", "tie"]})
    add_votes(store, {"p1": [None, None, None, "b"], "p2": [None, None, "a"]}, status="draft")
    add_votes(store, {"p3": [None, None, "a"]}, status="discarded")
    result = agreement(store)
    assert result["krippendorff_alpha"] == pytest.approx(1.0)
    assert result["fleiss_kappa"] == pytest.approx(1.0)
    rows = {r["pair_id"]: r for r in store.con.sql("SELECT * FROM annotation_pair_agreement").to_arrow_table().to_pylist()}
    assert (rows["p1"]["n_votes"], rows["p1"]["majority_label"], rows["p1"]["n_draft"]) == (3, "a", 1)
    assert (rows["p3"]["majority_label"], rows["p3"]["n_discarded"]) == ("tie", 1)


def test_a_split_vote_has_no_majority_and_half_agreement(store):
    add_votes(store, {"p1": ["a", "b"], "p2": ["a", "a", "b"]})
    rows = {r["pair_id"]: r for r in store.con.sql("SELECT * FROM annotation_pair_agreement").to_arrow_table().to_pylist()}
    assert rows["p1"]["majority_label"] is None and rows["p1"]["agreement"] == pytest.approx(0.5)
    assert rows["p2"]["majority_label"] == "a" and rows["p2"]["agreement"] == pytest.approx(2 / 3)


def test_annotator_quality_compares_each_rater_with_the_others(store):
    add_votes(store, {f"p{i}": ["a", "a", "b"] for i in range(4)})
    quality = {r["annotator"]: r for r in store.con.sql("SELECT * FROM annotator_quality").to_arrow_table().to_pylist()}
    assert quality["ann0"]["n_submitted"] == 4
    # ann2's peers (ann0, ann1) always say a: ann2 never agrees; ann0's peers split (a vs b): no majority.
    assert quality["ann2"]["agreement_with_peers"] == pytest.approx(0.0)
    assert quality["ann0"]["n_peer_comparisons"] == 0


# -- curation uses human labels ----------------------------------------------------------------------

def pairs_with_judge_votes(store, n: int, judge_winner_shown: str = "A") -> list[str]:
    keys = []
    for index in range(n):
        prompt = add_prompt(store, f"Explain topic {chr(65 + index)} in detail {'x' * index}")
        first, second = add_candidates(store, prompt, [f"good answer {index}", f"weak answer {index} with more words"])
        key, a, b = add_pair(store, prompt, first, second)
        add_call(store, key, "ab", judge_winner_shown, p_first=0.9)
        add_call(store, key, "ba", "B" if judge_winner_shown == "A" else "A", p_first=0.1)
        keys.append(key)
    return keys


def test_curation_prefers_human_labels_and_applies_the_human_agreement_threshold(store):
    keys = pairs_with_judge_votes(store, 3)  # judges: a, confidently, on every pair
    add_votes(store, {keys[0]: ["b", "b"], keys[1]: ["b", "a"], keys[2]: ["a", "a", "b"]})
    config = CurateConfig.model_validate({"min_human_agreement": 0.66, "dedup": {"exact": False, "near": {"enabled": False}},
                                          "splits": {"validation": 0.0, "test": 0.0}})
    result, _ = curate(store, config)
    kept = {r["pair_id"]: r for r in store.con.sql(
        "SELECT c.pair_id, c.label_source, c.chosen_candidate = p.candidate_a AS chose_a"
        " FROM curated_pairs AS c JOIN pairs AS p USING (pair_id) WHERE curation_run_id = $run",
        params={"run": result.curation_run_id}).to_arrow_table().to_pylist()}
    assert not kept[keys[0]]["chose_a"] and kept[keys[0]]["label_source"] == "human"  # humans overrule judges
    assert keys[1] not in kept  # 1 of 2: agreement 0.5 < 0.66
    assert kept[keys[2]]["chose_a"]  # 2 of 3 = 0.667


# -- push: selection and orientation -------------------------------------------------------------

def test_uncertain_policy_picks_split_and_position_inconsistent_pairs(store):
    confident = pairs_with_judge_votes(store, 2)
    prompt = add_prompt(store, "A question the judges are unsure about")
    first, second = add_candidates(store, prompt, ["one reply", "another reply here"])
    flipping, _, _ = add_pair(store, prompt, first, second)
    add_call(store, flipping, "ab", "A", p_first=0.6)
    add_call(store, flipping, "ba", "A", p_first=0.6)  # the first position wins both times
    config = ArgillaConfig()
    rows = select_pairs(store, config, CurateConfig())
    assert [row["pair_id"] for row in rows] == [flipping]
    assert set(rows[0]["reasons"]) >= {"position_inconsistent", "judge_disagreement"}
    everything = select_pairs(store, ArgillaConfig.model_validate({"push": {"policy": "all"}}), CurateConfig())
    assert {row["pair_id"] for row in everything} == {flipping, *confident}


def test_shown_order_round_trips_through_a_record(store):
    (key,) = pairs_with_judge_votes(store, 1)
    config = ArgillaConfig.model_validate({"push": {"policy": "all"}})
    orders = {shown_order_for(seed, key) for seed in range(16)}
    assert orders == {"ab", "ba"}  # both orders occur across seeds
    for seed in range(4):
        config.push.seed = seed
        row = select_pairs(store, config, CurateConfig())[0]
        record, stored = build_record(row, config, round_index=3, judges="j")
        order = stored["shown_order"]
        a_text = store.scalar("SELECT c.text FROM pairs p JOIN candidates c ON c.candidate_id = p.candidate_a "
                              "WHERE pair_id = ?", [key])
        assert record.fields["response_a" if order == "ab" else "response_b"] == a_text
        assert record.suggestions["preference"].value == to_shown("a", order)  # judges said a
        assert record.metadata["round"] == 3 and record.metadata["pair_id"] == key
        # An annotator who clicks the on-screen A is mapped back to the pair's orientation
        response = {"id": "r", "user_id": "u1", "status": "submitted", "updated_at": "2026-11-22T10:00:00",
                    "values": {"preference": {"value": "a"}, "strength": {"value": 3}}}
        rows, rejects = annotation_rows([{"external_id": stored["record_id"], "responses": [response]}],
                                        {stored["record_id"]: (key, order)}, {"u1": "ann"}, source="test")
        assert not rejects and rows[0]["winner"] == ("a" if order == "ab" else "b") and rows[0]["strength"] == 3


def test_unreadable_answers_and_foreign_records_are_rejected_with_the_field():
    responses = [{"id": "r1", "user_id": "u", "status": "submitted", "updated_at": "2026-11-22T10:00:00",
                  "values": {"preference": {"value": "maybe"}}}]
    records = [{"external_id": "known", "responses": responses},
               {"external_id": "stranger", "id": "x", "responses": responses}]
    rows, rejects = annotation_rows(records, {"known": ("pair", "ab")}, {}, source="argilla:w/d")
    assert rows == []
    assert [(r["source_row"], r["field"]) for r in rejects] == [(0, "values.preference"), (1, "external_id")]
    # A discarded answer without values (the SDK 2.8 crash case) is kept with no winner.
    discarded = [{"id": "r2", "user_id": "u", "status": "discarded", "updated_at": "2026-11-22T10:00:00", "values": None}]
    rows, rejects = annotation_rows([{"external_id": "known", "responses": discarded}], {"known": ("pair", "ba")}, {},
                                    source="s")
    assert rows[0]["status"] == "discarded" and rows[0]["winner"] is None and not rejects


def test_ensemble_disagreement_sends_pairs_the_judges_were_sure_about(store):
    keys = pairs_with_judge_votes(store, 2)  # judges confident on both: not uncertain by judge criteria
    rows = []
    for key, spread in zip(keys, (0.8, 0.05)):
        a, b = store.one("SELECT candidate_a, candidate_b FROM pairs WHERE pair_id = ?", [key])
        rows += [{"rm_run_id": "rm1", "candidate_id": a, "reward": 0.3, "reward_min": 0.0, "reward_std": spread},
                 {"rm_run_id": "rm1", "candidate_id": b, "reward": 0.0, "reward_min": -0.5, "reward_std": spread}]
    store.insert_new("candidate_rewards", pa.Table.from_pylist(rows))
    selected = select_pairs(store, ArgillaConfig(), CurateConfig())
    # Members' spread (0.8 + 0.8) exceeds the mean margin 0.3 on the first pair only.
    assert [(row["pair_id"], row["reasons"]) for row in selected] == [(keys[0], ["ensemble_disagreement"])]
    off = ArgillaConfig.model_validate({"push": {"ensemble_disagreement": False}})
    assert select_pairs(store, off, CurateConfig()) == []
