"""The Qimen simulator's stock: receipts, batches with expiry, on-hand decremented per shipped package,
and ``taobao.qimen.stockchange.report`` pushes that the REAL connector's ``handle_push`` accepts.

The simulator is an independent reading of the Qimen documents; here its pushes land on a small
Starlette endpoint (its own uvicorn thread) that hands them to ``QimenConnector.handle_push``, and
the connector's ``inventory.query`` calls reach the simulator in-process (ASGI).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import RetryPolicy
from connectors.qimen import QimenConnector
from connectors.qimen.stock import StockBatch
from simulators.faults import FaultConfig
from simulators.qimen import QimenWmsSimulator
from simulators.server import BackgroundServer

SECRET = "s3cr3t-qimen-stock"
OWNER = "OWNER-1"
STOCK_CHANGE = "taobao.qimen.stockchange.report"


@dataclass
class Hook:
    """The hub's side: every push goes through the real connector; the first ``fail_first`` are refused."""

    conn: QimenConnector
    fail_first: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def endpoint(self, request: Request) -> Response:
        with self.lock:
            self.methods.append(request.query_params.get("method", ""))
            if len(self.methods) <= self.fail_first:
                return Response("unavailable", status_code=503)
        result = await self.conn.handle_push(dict(request.headers), dict(request.query_params), await request.body())
        with self.lock:
            self.events.extend(result.events)
        return Response(result.body, status_code=result.status_code, media_type=result.media_type)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for event in self.events if event["type"] == kind]


def make_connector(sim: QimenWmsSimulator) -> QimenConnector:
    conn = QimenConnector.from_config("wms", {"base_url": "http://wms.test/router/qimen/service", "app_key": "ak-1",
                                              "customerId": "CUST-1", "warehouseCode": "WH-SH", "ownerCode": OWNER},
                                      {"app_secret": SECRET})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=2, initial_s=0.001, max_s=0.002)
    return conn


@pytest.fixture(scope="module")
def server() -> Any:
    holder: dict[str, Hook] = {}

    async def route(request: Request) -> Response:
        return await holder["hook"].endpoint(request)

    with BackgroundServer(Starlette(routes=[Route("/hooks/wms", route, methods=["POST"])])) as running:
        yield running, holder


async def build(server: Any, **options: Any) -> tuple[QimenWmsSimulator, QimenConnector, Hook]:
    running, holder = server
    settings = {"stock": {"SKU-A": 5, "SKU-B": 3}, "ship_delay_s": 0, "push_backoff_s": 0.01,
                "owner_code": OWNER, "stock_reports": True} | options
    sim = QimenWmsSimulator("ak-1", SECRET, "CUST-1", ["WH-SH", "WH-GZ"], ["SKU-A", "SKU-B"], **settings)
    conn = make_connector(sim)
    hook = holder["hook"] = Hook(conn)
    sim.set_callback(f"{running.base_url}/hooks/wms")
    return sim, conn, hook


@pytest.fixture
async def wms(server: Any) -> AsyncIterator[tuple[QimenWmsSimulator, QimenConnector, Hook]]:
    sim, conn, hook = await build(server, split_packages=1.0)
    yield sim, conn, hook
    await sim.aclose()
    await conn.aclose()


