"""Batches (issue 18, part 1): judging and generation through the OpenAI Batch protocol, against the
suite's server speaking it (tests/support/batch_api.py): same call ids and rows as online, batches
kept in the store, failed/expired/garbage lines asked again, size limits, and kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from prefcurate.core.config import ConfigError, JudgeConfig, config_from_dict
from prefcurate.core.stage_report import StageFailed
from prefcurate.core.store import Store
from tests.support.judging import add_judgeable_pairs, judge_command, judge_config, run_judge
from tests.support.openai_server import Behaviour, OpenAICompatServer

BATCH = {"kind": "openai_batch"}


def batch_config(server, **backend) -> JudgeConfig:
    return judge_config(server, members=[{"backend": {**BATCH, **backend}, "output_format": "json_schema"}])


def stored_judgments(store) -> dict:
    return {row[0]: row[1:] for row in store.con.execute(
        "SELECT judgment_id, winner, confidence, valid FROM judgments").fetchall()}


def test_a_batch_judge_needs_an_explicit_output_format():
    with pytest.raises(ConfigError, match="a batch judge .* needs json_schema, json_object or text"):
        config_from_dict({"judge": {"panel": [{"backend": {**BATCH, "model": "m"}}]}})


def test_batch_and_online_ask_the_same_calls_and_store_the_same_rows(tmp_path, openai_server):
    """Submit, then collect on the next run; the rows equal the online judge's, call for call."""
    with Store(tmp_path / "batch.duckdb") as store:
        add_judgeable_pairs(store, 6)
        first = run_judge(store, batch_config(openai_server))
        assert first.details["batches"]["submitted_calls"] == 12 and first.details["batches"]["pending_calls"] == 12
        assert store.count("judgments") == 0 and first.count_out == 0
        second = run_judge(store, batch_config(openai_server))
        assert second.details["batches"]["collected_calls"] == 12 and second.details["batches"]["pending_calls"] == 0
        assert second.details["batches"]["submitted_calls"] == 0  # nothing asked twice
        batched = stored_judgments(store)
        assert store.one("SELECT count(*), count(DISTINCT batch_id) FROM provider_batch_requests") == (12, 1)
    with Store(tmp_path / "online.duckdb") as store:
        add_judgeable_pairs(store, 6)
        run_judge(store, judge_config(openai_server, members=[{"output_format": "json_schema"}]))
        assert stored_judgments(store) == batched  # same ids, same verdicts and confidences
    assert openai_server.batch_api.lines_received == 12


def test_switching_a_judge_from_online_to_batch_asks_nothing_twice(store, openai_server):
    add_judgeable_pairs(store, 6)
    run_judge(store, judge_config(openai_server, members=[{"output_format": "json_schema"}]))
    report = run_judge(store, batch_config(openai_server))
    assert report.details["batches"]["submitted_calls"] == 0 and openai_server.batch_api.lines_received == 0


def test_failed_expired_and_garbage_lines_are_asked_again_in_a_later_batch(store, openai_server):
    openai_server.batch_api.behaviour.fail_share = 0.25
    openai_server.batch_api.behaviour.garbage_lines = 2
    add_judgeable_pairs(store, 8)
    run_judge(store, batch_config(openai_server))  # 16 calls submitted
    collected = run_judge(store, batch_config(openai_server))
    assert collected.details["batches"]["unreadable_lines"] == 2
    assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 12
    assert store.scalar("SELECT count(*) FROM judgments WHERE NOT valid AND error_kind = 'batch_error'") == 4
    assert collected.details["batches"]["submitted_calls"] == 4  # the failed lines, once more

    openai_server.batch_api.behaviour.fail_share = 0.0
    openai_server.batch_api.behaviour.expire = True  # the retry batch expires half answered
    expired = run_judge(store, batch_config(openai_server))
    assert expired.details["batches"]["collected_calls"] == 2 and expired.details["batches"]["submitted_calls"] == 2
    openai_server.batch_api.behaviour.expire = False
    run_judge(store, batch_config(openai_server))
    assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 16
    assert store.scalar("SELECT count(*) FROM provider_batches WHERE collected_at IS NULL") == 0
    assert openai_server.batch_api.lines_received == 16 + 4 + 2


