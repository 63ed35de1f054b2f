"""A refresh round's policy: who answers the round's prompts, and which samples are its responses.

Built-in policy, best-of-N: each policy response is the highest-reward one of best_of_n samples of
generate.backend (sample indices k*N .. k*N+N-1 of a prompt), under the round's incumbent reward
model. With a policy of its own (refresh.policies[r], any backend), every sample is a response.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from prefcurate.core.config import GenerateConfig, PrefcurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.backends import make_backend
from prefcurate.curation.generation.generate import generate_candidates, generator_key_for
from prefcurate.pipeline import open_store

CANDIDATE_SCHEMA = pa.schema([
    ("round_index", pa.int32()), ("candidate_id", pa.string()), ("prompt_id", pa.string()),
    ("policy", pa.string()), ("reward", pa.float64()), ("reward_std", pa.float64()),
])


@dataclass(frozen=True)
class PolicySamples:
    generated: StageReport
    generator_key: str
    policy: str  # best_of_<n>:<backend> or the round's own backend
    best_of_n: int


def round_generate_config(config: PrefcurateConfig, round_index: int, best_of_n: int) -> GenerateConfig:
    # A seed of the round's own: prompts drawn again in a later round get fresh samples.
    seed = int(content_hash("refresh-generation", config.refresh.seed, round_index)[:8], 16)
    return config.generate.model_copy(update={"n_candidates": config.refresh.samples_per_prompt * best_of_n,
                                              "seed": seed})


def generate_samples(config: PrefcurateConfig, round_index: int, prompt_ids: list[str]) -> PolicySamples:
    """The round's policy samples the drawn prompts (stored as candidates; a resumed round reuses them)."""
    own_policy = config.refresh.policies.get(round_index)
    best_of_n = 1 if own_policy else config.refresh.best_of_n
    generate_config = round_generate_config(config, round_index, best_of_n)
    with open_store(config) as store, \
            make_backend(own_policy or config.generate.backend, config.resolved_models_dir) as backend:
        # Registered first, so that `prefcurate pairs` never pairs this round's samples, even half-made.
        store.con.execute("INSERT OR IGNORE INTO round_generators VALUES (?, ?)",
                          [round_index, generator_key_for(backend.identity, generate_config)])
        generated = generate_candidates(store, backend, generate_config, prompt_ids)
        store.record_stage_run(generated)
        policy = backend.identity if own_policy else f"best_of_{best_of_n}:{backend.identity}"
    return PolicySamples(generated, generated.details["generator_key"], policy, best_of_n)


def record_policy_candidates(store: Store, round_index: int, prompt_ids: list[str], generator_key: str,
                             rm_run_id: str, best_of_n: int, policy: str) -> int:
    """Store the round's policy responses (best-of-N winners, or every sample when best_of_n = 1).
    A round's responses are fixed once stored: a resumed round reuses them."""
    store.con.execute("INSERT OR IGNORE INTO round_generators VALUES (?, ?)", [round_index, generator_key])
    if store.scalar("SELECT count(*) FROM round_candidates WHERE round_index = ?", [round_index]):
        return 0
    table = store.con.sql("""
        WITH samples AS (
            SELECT c.candidate_id, c.prompt_id, c.sample_index // $n AS grp, r.reward, r.reward_std
            FROM candidates AS c
            JOIN candidate_rewards AS r ON r.candidate_id = c.candidate_id AND r.rm_run_id = $run
            WHERE c.generator_key = $key AND list_contains($prompts, c.prompt_id)
        )
        SELECT CAST($round AS INTEGER) AS round_index,
               arg_max(candidate_id, reward) AS candidate_id, prompt_id, $policy AS policy,
               max(reward) AS reward, arg_max(reward_std, reward) AS reward_std
        FROM samples
        GROUP BY prompt_id, grp""", params={"n": best_of_n, "run": rm_run_id, "key": generator_key,
                                             "prompts": prompt_ids, "round": round_index, "policy": policy}
    ).to_arrow_table().cast(CANDIDATE_SCHEMA)
    with store.transaction():
        return store.insert_new("round_candidates", table)
