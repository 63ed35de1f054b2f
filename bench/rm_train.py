"""Reward-model training: our trainer vs TRL's RewardTrainer, same backbone, data and machine.

Backbone: SmolLM2-135M-Instruct (from the embedded GGUF, converted once under bench/.cache), full
fine-tune on both sides, same settings: bf16 mixed precision (TRL's default; `--precision fp32` for
both in fp32), no gradient checkpointing, same learning rate, same variable-length pairs in chat
format, same batch size, one epoch. Each trainer runs in its own
process (TRL in its own virtual environment, bench/.venvs/trl, created on first use) and reports
non-pad tokens per second over its training loop and its own peak RSS.

    python bench/rm_train.py [--pairs 256] [--batch-size 8] [--precision bf16|fp32]

Ends with: RESULT ratio=<our non-pad tokens/s over TRL's> tokens_per_s=... trl_tokens_per_s=... peak_rss_gb=...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRL_VENV = ROOT / "bench" / ".venvs" / "trl"
sys.path.insert(0, str(ROOT))


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    """Variable-length pairs: answers of 5 to 200 words, the longer-and-kinder one chosen."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    words = "a careful answer explains the idea gives an example and checks the result for the reader".split()
    rows = []
    for i in range(n):
        good = " ".join(rng.choice(words) for _ in range(rng.randint(20, 200)))
        bad = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60)))
        rows.append({"prompt": f"Question {i}: how does topic {i % 23} work?", "chosen": good, "rejected": bad})
    pq.write_table(pa.Table.from_pylist(rows), path)


def run_ours(data: Path, base: str, batch_size: int, out: Path, precision: str) -> dict:
    import datasets

    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.data import encode_pairs
    from prefcurate.rm.model import load_tokenizer
    from prefcurate.rm.train import train_member

    config = TrainConfig(epochs=1, batch_size=batch_size, trainable_layers=None, max_length=512, learning_rate=1e-5,
                         precision=precision)
    pairs = encode_pairs(load_tokenizer(base), datasets.load_dataset("parquet", data_files=str(data))["train"], 512)
    metrics = train_member(base, pairs, config, 0, "cpu", out, "ours")
    return {"tokens_per_second": metrics["tokens_per_second"], "seconds": metrics["seconds"],
            "packed": metrics["packed"], "compiled": metrics["compiled"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


TRL_SCRIPT = r'''
import json, resource, sys, time
import datasets, torch
from trl import RewardConfig, RewardTrainer
data, base, batch_size, out, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = datasets.load_dataset("parquet", data_files=data)["train"]
conversational = rows.map(lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}],
                                     "chosen": [{"role": "assistant", "content": r["chosen"]}],
                                     "rejected": [{"role": "assistant", "content": r["rejected"]}]})
args = RewardConfig(output_dir=out, per_device_train_batch_size=batch_size, num_train_epochs=1, max_length=512,
                    learning_rate=1e-5, report_to="none", save_strategy="no", logging_strategy="no",
                    use_cpu=True, disable_tqdm=True, seed=0, bf16=precision == "bf16", gradient_checkpointing=False)
trainer = RewardTrainer(model=base, args=args, train_dataset=conversational)
trainer.model.config.pad_token_id = trainer.processing_class.pad_token_id
started = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - started
print(json.dumps({"tokens_per_second": trainer._total_train_tokens / seconds, "seconds": seconds,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}))
'''


def ensure_trl() -> Path:
    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "trl==1.16.0"], check=True)
    return python


def child(command: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    # Length grouping sorts within mega-batches of up to 50 batches (at least 4 of them): it needs a
    # few hundred pairs to show.
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--ours", nargs=3, metavar=("DATA", "BASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        data, base, out = args.ours
        print(json.dumps(run_ours(Path(data), base, args.batch_size, Path(out), args.precision)))
        return

    from prefcurate.core.local_models import resolve_model

    base = resolve_model("embedded:smollm2-135m-instruct", ROOT / "bench" / ".cache" / "models")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_pairs(tmp / "pairs.parquet", args.pairs)
        # A fresh inductor cache: the compile time of a first run on a machine is counted in full.
        ours = child([sys.executable, __file__, "--batch-size", str(args.batch_size), "--precision", args.precision, "--ours",
                      str(tmp / "pairs.parquet"), base, str(tmp / "ours")], env={"TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor")})
        print(f"ours: {ours['tokens_per_second']:.0f} non-pad tokens/s, {ours['seconds']:.1f} s, "
              f"peak RSS {ours['peak_rss_gb']:.2f} GB", flush=True)
        (tmp / "trl_bench.py").write_text(TRL_SCRIPT)
        trl = child([str(ensure_trl()), str(tmp / "trl_bench.py"), str(tmp / "pairs.parquet"), base,
                     str(args.batch_size), str(tmp / "trl"), args.precision])
        print(f"TRL RewardTrainer: {trl['tokens_per_second']:.0f} non-pad tokens/s, {trl['seconds']:.1f} s, "
              f"peak RSS {trl['peak_rss_gb']:.2f} GB", flush=True)
    print(f"RESULT ratio={ours['tokens_per_second'] / trl['tokens_per_second']:.2f} "
          f"tokens_per_s={ours['tokens_per_second']:.0f} trl_tokens_per_s={trl['tokens_per_second']:.0f} "
          f"seconds={ours['seconds']:.1f} trl_seconds={trl['seconds']:.1f} peak_rss_gb={ours['peak_rss_gb']:.2f} "
          f"trl_peak_rss_gb={trl['peak_rss_gb']:.2f} pairs={args.pairs} batch_size={args.batch_size} "
          f"precision={args.precision} packed={ours['packed']} compiled={ours['compiled']} device=cpu")


if __name__ == "__main__":
    main()
