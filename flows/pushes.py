"""Marketplace pushes (Shopify webhooks, Douyin messages...) fed into the same order workflows as
the pulls.

A connector's ``handle_push`` verifies the platform's signature and turns a push into
``order_changed`` events; here each event is deduplicated by the platform's event id, matched to
every flow that has the connector as a source (a paused flow keeps it until resume), and handed
over exactly like a pulled order (:func:`workflows.ingest.handover.hand_over`), so the business
key makes pulls and pushes of one order meet in one workflow.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from temporalio.client import Client

from connectors.base import Connector, OrderSource, RawRecord
from flows.model import Flow
from flows.routes import route_for_source
from store import Store
from workflows.ingest.handover import hand_over

log = structlog.get_logger("tongdao.pushes")


async def ingest_pushed_order(client: Client, store: Store, task_queue: str, connector: Connector,
                              event: dict[str, Any], honour_pause: bool = True) -> str:
    """Hand one ``order_changed`` event to its order's workflow, for every flow that reads the
    connector. Returns duplicate, held, no_flow, or the hand-over outcome (started, signalled...)."""
    event_id = str(event.get("event_id") or "")
    if event_id and await asyncio.to_thread(store.push_event_seen, connector.name, event_id):
        log.info("push.duplicate", connector=connector.name, event_id=event_id)
        return "duplicate"
    flows = [(Flow.model_validate(row.definition), row.paused)
             for row in await asyncio.to_thread(store.list_flows)]
    matching = [(flow, paused, source) for flow, paused in flows for source in flow.sources
                if source.connector == connector.name]
    if not matching:
        log.warning("push.no_flow", connector=connector.name, external_id=event.get("external_id"))
        return "no_flow"
    record = await _record(connector, event)
    outcome = "held"
    for flow, paused, source in matching:
        if paused and honour_pause:
            await asyncio.to_thread(store.hold_push, flow.name, connector.name, event)
            continue
        route = await asyncio.to_thread(route_for_source, flow, source, store)
        outcome = await hand_over(client, store, task_queue, connector, record, route)
    if event_id:
        await asyncio.to_thread(store.mark_push_event, connector.name, event_id)
    log.info("push.ingested", connector=connector.name, external_id=record.external_id, outcome=outcome)
    return outcome


async def _record(connector: Connector, event: dict[str, Any]) -> RawRecord:
    """The order the push is about: as pushed, or fetched (most platforms push ids only)."""
    if event.get("record"):
        return RawRecord.model_validate(event["record"])
    if not isinstance(connector, OrderSource):
        raise ValueError(f"connector {connector.name!r} pushes orders but cannot fetch one")
    return await connector.get_order(str(event["external_id"]))


async def release_held_orders(client: Client, store: Store, task_queue: str, flow: str) -> int:
    """On resume: hand over the ``order_changed`` pushes kept while ``flow`` was paused."""
    from connectors.registry import instantiate

    released = 0
    for held in await asyncio.to_thread(store.held_pushes, flow):
        if held.event.get("type") != "order_changed":
            continue
        connector = await asyncio.to_thread(instantiate, store, held.connector)
        try:
            await ingest_pushed_order(client, store, task_queue, connector, held.event, honour_pause=False)
        finally:
            await connector.aclose()
        await asyncio.to_thread(store.release_push, held.id)
        released += 1
    return released
