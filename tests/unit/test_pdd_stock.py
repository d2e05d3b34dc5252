"""Pinduoduo (POP) stock capability against a respx-mocked POP gateway.

The fake gateway recomputes every signature with hashlib from the documented rule (official PHP SDK
``PopHttpClient::makeSign``: sort by name, drop ``sign`` and empty values, ``name+value``,
client_secret on both ends, MD5, upper case), never with the connector's helper, and records the
exact API type and business parameters of each call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError, TransientError
from connectors.http import RetryPolicy
from connectors.pdd import PddConnector

GATEWAY = "http://pop.test/api/router"
CLIENT_ID, SECRET, TOKEN = "4b6e2d7d0c5f4c3fa1b2c3d4e5f60718", "pop-secret-0042", "token-shop-a-77"
COMMON = {"type", "client_id", "access_token", "timestamp", "data_type", "version", "sign"}
LIST, UPDATE, SKU_GET = "pdd.goods.list.get", "pdd.goods.quantity.update", "pdd.goods.skus.get"
GOODS_ID, SKU_ID, CODE = "311047919", "5345601031", "TD-SKU-0001"


def doc_sign(params: dict[str, str], secret: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((secret + base + secret).encode("utf-8")).hexdigest().upper()


def pop_error(code: int, msg: str, sub_msg: str = "") -> dict[str, Any]:
    return {"error_response": {"error_code": code, "error_msg": msg, "sub_msg": sub_msg, "sub_code": None,
                               "request_id": "req-1"}}


class FakePop:
    """Checks common parameters and the signature, then answers per API type via ``handlers``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, str]], Any]] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []  # (type, business parameters)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
        form = dict(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))
        assert form["client_id"] == CLIENT_ID and form["access_token"] == TOKEN
        assert form["data_type"] == "JSON" and form["version"] == "V1"
        assert abs(int(form["timestamp"]) - time.time()) < 60
        if form["sign"] != doc_sign(form, SECRET):
            return httpx.Response(200, json=pop_error(20004, "签名校验失败"))
        self.calls.append((form["type"], {k: v for k, v in form.items() if k not in COMMON}))
        answer = self.handlers[form["type"]](form)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def types(self) -> list[str]:
        return [t for t, _ in self.calls]

    def bodies(self, api: str) -> list[dict[str, str]]:
        return [b for t, b in self.calls if t == api]


@pytest.fixture
def pop() -> Iterator[FakePop]:
    fake = FakePop()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(GATEWAY).mock(side_effect=fake)
        yield fake


def make_connector(secret: str = SECRET) -> PddConnector:
    conn = PddConnector.from_config("pdd-a", {"base_url": GATEWAY, "client_id": CLIENT_ID},
                                    {"client_secret": secret, "access_token": TOKEN})
    assert isinstance(conn, PddConnector)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


def goods(goods_id: str = GOODS_ID, skus: list[dict[str, Any]] | None = None, onsale: int = 1) -> dict[str, Any]:
    skus = skus if skus is not None else [sku_row()]
    return {"goods_id": int(goods_id), "goods_name": "纯棉圆领短袖T恤", "is_onsale": onsale, "is_more_sku": 1,
            "goods_quantity": sum(s["sku_quantity"] for s in skus), "goods_reserve_quantity": 0, "sku_list": skus,
            "thumb_url": "", "image_url": ""}


def sku_row(outer_id: str = CODE, sku_id: str = SKU_ID, quantity: int = 3, onsale: int = 1) -> dict[str, Any]:
    return {"spec": "白色,M", "sku_id": int(sku_id), "sku_quantity": quantity, "outer_id": outer_id,
            "outer_goods_id": "TD-SPU-001", "is_sku_onsale": onsale, "reserve_quantity": 0}


