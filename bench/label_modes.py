"""Label modes, measured: pairwise, rating and ranking judges on the same prompts and candidates.

1. Calls and tokens per labelled pair. N prompts with 4 synthetic answers of varied lengths each,
   judged by the suite's OpenAI-compatible server (tests/support/openai_server.py, in its own
   process): pairwise over every pair (pairs.strategy all: 6 pairs, 2 calls each), rating (each
   answer scored alone on every principle of the constitution, one call per answer) with each score
   strategy (all_with_margin at min_margin 0, best_vs_worst, best_vs_random_lower), and ranking (a
   prompt's answers in one call, again reversed) with all_with_margin. A labelled pair is one with a
   decisive label (pair_labels.vote_label a or b). The server's tokens are words, so token figures
   compare the modes with each other, not with a real tokenizer's.
2. Throughput: the judge stage's calls/s in each mode at the same concurrency, against the same
   server with a fixed latency; each mode on a fresh store, the modes alternating over the repeats,
   the median reported.
3. Agreement with people: a seeded sample of the HH-RLHF harmless pairs shipped with the package,
   imported as `prefcurate run` imports its gold (pipeline.gold_stage), judged in each mode by the
   embedded SmolLM2-135M (or --endpoint/--model). The judge's label under the default rule
   (balanced, else the vote: labelled_pairs.judge_label_by_balanced) against the human one, with a
   95% bootstrap interval over the decisive labels; coverage is the share of gold pairs with one.

    python bench/label_modes.py [--quick] [--prompts 200] [--throughput-prompts 1000] [--repeats 3]
        [--concurrency 128] [--latency 0.2] [--gold-pairs 80] [--endpoint URL --model NAME] [--skip-gold]

Ends with: RESULT ratio=<pairwise calls per labelled pair / rating (all_with_margin) calls per
labelled pair> throughput_ratio=<rating calls/s / pairwise calls/s> ... (and the machine)
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the suite's server and store builders
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded judge never reaches a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hardware import hardware_fields  # noqa: E402  (bench/hardware.py)
from judge_throughput import start_server  # noqa: E402

from prefcurate.core.config import JudgeConfig, PairingConfig, config_from_dict  # noqa: E402
from prefcurate.core.stage_report import StageFailed  # noqa: E402
from prefcurate.core.store import Store  # noqa: E402
from prefcurate.curation.generation.pairing import build_pairs  # noqa: E402
from prefcurate.curation.judging.constitution import load_constitution  # noqa: E402
from prefcurate.curation.judging.judge import judge_pairs  # noqa: E402
from prefcurate.curation.judging.panel import open_panel  # noqa: E402
from prefcurate.pipeline import gold_stage  # noqa: E402
from prefcurate.rm.stats import bootstrap_mean  # noqa: E402
from tests.support.builders import add_candidates, add_prompt  # noqa: E402

MODES = ("pairwise", "rating", "ranking")
SCORE_STRATEGIES = ("all_with_margin", "best_vs_worst", "best_vs_random_lower")
ANSWERS_PER_PROMPT = 4
EMBEDDED_JUDGE = "embedded:smollm2-135m-instruct"
WORDS = ("a reward model learns which answer people prefer when two are shown side by side and the "
         "data decides how good it gets").split()


# -- the prompts and answers every mode sees -----------------------------------------------------------

def synthetic_pool(n_prompts: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """n prompts with four distinct answers of 1 to 10 words each (seeded). The server rates a point
    per 12 characters on 1-5, so these spread over the scale; with --rating-spread by_length its
    log-probabilities make answers of different lengths score apart (equal lengths still tie, for
    pairwise judges too), with even the integer ties of a judge without log-probabilities."""
    rng = random.Random(seed)

    def answer(length: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + "."

    def distinct_answers() -> list[str]:  # the goal's premise: 4 candidates a prompt, 6 possible pairs
        answers: list[str] = []
        while len(answers) < ANSWERS_PER_PROMPT:
            text = answer(rng.randint(1, 10))
            if text not in answers:
                answers.append(text)
        return answers

    return [(f"Question {index}: {answer(8)}?", distinct_answers()) for index in range(n_prompts)]


def pool_store(path: Path, pool: list[tuple[str, list[str]]]) -> Path:
    """A store holding the pool's prompts and answers and nothing else: each run starts from a copy."""
    with Store(path) as store:
        for prompt, answers in pool:
            add_candidates(store, add_prompt(store, prompt), answers)
    return path


