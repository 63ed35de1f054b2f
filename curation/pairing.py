"""Build candidate pairs per prompt.

Strategies: `all` (every pair of distinct candidate texts) or `random` (up to K pairs, drawn with
a seed per prompt). Pairs already stored count toward K, so re-running adds nothing.
"""

from __future__ import annotations

import random
from itertools import combinations

import pyarrow as pa

from prefcurate.config import PairingConfig
from prefcurate.curation.hashing import content_hash
from prefcurate.curation.store import StageReport, Store

STAGE = "pairs"


def pair_id(candidate_a: str, candidate_b: str) -> str:
    first, second = sorted((candidate_a, candidate_b))
    return content_hash("pair", first, second)


def choose_pairs(candidates: list[tuple[str, str]], config: PairingConfig, prompt_key: str,
                 already: int = 0) -> list[tuple[str, str]]:
    """Pick pairs among one prompt's (candidate_id, text); identical texts never pair."""
    distinct: dict[str, str] = {}
    for candidate_id, text in sorted(candidates):
        distinct.setdefault(text.strip(), candidate_id)
    ids = sorted(distinct.values())
    possible = list(combinations(ids, 2))  # (a, b) with a < b
    if config.strategy == "all":
        return possible
    budget = max(config.max_pairs_per_prompt - already, 0)
    rng = random.Random(f"{config.seed}:{prompt_key}")
    return sorted(rng.sample(possible, min(budget, len(possible))))


def build_pairs(store: Store, config: PairingConfig) -> StageReport:
    rows = store.con.execute(
        "SELECT prompt_id, list(struct_pack(id := candidate_id, text := text)) "
        "FROM candidates GROUP BY prompt_id ORDER BY prompt_id").fetchall()
    existing_per_prompt = dict(store.con.execute(
        "SELECT prompt_id, count(*) FROM pairs GROUP BY prompt_id").fetchall())
    existing_ids = {row[0] for row in store.con.execute("SELECT pair_id FROM pairs").fetchall()}

    report = StageReport(STAGE, count_in=len(rows), details={"strategy": config.strategy})
    new_rows, too_few = [], 0
    for prompt_id, candidates in rows:
        chosen = choose_pairs([(c["id"], c["text"]) for c in candidates], config, prompt_id,
                              already=existing_per_prompt.get(prompt_id, 0))
        if not chosen and not existing_per_prompt.get(prompt_id):
            too_few += 1
        for a, b in chosen:
            key = pair_id(a, b)
            if key not in existing_ids:
                new_rows.append({"pair_id": key, "prompt_id": prompt_id, "candidate_a": a,
                                 "candidate_b": b, "strategy": config.strategy})
    with store.transaction():
        new = store.insert_new("pairs", pa.Table.from_pylist(new_rows, schema=_SCHEMA))
    report.count_out = store.count("pairs")
    report.details.update(new_pairs=new, prompts_without_distinct_candidates=too_few)
    return report.finish()


_SCHEMA = pa.schema([("pair_id", pa.string()), ("prompt_id", pa.string()), ("candidate_a", pa.string()),
                     ("candidate_b", pa.string()), ("strategy", pa.string())])
