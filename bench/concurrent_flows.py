"""Flows sharing one store (issue 26, part 2): a long judge run with an annotation pull every few
seconds, an import and a curate started during it, and a reader polling the read snapshot.

The store: `--pairs` pairs (default 200K; `--quick` 20K) built with bulk inserts (bench/curation_scale.py's
builders: 4 candidates and 4 pairs per prompt, two judge verdicts per pair), every one of them also
labelled by an import (reference_labels), so the judge under test asks only about the `--judge-pairs`
new pairs (two calls each; `judge.max_imported_pairs: 0`), and curate has every pair to work on.

Each flow is its own process and its own DuckDB client, as in production:
- `prefcurate judge --config ...` against the suite's OpenAI-compatible server
  (tests/support/openai_server.py, in its own process, with `--latency`); first alone on a copy of
  the store (its baseline), then with the others;
- an annotation pull `--pull-every` s after the previous one ended: Argilla is too heavy here, so
  a small process does what `prefcurate annotate pull` does with the store (pipeline.open_store, curation/annotation/pull.py's
  pull_annotations, finish_stage, the agreement view) on answers from a stub reader instead of
  Argilla's REST API: `--pull-batch` new answers each time, all earlier ones unchanged;
- `prefcurate import-pairs FILE` (`--import-pairs` pairs) started once the judge has answered 20% of
  its calls, `prefcurate curate` at 40% (both also run alone on the copy afterwards, for their times alone);
- a reader calling core/store.py's open_for_reading (what `prefcurate query` does) every second, and
  the real `prefcurate query` every tenth poll.

What is measured, and how (nothing in the product is instrumented):
- who holds the store file and when: DuckDB locks the file with fcntl, so /proc/locks names the
  process holding it; this process samples it every 20 ms (holds shorter than that can be missed);
- how long a CLI flow waited for the store: prefcurate logs `store ... is busy ...; waiting` at INFO
  in <workdir>/logs/prefcurate.log when a wait starts; it ends when the lock sampler first sees
  that process hold the file (or the process ends);
- the pull process times its own waits (Store._connect, wrapped in that process only) and its
  snapshot publishing (Store.publish_snapshot, likewise);
- the judge's calls/s: the server process samples how many calls it has answered every 50 ms; calls
  over the time from its first to its last answer of that run (and, separately, end to end);
- the reader's staleness: afterwards, from the store's created_at (a commit's transaction start):
  at each poll, 0 when the snapshot held every judgment and annotation committed by then, else how
  long ago the first commit it missed was made;
- who publishes the read snapshot: the writer holding the store when `<store>.snapshot` changes.

`--costs-only` runs no flows side by side: on the built store it times one snapshot publish (and a
plain file copy after CHECKPOINT) and how long `prefcurate curate` alone holds the store.

    python bench/concurrent_flows.py [--pairs 200000] [--quick] [--judge-pairs 3000] [--latency 0.25] [--costs-only]

Ends with: RESULT ratio=<judge calls/s with the others / alone> max_wait_s=... flows_finished=N/N
curate_hold_s=... reader_max_staleness_s=...
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support
sys.path.insert(0, str(ROOT / "bench"))  # curation_scale, hardware

BUSY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: store .* is busy ")
WORKSPACE = DATASET = "bench"


# -- the store --------------------------------------------------------------------------------------

def build(path: Path, n_pairs: int, judge_pairs: int, records: int) -> None:
    """n_pairs pairs, judged and import-labelled; judge_pairs new pairs nobody has judged; records
    pairs pushed to 'Argilla' (annotation_records) for the pulls."""
    import duckdb
    import pyarrow as pa

    from curation_scale import build_store, synthesize_prompts
    from prefcurate.core.hashing import prompt_id

    texts, _cluster, _benchmark, _kinds = synthesize_prompts(max(n_pairs // 4, 100))
    build_store(path, texts)
    con = duckdb.connect(str(path))
    con.execute("""INSERT INTO reference_labels (reference_label_id, pair_id, winner, source, dataset, dataset_format)
                   SELECT md5('ref:' || pair_id), pair_id, CASE WHEN hash(pair_id) % 7 = 0 THEN 'b' ELSE 'a' END,
                          'import', 'bench', 'plain' FROM pairs""")
    con.execute(f"""INSERT INTO annotation_records (record_id, pair_id, workspace, dataset, shown_order, round, reason,
                                                    min_submitted)
                    SELECT md5('record:' || pair_id), pair_id, '{WORKSPACE}', '{DATASET}',
                           CASE WHEN hash(pair_id) % 2 = 0 THEN 'ab' ELSE 'ba' END, 0, 'all', 1
                    FROM pairs ORDER BY pair_id LIMIT {records}""")
    # The judge's work: one pair of two different-length answers per new prompt.
    new = [f"Judge question {i}: how would you explain topic {i} to a new colleague in a few lines?"
           for i in range(judge_pairs)]
    con.register("incoming", pa.table({"prompt_id": [prompt_id(t) for t in new], "text": new}))
    con.execute("INSERT INTO prompts (prompt_id, text, source, source_row) "
                "SELECT prompt_id, text, 'bench-judge', row_number() OVER () FROM incoming")
    con.unregister("incoming")
    con.execute("""
        INSERT INTO candidates (candidate_id, prompt_id, generator_key, generator, sample_index, text)
        SELECT md5(prompt_id || ':' || k), prompt_id, 'bench', 'bench', k,
               array_to_string(list_transform(range(CAST(8 + k * 20 + hash(prompt_id, k) % 30 AS BIGINT)),
                   lambda i: 'w' || (hash(prompt_id, k, i) % 5000)), ' ')
        FROM prompts, range(2) AS t(k) WHERE source = 'bench-judge'""")
    con.execute("""
        INSERT INTO pairs (pair_id, prompt_id, candidate_a, candidate_b, strategy)
        SELECT md5(least(x, y) || greatest(x, y)), prompt_id, least(x, y), greatest(x, y), 'bench'
        FROM (SELECT prompt_id, md5(prompt_id || ':0') AS x, md5(prompt_id || ':1') AS y
              FROM prompts WHERE source = 'bench-judge')""")
    con.close()
    publish(path)


def publish(path: Path) -> None:
    """Open and close as a stage would: the read snapshot is published."""
    from prefcurate.core.store import Store

    with Store(path, snapshot_every_s=5.0):
        pass


def import_file(path: Path, n: int) -> None:
    with open(path, "w") as out:
        for i in range(n):
            out.write(json.dumps({"prompt": f"Imported question {i}: what is a good way to learn skill {i}?",
                                  "chosen": f"A careful answer about skill {i}: practise daily, " + "and review " * (i % 7 + 2),
                                  "rejected": f"Skill {i}? No idea."}) + "\n")


# -- child processes --------------------------------------------------------------------------------

def serve(port: int, latency: float, samples: Path) -> None:
    """The suite's server (as `python -m tests.support.openai_server` runs it), plus a line
    `time answered` every 50 ms when the count moved."""
    from tests.support.openai_server import Behaviour, OpenAICompatServer

    server = OpenAICompatServer(Behaviour(latency_s=latency), port=port).start()
    print(f"serving {server.base_url}", flush=True)
    last = -1
    with open(samples, "a") as out:
        while True:
            count = len(server.answered)
            if count != last:
                out.write(f"{time.time():.3f} {count}\n")
                out.flush()
                last = count
            time.sleep(0.05)


class StubArgilla:
    """What ArgillaReader returns, without Argilla: one submitted answer per record for the first n."""

    def __init__(self, record_ids: list[str], n: int):
        self.record_ids, self.n = record_ids, n

    def usernames(self) -> dict[str, str]:
        return {"user-1": "annotator-1"}

    def records(self, dataset_id: str):
        for i, record in enumerate(self.record_ids[:self.n]):
            yield {"id": f"argilla-{i}", "external_id": record, "responses": [{
                "id": f"response-{i}", "user_id": "user-1", "status": "submitted",
                "values": {"preference": {"value": "a" if i % 3 else "b"}, "strength": {"value": 1 + i % 3}},
                "updated_at": "2026-12-06T12:00:00"}]}


def pull_loop(config_path: Path, out_path: Path, every: float, batch: int, stop: Path) -> None:
    """`prefcurate annotate pull`'s work on the store, `every` s after the last one ended, until `stop` exists."""
    from prefcurate.core import store as store_module
    from prefcurate.core.config import load_config
    from prefcurate.curation.annotation.pull import pull_annotations
    from prefcurate.pipeline import finish_stage, open_store

    config = load_config(config_path)
    con, _note = store_module.open_for_reading(config.store.path)
    record_ids = [row[0] for row in con.execute(
        "SELECT record_id FROM annotation_records WHERE workspace = ? AND dataset = ? ORDER BY record_id",
        [WORKSPACE, DATASET]).fetchall()]
    con.close()
    connects, publishes = [], []
    connect, publish_snapshot = store_module.Store._connect, store_module.Store.publish_snapshot

    def timed_connect(self, *args, **kwargs):
        started = time.monotonic()
        try:
            return connect(self, *args, **kwargs)
        finally:
            connects.append(time.monotonic() - started)

    def timed_publish(self, *args, **kwargs):
        started = time.monotonic()
        done = publish_snapshot(self, *args, **kwargs)
        if done:
            publishes.append(time.monotonic() - started)
        return done

    store_module.Store._connect, store_module.Store.publish_snapshot = timed_connect, timed_publish
    n = 0
    with open(out_path, "a") as out:
        while not stop.exists():
            n += 1
            began, wall = time.monotonic(), time.time()
            del connects[:], publishes[:]
            entry = {"start": wall}
            try:
                with open_store(config) as store:
                    opened = time.monotonic()
                    summary = finish_stage(store, pull_annotations(store, StubArgilla(record_ids, n * batch),
                                                                   WORKSPACE, WORKSPACE, DATASET))
                    store.con.sql("SELECT * FROM annotation_agreement").fetchall()
                    written = time.monotonic()
                closed = time.monotonic()
                wait = connects[0] if connects else 0.0
                entry.update(ok=True, wait_s=wait, open_s=opened - began - wait, write_s=written - opened,
                             close_s=closed - written, hold_s=closed - began - wait, new=summary.get("new"), publishes_s=list(publishes))
            except Exception as error:  # recorded: a flow that fails is a finding
                entry.update(ok=False, error=f"{type(error).__name__}: {error}"[:500])
            out.write(json.dumps(entry) + "\n")
            out.flush()
            time.sleep(every)  # between the end of one pull and the start of the next


