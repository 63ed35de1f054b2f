"""Import an existing preference dataset as labelled pairs (reference labels with source "import").

Each row becomes a prompt, two candidates, a pair and a reference label in the pair's orientation.
Imported labels are gold for judge evaluation (the `judge_quality` view) and training data in their
own right. Three shapes are read, per row:
- plain:     `prompt`, `chosen`, `rejected` strings;
- hh:        HH-RLHF transcripts: `chosen` and `rejected` strings of "\n\nHuman: ... \n\nAssistant: ..."
             turns that share everything but the last answer;
- messages:  `chosen` / `rejected` as chat messages ({role, content} or ShareGPT's {from, value}),
             either whole conversations or just the answer, with the conversation so far in
             `prompt` or ShareGPT's `conversations`.
Rows that fit none, or whose two sides do not share their conversation, go to rejects.
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from prefcurate.core.hashing import content_hash, prompt_id
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.generation.pairing import pair_id
from prefcurate.curation.intake.prompts import put_in_pool
from prefcurate.curation.intake.outcome import RejectTally, check_intake
from prefcurate.curation.intake.sources import (IngestError, SourceRow, detect_format, is_blank, raw_text,
                                                read_source, row_reject, strip_invisible)

STAGE = "import"
IMPORT_GENERATOR_KEY = "import"
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
          "bing": "assistant", "model": "assistant", "system": "system"}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


class RowError(ValueError):
    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True)
class PreferenceRow:
    context: list[dict]  # the conversation before the two answers (ends with a user turn)
    chosen: str
    rejected: str
    shape: str


# -- reading one row --------------------------------------------------------------------------------

def _message(item, field: str) -> dict:
    if isinstance(item, dict):
        role = item.get("role", item.get("from"))
        content = item.get("content", item.get("value"))
        if isinstance(role, str) and role.lower() in _ROLES and isinstance(content, str):
            return {"role": _ROLES[role.lower()], "content": content}
    raise RowError(field, f"not a chat message ({{role, content}} or {{from, value}}): {raw_text(item, 80)}")


def _messages(value, field: str) -> list[dict]:
    if isinstance(value, dict):
        return [_message(value, field)]
    if isinstance(value, list) and value:
        return [_message(item, field) for item in value]
    raise RowError(field, "expected a chat message or a non-empty list of them")


def _hh_turns(transcript: str, field: str) -> list[dict]:
    parts = _HH_TURN.split(transcript if transcript.startswith("\n\n") else "\n\n" + transcript)
    if not is_blank(parts[0]) or len(parts) < 3:
        raise RowError(field, "not an HH-RLHF transcript (\\n\\nHuman: ... \\n\\nAssistant: ...)")
    return [{"role": "user" if speaker == "Human" else "assistant", "content": text.strip()}
            for speaker, text in zip(parts[1::2], parts[2::2])]


def _split_answer(conversation: list[dict], field: str) -> tuple[list[dict], str]:
    if conversation[-1]["role"] != "assistant":
        raise RowError(field, "the conversation does not end with an assistant answer")
    return conversation[:-1], conversation[-1]["content"]


def _context_from(values: dict) -> list[dict] | None:
    if isinstance(values.get("conversations"), list):
        return _messages(values["conversations"], "conversations")
    prompt = values.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        return _messages(prompt, "prompt")
    return None


def _missing(values: dict, field: str) -> str:
    """Why a needed field is absent, with the columns the row has: a dataset of another shape
    (response_a/response_b, ...) is recognised from the first reject."""
    if field in values:
        return "no value (null)"
    return (f"missing field; the row has {sorted(values)}, expected chosen and rejected (with prompt or "
            "conversations, or as HH-RLHF transcripts or chat messages)")


def parse_preference_row(values: dict) -> PreferenceRow:
    for field in ("chosen", "rejected"):
        if values.get(field) is None:
            raise RowError(field, _missing(values, field))
    chosen, rejected = values["chosen"], values["rejected"]
    context = _context_from(values)

    if isinstance(chosen, str) and isinstance(rejected, str):
        if context is None:
            if "\n\nAssistant:" not in "\n\n" + chosen.lstrip("\n"):
                raise RowError("prompt", "missing field (and chosen is not an HH-RLHF transcript)")
            chosen_context, chosen_text = _split_answer(_hh_turns(chosen, "chosen"), "chosen")
            rejected_context, rejected_text = _split_answer(_hh_turns(rejected, "rejected"), "rejected")
            if chosen_context != rejected_context:
                raise RowError("rejected", "chosen and rejected transcripts differ before the last answer")
            return PreferenceRow(chosen_context, chosen_text, rejected_text, "hh")
        return PreferenceRow(context, chosen, rejected, "plain")

    chosen_messages, rejected_messages = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    chosen_context, chosen_text = _split_answer(chosen_messages, "chosen")
    rejected_context, rejected_text = _split_answer(rejected_messages, "rejected")
    if chosen_context != rejected_context:
        raise RowError("rejected", "chosen and rejected conversations differ before the last answer")
    if chosen_context:  # whole conversations: they carry the context themselves
        if context is not None and context != chosen_context and context != chosen_context[-len(context):]:
            raise RowError("prompt", "the prompt does not match the conversation in chosen")
        context = chosen_context
    if context is None:
        raise RowError("prompt", "missing field: no prompt, conversations, or conversation in chosen")
    return PreferenceRow(context, chosen_text, rejected_text, "messages")


def prompt_text(context: list[dict]) -> str:
    """What judges and dedup read: the user's request, or the transcript for a multi-turn context."""
    turns = [message for message in context if message["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)


def _validate(row: PreferenceRow) -> None:
    if not row.context or row.context[-1]["role"] != "user":
        raise RowError("prompt", "the conversation before the answers must end with a user turn")
    if is_blank(prompt_text(row.context)):  # zero-width spaces and byte-order marks too
        raise RowError("prompt", "empty prompt")
    for field, text in (("chosen", row.chosen), ("rejected", row.rejected)):
        if is_blank(text):
            raise RowError(field, "empty response")
    if strip_invisible(row.chosen) == strip_invisible(row.rejected):
        raise RowError("rejected", "chosen and rejected are identical")


# -- rows for what an import brings (import-ratings makes them the same way) ------------------------

def imported_prompt_row(key: str, text: str, source: str, source_row: int, into_pool: bool,
                        context: list[dict] | None = None) -> dict:
    """An imported prompt: not one generation answers unless into_pool; a multi-turn context is kept
    as messages for chat templates."""
    return {"prompt_id": key, "text": text, "source": source, "source_row": source_row, "external_id": None,
            "messages": json.dumps(context) if context and len(context) > 1 else None, "in_pool": into_pool}


@lru_cache(maxsize=16)
def _generator_name(source: str) -> str:  # once per source, not per candidate
    return f"import:{Path(source).name}"


def imported_candidate_row(prompt_key: str, answer: str, source: str, params: dict | None = None) -> dict:
    """An answer a dataset came with. Its id hashes the prompt and the text only, so the same answer
    imported twice, or by import-pairs and import-ratings, is one candidate."""
    return {"candidate_id": content_hash("candidate", prompt_key, IMPORT_GENERATOR_KEY, answer),
            "prompt_id": prompt_key, "generator_key": IMPORT_GENERATOR_KEY, "generator": _generator_name(source),
            "sample_index": 0, "text": answer, "finish_reason": None, "prompt_tokens": None,
            "completion_tokens": None, "params": json.dumps(params) if params else None}


# -- the stage --------------------------------------------------------------------------------------

# Source rows read before they are committed: the import holds one batch in memory whatever the
# file's size, and the store only while it commits one (other flows write in between).
BATCH_ROWS = 50_000
# A file of fewer rows is read and committed holding the store (well under a second): letting it go
# and taking it back for each commit would cost a small import more than its rows do.
HELD_ROWS = 5_000


class _Batch:
    """Rows read since the last commit; each prompt, candidate and pair as its first row brought it."""

    def __init__(self) -> None:
        self.prompts: dict[str, dict] = {}
        self.candidates: dict[str, dict] = {}
        self.pairs: dict[str, dict] = {}
        self.labels: dict[str, dict] = {}
        self.labelled_by: dict[str, SourceRow] = {}  # pair -> the row of its label (a contradiction's raw)
        self.repeats: list[tuple[str, str, SourceRow]] = []  # (pair, winner, row) of a pair's later rows
        self.rejects: list[dict] = []
        self.rows = 0


class _Totals:
    def __init__(self) -> None:
        self.kept = self.duplicates = self.rejected = 0
        self.new = {"prompts": 0, "candidates": 0, "pairs": 0, "reference_labels": 0, "rejects": 0}
        self.shapes: dict[str, int] = {}
        self.tally = RejectTally()


def import_preference_pairs(store: Store, source: str, fmt: str = "auto", split: str = "train",
                            into_pool: bool = False, max_reject_share: float = 0.5) -> StageReport:
    """Import a preference dataset as labelled pairs. Its prompts are not ones generation answers
    (they measure judges and reward models) unless `into_pool`. The file streams through in batches
    of BATCH_ROWS, a commit each with the store let go between them past HELD_ROWS: a cut-off import is completed
    by running it again (every id is a content hash). Fails (StageFailed, after storing what it
    read) as outcome.check_intake says: none kept, or more than max_reject_share rejected."""
    fmt = detect_format(source) if fmt == "auto" else fmt
    _columns, rows = read_source(source, fmt, split)
    report = StageReport(STAGE, details={"source": source, "format": fmt})
    totals, batch, stop = _Totals(), _Batch(), None

    def reject(item: SourceRow, field: str | None, reason: str) -> None:
        row = row_reject(source, item, field, reason)
        batch.rejects.append(row)
        totals.tally.add(row)
        totals.rejected += 1

    with ExitStack() as letting_go:
        for item in rows:
            report.count_in += 1
            batch.rows += 1
            if item.values is None:
                reject(item, item.field, item.error)
                stop = item if item.stops else stop
            else:
                _take_row(batch, totals, item, source, into_pool, reject)
            if report.count_in == HELD_ROWS:  # a long file: let the store go until each commit
                letting_go.enter_context(store.released())
            if batch.rows >= BATCH_ROWS:
                _commit(store, batch, totals, into_pool, reject)
                batch = _Batch()
        if report.count_in == 0:
            raise IngestError(f"{source}: no rows")
        _commit(store, batch, totals, into_pool, reject)

    report.count_out = totals.kept
    report.details.update(shapes=totals.shapes, rejected=totals.rejected, duplicates_in_source=totals.duplicates,
                          **{f"new_{table}": count for table, count in totals.new.items()})
    check_intake(STAGE, source, report.count_in, totals.kept + totals.duplicates, totals.tally, stop,
                 max_reject_share)
    return report.finish()


def _take_row(batch: _Batch, totals: _Totals, item: SourceRow, source: str, into_pool: bool, reject) -> None:
    """One readable source row into the batch: its prompt, two candidates, pair and label; or a reject."""
    try:
        parsed = parse_preference_row(item.values)
        _validate(parsed)
    except RowError as error:
        reject(item, error.field, str(error))
        return
    text = prompt_text(parsed.context)
    key = prompt_id(text)
    batch.prompts.setdefault(key, imported_prompt_row(key, text, source, item.row, into_pool, parsed.context))
    ids = {}
    for side, answer in (("chosen", parsed.chosen), ("rejected", parsed.rejected)):
        candidate = imported_candidate_row(key, answer, source)
        ids[side] = candidate["candidate_id"]
        batch.candidates.setdefault(candidate["candidate_id"], candidate)
    a, b = sorted((ids["chosen"], ids["rejected"]))
    pair_key = pair_id(a, b)
    winner = "a" if ids["chosen"] == a else "b"
    if pair_key in batch.labels:  # a duplicate or a contradiction of the pair's first row: told at commit
        batch.repeats.append((pair_key, winner, item))
        return
    batch.pairs[pair_key] = {"pair_id": pair_key, "prompt_id": key, "candidate_a": a, "candidate_b": b,
                             "strategy": "import"}
    batch.labels[pair_key] = {"reference_label_id": content_hash("reference", pair_key, source), "pair_id": pair_key,
                              "winner": winner, "source": "import", "dataset": source, "dataset_format": parsed.shape,
                              "source_row": item.row}
    batch.labelled_by[pair_key] = item
    totals.shapes[parsed.shape] = totals.shapes.get(parsed.shape, 0) + 1


def _commit(store: Store, batch: _Batch, totals: _Totals, into_pool: bool, reject) -> None:
    with store.transaction():
        _settle_repeats(store, batch, totals, reject)
        totals.kept += len(batch.labels)
        for table, rows in (("prompts", batch.prompts), ("candidates", batch.candidates), ("pairs", batch.pairs),
                            ("reference_labels", batch.labels)):
            totals.new[table] += store.insert_new(table, store.arrow_rows(table, list(rows.values())))
        if into_pool:
            put_in_pool(store, list(batch.prompts))
        totals.new["rejects"] += store.add_rejects(STAGE, batch.rejects)


def _settle_repeats(store: Store, batch: _Batch, totals: _Totals, reject) -> None:
    """A pair's first row gives its label: a later row with the same winner is a duplicate, one
    with the other winner a reject. The first row may be in an earlier batch, or an earlier import
    of this source, and so in the store; the stored row itself, imported again, stays as it is, and
    refused if its winner changed since."""
    first = {pair_key: (label["winner"], label["source_row"]) for pair_key, label in batch.labels.items()}
    by_label = {label["reference_label_id"]: pair_key for pair_key, label in batch.labels.items()}
    if by_label:
        store.con.register("_batch_labels", pa.table({"reference_label_id": pa.array(list(by_label), pa.string())}))
        try:
            stored = store.con.execute(
                "SELECT reference_label_id, winner, source_row FROM reference_labels "
                "WHERE reference_label_id IN (SELECT reference_label_id FROM _batch_labels)").fetchall()
        finally:
            store.con.unregister("_batch_labels")
        for label_id, winner, first_row in stored:
            pair_key = by_label[label_id]
            label = batch.labels[pair_key]
            if (winner, first_row) != (label["winner"], label["source_row"]):  # not this very row again
                batch.repeats.append((pair_key, label["winner"], batch.labelled_by.pop(pair_key)))
                del batch.labels[pair_key], batch.pairs[pair_key]
                totals.shapes[label["dataset_format"]] -= 1
                first[pair_key] = (winner, first_row)
    for pair_key, winner, item in batch.repeats:
        first_winner, first_row = first[pair_key]
        if winner != first_winner:
            stored_before = " as an earlier import of this source stored it" if first_row == item.row else ""
            reject(item, "chosen", f"contradicts row {first_row}{stored_before} (same pair, other winner)")
        else:
            totals.duplicates += 1
