"""Build candidate pairs per prompt.

Strategies: `all` (every pair of distinct candidate texts) or `random` (up to K pairs, drawn with
a seed per prompt). Pairs already stored count toward K, so re-running adds nothing.
"""

from __future__ import annotations

import random
from itertools import combinations

from prefcurate.core.config import PairingConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store

STAGE = "pairs"


def pair_id(candidate_a: str, candidate_b: str) -> str:
    first, second = sorted((candidate_a, candidate_b))
    return content_hash("pair", first, second)


def choose_pairs(candidates: list[tuple[str, str]], config: PairingConfig, prompt_key: str,
                 existing: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
    """New pairs among one prompt's (candidate_id, text); identical texts never pair, and pairs
    already stored (`existing`) are neither repeated nor drawn again, but count toward K."""
    distinct: dict[str, str] = {}
    for candidate_id, text in sorted(candidates):
        distinct.setdefault(text.strip(), candidate_id)
    ids = sorted(distinct.values())
    possible = [pair for pair in combinations(ids, 2) if pair not in existing]  # (a, b) with a < b
    if config.strategy == "all":
        return possible
    budget = max(config.max_pairs_per_prompt - len(existing), 0)
    rng = random.Random(f"{config.seed}:{prompt_key}")
    return sorted(rng.sample(possible, min(budget, len(possible))))


def build_pairs(store: Store, config: PairingConfig) -> StageReport:
    rows = store.con.execute(
        "SELECT prompt_id, list(struct_pack(id := candidate_id, text := text)) FROM candidates "
        # refresh rounds pair their own samples (see round_pairs)
        "WHERE generator_key NOT IN (SELECT generator_key FROM round_generators) "
        "GROUP BY prompt_id ORDER BY prompt_id").fetchall()
    existing_per_prompt = {prompt: frozenset((a, b) for a, b in stored) for prompt, stored in store.con.execute(
        "SELECT prompt_id, list([candidate_a, candidate_b]) FROM pairs GROUP BY prompt_id").fetchall()}

    report = StageReport(STAGE, count_in=len(rows), details={"strategy": config.strategy})
    new_rows, too_few = [], 0
    for prompt_id, candidates in rows:
        existing = existing_per_prompt.get(prompt_id, frozenset())
        chosen = choose_pairs([(c["id"], c["text"]) for c in candidates], config, prompt_id, existing)
        if not chosen and not existing:
            too_few += 1
        new_rows.extend({"pair_id": pair_id(a, b), "prompt_id": prompt_id, "candidate_a": a,
                         "candidate_b": b, "strategy": config.strategy} for a, b in chosen)
    with store.transaction():
        new = store.insert_new("pairs", store.arrow_rows("pairs", new_rows))
    report.count_out = store.count("pairs")
    report.details.update(new_pairs=new, prompts_without_distinct_candidates=too_few)
    return report.finish()
