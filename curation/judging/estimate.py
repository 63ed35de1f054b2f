"""Predict what judging will cost before anything is spent: calls, tokens, dollars per judge.

Nothing is sent and no model is loaded. Token counts are calibrated on this judge's stored calls
(tokens per character sent, mean completion tokens) when it has any; otherwise prompt tokens
are taken as characters / 4 and completion tokens at max_new_tokens, an upper bound.
"""

from __future__ import annotations

from prefcurate.core.config import JudgeConfig
from prefcurate.core.store import Store
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.pricing import price_of, token_calibration
from prefcurate.curation.judging.calls import pairs_to_judge
from prefcurate.curation.judging.panel import PanelJudge, format_history, resolve_output_format
from prefcurate.curation.judging.run import JudgeRun

DEFAULT_CHARS_PER_TOKEN = 4.0


def estimate_judging(store: Store, constitution: Constitution, config: JudgeConfig) -> dict:
    panel = [PanelJudge(member, resolve_output_format(member, format_history(store, member)))
             for member in config.panel if member.kind == "llm"]  # verifiers cost nothing
    pairs = pairs_to_judge(store, config.max_imported_pairs)
    planned, todo = JudgeRun(store, panel, constitution, config).plan(pairs)
    per_judge = {}
    for judge in panel:
        calls = [call for call in todo if call.judge is judge]
        tokens_per_char, completion_mean, calibrated_on = token_calibration(
            store, judge.identity, judge.output_format, judge.mode)
        characters = sum(call.request_chars for call in calls)
        prompt_tokens = round(characters * (tokens_per_char or 1 / DEFAULT_CHARS_PER_TOKEN))
        completion_tokens = round(len(calls) * (completion_mean if completion_mean is not None
                                                else judge.config.max_new_tokens))
        cost = price_of(config, judge.config, prompt_tokens, completion_tokens)  # batch prices for batch judges
        per_judge[judge.name] = {
            "model": judge.identity, "mode": judge.mode, "output_format": judge.output_format,
            "calls_planned": sum(1 for call in planned if call.judge is judge), "calls_to_make": len(calls),
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost_usd": None if cost is None else round(cost, 4),
            "calibrated_on_calls": calibrated_on,
        }
    costs = [judge["cost_usd"] for judge in per_judge.values() if judge["cost_usd"] is not None]
    return {
        "pairs": len(pairs), "calls_planned": len(planned), "calls_cached": len(planned) - len(todo),
        "calls_to_make": len(todo),
        "prompt_tokens": sum(judge["prompt_tokens"] for judge in per_judge.values()),
        "completion_tokens": sum(judge["completion_tokens"] for judge in per_judge.values()),
        "cost_usd": round(sum(costs), 4) if costs else None,  # over the priced judges
        "unpriced_judges": [name for name, judge in per_judge.items() if judge["cost_usd"] is None],
        "judges": per_judge,
    }
