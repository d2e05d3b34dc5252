"""Taobao (TOP) connector against a respx-mocked TOP gateway.

The gateway here recomputes every signature with hashlib/hmac from the documented rule (sorted
name+value pairs, ``sign`` left out; md5 wraps the secret on both sides, hmac = HMAC-MD5,
hmac-sha256 = HMAC-SHA256, upper-case hex), never with the connector's helper.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from canonical import Shipment
from connectors.base import IngestDefaults, OrderSource, WriteBackResult
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy
from connectors.taobao import TaobaoConnector, classify_error

GATEWAY = "http://top.test/router/rest"
SECRET = "s3cr3t-app-secret-0042"
SESSION = "6100a1b2c3d4e5f6session-token-77"
APP_KEY = "12345678"
SYSTEM = {"method", "app_key", "session", "timestamp", "format", "v", "sign_method", "sign"}


def doc_sign(params: dict[str, str], app_secret: str, method: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    if method == "md5":
        return hashlib.md5((app_secret + base + app_secret).encode()).hexdigest().upper()
    algo = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(app_secret.encode(), base.encode(), algo).hexdigest().upper()


def make_connector(**overrides: Any) -> TaobaoConnector:
    secrets = overrides.pop("secrets", {"app_secret": SECRET})
    settings = {"base_url": GATEWAY, "app_key": APP_KEY, "session": SESSION} | overrides
    conn = TaobaoConnector.from_config("tb-shop", settings, secrets)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


def top_error(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "msg": msg, "request_id": "reqid-1"}
    if sub_code:
        error["sub_code"] = sub_code
    if sub_msg:
        error["sub_msg"] = sub_msg
    return {"error_response": error}


def gmt8(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)


class FakeTop:
    """Checks system parameters and signatures, then answers per method via ``handlers``."""

    def __init__(self, sign_method: str = "hmac-sha256") -> None:
        self.sign_method = sign_method
        self.handlers: dict[str, Callable[[dict[str, str]], Any]] = {}
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []  # (method, query, body)
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        params = query | body
        assert set(query) == SYSTEM, "system parameters travel in the query string"
        assert not set(body) & SYSTEM, "business parameters travel in the form body"
        assert params["sign"] == doc_sign(params, SECRET, self.sign_method), "bad signature"
        assert params["sign_method"] == self.sign_method
        assert (params["app_key"], params["session"], params["format"], params["v"]) == (
            APP_KEY, SESSION, "json", "2.0")
        stamped = gmt8(params["timestamp"])
        assert abs((stamped - datetime.now(UTC)).total_seconds()) < 120, "timestamp must be GMT+8 now"
        self.calls.append((params["method"], query, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = self.handlers[params["method"]](body)
        finally:
            self.in_flight -= 1
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def methods(self) -> list[str]:
        return [m for m, _, _ in self.calls]

    def bodies(self, method: str) -> list[dict[str, str]]:
        return [b for m, _, b in self.calls if m == method]


@pytest.fixture
def top():
    with respx.mock(assert_all_called=False) as mock:
        fake = FakeTop()
        mock.post(host="top.test", path="/router/rest").mock(side_effect=fake)
        yield fake


def trade(tid: int, modified: str, **extra: Any) -> dict[str, Any]:
    return {"tid": tid, "modified": modified, "seller_nick": "tongdao旗舰店", "status": "WAIT_SELLER_SEND_GOODS",
            "orders": {"order": [{"oid": tid * 10, "num": 1, "outer_sku_id": "SKU-A"}]}} | extra


class Shop:
    """A seller's trades; serves increment.get newest-modified first, as TOP documents."""

    def __init__(self, trades: list[dict[str, Any]]) -> None:
        self.trades = {str(t["tid"]): t for t in trades}
        self.page_hook: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]] | None = None

    def listing(self, body: dict[str, str]) -> list[dict[str, Any]]:
        start, end = body["start_modified"], body["end_modified"]
        rows = [t for t in self.trades.values() if start <= t["modified"] <= end]
        return sorted(rows, key=lambda t: (t["modified"], t["tid"]), reverse=True)

    def increment(self, body: dict[str, str]) -> dict[str, Any]:
        assert body["use_has_next"] == "false"
        assert int(body["page_size"]) <= 100
        rows = self.listing(body)
        size, page = int(body["page_size"]), int(body["page_no"])
        part = rows[(page - 1) * size: page * size]
        if self.page_hook:
            part = self.page_hook(page, part)
        fields = body["fields"].split(",")
        partial = [{k: t[k] for k in fields if k in t} for t in part]
        answer: dict[str, Any] = {"total_results": len(rows)}
        if partial:
            answer["trades"] = {"trade": partial}
        return {"trades_sold_increment_get_response": answer}

    def fullinfo(self, body: dict[str, str]) -> dict[str, Any]:
        found = self.trades.get(body["tid"])
        if found is None:
            return top_error(15, "Remote service error", "isv.trade-not-exist", "交易订单不存在")
        return {"trade_fullinfo_get_response": {"trade": dict(found)}}

    def install(self, fake: FakeTop) -> None:
        fake.handlers["taobao.trades.sold.increment.get"] = self.increment
        fake.handlers["taobao.trade.fullinfo.get"] = self.fullinfo


