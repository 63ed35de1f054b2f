import subprocess
import sys
from contextlib import contextmanager

import duckdb
import pyarrow as pa
import pytest

from prefcurate.core.store import Store, migrations


def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        applied = store.con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in applied] == [m.version for m in migrations()]
        store.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('p1', 'hello', 'test')")
    with Store(path) as store:  # reopening applies nothing again and keeps the data
        assert store.count("schema_migrations") == len(migrations())
        assert store.scalar("SELECT text FROM prompts WHERE prompt_id = 'p1'") == "hello"
        assert store.schema_version() == migrations()[-1].version


def test_required_tables_and_views_exist(store):
    names = {row[0] for row in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table in ("prompts", "candidates", "pairs", "judgments", "annotations", "curation_runs", "rm_runs",
                  "rejects", "stage_runs", "curation_funnel", "curated_pairs"):
        assert table in names
    for view in ("judgment_votes", "pair_labels", "judge_position_bias", "curated_pairs_export",
                 "curation_run_funnel", "stage_run_counts", "store_counts"):
        assert view in names


def test_insert_new_is_idempotent_by_primary_key(store):
    rows = pa.table({"prompt_id": ["a", "b"], "text": ["x", "y"], "source": ["s", "s"]})
    assert store.insert_new("prompts", rows) == 2
    assert store.insert_new("prompts", rows) == 0
    assert store.count("prompts") == 2


def test_a_failed_transaction_leaves_the_store_as_it_was(store):
    store.insert_new("prompts", pa.table({"prompt_id": ["a"], "text": ["x"], "source": ["s"]}))
    with pytest.raises(duckdb.Error):
        with store.transaction():
            store.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('b', 'y', 's')")
            store.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('c', NULL, 's')")
    assert store.count("prompts") == 1


def test_an_insert_past_the_memory_limit_says_so_and_keeps_what_was_committed(tmp_path):
    """DuckDB's own error comes out, not the aborted transaction's that cleaning up after it raised
    (an import-pairs past ~6M pairs under the 2GB default hit this: the primary-key indexes grow)."""
    from prefcurate.console import failure_line

    with Store(tmp_path / "store.duckdb", memory_limit="32MB") as store:
        store.con.execute("CREATE TABLE keyed (id VARCHAR PRIMARY KEY)")
        with store.transaction():
            store.insert_new("keyed", pa.table({"id": ["kept"]}))
        many = pa.table({"id": pa.array([f"{i:032x}" for i in range(1_500_000)])})
        with pytest.raises(duckdb.OutOfMemoryException) as raised:
            with store.transaction():
                store.insert_new("keyed", many)
        assert store.con.execute("SELECT id FROM keyed").fetchall() == [("kept",)]
    line = failure_line(raised.value, known=True)
    assert "\n" not in line and line.startswith("error: Out of Memory Error")
    assert "raise store.memory_limit" in line


def test_rejects_are_kept_once(store):
    reject = {"source": "f.jsonl", "source_row": 3, "field": "prompt", "reason": "empty prompt"}
    assert store.add_rejects("ingest", [reject]) == 1
    assert store.add_rejects("ingest", [reject]) == 0


def test_the_read_snapshot_follows_the_writer_and_a_reader_never_blocks_it(tmp_path):
    import subprocess
    import sys

    from prefcurate.core.store import open_for_reading, snapshot_path

    path = tmp_path / "s.duckdb"
    count = "SELECT count(*) FROM prompts"
    # another process reads: DuckDB shares one database instance per path within a process
    read = [sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(snapshot_path(path))!r}, "
            f"read_only=True).execute({count!r}).fetchone()[0])"]
    with Store(path, snapshot_every_s=0.01) as writer:
        writer.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('a', 'first', 't')")
        writer._unpublished = True
        assert writer.publish_snapshot(force=True)
        held = duckdb.connect(str(snapshot_path(path)), read_only=True)  # a notebook that stays connected
        assert held.execute(count).fetchone()[0] == 1
        with writer.transaction():
            writer.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('b', 'second', 't')")
        assert not writer.publish_snapshot()  # too soon: it never spends more than ~10% of its time copying
        assert writer.publish_snapshot(force=True)  # not blocked by the reader holding the old snapshot
        assert held.execute(count).fetchone()[0] == 1  # which keeps its consistent view
        assert subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip() == "2"
        held.close()  # (in one process a second connection would share the held one's database)
        con, note = open_for_reading(path, wait_s=0.2)  # just published: the snapshot is the store
        assert note is None and con.execute(count).fetchone()[0] == 2
        con.close()
        with writer.transaction():
            writer.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('c', 'third', 't')")
        con, note = open_for_reading(path, wait_s=0.2)  # written since: the note says how old it is
        assert "the store has changed since" in note and con.execute(count).fetchone()[0] == 2
        con.close()
    con, note = open_for_reading(path)  # the writer closed: it published its last write
    assert note is None and con.execute(count).fetchone()[0] == 3
    con.close()


