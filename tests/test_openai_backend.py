"""The OpenAI-compatible path: the real `openai` client against the suite's HTTP server."""

from prefcurate.config import BackendConfig, GenerateConfig, JudgeConfig
from prefcurate.curation.backends import ChatRequest
from prefcurate.curation.backends.openai_compat import OpenAIBackend
from prefcurate.curation.constitution import load_constitution
from prefcurate.curation.generate import generate_candidates
from prefcurate.curation.judge import judge_pairs
from tests.support.builders import add_candidates, add_pair, add_prompt
from tests.support.openai_server import Behaviour, OpenAICompatServer


def backend_for(server, **options) -> OpenAIBackend:
    settings = {"kind": "openai", "model": "test-model", "base_url": server.base_url, "max_retries": 3,
                "timeout_s": 5.0, **options}
    return OpenAIBackend(BackendConfig(**settings))


def request(key: str, content: str = "hello", **options) -> ChatRequest:
    return ChatRequest(key=key, messages=[{"role": "user", "content": content}], max_tokens=16, **options)


def test_completes_many_requests_concurrently(openai_server):
    with backend_for(openai_server, max_concurrency=8) as backend:
        results = {r.key: r for r in backend.complete(request(str(i), f"prompt {i}", seed=i) for i in range(40))}
    assert len(results) == 40 and all(r.ok for r in results.values())
    assert results["3"].text and results["3"].completion_tokens > 0
    assert len(openai_server.requests) == 40


def test_retries_429_and_500_then_succeeds():
    with OpenAICompatServer(Behaviour(script=["429", "500", "ok"])) as server, backend_for(server) as backend:
        [result] = list(backend.complete([request("x")]))
    assert result.ok
    assert server.outcomes == ["429", "500", "ok"]


def test_failures_become_results_with_a_reason():
    behaviour = Behaviour(script=["garbage", "500", "500", "hang"], hang_s=3.0)
    with OpenAICompatServer(behaviour) as server:
        with backend_for(server, max_retries=0, timeout_s=1.0) as backend:
            results = {r.key: r for r in backend.complete([request("garbage")])}
            results.update({r.key: r for r in backend.complete([request("server")])})
        with backend_for(server, max_retries=1, timeout_s=1.0) as backend:
            results.update({r.key: r for r in backend.complete([request("hang")])})
    assert results["garbage"].error.startswith("malformed_response")
    assert results["server"].error.startswith("server_error")
    assert results["hang"].error.startswith("timeout")
    assert not any(r.ok for r in results.values())


def test_generate_stage_through_the_server_is_idempotent(store, openai_server):
    for text in ("What is a reward model?", "Name a prime number."):
        add_prompt(store, text)
    config = GenerateConfig(n_candidates=3)
    with backend_for(openai_server) as backend:
        first = generate_candidates(store, backend, config)
        second = generate_candidates(store, backend, config)
    assert first.details["new_candidates"] == 6 and second.details["requested"] == 0
    assert store.count("candidates") == 6 and len(openai_server.requests) == 6
    assert store.scalar("SELECT count(DISTINCT text) FROM candidates") > 1


def test_judge_stage_reads_verdicts_and_logprob_confidence(store, openai_server):
    prompt = add_prompt(store, "Explain tides.")
    short, long = add_candidates(store, prompt, ["The moon.", "The moon's gravity pulls the oceans."])
    pair, _, _ = add_pair(store, prompt, short, long)
    constitution = load_constitution(None)
    config = JudgeConfig(backend=BackendConfig(kind="openai", model="test-model"))
    with backend_for(openai_server) as backend:
        report = judge_pairs(store, backend, constitution, config)
        again = judge_pairs(store, backend, constitution, config)
    assert report.details["valid"] == 2 and again.details["calls_made"] == 0
    assert len(openai_server.requests) == 2
    rows = store.con.execute("SELECT shown_order, verdict_shown, winner, confidence, confidence_source "
                             "FROM judgments ORDER BY shown_order").fetchall()
    expected_winner = "a" if long < short else "b"  # the longer text wins in the server's rule
    assert [r[2] for r in rows] == [expected_winner, expected_winner]
    assert all(abs(r[3] - 0.9) < 1e-6 and r[4] == "logprobs" for r in rows)
    assert store.one("SELECT position_consistent, balanced_label FROM pair_labels") == (True, expected_winner)


def test_unparseable_and_failed_judge_calls_are_stored_with_reasons(store):
    prompt = add_prompt(store, "q")
    a, b = add_candidates(store, prompt, ["one", "two two"])
    add_pair(store, prompt, a, b)
    constitution = load_constitution(None)
    config = JudgeConfig(backend=BackendConfig(kind="openai", model="test-model"))
    with OpenAICompatServer(Behaviour(script=["garbage", "garbage"])) as server:
        with backend_for(server, max_retries=0) as backend:
            first = judge_pairs(store, backend, constitution, config)
            assert first.details["invalid"] == 2
            reasons = {r[0] for r in store.con.execute("SELECT invalid_reason FROM judgments").fetchall()}
            assert all(reason.startswith("call_failed: malformed_response") for reason in reasons)
            second = judge_pairs(store, backend, constitution, config)  # transport failures are asked again
    assert second.details["calls_made"] == 2 and second.details["valid"] == 2
    assert store.count("judgments") == 2
