"""One judge run's calls: planned over the panel (pairwise calls per pair, rating and ranking calls
per candidate or prompt), answers journaled as they arrive (a killed run's are replayed), stored as
they come, and the output format probed for `auto` judges."""

from __future__ import annotations

import itertools
import logging
from typing import Callable

from prefcurate.core.config import JudgeConfig
from prefcurate.core.journal import Journal, journal_path, read_journal
from prefcurate.core.progress import Progress
from prefcurate.core.store import Store
from prefcurate.curation.answer_writer import AnswerWriter
from prefcurate.curation.backends import ChatResult
from prefcurate.curation.backends.failure_watch import FailureWatch
from prefcurate.curation.judging.calls import CALL_FAILED, PlannedCall, answered_among, plan_calls
from prefcurate.curation.judging.score_calls import ScoreCall, ScoreTarget, plan_score_calls, score_targets
from prefcurate.curation.judging.score_rows import score_rows
from prefcurate.curation.judging.concurrent import complete_concurrently
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.panel import PanelJudge
from prefcurate.curation.judging.rows import judgment_row
from prefcurate.curation.judging.run_stats import RunStats
from prefcurate.curation.judging.score_answers import score_relevant_tokens
from prefcurate.curation.judging.verdicts import verdict_relevant_tokens

STAGE = "judge"
PROBE_CALLS = 8  # first answers of an `auto` judge that tell whether its endpoint enforces JSON
NOT_ENFORCED_SHARE = 0.5  # of them unparseable or truncated: JSON is not enforced, fall back to text
log = logging.getLogger(__name__)
Call = PlannedCall | ScoreCall


