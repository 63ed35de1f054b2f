"""Turning one answer into one stored judgment: the verdict as shown and in the pair's orientation,
its confidence and where that came from, or why there is none. The row's types are the store's
(judgments in sql/SCHEMA.md)."""

from __future__ import annotations

import json

from prefcurate.core.config import JudgeConfig
from prefcurate.curation import orientation
from prefcurate.curation.backends import ChatResult
from prefcurate.curation.judging.calls import CALL_FAILED, PlannedCall
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.pricing import price_of
from prefcurate.curation.judging.prompt import TEMPLATE_VERSION
from prefcurate.curation.judging.verdicts import (
    answer_completeness,
    first_position_logit,
    parse_self_confidence,
    parse_verdict,
    verdict_confidence,
    verdict_distribution,
    verdict_token_logprobs,
)


def usage_fields(call, result: ChatResult, config: JudgeConfig) -> dict:
    """What a call of any mode cost: characters sent, tokens, dollars, latency."""
    return {"request_chars": call.request_chars, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": price_of(config, call.judge.config, result.prompt_tokens, result.completion_tokens),
            "latency_ms": result.latency_ms}


def answer_outcome(result: ChatResult) -> tuple[dict | None, bool]:
    """(invalid_reason and error_kind of a call that got no answer to read, else None; whether the
    answer was cut at the token limit). A transport failure is asked again next run (CALL_FAILED)."""
    if result.error:
        return {"invalid_reason": f"{CALL_FAILED}: {result.error}", "error_kind": result.error_kind}, False
    cut, unfinished = answer_completeness(result.finish_reason)
    if unfinished:
        return {"invalid_reason": f"unfinished: {unfinished}", "error_kind": "unfinished"}, cut
    return None, cut


def judgment_row(call: PlannedCall, result: ChatResult, constitution: Constitution, config: JudgeConfig) -> dict:
    row = {
        "judgment_id": call.judgment_id, "pair_id": call.pair_id, "judge": call.judge.name,
        "judge_model": call.judge.identity, "principle_id": call.principle.id,
        "principle_axis": call.principle.axis, "shown_order": call.shown_order,
        "template_version": TEMPLATE_VERSION, "constitution_version": constitution.version,
        "output_format": call.output_format,
        "sampling": json.dumps({**call.judge.sampling, "seed": config.seed}),
        "raw_response": result.text, "verdict_shown": None, "winner": None, "confidence": None,
        "confidence_source": "none", "self_confidence": None, "verdict_probs": None, "preference_logit": None,
        "valid": False, "invalid_reason": None, "error_kind": None, "cut_answer": False, "verdict_kind": "judge",
        **usage_fields(call, result, config),
    }
    unanswered, cut = answer_outcome(result)
    if unanswered:
        row.update(unanswered)
        return row
    verdict, reason = parse_verdict(result.text, call.output_format, cut=cut)
    self_confidence = parse_self_confidence(result.text, cut=cut) if call.output_format != "choices" else None
    row.update(self_confidence=self_confidence, cut_answer=cut)
    if verdict is None:
        kind = "truncated" if cut else "unparseable"
        row.update(invalid_reason=f"{kind}: {reason}", error_kind=kind)
        return row
    distribution = verdict_distribution(verdict_token_logprobs(result.token_logprobs) or result.first_token_logprobs)
    confidence = verdict_confidence(distribution, verdict)
    row.update(verdict_shown=verdict, winner=orientation.to_pair(verdict, call.shown_order), valid=True)
    if confidence is not None:
        row.update(confidence=confidence, confidence_source="logprobs", verdict_probs=json.dumps(distribution),
                   preference_logit=orientation.to_pair_logit(first_position_logit(distribution), call.shown_order))
    elif self_confidence is not None:
        row.update(confidence=self_confidence, confidence_source="self_report")
    return row
