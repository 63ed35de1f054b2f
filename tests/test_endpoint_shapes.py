"""A misbehaving endpoint never makes a silent wrong label (issue 23, items 6 and 10-12).

Every shape a broken endpoint or a proxy before it answers in (an HTML page with status 200 or 502,
no choices, null content, a JSON body cut short, a slow drip, a reset connection, a wrong content
type, a hang) is one call tried again or stored as failed with its reason, for judging and
generation, online and in batches; the stage finishes and stores every other answer, and no asyncio
task is left pending. An endpoint that answers nothing stops the stage; a refused connection, a
missing model and a missing OpenAI key are each named for what they are."""

from __future__ import annotations

import gc
import logging
import re
import threading
import time

import pytest

from prefcurate.core.config import BackendConfig, ConfigError, GenerateConfig, config_from_dict
from prefcurate.core.progress import Progress
from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.backends import ChatRequest, make_backend
from prefcurate.curation.backends.openai_compat import OpenAIBackend
from prefcurate.curation.generation.generate import generate_candidates
from tests.support.batch_api import LINE_SHAPES
from tests.support.builders import add_prompt
from tests.support.judging import add_judgeable_pairs, judge_config, run_judge
from tests.support.openai_server import SHAPES, Behaviour, OpenAICompatServer

# Small deadlines keep the module fast: a drip or hang costs one timeout_s.
FAST = {"timeout_s": 0.4, "stall_s": 3.0, "max_retries": 1, "max_concurrency": 4}
# Shapes of a completion that did arrive, only without an answer in it: the server would say the
# same again, so the call is stored as failed (and asked again on the next run), not retried now.
NOT_RETRIED = ("no_choices", "null_content")
REASONS = {
    "html_200": r"malformed_response: the answer is an HTML page titled '502 Bad Gateway' \(a proxy's error page\?\)",
    "html_502": r"server_error: HTTP 502 with an HTML page titled '502 Bad Gateway'",
    "no_choices": r"malformed_response: a completion with no choices",
    "null_content": r"malformed_response: a completion whose content is null",
    "truncated_body": r"malformed_response: the answer is not valid JSON \(cut short\?\)",
    "drip": r"timeout: no complete answer within 0.4 s \(backend.timeout_s",
    "reset": r"connection: 127.0.0.1:\d+ (reset the connection|closed the connection without answering)",
    "wrong_type": r"malformed_response: the answer is a server-sent event stream \(text/event-stream\)",
    "hang": r"timeout: no complete answer within 0.4 s",
}
BATCH_REASONS = {
    "no_choices": r"call_failed: malformed_response: a completion with no choices",
    "null_content": r"call_failed: malformed_response: a completion whose content is null",
    "status_500": r"call_failed: http_500: the upstream model failed",
}


def shaped_server(shape: str | None = None, **behaviour) -> OpenAICompatServer:
    """The suite's server; the first call it gets is answered in `shape` (a drip or hang lasts 2 s)."""
    return OpenAICompatServer(Behaviour(script=[shape] if shape else [], **{"hang_s": 2.0, "drip_every_s": 0.05,
                                                                            **behaviour}))


def backend_config(server, **options) -> dict:
    return {"kind": "openai", "model": "test-model", "base_url": server.base_url, **FAST, **options}


def request(key: str) -> ChatRequest:
    return ChatRequest(key=key, messages=[{"role": "user", "content": f"Say {key}."}], max_tokens=16)


def assert_no_task_left_pending(caplog, capfd) -> None:
    gc.collect()  # a task left pending is reported when it is collected
    assert "Task was destroyed" not in caplog.text
    assert "Task was destroyed" not in capfd.readouterr().err


def judgments(store) -> list[tuple]:
    """(valid, invalid_reason, winner, whether the winner is the longer response) per stored call."""
    return store.con.execute("""
        SELECT j.valid, j.invalid_reason, j.winner,
               j.winner = CASE WHEN length(p.text_a) > length(p.text_b) THEN 'a' ELSE 'b' END
        FROM judgments j JOIN pair_texts p USING (pair_id)""").fetchall()


def assert_verdicts_right(rows) -> None:
    """The suite's judge prefers the longer response: any other stored verdict was made up."""
    assert all(right for valid, _, _, right in rows if valid)


