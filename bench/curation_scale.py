"""Curation at scale: 1M pairs over 250K prompts, with planted duplicates and contamination.

The synthetic store has known ground truth: clusters of a base prompt and 1-3 variants (case and
punctuation changes, which the exact step must catch, and one-word edits, which the near step must
catch), and prompts that quote a benchmark question. Each prompt has 4 candidates and 4 pairs, each
pair two judge calls. The full curation (`prefcurate curate`'s stage: every filter, decontamination,
dedup, cap, splits, Parquet export, dataset card) runs in a fresh process, so its time and peak
RSS are its own.

Baseline, side by side: datasketch MinHash + MinHashLSH over the same prompts (same character
5-gram shingles, 128 permutations, threshold), query-then-insert per prompt the way distilabel's
MinHashDedup does it, in distilabel's virtual environment (bench/.venvs/distilabel).

    python bench/curation_scale.py [--prompts 250000] [--no-baseline]
    python bench/curation_scale.py --prompts 25000 250000 750000 2500000   # 0.1M, 1M, 3M, 10M pairs

Each size also watches how far the read snapshot falls behind the store while the curate writes it,
times two publishes of it (a whole copy; written into the one before after a small commit), and
several sizes fit the cost exponent from 1M pairs up. The baseline runs at
sizes up to --baseline-up-to prompts (250,000).

Ends with: RESULT ratio=<baseline near-dup seconds / ours> pairs=... seconds=... peak_rss_gb=...
cost_exponent_from_1m=... snapshot_publish_s=... snapshot_publish_in_place_s=... snapshot_max_age_s=...
precision=... recall=... (per size, in order)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BASELINE_PYTHON = ROOT / "bench" / ".venvs" / "distilabel" / "bin" / "python"
PUNCTUATION = np.array(["?", "!", ".", "?!", "??", " ?"])


# -- synthesis --------------------------------------------------------------------------------------

def vocabulary(rng: np.random.Generator, size: int = 20000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size=size)
    words = {"".join(rng.choice(letters, n)) for n in lengths}
    return np.array(sorted(words))


def sentence(rng, vocab, n_words: int) -> list[str]:
    return list(vocab[rng.integers(0, len(vocab), n_words)])


def variant(rng, vocab, words: list[str], kind: str) -> str:
    words = list(words)
    if kind == "exact":  # case and punctuation only
        text = " ".join(words)
        text = text.upper() if rng.random() < 0.3 else text.capitalize()
        return text.replace(" ", ", ", 1) + str(rng.choice(PUNCTUATION))
    position = int(rng.integers(1, len(words) - 1))
    if kind == "substitute":
        words[position] = str(vocab[rng.integers(0, len(vocab))])
    elif kind == "delete":
        del words[position]
    elif kind == "insert":
        words.insert(position, str(vocab[rng.integers(0, len(vocab))]))
    else:  # swap two neighbours
        words[position], words[position + 1] = words[position + 1], words[position]
    return " ".join(words).capitalize() + "?"


def synthesize_prompts(n_prompts: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """(prompt texts, true cluster id per prompt, benchmark questions, kind per prompt)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    n_clusters = n_prompts // 20
    n_contaminated = n_prompts // 250
    texts, cluster, kinds = [], [], []
    for c in range(n_clusters):
        words = sentence(rng, vocab, int(rng.integers(25, 40)))
        texts.append(" ".join(words).capitalize() + "?")
        cluster.append(c)
        kinds.append("base")
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["exact", "substitute", "delete", "insert", "swap"]))
            texts.append(variant(rng, vocab, words, kind))
            cluster.append(c)
            kinds.append(kind)
    benchmark = [" ".join(sentence(rng, vocab, int(rng.integers(15, 30)))).capitalize() + "?"
                 for _ in range(n_contaminated * 2)]
    for question in benchmark[:n_contaminated]:  # half the benchmark leaks into the prompts
        texts.append(f"Please answer this: {question}")
        cluster.append(-1)
        kinds.append("contaminated")
    next_cluster = n_clusters
    # Two variants can come out the same text; the store keeps one prompt per normalized text.
    from prefcurate.core.hashing import prompt_id

    seen, unique = set(), []
    for i, text in enumerate(texts):
        key = prompt_id(text)
        if key not in seen:
            seen.add(key)
            unique.append(i)
    texts, cluster, kinds = [texts[i] for i in unique], [cluster[i] for i in unique], [kinds[i] for i in unique]
    while len(texts) < n_prompts:
        texts.append(" ".join(sentence(rng, vocab, int(rng.integers(12, 40)))).capitalize() + "?")
        cluster.append(next_cluster)
        kinds.append("unique")
        next_cluster += 1
    return texts, np.array(cluster), benchmark, kinds


