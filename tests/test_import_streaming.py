"""import-pairs and import-ratings stream: a file of any size goes through in batches, each a commit,
with what one batch holds in memory; the result is the same as reading it in one go."""

import csv
import json
import random
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.store import Store
from prefcurate.curation.intake import preference_pairs
from prefcurate.curation.intake.preference_pairs import import_preference_pairs
from prefcurate.curation.intake import rated_completions
from prefcurate.curation.intake.rated_completions import import_rated_completions
from prefcurate.curation.intake import sources
from prefcurate.curation.intake.sources import read_source
from tests.support.inputs import write_jsonl


def messy_rows(seed: int, n: int = 60) -> list[dict]:
    """Rows over few prompts and answers, so pairs repeat: the same winner again (a duplicate), the
    other winner (a contradiction), and some rows no reader can use."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, x, y = f"Question {rng.randrange(4)}?", f"Answer {rng.randrange(3)}.", f"Answer {rng.randrange(3)}."
        if rng.random() < 0.1:
            rows.append({"prompt": prompt, "chosen": x})  # no rejected
        else:
            rows.append({"prompt": prompt, "chosen": x, "rejected": y})
    return rows


def stored(store: Store) -> dict:
    return {
        "labels": store.con.execute("SELECT pair_id, winner, source_row FROM reference_labels ORDER BY ALL").fetchall(),
        "rejects": store.con.execute("SELECT source_row, field, reason FROM rejects ORDER BY ALL").fetchall(),
        "prompts": store.con.execute("SELECT prompt_id, source_row, in_pool FROM prompts ORDER BY ALL").fetchall(),
        "candidates": store.count("candidates"), "pairs": store.count("pairs")}


def one_batch_and_batches_of_three(tmp_path, monkeypatch, module, run_import, what_is_stored) -> tuple[dict, int, dict]:
    """The same import in one batch and in batches of 3 rows (the store let go after row 10), each
    into a fresh store: both must store and report the same; returns (stored, kept, details)."""
    results = []
    for batch_rows in (10**6, 3):
        monkeypatch.setattr(module, "BATCH_ROWS", batch_rows)
        monkeypatch.setattr(module, "HELD_ROWS", min(batch_rows, 10))
        with Store(tmp_path / f"store-{batch_rows}.duckdb") as store:
            report = run_import(store)
            results.append((what_is_stored(store), report.count_in, report.count_out, report.details))
    assert results[0] == results[1]
    return results[0][0], results[0][2], results[0][3]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_import_in_batches_of_three_rows_stores_and_reports_what_one_batch_does(tmp_path, monkeypatch, seed):
    path = str(write_jsonl(tmp_path / "prefs.jsonl", messy_rows(seed)))
    one, kept, details = one_batch_and_batches_of_three(
        tmp_path, monkeypatch, preference_pairs,
        lambda store: import_preference_pairs(store, path, into_pool=True, max_reject_share=1.0), stored)
    assert details["duplicates_in_source"] > 0 and any("contradicts row" in r for _, _, r in one["rejects"])
    assert kept + details["duplicates_in_source"] + details["rejected"] == 60


def imported_twice(store: Store, monkeypatch, module, run_import, what_is_stored) -> tuple:
    """The reports of importing the same file twice in batches of 4 rows; the second stores nothing new."""
    monkeypatch.setattr(module, "BATCH_ROWS", 4)
    first = run_import(store)
    before = what_is_stored(store)
    again = run_import(store)
    assert what_is_stored(store) == before
    return first, again


def test_importing_again_keeps_every_count_and_adds_nothing(store, tmp_path, monkeypatch):
    path = str(write_jsonl(tmp_path / "prefs.jsonl", messy_rows(3)))
    first, again = imported_twice(store, monkeypatch, preference_pairs,
                                  lambda store: import_preference_pairs(store, path, max_reject_share=1.0), stored)
    assert (again.count_out, again.details["duplicates_in_source"], again.details["rejected"]) == \
        (first.count_out, first.details["duplicates_in_source"], first.details["rejected"])
    assert again.details["new_reference_labels"] == 0 and again.details["new_rejects"] == 0


def test_a_later_version_of_a_file_that_flips_a_stored_label_has_that_row_rejected(store, tmp_path):
    """Not kept silently as the old label: the flipped row is refused, naming the row it contradicts."""
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"}]
    path = tmp_path / "prefs.jsonl"
    import_preference_pairs(store, str(write_jsonl(path, rows)))
    rows.append({"prompt": "2+2?", "chosen": "5", "rejected": "4"})
    report = import_preference_pairs(store, str(write_jsonl(path, rows)))
    assert report.count_out == 2 and report.details["rejected"] == 1
    assert store.con.execute("SELECT source_row, field, reason FROM rejects").fetchall() == [
        (3, "chosen", "contradicts row 2 (same pair, other winner)")]
    rows[0] = {"prompt": "Capital of France?", "chosen": "Lyon.", "rejected": "Paris."}  # row 1 itself flips
    report = import_preference_pairs(store, str(write_jsonl(path, rows)), max_reject_share=1.0)
    assert report.count_out == 1 and report.details["rejected"] == 2
    assert store.one("SELECT reason FROM rejects WHERE source_row = 1") == (
        "contradicts row 1 as an earlier import of this source stored it (same pair, other winner)",)


# -- memory: one batch, not the file --------------------------------------------------------------

def _rows(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: " + "why " * 100, "chosen": f"Because {i}. " + "yes " * 150,
             "rejected": f"No {i}. " + "no " * 150} for i in range(n)]


def _write(fmt: str, path, rows: list[dict]) -> str:
    if fmt == "jsonl":
        return str(write_jsonl(path.with_suffix(".jsonl"), rows))
    if fmt == "json":  # one array, pretty-printed
        path.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return str(path.with_suffix(".json"))
    if fmt == "csv":
        with open(path.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return str(path.with_suffix(".csv"))
    pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".parquet"), row_group_size=500)
    return str(path.with_suffix(".parquet"))


def _peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_reading_a_file_four_times_as_long_takes_no_more_memory(tmp_path, monkeypatch, fmt):
    """The readers hand rows out as they read them (a whole-file read peaks four times as high)."""
    def read_all(path: str):
        return lambda: sum(1 for _ in read_source(path, "jsonl" if fmt == "json" else fmt, "train")[1])

    small, large = _write(fmt, tmp_path / "small", _rows(1500)), _write(fmt, tmp_path / "large", _rows(6000))
    monkeypatch.setattr(sources, "_TABLE_BATCH", 256)  # the batch, not the file, bounds a Parquet read
    peaks = [_peak_bytes(read_all(small)), _peak_bytes(read_all(large))]
    # a whole-file read peaks at least 5 MB higher for the large file (7 MB of rows against 1.8)
    assert peaks[1] - peaks[0] < 1_000_000, peaks


def import_peaks(tmp_path, monkeypatch, module, batch_rows: int, files: dict, run_import, count) -> list[int]:
    """Peak traced bytes of importing each of `files` (name -> (path, rows)) into a fresh store in
    batches of batch_rows; count(store) must then be what each file's rows store."""
    monkeypatch.setattr(module, "BATCH_ROWS", batch_rows)
    monkeypatch.setattr(module, "HELD_ROWS", batch_rows)
    peaks = []
    for name, (path, n) in files.items():
        with Store(tmp_path / f"{name}.duckdb") as store:
            peaks.append(_peak_bytes(lambda: run_import(store, path)))
            assert count(store) == n
    return peaks