def candidates_are_the_servers(store, config: GenerateConfig) -> bool:
    """Every stored candidate is the text the server answered for its prompt and seed (nothing else
    passed for an answer)."""
    rows = store.con.execute("SELECT c.candidate_id, p.text, c.text FROM candidates c JOIN prompts p "
                             "USING (prompt_id)").fetchall()
    return all(text == OpenAICompatServer._reply(prompt, int(key[:8], 16), config.max_new_tokens)
               for key, prompt, text in rows)


def add_prompts(store, n: int = 4) -> None:
    for index in range(n):
        add_prompt(store, f"Question {index}: name a colour.")


# -- one call ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_is_one_failed_call_with_its_reason(shape, caplog, capfd):
    with shaped_server(shape) as server, OpenAIBackend(BackendConfig(**backend_config(server, max_retries=0))) as b:
        results = {result.key: result for result in b.complete([request("first")])}
        results.update({result.key: result for result in b.complete(request(f"k{i}") for i in range(3))})
    assert re.match(REASONS[shape], results["first"].error), results["first"].error
    assert results["first"].text is None
    assert all(results[f"k{i}"].ok for i in range(3))
    assert_no_task_left_pending(caplog, capfd)


def test_a_completion_sent_as_text_plain_is_still_read():
    """A wrong content type over a real completion: the answer is there, so it is used."""
    with shaped_server() as server, OpenAIBackend(BackendConfig(**backend_config(server))) as backend:
        server.behaviour.script = ["ok"]
        [result] = backend.complete([request("x")])
    assert result.ok


# -- stages, online -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_the_judge_stage_meets_each_shape(shape, store, caplog, capfd):
    add_judgeable_pairs(store, 4)
    with shaped_server(shape) as server, caplog.at_level(logging.INFO):
        report = run_judge(store, judge_config(server, members=[{"backend": backend_config(server)}]))
    rows = judgments(store)
    assert len(rows) == 8 and server.outcomes[0] == shape  # every call stored, the first met the shape
    assert_verdicts_right(rows)
    if shape in NOT_RETRIED:
        [(_, reason, winner, _)] = [row for row in rows if not row[0]]
        assert winner is None and re.match("call_failed: " + REASONS[shape], reason), reason
        assert report.details["valid"] == 7
    else:  # tried again, saying why, and answered
        assert report.details["valid"] == 8
        assert re.search("trying a call again in [0-9.]+ s after " + REASONS[shape], caplog.text)
    assert_no_task_left_pending(caplog, capfd)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_generate_stage_meets_each_shape(shape, store, caplog, capfd):
    add_prompts(store)
    with shaped_server(shape) as server, caplog.at_level(logging.INFO):
        config = GenerateConfig(n_candidates=2, backend=backend_config(server))
        with make_backend(config.backend, None) as backend:
            report = generate_candidates(store, backend, config)
    assert server.outcomes[0] == shape and candidates_are_the_servers(store, config)
    if shape in NOT_RETRIED:
        assert store.count("candidates") == 7 and report.details["failed"] == 1
        [(reason,)] = store.con.execute("SELECT reason FROM rejects").fetchall()
        assert re.match(REASONS[shape], reason), reason
    else:
        assert store.count("candidates") == 8 and report.details["failed"] == 0
        assert re.search("trying a call again in [0-9.]+ s after " + REASONS[shape], caplog.text)
    assert_no_task_left_pending(caplog, capfd)


# -- stages, in batches ---------------------------------------------------------------------------

def batch_backend(server) -> dict:
    return {"kind": "openai_batch", "model": "test-model", "base_url": server.base_url}


@pytest.mark.parametrize("shape", LINE_SHAPES)
def test_a_batch_judge_meets_each_output_line_shape(shape, store):
    add_judgeable_pairs(store, 4)
    with shaped_server() as server:
        config = judge_config(server, members=[{"backend": batch_backend(server), "output_format": "json_schema"}])
        run_judge(store, config)  # submitted
        server.batch_api.behaviour.first_line_shape = shape
        collected = run_judge(store, config)
        rows = judgments(store)
        assert_verdicts_right(rows)
        assert collected.details["batches"]["submitted_calls"] == 1  # the bad line's call, asked again
        if shape == "garbage_line":
            assert collected.details["batches"]["unreadable_lines"] == 1 and len(rows) == 7
        else:
            [(_, reason, winner, _)] = [row for row in rows if not row[0]]
            assert winner is None and re.match(BATCH_REASONS[shape], reason), reason
        run_judge(store, config)
        assert [row[0] for row in judgments(store)] == [True] * 8
    assert server.batch_api.lines_received == 9


