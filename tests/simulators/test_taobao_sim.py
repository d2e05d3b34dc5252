"""Tests of the Taobao TOP gateway simulator.

Requests are signed here with an independent, hand-written version of TOP's rule (not the
simulator's helper), so a wrong rule in the simulator cannot agree with itself; the simulator's own
``top_sign`` is checked against the documented example and RFC HMAC vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from canonical.validation import validate_order
from connectors.http import RetryPolicy
from connectors.taobao import TaobaoConnector
from mappings import DictLookups, load_spec
from simulators.catalog import CATALOG
from simulators.faults import FaultConfig
from simulators.server import BackgroundServer
from simulators.taobao import TaobaoSimulator, top_sign

APP_KEY, SECRET = "12345678", "sim-secret-0001"
SESSION_A, SESSION_B = "session-a", "session-b"
SHOP_A, SHOP_B = "测试店铺A", "测试店铺B"
NOW = datetime(2025, 6, 18, 4, 0, 0, tzinfo=UTC)
GMT8 = timezone(timedelta(hours=8))
INCREMENT = "taobao.trades.sold.increment.get"
FULLINFO = "taobao.trade.fullinfo.get"
SEND = "taobao.logistics.offline.send"
ALL_FIELDS = ("tid,type,status,created,modified,pay_time,payment,total_fee,post_fee,discount_fee,buyer_nick,"
              "seller_nick,receiver_name,receiver_mobile,receiver_phone,receiver_state,receiver_city,"
              "receiver_district,receiver_town,receiver_address,receiver_zip,buyer_message,step_trade_status,"
              "step_paid_fee,orders")


def gmt8(moment: datetime) -> str:
    return moment.astimezone(GMT8).strftime("%Y-%m-%d %H:%M:%S")


def independent_sign(params: dict[str, str], secret: str, method: str) -> str:
    """TOP rule written out by hand: sorted name+value (no sign, no empty), digest, upper hex."""
    text = "".join(k + params[k] for k in sorted(params) if k != "sign" and params[k] != "")
    if method == "md5":
        return hashlib.md5((secret + text + secret).encode()).hexdigest().upper()
    algo = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(secret.encode(), text.encode(), algo).hexdigest().upper()


def make_sim(**overrides: Any) -> TaobaoSimulator:
    options: dict[str, Any] = {
        "apps": {APP_KEY: SECRET}, "shops": {SESSION_A: SHOP_A, SESSION_B: SHOP_B}, "orders_per_shop": 30,
        "malformed_per_shop": 4, "seed": 42, "now": NOW,
    }
    options.update(overrides)
    return TaobaoSimulator(**options)


class Top:
    """A tiny TOP client over the simulator's ASGI app."""

    def __init__(self, sim: TaobaoSimulator, client: httpx.AsyncClient) -> None:
        self.sim = sim
        self.client = client

    def params(self, method: str, business: dict[str, Any], *, session: str = SESSION_A, sign_method: str = "md5",
               secret: str = SECRET, **system: str) -> dict[str, str]:
        params = {"method": method, "app_key": APP_KEY, "session": session, "timestamp": gmt8(self.sim.now()),
                  "format": "json", "v": "2.0", "sign_method": sign_method,
                  **{k: str(v) for k, v in business.items()}}
        params.update(system)
        params["sign"] = independent_sign(params, secret, sign_method)
        return params

    async def call(self, method: str, business: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = self.params(method, business or {}, **kwargs)
        system = {k: params.pop(k) for k in list(params) if k in
                  ("method", "app_key", "session", "timestamp", "format", "v", "sign_method", "sign")}
        response = await self.client.post("/router/rest", params=system, data=params)
        assert response.status_code == 200
        return response.json()

    async def window(self, start: datetime, end: datetime, **business: Any) -> dict[str, Any]:
        body = await self.call(INCREMENT, {"fields": "tid,modified,status", "start_modified": gmt8(start),
                                           "end_modified": gmt8(end), **business})
        return body.get("trades_sold_increment_get_response") or body

    async def walk(self, start: datetime, end: datetime, page_size: int) -> list[dict[str, Any]]:
        first = await self.window(start, end, page_size=page_size)
        pages = max(1, -(-first["total_results"] // page_size))
        trades = list(first.get("trades", {}).get("trade", []))
        for page_no in range(2, pages + 1):
            answer = await self.window(start, end, page_size=page_size, page_no=page_no)
            trades += answer.get("trades", {}).get("trade", [])
        return trades


@pytest.fixture
async def top() -> AsyncIterator[Top]:
    sim = make_sim()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://top.test") as client:
        yield Top(sim, client)


async def client_for(sim: TaobaoSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://top.test")


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert "error_response" in body, body
    return body["error_response"]


# --------------------------------------------------------------------------- signing


def test_sign_matches_documented_example_and_hmac_vectors() -> None:
    doc = {"method": "taobao.item.seller.get", "app_key": "12345678", "session": "test",
           "timestamp": "2016-01-01 12:00:00", "format": "json", "v": "2.0", "sign_method": "md5",
           "fields": "num_iid,title,nick,price,num", "num_iid": "11223344"}
    # open.taobao.com docId=101617 example
    assert top_sign(doc, "helloworld", "md5") == "66987CB115214E59E6EC978214934FB8"
    # "Hi" + " There" concatenates to RFC 2202 / RFC 4231 test case 1
    assert top_sign({"Hi": " There"}, "\x0b" * 16, "hmac") == "9294727A3638BB1C13F48EF8158BFC9D"
    assert top_sign({"Hi": " There"}, "\x0b" * 20, "hmac-sha256") == (
        "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7")
    assert top_sign({**doc, "sign": "X", "empty": ""}, "helloworld", "md5") == "66987CB115214E59E6EC978214934FB8"


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_every_sign_method_is_accepted(top: Top, sign_method: str) -> None:
    tid = top.sim.orders(SHOP_A)[0]["tid"]
    body = await top.call(FULLINFO, {"fields": "tid,status", "tid": tid}, sign_method=sign_method)
    assert body["trade_fullinfo_get_response"]["trade"] == {"tid": tid, "status": "WAIT_SELLER_SEND_GOODS"}
    assert body["trade_fullinfo_get_response"]["request_id"]


async def test_get_with_query_string_only(top: Top) -> None:
    tid = top.sim.orders(SHOP_A)[0]["tid"]
    params = top.params(FULLINFO, {"fields": "tid", "tid": tid}, sign_method="hmac-sha256")
    body = (await top.client.get("/router/rest", params=params)).json()
    assert body["trade_fullinfo_get_response"]["trade"]["tid"] == tid


async def test_wrong_signature_is_code_25_and_counted(top: Top) -> None:
    tid = top.sim.orders(SHOP_A)[0]["tid"]
    bad = error(await top.call(FULLINFO, {"fields": "tid", "tid": tid}, secret="not-the-secret"))
    assert bad["code"] == 25 and bad["msg"] == "Invalid signature" and "sub_code" not in bad
    params = top.params(FULLINFO, {"fields": "tid", "tid": tid})
    params["sign"] = params["sign"].lower()  # the documented form is upper-case hex
    assert error((await top.client.post("/router/rest", data=params)).json())["code"] == 25
    params = top.params(FULLINFO, {"fields": "tid", "tid": tid})
    params["fields"] = "tid,status"  # tampered after signing
    assert error((await top.client.post("/router/rest", data=params)).json())["code"] == 25
    assert top.sim.state()["rejected_signatures"] == 3


async def test_system_parameter_errors(top: Top) -> None:
    tid = top.sim.orders(SHOP_A)[0]["tid"]
    business = {"fields": "tid", "tid": tid}
    stale = gmt8(top.sim.now() - timedelta(minutes=11))
    assert error(await top.call(FULLINFO, business, timestamp=stale))["code"] == 31
    assert error(await top.call(FULLINFO, business, timestamp=gmt8(top.sim.now() + timedelta(minutes=11))))[
        "code"] == 31
    assert error(await top.call(FULLINFO, business, timestamp="2025-06-18T12:00:00"))["code"] == 31
    ok = await top.call(FULLINFO, business, timestamp=gmt8(top.sim.now() - timedelta(minutes=9)))
    assert "trade_fullinfo_get_response" in ok
    invalid_session = error(await top.call(FULLINFO, business, session="nope"))
    assert (invalid_session["code"], invalid_session["sub_code"]) == (27, "invalid-sessionkey")
    assert error(await top.call("taobao.no.such.api", business))["code"] == 22
    assert error(await top.call(FULLINFO, business, format="xml"))["code"] == 23
    assert error(await top.call(FULLINFO, business, v="1.0"))["code"] == 34
    params = top.params(FULLINFO, business)
    params["app_key"] = "99999999"
    unknown_app = error((await top.client.post("/router/rest", data=params)).json())
    assert (unknown_app["code"], unknown_app["msg"], unknown_app["sub_code"]) == (
        29, "Invalid app Key", "isv.appkey-not-exists")
    del params["method"]
    assert error((await top.client.post("/router/rest", data=params)).json())["code"] == 21
    missing = error(await top.call(FULLINFO, {"fields": "tid"}))
    assert (missing["code"], missing["msg"]) == (40, "Missing required arguments:tid")


# --------------------------------------------------------------------------- increment


async def test_window_longer_than_one_day_is_rejected(top: Top) -> None:
    end = top.sim.now()
    too_long = error(await top.window(end - timedelta(days=1, seconds=1), end))
    assert too_long["code"] == 15 and too_long["sub_code"] == "isv.invalid-parameter"
    assert error(await top.window(end, end))["sub_code"] == "isv.invalid-parameter"  # end must be > start
    exactly_one_day = await top.window(end - timedelta(days=1), end)
    assert exactly_one_day["total_results"] == 30


async def test_pagination_walks_every_trade_once_newest_modified_first(top: Top) -> None:
    end = top.sim.now()
    trades = await top.walk(end - timedelta(hours=12), end, page_size=7)
    tids = [t["tid"] for t in trades]
    assert len(tids) == len(set(tids)) == 30
    assert set(tids) == {t["tid"] for t in top.sim.orders(SHOP_A)}
    assert not set(tids) & {t["tid"] for t in top.sim.orders(SHOP_B)}
    keys = [(t["modified"], t["tid"]) for t in trades]
    assert keys == sorted(keys, reverse=True)
    assert all(set(t) == {"tid", "modified", "status"} for t in trades)


async def test_page_size_default_max_and_has_next(top: Top) -> None:
    end = top.sim.now()
    start = end - timedelta(hours=12)
    default = await top.window(start, end)
    assert len(default["trades"]["trade"]) == 30 and "has_next" not in default
    assert error(await top.window(start, end, page_size=101))["code"] == 41
    first = await top.window(start, end, page_size=20, use_has_next="true")
    assert first["has_next"] is True and "total_results" not in first
    last = await top.window(start, end, page_size=20, page_no=2, use_has_next="true")
    assert last["has_next"] is False and len(last["trades"]["trade"]) == 10
    empty = await top.window(start, end, page_size=20, page_no=3)
    assert empty["total_results"] == 30 and "trades" not in empty


async def test_increment_returns_only_partial_trades(top: Top) -> None:
    end = top.sim.now()
    answer = await top.window(end - timedelta(hours=12), end,
                              fields="tid,payment,receiver_name,receiver_mobile,orders.oid")
    trade = answer["trades"]["trade"][0]
    assert set(trade) == {"tid", "payment", "orders"}
    assert all(set(o) == {"oid"} for o in trade["orders"]["order"])


async def test_status_and_old_trades_filters(top: Top) -> None:
    end = top.sim.now()
    none = await top.window(end - timedelta(hours=12), end, status="TRADE_FINISHED")
    assert none["total_results"] == 0
    assert error(await top.window(end - timedelta(hours=12), end, status="SHIPPED"))["code"] == 41
    top.sim.advance(timedelta(days=91).total_seconds())  # "只能获取到三个月以内的交易信息"
    later = top.sim.now()
    assert (await top.window(later - timedelta(hours=1), later))["total_results"] == 0


# --------------------------------------------------------------------------- fullinfo


async def test_fullinfo_fields_types_and_ownership(top: Top) -> None:
    single = next(t for t in top.sim.orders(SHOP_A) if len(t["orders"]["order"]) == 1 and "step_trade_status"
                  not in t and t["tid"] not in top.sim.state()["malformed"])
    body = await top.call(FULLINFO, {"fields": ALL_FIELDS + ",num_iid,title", "tid": single["tid"]})
    trade = body["trade_fullinfo_get_response"]["trade"]
    assert isinstance(trade["tid"], int) and len(str(trade["tid"])) >= 18
    assert trade["status"] == "WAIT_SELLER_SEND_GOODS" and trade["seller_nick"] == SHOP_A
    assert trade["title"] == SHOP_A and trade["num_iid"] == trade["orders"]["order"][0]["num_iid"]
    for key in ("created", "modified", "pay_time"):
        datetime.strptime(trade[key], "%Y-%m-%d %H:%M:%S")
    for key in ("payment", "total_fee", "post_fee", "discount_fee"):
        assert Decimal(trade[key]) == Decimal(trade[key]).quantize(Decimal("0.01")) and "." in trade[key]
    assert trade["receiver_mobile"].isdigit() and len(trade["receiver_mobile"]) == 11
    assert trade["receiver_mobile"].startswith("1") and trade["receiver_address"]
    assert Decimal(trade["payment"]) == (Decimal(trade["total_fee"]) + Decimal(trade["post_fee"])
                                         - Decimal(trade["discount_fee"]))
    line = trade["orders"]["order"][0]
    assert {"oid", "num_iid", "sku_id", "outer_iid", "outer_sku_id", "title", "price", "num", "total_fee",
            "payment", "discount_fee", "adjust_fee", "status", "refund_status"} <= set(line)
    assert Decimal(line["payment"]) == Decimal(trade["payment"])  # single line: includes the post fee
    sku_ids = {str(item["sku_id"]) for item in CATALOG}
    assert line["sku_id"] in sku_ids and line["outer_sku_id"].startswith("TD-SKU-")
    only = await top.call(FULLINFO, {"fields": "tid,receiver_name", "tid": single["tid"]})
    assert set(only["trade_fullinfo_get_response"]["trade"]) == {"tid", "receiver_name"}
    foreign = top.sim.orders(SHOP_B)[0]["tid"]
    for tid in (foreign, 1234567890123456789):
        missing = error(await top.call(FULLINFO, {"fields": "tid", "tid": tid}))
        assert (missing["code"], missing["sub_code"]) == (15, "isv.trade-not-exist")
    assert error(await top.call(FULLINFO, {"fields": "tid", "tid": "12ab"}))["code"] == 41


async def test_multi_line_trades_sum_up(top: Top) -> None:
    multi = [t for t in top.sim.orders(SHOP_A) if len(t["orders"]["order"]) > 1 and t["payment"].count(".")]
    assert multi
    for trade in multi:
        lines = trade["orders"]["order"]
        assert "num_iid" not in trade  # goods fields only on single-line trades
        assert sum(Decimal(o["payment"]) for o in lines) + Decimal(trade["post_fee"]) == Decimal(trade["payment"])
        assert len({o["oid"] for o in lines}) == len(lines)


async def test_presale_trades_exist() -> None:
    sim = make_sim(orders_per_shop=150, malformed_per_shop=0)
    steps = [t for t in sim.orders(SHOP_A) if t["type"] == "step"]
    assert steps and all(t["step_trade_status"] == "FRONT_PAID_FINAL_PAID" for t in steps)
    assert all(t["step_paid_fee"] == t["payment"] for t in steps)


# --------------------------------------------------------------------------- offline.send


async def test_offline_send_ships_once_and_counts_repeats(top: Top) -> None:
    trade = top.sim.orders(SHOP_A)[0]
    tid, before = trade["tid"], trade["modified"]
    top.sim.advance(60)
    ok = await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"})
    assert ok["logistics_offline_send_response"]["shipping"] == {"is_success": True}
    shipped = top.sim.get_trade(tid)
    assert shipped is not None and shipped["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    assert shipped["modified"] > before and shipped["consign_time"] == shipped["modified"]
    assert all(o["invoice_no"] == "SF1234567890" for o in shipped["orders"]["order"])
    # the shipped trade comes back in an increment pull over the last minutes
    recent = await top.window(top.sim.now() - timedelta(minutes=5), top.sim.now())
    assert [t["tid"] for t in recent["trades"]["trade"]] == [tid]
    assert recent["trades"]["trade"][0]["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    again = error(await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"}))
    assert (again["code"], again["sub_code"]) == (15, "isv.logistics-offline-service-error:B04")
    state = top.sim.state()
    assert state["shipped_count"] == 1 and state["shipment_repeat_attempts"] == 1
    assert state["shipments"][tid]["out_sid"] == "SF1234567890" and state["shipment_attempts"] == 2


async def test_offline_send_errors(top: Top) -> None:
    a, b = top.sim.orders(SHOP_A)[:2]
    foreign = top.sim.orders(SHOP_B)[0]["tid"]
    not_found = error(await top.call(SEND, {"tid": foreign, "out_sid": "YT1234567890", "company_code": "YTO"}))
    assert not_found["sub_code"] == "isv.logistics-offline-service-error:B01"
    bad_company = error(await top.call(SEND, {"tid": a["tid"], "out_sid": "YT1234567890", "company_code": "XX"}))
    assert bad_company["sub_code"].endswith(":B56")
    assert error(await top.call(SEND, {"tid": a["tid"], "company_code": "YTO"}))["code"] == 40
    await top.call(SEND, {"tid": a["tid"], "out_sid": "YT1234567890", "company_code": "YTO"})
    reused = error(await top.call(SEND, {"tid": b["tid"], "out_sid": "YT1234567890", "company_code": "YTO"}))
    assert reused["sub_code"].endswith(":B60")
    half = error(await top.call(SEND, {"tid": b["tid"], "out_sid": "YT2234567890", "company_code": "YTO",
                                       "is_split": 1}))
    assert half["sub_code"].endswith(":CD25")
    assert top.sim.state()["shipment_repeat_attempts"] == 0 and top.sim.state()["shipped_count"] == 1


async def test_split_shipment() -> None:
    sim = make_sim()
    trade = next(t for t in sim.orders(SHOP_A) if len(t["orders"]["order"]) > 1)
    oids = [o["oid"] for o in trade["orders"]["order"]]
    async with await client_for(sim) as client:
        top = Top(sim, client)
        first = await top.call(SEND, {"tid": trade["tid"], "out_sid": "ZT1000000001", "company_code": "ZTO",
                                      "is_split": 1, "sub_tid": oids[0]})
        assert "logistics_offline_send_response" in first
        assert sim.get_trade(trade["tid"])["status"] == "SELLER_CONSIGNED_PART"  # type: ignore[index]
        rest = ",".join(str(oid) for oid in oids[1:])
        await top.call(SEND, {"tid": trade["tid"], "out_sid": "ZT1000000002", "company_code": "ZTO",
                              "is_split": 1, "sub_tid": rest})
    assert sim.get_trade(trade["tid"])["status"] == "WAIT_BUYER_CONFIRM_GOODS"  # type: ignore[index]
    assert len(sim.state()["shipments"][trade["tid"]]["packages"]) == 2


# --------------------------------------------------------------------------- throttling and faults


async def test_calls_per_second_limit_gives_code_7() -> None:
    sim = make_sim(calls_per_second=1)
    tid = sim.orders(SHOP_A)[0]["tid"]
    async with await client_for(sim) as client:
        top = Top(sim, client)
        answers = [await top.call(FULLINFO, {"fields": "tid", "tid": tid}) for _ in range(3)]
    assert "trade_fullinfo_get_response" in answers[0]
    limited = [a["error_response"] for a in answers if "error_response" in a]
    assert limited and all(e["code"] == 7 for e in limited)
    assert limited[0]["sub_code"] == "accesscontrol.limited-by-app-access-count"
    assert limited[0]["sub_msg"] == "This ban will last for 1 more seconds"
    assert sim.state()["throttled"] == len(limited) == sim.state()["rate_limited"]


async def test_throttle_fault_uses_retry_after(top: Top) -> None:
    top.sim.faults.reconfigure(FaultConfig(throttle_rate=1.0, retry_after_s=42))
    limited = error(await top.call(FULLINFO, {"fields": "tid", "tid": 1}))
    assert (limited["code"], limited["msg"]) == (7, "App Call Limited")
    assert limited["sub_msg"] == "This ban will last for 42 more seconds"
    assert top.sim.state()["faults"]["throttle"] == 1 and top.sim.state()["throttled"] == 1


async def test_error_5xx_fault_styles() -> None:
    for style in ("isp", "http503"):
        sim = make_sim(faults=FaultConfig(error_5xx_rate=1.0), server_error_style=style)
        async with await client_for(sim) as client:
            params = Top(sim, client).params(FULLINFO, {"fields": "tid", "tid": 1})
            response = await client.post("/router/rest", data=params)
        if style == "http503":
            assert response.status_code == 503
        else:
            failure = error(response.json())
            assert failure["code"] == 15 and failure["sub_code"].startswith("isp.")


async def test_duplicate_fault_repeats_a_trade_in_a_page(top: Top) -> None:
    top.sim.faults.reconfigure(FaultConfig(duplicate_rate=1.0))
    answer = await top.window(top.sim.now() - timedelta(hours=12), top.sim.now(), page_size=10)
    tids = [t["tid"] for t in answer["trades"]["trade"]]
    assert len(tids) == 11 and len(set(tids)) == 10 and answer["total_results"] == 30


# --------------------------------------------------------------------------- data


def test_malformed_orders_are_present_and_recorded() -> None:
    sim = make_sim()
    state = sim.state()
    assert state["orders_created"] == 60 and state["orders_malformed"] == 8
    kinds = list(state["malformed"].values())
    assert sorted(set(kinds)) == ["bad_payment", "empty_address", "invalid_mobile", "unknown_sku"]
    known_skus = {str(item["sku_id"]) for item in CATALOG}
    for tid, kind in state["malformed"].items():
        trade = sim.get_trade(tid)
        assert trade is not None
        if kind == "empty_address":
            assert trade["receiver_address"] == ""
        elif kind == "invalid_mobile":
            mobile = trade["receiver_mobile"]
            assert not (mobile.isdigit() and len(mobile) == 11)
        elif kind == "unknown_sku":
            assert any(o["sku_id"] not in known_skus for o in trade["orders"]["order"])
        else:
            assert "," in trade["payment"] and "." not in trade["payment"]
    good = [t for t in sim.orders(SHOP_A) if t["tid"] not in state["malformed"]]
    assert all(o["sku_id"] in known_skus for t in good for o in t["orders"]["order"])
    assert all(t["receiver_mobile"].isdigit() and len(t["receiver_mobile"]) == 11 for t in good)


def test_same_seed_same_data_other_seed_other_tids() -> None:
    first, second, other = make_sim(), make_sim(), make_sim(seed=43)
    assert first.orders(SHOP_A) == second.orders(SHOP_A)
    assert first.state()["malformed"] == second.state()["malformed"]
    assert {t["tid"] for t in first.orders(SHOP_A)}.isdisjoint({t["tid"] for t in other.orders(SHOP_A)})


def test_orders_spread_before_now() -> None:
    sim = make_sim(spread_hours=2)
    for trade in sim.orders(SHOP_A):
        created = datetime.strptime(trade["created"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8)
        modified = datetime.strptime(trade["modified"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8)
        assert NOW - timedelta(hours=2) <= created <= modified <= NOW


async def test_add_orders_shows_up_in_live_pull(top: Top) -> None:
    top.sim.advance(300)
    tids = top.sim.add_orders(SESSION_A, 3, malformed=1)
    assert len(tids) == 3 and top.sim.state()["orders_created"] == 63
    recent = await top.window(top.sim.now() - timedelta(minutes=1), top.sim.now())
    assert {t["tid"] for t in recent["trades"]["trade"]} == set(tids)
    assert len(set(tids) & set(top.sim.state()["malformed"])) == 1


# --------------------------------------------------------------------------- admin and server


async def test_admin_routes(top: Top) -> None:
    state = (await top.client.get("/_sim/state")).json()
    assert state["orders_created"] == 60 and len(state["malformed_tids"]) == 8
    config = (await top.client.post("/_sim/faults", json={"throttle_rate": 1.0, "retry_after_s": 3})).json()
    assert config["throttle_rate"] == 1.0
    assert (await top.client.post("/_sim/faults", json={"throttle_rate": 5})).status_code == 422
    assert error(await top.call(FULLINFO, {"fields": "tid", "tid": 1}))["code"] == 7
    added = (await top.client.post("/_sim/orders", json={"shop": SHOP_B, "n": 2})).json()
    assert len(added["tids"]) == 2


async def test_simplify_drops_wrappers(top: Top) -> None:
    end = top.sim.now()
    body = await top.call(INCREMENT, {"fields": "tid,orders", "start_modified": gmt8(end - timedelta(hours=12)),
                                      "end_modified": gmt8(end), "page_size": 5, "simplify": "true"})
    assert isinstance(body["trades"], list) and isinstance(body["trades"][0]["orders"], list)


def test_background_server_round_trip() -> None:
    sim = make_sim(orders_per_shop=2, malformed_per_shop=0)
    tid = sim.orders(SHOP_A)[0]["tid"]
    with BackgroundServer(sim.app) as server:
        params = sim.signed_params(FULLINFO, {"fields": "tid,status", "tid": tid}, session=SESSION_A,
                                   sign_method="hmac")
        body = httpx.post(f"{server.base_url}/router/rest", data=params, timeout=5).json()
    assert body["trade_fullinfo_get_response"]["trade"]["tid"] == tid
    assert sim.state()["requests"][FULLINFO] == 1


# --------------------------------------------------------------------------- trade life


def lines_of(trade: dict[str, Any]) -> list[dict[str, Any]]:
    return trade["orders"]["order"]


async def test_generated_data_has_multi_line_trades() -> None:
    sim = make_sim()
    assert any(len(lines_of(t)) > 1 for t in sim.orders(SHOP_A))
    assert all(t["status"] == "WAIT_SELLER_SEND_GOODS" for t in sim.orders(SHOP_A))  # the default is unchanged


async def test_unpaid_trade_is_paid_and_shows_up_again(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, status="WAIT_BUYER_PAY", lines=2)
    unpaid = top.sim.trade(tid)
    assert unpaid["status"] == "WAIT_BUYER_PAY" and "pay_time" not in unpaid
    assert {o["status"] for o in lines_of(unpaid)} == {"WAIT_BUYER_PAY"} and len(lines_of(unpaid)) == 2
    assert error(await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"}))[
        "sub_code"].endswith(":B04")  # an unpaid trade cannot be consigned
    top.sim.advance(30)
    top.sim.pay(tid)
    paid = top.sim.trade(tid)
    assert paid["status"] == top.sim.status(tid) == "WAIT_SELLER_SEND_GOODS"
    assert paid["pay_time"] == paid["modified"] > unpaid["modified"]
    recent = await top.window(top.sim.now() - timedelta(seconds=10), top.sim.now())
    assert [(t["tid"], t["status"]) for t in recent["trades"]["trade"]] == [(tid, "WAIT_SELLER_SEND_GOODS")]
    with pytest.raises(ValueError):
        top.sim.pay(tid)


async def test_unpaid_trade_closed_by_taobao(top: Top) -> None:
    tid = top.sim.make_trade(SESSION_A, status="WAIT_BUYER_PAY")
    top.sim.advance(5)
    top.sim.close_unpaid(tid)
    closed = top.sim.trade(tid)
    assert closed["status"] == "TRADE_CLOSED_BY_TAOBAO" and closed["end_time"] == closed["modified"]
    assert {o["status"] for o in lines_of(closed)} == {"TRADE_CLOSED_BY_TAOBAO"}
    refused = error(await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"}))
    assert refused["sub_code"] == "isv.logistics-offline-service-error:B04"
    assert top.sim.writebacks(tid) == [] and top.sim.state()["shipment_repeat_attempts"] == 0
    with pytest.raises(ValueError):
        top.sim.refund_all(tid)  # nothing was paid
    paid = top.sim.make_trade(SESSION_A)
    with pytest.raises(ValueError):
        top.sim.close_unpaid(paid)


async def test_presale_deposit_then_balance(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, presale=True, lines=1)
    trade = top.sim.trade(tid)
    assert (trade["type"], trade["status"], trade["step_trade_status"]) == (
        "step", "WAIT_BUYER_PAY", "FRONT_PAID_FINAL_NOPAID")
    assert Decimal("0") < Decimal(trade["step_paid_fee"]) < Decimal(trade["payment"]) and "pay_time" not in trade
    body = await top.call(FULLINFO, {"fields": ALL_FIELDS, "tid": tid})
    assert body["trade_fullinfo_get_response"]["trade"]["step_paid_fee"] == trade["step_paid_fee"]
    with pytest.raises(ValueError, match="pay_balance"):
        top.sim.pay(tid)
    top.sim.advance(60)
    top.sim.pay_balance(tid)
    paid = top.sim.trade(tid)
    assert (paid["status"], paid["step_trade_status"], paid["step_paid_fee"]) == (
        "WAIT_SELLER_SEND_GOODS", "FRONT_PAID_FINAL_PAID", paid["payment"])
    assert paid["modified"] > trade["modified"] and paid["pay_time"] == paid["modified"]
    with pytest.raises(ValueError):
        top.sim.pay_balance(tid)
    nothing = top.sim.make_trade(SHOP_A, presale="FRONT_NOPAID_FINAL_NOPAID")
    assert top.sim.trade(nothing)["step_paid_fee"] == "0.00"
    top.sim.pay(nothing)  # the deposit only
    assert (top.sim.status(nothing), top.sim.trade(nothing)["step_trade_status"]) == (
        "WAIT_BUYER_PAY", "FRONT_PAID_FINAL_NOPAID")


async def test_refunds(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, lines=3)
    first, second, third = (o["oid"] for o in lines_of(top.sim.trade(tid)))
    before = top.sim.trade(tid)["modified"]
    top.sim.advance(2)
    top.sim.request_refund(tid, first)
    asked = top.sim.trade(tid)
    assert [o["refund_status"] for o in lines_of(asked)] == ["WAIT_SELLER_AGREE", "NO_REFUND", "NO_REFUND"]
    assert asked["status"] == "WAIT_SELLER_SEND_GOODS" and asked["modified"] > before
    top.sim.advance(2)
    top.sim.refund_line(tid, first)
    refunded = top.sim.trade(tid)
    assert (lines_of(refunded)[0]["refund_status"], lines_of(refunded)[0]["status"]) == ("SUCCESS", "TRADE_CLOSED")
    assert refunded["status"] == "WAIT_SELLER_SEND_GOODS" and refunded["modified"] > asked["modified"]
    with pytest.raises(KeyError):
        top.sim.refund_line(tid, 1)
    # a whole-trade send ships what is left; the refunded line stays closed
    await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"})
    assert top.sim.writebacks(tid) == [("SF1234567890", "SF", [second, third])]
    assert top.sim.status(tid) == "WAIT_BUYER_CONFIRM_GOODS"
    top.sim.advance(2)
    top.sim.refund_all(tid)  # after shipment too (returned goods)
    closed = top.sim.trade(tid)
    assert closed["status"] == "TRADE_CLOSED" and {o["refund_status"] for o in lines_of(closed)} == {"SUCCESS"}
    with pytest.raises(ValueError):
        top.sim.refund_all(tid)


async def test_refunding_the_last_unshipped_line_completes_the_shipment(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, lines=2)
    shipped, rest = (o["oid"] for o in lines_of(top.sim.trade(tid)))
    await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000001", "company_code": "ZTO", "is_split": 1,
                          "sub_tid": shipped})
    assert top.sim.status(tid) == "SELLER_CONSIGNED_PART"
    top.sim.refund_line(tid, rest)
    assert top.sim.status(tid) == "WAIT_BUYER_CONFIRM_GOODS"
    only = top.sim.make_trade(SHOP_A, lines=1)
    top.sim.refund_line(only, top.sim.trade(only)["orders"]["order"][0]["oid"])
    assert top.sim.status(only) == "TRADE_CLOSED"


async def test_change_address(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A)
    top.sim.advance(1)
    top.sim.change_address(tid, address="文一西路 969 号", receiver_zip="311121", city="杭州市")
    trade = top.sim.trade(tid)
    assert (trade["receiver_address"], trade["receiver_zip"], trade["receiver_city"]) == (
        "文一西路 969 号", "311121", "杭州市")
    with pytest.raises(ValueError):
        top.sim.change_address(tid, colour="red")
    await top.call(SEND, {"tid": tid, "out_sid": "SF1234567890", "company_code": "SF"})
    with pytest.raises(ValueError):
        top.sim.change_address(tid, address="too late")


async def test_split_consign_records_each_package(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, lines=3)
    a, b, c = (o["oid"] for o in lines_of(top.sim.trade(tid)))
    await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000001", "company_code": "ZTO", "is_split": 1,
                          "sub_tid": f"{a},{b}"})
    part = top.sim.trade(tid)
    assert part["status"] == "SELLER_CONSIGNED_PART"
    assert [(o["status"], o.get("invoice_no")) for o in lines_of(part)] == [
        ("WAIT_BUYER_CONFIRM_GOODS", "ZT1000000001"), ("WAIT_BUYER_CONFIRM_GOODS", "ZT1000000001"),
        ("WAIT_SELLER_SEND_GOODS", None)]
    again = error(await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000001", "company_code": "ZTO",
                                        "is_split": 1, "sub_tid": a}))
    assert again["sub_code"].endswith(":B04")  # those lines are already sent
    whole = error(await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000003", "company_code": "ZTO"}))
    assert whole["sub_code"].endswith(":B04")  # a partly shipped trade takes split packages only
    await top.call(SEND, {"tid": tid, "out_sid": "YT1000000002", "company_code": "YTO", "is_split": 1,
                          "sub_tid": c})
    assert top.sim.status(tid) == "WAIT_BUYER_CONFIRM_GOODS"
    assert top.sim.writebacks(tid) == [("ZT1000000001", "ZTO", [a, b]), ("YT1000000002", "YTO", [c])]
    assert top.sim.state()["shipment_repeat_attempts"] == 2


async def test_split_consign_of_a_refunded_line_is_refused(top: Top) -> None:
    tid = top.sim.make_trade(SHOP_A, lines=2)
    a, b = (o["oid"] for o in lines_of(top.sim.trade(tid)))
    top.sim.refund_line(tid, b)
    refused = error(await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000001", "company_code": "ZTO",
                                          "is_split": 1, "sub_tid": b}))
    assert refused["sub_code"].endswith(":B04")
    await top.call(SEND, {"tid": tid, "out_sid": "ZT1000000001", "company_code": "ZTO", "is_split": 1,
                          "sub_tid": a})
    assert top.sim.status(tid) == "WAIT_BUYER_CONFIRM_GOODS"  # nothing left to ship


