"""What a stage read and wrote: the counts every stage reports, kept in stage_runs by the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class StageReport:
    """What a stage read and wrote; printed by the CLI, logged by flows, kept in stage_runs."""

    stage: str
    count_in: int = 0
    count_out: int = 0
    details: dict = field(default_factory=dict)
    started_at: datetime = field(default_factory=datetime.now)
    finished_at: datetime | None = None

    def finish(self) -> StageReport:
        self.finished_at = datetime.now()
        return self

    def summary(self) -> str:
        extras = ", ".join(f"{key}={value}" for key, value in self.details.items() if not isinstance(value, (dict, list)))
        return f"[{self.stage}] in={self.count_in} out={self.count_out}" + (f" ({extras})" if extras else "")


class StageFailed(RuntimeError):
    """A stage could not produce what it was asked for (the command exits 1 saying why); what it
    did produce is stored. "Nothing to do" (everything cached) is not a failure."""
