"""The refresh flow: one on-policy round (prefcurate/refresh/round.py), with its report as an artifact."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from prefcurate.core.config import PrefcurateConfig
from prefcurate.flows.fanout import cluster_calls
from prefcurate.flows.stage_flow import stage_flow
from prefcurate.flows.stages import judge_calls_task
from prefcurate.flows.training import check_work_pool, run_on_work_pool
from prefcurate.pipeline import run_directly
from prefcurate.refresh.round import refresh_round


@stage_flow("refresh")
def refresh_flow(config: PrefcurateConfig, round_index: int | None = None) -> dict:
    check_work_pool(config)
    with cluster_calls(config.fanout) as run_chunks:
        run_batch = run_directly if run_chunks else (lambda label, work: judge_calls_task(label, work))
        summary = refresh_round(config, round_index, run_batch=run_batch, place=run_on_work_pool,
                                run_chunks=run_chunks)
    markdown = summary.pop("round_report_markdown", None)
    if markdown:
        create_markdown_artifact(key="refresh-rounds", description="Refresh rounds: metrics and decisions",
                                 markdown=markdown)
    return summary
