"""Curate labelled pairs in DuckDB: filters, deduplication, decontamination, a per-prompt cap,
length balance, and splits by prompt cluster.

Every step rewrites one working table (`_curation_step`) with one SQL statement (near-duplicate
clustering hands its signatures to numpy and rensa, never a Python loop per row), so the funnel,
with its counts in and out and a few sample rows each step dropped, is exact and queryable. A run
is keyed by the hash of its config and of what it selected: curating unchanged labels again is
the same run, not a new one.

The working table starts as every pair with its label under curate.label_rule (the labelled_pairs
view), its prompt's text and what the filters read (pair_flags); funnel_steps lists the steps in order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from prefcurate.core.config import CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.label_model import refresh_label_model
from prefcurate.curation.funnel.balance import cap, chosen_longer_share, rebalance_length
from prefcurate.curation.funnel.decontaminate import decontaminate
from prefcurate.curation.funnel.dedup import exact_dedup, near_dedup
from prefcurate.curation.funnel.filters import filter_steps, refresh_steps
from prefcurate.curation.funnel.step import Step, StepOutcome
from prefcurate.curation.funnel.suspects import STEP_NAMES, act_on_suspects
from prefcurate.curation.labels import labelled_pairs

STAGE = "curate"
_TWO_TO_64 = 18446744073709551616.0


def funnel_input_sql(config: CurateConfig) -> str:
    """Every pair with its label (label, label_source, confidence), its prompt's text and flags."""
    return f"""
        SELECT l.*, t.prompt AS prompt_text, f.* EXCLUDE (pair_id)
        FROM ({labelled_pairs(config)}) AS l
        JOIN pair_texts AS t ON t.pair_id = l.pair_id
        JOIN pair_flags AS f ON f.pair_id = l.pair_id"""


def funnel_steps(config: CurateConfig, has_rounds: bool = False) -> list[Step]:
    steps = filter_steps(config) + (refresh_steps(config) if has_rounds else [])
    if config.suspect_labels != "keep":
        steps.append(Step(STEP_NAMES[config.suspect_labels], rewrite=act_on_suspects))
    if config.decontamination.benchmarks:
        steps.append(Step("decontaminated", rewrite=decontaminate))
    if config.dedup.exact:
        steps.append(Step("exact_dedup", rewrite=exact_dedup))
    if config.dedup.near.enabled:
        steps.append(Step(f"near_dedup>={config.dedup.near.threshold:g}", rewrite=near_dedup))
    steps.append(Step(f"cap_{config.max_pairs_per_prompt}_per_prompt_by_{config.pair_selection}", rewrite=cap))
    if config.length.target_chosen_longer is not None:
        steps.append(Step(f"length_balance_{config.length.target_chosen_longer:g}", rewrite=rebalance_length))
    return steps


def split_case(config: CurateConfig, key: str = "cluster_id") -> str:
    """SQL assigning a split per prompt cluster from a seeded hash: stable as the data grows."""
    test, validation = config.splits.test, config.splits.validation
    u = f"md5_number_upper('{config.seed}:' || {key}) / {_TWO_TO_64}"
    return (f"CASE WHEN {u} < {test!r} THEN 'test' "
            f"WHEN {u} < {test + validation!r} THEN 'validation' ELSE 'train' END")


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class CurationResult:
    curation_run_id: str
    funnel: list[tuple[str, int, int]]
    split_counts: dict[str, int]
    is_new: bool
    chosen_longer_share: float | None = None
    step_details: dict = field(default_factory=dict)


def _run_step(store: Store, config: CurateConfig, order: int, step: Step) -> StepOutcome:
    con = store.con
    con.execute("ALTER TABLE _curation_step RENAME TO _curation_prev")
    if step.predicate is not None:
        con.execute(f"CREATE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev WHERE {step.predicate}")
        outcome = StepOutcome()
    else:
        outcome = step.rewrite(store, config)
    if config.samples_per_step:
        con.execute(f"""
            INSERT INTO _curation_samples
            SELECT {order}, pair_id FROM _curation_prev ANTI JOIN _curation_step USING (pair_id)
            ORDER BY md5('{config.seed}:' || pair_id) LIMIT {config.samples_per_step}""")
    con.execute("DROP TABLE _curation_prev")
    return outcome


_WORK_TABLES = ("_curation_step", "_curation_prev", "_curation_selected", "_curation_samples", "_curation_prompt_drops",
                "_curation_clusters", "_curation_reps", "_curation_exact", "_curation_near", "_curation_prompt_ngrams",
                "_curation_contaminated", "_curation_suspects")


def _drop_work_tables(store: Store) -> None:
    for table in _WORK_TABLES:
        store.con.execute(f"DROP TABLE IF EXISTS {table}")


def curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    label_model = refresh_label_model(store) if config.label_rule == "dawid_skene" else None
    _drop_work_tables(store)  # a run that failed half-way may have left some
    try:
        result, report = _curate(store, config)
    finally:
        _drop_work_tables(store)
    if label_model is not None:  # the raters' estimated reliabilities, in the run's report
        report.details["label_model"] = label_model
    return result, report


