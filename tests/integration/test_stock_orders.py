"""Orders reserve from the central pool before the WMS gets them (embedded Temporal, simulators).

An order whose units are free is reserved, sent and shipped, and its reservation becomes a
deduction; one whose SKU has no free unit is not sent to the WMS but held with an ``out_of_stock``
task naming its channel, shop, external id and SKU, and goes out once stock arrives; a cancelled
order gives its units back.
"""

from __future__ import annotations

from datetime import timedelta

from test_order_lifecycle import outcome_of, pull, wait_outcome
from test_order_sync import record_histories, setup_systems

from canonical import hub_code, order_key
from hub.runtime import HubRuntime
from workflows.audit.timeline import sku_timelines, timeline_for_key
from workflows.models import StockRoute

SHOP = "demo-a-{run}"
WH = "demo-wms"


def line_of(tb, tid: int) -> tuple[str, int]:  # noqa: ANN001
    (line,) = tb.trade(tid)["orders"]["order"]
    return str(line["outer_sku_id"]), int(line["num"])


async def test_orders_reserve_before_the_wms_and_wait_when_out_of_stock(hub: HubRuntime) -> None:
    run = "st1"
    systems, route = setup_systems(hub, orders=0, run_id=run, malformed_per_shop=0)
    route.stock = StockRoute(warehouse=WH, recheck=timedelta(seconds=2))
    tb, wms = systems.taobao, systems.wms
    shop = SHOP.format(run=run)
    store = hub.store
    assert store
    try:
        trades: dict[str, int] = {}
        while len(trades) < 3:  # three orders of three different SKUs
            tid = tb.make_trade(shop, lines=1)
            trades.setdefault(line_of(tb, tid)[0], tid)
        (sku_a, a), (sku_b, b), (sku_c, c) = trades.items()
        need = {t: line_of(tb, t)[1] for t in (a, b, c)}
        key = {t: order_key("taobao", shop, str(t)) for t in (a, b, c)}
        store.stock_move(sku_a, WH, need[a], "receipt", dedupe_key=f"{run}-a")  # exactly enough
        store.stock_move(sku_c, WH, need[c] + 1, "receipt", dedupe_key=f"{run}-c")
        wms.hold(hub_code(key[c]))  # c stays in the warehouse until it is cancelled
        # sku_b: nothing in stock

        await pull(hub, route, f"{run}-1")
        await wait_outcome(hub, key[a], "shipped")
        await wait_outcome(hub, key[b], "out_of_stock")
        await wait_outcome(hub, key[c], "released")
        assert wms.status_of(hub_code(key[b])) is None  # never sent to the WMS
        (task,) = [t for t in store.list_tasks(kind="out_of_stock") if t.order_key == key[b]]
        assert (task.details["channel"], task.details["shop"], task.details["external_id"], task.details["sku"]) == (
            "taobao", shop, str(b), sku_b)
        # a shipped: its reservation turned into a deduction
        (level_a,) = store.stock_levels(sku_a)
        assert (level_a.on_hand, level_a.reserved) == (0, 0)
        # (the WMS's own report of the outbound is noted beside, not counted again)
        assert [e.cause for e in store.stock_ledger(ref=key[a]) if e.cause != "wms_report"] == ["order", "shipment"]
        (level_c,) = store.stock_levels(sku_c)
        assert (level_c.on_hand, level_c.reserved) == (need[c] + 1, need[c])

        # stock arrives for b: the held order goes out at its next try
        store.stock_move(sku_b, WH, need[b], "receipt", dedupe_key=f"{run}-b")
        await wait_outcome(hub, key[b], "shipped", timeout=60)
        assert store.stock_levels(sku_b)[0].on_hand == 0

        # c is cancelled on the platform: WMS and ERP cancelled, its units back in the pool
        tb.refund_all(c)
        await pull(hub, route, f"{run}-2")
        await wait_outcome(hub, key[c], "cancelled_before_shipment")
        (level_c,) = store.stock_levels(sku_c)
        assert (level_c.on_hand, level_c.reserved) == (need[c] + 1, 0)
        assert [e.cause for e in store.stock_ledger(ref=key[c]) if e.cause != "wms_report"] == ["order", "cancellation"]
        assert outcome_of(hub, key[a]) == "shipped"

        # the auditor's timelines carry the stock movements: the order's, and the SKU's whole ledger
        timeline = await timeline_for_key(hub.client, store, key[a])
        causes = [e.outcome for e in timeline.entries if e.kind == "stock"]
        assert "order" in causes and "shipment" in causes
        await record_histories(hub, {"order_lifecycle_stock_out_of_stock": f"order:{key[b]}",
                                     "order_lifecycle_stock_cancelled": f"order:{key[c]}"})
        by_sku = await sku_timelines(hub.client, store, sku_c)
        assert [m["outcome"] for m in by_sku["stock"]][:1] == ["receipt"]
        assert {"order", "cancellation"} <= {m["outcome"] for m in by_sku["stock"]}
    finally:
        await wms.aclose()
        systems.stop()
