"""Tables whose keys have no index (core/content_keys.py, migration 019): each key stays unique
however rows arrive, the store's memory does not grow with them, and a store from before the
migration keeps its rows and views."""

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefcurate.core.store as store_module
from prefcurate.core.content_keys import CONTENT_KEYS
from prefcurate.core.hashing import content_hash
from prefcurate.core.store import Store


def _primary_keys(store: Store) -> dict[str, list[str]]:
    return {table: columns for table, columns in store.con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY'").fetchall()}


def test_every_table_has_a_primary_key_or_a_content_key_and_never_both(store):
    tables = {row[0] for row in store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    primary = _primary_keys(store)
    unkeyed = tables - set(primary) - set(CONTENT_KEYS) - {"schema_views"}
    assert not unkeyed, f"insert_new could duplicate rows of {unkeyed}: give them a key"
    assert not set(primary) & set(CONTENT_KEYS)
    for table, keys in CONTENT_KEYS.items():
        columns = {row[0] for row in store.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()}
        assert table in tables and set(keys) <= columns, table


def _prompts(keys: list[int], text: str) -> pa.Table:
    return pa.table({"prompt_id": [f"p{key}" for key in keys], "text": [f"{text}{key}" for key in keys],
                     "source": ["test"] * len(keys)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, 30), max_size=25), max_size=6))
def test_insert_new_keeps_each_key_once_and_never_replaces_a_stored_row(tmp_path_factory, batches):
    with Store(tmp_path_factory.mktemp("keys") / "store.duckdb") as store:
        first_text: dict[int, str] = {}
        for number, keys in enumerate(batches):
            new = store.insert_new("prompts", _prompts(keys, f"batch{number}-"))
            assert new == len(set(keys) - set(first_text))
            for key in keys:
                first_text.setdefault(key, f"batch{number}-{key}")
        stored = dict(store.con.execute("SELECT prompt_id, text FROM prompts").fetchall())
        assert store.count("prompts") == len(stored) == len(first_text)
        assert stored == {f"p{key}": text for key, text in first_text.items()}


def test_insert_selected_skips_stored_composite_keys_on_the_store_and_from_a_reader(tmp_path):
    with Store(tmp_path / "store.duckdb", snapshot_every_s=0) as store:
        select = ("SELECT ? AS curation_run_id, 'exact' AS step, 'p' || (i % 7) AS prompt_id, NULL AS related, "
                  "0.5 AS score FROM range(20) AS r(i)")
        assert store.insert_selected("curation_prompt_drops", store, select, ["run1"]) == 7
        assert store.insert_selected("curation_prompt_drops", store, select, ["run1"]) == 0
        assert store.insert_selected("curation_prompt_drops", store, select, ["run2"]) == 7
        store.publish_snapshot(force=True)
        from prefcurate.core.store import SnapshotReader
        with SnapshotReader(store.path) as reader:
            # from another connection, in batches: the same keys are still found stored
            assert store.insert_selected("curation_prompt_drops", reader, select, ["run2"], batch_rows=3) == 0
            assert store.insert_selected("curation_prompt_drops", reader, select, ["run3"], batch_rows=3) == 7
        assert store.count("curation_prompt_drops") == 21


def test_upsert_replaces_a_keys_row_whole_or_not_at_all(store):
    store.insert_new("prompts", _prompts([1, 2], "first"))
    store.upsert("prompts", _prompts([2, 3], "second"))  # a transaction of its own
    assert dict(store.con.execute("SELECT prompt_id, text FROM prompts").fetchall()) == {
        "p1": "first1", "p2": "second2", "p3": "second3"}
    with pytest.raises(duckdb.ConstraintException):
        with store.transaction():  # inside the caller's: a failure after it undoes the delete too
            store.upsert("prompts", _prompts([1], "third"))
            store.con.execute("INSERT INTO prompts (prompt_id, text, source) VALUES ('p9', NULL, 's')")
    assert store.scalar("SELECT text FROM prompts WHERE prompt_id = 'p1'") == "first1"
    assert store.count("prompts") == 3


def test_keys_past_what_a_key_index_fits_in_the_memory_limit_still_insert(tmp_path):
    """The store's memory does not grow with its keys: 1.5M content hashes, in commits of 100,000,
    under a 64MB limit; a PRIMARY KEY column of the same keys ran out of it at 600,000 (DuckDB 2.0.1)."""
    with Store(tmp_path / "store.duckdb", memory_limit="64MB") as store:
        for start in range(0, 1_500_000, 100_000):
            keys = pa.array([content_hash(i) for i in range(start, start + 100_000)])
            with store.transaction():
                assert store.insert_new("candidate_text_keys", pa.table(
                    {"candidate_id": keys, "text_key": pa.array(range(100_000), pa.uint64())})) == 100_000
        again = pa.table({"candidate_id": pa.array([content_hash(i) for i in range(0, 1_500_000, 1000)]),
                          "text_key": pa.array(range(1500), pa.uint64())})
        assert store.insert_new("candidate_text_keys", again) == 0
        assert store.count("candidate_text_keys") == 1_500_000


def test_a_store_from_before_the_migration_keeps_its_rows_and_views(tmp_path, monkeypatch):
    path = tmp_path / "store.duckdb"
    before = [migration for migration in store_module.migrations() if migration.version < 19]
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "migrations", lambda: before)
        with Store(path) as old:
            old.insert_new("prompts", _prompts([1, 2], "old"))
            assert _primary_keys(old)["prompts"] == ["prompt_id"]
            counts_before = sorted(old.con.execute("SELECT * FROM store_counts").fetchall())
    with Store(path) as store:
        assert "prompts" not in _primary_keys(store)
        assert sorted(store.con.execute("SELECT * FROM store_counts").fetchall()) == counts_before
        assert store.insert_new("prompts", _prompts([2, 3], "new")) == 1
        assert dict(store.con.execute("SELECT prompt_id, text FROM prompts").fetchall()) == {
            "p1": "old1", "p2": "old2", "p3": "new3"}
