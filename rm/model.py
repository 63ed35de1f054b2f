"""Load a backbone as a one-output sequence classifier, and choose which layers train."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def load_reward_model(path: str, device: str = "cpu"):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
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
