"""One on-policy refresh round, top to bottom (no Prefect here; flows/refresh.py wraps it).

Round r: the incumbent reward model (the latest promoted; round 0 is the model the loop started
from) -> draw prompts -> the round's policy generates -> the incumbent scores -> pairs are selected
-> judges label them -> uncertain pairs go to Argilla when enabled (their answers are collected by a
later run; an unreachable Argilla is logged, never waited on) -> cumulative re-curation (on-policy
held-out pairs excluded) -> retrain -> both models are measured on the fixed held-out set and this
round's on-policy held-out pairs -> the gate promotes or refuses, with its reason.

Every step is idempotent and keyed by content, so re-running a round that stopped half-way
continues it, and re-running a finished round returns its stored outcome without doing anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from prefcurate.core.config import PrefcurateConfig
from prefcurate.curation.judging.judge import run_directly
from prefcurate.curation.backends.remote import RunChunks
from prefcurate.pipeline import curate_stage, judge_stage, local_checkpoint, open_store, train_stage
from prefcurate.refresh import ledger
from prefcurate.refresh.gate import decide
from prefcurate.refresh.heldout import load_heldout_sets, measure, open_scorer
from prefcurate.refresh.pair_selection import select_round_pairs
from prefcurate.refresh.policy import generate_samples, record_policy_candidates
from prefcurate.refresh.prompt_pool import draw_prompts
from prefcurate.refresh.rounds_report import write_round_report
from prefcurate.refresh.routing import route_to_annotators

log = logging.getLogger("prefcurate")


def refresh_round(config: PrefcurateConfig, round_index: int | None = None,
                  run_batch: Callable = run_directly, place: Callable | None = None,
                  run_chunks: RunChunks | None = None) -> dict:
    """Run (or finish, or return) refresh round `round_index` (default: the next one). `place` runs
    the retraining on train.work_pool when that is set (pipeline.train_stage); `run_chunks` makes the
    judges' calls on a cluster's workers (fanout)."""
    refresh = config.refresh
    # -- the model in charge and the round's prompts ------------------------------------------------
    with open_store(config) as store:
        round_index = ledger.next_round(store) if round_index is None else round_index
        finished = ledger.finished_round(store, round_index)
        if finished:
            log.info("refresh round %d is done (%s): nothing to do", round_index, finished["decision"])
            return finished
        incumbent_id, incumbent_dir = ledger.start_round(store, round_index, refresh.gate)
        incumbent_dir = str(local_checkpoint(config, incumbent_dir))  # trained elsewhere: fetched
        drawn = draw_prompts(store, round_index, refresh.prompts_per_round, refresh.on_policy_heldout, refresh.seed)
    prompt_ids = [prompt_id for prompt_id, _ in drawn]
    log.info("refresh round %d: incumbent %s, %d prompts (%d held out)", round_index, incumbent_id[:12],
             len(drawn), sum(heldout for _, heldout in drawn))

    # -- the round's policy generates; the incumbent scores; pairs are selected -----------------------
    samples = generate_samples(config, round_index, prompt_ids)
    from prefcurate.rm.score import score_candidates  # torch: imported when a round has work to do

    with open_store(config) as store:
        # Not kept for the measurements after training: a big model would sit in memory meanwhile.
        score_candidates(store, open_scorer(incumbent_dir, config), incumbent_id, config.evaluate.batch_size,
                         prompt_ids=prompt_ids)
        record_policy_candidates(store, round_index, prompt_ids, samples.generator_key, incumbent_id,
                                 samples.best_of_n, samples.policy)
        selected = select_round_pairs(store, round_index, refresh.pair_selection, refresh.seed)
    log.info("refresh round %d: %d pairs selected (%s), %d held out", round_index, selected["pairs"],
             refresh.pair_selection, selected["heldout_pairs"])

    # -- label, route, re-curate, retrain -------------------------------------------------------------
    judged = judge_stage(config, run_batch, wait=True, run_chunks=run_chunks)  # the round trains on these labels
    routed = route_to_annotators(config, round_index) if config.argilla.enabled else {"argilla": "disabled"}
    curated = curate_stage(config)
    warm = refresh.warm_start and not (Path(incumbent_dir) / "ensemble.json").exists()
    trained = train_stage(config, curated["curation_run_id"], base_model=incumbent_dir if warm else None,
                          place=place)
    candidate_id, candidate_dir = trained["rm_run_id"], str(local_checkpoint(config, trained["checkpoint"]))

    # -- measure both models, decide, record ----------------------------------------------------------
    with open_store(config) as store:
        sets = load_heldout_sets(store, config, round_index)
        agreement = ledger.judge_agreement(store, round_index)
    incumbent_metrics = measure(incumbent_dir, config, sets)
    candidate_metrics = measure(candidate_dir, config, sets)
    decision = decide(candidate_metrics, incumbent_metrics, refresh.gate)
    candidate_metrics["gate"] = decision.figures  # the intervals the decision read, kept with the round
    counts = {"prompts": len(drawn), "generated": samples.generated.count_out, "pairs": selected["pairs"],
              "heldout_pairs": len(sets.on_policy), "fixed_heldout_pairs": len(sets.fixed),
              "judged": judged["count_out"], "curated_train": curated["split_train"], "judge_agreement": agreement,
              "policy": samples.policy, "warm_start": warm, **routed}
    with open_store(config) as store:
        ledger.finish_round(store, round_index, candidate_id, curated["curation_run_id"], counts,
                            incumbent_metrics, candidate_metrics, decision)
        report_path, markdown = write_round_report(store, config.workdir.resolve() / "reports")
    log.info("refresh round %d: %s", round_index, decision.reason)
    return {"round": round_index, "decision": decision.label, "reason": decision.reason,
            "incumbent_rm_run_id": incumbent_id, "candidate_rm_run_id": candidate_id,
            "incumbent_metrics": incumbent_metrics, "candidate_metrics": candidate_metrics, "counts": counts,
            "round_report": str(report_path), "round_report_markdown": markdown, "reused": False}
