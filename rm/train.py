"""Train a Bradley-Terry reward model (or an ensemble of them) on a curated export.

Read top to bottom: key the run, load the pairs, then per ensemble member: pick its data (all, or
a bootstrap resample) and seed, build the model (top layers or LoRA), train with the Trainer,
save an HF checkpoint. The run is keyed by the hash of its curated data and config: training the
same data with the same config again finds the finished checkpoint and returns it.

Layout: one member is a plain HF folder (`from_pretrained(path, num_labels=1)`); an ensemble is a
folder with `ensemble.json` and one HF folder per member under `members/`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments, set_seed

from prefcurate.core.config import TrainConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.local_models import model_fingerprint
from prefcurate.rm import distributed
from prefcurate.rm.data import PairCollator, PairData, encode_pairs, load_splits, pair_features
from prefcurate.rm.head_train import train_head_member
from prefcurate.rm.model import (
    ENSEMBLE_FILE,
    add_lora,
    can_pack,
    compile_blocks,
    freeze_lower_layers,
    load_reward_model,
    load_tokenizer,
    plain_model,
    resolve_attention,
    resolve_compile,
    resolve_packing,
    resolve_precision,
)
from prefcurate.rm.score import score_sequences
from prefcurate.rm.trainer import BradleyTerryTrainer, ProgressCallback, mean_last_epoch, steady_tokens_per_second

log = logging.getLogger(__name__)
STAGE = "train"


@dataclass
class TrainResult:
    rm_run_id: str
    checkpoint_dir: Path
    metrics: dict
    reused: bool


def export_fingerprint(curated_dir: Path) -> str:
    """The export's content: its manifest's file hashes (paths do not count)."""
    manifest = json.loads((Path(curated_dir) / "manifest.json").read_text())
    return content_hash("export", {split: entry["sha256"] for split, entry in manifest["files"].items()})


def rm_run_id(curated_dir: Path, config: TrainConfig, base_model_path: str) -> str:
    """The same training gets the same id on any machine: export content, base model content, config."""
    return content_hash("rm", export_fingerprint(curated_dir), model_fingerprint(base_model_path),
                        config.recipe())


def _resample(pairs: PairData, indices: list[int]) -> PairData:
    return PairData([pairs.chosen[i] for i in indices], [pairs.rejected[i] for i in indices], pairs.truncated,
                    [pairs.margins[i] for i in indices] if pairs.margins else None)


def _checkpointing(enabled: bool) -> dict:
    """Activation checkpointing under the name this transformers takes: `activation_checkpointing`
    since 5.2x, `gradient_checkpointing` before (transformers 5.17 is what GPU images carry)."""
    name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def _training_arguments(config: TrainConfig, seed: int, device: str, precision: str, n_pairs: int, packed: bool,
                        output_dir: str) -> TrainingArguments:
    # Padded batches waste least when their pairs have similar lengths; packed batches want the
    # opposite (short sequences fill the rows of long ones), so they are drawn at random.
    grouped = not packed and n_pairs > config.batch_size
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type="linear",
        optim="adamw_torch_fused",  # one kernel over all parameters: the for-loop AdamW took ~20% of a CPU step
        max_grad_norm=1.0,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **_checkpointing(config.gradient_checkpointing),
        train_sampling_strategy="group_by_length" if grouped else "random",
        length_column_name="length",
        remove_unused_columns=False,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
    )


def train_member(base_model_path: str, pairs: PairData, config: TrainConfig, seed: int, device: str,
                 out_dir: Path, label: str) -> dict:
    """Train one reward model on `pairs` and save it as an HF folder in `out_dir`."""
    set_seed(seed)
    attention = resolve_attention(config, device)
    precision = resolve_precision(config, device)
    model, tokenizer = load_reward_model(base_model_path, device, attention, new_head=True)
    if config.lora.enabled:
        model = add_lora(model, config.lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    else:
        trainable = freeze_lower_layers(model, config.trainable_layers)
    packed = resolve_packing(config) and can_pack(model)
    if config.packing == "on" and not packed:
        raise ValueError(f"train.packing: {type(model).__name__} has no separate score head to read packed rewards from")
    compiled = resolve_compile(config.compile, device, model.num_parameters()) and compile_blocks(model, fall_back_to_eager=config.compile == "auto") > 0

    with tempfile.TemporaryDirectory() as scratch:
        trainer = BradleyTerryTrainer(
            model=model,
            args=_training_arguments(config, seed, device, precision, len(pairs), packed, scratch),
            train_dataset=pair_features(pairs),
            data_collator=PairCollator(tokenizer.pad_token_id, packed=packed),
            callbacks=[ProgressCallback(label)],
            margin_scale=config.margin_scale if config.margin != "none" else 0.0,
            center_coefficient=config.center_rewards_coefficient,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started

    if trainer.is_world_process_zero():
        model = plain_model(trainer.model).eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    steps_per_epoch = math.ceil(len(pairs) / (config.batch_size * config.gradient_accumulation_steps))
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    steady = steady_tokens_per_second(trainer.token_clock)
    return {
        "seed": seed, "pairs": len(pairs), "steps": trainer.state.global_step,
        "final_loss": trainer.losses[-1] if trainer.losses else None,
        "mean_loss_last_epoch": mean_last_epoch(trainer.losses, steps_per_epoch),
        "trainable_parameters": trainable, "seconds": round(seconds, 2),
        "tokens_per_second": round(trainer.tokens_seen / seconds, 1) if seconds else None,
        "steady_tokens_per_second": None if steady is None else round(steady, 1),
        "tokens": trainer.tokens_seen,
        "attention": attention, "precision": precision, "packed": packed, "compiled": compiled,
        "peak_gpu_memory_gb": None if peak_memory is None else round(peak_memory, 2),
    }


def train_checkpoint(curated_dir: Path, base_model_path: str, config: TrainConfig, device: str,
                     checkpoint_dir: Path) -> dict:
    """Train on an export into checkpoint_dir; no store. Returns the training metrics."""
    splits = load_splits(curated_dir)
    tokenizer = load_tokenizer(base_model_path)
    train = encode_pairs(tokenizer, splits["train"], config.max_length, config.margin)
    validation = (encode_pairs(tokenizer, splits["validation"], config.max_length)
                  if "validation" in splits and len(splits["validation"]) else None)
    if len(train) == 0:
        distributed.share_plan(None, device)  # release the other ranks before failing
        raise ValueError(f"{curated_dir}/train.parquet has no pairs: nothing to train on "
                         "(see the curation funnel: `SELECT * FROM curation_run_funnel`)")
    distributed.share_plan({"curated_dir": str(curated_dir), "base_model": base_model_path,
                            "config": config.recipe(), "checkpoint_dir": str(checkpoint_dir)}, device)
    members, names = train_members(base_model_path, train, validation, config, device, checkpoint_dir)
    if config.ensemble.members > 1:
        (checkpoint_dir / ENSEMBLE_FILE).write_text(json.dumps(
            {"members": names, "bootstrap": config.ensemble.bootstrap, "combine": "mean"}, indent=2) + "\n")
    first = members[0]
    return {
        "train_pairs": len(train), "validation_pairs": len(validation) if validation else 0,
        "truncated_sequences": train.truncated + (validation.truncated if validation else 0),
        "epochs": config.epochs, "steps": sum(m["steps"] for m in members),
        "final_loss": first["final_loss"], "mean_loss_last_epoch": first["mean_loss_last_epoch"],
        "validation_accuracy": first.get("validation_accuracy"),
        "trainable_parameters": first["trainable_parameters"],
        "seconds": round(sum(m["seconds"] for m in members), 2),
        "tokens_per_second": first["tokens_per_second"], "device": device,
        "ensemble_members": len(members), "members": members, "method": first.get("method", "finetune"),
    }


def resolve_method(config: TrainConfig, device: str) -> str:
    """auto: a fitted head on a frozen backbone on a CPU, fine-tuning on a GPU."""
    if config.method != "auto":
        return config.method
    return "head" if device == "cpu" else "finetune"


def train_members(base_model_path: str, train: PairData, validation: PairData | None, config: TrainConfig,
                  device: str, checkpoint_dir: Path) -> tuple[list[dict], list[str]]:
    """Each ensemble member: its seed, its data (all, or a bootstrap resample), trained and saved."""
    members, names = [], []
    for index in range(config.ensemble.members):
        seed = config.seed + index
        data = train
        if config.ensemble.bootstrap and config.ensemble.members > 1:
            rng = random.Random(seed)  # the same resample on every rank
            data = _resample(train, [rng.randrange(len(train)) for _ in range(len(train))])
        name = "." if config.ensemble.members == 1 else f"members/{index}"
        label = "train" if config.ensemble.members == 1 else f"train member {index + 1}/{config.ensemble.members}"
        if resolve_method(config, device) == "head":
            member = train_head_member(base_model_path, data, config, seed, device, checkpoint_dir / name, label,
                                       resolve_precision(config, device), save=distributed.rank() == 0)
        else:
            member = train_member(base_model_path, data, config, seed, device, checkpoint_dir / name, label)
        if validation is not None:
            member["validation_accuracy"] = held_out_accuracy(checkpoint_dir / name, validation, config, device)
            log.info("%s: validation accuracy %.3f", label, member["validation_accuracy"])
        members.append(member)
        names.append(name)
    return members, names


def follow_training(device: str) -> bool:
    """A rank other than 0 under a launcher: train what rank 0 planned, touching no store and saving
    nothing. Returns whether there was anything to train."""
    plan = distributed.share_plan(None, device)
    if plan is None:
        return False
    config = TrainConfig.model_validate(plan["config"])
    train = encode_pairs(load_tokenizer(plan["base_model"]), load_splits(plan["curated_dir"])["train"],
                         config.max_length, config.margin)
    train_members(plan["base_model"], train, None, config, device, Path(plan["checkpoint_dir"]))
    return True


def held_out_accuracy(member_dir: Path, pairs: PairData, config: TrainConfig, device: str) -> float:
    model, tokenizer = load_reward_model(str(member_dir), device)
    chosen = score_sequences(model, pairs.chosen, tokenizer.pad_token_id, config.batch_size * 2, device)
    rejected = score_sequences(model, pairs.rejected, tokenizer.pad_token_id, config.batch_size * 2, device)
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
