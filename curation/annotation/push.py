"""Send pairs to annotators: pick them, shuffle A/B per record, log them to Argilla, remember how.

Policies:
- all: every pair not sent to this dataset yet;
- uncertain: pairs where the evidence is weak: judge votes split (agreement at most max_agreement),
  a low-confidence judge label, a (judge, principle) that flips with the shown order, no judge
  verdict at all (opt-in), or RM-ensemble members disagreeing (|mean reward margin| below the sum
  of the two responses' member spreads, from the latest `prefcurate score` run with an ensemble),
  or a label `prefcurate suspect` flagged (reason `suspect`).
Most uncertain first (most reasons, then lowest confidence), at most max_records per push.

Each record's A/B order is random but seeded by (seed, pair id), so pushing again is deterministic;
a pair already sent to the dataset is never sent again (annotation_records remembers it).
"""

from __future__ import annotations

import json
import logging

import argilla as rg

from prefcurate.core.config import AnnotationPushConfig, ArgillaConfig, CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation import orientation
from prefcurate.curation.labels import labelled_pairs

log = logging.getLogger("prefcurate.argilla")



def record_id_for(workspace: str, dataset: str, pair_id: str) -> str:
    return content_hash("argilla-record", workspace, dataset, pair_id)


def shown_order_for(seed: int, pair_id: str) -> str:
    return "ab" if int(content_hash("shown-order", seed, pair_id)[:8], 16) % 2 == 0 else "ba"


def reason_sql(push: AnnotationPushConfig) -> list[str]:
    """One SQL expression per enabled uncertainty criterion: its name when it holds, else NULL."""
    reasons = []
    if push.max_agreement is not None:
        reasons.append(f"CASE WHEN l.n_votes > 0 AND l.agreement <= {push.max_agreement!r} THEN 'judge_disagreement' END")
    if push.max_confidence is not None:
        reasons.append(f"CASE WHEN l.judge_confidence <= {push.max_confidence!r} THEN 'low_confidence' END")
    if push.position_inconsistent:
        reasons.append("CASE WHEN l.n_comparisons > 0 AND NOT l.position_consistent THEN 'position_inconsistent' END")
    if push.unjudged:
        reasons.append("CASE WHEN l.n_votes = 0 THEN 'unjudged' END")
    if push.ensemble_disagreement:
        reasons.append("CASE WHEN ra.reward_std IS NOT NULL AND abs(ra.reward - rb.reward) < ra.reward_std + rb.reward_std"
                       " THEN 'ensemble_disagreement' END")
    if push.cascade:
        # a judge cascade's levels were all unsure of it (cascade_decisions): humans are its last level
        reasons.append("CASE WHEN cd.decision = 'to_humans' THEN 'cascade' END")
    if push.suspect:
        # `prefcurate suspect` flagged the pair's current label (never a human's)
        reasons.append("CASE WHEN sus.flagged AND sus.label = l.label AND l.label_source <> 'human' THEN 'suspect' END")
    return reasons or ["NULL"]


def candidates_sql(push: AnnotationPushConfig, curate: CurateConfig) -> str:
    """Pairs not yet sent to ($workspace, $dataset), with their texts, judge label and push reasons."""
    reasons = reason_sql(push)
    return f"""
        WITH latest_run AS (
            -- the latest scoring by an ensemble (single models have no member spread)
            SELECT rm_run_id FROM candidate_rewards WHERE reward_std IS NOT NULL
            GROUP BY rm_run_id ORDER BY max(created_at) DESC LIMIT 1
        ),
        rewards AS (
            SELECT candidate_id, reward, reward_std FROM candidate_rewards WHERE rm_run_id = (SELECT rm_run_id FROM latest_run)
        ),
        labelled AS ({labelled_pairs(curate)})
        SELECT l.pair_id, t.prompt, t.prompt_messages, t.text_a, t.text_b,
               l.judge_label, l.judge_confidence, l.agreement AS judge_agreement, l.n_votes,
               list_filter([{', '.join(reasons)}], lambda x: x IS NOT NULL) AS reasons
        FROM labelled AS l
        JOIN pair_texts AS t ON t.pair_id = l.pair_id
        LEFT JOIN pair_suspicion AS sus ON sus.pair_id = l.pair_id
        LEFT JOIN cascade_decisions AS cd ON cd.pair_id = l.pair_id
        LEFT JOIN rewards AS ra ON ra.candidate_id = l.candidate_a
        LEFT JOIN rewards AS rb ON rb.candidate_id = l.candidate_b
        WHERE l.pair_id NOT IN (SELECT pair_id FROM annotation_records WHERE workspace = $workspace AND dataset = $dataset)
    """


