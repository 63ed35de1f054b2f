"""Reading input at its edges (issue 23, "no silent wrong label"): long CSV fields, reads that keep
none or too few of their rows, blanks made of invisible characters, rows nested too deep or holding
huge numbers, broken gzip, folders as sources. Each case: one line naming file, row and field, the
good rows kept, the bad ones in `rejects`, and a failed stage when the read went wrong as a whole."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import IngestConfig, config_from_dict
from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.intake.preference_pairs import import_preference_pairs
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.intake.sources import IngestError
from tests.support.inputs import rejects, write_jsonl

ZERO_WIDTH_BLANKS = ["\u200b\u200b", "\ufeff", "\u2060\u200d", "\u00a0", " \t", "\u200c\u3000\u180e"]


def texts(store):
    return sorted(row[0] for row in store.con.execute("SELECT text FROM prompts").fetchall())


def gzip_cut_after(data: bytes, keep: int) -> bytes:
    """Gzip data whose first `keep` bytes decompress and that then stops, as a cut-off download does."""
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(data[:keep]) + compressor.flush(zlib.Z_SYNC_FLUSH)


# -- item 3: rows lost with exit 0 -------------------------------------------------------------------

def test_a_csv_field_longer_than_the_csv_module_allows_is_read_with_the_rows_after_it(tmp_path, store):
    long_prompt = "Summarise this: " + "word " * 60_000  # 300,016 characters; JSONL takes such a prompt too
    path = tmp_path / "p.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["prompt"], ["before"], [long_prompt], ["after"]])
    limit = csv.field_size_limit()
    report = ingest_prompts(store, IngestConfig(source=str(path)))
    assert report.count_in == 3 and texts(store) == sorted(["before", long_prompt, "after"]) and rejects(store) == []
    assert csv.field_size_limit() == limit  # the process-wide limit is only raised while reading


def test_an_import_that_keeps_none_of_its_rows_fails_naming_the_columns_found_and_expected(tmp_path, store):
    path = write_jsonl(tmp_path / "arena.jsonl", [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"}
                                                   for i in range(2000)])
    with pytest.raises(StageFailed) as failed:
        import_preference_pairs(store, str(path))
    message = str(failed.value)
    assert message.startswith(f"{path}: none of its 2000 rows could be used, e.g. row 1, field 'chosen': missing field")
    assert "['prompt', 'response_a', 'response_b']" in message and "(2000 rows like it)" in message
    assert "\n" not in message
    stored = store.con.execute("SELECT count(*), any_value(reason) FROM rejects WHERE stage = 'import'").fetchone()
    assert stored[0] == 2000 and "expected chosen and rejected" in stored[1]
    assert store.count("pairs") == 0


def test_an_ingest_that_keeps_none_of_its_rows_fails_and_keeps_the_rejects(tmp_path, store):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": ""}, {"prompt": 7}, {"prompt": "\u200b"}])
    with pytest.raises(StageFailed, match=r"p\.jsonl: none of its 3 rows could be used, e\.g\. row 1, field "
                                          r"'prompt': empty prompt \(2 rows like it\)"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert [(row, field) for row, field, _ in rejects(store)] == [(1, "prompt"), (2, "prompt"), (3, "prompt")]


def test_more_rejects_than_the_allowed_share_fail_the_read_after_storing_the_good_rows(tmp_path, store):
    rows = [{"prompt": f"good {i}"} for i in range(4)] + [{"prompt": ""} for _ in range(6)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(StageFailed, match=r"6 of 10 rows rejected \(60%, above ingest\.max_reject_share 0\.5\), "
                                          r"e\.g\. row 5, field 'prompt': empty prompt \(6 rows like it\); the 4 good "
                                          r"rows and the rejects are stored"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert texts(store) == [f"good {i}" for i in range(4)] and len(rejects(store)) == 6
    report = ingest_prompts(store, IngestConfig(source=str(path), max_reject_share=0.6))  # 60% is not above 0.6
    assert report.count_out == 4

    pairs = [{"prompt": f"q{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(2)] + \
        [{"prompt": f"q{i}", "chosen": "same", "rejected": "same"} for i in range(2, 5)]
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    with pytest.raises(StageFailed, match=r"3 of 5 rows rejected \(60%, above ingest\.max_reject_share 0\.5\)"):
        import_preference_pairs(store, str(path))
    assert store.count("reference_labels") == 2
    assert import_preference_pairs(store, str(path), max_reject_share=0.75).count_out == 2


@pytest.mark.slow
def test_the_commands_fail_with_one_line_and_exit_1_when_a_read_keeps_nothing_or_breaks_off(tmp_path):
    # Real processes: each command runs its flow (Prefect's console handler outlives CliRunner's streams).
    arena = write_jsonl(tmp_path / "arena.jsonl", [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"}
                                                   for i in range(2000)])
    lines = b"".join(json.dumps({"prompt": f"row {i}"}).encode() + b"\n" for i in range(1, 101))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip_cut_after(lines, lines.index(b'{"prompt": "row 51"}') + 5))
    config = tmp_path / "c.yaml"
    config.write_text(f"workdir: {tmp_path / 'out'}\nstore:\n  path: {tmp_path / 's.duckdb'}\n")
    cli = [sys.executable, "-m", "prefcurate.cli"]
    log = tmp_path / "out" / "logs" / "prefcurate.log"

    def one_error_line(*arguments: str) -> str:
        done = subprocess.run(cli + list(arguments) + ["--config", str(config)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        [line] = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        return line

    line = one_error_line("import-pairs", str(arena))
    assert line.startswith(f"error: {arena}: none of its 2000 rows could be used, e.g. row 1, field 'chosen': "
                           "missing field; the row has ['prompt', 'response_a', 'response_b'], expected chosen and "
                           "rejected") and line.endswith(f"[log: {log}]")
    line = one_error_line("ingest", "--source", str(cut))
    assert line.startswith(f"error: {cut}: row 51: the gzip data ends early: the file stops at byte "
                           f"{cut.stat().st_size} ") and "the 50 good rows before it are stored" in line


def test_the_gold_import_of_the_pipeline_fails_on_a_file_it_cannot_use(tmp_path):
    from prefcurate.pipeline import gold_stage

    path = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"}
                                                 for i in range(20)])
    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "s.duckdb")},
                               "gold": {"source": str(path), "sample": 10}})
    with pytest.raises(StageFailed, match=r"none of its 10 rows could be used.*'response_a'"):
        gold_stage(config)


# -- item 5: blanks made of invisible characters -----------------------------------------------------

def test_prompts_made_only_of_invisible_characters_are_rejected_as_empty(tmp_path, store):
    rows = [{"prompt": blank} for blank in ZERO_WIDTH_BLANKS] + [{"prompt": f"visible {i}\u200b"} for i in range(6)]
    report = ingest_prompts(store, IngestConfig(source=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    assert report.count_out == 6 and texts(store) == [f"visible {i}\u200b" for i in range(6)]  # kept as written
    assert rejects(store) == [(row, "prompt", "empty prompt") for row in range(1, 7)]


def test_imported_pairs_use_the_same_blank_rule_for_prompts_and_responses(tmp_path, store):
    rows = [{"prompt": "q0", "chosen": "fine", "rejected": "also fine"},
            {"prompt": "\ufeff", "chosen": "a", "rejected": "b"},
            {"prompt": "q2", "chosen": "\u200b\u200b", "rejected": "b"},
            {"prompt": "q3", "chosen": "a", "rejected": "\u2060\u00a0"},
            {"prompt": "q4", "chosen": "same\u200b", "rejected": "\ufeffsame"},
            {"prompt": "q5", "chosen": "x", "rejected": "y"}]
    report = import_preference_pairs(store, str(write_jsonl(tmp_path / "pairs.jsonl", rows)), max_reject_share=1.0)
    assert report.count_out == 2
    assert rejects(store) == [(2, "prompt", "empty prompt"), (3, "chosen", "empty response"),
                              (4, "rejected", "empty response"), (5, "rejected", "chosen and rejected are identical")]


def test_a_check_column_of_invisible_characters_is_no_check(tmp_path, store):
    rows = [{"prompt": "What is 2 + 2?", "reference_answer": "\u200b"},
            {"prompt": "And 3 + 3?", "reference_answer": "6"}]
    report = ingest_prompts(store, IngestConfig(source=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    assert report.details["checks"] == {"math": 1} and rejects(store) == []


# -- item 7: rows nested too deep, numbers too long ----------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" * 5000


def test_a_jsonl_row_nested_100000_deep_or_with_a_5000_digit_number_is_one_reject(tmp_path, store):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "deep", "x": ' + DEEP + '}\n{"prompt": "huge", "n": ' + HUGE
                    + '}\n{"prompt": "four", "x": ' + "[" * 150 + "]" * 150 + '}\n{"prompt": "five"}\n'
                    '{"prompt": "six"}\n')
    report = ingest_prompts(store, IngestConfig(source=str(path)))
    assert report.count_in == 6 and texts(store) == ["five", "one", "six"]
    assert rejects(store) == [(2, None, "nested deeper than 100 levels"),
                              (3, None, "a number with more than 4300 digits"),
                              (4, "x", "nested deeper than 100 levels")]


def test_a_json_array_with_a_deep_or_huge_element_keeps_its_other_elements(tmp_path, store):
    path = tmp_path / "p.json"
    path.write_text('[\n  {"prompt": "one"},\n  {"prompt": "deep", "x": ' + DEEP + '},\n  {"prompt": "huge", "n": '
                    + HUGE + '},\n  {"prompt": "broken",},\n  {"prompt": "five"},\n  {"prompt": "six"},\n'
                    '  {"prompt": "seven"}\n]\n')
    report = ingest_prompts(store, IngestConfig(source=str(path)))
    assert report.count_in == 7 and texts(store) == ["five", "one", "seven", "six"]
    assert [(row, field) for row, field, _ in rejects(store)] == [(2, None), (3, None), (4, None)]
    assert rejects(store)[2][2].startswith("not valid JSON: Expecting property name")


def test_a_json_array_whose_brackets_never_close_keeps_the_elements_before(tmp_path, store):
    path = tmp_path / "p.json"
    path.write_text('[{"prompt": "one"}, {"prompt": "two"}, {"prompt": "three", "x": [1, 2}\n')
    with pytest.raises(StageFailed, match=r"p\.json: row 3: the file ends at element 3 \(from line 1, column 40\)"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert texts(store) == ["one", "two"]


def test_a_parquet_value_python_cannot_hold_rejects_its_row_naming_the_column(tmp_path, store):
    table = pa.table({"prompt": ["one", "two", "three"],
                      "asked_at": pa.array([0, 2**62, 1], pa.timestamp("us"))})  # year ~148,000
    pq.write_table(table, tmp_path / "p.parquet")
    report = ingest_prompts(store, IngestConfig(source=str(tmp_path / "p.parquet")))
    assert report.count_out == 2 and texts(store) == ["one", "three"]
    [(row, field, reason)] = rejects(store)
    assert (row, field) == (2, "asked_at") and "Python cannot hold" in reason


def test_a_rejects_raw_column_is_written_whatever_the_value_holds():
    from prefcurate.curation.intake.sources import raw_text

    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert raw_text(deep).startswith("[[")
    assert raw_text({"n": 10**5000}) == "{'n': <an integer of 16610 bits>}"
    assert raw_text("x" * 10_000) == "x" * 500 and raw_text("\ud800") == "\\ud800"


# -- item 8: gzip ------------------------------------------------------------------------------------

def test_a_truncated_jsonl_gz_keeps_the_rows_before_the_break_and_fails_naming_file_and_byte(tmp_path, store):
    lines = b"".join(json.dumps({"prompt": f"row {i}"}).encode() + b"\n" for i in range(1, 201))
    keep = lines.index(b'{"prompt": "row 101"}') + 9  # the break falls inside row 101
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip_cut_after(lines, keep))
    with pytest.raises(StageFailed) as failed:
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert str(failed.value) == (
        f"{path}: row 101: the gzip data ends early: the file stops at byte {path.stat().st_size} inside a compressed "
        f"block (cut off in a download or copy?), after {keep} bytes of text; the 100 good rows before it are stored")
    assert store.count("prompts") == 100 and rejects(store)[0][:2] == (101, None)


def test_truncated_gzipped_csv_and_json_arrays_keep_their_rows_before_the_break(tmp_path, store):
    text = "prompt\n" + "".join(f"csv row {i}\n" for i in range(50))
    path = tmp_path / "p.csv.gz"
    path.write_bytes(gzip_cut_after(text.encode(), text.index("csv row 30") + 4))
    with pytest.raises(StageFailed, match=r"p\.csv\.gz: row 32: the gzip data ends early.*the 30 good rows before"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    array = json.dumps([{"prompt": f"json row {i}"} for i in range(50)], indent=1)
    path = tmp_path / "p.json.gz"
    path.write_bytes(gzip_cut_after(array.encode(), array.index("json row 20") + 4))
    with pytest.raises(StageFailed, match=r"p\.json\.gz: row 21: the gzip data ends early.*the 20 good rows before"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert store.count("prompts") == 50


def test_a_gzipped_csv_is_decompressed(tmp_path, store):
    (tmp_path / "p.csv.gz").write_bytes(gzip.compress("prompt,id\nbonjour,1\ncafé,2\n".encode()))
    ingest_prompts(store, IngestConfig(source=str(tmp_path / "p.csv.gz"), id_column="id"))
    assert texts(store) == ["bonjour", "café"]


def test_a_gz_file_that_is_not_gzip_is_named(tmp_path, store):
    (tmp_path / "p.jsonl.gz").write_text('{"prompt": "plain text"}\n')
    with pytest.raises(IngestError, match=r"p\.jsonl\.gz: the name ends in \.gz but the file is not gzip data"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "p.jsonl.gz")))


def test_damaged_gzip_data_is_named_with_its_byte_range(tmp_path, store):
    data = bytearray(gzip.compress(b"".join(json.dumps({"prompt": f"r{i}"}).encode() + b"\n" for i in range(3000))))
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    (tmp_path / "p.jsonl.gz").write_bytes(bytes(data))
    with pytest.raises(StageFailed, match=r"p\.jsonl\.gz: row \d+: damaged gzip data in bytes 0-\d+ of the file"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "p.jsonl.gz")))


def test_a_gold_sample_from_a_truncated_gz_names_the_file(tmp_path):
    from prefcurate.pipeline import gold_stage

    lines = b"".join(json.dumps({"prompt": f"q{i}", "chosen": "c", "rejected": "r"}).encode() + b"\n"
                     for i in range(99))
    path = tmp_path / "gold.jsonl.gz"
    path.write_bytes(gzip_cut_after(lines, len(lines) // 2))
    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "s.duckdb")},
                               "gold": {"source": str(path), "sample": 10}})
    with pytest.raises(IngestError, match=rf"^{path}: the gzip data ends early: the file stops at byte \d+"):
        gold_stage(config)


# -- item 9: a folder as the source --------------------------------------------------------------------

def test_a_folder_is_read_only_when_saved_by_datasets_however_its_path_is_written(tmp_path, store, monkeypatch):
    import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").mkdir()
    write_jsonl(tmp_path / "plain" / "p.jsonl", [{"prompt": "in a plain folder"}])
    for written in ("plain", "./plain", "plain/", str(tmp_path / "plain")):
        with pytest.raises(IngestError, match=rf"^{written}: a folder, but not one saved with datasets' save_to_disk"):
            ingest_prompts(store, IngestConfig(source=written))
    datasets.Dataset.from_dict({"prompt": ["saved"]}).save_to_disk(tmp_path / "saved")
    for written in ("saved", "./saved/", str(tmp_path / "saved")):
        assert ingest_prompts(store, IngestConfig(source=written)).count_in == 1
    assert texts(store) == ["saved"]
