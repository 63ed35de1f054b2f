"""Deduplication steps: prompts equal without case, punctuation and spacing (exact), or in one
near-duplicate cluster (MinHash LSH, near_dup.py). A cluster keeps one prompt, the one with the
most surviving pairs; the dropped ones are recorded with the prompt they duplicate, and clusters
merge across both steps so that near-duplicates never straddle splits."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pyarrow as pa

from prefcurate.core.config import CurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.funnel.near_dup import near_duplicate_clusters, shingle_hashes_sql, signatures
from prefcurate.curation.funnel.shingles import normalized_sql
from prefcurate.curation.funnel.step import StepOutcome, keep_prompts, surviving_prompt_texts

SIGNATURE_BATCH_ROWS = 65_536  # prompts whose shingle lists are in memory at once


def _representatives_sql(cluster_table: str) -> str:
    """Per prompt of this step's clusters (`cluster_table`: prompt_id, cluster_id, score): the prompt
    its cluster keeps (the one with the most surviving pairs, then the smallest id) and the merged
    cluster's key. Keys are prompt ids, the earliest stored member's, so a cluster keeps its key,
    and with it its split, as new near-duplicates arrive."""
    return f"""
        WITH members AS (
            SELECT c.prompt_id, c.cluster_id AS group_id, c.score, k.cluster_id AS old_key, kp.created_at AS key_created
            FROM {cluster_table} AS c
            JOIN _curation_clusters AS k USING (prompt_id)
            JOIN prompts AS kp ON kp.prompt_id = k.cluster_id
        ),
        pair_counts AS (SELECT prompt_id, count(*) AS n_pairs FROM _curation_prev GROUP BY prompt_id)
        SELECT m.prompt_id, m.score, m.old_key,
               first(m.prompt_id ORDER BY n.n_pairs DESC, m.prompt_id) OVER (PARTITION BY m.group_id) AS kept,
               first(m.old_key ORDER BY m.key_created, m.old_key) OVER (PARTITION BY m.group_id) AS cluster_key
        FROM members AS m JOIN pair_counts AS n USING (prompt_id)"""


def _apply_clusters(store: Store, step: str, cluster_table: str) -> StepOutcome:
    con = store.con
    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_reps AS {_representatives_sql(cluster_table)}")
    con.execute("INSERT INTO _curation_prompt_drops SELECT ?, prompt_id, kept, score FROM _curation_reps "
                "WHERE prompt_id <> kept", [step])
    # Clusters merge across steps: every prompt under an old key moves to the merged cluster's key
    # (only those whose key changes: updating every prompt's row to the key it has was most of the step)
    con.execute("UPDATE _curation_clusters SET cluster_id = r.cluster_key "
                "FROM (SELECT DISTINCT old_key, cluster_key FROM _curation_reps WHERE old_key <> cluster_key) AS r "
                "WHERE _curation_clusters.cluster_id = r.old_key")
    keep_prompts(store, "(SELECT prompt_id FROM _curation_reps WHERE prompt_id = kept)")
    dropped, clusters = store.one("SELECT count(*) FILTER (WHERE prompt_id <> kept), "
                                  "count(DISTINCT cluster_key) FILTER (WHERE prompt_id <> kept) FROM _curation_reps")
    return StepOutcome({"prompts_dropped": dropped, "duplicate_clusters": clusters})


def exact_dedup(store: Store, config: CurateConfig) -> StepOutcome:
    store.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_exact AS
        SELECT prompt_id, md5(replace({normalized_sql('prompt_text')}, ' ', '')) AS cluster_id, 1.0 AS score
        FROM ({surviving_prompt_texts('_curation_prev')})""")
    return _apply_clusters(store, "exact_dedup", "_curation_exact")


def near_dedup(store: Store, config: CurateConfig) -> StepOutcome:
    """Signatures a batch of prompts at a time (their shingle lists are never all in memory: at
    2.5M prompts they were ~2 GB), into one (prompts, num_perm) uint32 array, then LSH."""
    near = config.dedup.near
    surviving = f"SELECT prompt_id, prompt_text FROM ({surviving_prompt_texts('_curation_prev')})"
    n = store.scalar(f"SELECT count(*) FROM ({surviving})")
    if n == 0:
        store.con.execute("CREATE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev")
        return StepOutcome({"prompts_dropped": 0})
    # Each prompt's row in the signature array is its rank by id, numbered before the shingles are
    # made: sorting the shingle lists themselves (ORDER BY on the query that makes them) held all of
    # them at once, ~1 GB more at 2.5M prompts. The batches then come in any order.
    store.con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_near_texts AS "
                      f"SELECT row_number() OVER (ORDER BY prompt_id) - 1 AS row, prompt_id, prompt_text FROM ({surviving})")
    sigs = np.empty((n, near.num_perm), dtype=np.uint32)
    with closing(store.con.sql(f"SELECT row, {shingle_hashes_sql('prompt_text', near)} AS shingles "
                               "FROM _curation_near_texts").to_arrow_reader(SIGNATURE_BATCH_ROWS)) as reader:
        for batch in reader:  # nothing of a batch is kept: a column kept from it kept the whole batch (~3 GB at 2.5M)
            sigs[batch.column("row").to_numpy()] = signatures(batch.column("shingles"), near)
    ids = store.con.sql("SELECT prompt_id FROM _curation_near_texts ORDER BY row").to_arrow_table().column(0)
    ids = ids.combine_chunks()
    store.con.execute("DROP TABLE _curation_near_texts")
    found = near_duplicate_clusters(sigs, near)
    heads = found.labels
    score = np.empty(n, dtype=np.float64)  # similarity to the cluster's head, for the drops table
    for start in range(0, n, SIGNATURE_BATCH_ROWS):  # a slice at a time: sigs[heads] whole is a second copy
        stop = min(start + SIGNATURE_BATCH_ROWS, n)
        score[start:stop] = (sigs[start:stop] == sigs[heads[start:stop]]).mean(axis=1)
    store.con.register("_curation_near_in", pa.table({"prompt_id": ids, "cluster_id": ids.take(pa.array(heads)),
                                                      "score": score}))
    try:
        store.con.execute("CREATE OR REPLACE TEMP TABLE _curation_near AS SELECT * FROM _curation_near_in")
    finally:
        store.con.unregister("_curation_near_in")
    outcome = _apply_clusters(store, "near_dedup", "_curation_near")
    outcome.details.update(lsh_bands=found.bands, lsh_rows=found.rows, candidate_links=found.candidate_links,
                           verified_links=found.verified_links)
    return outcome