def read_loop(config_path: Path, out_path: Path, every: float, stop: Path) -> None:
    """A reader of the snapshot (open_for_reading, as `prefcurate query`) every `every` s; every
    tenth poll the real `prefcurate query`."""
    from prefcurate.core.config import load_config
    from prefcurate.core.store import open_for_reading, snapshot_path

    config = load_config(config_path)
    snapshot = snapshot_path(config.store.path)
    polls = 0
    with open(out_path, "a") as out:
        while not stop.exists():
            began, wall = time.monotonic(), time.time()
            entry = {"t": wall}
            try:
                con, note = open_for_reading(config.store.path)
                try:
                    judgments, annotations = con.execute(
                        "SELECT (SELECT count(*) FROM judgments), (SELECT count(*) FROM annotations)").fetchone()
                finally:
                    con.close()
                entry.update(ok=True, judgments=judgments, annotations=annotations, noted_stale=note is not None,
                             snapshot_age_s=wall - snapshot.stat().st_mtime, read_s=time.monotonic() - began)
            except Exception as error:
                entry.update(ok=False, error=f"{type(error).__name__}: {error}"[:500])
            polls += 1
            if polls % 10 == 0:
                started = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "prefcurate.cli", "query",
                                       "SELECT count(*) FROM judgments", "--config", str(config_path)],
                                      capture_output=True, text=True)
                entry.update(cli_rc=done.returncode, cli_s=time.monotonic() - started,
                             cli_error=done.stderr[-300:] if done.returncode else None)
            out.write(json.dumps(entry) + "\n")
            out.flush()
            time.sleep(max(0.0, every - (time.monotonic() - began)))


