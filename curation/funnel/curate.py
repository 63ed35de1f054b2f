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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from prefcurate.core.config import CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store, StoreReader
from prefcurate.curation.label_model import refresh_label_model
from prefcurate.curation.funnel.balance import cap, chosen_longer_share, rebalance_length
from prefcurate.curation.funnel.decontaminate import decontaminate
from prefcurate.curation.funnel.dedup import exact_dedup, near_dedup
from prefcurate.curation.funnel.filters import filter_steps, refresh_steps
from prefcurate.curation.funnel.step import Step, StepOutcome
from prefcurate.curation.funnel.suspects import STEP_NAMES, act_on_suspects
from prefcurate.curation.funnel.text_keys import key_new_responses
from prefcurate.curation.labels import labelled_pairs

STAGE = "curate"
_TWO_TO_64 = 18446744073709551616.0


def funnel_input_sql(config: CurateConfig) -> str:
    """Every pair with its label (label, label_source, confidence) and flags. Its prompt's text is
    in `_curation_prompt_texts`, once per prompt (step.surviving_prompt_texts)."""
    return f"""
        SELECT l.*, f.* EXCLUDE (pair_id)
        FROM ({labelled_pairs(config)}) AS l
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


def _run_step(store: StoreReader, config: CurateConfig, order: int, step: Step) -> StepOutcome:
    """A rewriting step: `_curation_prev` in, `_curation_step` out, and samples of what it dropped."""
    con = store.con
    con.execute("ALTER TABLE _curation_step RENAME TO _curation_prev")
    outcome = step.rewrite(store, config)
    if config.samples_per_step:
        con.execute(f"""
            INSERT INTO _curation_samples
            SELECT {order}, pair_id FROM _curation_prev ANTI JOIN _curation_step USING (pair_id)
            ORDER BY md5('{config.seed}:' || pair_id) LIMIT {config.samples_per_step}""")
    con.execute("DROP TABLE _curation_prev")
    return outcome


def _predicate_run(steps: list[Step], start: int) -> list[Step]:
    """The predicate steps from `start` up to the next rewriting step."""
    run = []
    for step in steps[start:]:
        if step.predicate is None:
            break
        run.append(step)
    return run


def _run_filters(store: StoreReader, config: CurateConfig, first_order: int, filters: list[Step]) -> list[int]:
    """Consecutive predicate steps in one pass instead of a rewrite of the working table each: their
    survivors counted in one scan, each step's dropped samples picked by a scan that reads only the
    columns involved, and the table rewritten once (not at all when nothing is dropped), which at
    millions of pairs was most of their time. Returns the survivors after each step."""
    con = store.con
    passes, upto = [], "true"
    for step in filters:
        upto = f"{upto} AND ({step.predicate}) IS TRUE"  # WHERE keeps TRUE only: a NULL drops the pair
        passes.append(upto)
    survivors = list(store.one("SELECT " + ", ".join(f"count(*) FILTER (WHERE {rule})" for rule in passes)
                               + " FROM _curation_step"))
    if config.samples_per_step:
        before = "true"
        for offset, rule in enumerate(passes):
            con.execute(f"""
                INSERT INTO _curation_samples
                SELECT {first_order + offset}, pair_id FROM _curation_step WHERE {before} AND NOT ({rule})
                ORDER BY md5('{config.seed}:' || pair_id) LIMIT {config.samples_per_step}""")
            before = rule
    if survivors[-1] < store.scalar("SELECT count(*) FROM _curation_step"):
        con.execute("ALTER TABLE _curation_step RENAME TO _curation_prev")
        con.execute(f"CREATE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev WHERE {passes[-1]}")
        con.execute("DROP TABLE _curation_prev")
    return survivors


_WORK_TABLES = ("_curation_step", "_curation_prev", "_curation_prompt_texts", "_curation_selected", "_curation_samples",
                "_curation_prompt_drops", "_curation_clusters", "_curation_reps", "_curation_exact", "_curation_near", "_curation_near_texts", "_curation_prompt_ngrams",
                "_curation_contaminated", "_curation_suspects")


def _drop_work_tables(store: Store) -> None:
    for table in _WORK_TABLES:
        store.con.execute(f"DROP TABLE IF EXISTS {table}")


def curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    """Select and store a curation run on one connection, holding the store throughout (tests, and
    a store without a read snapshot). The curate stage otherwise selects on the read snapshot and
    takes the store only to commit (prefcurate/pipeline.py)."""
    prepared = prepare_curation(store, config)
    with curation_selection(store, config, prepared) as (result, report):
        if result.is_new:
            store_curation(store, store, result)
    return result, report


def prepare_curation(store: Store, config: CurateConfig, reader: StoreReader | None = None) -> dict:
    """What must be written before selecting: the label model's estimates (curate.label_rule:
    dawid_skene), which the labels read, and the text keys of responses added since the last run
    (read from `reader`, the read snapshot, when given). Returns what it did, for the report."""
    prepared = {"responses_keyed": key_new_responses(store, reader or store, COMMIT_ROWS)}
    if config.label_rule == "dawid_skene":
        prepared["label_model"] = refresh_label_model(store)  # the raters' estimated reliabilities
    return prepared


@contextmanager
def curation_selection(work: StoreReader, config: CurateConfig, prepared: dict | None = None,
                       ) -> Iterator[tuple[CurationResult, StageReport]]:
    """Run the funnel on `work` (the store, or its read snapshot: the funnel writes temp tables only)
    and yield the run; its working tables, which store_curation reads, are dropped after."""
    _drop_work_tables(work)  # a run that failed half-way may have left some
    try:
        result, report = _select(work, config)
        report.details.update(prepared or {})
        yield result, report
    finally:
        _drop_work_tables(work)


def _select(store: StoreReader, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    con = store.con
    report = StageReport(STAGE)
    funnel: list[tuple[str, int, int]] = []
    details: dict = {}

    phase_started = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS {funnel_input_sql(config)}")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_prompt_texts AS SELECT prompt_id, text AS prompt_text "
                "FROM prompts WHERE prompt_id IN (SELECT prompt_id FROM _curation_step)")
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
    phases = details["phase_seconds"] = {"input": round(time.perf_counter() - phase_started, 3)}
    seconds = details["step_seconds"] = {}
    has_rounds = store.scalar("SELECT count(*) > 0 FROM round_pairs")
    steps = funnel_steps(config, has_rounds)
    order = 0
    while order < len(steps):
        started = time.perf_counter()
        filters = _predicate_run(steps, order)
        if filters:  # consecutive predicate steps: one pass (_run_filters)
            for step, survivors in zip(filters, _run_filters(store, config, order, filters)):
                funnel.append((step.name, count, survivors))
                count = survivors
            seconds["filters: " + ", ".join(step.name for step in filters)] = round(time.perf_counter() - started, 3)
            order += len(filters)
            continue
        step = steps[order]
        outcome = _run_step(store, config, order, step)
        seconds[step.name] = round(time.perf_counter() - started, 3)
        survivors = store.scalar("SELECT count(*) FROM _curation_step")
        funnel.append((step.name, count, survivors))
        if outcome.details:
            details[step.name] = outcome.details
        count = survivors
        order += 1

    phase_started = time.perf_counter()
    share = chosen_longer_share(store, "_curation_step")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_selected AS
        SELECT s.pair_id, s.prompt_id, c.cluster_id, {split_case(config, 'c.cluster_id')} AS split,
               CASE s.label WHEN 'b' THEN s.candidate_b ELSE s.candidate_a END AS chosen_candidate,
               CASE s.label WHEN 'b' THEN s.candidate_a ELSE s.candidate_b END AS rejected_candidate,
               s.label_source, s.confidence, s.label = 'tie' AS is_tie, s.agreement, s.n_votes
        FROM _curation_step AS s JOIN _curation_clusters AS c USING (prompt_id)""")
    # What was selected, as sums of each row's md5 (order-free, and no row is there twice): one string
    # of every row, as this was, could not spill, and at 10M pairs ran out of store.memory_limit.
    row = "concat_ws('|', pair_id, split, chosen_candidate, label_source, confidence, is_tie)"
    selection_hash = "|".join(str(part) for part in store.one(
        f"SELECT count(*), coalesce(sum(md5_number_upper({row})), 0), coalesce(sum(md5_number_lower({row})), 0) "
        "FROM _curation_selected"))
    run_id = content_hash("curation", config.model_dump(mode="json"), selection_hash)
    split_counts = dict(con.execute("SELECT split, count(*) FROM _curation_selected GROUP BY split").fetchall())
    split_counts = {name: split_counts.get(name, 0) for name in ("train", "validation", "test")}

    phases["selection"] = round(time.perf_counter() - phase_started, 3)
    # the funnel rows are stored last: a run with them is complete (store_curation)
    is_new = store.scalar("SELECT count(*) FROM curation_funnel WHERE curation_run_id = ?", [run_id]) == 0
    judges = con.execute("SELECT judge, consistency_rate FROM judge_position_bias").fetchall()
    report.count_out = sum(split_counts.values())
    details["chosen_longer_share"] = share
    report.details["judge_position_consistency"] = {
        judge: None if rate is None else round(rate, 3) for judge, rate in judges}
    report.details.update(curation_run_id=run_id, new_run=is_new, **{f"split_{k}": v for k, v in split_counts.items()},
                          funnel={name: [n_in, n_out] for name, n_in, n_out in funnel}, steps=details)
    result = CurationResult(run_id, funnel, split_counts, is_new, share, details)
    return result, report.finish()


