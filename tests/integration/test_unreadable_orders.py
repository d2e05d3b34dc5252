"""One trade the platform refuses to return (a permanent error for that trade only) does not stop
the window: the other orders flow, the refused one is parked with the platform's precise error,
and a replay after the cause is fixed completes it."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from test_order_sync import ingest, setup_systems, wait_for

from canonical import hub_code, order_key
from connectors.base import connector_kind
from connectors.errors import InvalidRequestError
from connectors.registry import Registration, register
from connectors.taobao.connector import TaobaoConnector
from hub.runtime import HubRuntime
from workflows.order.client import request_replay


@connector_kind("taobao_refusing_test", "Taobao refusing some trades (test)")
class RefusingTaobao(TaobaoConnector):
    channel = "taobao"
    refused: ClassVar[set[str]] = set()

    async def _fullinfo(self, tid: str, fields: str | None = None) -> dict[str, Any]:
        if tid in self.refused:
            raise InvalidRequestError(f"taobao.trade.fullinfo.get refused tid {tid}: isv.trade-is-locked",
                                      code="isv.trade-is-locked", platform="taobao")
        return await super()._fullinfo(tid, fields)


async def test_a_refused_trade_is_parked_and_the_window_moves_on(hub: HubRuntime) -> None:
    run = "ur1"
    systems, route = setup_systems(hub, orders=8, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    shop = f"demo-a-{run}"
    assert hub.store and hub.client
    try:
        base = next(r for r in systems.registrations(run) if r.name == "demo-taobao-a")
        register(hub.store, Registration(name="refusing", kind="taobao_refusing_test", settings=base.settings,
                                         secrets=base.secrets), "test")
        refused = str(tb.make_trade(shop, lines=1))
        RefusingTaobao.refused = {refused}
        await asyncio.sleep(1.1)
        counts = await ingest(hub, "refusing", route.model_copy(update={"shop": shop}), "ur-1")
        assert counts.unreadable == 1 and counts.fetched >= 5  # the others were handed over too
        key = order_key("taobao", shop, refused)
        await wait_for(lambda: any(q.order_key == key and q.stage == "fetch"
                                   for q in hub.store.list_quarantine("open")))
        entry = next(q for q in hub.store.list_quarantine("open") if q.order_key == key)
        assert "isv.trade-is-locked" in entry.reason and wms.status_of(hub_code(key)) is None
        others = systems.taobao.state()["orders_by_shop"][shop] - 1
        await wait_for(lambda: wms.state()["outbound_orders"] >= others)
        RefusingTaobao.refused = set()  # the platform unlocks it; an operator replays
        await request_replay(hub.client, hub.store, entry.id, "test")
        await wait_for(lambda: len(tb.writebacks(refused)) == 1, timeout=60)
        await wait_for(lambda: hub.store.get_quarantine(entry.id).status == "resolved")
    finally:
        RefusingTaobao.refused = set()
        await wms.aclose()
        systems.stop()
