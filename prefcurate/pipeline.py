"""The pipeline: one function per stage (open the store, run the domain code, record counts,
return a summary) and run_pipeline, which runs them in order.

No Prefect here: flows/stages.py wraps each stage in a flow and hands those flows to run_pipeline.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import yaml

from prefcurate.core.config import BATCH_KINDS, SCORE_STRATEGIES, PrefcurateConfig
from prefcurate.core.local_models import pick_device, resolve_model
from prefcurate.core.stage_report import StageFailed, StageReport
from prefcurate.core.store import SnapshotReader, Store, StoreReader
from prefcurate.rm.runs import RewardModelRun, find_rm_run
from prefcurate.curation.backends.remote import RunChunks, remote_or_local
from prefcurate.curation.upstream import identical_samples_note, why_empty
from prefcurate.curation.export.card import write_dataset_card
from prefcurate.curation.export.parquet import curation_run_rows, export_curation_run
from prefcurate.curation.funnel.curate import (CurationResult, curate, curation_selection, latest_curation_run,
                                               prepare_curation, record_curation_run, store_curation)
from prefcurate.curation.generation.generate import generate_candidates
from prefcurate.curation.generation.pairing import build_pairs
from prefcurate.curation.intake.preference_pairs import import_preference_pairs
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.intake.rated_completions import Scale, import_rated_completions
from prefcurate.curation.intake.shipped import hh_harmless_pairs_path, read_text_lines
from prefcurate.curation.judging.constitution import load_constitution
from prefcurate.curation.judging.estimate import estimate_judging
from prefcurate.curation.judging.judge import judge_pairs, run_directly
from prefcurate.curation.judging.panel import open_panel
from prefcurate.curation.judging.quality_report import write_judge_report
from prefcurate.curation.labels import labelled_pairs

if TYPE_CHECKING:
    from prefcurate.rm.handoff import TrainingHandoff

log = logging.getLogger("prefcurate")


def open_store(config: PrefcurateConfig) -> Store:
    return Store(config.store.path, memory_limit=config.store.memory_limit,
                 lock_timeout_s=config.store.lock_timeout_s, snapshot_every_s=config.store.snapshot_every_s)


def finish_stage(store: Store, report: StageReport) -> dict:
    store.record_stage_run(report)
    log.info(report.summary())
    return {"stage": report.stage, "count_in": report.count_in, "count_out": report.count_out,
            **json.loads(json.dumps(report.details, default=str))}


def ingest_stage(config: PrefcurateConfig) -> dict:
    with open_store(config) as store:
        return finish_stage(store, ingest_prompts(store, config.ingest))


def generate_stage(config: PrefcurateConfig, wait: bool = False, run_chunks: RunChunks | None = None) -> dict:
    """Candidates for every prompt. With a batch backend, calls that still wait in provider batches
    are collected by a later run, or with `wait`, by polling (until_batches_done). run_chunks: the
    calls are made on a cluster's workers (flows/fanout.py), this process stores the answers."""
    open_backend = remote_or_local(run_chunks, config.fanout.chunk_calls)

    def once() -> dict:
        with open_store(config) as store, open_backend(config.generate.backend, config.resolved_models_dir) as backend:
            return finish_stage(store, generate_candidates(store, backend, config.generate))

    return until_batches_done(once, wait, [config.generate.backend])


def pairs_stage(config: PrefcurateConfig) -> dict:
    with open_store(config) as store:
        summary = finish_stage(store, build_pairs(store, config.pairs))
        candidates = store.count("candidates")
        if not store.count("pairs") and candidates:
            if config.pairs.strategy in SCORE_STRATEGIES:
                raise StageFailed(
                    f"pairs: pairs.strategy {config.pairs.strategy} builds pairs from candidate scores: "
                    f"{summary['prompts_without_scores']} prompts have candidates without scores (run `prefcurate "
                    "judge` with a rating or ranking judge, judge.panel[].mode, or `prefcurate import-ratings` first), "
                    f"and on the others no two scores differ by at least pairs.min_margin ({config.pairs.min_margin}; "
                    "equal scores make no pair unless pairs.keep_ties)")
            raise StageFailed(f"pairs: no pair could be formed from {candidates} candidates: "
                              f"{identical_samples_note(store)}")
        return summary


