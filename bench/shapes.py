"""Reward-model shapes built from configs with random weights, for speed figures on machines no
weights can travel to (a lent GPU takes at most 64 MiB of files): SmolLM2-135M's shape, a ~1B
Llama (TinyLlama-1.1B's shape) and a tiny one for CPU checks, all with SmolLM2's tokenizer.

Speed does not depend on the weights' values, so these measure what trained checkpoints of the same
shape would; their rewards mean nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

SHAPES = {
    "tiny": {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 2, "tie_word_embeddings": True},
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "rope_theta": 100000.0, "tie_word_embeddings": True},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "tie_word_embeddings": False},
}


def tokenizer_dir(cache: Path) -> Path:
    """SmolLM2's tokenizer as a folder: $PREFCURATE_TOKENIZER_DIR (bench/gpu_check.sh carries one to
    a GPU machine), else exported once from the embedded GGUF into `cache`."""
    if os.environ.get("PREFCURATE_TOKENIZER_DIR"):
        return Path(os.environ["PREFCURATE_TOKENIZER_DIR"])
    target = cache / "smollm2-tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        from prefcurate.core.local_models import embedded_gguf

        folder, filename = embedded_gguf("smollm2-135m-instruct")
        AutoTokenizer.from_pretrained(folder, gguf_file=filename).save_pretrained(target)
    return target


def build_checkpoint(shape: str, tokenizer_path: Path, out: Path, device: str = "cpu") -> Path:
    """A one-label sequence classifier of `shape` with seeded random weights, saved as an HF folder
    (fp32, as a fine-tune starts); built on `device` (a GPU initialises 1B parameters in a blink)."""
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=8192, num_labels=1,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def training_flops_per_token(checkpoint: Path, mean_sequence_tokens: float) -> tuple[float, int]:
    """(FLOPs per trained token, non-embedding parameters). The model FLOPs of MFU: 6 x non-embedding
    parameters (forward 2, backward 4) plus attention's 12 x layers x hidden x sequence length (the
    score and value products, forward and backward), with the sequence length of the data."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    d, layers, ff = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = d // config.num_attention_heads * config.num_key_value_heads
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * ff + 2 * d  # q, o; k, v; gate, up, down; two norms
    non_embedding = layers * per_layer + d + d * config.num_labels  # final norm, score head
    return 6 * non_embedding + 12 * layers * d * mean_sequence_tokens, non_embedding
