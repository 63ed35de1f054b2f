"""The pairs a refresh round selects among its policy's responses (see policy.py).

Pair selection per prompt, among the policy responses (rewards from the incumbent model):
- max_min: the highest- against the lowest-reward response, the pair the model ranks most clearly;
- ensemble_uncertain: the pair whose margin is smallest against the members' spread;
- random: a seeded random pair.
"""

from __future__ import annotations

import random

from prefcurate.core.hashing import content_hash
from prefcurate.core.store import Store
from prefcurate.curation.generation.pairing import pair_id



def _choose(responses: list[tuple[str, str, float, float | None]], rule: str, key: str):
    """(candidate, candidate) among one prompt's distinct (id, text, reward, std) responses."""
    if rule == "max_min":
        ranked = sorted(responses, key=lambda r: (r[2], r[0]))
        return ranked[-1][0], ranked[0][0]
    if rule == "ensemble_uncertain":
        def doubt(pair):
            (a, _, ra, sa), (b, _, rb, sb) = pair
            return ((sa or 0.0) + (sb or 0.0)) / (abs(ra - rb) + 1e-6), a, b
        pairs = [(x, y) for i, x in enumerate(responses) for y in responses[i + 1:]]
        first, second = max(pairs, key=doubt)
        return first[0], second[0]
    first, second = random.Random(key).sample(responses, 2)
    return first[0], second[0]


def select_round_pairs(store: Store, round_index: int, rule: str, seed: int) -> dict:
    """One pair per prompt of the round (identical texts never pair); stored in pairs and round_pairs.
    A round's pairs are fixed once stored: a resumed round reuses them."""
    stored = store.one("SELECT count(*), count(*) FILTER (WHERE heldout) FROM round_pairs WHERE round_index = ?",
                       [round_index])
    if stored[0]:
        return {"pairs": stored[0], "new_pairs": 0, "heldout_pairs": stored[1], "reused": True}
    rows = store.con.execute("""
        SELECT rc.prompt_id, rp.heldout,
               list(struct_pack(id := rc.candidate_id, text := c.text, reward := rc.reward, std := rc.reward_std)
                    ORDER BY rc.candidate_id)
        FROM round_candidates AS rc
        JOIN candidates AS c USING (candidate_id)
        JOIN round_prompts AS rp ON rp.round_index = rc.round_index AND rp.prompt_id = rc.prompt_id
        WHERE rc.round_index = ?
        GROUP BY ALL ORDER BY rc.prompt_id""", [round_index]).fetchall()
    pairs, round_pairs, too_few = [], [], 0
    for prompt_id, heldout, candidates in rows:
        distinct = {}
        for c in candidates:
            distinct.setdefault(c["text"].strip(), (c["id"], c["text"], c["reward"], c["std"]))
        if len(distinct) < 2:
            too_few += 1
            continue
        first, second = _choose(list(distinct.values()), rule, content_hash("round-pair", seed, round_index, prompt_id))
        a, b = sorted((first, second))
        key = pair_id(a, b)
        pairs.append({"pair_id": key, "prompt_id": prompt_id, "candidate_a": a, "candidate_b": b,
                      "strategy": f"refresh:{rule}"})
        round_pairs.append({"round_index": round_index, "pair_id": key, "selection": rule, "heldout": heldout})
    with store.transaction():
        store.insert_new("pairs", store.arrow_rows("pairs", pairs))
        new = store.insert_new("round_pairs", store.arrow_rows("round_pairs", round_pairs))
    return {"prompts": len(rows), "pairs": len(round_pairs), "new_pairs": new, "too_few_distinct": too_few,
            "heldout_pairs": sum(r["heldout"] for r in round_pairs)}
