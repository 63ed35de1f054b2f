"""Reading an input source row by row: JSONL, a JSON array, CSV, Parquet (each maybe gzipped) or a
`datasets` dataset (a folder saved with save_to_disk, or a hub name). A row that cannot be read
comes back as a SourceRow with its error, never as an exception; a source that cannot be read at
all raises IngestError. A source that breaks off part way (a truncated .gz, a JSON array whose
brackets never close) ends with a SourceRow marked `stops`: the rows before it are good, the
stage stores them and then fails."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import reprlib
import sys
import unicodedata
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from prefcurate.curation.intake.json_array import array_elements


class IngestError(ValueError):
    """The source as a whole cannot be ingested."""


@dataclass
class SourceRow:
    row: int  # 1-based line (JSONL, CSV data rows), element (JSON array) or row index + 1 (Parquet, datasets)
    values: dict | None  # None when the row itself could not be read
    error: str | None = None
    field: str | None = None
    raw: str | None = None
    stops: bool = False  # the source breaks off here: nothing after it could be read


# Deeper values are refused per row: real rows nest a few levels (chat messages: 3), and a bound
# keeps every later step (json.dumps for the rejects, the surrogate walk) away from the recursion limit.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp"})  # format characters (zero-width, BOM) and separators


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


# -- text checks every intake stage shares ----------------------------------------------------------

def _invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _INVISIBLE


def is_blank(text: str) -> bool:
    """Nothing a reader could see: whitespace (NBSP too), zero-width characters, byte-order marks."""
    return all(_invisible(char) for char in text)


def strip_invisible(text: str) -> str:
    """The text without the invisible characters is_blank looks for at either end."""
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def printable(text: str | None) -> str | None:
    """Text safe to store and print: a lone surrogate or undecodable byte becomes an escape."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def raw_text(value, limit: int = 500) -> str:
    """A value as a reject's raw column shows it (JSON, cut to `limit`); never raises, whatever it holds."""
    if isinstance(value, str):
        return printable(value[:limit])
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # an integer too long to print, or deep nesting from a library
        text = _SHORT_REPR.repr(value)
    return printable(text[:limit])


class _ShortRepr(reprlib.Repr):
    """repr cut short at every level (so any depth), and an integer too long to print by its size."""

    def repr_int(self, x, level):
        try:
            return super().repr_int(x, level)
        except ValueError:
            return f"<an integer of {x.bit_length()} bits>"


_SHORT_REPR = _ShortRepr()


def row_reject(source: str, item: SourceRow, field: str | None, reason: str) -> dict:
    """A reject of one source row, naming its file, row and field, with the row as read (or its raw text)."""
    raw = raw_text(item.values) if item.values is not None else item.raw
    return {"source": source, "source_row": item.row, "field": field, "reason": reason, "raw": raw}


