"""Bradley-Terry training on transformers' Trainer.

The Trainer brings bf16, gradient checkpointing and accumulation, and the accelerate plumbing for
DDP/FSDP under `torchrun` / `accelerate launch` (rm/distributed.py keeps the store to rank 0). What
is ours: the pair collator (chosen and rejected in one forward pass, padded or packed), the loss
(margin, centering), and counting real tokens.
"""

from __future__ import annotations

import math
import time

from transformers import Trainer, TrainerCallback

from prefcurate.core.progress import Progress
from prefcurate.rm.loss import bradley_terry_loss
from prefcurate.rm.model import batch_rewards


class BradleyTerryTrainer(Trainer):
    def __init__(self, *args, margin_scale: float = 1.0, center_coefficient: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.margin_scale = margin_scale
        self.center_coefficient = center_coefficient
        self.tokens_seen = 0  # non-pad tokens through the model, for tokens/s
        self.losses: list[float] = []
        self.token_clock: list[tuple[float, int]] = []  # (time, tokens_seen) after each training batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        margin = inputs.pop("margin")
        real_tokens = inputs.pop("real_tokens")
        rewards = batch_rewards(model, inputs).float()
        pairs = margin.shape[0]
        loss = bradley_terry_loss(rewards[:pairs], rewards[pairs:], self.margin_scale * margin,
                                  self.center_coefficient)
        if model.training:
            self.tokens_seen += int(real_tokens)
            self.losses.append(loss.item())  # waits for the device: the clock below reads finished work
            self.token_clock.append((time.perf_counter(), self.tokens_seen))
        return (loss, {"rewards": rewards}) if return_outputs else loss


class ProgressCallback(TrainerCallback):
    """Our progress line (a bar on a terminal, log lines otherwise) instead of the Trainer's tqdm."""

    def __init__(self, label: str = "train"):
        self.label = label
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(self.label, state.max_steps or 0).__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update()

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.__exit__(None, None, None)


def steady_tokens_per_second(token_clock: list[tuple[float, int]], warmup_share: float = 0.25) -> float | None:
    """Tokens/s once warmed up: over the batches after the first quarter (at least two), which
    carry compilation, autotuning and allocator growth. None with too few batches to tell."""
    start = max(2, int(len(token_clock) * warmup_share))
    if len(token_clock) - start < 2:
        return None
    (t0, n0), (t1, n1) = token_clock[start - 1], token_clock[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def mean_last_epoch(losses: list[float], steps_per_epoch: int) -> float:
    tail = losses[-max(1, steps_per_epoch):]
    return sum(tail) / len(tail) if tail else math.nan
