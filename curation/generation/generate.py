"""Generate N candidate responses per prompt.

A candidate's id is the hash of (prompt, generator settings, sample index): the "slot" it fills.
Re-running fills only empty slots, so nothing is generated or stored twice; failed calls leave
their slot empty (and a row in rejects) to be retried next time.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from contextlib import closing

from prefcurate.core.config import BATCH_KINDS, GenerateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.progress import Progress
from prefcurate.core.stage_report import StageFailed, StageReport
from prefcurate.core.store import Store
from prefcurate.curation.answer_writer import AnswerWriter
from prefcurate.curation.backends import ChatBackend, ChatRequest
from prefcurate.curation.backends.failure_watch import FailureWatch

STAGE = "generate"
COMMIT_EVERY = 64
IDENTICAL_WARN_SHARE = 0.5  # of prompts with all samples identical: the endpoint ignores sampling
log = logging.getLogger(__name__)


def generator_params(config: GenerateConfig) -> dict:
    return {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
            "top_p": config.top_p, "seed": config.seed, "system_prompt": config.system_prompt}


def generator_key_for(backend_identity: str, config: GenerateConfig) -> str:
    return content_hash("generator", backend_identity, generator_params(config))


def generate_candidates(store: Store, backend: ChatBackend, config: GenerateConfig,
                        prompt_ids: list[str] | None = None) -> StageReport:
    """n_candidates per prompt (all prompts, or only prompt_ids) for slots not filled yet."""
    generator_key = generator_key_for(backend.identity, config)
    if prompt_ids is None:
        # the prompt pool: not the prompts of imported (gold) pairs, which measure judges and models
        prompts = store.con.execute("SELECT prompt_id, text, messages FROM prompts WHERE in_pool "
                                    "ORDER BY prompt_id").fetchall()
    else:
        prompts = store.con.execute("SELECT prompt_id, text, messages FROM prompts WHERE list_contains(?, prompt_id) "
                                    "ORDER BY prompt_id", [prompt_ids]).fetchall()
    existing = {row[0] for row in store.con.execute(
        "SELECT candidate_id FROM candidates WHERE generator_key = ?", [generator_key]).fetchall()}

    report = StageReport(STAGE, count_in=len(prompts),
                         details={"generator": backend.identity, "generator_key": generator_key,
                                  "n_candidates": config.n_candidates})
    requests, slots = [], {}
    for prompt_id, text, conversation in prompts:
        messages = ([{"role": "system", "content": config.system_prompt}] if config.system_prompt else [])
        # a multi-turn prompt (imported) continues its conversation; a plain one is the user's turn
        messages += json.loads(conversation) if conversation else [{"role": "user", "content": text}]
        for index in range(config.n_candidates):
            candidate_id = content_hash("candidate", prompt_id, generator_key, index)
            if candidate_id in existing:
                continue
            slots[candidate_id] = (prompt_id, index)
            requests.append(ChatRequest(
                key=candidate_id, messages=messages, max_tokens=config.max_new_tokens,
                temperature=config.temperature, top_p=config.top_p,
                # per-slot seed: the same slot samples the same way on a re-run
                seed=int(candidate_id[:8], 16),
            ))

    written, errors, rejects_seen = 0, Counter(), []

    def store_answers(items: list[tuple[str, dict]]) -> None:
        """items: ("candidate", row) for an answer, ("reject", reject) for a failed call."""
        nonlocal written
        candidates = [row for kind, row in items if kind == "candidate"]
        if candidates:
            written += store.insert_new("candidates", store.arrow_rows("candidates", candidates))
        store.add_rejects(STAGE, [row for kind, row in items if kind == "reject"])

    writer = AnswerWriter(store, store_answers, COMMIT_EVERY)
    flush = writer.flush

    def keep(result) -> None:
        prompt_id, index = slots[result.key]
        if result.ok:
            writer.add(("candidate", {
                "candidate_id": result.key, "prompt_id": prompt_id, "generator_key": generator_key,
                "generator": backend.identity, "sample_index": index, "text": result.text,
                "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens, "params": json.dumps(generator_params(config)),
            }))
        else:
            errors[result.error_kind] += 1
            reject = {"source": backend.identity, "field": f"candidate {result.key} (prompt {prompt_id}, sample {index})",
                      "reason": result.error}
            writer.add(("reject", reject))
            if len(rejects_seen) < 3:
                rejects_seen.append(reject)

    if config.backend.kind in BATCH_KINDS:
        report.details["batches"] = _generate_in_batches(store, backend, requests, keep, flush)
    else:
        watch = FailureWatch(STAGE, backend.identity, config.backend)
        results = backend.complete(requests)
        # other flows write between this run's commits (store.released)
        with Progress("generate", len(requests)) as progress, closing(results), store.released():
            try:
                for result in results:
                    keep(result)
                    progress.update()
                    watch.observe(result)
            finally:
                flush()  # what was answered before an interruption or a stop is kept

    report.count_out = store.scalar(
        "SELECT count(DISTINCT prompt_id) FROM candidates WHERE generator_key = ?", [generator_key])
    identical, sampled = identical_sample_prompts(store, generator_key) if config.n_candidates > 1 else (0, 0)
    report.details.update(requested=len(requests), already_stored=len(existing), new_candidates=written,
                          failed=sum(errors.values()), failures_by_kind=dict(errors),
                          candidates_total=len(existing) + written, identical_sample_prompts=identical)
    if sampled and identical / sampled >= IDENTICAL_WARN_SHARE:
        log.warning("generate: %d of %d prompts got %d identical samples (temperature %g): the endpoint probably "
                    "ignores temperature/seed, and identical samples make no pairs. Check the server's sampling "
                    "options (e.g. a greedy default, or continuous batching that drops per-request sampling)",
                    identical, sampled, config.n_candidates, config.temperature)
    if requests and not written and errors:
        kind, count = errors.most_common(1)[0]
        example = next((r["reason"] for r in rejects_seen if r["reason"].startswith(kind)), kind)
        raise StageFailed(f"generate: all {len(requests)} calls failed ({dict(errors)}), e.g. {example[:200]}")
    return report.finish()


def _generate_in_batches(store: Store, backend, requests: list[ChatRequest], keep, flush) -> dict:
    """Collect finished provider batches into their slots, then submit the slots still empty."""
    from prefcurate.curation.provider_batches import ProviderBatches, batch_summary

    wanted = {request.key for request in requests}

    def keep_answer(key: str, result) -> bool:
        if key not in wanted:  # filled meanwhile, or no longer asked for
            return False
        keep(result)
        return result.ok

    batches = ProviderBatches(store, STAGE, backend, backend.identity)
    batches.collect(keep_answer, flush)
    filled = {row[0] for row in store.con.execute(
        "SELECT candidate_id FROM candidates WHERE list_contains(?, candidate_id)", [list(wanted)]).fetchall()}
    batches.submit([request for request in requests if request.key not in filled], backend.config.batch_attempts)
    return batch_summary(store, STAGE, batches.counts)


def identical_sample_prompts(store: Store, generator_key: str) -> tuple[int, int]:
    """(prompts whose samples from this generator are all the same text, prompts with 2+ samples)."""
    row = store.one("""
        SELECT count(*) FILTER (WHERE distinct_texts = 1), count(*)
        FROM (SELECT prompt_id, count(DISTINCT text) AS distinct_texts, count(*) AS samples
              FROM candidates WHERE generator_key = ? GROUP BY prompt_id)
        WHERE samples > 1""", [generator_key])
    return (row[0], row[1]) if row else (0, 0)
