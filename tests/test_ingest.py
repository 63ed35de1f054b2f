import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import IngestConfig
from prefcurate.core.hashing import normalize_text, prompt_id
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.intake.sources import IngestError
from tests.support.inputs import rejects, write_jsonl


def test_embedded_prompts_ingest_by_default(store):
    report = ingest_prompts(store, IngestConfig())
    assert report.count_in == report.count_out == store.count("prompts") > 20


def test_jsonl_with_bad_rows_keeps_good_ones_and_rejects_the_rest(tmp_path, store):
    path = tmp_path / "p.jsonl"
    lines = [
        json.dumps({"q": "What is DuckDB?"}),
        json.dumps({"q": "   "}),                      # empty prompt
        "{not json",                                     # broken JSON
        json.dumps({"q": 42}),                           # wrong type
        json.dumps({"other": "x"}),                      # missing field
        json.dumps({"q": "what   is duckdb?"}),         # duplicate after normalization
        json.dumps({"q": "Explain Parquet."}),
    ]
    data = ("\n".join(lines) + "\n").encode() + b'{"q": "caf\xe9 latin-1"}\n'  # not UTF-8
    path.write_bytes(data)
    # 5 of 8 rows bad on purpose: above the default ingest.max_reject_share, which would fail the read
    report = ingest_prompts(store, IngestConfig(source=str(path), prompt_column="q", max_reject_share=1.0))
    assert report.count_in == 8
    assert report.count_out == 2
    assert report.details["duplicates_in_source"] == 1
    assert report.details["rejected"] == 5
    assert rejects(store) == [
        (2, "q", "empty prompt"),
        (3, None, "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
        (4, "q", "prompt must be a string, got int"),
        (5, "q", "missing field"),
        (8, None, "not valid UTF-8 (byte 10 of the line)"),
    ]
    assert {r[0] for r in store.con.execute("SELECT text FROM prompts").fetchall()} == {"What is DuckDB?", "Explain Parquet."}


def test_reingesting_adds_nothing(tmp_path, store):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": ""}])
    first = ingest_prompts(store, IngestConfig(source=str(path)))
    second = ingest_prompts(store, IngestConfig(source=str(path)))
    assert first.details["new_prompts"] == 2 and second.details["new_prompts"] == 0
    assert second.details["already_stored"] == 2
    assert store.count("prompts") == 2 and store.count("rejects") == 1


def test_csv_with_column_mapping_and_bad_bytes(tmp_path, store):
    path = tmp_path / "p.csv"
    path.write_bytes(b"id,question\n1,How do tides work?\n2,\n3,bad \xff byte\n4,How do tides work?\n")
    report = ingest_prompts(store, IngestConfig(source=str(path), prompt_column="question", id_column="id"))
    assert report.count_out == 1
    assert store.scalar("SELECT external_id FROM prompts") == "1"
    assert rejects(store) == [(3, "question", "empty prompt"), (4, "question", "not valid UTF-8")]


def test_parquet_and_datasets_sources(tmp_path, store):
    import datasets

    pq.write_table(pa.table({"text": ["one", "two", None]}), tmp_path / "p.parquet")
    report = ingest_prompts(store, IngestConfig(source=str(tmp_path / "p.parquet"), prompt_column="text"))
    assert report.count_out == 2 and rejects(store) == [(3, "text", "prompt must be a string, got NoneType")]

    datasets.Dataset.from_dict({"instruction": ["three", "one"]}).save_to_disk(tmp_path / "ds")
    report = ingest_prompts(store, IngestConfig(source=str(tmp_path / "ds"), prompt_column="instruction"))
    assert report.details["new_prompts"] == 1 and report.details["already_stored"] == 1
    assert store.count("prompts") == 3


def test_whole_file_problems_raise_and_store_nothing(tmp_path, store):
    write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "keep me"}])
    ingest_prompts(store, IngestConfig(source=str(tmp_path / "ok.jsonl")))

    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(IngestError, match=r"empty\.jsonl: file is empty"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "empty.jsonl")))

    write_jsonl(tmp_path / "wrong.jsonl", [{"question": "a"}, {"question": "b"}])
    with pytest.raises(IngestError, match=r"wrong\.jsonl: no row has the field 'prompt'.*fields seen: \['question'\]"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "wrong.jsonl")))

    pq.write_table(pa.table({"question": ["a"]}), tmp_path / "wrong.parquet")
    with pytest.raises(IngestError, match=r"no column 'prompt'.*columns are \['question'\]"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "wrong.parquet")))

    with pytest.raises(IngestError, match="file not found"):
        ingest_prompts(store, IngestConfig(source=str(tmp_path / "missing.jsonl"), format="jsonl"))

    assert [r[0] for r in store.con.execute("SELECT text FROM prompts").fetchall()] == ["keep me"]
    assert store.count("rejects") == 0


def test_normalization_collapses_case_width_and_spacing():
    assert normalize_text("  Ｈello\tWORLD \n") == "hello world"
    assert prompt_id("Hello world") == prompt_id("hello   WORLD ")
    assert prompt_id("Hello world") != prompt_id("Hello world!")
