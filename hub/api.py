"""The hub's HTTP API (OpenAPI at /docs): health, connectors, flows, quarantine, tasks, tokens,
and inbound pushes.

Every route but ``/health``, the OpenAPI document and the pushes needs a bearer token whose role
allows the call (:mod:`hub.auth`). Every inbound push (marketplace webhooks, WMS confirmations)
arrives at ``POST /hooks/{name}``; the connector of that name verifies the platform's signature
and tells us what to answer in the platform's own format; a body over ``TONGDAO_MAX_PUSH_BYTES``
is refused before it is read whole.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qs

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.service import RPCError

from connectors.base import PushReceiver
from connectors.errors import ConnectorError
from connectors.registry import ConnectorPool
from flows.pushes import ingest_pushed_order
from hub.auth import ADMIN, CODEC_COOKIE, OPERATE, READ, Caller, requires
from hub.settings import Settings
from store import Store
from worker.codec import PayloadCodecError, payloads_from_json, payloads_to_json
from workflows.decisions.client import NotDecidable, decide
from workflows.decisions.models import Decision
from workflows.order.client import deliver_event, request_replay
from workflows.stock.client import apply_stock_change


class HubRuntime(Protocol):
    """What the API needs of the running hub (:class:`hub.runtime.HubRuntime` is one)."""

    settings: Settings
    store: Store | None
    client: Client | None
    pool: ConnectorPool | None

log = structlog.get_logger("tongdao.api")


class BackfillWindow(BaseModel):
    since: AwareDatetime
    until: AwareDatetime | None = None


class TokenRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
    role: str = Field(pattern=r"^(admin|operator|auditor)$")


#: a store row id (SQLite and PostgreSQL keys are 64-bit): larger numbers are a 422, not a driver error
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
#: the longest age a query may ask about (100 years): a datetime can go no further back than year 1
MAX_AGE_S = 100 * 366 * 86400


class PushTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes without holding more than that in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PushTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PushTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(rt: HubRuntime) -> FastAPI:
    app = FastAPI(title="Tongdao", version="0.1.0",
                  description="Headless integration hub for e-commerce operations. Every route except /health, "
                              "this document and POST /hooks/{connector} needs `Authorization: Bearer TOKEN` "
                              "(tongdao tokens create NAME --role admin|operator|auditor).")

    def store() -> Any:
        assert rt.store
        return rt.store

    def temporal() -> Client:
        """The Temporal client, or a clean 503 while the hub is not connected to Temporal."""
        if rt.client is None:
            raise HTTPException(503, TEMPORAL_DOWN)
        return rt.client

    read, operate, admin = (Depends(requires(roles, store)) for roles in (READ, OPERATE, ADMIN))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "temporal": rt.settings.temporal_target}

    @app.get("/connectors")
    async def connectors(caller: Caller = read) -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_connectors)
        return [{"name": r.name, "kind": r.kind, "updated_at": r.updated_at, "updated_by": r.updated_by}
                for r in rows]

    @app.get("/quarantine")
    async def quarantine(status: str = "open", caller: Caller = read) -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_quarantine, status or None)
        return [quarantine_view(r) for r in rows]

    @app.get("/tasks")
    async def tasks(status: str = "open", kind: str | None = None, role: str | None = None,
                    older_than_s: Annotated[float | None, Query(ge=0, le=MAX_AGE_S)] = None,
                    caller: Caller = read) -> list[dict[str, Any]]:
        """The task inbox: pending human steps (after-sales cases, tracking conflicts...)."""
        assert rt.store
        if status not in ("open", "done", "all"):
            raise HTTPException(422, "status must be open, done or all")
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s) if older_than_s else None
        rows = await asyncio.to_thread(rt.store.list_tasks, None if status == "all" else status, kind, role, cutoff)
        return [task_view(r) for r in rows]

    @app.post("/tasks/{task_id}/close")
    async def close_task(task_id: RowId, caller: Caller = operate) -> dict[str, Any]:
        assert rt.store
        row = await asyncio.to_thread(rt.store.close_task, task_id, caller.actor)
        if row is None:
            raise HTTPException(404, f"no task {task_id}")
        return task_view(row)

    @app.post("/tasks/{task_id}/decide")
    async def decide_task(task_id: RowId, body: DecideBody, caller: Caller = operate) -> dict[str, Any]:
        """Approve, reject, or edit and release the order waiting on an approval or review task.

        The answer comes from the order's workflow (a Temporal update): 409 when it waits for no
        decision. Who decided is the token's name; ``role`` is the business role acted in."""
        assert rt.store
        decision = Decision(action=body.action, actor=caller.actor, comment=body.comment, role=body.role,
                            warehouse=body.warehouse, carrier=body.carrier)
        try:
            result = await decide(temporal(), rt.store, task_id, decision)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except NotDecidable as exc:
            raise HTTPException(409, str(exc)) from None
        return {"task": task_id, **result.model_dump()}

    @app.post("/quarantine/{qid}/replay")
    async def replay(qid: RowId, caller: Caller = operate) -> dict[str, Any]:
        assert rt.store
        try:
            row = await request_replay(temporal(), rt.store, qid, caller.actor)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"id": qid, "workflow_id": row.workflow_id, "status": "replaying"}

    def ops(actor: str) -> Any:
        from flows.runtime import FlowOps

        assert rt.store
        return FlowOps(rt.client, rt.store, rt.settings.task_queue, actor)

    async def flow_call(caller: Caller, op: str, *args: Any) -> Any:
        from flows.model import FlowError
        from flows.runtime import FlowNotFound

        if op in FLOW_OPS_ON_TEMPORAL:
            temporal()
        try:
            return await getattr(ops(caller.actor), op)(*args)
        except FlowNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except (FlowError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/flows")
    async def flows_list(caller: Caller = read) -> list[dict[str, Any]]:
        assert rt.store
        rows = await asyncio.to_thread(rt.store.list_flows)
        return [{"name": r.name, "version": r.version, "paused": r.paused, "definition": r.definition,
                 "updated_at": r.updated_at, "updated_by": r.updated_by} for r in rows]

    @app.post("/flows")
    async def flows_add(definition: dict[str, Any], caller: Caller = admin) -> dict[str, Any]:
        from flows.model import FlowError, parse_flow

        try:
            flow = parse_flow(definition)
        except FlowError as exc:
            raise HTTPException(422, str(exc)) from None
        result = await flow_call(caller, "add", flow)
        return result

    @app.get("/flows/status")
    async def flows_status(caller: Caller = read) -> list[dict[str, Any]]:
        return await flow_call(caller, "status")

    @app.get("/flows/{name}")
    async def flows_show(name: str, caller: Caller = read) -> dict[str, Any]:
        assert rt.store
        row = await asyncio.to_thread(rt.store.get_flow, name)
        if row is None:
            raise HTTPException(404, f"no flow named {name!r}")
        return {"name": row.name, "version": row.version, "paused": row.paused, "definition": row.definition,
                "status": (await flow_call(caller, "status", name))[0]}

    @app.post("/flows/{name}/pause")
    async def flows_pause(name: str, caller: Caller = operate) -> dict[str, Any]:
        return await flow_call(caller, "pause", name)

    @app.post("/flows/{name}/resume")
    async def flows_resume(name: str, caller: Caller = operate) -> dict[str, Any]:
        return await flow_call(caller, "resume", name)

    @app.post("/flows/{name}/run-now")
    async def flows_run_now(name: str, caller: Caller = operate) -> dict[str, Any]:
        return await flow_call(caller, "run_now", name)

    @app.post("/flows/{name}/backfill")
    async def flows_backfill(name: str, window: BackfillWindow, caller: Caller = operate) -> dict[str, Any]:
        return await flow_call(caller, "backfill", name, window.since, window.until or datetime.now(UTC))

    @app.delete("/flows/{name}")
    async def flows_remove(name: str, caller: Caller = admin) -> dict[str, Any]:
        result = await flow_call(caller, "remove", name)
        return result

    # -- connectors (admin; secrets are write-only) -----------------------------------------------
    @app.post("/connectors")
    async def connectors_add(registration: dict[str, Any], caller: Caller = admin) -> dict[str, Any]:
        """Register or update a connector: ``{"name", "kind", "settings", "secrets"}``. Secrets are
        stored encrypted and never returned."""
        from connectors.registry import Registration, register

        try:
            reg = Registration.model_validate(registration)
            created = await asyncio.to_thread(register, store(), reg, caller.actor)
        except (ValueError, ConnectorError) as exc:
            raise HTTPException(422, str(exc)[:1000]) from None
        await asyncio.to_thread(store().audit, caller.actor, "connector.save", reg.name,
                                {"kind": reg.kind, "secrets": sorted(reg.secrets)})
        return {"name": reg.name, "kind": reg.kind, "created": created,
                "callback_url": rt.settings.callback_url(reg.name)}

    @app.get("/connectors/{name}")
    async def connectors_show(name: str, caller: Caller = read) -> dict[str, Any]:
        from connectors.registry import instantiate

        try:
            return (await asyncio.to_thread(instantiate, store(), name)).describe()
        except ConnectorError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/connectors/{name}/test")
    async def connectors_test(name: str, caller: Caller = admin) -> dict[str, Any]:
        from connectors.registry import instantiate

        try:
            connector = await asyncio.to_thread(instantiate, store(), name)
        except ConnectorError as exc:
            raise HTTPException(404, str(exc)) from None
        try:
            return {"name": name, "ok": True, "message": await connector.test()}
        except ConnectorError as exc:
            return {"name": name, "ok": False, "error": exc.type_name, "message": str(exc)[:500]}
        finally:
            await connector.aclose()

    @app.delete("/connectors/{name}")
    async def connectors_remove(name: str, caller: Caller = admin) -> dict[str, Any]:
        removed = await asyncio.to_thread(store().remove_connector, name)
        if not removed:
            raise HTTPException(404, f"no connector named {name!r}")
        await asyncio.to_thread(store().audit, caller.actor, "connector.remove", name, {})
        return {"name": name, "removed": True}

    # -- tokens (admin) -------------------------------------------------------------------------------
    @app.post("/tokens")
    async def tokens_create(request: TokenRequest, caller: Caller = admin) -> dict[str, Any]:
        """A new token, shown once in this answer (only its hash is kept)."""
        try:
            token = await asyncio.to_thread(store().create_token, request.name, request.role, caller.actor)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"name": request.name, "role": request.role, "token": token}

    @app.get("/tokens")
    async def tokens_list(caller: Caller = admin) -> list[dict[str, Any]]:
        return [token_view(r) for r in await asyncio.to_thread(store().list_tokens)]

    @app.delete("/tokens/{name}")
    async def tokens_revoke(name: str, caller: Caller = admin) -> dict[str, Any]:
        if not await asyncio.to_thread(store().revoke_token, name, caller.actor):
            raise HTTPException(404, f"no active token named {name!r}")
        return {"name": name, "revoked": True}

    @app.get("/audit/config")
    async def config_audit(limit: int = 200, caller: Caller = read) -> list[dict[str, Any]]:
        """The append-only log of configuration changes, newest first."""
        rows = await asyncio.to_thread(store().audit_log, max(1, min(limit, 5000)))
        return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "subject": r.subject,
                 "details": r.details} for r in rows]

    # -- audit timelines (read: auditor, operator, admin; personal data is never in them) -----------------
    async def audit_call(coro: Any) -> Any:
        try:
            return await coro
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except RPCError as exc:
            raise HTTPException(503, f"Temporal: {exc.message[:300]}") from None

    @app.get("/audit/orders/{channel}/{shop}/{external_id}")
    async def audit_order(channel: str, shop: str, external_id: str, caller: Caller = read) -> dict[str, Any]:
        """The order's timeline: every run of its workflow (Temporal, else the archive) and the hub store."""
        from workflows.audit.timeline import order_timeline

        timeline = await audit_call(order_timeline(rt.client, store(), channel, shop, external_id))
        return timeline.model_dump(mode="json")

    @app.get("/audit/orders/{channel}/{shop}/{external_id}/export")
    async def audit_order_export(channel: str, shop: str, external_id: str, caller: Caller = read) -> dict[str, Any]:
        """The timeline and the raw histories (encrypted as Temporal stored them), to keep."""
        from canonical import order_key
        from workflows.audit.client import export_orders

        key = order_key(channel, shop, external_id)
        return await audit_call(export_orders(rt.client, store(), [key], caller.actor))

    @app.get("/audit/skus/{sku}")
    async def audit_sku(sku: str, limit: int = 20, caller: Caller = read) -> dict[str, Any]:
        """The orders that held a SKU, each with its timeline (``limit`` of them)."""
        from workflows.audit.timeline import sku_timelines

        return await audit_call(sku_timelines(rt.client, store(), sku, rt.settings.task_queue,
                                              max(1, min(limit, 500))))

    @app.get("/audit/specs/{digest}")
    async def audit_spec(digest: str, caller: Caller = read) -> dict[str, Any]:
        """The text of the mapping spec with this content hash (or a unique prefix of 8+ digits)."""
        try:
            row = await asyncio.to_thread(store().get_spec_text, digest)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        if row is None:
            raise HTTPException(404, f"no mapping spec text with hash {digest!r}")
        return {"hash": row.content_hash, "name": row.name, "source": row.source,
                "first_seen_at": row.first_seen_at.isoformat(), "text": row.text}

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Response:
        # the size is checked first: a huge body is refused before anything else is done with it
        try:
            body = await read_limited(request, rt.settings.max_push_bytes)
        except PushTooLarge:
            log.warning("hook.too_large", connector=name, limit=rt.settings.max_push_bytes)
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        if rt.pool is None or rt.store is None:
            raise HTTPException(503, "the hub takes no pushes yet (starting); redeliver later")
        temporal()  # nowhere to deliver the push: 503, so that the platform redelivers it
        try:
            connector = await rt.pool.get(name)
        except ConnectorError:
            raise HTTPException(404, f"no connector named {name!r}") from None
        if not isinstance(connector, PushReceiver):
            raise HTTPException(404, f"connector {name!r} takes no pushes")
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

    # -- codec server: the Temporal CLI (--codec-endpoint API/codec) and Web UI decrypt payloads here ---------
    codec_origins = set(rt.settings.codec_origins)
    codec_roles = {"decode": requires(CODEC_DECODE, store, cookie=CODEC_COOKIE),
                   "encode": requires(OPERATE, store, cookie=CODEC_COOKIE)}

    @app.get("/codec-login", include_in_schema=False)
    async def codec_login_form() -> Response:
        """A sign-in page for the Temporal Web UI's users: the token goes into an HttpOnly cookie
        that the UI's codec requests carry (no token in a URL, none readable by page scripts)."""
        return HTMLResponse(CODEC_LOGIN_PAGE)

    @app.post("/codec-login", include_in_schema=False)
    async def codec_login(request: Request) -> Response:
        form = await request.body()
        token = parse_qs(form.decode("utf-8", "replace")).get("token", [""])[0].strip()
        found = await asyncio.to_thread(store().token_role, token) if token else None
        if found is None or found[1] not in CODEC_DECODE:
            log.warning("codec.login_refused", reason="unknown token" if found is None else f"role {found[1]}")
            return HTMLResponse(CODEC_LOGIN_PAGE.replace("<!--msg-->", "<p>Refused: an admin or auditor token "
                                                        "is needed.</p>"), status_code=401)
        log.info("codec.login", actor=f"token:{found[0]}")
        page = HTMLResponse(CODEC_SIGNED_IN.format(api=rt.settings.api_url))
        page.set_cookie(CODEC_COOKIE, token, max_age=8 * 3600, httponly=True, secure=True, samesite="none",
                        path="/codec")
        return page

    @app.post("/codec-logout", include_in_schema=False)
    async def codec_logout() -> Response:
        page = HTMLResponse("<p>Signed out of the codec server.</p>")
        page.delete_cookie(CODEC_COOKIE, path="/codec", secure=True, httponly=True, samesite="none")
        return page

    @app.options("/codec/{op}", include_in_schema=False)
    async def codec_preflight(op: str, request: Request) -> Response:
        """CORS preflight of the Web UI (a browser page on another origin); only the configured origins."""
        cors = codec_cors(request, codec_origins)
        if op not in codec_roles or not cors:
            return Response("origin not allowed", status_code=403)
        return Response(status_code=204, headers={**cors, "Access-Control-Allow-Methods": "POST, OPTIONS",
                                                  "Access-Control-Allow-Headers": "Authorization, Content-Type, "
                                                  "X-Namespace", "Access-Control-Max-Age": "600"})

    async def codec_call(op: str, request: Request) -> Response:
        # the role check runs here, not as a dependency, so that a 401/403 carries the CORS headers too and
        # the Web UI can show it instead of an opaque network error
        cors = codec_cors(request, codec_origins)
        try:
            caller = await codec_roles[op](request)
            try:
                payloads = payloads_from_json(await request.json())
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            if rt.client is None:
                raise HTTPException(503, TEMPORAL_DOWN)
            codec = rt.client.data_converter.payload_codec
            try:
                if codec is not None:
                    payloads = await (codec.decode(payloads) if op == "decode" else codec.encode(payloads))
            except PayloadCodecError as exc:
                raise HTTPException(422, str(exc)) from None
        except HTTPException as exc:
            headers = {**(exc.headers or {}), **cors}
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        log.info(f"codec.{op}", actor=caller.actor, payloads=len(payloads),
                 namespace=request.headers.get("x-namespace"))
        return JSONResponse(payloads_to_json(payloads), headers=cors)

    @app.post("/codec/decode")
    async def codec_decode(request: Request) -> Response:
        """Temporal codec-server protocol: ``{"payloads": [...]}`` (base64) decrypted. Role admin or auditor."""
        return await codec_call("decode", request)

    @app.post("/codec/encode")
    async def codec_encode(request: Request) -> Response:
        """Temporal codec-server protocol: payloads encrypted with the active key. Role admin or operator."""
        return await codec_call("encode", request)

    document_errors(app)
    return app