# --- wire format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_get_order_wire_format_for_each_sign_method(top, sign_method):
    top.sign_method = sign_method
    Shop([trade(3912345678901234567, "2024-05-01 10:00:05", buyer_message="尽快发货")]).install(top)
    conn = make_connector(sign_method=sign_method)
    record = await conn.get_order("3912345678901234567")
    assert record.external_id == "3912345678901234567"
    assert record.modified_at == datetime(2024, 5, 1, 2, 0, 5, tzinfo=UTC)
    assert record.payload["buyer_message"] == "尽快发货"
    (method, query, body), = top.calls
    assert method == "taobao.trade.fullinfo.get"
    assert body["tid"] == "3912345678901234567"
    fields = body["fields"].split(",")
    assert fields[:6] == ["tid", "type", "status", "payment", "orders", "promotion_details"]
    assert {"modified", "seller_nick", "receiver_name"} <= set(fields)
    await conn.aclose()


async def test_get_order_not_found_and_bad_tid(top):
    Shop([]).install(top)
    conn = make_connector()
    with pytest.raises(NotFoundError) as info:
        await conn.get_order("123")
    assert info.value.code == "isv.trade-not-exist" and not info.value.retryable
    assert len(top.calls) == 1
    with pytest.raises(InvalidRequestError):
        await conn.get_order("T-123")


# --- pulling ----------------------------------------------------------------------------------------


async def test_window_splitting_60_hours_gives_three_gmt8_windows(top):
    Shop([]).install(top)
    conn = make_connector()
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    pages = [p async for p in conn.pull_orders(since, since + timedelta(hours=60))]
    assert pages == []
    windows = [(b["start_modified"], b["end_modified"]) for b in top.bodies("taobao.trades.sold.increment.get")]
    assert windows == [
        ("2024-05-01 08:00:00", "2024-05-02 08:00:00"),
        ("2024-05-02 08:00:00", "2024-05-03 08:00:00"),
        ("2024-05-03 08:00:00", "2024-05-03 20:00:00"),
    ]
    for body in top.bodies("taobao.trades.sold.increment.get"):
        assert (body["page_no"], body["page_size"], body["use_has_next"]) == ("1", "100", "false")
        assert {"tid", "modified"} <= set(body["fields"].split(","))


async def test_smaller_window_setting(top):
    Shop([]).install(top)
    conn = make_connector(max_window_hours=0.5)
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    _ = [p async for p in conn.pull_orders(since, since + timedelta(hours=2))]
    assert len(top.bodies("taobao.trades.sold.increment.get")) == 4


async def test_pages_from_last_to_first_and_yields_each_trade_once(top):
    shop = Shop([trade(100 + i, f"2024-05-01 10:00:0{i}") for i in range(1, 6)])  # tid 101..105
    # page 2 repeats a trade of page 1 (as when a trade moves up while we page)
    shop.page_hook = lambda page, part: part + [shop.trades["104"]] if page == 2 else part
    shop.trades["103"] = shop.trades["103"] | {"seller_nick": ""}  # the platform omitted it
    shop.install(top)
    conn = make_connector(page_size=2, shop="our-shop")
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    pages = [p async for p in conn.pull_orders(since, since + timedelta(hours=12))]

    pages_asked = [b["page_no"] for b in top.bodies("taobao.trades.sold.increment.get")]
    assert pages_asked == ["1", "3", "2", "1"]  # the total first, then from the last page back
    tids = [r.external_id for page in pages for r in page]
    assert tids == ["101", "102", "103", "104", "105"]  # oldest modification first, each once
    # one batch per increment page as walked (3: [101], 2: [102, 103] + the repeat 104, 1: [105])
    assert [len(p) for p in pages] == [1, 3, 1]
    fullinfo = [b["tid"] for b in top.bodies("taobao.trade.fullinfo.get")]
    assert sorted(fullinfo) == tids  # one fullinfo per tid
    record = pages[0][0]
    assert record.payload == shop.trades["101"]  # the fullinfo trade exactly as returned
    assert record.modified_at == datetime(2024, 5, 1, 2, 0, 1, tzinfo=UTC)
    missing_nick = next(r for p in pages for r in p if r.external_id == "103")
    assert missing_nick.payload["seller_nick"] == "our-shop"  # filled from the shop setting


async def test_seller_nick_filled_when_platform_omits_it(top):
    shop = Shop([trade(7, "2024-05-01 10:00:00")])
    del shop.trades["7"]["seller_nick"]
    shop.install(top)
    conn = make_connector(shop="our-shop")
    record = await conn.get_order("7")
    assert record.payload["seller_nick"] == "our-shop"
    assert "seller_nick" not in shop.trades["7"]


