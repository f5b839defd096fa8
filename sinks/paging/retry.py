"""Riding out 429s, 5xx and outages: error classes, exponential backoff with jitter, rate limits."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from spendwatch.sinks.paging.config import RetryConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeliveryError(Exception):
    """A receiver did not accept a notification."""


class TransientError(DeliveryError):
    """Try again later: 429, 5xx, connection refused, timeout. ``retry_after`` comes from the server."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Retrying cannot help (a 400, invalid_blocks, channel_not_found): goes to the dead-letter topic."""

    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.error_type = error_type


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form).

    >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, None, None)
    """
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Backoff:
    """Exponential backoff with full jitter; a server's Retry-After wins when longer."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        cap = min(self.config.max_backoff.total_seconds(),
                  self.config.initial_backoff.total_seconds() * self.config.multiplier ** self.attempt)
        self.attempt += 1
        delay = self.rng.uniform(cap / 2, cap)
        return max(delay, retry_after or 0.0)


async def retry_forever(call: Callable[[], Awaitable[T]], config: RetryConfig, what: str,
                        on_retry: Callable[[TransientError, float], None] | None = None) -> T:
    """Run ``call`` until it succeeds or fails permanently; transient errors are retried for ever."""
    backoff = Backoff(config)
    while True:
        try:
            return await call()
        except TransientError as exc:
            delay = backoff.next_delay(exc.retry_after)
            log.warning("%s: %s; retrying in %.1fs (attempt %d)", what, exc, delay, backoff.attempt)
            if on_retry:
                on_retry(exc, delay)
            await asyncio.sleep(delay)


class RateLimiter:
    """Token bucket: at most ``per_minute`` calls per minute, bursts up to ``burst``."""

    def __init__(self, per_minute: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, per_minute // 6))
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)
