"""Score (prompt, response) pairs with a trained reward model, batched and length-sorted."""

from __future__ import annotations

import torch

from prefcurate.rm.data import encode, pad_batch
from prefcurate.rm.model import load_reward_model


@torch.inference_mode()
def score_sequences(model, sequences: list[list[int]], pad_id: int, batch_size: int, device: str) -> list[float]:
    # Sorting by length keeps padding (wasted compute) low; results go back in input order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    rewards = [0.0] * len(sequences)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        ids, mask = pad_batch([sequences[i] for i in index], pad_id)
        values = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.squeeze(-1).float().cpu()
        for i, value in zip(index, values.tolist()):
            rewards[i] = value
    model.train(was_training)
    return rewards


class RewardScorer:
    """A checkpoint loaded once, scoring many (prompt, response) pairs."""

    def __init__(self, checkpoint: str, device: str = "cpu", max_length: int = 512):
        self.model, self.tokenizer = load_reward_model(checkpoint, device)
        self.model.eval()
        self.device = device
        self.max_length = max_length

    def score(self, prompts: list[str], responses: list[str], batch_size: int = 8) -> list[float]:
        encoded = encode(self.tokenizer, prompts, responses, self.max_length)
        return score_sequences(self.model, encoded.ids, self.tokenizer.pad_token_id, batch_size, self.device)
