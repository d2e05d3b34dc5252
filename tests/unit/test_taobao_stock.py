"""Taobao (TOP) stock capability against a respx-mocked TOP gateway.

The fake gateway recomputes every signature with hashlib/hmac from the documented rule (sorted
name+value pairs, ``sign`` left out, md5 wraps the secret on both sides, hmac = HMAC-MD5,
hmac-sha256 = HMAC-SHA256, upper-case hex), never with the connector's helper, and records the exact
method and business parameters of each call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError, TransientError
from connectors.http import RetryPolicy
from connectors.taobao import TaobaoConnector

GATEWAY = "http://top.test/router/rest"
SECRET = "s3cr3t-app-secret-0042"
SESSION = "6100a1b2c3d4e5f6session-token-77"
APP_KEY = "12345678"
SYSTEM = {"method", "app_key", "session", "timestamp", "format", "v", "sign_method", "sign"}
SKUS_GET, ITEMS_GET = "taobao.skus.custom.get", "taobao.items.custom.get"
UPDATE, SKU_GET = "taobao.item.quantity.update", "taobao.item.sku.get"
NUM_IID, SKU_ID, CODE = "652311047919", "5012345601031", "TD-SKU-0001"


def doc_sign(params: dict[str, str], app_secret: str, method: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    if method == "md5":
        return hashlib.md5((app_secret + base + app_secret).encode()).hexdigest().upper()
    algo = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(app_secret.encode(), base.encode(), algo).hexdigest().upper()


def top_error(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "msg": msg, "request_id": "reqid-1"}
    if sub_code:
        error["sub_code"] = sub_code
    if sub_msg:
        error["sub_msg"] = sub_msg
    return {"error_response": error}


class FakeTop:
    """Checks system parameters and the signature, then answers per method via ``handlers``."""

    def __init__(self, sign_method: str) -> None:
        self.sign_method = sign_method
        self.handlers: dict[str, Callable[[dict[str, str]], Any]] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []  # (method, business parameters)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        params = query | body
        assert set(query) == SYSTEM, "system parameters travel in the query string"
        assert params["sign"] == doc_sign(params, SECRET, self.sign_method), "bad signature"
        assert (params["app_key"], params["session"], params["format"], params["v"], params["sign_method"]) == (
            APP_KEY, SESSION, "json", "2.0", self.sign_method)
        stamped = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)
        assert abs((stamped - datetime.now(UTC)).total_seconds()) < 120, "timestamp must be GMT+8 now"
        self.calls.append((params["method"], body))
        answer = self.handlers[params["method"]](body)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def bodies(self, method: str) -> list[dict[str, str]]:
        return [b for m, b in self.calls if m == method]


def make_connector(sign_method: str = "hmac-sha256") -> TaobaoConnector:
    conn = TaobaoConnector.from_config("tb-shop", {"base_url": GATEWAY, "app_key": APP_KEY, "session": SESSION,
                                                   "sign_method": sign_method}, {"app_secret": SECRET})
    assert isinstance(conn, TaobaoConnector)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


@pytest.fixture
def top() -> Iterator[FakeTop]:
    with respx.mock(assert_all_called=False) as mock:
        fake = FakeTop("hmac-sha256")
        mock.post(host="top.test", path="/router/rest").mock(side_effect=fake)
        yield fake


def sku(outer_id: str = CODE, sku_id: str = SKU_ID, num_iid: str = NUM_IID, quantity: int = 3,
        status: str = "normal") -> dict[str, Any]:
    return {"sku_id": int(sku_id), "num_iid": int(num_iid), "outer_id": outer_id, "quantity": quantity,
            "status": status}


def not_found(_: dict[str, str]) -> dict[str, Any]:
    return top_error(15, "Remote service error", "isv.item-skus-custom-get-service-error:ITEM_NOT_FOUND",
                     "没有找到宝贝")


def listing(sku_id: str = SKU_ID) -> ListingRef:
    return ListingRef(sku=CODE, item_id=NUM_IID, sku_id=sku_id)


def test_the_connector_declares_the_stock_capability():
    assert issubclass(TaobaoConnector, StockTarget)
    assert "stock" in TaobaoConnector.capabilities


# --- find_listing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_find_listing_asks_skus_custom_get_by_outer_id(sign_method):
    fake = FakeTop(sign_method)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(host="top.test", path="/router/rest").mock(side_effect=fake)
        fake.handlers[SKUS_GET] = lambda body: {"skus_custom_get_response": {"skus": {"sku": [sku()]}}}
        found = await make_connector(sign_method).find_listing(CODE)
    assert found == ListingRef(sku=CODE, item_id=NUM_IID, sku_id=SKU_ID)
    assert fake.methods() == [SKUS_GET]
    (body,) = fake.bodies(SKUS_GET)
    assert body["outer_id"] == CODE
    assert {"sku_id", "num_iid", "outer_id", "quantity"} <= set(body["fields"].split(","))
    assert set(body) == {"fields", "outer_id"}


async def test_find_listing_takes_only_the_exact_live_code_and_iid_as_num_iid(top):
    other = sku(outer_id="TD-SKU-00011", sku_id="5012345699999")
    deleted = sku(sku_id="5012345688888", status="delete")
    live = {"sku_id": SKU_ID, "iid": NUM_IID, "outer_id": CODE, "quantity": "4", "status": "normal"}
    top.handlers[SKUS_GET] = lambda body: {"skus_custom_get_response": {"skus": {"sku": [other, deleted, live]}}}
    assert await make_connector().find_listing(f" {CODE} ") == listing()


async def test_unknown_sku_is_none_after_both_documented_lookups(top):
    top.handlers[SKUS_GET] = not_found
    top.handlers[ITEMS_GET] = lambda body: {"items_custom_get_response": {}}
    assert await make_connector().find_listing("TD-SKU-9999") is None
    assert top.methods() == [SKUS_GET, ITEMS_GET]
    assert top.bodies(ITEMS_GET)[0]["outer_id"] == "TD-SKU-9999"


async def test_empty_skus_answer_is_also_nothing_found(top):
    top.handlers[SKUS_GET] = lambda body: {"skus_custom_get_response": {}}
    top.handlers[ITEMS_GET] = lambda body: {"items_custom_get_response": {"items": {"item": []}}}
    assert await make_connector().find_listing("TD-SKU-9999") is None


async def test_an_item_without_skus_is_found_by_its_own_outer_id(top):
    top.handlers[SKUS_GET] = not_found
    item = {"num_iid": 652311087514, "outer_id": "TD-SKU-0012", "num": 9, "approve_status": "onsale"}
    with_skus = {"num_iid": 652311000000, "outer_id": "TD-SKU-0012", "num": 5,
                 "skus": {"sku": [sku(outer_id="X", num_iid="652311000000")]}}
    top.handlers[ITEMS_GET] = lambda body: {"items_custom_get_response": {"items": {"item": [item, with_skus]}}}
    assert await make_connector().find_listing("TD-SKU-0012") == ListingRef(sku="TD-SKU-0012", item_id="652311087514")
    assert "num" in top.bodies(ITEMS_GET)[0]["fields"].split(",")


async def test_a_code_on_two_listings_is_refused(top):
    twice = [sku(), sku(sku_id="5012345602062", num_iid="652311055838")]
    top.handlers[SKUS_GET] = lambda body: {"skus_custom_get_response": {"skus": {"sku": twice}}}
    with pytest.raises(InvalidRequestError, match="2 Taobao listings"):
        await make_connector().find_listing(CODE)


async def test_empty_code_is_refused_without_a_call(top):
    with pytest.raises(InvalidRequestError):
        await make_connector().find_listing("  ")
    assert top.calls == []


# --- set_stock ---------------------------------------------------------------------------------------


def update_answer(quantity: int, sku_id: str = SKU_ID) -> dict[str, Any]:
    return {"item_quantity_update_response": {"item": {
        "iid": NUM_IID, "num_iid": int(NUM_IID), "num": quantity + 10, "modified": "2025-06-18 12:00:00",
        "skus": {"sku": [{"sku_id": int(sku_id), "quantity": quantity, "modified": "2025-06-18 12:00:00"},
                         {"sku_id": 5012345602062, "quantity": 10, "modified": "2025-06-18 11:00:00"}]}}}}


async def test_set_stock_is_a_full_update_of_that_sku(top):
    top.handlers[UPDATE] = lambda body: update_answer(int(body["quantity"]))
    result = await make_connector().set_stock(listing(), 7, key="push-42", previous=5)
    assert result == StockWrite(quantity=7, previous=None)
    assert top.bodies(UPDATE) == [{"num_iid": NUM_IID, "sku_id": SKU_ID, "quantity": "7", "type": "1"}]


async def test_set_stock_reports_what_top_shows(top):
    top.handlers[UPDATE] = lambda body: update_answer(6)
    assert (await make_connector().set_stock(listing(), 7, key="k")).quantity == 6


async def test_set_stock_zero_is_sent(top):
    top.handlers[UPDATE] = lambda body: update_answer(0)
    assert (await make_connector().set_stock(listing(), 0, key="k")).quantity == 0
    assert top.bodies(UPDATE)[0]["quantity"] == "0"


async def test_set_stock_of_an_item_without_skus_sends_no_sku_id(top):
    top.handlers[UPDATE] = lambda body: {"item_quantity_update_response": {"item": {"num_iid": NUM_IID, "num": 12}}}
    result = await make_connector().set_stock(ListingRef(sku=CODE, item_id=NUM_IID), 12, key="k")
    assert result.quantity == 12
    assert top.bodies(UPDATE) == [{"num_iid": NUM_IID, "quantity": "12", "type": "1"}]


@pytest.mark.parametrize("quantity", [-1, 2.5, True, "3"])
async def test_set_stock_refuses_what_top_would_refuse_without_a_call(top, quantity):
    with pytest.raises(InvalidRequestError):
        await make_connector().set_stock(listing(), quantity, key="k")  # type: ignore[arg-type]
    assert top.calls == []


@pytest.mark.parametrize("ref", [ListingRef(sku=CODE, item_id="abc", sku_id=SKU_ID),
                                 ListingRef(sku=CODE, item_id=NUM_IID, sku_id="sku-1"),
                                 ListingRef(sku=CODE)])
async def test_set_stock_needs_numeric_ids(top, ref):
    with pytest.raises(InvalidRequestError):
        await make_connector().set_stock(ref, 1, key="k")
    assert top.calls == []


@pytest.mark.parametrize(("error", "kind"), [
    (top_error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
               "This ban will last for 31 more seconds"), ThrottledError),
    (top_error(15, "Remote service error", "isp.top-remote-connection-timeout", "系统超时"), TransientError),
    (top_error(27, "Invalid session", "invalid-sessionkey", "SessionKey非法"), AuthError),
    (top_error(25, "Invalid signature"), AuthError),
    (top_error(15, "Remote service error", "isv.item-not-exist:invalid-numIid-or-iid", "商品id对应的商品不存在"),
     NotFoundError),
    (top_error(15, "Remote service error", "isv.item-is-delete:invalid-numIid-or-iid-tmall", "商品已经被删除"),
     NotFoundError),
    (top_error(15, "Remote service error", "isv.invalid-parameter:sku-properties", "找不到对应的sku"), NotFoundError),
    (top_error(15, "Remote service error", "isv.invalid-parameter:quantity", "库存数量不能为负数"),
     InvalidRequestError),
    (top_error(41, "Invalid arguments:quantity", "isv.invalid-parameter", "非法参数"), InvalidRequestError),
    (top_error(15, "Remote service error", "isv.item-quantity-item-update-service-error", "库存更新失败"),
     InvalidRequestError),
])
async def test_set_stock_error_mapping(top, error, kind):
    top.handlers[UPDATE] = lambda body: error
    with pytest.raises(kind) as info:
        await make_connector().set_stock(listing(), 3, key="k")
    assert type(info.value) is kind
    assert info.value.platform == "taobao"
    if kind is ThrottledError:
        assert info.value.retry_after == 31
        assert len(top.calls) == 1  # a long ban is left to Temporal, not slept here


async def test_throttling_on_lookup_is_not_taken_for_nothing_found(top):
    top.handlers[SKUS_GET] = lambda body: top_error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                                                    "This ban will last for 60 more seconds")
    with pytest.raises(ThrottledError):
        await make_connector().find_listing(CODE)


async def test_secrets_stay_out_of_stock_errors(top):
    top.handlers[UPDATE] = lambda body: top_error(27, "Invalid session", "invalid-sessionkey",
                                                  f"session {SESSION} is not valid")
    with pytest.raises(AuthError) as info:
        await make_connector().set_stock(listing(), 3, key="k")
    assert SESSION not in str(info.value)


# --- get_stock ---------------------------------------------------------------------------------------


async def test_get_stock_reads_the_sku(top):
    top.handlers[SKU_GET] = lambda body: {"item_sku_get_response": {"sku": sku(quantity=11)}}
    assert await make_connector().get_stock(listing()) == 11
    (body,) = top.bodies(SKU_GET)
    assert (body["sku_id"], body["num_iid"]) == (SKU_ID, NUM_IID)
    assert "quantity" in body["fields"].split(",")


async def test_get_stock_of_an_item_without_skus_reads_the_item_num(top):
    item = {"num_iid": int(NUM_IID), "outer_id": CODE, "num": 21}
    top.handlers[ITEMS_GET] = lambda body: {"items_custom_get_response": {"items": {"item": [item]}}}
    assert await make_connector().get_stock(ListingRef(sku=CODE, item_id=NUM_IID)) == 21
    assert top.bodies(ITEMS_GET)[0]["outer_id"] == CODE


async def test_get_stock_of_a_vanished_sku_is_not_found(top):
    top.handlers[SKU_GET] = lambda body: top_error(15, "Remote service error",
                                                   "isv.item-sku-get-service-error:ITEM_NOT_FOUND", "没有找到")
    with pytest.raises(NotFoundError):
        await make_connector().get_stock(listing())


async def test_get_stock_without_a_quantity_is_transient(top):
    top.handlers[SKU_GET] = lambda body: {"item_sku_get_response": {"sku": {"sku_id": int(SKU_ID)}}}
    with pytest.raises(TransientError):
        await make_connector().get_stock(listing())
