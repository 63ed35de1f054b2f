"""Resume after kill -9: how many judge calls a resumed run repeats, against how many were in flight.

The suite's OpenAI-compatible server (tests/support/openai_server.py) runs in this process and
kills the judge process with SIGKILL at its k-th answer: it stops answering, waits until the client
has taken in every answer sent, then kills. Calls asked but not answered at that moment were in
flight. `prefcurate judge` then runs again on the same store; a call the first run had already
asked is a repeat, and a lost answer when the first run had been answered (money spent twice). With the journal (judge.journal, the
default) every answer is durable as it arrives, so a resume asks again only what was in flight;
without it, up to judge.commit_every answers die with the process.

Throughput: the judge stage in this process on fresh stores of the same pairs, journal on and off,
interleaved, median of --runs each.

    python bench/resume.py [--pairs 1000] [--latency 0.02] [--concurrency 16] [--runs 3]

Ends with: RESULT ratio=<judge calls/s with the journal over without> repeats_over_inflight=... ...
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support

from prefcurate.core.config import JudgeConfig  # noqa: E402
from prefcurate.core.store import Store  # noqa: E402
from tests.support.judging import add_judgeable_pairs, run_judge  # noqa: E402
from tests.support.openai_server import Behaviour, OpenAICompatServer, call_key  # noqa: E402


def judge_config(server: OpenAICompatServer, concurrency: int, journal: bool, commit_every: int) -> dict:
    return {"commit_every": commit_every, "journal": journal, "panel": [{"backend": {
        "kind": "openai", "model": "test-model", "base_url": server.base_url, "max_concurrency": concurrency}}]}


def make_store(path: Path, pairs: int) -> None:
    with Store(path) as store:
        add_judgeable_pairs(store, pairs)


def kill_and_resume(folder: Path, pairs: int, at: int, journal: bool, args) -> dict:
    """One judge process killed at the at-th answer, then the resume; the calls each asked."""
    store = folder / f"kill-{at}-{'journal' if journal else 'plain'}.duckdb"
    make_store(store, pairs)
    config = folder / f"{store.stem}.yaml"
    command = [sys.executable, "-m", "prefcurate.cli", "judge", "--config", str(config)]
    # One server for both runs: its URL is part of every call's identity.
    with OpenAICompatServer(Behaviour(latency_s=args.latency, kill_at_answer=at, kill_settle_s=0.5)) as server:
        config.write_text(yaml.safe_dump({"workdir": str(folder / "out"), "store": {"path": str(store)},
                                          "judge": judge_config(server, args.concurrency, journal, args.commit_every)}))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        server.behaviour.kill_pid = process.pid
        _out, err = process.communicate(timeout=900)
        if process.returncode != -9:
            raise RuntimeError(f"the judge was not killed (exit {process.returncode}): {err[-2000:]}")
        answered_first = set(server.answered)
        asked_first = {call_key(body) for body in server.requests}
        in_flight, first_requests = server.in_flight_at_kill, len(server.requests)

        server.behaviour.kill_at_answer = None
        resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if resumed.returncode != 0:
            raise RuntimeError(f"the resume failed: {resumed.stderr[-2000:]}")
        asked_again = [call_key(body) for body in server.requests[first_requests:]]
    repeats = sum(key in asked_first for key in asked_again)  # asked twice: in flight, or answered and lost
    lost = sum(key in answered_first for key in asked_again)  # answered, paid for, and asked again
    return {"killed_at": at, "journal": journal, "in_flight": in_flight, "answered_before_kill": len(answered_first),
            "repeats": repeats, "lost": lost, "resume_calls": len(asked_again),
            "complete": len(answered_first | set(asked_again)) == 2 * pairs}


def throughput(folder: Path, pairs: int, journal: bool, run: int, args) -> float:
    store = folder / f"speed-{run}-{'journal' if journal else 'plain'}.duckdb"
    make_store(store, pairs)
    with OpenAICompatServer(Behaviour(latency_s=args.latency)) as server, Store(store) as opened:
        config = JudgeConfig(**judge_config(server, args.concurrency, journal, args.commit_every))
        started = time.perf_counter()
        report = run_judge(opened, config)
        seconds = time.perf_counter() - started
    assert report.details["valid"] == 2 * pairs, report.details
    return 2 * pairs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1000, help="pairs to judge (two calls each)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the server takes per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--commit-every", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per arm (interleaved)")
    parser.add_argument("--kill-at", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                        help="kill points, as shares of the calls")
    args = parser.parse_args()
    started = time.perf_counter()
    calls = 2 * args.pairs
    with tempfile.TemporaryDirectory(prefix="prefcurate-resume-") as tmp:
        folder = Path(tmp)
        kills = []
        for share in args.kill_at:
            for journal in (True, False):
                outcome = kill_and_resume(folder, args.pairs, max(1, int(share * calls)), journal, args)
                kills.append(outcome)
                print(f"kill at answer {outcome['killed_at']:>5} journal={'on ' if journal else 'off'}: "
                      f"in flight {outcome['in_flight']:>3}, asked again {outcome['repeats']:>3} "
                      f"(answered before the kill: {outcome['lost']:>3}) "
                      f"(resume asked {outcome['resume_calls']}, complete: {outcome['complete']})", flush=True)
        speeds = {True: [], False: []}
        for run in range(args.runs):
            for journal in (True, False) if run % 2 == 0 else (False, True):  # interleaved, alternating first
                speeds[journal].append(throughput(folder, args.pairs, journal, run, args))
        with_journal, without = statistics.median(speeds[True]), statistics.median(speeds[False])
    print(f"throughput (calls/s, median of {args.runs}): journal {with_journal:.1f} "
          f"{[round(v, 1) for v in speeds[True]]}, no journal {without:.1f} {[round(v, 1) for v in speeds[False]]}")
    journaled = [k for k in kills if k["journal"]]
    plain = [k for k in kills if not k["journal"]]
    worst = max(k["repeats"] / max(k["in_flight"], 1) for k in journaled)
    print(f"RESULT ratio={with_journal / without:.3f} repeats_over_inflight={worst:.2f} "
          f"repeats={sum(k['repeats'] for k in journaled)} in_flight={sum(k['in_flight'] for k in journaled)} "
          f"lost_answers={sum(k['lost'] for k in journaled)} "
          f"repeats_without_journal={sum(k['repeats'] for k in plain)} "
          f"all_complete={all(k['complete'] for k in kills)} calls={calls} latency_s={args.latency} "
          f"concurrency={args.concurrency} commit_every={args.commit_every} runs={args.runs} "
          f"seconds={time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
