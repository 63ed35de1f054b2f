"""What a judge call costs: judge.prices per model, at the batch share for batch backends; and how
many tokens a judge's calls have taken, from its stored calls (for estimates and the budget)."""

from __future__ import annotations

from prefcurate.core.config import BATCH_KINDS, JudgeConfig, PanelJudgeConfig
from prefcurate.core.store import Store


def price_of(config: JudgeConfig, judge: PanelJudgeConfig, prompt_tokens: int | None,
             completion_tokens: int | None) -> float | None:
    price = config.prices.get(judge.backend.model)
    if price is None or prompt_tokens is None:
        return None
    online = (prompt_tokens * price.input_per_million + (completion_tokens or 0) * price.output_per_million) / 1e6
    return online * price.batch_share if judge.backend.kind in BATCH_KINDS else online


def token_calibration(store: Store, judge_model: str, output_format: str | None = None, mode: str | None = None
                      ) -> tuple[float | None, float | None, int]:
    """(prompt tokens per request character, mean completion tokens, calls it rests on) over a
    judge model's stored calls (of one output format and one mode, pairwise / rating / ranking,
    if given: a rating's answer is longer than a verdict)."""
    row = store.one("""
        SELECT sum(prompt_tokens) / nullif(sum(request_chars), 0), avg(completion_tokens), count(*)
        FROM (SELECT 'pairwise' AS mode, judge_model, output_format, prompt_tokens, completion_tokens, request_chars
              FROM judgments
              UNION ALL
              SELECT mode, judge_model, output_format, prompt_tokens, completion_tokens, request_chars FROM score_calls)
        WHERE judge_model = $model AND ($format::VARCHAR IS NULL OR output_format = $format)
          AND ($mode::VARCHAR IS NULL OR mode = $mode)
          AND prompt_tokens IS NOT NULL AND request_chars IS NOT NULL""",
        {"model": judge_model, "format": output_format, "mode": mode})
    return row if row and row[2] else (None, None, 0)