def copy_of(store_path: Path, path: Path) -> Path:
    shutil.copy(store_path, path)
    return path


# -- judging --------------------------------------------------------------------------------------------

def judge_config(mode: str, backend: dict, output_format: str = "auto", **options) -> JudgeConfig:
    return JudgeConfig(panel=[{"mode": mode, "output_format": output_format, "backend": backend}], **options)


def server_judge(mode: str, base_url: str, concurrency: int) -> JudgeConfig:
    """A judge on the suite's server; json_schema, so no probe calls run before the others."""
    backend = {"kind": "openai", "model": "test-model", "base_url": base_url, "max_concurrency": concurrency,
               "max_retries": 2}
    return judge_config(mode, backend, "json_schema")


def cpu_seconds() -> float:
    """This process's CPU time, every thread's: ours, not the server's (which shares the cores)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def judge(store: Store, config: JudgeConfig, models_dir: Path) -> tuple[dict, float, float]:
    """The judge stage as the pipeline runs it; (its report's details, seconds end to end, CPU seconds)."""
    started, cpu = time.perf_counter(), cpu_seconds()
    with open_panel(store, config, models_dir) as panel:
        report = judge_pairs(store, panel, load_constitution(None), config)
    return report.details, time.perf_counter() - started, cpu_seconds() - cpu


def usage(store: Store, mode: str) -> dict:
    """The calls a mode made and the tokens they took, from the store."""
    table = "judgments" if mode == "pairwise" else "score_calls"
    calls, invalid, prompt_tokens, completion_tokens = store.one(
        f"SELECT count(*), count(*) FILTER (WHERE NOT valid), coalesce(sum(prompt_tokens), 0), "
        f"coalesce(sum(completion_tokens), 0) FROM {table}")
    return {"calls": calls, "invalid": invalid, "tokens": prompt_tokens + completion_tokens}


def decisive_pairs(store: Store) -> tuple[int, int]:
    """(pairs, of them with a decisive label)."""
    return store.one("SELECT count(*), count(*) FILTER (WHERE vote_label IN ('a', 'b')) FROM pair_labels")


# -- 1. calls and tokens per labelled pair --------------------------------------------------------------

def cost_row(mode: str, strategy: str, spent: dict, store: Store) -> dict:
    pairs, labelled = decisive_pairs(store)
    return {"mode": mode, "strategy": strategy, **spent, "pairs": pairs, "labelled": labelled,
            "calls_per_pair": spent["calls"] / labelled if labelled else float("inf"),
            "tokens_per_pair": spent["tokens"] / labelled if labelled else float("inf")}


def part_costs(pool_path: Path, workdir: Path, base_url: str, concurrency: int) -> list[dict]:
    rows = []
    with Store(copy_of(pool_path, workdir / "pairwise.duckdb")) as store:
        build_pairs(store, PairingConfig(strategy="all"))  # pairwise judges the pairs it is given
        judge(store, server_judge("pairwise", base_url, concurrency), workdir)
        rows.append(cost_row("pairwise", "all", usage(store, "pairwise"), store))
    for mode, strategies in (("rating", SCORE_STRATEGIES), ("ranking", ("all_with_margin",))):
        judged = copy_of(pool_path, workdir / f"{mode}.duckdb")
        with Store(judged) as store:  # scored once; the pairs come after, from the scores
            judge(store, server_judge(mode, base_url, concurrency), workdir)
            spent = usage(store, mode)
        for strategy in strategies:
            with Store(copy_of(judged, workdir / f"{mode}-{strategy}.duckdb")) as store:
                build_pairs(store, PairingConfig(strategy=strategy, min_margin=0.0))
                rows.append(cost_row(mode, strategy, spent, store))
    return rows


def print_costs(rows: list[dict], n_prompts: int) -> None:
    print(f"\n## 1. Calls and tokens per labelled pair ({n_prompts} prompts x {ANSWERS_PER_PROMPT} answers, "
          f"{n_prompts * 6} possible pairs)")
    print("| mode | pairs from | calls | invalid | tokens (prompt+completion) | pairs | labelled | calls/labelled pair "
          "| tokens/labelled pair |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['strategy']} | {row['calls']} | {row['invalid']} | {row['tokens']} | "
              f"{row['pairs']} | {row['labelled']} | {row['calls_per_pair']:.3f} | {row['tokens_per_pair']:.0f} |")


# -- 2. throughput at the same concurrency --------------------------------------------------------------

def part_throughput(pool_path: Path, workdir: Path, base_url: str, concurrency: int, repeats: int) -> dict:
    """mode -> {"rates": calls/s per repeat, "calls", "valid"}; the modes alternate, so a machine that
    slows down part of the way touches every mode alike."""
    figures = {mode: {"rates": []} for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES:
            with Store(copy_of(pool_path, workdir / f"throughput-{mode}-{repeat}.duckdb")) as store:
                if mode == "pairwise":
                    build_pairs(store, PairingConfig(strategy="all"))  # outside the timing: pairing is not judging
                details, seconds, cpu = judge(store, server_judge(mode, base_url, concurrency), workdir)
            calls = details["calls_made"]
            figures[mode]["rates"].append(calls / seconds)
            figures[mode].setdefault("cpu_ms", []).append(1000 * cpu / calls)
            figures[mode].update(calls=calls, valid=details["valid"])
            print(f"  repeat {repeat + 1}, {mode}: {calls} calls ({details['valid']} valid) in {seconds:.1f} s = "
                  f"{calls / seconds:.0f} calls/s, {1000 * cpu / calls:.2f} ms of our CPU a call", flush=True)
    for mode in MODES:
        figures[mode]["median"] = statistics.median(figures[mode]["rates"])
        figures[mode]["median_cpu_ms"] = statistics.median(figures[mode]["cpu_ms"])
    return figures


def print_throughput(figures: dict, concurrency: int, latency: float) -> None:
    bound = concurrency / latency
    print(f"\n## 2. Throughput at {concurrency} in flight, {latency * 1000:.0f} ms latency (bound {bound:.0f} calls/s)")
    print("| mode | calls a run | calls/s (median) | runs | vs pairwise | vs bound | our CPU ms a call (median) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for mode in MODES:
        row = figures[mode]
        runs = " / ".join(f"{rate:.0f}" for rate in row["rates"])
        print(f"| {mode} | {row['calls']} | {row['median']:.0f} | {runs} | "
              f"{row['median'] / figures['pairwise']['median']:.3f} | {row['median'] / bound:.3f} | "
              f"{row['median_cpu_ms']:.2f} |")


# -- 3. agreement with gold labels ----------------------------------------------------------------------

def gold_pool(workdir: Path, n_pairs: int, seed: int) -> Path:
    """A store with a seeded sample of the shipped human-labelled pairs, imported as `prefcurate run`
    imports its gold (not in the generation pool: only the judge sees them)."""
    path = workdir / "gold.duckdb"
    gold_stage(config_from_dict({"workdir": str(workdir / "gold-run"), "store": {"path": str(path)},
                                 "gold": {"source": "shipped:hh-rlhf-harmless", "sample": n_pairs, "seed": seed}}))
    return path


def gold_judge(mode: str, args: argparse.Namespace) -> JudgeConfig:
    """Every imported pair judged (max_imported_pairs None: the store holds only the sample)."""
    if args.endpoint:
        backend = {"kind": "openai", "model": args.model, "base_url": args.endpoint, "api_key_env": args.api_key_env,
                   "max_concurrency": args.concurrency}
    else:
        backend = {"kind": "transformers", "model": EMBEDDED_JUDGE}
    return judge_config(mode, backend, max_imported_pairs=None)


def position_lean(store: Store, mode: str) -> float | None:
    """Pairwise: the share of verdicts for the response shown first; ranking: the share of rankings
    that put the first shown on top. None for rating (each response is shown alone)."""
    if mode == "pairwise":
        return store.scalar("SELECT share_first_position_verdicts FROM judge_position_bias")
    if mode == "ranking":
        return store.scalar("SELECT first_shown_top_share FROM judge_ranking_position_bias")
    return None


# The judges' label under the default rule (balanced, else the vote), and a judge-free reference point:
# the longer response, which a judge that reads length alone would pick.
JUDGE_LABEL = "judge_label_by_balanced"
LONGER_LABEL = ("CASE WHEN length(text_a) > length(text_b) THEN 'a' WHEN length(text_a) < length(text_b) THEN 'b' "
                "END")


def agreement_with_gold(store: Store, label: str) -> dict:
    """`label` (SQL over labelled_pairs and pair_texts) against the human label on every gold pair."""
    labels = store.con.execute(f"SELECT reference_label, {label} FROM labelled_pairs JOIN pair_texts USING (pair_id) "
                               "WHERE reference_label IN ('a', 'b')").fetchall()
    agreed = [float(judged == gold) for gold, judged in labels if judged in ("a", "b")]
    return {"gold_pairs": len(labels), "decisive": len(agreed), "agreement": bootstrap_mean(agreed),
            "coverage": len(agreed) / len(labels) if labels else float("nan")}


def gold_row(store: Store, mode: str, seconds: float) -> dict:
    spent = usage(store, mode)
    return {"mode": mode, **agreement_with_gold(store, JUDGE_LABEL), "calls": spent["calls"],
            "invalid_rate": spent["invalid"] / spent["calls"] if spent["calls"] else float("nan"),
            "first_shown": position_lean(store, mode), "seconds": seconds}


def part_gold(args: argparse.Namespace, workdir: Path) -> list[dict]:
    pool = gold_pool(workdir, args.gold_pairs, args.seed)
    with Store(pool) as store:
        rows = [{"mode": "longer", **agreement_with_gold(store, LONGER_LABEL), "calls": 0,
                 "invalid_rate": float("nan"), "first_shown": None, "seconds": 0.0}]
    for mode in MODES:
        with Store(copy_of(pool, workdir / f"gold-{mode}.duckdb")) as store:
            started = time.perf_counter()
            try:
                judge(store, gold_judge(mode, args), args.models_dir)
            except StageFailed as failed:  # no answer read at all: the stage stops, its answers are stored
                print(f"  {mode}: {failed}", flush=True)
            rows.append(gold_row(store, mode, time.perf_counter() - started))
        print(f"  {mode}: {rows[-1]['calls']} calls in {rows[-1]['seconds']:.0f} s", flush=True)
    return rows


def print_gold(rows: list[dict], judge_name: str) -> None:
    print(f"\n## 3. Agreement with human labels (HH-RLHF harmless, {rows[0]['gold_pairs']} pairs; judge {judge_name}; "
          "chance 50%)")
    print("| mode | calls | invalid | decisive labels | coverage | agreement [95% CI] | first shown preferred | s |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for row in rows:
        agreement = row["agreement"]
        shown = f"{agreement.estimate:.1%} [{agreement.low:.1%}, {agreement.high:.1%}]" if agreement.n else "-"
        lean = "-" if row["first_shown"] is None else f"{row['first_shown']:.2f}"
        invalid = f"{row['invalid_rate']:.1%}" if row["calls"] else "-"
        print(f"| {row['mode']} | {row['calls']} | {invalid} | {row['decisive']} | {row['coverage']:.1%} "
              f"| {shown} | {lean} | {row['seconds']:.0f} |")
    print("(longer: no judge, the longer response of each pair; agreement is over the decisive labels, coverage "
          "is their share of the gold pairs)")


def print_result(costs: list[dict], throughput: dict, gold: list[dict], args: argparse.Namespace) -> None:
    per_pair = {f"{row['mode']}_{row['strategy']}": row for row in costs}
    rate = {mode: throughput[mode]["median"] for mode in MODES}
    ratio = per_pair["pairwise_all"]["calls_per_pair"] / per_pair["rating_all_with_margin"]["calls_per_pair"]
    fields = [f"ratio={ratio:.3f}", f"throughput_ratio={rate['rating'] / rate['pairwise']:.3f}",
              f"ranking_throughput_ratio={rate['ranking'] / rate['pairwise']:.3f}"]
    fields += [f"calls_per_pair_{key}={row['calls_per_pair']:.3f}" for key, row in per_pair.items()]
    fields += [f"tokens_per_pair_{key}={row['tokens_per_pair']:.0f}" for key, row in per_pair.items()]
    fields += [f"calls_per_s_{mode}={rate[mode]:.0f}" for mode in MODES]
    fields += [f"cpu_ms_per_call_{mode}={throughput[mode]['median_cpu_ms']:.2f}" for mode in MODES]
    for row in gold:
        agreement = row["agreement"]
        fields += [f"gold_agreement_{row['mode']}={agreement.estimate:.3f}",
                   f"gold_agreement_{row['mode']}_ci={agreement.low:.3f}-{agreement.high:.3f}",
                   f"gold_coverage_{row['mode']}={row['coverage']:.3f}"]
        if row["calls"]:
            fields.append(f"gold_invalid_{row['mode']}={row['invalid_rate']:.3f}")
    gold_judge_name = args.model if args.endpoint else EMBEDDED_JUDGE
    fields += [f"prompts={args.prompts}", f"concurrency={args.concurrency}", f"latency_ms={args.latency * 1000:.0f}",
               f"gold_pairs={gold[0]['gold_pairs'] if gold else 0}", f"gold_judge={gold_judge_name.replace(' ', '_')}",
               hardware_fields()]
    print("RESULT " + " ".join(fields))


# -- the run --------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script runs")
    parser.add_argument("--prompts", type=int, default=200, help="part 1's prompts")
    parser.add_argument("--throughput-prompts", type=int, default=1000, help="part 2's prompts (ranking: 2 calls each)")
    parser.add_argument("--repeats", type=int, default=3, help="part 2's runs of each mode")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--gold-pairs", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--endpoint", help="an OpenAI-compatible /v1 URL to judge the gold pairs with")
    parser.add_argument("--model", help="the model the endpoint serves")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "prefcurate_out" / "models",
                        help="where the embedded model is converted once (make run's place)")
    parser.add_argument("--skip-gold", action="store_true")
    parser.add_argument("--rating-spread", choices=("by_length", "even"), default="by_length",
                        help="the server's rating log-probabilities: by_length leans towards the next point as a "
                             "response nears it (expected scores differ, as a calibrated judge's do); even gives "
                             "every response of one point the same expected score (integer ties)")
    args = parser.parse_args()
    if args.endpoint and not args.model:
        parser.error("--endpoint needs --model")
    if args.quick:
        args.prompts, args.throughput_prompts, args.repeats, args.gold_pairs = 24, 100, 1, 12
    return args


def main() -> None:
    args = parse_args()
    judge_name = f"{args.model} at {args.endpoint}" if args.endpoint else f"{EMBEDDED_JUDGE} (transformers)"
    print(f"hardware: {hardware_fields()}")
    print(f"settings: prompts={args.prompts} answers_per_prompt={ANSWERS_PER_PROMPT} "
          f"throughput_prompts={args.throughput_prompts} repeats={args.repeats} concurrency={args.concurrency} "
          f"latency_ms={args.latency * 1000:.0f} gold_pairs={args.gold_pairs} seed={args.seed} gold_judge={judge_name} "
          f"rating_spread={args.rating_spread}",
          flush=True)
    server, base_url = start_server(args.latency, "--rating-spread", args.rating_spread)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            costs = part_costs(pool_store(workdir / "pool.duckdb", synthetic_pool(args.prompts, args.seed)),
                               workdir, base_url, args.concurrency)
            print_costs(costs, args.prompts)
            print(f"\n(part 2: {args.repeats} runs of each mode on {args.throughput_prompts} prompts)", flush=True)
            pool = pool_store(workdir / "throughput-pool.duckdb", synthetic_pool(args.throughput_prompts, args.seed))
            throughput = part_throughput(pool, workdir, base_url, args.concurrency, args.repeats)
            print_throughput(throughput, args.concurrency, args.latency)
            gold = []
            if not args.skip_gold:
                print(f"\n(part 3: judging {args.gold_pairs} gold pairs in each mode with {judge_name})", flush=True)
                gold = part_gold(args, workdir)
                print_gold(gold, judge_name)
    finally:
        server.terminate()
        server.wait()
    print_result(costs, throughput, gold, args)


if __name__ == "__main__":
    main()
