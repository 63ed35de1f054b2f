"""Send prompts to annotators to rate or rank their candidates (argilla.label_mode rating / ranking).

A record is one prompt with up to K of its candidates (distinct texts; imported ones came with
their own human label and stay out), in an order seeded by (push.seed, prompt, candidate): which K
a prompt with more shows, and where each appears, so annotators' own position bias cancels over the
dataset. The record's metadata keeps the candidate ids in the order shown; pull reads them there.

Record ids hash (workspace, dataset, prompt), and a prompt whose record the dataset already holds is
not sent again, so pushing twice adds nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import argilla as rg

from prefcurate.core.config import ArgillaConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.annotation.push import render_prompt
from prefcurate.curation.annotation.score_questions import response_field
from prefcurate.curation.intake.preference_pairs import IMPORT_GENERATOR_KEY

log = logging.getLogger("prefcurate.argilla")


@dataclass(frozen=True)
class PromptRecord:
    """One prompt as annotators see it: its candidates (id, text) in the order shown."""

    prompt_id: str
    prompt: str
    shown: tuple[tuple[str, str], ...]


def record_id_for(workspace: str, dataset: str, prompt_id: str) -> str:
    return content_hash("argilla-score-record", workspace, dataset, prompt_id)


def shown_candidates(candidates: list[tuple[str, str]], prompt_id: str, seed: int,
                     k: int) -> tuple[tuple[str, str], ...]:
    """Up to k distinct texts among (candidate_id, text), in a seeded order (identical texts are one
    response: the one with the smallest id stands for them)."""
    distinct: dict[str, tuple[str, str]] = {}
    for candidate_id, text in sorted(candidates):
        distinct.setdefault(text.strip(), (candidate_id, text))
    return tuple(sorted(distinct.values(), key=lambda c: content_hash("shown-position", seed, prompt_id, c[0]))[:k])


def prompt_records(store: Store, config: ArgillaConfig, sent: set[str]) -> tuple[list[PromptRecord], int]:
    """(records to send, prompts with too few distinct candidates): prompts not in `sent` (record
    ids), in a seeded order, at most push.max_records of them."""
    rows = store.con.execute("""
        SELECT prompt_id, any_value(prompt), any_value(prompt_messages),
               list(struct_pack(id := candidate_id, text := text))
        FROM candidate_texts WHERE generator_key <> ? GROUP BY prompt_id""", [IMPORT_GENERATOR_KEY]).fetchall()
    k = config.responses_per_record
    needed = k if config.label_mode == "ranking" else 2
    records, too_few = [], 0
    seeded_order = sorted(rows, key=lambda row: content_hash("prompt-order", config.push.seed, row[0]))
    for prompt_id, prompt, messages, candidates in seeded_order:
        if record_id_for(config.workspace, config.dataset_for_mode, prompt_id) in sent:
            continue
        shown = shown_candidates([(c["id"], c["text"]) for c in candidates], prompt_id, config.push.seed, k)
        if len(shown) < needed:
            too_few += 1
            continue
        records.append(PromptRecord(prompt_id, render_prompt(prompt, messages), shown))
    return records[: config.push.max_records], too_few


def build_record(prompt: PromptRecord, config: ArgillaConfig, round_index: int) -> rg.Record:
    return rg.Record(
        id=record_id_for(config.workspace, config.dataset_for_mode, prompt.prompt_id),
        fields={"prompt": prompt.prompt,
                **{response_field(slot): text for slot, (_, text) in enumerate(prompt.shown, start=1)}},
        metadata={"prompt_id": prompt.prompt_id, "candidate_ids": [candidate for candidate, _ in prompt.shown],
                  "round": round_index},
    )


def push_prompts(store: Store, dataset: rg.Dataset, config: ArgillaConfig, round_index: int = 0,
                 batch_size: int = 256) -> StageReport:
    """Log prompts not sent yet to the rating or ranking dataset."""
    report = StageReport("annotate-push")
    sent = {record.id for record in dataset.records(with_responses=False, with_suggestions=False)}
    records, too_few = prompt_records(store, config, sent)
    report.count_in = store.scalar("SELECT count(DISTINCT prompt_id) FROM candidates WHERE generator_key <> ?",
                                   [IMPORT_GENERATOR_KEY])
    for start in range(0, len(records), batch_size):
        dataset.records.log([build_record(record, config, round_index)
                             for record in records[start : start + batch_size]])
        log.info("annotate-push: %d/%d prompt records sent", min(start + batch_size, len(records)), len(records))
    report.count_out = len(records)
    report.details = {"label_mode": config.label_mode, "dataset": config.dataset_for_mode,
                      "workspace": config.workspace, "min_submitted": config.min_submitted, "round": round_index,
                      "responses_per_record": config.responses_per_record, "already_sent": len(sent),
                      "too_few_candidates": too_few, "responses_sent": sum(len(r.shown) for r in records)}
    return report.finish()
