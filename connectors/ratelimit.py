"""An async token-bucket rate limiter that also obeys the platform's throttling signals.

One limiter is shared by every request of a connector instance, so concurrent activities in the
same worker stay within the platform's published limit; a throttle answer (429, Retry-After, a
platform 'call limited' code) pauses the whole bucket, not only the request that got it.
"""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rate_per_s: float | None, burst: int | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst if burst is not None else max(1, int(rate_per_s or 1)))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
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
        """Stop all requests for ``seconds`` (the platform said so)."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + max(0.0, seconds))
        self._tokens = 0
