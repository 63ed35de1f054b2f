"""The decontamination step: drop prompts that share at least `threshold` of their word n-grams
with a benchmark file (JSONL or Parquet), recording which benchmark and how much."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from prefcurate.core.config import CurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.funnel.shingles import word_ngram_hashes_sql
from prefcurate.curation.funnel.step import StepOutcome, surviving_prompt_texts
from prefcurate.curation.intake.sources import read_source


class CurationError(ValueError):
    """A curation input (a benchmark file, ...) that cannot be used."""


_REGISTERED = "_curation_benchmark_texts"


def _benchmark_relation(con, benchmark) -> str:
    path = Path(benchmark.path)
    where = f"curate.decontamination.benchmarks[{benchmark.name}]"
    if not path.is_file():
        raise CurationError(f"{where}: file not found: {path}")
    if path.suffix.lower() == ".parquet":
        return "read_parquet('" + str(path).replace("'", "''") + "')"
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise CurationError(f"{where}: {path}: use a .jsonl or .parquet file")
    # Our reader, not DuckDB's: a bad line is named. It stops the step, because decontamination
    # against part of a benchmark would pass contaminated prompts as clean.
    texts, columns = [], set()
    for item in read_source(str(path), "jsonl", "train")[1]:
        if item.values is None:
            raise CurationError(f"{where}: {path}: line {item.row}: {item.error}")
        columns.update(item.values)
        value = item.values.get(benchmark.text_column)
        texts.append(None if value is None else str(value))
    if benchmark.text_column not in columns:
        raise CurationError(f"{where}: {path} has no column {benchmark.text_column!r} (text_column); "
                            f"columns are {sorted(columns)}")
    con.register(_REGISTERED, pa.table({benchmark.text_column: pa.array(texts, pa.string())}))
    return _REGISTERED


def decontaminate(store: Store, config: CurateConfig) -> StepOutcome:
    settings = config.decontamination
    con = store.con
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_prompt_ngrams AS
        SELECT prompt_id, unnest({word_ngram_hashes_sql('prompt_text', settings.ngram)}) AS h
        FROM ({surviving_prompt_texts('_curation_prev')})""")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_contaminated (prompt_id VARCHAR, benchmark VARCHAR, overlap DOUBLE)")
    per_benchmark = {}
    for benchmark in settings.benchmarks:
        relation = _benchmark_relation(con, benchmark)
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        if benchmark.text_column not in columns:
            raise CurationError(f"curate.decontamination.benchmarks[{benchmark.name}]: {benchmark.path} has no column "
                                f"{benchmark.text_column!r} (text_column); columns are {columns}")
        column = '"' + benchmark.text_column.replace('"', '""') + '"'
        con.execute(f"""
            INSERT INTO _curation_contaminated
            WITH bench AS (
                SELECT DISTINCT unnest({word_ngram_hashes_sql(f'CAST({column} AS VARCHAR)', settings.ngram)}) AS h
                FROM {relation} WHERE {column} IS NOT NULL
            )
            SELECT p.prompt_id, ?, avg(CASE WHEN b.h IS NOT NULL THEN 1.0 ELSE 0.0 END) AS overlap
            FROM _curation_prompt_ngrams AS p LEFT JOIN bench AS b USING (h)
            GROUP BY p.prompt_id
            HAVING overlap >= ?""", [benchmark.name, settings.threshold])
        if relation == _REGISTERED:
            con.unregister(_REGISTERED)
        per_benchmark[benchmark.name] = store.scalar(
            "SELECT count(*) FROM _curation_contaminated WHERE benchmark = ?", [benchmark.name])
    con.execute("INSERT INTO _curation_prompt_drops SELECT 'decontaminated', prompt_id, arg_max(benchmark, overlap), "
                "max(overlap) FROM _curation_contaminated GROUP BY prompt_id")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev "
                "WHERE prompt_id NOT IN (SELECT prompt_id FROM _curation_contaminated)")
    return StepOutcome({"prompts_dropped_by_benchmark": per_benchmark,
                        "prompts_dropped": store.scalar("SELECT count(DISTINCT prompt_id) FROM _curation_contaminated")})
