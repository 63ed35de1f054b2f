"""Judge throughput at 128 and 256 calls in flight: our judge stage, the bare `openai` client (the
transport's own ceiling), and distilabel 1.5.3 at its best over a tuning grid, against the same
OpenAI-compatible server.

The suite's server (tests/support/openai_server.py) runs in its own process and answers every
request after a fixed latency, so the bound on calls/s is concurrency / latency. Client and server
share this machine's cores, so the reachable share of that bound depends on the machine; the bare
client measures it in the same run: the same requests, the same concurrency, the same server, with
no store, no planning and no parsing.

Ours: the real judge stage (prefcurate.curation.judging.judge) on a DuckDB store of N pairs: planning,
the openai client, parsing, commits to the store, the report. Baseline: distilabel's UltraFeedback
task through its OpenAILLM on the same pairs in both orders (one call per row), in its own virtual
environment (created on first use), over input_batch_size 50 / 128 / 500 and replicas 1 / 2 / 4;
the best of those nine is the baseline.

    python bench/judge_throughput.py [--pairs 4000] [--concurrency 128 256] [--latency 0.2] [--no-baseline]

Ends with: RESULT ratio=<our calls/s at the first concurrency over distilabel's best> vs_client=... vs_bound=...
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


def start_server(latency: float, *options: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.openai_server", "--port", str(port),
                                "--latency", str(latency), *options], cwd=ROOT, stdout=subprocess.PIPE, text=True)
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
    from prefcurate.curation.judging.judge import judge_pairs
    from prefcurate.curation.judging.panel import open_panel

    config = JudgeConfig(panel=[{"output_format": "json_schema", "backend": {
        "kind": "openai", "model": "test-model", "base_url": base_url, "max_concurrency": concurrency, "max_retries": 2}}])
    workdir.mkdir(parents=True, exist_ok=True)
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
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
    if subprocess.run([str(python), "-c", "import distilabel"], capture_output=True).returncode != 0:
        print(f"installing distilabel 1.5.3 into {BASELINE_VENV} (once)", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "distilabel==1.5.3", "openai", "requests"], check=True)
    return python


def run_distilabel(pairs: list[dict], base_url: str, batch_size: int, replicas: int, workdir: Path) -> dict:
    python = ensure_baseline_venv()
    rows_path = workdir / "rows.jsonl"
    with rows_path.open("w") as out:
        for row in pairs:  # both shown orders, like ours
            for first, second in ((row["first"], row["second"]), (row["second"], row["first"])):
                out.write(json.dumps({"instruction": row["prompt"], "generations": [first, second]}) + "\n")
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(python), str(ROOT / "bench" / "distilabel_judge.py"), str(rows_path), base_url,
                           str(batch_size), str(replicas)], capture_output=True, text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"distilabel baseline failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_client(pairs: list[dict], base_url: str, concurrency: int, route: str = "post") -> dict:
    """The transport's ceiling: the judge's own requests through the bare openai client (aiohttp, as
    ours), `concurrency` in flight, answers parsed and dropped. route post: the client's raw-request
    route that ours takes (client.post, cast to ChatCompletion); create: chat.completions.create,
    which first walks the request's TypedDicts (slower on a small machine)."""
    import asyncio

    import openai
    from openai.types.chat import ChatCompletion

    from prefcurate.curation.judging.constitution import load_constitution
    from prefcurate.curation.judging.prompt import judge_messages, response_format_for

    principle = load_constitution(None).principles[0]
    requests = [judge_messages(principle, row["prompt"], first, second, "json_schema")
                for row in pairs for first, second in ((row["first"], row["second"]), (row["second"], row["first"]))]

    async def main() -> float:
        slots = asyncio.Semaphore(concurrency)
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=2,
                                      http_client=openai.DefaultAioHttpClient()) as client:
            async def one(messages):
                body = {"model": "test-model", "messages": messages, "max_tokens": 64, "temperature": 0.0,
                        "logprobs": True, "top_logprobs": 10, "response_format": response_format_for("json_schema")}
                async with slots:
                    if route == "post":
                        await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                    else:
                        await client.chat.completions.create(**body)
            started = time.perf_counter()
            await asyncio.gather(*(one(messages) for messages in requests))
            return time.perf_counter() - started

    seconds = asyncio.run(main())
    return {"seconds": seconds, "calls": len(requests)}


GRID = [(batch_size, replicas) for batch_size in (50, 128, 500) for replicas in (1, 2, 4)]


def main() -> None:
    from hardware import hardware_fields  # bench/hardware.py: the machine, for the RESULT line

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    pairs = synthetic_pairs(args.pairs)
    calls = 2 * args.pairs
    server, base_url = start_server(args.latency)
    figures = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for concurrency in args.concurrency:
                bound = concurrency / args.latency
                client = run_client(pairs, base_url, concurrency, "post")
                client_rate = client["calls"] / client["seconds"]
                create = run_client(pairs, base_url, concurrency, "create")
                create_rate = create["calls"] / create["seconds"]
                ours = run_ours(pairs, base_url, concurrency, Path(tmp) / f"c{concurrency}")
                ours_rate = ours["calls"] / ours["seconds"]
                figures[concurrency] = {"ours": ours_rate, "client": client_rate, "create": create_rate, "bound": bound}
                print(f"{concurrency} in flight: ours {ours_rate:.0f} calls/s ({ours['valid']} valid of {ours['calls']}) "
                      f"= {ours_rate / client_rate:.3f} of the bare client's {client_rate:.0f} calls/s "
                      f"({create_rate:.0f} through chat.completions.create), "
                      f"{ours_rate / bound:.3f} of the bound {bound:.0f}", flush=True)
            best = None
            if not args.no_baseline:
                for batch_size, replicas in GRID:
                    baseline = run_distilabel(pairs, base_url, batch_size, replicas, Path(tmp))
                    rate = baseline["rows"] / baseline["seconds"]
                    print(f"distilabel 1.5.3, input_batch_size {batch_size}, replicas {replicas}: {rate:.0f} calls/s "
                          f"({baseline['rows']} rows, {baseline['seconds']:.1f} s)", flush=True)
                    if best is None or rate > best[0]:
                        best = (rate, batch_size, replicas)
    finally:
        server.terminate()
        server.wait()
    first = figures[args.concurrency[0]]
    ratio = f"{first['ours'] / best[0]:.2f}" if best else "nan"
    extra = " ".join(f"calls_per_s_{c}={f['ours']:.0f} client_calls_per_s_{c}={f['client']:.0f} "
                     f"client_create_calls_per_s_{c}={f['create']:.0f} vs_client_{c}={f['ours'] / f['client']:.3f} "
                     f"vs_bound_{c}={f['ours'] / f['bound']:.3f}" for c, f in figures.items())
    baseline_fields = (f"distilabel_best_calls_per_s={best[0]:.0f} distilabel_best_batch={best[1]} "
                       f"distilabel_best_replicas={best[2]}") if best else "distilabel=skipped"
    print(f"RESULT ratio={ratio} vs_client={first['ours'] / first['client']:.3f} vs_bound={first['ours'] / first['bound']:.3f} "
          f"concurrency={args.concurrency[0]} calls={calls} {extra} {baseline_fields} latency_ms={args.latency * 1000:.0f} "
          f"{hardware_fields()}")


if __name__ == "__main__":
    main()
