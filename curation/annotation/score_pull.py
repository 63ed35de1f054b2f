"""Bring annotators' ratings and rankings back from Argilla into candidate_scores (rater_kind human).

Responses are read through Argilla's REST API, as pull.py reads them (the SDK 2.8 crashes on a
discarded response without values). Only submitted responses are scores: one row per candidate and
aspect an annotator rated, or per candidate they ranked (score n + 1 - rank, stated_score the rank,
shown_position its slot). The record's metadata says which candidate each slot showed.

Each response's rows hash (response, annotator, candidate, aspect), so pulling again adds nothing;
a response changed in Argilla since (a rating edited, a submitted answer turned draft or discarded)
replaces or removes its stored rows. Answers that cannot be read go to `rejects`.
"""

from __future__ import annotations

import logging

import argilla as rg

from prefcurate.core.config import ArgillaConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.annotation.pull import ArgillaReader
from prefcurate.curation.annotation.rating_agreement import human_score_agreement
from prefcurate.curation.annotation.score_questions import RANKING_QUESTION, rating_scales, slot_of

log = logging.getLogger("prefcurate.argilla")

# What makes a stored score the same as a pulled one (created_at aside).
_COMPARED = ("candidate_id", "aspect", "score", "stated_score", "scale_min", "scale_max", "shown_position")


class Unreadable(ValueError):
    """An answer that cannot become scores; its message says why."""


def _score_row(response_id: str, annotator: str, prompt_id: str, candidate_id: str, mode: str, aspect: str,
               **values) -> dict:
    return {"score_id": content_hash("candidate-score", response_id, annotator, candidate_id, aspect),
            "call_id": response_id, "prompt_id": prompt_id, "candidate_id": candidate_id, "rater": annotator,
            "rater_kind": "human", "mode": mode, "aspect": aspect, "score_sd": None, "score_probs": None, **values}


def rating_rows(values: dict, candidate_ids: list[str], scales: dict[str, tuple[int, int]], response_id: str,
                annotator: str, prompt_id: str) -> list[dict]:
    """One row per rating question answered: question `<aspect>_<slot>` rates the slot's candidate."""
    rows = []
    for question, answer in values.items():
        if question not in scales:
            raise Unreadable(f"unknown question {question!r}")
        aspect, slot = question.rsplit("_", 1)
        if int(slot) > len(candidate_ids):
            raise Unreadable(f"{question!r} rates response {slot}, and the record shows {len(candidate_ids)}")
        low, high = scales[question]
        rating = answer.get("value")
        if not isinstance(rating, int) or not low <= rating <= high:
            raise Unreadable(f"{question!r}: {rating!r} is not on the scale {low}..{high}")
        rows.append(_score_row(response_id, annotator, prompt_id, candidate_ids[int(slot) - 1], "rating", aspect,
                               score=float(rating), stated_score=float(rating), scale_min=float(low),
                               scale_max=float(high), shown_position=int(slot), score_source="stated"))
    return rows


def ranking_rows(values: dict, candidate_ids: list[str], response_id: str, annotator: str,
                 prompt_id: str) -> list[dict]:
    """One row per ranked response: rank 1 is the best (ties share a rank), score n + 1 - rank."""
    ranked = (values.get(RANKING_QUESTION) or {}).get("value") or []
    n = len(candidate_ids)
    places = {slot_of(item.get("value", "")): item.get("rank") for item in ranked}
    every_slot_once = set(places) == set(range(1, n + 1)) and len(places) == len(ranked)
    if not every_slot_once or not all(isinstance(rank, int) and 1 <= rank <= n for rank in places.values()):
        raise Unreadable(f"a ranking of responses 1..{n} with ranks 1..{n} expected, got {ranked!r}")
    return [_score_row(response_id, annotator, prompt_id, candidate_ids[slot - 1], "ranking", "rank",
                       score=float(n + 1 - rank), stated_score=float(rank), scale_min=1.0, scale_max=float(n),
                       shown_position=slot, score_source="rank")
            for slot, rank in sorted(places.items())]


