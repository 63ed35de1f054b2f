"""Reward scoring: our batched, length-sorted scorer vs a naive per-item forward pass.

Same checkpoint (SmolLM2-135M-Instruct as a one-label classifier, from the embedded GGUF; converted
once under bench/.cache; a --shape from bench/shapes.py with random weights, as on a GPU machine; or
--checkpoint), same (prompt, response) pairs of varied length, same device, one run. Ours runs as `prefcurate score` does (precision and compile auto, compile time
counted from a cold inductor cache); what its precision costs
is measured against the fp32 baseline: the largest reward difference, and the share of all item
pairs ordered alike. An untrained head's rewards spread little (see reward_std), so the same
difference reorders more pairs than on a trained model.

    python bench/rm_score.py [--items 2048] [--batch-size 16] [--compile auto|on|off] [--device auto|cpu|cuda]
                             [--shape embedded|smollm2-135m|1b|tiny] [--checkpoint DIR]

Ends with: RESULT ratio=<our items/s over the naive loop's> precision=... max_abs_diff=... order_agreement=... cpu=... gpu=...
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# A fresh inductor cache: the compile time of a first run on a machine is counted in full.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="rm_score_inductor_"))

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
sys.path.insert(0, str(ROOT))


def items(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = "the model answers each question with care and a few facts about the topic at hand".split()
    prompts = [f"Question {i}: explain topic {i % 37} briefly." for i in range(n)]
    responses = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 160))) for _ in range(n)]
    return prompts, responses


def main() -> None:
    parser = argparse.ArgumentParser()
    # A store's candidates run to thousands; at 512 items compiling does not pay and auto skips it.
    parser.add_argument("--items", type=int, default=2048)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--checkpoint", help="a trained reward model (default: the embedded SmolLM2 with an untrained head)")
    parser.add_argument("--shape", default="embedded", choices=["embedded", "smollm2-135m", "1b", "tiny"])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import hardware
    import shapes

    from prefcurate.core.local_models import resolve_model
    from prefcurate.rm.data import encode
    from prefcurate.rm.score import RewardScorer

    device = hardware.default_device() if args.device == "auto" else args.device
    if args.checkpoint:
        checkpoint = args.checkpoint
    elif args.shape == "embedded":
        checkpoint = resolve_model("embedded:smollm2-135m-instruct", CACHE / "models")
    else:
        checkpoint = str(shapes.build_checkpoint(args.shape, shapes.tokenizer_dir(CACHE), CACHE / "shapes" / args.shape,
                                                 device))
    prompts, responses = items(args.items)

    def timed(precision: str) -> tuple[RewardScorer, list[float], float]:
        torch.manual_seed(0)  # the embedded checkpoint has no score head: the same random one each time
        scorer = RewardScorer(checkpoint, device, max_length=512, precision=precision, compile=args.compile)
        started = time.perf_counter()  # compiling, if it happens, is inside the timing
        rewards = scorer.score(prompts, responses, batch_size=args.batch_size)  # floats: the device has finished
        return scorer, rewards, time.perf_counter() - started

    # Ours as `prefcurate score` runs it (precision auto: bf16 mixed precision on a GPU or where the
    # CPU has AMX or AVX512-BF16, else fp32), then in fp32 for comparison.
    ours, ours_rewards, ours_seconds = timed("auto")
    fp32, fp32_rewards, fp32_seconds = timed("fp32")

    # Baseline: one fp32 forward pass per item, as a first script would do it.
    encoded = encode(fp32.tokenizer, prompts, responses, 512).ids
    started = time.perf_counter()
    naive = []
    with torch.inference_mode():
        for ids in encoded:
            naive.append(fp32.model(input_ids=torch.tensor([ids], device=device)).logits.item())
    naive_seconds = time.perf_counter() - started

    def order_agreement(rewards: list[float]) -> float:
        """Share of all item pairs that the rewards order as the fp32 naive ones do."""
        n = len(naive)
        same = sum((naive[i] > naive[j]) == (rewards[i] > rewards[j]) for i in range(n) for j in range(i + 1, n))
        return same / (n * (n - 1) / 2)

    def max_diff(rewards: list[float]) -> float:
        return max(abs(a - b) for a, b in zip(rewards, naive))

    tokens = sum(len(ids) for ids in encoded)
    print(f"{args.items} items, {tokens} tokens: ours ({ours.precision}, compiled={ours.compiled}) {ours_seconds:.1f} s, fp32 {fp32_seconds:.1f} s; "
          f"naive per-item fp32 {naive_seconds:.1f} s; "
          f"fp32 reward std {statistics.pstdev(naive):.3f}")
    print(f"RESULT ratio={naive_seconds / ours_seconds:.2f} precision={ours.precision} "
          f"items_per_s={args.items / ours_seconds:.1f} naive_items_per_s={args.items / naive_seconds:.1f} "
          f"max_abs_diff={max_diff(ours_rewards):.3f} order_agreement={order_agreement(ours_rewards):.4f} "
          f"reward_std={statistics.pstdev(naive):.3f} ratio_fp32={naive_seconds / fp32_seconds:.2f} "
          f"fp32_max_abs_diff={max_diff(fp32_rewards):.1e} tokens_per_s={tokens / ours_seconds:.0f} "
          f"compiled={ours.compiled} batch_size={args.batch_size} items={args.items} shape={args.shape} "
          f"device={device} {hardware.hardware_fields()}")

if __name__ == "__main__":
    main()
