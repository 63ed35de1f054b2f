"""Past judge.page_pairs pairs, the judge plans and asks a page at a time (streamed from the read
snapshot, the store let go while calls are out): the same calls, answers and report as in one go."""

from prefcurate.core.store import Store
from prefcurate.curation.judging.constitution import load_constitution
from prefcurate.curation.judging.estimate import estimate_judging
from prefcurate.curation.judging.judge import judge_pairs
from prefcurate.curation.judging.panel import open_panel
from tests.support.builders import add_candidates, add_prompt
from tests.support.judging import add_judgeable_pairs, judge_config
from tests.support.openai_server import Behaviour, OpenAICompatServer

COUNTED = ("calls_planned", "calls_cached", "calls_made", "valid", "invalid", "position_consistent_pairs")


def judge(store: Store, config, labels: list[str]):
    """The judge stage, noting the label of each batch of calls it asks."""
    def run_batch(label, work):
        labels.append(label)
        work()

    with open_panel(store, config, "unused-models-dir") as panel:
        return judge_pairs(store, panel, load_constitution(None), config, run_batch)


def judged(store: Store) -> set[tuple]:
    return set(store.con.execute("SELECT judgment_id, pair_id, shown_order, winner, valid FROM judgments").fetchall())


def test_pages_of_five_pairs_ask_and_store_what_one_go_does(tmp_path, openai_server):
    config = judge_config(openai_server, principle_sampling="all")  # several calls per pair and order
    results = []
    for page_pairs in (10**6, 5):
        with Store(tmp_path / f"store-{page_pairs}.duckdb", snapshot_every_s=5.0) as store:
            add_judgeable_pairs(store, 12)
            labels = []
            report = judge(store, config.model_copy(update={"page_pairs": page_pairs}), labels)
            again = judge(store, config.model_copy(update={"page_pairs": page_pairs}), [])
            results.append((judged(store), report, labels, again))
    (whole, whole_report, whole_labels, _), (paged, paged_report, paged_labels, paged_again) = results
    assert paged == whole and len(whole) == whole_report.details["calls_planned"] > 12 * 2
    assert {key: paged_report.details[key] for key in COUNTED} == {key: whole_report.details[key] for key in COUNTED}
    assert (paged_report.count_in, paged_report.count_out) == (whole_report.count_in, whole_report.count_out) == (12, 12)
    assert not any(label.startswith("page-") for label in whole_labels)
    assert {label.split("-")[1] for label in paged_labels} == {"1", "2", "3"}  # 12 pairs: pages of 5, 5 and 2
    assert paged_again.details["calls_made"] == 0 and paged_again.details["calls_cached"] == len(paged)


def test_a_store_without_a_read_snapshot_is_judged_in_one_go(tmp_path, openai_server):
    """The pages stream from the snapshot while the store is let go: without one, one go as before."""
    with Store(tmp_path / "store.duckdb") as store:
        add_judgeable_pairs(store, 6)
        labels = []
        report = judge(store, judge_config(openai_server, page_pairs=2), labels)
    assert report.details["calls_made"] == 12 and not any(label.startswith("page-") for label in labels)


def scored(store: Store) -> set[tuple]:
    return set(store.con.execute("SELECT call_id, prompt_id, mode, shown_order, valid FROM score_calls").fetchall())


def test_rating_and_ranking_judges_page_through_the_prompts_as_one_go_does(tmp_path, openai_server):
    """With a rating and a ranking judge beside a pairwise one, the candidates to score come a page
    of prompts at a time, prompts without pairs included: the same calls, scores and counts."""
    members = [{"name": "pairwise"}, {"name": "rater", "mode": "rating", "output_format": "json_schema"},
               {"name": "ranker", "mode": "ranking", "output_format": "json_schema"}]
    config = judge_config(openai_server, members=members)
    results = []
    for page_pairs in (10**6, 3):
        with Store(tmp_path / f"store-{page_pairs}.duckdb", snapshot_every_s=5.0) as store:
            add_judgeable_pairs(store, 7)
            for index in range(4):  # generated candidates, not paired yet: scored all the same
                prompt = add_prompt(store, f"Unpaired {index}?")
                add_candidates(store, prompt, [f"One {index}.", f"Two, longer {index}.", f"Three {index}, longest."])
            labels = []
            paged_config = config.model_copy(update={"page_pairs": page_pairs})
            estimate = estimate_judging(store, load_constitution(None), paged_config)
            report = judge(store, paged_config, labels)
            results.append((judged(store), scored(store), report, labels, estimate))
    (judged_whole, scored_whole, whole, whole_labels, whole_estimate), (judged_paged, scored_paged, paged, labels,
                                                                        paged_estimate) = results
    assert judged_paged == judged_whole and scored_paged == scored_whole
    assert len(scored_whole) == 7 * 2 + 4 * 3 + 11 * 2  # a rating call per candidate, two rankings per prompt
    counted = (*COUNTED, "candidates_to_score")
    assert {key: paged.details[key] for key in counted} == {key: whole.details[key] for key in counted}
    assert whole.details["candidates_to_score"] == 7 * 2 + 4 * 3
    assert paged_estimate == whole_estimate and whole_estimate["calls_to_make"] == whole.details["calls_planned"]
    assert not any(label.startswith(("page-", "scores-")) for label in whole_labels)
    assert {label.split("-")[0] + "-" + label.split("-")[1] for label in labels if label.startswith("scores-")} \
        >= {"scores-1", "scores-2"}  # 11 prompts, pages of about 3


