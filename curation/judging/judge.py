"""Judge pairs with a panel of constitutional LLM judges.

Every pair is judged by every panel member, under the principles sampled for it, in both shown
orders (A/B and B/A). Each call's id hashes everything that determines its answer (model, template
and constitution versions, principle, order, texts, output format, sampling), so the id is also a
cache key: a re-run, or a run resumed after a kill, asks only what has no stored answer. Answers
are committed every `commit_every` results. Transport failures (timeouts, 429/5xx after retries)
are stored as invalid with their kind and asked again on the next run; answers that cannot be
parsed are stored as invalid with the reason and kept.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import queue
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from prefcurate.core.config import BATCH_KINDS, JudgeConfig, PanelJudgeConfig, judge_name
from prefcurate.core.hashing import content_hash
from prefcurate.core.journal import Journal, journal_path, read_journal
from prefcurate.core.progress import Progress
from prefcurate.core.report import StageFailed, StageReport
from prefcurate.core.store import Store
from prefcurate.curation import orientation
from prefcurate.curation.backends.failure_watch import FailureWatch
from prefcurate.curation.backends import ChatBackend, ChatRequest, ChatResult, backend_identity, make_backend
from prefcurate.curation.judging.constitution import Constitution, Principle
from prefcurate.curation.judging.pricing import price_of
from prefcurate.curation.judging.prompt import TEMPLATE_VERSION, judge_messages, response_format_for
from prefcurate.curation.upstream import why_empty
from prefcurate.curation.judging.verdicts import (
    VERDICTS,
    first_position_logit,
    answer_completeness,
    parse_self_confidence,
    parse_verdict,
    verdict_confidence,
    verdict_distribution,
    verdict_relevant_tokens,
    verdict_token_logprobs,
)

STAGE = "judge"
CALL_FAILED = "call_failed"
COMMIT_SECONDS = 5.0
PROBE_CALLS = 8  # first answers of an `auto` judge that tell whether its endpoint enforces JSON
NOT_ENFORCED_SHARE = 0.5  # of them unparseable or truncated: JSON is not enforced, fall back to text
log = logging.getLogger(__name__)


# -- the panel --------------------------------------------------------------------------------------

@dataclass
class PanelJudge:
    """One panel member as the stage sees it: its config, its identity, and how it is asked."""

    config: PanelJudgeConfig
    output_format: str  # resolved: json_schema / json_object / text / choices
    backend: ChatBackend | None = None  # None when only planning (estimates)
    format_confirmed: bool = False  # this judge's stored answers already used output_format

    @property
    def name(self) -> str:
        return judge_name(self.config)

    @property
    def identity(self) -> str:
        return "verifier" if self.is_verifier else backend_identity(self.config.backend)

    @property
    def is_verifier(self) -> bool:
        return self.config.kind == "verifier"

    @property
    def sampling(self) -> dict:
        return {"max_tokens": self.config.max_new_tokens, "temperature": self.config.temperature}


def resolve_output_format(config: PanelJudgeConfig, history: str | None = None) -> str:
    """auto: closed-answer scoring on local models; on endpoints json_schema, unless this judge
    already fell back to text (`history`, the format its stored judgments used)."""
    if config.output_format != "auto":
        return config.output_format
    if config.backend.kind == "transformers":
        return "choices"
    return history if history in ("text", "json_schema") else "json_schema"


def format_history(store: Store, judge: PanelJudgeConfig) -> str | None:
    row = store.one("SELECT output_format FROM judgments WHERE judge_model = ? AND output_format IS NOT NULL "
                    "ORDER BY created_at DESC LIMIT 1", [backend_identity(judge.backend)])
    return row[0] if row else None


@contextmanager
def open_panel(store: Store, config: JudgeConfig, models_dir: Path) -> Iterator[list[PanelJudge]]:
    """The configured panel with its backends open (closed on exit)."""
    with ExitStack() as backends:
        panel = []
        for member in config.panel:
            if member.kind == "verifier":  # checks, not a model: no backend to open
                panel.append(PanelJudge(member, "verifier"))
                continue
            history = format_history(store, member)
            output_format = resolve_output_format(member, history)
            panel.append(PanelJudge(member, output_format, backends.enter_context(make_backend(member.backend, models_dir)),
                                    format_confirmed=output_format == history))
        yield panel


# -- planning ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedCall:
    judgment_id: str
    pair_id: str
    judge: PanelJudge
    principle: Principle
    shown_order: str
    output_format: str  # as planned: the id hashes it, so the request must use the same one
    prompt: str
    first: str  # the response shown first
    second: str
    seed: int

    @cached_property
    def request(self) -> ChatRequest:
        """Built when asked: a re-run plans every call but sends only what is not stored."""
        return ChatRequest(
            key=self.judgment_id,
            messages=judge_messages(self.principle, self.prompt, self.first, self.second, self.output_format),
            max_tokens=self.judge.config.max_new_tokens, temperature=self.judge.config.temperature,
            seed=self.seed, want_logprobs=True,
            choices=VERDICTS if self.output_format == "choices" else None,
            response_format=response_format_for(self.output_format))

    @property
    def request_chars(self) -> int:
        return sum(len(message["content"]) for message in self.request.messages)


def plan_calls(pairs: list[tuple], constitution: Constitution, judge: PanelJudge,
               config: JudgeConfig) -> list[PlannedCall]:
    """pairs: (pair_id, prompt, text_a, text_b). Every call one judge needs for them."""
    planned = []
    sampling = {**judge.sampling, "seed": config.seed}
    for pair_key, prompt, text_a, text_b in pairs:
        for principle in constitution.select(pair_key, config.principle_sampling, config.principles_per_pair,
                                             config.seed):
            for order in ("ab", "ba"):
                first, second = (text_a, text_b) if order == "ab" else (text_b, text_a)
                judgment_id = content_hash(
                    "judgment", judge.identity, TEMPLATE_VERSION, judge.output_format, constitution.version,
                    principle.id, principle.text, order, prompt, first, second, sampling)
                planned.append(PlannedCall(judgment_id, pair_key, judge, principle, order, judge.output_format,
                                           prompt, first, second, config.seed))
    return planned


def pairs_to_judge(store: Store, max_imported: int | None = None) -> list[tuple]:
    """Every pair, except imported (reference-labelled) pairs beyond a seeded sample of max_imported."""
    if max_imported is None:
        return store.con.execute("SELECT pair_id, prompt, text_a, text_b FROM pair_texts ORDER BY pair_id").fetchall()
    return store.con.execute("""
        SELECT pair_id, prompt, text_a, text_b FROM pair_texts
        WHERE pair_id NOT IN (SELECT pair_id FROM reference_labels)
           OR pair_id IN (SELECT pair_id FROM (SELECT DISTINCT pair_id FROM reference_labels)
                          ORDER BY md5('judged-imported:' || pair_id) LIMIT $n)
        ORDER BY pair_id""", {"n": max_imported}).fetchall()


def answered_ids(store: Store) -> set[str]:
    """Calls with a stored answer (valid or unparseable); transport failures are asked again."""
    return {row[0] for row in store.con.execute(
        "SELECT judgment_id FROM judgments WHERE coalesce(invalid_reason, '') NOT LIKE ?",
        [f"{CALL_FAILED}%"]).fetchall()}


# -- reading an answer ------------------------------------------------------------------------------

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
        "valid": False, "invalid_reason": None, "error_kind": None, "cut_answer": False,
        "request_chars": call.request_chars,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "cost_usd": price_of(config, call.judge.config, result.prompt_tokens, result.completion_tokens),
        "latency_ms": result.latency_ms,
    }
    if result.error:
        row.update(invalid_reason=f"{CALL_FAILED}: {result.error}", error_kind=result.error_kind)
        return row
    cut, unfinished = answer_completeness(result.finish_reason)
    if unfinished:
        row.update(invalid_reason=f"unfinished: {unfinished}", error_kind="unfinished")
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


# -- running ----------------------------------------------------------------------------------------

def complete_concurrently(calls: list[PlannedCall], on_result: Callable[[PlannedCall, ChatResult], None] | None = None,
                          ) -> Iterator[tuple[PlannedCall, ChatResult]]:
    """Each judge's backend works through its own calls in its own thread (one endpoint does not
    wait for another); results come back as they finish. `on_result` sees each one the moment it
    arrives, in that thread (the journal: durable before the consumer gets to it)."""
    by_judge: dict[str, list[PlannedCall]] = {}
    for call in calls:
        by_judge.setdefault(call.judge.name, []).append(call)
    done: queue.Queue = queue.Queue(maxsize=1024)
    finished = object()
    stop = threading.Event()  # the consumer stopped early (an endpoint failing, Ctrl-C): stop asking

    def send(item) -> bool:
        while not stop.is_set():
            try:
                done.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(judge_calls: list[PlannedCall]) -> None:
        by_id = {call.judgment_id: call for call in judge_calls}
        results = judge_calls[0].judge.backend.complete(call.request for call in judge_calls)
        try:
            for result in results:
                if on_result is not None:
                    on_result(by_id[result.key], result)
                if not send((by_id[result.key], result)):
                    break
        except BaseException as error:  # a backend that breaks (not one failed call) ends the stage
            send(error)
        finally:
            results.close()  # cancels what the backend still has queued
            send(finished)

    # Each worker runs in a copy of this thread's context: what it logs (a backend's retries) belongs
    # to the same Prefect run, instead of warning that it has none.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, group), daemon=True,
                                name=f"judge-{name}") for name, group in by_judge.items()]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = done.get()
            if item is finished:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()


@dataclass
class RunStats:
    """What this run spent: for the stage report."""

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


def run_directly(label: str, work: Callable[[], None]) -> None:
    work()


class JudgeRun:
    """One judge stage run: plan, ask what is not answered yet, commit as answers arrive."""

    def __init__(self, store: Store, panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig):
        self.store, self.panel, self.constitution, self.config = store, panel, constitution, config
        self.stats = RunStats()
        self.watches = {judge.name: FailureWatch(STAGE, f"judge {judge.name}", judge.config.backend) for judge in panel}
        self.fallbacks: dict[str, str] = {}  # judge -> why its output format fell back to text
        path = journal_path(store.path, "judgments")
        self._left_by_a_stopped_run = read_journal(path)  # replayed once the calls are planned
        self.replayed = 0
        self.journal = Journal(path) if config.journal else None
        self._buffer: list[dict] = []
        self._flushed_at = time.monotonic()

    def plan(self, pairs: list[tuple]) -> tuple[list[PlannedCall], list[PlannedCall]]:
        """(planned, todo) over the whole panel."""
        planned = [call for judge in self.panel if not judge.is_verifier
                   for call in plan_calls(pairs, self.constitution, judge, self.config)]
        if self._left_by_a_stopped_run:
            self._replay(planned)
        answered = answered_ids(self.store)
        return planned, [call for call in planned if call.judgment_id not in answered]

    def probe_output_formats(self, pairs: list[tuple], todo: list[PlannedCall]) -> tuple[list[PlannedCall], int]:
        """An endpoint asked for json_schema by `auto` may refuse it (HTTP 400), or accept it without
        enforcing it (answers come back truncated or unparseable). Ask a judge's first few calls and
        fall back to text in either case, saying so. Returns what is left to ask and how many calls
        the probes answered."""
        probed, fell_back = set(), False
        for judge in self.panel:
            if judge.config.output_format != "auto" or judge.output_format != "json_schema" or judge.format_confirmed:
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
                    probed.add(call.judgment_id)
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
            todo = self.plan(pairs)[1]
        return [call for call in todo if call.judgment_id not in probed], len(probed)

    @property
    def _on_result(self) -> Callable[[PlannedCall, ChatResult], None] | None:
        return self._journal_answer if self.journal is not None else None

    def _journal_answer(self, call: PlannedCall, result: ChatResult) -> None:
        """In the backend's thread, as the answer arrives: one line, flushed to the OS. Of the token
        log-probabilities it keeps what the verdict is read from (a replay reads the same verdict)."""
        self.journal.append(call.judgment_id, {"judgment_id": call.judgment_id, **{name: getattr(result, name) for name in (
            "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "first_token_logprobs",
            "error")}, "token_logprobs": verdict_relevant_tokens(result.token_logprobs)})

    def _replay(self, planned: list[PlannedCall]) -> None:
        """Answers a run that died had received but not committed: read as if they had just arrived."""
        by_id = {call.judgment_id: call for call in planned}
        entries = self._left_by_a_stopped_run
        self._left_by_a_stopped_run = []
        rows = [judgment_row(by_id[entry["judgment_id"]], ChatResult(key=entry.pop("judgment_id"), **entry),
                             self.constitution, self.config)
                for entry in entries if entry["judgment_id"] in by_id]
        if rows:
            with self.store.transaction():
                self.store.upsert("judgments", pa.Table.from_pylist(rows, schema=JUDGMENT_SCHEMA))
            log.info("judge: %d answers a stopped run had received are stored from its journal", len(rows))
        if self.journal is not None:
            self.journal.committed(())  # the stopped run's entries are in the store now
        else:
            journal_path(self.store.path, "judgments").unlink(missing_ok=True)
        self.replayed = len(rows)

    def keep(self, call: PlannedCall, result: ChatResult) -> dict:
        row = judgment_row(call, result, self.constitution, self.config)
        self.stats.add(row)
        self._buffer.append(row)
        # Commit every `commit_every` answers, and at least every few seconds on a slow endpoint.
        if len(self._buffer) >= self.config.commit_every or time.monotonic() - self._flushed_at > COMMIT_SECONDS:
            self.flush()
        self.watches[call.judge.name].observe(result)
        return row

    def flush(self) -> None:
        if self._buffer:
            with self.store.transaction():
                self.store.upsert("judgments", pa.Table.from_pylist(self._buffer, schema=JUDGMENT_SCHEMA))
            if self.journal is not None:
                self.journal.committed(row["judgment_id"] for row in self._buffer)
            self._buffer.clear()
            self.store.publish_snapshot()  # every few seconds at most: for readers
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self.journal is not None:
            self.journal.close(remove=True)

    def ask_in_tasks(self, calls: list[PlannedCall], run_batch: Callable[[str, Callable[[], None]], None],
                     progress: Progress, prefix: str = "") -> None:
        """Ask in tasks of judge.calls_per_task calls, each through run_batch (a Prefect task in flows)."""
        size = self.config.calls_per_task
        for start in range(0, len(calls), size):
            batch = calls[start:start + size]
            run_batch(f"{prefix}{start // size + 1}-of-{-(-len(calls) // size)}",
                      lambda batch=batch: self.ask(batch, progress))

    def ask(self, calls: list[PlannedCall], progress: Progress) -> None:
        try:
            for call, result in complete_concurrently(calls, self._on_result):
                self.keep(call, result)
                progress.update()
        finally:
            self.flush()  # whatever arrived before an interruption is kept


def judge_pairs(store: Store, panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig,
                run_batch: Callable[[str, Callable[[], None]], None] = run_directly) -> StageReport:
    """Judge every pair with every panel member. `run_batch(label, work)` runs one batch of calls
    (the Prefect flow wraps each in a task); by default it just calls `work()`. Batch judges' calls
    go to provider batches (curation/provider_batches.py): collected if finished, else submitted; the report's
    batches.pending_calls says how many still wait."""
    pairs = pairs_to_judge(store, config.max_imported_pairs)
    if not pairs:
        raise StageFailed(why_empty(store, STAGE))
    run = JudgeRun(store, panel, constitution, config)
    planned, todo = run.plan(pairs)
    report = StageReport(STAGE, count_in=len(pairs), details={
        "judges": {judge.name: {"model": judge.identity, "output_format": judge.output_format} for judge in panel},
        "template_version": TEMPLATE_VERSION, "constitution_version": constitution.version,
        "principle_sampling": config.principle_sampling,
        "calls_planned": len(planned), "calls_cached": len(planned) - len(todo),
        "replayed_from_journal": run.replayed})

    verifiers = [judge for judge in panel if judge.is_verifier]
    if verifiers:
        report.details["verifiers"] = _run_verifiers(store, verifiers)
    allowed = None  # every call, unless a budget says otherwise
    if config.max_cost_usd is not None:
        allowed = _apply_budget(store, config, panel, planned, todo, report)
        todo = [call for call in todo if call.judgment_id in allowed]
    batch_judges = [judge for judge in panel if not judge.is_verifier and judge.config.backend.kind in BATCH_KINDS]
    todo = [call for call in todo if call.judge not in batch_judges]
    with Progress("judge", len(todo)) as progress:
        try:
            if batch_judges:
                report.details["batches"] = _judge_in_batches(store, run, planned, batch_judges, allowed)
            if config.cascade is not None:
                report.details["cascade"] = _judge_in_cascade(store, run, pairs, constitution, config, allowed,
                                                              run_batch, progress)
                todo = []  # the cascade asked what each level needed
            else:
                from prefcurate.curation.judging.cascade import clear_cascade

                clear_cascade(store)
            if todo:
                todo, probed = run.probe_output_formats(pairs, todo)
                progress.update(probed)
            run.ask_in_tasks(todo, run_batch, progress)
        finally:
            run.close()

    for judge in panel:  # a fallback chosen during the run shows in the report
        report.details["judges"][judge.name]["output_format"] = judge.output_format
        if judge.name in run.fallbacks:
            report.details["judges"][judge.name]["format_fallback"] = run.fallbacks[judge.name]
    failed = run.stats.judges_without_a_verdict(
        {row[0] for row in store.con.execute("SELECT DISTINCT judge FROM judgments WHERE valid").fetchall()})
    if failed:
        raise StageFailed("judge: " + "; ".join(failed) + " (the answers are stored in judgments; the judge report "
                          "and `SELECT invalid_reason FROM judgments WHERE NOT valid` show them)")
    labelled = store.one(
        "SELECT count(*) FILTER (WHERE n_votes > 0), count(*) FILTER (WHERE position_consistent) FROM pair_labels")
    report.count_out = labelled[0]
    stats = run.stats.summary()
    calls_made = sum(stats["outcomes"].values())
    report.details.update(calls_made=calls_made, valid=stats["outcomes"].get("valid", 0),
                          invalid=calls_made - stats["outcomes"].get("valid", 0),
                          position_consistent_pairs=labelled[1],
                          position_consistency_by_judge=dict(store.con.execute(
                              "SELECT judge, round(consistency_rate, 3) FROM judge_position_bias").fetchall()),
                          **stats)
    return report.finish()


def _judge_in_cascade(store: Store, run: JudgeRun, pairs: list[tuple], constitution: Constitution,
                      config: JudgeConfig, allowed: set[str] | None, run_batch, progress: Progress) -> dict:
    """Each level's judge asked only about the pairs the levels before it left open (and the gold)."""
    from prefcurate.curation.judging.cascade import run_cascade

    judges = {judge.name: judge for judge in run.panel if not judge.is_verifier}

    def ask(name: str, pair_ids: list[str]) -> None:
        wanted = set(pair_ids)
        calls = plan_calls([pair for pair in pairs if pair[0] in wanted], constitution, judges[name], config)
        answered = answered_ids(store)
        todo = [call for call in calls if call.judgment_id not in answered
                and (allowed is None or call.judgment_id in allowed)]
        log.info("judge: cascade level %s: %d pairs, %d calls to make", name, len(wanted), len(todo))
        run.ask_in_tasks(todo, run_batch, progress, prefix=f"{name}-")

    summary = run_cascade(store, config.cascade, [pair[0] for pair in pairs], ask, config.cascade.humans)
    for level in summary["levels"]:
        if level["note"]:
            log.warning("judge: cascade level %d (%s) accepts nothing: %s", level["level"], level["judge"], level["note"])
        else:
            log.info("judge: cascade level %d (%s): threshold %.3f, agreement with gold %.3f (lower bound %.3f) on "
                     "%d gold pairs; accepted %d of %d pairs", level["level"], level["judge"], level["threshold"],
                     level["agreement"], level["agreement_low"], level["gold_accepted"], level["pairs_accepted"],
                     level["pairs_seen"])
    return summary