# What a run stores besides its funnel, as read from the working tables: (table, SELECT with ? for the run id).
# In no particular order: these tables have no key index (core/content_keys.py) that an order would help.
_RUN_ROWS = (
    ("curated_pairs", "SELECT ? AS curation_run_id, pair_id, split, chosen_candidate, rejected_candidate, label_source, "
                      "confidence, is_tie, agreement, n_votes FROM _curation_selected"),
    ("curation_funnel_samples", "SELECT DISTINCT ? AS curation_run_id, step_order, pair_id FROM _curation_samples"),
    ("curation_prompt_drops", "SELECT ? AS curation_run_id, step, prompt_id, related, score FROM _curation_prompt_drops"),
    ("curation_suspects", "SELECT ? AS curation_run_id, pair_id, suspicion_run_id, action, label, p_label "
                          "FROM _curation_suspects"),
    # every prompt of a curated cluster, dropped duplicates included, with the cluster's split
    ("curation_prompt_clusters", "SELECT ? AS curation_run_id, c.prompt_id, c.cluster_id, s.split "
                                 "FROM _curation_clusters AS c "
                                 "JOIN (SELECT DISTINCT cluster_id, split FROM _curation_selected) AS s USING (cluster_id)"),
)
# Rows per commit when the selection comes from the read snapshot: each commit takes the store and
# lets it go (Store.released), so other flows write in between however large the run.
COMMIT_ROWS = 200_000


def store_curation(store: Store, work: StoreReader, result: CurationResult) -> None:
    """Store a selected run (curation_selection's working tables on `work`) in the store. Rows whose
    key is stored already are skipped, so a run cut off half-way is completed by running it again;
    the funnel rows come last, in the commit that publishes the read snapshot, so a run is never
    read as complete before all its rows are in. From the snapshot, the rows travel as Arrow in
    commits of COMMIT_ROWS, each its own short hold of the store."""
    run_id = result.curation_run_id
    funnel = pa.Table.from_pylist([
        {"curation_run_id": run_id, "step_order": order, "step": name, "count_in": n_in, "count_out": n_out}
        for order, (name, n_in, n_out) in enumerate(result.funnel)])
    for table, select in _RUN_ROWS:
        store.insert_selected(table, work, select, [run_id], COMMIT_ROWS)
    with store.transaction(publish=True):
        store.insert_new("curation_funnel", funnel)


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