def scores_of_records(records, mode: str, scales: dict[str, tuple[int, int]], usernames: dict[str, str],
                      source: str) -> tuple[list[dict], list[str], list[dict], dict[str, int]]:
    """(score rows, every response id read, rejects, responses by status)."""
    rows, response_ids, rejects, by_status = [], [], [], {}
    for index, record in enumerate(records):
        metadata = record.get("metadata") or {}
        candidate_ids, prompt_id = metadata.get("candidate_ids"), metadata.get("prompt_id")
        for response in record.get("responses") or []:
            by_status[response["status"]] = by_status.get(response["status"], 0) + 1
            response_ids.append(response["id"])
            if response["status"] != "submitted":
                continue
            annotator = usernames.get(response["user_id"], response["user_id"])
            try:
                if not candidate_ids or not prompt_id:
                    raise Unreadable(f"record {record.get('external_id')!r} has no candidate_ids and prompt_id: "
                                     "prefcurate did not push it")
                values = response.get("values") or {}
                rows.extend(rating_rows(values, candidate_ids, scales, response["id"], annotator, prompt_id)
                            if mode == "rating" else
                            ranking_rows(values, candidate_ids, response["id"], annotator, prompt_id))
            except Unreadable as error:
                rejects.append({"source": source, "source_row": index, "field": "values",
                                "reason": f"{annotator}: {error}", "raw": str(response["id"])})
    return rows, response_ids, rejects, by_status


def store_scores(store: Store, rows: list[dict], response_ids: list[str]) -> dict[str, int]:
    """Make the stored human scores of these responses equal to `rows`; counts of what changed."""
    stored = {row[0]: row[1:] for row in store.con.execute(
        f"SELECT score_id, {', '.join(_COMPARED)} FROM candidate_scores "
        "WHERE rater_kind = 'human' AND list_contains(?::VARCHAR[], call_id)", [response_ids]).fetchall()}
    changed = [row for row in rows if stored.get(row["score_id"]) != tuple(row[column] for column in _COMPARED)]
    gone = sorted(set(stored) - {row["score_id"] for row in rows})
    if gone:
        store.con.execute("DELETE FROM candidate_scores WHERE list_contains(?::VARCHAR[], score_id)", [gone])
    if changed:
        store.upsert("candidate_scores", store.arrow_rows("candidate_scores", changed))
    new = sum(row["score_id"] not in stored for row in changed)
    return {"new": new, "updated": len(changed) - new, "removed": len(gone), "unchanged": len(rows) - len(changed)}


def pull_scores(store: Store, reader: ArgillaReader, dataset: rg.Dataset, config: ArgillaConfig) -> StageReport:
    """Pull the rating or ranking dataset of config.label_mode; agreement (alpha) in the details."""
    report = StageReport("annotate-pull")
    mode, source = config.label_mode, f"argilla:{config.workspace}/{config.dataset_for_mode}"
    rows, response_ids, rejects, by_status = scores_of_records(
        reader.records(str(dataset.id)), mode, rating_scales(dataset.settings), reader.usernames(), source)
    report.count_in = len(response_ids)
    with store.transaction():
        counts = store_scores(store, rows, response_ids)
        store.add_rejects("annotate-pull", rejects)
    report.count_out = counts["new"] + counts["updated"] + counts["removed"]
    report.details = {"label_mode": mode, **counts, "rejected": len(rejects), "responses_by_status": by_status,
                      "agreement": human_score_agreement(store)}
    log.info("annotate-pull: %d responses, %d scores; %d new, %d updated, %d removed, %d unchanged, %d rejected",
             len(response_ids), len(rows), counts["new"], counts["updated"], counts["removed"], counts["unchanged"],
             len(rejects))
    return report.finish()
