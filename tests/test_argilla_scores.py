"""Annotators rating and ranking a prompt's candidates (argilla.label_mode rating / ranking): the
agreement figure against hand-computed cases, the pull's bookkeeping on Argilla-shaped responses,
and push -> annotators answer with their own keys through the REST API -> pull -> scores, pair votes
and alpha through a real argilla-server."""

from __future__ import annotations

import uuid

import pytest

from prefcurate.core.config import PrefcurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.annotation.rating_agreement import ordinal_alpha
from prefcurate.curation.annotation.score_pull import scores_of_records, store_scores
from prefcurate.curation.annotation.score_push import shown_candidates
from tests.support.annotation import Annotator
from tests.support.builders import add_candidates, add_pair, add_prompt

# Two annotators' ratings (1-5) of four candidates, by quality; ann2 differs on two of them.
QUALITY = {"A precise, complete answer.": "best", "A correct but thin answer.": "good",
           "A partly wrong answer.": "fair", "Off topic.": "poor"}
RATINGS = {"ann1": {"best": 5, "good": 4, "fair": 2, "poor": 1}, "ann2": {"best": 4, "good": 4, "fair": 3, "poor": 1}}
# Their ordinal alpha by hand (Krippendorff's coincidence form, every item rated by both): values
# 5,4 | 4,4 | 2,3 | 1,1 give n_1..n_5 = 2,1,1,3,1 (n = 8); ordinal distance d(c,k) = (sum of n_g
# for g from c to k - (n_c + n_k) / 2)^2. Observed: the pairs (4,5) and (2,3), each both ways,
# d = 4 and 1: D_o = (2*4 + 2*1) / 8 = 1.25. Expected: sum over c<k of n_c n_k d(c,k) = 316, so
# D_e = 2 * 316 / (8 * 7). alpha = 1 - D_o / D_e = 1 - 70/632 = 281/316.
RATING_ALPHA = 281 / 316
# Two rankings (1 = best) of the same four; ann2 swaps good and fair. Places 1,1 | 2,3 | 3,2 | 4,4:
# n_1..n_4 = 2 each; D_o = (2*4 + 2*4) / 8 = 2 (d(2,3) = 4); sum over c<k of n_c n_k d(c,k) =
# 4 * (4 + 16 + 36 + 4 + 16 + 4) = 320, D_e = 640 / 56; alpha = 1 - 112/640 = 0.825.
RANKINGS = {"ann1": {"best": 1, "good": 2, "fair": 3, "poor": 4}, "ann2": {"best": 1, "good": 3, "fair": 2, "poor": 4}}
RANKING_ALPHA = 0.825


def test_ordinal_alpha_matches_hand_computed_cases():
    # Items (1,1), (2,2), (2,3): n_1, n_2, n_3 = 2, 3, 1; D_o = 2 * d(2,3) / 6 = 2 * 4 / 6;
    # D_e = 2 * (2*3*6.25 + 2*1*20.25 + 3*1*4) / 30 = 6; alpha = 1 - (4/3) / 6 = 7/9.
    assert ordinal_alpha({"x": {"p": 1, "q": 1}, "y": {"p": 2, "q": 2}, "z": {"p": 2, "q": 3}}) == pytest.approx(7 / 9)
    by_quality = {quality: {name: ratings[quality] for name, ratings in RATINGS.items()} for quality in QUALITY.values()}
    assert ordinal_alpha(by_quality) == pytest.approx(RATING_ALPHA)
    # An item only one annotator scored changes nothing; it carries no information on agreement.
    assert ordinal_alpha({**by_quality, "alone": {"ann1": 5}}) == pytest.approx(RATING_ALPHA)
    assert ordinal_alpha({"x": {"p": 3, "q": 3}, "y": {"p": 3, "q": 3}}) is None  # one value throughout
    assert ordinal_alpha({"x": {"p": 3}, "y": {"q": 4}}) is None  # no item with two annotators


