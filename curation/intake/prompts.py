"""Ingest prompts from JSONL, Parquet, CSV or a `datasets` dataset into the store.

Rows that cannot be used (bad encoding, missing or empty prompt, wrong type) go to the rejects
table with the file, row and reason; exact duplicates (same normalized text) collapse into one.
A file that cannot be used at all (missing, empty, lacking the prompt column) raises IngestError
before anything is written; a read that breaks off part way, keeps none of its rows or rejects
more than ingest.max_reject_share of them stores what it read and raises StageFailed (outcome.py).
"""

from __future__ import annotations

import logging
from collections import Counter

import pyarrow as pa

from prefcurate.core.config import IngestConfig
from prefcurate.core.hashing import prompt_id
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.intake.outcome import check_intake
from prefcurate.curation.intake.prompt_checks import read_checks
from prefcurate.curation.intake.shipped import embedded_prompts_path
from prefcurate.curation.intake.sources import IngestError, detect_format, is_blank, raw_text, read_source

STAGE = "ingest"
log = logging.getLogger(__name__)


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
    rows_by_id: dict[str, int] = {}
    repeated_ids: list[tuple[str, int, int]] = []
    checks: list[dict] = []
    check_rejects: list[dict] = []  # a check column's bad value: the prompt itself is kept
    stop = None
    for item in rows:
        report.count_in += 1
        if item.values is None:
            rejects.append(_reject(source, item.row, item.field, item.error, item.raw))
            stop = item if item.stops else stop
            continue
        seen_keys.update(item.values)
        if config.prompt_column not in item.values:
            missing_column_rows += 1
            rejects.append(_reject(source, item.row, config.prompt_column, "missing field", raw_text(item.values)))
            continue
        text = item.values[config.prompt_column]
        if not isinstance(text, str):
            rejects.append(_reject(source, item.row, config.prompt_column,
                                   f"prompt must be a string, got {type(text).__name__}", raw_text(text)))
            continue
        if is_blank(text):  # zero-width spaces and byte-order marks too: nothing to answer
            rejects.append(_reject(source, item.row, config.prompt_column, "empty prompt", text[:500]))
            continue
        key = prompt_id(text)
        if key in accepted:
            duplicates += 1
            continue
        external = item.values.get(config.id_column) if config.id_column else None
        if external is not None:
            first_row = rows_by_id.setdefault(str(external), item.row)
            if first_row != item.row:
                repeated_ids.append((str(external), first_row, item.row))
        accepted[key] = {"prompt_id": key, "text": text, "source": source, "source_row": item.row,
                         "external_id": None if external is None else str(external)}
        row_checks, problems = read_checks(item.values, key, config)
        checks += row_checks
        check_rejects += [_reject(source, item.row, field, reason, raw_text(item.values.get(field)))
                          for field, reason in problems]

    if report.count_in == 0:
        raise IngestError(f"{source}: no rows")
    if not accepted and missing_column_rows == report.count_in:
        raise IngestError(f"{source}: no row has the field {config.prompt_column!r} (set ingest.prompt_column); "
                          f"fields seen: {sorted(seen_keys)}")

    if repeated_ids:
        value, first_row, row = repeated_ids[0]
        log.warning("%s: %d rows repeat an earlier row's %s (e.g. %r on rows %d and %d); "
                    "the ids do not identify prompts", source, len(repeated_ids), config.id_column, value, first_row, row)
        report.details["repeated_ids"] = len(repeated_ids)
    with store.transaction():
        new = store.insert_new("prompts", store.arrow_rows("prompts", list(accepted.values())))
        put_in_pool(store, list(accepted))  # a prompt first stored by an import is now one to answer
        if checks:  # a changed check replaces the prompt's old one of that domain
            store.upsert("prompt_checks", store.arrow_rows("prompt_checks", checks))
        new_rejects = store.add_rejects(STAGE, rejects + check_rejects)
    report.count_out = len(accepted)
    report.details.update(rejected=len(rejects) + len(check_rejects), duplicates_in_source=duplicates,
                          new_prompts=new, already_stored=len(accepted) - new, new_rejects=new_rejects,
                          checks=dict(Counter(check["domain"] for check in checks)))
    check_intake(STAGE, source, report.count_in, len(accepted) + duplicates, rejects, stop, config.max_reject_share)
    return report.finish()


def put_in_pool(store: Store, prompt_ids: list[str]) -> None:
    """Make these stored prompts ones that generation answers (prompts.in_pool)."""
    if prompt_ids:  # a join, not list_contains(?, prompt_id): that is a scan of the list per prompt
        store.con.register("_to_pool", pa.table({"prompt_id": pa.array(prompt_ids, pa.string())}))
        try:
            store.con.execute("UPDATE prompts SET in_pool = true WHERE NOT in_pool "
                              "AND prompt_id IN (SELECT prompt_id FROM _to_pool)")
        finally:
            store.con.unregister("_to_pool")