def test_a_store_with_no_snapshot_setting_publishes_none(tmp_path):
    from prefcurate.core.store import snapshot_path

    with Store(tmp_path / "s.duckdb") as store, store.transaction():
        store.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('a', 'first', 't')")
    assert not snapshot_path(tmp_path / "s.duckdb").exists()


# -- files that are not ours, or newer than us (issue 23, item 4) -----------------------------------

def test_a_store_from_a_newer_schema_is_refused_naming_both_versions(tmp_path):
    import pytest

    from prefcurate.core.store import StoreError, migrations

    path = tmp_path / "s.duckdb"
    Store(path).close()
    known = max(m.version for m in migrations())
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, '999_from_the_future.sql')", [known + 1])
    with pytest.raises(StoreError, match=rf"schema version {known + 1}, newer than this prefcurate knows \({known}\)"):
        Store(path)


def test_another_applications_duckdb_file_is_refused_and_left_unwritten(tmp_path):
    import hashlib

    import pytest

    from prefcurate.core.store import StoreError

    path = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE prompts (id INTEGER, body VARCHAR)")
        con.execute("INSERT INTO prompts VALUES (1, 'theirs')")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="a DuckDB file prefcurate did not create \\(it holds prompts\\)"):
        Store(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with duckdb.connect(str(path), read_only=True) as con:
        assert [row[0] for row in con.execute("SHOW TABLES").fetchall()] == ["prompts"]


def test_a_store_whose_first_open_stopped_before_any_migration_opens(tmp_path):
    path = tmp_path / "s.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                    "applied_at TIMESTAMP DEFAULT current_timestamp)")
    with Store(path) as store:
        assert store.count("prompts") == 0


# -- the read path never blocks a writer; a reader on the live file is named (issue 23, item 13) ----

@contextmanager
def _held(path, read_only: bool = True):
    """Another process holding `path` open (a notebook, the DuckDB CLI) while the block runs."""
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; con = duckdb.connect({str(path)!r}, "
                               f"read_only={read_only}); con.execute('SELECT 1').fetchall(); print('holding', flush=True);"
                               " time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_reader_of_the_documented_read_path_never_blocks_a_writer(tmp_path):
    from prefcurate.core.store import snapshot_path

    path = tmp_path / "s.duckdb"
    Store(path, snapshot_every_s=5.0).close()
    with _held(snapshot_path(path)), Store(path, snapshot_every_s=5.0, lock_timeout_s=0) as writer, \
            writer.transaction():
        writer.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('a', 'first', 't')")


def test_a_reader_holding_the_live_file_is_named_with_what_to_do(tmp_path):
    from prefcurate.core.store import StoreBusyError

    path = tmp_path / "s.duckdb"
    Store(path, snapshot_every_s=5.0).close()
    with _held(path) as reader, pytest.raises(StoreBusyError) as raised:
        Store(path, lock_timeout_s=0.3)
    said = str(raised.value)
    assert f"a reader holds it open (PID {reader.pid}: " in said and "python" in said
    assert "s.duckdb.snapshot" in said and "never blocks a writer" in said and "another process is writing" not in said
    with _held(path, read_only=False) as writer, \
            pytest.raises(StoreBusyError, match=rf"another process is writing to it \(PID {writer.pid}"):
        Store(path, lock_timeout_s=0)


# -- prefcurate query is read-only for real (issue 23, item 14) ------------------------------------------

def test_a_query_cannot_write_or_read_other_files_unless_allowed(tmp_path):
    from prefcurate.core.store import open_for_reading

    path = tmp_path / "s.duckdb"
    Store(path, snapshot_every_s=5.0).close()
    outside = tmp_path / "x.csv"
    outside.write_text("a\n1\n")
    con, _ = open_for_reading(path)
    try:
        for sql in (f"COPY (SELECT 1) TO '{tmp_path / 'written.csv'}'", f"SELECT * FROM read_csv('{outside}')",
                    "SELECT * FROM read_text('/etc/passwd')", f"ATTACH '{tmp_path / 'other.duckdb'}' AS other"):
            with pytest.raises(duckdb.Error, match="(?i)disabled|permission"):
                con.execute(sql)
        assert con.execute("SELECT count(*) FROM prompts").fetchone()[0] == 0  # the store reads as ever
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('a', 'b', 'c')")
    finally:
        con.close()
    assert not (tmp_path / "written.csv").exists() and not (tmp_path / "other.duckdb").exists()
    con, _ = open_for_reading(path, allow_files=True)
    assert con.execute(f"SELECT * FROM read_csv('{outside}')").fetchall() == [(1,)]
    con.close()
