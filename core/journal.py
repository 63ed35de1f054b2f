"""An append-only journal of answered calls, so that the death of a process loses none of them.

The store commits answers in batches (`commit_every`): cheap, but a kill -9 between two commits
would lose a batch of paid-for calls. So each answer is also appended to a journal file as one JSON
line the moment it arrives, and handed to the operating system at once (a write and a flush, no
fsync: it survives the death of the process; power loss is out of scope). Once a batch is committed
its entries leave the journal. At the start of the next run whatever a dead process left in the journal is
replayed into the store first; writes are keyed by content hashes, so replaying a line that also
reached the store changes nothing. A resume then repeats only the calls that were in flight.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("prefcurate")


def journal_path(store_path: str | Path, table: str) -> Path:
    return Path(f"{store_path}.journal") / f"{table}.jsonl"


def read_journal(path: Path) -> list[dict]:
    """The complete lines of a journal; a torn last line (the process died writing it) is dropped,
    and its call is asked again."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


class Journal:
    """Open with the table's journal path; `append` each answer as it arrives (any thread), and call
    `committed` with the keys of the rows the store has committed."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # answers arrive on several threads (one per endpoint)
        self._pending: dict[str, str] = {}  # key -> its line, appended but not committed yet

    def append(self, key: str, entry: dict) -> None:
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()  # in the OS's hands: survives kill -9
            self._pending[key] = line

    def adopt(self, key: str, entry: dict) -> None:
        """An entry a stopped run left in this file, kept through this run's rewrites until it is
        committed (or dropped by `committed`) like one of this run's own."""
        with self._lock:
            self._pending[key] = json.dumps(entry, default=str) + "\n"

    def committed(self, keys) -> None:
        """Drop the committed entries. Answers that arrived since (still on their way to the store)
        stay: the file is rewritten aside and renamed over the old one, so a kill at any moment
        leaves one complete journal or the other."""
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)
            aside = self.path.with_name(self.path.name + ".tmp")
            aside.write_text("".join(self._pending.values()), encoding="utf-8")
            self._handle.close()
            os.replace(aside, self.path)
            self._handle = open(self.path, "a", encoding="utf-8")

    def close(self, remove: bool = False) -> None:
        with self._lock:
            self._handle.close()
            if remove and not self._pending:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
