"""An append-only journal of answered calls, so that the death of a process loses none of them.

The store commits answers in batches (`commit_every`): cheap, but a kill -9 between two commits
would lose a batch of paid-for calls. So each answer is also appended to a journal file as one JSON
line the moment it arrives, and handed to the operating system at once (a write and a flush, no
fsync: it survives the death of the process; power loss is out of scope). Once a batch is committed
the journal is emptied. At the start of the next run whatever a dead process left in the journal is
replayed into the store first; writes are keyed by content hashes, so replaying a line that also
reached the store changes nothing. A resume then repeats only the calls that were in flight.
"""

from __future__ import annotations

import json
import logging
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
    """Open with the table's journal path; `append` each answer, `clear` after each commit."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")

    def append(self, row: dict) -> None:
        self._handle.write(json.dumps(row, default=str) + "\n")
        self._handle.flush()  # in the OS's hands: survives kill -9

    def clear(self) -> None:
        """Everything appended so far is committed to the store."""
        self._handle.truncate(0)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
