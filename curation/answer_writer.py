"""Storing answers as they arrive, for generation and judging alike: buffered, committed every
`every` answers and at least every few seconds on a slow endpoint; after each commit a journal is
told what is now stored, and the read snapshot refreshed (at most every few seconds)."""

from __future__ import annotations

import time
from typing import Callable

from prefcurate.core.store import Store

COMMIT_SECONDS = 5.0
# While the store is released (core/store.py: a judge or generate run's calls), a commit also takes
# the file and lets it go again (a connect, a checkpoint: tens of ms); answers streaming in fast
# are committed at most this often, whatever `every` says. The journal keeps each one meanwhile.
RELEASED_COMMIT_SECONDS = 1.0


class AnswerWriter:
    def __init__(self, store: Store, write: Callable[[list], None], every: int,
                 committed: Callable[[list], None] | None = None, seconds: float = COMMIT_SECONDS):
        """write(items) stores a batch inside a transaction; committed(items) runs after it commits."""
        self.store, self.write, self.every, self.committed, self.seconds = store, write, every, committed, seconds
        self._buffer: list = []
        self._flushed_at = time.monotonic()

    def add(self, item) -> None:
        self._buffer.append(item)
        since = time.monotonic() - self._flushed_at
        full = len(self._buffer) >= self.every and (not self.store.is_released or since >= RELEASED_COMMIT_SECONDS)
        if full or since > self.seconds:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            items, self._buffer = self._buffer, []
            with self.store.transaction():
                self.write(items)
            if self.committed is not None:
                self.committed(items)
            self.store.publish_snapshot()  # every few seconds at most: for readers
        self._flushed_at = time.monotonic()