def test_in_pages_each_auto_judge_probes_its_first_calls_for_response_format(tmp_path):
    """The rating judge's first calls come pages after the pairwise judge's: each is probed then,
    and each falls back to text on an endpoint that refuses response_format."""
    members = [{"name": "pairwise"}, {"name": "rater", "mode": "rating"}]
    with Store(tmp_path / "store.duckdb", snapshot_every_s=5.0) as store, \
            OpenAICompatServer(Behaviour(supports_response_format=False)) as server:
        add_judgeable_pairs(store, 6)
        report = judge(store, judge_config(server, members=members, page_pairs=2), [])
        asked_for_json = [body for body in server.requests if body.get("response_format")]
    assert {name: judge["output_format"] for name, judge in report.details["judges"].items()} == \
        {"pairwise": "text", "rater": "text"}
    assert len(asked_for_json) == 2  # one refused probe per judge
    assert report.details["valid"] == report.details["calls_made"] == 6 * 2 + 6 * 2  # 12 verdicts, 12 ratings


def test_a_panel_of_raters_only_pages_through_prompts_and_counts_the_pairs_without_reading_them(tmp_path,
                                                                                                openai_server):
    config = judge_config(openai_server, members=[{"name": "rater", "mode": "rating", "output_format": "json_schema"}])
    results = []
    for page_pairs in (10**6, 2):
        with Store(tmp_path / f"store-{page_pairs}.duckdb", snapshot_every_s=5.0) as store:
            add_judgeable_pairs(store, 5)
            paged_config = config.model_copy(update={"page_pairs": page_pairs})
            estimate = estimate_judging(store, load_constitution(None), paged_config)
            labels = []
            report = judge(store, paged_config, labels)
            results.append((scored(store), report, labels, estimate))
    (whole_scored, whole, _, whole_estimate), (paged_scored, paged, labels, paged_estimate) = results
    assert paged_scored == whole_scored and len(whole_scored) == 5 * 2
    assert paged.count_in == whole.count_in == 5 and paged_estimate == whole_estimate
    assert paged_estimate["pairs"] == 5
    assert not any(label.startswith("page-") for label in labels) and any(label.startswith("scores-") for label in labels)


def test_pages_stream_pairs_whose_texts_a_sort_could_not_hold_in_the_memory_limit(tmp_path):
    """At 10M pairs (~9 GB of texts) the pages' query ran out of store.memory_limit (2GB) because it
    sorted the pairs with their texts after joining them. Here the same shape in small: 20,000 pairs
    with 2 KB texts under a 128MB limit, where that sorted query runs out of memory too."""
    from prefcurate.curation.judging.calls import pair_pages

    path = tmp_path / "store.duckdb"
    with Store(path) as store:  # built in SQL: only the sizes matter
        store.con.execute("INSERT INTO prompts (prompt_id, text, source) "
                          "SELECT md5('p' || i), repeat(md5('t' || i), 64), 'sql' FROM range(20000) AS t(i)")
        store.con.execute("INSERT INTO candidates (candidate_id, prompt_id, generator_key, generator, sample_index, text) "
                          "SELECT md5('c' || i || k), md5('p' || i), 'g', 'g', k, repeat(md5('u' || i || k), 64) "
                          "FROM range(20000) AS t(i), range(2) AS s(k)")
        store.con.execute("INSERT INTO pairs (pair_id, prompt_id, candidate_a, candidate_b, strategy) "
                          "SELECT md5('pair' || i), md5('p' || i), least(md5('c' || i || 0), md5('c' || i || 1)), "
                          "greatest(md5('c' || i || 0), md5('c' || i || 1)), 'sql' FROM range(20000) AS t(i)")
    with Store(path, memory_limit="128MB") as store:
        seen = [pair for page in pair_pages(store, None, page_pairs=2000) for pair in page]
    assert len(seen) == 20000 and len({pair[0] for pair in seen}) == 20000
    assert all(len(pair[1]) == len(pair[2]) == len(pair[3]) == 2048 for pair in seen)
