"""What one judge run spent and got, from the rows it stored: for the stage report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunStats:
    outcomes: Counter = field(default_factory=Counter)  # valid / error kinds
    by_judge: dict = field(default_factory=dict)
    first_invalid: dict = field(default_factory=dict)  # judge -> the first reason a call was not valid
    latencies_ms: list = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0

    def add(self, row: dict) -> None:
        outcome = "valid" if row["valid"] else row["error_kind"] or "invalid"
        self.outcomes[outcome] += 1
        self.by_judge.setdefault(row["judge"], Counter())[outcome] += 1
        if not row["valid"]:
            self.first_invalid.setdefault(row["judge"], row["invalid_reason"] or "")
        if row["latency_ms"] is not None:
            self.latencies_ms.append(row["latency_ms"])
        self.prompt_tokens += row["prompt_tokens"] or 0
        self.completion_tokens += row["completion_tokens"] or 0
        if row["cost_usd"] is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += row["cost_usd"]

    def judges_without_a_verdict(self, with_stored_verdicts: set[str] = frozenset()) -> list[str]:
        """'<judge> gave no valid verdict in N calls (outcomes), e.g. <reason>' for each judge whose
        every call this run failed or could not be read, unless it has valid verdicts stored from
        before (a re-run asking again the few calls that failed is no judge that never works)."""
        return [f"{judge} gave no valid verdict in {sum(outcomes.values())} calls ({dict(outcomes)}), e.g. "
                f"{self.first_invalid.get(judge, '')[:160]!r}"
                for judge, outcomes in self.by_judge.items()
                if outcomes and not outcomes.get("valid") and judge not in with_stored_verdicts]

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)

        def percentile(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None

        return {"outcomes": dict(self.outcomes), "outcomes_by_judge": {k: dict(v) for k, v in self.by_judge.items()},
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6), "unpriced_calls": self.unpriced_calls,
                "latency_ms": {"p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99),
                               "max": ordered[-1] if ordered else None}}