def _curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    con = store.con
    report = StageReport(STAGE)
    funnel: list[tuple[str, int, int]] = []
    details: dict = {}

    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS {funnel_input_sql(config)}")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_samples (step_order INTEGER, pair_id VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_prompt_drops "
                "(step VARCHAR, prompt_id VARCHAR, related VARCHAR, score DOUBLE)")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_suspects (pair_id VARCHAR, suspicion_run_id VARCHAR, "
                "action VARCHAR, label VARCHAR, p_label DOUBLE)")
    # Each prompt starts as its own cluster; dedup steps merge dropped members into their representative's.
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_clusters AS SELECT DISTINCT prompt_id, prompt_id AS cluster_id "
                "FROM _curation_step")
    count = store.scalar("SELECT count(*) FROM _curation_step")
    report.count_in = count
    details["refusal_flagged_pairs"] = store.scalar("SELECT count(*) FROM _curation_step WHERE has_refusal")
    details["chosen_longer_share_labelled"] = chosen_longer_share(store, "_curation_step")
    seconds = details["step_seconds"] = {}
    has_rounds = store.scalar("SELECT count(*) > 0 FROM round_pairs")
    for order, step in enumerate(funnel_steps(config, has_rounds)):
        started = time.perf_counter()
        outcome = _run_step(store, config, order, step)
        seconds[step.name] = round(time.perf_counter() - started, 3)
        survivors = store.scalar("SELECT count(*) FROM _curation_step")
        funnel.append((step.name, count, survivors))
        if outcome.details:
            details[step.name] = outcome.details
        count = survivors

    share = chosen_longer_share(store, "_curation_step")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_selected AS
        SELECT s.pair_id, s.prompt_id, c.cluster_id, {split_case(config, 'c.cluster_id')} AS split,
               CASE s.label WHEN 'b' THEN s.candidate_b ELSE s.candidate_a END AS chosen_candidate,
               CASE s.label WHEN 'b' THEN s.candidate_a ELSE s.candidate_b END AS rejected_candidate,
               s.label_source, s.confidence, s.label = 'tie' AS is_tie, s.agreement, s.n_votes
        FROM _curation_step AS s JOIN _curation_clusters AS c USING (prompt_id)""")
    selection_hash = store.scalar(
        "SELECT coalesce(md5(string_agg(concat_ws('|', pair_id, split, chosen_candidate, label_source, confidence, is_tie), ',' "
        "ORDER BY pair_id)), '') FROM _curation_selected")
    run_id = content_hash("curation", config.model_dump(mode="json"), selection_hash)
    split_counts = dict(con.execute("SELECT split, count(*) FROM _curation_selected GROUP BY split").fetchall())
    split_counts = {name: split_counts.get(name, 0) for name in ("train", "validation", "test")}

    is_new = store.scalar("SELECT count(*) FROM curation_funnel WHERE curation_run_id = ?", [run_id]) == 0
    if is_new:
        with store.transaction():
            con.execute("INSERT INTO curated_pairs (curation_run_id, pair_id, split, chosen_candidate, rejected_candidate, "
                        "label_source, confidence, is_tie, agreement, n_votes) SELECT ?, pair_id, split, chosen_candidate, "
                        "rejected_candidate, label_source, confidence, is_tie, agreement, n_votes FROM _curation_selected",
                        [run_id])
            con.executemany("INSERT INTO curation_funnel VALUES (?, ?, ?, ?, ?)",
                            [[run_id, order, name, n_in, n_out] for order, (name, n_in, n_out) in enumerate(funnel)])
            con.execute("INSERT INTO curation_funnel_samples SELECT DISTINCT ?, step_order, pair_id FROM _curation_samples",
                        [run_id])
            con.execute("INSERT INTO curation_prompt_drops SELECT ?, step, prompt_id, related, score "
                        "FROM _curation_prompt_drops", [run_id])
            con.execute("INSERT INTO curation_suspects SELECT ?, pair_id, suspicion_run_id, action, label, p_label "
                        "FROM _curation_suspects", [run_id])
            # every prompt of a curated cluster, dropped duplicates included, with the cluster's split
            con.execute("INSERT INTO curation_prompt_clusters SELECT ?, c.prompt_id, c.cluster_id, s.split "
                        "FROM _curation_clusters AS c "
                        "JOIN (SELECT DISTINCT cluster_id, split FROM _curation_selected) AS s USING (cluster_id)", [run_id])
    judges = con.execute("SELECT judge, consistency_rate FROM judge_position_bias").fetchall()
    report.count_out = sum(split_counts.values())
    details["chosen_longer_share"] = share
    report.details["judge_position_consistency"] = {
        judge: None if rate is None else round(rate, 3) for judge, rate in judges}
    report.details.update(curation_run_id=run_id, new_run=is_new, **{f"split_{k}": v for k, v in split_counts.items()},
                          funnel={name: [n_in, n_out] for name, n_in, n_out in funnel}, steps=details)
    result = CurationResult(run_id, funnel, split_counts, is_new, share, details)
    return result, report.finish()


def record_curation_run(store: Store, result: CurationResult, config: CurateConfig,
                        output_dir: str, manifest_path: str) -> None:
    counts = {"funnel": [{"step": n, "in": i, "out": o} for n, i, o in result.funnel], "splits": result.split_counts,
              "chosen_longer_share": result.chosen_longer_share, "steps": result.step_details}
    store.con.execute(
        "INSERT OR REPLACE INTO curation_runs (curation_run_id, config, output_dir, manifest_path, counts) "
        "VALUES (?, ?, ?, ?, ?)",
        [result.curation_run_id, json.dumps(config.model_dump(mode="json")), output_dir, manifest_path,
         json.dumps(counts, default=str)])


def latest_curation_run(store: Store) -> tuple[str, str]:
    """(curation_run_id, output_dir) of the most recent curation run."""
    row = store.one(
        "SELECT curation_run_id, output_dir FROM curation_runs ORDER BY created_at DESC LIMIT 1")
    if row is None:
        raise LookupError(f"{store.path}: no curation run yet; run `prefcurate curate` first")
    return row
