"""One Prefect flow per stage, and the parent flow that runs them all as subflows.

Without PREFECT_API_URL, Prefect runs these against an ephemeral local server; with it, against
that server. The work itself, and the order of the stages, are in prefcurate/pipeline.py.
"""

from __future__ import annotations

from typing import Callable

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from prefcurate import pipeline
from prefcurate.core.config import PrefcurateConfig
from prefcurate.flows.fanout import cluster_calls
from prefcurate.flows.stage_flow import stage_flow
from prefcurate.flows.training import check_work_pool, run_on_work_pool


@stage_flow("ingest")
def ingest_flow(config: PrefcurateConfig) -> dict:
    return pipeline.ingest_stage(config)


@stage_flow("generate")
def generate_flow(config: PrefcurateConfig, wait: bool = False) -> dict:
    """wait: poll provider batches (a batch backend) until every call is answered. With fanout.runner
    dask, the calls are made by the cluster's workers (flows/fanout.py)."""
    with cluster_calls(config.fanout) as run_chunks:
        return pipeline.generate_stage(config, wait=wait, run_chunks=run_chunks)


@stage_flow("pairs")
def pairs_flow(config: PrefcurateConfig) -> dict:
    return pipeline.pairs_stage(config)


@task(name="judge-calls", task_run_name="judge-calls-{label}", cache_policy=NONE)
def judge_calls_task(label: str, work: Callable[[], None]) -> None:
    """One batch of judge calls (thousands, fanned out with asyncio inside): a task per batch,
    not per call, keeps Prefect's overhead off the hot path."""
    work()


@stage_flow("judge")
def judge_flow(config: PrefcurateConfig, wait: bool = False) -> dict:
    """wait: poll provider batches (batch judges) until every call is answered. With fanout.runner
    dask, the online judges' calls are made by the cluster's workers (flows/fanout.py)."""
    with cluster_calls(config.fanout) as run_chunks:
        # on a cluster the calls are Prefect tasks of their own, on the workers: no task per batch here
        run_batch = pipeline.run_directly if run_chunks else (lambda label, work: judge_calls_task(label, work))
        summary = pipeline.judge_stage(config, run_batch=run_batch, wait=wait, run_chunks=run_chunks)
    create_markdown_artifact(key="judge-quality", description="Judge quality report",
                             markdown=summary.pop("judge_report_markdown"))
    return summary


@stage_flow("import-pairs")
def import_pairs_flow(config: PrefcurateConfig, source: str, fmt: str = "auto", split: str = "train",
                      into_pool: bool = False) -> dict:
    return pipeline.import_stage(config, source, fmt, split, into_pool)


@stage_flow("import-ratings")
def import_ratings_flow(config: PrefcurateConfig, source: str, layout: str = "auto", scale: str = "1-5",
                        split: str = "train", into_pool: bool = False) -> dict:
    return pipeline.import_ratings_stage(config, source, layout, scale, split, into_pool)


@stage_flow("suspect-labels")
def suspect_flow(config: PrefcurateConfig) -> dict:
    return pipeline.suspect_stage(config)


@stage_flow("import-gold")
def gold_flow(config: PrefcurateConfig) -> dict:
    return pipeline.gold_stage(config)


@stage_flow("curate")
def curate_flow(config: PrefcurateConfig) -> dict:
    summary = pipeline.curate_stage(config)
    rows = "\n".join(f"| {step} | {n_in} | {n_out} |" for step, (n_in, n_out) in summary["funnel"].items())
    create_markdown_artifact(key="curation-funnel", description="Curation funnel",
                             markdown=f"| step | in | out |\n|---|---|---|\n{rows}\n")
    return summary


@stage_flow("train")
def train_flow(config: PrefcurateConfig, curation_run_id: str | None = None) -> dict:
    """In this process, or with train.work_pool set, as train-job on that pool (flows/training.py)."""
    check_work_pool(config)
    return pipeline.train_stage(config, curation_run_id, place=run_on_work_pool)


@stage_flow("evaluate")
def evaluate_flow(config: PrefcurateConfig, rm_run_id: str | None = None) -> dict:
    return pipeline.evaluate_stage(config, rm_run_id)


@stage_flow("evaluate-benchmark")
def benchmark_flow(config: PrefcurateConfig, benchmark: str, rm_run_id: str | None = None, checkpoint: str | None = None,
                   sections: str | None = None) -> dict:
    return pipeline.benchmark_stage(config, benchmark, rm_run_id, checkpoint, sections)


@stage_flow("score")
def score_flow(config: PrefcurateConfig, rm_run_id: str | None = None) -> dict:
    return pipeline.score_stage(config, rm_run_id)


@stage_flow("push-for-annotation")
def push_for_annotation_flow(config: PrefcurateConfig, round_index: int = 0) -> dict:
    """Send pairs chosen by argilla.push.policy to annotators in Argilla."""
    return pipeline.annotate_push_stage(config, round_index)


@stage_flow("collect-annotations", retries=1, retry_delay_seconds=30)
def collect_annotations_flow(config: PrefcurateConfig) -> dict:
    """Pull annotators' answers into the store. Idempotent, so safe on a schedule; a server that
    is down fails the run after the client timeout (and one retry), it never hangs."""
    summary = pipeline.annotate_pull_stage(config)
    agreement = summary.get("agreement") or {}
    rows = "\n".join(f"| {key} | {value} |" for key, value in agreement.items())
    create_markdown_artifact(key="annotation-agreement", description="Human agreement",
                             markdown=f"| metric | value |\n|---|---|\n{rows}\n")
    return summary


@stage_flow("prefcurate-pipeline")
def pipeline_flow(config: PrefcurateConfig) -> dict:
    """prompts -> candidates -> pairs -> judge labels -> curated Parquet -> reward model -> report."""
    check_work_pool(config)  # before hours of generating and judging, not after
    return pipeline.run_pipeline(config, pipeline.Stages(
        ingest=ingest_flow, generate=generate_flow, pairs=pairs_flow, gold=gold_flow, judge=judge_flow,
        suspect=suspect_flow, curate=curate_flow, train=train_flow, evaluate=evaluate_flow))
