"""Reading an input source row by row: JSONL, CSV, Parquet or a `datasets` dataset (a folder
saved with save_to_disk, or a hub name). A row that cannot be read comes back as a SourceRow with
its error, never as an exception; a source that cannot be read at all raises IngestError."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
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

def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _surrogate_field(record: dict) -> str | None:
    """The first field whose text holds a lone surrogate (valid JSON, `"\\ud800"`, but not text
    that can be stored), searching nested values too."""
    def bad(value) -> bool:
        if isinstance(value, str):
            return _has_surrogates(value)
        if isinstance(value, dict):
            return any(bad(item) for item in value.values())
        if isinstance(value, list):
            return any(bad(item) for item in value)
        return False

    return next((key for key, value in record.items() if bad(value)), None)


def printable(text: str | None) -> str | None:
    """Text safe to store and print: a lone surrogate or undecodable byte becomes an escape."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _starts_with_array(path: Path) -> bool:
    with _open_bytes(path) as handle:
        head = handle.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return head.startswith("[")


def _read_json_array(path: Path) -> Iterator[SourceRow]:
    """A .json file holding one array of objects (pretty-printed or not): row N is the N-th element."""
    with _open_bytes(path) as handle:
        raw = handle.read()
    try:
        records = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise IngestError(f"{path}: not valid UTF-8 (byte {error.start}); save it as UTF-8") from None
    except json.JSONDecodeError as error:
        raise IngestError(f"{path}: starts like a JSON array but is not valid JSON: {error.msg} at line "
                          f"{error.lineno}, column {error.colno} (JSONL holds one object per line)") from None
    if not isinstance(records, list):
        raise IngestError(f"{path}: expected a JSON array of objects")
    for number, record in enumerate(records, start=1):
        yield _checked(number, record, lambda record=record: json.dumps(record, ensure_ascii=True)[:500])


def _checked(number: int, record, raw) -> SourceRow:
    if not isinstance(record, dict):
        return SourceRow(number, None, f"expected a JSON object, got {type(record).__name__}", raw=raw())
    field = _surrogate_field(record)
    if field is not None:
        return SourceRow(number, None, "not valid Unicode (a lone surrogate escape such as \\ud800)", field=field,
                         raw=raw())
    return SourceRow(number, record)


def _read_jsonl(path: Path) -> Iterator[SourceRow]:
    with _open_bytes(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]  # a UTF-8 byte-order mark (Windows editors write one)
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
                yield SourceRow(number, None, f"not valid JSON: {error.msg} at column {error.colno}",
                                raw=printable(text[:500]))
                continue
            yield _checked(number, record, lambda text=text: printable(text[:500]))


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _read_csv(path: Path) -> tuple[list[str], Iterator[SourceRow]]:
    # surrogateescape keeps undecodable bytes visible per field, so one bad row does not sink the file;
    # utf-8-sig drops a byte-order mark, which would otherwise stick to the first column's name.
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    # strict: an unterminated quote is an error, not a field that silently swallows the rest of the file
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect, strict=True)
    header = list(reader.fieldnames or [])

    def rows() -> Iterator[SourceRow]:
        last_line = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield SourceRow(last_line + 1, None, f"not valid CSV from this line on ({error}; an unterminated "
                                "quote?): the rest of the file was not read")
                return
            number = reader.line_num  # physical line of the row's end; header is line 1
            last_line = number
            if None in record:
                yield SourceRow(number, None, f"{len(header) + len(record[None])} fields where the header names "
                                f"{len(header)} (an unquoted separator?)", raw=printable(str(record[None])[:500]))
                continue
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
    elif not _looks_like_hub_name(source):
        raise IngestError(f"{source}: no such file or folder")
    else:
        try:
            loaded = datasets.load_dataset(source, split=split)
        except Exception as error:  # offline, unknown name, private: the library raises many kinds
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise IngestError(f"{source}: no such file or folder, and not a dataset `datasets` could load "
                              f"({type(error).__name__}: {first[:200]})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise IngestError(f"{source}: no split {split!r}; it has {sorted(loaded)}")
        loaded = loaded[split]
    return loaded.data.table


def _looks_like_hub_name(source: str) -> bool:
    """`name` or `owner/name`, as the hub spells them; paths (./x, /x, a/b/c) are not."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", source) is not None and not source.startswith(".")


def read_source(source: str, fmt: str, split: str) -> tuple[list[str] | None, Iterator[SourceRow]]:
    """Return (columns known up front or None, rows)."""
    path = Path(source)
    if fmt != "datasets":
        if not path.is_file():
            raise IngestError(f"{source}: file not found")
        if path.stat().st_size == 0:
            raise IngestError(f"{source}: file is empty")
    if fmt == "jsonl":
        return None, (_read_json_array(path) if _starts_with_array(path) else _read_jsonl(path))
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
