"""The DuckDB store: one file, schema and migrations from sql/, views recreated on open."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from prefcurate.core import snapshot_files
from prefcurate.core.content_keys import CONTENT_KEYS, delete_stored_sql, insert_new_sql
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.secrets import redact

log = logging.getLogger("prefcurate")

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def sql_files(folder: str) -> list[tuple[str, str]]:
    root = resources.files("prefcurate.sql").joinpath(folder)
    files = sorted((entry.name, entry.read_text(encoding="utf-8")) for entry in root.iterdir() if entry.name.endswith(".sql"))
    return files


def migrations() -> list[Migration]:
    found = []
    for name, sql in sql_files("migrations"):
        match = _MIGRATION_NAME.match(name)
        if not match:
            raise RuntimeError(f"sql/migrations/{name}: migration files must be named NNN_description.sql")
        found.append(Migration(int(match.group(1)), name, sql))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"sql/migrations: two migrations share a number: {versions}")
    return found


_RELEASED_ALIAS = "released_store"  # the store file's name inside a released phase's instance (_attach)


class StoreReader:
    """What reading the store needs: `con` and `path` (the store's, whichever file `con` reads), and
    the small query helpers. Store writes; SnapshotReader reads the read snapshot."""

    con: duckdb.DuckDBPyConnection
    path: Path

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


class SnapshotReader(StoreReader):
    """The store's read snapshot opened read-only for a long computation that must hold no lock
    (the curate stage's funnel): it blocks no writer, and what it computes goes into temp tables,
    spilling into a folder of this process's own beside the store (DuckDB's default for a reader,
    `<snapshot>.tmp`, is shared by every reader of the snapshot)."""

    def __init__(self, path: str | Path, memory_limit: str | None = None):
        self.path = Path(path)
        self._spill = Path(f"{self.path}.work-{os.getpid()}.tmp")
        settings = {"preserve_insertion_order": False, "temp_directory": str(self._spill)}
        if memory_limit:
            settings["memory_limit"] = memory_limit
        snapshot = snapshot_path(self.path)
        if not snapshot.exists():
            raise StoreError(f"the store {self.path} has no read snapshot {snapshot} (store.snapshot_every_s)")
        self.con = duckdb.connect(str(snapshot), read_only=True, config=settings)

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Store(StoreReader):
    """A connection to the store file with the schema brought up to date.

    Use as a context manager; writes that belong together go through `transaction()`.
    """

    def __init__(self, path: str | Path, read_only: bool = False, memory_limit: str | None = None,
                 lock_timeout_s: float = 0.0, snapshot_every_s: float | None = None):
        self.path = Path(path)
        # The read snapshot (see publish_snapshot): None publishes none.
        self.snapshot_every_s = None if read_only else snapshot_every_s
        self._publish_cost, self._unpublished = 0.0, False
        self._schemas: dict[tuple, pa.Schema] = {}  # (table, columns) -> Arrow schema (arrow_rows)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        settings = {"preserve_insertion_order": False}  # nothing relies on it; big scans use less memory
        if memory_limit:
            settings["memory_limit"] = memory_limit  # DuckDB spills to disk beyond it
        self.con = self._connect(read_only, settings, lock_timeout_s)
        self._settings, self._lock_timeout_s = settings, lock_timeout_s
        self._released, self._holding = False, False  # released(): the file is ours only while committing
        self._in_transaction = False  # inside _held_transaction (only Store begins transactions)
        self._copy_source: int | None = None  # see _store_descriptor
        self._host: duckdb.DuckDBPyConnection | None = None  # released(): the instance each commit attaches the file to
        if not read_only:
            try:
                self._migrate()
                self._create_views()
                if self.snapshot_every_s is not None:
                    self._publish_if_behind()
            except StoreError:
                self._let_go()
                raise
            except (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException) as error:
                self._let_go()
                raise StoreError(f"the store {self.path} is damaged ({_first_line(error)}); "
                                 "restore it from a backup or move it aside to start a new one") from None

    def _connect(self, read_only: bool, settings: dict, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
        """DuckDB lets one process write a file at a time (it locks the file): wait up to
        lock_timeout_s for another writer to let go, then fail naming the file."""
        return self._take_file(lambda: duckdb.connect(str(self.path), read_only=read_only, config=settings),
                               lock_timeout_s)

    def _take_file(self, open_file, lock_timeout_s: float):
        deadline = time.monotonic() + lock_timeout_s
        waited = False
        while True:
            try:
                return open_file()
            except duckdb.Error as error:
                if not isinstance(error, duckdb.IOException) or "lock" not in str(error).lower():
                    # a truncated file, flipped blocks, not a DuckDB file, a newer DuckDB's file, no permission
                    raise StoreError(f"cannot open the store {self.path}: {_first_line(error)}") from None
                holder = _lock_holder(str(error))
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"cannot open the store {self.path}: {holder}"
                        + (f"; waited {lock_timeout_s:g} s (store.lock_timeout_s)" if waited else "") + "."
                        + (f" Readers should open its snapshot {snapshot_path(self.path)} (`prefcurate query` "
                           "does), which never blocks a writer; close that reader and run again."
                           if holder.startswith("a reader") else "")
                    ) from None
                if not waited:
                    log.info("store %s is busy (%s); waiting up to %g s", self.path, holder, lock_timeout_s)
                    waited = True
                time.sleep(0.25)

    # -- schema -----------------------------------------------------------------------------
    def _refuse_foreign_or_newer(self) -> None:
        """Write nothing to a DuckDB file prefcurate did not create, or to a store of a schema newer
        than this code knows (a newer prefcurate's): either would be damaged, or misread."""
        names = {row[0] for row in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = 'main'").fetchall()}
        first = self.con.execute("SELECT name FROM schema_migrations WHERE version = 1").fetchall() \
            if "schema_migrations" in names else []
        if not first and names <= {"schema_migrations"}:
            return  # a new file (or one whose first open stopped before the first migration)
        ours = migrations()
        if not first or first[0][0] != ours[0].name:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise StoreError(f"{self.path} is a DuckDB file prefcurate did not create (it holds {shown}); "
                             "refusing to write to it: point store.path at a new file or a prefcurate store")
        newest, known = self.schema_version(), max(migration.version for migration in ours)
        if newest > known:
            raise StoreError(f"the store {self.path} has schema version {newest}, newer than this prefcurate "
                             f"knows ({known}): a newer prefcurate wrote it; upgrade prefcurate to use it")

    def _migrate(self) -> None:
        self._refuse_foreign_or_newer()
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        applied = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for migration in migrations():
            if migration.version in applied:
                continue
            if applied:  # an existing store: some migrations copy whole tables, minutes on a big store
                log.info("store %s: upgrading its schema (%s), once", self.path, migration.name)
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
        views = sql_files("views")
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
    def released(self) -> Iterator[None]:
        """Let go of the file for a long phase that writes only now and then (a judge or generate
        run's calls), so that other flows (an annotation pull, an import) write between this one's
        commits instead of waiting for the whole stage. Inside, each transaction() opens the file
        (waiting up to store.lock_timeout_s for another writer), commits and lets go again; nothing
        else may touch the store in the block."""
        if self._released:
            yield
            return
        self.con.execute("CHECKPOINT")  # what was written so far is in the file, not a WAL of ours
        self._let_go()
        # Each commit attaches the file to this in-memory instance and detaches it after: ~5 ms of
        # CPU, where opening a DuckDB instance on the file and closing it takes ~25 ms (a judge run
        # fanned out commits every 2 s: bench/judge_fanout.py). Between commits it holds nothing.
        self._host = self.con = self._new_host()
        self._released = True
        try:
            yield
        finally:
            self._released = False
            self._host.close()
            self._host = None
            self.con = self._connect(False, self._settings, self._lock_timeout_s)

    @contextmanager
    def transaction(self, publish: bool = False, wait: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A commit; with `publish`, the read snapshot is published right after it, however recent
        the last one (a run whose readers must see it, as the curate stage's export does). Inside
        released(), without `wait` it raises StoreBusyError at once if another writer holds the
        file, rather than waiting up to store.lock_timeout_s (AnswerWriter then keeps buffering)."""
        if self._released:  # held only for this commit (released())
            self._take_file(self._attach, self._lock_timeout_s if wait else 0.0)
            self._holding = True
            try:
                with self._held_transaction() as con:
                    yield con
                # written into the file first, so a snapshot published now is as new as the store
                # (else the next writer and every reader take it for stale: open_for_reading)
                self.con.execute("CHECKPOINT")
                self.publish_snapshot(force=publish)  # else at most every snapshot_every_s, as ever
            finally:
                self._holding = False
                self._detach()
            return
        with self._held_transaction() as con:
            yield con
        if publish:
            self.publish_snapshot(force=True)

    def _new_host(self) -> duckdb.DuckDBPyConnection:
        """An in-memory instance with the store's settings, spilling where the store's own would."""
        return duckdb.connect(config={**self._settings, "temp_directory": f"{self.path}.tmp"})

    def _attach(self) -> None:
        """The store file attached to the released phase's instance, as the default database (the
        code inside a transaction names tables as ever)."""
        self._host.execute(f"ATTACH '{_sql_text(self.path)}' AS {_RELEASED_ALIAS}")
        self._host.execute(f"USE {_RELEASED_ALIAS}")

    def _detach(self) -> None:
        """Detach the file (DuckDB closes it and unlocks it), then close the copy descriptor (which
        would unlock it too, see _store_descriptor). If DuckDB cannot detach it (an interrupted
        statement), the instance is closed instead: the file must not stay held between commits."""
        try:
            self._host.execute("USE memory")
            self._host.execute(f"DETACH {_RELEASED_ALIAS}")
        except BaseException as error:  # a DuckDB error, an interrupt ("Query interrupted"), Ctrl-C
            # The file may still be attached: close the instance (DuckDB closes the file unless
            # something still refers to it) and keep the copy descriptor open, since closing it
            # would drop DuckDB's lock on a file this process may still hold (_let_go closes it).
            with suppress(Exception):
                self._host.close()
            self._host = self.con = self._new_host()
            if not isinstance(error, Exception):
                raise
            return
        if self._copy_source is not None:
            os.close(self._copy_source)
            self._copy_source = None

    @property
    def is_released(self) -> bool:
        """Inside released(): each commit takes the file, so commit less often (AnswerWriter)."""
        return self._released

    @contextmanager
    def _held_transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield self.con
        except BaseException:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # DuckDB may have aborted it already: the error that did it is the one to see
            raise
        finally:
            self._in_transaction = False
        self.con.execute("COMMIT")
        self._unpublished = True

    # -- the read snapshot ------------------------------------------------------------------
    def publish_snapshot(self, force: bool = False) -> bool:
        """Copy the store to `<store>.snapshot` for readers, at most every snapshot_every_s (and never
        spending more than ~10% of the time copying). DuckDB lets one process write a file or many
        read it, never both: readers of the snapshot never block the writer, and see data at most
        a few seconds old. It is made from the file right after a CHECKPOINT, while this process
        holds the store's lock (so no other writer can change it meanwhile): the blocks that changed
        written into the snapshot before the last one, where no reader holds it, else a whole copy
        (core/snapshot_files.py; DuckDB's COPY FROM DATABASE took 4-6 s for a 177 MB store, a file
        copy ~0.2 s). It is renamed over the old one, so a reader that has the old one open keeps a
        consistent view until it reconnects. The spacing is measured from the snapshot file's own
        time, so several writer processes taking turns publish no more often than one would."""
        if self.snapshot_every_s is None or not (self._unpublished or force) or (self._released and not self._holding):
            # between two commits of a released() phase the file is not ours: published at the next commit
            return False
        final = snapshot_path(self.path)
        if not force and final.exists():
            since = time.time() - final.stat().st_mtime
            if since < max(self.snapshot_every_s, 10 * self._publish_cost):
                return False
        started = time.monotonic()
        self.con.execute("CHECKPOINT")  # everything committed is in the file now, none in the WAL
        wal = Path(f"{self.path}.wal")
        if wal.exists() and wal.stat().st_size > 0:
            # a checkpoint DuckDB could not finish (it gives way to a running transaction): copy
            # through DuckDB instead, which reads what is committed wherever it lies
            aside = snapshot_files.aside_path(final)
            aside.unlink(missing_ok=True)
            database = self.scalar("SELECT current_database()")
            self.con.execute(f"ATTACH '{_sql_text(aside)}' AS _snapshot")
            try:
                self.con.execute(f'COPY FROM DATABASE "{database}" TO _snapshot')
            finally:
                self.con.execute("DETACH _snapshot")
            snapshot_files.install(aside, final)
        else:
            snapshot_files.publish_file(self._store_descriptor(), final)
        self._publish_cost = time.monotonic() - started
        self._unpublished = False
        return True

    def snapshot_up_to_date(self) -> Path:
        """The read snapshot, published now if it is behind the store, however recent the last
        publish: for a long reader that must see everything committed so far (the judge's pages)."""
        if self._unpublished or self._snapshot_is_behind():
            self.publish_snapshot(force=True)
        return snapshot_path(self.path)

    @property
    def memory_limit(self) -> str | None:
        return self._settings.get("memory_limit")

    def _publish_if_behind(self) -> None:
        """At open: none yet, so readers have one from the start; or behind the store (its last
        writer was killed before publishing, or is between two commits of a released phase): as
        soon as the spacing allows (the writer between commits publishes at its next one)."""
        if not snapshot_path(self.path).exists():
            self.publish_snapshot(force=True)
        elif self._snapshot_is_behind():
            self._unpublished = True
            self.publish_snapshot()

    def _snapshot_is_behind(self) -> bool:
        """The snapshot is missing, or older than the store file's last change (open_for_reading)."""
        snapshot = snapshot_path(self.path)
        return not snapshot.exists() or _staleness(self.path, snapshot) is not None

    def _store_descriptor(self) -> int:
        """The store file, to copy from, through one descriptor kept open until the connection
        closes (_let_go): DuckDB's lock on the file is a POSIX record lock, which a process loses
        when it closes *any* descriptor of the file, so opening and closing the file to copy it
        would hand the store to another writer while this one still writes."""
        if self._copy_source is None:
            self._copy_source = os.open(self.path, os.O_RDONLY)
        return self._copy_source

    def _let_go(self) -> None:
        """Close the connection (DuckDB unlocks the file), then the copy descriptor (which would
        unlock it too, see _store_descriptor)."""
        try:
            self.con.close()
        finally:
            if self._copy_source is not None:
                os.close(self._copy_source)
                self._copy_source = None

    def close(self) -> None:
        try:
            if self.snapshot_every_s is not None:
                # written into the file now, so closing changes nothing after the snapshot: a reader
                # can tell the snapshot holds the last write (open_for_reading)
                self.con.execute("CHECKPOINT")
                if self._unpublished or self._snapshot_is_behind():
                    # readers see the stage's last writes; a writer that changed nothing copies nothing
                    self.publish_snapshot(force=True)
        finally:
            self._let_go()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def arrow_rows(self, table: str, rows: list[dict]) -> pa.Table:
        """`rows` (dicts with the same keys) as an Arrow table typed as the store's `table` types its
        columns: the schema comes from the store, so no caller restates it (sql/SCHEMA.md lists it)."""
        columns = tuple(rows[0]) if rows else ()
        schema = self._schemas.get((table, columns))
        if schema is None:
            names = ", ".join(f'"{column}"' for column in columns)
            schema = self.con.sql(f"SELECT {names} FROM {table} LIMIT 0").to_arrow_table().schema if columns \
                else pa.schema([])
            self._schemas[(table, columns)] = schema
        return pa.Table.from_pylist(rows, schema=schema)

    def insert_new(self, table: str, rows: pa.Table) -> int:
        """Insert rows whose key (primary, or content key: core/content_keys.py) is not stored yet;
        return how many were new."""
        if rows.num_rows == 0:
            return 0
        before = self.count(table)
        self._insert(table, rows, replace=False)
        return self.count(table) - before

    def insert_selected(self, table: str, reader: StoreReader, select: str, params: list | None = None,
                        batch_rows: int = 200_000) -> int:
        """Insert the rows `select` yields on `reader` whose key is not stored yet; return how
        many were new. On this very connection (reader is the store): one INSERT, one commit. From
        another (the read snapshot), the rows travel as Arrow batches of batch_rows, a commit each
        with the file let go between them (released), so however many rows there are no other
        writer waits longer than one batch."""
        if reader is self:
            with self.transaction():
                before = self.count(table)
                self.con.execute(insert_new_sql(table, f"({select})"), params or [])
                return self.count(table) - before
        new = 0
        # closed however the loop ends: a reader left open holds its connection ("connection has an
        # open result"), and the caller's clean-up on it would raise that instead of this error
        with self.released(), closing(reader.con.sql(select, params=params).to_arrow_reader(batch_rows)) as batches:
            for batch in batches:
                with self.transaction():
                    new += self.insert_new(table, pa.Table.from_batches([batch]))
        return new

    def upsert(self, table: str, rows: pa.Table) -> None:
        """Insert rows, replacing stored rows with the same key."""
        if rows.num_rows:
            self._insert(table, rows, replace=True)

    def _insert(self, table: str, rows: pa.Table, replace: bool) -> None:
        self.con.register("_incoming", rows)
        try:
            if not replace:
                self.con.execute(insert_new_sql(table, "_incoming"))
            elif table not in CONTENT_KEYS:
                columns = ", ".join(f'"{name}"' for name in rows.column_names)
                self.con.execute(f"INSERT OR REPLACE INTO {table} ({columns}) SELECT {columns} FROM _incoming")
            else:
                with self._atomic():  # a key's row is replaced whole or not at all
                    self.con.execute(delete_stored_sql(table, "_incoming"))
                    self.con.execute(insert_new_sql(table, "_incoming"))
        except BaseException:
            # after a failed statement the transaction is aborted and unregistering fails too: that
            # must not replace why the insert failed (DuckDB out of store.memory_limit, say); the next
            # register of the name replaces this one anyway
            with suppress(duckdb.Error):
                self.con.unregister("_incoming")
            raise
        self.con.unregister("_incoming")

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """The caller's transaction where there is one, else one of its own. (Asking DuckDB by a
        BEGIN would abort the caller's: a failed statement does.)"""
        if self._in_transaction:
            yield
        else:
            with self._held_transaction():
                yield

    def add_rejects(self, stage: str, rejects: list[dict]) -> int:
        """Keep refused inputs where users can query them; the same reject is kept once."""
        rows = [{
            "reject_id": content_hash(stage, r["source"], r.get("source_row"), r.get("field"), r["reason"]),
            "stage": stage, "source": r["source"], "source_row": r.get("source_row"),
            "field": _storable(r.get("field")), "reason": _storable(r["reason"]), "raw": _storable(r.get("raw")),
        } for r in rejects]
        return self.insert_new("rejects", self.arrow_rows("rejects", rows))

    def record_stage_run(self, report: StageReport) -> None:
        self.con.execute(
            "INSERT INTO stage_runs (stage, started_at, finished_at, count_in, count_out, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [report.stage, report.started_at, report.finished_at, report.count_in, report.count_out,
             json.dumps(report.details, default=str)],
        )


def snapshot_path(store_path: str | Path) -> Path:
    return Path(f"{store_path}.snapshot")


def open_for_reading(path: str | Path, wait_s: float = 2.0, allow_files: bool = False,
                     ) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A read-only connection for a query, on the store's read snapshot: DuckDB lets one process
    write a file or many read it, so a reader of the store itself would stop a writer, and a reader
    of the snapshot never does. Every writer publishes it when it closes (and every few seconds while
    it writes), so it is the store as of its last write unless a stage is writing now; then the note
    says how old it is. A store without a snapshot (store.snapshot_every_s: null) is read itself,
    waiting up to wait_s for a writer to let go. Returns (connection, None or the note).

    The connection cannot read or write other files (`COPY ... TO`, `read_csv`) unless allow_files."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no store at {path}")
    settings = {} if allow_files else {"enable_external_access": False}
    snapshot = snapshot_path(path)
    if snapshot.exists():
        return duckdb.connect(str(snapshot), read_only=True, config=settings), _staleness(path, snapshot)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=True, config=settings), None
        except (duckdb.ConnectionException, duckdb.ResourceInUseException):
            pass  # this very process has it open for writing (ResourceInUse: attached, Store.released)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise StoreError(f"cannot open the store {path}: {_first_line(error)}") from None
        if time.monotonic() >= deadline:
            raise StoreBusyError(f"{path} is being written by another process, and it has no read snapshot "
                                 "(store.snapshot_every_s)")
        time.sleep(0.1)


def _staleness(path: Path, snapshot: Path) -> str | None:
    """None when the snapshot holds the store's last write, else a note of its age."""
    published = snapshot.stat().st_mtime
    wal = Path(f"{path}.wal")
    changed = max(path.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
    if published >= changed:
        return None
    return (f"reading the store's snapshot of {time.strftime('%H:%M:%S', time.localtime(published))} "
            f"({time.time() - published:.0f} s old): the store has changed since (a stage is writing it, or "
            "one stopped before publishing; the next stage to open it publishes a new one)")


def _lock_holder(error: str) -> str:
    """Who holds the store, from DuckDB's lock error: it names the holder's PID, and offers read-only
    access when the holder only reads."""
    match = re.search(r"PID (\d+)", error)
    process = f"PID {match.group(1)}" if match else "another process"
    if match:
        try:
            command = Path(f"/proc/{match.group(1)}/cmdline").read_bytes().decode(errors="replace")
            process += f": {' '.join(command.replace(chr(0), ' ').split())[:120]}"
        except OSError:
            pass  # not on Linux, or it has just exited
    if "read-only mode" in error:
        return f"a reader holds it open ({process})"
    return f"another process is writing to it ({process})"


def _storable(text: str | None) -> str | None:
    """A reject keeps what was wrong, even text that is not valid Unicode (as escapes)."""
    return None if text is None else redact(str(text).encode("utf-8", "backslashreplace").decode("utf-8"))


def _sql_text(path: str | Path) -> str:
    """A path inside a SQL string literal."""
    return str(path).replace("'", "''")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class StoreError(RuntimeError):
    """The store file cannot be opened (not a DuckDB file, written by a newer DuckDB, no permission)."""


class StoreBusyError(StoreError):
    """The store file is locked by another process."""
