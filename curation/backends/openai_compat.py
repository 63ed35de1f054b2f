"""Any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, OpenAI) through `openai`.

Requests fan out on one asyncio loop in a background thread, at most `max_concurrency` in flight,
under optional client-side limits in requests and tokens per minute. The openai client retries 429,
5xx, connection errors and timeouts (each request has its own timeout) with exponential backoff and
honours Retry-After; what still fails becomes a result with an error kind, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Iterator

import openai
from openai.types.chat import ChatCompletion

from prefcurate.core.config import BackendConfig
from prefcurate.core.secrets import redact, secret_from_env
from prefcurate.curation.backends import backend_identity
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult
from prefcurate.curation.backends.rate_limit import RateLimiter, estimate_request_tokens

log = logging.getLogger(__name__)


def _error_kind(error: Exception) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.RateLimitError):
        return "rate_limited"
    if isinstance(error, openai.InternalServerError):
        return "server_error"
    if isinstance(error, openai.BadRequestError):
        return "bad_request"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.APIStatusError):
        return f"http_{error.status_code}"
    if isinstance(error, (openai.APIResponseValidationError, ValueError)):
        return "malformed_response"
    return type(error).__name__


class OpenAIBackend(ChatBackend):
    def __init__(self, config: BackendConfig):
        self.config = config
        self.identity = backend_identity(config)
        # Local servers ignore the key; the real API needs it from the environment.
        self._api_key = secret_from_env(config.api_key_env) or "unused-local-key"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="prefcurate-openai", daemon=True)
        self._thread.start()
        self._client = self._call_soon(self._make_client()).result()
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)

    async def _make_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self._api_key,
            timeout=self.config.timeout_s,
            max_retries=self.config.max_retries,
            http_client=openai.DefaultAioHttpClient(),
        )

    def _call_soon(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _one(self, request: ChatRequest) -> ChatResult:
        async with self._slots:
            await self._limiter.acquire(estimate_request_tokens(request.messages, request.max_tokens))
            started = time.perf_counter()
            try:
                # The client's documented route for raw requests: the same HTTP call, retries, timeouts
                # and errors as chat.completions.create, without its recursive walk of the request's
                # TypedDicts (most of the client's CPU per judge call: it caps calls/s on a small machine).
                response = await self._client.post("/chat/completions", body=chat_body(request, self.config.model),
                                                   cast_to=ChatCompletion)
            except Exception as error:  # every failure becomes a result with a reason
                # Providers echo the request (the key too, in some 401s): mask before cutting.
                return ChatResult(request.key, error=f"{_error_kind(error)}: {redact(str(error))[:300]}",
                                  latency_ms=1000 * (time.perf_counter() - started))
            return chat_result(request.key, response, request.want_logprobs, 1000 * (time.perf_counter() - started))

    def complete(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """All calls are scheduled on the loop in one hand-over (not one cross-thread call each), and
        results come back through a queue that the loop fills as they finish."""
        requests = list(requests)
        done: queue.SimpleQueue = queue.SimpleQueue()
        tasks: list[asyncio.Task] = []

        async def schedule() -> None:
            for request in requests:
                task = asyncio.ensure_future(self._one(request))
                task.add_done_callback(lambda task: done.put(task))
                tasks.append(task)

        self._call_soon(schedule()).result()
        try:
            for _ in requests:
                task = done.get()
                if not task.cancelled():
                    yield task.result()
        finally:  # the caller stopped early: drop the calls not sent yet
            self._loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call_soon(self._client.close()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def chat_body(request: ChatRequest, model: str) -> dict:
    """The chat-completions request body: the same online and in a batch file, so that both modes
    ask the same question."""
    body = {"model": model, "messages": request.messages, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "top_p": request.top_p}
    if request.seed is not None:
        body["seed"] = request.seed
    if request.want_logprobs:
        body.update(logprobs=True, top_logprobs=10)
    if request.response_format is not None:
        body["response_format"] = request.response_format
    return body


def chat_result(key: str, response, want_logprobs: bool, latency_ms: float | None) -> ChatResult:
    """A ChatResult from a chat completion (the client's object, online or parsed from a batch line)."""
    if not response.choices:
        return ChatResult(key, error="malformed_response: no choices", latency_ms=latency_ms)
    choice = response.choices[0]
    usage = response.usage
    tokens = _token_logprobs(choice) if want_logprobs else None
    return ChatResult(
        key,
        text=redact(choice.message.content) if choice.message else None,
        finish_reason=choice.finish_reason,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=latency_ms,
        first_token_logprobs=tokens[0][1] if tokens else None,
        token_logprobs=tokens,
    )


def _token_logprobs(choice) -> list[tuple[str, dict[str, float]]] | None:
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs else None
    if not content:
        return None
    tokens = []
    for entry in content:
        alternatives = {alt.token: alt.logprob for alt in (entry.top_logprobs or [])}
        alternatives.setdefault(entry.token, entry.logprob)
        tokens.append((entry.token, alternatives))
    return tokens
