"""Export a curation run as Parquet per split plus a manifest.

Columns follow TRL's explicit-prompt preference format (`prompt`, `chosen`, `rejected`) with
metadata beside them (`prompt_messages` holds a multi-turn prompt's conversation), so `datasets.load_dataset("parquet", ...)` and TRL's RewardTrainer read the
files as they are. Rows are sorted by pair_id and written without timestamps: the same run
exports byte-identical files.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prefcurate.core.hashing import file_sha256
from prefcurate.core.store import StoreReader

from prefcurate.core.config import SPLITS
EXPORT_SCHEMA = pa.schema([
    ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
    ("pair_id", pa.string()), ("prompt_id", pa.string()), ("chosen_id", pa.string()),
    ("rejected_id", pa.string()), ("label_source", pa.string()), ("confidence", pa.float64()), ("agreement", pa.float64()),
    ("n_votes", pa.int64()),
    # The conversation before the answers as JSON chat messages, for multi-turn (imported) prompts;
    # null for single-turn ones, whose `prompt` is the user's message.
    ("prompt_messages", pa.string()),
    # True for pairs kept as ties (curate.ties: keep): chosen/rejected are then just the two responses.
    ("tie", pa.bool_()),
    # The two responses' scores (mean over their raters: rating and ranking judges, annotators, rated
    # imports), null when unscored; score_margin is their difference as a share of the scale, the
    # margin train.margin: score reads.
    ("chosen_score", pa.float64()), ("rejected_score", pa.float64()), ("score_margin", pa.float64()),
])


# Rows per Parquet row group and per batch read from DuckDB: a split of millions of pairs streams
# through in batches, so the export's memory does not grow with the run.
BATCH_ROWS = 100_000


# The run's rows with their texts are a join of each pair with three texts (pair_texts). Under
# store.memory_limit, joining millions of pairs at once spills its hash tables to disk: at 10M pairs
# (8.1M rows of ~555 text bytes, 2GB) 71 s at once against 35 s in 8 ranges of prompt_id, which the
# view's joins carry to prompts, pairs and candidates alike. A range holds as many rows as fit the
# memory limit at this many bytes of memory per byte of text (1M rows of that size under 2GB).
MEMORY_PER_TEXT_BYTE = 4


@contextmanager
def curation_run_rows(store: StoreReader, curation_run_id: str) -> Iterator[str]:
    """The run's rows with their texts as a temp table (spilling to disk when large), for the export
    and the card to read instead of joining the texts again for each split and each plot."""
    con = store.con
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_run_rows AS SELECT * FROM curated_pairs_export LIMIT 0")
    try:
        for prompts in prompt_ranges(store, curation_run_id):
            con.execute("INSERT INTO _curation_run_rows SELECT * FROM curated_pairs_export "
                        f"WHERE curation_run_id = ? AND {prompts}", [curation_run_id])
        yield "_curation_run_rows"
    finally:
        con.execute("DROP TABLE IF EXISTS _curation_run_rows")


def prompt_ranges(store: StoreReader, curation_run_id: str) -> list[str]:
    """SQL conditions on prompt_id that split the run's rows into ranges small enough to join with
    their texts in memory, together covering every prompt_id (ids are hex hashes, so ranges of
    equal width hold about equal shares; any other id still falls in exactly one)."""
    rows = store.scalar("SELECT count(*) FROM curated_pairs WHERE curation_run_id = ?", [curation_run_id])
    # the texts' size from the first 10,000 of each (milliseconds at 10M pairs), a prompt and two responses a row
    prompt_bytes, response_bytes = (store.scalar(f"SELECT avg(strlen(text)) FROM (SELECT text FROM {table} LIMIT 10000)")
                                    or 0 for table in ("prompts", "candidates"))
    rows_per_range = memory_limit_bytes(store) // max(MEMORY_PER_TEXT_BYTE * (prompt_bytes + 2 * response_bytes), 1)
    return range_conditions(min(max(1, math.ceil(rows / max(rows_per_range, 1))), 256))


def range_conditions(n: int) -> list[str]:
    """n conditions on prompt_id, exactly one true for any id: ranges of equal width over hex ids."""
    bounds = [f"'{i * 16 ** 4 // n:04x}'" for i in range(1, n)]  # 4 hex digits: 65,536 possible ranges
    if not bounds:
        return ["true"]
    return ([f"prompt_id < {bounds[0]}"]
            + [f"prompt_id >= {low} AND prompt_id < {high}" for low, high in zip(bounds, bounds[1:])]
            + [f"prompt_id >= {bounds[-1]}"])


_UNITS = {"bytes": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40,
          "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12}


def memory_limit_bytes(store: StoreReader) -> int:
    """DuckDB's memory limit on this connection, from current_setting's words ("1.8 GiB")."""
    return size_bytes(str(store.scalar("SELECT current_setting('memory_limit')")))


def size_bytes(size: str) -> int:
    """Bytes in a size as DuckDB writes one ("1.8 GiB", "476.8 MiB", "2GB"); a size it does not
    read as one (a DuckDB that words it otherwise) counts as no limit: the run is staged at once."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", size)
    if not found or found.group(2) not in _UNITS:
        return 2 ** 62
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def export_curation_run(store: StoreReader, curation_run_id: str, output_root: Path, manifest_extra: dict,
                        rows: str = "curated_pairs_export") -> Path:
    """Parquet per split and a manifest, from `rows` (the view, or curation_run_rows' table)."""
    out = Path(output_root) / curation_run_id[:16]
    out.mkdir(parents=True, exist_ok=True)
    paths = {split: out / f"{split}.parquet" for split in SPLITS}
    written = _write_splits(store, rows, curation_run_id, paths)
    files, empty = {}, []
    for split, path in paths.items():
        if written[split] == 0:
            # `datasets` cannot read an empty Parquet file; an empty split is listed, not written.
            path.unlink(missing_ok=True)
            empty.append(split)
            continue
        files[split] = {"path": path.name, "rows": written[split], "sha256": file_sha256(path)}

    manifest = {
        "curation_run_id": curation_run_id,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": str(Path(store.path).resolve()),
        "format": {"columns": EXPORT_SCHEMA.names, "style": "trl-explicit-prompt-preference"},
        "files": files,
        "empty_splits": empty,
        "load_with": f"datasets.load_dataset('parquet', data_files={{s: '{out}/' + s + '.parquet' for s in {list(files)}}})",
        **manifest_extra,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def _write_splits(store: StoreReader, rows: str, curation_run_id: str, paths: dict[str, Path]) -> dict[str, int]:
    """Every split's rows, sorted by pair_id (the same run exports byte-identical files), from one
    sorted read of the run (a sort per split read every staged text three times: at 10M pairs the
    splits took 60 s), streamed into each split's file batch by batch, so memory does not grow with
    the run; returns how many rows each file holds."""
    batches = store.con.sql(
        f"SELECT split, {', '.join(EXPORT_SCHEMA.names)} FROM {rows} WHERE curation_run_id = $run ORDER BY pair_id",
        params={"run": curation_run_id}).to_arrow_reader(BATCH_ROWS)
    files = {split: _SplitFile(path) for split, path in paths.items()}
    # the reader and the files closed however this ends: the reader left open holds the connection,
    # and dropping the staged rows after (curation_run_rows) would fail with that instead of this error
    with closing(batches), ExitStack() as closing_files:
        for file in files.values():
            closing_files.callback(file.close)
        for batch in batches:
            split = batch.column("split")
            for name, file in files.items():
                part = batch.filter(pc.equal(split, name))
                if part.num_rows:
                    file.add(pa.Table.from_batches([part]).drop_columns(["split"]).cast(EXPORT_SCHEMA))
        for file in files.values():
            file.finish()
    return {split: file.rows for split, file in files.items()}


class _SplitFile:
    """One split's Parquet file, opened at its first row, in row groups of exactly BATCH_ROWS rows
    whatever batch sizes the read hands over: the file's bytes depend on its rows only."""

    def __init__(self, path: Path):
        self.path, self.rows = path, 0
        self._pending: list[pa.Table] = []
        self._writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self.rows += table.num_rows
        pending = sum(part.num_rows for part in self._pending)
        if pending >= BATCH_ROWS:
            whole = pa.concat_tables(self._pending)
            full = pending - pending % BATCH_ROWS
            self._write(whole.slice(0, full))
            self._pending = [whole.slice(full)]

    def finish(self) -> None:
        rest = [part for part in self._pending if part.num_rows]
        if rest:
            self._write(pa.concat_tables(rest))
        self._pending = []

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, EXPORT_SCHEMA, compression="zstd")
        self._writer.write_table(table, row_group_size=BATCH_ROWS)
