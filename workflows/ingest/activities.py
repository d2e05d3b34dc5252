"""Activities of the ingest and backfill workflows: pull a window, store raw documents, hand each
order to its workflow (signal-with-start)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from canonical import order_key
from connectors.base import OrderSource
from connectors.errors import ConfigurationError, ConnectorError
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
        cursor = await asyncio.to_thread(self.store.get_cursor, inp.connector, inp.stream)
        return cursor or datetime.now(UTC) - inp.initial_lookback

    @activity.defn(name="ingest_window")
    async def ingest_window(self, win: IngestWindow) -> IngestCounts:
        """Pull [since, until), store raw documents, signal-with-start one workflow per order."""
        connector = await self.pool.get(win.connector)
        if not isinstance(connector, OrderSource):
            raise ConfigurationError(f"connector {win.connector!r} has no orders stream").to_application_error()
        channel = win.route.channel or connector.kind
        counts = IngestCounts()
        gate = asyncio.Semaphore(20)

        async def hand_over(record: Any) -> str:
            shop = win.route.shop or connector.shop_of(record.payload)
            key = order_key(channel, shop, record.external_id)
            raw_id = await asyncio.to_thread(self.store.put_raw, win.connector, "order", record.external_id,
                                             record.payload, record.modified_at)
            inp = OrderInput(key=key, channel=channel, shop=shop, external_id=record.external_id,
                             source=win.connector, raw_id=raw_id, route=win.route)
            async with gate:
                return await self._signal_with_start(OrderWorkflow, order_workflow_id(key), inp, raw_id)

        try:
            async for page in connector.pull_orders(win.since, win.until):
                outcomes = await asyncio.gather(*(hand_over(r) for r in page))
                counts.fetched += len(page)
                for outcome in outcomes:
                    setattr(counts, outcome, getattr(counts, outcome) + 1)
                activity.heartbeat(counts.model_dump())
        except ConnectorError as exc:
            raise exc.to_application_error() from exc
        if win.advance_cursor:
            await asyncio.to_thread(self.store.set_cursor, win.connector, win.stream, win.until)
        log.info("ingest.window", connector=win.connector, since=win.since.isoformat(), until=win.until.isoformat(),
                 **counts.model_dump())
        return counts

    async def _signal_with_start(self, wf: Any, wf_id: str, inp: OrderInput, raw_id: int) -> str:
        """Start the order's workflow, or tell the running one about this version of the order.

        The id is the business key and the conflict policy is FAIL with REJECT_DUPLICATE reuse, so a
        second start of the same order is refused by the server itself; the refused caller signals
        instead (and a finished order ignores a repeat pull entirely).
        """
        try:
            await self.client.start_workflow(
                wf.run, inp, id=wf_id, task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=search_attributes_for(inp),
            )
            return "started"
        except WorkflowAlreadyStartedError:
            pass
        try:
            await self.client.get_workflow_handle(wf_id).signal("order_seen", OrderSeen(raw_id=raw_id))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return "already_done"  # the order's workflow finished; a repeat pull changes nothing
            raise
        return "signalled"


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