# -- watching ---------------------------------------------------------------------------------------

class LockWatch(threading.Thread):
    """Who holds the file, from /proc/locks (DuckDB takes an fcntl lock: WRITE for a writer, READ
    for a read-only client): (pid, mode, start, end) intervals, sampled every `interval` s."""

    def __init__(self, path: Path, interval: float = 0.02):
        super().__init__(daemon=True)
        st = os.stat(path)
        self.key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
        self.interval, self.holds, self._open, self._halt = interval, [], {}, threading.Event()
        self.snapshot = Path(f"{path}.snapshot")  # who publishes it: the writer holding the file when it changes
        self.published: list[tuple[float, int | None]] = []

    def run(self) -> None:
        last = self.snapshot.stat().st_mtime if self.snapshot.exists() else None
        while not self._halt.is_set():
            now = time.time()
            held = {}
            try:
                mtime = self.snapshot.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != last:
                writers = [pid for pid, (mode, _) in self._open.items() if mode == "WRITE"]
                self.published.append((now, writers[0] if writers else None))
                last = mtime
            with open("/proc/locks") as locks:
                for line in locks:
                    if self.key in line:
                        fields = line.split()
                        mode, pid = fields[-5], int(fields[-4])
                        held[pid] = mode
            for pid, mode in held.items():
                if pid not in self._open:
                    self._open[pid] = (mode, now)
            for pid in list(self._open):
                if pid not in held:
                    mode, start = self._open.pop(pid)
                    self.holds.append({"pid": pid, "mode": mode, "start": start, "end": now})
            time.sleep(self.interval)

    def stop(self) -> list[dict]:
        self._halt.set()
        self.join()
        now = time.time()
        for pid, (mode, start) in self._open.items():
            self.holds.append({"pid": pid, "mode": mode, "start": start, "end": now})
        return sorted(self.holds, key=lambda hold: hold["start"])