TEMPORAL_DOWN = "Temporal is not reachable: the hub cannot do this now (start it with `tongdao up`, or retry later)"
#: FlowOps calls that act on Temporal schedules or workflows (the others read or write the store)
FLOW_OPS_ON_TEMPORAL = frozenset({"pause", "resume", "run_now", "backfill"})


class ErrorAnswer(BaseModel):
    """A refused call: why, in ``detail`` (input that fails validation: one entry per problem)."""

    detail: str | list[dict[str, Any]]


ERRORS = {400: "Malformed request", 401: "Missing, unknown or revoked API token",
          403: "The token's role may not do this", 404: "Not found", 409: "Conflicts with the current state",
          413: "Request body too large", 422: "Invalid input", 503: TEMPORAL_DOWN}
#: answers beyond 401/403 (guarded routes), 404 (path parameters) and 422 (input) that a route may give
EXTRA_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/quarantine/{qid}/replay"): (409, 503), ("POST", "/tokens"): (409,),
    ("POST", "/tasks/{task_id}/decide"): (409, 503),
    **{("POST", f"/flows/{{name}}/{op}"): (503,) for op in ("pause", "resume", "run-now", "backfill")},
    ("POST", "/hooks/{name}"): (413, 503),
    **{("POST", f"/codec/{op}"): (400, 401, 403, 422, 503) for op in ("decode", "encode")},
    **{("GET", path): (503,) for path in ("/audit/orders/{channel}/{shop}/{external_id}",
                                          "/audit/orders/{channel}/{shop}/{external_id}/export", "/audit/skus/{sku}")},
    ("GET", "/audit/specs/{digest}"): (409,),
}


