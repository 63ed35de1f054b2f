"""Build candidate pairs per prompt.

Blind strategies: `all` (every pair of distinct candidate texts) or `random` (up to K pairs, drawn
with a seed per prompt); pairs already stored count toward K, so re-running adds nothing.

Strategies from scores (candidate_score_summary: what rating and ranking judges, annotators and
rated imports gave each candidate): `best_vs_worst`, `best_vs_random_lower` (Tulu 3) and
`all_with_margin`; a pair needs a score difference of at least pairs.min_margin, and equal scores
make a pair only under pairs.keep_ties. The labels then come from the same scores (score_votes).
"""

from __future__ import annotations

import random
from itertools import combinations

from prefcurate.core.config import SCORE_STRATEGIES, PairingConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store

STAGE = "pairs"


def pair_id(candidate_a: str, candidate_b: str) -> str:
    first, second = sorted((candidate_a, candidate_b))
    return content_hash("pair", first, second)


def distinct_candidates(candidates: list[tuple[str, str]]) -> list[str]:
    """The ids of one prompt's (candidate_id, text) with distinct texts (the first id of each), sorted."""
    distinct: dict[str, str] = {}
    for candidate_id, text in sorted(candidates):
        distinct.setdefault(text.strip(), candidate_id)
    return sorted(distinct.values())


def choose_pairs(candidates: list[tuple[str, str]], config: PairingConfig, prompt_key: str,
                 existing: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
    """New pairs among one prompt's (candidate_id, text); identical texts never pair, and pairs
    already stored (`existing`) are neither repeated nor drawn again, but count toward K."""
    possible = [pair for pair in combinations(distinct_candidates(candidates), 2)
                if pair not in existing]  # (a, b) with a < b
    if config.strategy == "all":
        return possible
    budget = max(config.max_pairs_per_prompt - len(existing), 0)
    rng = random.Random(f"{config.seed}:{prompt_key}")
    return sorted(rng.sample(possible, min(budget, len(possible))))


def pairs_from_scores(scored: list[tuple[str, float]], config: PairingConfig, prompt_key: str,
                      existing: frozenset[tuple[str, str]] = frozenset()) -> list[tuple[str, str]]:
    """New pairs among one prompt's (candidate_id, score), distinct texts only, under a score strategy."""
    def admissible(first: tuple[str, float], second: tuple[str, float]) -> bool:
        gap = abs(first[1] - second[1])
        return (gap > 0 or config.keep_ties) and gap >= config.min_margin

    def ordered(first: str, second: str) -> tuple[str, str]:
        return (first, second) if first < second else (second, first)

    ranked = sorted(scored, key=lambda item: (-item[1], item[0]))  # best first; ties by id, for the same pairs each run
    if len(ranked) < 2:
        return []
    if config.strategy == "all_with_margin":
        chosen = [ordered(a[0], b[0]) for a, b in combinations(ranked, 2) if admissible(a, b)]
    elif config.strategy == "best_vs_worst":
        chosen = [ordered(ranked[0][0], ranked[-1][0])] if admissible(ranked[0], ranked[-1]) else []
    else:  # best_vs_random_lower
        lower = [item for item in ranked[1:] if admissible(ranked[0], item) and item[1] < ranked[0][1]
                 or (config.keep_ties and item[1] == ranked[0][1] and admissible(ranked[0], item))]
        rng = random.Random(f"{config.seed}:{prompt_key}")
        chosen = [ordered(ranked[0][0], rng.choice(lower)[0])] if lower else []
    return sorted(pair for pair in chosen if pair not in existing)


def _scores_by_prompt(store: Store, config: PairingConfig) -> dict[str, dict[str, float]]:
    column = "normalized_score" if config.margin_scale == "normalized" else "score"
    by_prompt: dict[str, dict[str, float]] = {}
    for prompt_id, candidate_id, score in store.con.execute(
            f"SELECT prompt_id, candidate_id, {column} FROM candidate_score_summary").fetchall():
        by_prompt.setdefault(prompt_id, {})[candidate_id] = score
    return by_prompt


def build_pairs(store: Store, config: PairingConfig) -> StageReport:
    rows = store.con.execute(
        "SELECT prompt_id, list(struct_pack(id := candidate_id, text := text)) FROM candidates "
        # refresh rounds pair their own samples (see round_pairs)
        "WHERE generator_key NOT IN (SELECT generator_key FROM round_generators) "
        "GROUP BY prompt_id ORDER BY prompt_id").fetchall()
    existing_per_prompt = {prompt: frozenset((a, b) for a, b in stored) for prompt, stored in store.con.execute(
        "SELECT prompt_id, list([candidate_a, candidate_b]) FROM pairs GROUP BY prompt_id").fetchall()}

    report = StageReport(STAGE, count_in=len(rows), details={"strategy": config.strategy})
    from_scores = config.strategy in SCORE_STRATEGIES
    scores = _scores_by_prompt(store, config) if from_scores else {}
    new_rows, too_few, unscored = [], 0, 0
    for prompt_id, candidates in rows:
        existing = existing_per_prompt.get(prompt_id, frozenset())
        if from_scores:
            distinct = distinct_candidates([(c["id"], c["text"]) for c in candidates])
            scored = [(candidate, scores[prompt_id][candidate]) for candidate in distinct
                      if candidate in scores.get(prompt_id, {})]
            unscored += len(distinct) >= 2 and len(scored) < 2
            chosen = pairs_from_scores(scored, config, prompt_id, existing)
        else:
            chosen = choose_pairs([(c["id"], c["text"]) for c in candidates], config, prompt_id, existing)
        if not chosen and not existing:
            too_few += 1
        new_rows.extend({"pair_id": pair_id(a, b), "prompt_id": prompt_id, "candidate_a": a,
                         "candidate_b": b, "strategy": config.strategy} for a, b in chosen)
    with store.transaction():
        new = store.insert_new("pairs", store.arrow_rows("pairs", new_rows))
    report.count_out = store.count("pairs")
    report.details.update(new_pairs=new, prompts_without_distinct_candidates=too_few)
    if from_scores:
        # prompts whose candidates no rater has scored yet: `judge` with a rating or ranking judge first
        report.details.update(prompts_without_scores=unscored, min_margin=config.min_margin,
                              margin_scale=config.margin_scale, keep_ties=config.keep_ties)
    return report.finish()
