"""Bad input and broken endpoints, each as a user meets them (issue 16): one clear line naming the
file, row and field, good rows kept, bad rows in `rejects`, no secret anywhere it could leak."""

from __future__ import annotations

import json
import logging

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.core.config import ConfigError, CurateConfig, IngestConfig, load_config
from prefcurate.core.stage_report import StageFailed
from prefcurate.core.store import Store, StoreError
from prefcurate.curation.funnel.decontaminate import CurationError, _benchmark_relation
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.intake.sources import IngestError, read_source
from prefcurate.curation.judging.verdicts import parse_verdict
from tests.support.judging import add_judgeable_pairs, judge_config, run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer

CANARY = "sk-canary-4f1d9c2e7b"


def rejects(store):
    return store.con.execute("SELECT source_row, field, reason FROM rejects ORDER BY source_row").fetchall()


def texts(store):
    return sorted(row[0] for row in store.con.execute("SELECT text FROM prompts").fetchall())


# -- config ------------------------------------------------------------------------------------

def test_a_key_given_twice_in_a_yaml_config_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  path: a.duckdb\ntrain:\n  epochs: 1\nstore:\n  path: b.duckdb\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 5, column 1: .*key 'store' is given twice \(first on line 1\)"):
        load_config(path)


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b'workdir: out\nstore:\n  path: "caf\xe9.duckdb"\n')
    with pytest.raises(ConfigError, match=r"c.yaml: line 3: not valid UTF-8 \(byte \d+: 0xe9\)"):
        load_config(path)


def test_a_utf8_bom_in_a_config_is_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfworkdir: elsewhere\n")
    assert str(load_config(path).workdir) == "elsewhere"


# -- input files ---------------------------------------------------------------------------------

def test_a_lone_surrogate_rejects_its_row_and_keeps_the_rest(tmp_path, store):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "good one"}\n{"prompt": "x \\ud800"}\n{"prompt": "good two", "meta": ["\\udfff"]}\n'
                    '{"prompt": "good three"}\n')
    report = ingest_prompts(store, IngestConfig(source=str(path)))
    assert report.count_in == 4 and report.count_out == 2
    assert texts(store) == ["good one", "good three"]
    assert [(row, field) for row, field, _ in rejects(store)] == [(2, "prompt"), (3, "meta")]
    assert "lone surrogate" in rejects(store)[0][2]
    assert store.scalar("SELECT raw FROM rejects WHERE source_row = 2").rstrip() == '{"prompt": "x \\ud800"}'


def test_a_byte_order_mark_does_not_reject_the_first_row(tmp_path, store):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"prompt": "first"}\n{"prompt": "second"}\n')
    csv = tmp_path / "p.csv"
    csv.write_bytes(b"\xef\xbb\xbfprompt,id\nthird,1\n")
    ingest_prompts(store, IngestConfig(source=str(jsonl)))
    ingest_prompts(store, IngestConfig(source=str(csv)))
    assert texts(store) == ["first", "second", "third"] and rejects(store) == []


def test_an_unterminated_csv_quote_stops_the_read_naming_the_line_and_keeps_the_rows_before(tmp_path, store):
    """The rows after it cannot be read: a read that breaks off fails (exit 1), like a cut gzip file."""
    path = tmp_path / "p.csv"
    path.write_text('prompt\nfine one\n"fine, two"\n"broken\nswallowed\n')
    with pytest.raises(StageFailed, match=r"p.csv: row 4: not valid CSV from this line on .*unterminated quote.*"
                                          r"the 2 good rows before it are stored"):
        ingest_prompts(store, IngestConfig(source=str(path)))
    assert texts(store) == ["fine one", "fine, two"]
    [(row, _field, reason)] = rejects(store)
    assert row == 4 and "unterminated quote" in reason


def test_a_csv_row_with_more_fields_than_the_header_is_rejected(tmp_path, store):
    path = tmp_path / "p.csv"
    path.write_text("prompt,id\nok,1\nnot, quoted,2\n")
    ingest_prompts(store, IngestConfig(source=str(path)))
    assert texts(store) == ["ok"]
    assert rejects(store) == [(3, None, "3 fields where the header names 2 (an unquoted separator?)")]


def test_a_pretty_printed_json_array_is_read_as_rows(tmp_path, store):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "one"}, {"prompt": "two"}, "not an object"], indent=2))
    report = ingest_prompts(store, IngestConfig(source=str(path)))
    assert texts(store) == ["one", "two"] and report.count_in == 3
    assert rejects(store) == [(3, None, "expected a JSON object, got str")]


def test_repeated_ids_are_reported(tmp_path, store, caplog):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "id": i % 2}) + "\n" for i in range(4)))
    with caplog.at_level(logging.WARNING):
        report = ingest_prompts(store, IngestConfig(source=str(path), id_column="id"))
    assert report.details["repeated_ids"] == 2
    assert "2 rows repeat an earlier row's id (e.g. '0' on rows 1 and 3)" in caplog.text


