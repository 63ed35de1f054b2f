"""Rating and ranking judges (issue 25): each candidate scored alone or a prompt's candidates ranked
in one call, against the suite's server; scores stored per candidate and aspect; pairs and labels
built from them; bad answers invalid with their reason; and the calls it takes against pairwise."""

from __future__ import annotations

import json

import pytest

from prefcurate.core.config import CurateConfig, PairingConfig
from prefcurate.core.store import Store
from prefcurate.curation.generation.pairing import build_pairs
from prefcurate.curation.labels import labelled_pairs
from tests.support.builders import add_candidates, add_prompt
from tests.support.judging import judge_config, run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer

# Four candidates a prompt, of lengths that the server's length_score puts on 1, 2, 3 and 5 of 1-5.
TEXTS = ["Short.", "Longer one.", "A longer answer, longer.", "The longest answer of them all, " * 2]
ASPECTS = 4  # the shipped constitution's principles


def add_prompts(store, n: int) -> list[tuple[str, list[str]]]:
    """n prompts with the four TEXTS each (made distinct per prompt): (prompt_id, candidate ids)."""
    made = []
    for index in range(n):
        prompt = add_prompt(store, f"Question {index}: explain item {index}.")
        made.append((prompt, add_candidates(store, prompt, [f"{text} ({index})" for text in TEXTS])))
    return made


def rating_judge(server, **member) -> dict:
    return {"mode": "rating", "output_format": "json_schema", **member}


def scores(store, mode: str = "rating") -> dict[str, float]:
    """candidate -> its score (mean over aspects and calls)."""
    return dict(store.con.execute(
        "SELECT candidate_id, score FROM rater_scores WHERE mode = ?", [mode]).fetchall())


@pytest.mark.parametrize("output_format", ["json_schema", "text"])
def test_a_rating_judge_scores_every_candidate_alone_on_every_aspect_in_one_call(store, openai_server, output_format):
    prompts = add_prompts(store, 3)
    report = run_judge(store, judge_config(openai_server, members=[rating_judge(openai_server, output_format=output_format)]))
    assert report.details["calls_made"] == 12 and report.details["valid"] == 12  # one call per candidate
    assert report.details["candidates_to_score"] == 12
    assert store.scalar("SELECT count(*) FROM candidate_scores") == 12 * ASPECTS
    stated = dict(store.con.execute("SELECT candidate_id, any_value(stated_score) FROM candidate_scores "
                                    "GROUP BY candidate_id").fetchall())
    for _prompt, candidates in prompts:
        assert [stated[c] for c in candidates] == [1.0, 2.0, 3.0, 5.0]
    # the expected score under the log-probabilities, and its spread: not only the number written
    row = store.one("SELECT score, score_sd, score_probs, score_source FROM candidate_scores "
                    "WHERE stated_score = 3 LIMIT 1")
    assert row[3] == "logprobs" and row[0] == pytest.approx(3.0) and 0 < row[1] < 1
    assert json.loads(row[2]) == pytest.approx({"1": 0, "2": 0.05, "3": 0.9, "4": 0.05, "5": 0})
    top = store.one("SELECT score FROM candidate_scores WHERE stated_score = 5 LIMIT 1")[0]
    assert top == pytest.approx(5 * 0.9 + 4 * 0.1)  # the mass the top of the scale left below it
    assert store.one("SELECT count(*), bool_and(valid) FROM score_calls WHERE mode = 'rating'") == (12, True)


def test_pairs_from_ratings_under_each_strategy_and_their_labels(store, openai_server):
    prompts = add_prompts(store, 4)
    run_judge(store, judge_config(openai_server, members=[rating_judge(openai_server)]))
    expected = ("all_with_margin", "best_vs_worst", "best_vs_random_lower")
    for strategy in expected:
        made = build_pairs(store, PairingConfig(strategy=strategy, seed=1))
        assert made.details["prompts_without_scores"] == 0
    # all_with_margin already made every pair; the others added nothing new
    assert store.count("pairs") == 4 * 6
    labels = dict(store.con.execute("SELECT pair_id, vote_label FROM pair_labels").fetchall())
    score = scores(store)
    for pair_id, a, b in store.con.execute("SELECT pair_id, candidate_a, candidate_b FROM pairs").fetchall():
        assert labels[pair_id] == ("a" if score[a] > score[b] else "b")  # the higher-rated side
    # best_vs_worst on a fresh store: the best against the worst, one pair a prompt
    with Store(store.path.parent / "fresh.duckdb") as fresh:
        fresh_prompts = add_prompts(fresh, 4)
        run_judge(fresh, judge_config(openai_server, members=[rating_judge(openai_server)]))
        build_pairs(fresh, PairingConfig(strategy="best_vs_worst"))
        pairs = {tuple(sorted(row)) for row in fresh.con.execute("SELECT candidate_a, candidate_b FROM pairs").fetchall()}
        assert pairs == {tuple(sorted((candidates[0], candidates[3]))) for _p, candidates in fresh_prompts}
    assert prompts


