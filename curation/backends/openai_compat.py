"""Any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, OpenAI) through `openai`.

Requests fan out on one asyncio loop in a background thread, at most `max_concurrency` in flight,
under optional client-side limits in requests and tokens per minute. Each attempt has a total
deadline (`timeout_s`: the client's own timeouts are per read, which a server sending a byte now
and then never trips). 429, 5xx, connection failures, timeouts and bodies that are not a chat
completion (a proxy's HTML page) are tried again, up to `max_retries` times, with exponential
backoff or the server's Retry-After; what still fails becomes a result with an error kind and a
plain reason (call_failures.py), never an exception. When no answer at all comes for `stall_s`
while calls wait, the stage stops (EndpointStalled) instead of waiting on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion

from prefcurate.core.config import BackendConfig
from prefcurate.core.stage_report import StageFailed
from prefcurate.core.secrets import redact, secret_from_env
from prefcurate.curation.backends import backend_identity
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult
from prefcurate.curation.backends.call_failures import (
    CallFailed,
    backoff_s,
    connection_failure,
    not_a_completion,
    status_failure,
    unreadable_json,
)
from prefcurate.curation.backends.failure_watch import EndpointStalled
from prefcurate.curation.backends.rate_limit import RateLimiter, estimate_request_tokens

log = logging.getLogger(__name__)
LOCAL_KEY = "unused-local-key"  # local servers ignore the key; the client needs one
CANCEL_WAIT_S = 10.0  # for the loop to end the calls a stopped caller left


class MissingApiKey(StageFailed):
    """The OpenAI API without a key: refused before the first call (exit 1)."""


def api_key(config: BackendConfig) -> str:
    """The key from config.api_key_env. Without one, a local server gets a placeholder; the OpenAI API
    would get the placeholder and every prompt, so nothing is sent."""
    key = secret_from_env(config.api_key_env)
    if key:
        return key
    host = urlsplit(config.base_url).hostname if config.base_url else "api.openai.com"
    if host and (host == "openai.com" or host.endswith(".openai.com")):
        raise MissingApiKey(
            f"backend {config.model!r} (kind {config.kind}) would send its calls to the OpenAI API at "
            f"{config.base_url or 'https://api.openai.com/v1 (no base_url given)'}, and ${config.api_key_env} "
            f"(backend.api_key_env) is not set: set it, or give base_url for your own server")
    return LOCAL_KEY


class OpenAIBackend(ChatBackend):
    def __init__(self, config: BackendConfig):
        self.config = config
        self.identity = backend_identity(config)
        self._api_key = api_key(config)
        self.retries: Counter = Counter()  # attempts made again, by failure kind
        self._models: str | None = None  # what GET /models offers, once a call meets a 404
        self._last_answer = 0.0  # time.monotonic() of the last HTTP answer of any kind
        self._closing = threading.Lock()  # close() and a caller's clean-up never interleave
        self._closed = False
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
            max_retries=0,  # retries are ours (_one): each attempt under its own total deadline
            http_client=openai.DefaultAioHttpClient(),
        )

    def _call_soon(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _one(self, request: ChatRequest) -> ChatResult:
        async with self._slots:
            await self._limiter.acquire(estimate_request_tokens(request.messages, request.max_tokens))
            started = time.perf_counter()
            body = chat_body(request, self.config.model)
            for attempt in range(self.config.max_retries + 1):
                try:
                    response = await self._attempt(body)
                except CallFailed as failure:
                    if not failure.retry or attempt == self.config.max_retries:
                        # Providers echo the request (the key too, in some 401s): mask before cutting.
                        return ChatResult(request.key, error=redact(str(failure))[:400],
                                          latency_ms=1000 * (time.perf_counter() - started))
                    await self._before_retry(failure, attempt)
                    continue
                except Exception as error:  # noqa: BLE001 - one call's surprise is that call's failure
                    return ChatResult(request.key, error=f"{type(error).__name__}: {redact(str(error))[:300]}",
                                      latency_ms=1000 * (time.perf_counter() - started))
                return chat_result(request.key, response, request.want_logprobs,
                                   1000 * (time.perf_counter() - started))

    async def _attempt(self, body: dict) -> ChatCompletion:
        """One HTTP call under one total deadline, or CallFailed saying why not."""
        try:
            async with asyncio.timeout(self.config.timeout_s):
                # The client's documented route for raw requests: the same HTTP call and errors as
                # chat.completions.create, without its recursive walk of the request's TypedDicts
                # (most of the client's CPU per judge call: it caps calls/s on a small machine).
                response = await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        except TimeoutError:
            raise CallFailed("timeout", f"no complete answer within {self.config.timeout_s:g} s (backend.timeout_s, "
                                        "a deadline for the whole answer)", retry=True) from None
        except openai.APIStatusError as error:
            self._last_answer = time.monotonic()
            failure = status_failure(error)
            raise (await self._not_found(failure) if error.status_code == 404 else failure) from None
        except openai.APIConnectionError as error:
            raise connection_failure(error, self.config.base_url) from None
        except ValueError as error:  # a JSON content type over a body that is not JSON (or is cut short)
            self._last_answer = time.monotonic()
            raise unreadable_json(error) from None
        self._last_answer = time.monotonic()
        if not isinstance(response, ChatCompletion):  # the client hands back the text of a non-JSON body
            raise not_a_completion(response)
        return response

    async def _before_retry(self, failure: CallFailed, attempt: int) -> None:
        wait = failure.wait_s if failure.wait_s is not None else backoff_s(attempt)
        self.retries[failure.kind] += 1
        if self.retries[failure.kind] == 1:  # once per kind: a 429 storm must not flood the log
            log.info("%s: trying a call again in %.1f s after %s (further retries after %s are logged at debug "
                     "level)", self.identity, wait, redact(str(failure))[:200], failure.kind)
        else:
            log.debug("%s: retry %d in %.1f s after %s", self.identity, attempt + 1, wait, redact(str(failure))[:200])
        await asyncio.sleep(wait)

    async def _not_found(self, failure: CallFailed) -> CallFailed:
        """A 404 says the model, or the route, is not on this server: no retry will find it."""
        where = self.config.base_url or "the OpenAI API"
        if "model" not in failure.message.lower():
            return CallFailed("http_404", f"{where}/chat/completions does not exist (HTTP 404): check base_url "
                                          "(an OpenAI-compatible server's usually ends in /v1). "
                                          f"It said: {failure.message}")
        return CallFailed("http_404", f"model {self.config.model!r} not found on {where}; it offers: "
                                      f"{await self._offered_models()}. It said: {failure.message}")

    async def _offered_models(self) -> str:
        if self._models is None:
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    page = await self._client.models.list()
                names = [model.id for model in page.data]
                self._models = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") \
                    if names else "no models"
            except Exception as error:  # noqa: BLE001 - the list is a courtesy; the 404 stands
                self._models = f"(GET /models failed too: {type(error).__name__})"
        return self._models

    def complete(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """All calls are scheduled on the loop in one hand-over (not one cross-thread call each), and
        results come back through a queue that the loop fills as they finish."""
        requests = list(requests)
        done: queue.SimpleQueue = queue.SimpleQueue()
        tasks: list[asyncio.Task] = []

        async def schedule() -> None:
            for request in requests:
                task = asyncio.ensure_future(self._one(request))
                task.add_done_callback(done.put)
                tasks.append(task)

        self._call_soon(schedule()).result()
        waiting_since = time.monotonic()
        try:
            for waiting in range(len(requests), 0, -1):
                task = self._next_finished(done, waiting, waiting_since)
                if not task.cancelled():
                    yield task.result()
        finally:  # the caller stopped early, or the endpoint stalled: end the calls still running
            self._cancel_and_wait(tasks)

    def _next_finished(self, done: queue.SimpleQueue, waiting: int, since: float) -> asyncio.Task:
        """The next finished call; EndpointStalled when the endpoint has not answered for stall_s."""
        stall_s = self.config.stall_s
        while True:
            try:
                return done.get(timeout=min(1.0, stall_s / 4))
            except queue.Empty:
                idle = time.monotonic() - max(since, self._last_answer)
                if idle >= stall_s:
                    raise EndpointStalled(
                        f"{self.config.model} at {self.config.base_url or 'the OpenAI API'} has not answered for "
                        f"{idle:.0f} s (backend.stall_s: {stall_s:g}) while {waiting} calls wait: the stage stops; "
                        "what was answered is stored. Is the server stuck or overloaded?") from None

    def _cancel_and_wait(self, tasks: list[asyncio.Task]) -> None:
        """Cancel the calls still running and wait until they have ended: a task left pending when the
        loop closes is reported as 'Task was destroyed but it is pending!'."""
        with self._closing:
            if self._closed or all(task.done() for task in tasks):
                return
            try:
                self._call_soon(_cancel_all(tasks)).result(CANCEL_WAIT_S)
            except TimeoutError:
                log.warning("%s: calls still running %g s after being cancelled", self.identity, CANCEL_WAIT_S)

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._call_soon(self._shutdown()).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _shutdown(self) -> None:
        await _cancel_all([task for task in asyncio.all_tasks() if task is not asyncio.current_task()])
        await self._client.close()


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


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
    """A ChatResult from a chat completion (the client's object, online or parsed from a batch line).
    A completion without an answer in it (no choices, null content) is a failed call with its reason,
    never an answer with no text."""
    choices = getattr(response, "choices", None)
    if not choices:
        return ChatResult(key, error="malformed_response: a completion with no choices", latency_ms=latency_ms)
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        refusal = getattr(message, "refusal", None)
        return ChatResult(key, error=redact(f"malformed_response: a completion whose content is "
                                            f"{'null' if content is None else type(content).__name__} (finish_reason "
                                            f"{getattr(choice, 'finish_reason', None)!r}"
                                            f"{f', refusal {refusal[:200]!r}' if refusal else ''})"),
                          latency_ms=latency_ms)
    usage = getattr(response, "usage", None)
    tokens = _token_logprobs(choice) if want_logprobs else None
    return ChatResult(
        key,
        text=redact(content),
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
