"""Reward-model training: our trainer vs TRL's RewardTrainer, same backbone, data and machine.

Backbone: SmolLM2-135M-Instruct (from the embedded GGUF, converted once under bench/.cache) or, with
--shape, a shape built from its config with random weights (bench/shapes.py: smollm2-135m, 1b,
tiny; what a GPU machine gets, since no weights travel there). Full fine-tune on both sides, same
settings: the precision `auto` picks on the device (bf16 mixed precision where bf16 is native, else
fp32; --precision to force one), no gradient checkpointing, same learning rate, same
variable-length pairs in chat format, same batch size, one epoch. Each trainer runs in its own
process (TRL from this Python where it is importable, else on CPU in its own virtual environment,
bench/.venvs/trl, created on first use) and reports non-pad tokens per second over its training
loop (compilation included, from a cold inductor cache) and its peak memory (GPU: allocated;
CPU: RSS). Ours also reports its steady tokens/s (after the first quarter of the batches) and, on a
GPU, MFU: training FLOPs per token (bench/shapes.py) x tokens/s over the bf16 matmul rate measured
here and over the card's data-sheet peak.

    python bench/rm_train.py [--device auto|cpu|cuda] [--shape embedded|smollm2-135m|1b|tiny]
                             [--pairs 256] [--batch-size 8] [--precision auto|bf16|fp32] [--no-trl]

Ends with: RESULT ratio=<our non-pad tokens/s over TRL's> tokens_per_s=... trl_tokens_per_s=... ... cpu=... gpu=...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from memory import PEAK_RSS_SOURCE, peak_rss_gb  # bench/memory.py: a process's own peak, not its parent's

ROOT = Path(__file__).resolve().parent.parent
TRL_VENV = ROOT / "bench" / ".venvs" / "trl"
CACHE = ROOT / "bench" / ".cache"
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


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2 ** 30
    return peak_rss_gb()


def run_ours(data: Path, base: str, batch_size: int, out: Path, precision: str, device: str) -> dict:
    import datasets

    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.data import encode_pairs
    from prefcurate.rm.model import load_tokenizer
    from prefcurate.rm.train import train_member

    config = TrainConfig(method="finetune", epochs=1, batch_size=batch_size, trainable_layers=None, max_length=512, learning_rate=1e-5,
                         precision=precision)
    rows = datasets.load_dataset("parquet", data_files=str(data))["train"]
    pairs = encode_pairs(load_tokenizer(base), rows, 512)
    metrics = train_member(base, pairs, config, 0, device, out, "ours")
    return {"tokens_per_second": metrics["tokens_per_second"], "steady_tokens_per_second":
            metrics["steady_tokens_per_second"], "seconds": metrics["seconds"], "tokens": metrics["tokens"],
            "sequences": 2 * len(pairs), "packed": metrics["packed"], "compiled": metrics["compiled"],
            "attention": metrics["attention"], "precision": metrics["precision"],
            "peak_memory_gb": peak_memory_gb(device)}


TRL_SCRIPT = r'''
import json, resource, sys, time
import datasets, torch
from trl import RewardConfig, RewardTrainer
data, base, batch_size, out, precision, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rows = datasets.load_dataset("parquet", data_files=data)["train"]
conversational = rows.map(lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}],
                                     "chosen": [{"role": "assistant", "content": r["chosen"]}],
                                     "rejected": [{"role": "assistant", "content": r["rejected"]}]})
args = RewardConfig(output_dir=out, per_device_train_batch_size=batch_size, num_train_epochs=1, max_length=512,
                    learning_rate=1e-5, report_to="none", save_strategy="no", logging_strategy="no",
                    use_cpu=device == "cpu", disable_tqdm=True, seed=0, bf16=precision == "bf16",
                    gradient_checkpointing=False)
trainer = RewardTrainer(model=base, args=args, train_dataset=conversational)
trainer.model.config.pad_token_id = trainer.processing_class.pad_token_id
started = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - started
peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else peak_rss_gb()
print(json.dumps({"tokens_per_second": trainer._total_train_tokens / seconds, "seconds": seconds, "peak_memory_gb": peak}))
'''


def trl_python(device: str) -> tuple[str | None, str]:
    """The Python to run TRL with, and why (or why not)."""
    try:
        import trl  # noqa: F401  (a GPU machine gets it as a wheel from bench/gpu_check.sh)
        return sys.executable, "trl importable here"
    except ImportError:
        pass
    if device != "cpu":
        return None, "trl is not importable here and no venv can be built on this device (no network)"
    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "trl==1.16.0"], check=True)
    return str(python), f"trl from {TRL_VENV}"


def child(command: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def base_model(shape: str, device: str) -> str:
    if shape == "embedded":
        from prefcurate.core.local_models import resolve_model

        return resolve_model("embedded:smollm2-135m-instruct", CACHE / "models")
    import shapes

    return str(shapes.build_checkpoint(shape, shapes.tokenizer_dir(CACHE), CACHE / "shapes" / shape, device))


def utilization(base: str, ours: dict, device: str) -> dict:
    """MFU of our steady (else whole-run) tokens/s, over the measured and the nominal bf16 peaks."""
    import hardware
    import shapes

    flops_per_token, non_embedding = shapes.training_flops_per_token(Path(base), ours["tokens"] / ours["sequences"])
    rate = ours["steady_tokens_per_second"] or ours["tokens_per_second"]
    measured = hardware.measured_matmul_tflops(device)
    nominal = hardware.nominal_bf16_tflops(hardware.gpu_name())
    achieved = flops_per_token * rate / 1e12
    return {"non_embedding_parameters": non_embedding, "achieved_tflops": achieved, "peak_measured_tflops": measured,
            "mfu_measured": achieved / measured, "peak_nominal_tflops": nominal,
            "mfu_nominal": achieved / nominal if nominal else None}


def main() -> None:
    import hardware

    parser = argparse.ArgumentParser()
    # Length grouping sorts within mega-batches of up to 50 batches (at least 4 of them): it needs a
    # few hundred pairs to show.
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", default="embedded", choices=["embedded", "smollm2-135m", "1b", "tiny"])
    parser.add_argument("--no-trl", action="store_true", help="measure ours only")
    parser.add_argument("--ours", nargs=3, metavar=("DATA", "BASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = hardware.default_device() if args.device == "auto" else args.device
    precision = hardware.auto_precision(device) if args.precision == "auto" else args.precision
    if args.ours:
        data, base, out = args.ours
        print(json.dumps(run_ours(Path(data), base, args.batch_size, Path(out), precision, device)))
        return

    base = base_model(args.shape, device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_pairs(tmp / "pairs.parquet", args.pairs)
        # A fresh inductor cache: the compile time of a first run on a machine is counted in full.
        ours = child([sys.executable, __file__, "--batch-size", str(args.batch_size), "--precision", precision,
                      "--device", device, "--ours", str(tmp / "pairs.parquet"), base, str(tmp / "ours")],
                     env={"TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor")})
        print(f"ours: {ours['tokens_per_second']:.0f} non-pad tokens/s ({ours['steady_tokens_per_second']} steady), "
              f"{ours['seconds']:.1f} s, peak memory {ours['peak_memory_gb']:.2f} GB", flush=True)
        python, why = (None, "--no-trl") if args.no_trl else trl_python(device)
        trl = None
        if python:
            (tmp / "trl_bench.py").write_text(PEAK_RSS_SOURCE + TRL_SCRIPT)
            trl = child([python, str(tmp / "trl_bench.py"), str(tmp / "pairs.parquet"), base, str(args.batch_size),
                         str(tmp / "trl"), precision, device])
            print(f"TRL RewardTrainer: {trl['tokens_per_second']:.0f} non-pad tokens/s, {trl['seconds']:.1f} s, "
                  f"peak memory {trl['peak_memory_gb']:.2f} GB", flush=True)
        else:
            print(f"TRL RewardTrainer: not run ({why})", flush=True)
    mfu = utilization(base, ours, device) if device.startswith("cuda") else {}
    if mfu:
        print(f"MFU: {mfu['achieved_tflops']:.1f} TFLOP/s of model FLOPs = {mfu['mfu_measured']:.1%} of the measured "
              f"bf16 matmul rate ({mfu['peak_measured_tflops']:.0f}), "
              + (f"{mfu['mfu_nominal']:.1%} of the nominal {mfu['peak_nominal_tflops']:.0f}" if mfu["mfu_nominal"]
                 else "no nominal peak known for this card"), flush=True)
    ratio = f"{ours['tokens_per_second'] / trl['tokens_per_second']:.2f}" if trl else "nan"
    trl_fields = (f"trl_tokens_per_s={trl['tokens_per_second']:.0f} trl_seconds={trl['seconds']:.1f} "
                  f"trl_peak_memory_gb={trl['peak_memory_gb']:.2f}") if trl else "trl=not_run"
    mfu_fields = (f"mfu_measured={mfu['mfu_measured']:.3f} mfu_nominal={mfu['mfu_nominal'] or float('nan'):.3f} "
                  f"peak_measured_tflops={mfu['peak_measured_tflops']:.0f} "
                  f"non_embedding_parameters={mfu['non_embedding_parameters']} ") if mfu else ""
    print(f"RESULT ratio={ratio} tokens_per_s={ours['tokens_per_second']:.0f} "
          f"steady_tokens_per_s={ours['steady_tokens_per_second'] or float('nan'):.0f} {trl_fields} "
          f"seconds={ours['seconds']:.1f} peak_memory_gb={ours['peak_memory_gb']:.2f} {mfu_fields}"
          f"pairs={args.pairs} batch_size={args.batch_size} shape={args.shape} precision={ours['precision']} "
          f"attention={ours['attention']} packed={ours['packed']} compiled={ours['compiled']} device={device} "
          f"{hardware.hardware_fields()}")


if __name__ == "__main__":
    main()
