"""The JOS simulator on its own (signed raw requests) and the real JD connector against it.

Raw requests are signed here with hashlib from JD's documented rule, not with the simulator's or the
connector's helpers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from canonical import Shipment
from connectors.errors import AuthError, InvalidRequestError
from connectors.jd import JdConnector
from mappings import load_spec
from simulators.faults import FaultConfig
from simulators.jd import DEFECT_KINDS, JdSimulator

APPS = {"APPKEY1": "secret-1"}
SHOPS = {"token-a": "jd-shop-a", "token-b": "jd-shop-b"}


def sign(params: dict[str, str], secret: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k])
    return hashlib.md5((secret + base + secret).encode()).hexdigest().upper()


def gmt8(moment: datetime) -> str:
    return (moment.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def sim() -> JdSimulator:
    return JdSimulator(APPS, SHOPS, orders_per_shop=12, malformed_per_shop=4, seed=5)


async def call(sim: JdSimulator, method: str, business: dict, *, token: str = "token-a", secret: str = "secret-1",
               tamper: bool = False) -> dict:
    params = {"method": method, "app_key": "APPKEY1", "access_token": token, "timestamp": gmt8(sim.now()),
              "format": "json", "v": "2.0", "360buy_param_json": json.dumps(business)}
    params["sign"] = sign(params, secret)
    if tamper:
        params["360buy_param_json"] = json.dumps({**business, "page": "2"})
    body = {"360buy_param_json": params.pop("360buy_param_json")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://jd.sim") as client:
        response = await client.post("/routerjson", params=params, data=body)
    return response.json()


def search(sim: JdSimulator, **extra) -> dict:
    now = sim.now()
    return {"start_date": gmt8(now - timedelta(hours=7)), "end_date": gmt8(now + timedelta(seconds=1)),
            "order_state": "WAIT_SELLER_STOCK_OUT,WAIT_GOODS_RECEIVE_CONFIRM", "page": "1", "page_size": "5",
            "optional_fields": "orderId,modified,orderState", **extra}


def test_seeded_state_and_defects(sim):
    state = sim.state()
    assert state["orders_created"] == 24 and state["orders_malformed"] == 8
    assert set(state["malformed"].values()) == set(DEFECT_KINDS)
    assert all(isinstance(i, str) for i in state["malformed_tids"]) and state["shipped_count"] == 0
    again = JdSimulator(APPS, SHOPS, orders_per_shop=12, malformed_per_shop=4, seed=5)
    assert [o["orderId"] for o in again.orders("jd-shop-a")] == [o["orderId"] for o in sim.orders("jd-shop-a")]


async def test_signature_token_and_app_key_are_enforced(sim):
    bad = await call(sim, "jingdong.pop.order.enSearch", search(sim), tamper=True)
    assert bad["error_response"]["code"] == "12" and sim.state()["rejected_signatures"] == 1
    token = await call(sim, "jingdong.pop.order.enSearch", search(sim), token="nope")
    assert token["error_response"] == {"code": "19", "zh_desc": "无效access_token", "en_desc": "Invalid access_token"}
    wrong_secret = await call(sim, "jingdong.pop.order.enSearch", search(sim), secret="other")
    assert wrong_secret["error_response"]["code"] == "12"


async def test_search_paginates_sorted_and_limits_the_window(sim):
    answer = await call(sim, "jingdong.pop.order.enSearch", search(sim, sortType=1))
    result = answer["jingdong_pop_order_enSearch_responce"]["searchorderinfo_result"]
    assert result["orderTotal"] == 12 and len(result["orderInfoList"]) == 5
    stamps = [o["modified"] for o in result["orderInfoList"]]
    assert stamps == sorted(stamps, reverse=True) and set(result["orderInfoList"][0]) == {"orderId", "modified",
                                                                                         "orderState"}
    now = sim.now()
    too_wide = await call(sim, "jingdong.pop.order.enSearch",
                          search(sim, start_date=gmt8(now - timedelta(days=40)), end_date=gmt8(now)))
    assert too_wide["jingdong_pop_order_enSearch_responce"]["searchorderinfo_result"]["apiResult"]["success"] is False
    big = await call(sim, "jingdong.pop.order.enSearch", search(sim, page_size="101"))
    assert big["jingdong_pop_order_enSearch_responce"]["searchorderinfo_result"]["apiResult"]["success"] is False


async def test_receivers_are_tde_ciphertext(sim):
    oid = sim.orders("jd-shop-a")[0]["orderId"]
    info = (await call(sim, "jingdong.pop.order.enGet", {"order_id": oid}))[
        "jingdong_pop_order_enGet_responce"]["orderDetailInfo"]["orderInfo"]
    consignee = info["consigneeInfo"]
    clear = sim.receiver(oid)
    assert consignee["fullname"] != clear["fullname"] and sim.decrypt(consignee["fullname"]) == clear["fullname"]
    assert consignee["province"] and not consignee["province"].startswith("AA")


async def test_throttling_and_faults(sim):
    limited = JdSimulator(APPS, SHOPS, orders_per_shop=1, calls_per_second=0.001)
    await call(limited, "jingdong.pop.order.enSearch", search(limited))
    second = await call(limited, "jingdong.pop.order.enSearch", search(limited))
    assert second["error_response"]["code"] == "2" and limited.state()["rate_limited"] == 1
    sim.faults.reconfigure(FaultConfig(error_5xx_rate=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://jd.sim") as client:
        assert (await client.post("/routerjson")).status_code == 503


def test_lifecycle(sim):
    oid = sim.orders("jd-shop-a")[0]["orderId"]
    before = sim.order(oid)["modified"]
    sim.change_address(oid, address="上海上海市浦东新区张江镇1号")
    assert sim.order(oid)["modified"] == before  # JOS's modified ignores address changes
    sim.advance(5)
    sim.lock(oid)
    assert sim.status(oid) == "LOCKED" and sim.order(oid)["modified"] != before
    sim.unlock(oid)
    sim.cancel(oid)
    assert sim.status(oid) == "TRADE_CANCELED"
    with pytest.raises(ValueError):
        sim.finish(oid)
    new = sim.add_orders("jd-shop-b", 2, lines=2)
    assert len(new) == 2 and all(len(sim.order(i)["itemInfoList"]) == 2 for i in new)


# --- contract: the real connector against the simulator ---------------------------------------------

async def test_contract_pull_get_write_back_decrypt(sim):
    conn = JdConnector.from_config("jd-a", {"base_url": "http://jd.sim/routerjson", "app_key": "APPKEY1",
                                            "shop": "jd-shop-a", "page_size": 5},
                                   {"app_secret": "secret-1", "access_token": "token-a"})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    now = sim.now()
    records = [r async for page in conn.pull_orders(now - timedelta(hours=7), now + timedelta(seconds=1))
               for r in page]
    assert sorted(r.external_id for r in records) == sorted(o["orderId"] for o in sim.orders("jd-shop-a"))
    spec = load_spec("jd_order")
    results = {r.external_id: spec.apply(r.payload, context={"shop": conn.shop_of(r.payload)}) for r in records}
    assert sum(not r.ok for r in results.values()) == 1  # the bad_payment defect; the others map
    good = next(i for i, r in results.items() if r.ok and i not in sim.state()["malformed"])

    record = await conn.get_order(good)
    assert record.payload["orderId"] == good
    clear = await conn.shippable_receiver(record.payload)
    assert clear["name"] == sim.receiver(good)["fullname"] and clear["mobile"] == sim.receiver(good)["mobile"]

    parcel = Shipment(order_key=f"jd:jd-shop-a:{good}", carrier_code="ZTO", tracking_number="ZT7350000001",
                      shipped_at=datetime.now(UTC))
    assert (await conn.push_shipment(good, parcel)).taken is True
    again = await conn.push_shipment(good, parcel)
    assert again.taken is False and again.tracking_on_platform == ["ZT7350000001"]
    assert sim.writebacks(good)[0][:2] == ("ZT7350000001", "1499") and sim.status(good) == "WAIT_GOODS_RECEIVE_CONFIRM"
    assert sim.state()["shipped_count"] == 1

    locked = sim.add_orders("jd-shop-a", 1, status="LOCKED")[0]
    with pytest.raises(InvalidRequestError):
        await conn.push_shipment(locked, parcel.model_copy(update={"tracking_number": "ZT7350000002"}))
    ids = await conn.list_order_ids(now - timedelta(hours=7), sim.now() + timedelta(seconds=1))
    assert good in {i for i, _ in ids}
    await conn.aclose()


async def test_contract_wrong_secret_is_auth_error(sim):
    conn = JdConnector.from_config("jd-a", {"base_url": "http://jd.sim/routerjson", "app_key": "APPKEY1"},
                                   {"app_secret": "wrong", "access_token": "token-a"})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    with pytest.raises(AuthError):
        await conn.test()