def document(code: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    now = datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    contact = {"name": "张三", "mobile": "13800000000", "province": "上海", "city": "上海市",
               "detailAddress": "世纪大道 1 号"}
    return {
        "deliveryOrder": {"deliveryOrderCode": code, "orderType": "JYCK", "sourcePlatformCode": "TB",
                          "shopNick": "shop", "createTime": now, "placeOrderTime": now, "operateTime": now,
                          "logisticsCode": "SF", "receiverInfo": contact, "senderInfo": contact},
        "orderLines": [{"orderLineNo": str(n), "sourceOrderCode": code, "subSourceOrderCode": f"{code}-{n}",
                        "ownerCode": OWNER, "itemCode": sku, "planQty": qty, "actualPrice": "1.00"}
                       for n, (sku, qty) in enumerate(lines, start=1)],
    }


def without_time(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "changed_at"}


async def test_a_receipt_is_pushed_and_parsed_by_the_real_connector(wms) -> None:
    sim, _, hook = wms
    before = datetime.now(UTC) - timedelta(seconds=2)
    sim.receive("SKU-A", 10, batch_code="B-0630", expire_date="2025-06-30")
    await sim.flush(max_wait_s=5)
    (event,) = hook.of_type("stock_change")
    assert without_time(event) == {
        "type": "stock_change", "change_id": event["change_id"], "warehouse": "WH-SH", "sku": "SKU-A", "quantity": 10,
        "order_code": event["order_code"], "order_type": "CGRK", "inventory_type": "ZP", "batch_code": "B-0630",
        "expire_date": "2025-06-30"}
    assert event["order_code"].startswith("RK") and event["change_id"].endswith(":1:SKU-A")
    assert before <= datetime.fromisoformat(event["changed_at"]) <= datetime.now(UTC)
    assert hook.methods == [STOCK_CHANGE]
    assert sim.on_hand("SKU-A") == 15 and sim.on_hand("SKU-A", "WH-GZ") == 5
    state = sim.state()
    assert (state["stockchange_pushes"], state["stockchange_acked"], state["stockchange_reports"]) == (1, 1, 1)


async def test_shipping_decrements_on_hand_once_per_package_and_reports_it(wms) -> None:
    sim, conn, hook = wms
    await conn.create_outbound_order(document("SO-S1", [("SKU-A", 2), ("SKU-B", 1)]))  # two packages
    assert sim.on_hand("SKU-A") == 5 and sim.on_hand("SKU-B") == 3  # creating reserves nothing on hand

    assert await sim.ship("SO-S1")
    await sim.flush(max_wait_s=5)
    assert (sim.on_hand("SKU-A"), sim.on_hand("SKU-B")) == (3, 3)
    assert await sim.ship("SO-S1")
    await sim.flush(max_wait_s=5)
    assert (sim.on_hand("SKU-A"), sim.on_hand("SKU-B")) == (3, 2)
    assert not await sim.ship("SO-S1") and await sim.ship_all() == 0  # shipped: nothing moves again
    await sim.flush(max_wait_s=5)
    assert (sim.on_hand("SKU-A"), sim.on_hand("SKU-B"), sim.on_hand("SKU-A", "WH-GZ")) == (3, 2, 5)

    changes = sorted(hook.of_type("stock_change"), key=lambda e: e["sku"])
    packages = sim.packages_of("SO-S1")
    assert [without_time(e) for e in changes] == [
        {"type": "stock_change", "change_id": f"{packages[0]['package_code']}-S:1:SKU-A", "warehouse": "WH-SH",
         "sku": "SKU-A", "quantity": -2, "order_code": "SO-S1", "order_type": "JYCK", "inventory_type": "ZP",
         "batch_code": "", "expire_date": ""},
        {"type": "stock_change", "change_id": f"{packages[1]['package_code']}-S:1:SKU-B", "warehouse": "WH-SH",
         "sku": "SKU-B", "quantity": -1, "order_code": "SO-S1", "order_type": "JYCK", "inventory_type": "ZP",
         "batch_code": "", "expire_date": ""},
    ]
    assert len(hook.of_type("shipment")) == 2
    state = sim.state()
    assert (state["stockchange_reports"], state["stockchange_acked"], state["confirm_acked"]) == (2, 2, 2)
    levels = {level.sku: level.on_hand for level in await conn.query_inventory(["SKU-A", "SKU-B"], "WH-SH")}
    assert levels == {"SKU-A": 3, "SKU-B": 2}


async def test_inventory_query_shows_batches_and_shipping_takes_the_first_expiring(wms) -> None:
    sim, conn, hook = wms
    sim.receive("SKU-A", 4, batch_code="LATE", expire_date="2026-03-01", product_date="2025-03-01")
    sim.receive("SKU-A", 3, batch_code="EARLY", expire_date="2025-09-30")
    assert await conn.query_batches(["SKU-A", "SKU-B"], "WH-SH") == [
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="EARLY", expire_date="2025-09-30", quantity=3),
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="LATE", expire_date="2026-03-01",
                   product_date="2025-03-01", quantity=4),
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="", quantity=5),
        StockBatch(sku="SKU-B", warehouse="WH-SH", batch_code="", quantity=3),
    ]
    assert {level.sku: level.on_hand for level in await conn.query_inventory(["SKU-A"], "WH-SH")} == {"SKU-A": 12}

    await conn.create_outbound_order(document("SO-B1", [("SKU-A", 4)]))
    assert await sim.ship("SO-B1")
    await sim.flush(max_wait_s=5)
    shipped = [e for e in hook.of_type("stock_change") if e["order_code"] == "SO-B1"]
    assert sorted((e["batch_code"], e["expire_date"], e["quantity"]) for e in shipped) == [
        ("EARLY", "2025-09-30", -3), ("LATE", "2026-03-01", -1)]
    assert len({e["change_id"] for e in shipped}) == 2
    assert sim.batches_of("SKU-A") == [{"batch_code": "LATE", "quantity": 3, "expire_date": "2026-03-01",
                                        "product_date": "2025-03-01"}]
    assert sim.on_hand("SKU-A") == 8
    assert sim.state()["batches"] == {"WH-SH": {"SKU-A": sim.batches_of("SKU-A")}}