def test_a_call_that_keeps_failing_is_given_up_after_batch_attempts(store, openai_server):
    openai_server.batch_api.behaviour.fail_share = 1.0
    add_judgeable_pairs(store, 2)
    config = batch_config(openai_server, batch_attempts=2)
    run_judge(store, config)  # submitted
    for _ in range(2):  # collected: every call failed, as an online judge whose every call fails
        with pytest.raises(StageFailed, match="gave no valid verdict in 4 calls .*batch_error"):
            run_judge(store, config)
    last = run_judge(store, config)
    assert openai_server.batch_api.lines_received == 2 * 4  # 4 calls, submitted twice each
    assert last.details["batches"]["given_up_calls"] == 4 and last.details["batches"]["pending_calls"] == 0
    assert store.scalar("SELECT count(*) FROM judgments WHERE error_kind = 'batch_error'") == 4


def test_batches_are_split_under_the_providers_limits(tmp_path, openai_server):
    with Store(tmp_path / "by-count.duckdb") as store:
        add_judgeable_pairs(store, 10)
        report = run_judge(store, batch_config(openai_server, batch_max_requests=6))
        assert report.details["batches"]["submitted_batches"] == 4  # 20 calls in 6 + 6 + 6 + 2
        sizes = [row[0] for row in store.con.execute("SELECT n_requests FROM provider_batches ORDER BY n_requests").fetchall()]
        assert sizes == [2, 6, 6, 6]
        again = run_judge(store, batch_config(openai_server, batch_max_requests=6))
        assert again.details["batches"]["submitted_calls"] == 0  # they wait, or are answered: none resubmitted
    longest = max(len(line) for file in openai_server.batch_api.files.values() for line in file.splitlines(True))
    with Store(tmp_path / "by-bytes.duckdb") as store:
        add_judgeable_pairs(store, 10)
        report = run_judge(store, batch_config(openai_server, batch_max_bytes=2 * longest))
        sizes = [row[0] for row in store.con.execute("SELECT n_requests FROM provider_batches").fetchall()]
        assert sum(sizes) == 20 and max(sizes) <= 2 and report.details["batches"]["submitted_batches"] == len(sizes)


def write_config(tmp_path, server, **judge) -> str:
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump({
        "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
        "judge": {**judge, "panel": [{"output_format": "json_schema", "backend": {
            **BATCH, "model": "test-model", "base_url": server.base_url, "batch_poll_s": 0.5}}]}}))
    return path


