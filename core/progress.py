"""Progress for long loops: a tqdm bar on a terminal, periodic log lines everywhere else.

A line also comes while nothing finishes (calls waiting on a slow or stuck endpoint), at least every
`log_every_s`, saying how long the wait has been: silence would look like a hang."""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
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
        self._last_update = self._last_log
        self._closed = threading.Event()
        # In a copy of the caller's context: its lines belong to the caller's Prefect run, if any.
        self._heartbeat = threading.Thread(target=contextvars.copy_context().run, args=(self._beat,),
                                           name=f"progress-{description}", daemon=True)
        self._heartbeat.start()

    def add_total(self, n: int) -> None:
        """More work found (a judge run plans a page of pairs at a time)."""
        self.total += n
        self._bar.total = self.total
        self._bar.refresh()

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        self._last_update = now
        if self._bar.disable and now - self._last_log >= self._log_every_s:
            self._log(now)

    def _log(self, now: float, waiting: bool = False) -> None:
        self._last_log = now
        rate = self.done / max(now - self._started, 1e-9)
        idle = now - self._last_update
        still = f"; {self.total - self.done} waiting, none finished for {idle:.0f} s" if waiting else ""
        log.info("%s: %d/%d (%.1f/s)%s", self.description, self.done, self.total, rate, still)

    def _beat(self) -> None:
        """While work is outstanding and nothing is said, say where it stands (the bar: its clock)."""
        while not self._closed.wait(self._log_every_s):
            now = time.monotonic()
            if self.done >= self.total or now - self._last_log < self._log_every_s:
                continue
            if self._bar.disable:
                self._log(now, waiting=True)
            else:
                self._last_log = now
                self._bar.refresh()

    def close(self) -> None:
        self._closed.set()
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
