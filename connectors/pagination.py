"""Helpers for walking a platform's time windows and pages.

Platforms cap the width of a query window (Taobao: one day) and the page size; these helpers keep
that bookkeeping out of each connector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


def time_windows(since: datetime, until: datetime, max_width: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Split [since, until) into consecutive windows no wider than ``max_width``, oldest first."""
    if until <= since:
        return
    start = since
    while start < until:
        end = min(start + max_width, until)
        yield start, end
        start = end


async def pages_by_number(
    fetch: Callable[[int], Awaitable[tuple[list[T], bool]]], *, first: int = 1
) -> AsyncIterator[list[T]]:
    """Call ``fetch(page_no)`` → (items, has_next) until the platform says there is no next page."""
    page_no = first
    while True:
        items, has_next = await fetch(page_no)
        if items:
            yield items
        if not has_next or not items:
            return
        page_no += 1


async def pages_by_token(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
) -> AsyncIterator[list[T]]:
    """Call ``fetch(token)`` → (items, next_token) until no token is returned (cursor pagination)."""
    token: str | None = None
    while True:
        items, token = await fetch(token)
        if items:
            yield items
        if not token:
            return
