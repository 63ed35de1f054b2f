"""Importing rated completions (`prefcurate import-ratings`): UltraFeedback, flat and distilabel rows
become candidates with one score per aspect; `pairs` with a score strategy then pairs them, and the
ratings give each pair its reference label."""

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import PairingConfig, config_from_dict
from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.generation.pairing import build_pairs
from prefcurate.curation.intake.rated_completions import Scale, import_rated_completions
from tests.support.inputs import rejects, write_jsonl


def annotated(response: str, model: str, **ratings: str) -> dict:
    """An UltraFeedback completion: each aspect's rating as the dataset writes it (a string, or "N/A")."""
    return {"model": model, "response": response, "overall_score": 7.5, "fine-grained_score": 4.0,
            "annotations": {aspect: {"Rating": rating, "Rationale": f"{aspect} reasoning"}
                            for aspect, rating in ratings.items()}}


ULTRAFEEDBACK = [
    {"source": "test", "instruction": "How many legs does a spider have?", "completions": [
        annotated("Eight.", "m1", helpfulness="5", honesty="5", truthfulness="5"),
        annotated("Six, like insects.", "m2", helpfulness="1", honesty="2", truthfulness="1"),
        annotated("Eight, in four pairs.", "m3", helpfulness="4", honesty="N/A", truthfulness="5")]},
    {"source": "test", "instruction": "Greet a bakery's visitors in one line.", "completions": [
        annotated("Fresh bread daily: come in!", "m1", helpfulness="4", honesty="N/A", truthfulness="5"),
        annotated("Bread. Cakes. Hello.", "m2", helpfulness="2", honesty="N/A", truthfulness="4")]},
]


def scores(store) -> dict[tuple[str, str], float]:
    """{(candidate text, aspect): score} of every stored score."""
    return {(text, aspect): score for text, aspect, score in store.con.execute(
        "SELECT c.text, s.aspect, s.score FROM candidate_scores s JOIN candidates c USING (candidate_id)").fetchall()}


def labelled_pairs(store) -> set[tuple[str, str]]:
    """(chosen text, rejected text) of every pair, by the reference label its ratings give."""
    rows = store.con.execute("""
        SELECT ca.text, cb.text, l.reference_label FROM pair_labels l
        JOIN candidates ca ON ca.candidate_id = l.candidate_a JOIN candidates cb ON cb.candidate_id = l.candidate_b
    """).fetchall()
    return {(a, b) if label == "a" else (b, a) for a, b, label in rows}


def test_ultrafeedback_rows_become_candidates_with_a_score_per_aspect_and_a_second_import_adds_none(store, tmp_path):
    path = str(write_jsonl(tmp_path / "uf.jsonl", ULTRAFEEDBACK))
    report = import_rated_completions(store, path)
    assert (report.count_in, report.count_out) == (2, 2)
    assert report.details["layouts"] == {"ultrafeedback": 2}
    assert (report.details["prompts"], report.details["candidates"], report.details["scores"]) == (2, 5, 12)
    assert report.details["unrated_skipped"] == 3  # the N/A honesty ratings
    assert "prefcurate pairs" in report.details["next"]  # the command says what comes next
    stored = scores(store)
    assert stored[("Eight.", "helpfulness")] == 5.0 and stored[("Six, like insects.", "truthfulness")] == 1.0
    assert ("Eight, in four pairs.", "honesty") not in stored and ("Eight, in four pairs.", "truthfulness") in stored
    row = store.con.execute("""SELECT DISTINCT rater, rater_kind, mode, score_source, scale_min, scale_max
                               FROM candidate_scores""").fetchall()
    assert row == [(path, "import", "rating", "stated", 1.0, 5.0)]
    assert store.scalar("SELECT count(DISTINCT call_id) FROM candidate_scores") == 2  # one per source row
    # imported prompts measure; generation does not answer them; the dataset's models are kept
    assert store.con.execute("SELECT DISTINCT in_pool FROM prompts").fetchall() == [(False,)]
    assert store.con.execute("SELECT DISTINCT generator_key FROM candidates").fetchall() == [("import",)]
    assert json.loads(store.scalar("SELECT params FROM candidates WHERE text = 'Eight.'")) == {"model": "m1"}

    again = import_rated_completions(store, path)
    assert again.details["new_prompts"] == again.details["new_candidates"] == again.details["new_scores"] == 0
    assert store.count("candidate_scores") == 12 and store.count("pairs") == 0  # pairs are the pairs stage's


