"""Predict what judging will cost before anything is spent: calls, tokens, dollars per judge.

Nothing is sent, no model is loaded and nothing is written (a stopped run's journal waits for the
judge stage). Token counts are calibrated on this judge's stored calls
(tokens per character sent, mean completion tokens) when it has any; otherwise prompt tokens
are taken as characters / 4 and completion tokens at max_new_tokens, an upper bound.
"""

from __future__ import annotations

from contextlib import closing

from prefcurate.core.config import JudgeConfig
from prefcurate.core.store import Store
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.pricing import price_of, token_calibration
from prefcurate.curation.judging.calls import (answered_among, count_judged_pairs, judged_pair_ids, pair_pages,
                                               plan_calls)
from prefcurate.curation.judging.panel import PanelJudge, format_history, resolve_output_format
from prefcurate.curation.judging.score_calls import plan_score_calls, score_target_pages

DEFAULT_CHARS_PER_TOKEN = 4.0


def estimate_judging(store: Store, constitution: Constitution, config: JudgeConfig) -> dict:
    """Calls are planned a page at a time and counted (pairwise judges' a page of pairs, rating and
    ranking judges' a page of prompts), so millions of pairs estimate in the memory of one page."""
    panel = [PanelJudge(member, resolve_output_format(member, format_history(store, member)))
             for member in config.panel if member.kind == "llm"]  # verifiers cost nothing
    pairwise = [judge for judge in panel if judge.mode == "pairwise"]
    scorers = [judge for judge in panel if judge.mode in ("rating", "ranking")]
    counts = {judge.name: {"planned": 0, "to_make": 0, "characters": 0} for judge in panel}
    pairs = 0

    def count(calls: list) -> None:
        answered = answered_among(store, [call.key for call in calls])
        for call in calls:
            tally = counts[call.judge.name]
            tally["planned"] += 1
            if call.key not in answered:
                tally["to_make"] += 1
                tally["characters"] += call.request_chars

    judged = judged_pair_ids(config.max_imported_pairs)
    if pairwise:
        with closing(pair_pages(store, config.max_imported_pairs, config.page_pairs)) as pages:
            for page in pages:
                pairs += len(page)
                count([call for judge in pairwise for call in plan_calls(page, constitution, judge, config)])
    else:  # nothing to plan per pair: counted, not read
        pairs = count_judged_pairs(store, config.max_imported_pairs)
    if scorers:
        with closing(score_target_pages(store, judged, config.page_pairs)) as pages:
            for targets in pages:
                count([call for judge in scorers for call in plan_score_calls(targets, constitution, judge, config)])

    per_judge = {}
    for judge in panel:
        tally = counts[judge.name]
        tokens_per_char, completion_mean, calibrated_on = token_calibration(
            store, judge.identity, judge.output_format, judge.mode)
        prompt_tokens = round(tally["characters"] * (tokens_per_char or 1 / DEFAULT_CHARS_PER_TOKEN))
        completion_tokens = round(tally["to_make"] * (completion_mean if completion_mean is not None
                                                      else judge.config.max_new_tokens))
        cost = price_of(config, judge.config, prompt_tokens, completion_tokens)  # batch prices for batch judges
        per_judge[judge.name] = {
            "model": judge.identity, "mode": judge.mode, "output_format": judge.output_format,
            "calls_planned": tally["planned"], "calls_to_make": tally["to_make"],
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost_usd": None if cost is None else round(cost, 4),
            "calibrated_on_calls": calibrated_on,
        }
    planned = sum(judge["calls_planned"] for judge in per_judge.values())
    to_make = sum(judge["calls_to_make"] for judge in per_judge.values())
    costs = [judge["cost_usd"] for judge in per_judge.values() if judge["cost_usd"] is not None]
    return {
        "pairs": pairs, "calls_planned": planned, "calls_cached": planned - to_make, "calls_to_make": to_make,
        "prompt_tokens": sum(judge["prompt_tokens"] for judge in per_judge.values()),
        "completion_tokens": sum(judge["completion_tokens"] for judge in per_judge.values()),
        "cost_usd": round(sum(costs), 4) if costs else None,  # over the priced judges
        "unpriced_judges": [name for name, judge in per_judge.items() if judge["cost_usd"] is None],
        "judges": per_judge,
    }