async def test_the_admin_route_receives_like_the_python_api(wms) -> None:
    sim, _, hook = wms
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://wms.test") as http:
        answer = await http.post("/_admin/receive", json={"sku": "SKU-B", "quantity": 6, "warehouse": "WH-GZ",
                                                          "batch_code": "G1", "expire_date": "2025-12-31"})
        assert answer.status_code == 200 and answer.json() == {"ok": True, "on_hand": 9}
        assert (await http.post("/_sim/receive", json={"sku": "SKU-B", "quantity": 1})).json()["on_hand"] == 4
        for bad in ({"sku": "SKU-B", "quantity": 0}, {"sku": "NOPE", "quantity": 1},
                    {"sku": "SKU-B", "quantity": 1, "warehouse": "WH-XX"}, {"sku": "SKU-B", "quantity": "2"},
                    {"sku": "SKU-B", "quantity": 1, "expire_date": "2025-12-31"}, {"sku": "SKU-B", "qty": 1}):
            refused = await http.post("/_admin/receive", json=bad)
            assert refused.status_code == 422 and refused.json()["ok"] is False, bad
        assert (await http.post("/_admin/receive", content=b"not json")).status_code == 422
    await sim.flush(max_wait_s=5)
    assert sorted((e["warehouse"], e["quantity"], e["batch_code"], e["expire_date"])
                  for e in hook.of_type("stock_change")) == [("WH-GZ", 6, "G1", "2025-12-31"), ("WH-SH", 1, "", "")]
    assert (sim.on_hand("SKU-B", "WH-GZ"), sim.on_hand("SKU-B")) == (9, 4)


async def test_count_corrections_are_reported(wms) -> None:
    sim, _, hook = wms
    sim.receive("SKU-A", 2, batch_code="B1", expire_date="2025-01-31")
    sim.adjust("SKU-A", -6)  # 5 held without batch go first, then the batch
    sim.adjust("SKU-A", 2, batch_code="B9")
    with pytest.raises(ValueError, match="cannot remove"):
        sim.adjust("SKU-A", -100)
    with pytest.raises(ValueError, match="non-zero"):
        sim.adjust("SKU-A", 0)
    with pytest.raises(ValueError, match="not one of"):
        sim.adjust("SKU-A", 1, order_type="PANDIAN")
    await sim.flush(max_wait_s=5)
    moves = sorted((e["order_type"], e["quantity"], e["batch_code"]) for e in hook.of_type("stock_change"))
    assert moves == [("CGRK", 2, "B1"), ("QTCK", -5, ""), ("QTCK", -1, "B1"), ("QTRK", 2, "B9")]
    assert sim.on_hand("SKU-A") == 3 and [b["batch_code"] for b in sim.batches_of("SKU-A")] == ["B1", "B9"]


async def test_a_refused_report_is_retried_with_the_same_message(server) -> None:
    sim, _, hook = await build(server)
    hook.fail_first = 1
    sim.receive("SKU-B", 2)
    await sim.flush(max_wait_s=5)
    state = sim.state()
    assert (state["stockchange_pushes"], state["stockchange_push_failures"], state["stockchange_acked"]) == (2, 1, 1)
    assert len(hook.of_type("stock_change")) == 1
    sim.set_faults(FaultConfig(duplicate_rate=1.0))
    sim.receive("SKU-B", 1)
    await sim.flush(max_wait_s=5)
    twice = [e for e in hook.of_type("stock_change") if e["quantity"] == 1]
    assert len(twice) == 2 and twice[0] == twice[1]  # same change_id: the hub de-duplicates
    assert sim.state()["stockchange_duplicates_sent"] == 1
    await sim.aclose()


async def test_without_stock_reports_only_confirms_are_pushed_for_shipments(server) -> None:
    sim, conn, hook = await build(server, stock_reports=False)
    await conn.create_outbound_order(document("SO-N1", [("SKU-A", 1)]))
    assert await sim.ship("SO-N1")
    await sim.flush(max_wait_s=5)
    assert hook.methods == ["taobao.qimen.deliveryorder.confirm"] and sim.on_hand("SKU-A") == 4
    sim.receive("SKU-A", 1)  # a receipt is reported all the same
    await sim.flush(max_wait_s=5)
    assert hook.methods[-1] == STOCK_CHANGE and sim.on_hand("SKU-A") == 5
    await sim.aclose()
    await conn.aclose()


def test_opening_stock_is_a_number_or_per_item() -> None:
    default = QimenWmsSimulator("ak", "s", "c", ["W1", "W2"], ["A", "B"])
    assert (default.on_hand("A"), default.on_hand("B", "W2")) == (1000, 1000)
    seeded = QimenWmsSimulator("ak", "s", "c", ["W1", "W2"], ["A", "B"], stock={"A": 7})
    assert (seeded.on_hand("A"), seeded.on_hand("A", "W2"), seeded.on_hand("B")) == (7, 7, 0)
    with pytest.raises(ValueError, match="not in the item master"):
        QimenWmsSimulator("ak", "s", "c", ["W1"], ["A"], stock={"Z": 1})
    with pytest.raises(ValueError, match="negative"):
        QimenWmsSimulator("ak", "s", "c", ["W1"], ["A"], stock=-1)
    with pytest.raises(ValueError, match="receipt type"):
        seeded.receive("A", 1, order_type="JYCK")
    with pytest.raises(ValueError, match="expire date"):
        seeded.receive("A", 1, batch_code="X", expire_date="2025-01-01")
        seeded.receive("A", 1, batch_code="X", expire_date="2025-02-01")
    # no loop and no callback: the reports wait in the queue
    assert seeded.state()["stockchange_reports"] == 1 and seeded.state()["stockchange_pushes"] == 0
