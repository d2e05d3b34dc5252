"""Handing one pulled or pushed order to its workflow: store the raw document once, then
signal-with-start the order's workflow (one call, so no version is lost between a start and a
signal). Used by the ingest activity for pulls and by the API for marketplace pushes, so both
feed the same workflow the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from canonical import order_key
from connectors.base import Connector, RawRecord
from store import Store
from workflows import search
from workflows.models import OrderInput, OrderSeen, Route
from workflows.order import OrderWorkflow, order_workflow_id


async def hand_over(client: Client, store: Store, task_queue: str, connector: Connector, record: RawRecord,
                    route: Route) -> str:
    """Returns started, signalled, already_done or unreadable (a record the connector could not
    fetch: its workflow starts and parks it with the error)."""
    channel = route.channel or connector.channel or connector.kind
    shop = route.shop or connector.shop_of(record.payload)
    key = order_key(channel, shop, record.external_id)
    raw_id = await asyncio.to_thread(store.put_raw, connector.name, "order", record.external_id, record.payload,
                                     record.modified_at)
    inp = OrderInput(key=key, channel=channel, shop=shop, external_id=record.external_id, source=connector.name,
                     raw_id=raw_id, route=route, fetch_error=record.error or "")
    outcome = await signal_with_start(client, task_queue, inp, raw_id)
    return "unreadable" if record.error and outcome == "started" else outcome


async def signal_with_start(client: Client, task_queue: str, inp: OrderInput, raw_id: int) -> str:
    """Start the order's workflow with this version as its first signal, or signal the running one.

    The id is the business key. A completed order ignores a repeat (the reuse policy refuses a
    second run); an order whose workflow failed or was terminated is started again, so nothing is
    lost silently.
    """
    try:
        handle = await client.start_workflow(
            OrderWorkflow.run, inp, id=order_workflow_id(inp.key), task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=search_attributes_for(inp),
            start_signal="order_seen", start_signal_args=[OrderSeen(raw_id=raw_id)],
        )
    except WorkflowAlreadyStartedError:
        return "already_done"  # the order's workflow completed; a repeat changes nothing
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            return "already_done"
        raise
    response = getattr(handle, "_start_workflow_response", None)  # SignalWithStart...Response
    return "started" if getattr(response, "started", False) else "signalled"


def search_attributes_for(inp: OrderInput) -> Any:
    return TypedSearchAttributes([
        SearchAttributePair(search.CHANNEL, inp.channel),
        SearchAttributePair(search.SHOP, inp.shop),
        SearchAttributePair(search.EXTERNAL_ORDER_ID, inp.external_id),
        SearchAttributePair(search.CONNECTOR, inp.source),
        SearchAttributePair(search.STAGE, "received"),
        *([SearchAttributePair(search.FLOW_NAME, inp.route.flow),
           SearchAttributePair(search.FLOW_VERSION, inp.route.flow_version)] if inp.route.flow else []),
    ])
