"""The simulated platforms' clock: the wall clock plus an offset, so a test or the demo can put a
platform's "now" in the past (orders older than the ingest lag) or move it on (timeouts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SimClock:
    """Mixed into every marketplace simulator; ``start_clock(now)`` in its ``__init__``."""

    _offset: timedelta = timedelta(0)

    def start_clock(self, now: datetime | None) -> None:
        self._offset = (now - datetime.now(UTC)) if now is not None else timedelta(0)

    def now(self) -> datetime:
        """The simulator's clock (UTC): wall clock plus whatever ``set_now``/``advance`` added."""
        return datetime.now(UTC) + self._offset

    def set_now(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("set_now needs a timezone-aware datetime")
        self._offset = moment - datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)
