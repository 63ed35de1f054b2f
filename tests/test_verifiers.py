"""Verifiers (issue 18, part 2): the sandbox really enforcing its limits, checks read at ingest,
verdicts stored as judgments that label a pair only when exactly one response passes, the label
precedence, and the LLM judges audited against the verifiers."""

from __future__ import annotations

import json
import socket
import sys
import threading

import pytest

from prefcurate.core.config import CurateConfig, IngestConfig, JudgeConfig, config_from_dict
from prefcurate.curation.labels import labelled_pairs
from prefcurate.curation.intake.prompts import ingest_prompts
from prefcurate.curation.verifiers import sandbox
from prefcurate.curation.verifiers.sandbox import Limits, run_sandboxed
from tests.support.builders import add_candidates, add_pair
from tests.support.judging import run_judge

PYTHON = [sys.executable, "-I", "-S", "-"]


# -- the sandbox ------------------------------------------------------------------------------------

def test_the_sandbox_stops_a_program_that_runs_too_long():
    result = run_sandboxed(PYTHON, "while True:\n    pass\n", Limits(time_s=1.5))
    assert result.status == "timeout" and result.seconds < 5 and "timed out" in result.describe()


def test_the_sandbox_bounds_memory():
    result = run_sandboxed(PYTHON, "block = bytearray(3 * 1024 ** 3)\nprint('allocated')", Limits(memory_mb=256))
    assert result.status == "memory" and "allocated" not in result.stdout


