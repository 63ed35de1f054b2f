"""Judge pairs with a constitutional LLM judge.

Each pair is judged under k sampled principles, each in both shown orders (A/B and B/A). Every
call's id hashes everything that determines it, so a re-run (or a resumed, killed run) re-asks
only what has no stored answer. Calls that failed in transport (timeouts, 429/5xx after retries)
are stored as invalid with their reason and asked again on the next run; answers that cannot be
parsed are stored as invalid with the reason and kept.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from prefcurate.config import JudgeConfig
from prefcurate.curation.backends import ChatBackend, ChatRequest
from prefcurate.curation.constitution import Constitution, Principle
from prefcurate.curation.hashing import content_hash
from prefcurate.curation.judge_prompt import (
    TEMPLATE_VERSION,
    VERDICTS,
    first_position_logit,
    judge_messages,
    parse_verdict,
    verdict_confidence,
    verdict_distribution,
)
from prefcurate.curation.progress import Progress
from prefcurate.curation.store import StageReport, Store

STAGE = "judge"
COMMIT_EVERY = 64
CALL_FAILED = "call_failed"


def winner_in_pair_orientation(verdict_shown: str, shown_order: str) -> str:
    """Map a verdict about the shown positions back to the pair's (a, b) orientation."""
    if verdict_shown == "tie":
        return "tie"
    first_is_a = shown_order == "ab"
    if verdict_shown == "A":
        return "a" if first_is_a else "b"
    return "b" if first_is_a else "a"


@dataclass(frozen=True)
class PlannedCall:
    judgment_id: str
    pair_id: str
    principle: Principle
    shown_order: str
    request: ChatRequest


def plan_calls(pairs: list[tuple], constitution: Constitution, backend_identity: str,
               config: JudgeConfig) -> list[PlannedCall]:
    """pairs: (pair_id, prompt, text_a, text_b). Returns every call the pairs need."""
    sampling = {"max_tokens": config.max_new_tokens, "temperature": config.temperature, "seed": config.seed}
    planned = []
    for pair_key, prompt, text_a, text_b in pairs:
        for principle in constitution.sample(pair_key, config.principles_per_pair, config.seed):
            for order in ("ab", "ba"):
                first, second = (text_a, text_b) if order == "ab" else (text_b, text_a)
                judgment_id = content_hash(
                    "judgment", backend_identity, TEMPLATE_VERSION, constitution.version,
                    principle.id, principle.text, order, prompt, first, second, sampling)
                request = ChatRequest(
                    key=judgment_id, messages=judge_messages(principle, prompt, first, second),
                    max_tokens=config.max_new_tokens, temperature=config.temperature,
                    seed=config.seed, want_logprobs=True, choices=VERDICTS)
                planned.append(PlannedCall(judgment_id, pair_key, principle, order, request))
    return planned


def judge_pairs(store: Store, backend: ChatBackend, constitution: Constitution, config: JudgeConfig) -> StageReport:
    pairs = store.con.execute("""
        SELECT p.pair_id, pr.text, a.text, b.text
        FROM pairs p
        JOIN prompts pr USING (prompt_id)
        JOIN candidates a ON a.candidate_id = p.candidate_a
        JOIN candidates b ON b.candidate_id = p.candidate_b
        ORDER BY p.pair_id""").fetchall()
    planned = plan_calls(pairs, constitution, backend.identity, config)
    answered = {row[0] for row in store.con.execute(
        f"SELECT judgment_id FROM judgments WHERE coalesce(invalid_reason, '') NOT LIKE '{CALL_FAILED}%'").fetchall()}
    todo = [call for call in planned if call.judgment_id not in answered]
    by_id = {call.judgment_id: call for call in todo}

    report = StageReport(STAGE, count_in=len(pairs), details={
        "judge": backend.identity, "template_version": TEMPLATE_VERSION,
        "constitution_version": constitution.version, "calls_planned": len(planned),
        "calls_cached": len(planned) - len(todo)})
    outcomes: Counter = Counter()
    buffer: list[dict] = []

    def flush() -> None:
        if buffer:
            with store.transaction():
                store.upsert("judgments", pa.Table.from_pylist(buffer, schema=_SCHEMA))
            buffer.clear()

    with Progress("judge", len(todo)) as progress:
        for result in backend.complete(call.request for call in todo):
            call = by_id[result.key]
            row = {
                "judgment_id": call.judgment_id, "pair_id": call.pair_id, "judge": backend.identity,
                "principle_id": call.principle.id, "shown_order": call.shown_order,
                "template_version": TEMPLATE_VERSION, "constitution_version": constitution.version,
                "raw_response": result.text, "verdict_shown": None, "winner": None, "confidence": None,
                "confidence_source": "none", "verdict_probs": None, "preference_logit": None,
                "valid": False, "invalid_reason": None,
                "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                "latency_ms": result.latency_ms,
            }
            if result.error:
                row["invalid_reason"] = f"{CALL_FAILED}: {result.error}"
                outcomes[f"{CALL_FAILED}:{result.error.split(':', 1)[0]}"] += 1
            else:
                verdict, reason = parse_verdict(result.text)
                if verdict is None:
                    row["invalid_reason"] = f"unparseable: {reason}"
                    outcomes["unparseable"] += 1
                else:
                    distribution = verdict_distribution(result.first_token_logprobs)
                    confidence = verdict_confidence(distribution, verdict)
                    logit = first_position_logit(distribution) if confidence is not None else None
                    row.update(verdict_shown=verdict, winner=winner_in_pair_orientation(verdict, call.shown_order),
                               valid=True, confidence=confidence,
                               confidence_source="logprobs" if confidence is not None else "none",
                               verdict_probs=json.dumps(distribution) if confidence is not None else None,
                               # in the pair's orientation: a first when shown "ab", second when "ba"
                               preference_logit=None if logit is None else logit if call.shown_order == "ab" else -logit)
                    outcomes["valid"] += 1
            buffer.append(row)
            progress.update()
            if len(buffer) >= COMMIT_EVERY:
                flush()
    flush()

    labelled = store.one(
        "SELECT count(*) FILTER (WHERE n_votes > 0), count(*) FILTER (WHERE position_consistent) FROM pair_labels"
    )
    report.count_out = labelled[0]
    report.details.update(calls_made=len(todo), outcomes=dict(outcomes),
                          valid=outcomes["valid"], invalid=len(todo) - outcomes["valid"],
                          position_consistent_pairs=labelled[1])
    return report.finish()


_SCHEMA = pa.schema([
    ("judgment_id", pa.string()), ("pair_id", pa.string()), ("judge", pa.string()),
    ("principle_id", pa.string()), ("shown_order", pa.string()), ("template_version", pa.string()),
    ("constitution_version", pa.string()), ("raw_response", pa.string()), ("verdict_shown", pa.string()),
    ("winner", pa.string()), ("confidence", pa.float64()), ("confidence_source", pa.string()),
    ("verdict_probs", pa.string()), ("preference_logit", pa.float64()), ("valid", pa.bool_()), ("invalid_reason", pa.string()), ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()), ("latency_ms", pa.float64()),
])
