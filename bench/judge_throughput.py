"""Judge throughput: our judge stage vs distilabel 1.5.3, against the same OpenAI-compatible server.

The suite's server (tests/support/openai_server.py) runs in its own process and answers every
request after a fixed latency, so the bound on calls/s is concurrency / latency; each pair is two
calls (both shown orders), so the bound on pairs/s is concurrency / latency / 2.

Ours: the real judge stage (prefcurate.curation.judging.judge) on a DuckDB store of N pairs: planning,
the openai client, parsing, commits to the store, the report. Baseline: distilabel's UltraFeedback
task through its OpenAILLM on the same pairs in both orders (one call per row), input_batch_size =
the concurrency, in its own virtual environment (created on first use).

    python bench/judge_throughput.py [--pairs 2000] [--concurrency 64] [--latency 0.2] [--no-baseline]

Ends with: RESULT ratio=<our pairs/s over distilabel's> pairs_per_s=... vs_bound=... ...
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
BASELINE_VENV = ROOT / "bench" / ".venvs" / "distilabel"
WORDS = ("the reward model learns which answer people prefer when two are shown side by side and the data "
         "decides how good it gets").split()

sys.path.insert(0, str(ROOT))  # tests.support.openai_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.openai_server", "--port", str(port),
                                "--latency", str(latency)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}/v1"


def synthetic_pairs(n: int) -> list[dict]:
    pairs = []
    for i in range(n):
        def text(seed: int, length: int) -> str:
            return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(length)).capitalize() + "."
        pairs.append({"prompt": f"Question {i}: {text(i, 12)}?", "first": text(i + 1, 10 + i % 40),
                      "second": text(i + 2, 8 + (i * 13) % 50)})
    return pairs


def fill_store(store, pairs: list[dict]) -> None:
    from prefcurate.core.hashing import content_hash, prompt_id
    from prefcurate.curation.generation.pairing import pair_id

    prompts, candidates, pair_rows = [], [], []
    for row in pairs:
        key = prompt_id(row["prompt"])
        prompts.append({"prompt_id": key, "text": row["prompt"], "source": "bench"})
        ids = []
        for index, answer in enumerate((row["first"], row["second"])):
            candidate = content_hash("candidate", key, "bench", index)
            ids.append(candidate)
            candidates.append({"candidate_id": candidate, "prompt_id": key, "generator_key": "bench",
                               "generator": "bench", "sample_index": index, "text": answer})
        a, b = sorted(ids)
        pair_rows.append({"pair_id": pair_id(a, b), "prompt_id": key, "candidate_a": a, "candidate_b": b,
                          "strategy": "bench"})
    with store.transaction():
        for table, rows in (("prompts", prompts), ("candidates", candidates), ("pairs", pair_rows)):
            store.insert_new(table, pa.Table.from_pylist(rows))


def run_ours(pairs: list[dict], base_url: str, concurrency: int, workdir: Path) -> dict:
    from prefcurate.core.config import JudgeConfig
    from prefcurate.core.store import Store
    from prefcurate.curation.judging.constitution import load_constitution
    from prefcurate.curation.judging.judge import judge_pairs, open_panel

    config = JudgeConfig(panel=[{"backend": {"kind": "openai", "model": "test-model", "base_url": base_url,
                                             "max_concurrency": concurrency, "max_retries": 2}}])
    with Store(workdir / "bench.duckdb") as store:
        fill_store(store, pairs)
        constitution = load_constitution(None)
        with open_panel(store, config, workdir / "models") as panel:
            started = time.perf_counter()
            report = judge_pairs(store, panel, constitution, config)
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "calls": report.details["calls_made"], "valid": report.details["valid"]}


def ensure_baseline_venv() -> Path:
    python = BASELINE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {BASELINE_VENV} with distilabel 1.5.3 (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "distilabel==1.5.3", "openai", "requests"], check=True)
    return python


def run_distilabel(pairs: list[dict], base_url: str, concurrency: int, workdir: Path) -> dict:
    python = ensure_baseline_venv()
    rows_path = workdir / "rows.jsonl"
    with rows_path.open("w") as out:
        for row in pairs:  # both shown orders, like ours
            for first, second in ((row["first"], row["second"]), (row["second"], row["first"])):
                out.write(json.dumps({"instruction": row["prompt"], "generations": [first, second]}) + "\n")
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(python), str(ROOT / "bench" / "distilabel_judge.py"), str(rows_path), base_url,
                           str(concurrency)], capture_output=True, text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"distilabel baseline failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from hardware import hardware_fields  # bench/hardware.py: the machine, for the RESULT line

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    pairs = synthetic_pairs(args.pairs)
    bound = args.concurrency / args.latency / 2  # pairs/s
    server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_ours(pairs, base_url, args.concurrency, Path(tmp))
            ours_rate = args.pairs / ours["seconds"]
            print(f"ours: {args.pairs} pairs ({ours['calls']} calls, {ours['valid']} valid) in {ours['seconds']:.1f} s "
                  f"= {ours_rate:.1f} pairs/s; bound {bound:.1f} pairs/s", flush=True)
            if args.no_baseline:
                print(f"RESULT ratio=nan pairs_per_s={ours_rate:.1f} vs_bound={ours_rate / bound:.3f} "
                      f"seconds={ours['seconds']:.1f} concurrency={args.concurrency} latency_ms={args.latency * 1000:.0f} "
                      f"{hardware_fields()}")
                return
            baseline = run_distilabel(pairs, base_url, args.concurrency, Path(tmp))
            baseline_rate = args.pairs / baseline["seconds"]
            print(f"distilabel 1.5.3: {baseline['rows']} rows in {baseline['seconds']:.1f} s = {baseline_rate:.1f} pairs/s",
                  flush=True)
    finally:
        server.terminate()
        server.wait()
    print(f"RESULT ratio={ours_rate / baseline_rate:.2f} pairs_per_s={ours_rate:.1f} vs_bound={ours_rate / bound:.3f} "
          f"distilabel_pairs_per_s={baseline_rate:.1f} distilabel_vs_bound={baseline_rate / bound:.3f} "
          f"seconds={ours['seconds']:.1f} distilabel_seconds={baseline['seconds']:.1f} "
          f"concurrency={args.concurrency} latency_ms={args.latency * 1000:.0f} pairs={args.pairs} {hardware_fields()}")


if __name__ == "__main__":
    main()