def answered_at(samples: Path) -> list[tuple[float, int]]:
    rows = []
    for line in samples.read_text().splitlines():
        t, count = line.split()
        rows.append((float(t), int(count)))
    return rows


def calls_phase(samples: Path, started: float, ended: float) -> dict:
    """The server's answers between two times: calls, first and last answer, calls/s."""
    rows = answered_at(samples)
    before = max([c for t, c in rows if t <= started] or [0])
    inside = [(t, c) for t, c in rows if started < t <= ended + 1]
    if not inside:
        return {"calls": 0, "calls_per_s": 0.0}
    last = max(c for _, c in inside)
    first_t = inside[0][0]
    last_t = next(t for t, c in inside if c == last)
    calls = last - before
    return {"calls": calls, "first": first_t, "last": last_t, "seconds": last_t - first_t,
            "calls_per_s": calls / max(last_t - first_t, 1e-9)}


def rate_between(samples: Path, start: float, end: float) -> float | None:
    """Answers per second the server gave between two times."""
    rows = answered_at(samples)
    if end - start < 1:
        return None
    at = lambda when: max([c for t, c in rows if t <= when] or [0])  # noqa: E731
    return (at(end) - at(start)) / (end - start)


def waits_from_log(log: Path, pid: int, holds: list[dict], ended: float) -> list[float]:
    """Each wait a CLI flow logged: from the `is busy` line to its next hold of the file."""
    if not log.exists():
        return []
    waits = []
    mine = sorted(h["start"] for h in holds if h["pid"] == pid and h["mode"] == "WRITE")
    for line in log.read_text(errors="replace").splitlines():
        match = BUSY.match(line)
        if match:
            began = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            got = next((start for start in mine if start >= began - 0.05), ended)
            waits.append(max(0.0, got - began))
    return waits


def hold_stats(holds: list[dict], pid: int) -> dict:
    lengths = [h["end"] - h["start"] for h in holds if h["pid"] == pid and h["mode"] == "WRITE"]
    return {"holds": len(lengths), "max_hold_s": max(lengths, default=0.0), "held_s": sum(lengths)}


# -- flows ------------------------------------------------------------------------------------------

def write_config(path: Path, workdir: Path, store: Path, base_url: str | None, args) -> Path:
    config = {"workdir": str(workdir), "store": {"path": str(store)}}
    if base_url:
        config["judge"] = {"max_imported_pairs": 0, "panel": [{"output_format": "json_schema", "backend": {
            "kind": "openai", "model": "bench-model", "base_url": base_url, "max_concurrency": args.concurrency}}]}
    path.write_text(yaml.safe_dump(config))
    return path


class Flow:
    """A `prefcurate` command in its own process."""

    def __init__(self, name: str, args: list[str], config: Path, workdir: Path, env: dict):
        self.name, self.workdir = name, workdir
        self.started = time.time()
        self.out = open(workdir.parent / f"{workdir.name}.out", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "prefcurate.cli", *args, "--config", str(config)],
                                        stdout=self.out, stderr=subprocess.STDOUT, env=env, cwd=workdir.parent)
        self.pid, self.ended, self.rc = self.process.pid, None, None

    def wait(self, timeout: float) -> int:
        try:
            self.rc = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.rc = self.process.wait(30)
        self.ended = time.time()
        self.out.close()
        return self.rc

    @property
    def output(self) -> str:
        return (self.workdir.parent / f"{self.workdir.name}.out").read_text(errors="replace")

    def summary_value(self, key: str):
        match = re.search(rf"^  {key}: (.+)$", self.output, re.M)
        return match.group(1) if match else None


