"""The DuckDB store: one file, schema and migrations from sql/, views recreated on open."""

from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from prefcurate.core.hashing import content_hash
from prefcurate.core.report import StageReport

log = logging.getLogger("prefcurate")

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def _sql_files(folder: str) -> list[tuple[str, str]]:
    root = resources.files("prefcurate.sql").joinpath(folder)
    files = sorted((entry.name, entry.read_text(encoding="utf-8")) for entry in root.iterdir() if entry.name.endswith(".sql"))
    return files


def migrations() -> list[Migration]:
    found = []
    for name, sql in _sql_files("migrations"):
        match = _MIGRATION_NAME.match(name)
        if not match:
            raise RuntimeError(f"sql/migrations/{name}: migration files must be named NNN_description.sql")
        found.append(Migration(int(match.group(1)), name, sql))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"sql/migrations: two migrations share a number: {versions}")
    return found


class Store:
    """A connection to the store file with the schema brought up to date.

    Use as a context manager; writes that belong together go through `transaction()`.
    """

    def __init__(self, path: str | Path, read_only: bool = False, memory_limit: str | None = None,
                 lock_timeout_s: float = 0.0):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        settings = {"preserve_insertion_order": False}  # nothing relies on it; big scans use less memory
        if memory_limit:
            settings["memory_limit"] = memory_limit  # DuckDB spills to disk beyond it
        self.con = self._connect(read_only, settings, lock_timeout_s)
        if not read_only:
            self._migrate()
            self._create_views()

    def _connect(self, read_only: bool, settings: dict, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
        """DuckDB lets one process write a file at a time (it locks the file): wait up to
        lock_timeout_s for another writer to let go, then fail naming the file."""
        deadline = time.monotonic() + lock_timeout_s
        waited = False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only, config=settings)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise StoreError(f"cannot open the store {self.path}: {error}") from None
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"cannot open the store {self.path}: {error}. Another process is writing to it"
                        + (f"; waited {lock_timeout_s:g} s (store.lock_timeout_s)" if waited else "") + "."
                    ) from None
                if not waited:
                    log.info("store %s is busy (another writer); waiting up to %g s", self.path, lock_timeout_s)
                    waited = True
                time.sleep(0.25)


    # -- schema -----------------------------------------------------------------------------
    def _migrate(self) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        applied = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for migration in migrations():
            if migration.version in applied:
                continue
            with self.transaction():
                self.con.execute(migration.sql)
                self.con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    [migration.version, migration.name],
                )

    def _create_views(self) -> None:
        """(Re)create the views when their SQL changed since the store last saw it. Skipping the
        catalog write otherwise lets several connections open the store at once without
        write-write conflicts on the views."""
        views = _sql_files("views")
        wanted = content_hash("views", [sql for _name, sql in views])
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_views (views_hash VARCHAR NOT NULL)")
        if self.scalar("SELECT any_value(views_hash) FROM schema_views") == wanted:
            return
        for attempt in range(5):
            try:
                with self.transaction():
                    for _name, sql in views:
                        self.con.execute(sql)
                    self.con.execute("DELETE FROM schema_views")
                    self.con.execute("INSERT INTO schema_views VALUES (?)", [wanted])
                return
            except duckdb.TransactionException:
                # another connection is upgrading them right now: let it finish, then check again
                time.sleep(0.2 * (attempt + 1))
                if self.scalar("SELECT any_value(views_hash) FROM schema_views") == wanted:
                    return
        raise StoreBusyError(f"{self.path}: could not update the store's views (another writer kept them busy)")

    def schema_version(self) -> int:
        return self.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations")

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def one(self, sql: str, params: list | None = None) -> tuple | None:
        """The first row of a query, or None. Fetches everything: DuckDB 2 keeps a partly
        fetched result open on the connection, and that blocks later statements."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: list | None = None):
        row = self.one(sql, params)
        return None if row is None else row[0]

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT count(*) FROM {table}")

    def insert_new(self, table: str, rows: pa.Table) -> int:
        """Insert rows whose primary key is not stored yet; return how many were new."""
        if rows.num_rows == 0:
            return 0
        before = self.count(table)
        self._insert(table, rows, "OR IGNORE")
        return self.count(table) - before

    def upsert(self, table: str, rows: pa.Table) -> None:
        """Insert rows, replacing stored rows with the same primary key."""
        if rows.num_rows:
            self._insert(table, rows, "OR REPLACE")

    def _insert(self, table: str, rows: pa.Table, on_conflict: str) -> None:
        columns = ", ".join(rows.column_names)
        self.con.register("_incoming", rows)
        try:
            self.con.execute(f"INSERT {on_conflict} INTO {table} ({columns}) SELECT {columns} FROM _incoming")
        finally:
            self.con.unregister("_incoming")

    def add_rejects(self, stage: str, rejects: list[dict]) -> int:
        """Keep refused inputs where users can query them; the same reject is kept once."""
        rows = [{
            "reject_id": content_hash(stage, r["source"], r.get("source_row"), r.get("field"), r["reason"]),
            "stage": stage, "source": r["source"], "source_row": r.get("source_row"),
            "field": r.get("field"), "reason": r["reason"], "raw": r.get("raw"),
        } for r in rejects]
        return self.insert_new("rejects", pa.Table.from_pylist(rows, schema=REJECT_SCHEMA))

    def record_stage_run(self, report: StageReport) -> None:
        self.con.execute(
            "INSERT INTO stage_runs (stage, started_at, finished_at, count_in, count_out, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [report.stage, report.started_at, report.finished_at, report.count_in, report.count_out,
             json.dumps(report.details, default=str)],
        )


REJECT_SCHEMA = pa.schema([
    ("reject_id", pa.string()), ("stage", pa.string()), ("source", pa.string()), ("source_row", pa.int64()),
    ("field", pa.string()), ("reason", pa.string()), ("raw", pa.string()),
])


class StoreError(RuntimeError):
    """The store file cannot be opened (not a DuckDB file, written by a newer DuckDB, no permission)."""


class StoreBusyError(StoreError):
    """The store file is locked by another process."""