def test_shown_candidates_are_distinct_texts_in_a_seeded_order():
    candidates = [("c1", "same"), ("c2", "same "), ("c3", "other"), ("c4", "third"), ("c5", "fourth")]
    shown = shown_candidates(candidates, "p", seed=0, k=3)
    assert len(shown) == 3 and len({text.strip() for _, text in shown}) == 3 and ("c2", "same ") not in shown
    assert shown == shown_candidates(list(reversed(candidates)), "p", seed=0, k=3)  # the same each push
    orders = {shown_candidates(candidates, "p", seed=seed, k=4) for seed in range(8)}
    assert len(orders) > 1  # the seed moves who appears where


def _rating_record(candidate_ids: list[str], responses: list[dict]) -> dict:
    return {"id": "r1", "external_id": "ext1", "metadata": {"prompt_id": "p", "candidate_ids": candidate_ids},
            "responses": responses}


def _response(user: str, status: str, values: dict | None) -> dict:
    return {"id": f"resp-{user}", "user_id": user, "status": status, "values": values}


def test_pulled_ratings_are_stored_once_and_follow_changes_in_argilla(store):
    """The pull's bookkeeping on responses shaped as Argilla's REST API returns them."""
    scales = {f"overall_{slot}": (1, 5) for slot in (1, 2, 3)}
    ids = ["c-best", "c-poor"]

    def pull(responses: list[dict]) -> dict:
        rows, response_ids, rejects, _ = scores_of_records([_rating_record(ids, responses)], "rating", scales,
                                                           {}, "test")
        with store.transaction():
            return {**store_scores(store, rows, response_ids), "rejected": len(rejects)}

    submitted = _response("ann1", "submitted", {"overall_1": {"value": 5}, "overall_2": {"value": 2}})
    draft = _response("ann2", "draft", {"overall_1": {"value": 1}})
    discarded = _response("ann3", "discarded", None)  # no values: the SDK 2.8 crash case
    assert pull([submitted, draft, discarded]) == {"new": 2, "updated": 0, "removed": 0, "unchanged": 0, "rejected": 0}
    stored = store.con.sql("SELECT candidate_id, rater, rater_kind, mode, aspect, score, stated_score, scale_min, "
                           "scale_max, shown_position, score_source, call_id FROM candidate_scores ORDER BY 1"
                           ).fetchall()
    assert stored == [("c-best", "ann1", "human", "rating", "overall", 5.0, 5.0, 1.0, 5.0, 1, "stated", "resp-ann1"),
                      ("c-poor", "ann1", "human", "rating", "overall", 2.0, 2.0, 1.0, 5.0, 2, "stated", "resp-ann1")]
    assert pull([submitted, draft, discarded])["unchanged"] == 2  # pulling again changes nothing

    edited = _response("ann1", "submitted", {"overall_1": {"value": 4}, "overall_2": {"value": 2}})
    assert pull([edited])["updated"] == 1
    assert pull([_response("ann1", "discarded", {"overall_1": {"value": 4}})])["removed"] == 2  # no longer a score
    assert store.count("candidate_scores") == 0

    off_scale = _response("ann1", "submitted", {"overall_1": {"value": 5}, "overall_3": {"value": 4}})
    assert pull([off_scale])["rejected"] == 1  # slot 3 has no response in this record
    assert store.count("candidate_scores") == 0


# -- through a real argilla-server --------------------------------------------------------------

@pytest.fixture
def scores_config(argilla_server, tmp_path) -> PrefcurateConfig:
    argilla, home = argilla_server
    settings = argilla.model_copy(deep=True)
    suffix = uuid.uuid4().hex[:8]
    settings.rating_dataset, settings.ranking_dataset = f"ratings-{suffix}", f"rankings-{suffix}"
    settings.server.home = home
    return PrefcurateConfig(workdir=tmp_path / "out", store={"path": tmp_path / "store.duckdb"}, argilla=settings)


