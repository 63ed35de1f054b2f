"""Judge calls fanned out to a Dask cluster: what the store process spends per call (issue 26, part 1).

The same judge flow (prefcurate.flows.stages.judge_flow, as `prefcurate judge` runs it, against a
temporary Prefect server of its own in a child process) on fresh copies of one store of N pairs
(2N pairwise calls), against the suite's OpenAI-compatible server in its own process with a fixed
latency, three ways:

- in_process:    fanout.runner in_process: this process makes every call (the default);
- cluster:       fanout.address: a `dask scheduler` and `dask worker` processes the bench starts
                 beside it, as a production cluster runs; this process only hands out chunks of
                 calls and stores the answers. Once per chunk size (fanout.chunk_calls).
- local_cluster: fanout.runner dask with fanout.workers 2: the runner's own local cluster, whose
                 worker processes are children of this one but whose scheduler runs in this process.

Measured for each: this process's CPU seconds (getrusage RUSAGE_SELF: every thread, no child) per
call, wall time and calls/s; every run must store every judgment valid, with the same rows as in
process. A second flow run on the judged store (no calls left) gives each mode's fixed cost: the
flow, the cluster connection, planning and the judge report. The other processes' CPU (the
workers and scheduler, the LLM server, the Prefect server) is reported beside it: on a 2-core
machine they all share the cores, so wall-clock figures say little about a real fleet.

--profile [CHUNK_CALLS ...] adds one more cluster run per chunk size (none given: the default) under
py-spy (if installed: every thread of this process), else cProfile (the main thread only), and
prints where its CPU goes, thread by thread. Flow, Prefect and Dask logs go to stderr.

    python bench/judge_fanout.py [--quick] [--pairs 4000] [--chunk-calls 16 64 256] [--concurrency 128]
        [--latency 0.2] [--workers 2] [--profile [CHUNK_CALLS ...]] [--py-spy PATH] 2> judge_fanout.log

Ends with: RESULT ratio=<in-process store CPU ms per call / cluster's at the default chunk size>
store_cpu_ms_per_call_in_process=... store_cpu_ms_per_call_fanout=... ... goal_ms=0.3 ... (and the machine)
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import hashlib
import io
import json
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the suite's server

from judge_throughput import fill_store, start_server, synthetic_pairs  # noqa: E402

from prefcurate.core.config import config_from_dict  # noqa: E402
from prefcurate.core.store import Store  # noqa: E402
from prefcurate.flows.stages import judge_flow  # noqa: E402  (sets DO_NOT_TRACK for the cluster too)
from prefcurate.flows.temporary_server import prefect_api  # noqa: E402

GOAL_MS = 0.3  # store CPU per fanned-out call: one store process absorbs >= 3,000 calls/s from a fleet
# Columns that differ between runs of the same calls (timing), left out of the rows compared.
VOLATILE_COLUMNS = ("latency_ms", "created_at")


def hardware_fields() -> str:
    """bench/hardware.py's machine fields. Imported here, not at the top: it imports torch, and a
    local cluster's workers are spawned processes that import this script again as they start."""
    from hardware import hardware_fields as fields

    return fields()


# -- the store every run starts from --------------------------------------------------------------------

def base_store(path: Path, n_pairs: int) -> Path:
    with Store(path) as store:
        fill_store(store, synthetic_pairs(n_pairs))
    return path


def judge_config(store_path: Path, workdir: Path, base_url: str, concurrency: int, fanout: dict):
    """One pairwise judge on the suite's server (json_schema: no probe calls before the others)."""
    return config_from_dict({
        "workdir": str(workdir), "store": {"path": str(store_path)}, "fanout": fanout,
        "judge": {"panel": [{"output_format": "json_schema", "backend": {
            "kind": "openai", "model": "test-model", "base_url": base_url, "max_concurrency": concurrency,
            "max_retries": 2}}]}})


def stored_rows(store_path: Path) -> tuple[int, int, str]:
    """(judgments, valid ones, a digest of every row but its timings) of a judged store."""
    with Store(store_path, read_only=True) as store:
        rows = store.con.execute(f"SELECT * EXCLUDE ({', '.join(VOLATILE_COLUMNS)}) FROM judgments "
                                 "ORDER BY judgment_id").fetchall()
        valid = store.scalar("SELECT count(*) FROM judgments WHERE valid")
    return len(rows), valid, hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


# -- the cluster in other processes (mode `cluster`) ----------------------------------------------------

