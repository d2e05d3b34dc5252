"""The TOP gateway simulator's stock APIs, and the real Taobao connector's 'stock' capability on it.

Raw requests are signed here with a hand-written copy of TOP's rule (not the simulator's helper), so
a wrong rule in the simulator cannot agree with itself.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta, timezone
from typing import Any

import httpx
import pytest

from connectors.base import ListingRef, StockWrite
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from connectors.taobao import TaobaoConnector
from simulators.catalog import BY_SKU, CATALOG
from simulators.faults import FaultConfig
from simulators.taobao import TaobaoSimulator

APP_KEY, SECRET = "12345678", "sim-secret-0001"
SESSION_A, SESSION_B = "session-a", "session-b"
SHOP_A, SHOP_B = "测试店铺A", "测试店铺B"
GATEWAY = "http://top.test/router/rest"
UPDATE, SKUS_GET = "taobao.item.quantity.update", "taobao.skus.custom.get"
CODE = "TD-SKU-0001"
GMT8 = timezone(timedelta(hours=8))


def independent_sign(params: dict[str, str], secret: str) -> str:
    text = "".join(k + params[k] for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((secret + text + secret).encode()).hexdigest().upper()


def make_sim(**overrides: Any) -> TaobaoSimulator:
    options: dict[str, Any] = {"apps": {APP_KEY: SECRET}, "shops": {SESSION_A: SHOP_A, SESSION_B: SHOP_B},
                               "orders_per_shop": 2, "seed": 42, "initial_stock": 5}
    options.update(overrides)
    return TaobaoSimulator(**options)


def connector_for(sim: TaobaoSimulator, *, session: str = SESSION_A, secret: str = SECRET) -> TaobaoConnector:
    conn = TaobaoConnector.from_config("tb-stock", {"base_url": GATEWAY, "app_key": APP_KEY, "session": session},
                                       {"app_secret": secret})
    assert isinstance(conn, TaobaoConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


async def call(sim: TaobaoSimulator, method: str, *, session: str = SESSION_A, secret: str = SECRET,
               **business: Any) -> dict[str, Any]:
    params = {"method": method, "app_key": APP_KEY, "session": session, "format": "json", "v": "2.0",
              "sign_method": "md5", "timestamp": sim.now().astimezone(GMT8).strftime("%Y-%m-%d %H:%M:%S"),
              **{k: str(v) for k, v in business.items()}}
    params["sign"] = independent_sign(params, secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://top.test") as client:
        response = await client.post("/router/rest", data=params)
    assert response.status_code == 200
    return response.json()


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert "error_response" in body, body
    return body["error_response"]


def ids(code: str) -> tuple[str, str]:
    entry = BY_SKU[code]
    return str(entry["num_iid"]), str(entry["sku_id"])


# --- the connector on the simulator --------------------------------------------------------------


async def test_find_set_get_and_the_simulator_shows_it():
    sim = make_sim()
    conn = connector_for(sim)
    num_iid, sku_id = ids(CODE)
    found = await conn.find_listing(CODE)
    assert found == ListingRef(sku=CODE, item_id=num_iid, sku_id=sku_id)
    assert await conn.get_stock(found) == 5
    before = time.monotonic()
    assert await conn.set_stock(found, 17, key="push-1") == StockWrite(quantity=17)
    assert sim.shown_stock(CODE) == sim.shown_stock(CODE, SHOP_A) == 17
    assert sim.shown_stock(CODE, SHOP_B) == 5  # each shop keeps its own stock
    assert await conn.get_stock(found) == 17
    (moment, sku, quantity), = sim.stock_updates
    assert (sku, quantity) == (CODE, 17) and before <= moment <= time.monotonic()
    assert sim.counters["stock_writes"] == 1 and sim.counters["stock_throttled"] == 0
    state = sim.state()
    assert state["stock"][SHOP_A][CODE] == 17 and state["stock_writes"] == 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://top.test") as client:
        admin = (await client.get("/_sim/state")).json()
    assert admin["stock"][SHOP_A][CODE] == 17 and admin["stock_throttled"] == 0
    await conn.aclose()


async def test_every_catalogue_sku_is_listed_and_found():
    sim = make_sim(initial_stock={"TD-SKU-0002": 9})
    conn = connector_for(sim)
    assert [sim.shown_stock(e["sku"]) for e in CATALOG[:3]] == [0, 9, 0]
    for entry in CATALOG:
        found = await conn.find_listing(entry["sku"])
        assert found is not None and (found.item_id, found.sku_id) == ids(entry["sku"])
    await conn.aclose()


async def test_unknown_sku_is_none_and_not_listed():
    sim = make_sim()
    conn = connector_for(sim)
    assert await conn.find_listing("TD-SKU-9999") is None
    assert sim.shown_stock("TD-SKU-9999") is None
    body = await call(sim, SKUS_GET, fields="sku_id,num_iid", outer_id="TD-SKU-9999")
    assert error(body)["sub_code"] == "isv.item-skus-custom-get-service-error:ITEM_NOT_FOUND"
    await conn.aclose()


async def test_a_sale_on_the_platform_shows_in_get_stock_only():
    sim = make_sim()
    conn = connector_for(sim)
    found = await conn.find_listing(CODE)
    assert found is not None
    sim.set_shown_stock(CODE, 2)
    assert await conn.get_stock(found) == 2
    assert sim.stock_updates == [] and sim.counters["stock_writes"] == 0
    await conn.aclose()


async def test_an_item_without_skus_is_written_at_item_level():
    catalog = [*CATALOG[:2], {"sku": "TD-SKU-0100", "item_title": "单品", "properties": "", "price": "9.90",
                              "num_iid": 652311999999, "sku_id": None, "outer_iid": "TD-SPU-100"}]
    sim = make_sim(catalog=catalog, orders_per_shop=0)
    conn = connector_for(sim)
    found = await conn.find_listing("TD-SKU-0100")
    assert found == ListingRef(sku="TD-SKU-0100", item_id="652311999999")
    assert (await conn.set_stock(found, 4, key="k")).quantity == 4
    assert sim.shown_stock("TD-SKU-0100") == 4 and await conn.get_stock(found) == 4
    await conn.aclose()


# --- what the gateway refuses -------------------------------------------------------------------


async def test_a_bad_signature_is_refused():
    sim = make_sim()
    num_iid, sku_id = ids(CODE)
    body = await call(sim, UPDATE, secret="wrong", num_iid=num_iid, sku_id=sku_id, quantity=3, type=1)
    assert error(body)["code"] == 25
    conn = connector_for(sim, secret="not-the-secret")
    with pytest.raises(AuthError):
        await conn.set_stock(ListingRef(sku=CODE, item_id=num_iid, sku_id=sku_id), 3, key="k")
    assert sim.shown_stock(CODE) == 5 and sim.counters["stock_writes"] == 0
    await conn.aclose()


async def test_a_missing_or_unknown_session_is_refused():
    sim = make_sim()
    num_iid, sku_id = ids(CODE)
    assert error(await call(sim, UPDATE, session="", num_iid=num_iid, sku_id=sku_id, quantity=3))["code"] == 26
    conn = connector_for(sim, session="no-such-session")
    with pytest.raises(AuthError):
        await conn.find_listing(CODE)
    await conn.aclose()


async def test_negative_and_malformed_quantities_are_refused():
    sim = make_sim()
    num_iid, sku_id = ids(CODE)
    negative = error(await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id, quantity=-1, type=1))
    assert negative["sub_code"] == "isv.invalid-parameter:quantity"
    assert error(await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id, quantity="2.5"))["code"] == 41
    assert error(await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id, quantity=3, type=3))["code"] == 41
    assert error(await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id))["code"] == 40
    assert sim.shown_stock(CODE) == 5 and sim.stock_updates == []
    conn = connector_for(sim)
    with pytest.raises(InvalidRequestError):  # the connector refuses it before sending
        await conn.set_stock(ListingRef(sku=CODE, item_id=num_iid, sku_id=sku_id), -1, key="k")
    await conn.aclose()


async def test_type_2_is_a_delta_that_may_not_go_below_zero():
    sim = make_sim()
    num_iid, sku_id = ids(CODE)
    body = await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id, quantity=-2, type=2)
    skus = body["item_quantity_update_response"]["item"]["skus"]["sku"]
    assert next(s["quantity"] for s in skus if str(s["sku_id"]) == sku_id) == 3
    assert error(await call(sim, UPDATE, num_iid=num_iid, sku_id=sku_id, quantity=-4, type=2))["sub_code"] == (
        "isv.invalid-parameter:quantity")
    assert sim.shown_stock(CODE) == 3 and [u[1:] for u in sim.stock_updates] == [(CODE, 3)]


async def test_ids_must_exist_and_belong_together():
    sim = make_sim()
    conn = connector_for(sim)
    num_iid, _ = ids(CODE)
    _, other_sku = ids("TD-SKU-0005")  # a SKU of another item
    with pytest.raises(NotFoundError):
        await conn.set_stock(ListingRef(sku=CODE, item_id=num_iid, sku_id=other_sku), 3, key="k")
    with pytest.raises(NotFoundError):
        await conn.set_stock(ListingRef(sku=CODE, item_id="999999999999", sku_id=other_sku), 3, key="k")
    with pytest.raises(NotFoundError):
        await conn.get_stock(ListingRef(sku=CODE, item_id=num_iid, sku_id=other_sku))
    whole = error(await call(sim, UPDATE, num_iid=num_iid, quantity=3))  # an item with SKUs needs sku_id
    assert whole["sub_code"] == "isv.item-quantity-item-update-service-error"
    by_code = await call(sim, UPDATE, num_iid=num_iid, outer_id="TD-SKU-0002", quantity=8)
    assert "item_quantity_update_response" in by_code and sim.shown_stock("TD-SKU-0002") == 8
    assert sim.shown_stock(CODE) == 5
    await conn.aclose()


async def test_throttling_shows_up_as_the_connectors_throttled_error():
    sim = make_sim(calls_per_second=0.2)  # one call, then a 5 s ban
    conn = connector_for(sim)
    num_iid, sku_id = ids(CODE)
    listing = ListingRef(sku=CODE, item_id=num_iid, sku_id=sku_id)
    await conn.set_stock(listing, 6, key="k1")
    with pytest.raises(ThrottledError) as info:
        await conn.set_stock(listing, 7, key="k2")
    assert info.value.retry_after and info.value.retry_after >= 1
    assert sim.shown_stock(CODE) == 6
    assert sim.counters["stock_writes"] == 1 and sim.counters["stock_throttled"] == 1
    assert sim.state()["stock_throttled"] == 1
    assert (sim.stock_writes, sim.stock_throttled, sim.state()["stock_updates"]) == (1, 1, 1)
    await conn.aclose()


async def test_an_injected_throttle_counts_as_a_throttled_stock_write():
    sim = make_sim(faults=FaultConfig(throttle_rate=1.0, retry_after_s=30))
    conn = connector_for(sim)
    num_iid, sku_id = ids(CODE)
    with pytest.raises(ThrottledError):
        await conn.set_stock(ListingRef(sku=CODE, item_id=num_iid, sku_id=sku_id), 6, key="k")
    assert sim.counters["stock_throttled"] == 1 and sim.shown_stock(CODE) == 5
    with pytest.raises(ThrottledError):
        await conn.find_listing(CODE)  # reads are throttled too, but not counted as stock writes
    assert sim.counters["stock_throttled"] == 1
    await conn.aclose()


def test_initial_stock_must_not_be_negative():
    with pytest.raises(ValueError):
        make_sim(initial_stock=-1)
    with pytest.raises(ValueError):
        make_sim().set_shown_stock(CODE, -3)