async def test_trade_repeated_across_windows_is_yielded_once(top):
    shop = Shop([trade(1, "2024-05-02 08:00:00"), trade(2, "2024-05-01 09:00:00"), trade(3, "2024-05-02 09:00:00")])
    shop.install(top)
    conn = make_connector()
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)  # windows meet at 2024-05-02 08:00:00 GMT+8
    pages = [p async for p in conn.pull_orders(since, since + timedelta(hours=48))]
    tids = [r.external_id for page in pages for r in page]
    assert tids == ["2", "1", "3"]
    assert [b["tid"] for b in top.bodies("taobao.trade.fullinfo.get")].count("1") == 1


async def test_trade_modified_again_during_the_pull_is_yielded_again(top):
    shop = Shop([trade(1, "2024-05-01 09:00:00"), trade(2, "2024-05-02 10:00:00")])
    plain = shop.fullinfo

    def fullinfo_then_modify(body: dict[str, str]) -> dict[str, Any]:
        answer = plain(body)
        if body["tid"] == "1" and shop.trades["1"]["modified"] < "2024-05-02":
            shop.trades["1"] = shop.trades["1"] | {"modified": "2024-05-02 11:00:00", "status": "TRADE_CLOSED"}
        return answer

    shop.install(top)
    top.handlers["taobao.trade.fullinfo.get"] = fullinfo_then_modify
    conn = make_connector()
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    records = [r async for p in conn.pull_orders(since, since + timedelta(hours=48)) for r in p]
    assert [(r.external_id, r.payload["status"]) for r in records] == [
        ("1", "WAIT_SELLER_SEND_GOODS"), ("2", "WAIT_SELLER_SEND_GOODS"), ("1", "TRADE_CLOSED")]


async def test_walks_again_when_the_window_grows(top):
    shop = Shop([trade(100 + i, f"2024-05-01 10:00:0{i}") for i in range(1, 4)])  # 101..103
    state = {"calls": 0}

    def grow(page: int, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        state["calls"] += 1
        if state["calls"] == 2:  # a new modification lands inside the window while we page
            shop.trades["104"] = trade(104, "2024-05-01 10:00:09")
        return part

    shop.page_hook = grow
    shop.install(top)
    conn = make_connector(page_size=2)
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    pages = [p async for p in conn.pull_orders(since, since + timedelta(hours=12))]
    # 104 lands while page 2 is read and pushes 102 down to page 2, so the second pass hands it
    # over last: oldest first only as far as the back-to-front walk can tell
    assert [[r.external_id for r in p] for p in pages] == [["101"], ["103", "104"], ["102"]]
    assert [b["page_no"] for b in top.bodies("taobao.trades.sold.increment.get")] == ["1", "2", "1", "2", "1"]


async def test_fullinfo_concurrency_is_bounded(top):
    shop = Shop([trade(1000 + i, "2024-05-01 10:00:00") for i in range(20)])
    shop.install(top)
    top.delay = 0.01
    conn = make_connector(fullinfo_concurrency=3)
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    pages = [p async for p in conn.pull_orders(since, since + timedelta(hours=12))]
    assert sum(len(p) for p in pages) == 20
    assert 1 < top.max_in_flight <= 3
    assert [r.external_id for p in pages for r in p] == [str(1000 + i) for i in range(20)]


async def test_each_increment_page_is_handed_over_before_the_next_is_read(top):
    shop = Shop([trade(100 + i, f"2024-05-01 10:00:0{i}") for i in range(1, 6)])  # 3 pages of 2
    shop.install(top)
    conn = make_connector(page_size=2)
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    increment = "taobao.trades.sold.increment.get"
    seen: list[tuple[list[str], list[str]]] = []  # (tids of the batch, increment pages asked so far)
    async for batch in conn.pull_orders(since, since + timedelta(hours=12)):
        seen.append(([r.external_id for r in batch], [b["page_no"] for b in top.bodies(increment)]))
    assert seen == [
        (["101"], ["1", "3"]),  # the total, then the last page: handed over before page 2 is asked
        (["102", "103"], ["1", "3", "2"]),
        (["104", "105"], ["1", "3", "2", "1"]),
    ]
    fullinfo_before_page_2 = top.methods().index("taobao.trades.sold.increment.get", 2)
    assert top.methods()[:fullinfo_before_page_2].count("taobao.trade.fullinfo.get") == 1


async def test_a_trade_that_cannot_be_read_comes_with_its_error(top):
    shop = Shop([trade(1, "2024-05-01 10:00:01"), trade(2, "2024-05-01 10:00:02"), trade(3, "2024-05-01 10:00:03")])
    shop.install(top)
    plain = shop.fullinfo

    def refuse_two(body: dict[str, str]) -> dict[str, Any]:
        if body["tid"] == "2":
            return top_error(15, "Remote service error", "isv.invalid-parameter:tid", "该订单数据异常，无法查询")
        if body["tid"] == "3":
            return top_error(15, "Remote service error", "isv.trade-not-exist", "交易订单不存在")
        return plain(body)

    top.handlers["taobao.trade.fullinfo.get"] = refuse_two
    conn = make_connector(shop="our-shop")
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    (batch,) = [p async for p in conn.pull_orders(since, since + timedelta(hours=12))]
    assert [(r.external_id, r.error is None) for r in batch] == [("1", True), ("2", False)]  # 3 vanished: skipped
    failed = batch[1]
    assert failed.payload == {"tid": 2, "modified": "2024-05-01 10:00:02", "seller_nick": "tongdao旗舰店"}
    assert failed.modified_at == datetime(2024, 5, 1, 2, 0, 2, tzinfo=UTC)
    assert failed.error.startswith("taobao.trade.fullinfo.get refused tid 2: ")
    assert "isv.invalid-parameter:tid" in failed.error and "该订单数据异常" in failed.error
    assert [b["tid"] for b in top.bodies("taobao.trade.fullinfo.get")].count("2") == 1  # permanent: not retried


@pytest.mark.parametrize(("error", "kind"), [
    (top_error(15, "Remote service error", "isp.remote-service-error"), TransientError),
    (top_error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
               "This ban will last for 3600 more seconds"), ThrottledError),
    (top_error(27, "Invalid session", "invalid-sessionkey"), AuthError),
])
async def test_fullinfo_errors_that_are_not_about_the_trade_still_raise(top, error, kind):
    Shop([trade(1, "2024-05-01 10:00:01")]).install(top)
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: error
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(kind):
        _ = [p async for p in make_connector().pull_orders(since, since + timedelta(hours=12))]


