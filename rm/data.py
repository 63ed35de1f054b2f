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

from prefcurate.core.config import SPLITS


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
        loaded = datasets.DatasetDict({name: _without_ties(split) for name, split in loaded.items()})
    return loaded


def _without_ties(split):
    """Rows whose `tie` is not true, chosen by index (`Dataset.filter` would hash a Python function
    with dill, which prints bytecode into Prefect's logs)."""
    ties = split.data.column("tie").to_pylist()
    keep = [index for index, tie in enumerate(ties) if not tie]
    return split if len(keep) == len(ties) else split.select(keep).flatten_indices()


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
    margins: list[float] | None = None

    def __len__(self) -> int:
        return len(self.chosen)


def label_strength(dataset, source: str) -> list[float] | None:
    """Per pair, how clear its label is, in [0, 1]: 2 * (value - 0.5) for a confidence or agreement
    in [0.5, 1], the score difference as a share of the scale for `score`; 0 where the export has
    no value (imported labels have no confidence, unscored responses no score)."""
    if source == "none":
        return None
    column = {"confidence": "confidence", "agreement": "agreement", "score": "score_margin"}[source]
    if column not in dataset.column_names:
        raise ValueError(f"train.margin = {source}: the export has no {column!r} column")
    if source == "score":  # already a share of the scale: 1 is best against worst
        return [0.0 if value is None else max(0.0, min(1.0, value)) for value in dataset[column]]
    return [0.0 if value is None else max(0.0, min(1.0, 2 * (value - 0.5))) for value in dataset[column]]


def encode_pairs(tokenizer, dataset, max_length: int, margin: str = "none") -> PairData:
    messages = dataset["prompt_messages"] if "prompt_messages" in dataset.column_names else None
    chosen = encode(tokenizer, dataset["prompt"], dataset["chosen"], max_length, messages)
    rejected = encode(tokenizer, dataset["prompt"], dataset["rejected"], max_length, messages)
    return PairData(chosen.ids, rejected.ids, chosen.truncated + rejected.truncated, label_strength(dataset, margin))


def pair_features(pairs: PairData):
    """A `datasets.Dataset` of token ids per pair, with `length` for length-grouped batches."""
    import datasets

    margins = pairs.margins or [0.0] * len(pairs)
    return datasets.Dataset.from_dict({
        "chosen_ids": pairs.chosen, "rejected_ids": pairs.rejected, "margin": margins,
        # A batch is padded to its longest sequence, chosen or rejected: group pairs by that.
        "length": [max(len(c), len(r)) for c, r in zip(pairs.chosen, pairs.rejected)],
    })


class PairCollator:
    """Batches pairs for one forward pass over chosen and rejected together.

    padded: 2B rows, right-padded (chosen rows first, then rejected).
    packed: the 2B sequences packed first-fit into rows as long as the longest of them, position ids
            restarting at each sequence, so almost nothing is padding (a row's leftover room is filled
            by a block of pad tokens with positions of their own, which nothing reads). The reward is
            read at each sequence's last token. transformers separates the sequences by their
            position ids (any attention implementation; flash-attention makes it fastest).
    """

    def __init__(self, pad_id: int, packed: bool = False):
        self.pad_id, self.packed = pad_id, packed

    def __call__(self, features: list[dict]) -> dict:
        sequences = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
        batch = {"margin": torch.tensor([f["margin"] for f in features], dtype=torch.float32),
                 # Tokens that are not padding, for an honest tokens/s whichever the layout.
                 "real_tokens": torch.tensor(sum(len(seq) for seq in sequences))}
        if not self.packed:
            batch["input_ids"], batch["attention_mask"] = pad_batch(sequences, self.pad_id)
            return batch
        batch.update(pack_sequences(sequences, self.pad_id))
        return batch


def pack_sequences(sequences: list[list[int]], pad_id: int) -> dict:
    """input_ids and position_ids (rows x width) and, per sequence in input order, the (row, column)
    where its reward is read."""
    width = max(len(seq) for seq in sequences)
    rows: list[list[int]] = []  # sequence indices per row, first-fit by decreasing length
    room: list[int] = []
    for index in sorted(range(len(sequences)), key=lambda i: -len(sequences[i])):
        length = len(sequences[index])
        row = next((r for r, free in enumerate(room) if free >= length), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= length
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    ends = [(0, 0)] * len(sequences)
    for row, members in enumerate(rows):
        column = 0
        for index in members:
            seq = sequences[index]
            input_ids[row, column:column + len(seq)] = torch.tensor(seq, dtype=torch.long)
            position_ids[row, column:column + len(seq)] = torch.arange(len(seq))
            # Read where transformers' own classifier reads: the last token that is not padding.
            ends[index] = (row, column + _last_non_pad(seq, pad_id))
            column += len(seq)
        position_ids[row, column:] = torch.arange(width - column)  # the filler: a sequence of its own
    return {"input_ids": input_ids, "position_ids": position_ids,
            "sequence_ends": torch.tensor(ends, dtype=torch.long)}


def _last_non_pad(sequence: list[int], pad_id: int) -> int:
    for index in range(len(sequence) - 1, -1, -1):
        if sequence[index] != pad_id:
            return index
    return len(sequence) - 1
