"""Load a backbone as a one-output sequence classifier; choose what trains (top layers or LoRA);
read rewards from a padded or a packed batch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from prefcurate.config import LoraConfig, TrainConfig


def resolve_attention(config: TrainConfig, device: str) -> str:
    if config.attn_implementation != "auto":
        return config.attn_implementation
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_packing(config: TrainConfig, attention: str) -> bool:
    """auto packs with flash-attention, whose varlen kernels skip padding outright. With sdpa the
    packed rows carry a block mask; on CPU that measured slower per step than length-grouped padded
    batches (bench/rm_train.py), so auto pads there."""
    if config.packing != "auto":
        return config.packing == "on"
    return attention == "flash_attention_2"


def resolve_precision(config: TrainConfig, device: str) -> str:
    if config.precision != "auto":
        return config.precision
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


ENSEMBLE_FILE = "ensemble.json"


def member_dirs(checkpoint_dir: str | Path) -> list[Path]:
    """The HF folders of a checkpoint: itself, or its ensemble members (listed in ensemble.json)."""
    ensemble = Path(checkpoint_dir) / ENSEMBLE_FILE
    if ensemble.is_file():
        return [Path(checkpoint_dir) / member for member in json.loads(ensemble.read_text())["members"]]
    return [Path(checkpoint_dir)]


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_reward_model(path: str, device: str = "cpu", attn_implementation: str | None = None):
    tokenizer = load_tokenizer(path)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **options)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def _transformer_blocks(model) -> torch.nn.ModuleList | None:
    n_layers = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    return None


def freeze_lower_layers(model, trainable_layers: int | None) -> int:
    """Train only the top `trainable_layers` blocks, the final norm and the score head.

    Returns the number of trainable parameters. None trains everything.
    """
    if trainable_layers is None:
        return sum(p.numel() for p in model.parameters())
    blocks = _transformer_blocks(model)
    if blocks is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__} to freeze")
    for parameter in model.parameters():
        parameter.requires_grad = False
    keep = list(blocks)[len(blocks) - trainable_layers:] if trainable_layers else []
    for block in keep:
        for parameter in block.parameters():
            parameter.requires_grad = True
    for name, parameter in model.named_parameters():
        # The score head, and the final norm that feeds it.
        if name.startswith("score") or (".norm." in f".{name}" and "layers" not in name):
            parameter.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_lora(model, config: LoraConfig):
    """Wrap the model with LoRA adapters (peft); the score head trains in full."""
    import peft

    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=config.r, lora_alpha=config.alpha,
                           lora_dropout=config.dropout, target_modules=config.target_modules,
                           modules_to_save=["score"])
    return peft.get_peft_model(model, lora)


def plain_model(model):
    """The transformers model to save: LoRA adapters merged in, so from_pretrained needs no peft."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _classifier(model):
    """(backbone, score head) of a sequence classifier, looking through a peft wrapper."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.score


def can_pack(model) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return hasattr(inner, "score") and hasattr(inner, "base_model")


def batch_rewards(model, batch: dict) -> torch.Tensor:
    """One reward per sequence of the batch (padded: per row; packed: per sequence end)."""
    if "sequence_ends" in batch:
        backbone, score = _classifier(model)
        # No cache (a reward needs none, and it costs memory and time); without one, transformers also
        # reads packed sequence boundaries from the position ids.
        hidden = backbone(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).last_hidden_state
        ends = batch["sequence_ends"]
        return score(hidden[ends[:, 0], ends[:, 1]]).squeeze(-1)
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits.squeeze(-1)
