"""import-pairs and judge planning at scale: their peak memory must follow one batch, not the file
or the store.

For each size N: a JSONL file of N preference pairs (distinct prompts; prompt ~30 words, answers
~60), then, each in a fresh process so that its time and peak RSS are its own:
- ours, import: `prefcurate import-pairs FILE` into a fresh store (store.memory_limit 2GB);
- ours, planning: `prefcurate judge --estimate` on that store with one pairwise judge in both orders,
  which plans all 2N calls (ids hashed, requests rendered, stored answers looked up) and sends none;
- baseline, side by side: the same file read by HF `datasets` (`load_dataset("json")`, what a TRL
  script starts with: Arrow, in blocks, cached on disk), with no validation, hashing or store.

    python bench/intake_scale.py [--pairs 100000 1000000] [--keep]
    python bench/intake_scale.py --plan-only --pairs 10000000   # planning only, on a store built in SQL

--plan-only skips the file, the import and the baseline: DuckDB writes the store import-pairs would
leave (prompts, two candidates and one pair and label per row, texts of the same shape), in SQL, so
that planning can be measured at sizes whose import is too long to repeat (50 min at 10M).

Ends with: RESULT ratio=<baseline seconds / ours, import, largest size> import_rss_gb=<per size> ...
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import PEAK_RSS_SOURCE  # bench/memory.py

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega river stone cloud light answer question reason example").split()


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(n):
            row = {"prompt": f"Question {index}: " + " ".join(rng.choices(WORDS, k=30)),
                   "chosen": f"Good answer {index}. " + " ".join(rng.choices(WORDS, k=60)),
                   "rejected": f"Weak answer {index}. " + " ".join(rng.choices(WORDS, k=60))}
            handle.write(json.dumps(row) + "\n")


# Each measured step runs as `python -c` in a fresh process and prints its own seconds and peak RSS.
# Its peak is VmHWM (bench/memory.py): ru_maxrss would carry this bench's own peak into the child.
MEASURE = PEAK_RSS_SOURCE.replace("{", "{{").replace("}", "}}") + """
import json, sys, time
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started, "peak_rss_gb": peak_rss_gb(), **result}}))
"""

OURS_IMPORT = """
from prefcurate.core.config import load_config
from prefcurate.pipeline import import_stage
report = import_stage(load_config(sys.argv[1]), sys.argv[2])
result = {"rows": report["count_in"], "kept": report["count_out"]}
"""

OURS_ESTIMATE = """
from prefcurate.core.config import load_config
from prefcurate.pipeline import judge_estimate
estimate = judge_estimate(load_config(sys.argv[1]))
result = {"calls_planned": estimate["calls_planned"], "calls_to_make": estimate["calls_to_make"],
          "prompt_tokens": estimate["prompt_tokens"]}