async def test_generation_options_and_admin_lifecycle(top: Top) -> None:
    tids = top.sim.add_orders(SESSION_B, 2, status="WAIT_BUYER_PAY", lines=2)
    assert all(top.sim.status(t) == "WAIT_BUYER_PAY" and len(lines_of(top.sim.trade(t))) == 2 for t in tids)
    with pytest.raises(ValueError):
        top.sim.add_orders(SESSION_B, 1, status="TRADE_FINISHED")
    with pytest.raises(ValueError):
        top.sim.make_trade(SHOP_B, presale="HALF_PAID")
    with pytest.raises(KeyError):
        top.sim.pay(1234)
    added = (await top.client.post("/_sim/orders", json={"shop": SHOP_B, "n": 1, "presale": True})).json()
    presale = int(added["tids"][0])
    assert top.sim.trade(presale)["step_trade_status"] == "FRONT_PAID_FINAL_NOPAID"
    paid = await top.client.post(f"/_sim/trades/{tids[0]}/pay")
    assert paid.json() == {"tid": str(tids[0]), "status": "WAIT_SELLER_SEND_GOODS"}
    oid = lines_of(top.sim.trade(tids[0]))[0]["oid"]
    refunded = await top.client.post(f"/_sim/trades/{tids[0]}/refund_line", json={"oid": oid})
    assert refunded.status_code == 200 and lines_of(top.sim.trade(tids[0]))[0]["refund_status"] == "SUCCESS"
    assert (await top.client.post(f"/_sim/trades/{tids[1]}/refund_all")).status_code == 422  # unpaid
    assert (await top.client.post(f"/_sim/trades/{tids[1]}/explode")).status_code == 404
    assert (await top.client.post("/_sim/trades/1234/pay")).status_code == 404


