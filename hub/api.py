"""The hub's HTTP API (OpenAPI at /docs): health, connectors, quarantine, and inbound pushes.

Every inbound push (marketplace webhooks, WMS confirmations) arrives at ``POST /hooks/{name}``;
the connector of that name verifies the platform's signature and tells us what to answer in the
platform's own format.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import AwareDatetime, BaseModel
from temporalio.service import RPCError

from connectors.base import PushReceiver
from connectors.errors import ConnectorError
from flows.pushes import ingest_pushed_order
from workflows.order.client import deliver_event, request_replay

if TYPE_CHECKING:
    from hub.runtime import HubRuntime

log = structlog.get_logger("tongdao.api")


class BackfillWindow(BaseModel):
    since: AwareDatetime
    until: AwareDatetime | None = None


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

    @app.get("/tasks")
    async def tasks(status: str = "open", kind: str | None = None, role: str | None = None,
                    older_than_s: float | None = None) -> list[dict[str, Any]]:
        """The task inbox: pending human steps (after-sales cases, tracking conflicts...)."""
        assert rt.store
        if status not in ("open", "done", "all"):
            raise HTTPException(422, "status must be open, done or all")
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s) if older_than_s else None
        rows = await asyncio.to_thread(rt.store.list_tasks, None if status == "all" else status, kind, role, cutoff)
        return [task_view(r) for r in rows]

    @app.post("/tasks/{task_id}/close")
    async def close_task(task_id: int) -> dict[str, Any]:
        assert rt.store
        row = await asyncio.to_thread(rt.store.close_task, task_id, "api")
        if row is None:
            raise HTTPException(404, f"no task {task_id}")
        return task_view(row)

    @app.post("/quarantine/{qid}/replay")
    async def replay(qid: int) -> dict[str, Any]:
        assert rt.store and rt.client
        try:
            row = await request_replay(rt.client, rt.store, qid, "api")
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"id": qid, "workflow_id": row.workflow_id, "status": "replaying"}

    def ops() -> Any:
        from flows.runtime import FlowOps

        assert rt.store
        return FlowOps(rt.client, rt.store, rt.settings.task_queue, "api")

    async def flow_call(op: str, *args: Any) -> Any:
        from flows.model import FlowError
        from flows.runtime import FlowNotFound

        try:
            return await getattr(ops(), op)(*args)
        except FlowNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except (FlowError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/flows")
    async def flows_list() -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_flows)
        return [{"name": r.name, "version": r.version, "paused": r.paused, "definition": r.definition,
                 "updated_at": r.updated_at, "updated_by": r.updated_by} for r in rows]

    @app.post("/flows")
    async def flows_add(definition: dict[str, Any]) -> dict[str, Any]:
        from flows.model import FlowError, parse_flow

        try:
            flow = parse_flow(definition)
        except FlowError as exc:
            raise HTTPException(422, str(exc)) from None
        return await flow_call("add", flow)

    @app.get("/flows/status")
    async def flows_status() -> list[dict[str, Any]]:
        return await flow_call("status")

    @app.get("/flows/{name}")
    async def flows_show(name: str) -> dict[str, Any]:
        assert rt.store
        row = await asyncio.to_thread(rt.store.get_flow, name)
        if row is None:
            raise HTTPException(404, f"no flow named {name!r}")
        return {"name": row.name, "version": row.version, "paused": row.paused, "definition": row.definition,
                "status": (await flow_call("status", name))[0]}

    @app.post("/flows/{name}/pause")
    async def flows_pause(name: str) -> dict[str, Any]:
        return await flow_call("pause", name)

    @app.post("/flows/{name}/resume")
    async def flows_resume(name: str) -> dict[str, Any]:
        return await flow_call("resume", name)

    @app.post("/flows/{name}/run-now")
    async def flows_run_now(name: str) -> dict[str, Any]:
        return await flow_call("run_now", name)

    @app.post("/flows/{name}/backfill")
    async def flows_backfill(name: str, window: BackfillWindow) -> dict[str, Any]:
        return await flow_call("backfill", name, window.since, window.until or datetime.now(UTC))

    @app.delete("/flows/{name}")
    async def flows_remove(name: str) -> dict[str, Any]:
        return await flow_call("remove", name)

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
        if result.status_code == 401:
            log.warning("hook.refused", connector=name, reason="signature")
        for event in result.events:
            try:
                if event.get("type") == "order_changed":
                    await ingest_pushed_order(rt.client, rt.store, rt.settings.task_queue, connector, event)
                else:
                    await dispatch_event(rt, name, event)
            except (RPCError, ConnectorError) as exc:  # Temporal or the platform unreachable: redeliver later
                log.error("hook.dispatch_failed", connector=name, error=str(exc)[:300])
                return Response("temporarily unavailable", status_code=503)
        return Response(result.body, status_code=result.status_code, media_type=result.media_type)

    return app


async def dispatch_event(rt: HubRuntime, connector: str, event: dict[str, Any]) -> str:
    assert rt.store and rt.client
    return await deliver_event(rt.client, rt.store, connector, event)


def quarantine_view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "order_key": r.order_key, "stage": r.stage, "reason": r.reason, "errors": r.errors,
            "mapping": r.mapping_name, "mapping_hash": r.mapping_hash, "status": r.status,
            "replay_count": r.replay_count, "workflow_id": r.workflow_id,
            "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}


def task_view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "order_key": r.order_key, "title": r.title, "details": r.details,
            "role": r.role, "status": r.status, "workflow_id": r.workflow_id, "ref": r.ref,
            "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat(),
            "closed_by": r.closed_by}