"""

BASELINE = """
import datasets
datasets.disable_progress_bars()
loaded = datasets.load_dataset("json", data_files=sys.argv[2], split="train", cache_dir=sys.argv[1])
result = {"rows": loaded.num_rows}
"""


def measure(body: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), *args], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"a measured step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_store_in_sql(path: Path, n: int) -> None:
    """The store `import-pairs` leaves for write_pairs' N rows (same columns and text shapes; ids are
    md5s, not our content hashes: planning only reads them), written by DuckDB in a few minutes."""
    import duckdb

    sys.path.insert(0, str(ROOT))
    from prefcurate.core.store import Store

    with Store(path):
        pass  # the schema
    words = "[" + ", ".join(f"'{word}'" for word in WORDS) + "]"

    def text(seed: str, n_words: int) -> str:  # n_words pseudo-random words, as write_pairs draws them
        return (f"array_to_string(list_transform(range({n_words}), "
                f"lambda k: {words}[1 + CAST(hash({seed}, k) % {len(WORDS)} AS BIGINT)]), ' ')")

    con = duckdb.connect(str(path), config={"memory_limit": "4GB", "preserve_insertion_order": False})
    try:
        con.execute(f"""INSERT INTO prompts (prompt_id, text, source, source_row, in_pool)
            SELECT md5('p' || i), 'Question ' || i || ': ' || {text("i", 30)}, 'bench', i + 1, false
            FROM range({n}) AS t(i)""")
        con.execute(f"""INSERT INTO candidates (candidate_id, prompt_id, generator_key, generator, sample_index, text)
            SELECT md5('c' || i || ':' || side), md5('p' || i), 'import', 'import:pairs.jsonl', 0,
                   CASE side WHEN 0 THEN 'Good answer ' ELSE 'Weak answer ' END || i || '. ' || {text("i, side, 1", 60)}
            FROM range({n}) AS t(i), range(2) AS s(side)""")
        con.execute(f"""INSERT INTO pairs (pair_id, prompt_id, candidate_a, candidate_b, strategy)
            SELECT md5('pair' || i), md5('p' || i), least(a, b), greatest(a, b), 'import'
            FROM (SELECT i, md5('c' || i || ':0') AS a, md5('c' || i || ':1') AS b FROM range({n}) AS t(i))""")
        con.execute(f"""INSERT INTO reference_labels (reference_label_id, pair_id, winner, source, dataset,
                                                      dataset_format, source_row)
            SELECT md5('label' || i), md5('pair' || i),
                   CASE WHEN md5('c' || i || ':0') < md5('c' || i || ':1') THEN 'a' ELSE 'b' END,
                   'import', 'pairs.jsonl', 'plain', i + 1
            FROM range({n}) AS t(i)""")
    finally:
        con.close()


def config_for(workdir: Path) -> Path:
    path = workdir / "prefcurate.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "workdir": str(workdir / "out"), "store": {"path": str(workdir / "store.duckdb"), "memory_limit": "2GB"},
        "judge": {"principle_sampling": "random", "principles_per_pair": 1, "max_imported_pairs": None,
                  "panel": [{"backend": {"kind": "openai", "model": "gpt-4o-mini",
                                         "base_url": "http://127.0.0.1:9/v1"}}]}}))  # never called: --estimate
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each size's file and store")
    parser.add_argument("--plan-only", action="store_true",
                        help="only the planning, on a store built in SQL (no file, import or baseline)")
    args = parser.parse_args()
    if args.plan_only:
        plan_only(args)
        return
    base = args.workdir or Path(tempfile.mkdtemp(prefix="intake-scale-"))
    rows = []
    for n in args.pairs:
        workdir = fresh_workdir(base, n)
        source = workdir / "pairs.jsonl"
        started = time.perf_counter()
        write_pairs(source, n)
        print(f"{n:>10,} pairs: file {source.stat().st_size / 1e9:.2f} GB written in {time.perf_counter() - started:.0f} s",
              flush=True)
        config = config_for(workdir)
        ours = measure(OURS_IMPORT, str(config), str(source))
        assert ours["kept"] == n, ours
        print(f"  ours, import:    {ours['seconds']:7.1f} s  peak RSS {ours['peak_rss_gb']:.2f} GB", flush=True)
        plan = measure_plan(config, n)
        baseline = measure(BASELINE, str(workdir / "hf-cache"), str(source))
        print(f"  baseline, datasets load_dataset(json): {baseline['seconds']:7.1f} s  "
              f"peak RSS {baseline['peak_rss_gb']:.2f} GB", flush=True)
        rows.append({"pairs": n, "file_gb": source.stat().st_size / 1e9, "ours": ours, "plan": plan,
                     "baseline": baseline, "store_gb": (workdir / "store.duckdb").stat().st_size / 1e9})
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    largest = rows[-1]
    print(json.dumps(rows, indent=1))

    def per_size(key: str, step: str) -> str:
        return ",".join(f"{row[step][key]:.2f}" for row in rows)

    print(f"RESULT ratio={largest['baseline']['seconds'] / largest['ours']['seconds']:.3f} "
          f"pairs={','.join(str(row['pairs']) for row in rows)} import_seconds={per_size('seconds', 'ours')} "
          f"import_rss_gb={per_size('peak_rss_gb', 'ours')} plan_seconds={per_size('seconds', 'plan')} "
          f"plan_rss_gb={per_size('peak_rss_gb', 'plan')} baseline_seconds={per_size('seconds', 'baseline')} "
          f"baseline_rss_gb={per_size('peak_rss_gb', 'baseline')}")


def fresh_workdir(base: Path, n: int) -> Path:
    workdir = base / f"n{n}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


def measure_plan(config: Path, n: int) -> dict:
    """`judge --estimate` in a fresh process: it must plan both orders of every pair."""
    plan = measure(OURS_ESTIMATE, str(config))
    assert plan["calls_planned"] == 2 * n, plan
    print(f"  ours, plan {plan['calls_planned']:,} calls (judge --estimate): {plan['seconds']:7.1f} s  "
          f"peak RSS {plan['peak_rss_gb']:.2f} GB", flush=True)
    return plan


def plan_only(args: argparse.Namespace) -> None:
    base = args.workdir or Path(tempfile.mkdtemp(prefix="intake-scale-"))
    rows = []
    for n in args.pairs:
        workdir = fresh_workdir(base, n)
        config = config_for(workdir)
        started = time.perf_counter()
        build_store_in_sql(workdir / "store.duckdb", n)
        store_gb = (workdir / "store.duckdb").stat().st_size / 1e9
        print(f"{n:>10,} pairs: store of {store_gb:.2f} GB built in SQL in {time.perf_counter() - started:.0f} s",
              flush=True)
        plan = measure_plan(config, n)
        rows.append({"pairs": n, "store_gb": store_gb, "plan": plan})
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(rows, indent=1))
    seconds = ",".join(f"{row['plan']['seconds']:.2f}" for row in rows)
    rss = ",".join(f"{row['plan']['peak_rss_gb']:.2f}" for row in rows)
    # no baseline in this mode: the ratio is not a number
    print(f"RESULT ratio=nan pairs={','.join(str(row['pairs']) for row in rows)} plan_seconds={seconds} "
          f"plan_rss_gb={rss} calls={','.join(str(row['plan']['calls_planned']) for row in rows)}")


if __name__ == "__main__":
    main()
