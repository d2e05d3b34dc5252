"""Every route of the HTTP API refuses a missing, unknown or revoked token (401) and a token whose
role may not make the call (403); /health, the OpenAPI document and the pushes stay open; a push
body over the limit is refused before it is read whole."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hub.api import create_app
from hub.settings import Settings
from store import open_store

OPEN = {("GET", "/health"), ("POST", "/hooks/{name}"),
        # the codec sign-in page checks the token it is given itself
        ("GET", "/codec-login"), ("POST", "/codec-login"), ("POST", "/codec-logout")}
#: what each role may do; everything else must be 403 for it
OPERATOR_WRITES = {("POST", "/quarantine/{qid}/replay"), ("POST", "/tasks/{task_id}/close"),
                   ("POST", "/tasks/{task_id}/decide"),
                   ("POST", "/flows/{name}/pause"), ("POST", "/flows/{name}/resume"),
                   ("POST", "/flows/{name}/run-now"), ("POST", "/flows/{name}/backfill"),
                   ("POST", "/codec/encode")}
#: decrypting Temporal payloads through the codec server: admin and auditor, not operator
AUDITOR_READS = {("POST", "/codec/decode")}
ADMIN_ONLY_READS = {("GET", "/tokens")}


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    rt = SimpleNamespace(store=store, client=None, pool=None, settings=Settings(home=tmp_path, max_push_bytes=1000))
    app = create_app(rt)  # type: ignore[arg-type]
    tokens = {role: store.create_token(f"t-{role}", role, "test") for role in ("admin", "operator", "auditor")}
    return SimpleNamespace(app=app, client=TestClient(app, raise_server_exceptions=False), store=store, tokens=tokens)


def routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD", "OPTIONS"}:
                found.append((method, route.path))
    return sorted(found)


def call(hub: Any, method: str, path: str, token: str | None) -> int:
    url = re.sub(r"\{[^}]+\}", "1", path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: Any = {"name": "x", "role": "auditor", "since": "2026-11-11T00:00:00+08:00"} if method == "POST" else None
    return hub.client.request(method, url, headers=headers, json=body).status_code


def test_every_route_is_listed_here_or_guarded(hub: Any) -> None:
    assert len(routes(hub.app)) >= 20


@pytest.mark.parametrize("token", [None, "td_not-a-real-token"])
def test_every_guarded_route_refuses_a_missing_or_unknown_token(hub: Any, token: str | None) -> None:
    for method, path in routes(hub.app):
        if (method, path) in OPEN:
            continue
        assert call(hub, method, path, token) == 401, (method, path)


def test_a_revoked_token_is_refused(hub: Any) -> None:
    hub.store.revoke_token("t-auditor", "test")
    assert call(hub, "GET", "/quarantine", hub.tokens["auditor"]) == 401


def test_roles(hub: Any) -> None:
    for method, path in routes(hub.app):
        if (method, path) in OPEN:
            continue
        admin = call(hub, method, path, hub.tokens["admin"])
        operator = call(hub, method, path, hub.tokens["operator"])
        auditor = call(hub, method, path, hub.tokens["auditor"])
        assert admin not in (401, 403), (method, path, admin)
        if method == "GET" and (method, path) not in ADMIN_ONLY_READS:
            assert operator not in (401, 403) and auditor not in (401, 403), (method, path)
        elif (method, path) in AUDITOR_READS:
            assert auditor not in (401, 403), (method, path)
            assert operator == 403, (method, path)
        elif (method, path) in OPERATOR_WRITES:
            assert operator not in (401, 403), (method, path)
            assert auditor == 403, (method, path)
        else:  # admin only
            assert operator == 403 and auditor == 403, (method, path)


def test_open_routes_need_no_token(hub: Any) -> None:
    assert hub.client.get("/health").status_code == 200
    assert hub.client.get("/openapi.json").status_code == 200


def test_a_push_body_over_the_limit_is_refused_before_it_is_read(hub: Any) -> None:
    assert hub.client.post("/hooks/wms", content=b"x" * 5000).status_code == 413
    chunks = (b"x" * 400 for _ in range(10))  # no Content-Length: counted while streaming
    assert hub.client.post("/hooks/wms", content=chunks).status_code == 413


def test_tokens_are_hashed_at_rest(hub: Any, tmp_path: Path) -> None:
    raw = (tmp_path / "hub.db").read_bytes()
    for token in hub.tokens.values():
        assert token.encode() not in raw
