"""The judge's calls for batch judges (backend.kind openai_batch): submitted as provider batches,
collected by this run or a later one.

A run first collects: every batch the store has submitted and not yet collected is polled; a
finished one's answers are stored exactly as online answers are (JudgeRun.keep: same judgment ids,
same rows), and its lines that failed, expired or could not be read are left to be asked again.
Then it submits what is still unanswered and not already waiting in a batch, in chunks under the
provider's limits, recording each batch (and the calls in it) in the store the moment it exists.
A killed run therefore polls its batches again instead of paying twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from prefcurate.core.store import Store
from prefcurate.curation.backends.openai_batch import BatchState, chunk_id, split_requests

log = logging.getLogger(__name__)
STAGE = "judge"


def waiting_in_batches(store: Store) -> set[str]:
    """The calls submitted in batches not yet collected."""
    return {row[0] for row in store.con.execute(
        "SELECT r.custom_id FROM provider_batch_requests r JOIN provider_batches b USING (batch_id) "
        "WHERE b.stage = ? AND b.collected_at IS NULL", [STAGE]).fetchall()}


@dataclass
class BatchCounts:
    submitted_batches: int = 0
    submitted_calls: int = 0
    collected_batches: int = 0
    collected_calls: int = 0
    unreadable_lines: int = 0
    given_up_calls: int = 0  # failed in batch_attempts batches: their failure stands
    by_status: dict = field(default_factory=dict)


class BatchCalls:
    def __init__(self, store: Store, run, judges: list, attempts: int):
        self.store, self.run, self.attempts = store, run, attempts
        self.judges = {judge.identity: judge for judge in judges}
        self.counts = BatchCounts()

    # -- what the store knows ------------------------------------------------------------------
    def open_batches(self) -> list[tuple[str, str]]:
        """(batch_id, backend) of submitted batches not yet collected, for this run's batch judges."""
        return [row for row in self.store.con.execute(
            "SELECT batch_id, backend FROM provider_batches WHERE stage = ? AND collected_at IS NULL "
            "ORDER BY submitted_at", [STAGE]).fetchall() if row[1] in self.judges]

    def pending_ids(self) -> set[str]:
        return waiting_in_batches(self.store)

    def _attempts(self) -> dict[str, int]:
        return dict(self.store.con.execute(
            "SELECT r.custom_id, count(*) FROM provider_batch_requests r JOIN provider_batches b USING (batch_id) "
            "WHERE b.stage = ? GROUP BY ALL", [STAGE]).fetchall())

    # -- collect -------------------------------------------------------------------------------
    def collect(self, planned: dict) -> int:
        """Poll every open batch; store the answers of finished ones. Returns the calls still waiting."""
        for batch_id, backend in self.open_batches():
            judge = self.judges[backend]
            state = judge.backend.poll(batch_id)
            self.counts.by_status[state.status] = self.counts.by_status.get(state.status, 0) + 1
            if not state.finished:
                self._set_status(state)
                continue
            self._store_answers(state, judge, planned)
        return len(self.pending_ids())

    def _store_answers(self, state: BatchState, judge, planned: dict) -> None:
        results, unreadable = judge.backend.download(state)
        asked = [row[0] for row in self.store.con.execute(
            "SELECT custom_id FROM provider_batch_requests WHERE batch_id = ?", [state.batch_id]).fetchall()]
        kept = 0
        for key in asked:
            result, call = results.get(key), planned.get(key)
            if result is None or call is None:  # expired or unreadable: asked again; no longer planned: dropped
                continue
            self.run.keep(call, result)
            kept += 1
        self.run.flush()  # the answers first, then the batch marked collected: a kill between repeats nothing
        with self.store.transaction():
            self._set_status(state)
            self.store.con.execute("UPDATE provider_batches SET collected_at = current_timestamp WHERE batch_id = ?",
                                   [state.batch_id])
        self.counts.collected_batches += 1
        self.counts.collected_calls += kept
        self.counts.unreadable_lines += unreadable
        missing = len(asked) - kept
        log.info("judge: batch %s %s: %d answers stored%s", state.batch_id, state.status, kept,
                 f", {missing} to ask again ({unreadable} unreadable lines)" if missing else "")

    def _set_status(self, state: BatchState) -> None:
        self.store.con.execute("UPDATE provider_batches SET status = ?, output_file_id = ?, error_file_id = ? "
                               "WHERE batch_id = ?", [state.status, state.output_file_id, state.error_file_id,
                                                      state.batch_id])

    # -- submit --------------------------------------------------------------------------------
    def submit(self, todo: list) -> int:
        """Submit the calls not answered and not already waiting. Returns the calls submitted."""
        pending, attempts = self.pending_ids(), self._attempts()
        fresh = []
        for call in todo:
            if call.judgment_id in pending:
                continue
            if attempts.get(call.judgment_id, 0) >= self.attempts:
                self.counts.given_up_calls += 1
                continue
            fresh.append(call)
        submitted = 0
        for identity, judge in self.judges.items():
            lines = [(call.judgment_id, judge.backend.request_line(call.request))
                     for call in fresh if call.judge.identity == identity]
            config = judge.config.backend
            for chunk in split_requests(lines, config.batch_max_requests, config.batch_max_bytes):
                submitted += self._submit_chunk(judge, chunk)
        return submitted

    def _submit_chunk(self, judge, chunk: list[tuple[str, bytes]]) -> int:
        keys = [key for key, _ in chunk]
        chunk_key = chunk_id(keys)
        if self.store.scalar("SELECT count(*) FROM provider_batches WHERE chunk_id = ? AND collected_at IS NULL",
                             [chunk_key]):
            return 0
        known = {row[0] for row in self.store.con.execute("SELECT batch_id FROM provider_batches WHERE chunk_id = ?",
                                                            [chunk_key]).fetchall()}
        state = judge.backend.find_submitted(chunk_key, known)  # created by a run killed before recording it
        input_file = "adopted"
        if state is None:
            state, input_file = judge.backend.submit(chunk_key, [line for _, line in chunk])
        else:
            log.info("judge: batch %s was submitted by a stopped run; adopted, not submitted again", state.batch_id)
        with self.store.transaction():
            self.store.upsert("provider_batches", pa.Table.from_pylist([{
                "batch_id": state.batch_id, "backend": judge.identity, "stage": STAGE, "chunk_id": chunk_key,
                "input_file_id": input_file, "n_requests": len(keys), "status": state.status,
                "output_file_id": state.output_file_id, "error_file_id": state.error_file_id}]))
            self.store.upsert("provider_batch_requests", pa.Table.from_pylist(
                [{"custom_id": key, "batch_id": state.batch_id} for key in keys]))
        self.counts.submitted_batches += 1
        self.counts.submitted_calls += len(keys)
        log.info("judge: submitted batch %s (%d calls) for %s", state.batch_id, len(keys), judge.name)
        return len(keys)