# --------------------------------------------------------------------------- masked receivers (OAID)

DECRYPT = "taobao.top.oaid.decrypt"
MASKABLE = ("receiver_name", "receiver_mobile", "receiver_phone", "receiver_address")


@pytest.fixture
async def masked() -> AsyncIterator[Top]:
    sim = make_sim(mask_receivers=True, malformed_per_shop=0, oaid_denied_sessions={SESSION_B})
    async with await client_for(sim) as client:
        yield Top(sim, client)


async def fullinfo(top: Top, tid: int, fields: str = ALL_FIELDS + ",oaid", **business: Any) -> dict[str, Any]:
    body = await top.call(FULLINFO, {"fields": fields, "tid": tid, **business})
    return body.get("trade_fullinfo_get_response", {}).get("trade") or body


async def decrypt(top: Top, *queries: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return await top.call(DECRYPT, {"query_list": json.dumps(list(queries), ensure_ascii=False)}, **kwargs)


async def test_receivers_are_clear_and_without_oaid_by_default(top: Top) -> None:
    tid = top.sim.orders(SHOP_A)[0]["tid"]
    trade = await fullinfo(top, tid)
    assert "oaid" not in trade and "*" not in trade["receiver_name"] + trade["receiver_mobile"]
    assert top.sim.clear_receiver(tid)["receiver_mobile"] == trade["receiver_mobile"]
    assert top.sim.oaid_of(tid) is None


async def test_masked_trade_shows_masked_receiver_and_oaid(masked: Top) -> None:
    tid = masked.sim.orders(SHOP_A)[0]["tid"]
    real = masked.sim.clear_receiver(tid)
    trade = await fullinfo(masked, tid)
    assert trade["receiver_name"] == real["receiver_name"][0] + "**"
    assert trade["receiver_mobile"] == real["receiver_mobile"][:3] + "****" + real["receiver_mobile"][-4:]
    assert trade["receiver_address"] == real["receiver_address"][:3] + "***"
    assert (trade["receiver_state"], trade["receiver_city"], trade["receiver_zip"]) == (
        real["receiver_state"], real["receiver_city"], real["receiver_zip"])  # region stays clear
    assert trade["oaid"] == masked.sim.oaid_of(tid, APP_KEY) and 0 < len(trade["oaid"]) <= 128
    assert "oaid" not in await fullinfo(masked, tid, "tid,receiver_name")  # only when asked for in fields
    assert masked.sim.oaid_of(tid, "another-app") != trade["oaid"]  # "若应用(appkey)不同, 则oaid不同"
    for t in masked.sim.orders(SHOP_A):  # the simulator's own copies are what TOP shows: masked
        assert all("*" in t[k] for k in MASKABLE if t.get(k))


async def test_decrypt_gives_the_real_receiver(masked: Top) -> None:
    tid = next(t["tid"] for t in masked.sim.orders(SHOP_A) if t.get("receiver_phone"))
    real = masked.sim.clear_receiver(tid)
    oaid = (await fullinfo(masked, tid))["oaid"]
    body = await decrypt(masked, {"oaid": oaid, "tid": str(tid), "scene": "1004"})
    (receiver,) = body["top_oaid_decrypt_response"]["receiver_list"]["receiver"]
    assert receiver == {
        "tid": str(tid), "oaid": oaid, "matched": True, "privacy_protection": False,
        "name": real["receiver_name"], "mobile": real["receiver_mobile"], "phone": real["receiver_phone"],
        "address_detail": real["receiver_address"], "state": real["receiver_state"], "city": real["receiver_city"],
        "district": real["receiver_district"], "town": real["receiver_town"], "country": "中国"}
    care = await decrypt(masked, {"oaid": oaid, "tid": str(tid), "scene": "2002"})
    (phone_only,) = care["top_oaid_decrypt_response"]["receiver_list"]["receiver"]
    assert phone_only["mobile"] == real["receiver_mobile"] and "name" not in phone_only
    assert masked.sim.state()["oaid_decrypted"] == 2


async def test_decrypt_checks_the_signature(masked: Top) -> None:
    tid = masked.sim.orders(SHOP_A)[0]["tid"]
    query = {"oaid": masked.sim.oaid_of(tid), "tid": str(tid)}
    refused = error(await decrypt(masked, query, secret="not-the-secret"))
    assert refused["code"] == 25 and masked.sim.state()["oaid_decrypted"] == 0


async def test_decrypt_refuses_unknown_pairs_and_bad_queries(masked: Top) -> None:
    a, b = (t["tid"] for t in masked.sim.orders(SHOP_A)[:2])
    oaid_a = masked.sim.oaid_of(a)
    for query in ({"oaid": oaid_a, "tid": str(b)}, {"oaid": "nope", "tid": str(a)},
                  {"oaid": masked.sim.oaid_of(a, "another-app"), "tid": str(a)},
                  {"oaid": oaid_a, "tid": "1234567890123456789"}):
        refused = error(await decrypt(masked, query))
        assert (refused["code"], refused["sub_code"]) == (15, "isv.invalid-parameter")
    assert error(await decrypt(masked, {"tid": str(a)}))["code"] == 40
    assert error(await decrypt(masked, {"oaid": oaid_a, "tid": str(a), "scene": "9999"}))["code"] == 41
    assert error(await decrypt(masked, {"oaid": "x" * 129, "tid": str(a)}))["code"] == 41
    assert error(await decrypt(masked, *[{"oaid": oaid_a, "tid": str(a)}] * 21))["code"] == 41
    assert error(await masked.call(DECRYPT, {"query_list": "not json"}))["code"] == 41
    assert error(await masked.call(DECRYPT, {}))["code"] == 40


async def test_decrypt_refused_for_a_session_without_permission(masked: Top) -> None:
    tid = masked.sim.orders(SHOP_B)[0]["tid"]
    refused = error(await decrypt(masked, {"oaid": masked.sim.oaid_of(tid), "tid": str(tid)}, session=SESSION_B))
    assert (refused["code"], refused["msg"], refused["sub_code"]) == (
        11, "Insufficient isv permissions", "isv.permission-api-package-limit")
    assert masked.sim.state()["oaid_decrypt_refused"] == 1


async def test_changed_address_gives_a_new_oaid_and_the_old_one_is_not_matched(masked: Top) -> None:
    tid = masked.sim.make_trade(SHOP_A)
    before = masked.sim.clear_receiver(tid)
    old = masked.sim.oaid_of(tid)
    masked.sim.change_address(tid, address="文一西路 969 号 3 幢")
    new = (await fullinfo(masked, tid))["oaid"]
    assert new != old and masked.sim.trade(tid)["receiver_address"] == "文一西***"
    stale = (await decrypt(masked, {"oaid": old, "tid": str(tid)}))["top_oaid_decrypt_response"]
    assert stale["receiver_list"]["receiver"][0]["matched"] is False
    assert stale["receiver_list"]["receiver"][0]["address_detail"] == before["receiver_address"]
    fresh = (await decrypt(masked, {"oaid": new, "tid": str(tid)}))["top_oaid_decrypt_response"]
    assert fresh["receiver_list"]["receiver"][0]["address_detail"] == "文一西路 969 号 3 幢"
    assert fresh["receiver_list"]["receiver"][0]["matched"] is True


async def test_no_oaid_without_an_address_and_include_oaid(masked: Top) -> None:
    tid = masked.sim.make_trade(SHOP_A, defect="empty_address")
    assert masked.sim.clear_receiver(tid)["receiver_address"] == ""
    assert "oaid" not in await fullinfo(masked, tid)  # "4字段返回值都都不能为空，否则生成不了oaid"
    missing = error(await fullinfo(masked, tid, include_oaid="true"))
    assert missing["sub_code"] == "isv.oaid-field-miss"
    spoiled = masked.sim.make_trade(SHOP_A, defect="invalid_mobile")
    assert "*" in masked.sim.trade(spoiled)["receiver_mobile"]  # the defect is hidden behind the mask
    assert "*" not in masked.sim.clear_receiver(spoiled)["receiver_mobile"]


async def test_contract_masked_pull_map_and_shippable_receiver() -> None:
    """The real connector against the simulator with masking on: pull → map (protected) →
    shippable_receiver → the clear values are the simulator's real receiver."""
    sim = make_sim(mask_receivers=True, malformed_per_shop=0, orders_per_shop=12, now=datetime.now(UTC),
                   spread_hours=1)
    conn = TaobaoConnector.from_config("tb-masked", {"base_url": "http://top.test/router/rest", "app_key": APP_KEY,
                                                     "session": SESSION_A, "page_size": 5},
                                       {"app_secret": SECRET})
    assert isinstance(conn, TaobaoConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    until = sim.now()
    records = [r async for page in conn.pull_orders(until - timedelta(hours=2), until) for r in page]
    assert {r.external_id for r in records} == {str(t["tid"]) for t in sim.orders(SHOP_A)}
    spec = load_spec("taobao_order")
    for record in records:
        result = spec.apply(record.payload, lookups=DictLookups({}), context={"shop": conn.shop_of(record.payload)})
        assert result.ok, result.errors
        order = result.value
        real = sim.clear_receiver(record.external_id)
        assert order.receiver.protected and order.receiver.name == real["receiver_name"][0] + "**"
        assert order.receiver.mobile != real["receiver_mobile"]
        assert not [p for p in validate_order(order) if p.field.startswith("receiver")]
        clear = await conn.shippable_receiver(record.payload)
        expected = {"name": real["receiver_name"], "mobile": real["receiver_mobile"],
                    "street": real["receiver_address"], "province": real["receiver_state"],
                    "city": real["receiver_city"], "district": real["receiver_district"],
                    "town": real["receiver_town"]}
        if real.get("receiver_phone"):
            expected["phone"] = real["receiver_phone"]
        assert clear == expected
    assert sim.state()["oaid_decrypted"] == len(records)
    await conn.aclose()