def test_a_missing_path_is_not_taken_for_a_hub_dataset(tmp_path):
    with pytest.raises(IngestError, match="no such file or folder"):
        read_source(str(tmp_path / "prompts"), "datasets", "train")
    with pytest.raises(IngestError, match="^data/prompts_v2: no such file or folder, and not a dataset"):
        read_source("data/prompts_v2", "datasets", "train")


def test_a_bad_line_in_a_decontamination_benchmark_is_named(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    benchmark = CurateConfig(decontamination={"benchmarks": [{"name": "mine", "path": str(path)}]}) \
        .decontamination.benchmarks[0]
    with pytest.raises(CurationError, match=r"benchmarks\[mine\]: .*bench.jsonl: line 2: not valid JSON"):
        _benchmark_relation(duckdb.connect(), benchmark)


# -- the store -------------------------------------------------------------------------------------

def _a_store_with_data(path):
    with Store(path) as store:
        store.con.execute("CREATE TABLE filler AS SELECT range AS i, md5(range::VARCHAR) || md5((range * 7)::VARCHAR) "
                          "AS s FROM range(300000)")
        store.con.execute("CHECKPOINT")


def test_a_truncated_store_fails_naming_the_file(tmp_path):
    path = tmp_path / "s.duckdb"
    _a_store_with_data(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match=f"{path}") as raised:
        with Store(path) as store:
            store.count("filler")
    assert "transaction is aborted" not in str(raised.value).lower()


def test_a_store_with_flipped_blocks_shows_the_checksum_error(tmp_path):
    path = tmp_path / "s.duckdb"
    _a_store_with_data(path)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 4, len(data) - 4096, 65536):
        data[offset:offset + 64] = bytes(64)  # zeroed stretches inside data blocks
    path.write_bytes(bytes(data))
    with pytest.raises((StoreError, duckdb.Error)) as raised:
        with Store(path) as store, store.transaction():
            store.con.execute("SELECT sum(length(s)) FROM filler").fetchall()
    assert "checksum" in str(raised.value) and "transaction is aborted" not in str(raised.value).lower()


# -- judges and endpoints ----------------------------------------------------------------------

def test_an_answer_outside_the_schema_is_unparseable():
    verdict, reason = parse_verdict('{"winner": "C"}')
    assert verdict is None and reason == "JSON winner 'C' is not one of A, B, tie"
    assert parse_verdict('{"verdict": "tie"}') == ("tie", None)


def test_a_refused_key_stops_the_judge_at_once_and_never_stores_the_key(store, monkeypatch, tmp_path):
    add_judgeable_pairs(store, 30)
    monkeypatch.setenv("PREFCURATE_TEST_KEY", CANARY)
    with OpenAICompatServer(Behaviour(api_key="the-right-key", echo_key_in_errors=True)) as server:
        config = judge_config(server, members=[{"backend": {"api_key_env": "PREFCURATE_TEST_KEY",
                                                            "max_concurrency": 2}}])
        with pytest.raises(StageFailed, match=r"refused the request \(http_401\).*PREFCURATE_TEST_KEY") as raised:
            run_judge(store, config)
        assert len(server.requests) < 10  # of 60 planned calls
    assert CANARY not in str(raised.value)
    stored = store.con.execute("SELECT string_agg(coalesce(invalid_reason, ''), ' ') FROM judgments").fetchone()[0]
    assert stored and "[redacted]" in stored and CANARY not in stored
    assert CANARY not in str(store.con.execute("SELECT * FROM stage_runs").fetchall())


def test_an_unreachable_judge_stops_after_a_run_of_failures(store):
    add_judgeable_pairs(store, 30)
    with OpenAICompatServer() as server:
        base_url = server.base_url
    config = judge_config(server, members=[{"backend": {"base_url": base_url, "max_retries": 0, "timeout_s": 1.0,
                                                        "max_consecutive_failures": 4, "max_concurrency": 1}}])
    with pytest.raises(StageFailed, match=r"the last 4 calls to http://127.0.0.1:\d+/v1 failed \((connection|timeout), "
                                          r"after the client's retries\); is the server up\?"):
        run_judge(store, config)
    assert store.scalar("SELECT count(*) FROM judgments") < 60  # stopped early, what came back is stored


def test_a_judge_with_no_valid_verdict_fails_the_stage(store):
    add_judgeable_pairs(store, 3)
    with OpenAICompatServer(Behaviour(script=["malformed"] * 6)) as server:
        with pytest.raises(StageFailed, match=r"test-model gave no valid verdict in 6 calls \(\{'unparseable': 6\}\), "
                                              r"e.g. \"unparseable: no verdict found in: 'I cannot decide"):
            run_judge(store, judge_config(server, members=[{"output_format": "text"}]))
    assert store.count("judgments") == 6  # the answers are kept, to be read


