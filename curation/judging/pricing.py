"""What a judge call costs: judge.prices per model, at the batch share for batch backends."""

from __future__ import annotations

from prefcurate.core.config import BATCH_KINDS, JudgeConfig, PanelJudgeConfig


def price_of(config: JudgeConfig, judge: PanelJudgeConfig, prompt_tokens: int | None,
             completion_tokens: int | None) -> float | None:
    price = config.prices.get(judge.backend.model)
    if price is None or prompt_tokens is None:
        return None
    online = (prompt_tokens * price.input_per_million + (completion_tokens or 0) * price.output_per_million) / 1e6
    return online * price.batch_share if judge.backend.kind in BATCH_KINDS else online
