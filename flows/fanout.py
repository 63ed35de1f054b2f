"""Labelling calls on a Dask cluster, through Prefect's own Dask task runner (prefect-dask).

`cluster_calls(fanout)` opens the task runner for a stage: a local cluster of fanout.workers
processes started for the run (stopped after it), or the running scheduler at fanout.address. It
gives the stage a `run_chunks` (curation/backends/remote.py): chunks of calls go to workers as
Prefect tasks, at most chunks_in_flight at once, and their answers come back as each finishes.

Why Dask and not Ray: a local Dask cluster is plain Python processes that start in a few seconds in
our own environment, which a 2-core machine and CI can afford; Ray's local instance adds its own
services (GCS, raylet, dashboard) and a large wheel for what this needs, which is tasks that return
lists. The seam is run_chunks: a Ray runner (prefect-ray) would fit behind the same field.

Nothing a chunk carries is persisted by Prefect (persist_result off, no cache): prompts and answers
go only where the store's rules cover them.
"""

from __future__ import annotations

import itertools
import pickle
import queue
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import task
from prefect.cache_policies import NONE

from prefcurate.core.config import BackendConfig, FanoutConfig
from prefcurate.curation.backends.base import ChatRequest, ChatResult
from prefcurate.curation.backends.remote import RunChunks, complete_chunk


@task(name="calls", task_run_name="calls-{label}", cache_policy=NONE, persist_result=False)
def calls_task(label: str, config_json: str, models_dir: str, requests: bytes) -> list[ChatResult]:
    """One chunk of endpoint calls, on a worker. The chunk travels as one pickled blob and the config
    as its JSON: Dask hashes a task's arguments to name it, and Prefect walks them, field by field;
    opaque arguments cost the store process nothing per request."""
    chunk: list[ChatRequest] = pickle.loads(requests)
    return complete_chunk(BackendConfig.model_validate_json(config_json), Path(models_dir), chunk)


def dask_task_runner(fanout: FanoutConfig):
    from prefcurate.flows.dask_runner import ChunkTaskRunner

    if fanout.address:
        return ChunkTaskRunner(address=fanout.address)
    return ChunkTaskRunner(cluster_kwargs={
        "n_workers": fanout.workers, "threads_per_worker": fanout.threads_per_worker, "processes": True,
        "dashboard_address": None, "host": "127.0.0.1",
        # a flow killed with SIGKILL cannot stop its cluster: its workers, cut off from the scheduler
        # that lived in the flow's process, exit by themselves within this many seconds (it also
        # bounds how long a worker may take to start, so not less on a busy machine)
        "death_timeout": 60})


@contextmanager
def cluster_calls(fanout: FanoutConfig) -> Iterator[RunChunks | None]:
    """None in process (the default); else run_chunks on the cluster, for the length of the block."""
    if fanout.runner == "in_process":
        yield None
        return
    with dask_task_runner(fanout) as runner:
        in_flight = fanout.chunks_in_flight or 2 * _worker_threads(runner, fanout)
        yield lambda config, models_dir, chunks: _run_chunks(runner, in_flight, config, models_dir, chunks)


def _worker_threads(runner, fanout: FanoutConfig) -> int:
    if not fanout.address:
        return fanout.workers * fanout.threads_per_worker
    return max(sum(worker["nthreads"] for worker in runner.client.scheduler_info()["workers"].values()), 1)


def _run_chunks(runner, in_flight: int, config: BackendConfig, models_dir: Path,
                chunks: Iterator[list[ChatRequest]]) -> Iterator[list[ChatResult]]:
    """Keep in_flight chunks on the cluster; yield each one's answers as it returns. Closing the
    generator (the stage stopped) cancels what has not returned."""
    finished: queue.Queue = queue.Queue()
    pending, numbers = set(), itertools.count(1)
    config_json = config.model_dump_json()

    def hand_out() -> None:
        while len(pending) < in_flight and (chunk := next(chunks, None)) is not None:
            future = runner.submit(calls_task, parameters={
                "label": f"{config.model}-{next(numbers)}", "config_json": config_json, "models_dir": str(models_dir),
                "requests": pickle.dumps(chunk)})
            future.add_done_callback(finished.put)
            pending.add(future)

    try:
        hand_out()
        while pending:
            future = finished.get()
            pending.discard(future)
            yield future.result()  # a chunk that failed on its worker (no key there) raises here
            hand_out()
    finally:
        for future in pending:
            future.wrapped_future.cancel()  # Prefect's future has no cancel: the Dask future under it
