"""A local transformers causal LM as a chat backend, with batched generation.

Requests are grouped by sampling settings and sorted by prompt length so that each batch pads
little; the chat template of the tokenizer is applied when it has one.
"""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

from prefcurate.core.config import BackendConfig
from prefcurate.core.local_models import pick_device, resolve_model
from prefcurate.curation.backends import backend_identity
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult

log = logging.getLogger(__name__)


def render_chat(tokenizer, messages: list[dict]) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # A base model: plain transcript with a cue for the assistant's turn.
    lines = [f"{message['role'].capitalize()}: {message['content']}" for message in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


class TransformersBackend(ChatBackend):
    def __init__(self, config: BackendConfig, models_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.identity = backend_identity(config)
        self._path = resolve_model(config.model, models_dir)
        self.device = pick_device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self._path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._model = None  # weights load on the first request: a re-run with nothing to do skips them
        self._auto_model = AutoModelForCausalLM
        self._torch = torch

    @property
    def model(self):
        if self._model is None:
            self._model = self._auto_model.from_pretrained(self._path).to(self.device).eval()
        return self._model

    def complete(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        prepared = [(request, render_chat(self.tokenizer, request.messages)) for request in requests]

        def settings(item):
            request = item[0]
            return (request.choices or (), request.max_tokens, request.temperature, request.top_p,
                    request.want_logprobs)

        # Within one sampling setting, sort by length so that batches pad little.
        prepared.sort(key=lambda item: (settings(item), len(item[1])))
        for _, group in groupby(prepared, key=settings):
            group = list(group)
            answer = self._choose_batch if group[0][0].choices else self._generate_batch
            for start in range(0, len(group), self.config.batch_size):
                yield from answer(group[start:start + self.config.batch_size])

    def _choose_batch(self, batch: list[tuple[ChatRequest, str]]) -> list[ChatResult]:
        """One forward pass; the answer is the choice whose first token is most likely next."""
        torch = self._torch
        choices = batch[0][0].choices
        first_tokens = [self.tokenizer(choice, add_special_tokens=False)["input_ids"][0] for choice in choices]
        encoded = self.tokenizer([text for _, text in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits[:, -1, :]  # left-padded: the last position is the next token
        logprobs = torch.log_softmax(logits.float(), dim=-1)[:, first_tokens].cpu()
        results = []
        for row, (request, _) in enumerate(batch):
            scores = dict(zip(choices, logprobs[row].tolist()))
            results.append(ChatResult(
                request.key, text=max(scores, key=scores.get), finish_reason="choice",
                prompt_tokens=int(encoded["attention_mask"][row].sum()), completion_tokens=1,
                first_token_logprobs=scores))
        return results

    def _generate_batch(self, batch: list[tuple[ChatRequest, str]]) -> list[ChatResult]:
        torch = self._torch
        first = batch[0][0]
        encoded = self.tokenizer([text for _, text in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
        if first.seed is not None:
            torch.manual_seed(first.seed)  # one seed per batch: runs repeat on the same hardware
        sampling = first.temperature > 0
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=first.max_tokens,
                do_sample=sampling,
                temperature=first.temperature if sampling else None,
                top_p=first.top_p if sampling else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_logits=first.want_logprobs,
            )
        prompt_length = encoded["input_ids"].shape[1]
        generated = output.sequences[:, prompt_length:]
        first_logprobs = None
        if first.want_logprobs:
            first_logprobs = torch.log_softmax(output.logits[0].float(), dim=-1)
        results = []
        eos_ids = _eos_ids(self.model, self.tokenizer)
        for row, (request, _) in enumerate(batch):
            tokens = generated[row].tolist()
            stop_at = next((i for i, token in enumerate(tokens) if token in eos_ids), None)
            kept = tokens if stop_at is None else tokens[:stop_at]
            result = ChatResult(
                request.key,
                text=self.tokenizer.decode(kept, skip_special_tokens=True),
                finish_reason="length" if stop_at is None else "stop",
                prompt_tokens=int(encoded["attention_mask"][row].sum()),
                completion_tokens=len(kept),
            )
            if first_logprobs is not None:
                top = torch.topk(first_logprobs[row], k=10)
                result.first_token_logprobs = {
                    self.tokenizer.decode([token]): float(value) for value, token in zip(top.values, top.indices)
                }
            results.append(result)
        return results

    def close(self) -> None:
        self._model = None


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config else None
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    found.add(tokenizer.pad_token_id)
    return found
