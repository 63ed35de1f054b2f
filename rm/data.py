"""Preference pairs from the exported Parquet, tokenized for a reward model.

Prompt and response are rendered with the tokenizer's chat template when it has one. Sequences
longer than max_length lose tokens from the left, so the end of the response (what the reward is
read from) is always kept; every truncation is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

SPLITS = ("train", "validation", "test")


def load_splits(curated_dir: str | Path) -> dict:
    """The exported splits as `datasets.Dataset`s, without pairs kept as ties (Bradley-Terry needs
    a preference)."""
    import datasets

    curated_dir = Path(curated_dir)
    data_files = {split: str(curated_dir / f"{split}.parquet") for split in SPLITS
                  if (curated_dir / f"{split}.parquet").is_file()}
    if "train" not in data_files:
        raise FileNotFoundError(f"{curated_dir}: no train.parquet; run `prefcurate curate` first")
    loaded = datasets.load_dataset("parquet", data_files=data_files)
    if "tie" in loaded["train"].column_names:
        loaded = loaded.filter(lambda tie: not tie, input_columns="tie")
    return loaded


def prompt_conversation(prompt: str, prompt_messages: str | None) -> list[dict]:
    """The conversation before the response: a multi-turn prompt's messages, else the user's prompt."""
    return json.loads(prompt_messages) if prompt_messages else [{"role": "user", "content": prompt}]


def render(tokenizer, prompt: str, response: str, prompt_messages: str | None = None) -> str:
    conversation = prompt_conversation(prompt, prompt_messages)
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            conversation + [{"role": "assistant", "content": response}], tokenize=False)
    turns = [message["content"] if len(conversation) == 1 else f"{message['role'].capitalize()}: {message['content']}"
             for message in conversation]
    return "\n\n".join(turns) + f"\n\n{response}"


@dataclass
class Encoded:
    ids: list[list[int]]
    truncated: int


def encode(tokenizer, prompts: list[str], responses: list[str], max_length: int,
           prompt_messages: list[str | None] | None = None) -> Encoded:
    prompt_messages = prompt_messages or [None] * len(prompts)
    texts = [render(tokenizer, p, r, m) for p, r, m in zip(prompts, responses, prompt_messages)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    truncated = sum(len(seq) > max_length for seq in ids)
    return Encoded([seq[-max_length:] for seq in ids], truncated)


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; the reward is read at the last real token."""
    longest = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids, mask


@dataclass
class PairData:
    chosen: list[list[int]]
    rejected: list[list[int]]
    truncated: int

    def __len__(self) -> int:
        return len(self.chosen)


def encode_pairs(tokenizer, dataset, max_length: int) -> PairData:
    messages = dataset["prompt_messages"] if "prompt_messages" in dataset.column_names else None
    chosen = encode(tokenizer, dataset["prompt"], dataset["chosen"], max_length, messages)
    rejected = encode(tokenizer, dataset["prompt"], dataset["rejected"], max_length, messages)
    return PairData(chosen.ids, rejected.ids, chosen.truncated + rejected.truncated)
