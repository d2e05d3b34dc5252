"""The POP gateway simulator's stock APIs, and the real Pinduoduo connector's 'stock' capability on it.

Raw requests are signed here with a hand-written copy of the POP rule (PHP SDK ``PopHttpClient::makeSign``),
not with the simulator's helper, so a wrong rule in the simulator cannot agree with itself.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest

from connectors.base import ListingRef, StockWrite
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from connectors.pdd import PddConnector
from simulators.catalog import CATALOG
from simulators.faults import FaultConfig
from simulators.pdd import PddSimulator

CLIENT_ID, SECRET = "sim-client-0001", "sim-secret-0001"
TOKEN_A, TOKEN_B = "token-a", "token-b"
SHOP_A, SHOP_B = "pdd-a", "pdd-b"
ROUTER = "http://pdd.sim/api/router"
LIST, UPDATE, SKU_GET = "pdd.goods.list.get", "pdd.goods.quantity.update", "pdd.goods.skus.get"
CODE = "TD-SKU-0001"


def independent_sign(params: dict[str, str], secret: str) -> str:
    text = "".join(k + params[k] for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((secret + text + secret).encode()).hexdigest().upper()


def make_sim(**overrides: Any) -> PddSimulator:
    options: dict[str, Any] = {"clients": {CLIENT_ID: SECRET}, "shops": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B},
                               "orders_per_shop": 3, "seed": 42, "initial_stock": 5}
    options.update(overrides)
    return PddSimulator(**options)


def connector_for(sim: PddSimulator, *, token: str = TOKEN_A, secret: str = SECRET) -> PddConnector:
    conn = PddConnector.from_config("pdd-a", {"base_url": ROUTER, "client_id": CLIENT_ID, "shop": SHOP_A},
                                    {"client_secret": secret, "access_token": token})
    assert isinstance(conn, PddConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


async def call(sim: PddSimulator, api: str, *, token: str = TOKEN_A, secret: str = SECRET,
               **business: Any) -> dict[str, Any]:
    form = {"type": api, "client_id": CLIENT_ID, "access_token": token, "timestamp": str(int(time.time())),
            "data_type": "JSON", "version": "V1", **{k: str(v) for k, v in business.items()}}
    form["sign"] = independent_sign(form, secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://pdd.sim") as client:
        response = await client.post("/api/router", data=form)
    assert response.status_code == 200
    return response.json()


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert "error_response" in body, body
    return body["error_response"]


def ids(code: str) -> tuple[str, str]:
    """goods_id / sku_id as the simulator's orders carry them for this SKU code."""
    entry = next(e for e in CATALOG if e["sku"] == code)
    return str(int(entry["num_iid"]) % 10**9), str(int(entry["sku_id"]) % 10**10)


def listing(code: str = CODE) -> ListingRef:
    goods_id, sku_id = ids(code)
    return ListingRef(sku=code, item_id=goods_id, sku_id=sku_id)


# --- the connector on the simulator --------------------------------------------------------------


async def test_find_set_get_and_the_simulator_shows_it():
    sim = make_sim()
    conn = connector_for(sim)
    found = await conn.find_listing(CODE)
    assert found == listing()
    assert await conn.get_stock(found) == 5
    before = time.monotonic()
    assert await conn.set_stock(found, 17, key="push-1") == StockWrite(quantity=17)
    assert sim.shown_stock(CODE) == sim.shown_stock(CODE, SHOP_A) == 17
    assert sim.shown_stock(CODE, SHOP_B) == 5  # each mall keeps its own stock
    assert await conn.get_stock(found) == 17
    (moment, sku, quantity), = sim.stock_updates
    assert (sku, quantity) == (CODE, 17) and before <= moment <= time.monotonic()
    assert sim.counters["stock_writes"] == 1 and sim.counters["stock_throttled"] == 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://pdd.sim") as client:
        admin = (await client.get("/_sim/state")).json()
    assert admin["stock"][SHOP_A][CODE] == 17 and admin["stock_writes"] == 1 and admin["stock_throttled"] == 0
    await conn.aclose()


async def test_listings_carry_the_ids_of_the_orders():
    sim = make_sim(initial_stock={"TD-SKU-0002": 9})
    conn = connector_for(sim)
    assert [sim.shown_stock(e["sku"]) for e in CATALOG[:3]] == [0, 9, 0]
    lines = [line for order in sim.orders(SHOP_A) for line in order["item_list"] if line["outer_id"]]
    assert lines
    for line in lines:
        found = await conn.find_listing(line["outer_id"])
        assert found is not None and (found.item_id, found.sku_id) == (str(line["goods_id"]), str(line["sku_id"]))
    await conn.aclose()


async def test_unknown_sku_is_none_and_not_listed():
    sim = make_sim()
    conn = connector_for(sim)
    assert await conn.find_listing("TD-SKU-9999") is None
    assert sim.shown_stock("TD-SKU-9999") is None
    answer = (await call(sim, LIST, outer_id="TD-SKU-9999"))["goods_list_get_response"]
    assert (answer["total_count"], answer["goods_list"]) == (0, [])
    await conn.aclose()


