"""On-policy refresh rounds end to end through the Prefect flows, on tiny models: the built-in
best-of-N policy, RM-guided pair selection, judging, cumulative curation, retraining, the gate."""

from __future__ import annotations

import pytest

from prefcurate.core.config import BackendConfig, PromotionGate
from prefcurate.core.store import Store
from prefcurate.refresh.gate import decide

REFRESH_TABLES = ("round_prompts", "round_candidates", "round_pairs", "refresh_rounds", "rm_promotions",
                  "candidates", "pairs", "judgments", "rm_runs", "curated_pairs")


def table_counts(path) -> dict:
    with Store(path, read_only=True) as store:
        return {table: store.count(table) for table in REFRESH_TABLES}


@pytest.mark.slow
def test_two_refresh_rounds_promote_then_refuse_and_rerun_as_a_no_op(pipeline_config, openai_server,
                                                                     prefect_harness):
    from prefcurate.flows.refresh import refresh_flow
    from prefcurate.flows.stages import pipeline_flow

    config = pipeline_config
    config.refresh.prompts_per_round = 8
    config.refresh.on_policy_heldout = 0.5
    config.refresh.samples_per_prompt = 2
    config.refresh.best_of_n = 2
    pipeline_flow(config)
    with Store(config.store.path, read_only=True) as store:
        initial_rm = store.scalar("SELECT rm_run_id FROM rm_runs")

    # Round 1, a gate that any model passes: promoted.
    config.refresh.gate = PromotionGate(min_on_policy_gain=-1.0, max_fixed_drop=1.0, min_relative_spread=0.0,
                                        min_heldout_pairs=1)
    first = refresh_flow(config)
    assert first["round"] == 1 and first["decision"] == "promoted", first["reason"]
    assert first["incumbent_rm_run_id"] == initial_rm
    assert first["counts"]["pairs"] > 0 and first["counts"]["heldout_pairs"] > 0
    assert first["counts"]["policy"].startswith("best_of_2:")
    with Store(config.store.path, read_only=True) as store:  # the round's training set, as curated
        assert first["counts"]["curated_train"] == store.scalar(
            "SELECT count(*) FROM curated_pairs WHERE curation_run_id = ? AND split = 'train'",
            [store.scalar("SELECT curation_run_id FROM refresh_rounds WHERE round_index = 1")])
    assert first["counts"]["curated_train"] > 0
    assert first["candidate_metrics"]["fixed_pairs"] > 0 and first["candidate_metrics"]["on_policy_accuracy"] is not None

    # Round 2: the policy is an OpenAI-compatible endpoint named for this round; a gate no model
    # passes (a gain above 1.0 is impossible): refused, with the reason.
    config.refresh.policies = {2: BackendConfig(kind="openai", model="policy-v2", base_url=openai_server.base_url)}
    config.refresh.gate = PromotionGate(min_on_policy_gain=1.0, max_fixed_drop=1.0, min_heldout_pairs=1)
    served_before = len(openai_server.requests)
    second = refresh_flow(config)
    assert second["round"] == 2 and second["decision"] == "refused"
    assert "policy-v2" in second["counts"]["policy"] and not second["counts"]["policy"].startswith("best_of")
    policy_requests = [r for r in openai_server.requests[served_before:] if r.get("model") == "policy-v2"]
    assert len(policy_requests) == 8 * 2  # 8 prompts x 2 samples, no best-of-N behind an explicit policy
    assert "on-policy gain" in second["reason"]
    assert second["incumbent_rm_run_id"] == first["candidate_rm_run_id"]  # round 1's promotion took effect

    with Store(config.store.path, read_only=True) as store:
        assert store.scalar("SELECT rm_run_id FROM current_reward_model") == first["candidate_rm_run_id"]
        rounds = store.con.sql("SELECT * FROM refresh_round_metrics ORDER BY round_index").to_arrow_table().to_pylist()
        assert [(r["round_index"], r["decision"]) for r in rounds] == [(1, "promoted"), (2, "refused")]
        assert all(r["candidate_on_policy_accuracy"] is not None and r["reason"] for r in rounds)
        # Best-of-2: each policy response is the higher-reward sample of its group under the incumbent.
        losers = store.scalar("""
            SELECT count(*) FROM round_candidates rc JOIN candidates c USING (candidate_id)
            JOIN candidates o ON o.prompt_id = c.prompt_id AND o.generator_key = c.generator_key
                 AND o.sample_index // 2 = c.sample_index // 2 AND o.candidate_id <> c.candidate_id
            JOIN candidate_rewards r ON r.candidate_id = o.candidate_id AND r.rm_run_id = $rm
            WHERE rc.round_index = 1 AND r.reward > rc.reward""", params={"rm": initial_rm})
        assert losers == 0
        # On-policy held-out pairs never reach a curated set.
        leaked = store.scalar("SELECT count(*) FROM curated_pairs JOIN round_pairs USING (pair_id) WHERE heldout")
        assert leaked == 0
        # Round 2 drew prompts round 1 had not (the pool's never-drawn-first rule).
        overlap = store.scalar("SELECT count(*) FROM round_prompts a JOIN round_prompts b USING (prompt_id) "
                               "WHERE a.round_index = 1 AND b.round_index = 2")
        assert overlap == 0
    assert (config.workdir / "reports" / "refresh_rounds.png").exists()

    # Re-running a finished round changes nothing.
    before = table_counts(config.store.path)
    again = refresh_flow(config, round_index=2)
    assert again["reused"] and again["decision"] == "refused"
    assert table_counts(config.store.path) == before


