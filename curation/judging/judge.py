"""The judge stage: every pair judged by every pairwise panel member, every candidate scored by every
rating and ranking member, and the path each member's calls take.

LLM judges are asked online (curation/judging/run.py: planned calls, journal, commits as answers
arrive) unless their backend is a batch one (provider batches, curation/provider_batches.py); under
judge.cascade a cheap judge is asked first and a stronger one only where it was unsure
(curation/judging/cascade.py); verifiers check the pairs whose prompts declare checks
(curation/verifiers/); judge.max_cost_usd caps what is asked (curation/judging/budget.py).

Each call's id hashes everything that determines its answer (curation/judging/calls.py), so the id
is also a cache key: a re-run, or a run resumed after a kill, asks only what has no stored answer.
Transport failures are stored as invalid with their kind and asked again on the next run; answers
that cannot be read are stored as invalid with the reason and kept (curation/judging/rows.py).
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Callable

from prefcurate.core.config import BATCH_KINDS, JudgeConfig
from prefcurate.core.progress import Progress
from prefcurate.core.stage_report import StageFailed, StageReport
from prefcurate.core.store import SnapshotReader, Store
from prefcurate.curation.judging.budget import check_budget
from prefcurate.curation.judging.calls import (PlannedCall, answered_ids, count_judged_pairs, judged_pair_ids,
                                               pair_pages, pairs_to_judge, plan_calls)
from prefcurate.curation.judging.cascade import clear_cascade, run_cascade
from prefcurate.curation.judging.constitution import Constitution
from prefcurate.curation.judging.panel import PanelJudge
from prefcurate.curation.judging.prompt import TEMPLATE_VERSION
from prefcurate.curation.judging.run import STAGE, JudgeRun
from prefcurate.curation.judging.score_calls import (ScoreCall, ScoreTarget, plan_score_calls, score_target_pages,
                                                     score_targets)
from prefcurate.curation.provider_batches import BatchCounts, ProviderBatches, batch_summary, waiting_in_batches
from prefcurate.curation.upstream import why_empty
from prefcurate.curation.verifiers.verify import verify_pairs

log = logging.getLogger(__name__)


def run_directly(label: str, work: Callable[[], None]) -> None:
    work()


def judge_pairs(store: Store, panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig,
                run_batch: Callable[[str, Callable[[], None]], None] = run_directly) -> StageReport:
    """Judge every pair with every panel member. `run_batch(label, work)` runs one batch of calls
    (the Prefect flow wraps each in a task); by default it just calls `work()`. Batch judges' calls
    go to provider batches (curation/provider_batches.py): collected if finished, else submitted; the report's
    batches.pending_calls says how many still wait. Past one page of pairs, online pairwise judges
    plan and ask a page at a time (_judge_in_pages)."""
    if _pages_pairs(store, panel, config):
        return _judge_in_pages(store, panel, constitution, config, run_batch)
    pairs = pairs_to_judge(store, config.max_imported_pairs)
    scorers = [judge for judge in panel if judge.mode in ("rating", "ranking")]
    if not pairs and not scorers:
        raise StageFailed(why_empty(store, STAGE))
    run = JudgeRun(store, panel, constitution, config)
    planned, todo = run.plan(pairs)
    run.forget_unplanned()
    score_calls = [call for call in planned if isinstance(call, ScoreCall)]
    if not pairs and not score_calls:
        raise StageFailed(why_empty(store, STAGE))
    report = _new_report(panel, constitution, config, count_in=len(pairs))
    report.details.update({
        "candidates_to_score": len({candidate for call in score_calls for candidate, _ in call.shown}),
        "calls_planned": len(planned), "calls_cached": len(planned) - len(todo),
        "replayed_from_journal": run.replayed})

    verifiers = [judge for judge in panel if judge.is_verifier]
    if verifiers:
        report.details["verifiers"] = _run_verifiers(store, verifiers)
    allowed = None  # every call, unless a budget says otherwise
    if config.max_cost_usd is not None:
        allowed = _apply_budget(store, config, panel, planned, todo, report)
        todo = [call for call in todo if call.key in allowed]
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
                clear_cascade(store)
            if todo:
                todo, probed = run.probe_output_formats(pairs, todo)
                progress.update(probed)
            with store.released():  # other flows write between this run's commits (store.released)
                run.ask_in_tasks(todo, run_batch, progress)
        finally:
            run.close()

    return _finish_report(store, run, panel, report)


def _pages_pairs(store: Store, panel: list[PanelJudge], config: JudgeConfig) -> bool:
    """Whether this run plans and asks a page at a time (_judge_in_pages): more pairs (or, with
    rating or ranking judges, candidates) than one page, online judges only (a provider batch is
    submitted whole), no cascade or budget (they plan over every call), and a read snapshot to
    stream the pages from while the store is let go."""
    judges = [judge for judge in panel if not judge.is_verifier]
    scored = any(judge.mode in ("rating", "ranking") for judge in judges)
    return (store.snapshot_every_s is not None and config.cascade is None and config.max_cost_usd is None
            and all(judge.config.backend.kind not in BATCH_KINDS for judge in judges)
            and max(store.count("pairs"), store.count("candidates") if scored else 0) > config.page_pairs)


def _judge_in_pages(store: Store, panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig,
                    run_batch: Callable[[str, Callable[[], None]], None]) -> StageReport:
    """Millions of pairs in the memory of one page: the pairs stream from the read snapshot (made as
    new as the store first), and each page's calls are planned, looked up among stored answers,
    asked and dropped before the next page is read; then, for rating and ranking judges, the
    candidates to score, a page of prompts at a time. Resuming works as in one go: a stopped run's
    journal entries are replayed as the pages that planned their calls come."""
    run = JudgeRun(store, panel, constitution, config)
    report = _new_report(panel, constitution, config, count_in=0)
    report.details.update(candidates_to_score=0, calls_planned=0, calls_cached=0)
    verifiers = [judge for judge in panel if judge.is_verifier]
    if verifiers:
        report.details["verifiers"] = _run_verifiers(store, verifiers)
    clear_cascade(store)  # as in one go: a cascade's old decisions must not choose labels any more
    store.snapshot_up_to_date()
    probed: set[str] = set()  # judges whose first calls have been asked (probe_output_formats)
    with SnapshotReader(store.path, store.memory_limit) as snapshot, Progress("judge", 0) as progress, \
            closing(pair_pages(snapshot, config.max_imported_pairs, config.page_pairs)) as pages:
        try:
            # let go for the whole run: the store is taken only to commit answers and to look a
            # page's calls up, so planning a page never holds it and no page waits to take it back
            with store.released():
                def ask(prefix: str, pairs: list[tuple], targets: list[ScoreTarget]) -> None:
                    planned, todo = run.plan(pairs, targets)
                    report.details["calls_planned"] += len(planned)
                    report.details["calls_cached"] += len(planned) - len(todo)
                    # as in one go: the candidates shown (a ranking judge samples ranking.max_candidates)
                    report.details["candidates_to_score"] += len(
                        {candidate for call in planned if isinstance(call, ScoreCall) for candidate, _ in call.shown})
                    progress.add_total(len(todo))
                    new = {call.judge.name for call in todo} - probed
                    if new:  # the first calls of an `auto` judge tell whether JSON is enforced
                        todo, answered = run.probe_output_formats(pairs, todo, targets, only=new)
                        progress.update(answered)
                        probed.update(new)
                    run.ask_in_tasks(todo, run_batch, progress, prefix=prefix)

                judged = judged_pair_ids(config.max_imported_pairs)
                if any(judge.mode == "pairwise" for judge in panel):
                    for number, pairs in enumerate(pages, start=1):
                        report.count_in += len(pairs)
                        ask(f"page-{number}-", pairs, [])
                else:  # nothing to plan per pair: counted, not read
                    report.count_in = count_judged_pairs(snapshot, config.max_imported_pairs)
                if any(judge.mode in ("rating", "ranking") for judge in panel):
                    with closing(score_target_pages(snapshot, judged, config.page_pairs)) as score_pages:
                        for number, targets in enumerate(score_pages, start=1):
                            ask(f"scores-{number}-", [], targets)
                run.forget_unplanned()
        finally:
            run.close()
    if report.count_in == 0 and report.details["calls_planned"] == 0:  # every pair an imported one beyond
        raise StageFailed(why_empty(store, STAGE))                        # judge.max_imported_pairs' sample
    report.details["replayed_from_journal"] = run.replayed
    return _finish_report(store, run, panel, report)


def _new_report(panel: list[PanelJudge], constitution: Constitution, config: JudgeConfig, count_in: int) -> StageReport:
    return StageReport(STAGE, count_in=count_in, details={
        "judges": {judge.name: {"model": judge.identity, "mode": judge.mode, "output_format": judge.output_format}
                   for judge in panel},
        "template_version": TEMPLATE_VERSION, "constitution_version": constitution.version,
        "principle_sampling": config.principle_sampling})


def _finish_report(store: Store, run: JudgeRun, panel: list[PanelJudge], report: StageReport) -> StageReport:
    """After the calls: fallbacks, a judge that gave no verdict (the stage fails), and the counts."""
    for judge in panel:  # a fallback chosen during the run shows in the report
        report.details["judges"][judge.name]["output_format"] = judge.output_format
        if judge.name in run.fallbacks:
            report.details["judges"][judge.name]["format_fallback"] = run.fallbacks[judge.name]
    failed = run.stats.judges_without_a_verdict({row[0] for row in store.con.execute(
        "SELECT judge FROM judgments WHERE valid UNION SELECT judge FROM score_calls WHERE valid").fetchall()})
    if failed:
        raise StageFailed("judge: " + "; ".join(failed) + " (the answers are stored in judgments, or score_calls for rating and "
                          "ranking judges; the judge report and `SELECT invalid_reason FROM judgments WHERE NOT valid` "
                          "show them)")
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
    judges = {judge.name: judge for judge in run.panel if not judge.is_verifier}

    def ask(name: str, pair_ids: list[str]) -> None:
        wanted, judge = set(pair_ids), judges[name]
        if judge.mode == "pairwise":
            calls = plan_calls([pair for pair in pairs if pair[0] in wanted], constitution, judge, config)
        else:  # a rating or ranking level scores the candidates of the pairs it is asked about
            calls = plan_score_calls(score_targets(store, [], only_pairs=sorted(wanted)), constitution, judge, config)
        answered = answered_ids(store)
        todo = [call for call in calls if call.key not in answered and (allowed is None or call.key in allowed)]
        log.info("judge: cascade level %s: %d pairs, %d calls to make", name, len(wanted), len(todo))
        with store.released():
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
    summary = {}
    for verifier in verifiers:
        rows, summary[verifier.name] = verify_pairs(store, verifier.name, verifier.config.verifier)
        if rows:
            with store.transaction():
                store.upsert("judgments", store.arrow_rows("judgments", rows))
        log.info("judge: verifier %s checked %d pairs (%s)", verifier.name, len(rows),
                 ", ".join(f"{domain}: {counts['decisive']} decisive of {counts['pairs']}"
                           for domain, counts in summary[verifier.name]["by_domain"].items()) or "nothing new")
    return summary


def _apply_budget(store: Store, config: JudgeConfig, panel: list[PanelJudge], planned: list[PlannedCall],
                  todo: list[PlannedCall], report: StageReport) -> set[str]:
    """The ids of the calls judge.max_cost_usd allows: those waiting in batches, and a prefix of the rest."""
    waiting = waiting_in_batches(store, STAGE)
    check = check_budget(store, config, panel, [call for call in todo if call.key not in waiting],
                         [call for call in planned if call.key in waiting])
    report.details["budget"] = check.figures
    if check.refused:
        figures = check.figures
        log.warning("judge: %d calls not asked: they would take the spend past judge.max_cost_usd ($%.2f): spent "
                    "$%.4f, waiting in batches at most $%.4f, this run at most $%.4f", check.refused,
                    config.max_cost_usd, figures["spent_usd"], figures["waiting_in_batches_usd"],
                    figures["this_run_at_most_usd"])
    return waiting | {call.key for call in check.allowed}


def _judge_in_batches(store: Store, run: JudgeRun, planned: list[PlannedCall], judges: list[PanelJudge],
                      allowed: set[str] | None) -> dict:
    """Collect the batch judges' finished batches, then submit what is unanswered (and allowed)."""
    by_id = {call.key: call for call in planned}

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
        batches.submit([call.request for call in planned if call.judge is judge and call.key not in answered
                        and (allowed is None or call.key in allowed)], judge.config.backend.batch_attempts)
        counts.add(batches.counts)
    return batch_summary(store, STAGE, counts)
