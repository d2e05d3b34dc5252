"""JD (JOS) capability 'stock' against a respx-mocked router.

The fake router checks every signature with its own copy of JD's documented rule ("开放平台-调用API":
sort every parameter by name, concatenate names and values, the appSecret on both ends, MD5, upper
case), never with the connector's helper, and records the method and business parameters sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from connectors.base import ListingRef, StockWrite
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError, TransientError
from connectors.http import RetryPolicy
from connectors.jd import JdConnector

ROUTER = "http://jos.test/routerjson"
SECRET = "s3cr3t-app-secret-0042"
TOKEN = "d1f0e2b3-access-token-77"
APP_KEY = "APPKEY1234"
SKU = "TD-SKU-0001"
LISTING = ListingRef(sku=SKU, item_id="10020047919", sku_id="100012000000")


def doc_sign(params: dict[str, str], app_secret: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((app_secret + base + app_secret).encode("utf-8")).hexdigest().upper()


class FakeJos:
    """Checks the system parameters and signature; answers per method via ``handlers``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = dict(parse_qsl(request.content.decode()))
        params = query | body
        assert set(query) == {"method", "app_key", "access_token", "timestamp", "format", "v", "sign"}
        assert set(body) == {"360buy_param_json"}
        assert params["sign"] == doc_sign(params, SECRET), "bad signature"
        assert params["app_key"] == APP_KEY and params["access_token"] == TOKEN and params["v"] == "2.0"
        stamp = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)
        assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)
        business = json.loads(params["360buy_param_json"])
        self.calls.append((params["method"], business))
        answer = self.handlers[params["method"]](business)
        if "error_response" in answer:
            return httpx.Response(200, json=answer)
        return httpx.Response(200, json={params["method"].replace(".", "_") + "_responce": {"code": "0", **answer}})


@pytest.fixture
def jos() -> Any:
    fake = FakeJos()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(ROUTER).mock(side_effect=fake)
        yield fake


def make() -> JdConnector:
    conn = JdConnector.from_config("jd-shop", {"base_url": ROUTER, "app_key": APP_KEY},
                                   {"app_secret": SECRET, "access_token": TOKEN})
    assert isinstance(conn, JdConnector)
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


def sku_row(sku_id: int, outer: str, status: int = 1, ware: int = 10020047919, stock: int = 3) -> dict[str, Any]:
    return {"wareId": ware, "skuId": sku_id, "outerId": outer, "status": status, "stockNum": stock}


def page(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"page": {"data": list(rows), "pageNo": 1, "pageSize": 20, "totalItem": len(rows)}}


def jos_error(code: str, zh: str, en: str = "") -> dict[str, Any]:
    return {"error_response": {"code": code, "zh_desc": zh, "en_desc": en}}


def test_the_connector_declares_the_stock_capability() -> None:
    assert "stock" in JdConnector.capabilities


# --- find_listing ----------------------------------------------------------------------------------

async def test_find_listing_searches_by_outer_id_and_takes_the_exact_code(jos: FakeJos) -> None:
    jos.handlers["jingdong.sku.read.searchSkuList"] = lambda b: page(sku_row(100012000007, SKU + "-X"),
                                                                     sku_row(100012000000, SKU))
    listing = await make().find_listing(SKU)
    assert listing == ListingRef(sku=SKU, item_id="10020047919", sku_id="100012000000")
    method, business = jos.calls[0]
    assert method == "jingdong.sku.read.searchSkuList"
    assert business["outId"] == [SKU] and business["pageNo"] == 1
    assert {"skuId", "wareId", "outerId", "status"} <= set(business["field"].split(","))


async def test_find_listing_unknown_code_is_none(jos: FakeJos) -> None:
    jos.handlers["jingdong.sku.read.searchSkuList"] = lambda b: page()
    assert await make().find_listing("NOPE-1") is None
    jos.handlers["jingdong.sku.read.searchSkuList"] = lambda b: page(sku_row(5, "NOPE-1", status=4))
    assert await make().find_listing("NOPE-1") is None  # a deleted SKU sells nothing


async def test_find_listing_prefers_the_sku_on_sale_among_duplicates(jos: FakeJos) -> None:
    jos.handlers["jingdong.sku.read.searchSkuList"] = lambda b: page(sku_row(11, SKU, status=2),
                                                                     sku_row(22, SKU, status=1, ware=7))
    listing = await make().find_listing(SKU)
    assert listing is not None and (listing.sku_id, listing.item_id) == ("22", "7")


