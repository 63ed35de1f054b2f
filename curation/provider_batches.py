"""Calls sent through a batch backend (backend.kind openai_batch or batch_files), for any stage:
submitted as provider batches, collected by this run or a later one.

A run first collects: every batch the store holds as submitted and not yet collected is polled; a
finished one's answers go to the stage's own `keep` (so they are stored exactly as online answers
are: same ids, same rows), and its lines that failed, expired or could not be read are left to be
asked again. Then it submits what is still unanswered and not already waiting, in chunks under the
provider's limits, recording each batch (and the calls in it) in the store the moment it exists.
A killed run therefore polls its batches again instead of paying twice; a batch created by a run
killed before it could record it is found by its chunk id and adopted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

import pyarrow as pa

from prefcurate.core.store import Store
from prefcurate.curation.backends.base import ChatRequest, ChatResult
from prefcurate.curation.backends.openai_batch import BatchState, chunk_id, split_requests

log = logging.getLogger(__name__)


def waiting_in_batches(store: Store, stage: str, backend: str | None = None) -> set[str]:
    """The calls of a stage (of one backend, if given) submitted in batches not yet collected."""
    return {row[0] for row in store.con.execute(
        "SELECT r.custom_id FROM provider_batch_requests r JOIN provider_batches b USING (batch_id) "
        "WHERE b.stage = ? AND (?::VARCHAR IS NULL OR b.backend = ?) AND b.collected_at IS NULL",
        [stage, backend, backend]).fetchall()}


@dataclass
class BatchCounts:
    submitted_batches: int = 0
    submitted_calls: int = 0
    collected_batches: int = 0
    collected_calls: int = 0
    unreadable_lines: int = 0
    given_up_calls: int = 0  # failed in batch_attempts batches: their failure stands

    def add(self, other: BatchCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class ProviderBatches:
    """One batch backend's batches for one stage."""

    def __init__(self, store: Store, stage: str, backend, label: str):
        self.store, self.stage, self.backend, self.label = store, stage, backend, label
        self.counts = BatchCounts()

    def open_batches(self) -> list[str]:
        return [row[0] for row in self.store.con.execute(
            "SELECT batch_id FROM provider_batches WHERE stage = ? AND backend = ? AND collected_at IS NULL "
            "ORDER BY submitted_at", [self.stage, self.backend.identity]).fetchall()]

    def pending_ids(self) -> set[str]:
        return waiting_in_batches(self.store, self.stage, self.backend.identity)

    # -- collect -------------------------------------------------------------------------------
    def collect(self, keep: Callable[[str, ChatResult], bool], flush: Callable[[], None]) -> None:
        """Poll every open batch; hand a finished one's answers to `keep` (False: no longer wanted),
        `flush` them, and only then mark the batch collected (a kill in between repeats nothing)."""
        for batch_id in self.open_batches():
            state = self.backend.poll(batch_id)
            self._set_status(state)
            if not state.finished:
                continue
            results, unreadable = self.backend.download(state)
            asked = [row[0] for row in self.store.con.execute(
                "SELECT custom_id FROM provider_batch_requests WHERE batch_id = ?", [batch_id]).fetchall()]
            kept = sum(1 for key in asked if key in results and keep(key, results[key]))
            flush()
            with self.store.transaction():
                self.store.con.execute("UPDATE provider_batches SET collected_at = current_timestamp "
                                       "WHERE batch_id = ?", [batch_id])
            self.counts.collected_batches += 1
            self.counts.collected_calls += kept
            self.counts.unreadable_lines += unreadable
            missing = len(asked) - kept
            log.info("%s: batch %s %s: %d answers stored%s", self.stage, batch_id, state.status, kept,
                     f", {missing} to ask again ({unreadable} unreadable lines)" if missing else "")

    def _set_status(self, state: BatchState) -> None:
        self.store.con.execute("UPDATE provider_batches SET status = ?, output_file_id = ?, error_file_id = ? "
                               "WHERE batch_id = ?", [state.status, state.output_file_id, state.error_file_id,
                                                      state.batch_id])

    # -- submit --------------------------------------------------------------------------------
    def submit(self, requests: list[ChatRequest], attempts: int) -> int:
        """Submit the requests not already waiting, each at most `attempts` times over all runs.
        Returns the calls submitted."""
        pending = self.pending_ids()
        tried = dict(self.store.con.execute(
            "SELECT r.custom_id, count(*) FROM provider_batch_requests r JOIN provider_batches b USING (batch_id) "
            "WHERE b.stage = ? AND b.backend = ? GROUP BY ALL", [self.stage, self.backend.identity]).fetchall())
        lines = []
        for request in requests:
            if request.key in pending:
                continue
            if tried.get(request.key, 0) >= attempts:
                self.counts.given_up_calls += 1
                continue
            lines.append((request.key, self.backend.request_line(request)))
        config = self.backend.config
        return sum(self._submit_chunk(chunk) for chunk in split_requests(lines, config.batch_max_requests,
                                                                         config.batch_max_bytes))

    def _submit_chunk(self, chunk: list[tuple[str, bytes]]) -> int:
        keys = [key for key, _ in chunk]
        chunk_key = chunk_id(keys)
        known = {row[0] for row in self.store.con.execute(
            "SELECT batch_id FROM provider_batches WHERE chunk_id = ?", [chunk_key]).fetchall()}
        state = self.backend.find_submitted(chunk_key, known)  # created by a run killed before recording it
        input_file = "adopted"
        if state is None:
            state, input_file = self.backend.submit(chunk_key, [line for _, line in chunk])
        else:
            log.info("%s: batch %s was submitted by a stopped run; adopted, not submitted again", self.stage,
                     state.batch_id)
        with self.store.transaction():
            self.store.upsert("provider_batches", pa.Table.from_pylist([{
                "batch_id": state.batch_id, "backend": self.backend.identity, "stage": self.stage,
                "chunk_id": chunk_key, "input_file_id": input_file, "n_requests": len(keys), "status": state.status,
                "output_file_id": state.output_file_id, "error_file_id": state.error_file_id}]))
            self.store.upsert("provider_batch_requests", pa.Table.from_pylist(
                [{"custom_id": key, "batch_id": state.batch_id} for key in keys]))
        self.counts.submitted_batches += 1
        self.counts.submitted_calls += len(keys)
        log.info("%s: submitted batch %s (%d calls) for %s", self.stage, state.batch_id, len(keys), self.label)
        return len(keys)


def batch_summary(store: Store, stage: str, counts: BatchCounts) -> dict:
    """The stage report's `batches`: what this run did, and what still waits."""
    open_batches = store.scalar("SELECT count(*) FROM provider_batches WHERE stage = ? AND collected_at IS NULL",
                                [stage])
    return {"pending_calls": len(waiting_in_batches(store, stage)), "open_batches": open_batches, **asdict(counts)}
