"""The Douyin simulator's SKU/stock APIs on their own (raw signed requests), and the real Douyin
connector's 'stock' capability against it (in process, through httpx.ASGITransport).

Raw requests are signed here with a hand-written copy of the SDKs' rule, not with either side's helper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.douyin import DouyinConnector
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from simulators.catalog import CATALOG
from simulators.douyin import DouyinSimulator
from simulators.faults import FaultConfig

APP_KEY, SECRET = "7152333376438649396", "sim-secret-0001"
TOKEN_A, TOKEN_B = "token-a", "token-b"
SHOP_A, SHOP_B = "4463798", "4463799"
ENTRY = CATALOG[0]
SKU, PRODUCT_ID, SKU_ID = ENTRY["sku"], int(ENTRY["num_iid"]), int(ENTRY["sku_id"])


def sign(method: str, body: str, timestamp: str, secret: str = SECRET) -> str:
    text = f"{secret}app_key{APP_KEY}method{method}param_json{body}timestamp{timestamp}v2{secret}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def make_sim(**overrides: Any) -> DouyinSimulator:
    options: dict[str, Any] = {"apps": {APP_KEY: SECRET}, "shops": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B},
                               "orders_per_shop": 2, "seed": 42, "now": datetime.now(UTC)}
    return DouyinSimulator(**(options | overrides))


async def call(sim: DouyinSimulator, api: str, params: dict[str, Any], *, token: str = TOKEN_A,
               secret: str = SECRET) -> dict[str, Any]:
    text = json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    stamp = str(int(sim.now().timestamp()))
    query = {"app_key": APP_KEY, "method": api, "access_token": token, "timestamp": stamp, "v": "2",
             "sign_method": "hmac-sha256", "sign": sign(api, text, stamp, secret)}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://dy.test") as client:
        answer = await client.post("/" + api.replace(".", "/"), params=query, content=text.encode())
    assert answer.status_code == 200
    return answer.json()


def connector(sim: DouyinSimulator, secret: str = SECRET) -> DouyinConnector:
    conn = DouyinConnector.from_config("dy-a", {"base_url": "http://dy.test", "app_key": APP_KEY, "shop_id": SHOP_A},
                                       {"app_secret": secret, "access_token": TOKEN_A})
    assert isinstance(conn, DouyinConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=1, initial_s=0.001, max_s=0.01)
    return conn


def full(stock: int, key: str = "", **extra: Any) -> dict[str, Any]:
    params = {"product_id": PRODUCT_ID, "sku_id": SKU_ID, "stock_num": stock, "incremental": False, **extra}
    return params | ({"idempotent_id": key} if key else {})


# --- the simulator on its own ----------------------------------------------------------------------

async def test_every_catalogue_sku_has_a_detail_with_its_stock() -> None:
    sim = make_sim()
    for entry in CATALOG:
        data = (await call(sim, "sku.detail", {"code": entry["sku"]}))["data"]
        assert (data["id"], data["product_id"], data["code"]) == (entry["sku_id"], entry["num_iid"], entry["sku"])
        assert data["stock_num"] == sim.shown_stock(entry["sku"]) and data["sku_type"] == 0
    by_id = (await call(sim, "sku.detail", {"sku_id": SKU_ID}))["data"]
    assert by_id["code"] == SKU
    unknown = await call(sim, "sku.detail", {"code": "TD-SKU-9999"})
    assert unknown["code"] == 50002 and "不存在" in unknown["sub_msg"]
    assert sim.shown_stock("TD-SKU-9999") is None
    listed = (await call(sim, "sku.list", {"product_id": PRODUCT_ID}))["data"]
    assert {row["code"] for row in listed} == {e["sku"] for e in CATALOG if e["num_iid"] == PRODUCT_ID}


async def test_sync_stock_enforces_its_parameters() -> None:
    sim = make_sim()
    before = sim.shown_stock(SKU)
    cases = [
        (full(-1), 40004),  # a full update below zero
        (full(2) | {"stock_num": 2.5}, 40004),
        ({"sku_id": SKU_ID, "stock_num": 2}, 40002),  # sku_id is unique within a product only
        (full(2) | {"product_id": int(CATALOG[5]["num_iid"])}, 50002),  # ids that do not belong together
        (full(2) | {"sku_id": 1}, 50002),
        (full(2) | {"out_warehouse_id": "wh-1"}, 40004),
        ({"code": SKU, "stock_num": 2, "incremental": True}, 40002),  # an increment needs idempotent_id
        ({"code": SKU, "incremental": False}, 40002),
    ]
    for params, code in cases:
        assert (await call(sim, "sku.syncStock", params))["code"] == code, params
    assert sim.shown_stock(SKU) == before and sim.stock_updates == []
    assert (await call(sim, "sku.syncStock", {"code": SKU, "stock_num": 9}))["code"] == 10000  # by code, full
    assert sim.shown_stock(SKU) == 9
    assert (await call(sim, "sku.syncStock", {"code": SKU, "stock_num": -4, "incremental": True,
                                              "idempotent_id": "inc-1"}))["code"] == 10000
    assert sim.shown_stock(SKU) == 5
    too_many = await call(sim, "sku.syncStock", {"code": SKU, "stock_num": -6, "incremental": True,
                                                 "idempotent_id": "inc-2"})
    assert too_many["code"] == 50002 and sim.shown_stock(SKU) == 5
    assert [(sku, q) for _, sku, q in sim.stock_updates] == [(SKU, 9), (SKU, 5)]


async def test_a_repeated_idempotent_id_is_a_no_op() -> None:
    sim = make_sim()
    first = await call(sim, "sku.syncStock", full(12, key="hub-1"))
    assert first == {**first, "code": 10000, "data": {}} and sim.shown_stock(SKU) == 12
    sim.set_shown_stock(SKU, 10)  # two sold meanwhile
    again = await call(sim, "sku.syncStock", full(12, key="hub-1"))
    assert again["code"] == 10000 and sim.shown_stock(SKU) == 10  # the retry did not undo the sale
    clash = await call(sim, "sku.syncStock", full(13, key="hub-1"))
    assert clash["code"] == 50002 and sim.shown_stock(SKU) == 10
    state = sim.state()
    assert (state["stock_writes"], state["stock_repeats"], len(sim.stock_updates)) == (1, 1, 1)
    assert sim.counters["stock_writes"] == 1
    other_shop = await call(sim, "sku.syncStock", full(3, key="hub-1"), token=TOKEN_B)  # keys are per shop
    assert other_shop["code"] == 10000 and sim.shown_stock(SKU, shop=SHOP_B) == 3 and sim.shown_stock(SKU) == 10


async def test_signature_and_flow_control_apply_to_stock() -> None:
    sim = make_sim()
    forged = await call(sim, "sku.syncStock", full(1), secret="wrong")
    assert (forged["code"], forged["sub_code"]) == (40003, "isv.signature-invalid")
    limited = make_sim(calls_per_second=0.001)
    assert (await call(limited, "sku.detail", {"code": SKU}))["code"] == 10000
    second = await call(limited, "sku.syncStock", full(1))
    assert second["code"] == 60000 and limited.state()["stock_throttled"] == 1


# --- contract: the real connector against the simulator ---------------------------------------------

async def test_contract_find_set_get() -> None:
    sim = make_sim()
    conn = connector(sim)
    listing = await conn.find_listing(SKU)
    assert listing is not None and (listing.item_id, listing.sku_id) == (str(PRODUCT_ID), str(SKU_ID))
    assert await conn.get_stock(listing) == sim.shown_stock(SKU)
    started = time.monotonic()
    assert (await conn.set_stock(listing, 21, key="k-1")).quantity == 21
    assert sim.shown_stock(SKU) == 21 and await conn.get_stock(listing) == 21
    await conn.set_stock(listing, 0, key="k-2")
    assert sim.shown_stock(SKU) == 0
    assert [(sku, q) for _, sku, q in sim.stock_updates] == [(SKU, 21), (SKU, 0)]
    assert all(started <= at <= time.monotonic() for at, _, _ in sim.stock_updates)
    assert await conn.find_listing("TD-SKU-9999") is None
    with pytest.raises(InvalidRequestError):
        await conn.set_stock(listing, -2, key="k-3")
    with pytest.raises(NotFoundError):
        await conn.set_stock(listing.model_copy(update={"sku_id": "1"}), 2, key="k-4")
    with pytest.raises(InvalidRequestError):  # a sku of another product
        await conn.set_stock(listing.model_copy(update={"item_id": str(CATALOG[5]["num_iid"])}), 2, key="k-5")
    assert sim.state()["stock_writes"] == 2 and sim.state()["stock"][SHOP_A][SKU] == 0
    await conn.aclose()


async def test_contract_a_retried_write_is_recognised_by_its_key() -> None:
    sim = make_sim()
    conn = connector(sim)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    await conn.set_stock(listing, 8, key="hub-write-7")
    sim.set_shown_stock(SKU, 6)  # sold two on Douyin
    assert (await conn.set_stock(listing, 8, key="hub-write-7")).quantity == 8  # the retry: success, no-op
    assert sim.shown_stock(SKU) == 6 and sim.state()["stock_repeats"] == 1 and len(sim.stock_updates) == 1
    await conn.aclose()


async def test_contract_bad_signature_and_throttling() -> None:
    sim = make_sim()
    forged = connector(sim, secret="not-the-secret")
    with pytest.raises(AuthError):
        await forged.find_listing(SKU)
    await forged.aclose()

    limited = make_sim(calls_per_second=0.001)
    conn = connector(limited)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    with pytest.raises(ThrottledError):
        await conn.set_stock(listing, 4, key="k")
    assert limited.state()["stock_throttled"] == 1 and limited.shown_stock(SKU) != 4
    await conn.aclose()

    faulty = make_sim(faults=FaultConfig(throttle_rate=1.0, seed=3))
    conn = connector(faulty)
    with pytest.raises(ThrottledError):
        await conn.find_listing(SKU)
    assert faulty.state()["stock_throttled"] == 1
    await conn.aclose()