def test_flat_distilabel_and_parquet_layouts(store, tmp_path):
    flat = write_jsonl(tmp_path / "flat.jsonl", [
        {"prompt": "Name a prime.", "completions": [{"text": "7", "ratings": {"correct": 5, "brief": 4}},
                                                   {"response": "9", "ratings": {"correct": 1, "brief": 5}}]},
        {"prompt": "Name a colour.", "completions": [{"text": "Blue.", "rating": 4.5},
                                                    {"text": "Seven.", "rating": 1}]},
    ])
    distilabel = write_jsonl(tmp_path / "distilabel.jsonl", [
        {"instruction": "Capital of Peru?", "generations": ["Lima.", "Cusco.", "I cannot say.", None],
         "ratings": [5, 2, None, None], "rationales": ["right", "wrong", "unparsed", None],
         "model_names": ["a", "b", "c", "d"]},  # d's generation failed: its place is kept, empty
    ])
    # Parquet gives every completion every key any row has: absent ratings come back as nulls
    table = pa.Table.from_pylist([
        {"prompt": "Say hi.", "completions": [{"text": "Hello!", "ratings": {"warmth": 5, "length": None}},
                                              {"text": "k", "ratings": {"warmth": 1, "length": None}}]},
        {"prompt": "Say bye.", "completions": [{"text": "Goodbye!", "ratings": {"warmth": None, "length": 4}},
                                               {"text": "bye bye bye bye", "ratings": {"warmth": None, "length": 2}}]},
    ])
    pq.write_table(table, tmp_path / "flat.parquet")

    assert import_rated_completions(store, str(flat)).details["layouts"] == {"flat": 2}
    report = import_rated_completions(store, str(distilabel))
    assert report.details["layouts"] == {"distilabel": 1} and report.details["unrated_skipped"] == 1
    report = import_rated_completions(store, str(tmp_path / "flat.parquet"), layout="flat")
    assert report.count_out == 2 and report.details["unrated_skipped"] == 4

    stored = scores(store)
    assert stored[("7", "correct")] == 5.0 and stored[("9", "brief")] == 5.0
    assert stored[("Blue.", "overall")] == 4.5 and stored[("Lima.", "overall")] == 5.0
    assert not [key for key in stored if key[0] == "I cannot say."]  # its rating is null: a candidate, unscored
    assert store.scalar("SELECT count(*) FROM candidates WHERE text = 'I cannot say.'") == 1
    assert store.scalar("SELECT count(*) FROM candidates JOIN prompts USING (prompt_id) "
                        "WHERE prompts.text = 'Capital of Peru?'") == 3  # not the failed generation
    assert stored[("Hello!", "warmth")] == 5.0 and ("Hello!", "length") not in stored
    assert stored[("Goodbye!", "length")] == 4.0


def test_bad_rows_are_rejected_naming_file_row_and_field_and_good_rows_are_kept(store, tmp_path):
    good = {"prompt": "Good?", "completions": [{"text": "yes", "rating": 5}, {"text": "no", "rating": 1}]}
    rows = [
        good,
        {"instruction": "Off the scale", "completions": [
            annotated("a", "m", helpfulness="4"), annotated("b", "m", helpfulness="3", honesty="7")]},
        {"prompt": "One completion", "completions": [{"text": "alone", "rating": 3}]},
        {"prompt": "Nothing rated", "completions": [{"text": "a", "rating": "N/A"}, {"text": "b"}]},
        {"prompt": "Not a number", "completions": [{"text": "a", "rating": "great"}, {"text": "b", "rating": 2}]},
        {"prompt": "Answers", "chosen": "x", "rejected": "y"},  # a preference pair, not rated completions
        {"prompt": "Empty answer", "completions": [{"text": " \u200b", "rating": 3}, {"text": "b", "rating": 2}]},
        {**good, "prompt": "Also good?"},
        "{broken json",
    ]
    path = str(write_jsonl(tmp_path / "mixed.jsonl", rows))
    report = import_rated_completions(store, path, max_reject_share=1.0)  # most rows bad on purpose
    assert (report.count_in, report.count_out, report.details["rejected"]) == (9, 2, 7)
    got = rejects(store)
    assert [(row, field) for row, field, _ in got] == [
        (2, "completions[1].annotations.honesty.Rating"), (3, "completions"), (4, "completions"),
        (5, "completions[0].rating"), (6, "completions"), (7, "completions[0].text"), (9, None)]
    reasons = [reason for _, _, reason in got]
    assert reasons[0] == "rating 7 for aspect 'honesty' is off the scale 1-5 (set --scale MIN-MAX)"
    assert reasons[1].startswith("1 completion: at least 2")
    assert reasons[2].startswith("none of its 2 completions has a rating")
    assert "'great' for aspect 'overall' is not a number" in reasons[3]
    assert reasons[4].startswith("missing field; the row has ['chosen', 'prompt', 'rejected']")
    assert reasons[5] == "empty response" and reasons[6].startswith("not valid JSON")
    assert store.con.execute("SELECT DISTINCT source FROM rejects").fetchall() == [(path,)]
    kept = store.con.execute("SELECT text FROM prompts ORDER BY text").fetchall()
    assert kept == [("Also good?",), ("Good?",)]