def test_the_sandbox_has_no_network():
    """A server listening on this machine's loopback is unreachable from inside."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    port = server.getsockname()[1]
    result = run_sandboxed(PYTHON, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                           Limits())
    assert result.status == "failed" and "Network is unreachable" in result.stderr
    outside = run_sandboxed(PYTHON, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                            Limits(), network=True)  # the same program, given the network: it connects
    assert outside.ok
    server.close()


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_a_crash_is_reported_as_one():
    result = run_sandboxed(PYTHON, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", Limits())
    assert result.status == "crashed" and result.describe() == "killed by signal 11"


def test_without_namespaces_code_is_refused_not_run_with_the_network(monkeypatch, tmp_path):
    sandbox.no_network_prefix.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare to be found
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="code is not run without that"):
            run_sandboxed(PYTHON, "print('ran')", Limits())
    finally:
        sandbox.no_network_prefix.cache_clear()


# -- checks at ingest -------------------------------------------------------------------------------

def test_ingest_reads_checks_and_rejects_a_bad_one_by_row_and_field(store, tmp_path):
    source = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "What is 2 + 2?", "reference_answer": "4"},
        {"prompt": "Write add(a, b).", "tests": "assert add(2, 3) == 5"},
        {"prompt": "Answer in JSON.", "constraints": {"format": "json", "max_words": 40}},
        {"prompt": "Answer briefly.", "constraints": {"max_wrods": 10}},
        {"prompt": "Answer in three words.", "constraints": "not json"},
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = ingest_prompts(store, IngestConfig(source=str(source)))
    assert report.count_out == 5 and report.details["checks"] == {"math": 1, "code": 1, "constraints": 1}
    rejects = store.con.execute("SELECT source_row, field, reason FROM rejects ORDER BY source_row").fetchall()
    assert [(row, field) for row, field, _ in rejects] == [(4, "constraints"), (5, "constraints")]
    assert "unknown constraint 'max_wrods'" in rejects[0][2]


# -- verdicts ---------------------------------------------------------------------------------------

CODE_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def checked_store(store) -> dict:
    """Prompts with checks and pairs whose responses pass or fail them; returns pair ids by case."""
    from tests.support.builders import add_prompt

    cases = {
        "math": ("What is 6 * 7?", {"reference_answer": "42"},
                 "6 * 7 = 42, so the answer is \\boxed{42}.", "The answer is 48."),
        "code": ("Write add(a, b) in Python.", {"tests": CODE_TESTS},
                 "```python\ndef add(a, b):\n    return a + b\n```", "```python\ndef add(a, b):\n    return a - b\n```"),
        "code-loop": ("Write add(a, b), fast.", {"tests": CODE_TESTS},
                      "```python\ndef add(a, b):\n    while True:\n        pass\n```",
                      "```python\ndef add(a, b):\n    return sum([a, b])\n```"),
        "constraints": ("Give the capital of France as JSON.", {"constraints": {"format": "json"}},
                        "Paris is the capital.", '{"capital": "Paris"}'),
        "both-pass": ("What is 1 + 1?", {"reference_answer": "2"}, "It is 2.", "\\boxed{2}"),
    }
    from prefcurate.curation.intake.prompt_checks import read_checks
    import pyarrow as pa

    pairs = {}
    for case, (prompt_text, columns, first, second) in cases.items():
        prompt = add_prompt(store, prompt_text)
        checks, problems = read_checks(columns, prompt, IngestConfig())
        assert not problems
        store.upsert("prompt_checks", pa.Table.from_pylist(checks))
        a, b = add_candidates(store, prompt, [first, second])
        pair_id, stored_a, _ = add_pair(store, prompt, a, b)
        pairs[case] = (pair_id, "a" if stored_a == a else "b")  # where the first response ended up
    return pairs


def verifier_panel(*llm_members) -> JudgeConfig:
    return JudgeConfig(panel=[{"kind": "verifier", "verifier": {"time_limit_s": 3}}, *llm_members])


def test_a_verifier_labels_a_pair_only_when_exactly_one_response_passes(store):
    pairs = checked_store(store)
    report = run_judge(store, verifier_panel())
    summary = report.details["verifiers"]["verifier"]
    assert summary["by_domain"]["math"] == {"pairs": 2, "decisive": 1, "both_pass": 1, "neither_passes": 0}
    verdicts = {row[0]: row[1:] for row in store.con.execute(
        "SELECT pair_id, valid, winner, confidence, confidence_source, error_kind, invalid_reason FROM judgments"
        ).fetchall()}

    def passing(case: str, first_passes: bool) -> str:
        first_side = pairs[case][1]
        return first_side if first_passes else ("b" if first_side == "a" else "a")

    assert verdicts[pairs["math"][0]][:4] == (True, passing("math", True), 1.0, "verifier")
    assert verdicts[pairs["code"][0]][:2] == (True, passing("code", True))
    assert verdicts[pairs["code-loop"][0]][:2] == (True, passing("code-loop", False))  # the loop timed out
    raw = json.loads(store.scalar("SELECT raw_response FROM judgments WHERE pair_id = ?", [pairs["code-loop"][0]]))
    assert any(side["status"] == "timeout" and "timed out after" in side["detail"] for side in raw.values())
    assert verdicts[pairs["constraints"][0]][:2] == (True, passing("constraints", False))
    assert verdicts[pairs["both-pass"][0]][0] is False and verdicts[pairs["both-pass"][0]][4] == "both_pass"
    timed_out = store.scalar("SELECT count(*) FROM candidate_checks WHERE status = 'timeout'")
    assert timed_out == 1
    labels = dict(store.con.execute("SELECT pair_id, label_source_by_vote FROM labelled_pairs").fetchall())
    assert labels[pairs["math"][0]] == "verifier" and labels[pairs["both-pass"][0]] == "vote"
    again = run_judge(store, verifier_panel())  # cached: nothing checked or stored again
    assert again.details["verifiers"]["verifier"]["verified_now"] == 0


def test_the_label_precedence_decides_which_source_wins_and_judges_are_audited(store, openai_server):
    """The suite's judge prefers the longer response; the verifier knows better on some pairs."""
    pairs = checked_store(store)
    llm = {"backend": {"kind": "openai", "model": "test-model", "base_url": openai_server.base_url},
           "output_format": "json_schema"}
    run_judge(store, verifier_panel(llm))
    math_pair = pairs["math"][0]
    row = store.one("SELECT verifier_label, judge_label_by_vote, label_by_vote, label_source_by_vote FROM "
                    "labelled_pairs WHERE pair_id = ?", [math_pair])
    verifier_label, judge_label, label, source = row
    assert (label, source) == (verifier_label, "verifier")
    judges_first = CurateConfig(label_rule="vote", label_precedence=["judges", "human", "import", "verifier"])
    label, source = store.one(f"SELECT label, label_source FROM ({labelled_pairs(judges_first)}) WHERE pair_id = ?",
                              [math_pair])
    assert (label, source) == (judge_label, "vote")
    audit = store.con.execute("SELECT judge, domain, n_votes, agreement FROM judge_verifier_agreement "
                              "WHERE judge = 'test-model' ORDER BY domain").fetchall()
    assert {domain for _, domain, _, _ in audit} == {"code", "constraints", "math"}
    assert all(n > 0 and 0.0 <= agreement <= 1.0 for _, _, n, agreement in audit)
    assert store.scalar("SELECT count(*) FROM judge_quality WHERE judge = 'verifier'") == 0  # a check, not a judge
    kinds = dict(store.con.execute("SELECT judge, any_value(verdict_kind) FROM judgments GROUP BY judge").fetchall())
    assert kinds == {"verifier": "verifier", "test-model": "judge"}  # the kind of verdict, a column of its own


