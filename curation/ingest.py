"""Ingest prompts from JSONL, Parquet, CSV or a `datasets` dataset into the store.

Rows that cannot be used (bad encoding, missing or empty prompt, wrong type) go to the rejects
table with the file, row and reason; exact duplicates (same normalized text) collapse into one.
A file that cannot be used at all (missing, empty, lacking the prompt column) raises IngestError
before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from prefcurate.core.config import IngestConfig
from prefcurate.core.hashing import prompt_id
from prefcurate.core.store import StageReport, Store

STAGE = "ingest"


class IngestError(ValueError):
    """The source as a whole cannot be ingested."""


@dataclass
class SourceRow:
    row: int  # 1-based line (JSONL, CSV data rows) or row index + 1 (Parquet, datasets)
    values: dict | None  # None when the row itself could not be read
    error: str | None = None
    field: str | None = None
    raw: str | None = None


def embedded_prompts_path() -> Path:
    return Path(str(resources.files("prefcurate").joinpath("data/prompts.jsonl")))


def detect_format(source: str) -> str:
    path = Path(source)
    if path.is_dir():
        return "datasets"
    suffix = path.suffix.lower()
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
    with open(path, "rb") as handle:
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


# -- the stage ---------------------------------------------------------------------------------

def _reject(source: str, row: int | None, field: str | None, reason: str, raw: str | None) -> dict:
    return {"source": source, "source_row": row, "field": field, "reason": reason, "raw": raw}


def ingest_prompts(store: Store, config: IngestConfig) -> StageReport:
    source = config.source or str(embedded_prompts_path())
    fmt = detect_format(source) if config.format == "auto" else config.format
    columns, rows = read_source(source, fmt, config.split)
    if columns is not None and config.prompt_column not in columns:
        raise IngestError(f"{source}: no column {config.prompt_column!r} (set ingest.prompt_column); "
                          f"columns are {columns}")
    if columns is not None and config.id_column and config.id_column not in columns:
        raise IngestError(f"{source}: no column {config.id_column!r} (ingest.id_column); columns are {columns}")

    report = StageReport(STAGE, details={"source": source, "format": fmt})
    accepted: dict[str, dict] = {}
    rejects: list[dict] = []
    duplicates = 0
    missing_column_rows = 0
    seen_keys: set[str] = set()
    for item in rows:
        report.count_in += 1
        if item.values is None:
            rejects.append(_reject(source, item.row, item.field, item.error, item.raw))
            continue
        seen_keys.update(item.values)
        if config.prompt_column not in item.values:
            missing_column_rows += 1
            rejects.append(_reject(source, item.row, config.prompt_column, "missing field", json.dumps(item.values)[:500]))
            continue
        text = item.values[config.prompt_column]
        if not isinstance(text, str):
            rejects.append(_reject(source, item.row, config.prompt_column,
                                   f"prompt must be a string, got {type(text).__name__}", repr(text)[:500]))
            continue
        if not text.strip():
            rejects.append(_reject(source, item.row, config.prompt_column, "empty prompt", text[:500]))
            continue
        key = prompt_id(text)
        if key in accepted:
            duplicates += 1
            continue
        external = item.values.get(config.id_column) if config.id_column else None
        accepted[key] = {"prompt_id": key, "text": text, "source": source, "source_row": item.row,
                         "external_id": None if external is None else str(external)}

    if report.count_in == 0:
        raise IngestError(f"{source}: no rows")
    if not accepted and missing_column_rows == report.count_in:
        raise IngestError(f"{source}: no row has the field {config.prompt_column!r} (set ingest.prompt_column); "
                          f"fields seen: {sorted(seen_keys)}")

    with store.transaction():
        new = store.insert_new("prompts", pa.Table.from_pylist(list(accepted.values()), schema=_PROMPT_SCHEMA))
        new_rejects = store.add_rejects(STAGE, rejects)
    report.count_out = len(accepted)
    report.details.update(rejected=len(rejects), duplicates_in_source=duplicates,
                          new_prompts=new, already_stored=len(accepted) - new, new_rejects=new_rejects)
    return report.finish()


_PROMPT_SCHEMA = pa.schema([("prompt_id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                            ("source_row", pa.int64()), ("external_id", pa.string())])
