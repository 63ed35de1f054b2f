"""What the store remembers of refresh rounds: the model in charge, where each round stands, and
how it ended (refresh_rounds, rm_promotions, refresh_fixed_heldout)."""

from __future__ import annotations

import json

from prefcurate.core.config import PromotionGate
from prefcurate.core.store import Store
from prefcurate.refresh.gate import Decision
from prefcurate.rm.runs import find_rm_run


class RefreshError(RuntimeError):
    """A refresh round cannot start or go on (no reward model to start from, ...)."""


def incumbent(store: Store) -> tuple[str, str]:
    """(rm_run_id, checkpoint_dir) of the reward model in charge; the first time, the latest trained
    model becomes round 0's incumbent and its curation run's test split the fixed held-out set."""
    row = store.one("SELECT rm_run_id, checkpoint_dir FROM current_reward_model")
    if row:
        return row
    latest = find_rm_run(store.con)
    if latest is None:
        raise RefreshError(f"{store.path}: no reward model to start from: run `prefcurate run` (or `train`) first")
    with store.transaction():
        store.con.execute("INSERT OR IGNORE INTO rm_promotions (rm_run_id, round_index, reason) VALUES (?, 0, ?)",
                          [latest.rm_run_id, "initial model: the latest trained before the first refresh round"])
        store.con.execute("""
            INSERT OR IGNORE INTO refresh_fixed_heldout
            SELECT pair_id, chosen_candidate, rejected_candidate, curation_run_id FROM curated_pairs
            WHERE curation_run_id = $run AND split = (
                SELECT CASE WHEN count(*) FILTER (WHERE split = 'test') > 0 THEN 'test' ELSE 'validation' END
                FROM curated_pairs WHERE curation_run_id = $run)""", {"run": latest.curation_run_id})
    return latest.rm_run_id, latest.checkpoint_dir


def next_round(store: Store) -> int:
    """The first round not finished yet."""
    return store.scalar("SELECT coalesce(max(round_index) FILTER (WHERE status = 'done'), 0) + 1 FROM refresh_rounds")


def finished_round(store: Store, round_index: int) -> dict | None:
    """A finished round's stored outcome, or None."""
    row = store.one("SELECT decision, reason, candidate_rm_run_id FROM refresh_rounds "
                    "WHERE round_index = ? AND status = 'done'", [round_index])
    if row is None:
        return None
    return {"round": round_index, "decision": row[0], "reason": row[1], "candidate_rm_run_id": row[2], "reused": True}


def start_round(store: Store, round_index: int, gate: PromotionGate) -> tuple[str, str]:
    """The round's incumbent (rm_run_id, checkpoint_dir): a round that stopped half-way goes on from
    the same one; a new round takes the model in charge and is recorded as running."""
    stored = store.one("SELECT incumbent_rm_run_id FROM refresh_rounds WHERE round_index = ?", [round_index])
    if stored:
        incumbent_id = stored[0]
        incumbent_dir = store.scalar("SELECT checkpoint_dir FROM rm_runs WHERE rm_run_id = ?", [incumbent_id])
    else:
        incumbent_id, incumbent_dir = incumbent(store)
        store.con.execute("INSERT INTO refresh_rounds (round_index, status, incumbent_rm_run_id) "
                          "VALUES (?, 'running', ?)", [round_index, incumbent_id])
    n_fixed = store.count("refresh_fixed_heldout")
    if n_fixed < gate.min_heldout_pairs:
        raise RefreshError(
            f"the fixed held-out set has {n_fixed} pairs, fewer than refresh.gate.min_heldout_pairs = "
            f"{gate.min_heldout_pairs}: no round could be promoted. It is the test split of the first "
            "model's curation run: curate with a test split (curate.splits.test) and train before refreshing")
    return incumbent_id, incumbent_dir


def judge_agreement(store: Store, round_index: int) -> float | None:
    """Mean judge agreement on the round's pairs."""
    return store.scalar("SELECT avg(agreement) FROM pair_labels JOIN round_pairs USING (pair_id) "
                        "WHERE round_index = ?", [round_index])


def finish_round(store: Store, round_index: int, candidate_rm_run_id: str, curation_run_id: str, counts: dict,
                 incumbent_metrics: dict, candidate_metrics: dict, decision: Decision) -> None:
    """Record the round's outcome, and promote its model when the gate said so."""
    with store.transaction():
        store.con.execute("""
            UPDATE refresh_rounds SET status = 'done', candidate_rm_run_id = ?, curation_run_id = ?, counts = ?,
                   incumbent_metrics = ?, candidate_metrics = ?, decision = ?, reason = ?,
                   finished_at = current_timestamp
            WHERE round_index = ?""",
            [candidate_rm_run_id, curation_run_id, json.dumps(counts, default=str), json.dumps(incumbent_metrics),
             json.dumps(candidate_metrics), decision.label, decision.reason, round_index])
        if decision.promote:
            store.con.execute("INSERT OR IGNORE INTO rm_promotions (rm_run_id, round_index, reason) VALUES (?, ?, ?)",
                              [candidate_rm_run_id, round_index, decision.reason])