def judge_stage(config: PrefcurateConfig, run_batch: Callable = run_directly, wait: bool = False,
                run_chunks: RunChunks | None = None) -> dict:
    """Judge every pair with every panel member; run_batch(label, work) runs one batch of calls.
    Batch judges' calls that still wait in provider batches are collected by a later run, or with
    `wait`, by polling (until_batches_done). run_chunks: the online judges' calls are made on a
    cluster's workers (flows/fanout.py), this process stores and journals the answers."""
    constitution = load_constitution(config.judge.constitution)
    open_backend = remote_or_local(run_chunks, config.fanout.chunk_calls)

    def once() -> dict:
        with open_store(config) as store, open_panel(store, config.judge, config.resolved_models_dir,
                                                     open_backend) as panel:
            return finish_stage(store, judge_pairs(store, panel, constitution, config.judge, run_batch))

    summary = until_batches_done(once, wait, [judge.backend for judge in config.judge.panel])
    summary["judge_report"], summary["judge_report_markdown"] = judge_report(config)
    return summary


def until_batches_done(run_once: Callable[[], dict], wait: bool, backends: list) -> dict:
    """Run a stage once; with `wait`, again every batch_poll_s (the smallest of its batch backends')
    while calls wait in provider batches, with the store closed in between so other writers go on."""
    poll_s = min((backend.batch_poll_s for backend in backends if backend.kind in BATCH_KINDS), default=0.0)
    while True:
        summary = run_once()
        batches = summary.get("batches", {})
        pending = batches.get("pending_calls", 0)
        if not pending:
            return summary
        if not wait:
            log.info("%s: %d calls wait in %d provider batches; run `prefcurate %s` again (or with --wait) to collect "
                     "them", summary["stage"], pending, batches["open_batches"], summary["stage"])
            return summary
        log.info("%s: %d calls wait in %d provider batches; polling again in %.0f s", summary["stage"], pending,
                 batches["open_batches"], poll_s)
        time.sleep(poll_s)


def judge_report(config: PrefcurateConfig, store: Store | None = None) -> tuple[str, str]:
    """Write the judge quality report under <workdir>/reports; return its path and markdown."""
    if store is None:
        with open_store(config) as opened:
            return judge_report(config, opened)
    path, markdown = write_judge_report(store, config.workdir.resolve() / "reports")
    return str(path), markdown


def judge_gold_agreement(config: PrefcurateConfig) -> dict:
    """Per judge: how often its valid votes on gold pairs (imported labels) name the gold winner,
    with a 95% bootstrap interval over the votes."""
    from prefcurate.rm.stats import bootstrap_mean

    with open_store(config) as store:
        votes = store.con.execute("""
            SELECT v.judge, (v.winner = l.reference_label)::DOUBLE FROM judgment_votes AS v
            JOIN pair_labels AS l USING (pair_id) WHERE l.reference_label IN ('a', 'b') ORDER BY v.judgment_id
        """).fetchall()
    by_judge: dict[str, list[float]] = {}
    for judge, agreed in votes:
        by_judge.setdefault(judge, []).append(agreed)
    return {judge: bootstrap_mean(values).as_dict() for judge, values in by_judge.items()}


def import_stage(config: PrefcurateConfig, source: str, fmt: str = "auto", split: str = "train",
                 into_pool: bool = False) -> dict:
    """Import a preference dataset (plain / HH-RLHF / ShareGPT or chat messages) as labelled pairs;
    into_pool: its prompts are also ones generation answers."""
    with open_store(config) as store:
        return finish_stage(store, import_preference_pairs(store, source, fmt, split, into_pool,
                                                           max_reject_share=config.ingest.max_reject_share))


