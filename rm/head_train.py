"""A reward model as a linear Bradley-Terry head on a frozen backbone (train.method: head).

The backbone is cut after block `train.head.layer`; every sequence of the train split goes through
it once (forward only, no gradients), and a linear head is fitted on the differences of the chosen
and rejected sequences' last-token states (after the model's final norm) by L-BFGS (rm/heads.py).
The head becomes the score layer of an ordinary sequence-classification checkpoint of the cut
backbone, so `AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)` scores with
exactly the fitted head, on fewer layers.

Why: on two CPU cores fine-tuning a 135M model on a few hundred pairs takes minutes and, on
human-labelled HH-RLHF pairs, barely beats chance; the middle-upper blocks of a frozen backbone
with a fitted head score ~0.62-0.66 (bench/README.md) after one forward pass. On a GPU, fine-tune.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from prefcurate.core.config import TrainConfig
from prefcurate.core.progress import Progress
from prefcurate.rm.data import PairData, pad_batch
from prefcurate.rm.heads import fit_head
from prefcurate.rm.model import cut_blocks, load_reward_model


def last_token_states(model, sequences: list[list[int]], pad_id: int, device: str, batch_size: int,
                      bf16: bool, label: str) -> np.ndarray:
    """The backbone's final (normed) state at each sequence's last token: what the score layer reads."""
    states = np.zeros((len(sequences), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
    with Progress(label, len(sequences)) as progress, torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            ids, mask = pad_batch([sequences[i] for i in batch], pad_id)
            hidden = model.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            last = hidden[torch.arange(len(batch), device=hidden.device), mask.sum(1).to(hidden.device) - 1]
            states[batch] = last.float().cpu().numpy()
            progress.update(len(batch))
    return states


def train_head_member(base_model_path: str, pairs: PairData, config: TrainConfig, seed: int, device: str,
                      out_dir: Path, label: str, precision: str, save: bool = True) -> dict:
    started = time.perf_counter()
    model, tokenizer = load_reward_model(base_model_path, device, new_head=True)
    cut_blocks(model, config.head.layer, "train.head.layer")
    model.eval()
    sequences = pairs.chosen + pairs.rejected
    states = last_token_states(model, sequences, tokenizer.pad_token_id, device, config.batch_size * 4,
                               precision == "bf16", f"{label}: features")
    differences = states[:len(pairs)] - states[len(pairs):]
    # Half the pairs turned around (seeded): both outcomes appear, as the antisymmetric head expects.
    turn = np.random.default_rng(seed).random(len(pairs)) < 0.5
    head = fit_head(np.where(turn[:, None], -differences, differences), (~turn).astype(float), config.head.l2)
    margins = head.margins(differences)
    with torch.no_grad():
        weight = torch.tensor(head.weights / head.scale, dtype=model.score.weight.dtype).reshape(model.score.weight.shape)
        model.score.weight.copy_(weight)
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    seconds = time.perf_counter() - started
    tokens = sum(len(sequence) for sequence in sequences)
    loss = float(np.mean(np.logaddexp(0.0, -margins))) if len(margins) else math.nan
    return {"seed": seed, "pairs": len(pairs), "steps": 1, "method": "head", "layer": config.head.layer,
            "final_loss": loss, "mean_loss_last_epoch": loss, "train_accuracy": float((margins > 0).mean()),
            "trainable_parameters": int(model.score.weight.numel()), "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1) if seconds else None, "steady_tokens_per_second": None,
            "tokens": tokens, "attention": "sdpa", "precision": precision, "packed": False, "compiled": False,
            "peak_gpu_memory_gb": None}