@pytest.mark.slow
def test_the_cli_submits_and_returns_then_wait_collects(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server  # the commands' flows run on it, not each on a temporary server of its own
    with Store(tmp_path / "store.duckdb") as store:
        add_judgeable_pairs(store, 5)
    with OpenAICompatServer(Behaviour()) as server:
        server.batch_api.behaviour.delay_s = 3.0
        config_path = write_config(tmp_path, server)
        submitted = subprocess.run(judge_command(config_path), env=env, capture_output=True, text=True, timeout=300)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        assert "10 calls wait in 1 provider batches" in submitted.stderr + submitted.stdout
        waited = subprocess.run(judge_command(config_path, "--wait"), env=env, capture_output=True, text=True,
                                timeout=300)
        assert waited.returncode == 0, waited.stderr[-2000:]
        assert server.batch_api.lines_received == 10
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 10


@pytest.mark.slow
def test_killed_between_submit_and_download_the_next_run_polls_instead_of_submitting(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server
    with Store(tmp_path / "store.duckdb") as store:
        add_judgeable_pairs(store, 5)
    with OpenAICompatServer(Behaviour()) as server:
        server.batch_api.behaviour.delay_s = 3600.0  # never done while the first run waits
        config_path = write_config(tmp_path, server)
        process = subprocess.Popen(judge_command(config_path, "--wait"), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while not server.batch_api.batches and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # it polls, waiting
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        server.batch_api.behaviour.delay_s = 0.0
        resumed = subprocess.run(judge_command(config_path, "--wait"), env=env, capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert server.batch_api.lines_received == 10 and len(server.batch_api.batches) == 1
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 10


@pytest.mark.slow
def test_killed_before_it_could_record_a_batch_the_next_run_adopts_it(tmp_path, shared_prefect_server):
    """SIGKILL the moment the provider creates the batch: the store never heard of it; the next run
    finds it by its chunk id and does not pay for it twice."""
    _, env = shared_prefect_server
    with Store(tmp_path / "store.duckdb") as store:
        add_judgeable_pairs(store, 5)
    with OpenAICompatServer(Behaviour()) as server:
        config_path = write_config(tmp_path, server)
        process = subprocess.Popen(judge_command(config_path), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        server.batch_api.behaviour.kill_pid_on_create = process.pid
        process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL and len(server.batch_api.batches) == 1
        with Store(tmp_path / "store.duckdb", read_only=True) as store:
            assert store.count("provider_batches") == 0
        resumed = subprocess.run(judge_command(config_path, "--wait"), env=env, capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "adopted" in resumed.stderr
        assert server.batch_api.lines_received == 10 and len(server.batch_api.batches) == 1
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 10


def test_estimates_and_costs_use_the_batch_price(store, openai_server):
    from prefcurate.core.config import Price
    from prefcurate.curation.judging.pricing import price_of

    config = batch_config(openai_server).model_copy(update={"prices": {"test-model": Price(
        input_per_million=2.0, output_per_million=8.0)}})
    online = judge_config(openai_server, members=[{"output_format": "json_schema"}]).panel[0]
    assert price_of(config, config.panel[0], 1000, 100) == pytest.approx(price_of(config, online, 1000, 100) / 2)
    add_judgeable_pairs(store, 3)
    run_judge(store, config)
    run_judge(store, config)
    stored = store.scalar("SELECT sum(cost_usd) FROM judgments")
    tokens = store.one("SELECT sum(prompt_tokens), sum(completion_tokens) FROM judgments")
    assert stored == pytest.approx((tokens[0] * 2.0 + tokens[1] * 8.0) / 1e6 / 2)
    assert json.dumps(config.model_dump(mode="json"))  # the config stays serialisable


# -- judge.max_cost_usd ------------------------------------------------------------------------------

def priced(config: JudgeConfig, budget: float | None) -> JudgeConfig:
    from prefcurate.core.config import Price

    return config.model_copy(update={"max_cost_usd": budget, "prices": {
        "test-model": Price(input_per_million=1000.0, output_per_million=1000.0)}})


def test_a_budget_stops_online_calls_before_it_is_exceeded_and_more_budget_resumes(store, openai_server):
    add_judgeable_pairs(store, 10)  # 20 calls
    config = priced(judge_config(openai_server, members=[{"output_format": "json_schema"}]), 3.0)
    first = run_judge(store, config)
    asked = len(openai_server.requests)
    assert 0 < asked < 20 and first.details["budget"]["calls_refused"] == 20 - asked
    assert store.scalar("SELECT sum(cost_usd) FROM judgments") <= 3.0
    run_judge(store, config)  # what is left of the budget buys little or nothing more
    assert store.scalar("SELECT sum(cost_usd) FROM judgments") <= 3.0
    run_judge(store, priced(config, 1000.0))
    assert store.scalar("SELECT count(*) FROM judgments WHERE valid") == 20


def test_a_budget_counts_calls_waiting_in_batches(store, openai_server):
    openai_server.batch_api.behaviour.delay_s = 3600.0
    add_judgeable_pairs(store, 10)
    config = priced(batch_config(openai_server), 3.0)
    first = run_judge(store, config)
    submitted = openai_server.batch_api.lines_received
    assert 0 < submitted < 20 and first.details["budget"]["calls_refused"] == 20 - submitted
    second = run_judge(store, config)  # the waiting calls hold their share of the budget: nothing new
    assert openai_server.batch_api.lines_received == submitted
    assert second.details["budget"]["waiting_in_batches_usd"] > 0


def test_a_budget_needs_every_judge_priced(store, openai_server):
    from prefcurate.curation.judging.budget import BudgetError

    add_judgeable_pairs(store, 2)
    config = judge_config(openai_server).model_copy(update={"max_cost_usd": 1.0})
    with pytest.raises(BudgetError, match="needs a price for every judge's model .* test-model"):
        run_judge(store, config)
    assert not openai_server.requests


# -- batch files (an offline runner such as vLLM's run_batch) ----------------------------------------

def run_offline_runner(folder, server) -> int:
    """What `vllm run_batch` does: answer each requests file into its results file (written under
    another name, then renamed). Returns the request lines answered."""
    answered = 0
    for requests in sorted(folder.glob("*.requests.jsonl")):
        results = requests.with_name(requests.name.replace(".requests.", ".results."))
        if results.exists():
            continue
        lines = [json.loads(line) for line in requests.read_text().splitlines()]
        out = [{"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                "response": {"status_code": 200, "body": server._completion(line["body"])}}
               for i, line in enumerate(lines) if i != 0]  # the runner loses the first line
        results.with_suffix(".tmp").write_text("".join(json.dumps(row) + "\n" for row in out))
        results.with_suffix(".tmp").rename(results)
        answered += len(lines)
    return answered


def test_batch_files_are_answered_by_an_offline_runner_with_the_online_call_ids(tmp_path, openai_server):
    folder = tmp_path / "batches"
    members = [{"backend": {"kind": "batch_files", "batch_dir": str(folder), "base_url": openai_server.base_url},
                "output_format": "json_schema"}]
    config = judge_config(openai_server, members=members)
    with Store(tmp_path / "files.duckdb") as store:
        add_judgeable_pairs(store, 4)
        first = run_judge(store, config)
        assert first.details["batches"]["pending_calls"] == 8 and len(list(folder.glob("*.requests.jsonl"))) == 1
        assert run_judge(store, config).details["batches"]["pending_calls"] == 8  # no results yet: waits
        assert run_offline_runner(folder, openai_server) == 8
        second = run_judge(store, config)  # 7 answers stored, the lost line submitted again
        assert second.details["batches"]["collected_calls"] == 7 and second.details["batches"]["submitted_calls"] == 1
        run_offline_runner(folder, openai_server)  # its one line is lost again ...
        third = run_judge(store, config)
        assert third.details["batches"]["submitted_calls"] == 1  # ... and asked a third time
        run_offline_runner(folder, openai_server)
        fourth = run_judge(store, config)  # lost 3 times (backend.batch_attempts): its failure stands
        assert fourth.details["batches"]["submitted_calls"] == 0 and fourth.details["batches"]["given_up_calls"] == 1
        assert len(list(folder.glob("*.requests.jsonl"))) == 3  # the 8 calls, then the lost one twice alone
        batched = stored_judgments(store)
    with Store(tmp_path / "online.duckdb") as store:
        add_judgeable_pairs(store, 4)
        run_judge(store, judge_config(openai_server, members=[{"output_format": "json_schema"}]))
        online = stored_judgments(store)
    assert len(batched) == 7 and all(online[key] == value for key, value in batched.items())


# -- generation in batches -----------------------------------------------------------------------------

def test_generation_in_batches_fills_the_same_slots_with_the_same_texts_as_online(tmp_path, openai_server):
    from prefcurate.core.config import GenerateConfig
    from prefcurate.curation.backends import make_backend
    from prefcurate.curation.generation.generate import generate_candidates
    from tests.support.builders import add_prompt

    def generate(path, kind: str) -> list:
        config = GenerateConfig(n_candidates=3, backend={"kind": kind, "model": "test-model",
                                                          "base_url": openai_server.base_url})
        with Store(path) as store, make_backend(config.backend, tmp_path) as backend:
            for index in range(4):
                add_prompt(store, f"Generation prompt {index}: describe the number {index}.")
            reports = [generate_candidates(store, backend, config) for _ in range(2 if kind == "openai_batch" else 1)]
            rows = store.con.execute("SELECT candidate_id, prompt_id, sample_index, text FROM candidates "
                                     "ORDER BY candidate_id").fetchall()
        return reports, rows

    batch_reports, batched = generate(tmp_path / "batch.duckdb", "openai_batch")
    assert batch_reports[0].details["batches"]["submitted_calls"] == 12 and batch_reports[0].details["new_candidates"] == 0
    assert batch_reports[1].details["batches"]["collected_calls"] == 12 and batch_reports[1].count_out == 4
    _, online = generate(tmp_path / "online.duckdb", "openai")
    assert batched == online and len(batched) == 12
    assert openai_server.batch_api.lines_received == 12
