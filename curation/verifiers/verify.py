"""The verifier: a judge panel member (judge.panel[].kind: verifier) whose verdict is a check.

For every pair whose prompt declares a check (prompt_checks, from the ingest columns
reference_answer / tests / constraints), each response is checked once (candidate_checks caches
the outcome by candidate, domain and the check's content):
  math         final-answer equivalence with math-verify, in a sandboxed worker process;
  code         the response's code (its last fenced block) followed by the prompt's tests, run in
               the sandbox (no network, time and memory limits): passing means exit status 0;
  constraints  the declared instruction constraints, in plain Python.
The pair's verdict is stored as a judgment (judge = the member's name, principle_id = the domain,
confidence_source = verifier): valid, with the passing response as winner and confidence 1.0,
only when exactly one response passes; else invalid with the reason (both pass, neither passes).
It labels the pair through verifier_verdicts and label_precedence, never as a judge's vote.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prefcurate.core.config import VerifierConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.progress import Progress
from prefcurate.core.store import Store
from prefcurate.curation.verifiers.constraints import violations
from prefcurate.curation.verifiers.sandbox import Limits, SandboxUnavailable, no_network_prefix, run_sandboxed

log = logging.getLogger(__name__)
VERSIONS = {"math": "math-verify-0.9/v1", "code": "python-tests/v1", "constraints": "constraints/v1"}
MATH_SECONDS_PER_ANSWER = 5.0  # the math worker's wall clock grows with its answers


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # ok | failed | timeout | memory | crashed | wrong_answer | violated
    detail: str | None = None
    seconds: float | None = None


def extract_code(response: str) -> str:
    """The last fenced code block (```python preferred), else the whole response."""
    blocks = re.findall(r"```([\w+-]*)[ \t]*\n(.*?)```", response, re.DOTALL)
    python = [code for language, code in blocks if language.lower() in ("python", "py", "python3")]
    chosen = python or [code for _, code in blocks]
    return chosen[-1] if chosen else response


def check_code(response: str, tests: str, limits: Limits) -> Outcome:
    program = f"{extract_code(response)}\n\n# -- the prompt's tests --\n{tests}\n"
    result = run_sandboxed([sys.executable, "-I", "-S", "-"], program, limits)
    return Outcome(result.ok, result.status, None if result.ok else result.describe(), result.seconds)


def check_constraints(response: str, constraints: dict) -> Outcome:
    broken = violations(response, constraints)
    return Outcome(not broken, "ok" if not broken else "violated", "; ".join(broken) or None)


def check_math(tasks: list[tuple[str, str, str]], limits: Limits) -> dict[str, Outcome]:
    """tasks: (key, reference answer, response), checked in one sandboxed worker process."""
    if not tasks:
        return {}
    lines = "".join(json.dumps({"id": key, "reference": reference, "response": response}) + "\n"
                    for key, reference, response in tasks)
    budget = Limits(time_s=limits.time_s + MATH_SECONDS_PER_ANSWER * len(tasks), memory_mb=limits.memory_mb,
                    file_mb=limits.file_mb)
    result = run_sandboxed([sys.executable, "-I", "-m", "prefcurate.curation.verifiers.math_worker"], lines, budget)
    outcomes = {}
    for line in result.stdout.splitlines():  # what it answered before it stopped, even if it died
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        outcomes[answer["id"]] = Outcome(answer["passed"], "ok" if answer["passed"] else "wrong_answer",
                                         answer.get("detail"))
    for key, _, _ in tasks:  # the worker died before these (a crash, the time limit)
        outcomes.setdefault(key, Outcome(False, result.status, f"the math checker {result.describe()}"))
    return outcomes


def _pairs_to_verify(store: Store, domains: list[str]) -> list[tuple]:
    return store.con.execute("""
        SELECT p.pair_id, c.domain, c.check_hash, c.reference_answer, c.tests, c.constraints,
               p.candidate_a, p.candidate_b, ta.text, tb.text
        FROM pairs AS p
        JOIN prompt_checks AS c USING (prompt_id)
        JOIN candidates AS ta ON ta.candidate_id = p.candidate_a
        JOIN candidates AS tb ON tb.candidate_id = p.candidate_b
        WHERE list_contains(?, c.domain)
        ORDER BY p.pair_id, c.domain""", [domains]).fetchall()


def _check_candidates(store: Store, work: dict[tuple, tuple], config: VerifierConfig) -> tuple[dict, int, str | None]:
    """Outcomes by (candidate, domain, check hash): stored ones, and the new ones, checked and stored
    (with how many were new, and why code was refused, if it was)."""
    stored = {(row[0], row[1], row[2]): Outcome(row[3], row[4], row[5], row[6]) for row in store.con.execute(
        "SELECT candidate_id, domain, check_hash, passed, status, detail, seconds FROM candidate_checks "
        "WHERE list_contains(?, candidate_id)", [sorted({key[0] for key in work})]).fetchall()}
    todo = {key: value for key, value in work.items() if key not in stored}
    limits = Limits(time_s=config.time_limit_s, memory_mb=config.memory_mb)
    outcomes: dict[tuple, Outcome] = {}
    refused = None
    with Progress("verify", len(todo)) as progress:
        math = [key for key in todo if key[1] == "math"]  # one worker for them all, by position
        answers = check_math([(str(index), *todo[key]) for index, key in enumerate(math)], limits)
        outcomes.update((key, answers[str(index)]) for index, key in enumerate(math))
        progress.update(len(math))
        for key, (constraints, response) in ((k, v) for k, v in todo.items() if k[1] == "constraints"):
            outcomes[key] = check_constraints(response, constraints)
            progress.update()
        code = [(key, value) for key, value in todo.items() if key[1] == "code"]
        try:
            no_network_prefix()
        except SandboxUnavailable as error:  # code is never run with the network: left unchecked, said why
            log.warning("verify: %d responses' code not run: %s", len(code), error)
            refused, code = str(error), []
        with ThreadPoolExecutor(max_workers=config.parallel) as pool:
            for key, outcome in zip([key for key, _ in code],
                                    pool.map(lambda item: check_code(item[1][1], item[1][0], limits), code)):
                outcomes[key] = outcome
                progress.update()
    if outcomes:
        with store.transaction():
            store.upsert("candidate_checks", store.arrow_rows("candidate_checks", [
                {"candidate_id": key[0], "domain": key[1], "check_hash": key[2], "passed": outcome.passed,
                 "status": outcome.status, "detail": outcome.detail, "seconds": outcome.seconds}
                for key, outcome in outcomes.items()]))
    return {**stored, **outcomes}, len(outcomes), refused


def verify_pairs(store: Store, name: str, config: VerifierConfig) -> tuple[list[dict], dict]:
    """The verifier's judgment rows for every checkable pair not judged by it yet, and counts."""
    rows = _pairs_to_verify(store, config.domains)
    answered = {row[0] for row in store.con.execute(
        "SELECT judgment_id FROM judgments WHERE judge = ? AND verdict_kind = 'verifier'", [name]).fetchall()}
    planned, work = [], {}
    for pair_id, domain, check_hash, reference, tests, constraints, cand_a, cand_b, text_a, text_b in rows:
        judgment_id = content_hash("verifier", name, domain, VERSIONS[domain], check_hash, cand_a, cand_b)
        if judgment_id in answered:
            continue
        planned.append((judgment_id, pair_id, domain, check_hash, cand_a, cand_b))
        check = {"math": reference, "code": tests,
                 "constraints": json.loads(constraints) if constraints else None}[domain]
        for candidate, text in ((cand_a, text_a), (cand_b, text_b)):
            work[(candidate, domain, check_hash)] = (check, text)
    outcomes, checked, refused = _check_candidates(store, work, config) if work else ({}, 0, None)
    judgments = [_judgment(name, judgment_id, pair_id, domain, outcomes[(a, domain, h)], outcomes[(b, domain, h)])
                 for judgment_id, pair_id, domain, h, a, b in planned
                 if (a, domain, h) in outcomes and (b, domain, h) in outcomes]
    by_domain: dict[str, dict] = {}
    for row in judgments:
        counts = by_domain.setdefault(row["principle_id"], {"pairs": 0, "decisive": 0, "both_pass": 0,
                                                             "neither_passes": 0})
        counts["pairs"] += 1
        counts["decisive" if row["valid"] else row["error_kind"]] += 1
    return judgments, {"pairs_checkable": len(rows), "verified_now": len(judgments), "by_domain": by_domain,
                       "responses_checked_now": checked, "not_checked": len(planned) - len(judgments),
                       **({"refused": refused} if refused else {})}


def _judgment(name: str, judgment_id: str, pair_id: str, domain: str, a: Outcome, b: Outcome) -> dict:
    decisive = a.passed != b.passed
    winner = ("a" if a.passed else "b") if decisive else None
    reason = None if decisive else ("both_pass" if a.passed else "neither_passes")
    return {
        "judgment_id": judgment_id, "pair_id": pair_id, "judge": name, "judge_model": f"verifier:{VERSIONS[domain]}",
        "principle_id": domain, "principle_axis": "verifier", "shown_order": "ab", "template_version": VERSIONS[domain],
        "constitution_version": "-", "output_format": "verifier", "sampling": "{}",
        "raw_response": json.dumps({"a": a.__dict__, "b": b.__dict__}),
        "verdict_shown": winner.upper() if winner else None, "winner": winner, "confidence": 1.0 if decisive else None,
        "confidence_source": "verifier", "self_confidence": None, "verdict_probs": None, "preference_logit": None,
        "valid": decisive, "invalid_reason": None if decisive else (
            f"{reason}: a {a.detail or 'passed'}; b {b.detail or 'passed'}")[:500],
        "error_kind": reason, "request_chars": None, "prompt_tokens": None, "completion_tokens": None,
        "cost_usd": None, "latency_ms": None, "cut_answer": False, "verdict_kind": "verifier",
    }