def import_ratings_stage(config: PrefcurateConfig, source: str, layout: str = "auto", scale: str = "1-5",
                         split: str = "train", into_pool: bool = False) -> dict:
    """Import completions with ratings (UltraFeedback, distilabel, flat) as candidates and scores;
    `prefcurate pairs` with a score strategy (pairs.strategy best_vs_worst, ...) pairs them after."""
    rating_scale = Scale.parse(scale)  # a bad scale fails before the store is opened
    with open_store(config) as store:
        return finish_stage(store, import_rated_completions(store, source, layout, rating_scale, split, into_pool,
                                                            max_reject_share=config.ingest.max_reject_share))


def gold_source(config: PrefcurateConfig) -> Path:
    source = config.gold.source
    if source == "shipped:hh-rlhf-harmless":
        return hh_harmless_pairs_path()
    if source.startswith("shipped:"):
        raise ValueError(f"gold.source: unknown shipped data {source!r}; shipped: hh-rlhf-harmless")
    return Path(source)


def gold_stage(config: PrefcurateConfig) -> dict:
    """Import gold.source's human-labelled pairs (a seeded sample of gold.sample rows of a JSONL file,
    written under <workdir>/gold so the import names what it read) next to the generated pairs."""
    source, gold = gold_source(config), config.gold
    if gold.sample and source.name.lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        lines = [line for line in read_text_lines(source) if line.strip()]
        chosen = sorted(random.Random(gold.seed).sample(range(len(lines)), min(gold.sample, len(lines))))
        sampled = config.workdir.resolve() / "gold" / f"{source.name.split('.')[0]}-{len(chosen)}-seed{gold.seed}.jsonl"
        if not sampled.exists():
            sampled.parent.mkdir(parents=True, exist_ok=True)
            # surrogateescape: a line that is not UTF-8 goes through as it is, for the import to reject
            sampled.write_text("".join(lines[i] + "\n" for i in chosen), encoding="utf-8", errors="surrogateescape")
        source = sampled
    return import_stage(config, str(source), into_pool=gold.generate)


def judge_estimate(config: PrefcurateConfig) -> dict:
    """What `judge` would ask and spend now; sends nothing."""
    constitution = load_constitution(config.judge.constitution)
    with open_store(config) as store:
        return estimate_judging(store, constitution, config.judge)


def suspect_stage(config: PrefcurateConfig) -> dict:
    """Check every decisive label (imported, judges', human) against reward models trained on the
    other folds; flag what they strongly contradict (pair_label_suspicion, the pair_suspicion view).
    The store is closed while the models work: other stages can write meanwhile."""
    from prefcurate.rm.features import FeatureCache, FeatureSpec
    from prefcurate.rm.score import scoring_precision
    from prefcurate.rm.suspicion import LabelledPair, check_labels, record, stored_report

    settings, rule = config.suspicion, config.curate.label_rule
    with open_store(config) as store:
        pairs = [LabelledPair(*row) for row in store.con.execute(f"""
            SELECT l.pair_id, l.label, l.label_source, t.prompt, t.prompt_messages, t.text_a, t.text_b
            FROM ({labelled_pairs(config.curate)}) AS l JOIN pair_texts AS t ON t.pair_id = l.pair_id
            WHERE l.label IN ('a', 'b') ORDER BY l.pair_id""").fetchall()]
        reused = stored_report(store, pairs, settings, rule)
        if reused:
            return finish_stage(store, reused)
    device = pick_device(settings.features.device if settings.method == "heads" else config.train.device)
    cache = base_model = None
    if settings.method == "heads":
        features = settings.features
        spec = FeatureSpec(features.backbone, features.layer, features.max_length,
                           scoring_precision(features.precision, device))
        cache = FeatureCache(config.resolved_features_dir, spec, resolve_model(features.backbone, config.resolved_models_dir),
                             device, features.batch_size)
    else:
        base_model = resolve_model(config.train.base_model, config.resolved_models_dir)
    suspicion, report = check_labels(pairs, settings, rule, cache, config.train, base_model, device)
    with open_store(config) as store:
        record(store, suspicion, pairs, settings, rule)
        return finish_stage(store, report)


