"""Activities of the ingest and backfill workflows: pull a window, store raw documents, hand each
order to its workflow (signal-with-start)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from canonical import order_key
from connectors.base import OrderSource, RawRecord
from connectors.errors import ConfigurationError, ConnectorError
from connectors.pagination import time_windows
from connectors.registry import ConnectorPool
from store import Store
from workflows import search
from workflows.models import IngestCounts, IngestInput, IngestWindow, OrderInput, OrderSeen
from workflows.order import OrderWorkflow, order_workflow_id

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
        channel = win.route.channel or connector.channel or connector.kind
        counts, start = IngestCounts(), win.since
        resumed = _checkpoint(activity.info().heartbeat_details)
        if resumed is not None and win.since <= resumed[0] <= win.until:
            start, counts = resumed
            log.info("ingest.resumed", connector=win.connector, flow=win.flow, done_until=start.isoformat())
        progress: dict[str, Any] = {"done_until": start.isoformat(), "counts": counts.model_dump()}
        gate = asyncio.Semaphore(20)

        async def hand_over(record: RawRecord) -> str:
            shop = win.route.shop or connector.shop_of(record.payload)
            key = order_key(channel, shop, record.external_id)
            raw_id = await asyncio.to_thread(self.store.put_raw, win.connector, "order", record.external_id,
                                             record.payload, record.modified_at)
            inp = OrderInput(key=key, channel=channel, shop=shop, external_id=record.external_id,
                             source=win.connector, raw_id=raw_id, route=win.route, fetch_error=record.error or "")
            async with gate:
                outcome = await self._signal_with_start(order_workflow_id(key), inp, raw_id)
            return "unreadable" if record.error and outcome == "started" else outcome

        async def beat() -> None:
            while True:
                await asyncio.sleep(10)
                activity.heartbeat(progress)

        beating = asyncio.create_task(beat())
        try:
            for a, b in time_windows(start, win.until, win.window):
                async for page in connector.pull_orders(a, b):
                    outcomes = await asyncio.gather(*(hand_over(r) for r in page))
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

    async def _signal_with_start(self, wf_id: str, inp: OrderInput, raw_id: int) -> str:
        """Start the order's workflow with this version as its first signal, or signal the running
        one - one call (signal-with-start), so no version is lost between a start and a signal.

        The id is the business key. A completed order ignores a repeat pull (the reuse policy
        refuses a second run); an order whose workflow failed or was terminated is started again,
        so nothing is lost silently.
        """
        try:
            handle = await self.client.start_workflow(
                OrderWorkflow.run, inp, id=wf_id, task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=search_attributes_for(inp),
                start_signal="order_seen", start_signal_args=[OrderSeen(raw_id=raw_id)],
            )
        except WorkflowAlreadyStartedError:
            return "already_done"  # the order's workflow completed; a repeat pull changes nothing
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                return "already_done"
            raise
        response = getattr(handle, "_start_workflow_response", None)  # SignalWithStart...Response
        return "started" if getattr(response, "started", False) else "signalled"


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


def search_attributes_for(inp: OrderInput) -> Any:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    return TypedSearchAttributes([
        SearchAttributePair(search.CHANNEL, inp.channel),
        SearchAttributePair(search.SHOP, inp.shop),
        SearchAttributePair(search.EXTERNAL_ORDER_ID, inp.external_id),
        SearchAttributePair(search.CONNECTOR, inp.source),
        SearchAttributePair(search.STAGE, "received"),
        *([SearchAttributePair(search.FLOW_NAME, inp.route.flow),
           SearchAttributePair(search.FLOW_VERSION, inp.route.flow_version)] if inp.route.flow else []),
    ])
