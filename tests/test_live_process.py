"""A real `prefcurate judge` process (issue 16): Ctrl-C, SIGTERM and kill -9 stop it within
seconds, keep what was answered, leave a usable store and no process of its own behind; a reader
polling the store while it writes is never refused."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from prefcurate.core.store import Store
from tests.support.judging import add_judgeable_pairs
from tests.support.openai_server import Behaviour, OpenAICompatServer

pytestmark = pytest.mark.slow


def _judge_process(tmp_path: Path, server: OpenAICompatServer, pairs: int = 100, commit_every: int = 1000,
                   env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """`prefcurate judge` on pairs judgeable pairs; with env None, on its own temporary Prefect server."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store_path = tmp_path / "s.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, pairs)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
        "judge": {"commit_every": commit_every, "panel": [{"backend": {
            "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": 2}}]}}))
    process = subprocess.Popen([sys.executable, "-m", "prefcurate.cli", "judge", "--config", str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a terminal job has
    return process, store_path


def _temporary_server(process: subprocess.Popen, server: OpenAICompatServer, asked: int = 10) -> psutil.Process:
    """Wait until the judge has asked `asked` calls, and return the Prefect server the command started."""
    deadline = time.monotonic() + 120
    while len(server.requests) < asked:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the judge never started asking"
        time.sleep(0.2)
    [child] = [child for child in psutil.Process(process.pid).children()
               if "prefcurate.flows.temporary_server" in " ".join(child.cmdline())]
    return child


def _gone(process: psutil.Process, within_s: float) -> bool:
    try:
        process.wait(timeout=within_s)
    except psutil.TimeoutExpired:
        return False
    return True


def _answered(store_path: Path) -> int:
    with Store(store_path) as store:  # opens: the store is usable
        return store.count("judgments")


@pytest.fixture
def slow_server():
    with OpenAICompatServer(Behaviour(latency_s=0.2)) as server:
        yield server


def test_ctrl_c_stops_within_seconds_keeps_the_answers_and_the_server_goes(tmp_path, slow_server):
    process, store_path = _judge_process(tmp_path, slow_server)
    prefect_server = _temporary_server(process, slow_server)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    started = time.monotonic()
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - started < 10
    assert "interrupted: what was answered is stored" in err and "Traceback" not in err
    assert _gone(prefect_server, 5)
    assert 0 < _answered(store_path) < 200  # committed on the way out, though commit_every is 1000


def test_ctrl_c_at_any_moment_prints_no_traceback_of_the_prefect_server(tmp_path, slow_server):
    """Stopping the temporary server while requests are in flight made it print a sqlalchemy
    CancelledError traceback before the `interrupted:` line (1 run in 6): its output goes to the log
    file, never the terminal. Interrupted at several moments, the terminal shows the one line."""
    for attempt, asked in enumerate((2, 12, 30, 55)):
        slow_server.requests.clear()
        process, _ = _judge_process(tmp_path / f"run{attempt}", slow_server)
        prefect_server = _temporary_server(process, slow_server, asked)
        assert os.readlink(f"/proc/{prefect_server.pid}/fd/2") == str(tmp_path / f"run{attempt}" / "out" / "logs" /
                                                                       "prefcurate.log")
        os.killpg(process.pid, signal.SIGINT)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and "CancelledError" not in err and "Task was destroyed" not in err, err
        assert lines[-1].startswith("interrupted: what was answered is stored"), err


def test_sigterm_exits_143_and_takes_its_server_along(tmp_path, slow_server):
    process, store_path = _judge_process(tmp_path, slow_server)
    prefect_server = _temporary_server(process, slow_server)
    process.terminate()
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert _gone(prefect_server, 5)
    assert _answered(store_path) > 0


def test_kill_9_leaves_no_orphan_and_a_usable_store(tmp_path, slow_server):
    process, store_path = _judge_process(tmp_path, slow_server)
    prefect_server = _temporary_server(process, slow_server)
    process.kill()
    process.communicate(timeout=30)
    assert _gone(prefect_server, 5), "the temporary Prefect server outlived the command"
    _answered(store_path)


def test_a_reader_polling_every_second_is_never_refused_while_the_judge_writes(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server  # the store is the point here, not the command's temporary server
    with OpenAICompatServer(Behaviour(latency_s=0.02)) as server:
        process, store_path = _judge_process(tmp_path, server, pairs=300, commit_every=16, env=env)
        counts, notes = [], 0
        while process.poll() is None:
            asked = time.monotonic()
            read = subprocess.run([sys.executable, "-m", "prefcurate.cli", "query",
                                   "SELECT 'answers=' || count(*) FROM judgments", "--store", str(store_path)],
                                  capture_output=True, text=True, timeout=60)
            assert read.returncode == 0, read.stderr
            assert time.monotonic() - asked < 10  # a bounded wait, never the writer's whole run
            counts.append(int(re.search(r"answers=(\d+)", read.stdout).group(1)))
            notes += "reading the store's snapshot" in read.stderr and "changed since" in read.stderr
            time.sleep(1)
        _out, err = process.communicate()
        assert process.returncode == 0, err
        assert counts == sorted(counts), counts  # never goes back
        assert notes >= 2 and counts[-1] > 0  # the snapshot was read while the judge wrote, and it grew
        assert _answered(store_path) == 600
        # the same judging with nobody reading: the writer's pace holds with a reader polling
        alone, alone_store = _judge_process(tmp_path / "alone", server, pairs=300, commit_every=16, env=env)
        alone.communicate()
    with_reader, without = _judge_seconds(store_path), _judge_seconds(alone_store)
    assert with_reader < 1.5 * without, (with_reader, without)


def _judge_seconds(store_path: Path) -> float:
    with Store(store_path) as store:
        return store.scalar("SELECT epoch(finished_at) - epoch(started_at) FROM stage_runs WHERE stage = 'judge'")


def test_a_key_echoed_by_the_endpoint_reaches_no_output_log_store_or_prefect_database(tmp_path):
    canary = "sk-canary-91d0e7f35a"
    with OpenAICompatServer(Behaviour(api_key="the-right-key", echo_key_in_errors=True)) as server:
        store_path = tmp_path / "s.duckdb"
        with Store(store_path) as store:
            add_judgeable_pairs(store, 20)
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({
            "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
            "judge": {"panel": [{"backend": {"kind": "openai", "model": "test-model", "base_url": server.base_url,
                                             "api_key_env": "PREFCURATE_TEST_KEY"}}]}}))
        env = {**os.environ, "PREFCURATE_TEST_KEY": canary, "PREFECT_HOME": str(tmp_path / "prefect")}
        done = subprocess.run([sys.executable, "-m", "prefcurate.cli", "judge", "--config", str(config)],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "refused the request (http_401)" in done.stderr
    assert canary not in done.stdout + done.stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name.startswith("prefect.db") for path in files)  # Prefect's database, to be searched
    assert (tmp_path / "out" / "logs" / "prefcurate.log").is_file()
    assert [path.name for path in files if canary.encode() in path.read_bytes()] == []
    with Store(store_path) as store:
        assert no_canary_in(store, canary)


def no_canary_in(store: Store, canary: str) -> bool:
    rows = store.con.execute("SELECT invalid_reason FROM judgments UNION ALL SELECT CAST(details AS VARCHAR) "
                             "FROM stage_runs").fetchall()
    return bool(rows) and all(canary not in (text or "") for (text,) in rows)
