"""From the pool to the channels on the embedded Temporal server: a change of a SKU's figures is
committed with its outbox mark; the hub's StockPump writes each channel's quantity (under the flow's
allocation policy) through the platform's own stock API - here the JD and Douyin simulators - and
only when it changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from test_order_sync import wait_for

from connectors.registry import register
from hub.cli_inventory import inventory_view
from hub.demo_channels import BUILDERS
from hub.runtime import HubRuntime
from simulators.catalog import CATALOG
from workflows.stock.client import ensure_pump
from workflows.stock.propagate import explain_sku

WH = "wms-x"


async def test_changes_reach_every_channel_under_its_policy(hub: HubRuntime) -> None:
    assert hub.store and hub.client
    store = hub.store
    now = datetime.now(UTC)
    markets = [BUILDERS[kind](5, "sp1", 0, now) for kind in ("jd", "douyin")]
    for market in markets:
        market.server.start()
        register(store, market.register(), "test")
    jd, douyin = (m.sim for m in markets)
    sku = str(CATALOG[0]["sku"])
    definition = {"name": "stocked", "sources": [{"connector": "demo-jd"}], "targets": {"wms": WH},
                  "stock": {"warehouse": WH, "channels": ["demo-jd", "demo-douyin"],
                            "policy": {"channels": {"demo-jd": {"share": "50%"}, "demo-douyin": {"max": 6}},
                                       "skus": {sku: {"defaults": {"safety": 2}}}}}}
    store.save_flow("stocked", "v1", definition, "test")
    try:
        await ensure_pump(hub.client, hub.settings.task_queue, refresh=True)  # as saving a stock flow does
        store.stock_move(sku, WH, 12, "receipt", dedupe_key="sp1-receipt")
        # jd: (12 - 2 safety) x 50% = 5; douyin: 12 - 2 = 10, at most 6
        await wait_for(lambda: jd.shown_stock(sku) == 5 and douyin.shown_stock(sku) == 6, timeout=30)

        assert store.stock_reserve("o-1", {sku: 4}, WH).ok
        await wait_for(lambda: jd.shown_stock(sku) == 3 and douyin.shown_stock(sku) == 6, timeout=30)

        view = inventory_view(store, sku)
        assert (view["on_hand"], view["reserved"], view["available"]) == (12, 4, 8)
        shown = {c["channel"]: c["quantity"] for c in view["channels"]}
        assert shown == {"demo-jd": 3, "demo-douyin": 6}
        assert all(c["pushed_at"] for c in view["channels"])
        explained = {e.channel: e for e in explain_sku(store, sku)}
        assert explained["demo-jd"].quantity == 3
        assert [s.what for s in explained["demo-jd"].steps] == [f"free in {WH}", "available", "- safety stock 2",
                                                               "x share 50%", "shown"]

        # a change that leaves a channel's figure alone writes nothing there: +1 unit is 9 free,
        # jd floor(3.5) = 3, douyin still capped at 6
        writes = (len(jd.stock_updates), len(douyin.stock_updates))
        store.stock_move(sku, WH, 1, "return", dedupe_key="sp1-return")
        version = store.stock_dirty("demo-jd") or store.stock_dirty("demo-douyin")
        assert version, "the change is marked for both channels"
        await wait_for(lambda: not store.stock_dirty("demo-jd") and not store.stock_dirty("demo-douyin"), timeout=10)
        assert (len(jd.stock_updates), len(douyin.stock_updates)) == writes
    finally:
        for market in markets:
            market.server.stop()