def _has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _value_problem(value) -> str | None:
    """What makes a field's value unstorable: a lone surrogate (valid JSON, `"\\ud800"`, but not text)
    anywhere inside it, or nesting deeper than MAX_DEPTH. Walked with a stack, not recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _has_surrogates(item):
                return "not valid Unicode (a lone surrogate escape such as \\ud800)"
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _checked(number: int, record, raw) -> SourceRow:
    if not isinstance(record, dict):
        return SourceRow(number, None, f"expected a JSON object, got {type(record).__name__}", raw=raw())
    for key, value in record.items():
        problem = _value_problem(key) or _value_problem(value)
        if problem is not None:
            return SourceRow(number, None, problem, field=printable(key), raw=raw())
    return SourceRow(number, record)


def _parsed(number: int, text: str) -> SourceRow:
    """One JSON row: a reject (not an exception) when it cannot be parsed, however it fails."""
    raw = lambda: printable(text[:500])  # noqa: E731 (built only for a reject)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return SourceRow(number, None, f"not valid JSON: {error.msg} at column {error.colno}"
                         + (f" of line {error.lineno} of the element" if error.lineno > 1 else ""), raw=raw())
    except RecursionError:
        return SourceRow(number, None, f"nested deeper than {MAX_DEPTH} levels", raw=raw())
    except ValueError:  # the only other failure: an integer longer than Python converts
        return SourceRow(number, None, f"a number with more than {sys.get_int_max_str_digits()} digits", raw=raw())
    return _checked(number, record, raw)


# -- bytes: plain or gzipped ---------------------------------------------------------------------------

class SourceBroken(Exception):
    """The bytes of a source stop making sense part way; what came before is good."""


_CHUNK = 1 << 16


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _gunzipped(path: Path) -> Iterator[bytes]:
    """A .gz file's contents as they decompress, every member (`cat a.gz b.gz` is valid); after the
    last good byte, SourceBroken saying where the data ends early or is damaged."""
    decompressor, started, offset, produced = zlib.decompressobj(wbits=31), False, 0, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            start, offset = offset, offset + len(chunk)
            while chunk:
                try:
                    text = decompressor.decompress(chunk)
                except zlib.error as error:
                    raise SourceBroken(f"damaged gzip data in bytes {start}-{offset} of the file ({error}), "
                                       f"after {produced} bytes of text") from None
                started, produced = True, produced + len(text)
                if text:
                    yield text
                chunk = b""
                if decompressor.eof:  # one member ends; another may follow
                    chunk, decompressor, started = decompressor.unused_data, zlib.decompressobj(wbits=31), False
    if started:
        raise SourceBroken(f"the gzip data ends early: the file stops at byte {offset} inside a compressed block "
                           f"(cut off in a download or copy?), after {produced} bytes of text")


def _file_bytes(path: Path) -> tuple[bytes, str | None]:
    """The whole file (gunzipped) and, when it breaks off, why; the readable part is kept."""
    if not _is_gzip(path):
        return path.read_bytes(), None
    parts = []
    try:
        for part in _gunzipped(path):
            parts.append(part)
    except SourceBroken as broken:
        return b"".join(parts), str(broken)
    return b"".join(parts), None


def whole_file(path: Path) -> bytes:
    """The file's bytes, gunzipped; IngestError naming the file and where, when it is not all there."""
    _check_gzip(path)
    data, broken = _file_bytes(path)
    if broken is not None:
        raise IngestError(f"{path}: {broken}")
    return data


def _byte_lines(path: Path) -> Iterator[bytes]:
    """The file's lines (gunzipped), streamed; on a break, SourceBroken after the last whole line."""
    if not _is_gzip(path):
        with open(path, "rb") as handle:
            yield from handle
        return
    pending = bytearray()
    for chunk in _gunzipped(path):  # a break raises here, dropping the cut-off line in `pending`
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end + 1])
            start = end + 1
        del pending[:start]
    if pending:
        yield bytes(pending)


class _WholeLines(io.RawIOBase):
    """The file's bytes (gunzipped) as a stream for a text reader. When a .gz breaks off, the
    stream ends after the last whole line (a cut-off line is not a row) and `broken` says why."""

    def __init__(self, path: Path):
        self.broken: str | None = None
        self._chunks = self._chunks_of(path)
        self._pending, self._offset = b"", 0

    def _chunks_of(self, path: Path) -> Iterator[bytes]:
        if not _is_gzip(path):
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
            return
        held = bytearray()  # after the last line end so far: given out once the line is known to be whole
        try:
            for chunk in _gunzipped(path):
                cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1  # only the new bytes are searched
                if cut:
                    held += chunk[:cut]
                    yield bytes(held)
                    held = bytearray(chunk[cut:])
                else:
                    held += chunk
        except SourceBroken as broken:
            self.broken = str(broken)
            return
        if held:
            yield bytes(held)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset >= len(self._pending):
            self._pending, self._offset = next(self._chunks, b""), 0
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending) - self._offset)
        buffer[:size] = self._pending[self._offset:self._offset + size]
        self._offset += size
        return size


def _head(path: Path, size: int = 4096) -> bytes:
    """The first bytes of the file's contents, as far as they can be read."""
    if not _is_gzip(path):
        with open(path, "rb") as handle:
            return handle.read(size)
    head = b""
    try:
        for chunk in _gunzipped(path):
            head += chunk
            if len(head) >= size:
                break
    except SourceBroken:
        pass
    return head[:size]


def _check_gzip(path: Path) -> None:
    if not _is_gzip(path):
        return
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        raise IngestError(f"{path}: the name ends in .gz but the file is not gzip data (it starts with {magic!r}); "
                          "rename it without .gz if it is not compressed")


# -- JSON: one object per line, or one array of objects ---------------------------------------------

def _starts_with_array(path: Path) -> bool:
    """A .json file may hold an array or JSON lines; .jsonl and .ndjson always hold lines (the
    first of which may itself be an array)."""
    named = path.name.lower().removesuffix(".gz")
    return named.endswith(".json") and _head(path).decode("utf-8", "replace").lstrip("\ufeff \t\r\n").startswith("[")


