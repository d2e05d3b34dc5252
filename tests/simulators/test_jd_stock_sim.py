"""The JOS simulator's stock APIs on their own (raw signed requests), and the real JD connector's
'stock' capability against it (in process, through httpx.ASGITransport).

Raw requests are signed here with hashlib from JD's documented rule, not with either side's helper.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.jd import JdConnector
from simulators.catalog import CATALOG
from simulators.faults import FaultConfig
from simulators.jd import JdSimulator

APPS = {"APPKEY1": "secret-1"}
SHOPS = {"token-a": "jd-shop-a", "token-b": "jd-shop-b"}
SKU, OTHER = CATALOG[0]["sku"], CATALOG[5]["sku"]


def sign(params: dict[str, str], secret: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k])
    return hashlib.md5((secret + base + secret).encode()).hexdigest().upper()


def gmt8(moment: datetime) -> str:
    return (moment.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def sim() -> JdSimulator:
    return JdSimulator(APPS, SHOPS, orders_per_shop=2, seed=5)


async def call(sim: JdSimulator, method: str, business: dict[str, Any], *, token: str = "token-a",
               secret: str = "secret-1") -> dict[str, Any]:
    params = {"method": method, "app_key": "APPKEY1", "access_token": token, "timestamp": gmt8(sim.now()),
              "format": "json", "v": "2.0", "360buy_param_json": json.dumps(business)}
    params["sign"] = sign(params, secret)
    body = {"360buy_param_json": params.pop("360buy_param_json")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://jd.sim") as client:
        response = await client.post("/routerjson", params=params, data=body)
    assert response.status_code == 200
    return response.json()


def connector(sim: JdSimulator, secret: str = "secret-1") -> JdConnector:
    conn = JdConnector.from_config("jd-a", {"base_url": "http://jd.sim/routerjson", "app_key": "APPKEY1",
                                            "shop": "jd-shop-a"}, {"app_secret": secret, "access_token": "token-a"})
    assert isinstance(conn, JdConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    return conn


async def sku_id_of(sim: JdSimulator, code: str) -> int:
    answer = await call(sim, "jingdong.sku.read.searchSkuList", {"outId": [code]})
    return answer["jingdong_sku_read_searchSkuList_responce"]["page"]["data"][0]["skuId"]


# --- the simulator on its own ----------------------------------------------------------------------

async def test_every_catalogue_sku_is_listed_with_its_stock(sim: JdSimulator) -> None:
    answer = await call(sim, "jingdong.sku.read.searchSkuList", {"page_size": 100})
    page = answer["jingdong_sku_read_searchSkuList_responce"]["page"]
    assert page["totalItem"] == len(CATALOG) == len(page["data"])
    assert {row["outerId"] for row in page["data"]} == {e["sku"] for e in CATALOG}
    assert all(row["stockNum"] == sim.shown_stock(row["outerId"]) and row["status"] == 1 for row in page["data"])
    one = (await call(sim, "jingdong.sku.read.searchSkuList", {"outId": [SKU], "field": "outerId"}))[
        "jingdong_sku_read_searchSkuList_responce"]["page"]
    assert one["totalItem"] == 1 and set(one["data"][0]) == {"outerId", "skuId", "wareId"}
    none = await call(sim, "jingdong.sku.read.searchSkuList", {"outId": ["TD-SKU-9999"]})
    assert none["jingdong_sku_read_searchSkuList_responce"]["page"] == {"data": [], "pageNo": 1, "pageSize": 20,
                                                                        "totalItem": 0}
    assert sim.shown_stock("TD-SKU-9999") is None


async def test_update_sku_stock_sets_and_enforces_its_parameters(sim: JdSimulator) -> None:
    sku_id = await sku_id_of(sim, SKU)
    other_shop = sim.shown_stock(SKU, shop="jd-shop-b")
    done = await call(sim, "jingdong.stock.write.updateSkuStock", {"skuId": sku_id, "stockNum": 42})
    assert done == {"jingdong_stock_write_updateSkuStock_responce": {"code": "0", "success": True}}
    assert sim.shown_stock(SKU) == 42 and sim.shown_stock(SKU, shop="jd-shop-b") == other_shop != 42
    read = await call(sim, "jingdong.stock.read.findSkuStock", {"skuId": sku_id})
    assert read["jingdong_stock_read_findSkuStock_responce"]["skuStocks"] == [
        {"skuId": sku_id, "stockNum": 42, "storeId": 0}]
    for bad in ({"skuId": sku_id, "stockNum": -1}, {"skuId": sku_id, "stockNum": 1.5}, {"skuId": sku_id},
                {"stockNum": 3}, {"skuId": sku_id, "stockNum": 3, "storeId": 77}):
        refused = await call(sim, "jingdong.stock.write.updateSkuStock", bad)
        assert refused["error_response"]["code"] == "1000", bad
    unknown = await call(sim, "jingdong.stock.write.updateSkuStock", {"skuId": 1, "stockNum": 3})
    assert "不存在" in unknown["error_response"]["zh_desc"]
    assert sim.shown_stock(SKU) == 42 and sim.state()["stock_writes"] == 1 and len(sim.stock_updates) == 1


async def test_stock_calls_are_signed_and_stock_is_per_shop(sim: JdSimulator) -> None:
    sku_id = await sku_id_of(sim, SKU)
    before = sim.shown_stock(SKU)
    forged = await call(sim, "jingdong.stock.write.updateSkuStock", {"skuId": sku_id, "stockNum": 1}, secret="x")
    assert forged["error_response"]["code"] == "12" and sim.shown_stock(SKU) == before
    await call(sim, "jingdong.stock.write.updateSkuStock", {"skuId": sku_id, "stockNum": 5}, token="token-b")
    assert sim.shown_stock(SKU, shop="jd-shop-b") == 5 and sim.shown_stock(SKU) == before


async def test_the_call_limit_applies_to_stock_writes() -> None:
    limited = JdSimulator(APPS, SHOPS, orders_per_shop=1, calls_per_second=0.001)
    await call(limited, "jingdong.stock.read.findSkuStock", {"skuId": 1})
    second = await call(limited, "jingdong.stock.write.updateSkuStock", {"skuId": 1, "stockNum": 1})
    assert second["error_response"]["code"] == "2"
    assert limited.state()["stock_throttled"] == 1 and limited.state()["stock_writes"] == 0
    assert limited.counters["stock_throttled"] == 1


# --- contract: the real connector against the simulator ---------------------------------------------

async def test_contract_find_set_get(sim: JdSimulator) -> None:
    conn = connector(sim)
    listing = await conn.find_listing(SKU)
    assert listing is not None and listing.sku == SKU and listing.sku_id.isdigit() and listing.item_id.isdigit()
    assert await conn.get_stock(listing) == sim.shown_stock(SKU)
    started = time.monotonic()
    written = await conn.set_stock(listing, 17, key="k-1")
    assert written.quantity == 17 and sim.shown_stock(SKU) == 17 and await conn.get_stock(listing) == 17
    assert await conn.set_stock(listing, 0, key="k-2") and sim.shown_stock(SKU) == 0
    assert [(sku, q) for _, sku, q in sim.stock_updates] == [(SKU, 17), (SKU, 0)]
    assert all(started <= at <= time.monotonic() for at, _, _ in sim.stock_updates)
    assert sim.state()["stock_writes"] == 2
    sim.set_shown_stock(SKU, 11)  # a sale on JD
    assert await conn.get_stock(listing) == 11
    other = await conn.find_listing(OTHER)
    assert other is not None and other.sku_id != listing.sku_id
    assert await conn.find_listing("TD-SKU-9999") is None
    with pytest.raises(NotFoundError):
        await conn.set_stock(listing.model_copy(update={"sku_id": "1"}), 3, key="k-3")
    with pytest.raises(InvalidRequestError):
        await conn.set_stock(listing, -1, key="k-4")
    assert sim.shown_stock(SKU) == 11
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://jd.sim") as client:
        state = (await client.get("/_sim/state")).json()
    assert state["stock"]["jd-shop-a"][SKU] == 11 and state["stock_writes"] == 2
    await conn.aclose()


async def test_contract_bad_signature_is_refused(sim: JdSimulator) -> None:
    conn = connector(sim, secret="not-the-secret")
    with pytest.raises(AuthError):
        await conn.find_listing(SKU)
    assert sim.state()["rejected_signatures"] == 1
    await conn.aclose()


async def test_contract_throttling_is_the_connectors_throttled_error() -> None:
    limited = JdSimulator(APPS, SHOPS, orders_per_shop=1, calls_per_second=0.001)
    conn = connector(limited)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    with pytest.raises(ThrottledError) as caught:
        await conn.set_stock(listing, 4, key="k")
    assert (caught.value.retry_after or 0) > 0
    assert limited.state()["stock_throttled"] == 1 and limited.shown_stock(SKU) != 4
    await conn.aclose()

    faulty = JdSimulator(APPS, SHOPS, orders_per_shop=1, faults=FaultConfig(throttle_rate=1.0, seed=1))
    conn = connector(faulty)
    with pytest.raises(ThrottledError):
        await conn.find_listing(SKU)
    assert faulty.state()["stock_throttled"] == 1
    await conn.aclose()
