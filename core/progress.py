"""Progress for long loops: a tqdm bar on a terminal, periodic log lines everywhere else."""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("prefcurate")


class Progress:
    def __init__(self, description: str, total: int, log_every_s: float = 10.0):
        self.description = description
        self.total = total
        self.done = 0
        self._bar = tqdm(total=total, desc=description, unit="it", disable=not sys.stderr.isatty())
        self._log_every_s = log_every_s
        self._last_log = time.monotonic()
        self._started = self._last_log

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        if self._bar.disable and now - self._last_log >= self._log_every_s:
            self._last_log = now
            rate = self.done / max(now - self._started, 1e-9)
            log.info("%s: %d/%d (%.1f/s)", self.description, self.done, self.total, rate)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