def build_prompts(path) -> dict[str, list[str]]:
    """One prompt with the four candidates of QUALITY (and three pairs of them stored), one with
    three; returns the pair ids by the qualities of their a and b candidates."""
    with Store(path) as store:
        prompt = add_prompt(store, "How do B-trees stay balanced?")
        ids = dict(zip(QUALITY.values(), add_candidates(store, prompt, list(QUALITY))))
        pairs = {}
        for first, second in (("best", "poor"), ("good", "fair"), ("best", "good")):
            key, a, _ = add_pair(store, prompt, ids[first], ids[second])
            pairs[key] = [first, second] if a == ids[first] else [second, first]
        add_candidates(store, add_prompt(store, "What is a heap?"), ["A tree-shaped priority queue.", "A pile.", "?"])
    return pairs


def answer_all(config: PrefcurateConfig, values_for) -> tuple[dict[str, Annotator], dict[str, str]]:
    """ann1 and ann2 answer every record in their queue: values_for(annotator, record) gives the
    values to submit, or None to discard the record (with no values: the SDK 2.8 crash case).
    Returns the annotators and what the records showed: {"<prompt text> <slot>": the text there}."""
    from prefcurate.curation.annotation.dataset import connect, find_dataset

    dataset = find_dataset(connect(config.argilla, config.resolved_argilla_home), config.argilla)
    annotators = {name: Annotator(config.argilla.resolved_url, name) for name in ("ann1", "ann2")}
    shown = {}
    for name, annotator in annotators.items():
        queue = annotator.pending(str(dataset.id))
        assert queue
        for record in queue:
            values = values_for(name, record)
            annotator.respond(record, values, "submitted" if values else "discarded")
            shown.update({f"{record['fields']['prompt']} {slot}": record["fields"][f"response_{slot}"]
                          for slot in slots(record)})
    return annotators, shown


def slots(record: dict) -> dict[int, str]:
    """{slot: quality of the response shown there} (None for the other prompt's responses)."""
    return {int(field.split("_")[1]): QUALITY.get(text) for field, text in record["fields"].items()
            if field.startswith("response_")}


def pair_votes(store: Store) -> dict[tuple[str, str], str]:
    return {(pair, annotator): winner for pair, annotator, winner in store.con.execute(
        "SELECT pair_id, annotator, winner FROM annotation_votes").fetchall()}


@pytest.mark.slow
def test_annotators_ratings_become_scores_pair_votes_and_alpha(scores_config):
    from prefcurate.pipeline import annotate_pull_stage, annotate_push_stage

    config = scores_config
    config.argilla.label_mode = "rating"
    pairs = build_prompts(config.store.path)
    pushed = annotate_push_stage(config)
    assert (pushed["count_out"], pushed["too_few_candidates"], pushed["responses_sent"]) == (2, 0, 7)
    assert annotate_push_stage(config)["count_out"] == 0  # pushing twice adds nothing

    def ratings(name: str, record: dict) -> dict | None:
        shown = slots(record)
        if None in shown.values():  # the three-response prompt: ann1 rates it, ann2 discards it
            return {f"overall_{slot}": {"value": 3} for slot in shown} if name == "ann1" else None
        return {f"overall_{slot}": {"value": RATINGS[name][quality]} for slot, quality in shown.items()}

    _, shown = answer_all(config, ratings)
    pulled = annotate_pull_stage(config)
    assert (pulled["new"], pulled["rejected"]) == (4 + 4 + 3, 0)
    assert pulled["responses_by_status"] == {"submitted": 3, "discarded": 1}
    # The three-response prompt's candidates have one annotator: no information on agreement.
    assert pulled["agreement"] == {"rating:overall": {"krippendorff_alpha": pytest.approx(RATING_ALPHA), "n_items": 4,
                                                      "n_annotators": 2, "n_scores": 11}}
    assert annotate_pull_stage(config)["unchanged"] == 11  # re-pulling adds nothing

    with Store(config.store.path) as store:
        rows = store.con.sql("SELECT p.text, c.text, s.rater, s.score, s.stated_score, s.scale_min, s.scale_max, "
                             "s.shown_position, s.score_source FROM candidate_scores AS s "
                             "JOIN candidates AS c USING (candidate_id) JOIN prompts AS p ON p.prompt_id = s.prompt_id "
                             "WHERE s.rater_kind = 'human'").fetchall()
        for prompt, text, rater, score, stated, low, high, position, source in rows:
            expected = RATINGS[rater][QUALITY[text]] if text in QUALITY else 3
            assert (score, stated, low, high, source) == (expected, expected, 1.0, 5.0, "stated")
            assert shown[f"{prompt} {position}"] == text  # the slot it was shown in
        votes = pair_votes(store)
        labels = dict(store.con.execute("SELECT pair_id, human_label FROM pair_labels").fetchall())
    for pair, (a, b) in pairs.items():
        for name, rated in RATINGS.items():
            expected = "a" if rated[a] > rated[b] else "b" if rated[a] < rated[b] else "tie"
            assert votes[(pair, name)] == expected
    best_poor = next(pair for pair, qualities in pairs.items() if set(qualities) == {"best", "poor"})
    best_good = next(pair for pair, qualities in pairs.items() if set(qualities) == {"best", "good"})
    assert labels[best_poor] == ("a" if pairs[best_poor][0] == "best" else "b")
    assert labels[best_good] is None  # ann1: best; ann2: a tie: no strict majority


