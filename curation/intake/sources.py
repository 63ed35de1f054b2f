"""Reading an input source row by row: JSONL, CSV, Parquet or a `datasets` dataset (a folder
saved with save_to_disk, or a hub name). A row that cannot be read comes back as a SourceRow with
its error, never as an exception; a source that cannot be read at all raises IngestError."""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq


class IngestError(ValueError):
    """The source as a whole cannot be ingested."""


@dataclass
class SourceRow:
    row: int  # 1-based line (JSONL, CSV data rows) or row index + 1 (Parquet, datasets)
    values: dict | None  # None when the row itself could not be read
    error: str | None = None
    field: str | None = None
    raw: str | None = None


def detect_format(source: str) -> str:
    path = Path(source)
    if path.is_dir():
        return "datasets"
    suffix = path.suffix.lower()
    if suffix == ".gz":  # a compressed file reads as what it holds: pairs.jsonl.gz is JSONL
        suffix = Path(path.stem).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if not path.exists():
        return "datasets"  # a hub dataset name
    raise IngestError(f"{source}: cannot tell the format from the name; set ingest.format")


# -- readers: each yields SourceRow in file order ------------------------------------------------

def _read_jsonl(path: Path) -> Iterator[SourceRow]:
    with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield SourceRow(number, None, f"not valid UTF-8 (byte {error.start} of the line)",
                                raw=line.decode("utf-8", "replace")[:500])
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                yield SourceRow(number, None, f"not valid JSON: {error.msg} at column {error.colno}", raw=text[:500])
                continue
            if not isinstance(record, dict):
                yield SourceRow(number, None, f"expected a JSON object, got {type(record).__name__}", raw=text[:500])
                continue
            yield SourceRow(number, record)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _read_csv(path: Path) -> tuple[list[str], Iterator[SourceRow]]:
    # surrogateescape keeps undecodable bytes visible per field, so one bad row does not sink the file.
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = list(reader.fieldnames or [])

    def rows() -> Iterator[SourceRow]:
        for record in reader:
            number = reader.line_num  # physical line of the row's end; header is line 1
            bad = [key for key, value in record.items() if isinstance(value, str) and _has_surrogates(value)]
            if bad:
                yield SourceRow(number, None, "not valid UTF-8", field=bad[0],
                                raw=str(record[bad[0]]).encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:500])
                continue
            yield SourceRow(number, record)

    return header, rows()


def _table_rows(table: pa.Table) -> Iterator[SourceRow]:
    for index, record in enumerate(table.to_pylist(), start=1):
        yield SourceRow(index, record)


def _load_datasets_table(source: str, split: str) -> pa.Table:
    import datasets  # heavy import, only when needed

    path = Path(source)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
                          or (path / "state.json").exists()):
        loaded = datasets.load_from_disk(str(path))
    else:
        loaded = datasets.load_dataset(source, split=split)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise IngestError(f"{source}: no split {split!r}; it has {sorted(loaded)}")
        loaded = loaded[split]
    return loaded.data.table


def read_source(source: str, fmt: str, split: str) -> tuple[list[str] | None, Iterator[SourceRow]]:
    """Return (columns known up front or None, rows)."""
    path = Path(source)
    if fmt != "datasets":
        if not path.is_file():
            raise IngestError(f"{source}: file not found")
        if path.stat().st_size == 0:
            raise IngestError(f"{source}: file is empty")
    if fmt == "jsonl":
        return None, _read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        try:
            table = pq.read_table(path)
        except pa.ArrowException as error:
            raise IngestError(f"{source}: not a readable Parquet file: {error}") from None
        return table.column_names, _table_rows(table)
    table = _load_datasets_table(source, split)
    return table.column_names, _table_rows(table)