def build_store(path: Path, texts: list[str]) -> None:
    import duckdb
    import pyarrow as pa

    from prefcurate.core.hashing import prompt_id
    from prefcurate.core.store import Store

    with Store(path):
        pass  # schema
    ids = [prompt_id(text) for text in texts]
    con = duckdb.connect(str(path))
    con.register("incoming", pa.table({"prompt_id": ids, "text": texts, "source_row": np.arange(1, len(texts) + 1)}))
    con.execute("INSERT INTO prompts (prompt_id, text, source, source_row) SELECT prompt_id, text, 'bench', source_row "
                "FROM incoming")
    con.unregister("incoming")
    # 4 candidates per prompt with texts of 5-60 pseudo-words, 4 pairs, 2 judge calls per pair.
    con.execute("""
        INSERT INTO candidates (candidate_id, prompt_id, generator_key, generator, sample_index, text)
        SELECT md5(prompt_id || ':' || k), prompt_id, 'bench', 'bench', k,
               array_to_string(list_transform(range(CAST(5 + hash(prompt_id, k) % 56 AS BIGINT)),
                   lambda i: 'w' || (hash(prompt_id, k, i) % 5000)), ' ')
        FROM prompts, range(4) AS t(k)""")
    con.execute("""
        INSERT INTO pairs (pair_id, prompt_id, candidate_a, candidate_b, strategy)
        SELECT md5(least(x, y) || greatest(x, y)), prompt_id, least(x, y), greatest(x, y), 'bench'
        FROM (SELECT prompt_id, md5(prompt_id || ':' || i) AS x, md5(prompt_id || ':' || j) AS y
              FROM prompts, (VALUES (0, 1), (2, 3), (0, 2), (1, 3)) AS t(i, j))""")
    # The judge prefers a with P = 0.55..0.95; one pair in ten flips between orders.
    con.execute("""
        INSERT INTO judgments (judgment_id, pair_id, judge, judge_model, principle_id, shown_order, template_version,
                               constitution_version, output_format, verdict_shown, winner, confidence,
                               confidence_source, preference_logit, valid, prompt_tokens, completion_tokens, latency_ms)
        SELECT md5(pair_id || o), pair_id, 'bench-judge', 'bench', 'p', o, 'v', 'c', 'json_schema',
               CASE WHEN (o = 'ab') = (win = 'a') THEN 'A' ELSE 'B' END, win, p, 'logprobs',
               CASE WHEN win = 'a' THEN ln(p / (1 - p)) ELSE -ln(p / (1 - p)) END, true, 300, 20, 200.0
        FROM (SELECT pair_id, o,
                     0.55 + (hash(pair_id) % 40) / 100.0 AS p,
                     CASE WHEN hash(pair_id, o) % 10 = 0 AND o = 'ba' THEN 'b' ELSE 'a' END AS win
              FROM pairs, (VALUES ('ab'), ('ba')) AS t(o))""")
    con.close()


# -- measuring --------------------------------------------------------------------------------------

def run_curation(store: Path, workdir: Path, benchmark: Path) -> dict:
    """In this (fresh) process: the curate stage as `prefcurate curate` runs it."""
    from prefcurate.core.config import config_from_dict
    from prefcurate.pipeline import curate_stage

    config = config_from_dict({"workdir": str(workdir), "store": {"path": str(store)}, "curate": {
        "decontamination": {"benchmarks": [{"name": "bench", "path": str(benchmark), "text_column": "question"}]}}})
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(samples, stop), daemon=True)
    started = time.perf_counter()
    sampler.start()
    summary = curate_stage(config)
    stop.set()
    sampler.join()
    # the samples hold the peak (the sampler resets VmHWM after each); ru_maxrss would not do: it
    # carries the parent's peak into this child (bench/memory.py), the synthesized texts at 10M
    from memory import peak_rss_gb

    peak = max([rss for _, rss in samples] + [peak_rss_gb()])
    highest = sorted(samples, key=lambda sample: -sample[1])[:3]
    return {"seconds": time.perf_counter() - started, "summary": summary, "peak_rss_gb": peak,
            "peak_rss_gb_by_phase": _peak_by_phase(samples, started, summary["steps"]),
            "highest_rss": [(round(at - started, 1), round(rss, 2)) for at, rss in highest]}