class JudgeRun:
    """Plan, ask what is not answered yet, store answers as they arrive."""

    def __init__(self, store: Store, panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig):
        self.store, self.panel, self.constitution, self.config = store, panel, constitution, config
        self.stats = RunStats()
        self.watches = {judge.name: FailureWatch(STAGE, f"judge {judge.name}", judge.config.backend) for judge in panel}
        self.fallbacks: dict[str, str] = {}  # judge -> why its output format fell back to text
        path = journal_path(store.path, "judgments")
        # replayed as the calls they answer are planned (a page of pairs at a time, or all at once)
        self._left_by_a_stopped_run = {entry["judgment_id"]: entry for entry in read_journal(path)}
        self.replayed = 0
        self.journal = Journal(path) if config.journal else None
        if self.journal is not None:  # kept in the journal until replayed: a kill before then loses none
            for key, entry in self._left_by_a_stopped_run.items():
                self.journal.adopt(key, entry)
            self.journal.committed(())  # rewritten at once: a torn last line must not precede this run's
        self.writer = AnswerWriter(store, self._store_rows, config.commit_every,
                                   committed=self._journal_committed if self.journal is not None else None)

    def _store_rows(self, answers: list[tuple[str, dict[str, list[dict]]]]) -> None:
        """answers: (call key, {table: rows}) as rows_for gives them."""
        by_table: dict[str, list[dict]] = {}
        for _key, stored in answers:
            for table, rows in stored.items():
                by_table.setdefault(table, []).extend(rows)
        for table, rows in by_table.items():
            if rows:
                self.store.upsert(table, self.store.arrow_rows(table, rows))

    def _journal_committed(self, answers: list[tuple[str, dict]]) -> None:
        self.journal.committed(key for key, _stored in answers)

    def rows_for(self, call: Call, result: ChatResult) -> dict[str, list[dict]]:
        """The rows one answer stores, by table: a judgment, or a score call and its scores."""
        if isinstance(call, ScoreCall):
            return score_rows(call, result, self.constitution, self.config)
        return {"judgments": [judgment_row(call, result, self.constitution, self.config)]}

    def plan(self, pairs: list[tuple], targets: list[ScoreTarget] | None = None) -> tuple[list[Call], list[Call]]:
        """(planned, todo) over the whole panel: pairwise judges' calls on the pairs, rating and
        ranking judges' on the targets (by default the candidates of every prompt with generated
        ones, and of the pairs; judging in pages plans them a page of prompts at a time)."""
        planned: list[Call] = [call for judge in self.panel if judge.mode == "pairwise"
                               for call in plan_calls(pairs, self.constitution, judge, self.config)]
        scorers = [judge for judge in self.panel if judge.mode in ("rating", "ranking")]
        if scorers:
            if targets is None:
                targets = score_targets(self.store, [pair[0] for pair in pairs])
            planned += [call for judge in scorers
                        for call in plan_score_calls(targets, self.constitution, judge, self.config)]
        if self._left_by_a_stopped_run:
            self._replay(planned)
        answered = self._answered([call.key for call in planned])
        return planned, [call for call in planned if call.key not in answered]

    def _answered(self, keys: list[str]) -> set[str]:
        if not self.store.is_released:
            return answered_among(self.store, keys)
        with self.store.transaction():  # let go between commits (judging in pages): taken for the lookup only
            return answered_among(self.store, keys)

    def probe_output_formats(self, pairs: list[tuple], todo: list[Call], targets: list[ScoreTarget] | None = None,
                             only: set[str] | None = None) -> tuple[list[Call], int]:
        """An endpoint asked for json_schema by `auto` may refuse it (HTTP 400), or accept it without
        enforcing it (answers come back truncated or unparseable). Ask a judge's first few calls and
        fall back to text in either case, saying so. Returns what is left to ask and how many calls
        the probes answered. `only`: the judges to probe (by name; judging in pages probes each
        judge once, on the page its first calls come)."""
        probed, fell_back = set(), False
        for judge in self.panel:
            if judge.config.output_format != "auto" or judge.output_format != "json_schema" or judge.format_confirmed:
                continue
            if only is not None and judge.name not in only:
                continue
            first = [call for call in todo if call.judge is judge][:PROBE_CALLS]
            if not first:
                continue
            answers = list(complete_concurrently(first[:1], self._on_result))  # one call: is it refused?
            if answers[0][1].error_kind == "bad_request":
                reason = "the endpoint refused response_format (HTTP 400)"
            else:
                # Real answers: kept (not re-asked) as each arrives, so that a first answer that stops the
                # stage (a refused key, a missing model) stops it before more calls are made, and answers
                # already in are stored when a later call stalls.
                rows = []
                for call, result in itertools.chain(answers, complete_concurrently(first[1:], self._on_result)):
                    rows.append(self.keep(call, result))
                    probed.add(call.key)
                answered = [row for row in rows if not (row["invalid_reason"] or "").startswith(CALL_FAILED)]
                unreadable = sum(row["error_kind"] in ("unparseable", "truncated") for row in answered)
                if not answered or unreadable / len(answered) < NOT_ENFORCED_SHARE:
                    continue
                reason = (f"{unreadable} of its first {len(answered)} JSON answers were unparseable or truncated: "
                          "the endpoint accepts response_format but does not enforce it")
            judge.output_format = "text"  # its calls change (and so do their ids): plan again
            self.fallbacks[judge.name] = reason
            log.warning("judge %s: %s; asking for free text instead (judge.panel[].output_format: text "
                        "skips this check)", judge.name, reason)
            fell_back = True
        self.flush()
        if fell_back:
            todo = self.plan(pairs, targets)[1]
        return [call for call in todo if call.key not in probed], len(probed)

    @property
    def _on_result(self) -> Callable[[Call, ChatResult], None] | None:
        return self._journal_answer if self.journal is not None else None

    def _journal_answer(self, call: Call, result: ChatResult) -> None:
        """In the backend's thread, as the answer arrives: one line, flushed to the OS. Of the token
        log-probabilities it keeps what the verdict or scores are read from (a replay reads the same)."""
        tokens = (score_relevant_tokens(result.token_logprobs) if isinstance(call, ScoreCall)
                  else verdict_relevant_tokens(result.token_logprobs))
        self.journal.append(call.key, {"judgment_id": call.key, **{name: getattr(result, name) for name in (
            "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "first_token_logprobs",
            "error")}, "token_logprobs": tokens})

    def _replay(self, planned: list[Call]) -> None:
        """Answers a run that died had received but not committed: read as if they had just arrived."""
        left = self._left_by_a_stopped_run
        rows = []
        for call in planned:
            entry = left.pop(call.key, None)
            if entry is not None:
                fields = {name: value for name, value in entry.items() if name != "judgment_id"}
                rows.append((call.key, self.rows_for(call, ChatResult(key=call.key, **fields))))
        if rows:
            with self.store.transaction():
                self._store_rows(rows)
            log.info("judge: %d answers a stopped run had received are stored from its journal", len(rows))
            if self.journal is not None:
                self.journal.committed(key for key, _stored in rows)  # in the store now
        self.replayed += len(rows)

    def forget_unplanned(self) -> None:
        """Once every call is planned: entries of a stopped run that none of them matched (the pairs
        or the constitution changed) answer nothing any more, and leave the journal."""
        if self.journal is not None:
            if self._left_by_a_stopped_run:
                self.journal.committed(list(self._left_by_a_stopped_run))
        else:
            journal_path(self.store.path, "judgments").unlink(missing_ok=True)
        self._left_by_a_stopped_run = {}

    def keep(self, call: Call, result: ChatResult) -> dict:
        """Store one answer; returns the call's row (the judgment, or the score call)."""
        stored = self.rows_for(call, result)
        row = (stored.get("judgments") or stored["score_calls"])[0]
        self.stats.add(row)
        self.writer.add((call.key, stored))
        self.watches[call.judge.name].observe(result)
        return row

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.flush()
        if self.journal is not None:
            self.journal.close(remove=True)

    def ask_in_tasks(self, calls: list[Call], run_batch: Callable[[str, Callable[[], None]], None],
                     progress: Progress, prefix: str = "") -> None:
        """Ask in tasks of judge.calls_per_task calls, each through run_batch (a Prefect task in flows)."""
        size = self.config.calls_per_task
        for start in range(0, len(calls), size):
            batch = calls[start:start + size]
            run_batch(f"{prefix}{start // size + 1}-of-{-(-len(calls) // size)}",
                      lambda batch=batch: self.ask(batch, progress))

    def ask(self, calls: list[Call], progress: Progress) -> None:
        try:
            for call, result in complete_concurrently(calls, self._on_result):
                self.keep(call, result)
                progress.update()
        finally:
            self.flush()  # whatever arrived before an interruption is kept
