"""Pushes on the real embedded Temporal server.

- A marketplace push (verified, deduplicated by its event id) feeds the same order workflow as a
  pull: a push-only flow (``schedule: {webhooks: true}``) ingests from it; a forged push gets 401;
  a redelivered one is handed over once.
- A validly signed WMS push for an order the hub does not know yet is kept, and delivered when
  the order appears (never acknowledged and forgotten).

The marketplace push uses a test connector kind: the Taobao connector plus a small documented-
nowhere push format (HMAC-SHA256 of the body in ``X-Test-Signature``), since TOP's own message
service is not a webhook. Real platforms' pushes are tested in their connectors' tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
from test_order_sync import setup_systems, wait_for

from canonical import hub_code, order_key
from connectors.base import PushReceiver, PushResult, connector_kind
from connectors.registry import Registration, register
from connectors.taobao.connector import TaobaoConnector
from flows.model import parse_flow
from flows.runtime import FlowOps
from hub.runtime import HubRuntime
from workflows.order.client import deliver_event

PUSH_SECRET = "push-secret-for-tests"


@connector_kind("taobao_push_test", "Taobao + a test webhook")
class PushingTaobao(TaobaoConnector, PushReceiver):
    channel = "taobao"

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        expected = base64.b64encode(hmac.new(PUSH_SECRET.encode(), body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, headers.get("x-test-signature", "")):
            return PushResult(status_code=401, body="bad signature")
        data = json.loads(body)
        return PushResult(events=[{"type": "order_changed", "external_id": str(data["tid"]),
                                   "event_id": headers.get("x-test-event-id", ""), "record": None}],
                          body='{"ok": true}')


def signed(body: dict[str, Any], event_id: str, secret: str = PUSH_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    sig = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    return raw, {"X-Test-Signature": sig, "X-Test-Event-Id": event_id, "Content-Type": "application/json"}


async def test_a_marketplace_push_feeds_the_order_workflow_once(hub: HubRuntime) -> None:
    run = "p1"
    systems, _ = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    assert hub.store and hub.client
    tb, wms = systems.taobao, systems.wms
    shop = f"demo-a-{run}"
    try:
        base = next(r for r in systems.registrations(run) if r.name == "demo-taobao-a")
        register(hub.store, Registration(name="push-taobao", kind="taobao_push_test", settings=base.settings,
                                         secrets=base.secrets), "test")
        flow = parse_flow({
            "name": "pushed", "sources": [{"connector": "push-taobao", "mapping": "taobao_order"}],
            "targets": {"wms": "demo-wms", "erp": "demo-erp"},
            "context": {"warehouse_code": "WH-HZ01", "owner_code": "TONGDAO", "customer": "CUST-TAOBAO"},
            "schedule": {"webhooks": True},
        })
        await FlowOps(hub.client, hub.store, hub.settings.task_queue, "test").add(flow)
        tid = tb.make_trade(shop, lines=1)
        key = order_key("taobao", shop, str(tid))
        async with httpx.AsyncClient(base_url=hub.settings.api_url) as api:
            body, headers = signed({"tid": tid}, "evt-1")
            forged = await api.post("/hooks/push-taobao", content=body,
                                    headers={**headers, "X-Test-Signature": "AAAA"})
            assert forged.status_code == 401
            first = await api.post("/hooks/push-taobao", content=body, headers=headers)
            assert first.status_code == 200, first.text
            await wait_for(lambda: wms.status_of(hub_code(key)) is not None)
            again = await api.post("/hooks/push-taobao", content=body, headers=headers)  # redelivered
            assert again.status_code == 200
        await wait_for(lambda: len(tb.writebacks(tid)) == 1)
        await asyncio.sleep(0.5)
        assert len(tb.writebacks(tid)) == 1 and wms.state()["create_calls"] == 1
        runs = [w async for w in hub.client.list_workflows(f'WorkflowId = "order:{key}"')]
        assert len(runs) == 1
        assert hub.store.push_event_seen("push-taobao", "evt-1")
    finally:
        await wms.aclose()
        systems.stop()


async def test_a_wms_push_for_an_unknown_order_is_kept_and_delivered_when_it_appears(hub: HubRuntime) -> None:
    from test_order_sync import ingest

    run = "p2"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    assert hub.store and hub.client
    tb, wms = systems.taobao, systems.wms
    shop = f"demo-a-{run}"
    try:
        tid = tb.make_trade(shop, lines=1)
        key = order_key("taobao", shop, str(tid))
        code = hub_code(key)
        wms.hold(code)  # the WMS never ships it: the only shipment is the one pushed early
        event = {"type": "shipment", "order_code": code,
                 "shipment": {"order_key": code, "carrier_code": "SF", "tracking_number": "SF900000000001",
                              "shipped_at": "2026-12-03T08:00:00+00:00", "warehouse": "WH-HZ01", "lines": [],
                              "package_id": "PKG-1", "final": True}}
        assert await deliver_event(hub.client, hub.store, "demo-wms", event) == "kept_until_known"
        assert len(hub.store.pending_pushes()) == 1
        await asyncio.sleep(1.1)
        await ingest(hub, "demo-taobao-a", route, "p2-ingest")
        await wait_for(lambda: ("SF900000000001", "SF") in {(w[0], w[1]) for w in tb.writebacks(tid)})
        await wait_for(lambda: (hub.store.get_order(key) or None) is not None
                       and hub.store.get_order(key).outcome == "shipped")
        assert hub.store.pending_pushes() == []
    finally:
        await wms.aclose()
        systems.stop()
