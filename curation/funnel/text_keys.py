"""Each response's normalized-text key (candidate_text_keys), stored once: two responses equal but
for case, punctuation and spacing have the same key, so the funnel's `responses_differ` filter
compares keys instead of normalizing both texts of every pair at every run (at millions of pairs
that normalizing was most of the funnel input's time)."""

from __future__ import annotations

from prefcurate.core.store import Store, StoreReader

# The responses not keyed yet, with their key (the candidate_flags view computes the same for any
# response this has not reached: the key is never missing, only slower).
_NEW_KEYS = """
    SELECT c.candidate_id, md5_number_upper(normalized_text(c.text)) AS text_key
    FROM candidates AS c ANTI JOIN candidate_text_keys AS k ON k.candidate_id = c.candidate_id"""


def key_new_responses(store: Store, reader: StoreReader, commit_rows: int) -> int:
    """Key the responses added since the last run, read from `reader`: the read snapshot (computing
    keys holds no lock; committed `commit_rows` at a time) or the store itself. Returns how many."""
    return store.insert_selected("candidate_text_keys", reader, _NEW_KEYS, batch_rows=commit_rows)
