"""What went wrong with one attempt at a chat-completions call, said plainly.

Each failure has a kind (stored as the call's error_kind, counted by the failure watch), a message
naming what happened ("connection refused at 127.0.0.1:8000", "an HTML page with status 200, not a
chat completion"), and whether another attempt may fare better. The openai client's own exceptions
are too coarse for this: behind its aiohttp transport a refused connection surfaces as a timeout.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import openai

RETRIED_STATUS = (408, 409, 429)  # and every 5xx: the server may answer the same request later
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is waited for this long, then the call is tried again
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 8.0
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass
class CallFailed(Exception):
    kind: str
    message: str
    retry: bool = False
    wait_s: float | None = None  # what the server asked for (Retry-After), else backoff

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def address(base_url: str | None) -> str:
    """host:port of an endpoint (the OpenAI API when no base_url)."""
    parts = urlsplit(base_url or "https://api.openai.com/v1")
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def backoff_s(attempt: int) -> float:
    """Exponential, with up to a quarter off so that calls failing together do not retry together."""
    return min(FIRST_BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S) * (1 - 0.25 * random.random())


def describe_text(text: str) -> str:
    """A body that is not a chat completion, in a few words: what it is and how it starts."""
    head = text.lstrip()[:200]
    if head.lower().startswith(("<!doctype html", "<html")) or "<body" in head.lower():
        title = _TITLE.search(text)
        shown = f" titled {title.group(1).strip()[:80]!r}" if title else f" starting {head[:80]!r}"
        return f"an HTML page{shown} (a proxy's error page?)"
    if head.startswith(("data:", "event:")):
        return f"a server-sent event stream (text/event-stream), though the call did not ask to stream: {head[:60]!r}"
    return f"{head[:120]!r}" if head else "an empty body"


def not_a_completion(body: object) -> CallFailed:
    """The client parsed the body into something else: text when it was not JSON at all."""
    shown = describe_text(body) if isinstance(body, str) else f"JSON of type {type(body).__name__}"
    return CallFailed("malformed_response", f"the answer is {shown}, not a chat completion", retry=True)


def unreadable_json(error: ValueError) -> CallFailed:
    return CallFailed("malformed_response", f"the answer is not valid JSON (cut short?): {error}", retry=True)


def status_failure(error: openai.APIStatusError) -> CallFailed:
    status = error.status_code
    body = _body_text(error)
    message = str(error) if _is_json(body) else f"HTTP {status} with {describe_text(body)}"
    retry = status in RETRIED_STATUS or status >= 500
    should_retry = error.response.headers.get("x-should-retry")  # the server's own word, when it gives one
    if should_retry in ("true", "false"):
        retry = should_retry == "true"
    kind = {400: "bad_request", 429: "rate_limited"}.get(status, "server_error" if status >= 500 else f"http_{status}")
    return CallFailed(kind, message, retry=retry, wait_s=retry_after_s(error.response.headers))


def retry_after_s(headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
        if value >= 0:
            return min(value, MAX_RETRY_AFTER_S)
    return None


def connection_failure(error: BaseException, base_url: str | None) -> CallFailed:
    """Why no answer came: the first cause in the exception's chain that says so."""
    where = address(base_url)
    for cause in _chain(error):
        if isinstance(cause, aiohttp.ClientConnectorDNSError):
            return CallFailed("connection", f"cannot resolve the host of {where}", retry=True)
        if isinstance(cause, aiohttp.ClientConnectorError):
            cause = cause.os_error  # aiohttp keeps the socket's own error beside the chain
        if isinstance(cause, ConnectionRefusedError):
            return CallFailed("connection", f"connection refused at {where} (nothing listens there)", retry=True)
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return CallFailed("connection", f"{where} closed the connection without answering", retry=True)
        if isinstance(cause, ConnectionResetError):
            return CallFailed("connection", f"{where} reset the connection", retry=True)
        if isinstance(cause, OSError) and not isinstance(cause, (aiohttp.ClientError, TimeoutError)):
            return CallFailed("connection", f"cannot connect to {where}: {cause.strerror or cause}", retry=True)
    if isinstance(error, openai.APITimeoutError):
        return CallFailed("timeout", f"{where} did not answer in time (the client's read timeout)", retry=True)
    return CallFailed("connection", f"{where}: {error} ({type(_chain(error)[-1]).__name__})", retry=True)


def _chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def _body_text(error: openai.APIStatusError) -> str:
    try:
        return error.response.text
    except Exception:  # noqa: BLE001 - a body that cannot be read is described as empty
        return ""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