def measured(on_policy: list[int], fixed: list[int], spread: float = 0.4) -> dict:
    return {"on_policy_correct": [float(x) for x in on_policy], "fixed_correct": [float(x) for x in fixed],
            "normalized_spread": spread}


def test_the_gate_decides_on_paired_intervals_and_says_when_the_evidence_is_short():
    gate = PromotionGate(min_on_policy_gain=0.0, max_fixed_drop=0.05, min_relative_spread=0.5, min_heldout_pairs=4)
    fixed = [1] * 40 + [0] * 10
    incumbent = measured([1] * 36 + [0] * 24, fixed)
    better = measured([1] * 54 + [0] * 6, fixed)  # right on every pair the incumbent was, and 18 more
    decision = decide(better, incumbent, gate)
    assert decision.promote, decision.reason
    gain = decision.figures["on_policy_gain"]
    assert gain["estimate"] == pytest.approx(0.3) and gain["ci_low"] > 0.15 and "paired bootstrap" in decision.reason

    forgets = measured([1] * 54 + [0] * 6, [1] * 30 + [0] * 20)  # 10 fixed pairs lost
    refused = decide(forgets, incumbent, gate)
    assert not refused.promote and "fixed held-out accuracy may have fallen" in refused.reason

    flat = decide(measured(incumbent["on_policy_correct"], fixed), incumbent, gate)
    assert not flat.promote and "is not above" in flat.reason

    # one more pair right out of 8: a gain, but not one 8 pairs can show
    small = decide(measured([1] * 5 + [0] * 3, fixed), measured([1] * 4 + [0] * 4, fixed), gate)
    assert not small.promote and "not enough evidence" in small.reason
    assert small.figures["on_policy_pairs_needed"] > 8 and f"about {small.figures['on_policy_pairs_needed']}" in small.reason

    weak_teacher = decide(measured(better["on_policy_correct"], fixed, spread=0.1), incumbent, gate)
    assert not weak_teacher.promote and "weaker teacher" in weak_teacher.reason

    tiny = decide(measured([1, 1, 1], fixed), measured([0, 0, 0], fixed), gate)
    assert not tiny.promote and "fewer than refresh.gate.min_heldout_pairs" in tiny.reason


class ScaledScorer:
    """Stands in for a reward model whose rewards are given, times a scale (what a gamed model does)."""

    def __init__(self, rewards: dict[str, float], scale: float):
        self.rewards, self.scale = rewards, scale

    def score_members(self, prompts, responses, batch_size, messages, label):
        return [[self.rewards[text] * self.scale for text in responses]]


def test_the_normalised_reward_spread_cannot_be_gamed_by_rescaling():
    from prefcurate.refresh.heldout import pair_accuracy, policy_reward_figures

    rewards = {f"r{i}": value for i, value in enumerate([0.1, 0.5, -0.3, 0.9, 0.2, -0.1, 0.4, 0.0])}
    fixed = [{"prompt": "p", "chosen": "r0", "rejected": "r2"}, {"prompt": "p", "chosen": "r3", "rejected": "r5"}]
    responses = [{"prompt_id": f"q{i // 2}", "prompt": "q", "text": f"r{i}"} for i in range(8)]
    spreads = []
    for scale in (1.0, 25.0):
        scorer = ScaledScorer(rewards, scale)
        spread = policy_reward_figures(scorer, responses, 8)["mean_within_prompt_std"]
        spreads.append(spread / pair_accuracy(scorer, fixed, 8)["reward_std"])
    assert spreads[0] == pytest.approx(spreads[1]) and spreads[0] > 0


def test_an_unreachable_argilla_is_reported_and_skipped_never_waited_on(tmp_path, monkeypatch):
    import socket
    import time

    from prefcurate.core.config import PrefcurateConfig
    from prefcurate.refresh.routing import route_to_annotators

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PREFCURATE_TEST_ARGILLA_KEY", "owner.key.for.a.server.that.is.down")
    config = PrefcurateConfig.model_validate({
        "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
        "argilla": {"enabled": True, "url": f"http://127.0.0.1:{port}", "timeout_s": 5,
                    "owner": {"username": "owner", "api_key_env": "PREFCURATE_TEST_ARGILLA_KEY"}},
    })
    started = time.monotonic()
    outcome = route_to_annotators(config, round_index=3)
    assert time.monotonic() - started < 60
    assert outcome["collected"].startswith("skipped:") and outcome["pushed"].startswith("skipped:")
    assert "owner.key.for.a.server" not in str(outcome)
