"""judge.max_cost_usd: a hard budget on what judging in this store spends, online or in batches.

Spent is the cost of every stored judgment; committed is the estimated cost of the calls waiting in
provider batches. A call is asked (or submitted) only while spent + committed + the estimates of
the calls allowed before it stay within the budget, in the order planned. Estimates are upper
bounds, so the budget holds however the answers come out: prompt tokens from the characters sent
at the judge's calibrated tokens per character with a 10% margin (uncalibrated: characters / 3,
more tokens than tokenizers make of English), completion tokens at max_new_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefcurate.core.config import JudgeConfig
from prefcurate.core.store import Store
from prefcurate.curation.judging.pricing import price_of, token_calibration

UNCALIBRATED_CHARS_PER_TOKEN = 3.0
MARGIN = 1.1


class BudgetError(ValueError):
    """The budget cannot be applied (a judge without a price)."""


@dataclass
class BudgetCheck:
    allowed: list
    refused: int
    figures: dict


def _tokens_per_char(store: Store, judge) -> float:
    calibrated = token_calibration(store, judge.identity)[0]
    return MARGIN * calibrated if calibrated else 1 / UNCALIBRATED_CHARS_PER_TOKEN


def check_budget(store: Store, config: JudgeConfig, panel: list, todo: list,
                 waiting: list) -> BudgetCheck:
    """The calls of `todo` the budget allows (a prefix, in order), given the calls `waiting` in batches
    (judge.PlannedCall or ScoreCall objects: pairwise, rating and ranking calls alike; not imported
    here, since judge.py imports this module)."""
    unpriced = sorted({judge.name for judge in panel if not judge.is_verifier and config.prices.get(judge.config.backend.model) is None})
    if unpriced:
        raise BudgetError(f"judge.max_cost_usd needs a price for every judge's model (judge.prices); none for "
                          f"{', '.join(unpriced)}")
    rates = {judge.name: _tokens_per_char(store, judge) for judge in panel if not judge.is_verifier}

    def estimate(call) -> float:
        return price_of(config, call.judge.config, round(call.request_chars * rates[call.judge.name]),
                        call.judge.config.max_new_tokens)

    spent = store.scalar("SELECT coalesce(sum(cost_usd), 0) FROM (SELECT cost_usd FROM judgments "
                         "UNION ALL SELECT cost_usd FROM score_calls)") or 0.0
    committed = sum(estimate(call) for call in waiting)
    room = config.max_cost_usd - spent - committed
    allowed, planned = [], 0.0
    for call in todo:
        cost = estimate(call)
        if planned + cost > room:
            break
        allowed.append(call)
        planned += cost
    return BudgetCheck(allowed, len(todo) - len(allowed), {
        "max_cost_usd": config.max_cost_usd, "spent_usd": round(spent, 6), "waiting_in_batches_usd": round(committed, 6),
        "this_run_at_most_usd": round(planned, 6), "calls_refused": len(todo) - len(allowed)})
