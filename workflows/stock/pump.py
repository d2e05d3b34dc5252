"""The channel pumps: per channel, push every SKU whose figures changed since that channel was last
shown them (the store's outbox), until the channel is caught up; then wait for the next change.

Why an outbox and a long-running activity rather than a signal per change: the change and its
"to be pushed" mark are committed in one transaction, so no crash between a commit and a signal can
lose a push; a burst of changes costs the workflow engine nothing (one heartbeat every half
second, not an event per sale); and each channel is paced on its own, so a slow or rate-limited
channel never holds up the others. In the worker process that made the change the pump wakes at
once; a pump in another process sees it at its next poll (0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from workflows.stock.propagate import push_batch

log = structlog.get_logger("tongdao.stock")

POLL_S = 0.5
PARALLEL = 8
BACKOFF_S = 1.0


class Waker:
    """Wakes the pumps of this process when the store commits a stock change (from any thread)."""

    def __init__(self) -> None:
        self._events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def event(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append((asyncio.get_running_loop(), event))
        return event

    def drop(self, event: asyncio.Event) -> None:
        self._events = [(loop, e) for loop, e in self._events if e is not event]

    def __call__(self, skus: list[str]) -> None:
        for loop, event in list(self._events):
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)


async def pump(store: Any, pool: Any, channel: str, *, run_for_s: float, wake: asyncio.Event,
               heartbeat: Callable[..., None]) -> int:
    """Push ``channel`` until it is caught up, again and again, for ``run_for_s``; the pushes made."""
    deadline = time.monotonic() + run_for_s
    pushes = 0
    while time.monotonic() < deadline:
        wake.clear()  # a change committed from here on wakes the wait below
        dirty = await asyncio.to_thread(store.stock_dirty, channel, 200)
        if not dirty:
            heartbeat(pushes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=POLL_S)
            continue
        written, retry = await push_batch(store, pool, channel, dirty)
        pushes += written
        heartbeat(pushes)
        if retry:
            await asyncio.sleep(BACKOFF_S)  # the platform said later: those SKUs stay dirty
    return pushes
