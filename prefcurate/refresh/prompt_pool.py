"""Which prompts a refresh round draws from the pool.

Rule: prompts no round has drawn come first, in a seeded order; once every prompt has been drawn,
the least recently drawn ones are reused (ties in the same seeded order). A round's draw is stored
in round_prompts and read back on a re-run, so a round always works on the same prompts. A seeded
share of the drawn prompts is held out: their pairs measure on-policy accuracy and never train.
"""

from __future__ import annotations

from prefcurate.core.hashing import content_hash
from prefcurate.core.store import Store



def draw_prompts(store: Store, round_index: int, n: int, heldout_share: float, seed: int) -> list[tuple[str, bool]]:
    """[(prompt_id, heldout)] for the round: drawn now, or as drawn before."""
    stored = store.con.execute("SELECT prompt_id, heldout FROM round_prompts WHERE round_index = ? ORDER BY prompt_id",
                               [round_index]).fetchall()
    if stored:
        return [(prompt_id, heldout) for prompt_id, heldout in stored]
    rows = store.con.execute("""
        SELECT p.prompt_id, max(r.round_index) AS last_drawn
        FROM prompts AS p LEFT JOIN round_prompts AS r USING (prompt_id)
        WHERE p.in_pool
        GROUP BY p.prompt_id""").fetchall()
    order = sorted(rows, key=lambda row: (row[1] is not None, row[1] or 0, content_hash("pool", seed, row[0])))
    drawn = [prompt_id for prompt_id, _ in order[:n]]
    if len(drawn) < 2:
        raise ValueError(f"the prompt pool has {len(drawn)} prompt(s); a refresh round needs at least 2 "
                         "(one to train on, one held out): ingest more prompts")
    n_heldout = min(max(1, round(len(drawn) * heldout_share)), len(drawn) - 1)
    by_hash = sorted(drawn, key=lambda prompt_id: content_hash("heldout", seed, round_index, prompt_id))
    heldout = set(by_hash[:n_heldout])
    table = store.arrow_rows("round_prompts", [{"round_index": round_index, "prompt_id": p, "heldout": p in heldout} for p in drawn])
    with store.transaction():
        store.insert_new("round_prompts", table)
    return sorted((p, p in heldout) for p in drawn)