async def test_goods_list_filters_and_pages_as_documented():
    sim = make_sim()
    goods_count = len({e["num_iid"] for e in CATALOG})
    everything = (await call(sim, LIST, is_onsale=1, outer_id="TD-SKU-9999", page_size=100))["goods_list_get_response"]
    assert everything["total_count"] == goods_count  # is_onsale outranks outer_id
    first = (await call(sim, LIST, is_onsale=1, page=1, page_size=5))["goods_list_get_response"]
    second = (await call(sim, LIST, is_onsale=1, page=2, page_size=5))["goods_list_get_response"]
    assert len(first["goods_list"]) == len(second["goods_list"]) == 5
    assert not {g["goods_id"] for g in first["goods_list"]} & {g["goods_id"] for g in second["goods_list"]}
    tee = (await call(sim, LIST, outer_id=CODE))["goods_list_get_response"]["goods_list"]
    assert [len(g["sku_list"]) for g in tee] == [4] and tee[0]["is_more_sku"] == 1
    assert error(await call(sim, LIST, page_size=101))["error_code"] == 10000


async def test_a_sale_on_the_platform_shows_in_get_stock_only():
    sim = make_sim()
    conn = connector_for(sim)
    sim.set_shown_stock(CODE, 2)
    assert await conn.get_stock(listing()) == 2
    assert sim.stock_updates == [] and sim.counters["stock_writes"] == 0
    await conn.aclose()


# --- what the gateway refuses -------------------------------------------------------------------


async def test_a_bad_signature_is_refused():
    sim = make_sim()
    goods_id, sku_id = ids(CODE)
    body = await call(sim, UPDATE, secret="wrong", goods_id=goods_id, sku_id=sku_id, quantity=3, update_type=1)
    assert error(body)["error_code"] == 20004
    conn = connector_for(sim, secret="not-the-secret")
    with pytest.raises(AuthError):
        await conn.set_stock(listing(), 3, key="k")
    assert sim.shown_stock(CODE) == 5 and sim.counters["stock_writes"] == 0
    await conn.aclose()


async def test_an_unknown_token_is_refused():
    sim = make_sim()
    conn = connector_for(sim, token="no-such-token")
    with pytest.raises(AuthError):
        await conn.set_stock(listing(), 3, key="k")
    await conn.aclose()


async def test_negative_and_malformed_quantities_are_refused():
    sim = make_sim()
    goods_id, sku_id = ids(CODE)
    for bad in ({"quantity": -1}, {"quantity": -1, "update_type": 1}, {"quantity": "2.5"}, {},
                {"quantity": 3, "update_type": 3}):
        assert error(await call(sim, UPDATE, goods_id=goods_id, sku_id=sku_id, **bad))["error_code"] == 10000
    assert sim.shown_stock(CODE) == 5 and sim.stock_updates == []
    conn = connector_for(sim)
    with pytest.raises(InvalidRequestError):  # the connector refuses it before sending
        await conn.set_stock(listing(), -1, key="k")
    await conn.aclose()


async def test_update_type_2_is_a_delta_that_may_not_go_below_zero():
    sim = make_sim()
    goods_id, sku_id = ids(CODE)
    ok = await call(sim, UPDATE, goods_id=goods_id, sku_id=sku_id, quantity=-2, update_type=2)
    assert ok["goods_quantity_update_response"]["is_success"] is True
    assert error(await call(sim, UPDATE, goods_id=goods_id, sku_id=sku_id, quantity=-4, update_type=2))
    assert sim.shown_stock(CODE) == 3 and [u[1:] for u in sim.stock_updates] == [(CODE, 3)]


async def test_ids_must_exist_and_belong_together():
    sim = make_sim()
    conn = connector_for(sim)
    goods_id, _ = ids(CODE)
    _, other_sku = ids("TD-SKU-0005")  # a SKU of another goods
    with pytest.raises(NotFoundError):
        await conn.set_stock(ListingRef(sku=CODE, item_id=goods_id, sku_id=other_sku), 3, key="k")
    with pytest.raises(NotFoundError):
        await conn.set_stock(ListingRef(sku=CODE, item_id="999999999", sku_id=other_sku), 3, key="k")
    with pytest.raises(NotFoundError):
        await conn.get_stock(ListingRef(sku=CODE, item_id=goods_id, sku_id=other_sku))
    assert error(await call(sim, UPDATE, goods_id=goods_id, quantity=3))["error_code"] == 10000  # no sku named
    by_code = await call(sim, UPDATE, goods_id=goods_id, outer_id="TD-SKU-0002", quantity=8)
    assert by_code["goods_quantity_update_response"]["is_success"] is True
    assert sim.shown_stock("TD-SKU-0002") == 8 and sim.shown_stock(CODE) == 5
    await conn.aclose()


async def test_throttling_shows_up_as_the_connectors_throttled_error():
    sim = make_sim(calls_per_second=0.2)  # one call, then 70031 for 5 s
    conn = connector_for(sim)
    await conn.set_stock(listing(), 6, key="k1")
    with pytest.raises(ThrottledError):
        await conn.set_stock(listing(), 7, key="k2")
    assert sim.shown_stock(CODE) == 6
    assert sim.counters["stock_writes"] == 1 and sim.counters["stock_throttled"] == 1
    assert sim.state()["stock_throttled"] == 1
    assert (sim.stock_writes, sim.stock_throttled, sim.state()["stock_updates"]) == (1, 1, 1)
    await conn.aclose()


async def test_an_injected_throttle_counts_as_a_throttled_stock_write():
    sim = make_sim(faults=FaultConfig(throttle_rate=1.0))
    conn = connector_for(sim)
    with pytest.raises(ThrottledError):
        await conn.set_stock(listing(), 6, key="k")
    with pytest.raises(ThrottledError):
        await conn.find_listing(CODE)  # reads are throttled too, but not counted as stock writes
    assert sim.counters["stock_throttled"] == 1 and sim.shown_stock(CODE) == 5
    await conn.aclose()
