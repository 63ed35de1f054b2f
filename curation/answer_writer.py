"""Storing answers as they arrive, for generation and judging alike: buffered, committed every
`every` answers and at least every few seconds on a slow endpoint; after each commit a journal is
told what is now stored, and the read snapshot refreshed (at most every few seconds)."""

from __future__ import annotations

import time
from typing import Callable

from prefcurate.core.store import Store, StoreBusyError

COMMIT_SECONDS = 5.0
# While the store is released (core/store.py: a judge or generate run's calls), a commit also takes
# the file and lets it go again (starting a DuckDB instance and loading the catalog, a checkpoint:
# ~40-60 ms of CPU); answers streaming in fast are committed at most this often, whatever `every`
# says. The journal keeps each one meanwhile, and readers see the store every snapshot_every_s (5 s).
RELEASED_COMMIT_SECONDS = 2.0
# A released commit also costs more as the store grows: with random keys it loads most of the key
# index from disk and checkpoints it (at 20M judgments ~2 s of CPU, however few answers it holds).
# So commits come at least this many times the last one's cost apart: committing then takes at most
# about a tenth of the run, and more answers share each commit.
RELEASED_COST_SPACING = 10
# ... and when another flow holds the file, they are not waited for: the answers stay buffered (and
# in the journal) and the commit is tried again this much later, so the calls never stop for
# another flow's write; only the last flush (the end of a task of calls) waits for the file.
RELEASED_RETRY_SECONDS = 0.25


class AnswerWriter:
    def __init__(self, store: Store, write: Callable[[list], None], every: int,
                 committed: Callable[[list], None] | None = None, seconds: float = COMMIT_SECONDS):
        """write(items) stores a batch inside a transaction; committed(items) runs after it commits."""
        self.store, self.write, self.every, self.committed, self.seconds = store, write, every, committed, seconds
        self._buffer: list = []
        self._flushed_at = self._retry_at = time.monotonic()
        self.commit_seconds = 0.0  # how long the last commit took, the file taken and let go included

    def add(self, item) -> None:
        self._buffer.append(item)
        now = time.monotonic()
        since = now - self._flushed_at
        if self.store.is_released:
            spacing = RELEASED_COST_SPACING * self.commit_seconds
            due = (len(self._buffer) >= self.every and since >= max(RELEASED_COMMIT_SECONDS, spacing)) \
                or since > max(self.seconds, spacing)
            if due and now >= self._retry_at:
                self._try_flush(now)
            return
        if len(self._buffer) >= self.every or since > self.seconds:
            self.flush()

    def _try_flush(self, now: float) -> None:
        try:
            self.flush(wait=False)
        except StoreBusyError:
            self._retry_at = now + RELEASED_RETRY_SECONDS  # another flow is writing: keep the answers for now

    def flush(self, wait: bool = True) -> None:
        if self._buffer:
            started = time.monotonic()
            with self.store.transaction(wait=wait):
                self.write(self._buffer)
            if not wait:  # a commit of the released phase's own (a wait for another writer is no cost of ours)
                self.commit_seconds = time.monotonic() - started
            items, self._buffer = self._buffer, []
            if self.committed is not None:
                self.committed(items)
            self.store.publish_snapshot()  # every few seconds at most: for readers
        self._flushed_at = time.monotonic()
