"""Real services the slow tests start as processes on 127.0.0.1: a Prefect server, Prefect process
workers, and an S3-compatible object store (moto's server mode). Each runs in a session of its
own and is stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from tests.support.network import free_port

BIN = Path(sys.executable).parent


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _responds(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def service(command: list[str], env: dict, log_path: Path, ready_url: str, what: str) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: process.poll() is not None or _responds(ready_url), 90, what)
            assert process.poll() is None, f"{what}: exited with {process.returncode}; see {log_path}"
            yield process
        finally:
            stop(process)


@contextmanager
def prefect_server(folder: Path) -> Iterator[tuple[str, dict]]:
    """A real `prefect server start` with its own home (and database); yields (api url, env for
    processes that talk to it)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    env.pop("PREFECT_API_URL", None)
    api = f"http://127.0.0.1:{port}/api"
    with service([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                 folder / "prefect-server.log", f"{api}/health", "prefect server health"):
        yield api, {**env, "PREFECT_API_URL": api}


@contextmanager
def process_worker(pool: str, env: dict, log_path: Path) -> Iterator[subprocess.Popen]:
    """`prefect worker start` on a process pool (created if missing); polls every second."""
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process", "--overwrite"],
                   env=env, check=True, capture_output=True)
    port = free_port()  # the worker's health endpoint says when it is polling
    env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
           "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1", "PREFECT_WORKER_WEBSERVER_PORT": str(port)}
    with service([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--with-healthcheck"], env, log_path,
                 f"http://127.0.0.1:{port}/health", f"a worker on pool {pool}") as worker:
        yield worker


@contextmanager
def s3_server(folder: Path, bucket: str) -> Iterator[dict]:
    """moto's S3-compatible server with one bucket; yields the environment that points boto, s3fs
    and fsspec at it (made-up credentials: moto accepts any)."""
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "prefcurate-test", "AWS_SECRET_ACCESS_KEY": "prefcurate-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    with service([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {**os.environ, **env},
                 folder / "moto.log", env["AWS_ENDPOINT_URL"], "the S3 server"):
        assert httpx.put(f"{env['AWS_ENDPOINT_URL']}/{bucket}", timeout=10).status_code == 200
        yield env