def curate_stage(config: PrefcurateConfig) -> dict:
    """Curate without holding the store for the run, in short holds:
    1. prepare: the label model, and the text keys of responses added since the last run (computed
       on the read snapshot, committed in chunks); closing the store publishes a new snapshot;
    2. the funnel runs on that snapshot, which blocks no writer;
    3. the run's rows are committed in chunks, the last commit publishing the snapshot;
    4. the export and the card read that snapshot; the run is recorded last.
    The run is as of the snapshot it read: labels committed meanwhile by a flow still running count
    at the next curate. A store without a snapshot (store.snapshot_every_s: null) is held throughout."""
    if config.store.snapshot_every_s is None:
        with open_store(config) as store:
            result, report = curate(store, config.curate)
            output_dir, card = _export_curation(config, store, result)
            return _record_curation(config, store, result, report, output_dir, card)
    started = time.perf_counter()
    with open_store(config) as store, SnapshotReader(config.store.path, config.store.memory_limit) as snapshot:
        prepared = prepare_curation(store, config.curate, snapshot)
    prepared_s = round(time.perf_counter() - started, 3)  # closing the store published what it wrote
    with SnapshotReader(config.store.path, config.store.memory_limit) as snapshot:
        with curation_selection(snapshot, config.curate, prepared) as (result, report):
            phases = result.step_details["phase_seconds"]  # input and selection; the steps are step_seconds
            phases["prepare"] = prepared_s
            started = time.perf_counter()
            if result.is_new:
                with open_store(config) as store:
                    store_curation(store, snapshot, result)
            phases["store"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    with SnapshotReader(config.store.path, config.store.memory_limit) as snapshot:
        output_dir, card = _export_curation(config, snapshot, result)
    phases["export"] = round(time.perf_counter() - started, 3)
    with open_store(config) as store:
        return _record_curation(config, store, result, report, output_dir, card)


def _export_curation(config: PrefcurateConfig, store: StoreReader, result: CurationResult) -> tuple[Path, Path]:
    counts = dict(store.con.execute("SELECT table_name, n_rows FROM store_counts").fetchall())
    with curation_run_rows(store, result.curation_run_id) as rows:
        output_dir = export_curation_run(store, result.curation_run_id, config.workdir.resolve() / "curated", {
            "config": config.model_dump(mode="json"),
            "funnel": [{"step": n, "in": i, "out": o} for n, i, o in result.funnel],
            "splits": result.split_counts,
            "chosen_longer_share": result.chosen_longer_share,
            "steps": result.step_details,
            "store_counts": counts,
        }, rows)
        card = write_dataset_card(store, result.curation_run_id, output_dir, result.funnel, result.split_counts,
                                  result.chosen_longer_share,
                                  yaml.safe_dump({"curate": config.curate.model_dump(mode="json")}, sort_keys=False),
                                  rows)
    return output_dir, card


def _record_curation(config: PrefcurateConfig, store: Store, result: CurationResult, report: StageReport,
                     output_dir: Path, card: Path) -> dict:
    with store.transaction():
        record_curation_run(store, result, config.curate, str(output_dir), str(output_dir / "manifest.json"))
        report.details.update(output_dir=str(output_dir), dataset_card=str(card))
        return finish_stage(store, report)


def train_stage(config: PrefcurateConfig, curation_run_id: str | None = None, base_model: str | None = None,
                place: Callable[[TrainingHandoff, PrefcurateConfig], dict] | None = None) -> dict:
    """Train on a curation run (default: the latest) from train.base_model, or from `base_model` (a
    checkpoint folder: a refresh round's warm start). In this process, or, with train.work_pool set,
    through `place` (flows/training.py: a deployment on that pool), which the store is not held for."""
    from prefcurate.rm.train_job import train_reward_model  # torch-heavy: import when used

    base_model = base_model or resolve_model(config.train.base_model, config.resolved_models_dir)
    if config.train.work_pool:
        return _train_on_work_pool(config, curation_run_id, base_model, place)
    with open_store(config) as store:
        run_id, curated_dir = _trainable_curation_run(store, curation_run_id)
        _result, report = train_reward_model(store, run_id, Path(curated_dir), base_model, config.train,
                                            config.workdir.resolve() / "rm", pick_device(config.train.device))
        return finish_stage(store, report)


def _trainable_curation_run(store: Store, curation_run_id: str | None) -> tuple[str, str]:
    run_id, curated_dir = curation_run(store, curation_run_id)
    if not store.scalar("SELECT count(*) FROM curated_pairs WHERE curation_run_id = ? AND split = 'train' "
                        "AND NOT coalesce(is_tie, false)", [run_id]):
        raise StageFailed(why_empty(store, "train"))
    return run_id, curated_dir


def _train_on_work_pool(config: PrefcurateConfig, curation_run_id: str | None, base_model: str,
                        place: Callable[[TrainingHandoff, PrefcurateConfig], dict] | None) -> dict:
    """Upload, run the job on the pool and wait (the store is free meanwhile), then record its output."""
    from prefcurate.rm.handoff import prepare_handoff
    from prefcurate.rm.train_job import record_placed_training

    if place is None:
        raise StageFailed(f"train.work_pool is {config.train.work_pool!r}: training runs on that pool through "
                          "Prefect; run it with `prefcurate train`, `run` or `refresh` (or unset train.work_pool)")
    with open_store(config) as store:
        run_id, curated_dir = _trainable_curation_run(store, curation_run_id)
    handoff = prepare_handoff(Path(curated_dir), base_model, config.train)
    log.info("train: on work pool %s: %s -> %s", config.train.work_pool, handoff.export, handoff.output)
    placed = place(handoff, config)
    with open_store(config) as store:
        return finish_stage(store, record_placed_training(store, handoff.output, run_id, placed))


def local_checkpoint(config: PrefcurateConfig, checkpoint_dir: str) -> Path:
    """A reward model on this machine: rm_runs holds a path, or the URL a training job elsewhere wrote
    it to (then it is fetched into <workdir>/cache). Scoring and the store-side evaluations (the
    refresh gate's held-out sets, `prefcurate score`) run here, from it."""
    from prefcurate.core.locations import fetch_folder

    return fetch_folder(checkpoint_dir, config.workdir / "cache" / "checkpoints")


def reward_model_run(store: Store, rm_run_id: str | None = None, otherwise: str | None = None) -> RewardModelRun:
    """`rm_run_id`'s reward model run, or the latest; LookupError saying what to do without one."""
    run = find_rm_run(store.con, rm_run_id)
    if run is None:
        raise LookupError(f"{store.path}: no reward model run {rm_run_id or ''}; run `prefcurate train` first"
                          + (f", {otherwise}" if otherwise else ""))
    return run


def evaluate_stage(config: PrefcurateConfig, rm_run_id: str | None = None) -> dict:
    from prefcurate.rm.evaluate import evaluate_reward_model

    with open_store(config) as store:
        run = reward_model_run(store, rm_run_id)
        curated = store.scalar("SELECT output_dir FROM curation_runs WHERE curation_run_id = ?", [run.curation_run_id])
        _metrics, report = evaluate_reward_model(store, run.rm_run_id, local_checkpoint(config, run.checkpoint_dir),
                                                 Path(curated), config.evaluate, pick_device(config.train.device),
                                                 config.train.max_length)
        return finish_stage(store, report)


def score_stage(config: PrefcurateConfig, rm_run_id: str | None = None) -> dict:
    """Score every stored candidate without a reward from this reward model (or ensemble)."""
    from prefcurate.rm.score import RewardScorer, score_candidates

    with open_store(config) as store:
        run = reward_model_run(store, rm_run_id)
        report = StageReport("score", count_in=store.count("candidates"), details={"rm_run_id": run.rm_run_id})
        scorer = RewardScorer(str(local_checkpoint(config, run.checkpoint_dir)), pick_device(config.train.device),
                              config.train.max_length,
                              config.evaluate.precision, config.evaluate.compile)
        outcome = score_candidates(store, scorer, run.rm_run_id, config.evaluate.batch_size)
        report.count_out = outcome["scored"]
        report.details.update(outcome)
        return finish_stage(store, report.finish())


@dataclass(frozen=True)
class Stages:
    """How each stage runs: the functions above, or (flows/stages.py) a Prefect flow around each."""

    ingest: Callable[..., dict] = ingest_stage
    generate: Callable[..., dict] = generate_stage
    pairs: Callable[..., dict] = pairs_stage
    gold: Callable[..., dict] = gold_stage
    judge: Callable[..., dict] = judge_stage
    suspect: Callable[..., dict] = suspect_stage
    curate: Callable[..., dict] = curate_stage
    train: Callable[..., dict] = train_stage
    evaluate: Callable[..., dict] = evaluate_stage


def run_pipeline(config: PrefcurateConfig, stages: Stages = Stages()) -> dict[str, dict]:
    """prompts -> candidates -> pairs (+ human-labelled gold pairs) -> judge labels (+ suspect labels
    checked, when curation acts on them) -> curated Parquet -> reward model -> report."""
    done = {}
    done["ingest"] = stages.ingest(config)
    done["generate"] = stages.generate(config, wait=True)  # pairs need every candidate
    if config.pairs.strategy in SCORE_STRATEGIES:
        done["score"] = stages.judge(config, wait=True)  # rating and ranking judges score the candidates
    done["pairs"] = stages.pairs(config)
    if config.gold.source:
        done["gold"] = stages.gold(config)
    done["judge"] = stages.judge(config, wait=True)  # the rest of the pipeline needs every label
    if config.curate.suspect_labels != "keep":
        done["suspect"] = stages.suspect(config)
    done["curate"] = stages.curate(config)
    done["train"] = stages.train(config, done["curate"]["curation_run_id"])
    done["evaluate"] = stages.evaluate(config, done["train"]["rm_run_id"])
    return done


def benchmark_stage(config: PrefcurateConfig, benchmark: str, rm_run_id: str | None = None,
                    checkpoint: str | None = None, sections: str | None = None) -> dict:
    """Score a reward model (ours: the latest or `rm_run_id`; or any sequence-classification
    `checkpoint`, folder or hub name, with its own chat template) on a benchmark file; the report
    goes under <workdir>/reports/benchmarks and into benchmark_evaluations."""
    from prefcurate.core.hashing import content_hash
    from prefcurate.rm.benchmark import benchmark_report, correctness, read_benchmark, read_sections, render_markdown, summarize
    from prefcurate.rm.score import RewardScorer

    rows, section_map = read_benchmark(benchmark), read_sections(sections)
    if checkpoint is None:
        with open_store(config) as store:
            run = reward_model_run(store, rm_run_id, "or name a checkpoint with --checkpoint")
        rm_run_id, model_path, model = run.rm_run_id, str(local_checkpoint(config, run.checkpoint_dir)), run.rm_run_id
    else:
        model_path, model = resolve_model(checkpoint, config.resolved_models_dir), checkpoint
    report = StageReport("benchmark", count_in=len(rows.rows) + len(rows.skipped),
                         details={"benchmark": benchmark, "model": model, "layout": rows.layout})
    scorer = RewardScorer(model_path, pick_device(config.train.device), config.train.max_length,
                          config.evaluate.precision, config.evaluate.compile)
    correct = correctness(rows.rows, lambda prompts, responses: scorer.score(prompts, responses,
                                                                             config.evaluate.batch_size))
    result = benchmark_report(Path(benchmark), model, rows.layout, rows, summarize(rows.rows, correct, section_map))
    folder = config.workdir.resolve() / "reports" / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{Path(benchmark).name.split('.')[0]}-{content_hash(model)[:8]}"
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text(render_markdown(result))
    overall = result["overall"]
    with open_store(config) as store:
        store.con.execute(
            "INSERT OR REPLACE INTO benchmark_evaluations (evaluation_id, model, rm_run_id, benchmark, benchmark_sha256, "
            "layout, n_rows, accuracy, ci_low, ci_high, section_weighted, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [content_hash("benchmark", model, result["benchmark_sha256"], section_map), model, rm_run_id, benchmark,
             result["benchmark_sha256"], rows.layout, len(rows.rows), overall["accuracy"], overall["ci_low"],
             overall["ci_high"], result.get("section_weighted"), json.dumps(result)])
        report.count_out = len(rows.rows)
        report.details.update(accuracy=round(overall["accuracy"], 4),
                              accuracy_ci=[round(overall["ci_low"], 4), round(overall["ci_high"], 4)],
                              section_weighted=result.get("section_weighted"), skipped_rows=len(rows.skipped),
                              subsets={k: round(v["accuracy"], 4) for k, v in result["subsets"].items()},
                              report=str(folder / f"{name}.md"))
        return finish_stage(store, report.finish())


