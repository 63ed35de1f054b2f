"""Curate labelled pairs in DuckDB: filters, deduplication, decontamination, a per-prompt cap,
length balance, and splits by prompt cluster.

Every step rewrites one working table (`_curation_step`) with one SQL statement (near-duplicate
clustering hands its signatures to numpy and rensa, never a Python loop per row), so the funnel,
with its counts in and out and a few sample rows each step dropped, is exact and queryable. A run
is keyed by the hash of its config and of what it selected: curating unchanged labels again is
the same run, not a new one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa

from prefcurate.core.config import CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.funnel.near_dup import near_duplicate_clusters, shingle_hashes_sql, signatures
from prefcurate.curation.funnel.shingles import normalized_sql, word_ngram_hashes_sql
from prefcurate.core.store import StageReport, Store

STAGE = "curate"
_TWO_TO_64 = 18446744073709551616.0
JUDGE_SOURCES = "('balanced', 'vote')"


class CurationError(ValueError):
    """A curation input (a benchmark file, ...) that cannot be used."""


# -- labels -----------------------------------------------------------------------------------------

def judge_label_sql(label_rule: str) -> tuple[str, str, str]:
    """SQL over pair_labels for the judges' label under a rule: (label, rule used, confidence)."""
    if label_rule == "vote":
        return "vote_label", "'vote'", "vote_confidence"
    return (
        "coalesce(balanced_label, vote_label)",
        "CASE WHEN balanced_label IS NOT NULL THEN 'balanced' ELSE 'vote' END",
        "CASE WHEN balanced_label IS NOT NULL THEN balanced_confidence ELSE vote_confidence END",
    )


def labelled_pairs_sql(config: CurateConfig) -> str:
    """Every pair with its label and where it came from: human annotations first, then a label
    imported with its dataset, then the judges' label under the configured rule; plus the texts'
    lengths and flags the filters read."""
    judge_label, judge_source, judge_confidence = judge_label_sql(config.label_rule)
    return f"""
        SELECT l.*,
               coalesce(l.human_label, l.reference_label, {judge_label}) AS label,
               CASE WHEN l.human_label IS NOT NULL THEN 'human'
                    WHEN l.reference_label IS NOT NULL THEN 'import'
                    ELSE {judge_source} END AS label_source,
               CASE WHEN l.human_label IS NOT NULL THEN l.human_agreement
                    WHEN l.reference_label IS NOT NULL THEN NULL
                    ELSE {judge_confidence} END AS confidence,
               pr.text AS prompt_text,
               fa.n_chars AS chars_a, fb.n_chars AS chars_b,
               fa.is_refusal OR fb.is_refusal AS has_refusal,
               {normalized_sql('ca.text')} = {normalized_sql('cb.text')} AS identical_texts,
               rp.refresh_round,
               coalesce(rp.refresh_heldout, false) AS refresh_heldout
        FROM pair_labels AS l
        LEFT JOIN (SELECT pair_id, min(round_index) AS refresh_round, bool_or(heldout) AS refresh_heldout
                   FROM round_pairs GROUP BY pair_id) AS rp USING (pair_id)
        JOIN prompts AS pr USING (prompt_id)
        JOIN candidates AS ca ON ca.candidate_id = l.candidate_a
        JOIN candidates AS cb ON cb.candidate_id = l.candidate_b
        JOIN candidate_flags AS fa ON fa.candidate_id = l.candidate_a
        JOIN candidate_flags AS fb ON fb.candidate_id = l.candidate_b"""


def _judged(predicate: str) -> str:
    # Judge filters judge judge labels; human and imported labels pass them.
    return f"(label_source NOT IN {JUDGE_SOURCES} OR ({predicate}))"


# -- the steps --------------------------------------------------------------------------------------

@dataclass
class StepOutcome:
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    # Either a predicate over the working table's columns, or a function that rewrites the table.
    predicate: str | None = None
    rewrite: Callable[[Store, CurateConfig], StepOutcome] | None = None