async def test_find_listing_needs_a_code(jos: FakeJos) -> None:
    with pytest.raises(InvalidRequestError):
        await make().find_listing("  ")
    assert jos.calls == []


# --- set_stock -------------------------------------------------------------------------------------

async def test_set_stock_sends_an_absolute_update_sku_stock(jos: FakeJos) -> None:
    jos.handlers["jingdong.stock.write.updateSkuStock"] = lambda b: {"success": True}
    result = await make().set_stock(LISTING, 7, key="hub-key-1", previous=9)
    assert result == StockWrite(quantity=7, previous=None)
    assert jos.calls == [("jingdong.stock.write.updateSkuStock", {"skuId": 100012000000, "stockNum": 7})]
    assert (await make().set_stock(LISTING, 0, key="hub-key-2")).quantity == 0
    assert jos.calls[-1][1]["stockNum"] == 0


@pytest.mark.parametrize("quantity", [-1, 2.5, True, "3"])
async def test_set_stock_refuses_a_bad_quantity_before_calling(jos: FakeJos, quantity: Any) -> None:
    with pytest.raises(InvalidRequestError):
        await make().set_stock(LISTING, quantity, key="k")
    with pytest.raises(InvalidRequestError):
        await make().set_stock(LISTING.model_copy(update={"sku_id": "abc"}), 1, key="k")
    assert jos.calls == []


async def test_set_stock_success_false_is_a_refusal(jos: FakeJos) -> None:
    jos.handlers["jingdong.stock.write.updateSkuStock"] = lambda b: {"success": False}
    with pytest.raises(InvalidRequestError):
        await make().set_stock(LISTING, 1, key="k")


# --- get_stock -------------------------------------------------------------------------------------

async def test_get_stock_reads_find_sku_stock(jos: FakeJos) -> None:
    jos.handlers["jingdong.stock.read.findSkuStock"] = lambda b: {"skuStocks": [
        {"skuId": b["skuId"], "stockNum": 12, "storeId": 0}]}
    assert await make().get_stock(LISTING) == 12
    assert jos.calls == [("jingdong.stock.read.findSkuStock", {"skuId": 100012000000})]


async def test_get_stock_takes_the_sku_own_stock_else_the_sum(jos: FakeJos) -> None:
    rows = [{"skuId": 100012000000, "stockNum": 4, "storeId": 31}, {"skuId": 100012000000, "stockNum": 9}]
    jos.handlers["jingdong.stock.read.findSkuStock"] = lambda b: {"skuStocks": rows}
    assert await make().get_stock(LISTING) == 9
    rows[1]["storeId"] = 32
    assert await make().get_stock(LISTING) == 13
    rows.clear()
    with pytest.raises(NotFoundError):
        await make().get_stock(LISTING)


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "error"), [
    (jos_error("2", "限制时间内调用失败次数", "App Call Limited"), ThrottledError),
    (jos_error("12", "无效签名", "Invalid Signature"), AuthError),
    (jos_error("19", "无效access_token", "Invalid access_token"), AuthError),
    (jos_error("1000", "skuId:100012000000 不存在", "sku not exist"), NotFoundError),
    (jos_error("1000", "库存数量不能小于0", "stockNum must not be negative"), InvalidRequestError),
    (jos_error("66", "系统繁忙", "service busy"), TransientError),
    ({"code": "1", "error_description": "系统异常"}, TransientError),
    ({"code": "1", "error_description": "skuId不存在"}, NotFoundError),
])
async def test_errors_are_classified(jos: FakeJos, answer: dict[str, Any], error: type[Exception]) -> None:
    jos.handlers["jingdong.stock.write.updateSkuStock"] = lambda b: answer
    with pytest.raises(error) as caught:
        await make().set_stock(LISTING, 1, key="k")
    assert SECRET not in str(caught.value) and TOKEN not in str(caught.value)
    if error is ThrottledError:
        assert (caught.value.retry_after or 0) >= 60  # JD gives no ban length: a minute, then Temporal


async def test_a_search_refusal_is_raised_not_taken_for_unknown(jos: FakeJos) -> None:
    jos.handlers["jingdong.sku.read.searchSkuList"] = lambda b: jos_error("19", "无效access_token")
    with pytest.raises(AuthError):
        await make().find_listing(SKU)