def wait_for_answers(samples: Path, base: int, target: int, process: subprocess.Popen, limit: float) -> None:
    deadline = time.time() + limit
    while time.time() < deadline and process.poll() is None:
        rows = answered_at(samples) if samples.exists() else []
        if rows and rows[-1][1] - base >= target:
            return
        time.sleep(0.2)


def staleness(reads: list[dict], store: Path) -> list[float]:
    """Per poll: 0 when the reader saw every judgment and annotation committed by then, else how
    long ago the first commit it missed was made (created_at: the committing transaction's start)."""
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    # created_at is current_timestamp stored in a TIMESTAMP column: local time; epoch() reads it as UTC
    offset = con.execute("SELECT epoch(current_timestamp::TIMESTAMP) - epoch(current_timestamp)").fetchone()[0]
    times = {table: sorted(row[0] - offset for row in con.execute(
        f"SELECT epoch(created_at) FROM {table}").fetchall()) for table in ("judgments", "annotations")}
    con.close()
    result = []
    for read in reads:
        if not read.get("ok"):
            continue
        worst = 0.0
        for table, seen in (("judgments", read["judgments"]), ("annotations", read["annotations"])):
            committed = bisect.bisect_right(times[table], read["t"])
            if seen < committed:
                worst = max(worst, read["t"] - times[table][seen])
        result.append(worst)
    return result


