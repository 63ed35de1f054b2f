"""Every reader, fed generated files of good and bad rows mixed (issue 23, "no silent wrong label").

For JSONL, a JSON array, CSV and Parquet, plain or gzipped (and gzip cut off part way), ingest and
import-pairs run on a fresh store and must: store the good rows exactly (same texts), reject each
bad row once naming its row and field, fail (StageFailed, after storing) when the read broke off,
kept nothing or rejected more than max_reject_share, refuse up front (IngestError, nothing stored)
only a source with no rows or none with the prompt field, and raise nothing else, ever."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from prefcurate.core.config import IngestConfig
from prefcurate.core.stage_report import StageFailed
from prefcurate.core.store import Store
from prefcurate.curation.intake.preference_pairs import import_preference_pairs
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.intake import sources
from prefcurate.curation.intake.sources import IngestError, read_source

# 2 x 40 examples take ~12 s on 2 cores (a fresh DuckDB store each). A longer search:
# PREFCURATE_PROPERTY_EXAMPLES=1000 pytest tests/test_reader_properties.py
PROPERTY_SETTINGS = settings(max_examples=int(os.environ.get("PREFCURATE_PROPERTY_EXAMPLES", "40")), deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u00a0\u3000\u2028 \t\r\n"
BLANK = st.text(alphabet=INVISIBLE, max_size=6)
TEXT = st.text(max_size=20)  # any characters but lone surrogates: NUL, controls, U+2028, RTL, emoji
LONG = "L" * 140_000  # past the csv module's 131,072-character field limit
DEEP = b"[" * 100_000 + b"]" * 100_000
BROKEN_LINES = [b'{"prompt": "x"', b"{'prompt': 'x'}", b"not json", b'{"prompt": "x",}', b'{"prompt" "x"}',
                b"{prompt: 1}"]
BROKEN_ELEMENTS = [b"{'prompt': 'x'}", b"nope", b'{"prompt": "x",}', b'{"prompt" "x"}', b"{prompt: 1}", b"[1,]"]


@dataclass
class Row:
    kind: str
    field: str | None = None  # the field its reject must name (a bad row)
    good: tuple | None = None  # what the store must hold for it (a good row)
    values: dict | None = None  # the row as data; each format writes it its own way
    line: bytes | None = None  # the row as bytes, where only bytes can be wrong (JSON, CSV)

    @property
    def is_row(self) -> bool:
        return self.kind != "blank_line"


@dataclass
class Case:
    fmt: str  # jsonl | json | csv | parquet
    rows: list[Row]
    gzipped: bool
    cut: tuple[int, int] | None  # gzip cut off inside row `cut[0]`, after `cut[1]` of its bytes
    max_reject_share: float
    columns: list[str] = field(default_factory=list)


# -- rows ------------------------------------------------------------------------------------------

def _json_only_bad(draw, kind: str, index: int, fmt: str, surrogate_field: str) -> Row:
    """Rows that only JSON text can hold: broken, not objects, lone surrogates, bad bytes, depth, size."""
    if kind == "broken_json":
        return Row(kind, None, line=draw(st.sampled_from(BROKEN_LINES if fmt == "jsonl" else BROKEN_ELEMENTS)))
    if kind == "not_object":
        value = draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=3), TEXT, st.none(), st.booleans()))
        return Row(kind, None, line=json.dumps(value).encode())
    if kind == "surrogate":  # valid JSON, not text: "\ud800" as an escape
        values = {"prompt": f"p{index}", "chosen": "c", "rejected": "r", surrogate_field: "x \\ud800"}
        line = "{" + ", ".join(f'"{key}": "{value}"' for key, value in values.items()) + "}"
        return Row(kind, surrogate_field, line=line.encode())
    if kind == "surrogate_nested":
        return Row(kind, "meta", line=b'{"prompt": "p%d", "meta": [{"a": "\\udfff"}]}' % index)
    if kind == "bad_utf8":
        return Row(kind, None, line=b'{"prompt": "caf\xe9 %d"}' % index)
    if kind == "deep":  # json.loads gives up (RecursionError): the row is unreadable as a whole
        return Row(kind, None, line=b'{"prompt": "p%d", "x": ' % index + DEEP + b"}")
    if kind == "deep_field":  # parsed, but deeper than MAX_DEPTH
        depth = draw(st.integers(101, 300))
        return Row(kind, "x", line=b'{"prompt": "p%d", "x": ' % index + b"[" * depth + b"]" * depth + b"}")
    if kind == "huge_int":
        digits = draw(st.integers(4301, 6000))
        return Row(kind, None, line=b'{"prompt": "p%d", "n": ' % index + b"7" * digits + b"}")
    assert kind == "blank_line"
    return Row(kind, line=draw(st.sampled_from([b"", b"  ", b"\t"])))


PROMPT_KINDS = {
    "jsonl": ["good", "good", "long", "missing", "non_string", "blank", "broken_json", "not_object", "surrogate",
              "surrogate_nested", "bad_utf8", "deep", "deep_field", "huge_int", "blank_line"],
    "json": ["good", "good", "long", "missing", "non_string", "blank", "broken_json", "not_object", "surrogate",
             "surrogate_nested", "bad_utf8", "deep", "deep_field", "huge_int"],
    "csv": ["good", "good", "long", "missing", "blank", "bad_utf8", "extra_fields"],
    "parquet": ["good", "good", "long", "missing", "blank", "bad_timestamp"],
}


@st.composite
def prompt_row(draw, fmt: str, index: int) -> Row:
    kind = draw(st.sampled_from(PROMPT_KINDS[fmt]))
    meta = draw(TEXT)
    text = f"p{index} " + draw(TEXT)  # unique after normalization: no two good rows collapse
    if kind in ("good", "long"):
        text += LONG if kind == "long" else ""
        return Row(kind, good=(text,), values={"meta": meta, "prompt": text})
    if kind == "missing":  # JSON: no key; CSV: a short row; Parquet: null
        in_json = fmt in ("jsonl", "json")
        return Row(kind, "prompt", values={"meta": meta} if in_json else {"meta": meta, "prompt": None})
    if kind == "non_string":
        value = draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                               st.lists(TEXT, max_size=2), st.dictionaries(TEXT, st.integers(), max_size=2)))
        return Row(kind, "prompt", values={"meta": meta, "prompt": value})
    if kind == "blank":
        return Row(kind, "prompt", values={"meta": meta, "prompt": draw(BLANK)})
    if kind == "bad_utf8" and fmt == "csv":
        column = draw(st.sampled_from(["meta", "prompt"]))
        cells = {"meta": b"m", "prompt": b"p%d" % index, column: b"caf\xe9 \xff"}
        return Row(kind, column, line=cells["meta"] + b"," + cells["prompt"] + b"\r\n")
    if kind == "extra_fields":
        return Row(kind, None, line=b"m,p%d,extra\r\n" % index)
    if kind == "bad_timestamp":  # year ~148,000: Python's datetime cannot hold it
        return Row(kind, "ts", values={"meta": meta, "prompt": text, "ts": 2**62})
    return _json_only_bad(draw, kind, index, fmt, "prompt")


PAIR_KINDS = {
    "jsonl": ["good", "good", "long", "missing_chosen", "missing_rejected", "non_string", "blank_prompt",
              "blank_chosen", "blank_rejected", "identical", "broken_json", "not_object", "surrogate", "bad_utf8",
              "deep", "deep_field", "huge_int", "blank_line"],
    "json": ["good", "good", "long", "missing_chosen", "missing_rejected", "non_string", "blank_prompt",
             "blank_chosen", "blank_rejected", "identical", "broken_json", "not_object", "surrogate", "bad_utf8",
             "deep", "deep_field", "huge_int"],
    "csv": ["good", "good", "long", "missing_chosen", "blank_prompt", "blank_chosen", "blank_rejected", "identical",
            "bad_utf8", "extra_fields"],
    "parquet": ["good", "good", "long", "missing_chosen", "blank_prompt", "blank_chosen", "blank_rejected",
                "identical", "bad_timestamp"],
}


@st.composite
def pair_row(draw, fmt: str, index: int) -> Row:
    kind = draw(st.sampled_from(PAIR_KINDS[fmt]))
    prompt, chosen, rejected = f"q{index} " + draw(TEXT), f"c{index} " + draw(TEXT), f"r{index} " + draw(TEXT)
    values = {"prompt": prompt, "rejected": rejected, "chosen": chosen}
    if kind in ("good", "long"):
        chosen += LONG if kind == "long" else ""
        return Row(kind, good=(prompt, chosen, rejected), values={**values, "chosen": chosen})
    if kind.startswith("missing_"):  # JSON: no key; CSV: a short row (chosen is last); Parquet: null
        side = kind.removeprefix("missing_")
        return Row(kind, side, values={k: v for k, v in values.items() if k != side} if fmt in ("jsonl", "json")
                   else {**values, side: None})
    if kind == "non_string":
        return Row(kind, "prompt", values={**values, "prompt": draw(st.one_of(
            st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.just({"a": 1})))})
    if kind in ("blank_prompt", "blank_chosen", "blank_rejected"):
        side = kind.removeprefix("blank_")
        return Row(kind, side, values={**values, side: draw(BLANK)})
    if kind == "identical":  # the same answer but for invisible characters at its ends
        return Row(kind, "rejected", values={**values, "chosen": f"same{index}" + draw(BLANK),
                                             "rejected": draw(BLANK) + f"same{index}"})
    if kind == "bad_utf8" and fmt == "csv":
        return Row(kind, "chosen", line=b"q%d,r,caf\xe9 \xff\r\n" % index)
    if kind == "extra_fields":
        return Row(kind, None, line=b"q%d,r,c,extra\r\n" % index)
    if kind == "bad_timestamp":
        return Row(kind, "ts", values={**values, "ts": 2**62})
    return _json_only_bad(draw, kind, index, fmt, "chosen" if kind == "surrogate" else "meta")


@st.composite
def cases(draw, row_strategy, columns: list[str], formats=("jsonl", "json", "csv", "parquet")) -> Case:
    fmt = draw(st.sampled_from(formats))
    rows = [draw(row_strategy(fmt, index)) for index in range(draw(st.integers(0, 10)))]
    gzipped = draw(st.booleans())
    cut = None
    if gzipped and rows and draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(rows) - 1))
        cut = (at, draw(st.integers(0, 1 << 20)))  # bytes into that row, bounded by its first line below
    return Case(fmt, rows, gzipped, cut, draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])), columns)


# -- writing the file --------------------------------------------------------------------------------

def _csv_line(cells: list) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow([cell for cell in cells if cell is not None])  # None: a short row
    return buffer.getvalue().encode("utf-8")


def _pieces(case: Case) -> tuple[bytes, list[bytes], bytes, bytes]:
    """(head, one piece per row, separator, tail): the file is head + sep.join(pieces) + tail."""
    if case.fmt == "jsonl":
        return b"", [(row.line if row.line is not None else json.dumps(row.values, ensure_ascii=False).encode())
                     + b"\n" for row in case.rows], b"", b""
    if case.fmt == "json":
        return b"[\n", [row.line if row.line is not None else json.dumps(row.values, ensure_ascii=False).encode()
                        for row in case.rows], b",\n", b"\n]\n"
    assert case.fmt == "csv"
    head = _csv_line(case.columns)
    return head, [row.line if row.line is not None else _csv_line([row.values.get(c) for c in case.columns])
                  for row in case.rows], b"", b""


def _parquet(case: Case) -> bytes:
    names = case.columns + ["ts"]
    records = [{name: row.values.get(name, 0 if name == "ts" else None) for name in names} for row in case.rows]
    schema = pa.schema([(name, pa.timestamp("us") if name == "ts" else pa.string()) for name in names])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=schema), buffer)
    return buffer.getvalue()


def _gzip_cut_after(data: bytes) -> bytes:
    """Gzip data whose bytes all decompress but whose stream then stops: a cut-off copy."""
    compressor = zlib.compressobj(wbits=31)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def write(case: Case, folder: Path) -> Path:
    path = folder / (f"p.{case.fmt}" + (".gz" if case.gzipped else ""))
    if case.fmt == "parquet":
        data = _parquet(case)
        path.write_bytes(_gzip_cut_after(data[:case.cut[1] % len(data)]) if case.cut
                         else gzip.compress(data) if case.gzipped else data)
        return path
    head, pieces, separator, tail = _pieces(case)
    if case.cut is None:
        data = head + separator.join(pieces) + tail
        path.write_bytes(gzip.compress(data) if case.gzipped else data)
        return path
    at, into = case.cut
    first_line = re.split(rb"\n", pieces[at])[0]  # the cut falls before the row's first newline
    keep = into % len(first_line) if first_line else 0
    path.write_bytes(_gzip_cut_after(head + separator.join(pieces[:at]) + (separator if at else b"")
                                     + pieces[at][:keep]))
    return path


# -- what must happen --------------------------------------------------------------------------------

def _row_numbers(case: Case) -> list[int]:
    """Each row's number as the readers report it: the line (JSONL), the element (JSON array), the
    physical line the row ends on (CSV, header on line 1), the row (Parquet)."""
    if case.fmt != "csv":
        return list(range(1, len(case.rows) + 1))
    _, pieces, _, _ = _pieces(case)
    numbers, line = [], 1
    for piece in pieces:
        line += len(re.findall(rb"\r\n|\r|\n", piece))
        numbers.append(line)
    return numbers


@dataclass
class Expected:
    good: list[tuple]
    rejects: list[tuple[int, str | None]]
    outcome: type | None  # None: a report; StageFailed; IngestError (nothing stored)


def expected(case: Case, refuses_all_missing: bool) -> Expected:
    numbers = _row_numbers(case)
    read = range(len(case.rows)) if case.cut is None else range(case.cut[0])
    rows = [(case.rows[i], numbers[i]) for i in read if case.rows[i].is_row]
    good = [row.good for row, _ in rows if row.good is not None]
    rejects = [(number, row.field) for row, number in rows if row.good is None]
    if case.cut is not None and case.fmt == "parquet":
        return Expected([], [], IngestError)  # a Parquet file cannot be read in part
    if case.cut is not None:
        at = case.cut[0]
        stop = at + 1 if case.fmt != "csv" else (numbers[at - 1] + 1 if at else 2)  # the row the break is in
        return Expected(good, rejects + [(stop, None)], StageFailed)
    if not rows:
        return Expected([], [], IngestError)  # no rows at all
    if refuses_all_missing and case.fmt in ("jsonl", "json") and all(row.kind == "missing" for row, _ in rows):
        return Expected([], [], IngestError)  # no row has the prompt field: refused before writing
    too_many = not good or len(rejects) / len(rows) > case.max_reject_share
    return Expected(good, rejects, StageFailed if too_many else None)


def check(case: Case, run, stored_good) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(case, Path(folder))
        limit = csv.field_size_limit()
        want = expected(case, refuses_all_missing=run is run_ingest)
        event(f"{case.fmt}{'.gz' if case.gzipped else ''}{' cut' if case.cut else ''}: "
              f"{want.outcome.__name__ if want.outcome else 'report'}"
              f"{' (none kept)' if want.outcome is StageFailed and not want.good else ''}")
        with Store(Path(folder) / "store.duckdb") as store:
            try:
                report, outcome = run(store, path, case.max_reject_share), None
            except (StageFailed, IngestError) as error:  # anything else fails the test: never an unexpected type
                report, outcome = None, error
                assert str(path) in str(error) and "\n" not in str(error), str(error)
            assert type(outcome) is want.outcome if outcome else want.outcome is None, (outcome, want)
            if report is not None:
                assert report.count_out == len(want.good)
            assert Counter(stored_good(store)) == Counter(want.good)  # exactly the good rows, exactly as written
            rejects = store.con.execute("SELECT source_row, field FROM rejects").fetchall()
            assert Counter(rejects) == Counter(want.rejects)  # each bad row once, its row and field named
        assert csv.field_size_limit() == limit


def run_ingest(store, path, share):
    return ingest_prompts(store, IngestConfig(source=str(path), max_reject_share=share))


def run_import(store, path, share):
    return import_preference_pairs(store, str(path), max_reject_share=share)


def stored_prompts(store) -> list[tuple]:
    return store.con.execute("SELECT text FROM prompts").fetchall()


def stored_pairs(store) -> list[tuple]:
    return store.con.execute("""
        SELECT pr.text, ch.text, rj.text FROM reference_labels r JOIN pairs p USING (pair_id)
        JOIN prompts pr USING (prompt_id)
        JOIN candidates ch ON ch.candidate_id = CASE r.winner WHEN 'a' THEN p.candidate_a ELSE p.candidate_b END
        JOIN candidates rj ON rj.candidate_id = CASE r.winner WHEN 'a' THEN p.candidate_b ELSE p.candidate_a END
    """).fetchall()


PROMPT_COLUMNS, PAIR_COLUMNS = ["meta", "prompt"], ["prompt", "rejected", "chosen"]


def _good_prompt(index: int) -> Row:
    text = f"p{index} good"
    return Row("good", good=(text,), values={"meta": "", "prompt": text})


# Pinned, so every run has them: nothing kept where any share of rejects is allowed, and a cut
# inside a good CSV row (read as it stands, it would store a shortened prompt).
@PROPERTY_SETTINGS
@example(Case("csv", [Row("blank", "prompt", values={"meta": "m", "prompt": "\u200b"})], False, None, 1.0, PROMPT_COLUMNS))
@example(Case("csv", [_good_prompt(0), _good_prompt(1)], True, (1, 7), 0.5, PROMPT_COLUMNS))
@given(cases(prompt_row, PROMPT_COLUMNS))
def test_ingest_keeps_exactly_the_good_rows_and_names_every_bad_one(case):
    check(case, run_ingest, stored_prompts)


@PROPERTY_SETTINGS
@example(Case("json", [Row("identical", "rejected", values={"prompt": "q", "chosen": "a\ufeff", "rejected": "a"})],
              False, None, 1.0, PAIR_COLUMNS))
@given(cases(pair_row, PAIR_COLUMNS))
def test_import_pairs_keeps_exactly_the_good_rows_and_names_every_bad_one(case):
    check(case, run_import, stored_pairs)


@PROPERTY_SETTINGS
@given(cases(pair_row, PAIR_COLUMNS, formats=("json",)), st.integers(1, 40))
def test_a_json_array_streamed_in_windows_of_a_few_characters_reads_as_in_one(case, window):
    """The array is read as its text streams in: an element, a string, an escape, a multi-byte
    character or a gzip break cut by the window's end reads exactly as when the file fits one."""
    def read(path: Path, chunk: int) -> list[tuple]:
        previous = sources._TEXT_CHUNK, sources._CHUNK  # plain bytes read, gzip bytes read
        sources._TEXT_CHUNK = sources._CHUNK = chunk
        try:
            return [(r.row, r.values, r.error, r.field, r.raw, r.stops) for r in read_source(str(path), "jsonl", "")[1]]
        finally:
            sources._TEXT_CHUNK, sources._CHUNK = previous

    with tempfile.TemporaryDirectory() as folder:
        path = write(case, Path(folder))
        assert read(path, window) == read(path, 1 << 24)