@contextmanager
def dask_cluster(workers: int, workdir: Path) -> Iterator[tuple[str, list[psutil.Process]]]:
    """`dask scheduler` and `workers` x `dask worker --nthreads 1`, started as they would be on other
    machines (each worker under its nanny, as the CLI starts it); (address, their processes)."""
    from distributed import Client

    scheduler_file = workdir / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], **quiet)]
    try:
        _wait_for(scheduler_file.exists, "the Dask scheduler did not start")
        processes += [subprocess.Popen([*dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                        "--no-dashboard", "--host", "127.0.0.1"], **quiet) for _ in range(workers)]
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, [psutil.Process(process.pid) for process in processes]
    finally:
        for process in reversed(processes):  # workers first: a scheduler gone first makes them retry
            process.terminate()
            process.wait(timeout=30)


def _wait_for(ready, failure: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.1)


# -- measuring ------------------------------------------------------------------------------------------

def own_cpu() -> float:
    """This process's CPU seconds: every thread's, none of its children's."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def reaped_cpu() -> float:
    """CPU seconds of this process's children that ended and were waited for (a local cluster's
    workers, once it stops), with their own reaped children."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def tree_cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds so far of running processes and their descendants."""
    total = 0.0
    for process in {tree for root in processes for tree in (root, *root.children(recursive=True))}:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class ThreadCpu:
    """Which of this process's threads spend its CPU: samples /proc/self/task while a run goes (a
    thread that lives less than an interval is missed). Python threads by name, digits as N (one
    row per kind of pool thread); native ones (DuckDB's) by their kernel name."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.first, self.last = interval_s, {}, {}
        self.own_s = 0.0  # the sampler's own CPU: the bench's, not the store process's work
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self._sample_until_done, name="bench-thread-cpu", daemon=True)

    def __enter__(self) -> ThreadCpu:
        self._sample()
        self.sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.sampler.join()
        self._sample()

    def _sample_until_done(self) -> None:
        while not self.done.wait(self.interval_s):
            self._sample()
        self.own_s = time.thread_time()

    def _sample(self) -> None:
        names = {thread.native_id: thread.name for thread in threading.enumerate()}
        for task in Path("/proc/self/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # ended since the listing
                continue
            comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            tid = int(task.name)
            key = (tid, re.sub(r"\d+", "N", names[tid]) if tid in names else f"[native] {comm}")
            self.first.setdefault(key, 0.0 if self.last else seconds)  # threads born during the run from 0
            self.last[key] = seconds

    def by_thread(self) -> list[tuple[str, float]]:
        spent: collections.Counter = collections.Counter()
        for (tid, name), seconds in self.last.items():
            spent[name] += seconds - self.first[(tid, name)]
        return [(name, seconds) for name, seconds in spent.most_common() if seconds >= 0.05 and name != "bench-thread-cpu"]


def measure(work, others: dict[str, list[psutil.Process]]) -> dict:
    """Run work(); its wall seconds, this process's CPU seconds, its reaped children's, and each
    group of other processes' CPU seconds over the same span."""
    before = {role: tree_cpu(processes) for role, processes in others.items()}
    started, cpu, reaped = time.perf_counter(), own_cpu(), reaped_cpu()
    result = work()
    spent = {"wall_s": time.perf_counter() - started, "store_cpu_s": own_cpu() - cpu, "reaped_cpu_s": reaped_cpu() - reaped}
    return {"result": result, **spent, **{f"{role}_cpu_s": tree_cpu(others[role]) - before[role] for role in others}}


# -- profiling (--profile) ----------------------------------------------------------------------------

