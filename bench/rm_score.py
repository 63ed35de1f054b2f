"""Reward scoring: our batched, length-sorted scorer vs a naive per-item forward pass.

Same checkpoint (SmolLM2-135M-Instruct as a one-label classifier, from the embedded GGUF; converted
once under bench/.cache), same 512 (prompt, response) pairs of varied length, same machine, one run.

    python bench/rm_score.py [--items 512] [--batch-size 16]

Ends with: RESULT ratio=<our items/s over the naive loop's> items_per_s=... naive_items_per_s=... max_abs_diff=...
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def items(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = "the model answers each question with care and a few facts about the topic at hand".split()
    prompts = [f"Question {i}: explain topic {i % 37} briefly." for i in range(n)]
    responses = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 160))) for _ in range(n)]
    return prompts, responses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from prefcurate.curation.local_models import resolve_model
    from prefcurate.rm.data import encode
    from prefcurate.rm.score import RewardScorer

    torch.manual_seed(0)
    checkpoint = resolve_model("embedded:smollm2-135m-instruct", ROOT / "bench" / ".cache" / "models")
    prompts, responses = items(args.items)
    # Ours as `prefcurate score` runs it (precision auto: fp32 on CPU), and in bf16 (opt-in) to show
    # what the CPU's bf16 units give and what they cost in agreement with fp32.
    scorer = RewardScorer(checkpoint, "cpu", max_length=512, precision="bf16")
    started = time.perf_counter()
    ours = scorer.score(prompts, responses, batch_size=args.batch_size)
    ours_seconds = time.perf_counter() - started
    fp32 = RewardScorer(checkpoint, "cpu", max_length=512, precision="fp32")
    started = time.perf_counter()
    ours_fp32 = fp32.score(prompts, responses, batch_size=args.batch_size)
    fp32_seconds = time.perf_counter() - started
    scorer = fp32

    # Baseline: one forward pass per item, as a first script would do it.
    encoded = encode(scorer.tokenizer, prompts, responses, 512).ids
    started = time.perf_counter()
    naive = []
    with torch.inference_mode():
        for ids in encoded:
            naive.append(scorer.model(input_ids=torch.tensor([ids])).logits.item())
    naive_seconds = time.perf_counter() - started

    difference = max(abs(a - b) for a, b in zip(ours, naive))
    fp32_difference = max(abs(a - b) for a, b in zip(ours_fp32, naive))
    # Does lower precision change decisions? Order agreement over neighbouring pairs of items.
    same_order = sum((ours[i] > ours[i + 1]) == (naive[i] > naive[i + 1]) for i in range(len(naive) - 1)) / (len(naive) - 1)
    tokens = sum(len(ids) for ids in encoded)
    print(f"ours fp32 (the default on CPU): {args.items} items in {fp32_seconds:.1f} s; ours bf16 (opt-in): "
          f"{ours_seconds:.1f} s; naive per-item fp32: {naive_seconds:.1f} s; {tokens} tokens")
    print(f"RESULT ratio={naive_seconds / fp32_seconds:.2f} items_per_s={args.items / fp32_seconds:.1f} "
          f"naive_items_per_s={args.items / naive_seconds:.1f} max_abs_diff={fp32_difference:.1e} "
          f"ratio_bf16={naive_seconds / ours_seconds:.2f} bf16_max_abs_diff={difference:.3f} "
          f"bf16_neighbour_order_agreement={same_order:.3f} tokens_per_s={tokens / fp32_seconds:.0f} "
          f"batch_size={args.batch_size} items={args.items}")


if __name__ == "__main__":
    main()
