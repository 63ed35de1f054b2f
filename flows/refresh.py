"""The refresh flow: one on-policy round (prefcurate/refresh/round.py), with its report as an artifact."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from prefcurate.core.config import PrefcurateConfig
from prefcurate.flows.stage_flow import stage_flow
from prefcurate.flows.stages import judge_calls_task
from prefcurate.flows.training import check_work_pool, run_on_work_pool
from prefcurate.refresh.round import refresh_round


@stage_flow("refresh")
def refresh_flow(config: PrefcurateConfig, round_index: int | None = None) -> dict:
    check_work_pool(config)
    summary = refresh_round(config, round_index, run_batch=lambda label, work: judge_calls_task(label, work),
                            place=run_on_work_pool)
    markdown = summary.pop("round_report_markdown", None)
    if markdown:
        create_markdown_artifact(key="refresh-rounds", description="Refresh rounds: metrics and decisions",
                                 markdown=markdown)
    return summary