def test_importing_a_file_four_times_as_long_takes_no_more_memory(tmp_path, monkeypatch):
    files = {name: (_write("jsonl", tmp_path / name, _rows(n)), n) for name, n in (("small", 1500), ("large", 6000))}
    peaks = import_peaks(tmp_path, monkeypatch, preference_pairs, 500, files, import_preference_pairs,
                         lambda store: store.count("reference_labels"))
    assert peaks[1] - peaks[0] < 2_000_000, peaks  # holding every row would add ~10 MB


# -- import-ratings -------------------------------------------------------------------------------------

def rated_rows(seed: int, n: int = 60) -> list[dict]:
    """Flat rated rows over few prompts and answers: whole rows repeat (duplicates in the source),
    prompts and answers repeat across rows, and some rows are bad (one completion, off the scale)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        completions = [{"text": f"Answer {rng.randrange(3)}.", "rating": rng.choice([1, 5, 9])}
                       for _ in range(rng.choice([1, 2, 2, 2]))]
        rows.append({"prompt": f"Question {rng.randrange(3)}?", "completions": completions})
    return rows


def stored_scores(store: Store) -> dict:
    return {
        "scores": store.con.execute("SELECT score_id, call_id, candidate_id, aspect, score FROM candidate_scores "
                                    "ORDER BY ALL").fetchall(),
        "rejects": store.con.execute("SELECT source_row, field, reason FROM rejects ORDER BY ALL").fetchall(),
        "prompts": store.con.execute("SELECT prompt_id, source_row, in_pool FROM prompts ORDER BY ALL").fetchall(),
        "candidates": store.con.execute("SELECT candidate_id FROM candidates ORDER BY ALL").fetchall()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_import_ratings_in_batches_of_three_rows_stores_and_reports_what_one_batch_does(tmp_path, monkeypatch, seed):
    path = str(write_jsonl(tmp_path / "rated.jsonl", rated_rows(seed)))
    one, kept, details = one_batch_and_batches_of_three(
        tmp_path, monkeypatch, rated_completions,
        lambda store: import_rated_completions(store, path, into_pool=True, max_reject_share=1.0), stored_scores)
    assert details["duplicates_in_source"] > 0 and details["rejected"] > 0  # the rows above make both
    assert kept + details["duplicates_in_source"] + details["rejected"] == 60
    assert (details["prompts"], details["candidates"], details["scores"]) == \
        (len(one["prompts"]), len(one["candidates"]), len(one["scores"]))  # distinct over the file, not per batch


def test_importing_ratings_again_keeps_every_count_and_adds_nothing(store, tmp_path, monkeypatch):
    path = str(write_jsonl(tmp_path / "rated.jsonl", rated_rows(3)))
    first, again = imported_twice(store, monkeypatch, rated_completions,
                                  lambda store: import_rated_completions(store, path, max_reject_share=1.0),
                                  stored_scores)
    assert {key: again.details[key] for key in ("prompts", "candidates", "scores", "duplicates_in_source", "rejected")} \
        == {key: first.details[key] for key in ("prompts", "candidates", "scores", "duplicates_in_source", "rejected")}
    assert again.count_out == first.count_out
    assert again.details["new_scores"] == again.details["new_candidates"] == again.details["new_rejects"] == 0


def _rated(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: " + "why " * 100,
             "completions": [{"text": f"Answer {i}.{k} " + "yes " * 150, "rating": k + 1} for k in range(3)]}
            for i in range(n)]


def test_importing_ratings_from_a_file_four_times_as_long_takes_no_more_memory(tmp_path, monkeypatch):
    files = {name: (_write("json", tmp_path / name, _rated(n)), 3 * n) for name, n in (("small", 900), ("large", 3600))}
    peaks = import_peaks(tmp_path, monkeypatch, rated_completions, 300, files, import_rated_completions,
                         lambda store: store.count("candidate_scores"))  # three rated completions a row
    assert peaks[1] - peaks[0] < 2_000_000, peaks  # holding every row would add ~10 MB
