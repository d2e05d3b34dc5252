"""Activities of the ingest and backfill workflows: pull a window, store raw documents, hand each
order to its workflow (signal-with-start)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client

from connectors.base import OrderSource, RawRecord
from connectors.errors import ConfigurationError, ConnectorError
from connectors.pagination import time_windows
from connectors.registry import ConnectorPool
from store import Store
from workflows.ingest.handover import hand_over
from workflows.models import IngestCounts, IngestInput, IngestWindow

log = structlog.get_logger("tongdao.ingest")


class IngestActivities:
    def __init__(self, store: Store, pool: ConnectorPool, client: Client, task_queue: str) -> None:
        self.store = store
        self.pool = pool
        self.client = client
        self.task_queue = task_queue

    # -- ingest -----------------------------------------------------------------------------
    @activity.defn(name="load_cursor")
    async def load_cursor(self, inp: IngestInput) -> datetime:
        """Where this flow stopped reading this source (each flow keeps its own cursor)."""
        cursor = await asyncio.to_thread(self.store.get_cursor, inp.connector, inp.stream, inp.flow)
        return cursor or datetime.now(UTC) - inp.initial_lookback

    @activity.defn(name="ingest_window")
    async def ingest_window(self, win: IngestWindow) -> IngestCounts:
        """Pull [since, until), store raw documents, signal-with-start one workflow per order.

        The chunk is read window by window (``win.window`` wide): each page is handed over as soon
        as it is read, and after each window the progress is checkpointed (heartbeat details, and
        the flow's cursor for a live sync), so a retried attempt resumes after the last finished
        window instead of reading a peak day again from the start. A background heartbeat keeps
        the attempt alive while the platform is slow; a record the connector could not fetch for
        a permanent reason goes to its order workflow, which parks it with the error (the window
        moves on).
        """
        connector = await self.pool.get(win.connector)
        if not isinstance(connector, OrderSource):
            raise ConfigurationError(f"connector {win.connector!r} has no orders stream").to_application_error()
        counts, start = IngestCounts(), win.since
        resumed = _checkpoint(activity.info().heartbeat_details)
        if resumed is not None and win.since <= resumed[0] <= win.until:
            start, counts = resumed
            log.info("ingest.resumed", connector=win.connector, flow=win.flow, done_until=start.isoformat())
        progress: dict[str, Any] = {"done_until": start.isoformat(), "counts": counts.model_dump()}
        gate = asyncio.Semaphore(20)

        async def one(record: RawRecord) -> str:
            async with gate:
                return await hand_over(self.client, self.store, self.task_queue, connector, record, win.route)

        async def beat() -> None:
            while True:
                await asyncio.sleep(10)
                activity.heartbeat(progress)

        beating = asyncio.create_task(beat())
        try:
            for a, b in time_windows(start, win.until, win.window):
                async for page in connector.pull_orders(a, b):
                    outcomes = await asyncio.gather(*(one(r) for r in page))
                    counts.fetched += len(page)
                    for outcome in outcomes:
                        setattr(counts, outcome, getattr(counts, outcome) + 1)
                    progress["counts"] = counts.model_dump()
                    activity.heartbeat(progress)
                if win.advance_cursor:
                    await asyncio.to_thread(self.store.set_cursor, win.connector, win.stream, b, flow=win.flow)
                progress["done_until"] = b.isoformat()
                activity.heartbeat(progress)
        except ConnectorError as exc:
            raise exc.to_application_error() from exc
        finally:
            beating.cancel()
        log.info("ingest.window", connector=win.connector, flow=win.flow, since=win.since.isoformat(),
                 until=win.until.isoformat(), **counts.model_dump())
        return counts


def _checkpoint(details: Any) -> tuple[datetime, IngestCounts] | None:
    """The last finished window of a previous attempt (heartbeat details), if any."""
    try:
        data = details[0] if details else None
        if not isinstance(data, dict):
            return None
        done = datetime.fromisoformat(str(data["done_until"]))
        return done, IngestCounts.model_validate(data.get("counts") or {})
    except (KeyError, ValueError, TypeError, IndexError):
        return None
