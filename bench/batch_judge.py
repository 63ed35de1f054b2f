"""Judging in provider batches at scale: our CPU time to plan, submit, download and store 100K calls.

The suite's server (tests/support/openai_server.py, its Batch API in tests/support/batch_api.py)
runs in its own process, so its work answering the lines is not counted; ours is the judge stage's
process: planning every call, building the request lines, uploading, polling, downloading the
output files, parsing every answer and committing the judgments to a DuckDB store.
Two runs of the stage, as a user would make them: one submits, the next collects.

The goal is absolute (under 60 s of our CPU for 100K calls), so the ratio is the goal over ours:
>= 1 means met. For scale, the same stage's online path is measured on a slice of the calls
(`online_cpu_ms_per_call`), same server, no latency.

    python bench/batch_judge.py [--pairs 50000] [--online-pairs 2000]

Ends with: RESULT ratio=<60 s / our CPU s> calls=... cpu_s=... wall_s=... ...
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hardware import hardware_fields  # noqa: E402
from judge_throughput import fill_store, start_server, synthetic_pairs  # noqa: E402

GOAL_CPU_S = 60.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def judge_once(store_path: Path, config, workdir: Path):
    from prefcurate.core.store import Store
    from prefcurate.curation.judging.constitution import load_constitution
    from prefcurate.curation.judging.judge import judge_pairs
    from prefcurate.curation.judging.panel import open_panel

    with Store(store_path) as store, open_panel(store, config, workdir / "models") as panel:
        return judge_pairs(store, panel, load_constitution(None), config)


def run(pairs: list[dict], base_url: str, kind: str, workdir: Path) -> dict:
    from prefcurate.core.config import JudgeConfig
    from prefcurate.core.store import Store

    config = JudgeConfig(panel=[{"output_format": "json_schema", "backend": {
        "kind": kind, "model": "test-model", "base_url": base_url, "timeout_s": 600, "max_concurrency": 64}}])
    store_path = workdir / f"{kind}.duckdb"
    with Store(store_path) as store:
        fill_store(store, pairs)
    cpu, wall = cpu_seconds(), time.perf_counter()
    reports = [judge_once(store_path, config, workdir)]
    if kind == "openai_batch":
        reports.append(judge_once(store_path, config, workdir))  # the next run collects
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    with Store(store_path, read_only=True) as store:
        valid = store.scalar("SELECT count(*) FROM judgments WHERE valid")
    return {"cpu_s": cpu, "wall_s": wall, "valid": valid, "reports": reports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50_000, help="pairs (two calls each)")
    parser.add_argument("--online-pairs", type=int, default=2_000)
    args = parser.parse_args()
    server, base_url = start_server(0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="prefcurate-batch-bench-") as tmp:
            batch = run(synthetic_pairs(args.pairs), base_url, "openai_batch", Path(tmp))
            online = run(synthetic_pairs(args.online_pairs), base_url, "openai", Path(tmp))
    finally:
        server.terminate()
        server.wait()
    calls = 2 * args.pairs
    submitted, collected = (report.details["batches"] for report in batch["reports"])
    print(f"batch:  {calls} calls, {submitted['submitted_batches']} batches, {batch['valid']} valid answers stored; "
          f"our CPU {batch['cpu_s']:.1f} s, wall {batch['wall_s']:.1f} s (the server's answering included in wall)")
    online_ms = 1000 * online["cpu_s"] / (2 * args.online_pairs)
    print(f"online: {2 * args.online_pairs} calls, our CPU {online['cpu_s']:.1f} s ({online_ms:.2f} ms a call)")
    assert batch["valid"] == calls and collected["pending_calls"] == 0, (batch["valid"], collected)
    print(f"RESULT ratio={GOAL_CPU_S / batch['cpu_s']:.2f} calls={calls} cpu_s={batch['cpu_s']:.1f} "
          f"goal_cpu_s={GOAL_CPU_S:.0f} wall_s={batch['wall_s']:.1f} batches={submitted['submitted_batches']} "
          f"cpu_ms_per_call={1000 * batch['cpu_s'] / calls:.3f} online_cpu_ms_per_call={online_ms:.2f} "
          f"{hardware_fields()}")


if __name__ == "__main__":
    main()
