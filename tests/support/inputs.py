"""Input files written by hand for the readers (ingest, import-pairs, benchmarks), and the rows a
read rejected."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows) -> Path:
    """One line per row: a dict (or any JSON value) as JSON, a str as it is (a broken line on purpose)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def rejects(store) -> list[tuple]:
    """(source_row, field, reason) of every reject in the store, by row."""
    return store.con.execute("SELECT source_row, field, reason FROM rejects ORDER BY source_row").fetchall()