def _sample_rss(samples: list, stop: threading.Event, every_s: float = 0.25) -> None:
    """Every every_s: on Linux, the kernel's high-water mark of RSS since the last sample (VmHWM,
    then reset through /proc/self/clear_refs), so that a peak while this thread waits for the GIL
    (a long C call that holds it) is still counted; elsewhere the RSS at that moment."""
    import psutil

    process = psutil.Process()
    try:
        clear = open("/proc/self/clear_refs", "w")
    except OSError:
        clear = None
    while not stop.wait(every_s):
        if clear is None:
            samples.append((time.perf_counter(), process.memory_info().rss / 1024 ** 3))
            continue
        with open("/proc/self/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        clear.write("5")  # 5: reset the peak to the RSS now
        clear.flush()
        samples.append((time.perf_counter(), peak_kb / 1024 ** 2))


def _peak_by_phase(samples: list, started: float, steps: dict) -> dict:
    """The highest sampled RSS in each phase, the phases laid end to end in the order the stage runs
    them (pipeline.curate_stage: prepare, the funnel's input and steps, selection, store, export)."""
    phases, seconds = steps.get("phase_seconds", {}), steps.get("step_seconds", {})
    order = [("prepare", phases.get("prepare", 0)), ("input", phases.get("input", 0)),
             *[(name.split(">=")[0].split(":")[0], s) for name, s in seconds.items()],
             ("selection", phases.get("selection", 0)), ("store", phases.get("store", 0)),
             ("export", phases.get("export", 0))]
    peaks, end = {}, started
    for name, length in order:
        begin, end = end, end + length
        inside = [rss for at, rss in samples if begin <= at < end]
        if inside:
            peaks[name] = round(max(inside), 2)
    after = [rss for at, rss in samples if at >= end]  # the time no phase counts (recording the run)
    if after:
        peaks["after_phases"] = round(max(after), 2)
    return peaks


def publish_seconds(store: Path) -> tuple[float, float]:
    """Two publishes of the read snapshot of this store, as a writer makes them after a commit: a
    whole copy (no snapshot before it to write into) and, after a small commit, one written into
    the snapshot before it (the blocks that changed: core/snapshot_files.py). How old the snapshot
    can get while a stage writes is max(store.snapshot_every_s, 10 x a publish) + a publish, at
    most ~10% of the writer's time by construction (core/store.py publish_snapshot); SnapshotAge
    measures it during the curate."""
    from prefcurate.core import snapshot_files
    from prefcurate.core.store import Store, snapshot_path

    with Store(store, snapshot_every_s=5.0) as opened:
        snapshot_files.spare_path(snapshot_path(store)).unlink(missing_ok=True)
        started = time.perf_counter()
        opened.publish_snapshot(force=True)
        whole = time.perf_counter() - started
        with opened.transaction():
            opened.add_rejects("bench", [{"source": "curation_scale", "reason": "a small commit to publish"}])
        started = time.perf_counter()
        opened.publish_snapshot(force=True)
        return whole, time.perf_counter() - started


class SnapshotAge:
    """While a stage writes the store in another process, every half second: has the store file (or
    its WAL) changed since the snapshot was published? If so, since when (the first sample that
    saw it, less the half second between samples). `oldest` is the longest any write waited to be
    in the snapshot: how far behind the store a reader was. (Not the snapshot file's age: a
    snapshot untouched for minutes because nothing was written is not behind.) The store's file
    time also moves for writes not committed yet, so this errs on the old side."""

    INTERVAL_S = 0.5

    def __init__(self, store: Path):
        from prefcurate.core.store import snapshot_path

        self.store, self.snapshot, self.oldest = store, snapshot_path(store), 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SnapshotAge:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        wal = Path(f"{self.store}.wal")
        behind_since = None
        while not self._stop.wait(self.INTERVAL_S):
            try:
                published = self.snapshot.stat().st_mtime
                changed = max(self.store.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
            except FileNotFoundError:  # between a rename and the next, or before the first publish
                continue
            if changed <= published:
                behind_since = None
                continue
            now = time.time()
            if behind_since is None or behind_since < published:  # a write the last publish did not hold
                behind_since = max(published, now - self.INTERVAL_S)
            self.oldest = max(self.oldest, now - behind_since)


def near_duplicate_quality(store: Path, run_id: str, texts: list[str], truth: np.ndarray, kinds: list[str]) -> dict:
    """Pairwise precision and recall of 'same cluster' over prompts, against the planted clusters
    (contaminated prompts, dropped before dedup, are left out)."""
    import duckdb

    from prefcurate.core.hashing import prompt_id

    index = {prompt_id(text): i for i, text in enumerate(texts)}
    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("SELECT prompt_id, cluster_id FROM curation_prompt_clusters WHERE curation_run_id = ?",
                       [run_id]).fetchall()
    dropped = {row[0] for row in con.execute("SELECT prompt_id FROM curation_prompt_drops WHERE curation_run_id = ? "
                                              "AND step IN ('exact_dedup', 'near_dedup')", [run_id]).fetchall()}
    con.close()
    predicted: dict[str, list[int]] = {}
    for prompt, cluster in rows:
        predicted.setdefault(cluster, []).append(index[prompt])
    predicted_pairs = {(min(a, b), max(a, b)) for members in predicted.values() for a in members for b in members if a < b}
    true_groups: dict[int, list[int]] = {}
    for i, cluster in enumerate(truth):
        if kinds[i] != "contaminated":
            true_groups.setdefault(int(cluster), []).append(i)
    true_pairs = {(a, b) for members in true_groups.values() for a in members for b in members if a < b}
    hits = len(predicted_pairs & true_pairs)
    redundant = {i for members in true_groups.values() if len(members) > 1 for i in members}
    return {"precision": hits / max(len(predicted_pairs), 1), "recall": hits / max(len(true_pairs), 1),
            "dropped": len(dropped), "dropped_truly_redundant": len({index[p] for p in dropped} & redundant),
            "true_pairs": len(true_pairs), "predicted_pairs": len(predicted_pairs)}


BASELINE = r'''
import json, re, sys, time
from datasketch import MinHash, MinHashLSH
texts = json.load(open(sys.argv[1]))
threshold, num_perm, n = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
def shingles(text):
    t = re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()
    return {t.encode()} if len(t) <= n else {t[i:i + n].encode() for i in range(len(t) - n + 1)}
hashes = MinHash.bulk([shingles(t) for t in texts], num_perm=num_perm, seed=1)
lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
duplicate = []
for key, minhash in enumerate(hashes):  # distilabel's MinHashDedup: query, then insert what is new
    if lsh.query(minhash):
        duplicate.append(key)
    else:
        lsh.insert(str(key), minhash)
print(json.dumps({"seconds": time.perf_counter() - started, "duplicates": duplicate}))
'''


def run_baseline(texts: list[str], workdir: Path, threshold: float, num_perm: int, n: int) -> dict:
    if not BASELINE_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_PYTHON.parent.parent)], check=True)
    subprocess.run([str(BASELINE_PYTHON), "-m", "pip", "install", "-q", "datasketch==2.0.0"], check=True,
                   capture_output=True)
    (workdir / "texts.json").write_text(json.dumps(texts))
    (workdir / "baseline.py").write_text(BASELINE)
    done = subprocess.run([str(BASELINE_PYTHON), str(workdir / "baseline.py"), str(workdir / "texts.json"),
                           str(threshold), str(num_perm), str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout)


def measure(n_prompts: int, with_baseline: bool) -> dict:
    """One size: build the store, curate it in a fresh process, check the near-duplicates found
    against the planted ones, time a snapshot publish, and run the baseline if asked."""
    texts, truth, benchmark, kinds = synthesize_prompts(n_prompts)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        build_store(tmp / "store.duckdb", texts)
        (tmp / "benchmark.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in benchmark))
        print(f"synthesized {len(texts)} prompts, {4 * len(texts)} pairs in {time.perf_counter() - started:.0f} s",
              flush=True)
        with SnapshotAge(tmp / "store.duckdb") as age:
            child = subprocess.run([sys.executable, __file__, "--curate", str(tmp / "store.duckdb"), str(tmp / "out"),
                                    str(tmp / "benchmark.jsonl")], capture_output=True, text=True, cwd=ROOT)
        if child.returncode:
            raise RuntimeError(child.stderr[-3000:])
        ours = json.loads(child.stdout.strip().splitlines()[-1])
        summary = ours["summary"]
        steps = summary["steps"]
        near_step = next(name for name in steps["step_seconds"] if name.startswith("near_dedup"))
        near_seconds = steps["step_seconds"][near_step]
        quality = near_duplicate_quality(tmp / "store.duckdb", summary["curation_run_id"], texts, truth, kinds)
        contaminated = steps["decontaminated"]["prompts_dropped"]
        publish, publish_in_place = publish_seconds(tmp / "store.duckdb")
        store_gb = (tmp / "store.duckdb").stat().st_size / 1e9
        print(f"ours: curate stage {ours['seconds']:.1f} s (near-dup step {near_seconds:.1f} s), peak RSS "
              f"{ours['peak_rss_gb']:.2f} GB; pairs in {summary['count_in']} out {summary['count_out']}", flush=True)
        print("  step seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in steps["step_seconds"].items()), flush=True)
        print("  phase seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.get("phase_seconds", {}).items()),
              flush=True)
        print("  peak RSS GB by phase: " + ", ".join(f"{k} {v:.2f}" for k, v in ours["peak_rss_gb_by_phase"].items()),
              flush=True)
        print("  highest RSS samples: " + ", ".join(f"{gb:.2f} GB at {at:.0f} s" for at, gb in ours["highest_rss"]),
              flush=True)
        print(f"  near-duplicates: precision {quality['precision']:.4f} recall {quality['recall']:.4f} "
              f"({quality['predicted_pairs']} predicted / {quality['true_pairs']} true same-cluster pairs); "
              f"contaminated prompts dropped {contaminated} of {sum(k == 'contaminated' for k in kinds)}", flush=True)
        print(f"  read snapshot: during the curate at most {age.oldest:.0f} s behind the store; one publish of "
              f"the {store_gb:.2f} GB store: a whole copy {publish:.1f} s, written into the one before after a "
              f"small commit {publish_in_place:.1f} s", flush=True)
        result = {"pairs": summary["count_in"], "prompts": len(texts), "seconds": ours["seconds"],
                  "peak_rss_gb": ours["peak_rss_gb"], "near_seconds": near_seconds, "quality": quality,
                  "contaminated_dropped": contaminated, "publish_seconds": publish,
                  "publish_in_place_seconds": publish_in_place, "snapshot_max_age_s": age.oldest, "store_gb": store_gb,
                  "phase_seconds": steps.get("phase_seconds", {}), "peak_rss_gb_by_phase": ours["peak_rss_gb_by_phase"]}
        if with_baseline:
            baseline = run_baseline([t for t, k in zip(texts, kinds) if k != "contaminated"], tmp, 0.7, 128, 5)
            print(f"datasketch MinHashLSH (distilabel's MinHashDedup loop): {baseline['seconds']:.1f} s, "
                  f"{len(baseline['duplicates'])} flagged", flush=True)
            result["baseline_near_seconds"] = baseline["seconds"]
        return result


def cost_exponent(sizes: list[int], seconds: list[float]) -> float:
    """The slope of log(seconds) on log(pairs): 1.0 is linear."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main() -> None:
    from hardware import hardware_fields  # bench/hardware.py: the machine, for the RESULT line

    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, nargs="+", default=[250_000],
                        help="one size or several (e.g. 25000 250000 750000 2500000: 0.1M to 10M pairs)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-up-to", type=int, default=250_000,
                        help="prompts; the datasketch baseline runs at sizes up to this (it is slow)")
    parser.add_argument("--curate", nargs=3, metavar=("STORE", "WORKDIR", "BENCHMARK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.curate:  # the child process
        print(json.dumps(run_curation(*map(Path, args.curate)), default=str))
        return

    results = [measure(n, not args.no_baseline and n <= args.baseline_up_to) for n in args.prompts]
    largest = results[-1]
    from_1m = [r for r in results if r["pairs"] >= 1_000_000]
    exponent = cost_exponent([r["pairs"] for r in from_1m], [r["seconds"] for r in from_1m]) \
        if len(from_1m) >= 2 else float("nan")
    with_baseline = [r for r in results if "baseline_near_seconds" in r]
    ratio = with_baseline[-1]["baseline_near_seconds"] / with_baseline[-1]["near_seconds"] if with_baseline else float("nan")
    print(json.dumps(results, indent=1, default=str))

    def per_size(key: str, digits: int) -> str:
        return ",".join(f"{r[key]:.{digits}f}" for r in results)

    print(f"RESULT ratio={ratio:.2f} pairs={','.join(str(r['pairs']) for r in results)} "
          f"seconds={per_size('seconds', 1)} peak_rss_gb={per_size('peak_rss_gb', 2)} "
          f"cost_exponent_from_1m={exponent:.2f} snapshot_publish_s={per_size('publish_seconds', 1)} "
          f"snapshot_publish_in_place_s={per_size('publish_in_place_seconds', 1)} "
          f"snapshot_max_age_s={per_size('snapshot_max_age_s', 0)} "
          f"precision={largest['quality']['precision']:.4f} recall={largest['quality']['recall']:.4f} "
          f"{hardware_fields()}")


if __name__ == "__main__":
    main()