def _filter_steps(config: CurateConfig) -> list[Step]:
    steps = [
        Step("has_label_evidence", "n_votes > 0 OR reference_label IS NOT NULL OR n_human_votes > 0"),
        Step("has_label", "label IS NOT NULL"),
    ]
    if config.ties == "drop":
        steps.append(Step("not_tie", "label <> 'tie'"))
    if config.min_human_agreement > 0:
        steps.append(Step(f"human_agreement>={config.min_human_agreement:g}",
                          f"n_human_votes = 0 OR human_agreement >= {config.min_human_agreement!r}"))
    if config.require_position_consistency:
        steps.append(Step("position_consistent", _judged("position_consistent")))
    steps.append(Step(f"agreement>={config.min_agreement:g}", _judged(f"agreement >= {config.min_agreement!r}")))
    if config.min_confidence > 0:
        # A judge without logprobs or a stated confidence gives none; such pairs cannot pass the bar.
        steps.append(Step(f"confidence>={config.min_confidence:g}",
                          _judged(f"coalesce(confidence, 0) >= {config.min_confidence!r}")))
    steps.append(Step("responses_differ", "NOT identical_texts"))
    length = config.length
    bounds = [f"least(chars_a, chars_b) >= {length.min_chars}"]
    if length.max_chars is not None:
        bounds.append(f"greatest(chars_a, chars_b) <= {length.max_chars}")
    label = f"response_chars>={length.min_chars}" + (f",<={length.max_chars}" if length.max_chars else "")
    steps.append(Step(label, " AND ".join(bounds)))
    if length.max_ratio is not None:
        steps.append(Step(f"length_ratio<={length.max_ratio:g}",
                          f"greatest(chars_a, chars_b) <= {length.max_ratio!r} * greatest(least(chars_a, chars_b), 1)"))
    if config.drop_refusals:
        steps.append(Step("no_refusal", "NOT has_refusal"))
    return steps


def _refresh_steps(config: CurateConfig) -> list[Step]:
    """With refresh rounds in the store: on-policy held-out pairs never train, and older rounds'
    pairs are kept with probability older_round_weight ** (rounds ago), seeded per pair."""
    steps = [Step("not_on_policy_heldout", "NOT refresh_heldout")]
    if config.older_round_weight < 1.0:
        keep = (f"refresh_round IS NULL OR (hash(pair_id || '{config.seed}') % 1000000) / 1e6 < "
                f"pow({config.older_round_weight!r}, (SELECT max(round_index) FROM round_pairs) - refresh_round)")
        steps.append(Step(f"older_rounds_weighted_{config.older_round_weight:g}", keep))
    return steps


def funnel_steps(config: CurateConfig, has_rounds: bool = False) -> list[Step]:
    steps = _filter_steps(config) + (_refresh_steps(config) if has_rounds else [])
    if config.decontamination.benchmarks:
        steps.append(Step("decontaminated", rewrite=_decontaminate))
    if config.dedup.exact:
        steps.append(Step("exact_dedup", rewrite=_exact_dedup))
    if config.dedup.near.enabled:
        steps.append(Step(f"near_dedup>={config.dedup.near.threshold:g}", rewrite=_near_dedup))
    steps.append(Step(f"cap_{config.max_pairs_per_prompt}_per_prompt_by_{config.pair_selection}", rewrite=_cap))
    if config.length.target_chosen_longer is not None:
        steps.append(Step(f"length_balance_{config.length.target_chosen_longer:g}", rewrite=_rebalance_length))
    return steps


def _keep_prompts(store: Store, table: str) -> None:
    """Keep the working rows whose prompt is in `table` (prompt_id)."""
    store.con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev "
                      f"WHERE prompt_id IN (SELECT prompt_id FROM {table})")


