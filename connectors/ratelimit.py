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
from typing import Protocol

from connectors.errors import ThrottledError


class SharedBudget(Protocol):
    """A token bucket shared by every worker process (the hub's store implements it).

    A platform's limit is per app or per shop, not per process: with several workers, each one's
    own bucket would together exceed it. ``take`` returns 0 when a token was taken, else the
    seconds until one will be; ``ban``/``banned_until`` share a platform-imposed pause (epoch s).
    """

    def take(self, key: str, rate: float, burst: float) -> float: ...

    def ban(self, key: str, until: float) -> None: ...

    def banned_until(self, key: str) -> float: ...


class RateLimiter:
    def __init__(self, rate_per_s: float | None, burst: int | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst if burst is not None else max(1, int(rate_per_s or 1)))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()
        self._shared: SharedBudget | None = None
        self._key = ""
        self._shared_checked = 0.0

    def share(self, key: str, budget: SharedBudget) -> None:
        """Count this limiter's tokens and bans in ``budget`` under ``key`` (e.g. the connector's
        name), so the limit holds across worker processes."""
        self._key, self._shared = key, budget

    def _sync_shared_ban(self) -> None:
        """Adopt a pause another process recorded (checked at most once a second)."""
        if self._shared is None or time.monotonic() - self._shared_checked < 1.0:
            return
        self._shared_checked = time.monotonic()
        remaining = self._shared.banned_until(self._key) - time.time()
        if remaining > 0:
            self._blocked_until = max(self._blocked_until, time.monotonic() + remaining)

    def ban_remaining(self) -> float:
        """Seconds left of the current platform-imposed pause (0 when none)."""
        self._sync_shared_ban()
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
                if self._shared is not None:
                    wait = await asyncio.to_thread(self._shared.take, self._key, self.rate, self.capacity)
                    if wait <= 0:
                        return
                    await asyncio.sleep(min(wait, 1.0))
                    continue
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
        if self._shared is not None and seconds > 0:
            try:
                self._shared.ban(self._key, time.time() + seconds)
            except Exception:  # the pause still holds in this process; the store is best effort here
                pass
