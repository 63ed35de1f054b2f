"""A labelling process killed with SIGKILL resumes without re-asking anything it stored."""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from prefcurate.core.config import load_config
from prefcurate.core.journal import journal_path, read_journal
from prefcurate.core.store import Store
from prefcurate.curation.judging.constitution import load_constitution
from prefcurate.curation.judging.calls import pairs_to_judge, plan_calls
from prefcurate.curation.judging.panel import PanelJudge
from tests.support.judging import add_judgeable_pairs, judge_command
from tests.support.openai_server import Behaviour, OpenAICompatServer

N_PAIRS = 120  # 240 calls
COMMIT_EVERY = 8
CONCURRENCY = 4


def request_key(messages: list[dict]) -> str:
    return json.dumps(messages, sort_keys=True)


@pytest.mark.slow
def test_a_killed_judge_run_resumes_without_repeating_answered_calls(tmp_path, shared_prefect_server):
    _, env = shared_prefect_server  # the commands' flows run on it, not each on a temporary server of its own
    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, N_PAIRS)

    with OpenAICompatServer(Behaviour(latency_s=0.05)) as server:
        config_path = tmp_path / "judge.yaml"
        config_path.write_text(yaml.safe_dump({
            "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
            "judge": {"commit_every": COMMIT_EVERY, "panel": [{"backend": {
                "kind": "openai", "model": "test-model", "base_url": server.base_url,
                "max_concurrency": CONCURRENCY}}]},
        }))
        process = subprocess.Popen(judge_command(config_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + 120
        while len(server.requests) < 80 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        asked_before_kill = len(server.requests)

        journaled = {row["judgment_id"] for row in read_journal(journal_path(store_path, "judgments"))}
        with Store(store_path) as store:
            stored = {row[0] for row in store.con.execute("SELECT judgment_id FROM judgments").fetchall()}
            config = load_config(config_path).judge
            planned = plan_calls(pairs_to_judge(store), load_constitution(None),
                                 PanelJudge(config.panel[0], "json_schema"), config)
        assert 0 < len(stored | journaled) < len(planned) == 2 * N_PAIRS
        id_of = {request_key(call.request.messages): call.judgment_id for call in planned}

        resumed = subprocess.run(judge_command(config_path), env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]

    asked_after = [id_of[request_key(body["messages"])] for body in server.requests[asked_before_kill:]]
    assert not (stored | journaled) & set(asked_after)  # nothing kept before the kill was asked again
    # what was asked but neither committed nor journaled when the kill came: the calls in flight
    asked_before = {id_of[request_key(body["messages"])] for body in server.requests[:asked_before_kill]}
    assert len(asked_before - stored - journaled) <= CONCURRENCY
    with Store(store_path) as store:
        final = {row[0] for row in store.con.execute("SELECT judgment_id FROM judgments WHERE valid").fetchall()}
    assert final == {call.judgment_id for call in planned} and stored <= final


@pytest.mark.slow
@pytest.mark.parametrize("mode, page_pairs", [("pairwise", 20000), ("rating", 20000), ("ranking", 20000),
                                               ("pairwise", 50)], ids=["pairwise", "rating", "ranking", "pairwise-pages"])
def test_with_the_journal_a_resume_repeats_only_the_calls_in_flight_at_the_kill(tmp_path, shared_prefect_server, mode,
                                                                                 page_pairs):
    """The server kills the judge at its 150th answer, with answers committed only every 1000:
    without the journal all 149 answers would be asked again. In every label mode: 120 prompts of
    two candidates are 240 pairwise calls (one pair, both orders), 240 ratings (one a candidate) or
    240 rankings (both orders). In pages of 50 pairs, the kill comes in the second page and the
    resume replays each page's journaled answers as it plans the page."""
    _, env = shared_prefect_server
    from tests.support.openai_server import call_key

    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        add_judgeable_pairs(store, N_PAIRS)
    config_path = tmp_path / "judge.yaml"

    def configure(server) -> None:
        config_path.write_text(yaml.safe_dump({
            "workdir": str(tmp_path / "out"), "store": {"path": str(store_path)},
            "judge": {"commit_every": 1000, "page_pairs": page_pairs, "panel": [{"backend": {
                "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": 8},
                "mode": mode}]}}))

    with OpenAICompatServer(Behaviour(latency_s=0.02, kill_at_answer=150)) as server:
        configure(server)  # one server for both runs: its URL is part of every call's identity
        process = subprocess.Popen(judge_command(config_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server.behaviour.kill_pid = process.pid
        process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL
        answered, asked = set(server.answered), [call_key(body) for body in server.requests]
        in_flight = server.in_flight_at_kill
        assert len(answered) == 149 and 0 < in_flight <= 8

        server.behaviour.kill_at_answer = None
        resumed = subprocess.run(judge_command(config_path), env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        asked_again = [call_key(body) for body in server.requests[len(asked):]]
    assert not answered & set(asked_again)  # no answered call is paid for twice
    assert len(set(asked) & set(asked_again)) == in_flight  # the calls in flight, and only those, again
    assert len(asked_again) == 2 * N_PAIRS - 149
    with Store(store_path) as store:
        table = "judgments" if mode == "pairwise" else "score_calls"
        assert store.scalar(f"SELECT count(*) FROM {table} WHERE valid") == 2 * N_PAIRS
