"""Does curation make a better reward model? The experiment a sceptic would ask for, on human labels.

Data: the HH-RLHF harmless pairs shipped in prefcurate/data (real crowdworker preferences, ~30%
natural disagreement), or any JSONL preference file `import-pairs` reads (--data). Everything goes
through the product's own path: `import-pairs` into a store, `prefcurate suspect`, `curate`, export.

1. Split: the data is imported and curated once with a test share (--heldout): prefcurate's own
   prompt-cluster split, so near-duplicate prompts never straddle it. Its test split is the held-out
   set (clean human labels, always); the prompts of its train clusters are the labelled pool.
2. Per seed and condition (clean: the pool as labelled; noisy: a seeded --noise share of the pool's
   labels flipped), a fresh store imports the pool, `suspect` checks its labels, and `curate` with
   `suspect_labels: drop` exports the curated subset.
3. Arms, per seed and condition: (a) the whole pool, (b) the curated subset, (c) a random subset of
   the pool of the curated subset's size (seeded).
4. One fixed recipe per arm: a linear Bradley-Terry head on cached frozen-backbone features (the
   same features `suspect` uses: SmolLM2-135M-Instruct, block 18 of 30, mean + last token, texts cut
   to their last 256 tokens), l2 0.3; or, with --finetune (a GPU's job), the train: recipe.
5. Held-out accuracy per arm, with paired bootstrap 95% intervals for each difference: held-out
   pairs resampled, each pair's result averaged over seeds first.
6. The detector on planted noise: flags against the planted flips (precision, recall, AUROC of
   1 - P(label)), next to a random flagger that flags as many pairs.

    python bench/curation_value.py [--seeds 5] [--noise 0.2] [--heldout 0.3] [--data FILE.jsonl]
                                   [--backbone NAME] [--layer 18] [--max-length 256] [--finetune]

Ends with: RESULT ratio=<held-out accuracy curated / random same size, clean> delta=... delta_ci_low=...
delta_full=... delta_noisy=... delta_noisy_ci_low=... flip_precision=... flip_precision_random=...
flip_recall=... flip_auroc=... seeds=... seconds=... cpu=... gpu=...
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache" / "curation_value"
sys.path.insert(0, str(ROOT))


@dataclass
class HeldOut:
    pair_ids: list[str]
    texts: list  # rm.features.Text for side a, then side b
    a_preferred: np.ndarray  # the clean human label


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def config_for(workdir: Path, args, suspicion_seed: int = 0, **curate):
    """The product's config for one store of the experiment (features shared by every store)."""
    from prefcurate.core.config import config_from_dict

    return config_from_dict({
        "workdir": str(workdir), "store": {"path": str(workdir / "store.duckdb")},
        "models_dir": str(BENCH / ".cache" / "models"),
        "suspicion": {"features": {"backbone": args.backbone, "layer": args.layer, "max_length": args.max_length,
                                   "cache_dir": str(CACHE / "features"), "device": args.device},
                      "seed": suspicion_seed, "max_label_probability": args.max_label_probability},
        "curate": curate,
    })


def split_pool_and_heldout(data: Path, args, tmp: Path) -> tuple[list[int], HeldOut]:
    """prefcurate's cluster split of the whole file: (source rows of the pool, the held-out set)."""
    from prefcurate.pipeline import curate_stage, import_stage, open_store
    from prefcurate.rm.features import Text

    config = config_for(tmp / "split", args, splits={"validation": 0.0, "test": args.heldout}, seed=args.split_seed)
    import_stage(config, str(data))
    run = curate_stage(config)["curation_run_id"]
    with open_store(config) as store:
        pool = [row[0] for row in store.con.execute("""
            SELECT DISTINCT r.source_row FROM reference_labels AS r JOIN pairs AS p USING (pair_id)
            JOIN curation_prompt_clusters AS c ON c.prompt_id = p.prompt_id AND c.curation_run_id = ?
            WHERE c.split = 'train' ORDER BY 1""", [run]).fetchall()]
        rows = store.con.execute("""
            SELECT t.pair_id, t.prompt, t.prompt_messages, t.text_a, t.text_b, r.winner
            FROM curated_pairs AS c JOIN pair_texts AS t USING (pair_id) JOIN reference_labels AS r USING (pair_id)
            WHERE c.curation_run_id = ? AND c.split = 'test' ORDER BY t.pair_id""", [run]).fetchall()
    texts = [Text(r[1], r[3], r[2]) for r in rows] + [Text(r[1], r[4], r[2]) for r in rows]
    return pool, HeldOut([r[0] for r in rows], texts, np.array([r[5] == "a" for r in rows]))


