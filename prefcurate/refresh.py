"""One on-policy refresh round, step by step (no Prefect here; flows/refresh.py wraps it).

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

import json
import logging
from pathlib import Path
from typing import Callable

from prefcurate import pipeline
from prefcurate.core.config import PrefcurateConfig
from prefcurate.curation.backends import make_backend
from prefcurate.curation.labels import labelled_pairs
from prefcurate.curation.generation.generate import generate_candidates, generator_key_for
from prefcurate.core.hashing import content_hash
from prefcurate.curation.judging.judge import run_directly
from prefcurate.core.local_models import pick_device, resolve_model
from prefcurate.curation.prompt_pool import draw_prompts
from prefcurate.curation.round_pairs import record_policy_candidates, select_round_pairs
from prefcurate.curation.round_report import write_round_report
from prefcurate.core.store import Store

log = logging.getLogger("prefcurate")


class RefreshError(RuntimeError):
    """A refresh round cannot start or go on (no reward model to start from, ...)."""


# -- the model in charge -------------------------------------------------------------------------------

def incumbent(store: Store) -> tuple[str, str]:
    """(rm_run_id, checkpoint_dir) of the reward model in charge; the first time, the latest trained
    model becomes round 0's incumbent and its curation run's test split the fixed held-out set."""
    row = store.one("SELECT rm_run_id, checkpoint_dir FROM current_reward_model")
    if row:
        return row
    latest = store.one("SELECT rm_run_id, checkpoint_dir, curation_run_id FROM rm_runs ORDER BY updated_at DESC LIMIT 1")
    if latest is None:
        raise RefreshError(f"{store.path}: no reward model to start from: run `prefcurate run` (or `train`) first")
    with store.transaction():
        store.con.execute("INSERT OR IGNORE INTO rm_promotions (rm_run_id, round_index, reason) VALUES (?, 0, ?)",
                          [latest[0], "initial model: the latest trained before the first refresh round"])
        store.con.execute("""
            INSERT OR IGNORE INTO refresh_fixed_heldout
            SELECT pair_id, chosen_candidate, rejected_candidate, curation_run_id FROM curated_pairs
            WHERE curation_run_id = $run AND split = (
                SELECT CASE WHEN count(*) FILTER (WHERE split = 'test') > 0 THEN 'test' ELSE 'validation' END
                FROM curated_pairs WHERE curation_run_id = $run)""", {"run": latest[2]})
    return latest[0], latest[1]


def next_round(store: Store) -> int:
    """The first round not finished yet."""
    return store.scalar("SELECT coalesce(max(round_index) FILTER (WHERE status = 'done'), 0) + 1 FROM refresh_rounds")


# -- held-out sets -------------------------------------------------------------------------------------

def fixed_heldout_pairs(store: Store) -> list[dict]:
    return store.con.sql("""
        SELECT p.text AS prompt, CAST(p.messages AS VARCHAR) AS prompt_messages, c.text AS chosen, r.text AS rejected
        FROM refresh_fixed_heldout AS f
        JOIN candidates AS c ON c.candidate_id = f.chosen_candidate
        JOIN candidates AS r ON r.candidate_id = f.rejected_candidate
        JOIN prompts AS p ON p.prompt_id = c.prompt_id
        ORDER BY f.pair_id""").to_arrow_table().to_pylist()


def on_policy_heldout_pairs(store: Store, config: PrefcurateConfig, round_index: int) -> list[dict]:
    """This round's held-out pairs with a decided label (human > import > judges, as curation)."""
    return store.con.sql(f"""
        SELECT t.prompt, t.prompt_messages,
               CASE l.label WHEN 'a' THEN t.text_a ELSE t.text_b END AS chosen,
               CASE l.label WHEN 'a' THEN t.text_b ELSE t.text_a END AS rejected
        FROM ({labelled_pairs(config.curate.label_rule)}) AS l
        JOIN round_pairs AS rp ON rp.pair_id = l.pair_id AND rp.round_index = $round AND rp.heldout
        JOIN pair_texts AS t ON t.pair_id = l.pair_id
        WHERE l.label IN ('a', 'b')
        ORDER BY l.pair_id""", params={"round": round_index}).to_arrow_table().to_pylist()


def policy_responses(store: Store, round_index: int) -> list[dict]:
    return store.con.sql("""
        SELECT rc.prompt_id, p.text AS prompt, CAST(p.messages AS VARCHAR) AS prompt_messages, c.text
        FROM round_candidates AS rc
        JOIN candidates AS c USING (candidate_id)
        JOIN prompts AS p ON p.prompt_id = rc.prompt_id
        WHERE rc.round_index = $round ORDER BY rc.candidate_id""", params={"round": round_index}).to_arrow_table().to_pylist()


