"""Reward-model runs as the store records them (rm_runs): the latest trained, or one by id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardModelRun:
    rm_run_id: str
    checkpoint_dir: str  # a path, or the URL a training job elsewhere wrote to
    curation_run_id: str


def find_rm_run(con, rm_run_id: str | None = None) -> RewardModelRun | None:
    """`rm_run_id`'s run, or the latest one (by its last update); None when there is none. `con` is
    a DuckDB connection to the store or its read snapshot."""
    query = "SELECT rm_run_id, checkpoint_dir, curation_run_id FROM rm_runs "
    row = (con.execute(query + "WHERE rm_run_id = ?", [rm_run_id]) if rm_run_id
           else con.execute(query + "ORDER BY updated_at DESC LIMIT 1")).fetchone()
    return RewardModelRun(*row) if row else None