def test_json_that_is_accepted_but_not_enforced_falls_back_to_text(store, caplog):
    add_judgeable_pairs(store, 12)
    with OpenAICompatServer(Behaviour(enforces_response_format=False)) as server, caplog.at_level(logging.WARNING):
        report = run_judge(store, judge_config(server))
    judge = report.details["judges"]["test-model"]
    assert judge["output_format"] == "text" and "does not enforce it" in judge["format_fallback"]
    assert report.details["valid"] == 24  # every pair judged in text, both orders
    assert "asking for free text instead" in caplog.text


def test_an_endpoint_that_ignores_sampling_is_named_before_pairs_come_out_empty(tmp_path, caplog):
    from prefcurate import pipeline
    from prefcurate.core.config import config_from_dict

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(5)))
    with OpenAICompatServer(Behaviour(ignores_sampling=True)) as server:
        config = config_from_dict({
            "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "s.duckdb")},
            "ingest": {"source": str(prompts)},
            "generate": {"n_candidates": 2, "backend": {"kind": "openai", "model": "m", "base_url": server.base_url}}})
        pipeline.ingest_stage(config)
        with caplog.at_level(logging.WARNING):
            generated = pipeline.generate_stage(config)
    assert generated["identical_sample_prompts"] == 5
    assert "5 of 5 prompts got 2 identical samples" in caplog.text and "ignores temperature/seed" in caplog.text
    with pytest.raises(StageFailed, match="no pair could be formed from 10 candidates: every one of the 5 prompts "
                                          "got identical samples"):
        pipeline.pairs_stage(config)
    with pytest.raises(StageFailed, match="judge has nothing to work on: the pairs stage made no pairs"):
        pipeline.judge_stage(config.model_copy(update={"judge": judge_config(server)}))


def test_a_key_echoed_by_a_generation_endpoint_never_reaches_rejects(store, monkeypatch):
    from prefcurate.core.config import GenerateConfig
    from prefcurate.curation.backends import make_backend
    from prefcurate.curation.generation.generate import generate_candidates
    from tests.support.builders import add_prompt

    add_prompt(store, "Say hello.")
    monkeypatch.setenv("PREFCURATE_TEST_KEY", CANARY)
    with OpenAICompatServer(Behaviour(api_key="the-right-key", echo_key_in_errors=True)) as server:
        config = GenerateConfig(backend={"kind": "openai", "model": "m", "base_url": server.base_url,
                                         "api_key_env": "PREFCURATE_TEST_KEY"})
        with make_backend(config.backend, None) as backend, pytest.raises(StageFailed, match="http_401") as raised:
            generate_candidates(store, backend, config)
    assert CANARY not in str(raised.value)
    kept = store.con.execute("SELECT reason FROM rejects").fetchall()
    assert kept and all(CANARY not in reason and "[redacted]" in reason for (reason,) in kept)


# -- training ----------------------------------------------------------------------------------------

def test_loading_splits_with_ties_prints_nothing(tmp_path, capsys):
    from prefcurate.rm.data import load_splits

    pq.write_table(pa.table({"prompt": ["p", "q", "r"], "chosen": ["a", "b", "c"], "rejected": ["x", "y", "z"],
                             "tie": [False, True, None]}), tmp_path / "train.parquet")
    splits = load_splits(tmp_path)
    assert splits["train"]["prompt"] == ["p", "r"]
    captured = capsys.readouterr()
    assert captured.out == "" and "LOAD_FAST" not in captured.err


def test_a_new_score_head_is_not_reported_as_a_problem(tiny_model_dir, caplog):
    from prefcurate.rm.model import load_reward_model

    with caplog.at_level(logging.WARNING, logger="transformers"):
        load_reward_model(str(tiny_model_dir), new_head=True)
    assert "LOAD REPORT" not in caplog.text and "MISSING" not in caplog.text


def test_a_key_echoed_by_argilla_is_masked_in_the_error(monkeypatch, tmp_path):
    """An Argilla (or a proxy before it) that quotes the request's key in a 500."""
    from aiohttp import web

    from prefcurate.core.config import ArgillaConfig
    from prefcurate.curation.annotation.dataset import connect
    from prefcurate.curation.annotation.server import AnnotationServerError
    from tests.support.network import serve_app

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"detail": f"upstream failed for key {request.headers.get('X-Argilla-Api-Key')}"},
                                 status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    monkeypatch.setenv("PREFCURATE_TEST_ARGILLA_KEY", CANARY)
    with serve_app(app) as url:
        config = ArgillaConfig(url=url, owner={"username": "owner", "api_key_env": "PREFCURATE_TEST_ARGILLA_KEY"},
                               timeout_s=5)
        with pytest.raises(AnnotationServerError) as raised:
            connect(config, tmp_path)
    assert CANARY not in str(raised.value)