def write_pool(lines: list[str], pool_rows: list[int], flipped: set[int], path: Path) -> None:
    """The pool's rows of the source file, chosen and rejected swapped on the planted flips."""
    with open(path, "w", encoding="utf-8") as out:
        for row in pool_rows:
            record = json.loads(lines[row - 1])
            if row in flipped:
                record["chosen"], record["rejected"] = record["rejected"], record["chosen"]
            out.write(json.dumps(record) + "\n")


def curate_pool(pool_file: Path, workdir: Path, args, seed: int) -> dict:
    """import-pairs, suspect, curate (suspect_labels: drop): the product's path on one pool."""
    from prefcurate.pipeline import curate_stage, import_stage, open_store, suspect_stage

    config = config_for(workdir, args, splits={"validation": 0.0, "test": 0.0}, suspect_labels=args.action,
                        suspicion_seed=seed)
    import_stage(config, str(pool_file))
    suspected = suspect_stage(config)
    run = curate_stage(config)["curation_run_id"]
    with open_store(config) as store:
        pool = store.con.execute("""
            SELECT t.pair_id, t.prompt, t.prompt_messages, t.text_a, t.text_b, r.winner, r.source_row,
                   s.p_label, coalesce(s.flagged, false)
            FROM reference_labels AS r JOIN pair_texts AS t USING (pair_id)
            LEFT JOIN pair_suspicion AS s USING (pair_id) ORDER BY t.pair_id""").fetchall()
        curated = dict(store.con.execute("SELECT c.pair_id, CASE WHEN c.chosen_candidate = p.candidate_a THEN 'a' "
                                         "ELSE 'b' END FROM curated_pairs AS c JOIN pairs AS p USING (pair_id) "
                                         "WHERE c.curation_run_id = ?", [run]).fetchall())
    return {"pool": pool, "curated": curated, "oof_accuracy": suspected.get("oof_accuracy"), "funnel_run": run}


def head_correctness(cache, train_pairs: list[tuple], heldout: HeldOut, l2: float) -> np.ndarray:
    """Fit the fixed recipe (a linear BT head) on (prompt, messages, a, b, a_preferred) rows; 1/0 per held-out pair."""
    from prefcurate.rm.features import Text
    from prefcurate.rm.heads import fit_head

    texts = [Text(p, a, m) for p, m, a, _, _ in train_pairs] + [Text(p, b, m) for p, m, _, b, _ in train_pairs]
    vectors = cache.vectors(texts, "train features")
    differences = vectors[:len(train_pairs)] - vectors[len(train_pairs):]
    head = fit_head(differences, np.array([row[4] for row in train_pairs], dtype=float), l2)
    held = cache.vectors(heldout.texts, "held-out features")
    margins = head.margins(held[:len(heldout.pair_ids)] - held[len(heldout.pair_ids):])
    return ((margins > 0) == heldout.a_preferred).astype(float)