def test_the_scale_decides_what_is_on_it(store, tmp_path):
    path = str(write_jsonl(tmp_path / "tens.jsonl", [
        {"prompt": "q", "completions": [{"text": "a", "rating": 9}, {"text": "b", "rating": 3}]}]))
    with pytest.raises(StageFailed, match=r"none of its 1 rows could be used.*off the scale 1-5"):
        import_rated_completions(store, path)
    report = import_rated_completions(store, path, scale=Scale.parse("1-10"))
    assert report.count_out == 1
    assert store.con.execute("SELECT DISTINCT scale_min, scale_max FROM candidate_scores").fetchall() == [(1.0, 10.0)]
    with pytest.raises(ValueError, match="MIN < MAX"):
        Scale.parse("5-1")


def test_a_file_of_only_bad_rows_fails_the_stage_after_storing_its_rejects(tmp_path):
    from prefcurate.pipeline import import_ratings_stage

    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": f"q{i}", "completions": [{"text": "a"}]}
                                                for i in range(3)])
    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "s.duckdb")}})
    with pytest.raises(StageFailed, match=r"none of its 3 rows could be used, e.g. row 1, field 'completions': "
                                          r"1 completion: at least 2 are needed to compare \(3 rows like it\)"):
        import_ratings_stage(config, str(path))


def test_pairs_from_the_imported_scores_carry_the_higher_rated_side_as_reference_label(store, tmp_path, monkeypatch):
    import_rated_completions(store, str(write_jsonl(tmp_path / "uf.jsonl", ULTRAFEEDBACK)))
    # mean over aspects: Eight. 5, Eight, in four pairs. 4.5, Six, like insects. 1.33; Fresh bread 4.5, Bread. 3
    report = build_pairs(store, PairingConfig(strategy="best_vs_worst"))
    assert report.details["new_pairs"] == 2 and report.details["prompts_without_scores"] == 0
    best_vs_worst = {("Eight.", "Six, like insects."), ("Fresh bread daily: come in!", "Bread. Cakes. Hello.")}
    assert labelled_pairs(store) == best_vs_worst

    report = build_pairs(store, PairingConfig(strategy="all_with_margin", min_margin=1.0))
    assert report.details["new_pairs"] == 1  # Eight, in four pairs. over Six; Eight. over it is 0.5 apart
    assert labelled_pairs(store) == best_vs_worst | {("Eight, in four pairs.", "Six, like insects.")}
    assert store.scalar("SELECT count(*) FROM pair_labels WHERE n_reference_labels = 1") == 3
    assert store.scalar("SELECT count(*) FROM judgment_votes") == 0  # an imported rating is no judge's vote
    # like imported pairs, pairs labelled by imported ratings are judged only in judge.max_imported_pairs' sample
    from prefcurate.curation.judging.calls import pair_pages, pairs_to_judge
    assert len(pairs_to_judge(store, None)) == 3 and len(pairs_to_judge(store, 1)) == 1
    from prefcurate.curation.judging import calls
    for staged_max in (calls.STAGED_PAIRS_MAX, 0):  # a sample's ids staged first, or (too many) filtered in the joins
        monkeypatch.setattr(calls, "STAGED_PAIRS_MAX", staged_max)
        for sample in (None, 1):  # streamed a page at a time: the same pairs (in the order the joins give)
            assert sorted(pair for page in pair_pages(store, sample, page_pairs=2) for pair in page) \
                == pairs_to_judge(store, sample)


def test_the_command_refuses_a_bad_scale_before_running_anything():
    from typer.testing import CliRunner

    from prefcurate.cli import app

    result = CliRunner().invoke(app, ["import-ratings", "x.jsonl", "--scale", "5-1"])
    assert result.exit_code == 2 and "expected MIN-MAX with MIN < MAX" in result.output


@pytest.mark.slow
def test_the_command_fails_with_one_line_and_exit_1_on_a_file_of_only_bad_rows(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server  # the command's flow runs on it, not on a temporary server of its own
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "completions": [{"text": "a", "rating": 9},
                                                                              {"text": "b", "rating": 2}]}])
    config = tmp_path / "c.yaml"
    config.write_text(f"workdir: {tmp_path / 'out'}\nstore:\n  path: {tmp_path / 's.duckdb'}\n")
    done = subprocess.run([sys.executable, "-m", "prefcurate.cli", "import-ratings", str(bad), "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(f"error: {bad}: none of its 1 rows could be used, e.g. row 1, field "
                           "'completions[0].rating': rating 9 for aspect 'overall' is off the scale 1-5")