def select_pairs(store: Store, config: ArgillaConfig, curate: CurateConfig) -> list[dict]:
    where = "len(reasons) > 0" if config.push.policy == "uncertain" else "true"
    limit = f"LIMIT {config.push.max_records}" if config.push.max_records else ""
    sql = f"""
        SELECT * FROM ({candidates_sql(config.push, curate)})
        WHERE {where}
        ORDER BY len(reasons) DESC, coalesce(judge_confidence, 0.5) ASC, pair_id
        {limit}"""
    params = {"workspace": config.workspace, "dataset": config.dataset}
    return store.con.sql(sql, params=params).to_arrow_table().to_pylist()


def render_prompt(prompt: str, messages_json: str | None) -> str:
    """A multi-turn prompt as the conversation so far, in markdown; a plain prompt as itself."""
    if not messages_json:
        return prompt
    turns = json.loads(messages_json)
    return "\n\n".join(f"**{turn.get('role', 'user')}:**\n\n{turn.get('content', '')}" for turn in turns)


def build_record(row: dict, config: ArgillaConfig, round_index: int, judges: str) -> tuple[rg.Record, dict]:
    """The Argilla record for one pair and the annotation_records row that says how it was shown."""
    order = shown_order_for(config.push.seed, row["pair_id"])
    record_id = record_id_for(config.workspace, config.dataset, row["pair_id"])
    first, second = (row["text_a"], row["text_b"]) if order == "ab" else (row["text_b"], row["text_a"])
    reason = ",".join(row["reasons"]) or "all"
    metadata = {"pair_id": row["pair_id"], "round": round_index, "reason": reason}
    if row["judge_agreement"] is not None:
        metadata["judge_agreement"] = float(row["judge_agreement"])
    if row["judge_confidence"] is not None:
        metadata["judge_confidence"] = float(row["judge_confidence"])
    suggestions = []
    if row["judge_label"] is not None:
        suggestions.append(rg.Suggestion(
            question_name="preference", value=orientation.to_shown(row["judge_label"], order),
            score=None if row["judge_confidence"] is None else min(1.0, max(0.0, float(row["judge_confidence"]))),
            agent=judges,
        ))
    record = rg.Record(
        id=record_id,
        fields={"prompt": render_prompt(row["prompt"], row["prompt_messages"]), "response_a": first, "response_b": second},
        metadata=metadata,
        suggestions=suggestions,
    )
    stored = {"record_id": record_id, "pair_id": row["pair_id"], "workspace": config.workspace,
              "dataset": config.dataset, "shown_order": order, "round": round_index, "reason": reason,
              "min_submitted": config.min_submitted}
    return record, stored


def push_pairs(store: Store, dataset: rg.Dataset, config: ArgillaConfig, curate: CurateConfig,
               judges: str, round_index: int = 0, batch_size: int = 256) -> StageReport:
    """Log the selected pairs to the Argilla dataset; a batch is remembered once Argilla has it."""
    report = StageReport("annotate-push")
    report.count_in = store.scalar("SELECT count(*) FROM pairs")
    rows = select_pairs(store, config, curate)
    log.info("annotate-push: %d pairs selected (policy %s)", len(rows), config.push.policy)
    pushed, reasons = 0, {}
    for start in range(0, len(rows), batch_size):
        built = [build_record(row, config, round_index, judges) for row in rows[start : start + batch_size]]
        dataset.records.log([record for record, _ in built])
        with store.transaction():
            pushed += store.insert_new("annotation_records", store.arrow_rows("annotation_records", [s for _, s in built]))
        for _, stored in built:
            for reason in stored["reason"].split(","):
                reasons[reason] = reasons.get(reason, 0) + 1
        log.info("annotate-push: %d/%d records sent", min(start + batch_size, len(rows)), len(rows))
    report.count_out = pushed
    report.details = {"policy": config.push.policy, "dataset": config.dataset, "workspace": config.workspace,
                      "min_submitted": config.min_submitted, "round": round_index, "reasons": reasons}
    return report.finish()
