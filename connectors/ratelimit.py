"""An async token-bucket rate limiter that also obeys the platform's throttling signals.

One limiter is shared by every request of a connector instance, so concurrent activities in the
same worker stay within the platform's published limit; a throttle answer (429, Retry-After, a
platform 'call limited' code) pauses the whole bucket, not only the request that got it.

A pause ("ban") is only *waited out* when it is short. Temporal owns long waits: a caller passes
the longest sleep it may afford (``max_wait_s``, the HTTP client's short-retry budget) and, while
a longer ban lasts, :meth:`RateLimiter.acquire` raises :class:`ThrottledError` at once with
``retry_after`` set to what is left of the ban, so the activity fails fast and Temporal schedules
the next attempt (``next_retry_delay``) instead of a worker slot sleeping for minutes.
"""

from __future__ import annotations

import asyncio
import time

from connectors.errors import ThrottledError


class RateLimiter:
    def __init__(self, rate_per_s: float | None, burst: int | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst if burst is not None else max(1, int(rate_per_s or 1)))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def ban_remaining(self) -> float:
        """Seconds left of the current platform-imposed pause (0 when none)."""
        return max(0.0, self._blocked_until - time.monotonic())

    def _fail_if_banned_longer_than(self, max_wait_s: float | None) -> None:
        remaining = self.ban_remaining()
        if max_wait_s is not None and remaining > max_wait_s:
            raise ThrottledError(
                f"throttled by the platform for {remaining:.1f} more s; not waiting in-process",
                code="ban",
                retry_after=remaining,
            )

    async def acquire(self, max_wait_s: float | None = None) -> None:
        """Take one token; wait out a short ban, fail fast (ThrottledError) on a long one.

        ``max_wait_s=None`` keeps the old behaviour (always wait); the HTTP client always passes
        its short-retry budget. The ban is checked again after every sleep because another
        request may have lengthened it meanwhile (a second 429 with a bigger Retry-After).
        """
        self._fail_if_banned_longer_than(max_wait_s)  # without queueing behind the lock
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
                    self._fail_if_banned_longer_than(max_wait_s)
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                if self.rate is None:
                    return
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)

    def penalize(self, seconds: float) -> None:
        """Stop all requests for ``seconds`` (the platform said so); a longer ban is never shortened."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + max(0.0, seconds))
        self._tokens = 0