def listed(*rows: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    return {"goods_list_get_response": {"total_count": len(rows) if total is None else total,
                                        "goods_list": list(rows), "request_id": "r"}}


def listing() -> ListingRef:
    return ListingRef(sku=CODE, item_id=GOODS_ID, sku_id=SKU_ID)


def test_the_connector_declares_the_stock_capability():
    assert issubclass(PddConnector, StockTarget)
    assert "stock" in PddConnector.capabilities


# --- find_listing ------------------------------------------------------------------------------------


async def test_find_listing_asks_goods_list_by_outer_id_only(pop):
    other = sku_row(outer_id="TD-SKU-0002", sku_id="5345602062")
    pop.handlers[LIST] = lambda form: listed(goods(skus=[other, sku_row()]))
    assert await make_connector().find_listing(CODE) == listing()
    assert pop.calls == [(LIST, {"outer_id": CODE, "page": "1", "page_size": "100"})]


async def test_unknown_sku_is_none(pop):
    pop.handlers[LIST] = lambda form: listed()
    assert await make_connector().find_listing("TD-SKU-9999") is None
    assert pop.types() == [LIST]


async def test_a_goods_listed_for_a_similar_code_is_not_taken(pop):
    pop.handlers[LIST] = lambda form: listed(goods(skus=[sku_row(outer_id="TD-SKU-00010")]))
    assert await make_connector().find_listing("TD-SKU-0001") is None


async def test_pages_are_followed_while_the_total_says_so(pop):
    pages = {"1": listed(goods("1", [sku_row(outer_id="X", sku_id="1")]), total=2),
             "2": listed(goods(skus=[sku_row()]), total=2)}
    pop.handlers[LIST] = lambda form: pages[form["page"]]
    assert await make_connector().find_listing(CODE) == listing()
    assert [b["page"] for b in pop.bodies(LIST)] == ["1", "2"]


async def test_the_sku_on_sale_wins_over_one_taken_off_sale(pop):
    off = goods("411047919", [sku_row(sku_id="5345609999")], onsale=0)
    pop.handlers[LIST] = lambda form: listed(off, goods())
    assert await make_connector().find_listing(CODE) == listing()


async def test_a_code_on_two_skus_on_sale_is_refused(pop):
    pop.handlers[LIST] = lambda form: listed(goods(), goods("411047919", [sku_row(sku_id="5345609999")]))
    with pytest.raises(InvalidRequestError, match="2 Pinduoduo SKUs"):
        await make_connector().find_listing(CODE)


# --- set_stock ---------------------------------------------------------------------------------------


async def test_set_stock_is_a_full_update_of_goods_and_sku(pop):
    pop.handlers[UPDATE] = lambda form: {"goods_quantity_update_response": {"is_success": True, "request_id": "r"}}
    result = await make_connector().set_stock(listing(), 7, key="push-42", previous=5)
    assert result == StockWrite(quantity=7)
    assert pop.calls == [(UPDATE, {"goods_id": GOODS_ID, "sku_id": SKU_ID, "quantity": "7", "update_type": "1"})]


async def test_set_stock_not_taken_raises(pop):
    pop.handlers[UPDATE] = lambda form: {"goods_quantity_update_response": {"is_success": False}}
    with pytest.raises(InvalidRequestError):
        await make_connector().set_stock(listing(), 7, key="k")


@pytest.mark.parametrize("quantity", [-1, 1.5, False, "2"])
async def test_set_stock_refuses_what_pop_would_refuse_without_a_call(pop, quantity):
    with pytest.raises(InvalidRequestError):
        await make_connector().set_stock(listing(), quantity, key="k")  # type: ignore[arg-type]
    assert pop.calls == []


@pytest.mark.parametrize("ref", [ListingRef(sku=CODE, item_id=GOODS_ID),
                                 ListingRef(sku=CODE, item_id="g1", sku_id="1")])
async def test_set_stock_needs_both_numeric_ids(pop, ref):
    with pytest.raises(InvalidRequestError):
        await make_connector().set_stock(ref, 1, key="k")
    assert pop.calls == []


@pytest.mark.parametrize(("error", "kind"), [
    (pop_error(70031, "调用过于频繁，请调整调用频率"), ThrottledError),
    (pop_error(52101, "当前接口被限流，请稍后重试"), ThrottledError),
    (pop_error(52103, "服务暂时不可用，请稍后重试"), TransientError),
    (pop_error(10019, "access_token已过期"), AuthError),
    (pop_error(10000, "参数错误", "sku不存在或不属于该商品"), NotFoundError),
    (pop_error(10000, "参数错误", "全量更新库存时，quantity必须为大于等于0的正整数"), InvalidRequestError),
    (pop_error(10000, "参数错误", "在资源位上的商品不能减少库存"), InvalidRequestError),
])
async def test_set_stock_error_mapping(pop, error, kind):
    pop.handlers[UPDATE] = lambda form: error
    conn = make_connector()
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    with pytest.raises(kind) as info:
        await conn.set_stock(listing(), 3, key="k")
    assert type(info.value) is kind
    assert info.value.platform == "pdd"


async def test_a_wrong_secret_is_an_auth_error(pop):
    pop.handlers[UPDATE] = lambda form: pytest.fail("a badly signed call must not reach the handler")
    with pytest.raises(AuthError):
        await make_connector(secret="not-the-secret").set_stock(listing(), 3, key="k")


# --- get_stock ---------------------------------------------------------------------------------------


async def test_get_stock_reads_the_sku_detail(pop):
    pop.handlers[SKU_GET] = lambda form: {"goods_sku_get_response": {
        "goods_id": int(GOODS_ID), "sku_id": int(SKU_ID), "quantity": 11, "reserve_quantity": 2, "is_onsale": 1,
        "out_sku_sn": CODE, "multi_price": 5900, "single_price": 5900, "spec": []}}
    assert await make_connector().get_stock(listing()) == 11
    assert pop.calls == [(SKU_GET, {"goods_id": GOODS_ID, "sku_id": SKU_ID})]


async def test_get_stock_of_a_vanished_sku_is_not_found(pop):
    pop.handlers[SKU_GET] = lambda form: pop_error(10000, "参数错误", "sku不存在或不属于该商品")
    with pytest.raises(NotFoundError):
        await make_connector().get_stock(listing())


async def test_get_stock_without_a_quantity_is_transient(pop):
    pop.handlers[SKU_GET] = lambda form: {"goods_sku_get_response": {"goods_id": int(GOODS_ID), "sku_id": int(SKU_ID)}}
    with pytest.raises(TransientError):
        await make_connector().get_stock(listing())
