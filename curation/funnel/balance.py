"""Steps that choose among surviving pairs: the per-prompt cap (by confidence, judge margin or a
seeded draw) and the length balance between chosen-is-longer and chosen-is-shorter pairs."""

from __future__ import annotations

from prefcurate.core.config import CurateConfig
from prefcurate.core.store import Store
from prefcurate.curation.funnel.step import StepOutcome


def _selection_order(config: CurateConfig) -> str:
    if config.pair_selection == "margin":
        return "abs(balanced_margin) DESC NULLS LAST, confidence DESC NULLS LAST, pair_id"
    if config.pair_selection == "random":
        return f"md5('{config.seed}:' || pair_id)"
    return "confidence DESC NULLS LAST, agreement DESC NULLS LAST, pair_id"


def cap(store: Store, config: CurateConfig) -> StepOutcome:
    store.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_step AS
        SELECT * FROM _curation_prev
        QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY {_selection_order(config)})
                <= {config.max_pairs_per_prompt}""")
    return StepOutcome()


_CHOSEN_LONGER = "(CASE label WHEN 'a' THEN chars_a > chars_b WHEN 'b' THEN chars_b > chars_a END)"
_CHOSEN_SHORTER = "(CASE label WHEN 'a' THEN chars_a < chars_b WHEN 'b' THEN chars_b < chars_a END)"


def chosen_longer_share(store: Store, table: str) -> float | None:
    """Share of decisive pairs with different lengths whose chosen response is the longer one."""
    return store.scalar(f"SELECT avg(CASE WHEN {_CHOSEN_LONGER} THEN 1.0 ELSE 0.0 END) FROM {table} "
                        "WHERE label IN ('a', 'b') AND chars_a <> chars_b")


def rebalance_length(store: Store, config: CurateConfig) -> StepOutcome:
    """Drop the least confident pairs on the over-represented side until chosen-is-longer holds the
    target share (pairs of equal length and ties are neutral and stay)."""
    target = config.length.target_chosen_longer
    longer, shorter = store.one(f"SELECT count(*) FILTER (WHERE {_CHOSEN_LONGER}), count(*) FILTER (WHERE {_CHOSEN_SHORTER}) "
                                "FROM _curation_prev")
    keep_longer, keep_shorter = longer, shorter
    if longer + shorter and longer / (longer + shorter) > target:
        keep_longer = int(target * shorter / (1 - target)) if target < 1 else longer
    elif longer + shorter and longer / (longer + shorter) < target:
        keep_shorter = int((1 - target) * longer / target) if target > 0 else shorter
    store.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_step AS
        SELECT * EXCLUDE (side_rank) FROM (
            SELECT *, row_number() OVER (PARTITION BY {_CHOSEN_LONGER} ORDER BY confidence DESC NULLS LAST, pair_id) AS side_rank
            FROM _curation_prev)
        WHERE ({_CHOSEN_LONGER} IS NOT TRUE AND {_CHOSEN_SHORTER} IS NOT TRUE)
           OR ({_CHOSEN_LONGER} AND side_rank <= {keep_longer})
           OR ({_CHOSEN_SHORTER} AND side_rank <= {keep_shorter})""")
    return StepOutcome({"chosen_longer_before": longer, "chosen_shorter_before": shorter})
