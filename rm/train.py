"""Train a Bradley-Terry reward model on a curated export. Read it top to bottom.

The run is keyed by the hash of its curated data and config: training the same data with the
same config again finds the finished checkpoint and returns it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prefcurate.config import TrainConfig
from prefcurate.curation.hashing import content_hash
from prefcurate.curation.progress import Progress
from prefcurate.curation.store import StageReport, Store
from prefcurate.rm.data import encode_pairs, load_splits, pad_batch
from prefcurate.rm.loss import bradley_terry_loss
from prefcurate.rm.model import freeze_lower_layers, load_reward_model
from prefcurate.rm.score import score_sequences

log = logging.getLogger(__name__)
STAGE = "train"


@dataclass
class TrainResult:
    rm_run_id: str
    checkpoint_dir: Path
    metrics: dict
    reused: bool


def rm_run_id(curated_dir: Path, config: TrainConfig, base_model_path: str) -> str:
    manifest = json.loads((Path(curated_dir) / "manifest.json").read_text())
    data_hashes = {split: entry["sha256"] for split, entry in manifest["files"].items()}
    return content_hash("rm", data_hashes, config.model_dump(mode="json"), base_model_path)


def train_reward_model(store: Store, curation_run_id: str, curated_dir: Path, base_model_path: str,
                       config: TrainConfig, output_root: Path, device: str) -> tuple[TrainResult, StageReport]:
    run_id = rm_run_id(curated_dir, config, base_model_path)
    checkpoint_dir = Path(output_root) / run_id[:16]
    report = StageReport(STAGE, details={"rm_run_id": run_id, "checkpoint": str(checkpoint_dir), "device": device})

    stored = store.one("SELECT train_metrics FROM rm_runs WHERE rm_run_id = ?", [run_id])
    if stored and (checkpoint_dir / "config.json").is_file():
        metrics = json.loads(stored[0])
        report.count_in = report.count_out = metrics["train_pairs"]
        report.details.update(reused=True)
        return TrainResult(run_id, checkpoint_dir, metrics, reused=True), report.finish()

    # -- data ------------------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    splits = load_splits(curated_dir)
    model, tokenizer = load_reward_model(base_model_path, device)
    train = encode_pairs(tokenizer, splits["train"], config.max_length)
    validation = encode_pairs(tokenizer, splits["validation"], config.max_length) if "validation" in splits else None
    report.count_in = len(train)
    if len(train) == 0:
        raise ValueError(f"{curated_dir}/train.parquet has no pairs: nothing to train on "
                         "(see the curation funnel: `SELECT * FROM curation_run_funnel`)")

    # -- model and optimizer ------------------------------------------------------------------------
    trainable = freeze_lower_layers(model, config.trainable_layers)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_ratio * total_steps))

    def lr_factor(step: int) -> float:  # linear warmup, then linear decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    pad_id = tokenizer.pad_token_id

    # -- loop ----------------------------------------------------------------------------------------
    model.train()
    history = []
    validation_accuracy = None
    started = time.perf_counter()
    tokens_seen = 0
    order = list(range(len(train)))
    with Progress("train", total_steps) as progress:
        for epoch in range(config.epochs):
            random.Random(config.seed + epoch).shuffle(order)
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                # chosen and rejected of a batch go through the model in one forward pass
                sequences = [train.chosen[i] for i in index] + [train.rejected[i] for i in index]
                ids, mask = pad_batch(sequences, pad_id)
                rewards = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.squeeze(-1)
                chosen, rejected = rewards[:len(index)], rewards[len(index):]
                loss = bradley_terry_loss(chosen.float(), rejected.float())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens_seen += int(mask.sum())
                history.append(loss.item())
                progress.update()
            if validation is not None and len(validation):
                validation_accuracy = held_out_accuracy(model, validation, pad_id, config.batch_size, device)
                log.info("epoch %d: train loss %.4f, validation accuracy %.3f", epoch + 1,
                         sum(history[-steps_per_epoch:]) / steps_per_epoch, validation_accuracy)
    seconds = time.perf_counter() - started

    # -- save (HF layout: from_pretrained(checkpoint, num_labels=1) loads it) ---------------------
    metrics = {
        "train_pairs": len(train), "validation_pairs": len(validation) if validation else 0,
        "truncated_sequences": train.truncated + (validation.truncated if validation else 0),
        "epochs": config.epochs, "steps": total_steps, "final_loss": history[-1],
        "mean_loss_last_epoch": sum(history[-steps_per_epoch:]) / steps_per_epoch,
        "validation_accuracy": validation_accuracy,
        "trainable_parameters": trainable, "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens_seen / seconds, 1) if seconds else None, "device": device,
    }
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(checkpoint_dir)
    tokenizer.save_pretrained(checkpoint_dir)
    (checkpoint_dir / "training_config.json").write_text(json.dumps({
        "rm_run_id": run_id, "curation_run_id": curation_run_id, "curated_dir": str(curated_dir),
        "base_model": base_model_path, "config": config.model_dump(mode="json")}, indent=2) + "\n")
    (checkpoint_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    store.con.execute(
        "INSERT OR REPLACE INTO rm_runs (rm_run_id, curation_run_id, base_model, checkpoint_dir, config, status,"
        " train_metrics) VALUES (?, ?, ?, ?, ?, 'trained', ?)",
        [run_id, curation_run_id, base_model_path, str(checkpoint_dir), json.dumps(config.model_dump(mode="json")),
         json.dumps(metrics)])
    report.count_out = len(train)
    report.details.update(reused=False, final_loss=round(metrics["final_loss"], 4),
                          validation_accuracy=metrics["validation_accuracy"],
                          truncated=metrics["truncated_sequences"])
    return TrainResult(run_id, checkpoint_dir, metrics, reused=False), report.finish()


def held_out_accuracy(model, pairs, pad_id: int, batch_size: int, device: str) -> float:
    chosen = score_sequences(model, pairs.chosen, pad_id, batch_size, device)
    rejected = score_sequences(model, pairs.rejected, pad_id, batch_size, device)
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