def test_a_ranking_judge_ranks_a_prompts_candidates_in_one_call_and_again_reversed(store, openai_server):
    prompts = add_prompts(store, 3)
    report = run_judge(store, judge_config(openai_server, members=[{"mode": "ranking", "output_format": "json_schema"}]))
    assert report.details["calls_made"] == 6  # two calls a prompt, not twelve
    calls = store.con.execute("SELECT prompt_id, shown_order, candidates_shown FROM score_calls ORDER BY prompt_id, "
                              "shown_order").fetchall()
    for (p1, first, shown_forward), (p2, second, shown_reversed) in zip(calls[::2], calls[1::2]):
        assert p1 == p2 and (first, second) == ("forward", "reversed") and shown_reversed == shown_forward[::-1]
    score = scores(store, "ranking")
    for _prompt, candidates in prompts:  # longest first: the ranking follows length in both orders
        assert [score[c] for c in candidates] == [1.0, 2.0, 3.0, 4.0]
    build_pairs(store, PairingConfig(strategy="all_with_margin"))
    assert store.scalar("SELECT count(*) FROM pair_labels WHERE position_consistent AND vote_label IS NOT NULL") == 18


def test_a_position_biased_ranker_cancels_out_over_both_orders(store):
    """A ranker that ranks whatever it sees first as best: each order alone looks decisive, the two
    together cancel to nothing (no pair, no label), and its position consistency says why."""
    def shown_order(responses: dict[str, str]) -> list[str]:
        return sorted(responses)

    add_prompts(store, 3)
    with OpenAICompatServer(Behaviour(ranking_rule=shown_order)) as server:
        run_judge(store, judge_config(server, members=[{"mode": "ranking", "output_format": "json_schema"}]))
    assert set(scores(store, "ranking").values()) == {2.5}  # every candidate the mean place of 1..4
    built = build_pairs(store, PairingConfig(strategy="all_with_margin"))
    assert built.details["new_pairs"] == 0
    # on pairs built blind, each call's vote names the first shown: never position-consistent
    build_pairs(store, PairingConfig(strategy="all"))
    assert store.one("SELECT count(*), count(*) FILTER (WHERE position_consistent), count(vote_label) FROM pair_labels") \
        == (18, 0, 0)
    bias = store.one("SELECT first_shown_top_share, n_calls FROM judge_ranking_position_bias")
    assert bias == (1.0, 6)


def test_bad_rating_and_ranking_answers_are_invalid_with_their_reason(store):
    add_prompts(store, 2)
    script = ["off_scale", "malformed", "truncated", "empty"]
    with OpenAICompatServer(Behaviour(script=list(script))) as server:
        config = judge_config(server, members=[{**rating_judge(server), "backend": {"max_concurrency": 1}}])
        run_judge(store, config)
    reasons = sorted(row[0] for row in store.con.execute(
        "SELECT error_kind FROM score_calls WHERE NOT valid").fetchall())
    assert reasons == ["off_scale", "truncated", "unparseable", "unparseable"]
    # no score from a bad answer: the four good calls' scores only
    assert store.scalar("SELECT count(*) FROM candidate_scores") == 4 * ASPECTS
    assert not store.scalar("SELECT count(*) FROM candidate_scores JOIN score_calls USING (call_id) WHERE NOT valid")
    off = store.scalar("SELECT invalid_reason FROM score_calls WHERE error_kind = 'off_scale'")
    assert "outside the scale 1-5" in off

    with Store(store.path.parent / "ranking.duckdb") as ranked:
        add_prompts(ranked, 2)
        with OpenAICompatServer(Behaviour(script=["repeat", "missing", "truncated"])) as server:
            config = judge_config(server, members=[{"mode": "ranking", "output_format": "text",
                                                    "backend": {"max_concurrency": 1}}])
            run_judge(ranked, config)
        rows = ranked.con.execute("SELECT error_kind, invalid_reason FROM score_calls WHERE NOT valid "
                                  "ORDER BY error_kind").fetchall()
        assert [kind for kind, _ in rows] == ["bad_ranking", "bad_ranking", "truncated"]
        assert any("repeats" in reason for _, reason in rows) and any("misses" in reason for _, reason in rows)
        valid = ranked.scalar("SELECT count(*) FROM score_calls WHERE valid")
        assert ranked.scalar("SELECT count(*) FROM candidate_scores") == 4 * valid


