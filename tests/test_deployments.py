"""Scheduled deployments against a real `prefect server`: `prefcurate serve` registers them, the
server's scheduler plans their cron runs, and a run triggered through the API completes. Plus the
store's writer lock: a second writer waits (bounded) or fails clearly, and nothing is corrupted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from prefcurate.core.store import Store, StoreBusyError
from tests.support.builders import add_prompt, judged_store
from tests.support.services import process_worker, stop, wait_until

BIN = Path(sys.executable).parent


def curate_config_file(tmp_path: Path, store_path: Path, schedules: dict) -> Path:
    """A config whose curation keeps every judged pair of judged_store, with these schedules."""
    path = tmp_path / "prefcurate.yaml"
    path.write_text(yaml.safe_dump({
        "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
        "curate": {"dedup": {"near": {"enabled": False}}, "splits": {"validation": 0.0, "test": 0.0}},
        "serve": {"schedules": schedules},
    }))
    return path


@pytest.mark.slow
def test_serve_registers_scheduled_deployments_and_a_triggered_run_completes(shared_prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, env = shared_prefect_server
    store_path = tmp_path / "store.duckdb"
    judged_store(store_path, 6)
    config_path = curate_config_file(tmp_path, store_path, {
        "curate-nightly": {"flow": "curate", "cron": "0 3 * * *"},
        "refresh-weekly": {"flow": "refresh", "cron": "0 4 * * 1"},
        "collect-annotations-hourly": {"flow": "collect-annotations", "cron": "15 * * * *", "enabled": False},
    })
    serve_log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([str(BIN / "prefcurate"), "serve", "--config", str(config_path)],
                              env=env, stdout=serve_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            async def deployments():  # those a `serve` process runs: the other tests' are on work pools
                async with get_client() as client:
                    return {d.name: d for d in await client.read_deployments() if d.work_pool_name is None}

            registered = wait_until(lambda: (found := asyncio.run(deployments())) and len(found) == 3 and found,
                                    120, "three deployments served")
            assert registered["curate-nightly"].schedules[0].schedule.cron == "0 3 * * *"
            assert not registered["collect-annotations-hourly"].schedules[0].active

            async def scheduled_runs(deployment_id):
                async with get_client() as client:
                    return await client.read_flow_runs(flow_run_filter=FlowRunFilter(),
                                                       deployment_filter=DeploymentFilter(
                                                           id=DeploymentFilterId(any_=[deployment_id])))

            # The server's scheduler plans upcoming cron runs (needs the SQLAlchemy pin, see README).
            planned = wait_until(lambda: asyncio.run(scheduled_runs(registered["curate-nightly"].id)), 60,
                                 "scheduled runs of curate-nightly")
            assert all(run.state.is_scheduled() for run in planned)

            run = run_deployment("curate/curate-nightly", timeout=300, poll_interval=1)
            assert run.state.is_completed(), run.state
    finally:
        stop(server)
        serve_log.close()
    with Store(store_path, read_only=True) as store:
        assert store.count("curation_runs") == 1 and store.count("curated_pairs") == 6


def test_a_second_writer_waits_for_the_store_then_proceeds_or_fails_naming_the_file(tmp_path):
    path = tmp_path / "store.duckdb"
    judged_store(path, 2)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from prefcurate.core.store import Store\n"
        f"s = Store({str(path)!r}); print('locked', flush=True); time.sleep(float(sys.argv[1])); s.close()"), "3"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(StoreBusyError, match=rf"{path}: another process is writing to it \(PID {holder.pid}: .*waited 0.5 s"):
        Store(path, lock_timeout_s=0.5)
    started = time.monotonic()
    with Store(path, lock_timeout_s=30) as store:  # waits for the holder to finish, then writes
        waited = time.monotonic() - started
        add_prompt(store, "written after the wait")
        assert store.count("pairs") == 2
    holder.wait()
    assert waited > 0.5
    with Store(path, read_only=True) as store:
        assert store.count("prompts") == 3


def test_two_threads_writing_through_one_store_file_keep_every_row(tmp_path):
    path = tmp_path / "store.duckdb"
    Store(path).close()
    errors = []

    def writer(prefix: str):
        try:
            with Store(path) as store:
                for index in range(20):
                    with store.transaction():
                        add_prompt(store, f"{prefix} prompt {index}")
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Store(path, read_only=True) as store:
        assert store.count("prompts") == 40


@pytest.mark.slow
def test_the_same_flows_run_under_a_process_work_pool(shared_prefect_server, tmp_path):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, env = shared_prefect_server
    store_path = tmp_path / "store.duckdb"
    judged_store(store_path, 3)
    config_path = curate_config_file(tmp_path, store_path,
                                     {"curate-on-a-pool": {"flow": "curate", "cron": "0 3 * * *"}})
    with process_worker("local-processes", env, tmp_path / "worker.log"):  # creates the pool
        deployed = subprocess.run([str(BIN / "prefcurate"), "deploy", "--work-pool", "local-processes",
                                   "--config", str(config_path)], env=env, capture_output=True, text=True)
        assert deployed.returncode == 0, deployed.stderr
        with temporary_settings(updates={PREFECT_API_URL: api}):
            run = run_deployment("curate/curate-on-a-pool", timeout=300, poll_interval=1)
        assert run.state.is_completed(), run.state
    with Store(store_path, read_only=True) as store:
        assert store.count("curated_pairs") == 3


def test_deployment_parameters_are_absolute_and_carry_no_connection_secrets(tmp_path, monkeypatch):
    import json

    from prefcurate.core.config import PrefcurateConfig
    from prefcurate.flows.deployments import build_deployments

    monkeypatch.chdir(tmp_path)
    config = PrefcurateConfig.model_validate({"argilla": {"server": {
        "redis": "redis://:hunter22@cache.internal:6379/0",
        "database_url": "postgresql+asyncpg://argilla:hunter22@db.internal/argilla"}}})
    deployments = build_deployments(config)
    parameters = deployments[0].parameters["config"]
    # A worker runs flows from another directory: relative paths would open another store.
    assert parameters["store"]["path"] == str(tmp_path / "prefcurate.duckdb")
    assert parameters["workdir"] == str(tmp_path / "prefcurate_out")
    assert "hunter22" not in json.dumps(parameters)
    # Collecting annotations is paused unless Argilla is part of the loop.
    assert {d.name: d.schedules[0].active for d in deployments} == {
        "judge-nightly": True, "collect-annotations-hourly": False, "refresh-weekly": True}
    # A weekly refresh that overruns is not joined by the next one (nor by a manual run of it).
    assert all(d.concurrency_limit == 1 for d in deployments)