def _run_verifiers(store: Store, verifiers: list[PanelJudge]) -> dict:
    """Check the pairs whose prompts declare checks; their verdicts are stored as judgments."""
    from prefcurate.curation.verifiers.verify import verify_pairs

    summary = {}
    for verifier in verifiers:
        rows, summary[verifier.name] = verify_pairs(store, verifier.name, verifier.config.verifier)
        if rows:
            with store.transaction():
                store.upsert("judgments", pa.Table.from_pylist(rows, schema=JUDGMENT_SCHEMA))
        log.info("judge: verifier %s checked %d pairs (%s)", verifier.name, len(rows),
                 ", ".join(f"{domain}: {counts['decisive']} decisive of {counts['pairs']}"
                           for domain, counts in summary[verifier.name]["by_domain"].items()) or "nothing new")
    return summary


def _apply_budget(store: Store, config: JudgeConfig, panel: list[PanelJudge], planned: list[PlannedCall],
                  todo: list[PlannedCall], report: StageReport) -> set[str]:
    """The ids of the calls judge.max_cost_usd allows: those waiting in batches, and a prefix of the rest."""
    from prefcurate.curation.judging.budget import check_budget
    from prefcurate.curation.provider_batches import waiting_in_batches

    waiting = waiting_in_batches(store, STAGE)
    check = check_budget(store, config, panel, [call for call in todo if call.judgment_id not in waiting],
                         [call for call in planned if call.judgment_id in waiting])
    report.details["budget"] = check.figures
    if check.refused:
        figures = check.figures
        log.warning("judge: %d calls not asked: they would take the spend past judge.max_cost_usd ($%.2f): spent "
                    "$%.4f, waiting in batches at most $%.4f, this run at most $%.4f", check.refused,
                    config.max_cost_usd, figures["spent_usd"], figures["waiting_in_batches_usd"],
                    figures["this_run_at_most_usd"])
    return waiting | {call.judgment_id for call in check.allowed}


