"""Tests of the Qimen WMS simulator, checked against an independent reading of the Qimen rules.

The signature is recomputed here with its own code (not the simulator's helper), so a wrong sign
rule in the simulator cannot agree with itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators.faults import FaultConfig
from simulators.qimen import QimenWmsSimulator
from simulators.server import BackgroundServer

APP_KEY = "erp-app-key"
SECRET = "erp-app-secret"
CUSTOMER = "TD-CUSTOMER"
OWNER = "TD-OWNER"
WAREHOUSES = ["WH-SH", "WH-GZ"]
ITEMS = {
    "TD-SKU-0001": {"title": "Green tea 250 g", "weight_g": 250},
    "TD-SKU-0002": {"title": "Teapot", "weight_g": 900},
}
GATEWAY = "/router/qimen/service"
CREATE = "taobao.qimen.deliveryorder.create"
CONFIRM = "taobao.qimen.deliveryorder.confirm"
QUERY = "taobao.qimen.deliveryorder.query"
INVENTORY = "taobao.qimen.inventory.query"
CST = timezone(timedelta(hours=8))


def independent_sign(params: dict[str, str], body: str, secret: str) -> str:
    """Qimen rule written out by hand: secret + sorted key+value (no sign) + body + secret, MD5 upper."""
    pieces = [secret]
    for key in sorted(params):
        if key != "sign" and params[key] != "":
            pieces.append(key + params[key])
    pieces.append(body)
    pieces.append(secret)
    return hashlib.md5("".join(pieces).encode("utf-8")).hexdigest().upper()


def cst_now(shift: timedelta = timedelta()) -> str:
    return (datetime.now(CST) + shift).strftime("%Y-%m-%d %H:%M:%S")


def gateway_params(method: str, body: str, *, secret: str = SECRET, **overrides: str) -> dict[str, str]:
    params = {
        "method": method,
        "app_key": APP_KEY,
        "customerId": CUSTOMER,
        "format": "xml",
        "sign_method": "md5",
        "timestamp": cst_now(),
        "v": "2.0",
    }
    params.update(overrides)
    params["sign"] = independent_sign(params, body, secret)
    return params


def create_body(
    code: str,
    *,
    source_order: str = "TB-1001",
    item: str = "TD-SKU-0001",
    warehouse: str = "WH-SH",
    qty: int = 2,
    drop: tuple[str, ...] = (),
) -> str:
    """A deliveryorder.create body; ``drop`` removes elements by tag to test required fields."""
    now = cst_now()
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<request>
  <deliveryOrder>
    <deliveryOrderCode>{code}</deliveryOrderCode>
    <orderType>JYCK</orderType>
    <warehouseCode>{warehouse}</warehouseCode>
    <sourcePlatformCode>TB</sourcePlatformCode>
    <sourcePlatformName>淘宝</sourcePlatformName>
    <createTime>{now}</createTime>
    <placeOrderTime>{now}</placeOrderTime>
    <payTime>{now}</payTime>
    <operateTime>{now}</operateTime>
    <shopNick>tongdao-flagship</shopNick>
    <buyerNick>buyer-1</buyerNick>
    <totalAmount>59.80</totalAmount>
    <logisticsCode>SF</logisticsCode>
    <senderInfo>
      <name>Tongdao WH</name><mobile>13800000000</mobile><province>上海</province>
      <city>上海市</city><area>浦东新区</area><detailAddress>张江路 1 号</detailAddress>
    </senderInfo>
    <receiverInfo>
      <name>张三</name><mobile>13900000000</mobile><province>浙江省</province><city>杭州市</city>
      <area>余杭区</area><town>五常街道</town><detailAddress>文一西路 969 号</detailAddress><zipCode>311100</zipCode>
    </receiverInfo>
  </deliveryOrder>
  <orderLines>
    <orderLine>
      <orderLineNo>1</orderLineNo>
      <sourceOrderCode>{source_order}</sourceOrderCode>
      <subSourceOrderCode>{source_order}-1</subSourceOrderCode>
      <ownerCode>{OWNER}</ownerCode>
      <itemCode>{item}</itemCode>
      <itemName>Green tea</itemName>
      <planQty>{qty}</planQty>
      <retailPrice>29.90</retailPrice>
      <actualPrice>29.90</actualPrice>
    </orderLine>
  </orderLines>
</request>"""
    root = ET.fromstring(xml)
    for tag in drop:
        for parent in root.iter():
            for child in parent.findall(tag):
                parent.remove(child)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