def test_a_config_names_every_label_source_once():
    with pytest.raises(Exception, match="label_precedence: each of verifier, human, import, judges once"):
        config_from_dict({"curate": {"label_precedence": ["human", "judges"]}})


# -- verifier labels to the curated set ----------------------------------------------------------------

def _curated_rows(store, tmp_path, **curate) -> dict:
    """Curate and export; {prompt: (chosen, rejected, label_source)} over every split of the Parquet export."""
    import pyarrow.parquet as pq

    from prefcurate.core.config import CurateConfig
    from prefcurate.curation.export.parquet import export_curation_run
    from prefcurate.curation.funnel.curate import curate as run_curate

    config = CurateConfig(**curate)
    result, report = run_curate(store, config)
    assert report.count_out > 0, result.funnel
    folder = export_curation_run(store, result.curation_run_id, tmp_path / f"curated-{len(list(tmp_path.iterdir()))}", {})
    rows = {}
    for split in ("train", "validation", "test"):
        if (folder / f"{split}.parquet").exists():
            for row in pq.read_table(folder / f"{split}.parquet").to_pylist():
                rows[row["prompt"]] = (row["chosen"], row["rejected"], row["label_source"])
    return rows


DECISIVE = {  # prompt -> the response that passes its check
    "What is 6 * 7?": "6 * 7 = 42, so the answer is \\boxed{42}.",
    "Write add(a, b) in Python.": "```python\ndef add(a, b):\n    return a + b\n```",
    "Write add(a, b), fast.": "```python\ndef add(a, b):\n    return sum([a, b])\n```",
    "Give the capital of France as JSON.": '{"capital": "Paris"}',
}


def test_verifier_labels_alone_reach_the_curated_export(store, tmp_path):
    """A panel of only a verifier: every decisive pair is curated and exported with the passing response
    as chosen (issue 23, item 1: curation used to drop them all at has_label_evidence)."""
    checked_store(store)
    run_judge(store, verifier_panel())
    rows = _curated_rows(store, tmp_path, dedup={"near": {"enabled": False}})
    assert {prompt: (chosen, source) for prompt, (chosen, _, source) in rows.items()} == {
        prompt: (passing, "verifier") for prompt, passing in DECISIVE.items()}  # both-pass has no label


def test_verifier_and_judge_labels_follow_the_precedence_into_the_export(store, tmp_path, openai_server):
    """The suite's judge prefers the longer response; on the constraints pair that is the wrong one."""
    checked_store(store)
    llm = {"backend": {"kind": "openai", "model": "test-model", "base_url": openai_server.base_url},
           "output_format": "json_schema"}
    run_judge(store, verifier_panel(llm))
    verifier_first = _curated_rows(store, tmp_path, dedup={"near": {"enabled": False}})
    assert {prompt: verifier_first[prompt][0] for prompt in DECISIVE} == DECISIVE
    assert {verifier_first[prompt][2] for prompt in DECISIVE} == {"verifier"}
    assert verifier_first["What is 1 + 1?"][2] in ("balanced", "vote")  # both pass: the judges decide
    judges_first = _curated_rows(store, tmp_path, dedup={"near": {"enabled": False}},
                                 label_precedence=["judges", "human", "import", "verifier"])
    assert {source for _, _, source in judges_first.values()} <= {"balanced", "vote"}
    # the longer one, which breaks the JSON constraint: the judges' label
    assert judges_first["Give the capital of France as JSON."][0] == "Paris is the capital."
