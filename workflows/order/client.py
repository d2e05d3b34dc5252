"""Client-side calls to order workflows: what the API, the CLI and flows do to running orders.

They live below ``hub/`` so that ``flows`` (resume releases held pushes) and ``hub`` share one
implementation without importing upward.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from store import Store
from workflows import search
from workflows.models import OutboundStatus, ReplayRequest, shipment_info
from workflows.order.workflow import order_workflow_id

log = structlog.get_logger("tongdao.orders")


async def deliver_event(client: Client, store: Store, connector: str, event: dict[str, Any],
                        honour_pause: bool = True) -> str:
    """Signal the order workflow a push is about; hold it instead while the order's flow is paused.

    A validly signed push for an order code the hub does not know yet is kept and handed to the
    order's workflow when the order appears, never acknowledged and forgotten. Returns what
    happened: delivered, held, kept_until_known, already_closed or ignored.
    """
    kind = event.get("type")
    if kind not in ("shipment", "outbound_status"):
        log.info("hook.event_ignored", connector=connector, type=kind)
        return "ignored"
    code = str(event.get("order_code", ""))
    row = await asyncio.to_thread(store.order_by_hub_code, code)
    if row is None:
        pending = await asyncio.to_thread(store.keep_pending_push, connector, code, event)
        log.warning("hook.unknown_order_kept", connector=connector, order_code=code, pending_id=pending)
        return "kept_until_known"
    handle = client.get_workflow_handle(order_workflow_id(row.key))
    if honour_pause:
        try:
            flow = (await handle.describe()).typed_search_attributes.get(search.FLOW_NAME)
        except RPCError:
            flow = None
        flow_row = await asyncio.to_thread(store.get_flow, flow) if flow else None
        if flow_row is not None and flow_row.paused:
            await asyncio.to_thread(store.hold_push, flow, connector, event)
            log.info("hook.held", connector=connector, flow=flow, order_key=row.key)
            return "held"
    try:
        if kind == "shipment":
            await handle.signal("shipment", shipment_info(event))
        else:
            await handle.signal("outbound_status", OutboundStatus(
                status=str(event.get("status", "")), raw_status=str(event.get("raw_status", "")), order_code=code))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            log.info("hook.order_already_closed", connector=connector, order_key=row.key)
            return "already_closed"
        raise
    return "delivered"


async def request_replay(client: Client, store: Store, qid: int, actor: str) -> Any:
    """Ask a parked order's workflow to retry (CLI and API alike); mark the entry once it was told."""
    row = await asyncio.to_thread(store.get_quarantine, qid)
    if row is None:
        raise LookupError(f"no quarantine entry {qid}")
    if row.status == "resolved":
        raise ValueError(f"entry {qid} is already resolved")
    await client.get_workflow_handle(row.workflow_id).signal(
        "replay", ReplayRequest(quarantine_id=qid, requested_by=actor))
    await asyncio.to_thread(store.mark_replaying, qid)
    return row


async def release_held(client: Client, store: Store, flow: str) -> int:
    """Deliver, oldest first, the WMS pushes kept while ``flow`` was paused (marketplace
    ``order_changed`` pushes are released by ``flows.pushes.release_held_orders``)."""
    released = 0
    for held in await asyncio.to_thread(store.held_pushes, flow):
        if held.event.get("type") not in ("shipment", "outbound_status"):
            continue
        await deliver_event(client, store, held.connector, held.event, honour_pause=False)
        await asyncio.to_thread(store.release_push, held.id)
        released += 1
    return released