def document_errors(app: FastAPI) -> None:
    """Put the error answers each route can give into the OpenAPI document (``{"detail": ...}``), and
    the bearer token on the routes that need one."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        guarded = any(getattr(d.call, "__qualname__", "").startswith("requires.") for d in route.dependant.dependencies)
        codes = {code for method in route.methods for code in EXTRA_ERRORS.get((method, route.path), ())}
        codes |= {401, 403} if guarded else set()
        if route.dependant.path_params:
            codes |= {404, 422}
        if route.dependant.query_params or route.body_field is not None:
            codes |= {400, 422} if route.body_field is not None else {422}
        for code in codes:
            route.responses.setdefault(code, {"description": ERRORS[code], "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}})
        if guarded or 401 in codes:
            route.openapi_extra = {**(route.openapi_extra or {}), "security": [{"bearer": []}]}
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = build().setdefault("components", {})
            components.setdefault("schemas", {})["ErrorAnswer"] = ErrorAnswer.model_json_schema()
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer", "description": "tongdao tokens create NAME --role ..."}
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


CODEC_DECODE = frozenset({"admin", "auditor"})  # reading order data in clear; operators act, they need not read it


CODEC_LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>Tongdao codec sign-in</title>
<h1>Decode payloads in the Temporal Web UI</h1><!--msg-->
<form method="post" action="/codec-login"><label>API token (admin or auditor):
<input type="password" name="token" autocomplete="off" required></label> <button>Sign in</button></form>
<p>The token is kept in an HttpOnly cookie for this API's <code>/codec</code> paths for 8 hours.</p>"""