@pytest.mark.parametrize("shape", LINE_SHAPES)
def test_batch_generation_meets_each_output_line_shape(shape, store):
    add_prompts(store)
    with shaped_server() as server:
        config = GenerateConfig(n_candidates=2, backend=batch_backend(server))
        with make_backend(config.backend, None) as backend:
            generate_candidates(store, backend, config)  # submitted
            server.batch_api.behaviour.first_line_shape = shape
            collected = generate_candidates(store, backend, config)
            assert store.count("candidates") == 7 and candidates_are_the_servers(store, config)
            assert collected.details["batches"]["submitted_calls"] == 1
            if shape != "garbage_line":
                [(reason,)] = store.con.execute("SELECT reason FROM rejects").fetchall()
                assert re.match(BATCH_REASONS[shape].removeprefix("call_failed: "), reason), reason
            generate_candidates(store, backend, config)
    assert store.count("candidates") == 8 and candidates_are_the_servers(store, config)


# -- an endpoint that stops answering --------------------------------------------------------------

def test_a_hanging_endpoint_stops_the_judge_and_keeps_what_was_answered(store, caplog, capfd):
    """Three answers, then nothing: within stall_s of the last answer the stage stops, naming the
    endpoint and the calls waiting; the three are stored."""
    add_judgeable_pairs(store, 6)
    with shaped_server(rate_hang=1.0) as server:
        server.behaviour.script = ["ok"] * 3
        backend = backend_config(server, timeout_s=1.0, stall_s=1.5, max_retries=5)
        with pytest.raises(StageFailed, match=rf"test-model at {server.base_url} has not answered for \d+ s "
                                              r"\(backend.stall_s: 1.5\) while \d+ calls wait: the stage stops"):
            run_judge(store, judge_config(server, members=[{"backend": backend}]))
    rows = judgments(store)
    assert len(rows) == 3 and all(valid for valid, *_ in rows)
    assert_verdicts_right(rows)
    assert_no_task_left_pending(caplog, capfd)


def test_a_hanging_endpoint_stops_generation_and_keeps_what_was_answered(store):
    add_prompts(store)
    with shaped_server(rate_hang=1.0) as server:
        server.behaviour.script = ["ok"] * 2
        config = GenerateConfig(n_candidates=2, backend=backend_config(server, timeout_s=1.0, stall_s=1.5))
        with make_backend(config.backend, None) as backend, pytest.raises(StageFailed, match="has not answered for"):
            generate_candidates(store, backend, config)
    assert store.count("candidates") == 2 and candidates_are_the_servers(store, config)


def test_an_endpoint_failing_every_call_stops_without_leaving_tasks_pending(store, caplog, capfd):
    """The proxy is down: 502 pages only. The stage stops after a run of them (with calls still in
    flight), and says what answers."""
    add_judgeable_pairs(store, 20)
    with shaped_server() as server:
        server.behaviour.script = ["html_502"] * 200
        backend = backend_config(server, max_retries=0, max_consecutive_failures=4, max_concurrency=8)
        with pytest.raises(StageFailed, match=r"the last 4 calls to .* failed \(server_error, after the client's "
                                              r"retries\); the server keeps failing \(its log may say why\)\. "
                                              r"Last error: server_error: HTTP 502 with an HTML page"):
            run_judge(store, judge_config(server, members=[{"backend": backend, "output_format": "json_schema"}]))
    assert_no_task_left_pending(caplog, capfd)