def open_scorer(checkpoint: str, config: PrefcurateConfig):
    from prefcurate.rm.score import RewardScorer

    return RewardScorer(checkpoint, pick_device(config.train.device), config.train.max_length, config.evaluate.precision,
                        config.evaluate.compile)


def measure(scorer, config: PrefcurateConfig, fixed: list[dict], on_policy: list[dict], responses: list[dict]) -> dict:
    from prefcurate.rm.heldout import pair_accuracy, policy_reward_figures

    batch = config.evaluate.batch_size
    fixed_figures = pair_accuracy(scorer, fixed, batch)
    on_policy_figures = pair_accuracy(scorer, on_policy, batch)
    return {"fixed_accuracy": fixed_figures["accuracy"], "fixed_pairs": fixed_figures["pairs"],
            "on_policy_accuracy": on_policy_figures["accuracy"], "on_policy_pairs": on_policy_figures["pairs"],
            **policy_reward_figures(scorer, responses, batch)}


# -- the round ---------------------------------------------------------------------------------------------

def _round_generate_config(config: PrefcurateConfig, round_index: int, best_of_n: int):
    # A seed of the round's own: prompts drawn again in a later round get fresh samples.
    seed = int(content_hash("refresh-generation", config.refresh.seed, round_index)[:8], 16)
    return config.generate.model_copy(update={"n_candidates": config.refresh.samples_per_prompt * best_of_n,
                                              "seed": seed})


def _route_to_annotators(config: PrefcurateConfig, round_index: int) -> dict:
    """Collect earlier answers, push this round's uncertain pairs; an unreachable Argilla is
    reported and skipped, never waited on."""
    outcome = {}
    for name, step in (("collected", lambda: pipeline.annotate_pull_stage(config)),
                       ("pushed", lambda: pipeline.annotate_push_stage(config, round_index))):
        try:
            outcome[name] = step()["count_out"]
        except Exception as error:  # noqa: BLE001  (down, refusing, timing out, 5xx: the round goes on)
            log.warning("refresh round %d: argilla %s skipped: %s", round_index, name, error)
            outcome[name] = f"skipped: {error}"
    return outcome