CODEC_SIGNED_IN = """<!doctype html><meta charset="utf-8"><title>Signed in</title>
<h1>Signed in to the codec server</h1>
<p>In the Temporal Web UI, open the codec settings (Data Encoder), set the endpoint to
<code>{api}/codec</code> and turn on <em>Include cross-origin credentials</em>. Payloads of this hub
are then shown decrypted to you, and to no one without a token.</p>
<form method="post" action="/codec-logout"><button>Sign out</button></form>"""


def codec_cors(request: Request, origins: set[str]) -> dict[str, str]:
    """CORS headers for a request from one of ``origins`` (the Temporal Web UI), else none."""
    origin = request.headers.get("origin", "").rstrip("/")
    if origin not in origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


async def dispatch_event(rt: HubRuntime, connector: str, event: dict[str, Any]) -> str:
    assert rt.store and rt.client
    if event.get("type") == "stock_change":
        return await apply_stock_change(rt.client, rt.store, rt.settings.task_queue, connector, event)
    return await deliver_event(rt.client, rt.store, connector, event)


class DecideBody(BaseModel):
    """A decision on an approval or review task."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "reject", "edit"]
    comment: str = Field("", max_length=1000)
    role: str = Field("", max_length=60, description="business role acted in (director, cfo...)")
    warehouse: str = Field("", max_length=60, description="edit: ship from this warehouse code")
    carrier: str = Field("", max_length=30, description="edit: ship with this carrier code")


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


def token_view(r: Any) -> dict[str, Any]:
    """A token as shown to admins: never the token, never its hash."""
    return {"name": r.name, "role": r.role, "created_at": r.created_at.isoformat(), "created_by": r.created_by,
            "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