def test_closing_a_backend_ends_its_calls_and_frees_whoever_waits_on_them(caplog, capfd):
    """A stage that stops closes its backends while a thread may still wait for results (the judge's
    per-endpoint worker): the calls in flight end, so does the wait, and no task is left pending."""
    with shaped_server(rate_hang=1.0, hang_s=30.0) as server:
        backend = OpenAIBackend(BackendConfig(**backend_config(server, timeout_s=20.0, stall_s=20.0)))
        results = backend.complete(request(f"k{i}") for i in range(6))
        waiting = threading.Thread(target=lambda: list(results), daemon=True)
        waiting.start()
        while len(server.requests) < 4:  # max_concurrency calls are at the server
            time.sleep(0.01)
        backend.close()
        waiting.join(5)
        assert not waiting.is_alive()
    del results
    assert_no_task_left_pending(caplog, capfd)


def test_a_drip_cannot_outlast_the_deadline():
    """A byte every 50 ms for 2 s: no read ever times out, the whole answer does, in each attempt."""
    with shaped_server(rate_hang=0.0) as server:
        server.behaviour.script = ["drip"] * 3
        with OpenAIBackend(BackendConfig(**backend_config(server, max_retries=2))) as backend:
            started = time.monotonic()
            [result] = backend.complete([request("x")])
            elapsed = time.monotonic() - started
    assert result.error_kind == "timeout" and server.outcomes == ["drip"] * 3
    assert elapsed < 3 * 0.4 + 2.0  # three deadlines and two backoffs, not three 2-s drips


def test_progress_speaks_while_calls_wait(caplog):
    with caplog.at_level(logging.INFO, logger="prefcurate"), Progress("judge", 40, log_every_s=0.1) as progress:
        progress.update(8)
        time.sleep(0.35)
    assert re.search(r"judge: 8/40 \([0-9.]+/s\); 32 waiting, none finished for \d+ s", caplog.text)


# -- what is wrong, said plainly ------------------------------------------------------------------

def test_a_refused_connection_is_named_as_one(store):
    with shaped_server() as server:
        config = backend_config(server, max_retries=0, max_consecutive_failures=2)
    # the server has stopped: nothing listens on its port
    with OpenAIBackend(BackendConfig(**config)) as backend:
        [result] = backend.complete([request("x")])
    assert re.fullmatch(r"connection: connection refused at 127.0.0.1:\d+ \(nothing listens there\)", result.error)
    add_judgeable_pairs(store, 4)
    with pytest.raises(StageFailed, match=r"failed \(connection, after the client's retries\); is the server up\? "
                                          r"Last error: connection: connection refused at 127.0.0.1:\d+"):
        run_judge(store, judge_config(server, members=[{"backend": config}]))


def test_a_missing_model_stops_the_judge_at_once_listing_the_served_models(store):
    add_judgeable_pairs(store, 10)
    with shaped_server(models=("llama-3.1-8b", "qwen2.5-7b")) as server:
        with pytest.raises(StageFailed, match=r"model 'test-model' not found on http://127.0.0.1:\d+/v1; it offers: "
                                              r"llama-3.1-8b, qwen2.5-7b"):
            run_judge(store, judge_config(server, members=[{"backend": backend_config(server, max_retries=3)}]))
        assert len(server.requests) == 1  # neither retried nor asked again for the other 19 calls
    assert "is the server up" not in str(store.con.execute("SELECT * FROM judgments").fetchall())


def test_the_openai_api_without_a_key_is_refused_before_any_call(monkeypatch):
    monkeypatch.delenv("PREFCURATE_NO_SUCH_KEY", raising=False)
    for kind in ("openai", "openai_batch"):
        config = GenerateConfig(backend={"kind": kind, "model": "gpt-4.1-mini",
                                         "api_key_env": "PREFCURATE_NO_SUCH_KEY"})
        with pytest.raises(StageFailed, match=r"would send its calls to the OpenAI API .* \$PREFCURATE_NO_SUCH_KEY "
                                              r"\(backend.api_key_env\) is not set"):
            make_backend(config.backend, None)
    with shaped_server() as server:  # a local server needs no key
        with make_backend(GenerateConfig(backend=backend_config(server, api_key_env="PREFCURATE_NO_SUCH_KEY"))
                          .backend, None) as backend:
            assert [result.ok for result in backend.complete([request("x")])] == [True]


def test_stall_s_below_timeout_s_is_a_config_error():
    with pytest.raises(ConfigError, match=r"generate.backend: .*stall_s \(30\) must be at least timeout_s \(60\)"):
        config_from_dict({"generate": {"backend": {"kind": "openai", "model": "m", "stall_s": 30}}})