async def test_list_order_ids_walks_every_page_with_ids_only(top):
    shop = Shop([trade(100 + i, f"2024-05-01 10:00:0{i}") for i in range(1, 6)]
                + [trade(200, "2024-05-02 09:00:00")])
    shop.page_hook = lambda page, part: part + [shop.trades["104"]] if page == 2 else part  # a repeat
    shop.install(top)
    conn = make_connector(page_size=2)
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    listed = await conn.list_order_ids(since, since + timedelta(hours=36))
    assert [tid for tid, _ in listed] == ["101", "102", "103", "104", "105", "200"]
    assert listed[0][1] == datetime(2024, 5, 1, 2, 0, 1, tzinfo=UTC)
    bodies = top.bodies("taobao.trades.sold.increment.get")
    assert {b["fields"] for b in bodies} == {"tid,modified"}
    assert [b["page_no"] for b in bodies] == ["1", "3", "2", "1", "1"]  # second window: one page
    assert "taobao.trade.fullinfo.get" not in top.methods()


def test_ingest_defaults_respect_the_one_day_window():
    defaults = TaobaoConnector.ingest_defaults
    assert isinstance(defaults, IngestDefaults) and defaults is not OrderSource.ingest_defaults
    assert defaults.window <= timedelta(days=1) and defaults.chunk <= timedelta(days=1)
    assert defaults.lag <= timedelta(seconds=5)  # the demo's trades are ~10 s old on the first run
    assert defaults.overlap > timedelta(0)


async def test_naive_datetimes_are_rejected(top):
    conn = make_connector()
    with pytest.raises(InvalidRequestError):
        _ = [p async for p in conn.pull_orders(datetime(2024, 5, 1), datetime(2024, 5, 2))]


# --- errors -----------------------------------------------------------------------------------------


async def test_throttled_with_ban_seconds(top):
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: top_error(
        7, "App Call Limited", "accesscontrol.limited-by-app-access-count", "This ban will last for 31 more seconds")
    conn = make_connector()
    with pytest.raises(ThrottledError) as info:
        await conn.get_order("1")
    assert info.value.retry_after == 31.0 and info.value.retryable
    assert info.value.code == "accesscontrol.limited-by-app-access-count"
    assert info.value.to_application_error().next_retry_delay == timedelta(seconds=31)
    assert len(top.calls) == 1  # a ban longer than the client's max wait goes to Temporal, not to sleep


async def test_short_ban_is_waited_out_in_process(top):
    answers = [top_error(7, "App Call Limited", "accesscontrol.limited-by-api-access-count",
                         "This ban will last for 0.02 more seconds"),
               Shop([trade(1, "2024-05-01 10:00:00")]).fullinfo({"tid": "1"})]
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: answers.pop(0)
    conn = make_connector()
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.05)
    record = await conn.get_order("1")
    assert record.external_id == "1" and len(top.calls) == 2


async def test_code_7_without_ban_text_defaults_to_one_second():
    error = classify_error({"code": 7, "msg": "App Call Limited"}, method="m")
    assert isinstance(error, ThrottledError) and error.retry_after == 1.0


async def test_invalid_signature_is_auth_error_not_retried(top):
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: top_error(25, "Invalid signature")
    with pytest.raises(AuthError) as info:
        await make_connector().get_order("1")
    assert not info.value.retryable and info.value.code == "25"
    assert len(top.calls) == 1