def curation_run(store: Store, curation_run_id: str | None) -> tuple[str, str]:
    if curation_run_id is None:
        return latest_curation_run(store)
    row = store.one("SELECT curation_run_id, output_dir FROM curation_runs WHERE curation_run_id = ?",
                            [curation_run_id])
    if row is None:
        raise LookupError(f"{store.path}: no curation run {curation_run_id}")
    return row


# -- human annotation (Argilla) ---------------------------------------------------------------------

def annotate_push_stage(config: PrefcurateConfig, round_index: int = 0) -> dict:
    """Send pairs chosen by argilla.push.policy (or, under argilla.label_mode rating / ranking,
    prompts with their candidates) to the Argilla dataset (creating team and dataset)."""
    from prefcurate.core.config import judge_name
    from prefcurate.curation.annotation.dataset import connect, ensure_dataset, ensure_team
    from prefcurate.curation.annotation.push import push_pairs

    client = connect(config.argilla, config.resolved_argilla_home)
    dataset = ensure_dataset(client, config.argilla, ensure_team(client, config.argilla))
    if config.argilla.label_mode != "pairwise":  # prompts whose candidates annotators rate or rank
        from prefcurate.curation.annotation.score_push import push_prompts

        with open_store(config) as store:
            return finish_stage(store, push_prompts(store, dataset, config.argilla, round_index))
    judges = "prefcurate-judges:" + ",".join(judge_name(judge) for judge in config.judge.panel)
    with open_store(config) as store:
        return finish_stage(store, push_pairs(store, dataset, config.argilla, config.curate, judges, round_index))


def annotate_pull_stage(config: PrefcurateConfig) -> dict:
    """Collect annotators' answers into the store (idempotent; safe on a schedule)."""
    from prefcurate.curation.annotation.dataset import connect, find_dataset
    from prefcurate.curation.annotation.pull import ArgillaReader, pull_annotations
    from prefcurate.curation.annotation.server import owner_api_key

    dataset = find_dataset(connect(config.argilla, config.resolved_argilla_home), config.argilla)
    api_key = owner_api_key(config.argilla, config.resolved_argilla_home)
    with open_store(config) as store, ArgillaReader(config.argilla.resolved_url, api_key, config.argilla.timeout_s) as reader:
        if config.argilla.label_mode != "pairwise":  # into candidate_scores; alpha in the details' agreement
            from prefcurate.curation.annotation.score_pull import pull_scores

            return finish_stage(store, pull_scores(store, reader, dataset, config.argilla))
        summary = finish_stage(store, pull_annotations(store, reader, str(dataset.id), config.argilla.workspace,
                                                  config.argilla.dataset))
        agreement = store.con.sql("SELECT * FROM annotation_agreement").to_arrow_table().to_pylist()
        summary["agreement"] = agreement[0] if agreement else {}
        return summary
