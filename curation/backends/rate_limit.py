"""Client-side rate limits in requests and tokens per minute, for one asyncio loop.

Token buckets that hold one second of allowance and refill continuously: a run starts at once,
then holds the configured rate without bursts a provider would answer with 429.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, per_minute: float, clock=time.monotonic):
        self.rate = per_minute / 60.0  # units per second
        self.capacity = max(self.rate, 1.0)
        self._level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if now). A request larger than the bucket may go
        once the bucket is full, so one oversized request cannot block forever."""
        self._refill()
        needed = min(amount, self.capacity)
        return 0.0 if self._level >= needed else (needed - self._level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self._level -= amount  # may go negative: an oversized request is paid back before the next


class RateLimiter:
    """await limiter.acquire(tokens) before each request."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None):
        self._requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self._tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()  # first come, first served

    @property
    def active(self) -> bool:
        return self._requests is not None or self._tokens is not None

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        async with self._lock:
            while True:
                wait = max(self._requests.wait_time(1) if self._requests else 0.0,
                           self._tokens.wait_time(tokens) if self._tokens else 0.0)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._requests:
                self._requests.take(1)
            if self._tokens:
                self._tokens.take(tokens)


def estimate_request_tokens(messages: list[dict], max_tokens: int) -> int:
    """A provider counts prompt + max completion tokens against a TPM quota; ~4 characters a token."""
    characters = sum(len(str(message.get("content", ""))) for message in messages)
    return characters // 4 + max_tokens