async def test_remote_service_error_is_retried_then_succeeds(top):
    answers = [top_error(15, "Remote service error", "isp.remote-service-error", "连接超时"),
               Shop([trade(1, "2024-05-01 10:00:00")]).fullinfo({"tid": "1"})]
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: answers.pop(0)
    record = await make_connector().get_order("1")
    assert record.external_id == "1"
    assert len(top.calls) == 2  # each attempt freshly stamped and signed (FakeTop checks both)


async def test_remote_service_error_persisting_is_transient(top):
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: top_error(15, "Remote service error",
                                                                       "isp.top-remote-connection-timeout")
    with pytest.raises(TransientError) as info:
        await make_connector().get_order("1")
    assert info.value.retryable and len(top.calls) == 3


async def test_http_5xx_is_retried(top):
    answers = [httpx.Response(502, text="bad gateway"), Shop([trade(1, "2024-05-01 10:00:00")]).fullinfo({"tid": "1"})]
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: answers.pop(0)
    assert (await make_connector().get_order("1")).external_id == "1"


async def test_non_json_answer_is_transient(top):
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: httpx.Response(200, text="<html>busy</html>")
    with pytest.raises(TransientError):
        await make_connector().get_order("1")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"code": 7, "msg": "App Call Limited", "sub_code": "accesscontrol.limited-by-api-access-count"},
         ThrottledError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isp.remote-service-error"}, TransientError),
        ({"code": 15, "msg": "Remote service error"}, TransientError),
        ({"code": 10, "msg": "Service Currently Unavailable"}, TransientError),
        ({"code": 25, "msg": "Invalid signature"}, AuthError),
        ({"code": 27, "msg": "Invalid session", "sub_code": "invalid-sessionkey"}, AuthError),
        ({"code": 26, "msg": "Missing session"}, AuthError),
        ({"code": 28, "msg": "Missing app key"}, AuthError),
        ({"code": 29, "msg": "Invalid app key"}, AuthError),
        ({"code": 11, "msg": "Insufficient isv permissions", "sub_code": "isv.permission-api-package-limit"},
         AuthError),
        ({"code": 53, "msg": "unauthorised"}, AuthError),
        ({"code": 40, "msg": "Missing required arguments:tid"}, InvalidRequestError),
        ({"code": 41, "msg": "Invalid arguments:tid"}, InvalidRequestError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.missing-parameter:tid"}, InvalidRequestError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.invalid-parameter:fields"},
         InvalidRequestError),
        ({"code": 31, "msg": "Invalid timestamp"}, InvalidRequestError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.trade-not-exist"}, NotFoundError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.logistics-offline-service-error:B01"},
         NotFoundError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.logistics-offline-service-error:B150"},
         TransientError),
        ({"code": 15, "msg": "Remote service error", "sub_code": "isv.logistics-offline-service-error:B60"},
         InvalidRequestError),
    ],
)
def test_classification_table(error, kind):
    classified = classify_error(error, method="taobao.x")
    assert type(classified) is kind
    assert classified.platform == "taobao"
    assert classified.details["top_code"] == error["code"]


# --- shipments --------------------------------------------------------------------------------------


def shipment(tracking: str = "SF1234567890") -> Shipment:
    return Shipment(order_key="taobao:shop:3912345678901234567", carrier_code="SF", tracking_number=tracking,
                    shipped_at=datetime(2024, 5, 2, 1, 0, tzinfo=UTC))