def test_rating_takes_a_third_of_pairwise_calls_per_labelled_pair(tmp_path, openai_server):
    """4 candidates a prompt: pairwise judges all 6 pairs in both orders (12 calls), a rating judge
    rates 4 candidates and all_with_margin pairs them (6 pairs)."""
    counts = {}
    for mode in ("pairwise", "rating"):
        with Store(tmp_path / f"{mode}.duckdb") as store:
            add_prompts(store, 5)
            if mode == "pairwise":
                build_pairs(store, PairingConfig(strategy="all"))
            member = {"mode": mode, "output_format": "json_schema"}
            report = run_judge(store, judge_config(openai_server, members=[member]))
            if mode == "rating":
                build_pairs(store, PairingConfig(strategy="all_with_margin"))
            labelled = store.scalar("SELECT count(*) FROM pair_labels WHERE vote_label IN ('a', 'b')")
            counts[mode] = report.details["calls_made"] / labelled
    assert counts["pairwise"] == 2.0 and counts["rating"] <= counts["pairwise"] / 3


def test_score_labels_follow_the_label_precedence(store, openai_server):
    """A rating judge's label is a judges' label: under the default precedence an imported label
    wins over it, under judges-first it wins."""
    [(prompt, candidates)] = add_prompts(store, 1)
    run_judge(store, judge_config(openai_server, members=[rating_judge(openai_server)]))
    build_pairs(store, PairingConfig(strategy="best_vs_worst"))
    pair_id, a, b = store.one("SELECT pair_id, candidate_a, candidate_b FROM pairs")
    judged = "a" if a == candidates[3] else "b"
    store.con.execute("INSERT INTO reference_labels VALUES ('r', ?, ?, 'import', 'gold', 'plain', 1, now())",
                      [pair_id, "b" if judged == "a" else "a"])
    default = store.one(f"SELECT label, label_source FROM ({labelled_pairs(CurateConfig())})")
    judges_first = store.one(
        f"SELECT label, label_source FROM "
        f"({labelled_pairs(CurateConfig(label_precedence=['judges', 'verifier', 'human', 'import']))})")
    assert default == ("b" if judged == "a" else "a", "import")
    assert judges_first == (judged, "balanced")  # from the scores' log-probabilities


def test_normalized_scores_put_a_generous_rater_on_the_same_footing(store):
    """One rater gives 4 and 5, another 1 and 5, to the same two candidates: on the raw scale the
    second's margin is four times the first's; normalized, they are the same."""
    prompt = add_prompt(store, "Explain.")
    low, high = add_candidates(store, prompt, ["worse", "better"])
    rows = []
    for rater, (worse, better) in {"generous": (4, 5), "spread": (1, 5)}.items():
        for candidate, score in ((low, worse), (high, better)):
            rows.append({"score_id": f"{rater}{candidate}", "call_id": rater, "prompt_id": prompt,
                         "candidate_id": candidate, "rater": rater, "rater_kind": "judge", "mode": "rating",
                         "aspect": "overall", "score": float(score), "stated_score": float(score), "scale_min": 1.0,
                         "scale_max": 5.0, "score_source": "stated"})
    with store.transaction():
        store.upsert("candidate_scores", store.arrow_rows("candidate_scores", rows))
    build_pairs(store, PairingConfig(strategy="all"))
    margins = dict(store.con.execute("SELECT rater, (margin, normalized_margin) FROM score_votes").fetchall())
    assert abs(margins["spread"][0]) == 4 * abs(margins["generous"][0])
    assert margins["spread"][1] == pytest.approx(margins["generous"][1])