def refresh_round(config: PrefcurateConfig, round_index: int | None = None,
                  run_batch: Callable = run_directly) -> dict:
    """Run (or finish, or return) refresh round `round_index` (default: the next one)."""
    refresh = config.refresh
    with pipeline.open_store(config) as store:
        round_index = next_round(store) if round_index is None else round_index
        finished = store.one("SELECT decision, reason, candidate_rm_run_id FROM refresh_rounds "
                             "WHERE round_index = ? AND status = 'done'", [round_index])
        if finished:
            log.info("refresh round %d is done (%s): nothing to do", round_index, finished[0])
            return {"round": round_index, "decision": finished[0], "reason": finished[1],
                    "candidate_rm_run_id": finished[2], "reused": True}
        stored = store.one("SELECT incumbent_rm_run_id FROM refresh_rounds WHERE round_index = ?", [round_index])
        if stored:  # a round that stopped half-way goes on from the same incumbent
            incumbent_id = stored[0]
            incumbent_dir = store.scalar("SELECT checkpoint_dir FROM rm_runs WHERE rm_run_id = ?", [incumbent_id])
        else:
            incumbent_id, incumbent_dir = incumbent(store)
            store.con.execute("INSERT INTO refresh_rounds (round_index, status, incumbent_rm_run_id) "
                              "VALUES (?, 'running', ?)", [round_index, incumbent_id])
        n_fixed = store.count("refresh_fixed_heldout")
        if n_fixed < refresh.gate.min_heldout_pairs:
            raise RefreshError(
                f"the fixed held-out set has {n_fixed} pairs, fewer than refresh.gate.min_heldout_pairs = "
                f"{refresh.gate.min_heldout_pairs}: no round could be promoted. It is the test split of the first "
                "model's curation run: curate with a test split (curate.splits.test) and train before refreshing")
        drawn = draw_prompts(store, round_index, refresh.prompts_per_round, refresh.on_policy_heldout, refresh.seed)
    prompt_ids = [prompt_id for prompt_id, _ in drawn]
    log.info("refresh round %d: incumbent %s, %d prompts (%d held out)", round_index, incumbent_id[:12],
             len(drawn), sum(heldout for _, heldout in drawn))

    # -- the round's policy generates; the incumbent scores ----------------------------------------------
    own_policy = refresh.policies.get(round_index)
    best_of_n = 1 if own_policy else refresh.best_of_n
    backend_config = own_policy or config.generate.backend
    generate_config = _round_generate_config(config, round_index, best_of_n)
    with pipeline.open_store(config) as store, make_backend(backend_config, config.resolved_models_dir) as backend:
        # Registered first, so that `prefcurate pairs` never pairs this round's samples, even half-made.
        store.con.execute("INSERT OR IGNORE INTO round_generators VALUES (?, ?)",
                          [round_index, generator_key_for(backend.identity, generate_config)])
        generated = generate_candidates(store, backend, generate_config, prompt_ids)
        store.record_stage_run(generated)
        generator_key = generated.details["generator_key"]
        policy = backend.identity if own_policy else f"best_of_{best_of_n}:{backend.identity}"

    from prefcurate.rm.score import score_candidates

    with pipeline.open_store(config) as store:
        # Not kept for the measurements after training: a big model would sit in memory meanwhile.
        score_candidates(store, open_scorer(incumbent_dir, config), incumbent_id, config.evaluate.batch_size,
                         prompt_ids=prompt_ids)
        record_policy_candidates(store, round_index, prompt_ids, generator_key, incumbent_id, best_of_n, policy)
        selected = select_round_pairs(store, round_index, refresh.pair_selection, refresh.seed)
    log.info("refresh round %d: %d pairs selected (%s), %d held out", round_index, selected["pairs"],
             refresh.pair_selection, selected["heldout_pairs"])

    # -- label, route, re-curate, retrain -------------------------------------------------------------------
    judged = pipeline.judge_stage(config, run_batch)
    judged.pop("judge_report_markdown", None)
    routed = _route_to_annotators(config, round_index) if config.argilla.enabled else {"argilla": "disabled"}
    curated = pipeline.curate_stage(config)
    warm = refresh.warm_start and not (Path(incumbent_dir) / "ensemble.json").exists()
    base = incumbent_dir if warm else resolve_model(config.train.base_model, config.resolved_models_dir)
    trained = _train(config, curated["curation_run_id"], base)
    candidate_id, candidate_dir = trained["rm_run_id"], trained["checkpoint"]

    # -- measure both models, decide -------------------------------------------------------------------------
    with pipeline.open_store(config) as store:
        fixed = fixed_heldout_pairs(store)
        on_policy = on_policy_heldout_pairs(store, config, round_index)
        responses = policy_responses(store, round_index)
        agreement = store.scalar("SELECT avg(agreement) FROM pair_labels JOIN round_pairs USING (pair_id) "
                                 "WHERE round_index = ?", [round_index])
    incumbent_metrics = measure(open_scorer(incumbent_dir, config), config, fixed, on_policy, responses)
    candidate_metrics = measure(open_scorer(candidate_dir, config), config, fixed, on_policy, responses)
    from prefcurate.rm.gate import decide

    decision = decide(candidate_metrics, incumbent_metrics, refresh.gate)
    counts = {"prompts": len(drawn), "generated": generated.count_out, "pairs": selected["pairs"],
              "heldout_pairs": len(on_policy), "fixed_heldout_pairs": len(fixed), "judged": judged["count_out"],
              "curated_train": curated.get("train"), "judge_agreement": agreement, "policy": policy,
              "warm_start": warm, **routed}
    with pipeline.open_store(config) as store:
        with store.transaction():
            store.con.execute("""
                UPDATE refresh_rounds SET status = 'done', candidate_rm_run_id = ?, curation_run_id = ?, counts = ?,
                       incumbent_metrics = ?, candidate_metrics = ?, decision = ?, reason = ?,
                       finished_at = current_timestamp
                WHERE round_index = ?""",
                [candidate_id, curated["curation_run_id"], json.dumps(counts, default=str),
                 json.dumps(incumbent_metrics), json.dumps(candidate_metrics),
                 "promoted" if decision.promote else "refused", decision.reason, round_index])
            if decision.promote:
                store.con.execute("INSERT OR IGNORE INTO rm_promotions (rm_run_id, round_index, reason) VALUES (?, ?, ?)",
                                  [candidate_id, round_index, decision.reason])
        report_path, markdown = write_round_report(store, config.workdir.resolve() / "reports")
    log.info("refresh round %d: %s", round_index, decision.reason)
    return {"round": round_index, "decision": "promoted" if decision.promote else "refused",
            "reason": decision.reason, "incumbent_rm_run_id": incumbent_id, "candidate_rm_run_id": candidate_id,
            "incumbent_metrics": incumbent_metrics, "candidate_metrics": candidate_metrics, "counts": counts,
            "round_report": str(report_path), "round_report_markdown": markdown, "reused": False}


def _train(config: PrefcurateConfig, curation_run_id: str, base_model_path: str) -> dict:
    from prefcurate.rm.train import train_reward_model

    with pipeline.open_store(config) as store:
        run_id, curated_dir = pipeline.curation_run(store, curation_run_id)
        _result, report = train_reward_model(store, run_id, Path(curated_dir), base_model_path, config.train,
                                             config.workdir.resolve() / "rm", pick_device(config.train.device))
        return pipeline.finish_stage(store, report)
