"""The hub's HTTP API (OpenAPI at /docs): health, connectors, quarantine, and inbound pushes.

Every inbound push (marketplace webhooks, WMS confirmations) arrives at ``POST /hooks/{name}``;
the connector of that name verifies the platform's signature and tells us what to answer in the
platform's own format.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from temporalio.service import RPCError

from connectors.base import PushReceiver
from connectors.errors import ConnectorError
from workflows.models import ReplayRequest, ShipmentInfo
from workflows.order import order_workflow_id

if TYPE_CHECKING:
    from hub.runtime import HubRuntime

log = structlog.get_logger("tongdao.api")


def create_app(rt: HubRuntime) -> FastAPI:
    app = FastAPI(title="Tongdao", version="0.1.0",
                  description="Headless integration hub for e-commerce operations")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "temporal": rt.settings.temporal_target}

    @app.get("/connectors")
    async def connectors() -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_connectors)
        return [{"name": r.name, "kind": r.kind, "updated_at": r.updated_at, "updated_by": r.updated_by}
                for r in rows]

    @app.get("/quarantine")
    async def quarantine(status: str = "open") -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_quarantine, status or None)
        return [quarantine_view(r) for r in rows]

    @app.post("/quarantine/{qid}/replay")
    async def replay(qid: int) -> dict[str, Any]:
        assert rt.store and rt.client
        row = await asyncio.to_thread(rt.store.mark_replaying, qid)
        if row is None:
            raise HTTPException(404, f"no quarantine entry {qid}")
        await rt.client.get_workflow_handle(row.workflow_id).signal("replay", ReplayRequest(quarantine_id=qid))
        return {"id": qid, "workflow_id": row.workflow_id, "status": "replaying"}

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Response:
        assert rt.pool and rt.store and rt.client
        try:
            connector = await rt.pool.get(name)
        except ConnectorError:
            raise HTTPException(404, f"no connector named {name!r}") from None
        if not isinstance(connector, PushReceiver):
            raise HTTPException(404, f"connector {name!r} takes no pushes")
        body = await request.body()
        result = await connector.handle_push(dict(request.headers), dict(request.query_params), body)
        for event in result.events:
            try:
                await dispatch_event(rt, name, event)
            except RPCError as exc:  # Temporal unreachable: make the platform retry later
                log.error("hook.dispatch_failed", connector=name, error=str(exc))
                return Response("temporarily unavailable", status_code=503)
        return Response(result.body, status_code=result.status_code, media_type=result.media_type)

    return app


async def dispatch_event(rt: HubRuntime, connector: str, event: dict[str, Any]) -> None:
    assert rt.store and rt.client
    if event.get("type") != "shipment":
        log.info("hook.event_ignored", connector=connector, type=event.get("type"))
        return
    row = await asyncio.to_thread(rt.store.order_by_hub_code, str(event.get("order_code", "")))
    if row is None:
        log.warning("hook.unknown_order", connector=connector, order_code=event.get("order_code"))
        return
    data = event["shipment"]
    info = ShipmentInfo(carrier_code=data["carrier_code"], tracking_number=data["tracking_number"],
                        shipped_at=data["shipped_at"], warehouse=data.get("warehouse", ""), source="push")
    try:
        await rt.client.get_workflow_handle(order_workflow_id(row.key)).signal("shipment", info)
    except RPCError as exc:
        if "completed" in str(exc).lower() or "not found" in str(exc).lower():
            log.info("hook.order_already_closed", connector=connector, order_key=row.key)
            return
        raise


def quarantine_view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "order_key": r.order_key, "stage": r.stage, "reason": r.reason, "errors": r.errors,
            "mapping": r.mapping_name, "mapping_hash": r.mapping_hash, "status": r.status,
            "replay_count": r.replay_count, "workflow_id": r.workflow_id,
            "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}