@pytest.mark.parametrize("mode", ["rating", "ranking"])
def test_rating_and_ranking_in_batches_store_the_same_rows_as_online(tmp_path, openai_server, mode):
    """Submitted on one run, collected on the next; the scores equal the online judge's, call for call."""
    member = {"mode": mode, "output_format": "json_schema"}

    def stored(store) -> dict:
        return {row[0]: row[1:] for row in store.con.execute(
            "SELECT score_id, candidate_id, aspect, score, score_sd FROM candidate_scores").fetchall()}

    with Store(tmp_path / "batch.duckdb") as store:
        add_prompts(store, 3)
        config = judge_config(openai_server, members=[{**member, "backend": {"kind": "openai_batch"}}])
        first = run_judge(store, config)
        calls = 12 if mode == "rating" else 6
        assert first.details["batches"]["submitted_calls"] == calls and store.count("score_calls") == 0
        second = run_judge(store, config)
        assert second.details["batches"]["collected_calls"] == calls and second.details["batches"]["submitted_calls"] == 0
        batched = stored(store)
    with Store(tmp_path / "online.duckdb") as store:
        add_prompts(store, 3)
        run_judge(store, judge_config(openai_server, members=[member]))
        assert stored(store) == batched and batched


def test_estimates_and_the_budget_count_rating_and_ranking_calls(store, openai_server):
    from prefcurate.core.config import Price
    from prefcurate.curation.judging.constitution import load_constitution
    from prefcurate.curation.judging.estimate import estimate_judging

    add_prompts(store, 5)
    prices = {"test-model": Price(input_per_million=1000.0, output_per_million=1000.0)}
    panel = [{"name": "rater", **rating_judge(openai_server)}, {"name": "ranker", "mode": "ranking",
                                                                "output_format": "json_schema"}]
    config = judge_config(openai_server, members=panel, prices=prices)
    estimate = estimate_judging(store, load_constitution(None), config)
    assert estimate["judges"]["rater"]["calls_to_make"] == 20 and estimate["judges"]["ranker"]["calls_to_make"] == 10
    assert estimate["judges"]["rater"]["mode"] == "rating" and estimate["cost_usd"] > 0

    budget = estimate["cost_usd"] / 3
    report = run_judge(store, config.model_copy(update={"max_cost_usd": budget}))
    spent = store.scalar("SELECT sum(cost_usd) FROM score_calls")
    assert 0 < spent <= budget and 0 < report.details["budget"]["calls_refused"] < 30
    run_judge(store, config.model_copy(update={"max_cost_usd": 1e6}))  # more budget: the rest
    assert store.scalar("SELECT count(*) FROM score_calls WHERE valid") == 30
    assert estimate_judging(store, load_constitution(None), config)["calls_to_make"] == 0


