"""The tables that keep a content key without a key index (sql/migrations/019), and the SQL that keeps
those keys unique.

DuckDB holds a table's key index in memory whole (~140 bytes a key with our 32-character ids), so
the tables that grow with the pairs went over `store.memory_limit` at a few million pairs, and each
commit of keys in random order (content hashes are) loaded the index it touched. These tables have
no PRIMARY KEY; a write skips the keys already stored with an anti-join: one scan of the key column
(~0.2 s at 10M keys on 2 cores; a 256-row commit into 10M keys cost 0.28 s with the index, in a
fresh DuckDB instance as a released commit is), memory that does not grow with the store. One
writer holds the store at a time, so no two transactions add the same key at once.
"""

from __future__ import annotations

# table -> its key columns
CONTENT_KEYS: dict[str, tuple[str, ...]] = {
    "prompts": ("prompt_id",),
    "candidates": ("candidate_id",),
    "pairs": ("pair_id",),
    "reference_labels": ("reference_label_id",),
    "candidate_text_keys": ("candidate_id",),
    "judgments": ("judgment_id",),
    # a curation run's rows, written once per run (again only to complete a run cut off half-way)
    "curated_pairs": ("curation_run_id", "pair_id"),
    "curation_prompt_clusters": ("curation_run_id", "prompt_id"),
    "curation_prompt_drops": ("curation_run_id", "step", "prompt_id"),
    "curation_suspects": ("curation_run_id", "pair_id"),
    "curation_funnel_samples": ("curation_run_id", "step_order", "pair_id"),
}


def _same_key(keys: tuple[str, ...]) -> str:
    return " AND ".join(f'stored."{key}" = incoming."{key}"' for key in keys)


def insert_new_sql(table: str, source: str) -> str:
    """INSERT of the rows of `source` (a table name or a parenthesized query) whose key `table` does
    not hold yet, each key once (which of a key's rows in `source` is kept is not defined). A table
    with a primary key lets DuckDB's index skip them."""
    if table not in CONTENT_KEYS:
        return f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM {source}"
    keys = CONTENT_KEYS[table]
    partition = ", ".join(f'incoming."{key}"' for key in keys)
    return (f"INSERT INTO {table} BY NAME SELECT incoming.* FROM {source} AS incoming "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS stored WHERE {_same_key(keys)}) "
            f"QUALIFY row_number() OVER (PARTITION BY {partition}) = 1")


def delete_stored_sql(table: str, source: str) -> str:
    """DELETE of the rows of `table` whose key `source` holds: an upsert is this, then insert_new_sql,
    in one transaction."""
    return (f"DELETE FROM {table} AS stored WHERE EXISTS "
            f"(SELECT 1 FROM {source} AS incoming WHERE {_same_key(CONTENT_KEYS[table])})")