def query_body(code: str) -> str:
    return f"<request><orderCode>{code}</orderCode><page>1</page><pageSize>10</pageSize></request>"


def inventory_body(item: str) -> str:
    return f"<request><criteriaList><criteria><itemCode>{item}</itemCode></criteria></criteriaList></request>"


async def call(
    client: httpx.AsyncClient, method: str, body: str, *, path: str = GATEWAY, **overrides: str
) -> tuple[httpx.Response, ET.Element | None]:
    params = gateway_params(method, body, **overrides)
    response = await client.post(path, params=params, content=body.encode(), headers={"Content-Type": "text/xml"})
    root = ET.fromstring(response.content) if response.content.startswith(b"<?xml") else None
    return response, root


def flag(root: ET.Element | None) -> tuple[str, str, str]:
    assert root is not None and root.tag == "response"
    return root.findtext("flag", ""), root.findtext("code", ""), root.findtext("message", "")


def stock_of(root: ET.Element, warehouse: str) -> int:
    for item in root.findall("items/item"):
        if item.findtext("warehouseCode") == warehouse:
            return int(item.findtext("quantity", "-1"))
    raise AssertionError(f"no inventory row for {warehouse}")


# --------------------------------------------------------------------------- fixtures


@dataclass
class Receiver:
    """The ERP side of deliveryorder.confirm: verifies the sign itself, can fail the first N calls."""

    fail_first: int = 0
    calls: list[tuple[dict[str, str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        body = (await request.body()).decode()
        params = dict(request.query_params)
        with self.lock:
            self.calls.append((params, body))
            failing = len(self.calls) <= self.fail_first
        ok = not failing and params.get("sign") == independent_sign(params, body, SECRET)
        answer = "success" if ok else "failure"
        xml = f"<?xml version='1.0' encoding='utf-8'?><response><flag>{answer}</flag><code>0</code></response>"
        return Response(xml, media_type="text/xml")

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.fail_first = 0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    app = Starlette(routes=[Route("/erp/qimen", recv.endpoint, methods=["POST"])])
    with BackgroundServer(app) as server:
        recv.url = f"{server.base_url}/erp/qimen"
        yield recv


@pytest.fixture
def fresh_receiver(receiver: Receiver) -> Receiver:
    receiver.reset()
    return receiver


@pytest.fixture
async def sim() -> AsyncIterator[QimenWmsSimulator]:
    simulator = QimenWmsSimulator(
        APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, stock=1000, ship_delay_s=0, push_backoff_s=0.02
    )
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def client(sim: QimenWmsSimulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
        yield http


# --------------------------------------------------------------------------- gateway and sign


async def test_good_sign_is_accepted_and_create_returns_a_wms_id(client: httpx.AsyncClient) -> None:
    response, root = await call(client, CREATE, create_body("DO-1"))
    assert response.status_code == 200
    assert flag(root)[0] == "success"
    assert root is not None and root.findtext("deliveryOrderId", "").startswith("QM")
    assert datetime.strptime(root.findtext("createTime", ""), "%Y-%m-%d %H:%M:%S")


async def test_bad_sign_is_rejected(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    response, root = await call(client, CREATE, create_body("DO-1"), secret="not-the-secret")
    assert response.status_code == 200
    assert flag(root) == ("failure", "sign-check-failure", "Illegal request")
    assert sim.state()["rejected_signatures"] == 1
    assert sim.state()["outbound_orders"] == 0


async def test_body_tampering_breaks_the_sign(client: httpx.AsyncClient) -> None:
    body = create_body("DO-1")
    params = gateway_params(CREATE, body)
    tampered = body.replace("<planQty>2</planQty>", "<planQty>20</planQty>")
    response = await client.post(GATEWAY, params=params, content=tampered.encode())
    assert flag(ET.fromstring(response.content))[1] == "sign-check-failure"


@pytest.mark.parametrize(
    ("overrides", "code", "needle"),
    [
        ({"app_key": "someone-else"}, "invalid-app-key", "someone-else"),
        ({"customerId": "other-customer"}, "invalid-customer-id", "other-customer"),
        ({"timestamp": cst_now(timedelta(minutes=-11))}, "invalid-timestamp", "10 minutes"),
        ({"timestamp": "2024/01/01 00:00:00"}, "invalid-timestamp", "yyyy-MM-dd"),
    ],
)
async def test_gateway_parameters_are_enforced(
    client: httpx.AsyncClient, overrides: dict[str, str], code: str, needle: str
) -> None:
    _, root = await call(client, CREATE, create_body("DO-1"), **overrides)
    status, got_code, message = flag(root)
    assert (status, got_code) == ("failure", code)
    assert needle in message


async def test_missing_system_parameter_is_named(client: httpx.AsyncClient) -> None:
    body = create_body("DO-1")
    params = gateway_params(CREATE, body)
    del params["customerId"]
    params["sign"] = independent_sign(params, body, SECRET)
    response = await client.post(GATEWAY, params=params, content=body.encode())
    assert flag(ET.fromstring(response.content))[2] == "missing required system parameter: customerId"


async def test_qimen_alias_path_and_dtd_guard(client: httpx.AsyncClient) -> None:
    _, root = await call(client, INVENTORY, inventory_body("TD-SKU-0001"), path="/qimen")
    assert flag(root)[0] == "success"
    evil = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><request><orderCode>&x;</orderCode></request>'
    _, root = await call(client, QUERY, evil)
    assert flag(root)[:2] == ("failure", "isv.invalid-xml")


# --------------------------------------------------------------------------- create: validation, idempotency


async def test_repeat_create_returns_same_id_without_a_new_order(
    client: httpx.AsyncClient, sim: QimenWmsSimulator
) -> None:
    _, first = await call(client, CREATE, create_body("DO-1"))
    _, again = await call(client, CREATE, create_body("DO-1"))
    assert first is not None and again is not None
    assert flag(again)[0] == "success"
    assert again.findtext("deliveryOrderId") == first.findtext("deliveryOrderId")
    state = sim.state()
    assert (state["outbound_orders"], state["create_repeats"], state["duplicates"]) == (1, 1, 0)


async def test_same_source_order_under_two_codes_is_a_duplicate(
    client: httpx.AsyncClient, sim: QimenWmsSimulator
) -> None:
    await call(client, CREATE, create_body("DO-1", source_order="TB-777"))
    await call(client, CREATE, create_body("DO-2", source_order="TB-777"))
    await call(client, CREATE, create_body("DO-3", source_order="TB-778"))
    state = sim.state()
    assert state["outbound_orders"] == 3
    assert state["duplicates"] == 1


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        (
            {"item": "TD-SKU-9999"},
            "isv.item-not-exist",
            "orderLines.orderLine[1].itemCode TD-SKU-9999 does not exist in the item master",
        ),
        ({"warehouse": "WH-XX"}, "isv.warehouse-not-exist", "deliveryOrder.warehouseCode WH-XX does not exist here"),
        ({"drop": ("mobile",)}, "isv.missing-parameter", "deliveryOrder.receiverInfo.mobile is required"),
        ({"drop": ("shopNick",)}, "isv.missing-parameter", "deliveryOrder.shopNick is required"),
        ({"drop": ("ownerCode",)}, "isv.missing-parameter", "orderLines.orderLine[1].ownerCode is required"),
        ({"qty": 0}, "isv.invalid-parameter", "orderLines.orderLine[1].planQty must be a positive whole number"),
    ],
)
async def test_invalid_create_is_rejected_precisely(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, kwargs: dict, code: str, message: str
) -> None:
    _, root = await call(client, CREATE, create_body("DO-1", **kwargs))
    status, got_code, got_message = flag(root)
    assert (status, got_code) == ("failure", code)
    assert got_message.startswith(message)
    assert sim.state()["outbound_orders"] == 0


# --------------------------------------------------------------------------- shipping and confirm push


def confirm_root(body: str) -> ET.Element:
    return ET.fromstring(body.encode())


async def test_shipping_pushes_a_signed_confirm_and_retries_once(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, fresh_receiver: Receiver
) -> None:
    fresh_receiver.fail_first = 1
    sim.set_callback(fresh_receiver.url)
    _, created = await call(client, CREATE, create_body("DO-1", qty=3))
    assert created is not None
    assert await sim.ship("DO-1")
    await sim.flush(max_wait_s=5)

    assert len(fresh_receiver.calls) == 2
    for params, body in fresh_receiver.calls:
        assert params["method"] == CONFIRM
        assert (params["app_key"], params["customerId"], params["format"], params["v"]) == (
            APP_KEY,
            CUSTOMER,
            "xml",
            "2.0",
        )
        assert params["sign"] == independent_sign(params, body, SECRET)
        # a fresh signed timestamp on every attempt, or a receiver checking freshness refuses the retry
        sent = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
        assert abs((datetime.now(CST) - sent).total_seconds()) < 60, params["timestamp"]
    root = confirm_root(fresh_receiver.calls[-1][1])
    assert root.findtext("deliveryOrder/deliveryOrderCode") == "DO-1"
    assert root.findtext("deliveryOrder/deliveryOrderId") == created.findtext("deliveryOrderId")
    assert root.findtext("deliveryOrder/status") == "DELIVERED"
    assert root.findtext("packages/package/expressCode", "").startswith("SF")
    assert root.findtext("packages/package/logisticsCode") == "SF"
    assert root.findtext("orderLines/orderLine/actualQty") == "3"
    out_biz = {confirm_root(body).findtext("deliveryOrder/outBizCode") for _, body in fresh_receiver.calls}
    assert len(out_biz) == 1, "a retry re-sends the same message, so the outBizCode must not change"

    state = sim.state()
    assert (state["confirm_pushes"], state["confirm_push_failures"], state["confirm_acked"]) == (2, 1, 1)
    assert state["orders"]["DO-1"]["status"] == "DELIVERED"
    assert state["orders"]["DO-1"]["waybill"] == root.findtext("packages/package/expressCode")


async def test_waybill_is_deterministic_for_seed_and_order(fresh_receiver: Receiver) -> None:
    waybills = []
    for _ in range(2):
        simulator = QimenWmsSimulator(APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0, seed=11)
        transport = httpx.ASGITransport(app=simulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
            await call(http, CREATE, create_body("DO-42"))
            await simulator.ship_all()
        waybills.append(simulator.state()["orders"]["DO-42"]["waybill"])
        await simulator.aclose()
    assert waybills[0] == waybills[1] and waybills[0].startswith("SF")


async def test_duplicate_fault_pushes_the_same_confirm_twice(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, fresh_receiver: Receiver
) -> None:
    sim.set_callback(fresh_receiver.url)
    await call(client, CREATE, create_body("DO-1"))
    sim.set_faults(FaultConfig(duplicate_rate=1.0))
    await sim.ship_all()
    await sim.flush(max_wait_s=5)
    bodies = [body for _, body in fresh_receiver.calls]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert sim.state()["confirm_duplicates_sent"] == 1


async def test_timed_shipping_and_query_fallback(fresh_receiver: Receiver) -> None:
    simulator = QimenWmsSimulator(
        APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0.05, callback_url=fresh_receiver.url
    )
    transport = httpx.ASGITransport(app=simulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
        await call(http, CREATE, create_body("DO-1"))
        _, before = await call(http, QUERY, query_body("DO-1"))
        assert before is not None and before.findtext("deliveryOrder/status") == "ACCEPT"
        await simulator.flush(max_wait_s=5)
        _, after = await call(http, QUERY, query_body("DO-1"))
    assert after is not None and flag(after)[0] == "success"
    assert after.findtext("deliveryOrder/status") == "DELIVERED"
    assert after.findtext("totalLines") == "1"
    assert after.findtext("packages/package/expressCode") == simulator.state()["orders"]["DO-1"]["waybill"]
    assert simulator.state()["confirm_acked"] == 1 and len(fresh_receiver.calls) == 1
    await simulator.aclose()


async def test_query_unknown_order_fails(client: httpx.AsyncClient) -> None:
    _, root = await call(client, QUERY, query_body("NOPE"))
    assert flag(root) == ("failure", "isv.order-not-exist", "deliveryOrder NOPE does not exist")


async def test_inventory_query_reflects_shipping(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    _, before = await call(client, INVENTORY, inventory_body("TD-SKU-0001"))
    assert before is not None and stock_of(before, "WH-SH") == 1000
    await call(client, CREATE, create_body("DO-1", qty=3))
    await sim.ship("DO-1")
    _, after = await call(client, INVENTORY, inventory_body("TD-SKU-0001"))
    assert after is not None
    assert (stock_of(after, "WH-SH"), stock_of(after, "WH-GZ")) == (997, 1000)
    row = after.find("items/item")
    assert row is not None and row.findtext("inventoryType") == "ZP" and row.findtext("lockQuantity") == "0"
    assert sim.state()["stock"]["WH-SH"]["TD-SKU-0001"] == 997


async def test_sim_on_its_own_server_thread(fresh_receiver: Receiver) -> None:
    """ship_all/flush called from the test loop must run on the uvicorn loop that owns the tasks."""
    simulator = QimenWmsSimulator(APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0)
    with BackgroundServer(simulator.app) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            _, root = await call(http, CREATE, create_body("DO-9"))
            assert flag(root)[0] == "success"
            await http.post("/_sim/callback", json={"url": fresh_receiver.url})
            assert await simulator.ship_all() == 1
            await simulator.flush(max_wait_s=5)
            state = (await http.get("/_sim/state")).json()
        await simulator.aclose()
    assert state["confirm_acked"] == 1 and state["orders"]["DO-9"]["status"] == "DELIVERED"
    assert len(fresh_receiver.calls) == 1


# --------------------------------------------------------------------------- faults


async def test_throttle_fault_answers_429_with_retry_after(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    admin = await client.post("/_sim/faults", json={"throttle_rate": 1.0, "retry_after_s": 2})
    assert admin.status_code == 200
    response, root = await call(client, CREATE, create_body("DO-1"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert flag(root)[0] == "failure"
    assert sim.state()["throttled"] == 1 and sim.state()["outbound_orders"] == 0


async def test_5xx_fault_answers_503(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    sim.set_faults(FaultConfig(error_5xx_rate=1.0))
    response, _ = await call(client, CREATE, create_body("DO-1"))
    assert response.status_code == 503
    sim.set_faults(FaultConfig())
    response, root = await call(client, CREATE, create_body("DO-1"))
    assert response.status_code == 200 and flag(root)[0] == "success"


async def test_latency_fault_delays_the_answer(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    sim.set_faults(FaultConfig(latency_ms=50))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call(client, INVENTORY, inventory_body("TD-SKU-0002"))
    assert loop.time() - started >= 0.05


async def test_bad_fault_config_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sim/faults", json={"throttle_rate": 3})
    assert response.status_code == 422


# --------------------------------------------------------------------------- order.cancel

CANCEL = "taobao.qimen.order.cancel"


def cancel_body(code: str, *, warehouse: str = "WH-SH", order_type: str = "JYCK", reason: str = "退款") -> str:
    return (
        f"<request><warehouseCode>{warehouse}</warehouseCode><ownerCode>{OWNER}</ownerCode>"
        f"<orderCode>{code}</orderCode><orderType>{order_type}</orderType>"
        f"<cancelReason>{reason}</cancelReason></request>"
    )


def two_line_body(code: str, source_order: str = "TB-2001") -> str:
    """A create body with two lines (TD-SKU-0001 x2, TD-SKU-0002 x1)."""
    root = ET.fromstring(create_body(code, source_order=source_order).encode())
    lines = root.find("orderLines")
    assert lines is not None
    second = ET.fromstring(
        f"<orderLine><orderLineNo>2</orderLineNo><sourceOrderCode>{source_order}</sourceOrderCode>"
        f"<subSourceOrderCode>{source_order}-2</subSourceOrderCode><ownerCode>{OWNER}</ownerCode>"
        "<itemCode>TD-SKU-0002</itemCode><planQty>1</planQty><actualPrice>88.00</actualPrice></orderLine>"
    )
    lines.append(second)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


async def test_cancel_before_shipping_stops_the_order_for_good(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, fresh_receiver: Receiver
) -> None:
    sim.set_callback(fresh_receiver.url)
    await call(client, CREATE, create_body("DO-1"))
    _, root = await call(client, CANCEL, cancel_body("DO-1"))
    assert flag(root) == ("success", "0", "success")
    assert sim.status_of("DO-1") == "CANCELED" and sim.cancelled_codes() == ["DO-1"]

    assert not await sim.ship("DO-1") and not await sim.ship_now("DO-1")
    assert await sim.ship_all() == 0
    await sim.flush(max_wait_s=5)
    assert not sim.was_shipped("DO-1") and sim.packages_of("DO-1") == []
    assert fresh_receiver.calls == []  # no confirm is ever pushed for a cancelled order
    _, query = await call(client, QUERY, query_body("DO-1"))
    assert query is not None and query.findtext("deliveryOrder/status") == "CANCELED"
    assert query.find("packages") is None
    state = sim.state()
    assert state["stock"]["WH-SH"]["TD-SKU-0001"] == 1000
    assert state["orders"]["DO-1"]["cancel_reason"] == "退款"


async def test_repeat_cancel_is_answered_success_already_cancelled(
    client: httpx.AsyncClient, sim: QimenWmsSimulator
) -> None:
    await call(client, CREATE, create_body("DO-1"))
    await call(client, CANCEL, cancel_body("DO-1"))
    _, again = await call(client, CANCEL, cancel_body("DO-1"))
    assert flag(again) == ("success", "0", "单据已取消")
    assert sim.cancel_calls() == 2 and sim.state()["cancel_repeats"] == 1
    assert sim.cancelled_codes() == ["DO-1"]


async def test_cancel_after_shipping_is_refused(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    await call(client, CREATE, create_body("DO-1"))
    assert await sim.ship("DO-1")
    _, root = await call(client, CANCEL, cancel_body("DO-1"))
    status, code, message = flag(root)
    assert (status, code) == ("failure", "isv.order-status-invalid")
    assert message.startswith("单据已发货,不能取消")
    assert sim.status_of("DO-1") == "DELIVERED" and sim.cancelled_codes() == []
    assert sim.state()["cancel_refused"] == 1


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (cancel_body("NOPE"), "isv.order-not-exist", "单据不存在: NOPE"),
        (cancel_body("DO-1", order_type="CGRK"), "isv.order-not-exist", "单据不存在: DO-1"),
        (cancel_body("DO-1", warehouse="WH-XX"), "isv.warehouse-not-exist", "request.warehouseCode WH-XX"),
        ("<request><orderCode>DO-1</orderCode></request>", "isv.missing-parameter", "request.warehouseCode"),
    ],
)
async def test_cancel_of_unknown_or_malformed_request_fails(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, body: str, code: str, message: str
) -> None:
    await call(client, CREATE, create_body("DO-1"))
    _, root = await call(client, CANCEL, body)
    status, got_code, got_message = flag(root)
    assert (status, got_code) == ("failure", code) and got_message.startswith(message)
    assert sim.status_of("DO-1") == "ACCEPT"


async def test_cancel_checks_the_signature(client: httpx.AsyncClient, sim: QimenWmsSimulator) -> None:
    await call(client, CREATE, create_body("DO-1"))
    _, root = await call(client, CANCEL, cancel_body("DO-1"), secret="wrong")
    assert flag(root)[:2] == ("failure", "sign-check-failure")
    assert sim.status_of("DO-1") == "ACCEPT"


async def test_create_reusing_a_cancelled_code_is_refused_as_duplicate(
    client: httpx.AsyncClient, sim: QimenWmsSimulator
) -> None:
    _, first = await call(client, CREATE, create_body("DO-1"))
    await call(client, CANCEL, cancel_body("DO-1"))
    _, again = await call(client, CREATE, create_body("DO-1"))
    status, code, message = flag(again)
    assert (status, code) == ("failure", "isv.order-duplicate")
    assert "重复" in message and "已存在" in message and "CANCELED" in message
    _, query = await call(client, QUERY, query_body("DO-1"))
    assert query is not None and first is not None
    assert query.findtext("deliveryOrder/deliveryOrderId") == first.findtext("deliveryOrderId")
    assert query.findtext("deliveryOrder/status") == "CANCELED"
    assert sim.state()["create_refused_cancelled"] == 1 and sim.state()["outbound_orders"] == 1


async def test_held_order_waits_for_the_timer_and_can_be_cancelled(fresh_receiver: Receiver) -> None:
    simulator = QimenWmsSimulator(
        APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0.02, callback_url=fresh_receiver.url
    )
    simulator.hold("DO-HOLD")  # before the order even exists
    transport = httpx.ASGITransport(app=simulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
        await call(http, CREATE, create_body("DO-HOLD", source_order="TB-H"))
        await call(http, CREATE, create_body("DO-FREE", source_order="TB-F"))
        await simulator.flush(max_wait_s=5)
        assert simulator.status_of("DO-FREE") == "DELIVERED"
        assert simulator.status_of("DO-HOLD") == "ACCEPT" and await simulator.ship_all() == 0
        _, root = await call(http, CANCEL, cancel_body("DO-HOLD"))
        assert flag(root)[0] == "success"
        simulator.release("DO-HOLD")
        await simulator.flush(max_wait_s=5)
    assert simulator.status_of("DO-HOLD") == "CANCELED" and not simulator.was_shipped("DO-HOLD")
    codes = {confirm_root(body).findtext("deliveryOrder/deliveryOrderCode") for _, body in fresh_receiver.calls}
    assert codes == {"DO-FREE"}
    await simulator.aclose()


async def test_release_lets_the_timer_ship(fresh_receiver: Receiver) -> None:
    simulator = QimenWmsSimulator(APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0.02)
    simulator.hold("DO-1")
    with BackgroundServer(simulator.app) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            await call(http, CREATE, create_body("DO-1"))
            await simulator.flush(max_wait_s=5)
            assert not simulator.was_shipped("DO-1")
            simulator.release("DO-1")
            await asyncio.sleep(0.05)
            await simulator.flush(max_wait_s=5)
        await simulator.aclose()
    assert simulator.status_of("DO-1") == "DELIVERED"


# --------------------------------------------------------------------------- split packages


async def test_split_order_ships_in_two_confirmed_packages(fresh_receiver: Receiver) -> None:
    simulator = QimenWmsSimulator(
        APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0, split_packages=1.0,
        callback_url=fresh_receiver.url, push_backoff_s=0.02,
    )
    transport = httpx.ASGITransport(app=simulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
        await call(http, CREATE, two_line_body("DO-S"))
        assert await simulator.ship("DO-S")
        await simulator.flush(max_wait_s=5)
        _, mid = await call(http, QUERY, query_body("DO-S"))
        assert mid is not None and mid.findtext("deliveryOrder/status") == "PARTDELIVERED"
        assert mid.findtext("deliveryOrder/confirmType") == "1"
        assert len(mid.findall("packages/package")) == 1
        _, refused = await call(http, CANCEL, cancel_body("DO-S"))
        assert flag(refused)[0] == "failure" and "已发货" in flag(refused)[2]

        assert await simulator.ship("DO-S")
        assert not await simulator.ship("DO-S")  # nothing left
        await simulator.flush(max_wait_s=5)
        _, done = await call(http, QUERY, query_body("DO-S"))
    assert done is not None and done.findtext("deliveryOrder/status") == "DELIVERED"
    assert [p.findtext("packageCode") for p in done.findall("packages/package")] == [
        p["package_code"] for p in simulator.packages_of("DO-S")]

    first, second = (confirm_root(body) for _, body in fresh_receiver.calls)
    assert (first.findtext("deliveryOrder/confirmType"), first.findtext("deliveryOrder/status")) == (
        "1", "PARTDELIVERED")
    assert (second.findtext("deliveryOrder/confirmType"), second.findtext("deliveryOrder/status")) == (
        "0", "DELIVERED")
    assert first.findtext("deliveryOrder/outBizCode") != second.findtext("deliveryOrder/outBizCode")
    for root, item, qty in ((first, "TD-SKU-0001", "2"), (second, "TD-SKU-0002", "1")):
        (package,) = root.findall("packages/package")
        assert [(i.findtext("itemCode"), i.findtext("quantity")) for i in package.findall("items/item")] == [
            (item, qty)]
    assert first.findtext("packages/package/expressCode") != second.findtext("packages/package/expressCode")
    assert [line.findtext("orderLineNo") for line in first.findall("orderLines/orderLine")] == ["1"]
    assert [(line.findtext("orderLineNo"), line.findtext("actualQty"))
            for line in second.findall("orderLines/orderLine")] == [("1", "2"), ("2", "1")]
    state = simulator.state()
    assert (state["packages_shipped"], state["shipped"]) == (2, 1)
    assert state["orders"]["DO-S"]["confirm_acked"] is True
    assert state["stock"]["WH-SH"]["TD-SKU-0002"] == 999
    await simulator.aclose()


async def test_split_on_the_timer_and_single_line_orders_stay_whole(fresh_receiver: Receiver) -> None:
    simulator = QimenWmsSimulator(
        APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0.01, split_packages=1.0, split_gap_s=0.01,
        callback_url=fresh_receiver.url,
    )
    transport = httpx.ASGITransport(app=simulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
        await call(http, CREATE, two_line_body("DO-S"))
        await call(http, CREATE, create_body("DO-1", source_order="TB-9"))
        await simulator.flush(max_wait_s=5)
    assert [len(simulator.packages_of(code)) for code in ("DO-S", "DO-1")] == [2, 1]
    kinds = sorted(
        (confirm_root(body).findtext("deliveryOrder/deliveryOrderCode"),
         confirm_root(body).findtext("deliveryOrder/confirmType"))
        for _, body in fresh_receiver.calls
    )
    assert kinds == [("DO-1", "0"), ("DO-S", "0"), ("DO-S", "1")]
    await simulator.aclose()


async def test_split_share_is_deterministic_and_ship_now_ships_everything() -> None:
    plans = []
    for _ in range(2):
        simulator = QimenWmsSimulator(APP_KEY, SECRET, CUSTOMER, WAREHOUSES, ITEMS, ship_delay_s=0,
                                      split_packages=0.5, seed=3)
        transport = httpx.ASGITransport(app=simulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qimen.test") as http:
            for n in range(12):
                await call(http, CREATE, two_line_body(f"DO-{n}", source_order=f"TB-{n}"))
            for n in range(12):
                assert await simulator.ship_now(f"DO-{n}")
        plans.append([len(simulator.packages_of(f"DO-{n}")) for n in range(12)])
        assert all(simulator.status_of(f"DO-{n}") == "DELIVERED" for n in range(12))
        await simulator.aclose()
    assert plans[0] == plans[1] and set(plans[0]) == {1, 2}


async def test_wms_side_cancel_pushes_a_status_only_confirm(
    client: httpx.AsyncClient, sim: QimenWmsSimulator, fresh_receiver: Receiver
) -> None:
    sim.set_callback(fresh_receiver.url)
    await call(client, CREATE, create_body("DO-1"))
    assert await sim.wms_cancel("DO-1", "CLOSED")
    await sim.flush(max_wait_s=5)
    (_, body), = fresh_receiver.calls
    root = confirm_root(body)
    assert root.findtext("deliveryOrder/status") == "CLOSED" and root.find("packages") is None
    assert not await sim.ship("DO-1") and sim.status_of("DO-1") == "CLOSED"
    _, answer = await call(client, CANCEL, cancel_body("DO-1"))
    assert flag(answer) == ("success", "0", "单据已关闭")