def _read_jsonl(path: Path) -> Iterator[SourceRow]:
    number = 0
    try:
        for number, line in enumerate(_byte_lines(path), start=1):
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
            yield _parsed(number, text)
    except SourceBroken as broken:
        yield SourceRow(number + 1, None, str(broken), stops=True)


class _DecodedText:
    """The file's text (gunzipped, decoded) in pieces, as it is read. Undecodable bytes stay
    visible (surrogateescape), for the element that holds them to be rejected; when a .gz breaks
    off, the pieces end where the good data ends and `broken` says why."""

    def __init__(self, path: Path):
        self.path, self.broken = path, None

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
        try:
            for chunk in _content(self.path):
                yield decoder.decode(chunk)
        except SourceBroken as broken:
            self.broken = str(broken)
        yield decoder.decode(b"", final=True)


def _content(path: Path) -> Iterator[bytes]:
    if _is_gzip(path):
        yield from _gunzipped(path)
        return
    with open(path, "rb") as handle:
        while chunk := handle.read(_TEXT_CHUNK):
            yield chunk


_TEXT_CHUNK = 1 << 20


def _read_json_array(path: Path) -> Iterator[SourceRow]:
    """A .json file holding one array of objects (pretty-printed or not): row N is the N-th element,
    read as the file streams in (json_array.py). One bad element is one reject."""
    text = _DecodedText(path)
    number = 0
    for element in array_elements(iter(text)):
        number = element.number
        if element.stop is not None:
            yield SourceRow(number, None, text.broken or element.stop, stops=True)
            return
        if element.text is None:
            yield _checked(number, element.value, lambda value=element.value: raw_text(value))
        elif _has_surrogates(element.text):
            yield SourceRow(number, None, "not valid UTF-8", raw=printable(element.text[:500]))
        else:
            yield _parsed(number, element.text)
    if text.broken is not None:  # the array looked whole, but the gzip data around it did not end well
        yield SourceRow(number + 1, None, text.broken, stops=True)


# -- CSV ---------------------------------------------------------------------------------------------

@contextmanager
def _any_field_size():
    """A CSV field as long as a JSON one (the csv module stops at 131,072 characters and reads
    the rest of the file as that field's overflow). The limit is global: set only while reading."""
    previous = csv.field_size_limit()
    try:
        csv.field_size_limit(sys.maxsize)
    except OverflowError:  # where a C long is 32 bits
        csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv(path: Path) -> tuple[list[str], Iterator[SourceRow]]:
    stream = _WholeLines(path)
    # surrogateescape keeps undecodable bytes visible per field, so one bad row does not sink the file;
    # utf-8-sig drops a byte-order mark, which would otherwise stick to the first column's name.
    # Read as a stream, so the file is never in memory as a whole.
    text = io.TextIOWrapper(io.BufferedReader(stream, _CHUNK), encoding="utf-8-sig", errors="surrogateescape",
                            newline="")
    dialect = "excel-tab" if ".tsv" in [suffix.lower() for suffix in path.suffixes[-2:]] else "excel"
    # strict: an unterminated quote is an error, not a field that silently swallows the rest of the file
    reader = csv.DictReader(text, dialect=dialect, strict=True)
    with _any_field_size():
        header = list(reader.fieldnames or [])
    if not header and stream.broken is not None:
        raise IngestError(f"{path}: {stream.broken}; not even the header could be read")

    def rows() -> Iterator[SourceRow]:
        last_line = 1
        while True:
            try:
                with _any_field_size():
                    record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                # the rows after it are not read: the read breaks off here (exit 1, the rows before kept)
                yield SourceRow(last_line + 1, None, f"not valid CSV from this line on ({error}; an unterminated "
                                "quote?): the rest of the file was not read", stops=True)
                break
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
        if stream.broken is not None:
            yield SourceRow(last_line + 1, None, stream.broken, stops=True)

    return header, rows()


# -- tables: Parquet and `datasets` ---------------------------------------------------------------------