def _representatives_sql(cluster_table: str) -> str:
    """Per prompt of this step's clusters (`cluster_table`: prompt_id, cluster_id, score): the prompt
    its cluster keeps (the one with the most surviving pairs, then the smallest id) and the merged
    cluster's key. Keys are prompt ids, the earliest stored member's, so a cluster keeps its key,
    and with it its split, as new near-duplicates arrive."""
    return f"""
        WITH members AS (
            SELECT c.prompt_id, c.cluster_id AS group_id, c.score, k.cluster_id AS old_key, kp.created_at AS key_created
            FROM {cluster_table} AS c
            JOIN _curation_clusters AS k USING (prompt_id)
            JOIN prompts AS kp ON kp.prompt_id = k.cluster_id
        ),
        pair_counts AS (SELECT prompt_id, count(*) AS n_pairs FROM _curation_prev GROUP BY prompt_id)
        SELECT m.prompt_id, m.score, m.old_key,
               first(m.prompt_id ORDER BY n.n_pairs DESC, m.prompt_id) OVER (PARTITION BY m.group_id) AS kept,
               first(m.old_key ORDER BY m.key_created, m.old_key) OVER (PARTITION BY m.group_id) AS cluster_key
        FROM members AS m JOIN pair_counts AS n USING (prompt_id)"""


def _apply_clusters(store: Store, step: str, cluster_table: str) -> StepOutcome:
    con = store.con
    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_reps AS {_representatives_sql(cluster_table)}")
    con.execute("INSERT INTO _curation_prompt_drops SELECT ?, prompt_id, kept, score FROM _curation_reps "
                "WHERE prompt_id <> kept", [step])
    # Clusters merge across steps: every prompt under an old key moves to the merged cluster's key.
    con.execute("UPDATE _curation_clusters SET cluster_id = r.cluster_key "
                "FROM (SELECT DISTINCT old_key, cluster_key FROM _curation_reps) AS r "
                "WHERE _curation_clusters.cluster_id = r.old_key")
    _keep_prompts(store, "(SELECT prompt_id FROM _curation_reps WHERE prompt_id = kept)")
    dropped, clusters = store.one("SELECT count(*) FILTER (WHERE prompt_id <> kept), "
                                  "count(DISTINCT cluster_key) FILTER (WHERE prompt_id <> kept) FROM _curation_reps")
    return StepOutcome({"prompts_dropped": dropped, "duplicate_clusters": clusters})