def test_a_rating_judge_can_be_a_cascade_level(store):
    """The cheap level rates each response (a point per 40 characters): sure where the right answer
    is much longer, a tie where it is not; the strong pairwise judge sees only what it left open."""
    from tests.support.cascade import build_pairs as build_cascade_pairs, cascade_config, marked_wins

    pairs = build_cascade_pairs(store)
    with OpenAICompatServer(Behaviour(rating_rule=lambda text, low, high: min(high, low + len(text) // 40))) as cheap, \
            OpenAICompatServer(Behaviour(judge_rule=marked_wins, judge_confidence=0.95)) as strong:
        config = cascade_config(cheap, strong)
        config.panel[0] = config.panel[0].model_copy(update={"mode": "rating"})
        report = run_judge(store, config)
    first, second = report.details["cascade"]["levels"]
    assert first["judge"] == "cheap" and first["pairs_accepted"] == 45 and first["agreement"] == 1.0
    assert second["pairs_seen"] == 45 and second["pairs_accepted"] == 45
    assert store.scalar("SELECT count(*) FROM score_calls WHERE judge = 'cheap'") == 2 * len(pairs)
    labels = dict(store.con.execute("SELECT pair_id, label_by_balanced FROM labelled_pairs").fetchall())
    assert all(labels[pair] == info["label"] for pair, info in pairs.items())


def test_the_label_model_counts_a_rating_judges_preferences_as_its_votes(store, openai_server):
    from prefcurate.curation.label_model import refresh_label_model

    add_prompts(store, 3)
    panel = [{"name": "rater", **rating_judge(openai_server)}, {"name": "pairwise", "output_format": "json_schema"}]
    build_pairs(store, PairingConfig(strategy="all"))
    run_judge(store, judge_config(openai_server, members=panel))
    fitted = refresh_label_model(store)
    assert set(fitted["raters"]) == {"judge:rater", "judge:pairwise"} and fitted["pairs"] == 18
    agree = store.scalar("SELECT count(*) FROM label_model_labels JOIN pair_labels USING (pair_id) "
                         "WHERE label = vote_label")
    assert agree == 18  # both judges prefer the longer response: the model agrees with them on every pair


def test_rated_pairs_curate_and_export_with_their_scores_and_a_score_margin(store, openai_server, tmp_path):
    import datasets

    from prefcurate.core.config import SplitConfig
    from prefcurate.curation.export.parquet import export_curation_run
    from prefcurate.curation.funnel.curate import curate
    from prefcurate.rm.data import label_strength

    add_prompts(store, 12)
    run_judge(store, judge_config(openai_server, members=[rating_judge(openai_server)]))
    build_pairs(store, PairingConfig(strategy="best_vs_worst"))
    result, _ = curate(store, CurateConfig(splits=SplitConfig(validation=0.0, test=0.25),
                                           dedup={"near": {"enabled": False}}))
    folder = export_curation_run(store, result.curation_run_id, tmp_path / "export", {})
    loaded = datasets.load_dataset("parquet", data_files={p.stem: str(p) for p in folder.glob("*.parquet")})
    rows = [row for split in loaded.values() for row in split]
    assert len(rows) == 12
    for row in rows:  # the best (5 stated, 4.9 expected) against the worst (1 stated, 1.1 expected)
        assert row["chosen_score"] == pytest.approx(4.9) and row["rejected_score"] == pytest.approx(1.1)
        assert row["score_margin"] == pytest.approx((4.9 - 1.1) / 4)
        assert len(row["chosen"]) > len(row["rejected"])
    assert label_strength(loaded["train"], "score") == pytest.approx([(4.9 - 1.1) / 4] * len(loaded["train"]))


def test_the_judge_report_shows_raters_ranking_bias_and_rating_against_pairwise(store, openai_server, tmp_path):
    from prefcurate.curation.judging.quality_report import write_judge_report

    add_prompts(store, 4)
    build_pairs(store, PairingConfig(strategy="all"))
    panel = [{"name": "rater", **rating_judge(openai_server)}, {"name": "pairwise", "output_format": "json_schema"},
             {"name": "ranker", "mode": "ranking", "output_format": "text"}]
    run_judge(store, judge_config(openai_server, members=panel))
    path, markdown = write_judge_report(store, tmp_path / "reports")
    report = json.loads(path.read_text())
    raters = {row["rater"]: row for row in report["raters"]}
    assert raters["rater"]["n_candidates"] == 16 and raters["rater"]["invalid_rate"] == 0
    assert raters["rater"]["sd_score"] > 0 and raters["ranker"]["mode"] == "ranking"
    [bias] = report["ranking_position_bias"]
    assert bias["judge"] == "ranker" and bias["order_agreement"] == 1.0 and bias["n_prompts_both_orders"] == 4
    agreement = {(row["judge"], row["other_judge"]): row for row in report["judge_agreement"]}
    pairwise_vs_rating = agreement[("pairwise", "rater")]
    assert (pairwise_vs_rating["judge_mode"], pairwise_vs_rating["other_mode"]) == ("pairwise", "rating")
    assert pairwise_vs_rating["n_pairs"] == 24 and pairwise_vs_rating["agreement"] == 1.0
    assert "## Judges against each other" in markdown and "| ranker |" in markdown


def test_ultrafeedbacks_four_aspects_ship_as_a_constitution(store, openai_server):
    from prefcurate.curation.judging.constitution import ConstitutionError, load_constitution

    add_prompts(store, 1)
    constitution = load_constitution("shipped:ultrafeedback")
    run_judge(store, judge_config(openai_server, members=[rating_judge(openai_server)]), constitution)
    aspects = {row[0] for row in store.con.execute("SELECT DISTINCT aspect FROM candidate_scores").fetchall()}
    assert aspects == {"helpfulness", "honesty", "instruction_following", "truthfulness"}
    with pytest.raises(ConstitutionError, match="shipped: default, ultrafeedback"):
        load_constitution("shipped:ultrafeedbak")
