"""Curate labelled pairs in DuckDB: filters, a per-prompt cap, and prompt-disjoint splits.

Each step is one SQL statement over the `pair_labels` view, kept as a temp table so the funnel
(counts in and out per step) is exact and queryable. A run is keyed by the hash of its config
and of what it selected: curating unchanged labels again is the same run, not a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from prefcurate.config import CurateConfig
from prefcurate.curation.hashing import content_hash
from prefcurate.curation.store import StageReport, Store

STAGE = "curate"
_TWO_TO_64 = 18446744073709551616.0


@dataclass(frozen=True)
class FunnelStep:
    name: str
    predicate: str  # SQL over pair_labels columns; rows where it is true survive


def _judged(predicate: str) -> str:
    # Judge filters judge judge labels; a label imported with its dataset passes them.
    return f"(label_source = 'import' OR ({predicate}))"


def funnel_steps(config: CurateConfig) -> list[FunnelStep]:
    steps = [
        FunnelStep("has_label_evidence", "n_votes > 0 OR reference_label IS NOT NULL"),
        FunnelStep("has_label", "label IS NOT NULL"),
        FunnelStep("not_tie", "label <> 'tie'"),
    ]
    if config.require_position_consistency:
        steps.append(FunnelStep("position_consistent", _judged("position_consistent")))
    steps.append(FunnelStep(f"agreement>={config.min_agreement:g}", _judged(f"agreement >= {config.min_agreement!r}")))
    if config.min_confidence > 0:
        # A judge without logprobs or a stated confidence gives none; such pairs cannot pass the bar.
        steps.append(FunnelStep(f"confidence>={config.min_confidence:g}",
                                _judged(f"coalesce(confidence, 0) >= {config.min_confidence!r}")))
    return steps


def labelled_pairs_sql(config: CurateConfig) -> str:
    """pair_labels with the label, its source and confidence: a label imported with its dataset
    first, then the judges' label under the configured rule."""
    if config.label_rule == "vote":
        judge_label, judge_source, judge_confidence = "vote_label", "'vote'", "vote_confidence"
    else:
        judge_label = "coalesce(balanced_label, vote_label)"
        judge_source = "CASE WHEN balanced_label IS NOT NULL THEN 'balanced' ELSE 'vote' END"
        judge_confidence = "CASE WHEN balanced_label IS NOT NULL THEN balanced_confidence ELSE vote_confidence END"
    return f"""
        SELECT *,
               coalesce(reference_label, {judge_label}) AS label,
               CASE WHEN reference_label IS NOT NULL THEN 'import' ELSE {judge_source} END AS label_source,
               CASE WHEN reference_label IS NOT NULL THEN NULL ELSE {judge_confidence} END AS confidence
        FROM pair_labels"""


def split_case(config: CurateConfig) -> str:
    """SQL assigning a split per prompt from a seeded hash: stable as the data grows."""
    test, validation = config.splits.test, config.splits.validation
    u = f"md5_number_upper('{config.seed}:' || prompt_id) / {_TWO_TO_64}"
    return (f"CASE WHEN {u} < {test!r} THEN 'test' "
            f"WHEN {u} < {test + validation!r} THEN 'validation' ELSE 'train' END")


@dataclass
class CurationResult:
    curation_run_id: str
    funnel: list[tuple[str, int, int]]
    split_counts: dict[str, int]
    is_new: bool


def curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    con = store.con
    report = StageReport(STAGE)
    funnel: list[tuple[str, int, int]] = []

    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS {labelled_pairs_sql(config)}")
    count = store.scalar("SELECT count(*) FROM _curation_step")
    report.count_in = count
    for step in funnel_steps(config):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS SELECT * FROM _curation_step WHERE {step.predicate}")
        survivors = store.scalar("SELECT count(*) FROM _curation_step")
        funnel.append((step.name, count, survivors))
        count = survivors

    # Cap: the most confident pairs of each prompt first, pair_id breaking ties deterministically.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_step AS
        SELECT * FROM _curation_step
        QUALIFY row_number() OVER (PARTITION BY prompt_id
                                   ORDER BY confidence DESC NULLS LAST, agreement DESC, pair_id) <= {config.max_pairs_per_prompt}
    """)
    survivors = store.scalar("SELECT count(*) FROM _curation_step")
    funnel.append((f"cap_{config.max_pairs_per_prompt}_per_prompt", count, survivors))

    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_selected AS
        SELECT pair_id, {split_case(config)} AS split,
               CASE label WHEN 'a' THEN candidate_a ELSE candidate_b END AS chosen_candidate,
               CASE label WHEN 'a' THEN candidate_b ELSE candidate_a END AS rejected_candidate,
               label_source, confidence
        FROM _curation_step
    """)
    selection_hash = store.scalar(
        "SELECT coalesce(md5(string_agg(concat_ws('|', pair_id, split, chosen_candidate, label_source, confidence), ',' "
        "ORDER BY pair_id)), '') "
        "FROM _curation_selected")
    config_json = config.model_dump(mode="json")
    run_id = content_hash("curation", config_json, selection_hash)
    split_counts = dict(con.execute("SELECT split, count(*) FROM _curation_selected GROUP BY split").fetchall())
    split_counts = {name: split_counts.get(name, 0) for name in ("train", "validation", "test")}

    is_new = store.scalar("SELECT count(*) FROM curation_funnel WHERE curation_run_id = ?", [run_id]) == 0
    if is_new:
        with store.transaction():
            con.execute("INSERT INTO curated_pairs SELECT ?, pair_id, split, chosen_candidate, rejected_candidate, "
                        "label_source, confidence FROM _curation_selected", [run_id])
            con.executemany("INSERT INTO curation_funnel VALUES (?, ?, ?, ?, ?)",
                            [[run_id, order, name, n_in, n_out] for order, (name, n_in, n_out) in enumerate(funnel)])
    con.execute("DROP TABLE _curation_step")
    con.execute("DROP TABLE _curation_selected")

    judges = con.execute("SELECT judge, consistency_rate FROM judge_position_bias").fetchall()
    report.count_out = sum(split_counts.values())
    report.details["judge_position_consistency"] = {
        judge: None if rate is None else round(rate, 3) for judge, rate in judges}
    report.details.update(curation_run_id=run_id, new_run=is_new, **{f"split_{k}": v for k, v in split_counts.items()},
                          funnel={name: [n_in, n_out] for name, n_in, n_out in funnel})
    return CurationResult(run_id, funnel, split_counts, is_new), report.finish()


def record_curation_run(store: Store, result: CurationResult, config: CurateConfig,
                        output_dir: str, manifest_path: str) -> None:
    counts = {"funnel": [{"step": n, "in": i, "out": o} for n, i, o in result.funnel], "splits": result.split_counts}
    store.con.execute(
        "INSERT OR REPLACE INTO curation_runs (curation_run_id, config, output_dir, manifest_path, counts) "
        "VALUES (?, ?, ?, ?, ?)",
        [result.curation_run_id, json.dumps(config.model_dump(mode="json")), output_dir, manifest_path,
         json.dumps(counts)])


def latest_curation_run(store: Store) -> tuple[str, str]:
    """(curation_run_id, output_dir) of the most recent curation run."""
    row = store.one(
        "SELECT curation_run_id, output_dir FROM curation_runs ORDER BY created_at DESC LIMIT 1")
    if row is None:
        raise LookupError(f"{store.path}: no curation run yet; run `prefcurate curate` first")
    return row
