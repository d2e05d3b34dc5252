"""Tests of the Pinduoduo POP gateway simulator, and one contract test of the real connector on it.

Requests are signed here with a hand-written copy of the POP rule (PHP SDK ``PopHttpClient::makeSign``),
not with the simulator's helper, so a wrong rule in the simulator cannot agree with itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canonical import Shipment
from connectors.http import RetryPolicy
from connectors.pdd import PddConnector
from mappings import DictLookups, load_spec
from simulators.faults import FaultConfig
from simulators.pdd import PddSimulator

CLIENT_ID, SECRET = "sim-client-0001", "sim-secret-0001"
TOKEN_A, TOKEN_B = "token-a", "token-b"
SHOP_A, SHOP_B = "pdd-a", "pdd-b"
ROUTER = "http://pdd.sim/api/router"


def independent_sign(params: dict[str, str], secret: str) -> str:
    text = "".join(k + params[k] for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((secret + text + secret).encode()).hexdigest().upper()


def make_sim(**overrides: Any) -> PddSimulator:
    options: dict[str, Any] = {"clients": {CLIENT_ID: SECRET}, "shops": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B},
                               "orders_per_shop": 30, "malformed_per_shop": 4, "seed": 42}
    options.update(overrides)
    return PddSimulator(**options)


def form(api: str, token: str = TOKEN_A, secret: str = SECRET, **params: Any) -> dict[str, str]:
    merged = {"type": api, "client_id": CLIENT_ID, "access_token": token, "timestamp": str(int(time.time())),
              "data_type": "JSON", "version": "V1", **{k: str(v) for k, v in params.items()}}
    merged["sign"] = independent_sign(merged, secret)
    return merged


async def call(sim: PddSimulator, api: str, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://pdd.sim") as client:
        response = await client.post("/api/router", data=form(api, **params))
        assert response.status_code == 200
        return response.json()


def window(sim: PddSimulator, minutes: int = 30) -> tuple[int, int]:
    end = int(sim.now().timestamp())
    return end - minutes * 60, end


async def test_seeded_state_is_deterministic():
    a, b = make_sim().state(), make_sim().state()
    assert a["orders_created"] == 60 and a["orders_malformed"] == 8
    assert a["malformed_tids"] == b["malformed_tids"]
    assert set(a["malformed"].values()) == {"empty_address", "no_phone", "missing_sku", "bad_amount"}


async def test_bad_signature_and_unknown_token_are_refused_in_pop_format():
    sim = make_sim()
    start, end = window(sim)
    bad = await call(sim, "pdd.order.number.list.increment.get", secret="wrong", start_updated_at=start,
                     end_updated_at=end, order_status=5, refund_status=5, is_lucky_flag=0, page=1)
    assert bad["error_response"]["error_code"] == 20004
    expired = await call(sim, "pdd.order.information.get", token="nope", order_sn="250101-1")
    assert expired["error_response"]["error_code"] == 10019
    assert sim.state()["rejected_signatures"] == 1


async def test_window_longer_than_30_minutes_is_refused():
    sim = make_sim()
    start, end = window(sim, 31)
    answer = await call(sim, "pdd.order.number.list.increment.get", start_updated_at=start, end_updated_at=end,
                        order_status=5, refund_status=5, is_lucky_flag=0, page=1)
    assert answer["error_response"]["error_code"] == 10000


async def test_increment_pages_total_and_has_next():
    sim = make_sim(orders_per_shop=5, malformed_per_shop=0, spread_hours=0.2)
    sim.add_orders(TOKEN_A, 3)
    start, end = window(sim)
    args = {"start_updated_at": start, "end_updated_at": end, "order_status": 5, "refund_status": 5,
            "is_lucky_flag": 0, "page_size": 3}
    first = (await call(sim, "pdd.order.number.list.increment.get", page=1, **args))["order_sn_increment_get_response"]
    second = (await call(sim, "pdd.order.number.list.increment.get", page=3, **args))["order_sn_increment_get_response"]
    assert first["total_count"] == 8 and first["has_next"] and len(first["order_sn_list"]) == 3
    assert not second["has_next"] and len(second["order_sn_list"]) == 2
    only_next = (await call(sim, "pdd.order.number.list.increment.get", page=1, use_has_next="true", **args))
    assert "total_count" not in only_next["order_sn_increment_get_response"]
    entry = first["order_sn_list"][0]
    assert entry["receiver_name"].startswith("~") and entry["receiver_phone"].startswith("$")
    assert entry["item_list"][0]["outer_id"].startswith("TD-SKU-")


async def test_decrypt_needs_the_right_tag_and_shop():
    sim = make_sim()
    sn = sim.make_order(TOKEN_A)
    order = sim.order(sn)
    data_list = json.dumps([{"data_tag": sn, "encrypted_data": order["receiver_name"]},
                            {"data_tag": "250101-999", "encrypted_data": order["receiver_phone"]}])
    answer = (await call(sim, "pdd.open.decrypt.batch", data_list=data_list))["open_decrypt_batch_response"]
    ok, wrong_tag = answer["data_decrypt_list"]
    assert ok["error_code"] == 0 and ok["decrypted_data"] == sim.clear_receiver(sn)["name"]
    assert wrong_tag["error_code"] != 0 and wrong_tag["decrypted_data"] == ""
    other_shop = (await call(sim, "pdd.open.decrypt.batch", token=TOKEN_B, data_list=data_list))
    assert all(i["error_code"] != 0 for i in other_shop["open_decrypt_batch_response"]["data_decrypt_list"])


async def test_send_then_extra_parcel_then_repeat():
    sim = make_sim()
    sn = sim.make_order(TOKEN_A, lines=2)
    sent = await call(sim, "pdd.logistics.online.send", order_sn=sn, logistics_id=44, tracking_number="SF100")
    assert sent["logistics_online_send_response"]["is_success"] is True
    again = await call(sim, "pdd.logistics.online.send", order_sn=sn, logistics_id=44, tracking_number="SF100")
    assert again["error_response"]["error_code"] == 10000
    extra = await call(sim, "pdd.order.upload.extra.logistics", order_sn=sn, extra_track_type=1,
                       extra_track_list=json.dumps([{"shipping_id": 115, "tracking_number": "ZT200"}]))
    assert extra["upload_extra_logistics_response"]["success"] is True
    assert sim.writebacks(sn) == [("SF100", 44, "send"), ("ZT200", 115, "extra")]
    order = sim.order(sn)
    assert order["order_status"] == 2 and order["extra_delivery_list"] == [{"logistics_id": 115,
                                                                            "tracking_number": "ZT200"}]
    info = (await call(sim, "pdd.order.information.get", order_sn=sn))["order_info_get_response"]["order_info"]
    assert info["receiver_name"] == "" and info["receiver_name_mask"]  # no ciphertext after shipment
    assert sim.state()["shipped_count"] == 1


async def test_lifecycle_moves_updated_at_and_records_messages():
    sim = make_sim(now=datetime.now(UTC) - timedelta(minutes=5))
    unconfirmed = sim.make_order(TOKEN_A, status="unconfirmed")
    presale = sim.make_order(TOKEN_A, presale="nothing")
    before = sim.order(unconfirmed)["updated_at"]
    sim.advance(60)
    sim.confirm(unconfirmed)
    assert sim.status(unconfirmed)["confirm_status"] == 1 and sim.order(unconfirmed)["updated_at"] > before
    sim.pay_deposit(presale)
    sim.pay_balance(presale)
    assert sim.status(presale)["confirm_status"] == 1
    sim.refund_all(presale)
    assert sim.status(presale)["refund_status"] == 4
    with pytest.raises(ValueError):
        sim.refund_all(presale)
    kinds = [m["message"]["type"] for m in sim.messages()]
    assert kinds.count("pdd_trade_TradeCreated") == 2 and "pdd_refund_RefundAgreed" in kinds


async def test_throttle_fault_and_rate_limit_answer_70031():
    sim = make_sim(faults=FaultConfig(throttle_rate=1.0))
    answer = await call(sim, "pdd.logistics.companies.get")
    assert answer["error_response"]["error_code"] == 70031
    limited = make_sim(calls_per_second=0.001)
    await call(limited, "pdd.logistics.companies.get")
    assert (await call(limited, "pdd.logistics.companies.get"))["error_response"]["error_code"] == 70031
    assert limited.state()["rate_limited"] == 1


async def test_signed_push_relay_shape():
    sim = make_sim()
    sim.make_order(TOKEN_A)
    query, body = sim.signed_push(sim.messages()[-1])
    assert query["sign"] == independent_sign({"client_id": query["client_id"], "timestamp": query["timestamp"],
                                              "body": body.decode()}, SECRET)


# --- contract: the real connector against the simulator ---------------------------------------------


def connector_for(sim: PddSimulator, token: str = TOKEN_A) -> PddConnector:
    conn = PddConnector.from_config("pdd-a", {"base_url": ROUTER, "client_id": CLIENT_ID, "shop": SHOP_A,
                                              "page_size": 7}, {"client_secret": SECRET, "access_token": token})
    assert isinstance(conn, PddConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=5, max_elapsed_s=10, initial_s=0.001, max_s=1.5)
    return conn


async def test_contract_pull_get_decrypt_write_back():
    sim = make_sim(orders_per_shop=40, malformed_per_shop=4, spread_hours=1.5,
                   faults=FaultConfig(duplicate_rate=0.3, seed=3))
    conn = connector_for(sim)
    until = sim.now()
    since = until - timedelta(hours=2)
    records = [r async for page in conn.pull_orders(since, until) for r in page]
    assert len(records) == len({r.external_id for r in records}) == 40
    assert {r.external_id for r in records} == {o["order_sn"] for o in sim.orders(SHOP_A)}
    assert [sn for sn, _ in await conn.list_order_ids(since, until)] == sorted(
        (r.external_id for r in records), key=lambda sn: (sim.order(sn)["updated_at"], sn))

    spec = load_spec("pdd_order")
    mapped = {r.external_id: spec.apply(r.payload, lookups=DictLookups({}), context={"shop": conn.shop_of(r.payload)})
              for r in records}
    bad = {sn for sn, result in mapped.items() if not result.ok}
    defects = {sn: kind for sn, kind in sim.state()["malformed"].items() if sn in mapped}
    assert {sn for sn, kind in defects.items() if kind in ("missing_sku", "bad_amount")} <= bad
    good_sn = next(sn for sn, result in mapped.items() if result.ok and sn not in defects)

    record = await conn.get_order(good_sn)
    assert record.payload["order_sn"] == good_sn
    clear = await conn.shippable_receiver(record.payload)
    expected = sim.clear_receiver(good_sn)
    assert (clear["name"], clear["mobile"], clear["street"]) == (expected["name"], expected["phone"],
                                                                 expected["address"])

    parcel = Shipment(order_key=mapped[good_sn].value.key, carrier_code="SF", tracking_number="SF7001",
                      shipped_at=datetime.now(UTC))
    assert (await conn.push_shipment(good_sn, parcel)).taken
    repeat = await conn.push_shipment(good_sn, parcel)
    assert not repeat.taken and repeat.tracking_on_platform == ["SF7001"]
    second = parcel.model_copy(update={"carrier_code": "ZTO", "tracking_number": "ZT7002"})
    assert (await conn.push_shipment(good_sn, second, line_ids=["x"])).taken
    assert sim.writebacks(good_sn) == [("SF7001", 44, "send"), ("ZT7002", 115, "extra")]
    assert sim.state()["shipped_count"] == 1
    assert "ok:" in await conn.test()
    await conn.aclose()


async def test_contract_survives_throttling_and_5xx():
    sim = make_sim(orders_per_shop=15, malformed_per_shop=0, spread_hours=0.4,
                   faults=FaultConfig(throttle_rate=0.2, error_5xx_rate=0.2, seed=11))
    conn = connector_for(sim)
    conn.api.retry = RetryPolicy(attempts=12, max_elapsed_s=30, initial_s=0.001, max_s=1.5)
    until = sim.now()
    records = [r async for page in conn.pull_orders(until - timedelta(hours=1), until) for r in page]
    assert len({r.external_id for r in records}) == 15
    assert sim.state()["faults"]
    await conn.aclose()