async def test_offline_send_success(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: {
        "logistics_offline_send_response": {"shipping": {"is_success": True}}}
    result = await make_connector().push_shipment("3912345678901234567", shipment())
    assert result == WriteBackResult(taken=True)
    (method, _, body), = top.calls
    assert method == "taobao.logistics.offline.send"
    assert body == {"tid": "3912345678901234567", "out_sid": "SF1234567890", "company_code": "SF"}


B04 = top_error(15, "Remote service error", "isv.logistics-offline-service-error:B04",
                "订单状态不对该物流订单已经发货或者已关闭，不能重复发货")


async def test_offline_send_already_shipped_returns_not_taken(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    shipped = trade(3912345678901234567, "2024-05-02 09:00:00", status="WAIT_BUYER_CONFIRM_GOODS")
    Shop([shipped]).install(top)
    result = await make_connector().push_shipment("3912345678901234567", shipment())
    assert result == WriteBackResult(taken=False, tracking_on_platform=[])  # TOP showed no waybill
    assert not result.conflicts_with("SF1234567890")
    assert top.methods() == ["taobao.logistics.offline.send", "taobao.trade.fullinfo.get"]
    assert {"status", "orders"} <= set(top.bodies("taobao.trade.fullinfo.get")[0]["fields"].split(","))


def two_line_trade(status: str = "WAIT_SELLER_SEND_GOODS", **lines: dict[str, Any]) -> dict[str, Any]:
    """A trade with oids 11 and 12; ``lines`` overrides fields per oid (``o11={...}``)."""
    orders = [{"oid": oid, "num": 1, "outer_sku_id": f"SKU-{oid}", "status": status, "refund_status": "NO_REFUND"}
              | lines.get(f"o{oid}", {}) for oid in (11, 12)]
    return trade(3912345678901234567, "2024-05-02 09:00:00", status=status, orders={"order": orders})


async def test_split_package_sends_is_split_and_sub_tid(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: {
        "logistics_offline_send_response": {"shipping": {"is_success": True}}}
    result = await make_connector().push_shipment("3912345678901234567", shipment("ZT1000000001"),
                                                  line_ids=["11", " 12", "11"])
    assert result.taken
    (_, _, body), = top.calls
    assert body == {"tid": "3912345678901234567", "out_sid": "ZT1000000001", "company_code": "SF",
                    "is_split": "1", "sub_tid": "11,12"}
    with pytest.raises(InvalidRequestError, match="oid is a number"):
        await make_connector().push_shipment("3912345678901234567", shipment(), line_ids=["L-1"])
    assert len(top.calls) == 1  # refused before any call


async def test_split_package_already_sent_reports_the_waybill_of_those_lines(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    sent = two_line_trade("SELLER_CONSIGNED_PART",
                          o11={"status": "WAIT_BUYER_CONFIRM_GOODS", "invoice_no": "ZT1000000001",
                               "consign_time": "2024-05-02 09:00:00"})
    Shop([sent]).install(top)
    conn = make_connector()
    same = await conn.push_shipment("3912345678901234567", shipment("ZT1000000001"), line_ids=["11"])
    assert same == WriteBackResult(taken=False, tracking_on_platform=["ZT1000000001"])
    assert not same.conflicts_with("ZT1000000001")
    other = await conn.push_shipment("3912345678901234567", shipment("SF9999999999"), line_ids=["11"])
    assert other.conflicts_with("SF9999999999")  # the caller decides: a person must look
    body = top.bodies("taobao.logistics.offline.send")[0]
    assert (body["is_split"], body["sub_tid"]) == ("1", "11")


async def test_b04_for_lines_not_consigned_raises(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    Shop([two_line_trade("SELLER_CONSIGNED_PART",
                         o11={"status": "WAIT_BUYER_CONFIRM_GOODS", "invoice_no": "ZT1000000001"},
                         o12={"status": "TRADE_CLOSED", "refund_status": "SUCCESS"})]).install(top)
    with pytest.raises(InvalidRequestError, match="SELLER_CONSIGNED_PART, not shipped"):
        await make_connector().push_shipment("3912345678901234567", shipment(), line_ids=["12"])


async def test_whole_order_already_shipped_lists_every_waybill(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    Shop([two_line_trade("WAIT_BUYER_CONFIRM_GOODS", o11={"invoice_no": "ZT1000000002"},
                         o12={"invoice_no": "ZT1000000001"})]).install(top)
    result = await make_connector().push_shipment("3912345678901234567", shipment("ZT1000000001"))
    assert result == WriteBackResult(taken=False, tracking_on_platform=["ZT1000000001", "ZT1000000002"])


@pytest.mark.parametrize("status", ["TRADE_CLOSED_BY_TAOBAO", "WAIT_BUYER_PAY"])
async def test_b04_on_an_unpaid_or_closed_trade_raises(top, status):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    Shop([two_line_trade(status)]).install(top)
    with pytest.raises(InvalidRequestError, match=status):
        await make_connector().push_shipment("3912345678901234567", shipment())


async def test_offline_send_b04_on_a_closed_trade_raises(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: B04
    Shop([trade(3912345678901234567, "2024-05-02 09:00:00", status="TRADE_CLOSED")]).install(top)
    with pytest.raises(InvalidRequestError) as info:
        await make_connector().push_shipment("3912345678901234567", shipment())
    assert "TRADE_CLOSED" in info.value.message
    assert info.value.code == "isv.logistics-offline-service-error:B04"


async def test_offline_send_bad_waybill_raises(top):
    top.handlers["taobao.logistics.offline.send"] = lambda body: top_error(
        15, "Remote service error", "isv.logistics-offline-service-error:B60", "运单号不符合规则或已经被使用")
    with pytest.raises(InvalidRequestError):
        await make_connector().push_shipment("3912345678901234567", shipment())
    assert top.methods() == ["taobao.logistics.offline.send"]


# --- connectivity, configuration, secrets ---------------------------------------------------------


async def test_connectivity_check(top):
    Shop([trade(1, "2024-05-01 10:00:00")]).install(top)
    top.handlers["taobao.trades.sold.increment.get"] = lambda body: {
        "trades_sold_increment_get_response": {"total_results": 3,
                                               "trades": {"trade": [{"tid": 1, "seller_nick": "tongdao旗舰店"}]}}}
    summary = await make_connector().test()
    assert summary.startswith("ok: seller tongdao旗舰店, 3 orders modified in the last 5 min")
    body = top.bodies("taobao.trades.sold.increment.get")[0]
    assert body["page_size"] == "1"
    span = gmt8(body["end_modified"]) - gmt8(body["start_modified"])
    assert span == timedelta(minutes=5)


@pytest.mark.parametrize(
    "settings",
    [{"max_window_hours": 25}, {"page_size": 101}, {"page_size": 0}, {"sign_method": "sha1"}, {"app_key": ""},
     {"unknown": 1}, {"base_url": "not a url"}, {"session": ""}],
)
def test_bad_configuration(settings):
    with pytest.raises(ConfigurationError) as info:
        make_connector(**settings)
    assert SESSION not in str(info.value) and SECRET not in str(info.value)


def test_defaults_and_session_as_secret():
    conn = TaobaoConnector.from_config("s", {"app_key": "k"}, {"app_secret": SECRET, "session": SESSION})
    assert conn.settings.base_url == "https://eco.taobao.com/router/rest"
    assert conn.settings.sign_method == "hmac-sha256"
    assert (conn.settings.page_size, conn.settings.max_window_hours, conn.settings.fullinfo_concurrency) == (
        100, 24, 8)
    assert conn.settings.rate_limit_per_s is None
    assert conn.capabilities == frozenset({"orders", "shipments", "receivers", "stock"})
    assert conn.settings.oaid_scene == "1004"
    assert "oaid" in conn.settings.fullinfo_fields.split(",")
    custom = TaobaoConnector.from_config("s", {"app_key": "k", "fullinfo_fields": "tid,status"},
                                         {"app_secret": SECRET, "session": SESSION})
    assert custom.settings.fullinfo_fields == "tid,status,modified,seller_nick,oaid"  # never without the OAID
    assert SESSION not in repr(conn) and SESSION not in str(conn.describe())


async def test_secrets_never_leak(top):
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: top_error(
        27, "Invalid session", "invalid-sessionkey", f"session {SESSION} is invalid for app secret {SECRET}")
    conn = make_connector()
    with pytest.raises(AuthError) as info:
        await conn.get_order("1")
    sign = top.calls[0][1]["sign"]
    texts = [str(info.value), info.value.message, repr(info.value), str(info.value.details),
             str(info.value.to_application_error()), repr(conn), str(conn.describe()), repr(conn.settings),
             repr(conn.secrets)]
    for text in texts:
        assert SECRET not in text and SESSION not in text and sign not in text
    assert conn.describe()["settings"]["session"] == "********"
    assert conn.describe()["secrets"] == {"app_secret": "********", "session": "********"}


# --- masked receivers (OAID) ------------------------------------------------------------------------

TID = "3912345678901234567"
OAID = "1ctFfHOw-1cCMP3giFqJYUsmJu4ugofb1Db9O-cO-d-4"
MASKED = {"tid": int(TID), "oaid": OAID, "receiver_name": "王**", "receiver_mobile": "138****5678",
          "receiver_phone": "", "receiver_state": "浙江省", "receiver_city": "杭州市", "receiver_district": "西湖区",
          "receiver_town": "文新街道", "receiver_address": "文三路***", "receiver_zip": "310012"}
CLEAR = {"name": "王小明", "mobile": "13812345678", "phone": "0571-88886666", "address_detail": "文三路 90 号 501",
         "state": "浙江省", "city": "杭州市", "district": "西湖区", "town": "文新街道", "country": "中国"}


def decrypted(tid: str = TID, oaid: str = OAID, matched: bool = True, **fields: str) -> dict[str, Any]:
    """A top.oaid.decrypt answer (apiId=54714 response example, JSON with TOP's list wrapper)."""
    receiver = CLEAR | {"oaid": oaid, "tid": tid, "matched": matched, "privacy_protection": False} | fields
    return {"top_oaid_decrypt_response": {"receiver_list": {"receiver": [receiver]}, "request_id": "r1"}}


async def test_masked_receiver_is_decrypted_with_tid_oaid_and_scene(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: decrypted()
    clear = await make_connector(oaid_scene="1001").shippable_receiver(dict(MASKED))
    assert clear == {"name": "王小明", "mobile": "13812345678", "phone": "0571-88886666", "street": "文三路 90 号 501",
                     "province": "浙江省", "city": "杭州市", "district": "西湖区", "town": "文新街道"}
    assert top.methods() == ["taobao.top.oaid.decrypt"]  # FakeTop checked the signature of this call too
    body = top.bodies("taobao.top.oaid.decrypt")[0]
    assert set(body) == {"query_list"}
    assert json.loads(body["query_list"]) == [{"oaid": OAID, "tid": TID, "scene": "1001"}]


@pytest.mark.parametrize("sign_method", ["md5", "hmac"])
async def test_decrypt_is_signed_like_every_call(top, sign_method):
    top.sign_method = sign_method
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: decrypted()
    clear = await make_connector(sign_method=sign_method).shippable_receiver(dict(MASKED))
    assert clear["name"] == "王小明" and len(top.calls) == 1


async def test_only_what_top_gives_is_returned(top):
    answer = decrypted()
    receiver = answer["top_oaid_decrypt_response"]["receiver_list"]["receiver"][0]
    del receiver["phone"], receiver["town"]
    receiver["mobile"] = "18877771111-123"  # privacy_protection=true: a 隐私号 with its extension
    receiver["privacy_protection"] = True
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: answer
    clear = await make_connector().shippable_receiver(dict(MASKED))
    assert clear["mobile"] == "18877771111-123"
    assert "phone" not in clear and "town" not in clear and "postal_code" not in clear and "country" not in clear


async def test_a_trade_without_oaid_is_not_masked_and_needs_no_call(top):
    trade = {k: v for k, v in MASKED.items() if k != "oaid"} | {
        "receiver_name": "王小明", "receiver_mobile": "13812345678", "receiver_address": "文三路 90 号 501"}
    clear = await make_connector().shippable_receiver(trade)
    assert clear == {"name": "王小明", "mobile": "13812345678", "province": "浙江省", "city": "杭州市",
                     "district": "西湖区", "town": "文新街道", "street": "文三路 90 号 501", "postal_code": "310012"}
    assert top.calls == []


async def test_stale_oaid_is_replaced_by_the_current_one(top):
    new_oaid = "2ddGgIPx-2dDNQ4hjGrKZVtnKv5vhpgc2Ec0P-dP-e-5"
    answers = {OAID: decrypted(matched=False, address_detail="旧地址 1 号"),
               new_oaid: decrypted(oaid=new_oaid, address_detail="文一西路 969 号")}
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: answers[json.loads(body["query_list"])[0]["oaid"]]
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: {
        "trade_fullinfo_get_response": {"trade": {"tid": int(TID), "oaid": new_oaid}}}
    clear = await make_connector().shippable_receiver(dict(MASKED))
    assert clear["street"] == "文一西路 969 号"
    assert top.methods() == ["taobao.top.oaid.decrypt", "taobao.trade.fullinfo.get", "taobao.top.oaid.decrypt"]
    assert top.bodies("taobao.trade.fullinfo.get")[0]["fields"] == "tid,oaid"


async def test_unmatched_oaid_that_stays_unmatched_is_transient(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: decrypted(matched=False)
    top.handlers["taobao.trade.fullinfo.get"] = lambda body: {
        "trade_fullinfo_get_response": {"trade": {"tid": int(TID), "oaid": OAID}}}
    with pytest.raises(TransientError, match="does not match"):
        await make_connector().shippable_receiver(dict(MASKED))


@pytest.mark.parametrize(("code", "msg", "sub_code"), [
    (11, "Insufficient isv permissions", "isv.permission-api-package-limit"),
    (12, "Insufficient user permissions", ""),
])
async def test_missing_decrypt_permission_is_a_plain_auth_error(top, code, msg, sub_code):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: top_error(code, msg, sub_code, "scope not granted")
    with pytest.raises(AuthError) as info:
        await make_connector().shippable_receiver(dict(MASKED))
    text = str(info.value)
    assert "lacks the OAID decrypt permission" in text and APP_KEY in text and "taobao.top.oaid.decrypt" in text
    assert not info.value.retryable and info.value.details["top_code"] == code
    assert len(top.calls) == 1


async def test_invalid_session_on_decrypt_keeps_the_session_message(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: top_error(27, "Invalid session", "invalid-sessionkey")
    with pytest.raises(AuthError) as info:
        await make_connector().shippable_receiver(dict(MASKED))
    assert "Invalid session" in str(info.value) and "decrypt permission" not in str(info.value)


async def test_throttled_decrypt(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: top_error(
        7, "App Call Limited", "accesscontrol.limited-by-api-access-count", "This ban will last for 42 more seconds")
    with pytest.raises(ThrottledError) as info:
        await make_connector().shippable_receiver(dict(MASKED))
    assert info.value.retry_after == 42.0 and len(top.calls) == 1


async def test_decrypt_server_errors_are_transient(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: top_error(15, "Remote service error",
                                                                     "isp.top-remote-connection-timeout")
    with pytest.raises(TransientError):
        await make_connector().shippable_receiver(dict(MASKED))
    assert len(top.calls) == 3  # retried in process, then left to Temporal


async def test_unknown_oaid_tid_pair_and_empty_answer(top):
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: top_error(15, "Remote service error",
                                                                     "isv.invalid-parameter", "非法参数")
    with pytest.raises(InvalidRequestError):
        await make_connector().shippable_receiver(dict(MASKED))
    top.handlers["taobao.top.oaid.decrypt"] = lambda body: {"top_oaid_decrypt_response": {"request_id": "r"}}
    with pytest.raises(TransientError, match="no receiver"):
        await make_connector().shippable_receiver(dict(MASKED))
    with pytest.raises(InvalidRequestError):
        await make_connector().shippable_receiver(MASKED | {"oaid": "x" * 129})
    with pytest.raises(InvalidRequestError):
        await make_connector().shippable_receiver({"oaid": OAID})
