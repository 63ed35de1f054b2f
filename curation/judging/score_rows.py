"""Turning one rating or ranking answer into stored rows: the call (score_calls, valid or not, with
why) and, when it reads, one score per candidate and aspect (candidate_scores). The rows' types are
the store's (sql/SCHEMA.md)."""

from __future__ import annotations

import json

from prefcurate.core.config import JudgeConfig
from prefcurate.curation.backends import ChatResult
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.rows import answer_outcome, usage_fields
from prefcurate.curation.judging.score_answers import (
    Unreadable,
    aspect_distributions,
    parse_ranking,
    parse_ratings,
    score_distribution,
)
from prefcurate.curation.judging.score_calls import ScoreCall


def score_rows(call: ScoreCall, result: ChatResult, constitution: Constitution, config: JudgeConfig) -> dict[str, list]:
    """{"score_calls": [the call's row], "candidate_scores": [its scores]}."""
    low, high = call.scale
    row = {
        "call_id": call.key, "prompt_id": call.prompt_id, "mode": call.mode, "judge": call.judge.name,
        "judge_model": call.judge.identity, "candidates_shown": [candidate for candidate, _ in call.shown],
        "shown_order": call.shown_order, "aspects": [aspect.id for aspect in call.aspects],
        "scale_min": low if call.mode == "rating" else None, "scale_max": high if call.mode == "rating" else None,
        "template_version": call.template_version, "constitution_version": constitution.version,
        "output_format": call.output_format, "sampling": json.dumps({**call.judge.sampling, "seed": config.seed}),
        "raw_response": result.text, "valid": False, "invalid_reason": None, "error_kind": None, "cut_answer": False,
        **usage_fields(call, result, config),
    }
    stored = {"score_calls": [row], "candidate_scores": []}
    unanswered, cut = answer_outcome(result)
    if unanswered:
        row.update(unanswered)
        return stored
    row["cut_answer"] = cut
    scores = _rating_scores(call, result, cut) if call.mode == "rating" else _ranking_scores(call, result, cut)
    if isinstance(scores, Unreadable):
        kind = "truncated" if cut and scores.kind == "unparseable" else scores.kind
        row.update(invalid_reason=f"{kind}: {scores.reason}", error_kind=kind)
        return stored
    row["valid"] = True
    stored["candidate_scores"] = scores
    return stored


def _score_row(call: ScoreCall, candidate_id: str, aspect: str, **values) -> dict:
    # the call's id is a content hash already; a candidate's and an aspect's place in the call (both
    # fixed by what was asked) tell its scores apart
    place = next(index for index, (shown, _) in enumerate(call.shown) if shown == candidate_id)
    return {"score_id": f"{call.key}:{place}:{aspect}",
            "call_id": call.key, "prompt_id": call.prompt_id, "candidate_id": candidate_id, "rater": call.judge.name,
            "rater_kind": "judge", "mode": call.mode, "aspect": aspect, "stated_score": None, "score_sd": None,
            "score_probs": None, "shown_position": None, **values}


def _rating_scores(call: ScoreCall, result: ChatResult, cut: bool) -> list[dict] | Unreadable:
    low, high = call.scale
    aspect_ids = [aspect.id for aspect in call.aspects]
    stated = parse_ratings(result.text, call.output_format, aspect_ids, low, high, cut=cut)
    if isinstance(stated, Unreadable):
        return stated
    if call.output_format == "choices":  # every choice scored at once: the distribution is the answer's
        distribution = score_distribution(result.first_token_logprobs, low, high)
        distributions = {aspect_ids[0]: distribution} if distribution else {}
    else:
        distributions = aspect_distributions(result.token_logprobs, aspect_ids, stated, low, high)
    candidate_id = call.shown[0][0]
    rows = []
    for aspect, score in stated.items():
        distribution = distributions.get(aspect)
        rows.append(_score_row(
            call, candidate_id, aspect, stated_score=float(score), scale_min=float(low), scale_max=float(high),
            score=distribution.expected if distribution else float(score),
            score_sd=distribution.sd if distribution else None,
            score_probs=json.dumps(distribution.probs) if distribution else None,
            score_source="logprobs" if distribution else "stated"))
    return rows


def _ranking_scores(call: ScoreCall, result: ChatResult, cut: bool) -> list[dict] | Unreadable:
    ranking = parse_ranking(result.text, call.output_format, call.labels, cut=cut)
    if isinstance(ranking, Unreadable):
        return ranking
    n = len(call.shown)
    position = {label: index for index, label in enumerate(call.labels)}
    rows = []
    for rank, label in enumerate(ranking, start=1):
        candidate_id = call.shown[position[label]][0]
        rows.append(_score_row(call, candidate_id, "rank", score=float(n + 1 - rank), stated_score=float(rank),
                               scale_min=1.0, scale_max=float(n), shown_position=position[label] + 1,
                               score_source="rank"))
    return rows