@contextmanager
def py_spy_record(py_spy: str, out: Path) -> Iterator[None]:
    """py-spy on this process, every thread that is not idle, 100 samples a second, as collapsed stacks."""
    recorder = subprocess.Popen([py_spy, "record", "--pid", str(os.getpid()), "--rate", "100", "--format", "raw",
                                 "--threads", "--nonblocking", "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the run starts
    try:
        yield
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        recorder.wait(timeout=60)


def frame_name(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module path from the package)`, lines dropped."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\(.*?/(site-packages|work/main)/", "(", frame)


def py_spy_stacks(raw: Path) -> dict[str, list[tuple[list[str], int]]]:
    """Thread name -> (frames, samples) from py-spy's raw output (threads of one name merged: the
    stage starts a judge thread per batch of calls)."""
    stacks: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        name = re.sub(r"\d+", "N", thread.partition(": ")[2] or thread)
        stacks[name].append(([frame_name(frame) for frame in frames], int(count)))
    return stacks


def print_py_spy(raw: Path, threads: list[tuple[str, float]], calls: int, top: int = 14) -> None:
    """Per thread: its CPU (from /proc, exact) and, of its py-spy samples, the functions that take
    most by themselves (the leaf of a stack) and with what they call (below the thread's trunk)."""
    cpu = dict(threads)
    print("\nWhere the profiled run's CPU goes, by thread (CPU s from /proc; functions as shares of the "
          "thread's py-spy samples, which are coarse):")
    for thread, samples in sorted(py_spy_stacks(raw).items(), key=lambda item: -cpu.get(item[0], 0.0)):
        if cpu.get(thread, 0.0) < 0.05 * sum(cpu.values()):
            continue
        in_thread = sum(count for _, count in samples)
        leaves, inclusive = collections.Counter(), collections.Counter()
        for frames, count in samples:
            leaves[frames[-1] if frames else thread] += count
            for name in set(frames):
                inclusive[name] += count
        below_trunk = [(name, count) for name, count in inclusive.most_common() if count < 0.97 * in_thread][:top]
        print(f"\n  {thread}: {cpu[thread]:.2f} CPU s = {ms_per_call(cpu[thread], calls):.3f} ms a call")
        for title, rows in (("itself", leaves.most_common(top)), ("with what it calls", below_trunk)):
            print(f"    {title}: " + "; ".join(f"{name} {100 * count / in_thread:.0f}%" for name, count in rows))


def print_cprofile(profile: cProfile.Profile, top: int = 30) -> None:
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
    print("\ncProfile of the main thread (py-spy not found: other threads are not seen):\n" + text.getvalue())


def profile_run(config, py_spy: str | None, workdir: Path, calls: int) -> None:
    """One more run of a mode under a profiler; its own figures are not in the table (a profiler
    costs CPU too)."""
    started = own_cpu()
    with ThreadCpu() as threads:
        if py_spy:
            raw = workdir / "py-spy.txt"
            with py_spy_record(py_spy, raw):
                judge_flow(config)
        else:
            profile = cProfile.Profile()
            profile.runcall(judge_flow, config)
    chunk = config.fanout.chunk_calls or "default"
    print(f"\n## Profile: cluster, chunk_calls {chunk}: {own_cpu() - started:.2f} CPU s in the store process "
          f"(profiler included) = {ms_per_call(own_cpu() - started, calls):.3f} ms a call")
    if py_spy:
        print_py_spy(raw, threads.by_thread(), calls)
    else:
        print_cprofile(profile)


# -- the runs -------------------------------------------------------------------------------------------

def run_mode(mode: str, fanout: dict, base: Path, workdir: Path, base_url: str, args: argparse.Namespace,
             others: dict[str, list[psutil.Process]]) -> dict:
    """One judge flow on a fresh copy of the base store, then a second on the judged store (no call
    left: the mode's fixed cost)."""
    name = f"{mode}-{fanout.get('chunk_calls') or 'default'}"
    store_path = workdir / f"{name}.duckdb"
    shutil.copy(base, store_path)
    config = judge_config(store_path, workdir / name, base_url, args.concurrency, fanout)
    try:
        with ThreadCpu() as threads:
            run = measure(lambda: judge_flow(config), others)
    except Exception as error:  # e.g. a local cluster that does not start in time: the other runs still count
        print(f"  {mode}, chunk_calls {fanout.get('chunk_calls') or 'default'}: FAILED: "
              f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", flush=True)
        return {"mode": mode, "chunk_calls": fanout.get("chunk_calls"), "failed": type(error).__name__}
    run["store_cpu_s"] -= threads.own_s
    fixed = measure(lambda: judge_flow(config), others)
    judgments, valid, digest = stored_rows(store_path)
    figures = {"mode": mode, "chunk_calls": fanout.get("chunk_calls"), "calls": run.pop("result")["calls_made"],
               "judgments": judgments, "valid": valid, "digest": digest, "threads": threads.by_thread(), **run,
               "fixed_cpu_s": fixed["store_cpu_s"], "fixed_calls": fixed["result"]["calls_made"]}
    print(f"  {describe(figures)}", flush=True)
    return figures


def describe(run: dict) -> str:
    calls = run["calls"]
    threads = ", ".join(f"{name} {seconds:.1f}" for name, seconds in run["threads"][:8])
    where = run["mode"] if run["mode"] == "in_process" else f"{run['mode']}, chunk_calls {run['chunk_calls'] or 'default'}"
    return (f"{where}: {calls} calls ({run['valid']} valid) in "
            f"{run['wall_s']:.1f} s = {calls / run['wall_s']:.0f} calls/s; store process {run['store_cpu_s']:.2f} CPU s "
            f"= {ms_per_call(run['store_cpu_s'], calls):.3f} ms a call (a run with no call left: "
            f"{run['fixed_cpu_s']:.2f} s); CPU s by thread: {threads}")


def ms_per_call(seconds: float, calls: int) -> float:
    return 1000 * seconds / calls if calls else float("nan")


def cluster_cpu(run: dict) -> float:
    """The cluster's processes: sampled while they run (cluster), or reaped once the local one stops."""
    return run.get("cluster_cpu_s", 0.0) + run["reaped_cpu_s"]


def prefect_server(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [process for process in processes if "temporary_server" in " ".join(process.cmdline())]


def warm_up(workdir: Path, base_url: str, args: argparse.Namespace, fanouts: list[dict]) -> None:
    """A few calls each way first: a process's first flow (and each worker's first chunk) pays imports
    and set-up that a long-running deployment pays once. Chunks of 2, so that every worker gets some."""
    small = base_store(workdir / "warm-up-base.duckdb", 8 * args.workers)
    for index, fanout in enumerate(fanouts):
        store_path = workdir / f"warm-up-{index}.duckdb"
        shutil.copy(small, store_path)
        judge_flow(judge_config(store_path, workdir / "warm-up", base_url, args.concurrency, {**fanout, "chunk_calls": 2}))


# -- the report -----------------------------------------------------------------------------------------

def chunk_label(run: dict, args: argparse.Namespace) -> str:
    return str(run["chunk_calls"] or f"default ({2 * args.concurrency})") if run["mode"] != "in_process" else "-"


def print_runs(runs: list[dict], args: argparse.Namespace) -> None:
    print(f"\n## Store-process CPU per call: {2 * args.pairs} judge calls, {args.concurrency} in flight per client, "
          f"{args.latency * 1000:.0f} ms latency, {args.workers} workers x 1 thread")
    print("| mode | chunk_calls | calls (valid) | wall s | calls/s | store CPU ms/call | no-call run CPU s | "
          "store CPU ms/call less it | cluster CPU ms/call | LLM server ms/call | Prefect server ms/call |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        if "failed" in run:
            print(f"| {run['mode']} | {chunk_label(run, args)} | failed: {run['failed']} |" + " |" * 8)
            continue
        calls = run["calls"]
        print(f"| {run['mode']} | {chunk_label(run, args)} | {calls} ({run['valid']}) | "
              f"{run['wall_s']:.1f} | {calls / run['wall_s']:.0f} | {ms_per_call(run['store_cpu_s'], calls):.3f} | "
              f"{run['fixed_cpu_s']:.2f} | {ms_per_call(run['store_cpu_s'] - run['fixed_cpu_s'], calls):.3f} | "
              f"{ms_per_call(cluster_cpu(run), calls):.3f} | {ms_per_call(run['llm_server_cpu_s'], calls):.3f} | "
              f"{ms_per_call(run['prefect_server_cpu_s'], calls):.3f} |")
    print("(in_process: the store process makes the calls; cluster: `dask scheduler` + `dask worker` processes "
          "beside it; local_cluster: the runner's own cluster, its scheduler inside the store process and its "
          "start and stop inside each run)")


def rows_identical(runs: list[dict], expected_calls: int) -> bool:
    """Every completed run stored every judgment valid, with the same rows as the first (in process),
    and its second run found nothing left to ask."""
    completed = [run for run in runs if "failed" not in run]
    ok = True
    for run in completed:
        complete = run["judgments"] == run["valid"] == expected_calls and run["fixed_calls"] == 0
        same = run["digest"] == completed[0]["digest"]
        if not (complete and same):
            ok = False
            print(f"MISMATCH {run['mode']} chunk_calls {run['chunk_calls']}: {run['judgments']} judgments, "
                  f"{run['valid']} valid (expected {expected_calls}), rows {'the same' if same else 'differ'}, "
                  f"{run['fixed_calls']} calls in the second run")
    if ok:
        print(f"\nrows: {len(completed)} completed runs each stored all {expected_calls} judgments valid, the same rows")
    return ok


def print_result(runs: list[dict], args: argparse.Namespace, identical: bool) -> None:
    def first(mode: str) -> dict:  # the default chunk size
        return next(run for run in runs if run["mode"] == mode and run["chunk_calls"] is None)

    failed = [f"{run['mode']}-{run['chunk_calls'] or 'default'}" for run in runs if "failed" in run]
    named = {"in_process": first("in_process"), "fanout": first("cluster"), "local_cluster": first("local_cluster")}
    ms = {key: ms_per_call(run["store_cpu_s"], run["calls"]) if "failed" not in run else float("nan")
          for key, run in named.items()}
    fields = [f"ratio={ms['in_process'] / ms['fanout']:.2f}"]
    fields += [f"store_cpu_ms_per_call_{key}={value:.3f}" for key, value in ms.items()]
    if "failed" not in named["fanout"]:  # what a long run pays a call, the run's fixed cost spread thin
        fanout = named["fanout"]
        fields.append("store_cpu_ms_per_call_fanout_less_fixed="
                      f"{ms_per_call(fanout['store_cpu_s'] - fanout['fixed_cpu_s'], fanout['calls']):.3f}")
    fields += [f"calls_per_s_{key}={run['calls'] / run['wall_s']:.0f}" for key, run in named.items() if "failed" not in run]
    fields += [f"store_cpu_ms_per_call_fanout_chunk{run['chunk_calls']}={ms_per_call(run['store_cpu_s'], run['calls']):.3f}"
               for run in runs if run["mode"] == "cluster" and run["chunk_calls"] and "failed" not in run]
    fields += [f"cluster_cpu_ms_per_call_fanout={ms_per_call(cluster_cpu(named['fanout']), named['fanout']['calls']):.3f}",
               f"goal_ms={GOAL_MS}", f"goal_met={'yes' if ms['fanout'] <= GOAL_MS else 'no'}",
               f"rows_identical={'yes' if identical else 'no'}",
               f"failed_runs={','.join(failed) or 'none'}",
               f"calls={2 * args.pairs}", f"concurrency={args.concurrency}", f"latency_ms={args.latency * 1000:.0f}",
               f"workers={args.workers}", f"cores={os.cpu_count()}", hardware_fields()]
    print("RESULT " + " ".join(fields))


# -- main -----------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 pairs (800 calls): checks that the script runs")
    parser.add_argument("--pairs", type=int, default=4000, help="pairs in the store; 2 calls each (both orders)")
    parser.add_argument("--chunk-calls", type=int, nargs="*", default=[16, 64, 256],
                        help="fanout.chunk_calls tried on the cluster, besides the default (2 x max_concurrency)")
    parser.add_argument("--concurrency", type=int, default=128, help="the judge's max_concurrency (per worker)")
    parser.add_argument("--latency", type=float, default=0.2, help="the server's seconds per answer")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes, one thread each")
    parser.add_argument("--profile", type=int, nargs="*", metavar="CHUNK_CALLS",
                        help="one more cluster run per chunk size given (none given: the default) under py-spy, "
                             "else cProfile")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy executable (default: on PATH)")
    args = parser.parse_args()
    if args.quick:
        args.pairs = 400
    args.profile = [None] if args.profile == [] else args.profile or []
    return args


def main() -> None:
    args = parse_args()
    print(f"hardware: {hardware_fields()} cores={os.cpu_count()}")
    print(f"settings: pairs={args.pairs} calls={2 * args.pairs} chunk_calls=default,{','.join(map(str, args.chunk_calls))} "
          f"concurrency={args.concurrency} latency_ms={args.latency * 1000:.0f} workers={args.workers}", flush=True)
    server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp, prefect_api(Path(tmp) / "prefect-server.log"):
            workdir = Path(tmp)
            # Prefect's API server is a child process of this one (flows/temporary_server.py): not in its CPU
            others = {"llm_server": [psutil.Process(server.pid)],
                      "prefect_server": prefect_server(psutil.Process().children())}
            base = base_store(workdir / "base.duckdb", args.pairs)
            runs = []
            with dask_cluster(args.workers, workdir) as (address, cluster):
                cluster_fanout = {"runner": "dask", "address": address}
                warm_up(workdir, base_url, args, [{"runner": "in_process"}, cluster_fanout])
                print("\nruns:", flush=True)
                runs.append(run_mode("in_process", {"runner": "in_process"}, base, workdir, base_url, args, others))
                for chunk in [None, *args.chunk_calls]:
                    runs.append(run_mode("cluster", {**cluster_fanout, "chunk_calls": chunk}, base, workdir, base_url,
                                         args, {**others, "cluster": cluster}))
                for chunk in args.profile:
                    store_path = workdir / f"profiled-{chunk}.duckdb"
                    shutil.copy(base, store_path)
                    profile_run(judge_config(store_path, workdir / "profiled", base_url, args.concurrency,
                                             {**cluster_fanout, "chunk_calls": chunk}), args.py_spy, workdir, 2 * args.pairs)
            runs.append(run_mode("local_cluster", {"runner": "dask", "workers": args.workers}, base, workdir, base_url,
                                 args, others))
    finally:
        server.terminate()
        server.wait()
    print_runs(runs, args)
    identical = rows_identical(runs, 2 * args.pairs)
    print_result(runs, args, identical)


if __name__ == "__main__":
    main()