def finetune_correctness(train_pairs: list[tuple], heldout: HeldOut, args, seed: int) -> np.ndarray:
    """The train: recipe on the arm's pairs (full fine-tuning of --backbone; for a GPU)."""
    from transformers import AutoTokenizer

    from prefcurate.core.config import TrainConfig
    from prefcurate.core.local_models import pick_device, resolve_model
    from prefcurate.rm.data import PairData, encode
    from prefcurate.rm.score import RewardScorer
    from prefcurate.rm.train import train_member

    base = resolve_model(args.backbone, BENCH / ".cache" / "models")
    device = pick_device(args.device)
    config = TrainConfig(method="finetune", epochs=1, batch_size=8, learning_rate=1e-5, trainable_layers=None, max_length=args.max_length)
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts, messages = [r[0] for r in train_pairs], [r[1] for r in train_pairs]
    chosen = [r[2] if r[4] else r[3] for r in train_pairs]
    rejected = [r[3] if r[4] else r[2] for r in train_pairs]
    data = PairData(encode(tokenizer, prompts, chosen, config.max_length, messages).ids,
                    encode(tokenizer, prompts, rejected, config.max_length, messages).ids, 0)
    n = len(heldout.pair_ids)
    with tempfile.TemporaryDirectory() as scratch:
        train_member(base, data, config, seed, device, Path(scratch), "arm")
        scorer = RewardScorer(scratch, device, config.max_length)
        side = lambda texts: scorer.score([t.prompt for t in texts], [t.response for t in texts], 16,  # noqa: E731
                                          [t.prompt_messages for t in texts])
        margins = np.array(side(heldout.texts[:n])) - np.array(side(heldout.texts[n:]))
    return ((margins > 0) == heldout.a_preferred).astype(float)


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos = positives.sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(scores) - n_pos)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, help="a JSONL preference file (default: the shipped HH-RLHF pairs)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.2, help="share of the pool's labels flipped (noisy arms)")
    parser.add_argument("--heldout", type=float, default=0.3)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--action", choices=["drop", "flip"], default="drop", help="what curation does with suspects")
    parser.add_argument("--max-label-probability", type=float, default=0.3, help="suspicion.max_label_probability")
    parser.add_argument("--backbone", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--layer", type=int, default=18)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--l2", type=float, default=0.3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--finetune", action="store_true", help="train each arm by full fine-tuning (a GPU's job)")
    args = parser.parse_args()

    import hardware

    from prefcurate.core.local_models import pick_device, resolve_model
    from prefcurate.curation.intake.shipped import hh_harmless_pairs_path
    from prefcurate.rm.features import FeatureCache, FeatureSpec
    from prefcurate.rm.score import scoring_precision
    from prefcurate.rm.stats import bootstrap_mean, paired_difference

    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("prefcurate").setLevel(logging.INFO)
    started = time.perf_counter()
    data = args.data or hh_harmless_pairs_path()
    lines = read_lines(data)
    device = pick_device(args.device)
    spec = FeatureSpec(args.backbone, args.layer, args.max_length, scoring_precision("auto", device))
    cache = FeatureCache(CACHE / "features", spec, resolve_model(args.backbone, BENCH / ".cache" / "models"), device)
    results: dict[tuple[str, str], list[np.ndarray]] = {}
    detector = {"precision": [], "recall": [], "auroc": [], "random_precision": [], "flagged": []}
    sizes: dict[str, list[int]] = {"clean": [], "noisy": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool_rows, heldout = split_pool_and_heldout(data, args, tmp)
        print(f"{data.name}: pool {len(pool_rows)} pairs, held out {len(heldout.pair_ids)} (prompt-cluster split)",
              flush=True)
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, 17])
            planted = {row for row in pool_rows if rng.random() < args.noise}
            for condition, flipped in (("clean", set()), ("noisy", planted)):
                pool_file = tmp / f"pool-{condition}-{seed}.jsonl"
                write_pool(lines, pool_rows, flipped, pool_file)
                outcome = curate_pool(pool_file, tmp / f"{condition}-{seed}", args, seed)
                pool = outcome["pool"]
                rows = [(r[1], r[2], r[3], r[4], r[5] == "a") for r in pool]
                curated = [(r[1], r[2], r[3], r[4], outcome["curated"][r[0]] == "a") for r in pool
                           if r[0] in outcome["curated"]]
                draw = np.random.default_rng([seed, 29]).permutation(len(rows))[:len(curated)]
                random_subset = [rows[i] for i in sorted(draw)]
                sizes[condition].append(len(curated))
                for arm, train in (("full", rows), ("curated", curated), ("random", random_subset)):
                    correct = (finetune_correctness(train, heldout, args, seed) if args.finetune
                               else head_correctness(cache, train, heldout, args.l2))
                    results.setdefault((condition, arm), []).append(correct)
                if condition == "noisy":
                    # source_row counts rows of the pool file; pool_rows maps them back to the data's rows
                    is_flip = np.array([pool_rows[r[6] - 1] in planted for r in pool])
                    flagged = np.array([bool(r[8]) for r in pool])
                    suspicion = np.array([1 - r[7] if r[7] is not None else 0.5 for r in pool])
                    detector["flagged"].append(int(flagged.sum()))
                    detector["precision"].append((flagged & is_flip).sum() / max(flagged.sum(), 1))
                    detector["recall"].append((flagged & is_flip).sum() / max(is_flip.sum(), 1))
                    detector["auroc"].append(auroc(suspicion, is_flip))
                    random_flags = np.zeros(len(pool), bool)
                    random_flags[np.random.default_rng([seed, 31]).permutation(len(pool))[:flagged.sum()]] = True
                    detector["random_precision"].append((random_flags & is_flip).sum() / max(flagged.sum(), 1))
                print(f"seed {seed} {condition}: pool {len(rows)}, curated {len(curated)}, "
                      + ", ".join(f"{arm} {results[(condition, arm)][-1].mean():.3f}" for arm in ("full", "curated", "random"))
                      + (f"; flags {detector['flagged'][-1]}, precision {detector['precision'][-1]:.3f} "
                         f"(random {detector['random_precision'][-1]:.3f}), recall {detector['recall'][-1]:.3f}, "
                         f"AUROC {detector['auroc'][-1]:.3f}" if condition == "noisy" else ""), flush=True)

    matrix = {key: np.stack(values, axis=1) for key, values in results.items()}  # (held-out pairs, seeds)
    print(f"\nheld-out accuracy ({len(heldout.pair_ids)} pairs, {args.seeds} seeds; 95% intervals: paired bootstrap over "
          "held-out pairs, each pair's result averaged over seeds first):")
    for condition in ("clean", "noisy"):
        for arm in ("full", "curated", "random"):
            print(f"  {condition:5} {arm:7} {bootstrap_mean(matrix[(condition, arm)])}")
    delta = paired_difference(matrix[("clean", "curated")], matrix[("clean", "random")])
    delta_full = paired_difference(matrix[("clean", "curated")], matrix[("clean", "full")])
    delta_noisy = paired_difference(matrix[("noisy", "curated")], matrix[("noisy", "random")])
    delta_noisy_full = paired_difference(matrix[("noisy", "curated")], matrix[("noisy", "full")])
    for name, interval in (("clean curated - random", delta), ("clean curated - full", delta_full),
                           ("noisy curated - random", delta_noisy), ("noisy curated - full", delta_noisy_full)):
        print(f"  {name:24} {interval}")
    mean = {key: float(np.mean(value)) for key, value in detector.items()}
    print(f"detector on {args.noise:.0%} planted flips: {mean['flagged']:.0f} flagged a seed, precision "
          f"{mean['precision']:.3f} (random flagger {mean['random_precision']:.3f}), recall {mean['recall']:.3f}, "
          f"AUROC {mean['auroc']:.3f}; curated sizes clean {np.mean(sizes['clean']):.0f}, noisy {np.mean(sizes['noisy']):.0f} "
          f"of {len(pool_rows)}")
    accuracy = {key: float(value.mean()) for key, value in matrix.items()}
    seconds = time.perf_counter() - started
    recipe = "finetune" if args.finetune else f"head:l2={args.l2}"
    print(f"RESULT ratio={accuracy[('clean', 'curated')] / accuracy[('clean', 'random')]:.3f} "
          f"delta={delta.estimate:.4f} delta_ci_low={delta.low:.4f} delta_ci_high={delta.high:.4f} "
          f"delta_full={delta_full.estimate:.4f} delta_full_ci_low={delta_full.low:.4f} "
          f"delta_noisy={delta_noisy.estimate:.4f} delta_noisy_ci_low={delta_noisy.low:.4f} "
          f"delta_noisy_ci_high={delta_noisy.high:.4f} delta_noisy_full={delta_noisy_full.estimate:.4f} "
          f"delta_noisy_full_ci_low={delta_noisy_full.low:.4f} "
          + " ".join(f"acc_{c}_{a}={accuracy[(c, a)]:.4f}" for c in ("clean", "noisy") for a in ("full", "curated", "random"))
          + f" flip_precision={mean['precision']:.3f} flip_precision_random={mean['random_precision']:.3f} "
          f"flip_recall={mean['recall']:.3f} flip_auroc={mean['auroc']:.3f} noise={args.noise} action={args.action} "
          f"max_label_probability={args.max_label_probability} "
          f"heldout_pairs={len(heldout.pair_ids)} pool_pairs={len(pool_rows)} seeds={args.seeds} recipe={recipe} "
          f"backbone={args.backbone} layer={args.layer} max_length={args.max_length} "
          f"features_computed={cache.computed} seconds={seconds:.0f} {hardware.hardware_fields()}")


if __name__ == "__main__":
    main()
