"""Who may call which route of the HTTP API.

Every route needs ``Authorization: Bearer TOKEN`` except ``/health``, the OpenAPI document and
``POST /hooks/{connector}`` (pushes are checked by the platform's own signature instead). A
missing or unknown token gets 401, a known token whose role may not make the call gets 403.

Roles: ``admin`` (connectors, flows, mappings, rules, tokens - and everything else),
``operator`` (approvals, replays, schedules, tasks), ``auditor`` (read-only: status, quarantine,
tasks, audit). Tokens are created with ``tongdao tokens create NAME --role ...`` on the hub's
machine (the CLI acting on the local store needs no token) or by an admin through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

if TYPE_CHECKING:
    from store import Store

READ = frozenset({"admin", "operator", "auditor"})
OPERATE = frozenset({"admin", "operator"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


CODEC_COOKIE = "tongdao_codec"
"""The codec server's sign-in cookie (``/codec/login``): the Temporal Web UI sends no Authorization
header, only the browser's cookies (its codec setting "include cross-origin credentials")."""


def requires(roles: frozenset[str], store: Callable[[], Store],
             cookie: str | None = None) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency admitting callers whose token has one of ``roles``; with ``cookie``, the
    token may also come from that cookie (the codec endpoints only)."""

    async def check(request: Request) -> Caller:
        token = bearer(request) or (request.cookies.get(cookie) if cookie else None)
        if token is None:
            raise HTTPException(401, "an API token is required (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        found = await asyncio.to_thread(store().token_role, token)
        if found is None:
            raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        caller = Caller(*found)
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role!r} may not do this (needs {' or '.join(sorted(roles))})")
        return caller

    return check