def costs_only(store: Path, tmp: Path, env: dict, args, load_at_start: str) -> None:
    """What one write costs the others on this store, without running the flows side by side."""
    import duckdb

    from hardware import hardware_fields
    from prefcurate.core.store import Store

    publishes, copies = [], []
    for _ in range(3):
        with Store(store, snapshot_every_s=5.0) as opened:
            started = time.monotonic()
            opened.publish_snapshot(force=True)
            publishes.append(time.monotonic() - started)
    con = duckdb.connect(str(store))
    con.execute("CHECKPOINT")
    for _ in range(3):
        started = time.monotonic()
        shutil.copyfile(store, tmp / "copy.duckdb")
        copies.append(time.monotonic() - started)
    con.close()
    (tmp / "curate").mkdir()
    config = write_config(tmp / "curate.yaml", tmp / "curate", store, None, args)
    watch = LockWatch(store)
    watch.start()
    curator = Flow("curate", ["curate"], config, tmp / "curate", env)
    curator.wait(3600)
    holds = watch.stop()
    if curator.rc != 0:
        raise RuntimeError(f"curate failed ({curator.rc}): {curator.output[-3000:]}")
    hold = hold_stats(holds, curator.pid)["max_hold_s"]
    size_mb = store.stat().st_size / 1e6
    print(f"store {size_mb:.0f} MB: snapshot publish (COPY FROM DATABASE) {min(publishes):.2f}-{max(publishes):.2f} s, "
          f"file copy after CHECKPOINT {min(copies):.2f}-{max(copies):.2f} s; curate alone {curator.ended - curator.started:.1f} s "
          f"end to end, held the store {hold:.1f} s (load {load_avg()})", flush=True)
    print(f"RESULT ratio=nan curate_hold_s={hold:.1f} publish_s={statistics.median(publishes):.2f} "
          f"file_copy_s={statistics.median(copies):.2f} store_mb={size_mb:.0f} pairs={args.pairs} "
          f"load_at_start={load_at_start} {hardware_fields()}")


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from hardware import hardware_fields
    from judge_throughput import free_port

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000, help="pairs in the store")
    parser.add_argument("--quick", action="store_true", help="20K pairs, 1,500 judge pairs")
    parser.add_argument("--judge-pairs", type=int, default=3000, help="new pairs the judge asks about (2 calls each)")
    parser.add_argument("--import-pairs", type=int, default=3000, help="pairs in the file import-pairs reads")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the server takes per answer")
    parser.add_argument("--concurrency", type=int, default=16, help="the judge's calls in flight")
    parser.add_argument("--pull-every", type=float, default=5.0, help="seconds from one pull's end to the next")
    parser.add_argument("--pull-batch", type=int, default=200, help="new answers per pull")
    parser.add_argument("--read-every", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--costs-only", action="store_true",
                        help="no flows side by side: on the built store, time one snapshot publish (and a plain file "
                             "copy after CHECKPOINT, for comparison) and how long `prefcurate curate` alone holds it")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pull", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--read", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve[0]), float(args.serve[1]), Path(args.serve[2]))
    if args.pull:
        return pull_loop(Path(args.pull[0]), Path(args.pull[1]), float(args.pull[2]), int(args.pull[3]),
                         Path(args.pull[4]))
    if args.read:
        return read_loop(Path(args.read[0]), Path(args.read[1]), float(args.read[2]), Path(args.read[3]))
    if args.quick:
        args.pairs, args.judge_pairs = 20_000, 1500

    load_at_start = load_avg()
    print(f"load average at start: {load_at_start} ({os.cpu_count()} cores)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="prefcurate-concurrent-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               OPENAI_API_KEY="bench", PYTHONPATH=str(ROOT))
    server = None
    try:
        store, alone = tmp / "store.duckdb", tmp / "alone.duckdb"
        started = time.perf_counter()
        build(store, args.pairs, args.judge_pairs, records=max(args.pull_batch * 100, 20_000))
        shutil.copy(store, alone)
        publish(alone)
        import_file(tmp / "import.jsonl", args.import_pairs)
        size_mb = store.stat().st_size / 1e6
        print(f"store: {args.pairs} pairs + {args.judge_pairs} to judge, {size_mb:.0f} MB, built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        if args.costs_only:
            return costs_only(store, tmp, env, args, load_at_start)

        port, samples = free_port(), tmp / "answered.txt"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.latency), str(samples)],
                                  stdout=subprocess.PIPE, text=True, env=env)
        line = server.stdout.readline()
        if not line.startswith("serving"):
            raise RuntimeError(f"server did not start: {line!r}")
        base_url = f"http://127.0.0.1:{port}/v1"
        calls = 2 * args.judge_pairs

        def configs(store_path: Path, tag: str) -> dict[str, Path]:
            paths = {}
            for name in ("judge", "import", "curate", "pull", "read"):
                (tmp / f"{tag}-{name}").mkdir()
                paths[name] = write_config(tmp / f"{tag}-{name}.yaml", tmp / f"{tag}-{name}", store_path,
                                           base_url if name == "judge" else None, args)
            return paths

        # -- alone, on the copy: the judge, then import and curate one after the other -----------------
        cfg = configs(alone, "alone")
        watch = LockWatch(alone)
        watch.start()
        judge_alone = Flow("judge", ["judge"], cfg["judge"], tmp / "alone-judge", env)
        judge_alone.wait(3600)
        import_alone = Flow("import", ["import-pairs", str(tmp / "import.jsonl")], cfg["import"], tmp / "alone-import", env)
        import_alone.wait(3600)
        curate_alone = Flow("curate", ["curate"], cfg["curate"], tmp / "alone-curate", env)
        curate_alone.wait(3600)
        holds_alone = watch.stop()
        for flow in (judge_alone, import_alone, curate_alone):
            if flow.rc != 0:
                raise RuntimeError(f"{flow.name} alone failed ({flow.rc}): {flow.output[-3000:]}")
        base = calls_phase(samples, judge_alone.started, judge_alone.ended)
        alone_figures = {flow.name: {"seconds": flow.ended - flow.started, **hold_stats(holds_alone, flow.pid)}
                         for flow in (judge_alone, import_alone, curate_alone)}
        print(f"alone (load {load_avg()}): judge {base['calls']} calls at {base['calls_per_s']:.1f} calls/s "
              f"({base['seconds']:.1f} s of calls, {alone_figures['judge']['seconds']:.1f} s end to end, longest "
              f"commit hold {alone_figures['judge']['max_hold_s']:.2f} s); import {alone_figures['import']['seconds']:.1f} s "
              f"(held {alone_figures['import']['max_hold_s']:.1f} s); curate {alone_figures['curate']['seconds']:.1f} s "
              f"(held {alone_figures['curate']['max_hold_s']:.1f} s)", flush=True)

        # -- together, on the store ------------------------------------------------------------------
        cfg = configs(store, "shared")
        stop = tmp / "stop"
        watch = LockWatch(store)
        watch.start()
        reader = subprocess.Popen([sys.executable, __file__, "--read", str(cfg["read"]), str(tmp / "reads.jsonl"),
                                   str(args.read_every), str(stop)], env=env)
        puller = subprocess.Popen([sys.executable, __file__, "--pull", str(cfg["pull"]), str(tmp / "pulls.jsonl"),
                                   str(args.pull_every), str(args.pull_batch), str(stop)], env=env)
        answered_before = answered_at(samples)[-1][1]
        judge = Flow("judge", ["judge"], cfg["judge"], tmp / "shared-judge", env)
        wait_for_answers(samples, answered_before, int(0.2 * calls), judge.process, 1800)
        importer = Flow("import", ["import-pairs", str(tmp / "import.jsonl")], cfg["import"], tmp / "shared-import", env)
        wait_for_answers(samples, answered_before, int(0.4 * calls), judge.process, 1800)
        curator = Flow("curate", ["curate"], cfg["curate"], tmp / "shared-curate", env)
        for flow in (judge, importer, curator):
            flow.wait(3600)
        stop.touch()
        reader.wait(120)
        puller.wait(900)
        holds = watch.stop()

        # -- figures ---------------------------------------------------------------------------------
        shared = calls_phase(samples, judge.started, judge.ended)
        ratio = shared["calls_per_s"] / base["calls_per_s"]
        end_to_end = (base["calls"] / alone_figures["judge"]["seconds"],
                      shared["calls"] / (judge.ended - judge.started))
        pulls = [json.loads(line) for line in (tmp / "pulls.jsonl").read_text().splitlines()]
        reads = [json.loads(line) for line in (tmp / "reads.jsonl").read_text().splitlines()]
        flows = {}
        for flow in (judge, importer, curator):
            waits = waits_from_log(flow.workdir / "logs" / "prefcurate.log", flow.pid, holds, flow.ended)
            flows[flow.name] = {"rc": flow.rc, "seconds": flow.ended - flow.started, "waits": len(waits),
                                "max_wait_s": max(waits, default=0.0), "waited_s": sum(waits),
                                **hold_stats(holds, flow.pid)}
        for flow in (importer, curator):  # did its writes fall inside the judge's calls?
            mine = [h for h in holds if h["pid"] == flow.pid and h["mode"] == "WRITE"]
            flows[flow.name]["during_judge_calls"] = bool(mine) and shared["first"] < mine[0]["start"] < shared["last"]
        pull_ok = [p for p in pulls if p.get("ok")]
        pull_waits = [p["wait_s"] for p in pull_ok]
        flows["pull"] = {"rc": 0 if pulls and len(pull_ok) == len(pulls) else 1, "runs": len(pulls),
                         "failed": len(pulls) - len(pull_ok), "max_wait_s": max(pull_waits, default=0.0),
                         "median_wait_s": sorted(pull_waits)[len(pull_waits) // 2] if pull_waits else 0.0,
                         **hold_stats(holds, puller.pid),
                         "max_publish_s": max((s for p in pull_ok for s in p["publishes_s"]), default=0.0),
                         "publishes_per_pull": (sum(len(p["publishes_s"]) for p in pull_ok) / max(len(pull_ok), 1))}
        read_ok = [r for r in reads if r.get("ok")]
        cli_reads = [r for r in reads if "cli_rc" in r]
        stale = staleness(reads, store)
        flows["reader"] = {"rc": 0 if reads and len(read_ok) == len(reads) and all(r["cli_rc"] == 0 for r in cli_reads)
                           else 1, "polls": len(reads), "failed": len(reads) - len(read_ok),
                           "cli_queries": len(cli_reads), "cli_failed": sum(r["cli_rc"] != 0 for r in cli_reads),
                           "max_staleness_s": max(stale, default=0.0),
                           "median_staleness_s": sorted(stale)[len(stale) // 2] if stale else 0.0,
                           "noted_stale": sum(r.get("noted_stale", False) for r in read_ok),
                           "max_snapshot_age_s": max((r["snapshot_age_s"] for r in read_ok), default=0.0),
                           "held_store_file": sum(h["pid"] == reader.pid for h in holds)}
        publishers = {}
        names = {judge.pid: "judge", importer.pid: "import", curator.pid: "curate", puller.pid: "pull"}
        for _when, pid in watch.published:
            name = names.get(pid, "unknown" if pid is None else str(pid))
            publishers[name] = publishers.get(name, 0) + 1
        for name, flow in flows.items():
            flow["snapshots_published"] = publishers.get(name, 0)
        # the longest time the server answered nothing during the judge's calls
        rows = [(t, c) for t, c in answered_at(samples) if shared["first"] <= t <= shared["last"]]
        stall = max((b[0] - a[0] for a, b in zip(rows, rows[1:])), default=0.0)
        finished = sum(f["rc"] == 0 for f in flows.values())
        max_wait = max(f.get("max_wait_s", 0.0) for name, f in flows.items() if name != "reader")
        curate_window = [h for h in holds if h["pid"] == curator.pid and h["mode"] == "WRITE"]
        curate_hold = max((h["end"] - h["start"] for h in curate_window), default=0.0)
        during_curate = rate_between(samples, curate_window[0]["start"], min(curate_window[0]["end"], shared["last"])) \
            if curate_window and curate_window[0]["start"] < shared["last"] else None  # None: after the judge's calls
        others = {h["pid"] for h in holds} - {judge.pid, importer.pid, curator.pid, puller.pid}
        print(f"together (load {load_avg()}):")
        for name, figures in flows.items():
            print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in figures.items()), flush=True)
        print(f"  judge: {shared['calls']} calls at {shared['calls_per_s']:.1f} calls/s ({shared['seconds']:.1f} s of "
              f"calls) vs {base['calls_per_s']:.1f} alone: {ratio:.3f}; end to end {end_to_end[1]:.1f} vs "
              f"{end_to_end[0]:.1f} calls/s: {end_to_end[1] / end_to_end[0]:.3f}; while curate held the file "
              f"({curate_hold:.1f} s): {during_curate if during_curate is None else round(during_curate, 1)} calls/s; "
              f"longest time without an answer during its calls {stall:.1f} s", flush=True)
        if pull_ok:
            held = sum(p["hold_s"] for p in pull_ok)
            copying = sum(sum(p["publishes_s"]) for p in pull_ok)
            print(f"  pull: median hold {sorted(p['hold_s'] for p in pull_ok)[len(pull_ok) // 2]:.2f} s, "
                  f"{copying / max(held, 1e-9):.0%} of its holds spent publishing the snapshot; "
                  f"{sum(len(p['publishes_s']) == 2 for p in pull_ok)} of {len(pull_ok)} pulls published twice "
                  f"(at open, the snapshot looking stale, and at close)", flush=True)
        print(f"  snapshot publishes by flow: {publishers}", flush=True)
        if others:
            print(f"  other processes held the store: {sorted(others)}")
        print(f"  store holds by process (pid: flow): judge {judge.pid}, import {importer.pid}, curate {curator.pid}, "
              f"pull {puller.pid}, reader {reader.pid}")
        (tmp / "holds.json").write_text(json.dumps(holds))
        print(f"RESULT ratio={ratio:.3f} max_wait_s={max_wait:.1f} flows_finished={finished}/{len(flows)} "
              f"curate_hold_s={curate_hold:.1f} reader_max_staleness_s={flows['reader']['max_staleness_s']:.1f} "
              f"judge_calls_per_s={shared['calls_per_s']:.1f} judge_alone_calls_per_s={base['calls_per_s']:.1f} "
              f"end_to_end_ratio={end_to_end[1] / end_to_end[0]:.3f} judge_longest_stall_s={stall:.1f} "
              f"judge_max_wait_s={flows['judge']['max_wait_s']:.1f} pull_max_wait_s={flows['pull']['max_wait_s']:.1f} "
              f"import_max_wait_s={flows['import']['max_wait_s']:.1f} curate_max_wait_s={flows['curate']['max_wait_s']:.1f} "
              f"pull_max_hold_s={flows['pull']['max_hold_s']:.2f} judge_max_hold_s={flows['judge']['max_hold_s']:.2f} "
              f"curate_alone_s={alone_figures['curate']['seconds']:.1f} pairs={args.pairs} judge_calls={calls} "
              f"latency_s={args.latency} concurrency={args.concurrency} load_at_start={load_at_start} "
              f"{hardware_fields()}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
