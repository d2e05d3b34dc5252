"""Tests of the Douyin shop open-platform simulator, and the contract test of the real connector
against it (in process, through httpx.ASGITransport).

Requests are signed here with a hand-written version of the SDKs' rule, not the simulator's helper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canonical import Shipment
from canonical.validation import validate_order
from connectors.douyin import DouyinConnector
from connectors.http import RetryPolicy
from mappings import load_spec
from simulators.douyin import DouyinSimulator
from simulators.faults import FaultConfig
from simulators.server import BackgroundServer

APP_KEY, SECRET = "7152333376438649396", "sim-secret-0001"
TOKEN_A, TOKEN_B = "token-a", "token-b"
SHOP_A, SHOP_B = "4463798", "4463799"
NOW = datetime(2026, 6, 18, 4, 0, 0, tzinfo=UTC)


def sign(method: str, body: str, timestamp: str, sign_method: str = "hmac-sha256", secret: str = SECRET) -> str:
    text = f"{secret}app_key{APP_KEY}method{method}param_json{body}timestamp{timestamp}v2{secret}"
    if sign_method == "md5":
        return hashlib.md5(text.encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def make_sim(**overrides: Any) -> DouyinSimulator:
    options: dict[str, Any] = {"apps": {APP_KEY: SECRET}, "shops": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B},
                               "orders_per_shop": 30, "malformed_per_shop": 4, "seed": 42, "now": NOW}
    return DouyinSimulator(**(options | overrides))


async def call(sim: DouyinSimulator, api: str, params: dict[str, Any], *, token: str = TOKEN_A,
               sign_method: str = "hmac-sha256", body: str | None = None, **query: str) -> dict[str, Any]:
    text = body if body is not None else json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    stamp = query.pop("timestamp", str(int(sim.now().timestamp())))
    q = {"app_key": APP_KEY, "method": api, "access_token": token, "timestamp": stamp, "v": "2",
         "sign_method": sign_method, "sign": sign(api, text, stamp, sign_method)} | query
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://dy.test") as client:
        answer = await client.post("/" + api.replace(".", "/"), params=q, content=text.encode())
    assert answer.status_code == 200
    return answer.json()


async def test_gateway_checks_signature_token_and_method() -> None:
    sim = make_sim()
    good = await call(sim, "order.searchList", {"page": 0, "size": 5})
    assert good["code"] == 10000 and good["data"]["total"] == 30 and len(good["data"]["shop_order_list"]) == 5
    md5 = await call(sim, "order.searchList", {"page": 0, "size": 1}, sign_method="md5")
    assert md5["code"] == 10000
    bad = await call(sim, "order.searchList", {"page": 0}, sign="0" * 64)
    assert (bad["code"], bad["sub_code"]) == (40003, "isv.signature-invalid")
    assert (await call(sim, "order.searchList", {}, token="nope"))["sub_code"] == "isv.access-token-no-existed"
    old = await call(sim, "order.searchList", {}, timestamp=str(int((NOW - timedelta(hours=1)).timestamp())))
    assert old["sub_code"] == "isv.timestamp-invalid"
    assert (await call(sim, "order.searchList", {}, method="order.orderDetail"))["code"] == 40003
    # the Java SDK signs the key-sorted form but sends its own field order: accepted
    unsorted = '{"size":2,"page":0}'
    stamp = str(int(sim.now().timestamp()))
    q = {"app_key": APP_KEY, "method": "order.searchList", "access_token": TOKEN_A, "timestamp": stamp, "v": "2",
         "sign": sign("order.searchList", '{"page":0,"size":2}', stamp, "md5")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://dy.test") as client:
        assert (await client.post("/order/searchList", params=q, content=unsorted)).json()["code"] == 10000
    assert sim.state()["rejected_signatures"] == 1


async def test_search_list_pages_filters_and_limits() -> None:
    sim = make_sim()
    ids = [o for o in sim.orders(SHOP_A)]
    times = sorted(sim.order(o)["update_time"] for o in ids)
    start, end = times[5], times[20]
    want = sum(1 for t in times if start <= t <= end)  # inclusive at both ends
    seen: list[str] = []
    for page in range(3):
        data = (await call(sim, "order.searchList", {"update_time_start": start, "update_time_end": end,
                                                     "order_by": "update_time", "page": page, "size": 7}))["data"]
        assert data["total"] == want
        rows = data["shop_order_list"]
        assert [r["update_time"] for r in rows] == sorted((r["update_time"] for r in rows), reverse=True)
        seen += [r["order_id"] for r in rows]
    assert len(seen) == len(set(seen)) == want
    assert {sim.order(o)["shop_id"] for o in seen} == {int(SHOP_A)}
    assert (await call(sim, "order.searchList", {"size": 101}))["code"] == 40004


async def test_flow_control_and_faults() -> None:
    sim = make_sim(calls_per_second=1)
    first = await call(sim, "order.searchList", {"size": 1})
    second = await call(sim, "order.searchList", {"size": 1})
    assert first["code"] == 10000 and (second["code"], second["sub_code"][:19]) == (60000, "isp.traffic-limited")
    assert sim.state()["rate_limited"] == 1
    faulty = make_sim(faults=FaultConfig(error_5xx_rate=1.0, seed=1))
    assert (await call(faulty, "order.searchList", {}))["code"] == 20000


async def test_orders_are_encrypted_and_decrypt_needs_the_order_as_auth_id() -> None:
    sim = make_sim()
    oid = next(o for o in sim.orders(SHOP_A) if o not in sim.state()["malformed_tids"])
    doc = (await call(sim, "order.orderDetail", {"shop_order_id": oid}))["data"]["shop_order_detail"]
    assert doc["post_receiver"] == "" and doc["encrypt_post_receiver"].startswith("~")
    assert doc["encrypt_post_tel"].startswith("$") and doc["post_addr"]["encrypt_detail"].startswith("#")
    assert "*" in doc["mask_post_tel"]
    ciphers = [doc["encrypt_post_receiver"], doc["encrypt_post_tel"], doc["post_addr"]["encrypt_detail"]]
    got = (await call(sim, "order.batchDecrypt", {"cipher_infos": [{"auth_id": oid, "cipher_text": c}
                                                                   for c in ciphers]}))["data"]["decrypt_infos"]
    assert [i["err_no"] for i in got] == [0, 0, 0] and [i["data_type"] for i in got] == [2, 3, 1]
    assert got[1]["decrypt_text"].isdigit() and len(got[1]["decrypt_text"]) == 11
    wrong = (await call(sim, "order.batchDecrypt", {"cipher_infos": [{"auth_id": "1", "cipher_text": ciphers[0]}]}))
    assert wrong["data"]["decrypt_infos"][0]["err_no"] != 0
    other_shop = await call(sim, "order.batchDecrypt", {"cipher_infos": [{"auth_id": oid, "cipher_text": ciphers[0]}]},
                            token=TOKEN_B)
    assert other_shop["data"]["decrypt_infos"][0]["err_no"] != 0
    too_many = await call(sim, "order.batchDecrypt", {"cipher_infos": [{"auth_id": oid, "cipher_text": "x"}] * 51})
    assert too_many["code"] == 40004
    assert (await call(sim, "order.orderDetail", {"shop_order_id": oid}, token=TOKEN_B))["code"] == 50002


async def test_write_back_whole_split_and_repeats() -> None:
    sim = make_sim()
    [whole] = sim.add_orders(SHOP_A, 1, lines=1)
    answer = await call(sim, "order.logisticsAdd", {"order_id": whole, "company_code": "shunfeng",
                                                    "logistics_code": "SF1234567890"})
    assert answer["code"] == 10000 and sim.status(whole) == 3
    again = await call(sim, "order.logisticsAdd", {"order_id": whole, "company_code": "shunfeng",
                                                   "logistics_code": "SF1234567890"})
    assert (again["code"], again["sub_msg"]) == (50002, "订单已发货，不能重复发货")
    assert (await call(sim, "order.logisticsAdd", {"order_id": whole, "company_code": "nope",
                                                   "logistics_code": "SF1"}))["code"] in (40004, 50002)
    [split] = sim.add_orders(SHOP_A, 1, lines=2)
    a, b = (s["order_id"] for s in sim.order(split)["sku_order_list"])
    num = {s["order_id"]: s["item_num"] for s in sim.order(split)["sku_order_list"]}
    params = {"order_id": split, "request_id": "req-1", "pack_list": [{
        "company_code": "zhongtong", "logistics_code": "ZT000000001",
        "shipped_order_info": [{"shipped_order_id": a, "shipped_num": num[a]}]}]}
    first = await call(sim, "order.logisticsAddMultiPack", params)
    assert first["code"] == 10000 and sim.status(split) == 101
    assert (await call(sim, "order.logisticsAddMultiPack", params))["data"] == first["data"]  # idempotent
    assert len(sim.writebacks(split)) == 1
    rest = {**params, "request_id": "req-2", "pack_list": [{**params["pack_list"][0], "logistics_code": "ZT000000002",
                                                            "shipped_order_info": [{"shipped_order_id": b,
                                                                                    "shipped_num": num[b]}]}]}
    assert (await call(sim, "order.logisticsAddMultiPack", rest))["code"] == 10000
    assert sim.status(split) == 3 and [w["sku_order_ids"] for w in sim.writebacks(split)] == [[a], [b]]
    assert sim.state()["shipped_count"] == 2 and sim.state()["repeat_writebacks"] == 2  # both later tries


async def test_lifecycle_and_signed_pushes() -> None:
    sim = make_sim(orders_per_shop=2, malformed_per_shop=0)
    [unpaid] = sim.add_orders(SHOP_A, 1, status="unpaid")
    [presale] = sim.add_orders(SHOP_A, 1, presale=True)
    [paid] = sim.add_orders(SHOP_A, 1, lines=2)
    assert sim.status(unpaid) == 1 and sim.order(presale)["order_phase_list"][0]["pay_success"]
    before = sim.order(paid)["update_time"]
    sim.pay(unpaid)
    sim.pay_balance(presale)
    line = sim.order(paid)["sku_order_list"][0]["order_id"]
    sim.request_refund(paid, line)
    sim.refund_line(paid, line)
    sim.change_address(paid, detail="新地址1号")
    assert sim.status(unpaid) == 2 and sim.status(presale) == 2 and sim.order(paid)["update_time"] > before
    assert sim.order(paid)["sku_order_list"][0]["after_sale_info"]["refund_status"] == 3
    sim.cancel(unpaid)
    assert sim.status(unpaid) == 4
    pushes = sim.drain_pushes()
    tags = [json.loads(body)[0]["tag"] for _, body in pushes]
    assert tags[:3] == ["100", "100", "100"] and {"101", "200", "206", "105", "106"} <= set(tags)
    for headers, body in pushes:  # md5(app_key + body + secret), written out by hand
        assert headers["event-sign"] == hashlib.md5(APP_KEY.encode() + body + SECRET.encode()).hexdigest()
        assert headers["app-id"] == APP_KEY
    assert sim.drain_pushes() == []
    state = sim.state()
    assert {"orders_created", "orders_malformed", "shipped_count", "malformed_tids"} <= set(state)
    assert state["orders_created"] == 2 * 2 + 3


def test_seeded_and_deterministic() -> None:
    one, two = make_sim(), make_sim()
    assert one.orders(SHOP_A) == two.orders(SHOP_A)
    assert one.state()["malformed_tids"] == two.state()["malformed_tids"]
    assert len(one.state()["malformed_tids"]) == 8


# --- contract: the real connector against the simulator ---------------------------------------------


def connector_for(sim: DouyinSimulator, base_url: str = "http://dy.test", **settings: Any) -> DouyinConnector:
    conn = DouyinConnector.from_config("dy-a", {"base_url": base_url, "app_key": APP_KEY, "shop_id": SHOP_A,
                                                **settings}, {"app_secret": SECRET, "access_token": TOKEN_A})
    assert isinstance(conn, DouyinConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=4, max_elapsed_s=10, initial_s=0.001, max_s=2)
    return conn


@pytest.mark.parametrize("sign_method", ["hmac-sha256", "md5"])
async def test_contract_pull_get_write_back_decrypt_push(sign_method: str) -> None:
    sim = make_sim(now=datetime.now(UTC), faults=FaultConfig(duplicate_rate=0.3, seed=5))
    conn = connector_for(sim, sign_method=sign_method, page_size=7)
    until = sim.now() + timedelta(seconds=1)
    records = [r async for batch in conn.pull_orders(until - timedelta(hours=7), until) for r in batch]
    ids = [r.external_id for r in records]
    assert sorted(ids) == sorted(sim.orders(SHOP_A)) and len(ids) == len(set(ids))
    listed = await conn.list_order_ids(until - timedelta(hours=7), until)
    assert sorted(i for i, _ in listed) == sorted(ids)

    spec = load_spec("douyin_order")
    malformed = set(sim.state()["malformed_tids"])
    good = 0
    for record in records:
        result = spec.apply(record.payload, context={"shop": conn.shop_of(record.payload)})
        fine = result.ok and not validate_order(result.value)
        assert fine == (record.external_id not in malformed), (record.external_id, result.errors)
        good += fine
    assert good == 26

    target = next(r for r in records if r.external_id not in malformed and len(r.payload["sku_order_list"]) >= 2)
    again = await conn.get_order(target.external_id)
    assert again.payload["order_id"] == target.external_id
    clear = await conn.shippable_receiver(again.payload)
    assert clear["mobile"].isdigit() and clear["name"] and clear["street"] and clear["province"]

    lines = [s["order_id"] for s in again.payload["sku_order_list"]]
    ship = Shipment(order_key=f"douyin:{SHOP_A}:{target.external_id}", carrier_code="ZTO",
                    tracking_number="ZT7700000001", shipped_at=datetime.now(UTC))
    assert (await conn.push_shipment(target.external_id, ship, line_ids=lines[:1])).taken
    repeat = await conn.push_shipment(target.external_id, ship, line_ids=lines[:1])
    assert not repeat.taken and repeat.tracking_on_platform == ["ZT7700000001"]
    rest = ship.model_copy(update={"tracking_number": "ZT7700000002"})
    assert (await conn.push_shipment(target.external_id, rest, line_ids=lines[1:])).taken
    assert sim.status(target.external_id) == 3 and len(sim.writebacks(target.external_id)) == 2

    whole = next(r.external_id for r in records if r.external_id not in malformed
                 and r.external_id != target.external_id)
    ship_whole = ship.model_copy(update={"tracking_number": "SF9900000001", "carrier_code": "SF"})
    assert (await conn.push_shipment(whole, ship_whole)).taken
    repeat_whole = await conn.push_shipment(whole, ship_whole)
    assert not repeat_whole.taken and repeat_whole.tracking_on_platform == ["SF9900000001"]

    sim.drain_pushes()
    sim.cancel(next(r.external_id for r in records if r.external_id not in malformed
                    and r.external_id not in (whole, target.external_id)))
    for headers, body in sim.drain_pushes():
        result = await conn.handle_push({k.lower(): v for k, v in headers.items()}, {}, body)
        assert result.status_code == 200 and result.events and result.events[0]["type"] == "order_changed"
        assert (await conn.get_order(result.events[0]["external_id"])).payload["order_status"] == 4
    await conn.aclose()


async def test_contract_over_a_real_socket_with_throttling() -> None:
    sim = make_sim(now=datetime.now(UTC), calls_per_second=20, orders_per_shop=5, malformed_per_shop=0)
    with BackgroundServer(sim.app) as server:
        conn = DouyinConnector.from_config("dy-a", {"base_url": server.base_url, "app_key": APP_KEY,
                                                    "shop_id": SHOP_A, "page_size": 1},
                                           {"app_secret": SECRET, "access_token": TOKEN_A})
        assert isinstance(conn, DouyinConnector)
        until = sim.now() + timedelta(seconds=1)
        ids: list[str] = []
        async for batch in conn.pull_orders(until - timedelta(hours=7), until):
            ids += [r.external_id for r in batch]
        assert sorted(ids) == sorted(sim.orders(SHOP_A))
        assert "ok: shop 4463798" in await conn.test()
        await conn.aclose()