def _judge_in_batches(store: Store, run: JudgeRun, planned: list[PlannedCall], judges: list[PanelJudge],
                      allowed: set[str] | None) -> dict:
    """Collect the batch judges' finished batches, then submit what is unanswered (and allowed)."""
    from prefcurate.curation.provider_batches import BatchCounts, ProviderBatches, batch_summary

    by_id = {call.judgment_id: call for call in planned}

    def keep(key: str, result) -> bool:
        if key not in by_id:  # planned no more (the constitution or the pairs changed)
            return False
        run.keep(by_id[key], result)
        return True

    counts = BatchCounts()
    for judge in judges:
        batches = ProviderBatches(store, STAGE, judge.backend, judge.name)
        batches.collect(keep, run.flush)
        answered = answered_ids(store)
        batches.submit([call.request for call in planned if call.judge is judge and call.judgment_id not in answered
                        and (allowed is None or call.judgment_id in allowed)], judge.config.backend.batch_attempts)
        counts.add(batches.counts)
    return batch_summary(store, STAGE, counts)


JUDGMENT_SCHEMA = pa.schema([
    ("judgment_id", pa.string()), ("pair_id", pa.string()), ("judge", pa.string()), ("judge_model", pa.string()),
    ("principle_id", pa.string()), ("principle_axis", pa.string()), ("shown_order", pa.string()),
    ("template_version", pa.string()), ("constitution_version", pa.string()), ("output_format", pa.string()),
    ("sampling", pa.string()), ("raw_response", pa.string()), ("verdict_shown", pa.string()),
    ("winner", pa.string()), ("confidence", pa.float64()), ("confidence_source", pa.string()),
    ("self_confidence", pa.float64()), ("verdict_probs", pa.string()), ("preference_logit", pa.float64()),
    ("valid", pa.bool_()), ("invalid_reason", pa.string()), ("error_kind", pa.string()),
    ("request_chars", pa.int32()), ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
    ("cost_usd", pa.float64()), ("latency_ms", pa.float64()), ("cut_answer", pa.bool_()),
])
