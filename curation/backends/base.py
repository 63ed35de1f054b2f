"""The contract every generation/judging backend keeps.

A backend takes many requests and yields one result per request, in any order, as each finishes,
so that callers can commit results in batches and a killed run loses little. A request that fails
after the backend's retries yields a result with `error` set; it never raises for one request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Iterator


@dataclass(frozen=True)
class ChatRequest:
    key: str  # the caller's id for this request; results carry it back
    messages: list[dict]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    want_logprobs: bool = False  # top log-probabilities of the first generated token
    # Closed-answer mode: when set, a backend that can score continuations answers with the most
    # likely choice and reports each choice's log-probability (backends that cannot, generate).
    choices: tuple[str, ...] | None = None
    # The chat-completions `response_format` (json_schema / json_object), for endpoints that take it.
    response_format: dict | None = None


@dataclass
class ChatResult:
    key: str
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    # token text (as the tokenizer spells it) -> log-probability, for the first generated token, when asked and available
    first_token_logprobs: dict[str, float] | None = field(default=None)
    # Every generated token with its top alternatives (token text -> log-probability), when asked
    # and available: lets a caller find the verdict token inside a JSON answer.
    token_logprobs: list[tuple[str, dict[str, float]]] | None = field(default=None)
    error: str | None = None  # "<kind>: <message>" when the call failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0] if self.error else None


class ChatBackend(ABC):
    #: A stable identity of the model behind this backend, part of every cache key.
    identity: str

    @abstractmethod
    def complete(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """Yield one ChatResult per request as each completes."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, clients, threads."""

    def __enter__(self) -> ChatBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