JSON_PIECES = [b'{"a": 1}', b'{"b": "x\\"y\\\\"}', b"{bad}", b'"s"', b'{"c": [1, {"d": "]}"}]}', b'{"e": "\xff\xfe"}',
               b'{"f":', b"}", b"]", b"[", b",", b" ", b"\n", b"12", b'{"g": "\xc3\xa9\xe2\x82\xac"}', b"nul", b"12nul",
               b"\r\n  ", b'{"h": 1e5}', b"\xef\xbb\xbf"]


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=24), st.sampled_from([b"]", b"", b"] x", b"]\n\n", b"}"]),
       st.booleans(), st.integers(1, 12))
def test_where_an_arrays_structure_breaks_reads_the_same_in_any_window(pieces, tail, gzipped, window):
    """Any mix of elements, bad ones and broken structure (a missing comma or bracket, text after
    the array) over several lines: the rows, and the line and column a stop names, do not depend on
    where the windows fall."""
    data = b"[" + b"".join(pieces) + tail
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("rows.json.gz" if gzipped else "rows.json")
        path.write_bytes(gzip.compress(data) if gzipped else data)
        previous = sources._TEXT_CHUNK, sources._CHUNK
        try:
            results = []
            for chunk in (window, 1 << 24):
                sources._TEXT_CHUNK = sources._CHUNK = chunk
                results.append([(r.row, r.values, r.error, r.raw, r.stops) for r in sources._read_json_array(path)])
        finally:
            sources._TEXT_CHUNK, sources._CHUNK = previous
        assert results[0] == results[1]
