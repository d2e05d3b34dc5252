"""Token buckets in the hub's store, so a platform's rate limit holds across worker processes.

Each take is one compare-and-set on the bucket's row (``UPDATE … WHERE updated = <what we
read>``): no lock is held between processes, it works the same on SQLite and PostgreSQL, and a
lost race is simply read again. A few milliseconds per request, which is small next to a
platform call, and only for connectors with a rate limit set.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from store.db import Store
from store.tables import RateBucketRow


class StoreRateBudget:
    """Implements :class:`connectors.ratelimit.SharedBudget` on the store (``clock`` for tests)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def take(self, key: str, rate: float, burst: float) -> float:
        for _ in range(20):
            now = self.clock()
            with self.store.session() as s:
                row = s.get(RateBucketRow, key)
                seen = None if row is None else (row.tokens, row.updated, row.banned_until)
            if seen is None:
                try:
                    with self.store.session() as s:
                        s.add(RateBucketRow(key=key, tokens=burst - 1, updated=now, banned_until=0.0))
                    return 0.0
                except IntegrityError:  # another process created it first: read it again
                    continue
            tokens0, updated0, banned = seen
            if banned > now:
                return banned - now
            tokens = min(burst, tokens0 + max(0.0, now - updated0) * rate)
            if tokens < 1:
                return (1 - tokens) / rate
            with self.store.session() as s:
                done = s.execute(update(RateBucketRow)
                                 .where(RateBucketRow.key == key, RateBucketRow.updated == updated0,
                                        RateBucketRow.tokens == tokens0)
                                 .values(tokens=tokens - 1, updated=max(now, updated0)))
            if done.rowcount == 1:
                return 0.0
        return 1.0 / rate  # heavy contention: try again shortly

    def ban(self, key: str, until: float) -> None:
        with self.store.session() as s:
            row = s.get(RateBucketRow, key)
            if row is None:
                s.add(RateBucketRow(key=key, tokens=0.0, updated=self.clock(), banned_until=until))
            elif until > row.banned_until:
                row.banned_until, row.tokens = until, 0.0

    def banned_until(self, key: str) -> float:
        with self.store.session() as s:
            row = s.get(RateBucketRow, key)
            return row.banned_until if row else 0.0
