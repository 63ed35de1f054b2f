"""Labelling on a real local Dask cluster through Prefect's Dask task runner (issue 26, part 1):
workers make the endpoint calls, the flow process stores and journals the answers. The same rows
as in process; a worker killed mid-run costs only its chunk; a worker without the key fails the
stage with one clear line."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from prefcurate.core.config import config_from_dict
from prefcurate.core.store import Store
from tests.support.judging import add_judgeable_pairs
from tests.support.openai_server import Behaviour, OpenAICompatServer, call_key

pytestmark = pytest.mark.slow  # a Dask cluster of two worker processes per test (~5-10 s to start)


def fanout_config(tmp_path, server, name: str, fanout: dict, **judge) -> object:
    return config_from_dict({
        "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / f"{name}.duckdb")},
        "judge": {"panel": [{"output_format": "json_schema", "backend": {
            "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": 8,
            "max_retries": 1, "timeout_s": 10.0}}], "commit_every": 16, **judge},
        "fanout": fanout})


def stored(path) -> dict:
    with Store(path, read_only=True) as store:
        return {row[0]: row[1:] for row in store.con.execute(
            "SELECT judgment_id, winner, confidence, valid, verdict_shown FROM judgments").fetchall()}


def test_a_local_cluster_stores_the_same_rows_as_in_process(tmp_path, openai_server, prefect_harness):
    from prefcurate.flows.stages import judge_flow

    for name in ("in_process", "dask"):
        config = fanout_config(tmp_path, openai_server, name, {"runner": name, "workers": 2})
        with Store(config.store.path) as store:
            add_judgeable_pairs(store, 30)
        summary = judge_flow(config)
        assert summary["calls_made"] == 60 and summary["valid"] == 60
    assert stored(tmp_path / "dask.duckdb") == stored(tmp_path / "in_process.duckdb")
    assert len(stored(tmp_path / "dask.duckdb")) == 60


@pytest.fixture
def cluster():
    """A real local Dask cluster of two worker processes, run by the test (so it can kill one)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as running, Client(running) as client:
        yield running, client


def test_a_worker_killed_mid_run_costs_its_chunk_only(tmp_path, cluster, prefect_harness):
    """One worker is killed while the calls run: its chunk runs again on a worker, every call ends
    with its answer, and no answer that reached the flow is asked for again."""
    from prefcurate.flows.stages import judge_flow

    running, client = cluster
    with OpenAICompatServer(Behaviour(latency_s=0.05)) as server:
        config = fanout_config(tmp_path, server, "killed", {"runner": "dask", "address": running.scheduler_address,
                                                            "chunk_calls": 8, "chunks_in_flight": 4})
        with Store(config.store.path) as store:
            add_judgeable_pairs(store, 60)  # 120 calls: 15 chunks of 8
        victim = next(iter(client.run(os.getpid).values()))

        killed = threading.Event()

        def kill_when_busy() -> None:
            while len(server.requests) < 40:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            killed.set()

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        summary = judge_flow(config)
        killer.join(timeout=5)
        asked = [call_key(body) for body in server.requests]
    assert killed.is_set() and summary["valid"] == 120 and len(stored(config.store.path)) == 120
    # Asked again: only chunks whose answers had not reached the flow. That is the killed worker's
    # running chunk, and any chunk it had finished whose answers the flow had not fetched yet (Dask
    # runs again a result lost with its worker): at most the chunks in flight (4 x 8), each once.
    # (With the flow slowed by a test beside it, 16 calls, two chunks, came back once.)
    assert len(asked) - len(set(asked)) <= 4 * 8 and max(Counter(asked).values()) <= 2


def test_a_worker_without_the_key_fails_the_stage_with_one_clear_line(tmp_path, cluster, prefect_harness,
                                                                      monkeypatch):
    """The key is set where the flow runs but not on the workers (started before it was): the
    endpoint refuses their calls, and the stage stops at once naming the variable to set. The key
    itself was never a task parameter."""
    from prefcurate.core.stage_report import StageFailed
    from prefcurate.flows.stages import judge_flow

    running, _client = cluster
    monkeypatch.setenv("PREFCURATE_TEST_FANOUT_KEY", "sk-test-only-in-the-flow-process")
    with OpenAICompatServer(Behaviour(api_key="sk-test-only-in-the-flow-process")) as server:
        config = fanout_config(tmp_path, server, "no_key", {"runner": "dask", "address": running.scheduler_address})
        config.judge.panel[0].backend.api_key_env = "PREFCURATE_TEST_FANOUT_KEY"
        with Store(config.store.path) as store:
            add_judgeable_pairs(store, 4)
        with pytest.raises(StageFailed, match="PREFCURATE_TEST_FANOUT_KEY") as failure:
            judge_flow(config)
    assert "\n" not in str(failure.value) and "sk-test" not in str(failure.value)


def test_a_flow_killed_mid_run_leaves_no_worker_behind_and_resumes_asking_only_chunks_in_flight(
        tmp_path, shared_prefect_server):
    """kill -9 of `prefcurate judge` fanned out to its own local cluster: its worker processes exit
    by themselves, the store opens, and the next run asks again only calls of chunks that had not
    returned (at most chunks_in_flight x chunk_calls)."""
    import subprocess

    import psutil
    import yaml

    from tests.support.judging import judge_command

    _, env = shared_prefect_server
    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, 100)  # 200 calls
    with OpenAICompatServer(Behaviour(latency_s=0.1)) as server:
        config_path = tmp_path / "judge.yaml"
        config_path.write_text(yaml.safe_dump({
            "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
            "judge": {"commit_every": 8, "panel": [{"output_format": "json_schema", "backend": {
                "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": 4}}]},
            "fanout": {"runner": "dask", "workers": 2, "chunk_calls": 4, "chunks_in_flight": 4}}))
        flow = subprocess.Popen(judge_command(config_path), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while len(server.requests) < 60 and time.monotonic() < deadline and flow.poll() is None:
            time.sleep(0.05)
        assert flow.poll() is None, "the judge ended before it could be killed"
        workers = psutil.Process(flow.pid).children(recursive=True)
        assert len(workers) >= 2
        flow.kill()
        flow.wait()
        answered_before = set(server.answered)
        asked_before = len(server.requests)
        gone, alive = psutil.wait_procs(workers, timeout=90)  # death_timeout 60 s
        assert not alive, [process.cmdline()[:4] for process in alive]

        resumed = subprocess.run(judge_command(config_path), env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        asked_again = {call_key(body) for body in server.requests[asked_before:]}
    assert len(asked_again & answered_before) <= 4 * 4  # the chunks that had not returned, at most
    assert len(stored(store_path)) == 200
