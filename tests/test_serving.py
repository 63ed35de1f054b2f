"""`prefcurate serve-rm`'s server (issue 17): batched scoring across concurrent clients, the
OpenRLHF remote-RM shape, a bearer token, and bad requests answered with a 4xx naming the field."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from prefcurate.rm.data import render
from prefcurate.rm.score import RewardScorer
from prefcurate.rm.serving import BatchingScorer, RewardServer


@pytest.fixture
def served(reward_model_dir):
    scorer = RewardScorer(reward_model_dir, precision="fp32")
    server = RewardServer(("127.0.0.1", 0), BatchingScorer(scorer, max_batch=64, max_wait_ms=20), token="s3cret-token",
                          max_items=8, max_chars=2000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", scorer, server
    server.shutdown()


def call(url: str, path: str, body=None, token: str | None = "s3cret-token") -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method="GET" if body is None else "POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_scores_match_the_scorer_and_concurrent_clients_share_batches(served):
    url, scorer, server = served
    assert call(url, "/health")[0] == 200
    prompts = [f"Question {i}?" for i in range(16)]
    responses = [f"Answer {i}, " + "more words " * (i % 5) for i in range(16)]
    expected = scorer.score(prompts, responses)
    results = [None] * 16

    def client(i: int) -> None:
        results[i] = call(url, "/score", {"items": [{"prompt": prompts[i], "response": responses[i]}]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in results)
    assert [body["rewards"][0] for _, body in results] == pytest.approx(expected, abs=1e-5)
    assert server.batcher.batches < 16  # requests that arrived together were scored together
    assert results[0][1]["std"] == [0.0]  # one member: no spread


def test_messages_and_the_openrlhf_shape(served, reward_model_dir):
    url, scorer, _ = served
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    status, body = call(url, "/score", {"items": [{"messages": conversation, "response": "Blue."}]})
    assert status == 200
    assert body["rewards"] == pytest.approx(
        scorer.score([""], ["Blue."], prompt_messages=[json.dumps(conversation)]), abs=1e-5)
    formatted = render(scorer.tokenizer, "Name a colour.", "Blue.")  # as the policy's side formats it
    status, body = call(url, "/get_reward", {"query": [formatted], "prompts": ["Name a colour."]})
    assert status == 200 and body["rewards"] == body["scores"]
    assert body["rewards"] == pytest.approx(scorer.score(["Name a colour."], ["Blue."]), abs=1e-5)


@pytest.mark.parametrize("body, status, message", [
    ({"items": [{"prompt": "Hi"}]}, 400, "items[0].response: expected a string, got NoneType"),
    ({"items": [{"prompt": 3, "response": "x"}]}, 400, "items[0].prompt: expected a string, got int"),
    ({"items": [{"messages": [{"role": "user"}], "response": "x"}]}, 400, "items[0].messages: expected a list"),
    ({"items": []}, 400, "items: expected a non-empty list"),
    ({"items": [{"prompt": "p", "response": "r"}] * 9}, 413, "items: 9 items, at most 8"),
    ({"items": [{"prompt": "p", "response": "r" * 3000}]}, 413, "items[0]: "),
    ({"query": "not a list"}, 400, "query: expected a non-empty list"),
    (b"{not json", 400, "body: not valid JSON"),
])
def test_a_bad_request_gets_a_4xx_naming_the_field_and_the_server_keeps_serving(served, body, status, message):
    url, _, _ = served
    path = "/get_reward" if isinstance(body, dict) and "query" in body else "/score"
    answered, payload = call(url, path, body)
    assert answered == status and message in payload["error"]
    assert call(url, "/score", {"items": [{"prompt": "p", "response": "r"}]})[0] == 200


def test_the_token_is_required_when_set(served):
    url, _, _ = served
    assert call(url, "/score", {"items": [{"prompt": "p", "response": "r"}]}, token=None)[0] == 401
    assert call(url, "/score", {"items": [{"prompt": "p", "response": "r"}]}, token="wrong")[0] == 401
    assert call(url, "/nowhere", {"items": []})[0] == 404


@pytest.mark.slow
def test_the_serve_rm_command_serves_until_stopped(tmp_path, reward_model_dir):
    import re
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "prefcurate.cli", "serve-rm", "--checkpoint", str(reward_model_dir),
                                "--port", "0", "--config", str(_config(tmp_path))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", line).group(1)
        assert call(url, "/health", token=None)[0] == 200
        status, body = call(url, "/score", {"items": [{"prompt": "p", "response": "r"}]}, token=None)
        assert status == 200 and len(body["rewards"]) == 1
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "stopped" in out and "Traceback" not in err


def _config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"workdir: {tmp_path / 'work'}\nevaluate:\n  precision: fp32\n")
    return path
