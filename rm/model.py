"""Load a backbone as a one-output sequence classifier; choose what trains (top layers or LoRA);
read rewards from a padded or a packed batch."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from prefcurate.core.config import LoraConfig, TrainConfig

log = logging.getLogger(__name__)


def resolve_attention(config: TrainConfig, device: str) -> str:
    if config.attn_implementation != "auto":
        return config.attn_implementation
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_packing(config: TrainConfig) -> bool:
    """auto packs. With flash-attention the varlen kernels skip padding outright; with sdpa or eager
    transformers builds a block mask from the restarting position ids, and on CPU the packed steps
    still beat length-grouped padded ones (bench/rm_train.py): the MLPs, most of the compute, see
    ~1.1x the real tokens instead of ~1.5x."""
    return config.packing != "off"


# Below this a model's steps are too short for fused kernels to repay ~20 s of compiling.
COMPILE_MIN_PARAMETERS = 50_000_000


def resolve_compile(setting: str, device: str, parameters: int) -> bool:
    """auto compiles models of COMPILE_MIN_PARAMETERS or more where inductor can build kernels: a
    C++ compiler on CPU, triton on CUDA."""
    if setting != "auto":
        return setting == "on"
    if parameters < COMPILE_MIN_PARAMETERS:
        return False
    if device == "cpu":
        return any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))
    if device.startswith("cuda"):
        return importlib.util.find_spec("triton") is not None
    return False


def compile_blocks(model, fall_back_to_eager: bool) -> int:
    """Regional compilation: compile each transformer block in place (the model and its state dict
    keep their names). The blocks share one code object, so dynamo compiles once and every layer
    reuses it; dynamic shapes keep varying batch widths from recompiling. Returns the blocks compiled."""
    blocks = _transformer_blocks(model)
    if blocks is None:
        log.warning("compile: cannot find the transformer blocks of %s; running eagerly", type(model).__name__)
        return 0
    if fall_back_to_eager:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a failing compile runs that block eagerly
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def native_bf16(device: str) -> bool:
    """Whether the device multiplies bf16 natively: a GPU with bf16, or a CPU with AMX or AVX512-BF16
    (elsewhere bf16 is emulated, and slower than fp32)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device == "cpu":
        return any(getattr(torch.cpu, check, lambda: False)()
                   for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False


def resolve_precision(config: TrainConfig, device: str) -> str:
    """auto: bf16 mixed precision (fp32 master weights, bf16 matmuls) where bf16 is native, else fp32."""
    if config.precision != "auto":
        return config.precision
    return "bf16" if native_bf16(device) else "fp32"


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


class _ExpectedNewHead(logging.Filter):
    """Drops transformers' load report when all it says is what starting a reward model from a
    language model means: a new score head (MISSING score.*) and an unused LM head (UNEXPECTED
    lm_head.*). A first-time user would read "MISSING ... Consider training" as a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        keys = [line.split("|")[0].strip() for line in message.splitlines()
                if line.count("|") >= 2 and not line.startswith(("Key", "-"))]
        return not keys or not all(key.startswith(("score.", "lm_head.")) for key in keys)


def load_reward_model(path: str, device: str = "cpu", attn_implementation: str | None = None,
                      new_head: bool = False):
    """A reward model from a checkpoint; `new_head`: from a base language model (its score head is
    initialised here, and the load report saying so is expected)."""
    tokenizer = load_tokenizer(path)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    report_logger = logging.getLogger("transformers.modeling_utils")
    quiet = _ExpectedNewHead()
    if new_head:
        report_logger.addFilter(quiet)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **options)
    finally:
        report_logger.removeFilter(quiet)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def _transformer_blocks(model) -> torch.nn.ModuleList | None:
    n_layers = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    return None


def cut_blocks(model, layer: int, setting: str, owner: str = "the model") -> torch.nn.ModuleList:
    """Keep the first `layer` transformer blocks (in place); returns what is left of them. `setting`
    and `owner` name the config key and the model in the error."""
    blocks = _transformer_blocks(model)
    if blocks is None or not 1 <= layer <= len(blocks):
        raise ValueError(f"{setting} = {layer}: {owner} has "
                         f"{'no transformer blocks it can find' if blocks is None else f'{len(blocks)} blocks'}")
    del blocks[layer:]
    model.config.num_hidden_layers = layer
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layer]
    return blocks


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


def _unwrap(model):
    """The transformers classifier inside DDP/FSDP(1) and peft wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def score_head(model) -> torch.nn.Module | None:
    head = getattr(_unwrap(model), "score", None)
    return head if isinstance(head, torch.nn.Module) else None


def can_pack(model) -> bool:
    return score_head(model) is not None


def batch_rewards(model, batch: dict) -> torch.Tensor:
    """One reward per sequence of the batch (padded: per row; packed: per sequence end).

    Both layouts go through the top-level forward, never a submodule: that forward is where
    accelerate applies autocast and where DDP and FSDP sync and gather parameters. (Calling the
    backbone directly once ran packed batches in fp32 under bf16 training, and would skip DDP's
    gradient sync.) For packed rows the per-token scores are taken from the score head by a forward
    hook, then read at each sequence's end; the classifier's own one-per-row pooling is ignored.
    """
    if "sequence_ends" not in batch:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=False).logits.squeeze(-1)
    captured = []
    hook = score_head(model).register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        # No attention mask: transformers reads the packed sequences' boundaries from the position ids.
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    finally:
        hook.remove()
    ends = batch["sequence_ends"]
    return captured[-1][ends[:, 0], ends[:, 1]].squeeze(-1)
