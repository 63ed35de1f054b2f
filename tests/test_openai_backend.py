"""The OpenAI-compatible path: the real `openai` client against the suite's HTTP server."""

from prefcurate.core.config import BackendConfig, GenerateConfig
from prefcurate.curation.backends import ChatRequest
from prefcurate.curation.backends.openai_compat import OpenAIBackend
from prefcurate.curation.generation.generate import generate_candidates
from tests.support.builders import add_prompt
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


def test_rate_limit_in_requests_per_minute_holds_the_rate(openai_server):
    import time

    # 1200/min = 20/s with one second of burst: 60 requests need at least ~2 s.
    with backend_for(openai_server, requests_per_minute=1200, max_concurrency=32) as backend:
        started = time.perf_counter()
        results = list(backend.complete(request(str(i)) for i in range(60)))
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results)
    assert elapsed >= 1.8


def test_token_bucket_refills_at_its_rate():
    from prefcurate.curation.backends.rate_limit import TokenBucket

    now = [0.0]
    bucket = TokenBucket(per_minute=600, clock=lambda: now[0])  # 10/s, holds 10
    bucket.take(10)
    assert bucket.wait_time(5) == 0.5
    now[0] = 0.5
    assert bucket.wait_time(5) == 0.0
    assert bucket.wait_time(50) > 0  # oversized: waits for a full bucket, then may go
    now[0] = 1.0
    assert bucket.wait_time(50) == 0.0


def test_a_429_is_retried_after_its_retry_after():
    import time

    with OpenAICompatServer(Behaviour(script=["429", "ok"], retry_after_s=1.0)) as server, backend_for(server) as backend:
        started = time.perf_counter()
        [result] = list(backend.complete([request("x")]))
        elapsed = time.perf_counter() - started
    assert result.ok and server.outcomes == ["429", "ok"]
    assert elapsed >= 1.0
