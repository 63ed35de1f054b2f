"""A backend whose calls run elsewhere: on the workers of a cluster (fanout.runner: dask), a chunk
of calls at a time. A worker opens the real backend from its config (an endpoint's client, or a
local model) and makes the calls; this process hands out chunks and takes the answers back as each
chunk returns, so it stays the store's one writer and journals every answer the moment it arrives.
Nothing secret travels with a chunk: a worker reads the key from its own environment
(backend.api_key_env), as this process would.

How chunks reach workers is the caller's (`run_chunks`; flows/fanout.py submits them through
Prefect's Dask task runner): this module knows no cluster, and no Prefect."""

from __future__ import annotations

import atexit
import itertools
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from prefcurate.core.config import BATCH_KINDS, BackendConfig
from prefcurate.curation.backends import backend_identity, make_backend
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult

# (backend config, models dir, chunks of requests) -> the chunks' answers, a list per chunk, as each returns
RunChunks = Callable[[BackendConfig, Path, Iterator[list[ChatRequest]]], Iterator[list[ChatResult]]]


class RemoteBackend(ChatBackend):
    def __init__(self, config: BackendConfig, models_dir: Path, run_chunks: RunChunks, chunk_calls: int | None = None):
        self.config, self.models_dir, self.run_chunks = config, models_dir, run_chunks
        self.identity = backend_identity(config)
        # a chunk keeps one worker's endpoint client busy twice over (2 x max_concurrency by default):
        # each chunk costs this process a task submission, so fewer, larger chunks cost it less
        self.chunk_calls = chunk_calls or 2 * config.max_concurrency

    def complete(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        answers = self.run_chunks(self.config, self.models_dir, _chunked(requests, self.chunk_calls))
        try:
            for chunk in answers:
                yield from chunk
        finally:
            answers.close()  # cancels the chunks not returned yet


def remote_or_local(run_chunks: RunChunks | None, chunk_calls: int | None = None) -> Callable[[BackendConfig, Path], ChatBackend]:
    """make_backend, or with run_chunks (a cluster) a RemoteBackend for every online backend; batch
    backends stay here (their calls go to the provider's batches, not to workers)."""
    def make(config: BackendConfig, models_dir: Path):
        if run_chunks is None or config.kind in BATCH_KINDS:
            return make_backend(config, models_dir)
        return RemoteBackend(config, models_dir, run_chunks, chunk_calls)
    return make


def _chunked(requests: Iterable[ChatRequest], size: int) -> Iterator[list[ChatRequest]]:
    requests = iter(requests)
    while chunk := list(itertools.islice(requests, size)):
        yield chunk


# -- on a worker -----------------------------------------------------------------------------------
_opened: dict[str, ChatBackend] = {}  # one backend per config in each worker process: a model loads once
_opening = threading.Lock()


def _close_opened() -> None:
    for backend in _opened.values():
        backend.close()
    _opened.clear()


def complete_chunk(config: BackendConfig, models_dir: Path, requests: list[ChatRequest]) -> list[ChatResult]:
    """Make one chunk's calls on this worker; every request gets its answer (or its failure)."""
    key = config.model_dump_json() + str(models_dir)
    with _opening:
        if key not in _opened:
            if not _opened:
                atexit.register(_close_opened)  # the endpoints' clients close with the worker
            _opened[key] = make_backend(config, models_dir)
    results = _opened[key].complete(requests)
    try:
        return list(results)
    finally:
        results.close()