@pytest.mark.slow
def test_annotators_rankings_become_scores_pair_votes_and_alpha(scores_config):
    from prefcurate.pipeline import annotate_pull_stage, annotate_push_stage

    config = scores_config
    config.argilla.label_mode = "ranking"
    pairs = build_prompts(config.store.path)
    pushed = annotate_push_stage(config)
    # A ranking shows exactly responses_per_record (4): the three-candidate prompt waits.
    assert (pushed["count_out"], pushed["too_few_candidates"]) == (1, 1)

    def ranking(name: str, record: dict) -> dict:
        return {"ranking": {"value": [{"value": f"response_{slot}", "rank": RANKINGS[name][quality]}
                                      for slot, quality in slots(record).items()]}}

    annotators, shown = answer_all(config, ranking)
    pulled = annotate_pull_stage(config)
    assert (pulled["new"], pulled["rejected"]) == (8, 0)
    assert pulled["agreement"] == {"ranking": {"krippendorff_alpha": pytest.approx(RANKING_ALPHA), "n_items": 4,
                                               "n_annotators": 2, "n_scores": 8}}

    with Store(config.store.path) as store:
        rows = store.con.sql("SELECT p.text, c.text, s.rater, s.aspect, s.score, s.stated_score, s.scale_max, "
                             "s.shown_position, s.score_source, s.call_id FROM candidate_scores AS s "
                             "JOIN candidates AS c USING (candidate_id) JOIN prompts AS p ON p.prompt_id = s.prompt_id"
                             ).fetchall()
        assert len({call for *_, call in rows}) == 2  # one call per annotator's response
        for prompt, text, rater, aspect, score, rank, high, position, source, _ in rows:
            expected = RANKINGS[rater][QUALITY[text]]
            assert (aspect, rank, score, high, source) == ("rank", expected, 5 - expected, 4.0, "rank")
            assert shown[f"{prompt} {position}"] == text
        votes = pair_votes(store)
    for pair, (a, b) in pairs.items():
        for name, ranked in RANKINGS.items():
            assert votes[(pair, name)] == ("a" if ranked[a] < ranked[b] else "b")

    # ann2 discards their answer in Argilla: their scores go on the next pull, and their votes with them.
    with Store(config.store.path, read_only=True) as store:
        ann2_response = store.scalar("SELECT any_value(call_id) FROM candidate_scores WHERE rater = 'ann2'")
    annotators["ann2"].client.put(f"/api/v1/responses/{ann2_response}",
                                  json={"values": None, "status": "discarded"}).raise_for_status()
    again = annotate_pull_stage(config)
    assert (again["removed"], again["unchanged"]) == (4, 4)
    with Store(config.store.path) as store:
        assert {annotator for _, annotator in pair_votes(store)} == {"ann1"}
