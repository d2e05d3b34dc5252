"""Douyin shop (抖店) capability 'stock' against a respx-mocked open platform.

The fake gateway recomputes every signature by hand from the official SDKs' rule (``secret +
"app_key"+k + "method"+m + "param_json"+p + "timestamp"+t + "v2" + secret``, HMAC-SHA256 keyed with
the secret or MD5, lower-case hex), never with the connector's helper, and records each call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import ListingRef, StockWrite
from connectors.douyin import DouyinConnector
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError, TransientError
from connectors.http import RetryPolicy

BASE = "http://doudian.test"
APP_KEY, SECRET, TOKEN, SHOP = "7152333376438649396", "s3cr3t", "tok-4463798-abcdef", "4463798"
SKU = "TD-SKU-0001"
PRODUCT_ID, SKU_ID = 3539925204033339668, 1737398770243598  # 19 digits: beyond a double's exact range
LISTING = ListingRef(sku=SKU, item_id=str(PRODUCT_ID), sku_id=str(SKU_ID))


def hand_sign(query: dict[str, str], body: str) -> str:
    text = (SECRET + "app_key" + query["app_key"] + "method" + query["method"] + "param_json" + body
            + "timestamp" + query["timestamp"] + "v2" + SECRET)
    if query.get("sign_method") == "hmac-sha256":
        return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5(text.encode()).hexdigest()


def ok(data: Any) -> dict[str, Any]:
    return {"code": 10000, "msg": "success", "sub_code": "", "sub_msg": "", "log_id": "log-1", "data": data}


def err(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg, "log_id": "log-e"}


class FakeDoudian:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = request.content.decode()
        method = query["method"]
        assert request.method == "POST" and request.url.path == "/" + method.replace(".", "/")
        assert query["app_key"] == APP_KEY and query["access_token"] == TOKEN and query["v"] == "2"
        assert abs(int(query["timestamp"]) - datetime.now(UTC).timestamp()) < 600
        assert query["sign"] == hand_sign(query, body), "bad signature"
        params = json.loads(body)
        assert body == json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        self.calls.append((method, params))
        return httpx.Response(200, json=self.handlers[method](params))


@pytest.fixture
def fake() -> Any:
    gateway = FakeDoudian()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="doudian.test").mock(side_effect=gateway)
        yield gateway


def make(**overrides: Any) -> DouyinConnector:
    conn = DouyinConnector.from_config("dy-shop", {"base_url": BASE, "app_key": APP_KEY, "shop_id": SHOP} | overrides,
                                       {"app_secret": SECRET, "access_token": TOKEN})
    assert isinstance(conn, DouyinConnector)
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=1, initial_s=0.001, max_s=0.01)
    return conn


def detail(stock: int = 8, code: str = SKU) -> dict[str, Any]:
    return {"id": SKU_ID, "product_id": PRODUCT_ID, "product_id_str": str(PRODUCT_ID), "code": code,
            "sku_type": 0, "stock_num": stock, "prehold_stock_num": 1, "out_sku_id": 0}


def test_the_connector_declares_the_stock_capability() -> None:
    assert "stock" in DouyinConnector.capabilities


# --- find_listing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sign_method", ["hmac-sha256", "md5"])
async def test_find_listing_asks_sku_detail_by_code(fake: FakeDoudian, sign_method: str) -> None:
    fake.handlers["sku.detail"] = lambda p: ok(detail())
    listing = await make(sign_method=sign_method).find_listing(SKU)
    assert listing == LISTING
    assert fake.calls == [("sku.detail", {"code": SKU})]


async def test_find_listing_unknown_code_is_none(fake: FakeDoudian) -> None:
    fake.handlers["sku.detail"] = lambda p: err(50002, "业务处理失败", "isv.business-failed:12101", "sku不存在")
    assert await make().find_listing("NOPE-1") is None
    fake.handlers["sku.detail"] = lambda p: ok({})
    assert await make().find_listing("NOPE-1") is None
    fake.handlers["sku.detail"] = lambda p: ok(detail(code="OTHER"))
    assert await make().find_listing("NOPE-1") is None


async def test_find_listing_other_refusals_are_raised(fake: FakeDoudian) -> None:
    fake.handlers["sku.detail"] = lambda p: err(30001, "操作权限不足", "dop.authorization-no-existed", "店铺授权已失效")
    with pytest.raises(AuthError):
        await make().find_listing(SKU)


# --- set_stock -------------------------------------------------------------------------------------

async def test_set_stock_is_a_full_update_with_the_hub_key_as_idempotent_id(fake: FakeDoudian) -> None:
    fake.handlers["sku.syncStock"] = lambda p: ok({})
    result = await make().set_stock(LISTING, 5, key="stock:douyin:TD-SKU-0001:42", previous=7)
    assert result == StockWrite(quantity=5, previous=None)
    assert fake.calls == [("sku.syncStock", {"idempotent_id": "stock:douyin:TD-SKU-0001:42", "incremental": False,
                                             "product_id": PRODUCT_ID, "sku_id": SKU_ID, "stock_num": 5})]
    await make().set_stock(LISTING, 0, key="")
    assert fake.calls[-1][1] == {"incremental": False, "product_id": PRODUCT_ID, "sku_id": SKU_ID, "stock_num": 0}


@pytest.mark.parametrize("quantity", [-3, 1.5, False, "4"])
async def test_set_stock_refuses_a_bad_quantity_before_calling(fake: FakeDoudian, quantity: Any) -> None:
    with pytest.raises(InvalidRequestError):
        await make().set_stock(LISTING, quantity, key="k")
    with pytest.raises(InvalidRequestError):
        await make().set_stock(LISTING.model_copy(update={"item_id": ""}), 1, key="k")
    assert fake.calls == []


# --- get_stock -------------------------------------------------------------------------------------

async def test_get_stock_reads_sku_detail_by_sku_id(fake: FakeDoudian) -> None:
    fake.handlers["sku.detail"] = lambda p: ok(detail(stock=31))
    assert await make().get_stock(LISTING) == 31
    assert fake.calls == [("sku.detail", {"sku_id": SKU_ID})]
    fake.handlers["sku.detail"] = lambda p: ok({})
    with pytest.raises(NotFoundError):
        await make().get_stock(LISTING)


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "error"), [
    (err(60000, "触发限流，请稍后重试", "isp.traffic-limited:1000", "请求过于频繁"), ThrottledError),
    (err(40003, "非法的参数", "isv.signature-invalid", "签名校验失败"), AuthError),
    (err(40004, "非法的参数", "isv.parameter-invalid:stock_num", "全量更新时库存值不能小于0"), InvalidRequestError),
    (err(50002, "业务处理失败", "isv.business-failed:12101", "sku不存在"), NotFoundError),
    (err(50002, "业务处理失败", "isv.business-failed:12103", "幂等ID已被使用，请求内容不一致"), InvalidRequestError),
    (err(20000, "服务不可用", "dop.service-error", "服务繁忙"), TransientError),
])
async def test_sync_stock_errors_are_classified(fake: FakeDoudian, answer: dict[str, Any],
                                                error: type[Exception]) -> None:
    fake.handlers["sku.syncStock"] = lambda p: answer
    with pytest.raises(error) as caught:
        await make().set_stock(LISTING, 1, key="k")
    assert TOKEN not in str(caught.value) and SECRET not in str(caught.value)