def _exact_dedup(store: Store, config: CurateConfig) -> StepOutcome:
    store.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_exact AS
        SELECT prompt_id, md5(replace({normalized_sql('any_value(prompt_text)')}, ' ', '')) AS cluster_id, 1.0 AS score
        FROM _curation_prev GROUP BY prompt_id""")
    return _apply_clusters(store, "exact_dedup", "_curation_exact")


def _near_dedup(store: Store, config: CurateConfig) -> StepOutcome:
    near = config.dedup.near
    prompts = store.con.sql(
        f"SELECT prompt_id, {shingle_hashes_sql('prompt_text', near)} AS shingles "
        "FROM (SELECT prompt_id, any_value(prompt_text) AS prompt_text FROM _curation_prev GROUP BY prompt_id) "
        "ORDER BY prompt_id").to_arrow_table()
    if prompts.num_rows == 0:
        store.con.execute("CREATE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev")
        return StepOutcome({"prompts_dropped": 0})
    sigs = signatures(prompts["shingles"], near)
    found = near_duplicate_clusters(sigs, near)
    ids = prompts["prompt_id"].to_numpy(zero_copy_only=False)
    heads = found.labels
    score = (sigs == sigs[heads]).mean(axis=1)  # similarity to the cluster's head, for the drops table
    store.con.register("_curation_near_in", pa.table({"prompt_id": ids, "cluster_id": ids[heads], "score": score}))
    try:
        store.con.execute("CREATE OR REPLACE TEMP TABLE _curation_near AS SELECT * FROM _curation_near_in")
    finally:
        store.con.unregister("_curation_near_in")
    outcome = _apply_clusters(store, "near_dedup", "_curation_near")
    outcome.details.update(lsh_bands=found.bands, lsh_rows=found.rows, candidate_links=found.candidate_links,
                           verified_links=found.verified_links)
    return outcome


def _benchmark_relation(benchmark) -> str:
    path = Path(benchmark.path)
    if not path.is_file():
        raise CurationError(f"curate.decontamination.benchmarks[{benchmark.name}]: file not found: {path}")
    quoted = str(path).replace("'", "''")
    if path.suffix.lower() == ".parquet":
        return f"read_parquet('{quoted}')"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return f"read_json_auto('{quoted}', format = 'newline_delimited')"
    raise CurationError(f"curate.decontamination.benchmarks[{benchmark.name}]: {path}: use a .jsonl or .parquet file")


def _decontaminate(store: Store, config: CurateConfig) -> StepOutcome:
    settings = config.decontamination
    con = store.con
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _curation_prompt_ngrams AS
        SELECT prompt_id, unnest({word_ngram_hashes_sql('prompt_text', settings.ngram)}) AS h
        FROM (SELECT prompt_id, any_value(prompt_text) AS prompt_text FROM _curation_prev GROUP BY prompt_id)""")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_contaminated (prompt_id VARCHAR, benchmark VARCHAR, overlap DOUBLE)")
    per_benchmark = {}
    for benchmark in settings.benchmarks:
        relation = _benchmark_relation(benchmark)
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        if benchmark.text_column not in columns:
            raise CurationError(f"curate.decontamination.benchmarks[{benchmark.name}]: {benchmark.path} has no column "
                                f"{benchmark.text_column!r} (text_column); columns are {columns}")
        column = '"' + benchmark.text_column.replace('"', '""') + '"'
        con.execute(f"""
            INSERT INTO _curation_contaminated
            WITH bench AS (
                SELECT DISTINCT unnest({word_ngram_hashes_sql(f'CAST({column} AS VARCHAR)', settings.ngram)}) AS h
                FROM {relation} WHERE {column} IS NOT NULL
            )
            SELECT p.prompt_id, ?, avg(CASE WHEN b.h IS NOT NULL THEN 1.0 ELSE 0.0 END) AS overlap
            FROM _curation_prompt_ngrams AS p LEFT JOIN bench AS b USING (h)
            GROUP BY p.prompt_id
            HAVING overlap >= ?""", [benchmark.name, settings.threshold])
        per_benchmark[benchmark.name] = store.scalar(
            "SELECT count(*) FROM _curation_contaminated WHERE benchmark = ?", [benchmark.name])
    con.execute("INSERT INTO _curation_prompt_drops SELECT 'decontaminated', prompt_id, arg_max(benchmark, overlap), "
                "max(overlap) FROM _curation_contaminated GROUP BY prompt_id")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev "
                "WHERE prompt_id NOT IN (SELECT prompt_id FROM _curation_contaminated)")
    return StepOutcome({"prompts_dropped_by_benchmark": per_benchmark,
                        "prompts_dropped": store.scalar("SELECT count(DISTINCT prompt_id) FROM _curation_contaminated")})


def _selection_order(config: CurateConfig) -> str:
    if config.pair_selection == "margin":
        return "abs(balanced_margin) DESC NULLS LAST, confidence DESC NULLS LAST, pair_id"
    if config.pair_selection == "random":
        return f"md5('{config.seed}:' || pair_id)"
    return "confidence DESC NULLS LAST, agreement DESC NULLS LAST, pair_id"


def _cap(store: Store, config: CurateConfig) -> StepOutcome:
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


def _rebalance_length(store: Store, config: CurateConfig) -> StepOutcome:
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
                "_curation_contaminated")


def _drop_work_tables(store: Store) -> None:
    for table in _WORK_TABLES:
        store.con.execute(f"DROP TABLE IF EXISTS {table}")


def curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    _drop_work_tables(store)  # a run that failed half-way may have left some
    try:
        return _curate(store, config)
    finally:
        _drop_work_tables(store)


def _curate(store: Store, config: CurateConfig) -> tuple[CurationResult, StageReport]:
    con = store.con
    report = StageReport(STAGE)
    funnel: list[tuple[str, int, int]] = []
    details: dict = {}

    con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS {labelled_pairs_sql(config)}")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_samples (step_order INTEGER, pair_id VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE _curation_prompt_drops "
                "(step VARCHAR, prompt_id VARCHAR, related VARCHAR, score DOUBLE)")
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