def _read_parquet(path: Path) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """The file's columns and its rows in batches, read a row group at a time (never whole, but
    for a gzipped file, whose index at the end can only be reached by decompressing it all)."""
    data, broken = _file_bytes(path) if _is_gzip(path) else (None, None)
    if broken is not None:
        raise IngestError(f"{path}: {broken}; a Parquet file cannot be read in part (its index is at the end)")
    try:
        file = pq.ParquetFile(path if data is None else pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        raise IngestError(f"{path}: not a readable Parquet file: {error}") from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from file.iter_batches(batch_size=_TABLE_BATCH)
        except (pa.ArrowException, OSError) as error:  # a damaged row group: the rows before it are good
            raise SourceBroken(f"the Parquet data cannot be read from here on ({error})") from None

    return file.schema_arrow.names, batches()


_TABLE_BATCH = 4096


def _table_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[SourceRow]:
    number = 0
    try:
        for batch in batches:
            try:
                records = batch.to_pylist()
            except (ValueError, OverflowError, pa.ArrowException):  # e.g. a timestamp past year 9999
                records = None
            for index in range(batch.num_rows):
                number += 1
                if records is None:
                    yield _converted_row(number, batch.slice(index, 1))
                else:
                    yield _checked(number, records[index], lambda record=records[index]: raw_text(record))
    except SourceBroken as broken:
        yield SourceRow(number + 1, None, str(broken), stops=True)


def _converted_row(number: int, row: pa.RecordBatch) -> SourceRow:
    """One row of a batch that did not convert as a whole: a reject naming the column that fails."""
    record = {}
    for name, column in zip(row.schema.names, row.columns):
        try:
            record[name] = column[0].as_py()
        except (ValueError, OverflowError, pa.ArrowException) as error:
            return SourceRow(number, None, f"a {column.type} value Python cannot hold ({error})", field=name,
                             raw=_stored_value(column))
    return _checked(number, record, lambda: raw_text(record))


def _stored_value(column: pa.Array) -> str:
    """A value as Arrow stores it (a timestamp as its integer), for a value Python cannot convert."""
    try:
        return printable(str(column.cast(pa.int64())[0]))[:500]
    except (ValueError, OverflowError, pa.ArrowException):
        return f"<a {column.type} value>"


def _saved_dataset(path: Path) -> bool:
    return any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _load_datasets_table(source: str, split: str) -> pa.Table:
    import datasets  # heavy import, only when needed

    path = Path(source)
    if path.is_dir():  # one rule however the folder's path is written: saved with save_to_disk, or refused
        if not _saved_dataset(path):
            raise IngestError(f"{source}: a folder, but not one saved with datasets' save_to_disk (no "
                              "dataset_info.json, state.json or dataset_dict.json); give the data file itself")
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as error:  # a damaged save: the library raises many kinds
            raise IngestError(f"{source}: a saved dataset that cannot be loaded ({type(error).__name__}: "
                              f"{_first_line(error)})") from None
    elif path.exists():
        raise IngestError(f"{source}: a file, not a dataset folder; set ingest.format to its format")
    elif not _looks_like_hub_name(source):
        raise IngestError(f"{source}: no such file or folder")
    else:
        try:
            loaded = datasets.load_dataset(source, split=split)
        except Exception as error:  # offline, unknown name, private: the library raises many kinds
            raise IngestError(f"{source}: no such file or folder, and not a dataset `datasets` could load "
                              f"({type(error).__name__}: {_first_line(error)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise IngestError(f"{source}: no split {split!r}; it has {sorted(loaded)}")
        loaded = loaded[split]
    return loaded.data.table


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _looks_like_hub_name(source: str) -> bool:
    """`name` or `owner/name`, as the hub spells them; paths (./x, /x, a/b/c) are not."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", source) is not None and not source.startswith(".")


def read_source(source: str, fmt: str, split: str) -> tuple[list[str] | None, Iterator[SourceRow]]:
    """Return (columns known up front or None, rows)."""
    path = Path(source)
    if fmt != "datasets":
        if path.is_dir():
            raise IngestError(f"{source}: a folder, not a {fmt} file")
        if not path.is_file():
            raise IngestError(f"{source}: file not found")
        if path.stat().st_size == 0:
            raise IngestError(f"{source}: file is empty")
        _check_gzip(path)
    if fmt == "jsonl":
        return None, (_read_json_array(path) if _starts_with_array(path) else _read_jsonl(path))
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        columns, batches = _read_parquet(path)
        return columns, _table_rows(batches)
    table = _load_datasets_table(source, split)
    return table.column_names, _table_rows(iter(table.to_batches(max_chunksize=_TABLE_BATCH)))
