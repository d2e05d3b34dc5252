"""JD (JOS) connector against a respx-mocked router.

The fake router recomputes every signature with hashlib from JD's documented rule ("开放平台-调用API",
open.healthjd.com: sort every parameter by name, concatenate names and values, put the appSecret on
both ends, MD5, upper case; the same as ``sign()`` in JD's Python SDK ``jd/api/base.py`` and
``DefaultJdClient.buildUrl`` + ``Md5SignImpl`` in the Java SDK), never with the connector's helper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from canonical import Shipment
from connectors.errors import AuthError, ConfigurationError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from connectors.jd import JdConnector, classify_error, format_jos_time, jos_sign, param_json, waybills
from connectors.jd.signing import sign_base_string

ROUTER = "http://jos.test/routerjson"
SECRET = "s3cr3t-app-secret-0042"
TOKEN = "d1f0e2b3-access-token-77"
APP_KEY = "APPKEY1234"


def doc_sign(params: dict[str, str], app_secret: str) -> str:
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((app_secret + base + app_secret).encode("utf-8")).hexdigest().upper()


# --- signing known answers ---------------------------------------------------------------------

def test_sign_known_answer_of_the_documented_rule():
    """JOS publishes the rule, not a worked value: the page's own example order of names
    ("排序为360buy_param_json,access_token,app_key,method,timestamp,v") with our values. The
    expected base string is written out by hand from the rule; the MD5 of
    TESTSECRET + base + TESTSECRET was computed once with hashlib and pinned."""
    params = {
        "method": "jingdong.pop.order.enSearch", "access_token": "TESTTOKEN", "app_key": "TESTAPPKEY",
        "timestamp": "2019-05-01 00:00:00", "v": "2.0",
        "360buy_param_json": '{"order_state":"WAIT_SELLER_STOCK_OUT","page":"1","page_size":"10"}',
    }
    assert sign_base_string(params) == (
        '360buy_param_json{"order_state":"WAIT_SELLER_STOCK_OUT","page":"1","page_size":"10"}'
        "access_tokenTESTTOKENapp_keyTESTAPPKEYmethodjingdong.pop.order.enSearch"
        "timestamp2019-05-01 00:00:00v2.0")
    assert jos_sign(params, "TESTSECRET") == "AF4960E11E0B837A5AD3398D9F202B56"
    assert jos_sign(params | {"sign": "ignored"}, "TESTSECRET") == "AF4960E11E0B837A5AD3398D9F202B56"


def test_sign_known_answer_without_token_and_empty_values_left_out():
    params = {"method": "jingdong.pop.order.enGet", "app_key": "k1", "timestamp": "2026-11-11 00:00:00",
              "v": "2.0", "format": "json", "access_token": ""}
    assert jos_sign(params, "s3cr3t") == "A31469703EA29BBBE6D860574AA2F0DD"


def test_param_json_is_compact_sorted_utf8():
    assert param_json({"page": "1", "end_date": "2026-11-11 00:00:00", "x": "京东"}) == (
        '{"end_date":"2026-11-11 00:00:00","page":"1","x":"京东"}')


def test_times_are_gmt8():
    assert format_jos_time(datetime(2026, 11, 10, 16, 0, tzinfo=UTC)) == "2026-11-11 00:00:00"
    with pytest.raises(ValueError):
        format_jos_time(datetime(2026, 11, 10, 16, 0))


# --- a fake router -------------------------------------------------------------------------------

class FakeJos:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = dict(parse_qsl(request.content.decode()))
        params = query | body
        assert set(query) == {"method", "app_key", "access_token", "timestamp", "format", "v", "sign"}
        assert set(body) == {"360buy_param_json"}
        assert params["sign"] == doc_sign(params, SECRET)
        assert params["app_key"] == APP_KEY and params["access_token"] == TOKEN and params["v"] == "2.0"
        stamp = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)
        assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)
        business = json.loads(params["360buy_param_json"])
        self.calls.append((params["method"], query, business))
        answer = self.handlers[params["method"]](business)
        if isinstance(answer, httpx.Response):
            return answer
        if "error_response" in answer:
            return httpx.Response(200, json=answer)
        return httpx.Response(200, json={params["method"].replace(".", "_") + "_responce": {"code": "0", **answer}})


@pytest.fixture
def jos():
    fake = FakeJos()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(ROUTER).mock(side_effect=fake)
        yield fake


def make(**overrides: Any) -> JdConnector:
    settings = {"base_url": ROUTER, "app_key": APP_KEY} | overrides
    conn = JdConnector.from_config("jd-shop", settings, {"app_secret": SECRET, "access_token": TOKEN})
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.01)
    return conn


def gmt8(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)


def order(oid: str, modified: str, state: str = "WAIT_SELLER_STOCK_OUT", **extra: Any) -> dict[str, Any]:
    return {"orderId": oid, "venderId": "10086", "orderState": state, "modified": modified, **extra}


def search_answer(orders: list[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
    return {"searchorderinfo_result": {"apiResult": {"success": True}, "orderTotal": len(orders) if total is None
                                       else total, "orderInfoList": orders}}


# --- orders --------------------------------------------------------------------------------------

async def test_get_order_wire_format(jos):
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"orderDetailInfo": {
        "apiResult": {"success": True}, "orderInfo": order("300123456789", "2026-11-11 00:01:12")}}
    record = await make().get_order("300123456789")
    assert record.external_id == "300123456789" and record.modified_at == gmt8("2026-11-11 00:01:12")
    method, _, business = jos.calls[0]
    assert method == "jingdong.pop.order.enGet" and business["order_id"] == "300123456789"
    assert "consigneeInfo" in business["optional_fields"] and "WAIT_SELLER_STOCK_OUT" in business["order_state"]


async def test_get_order_not_found_and_bad_id(jos):
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"orderDetailInfo": {"apiResult": {
        "success": False, "chineseErrCode": "订单不存在", "englishErrCode": "order not exist", "numberCode": 100}}}
    with pytest.raises(NotFoundError):
        await make().get_order("1")
    with pytest.raises(InvalidRequestError):
        await make().get_order("abc")


async def test_windows_are_split_in_gmt8_and_end_one_second_early(jos):
    jos.handlers["jingdong.pop.order.enSearch"] = lambda b: search_answer([])
    since = gmt8("2026-11-11 00:00:00")
    [page async for page in make().pull_orders(since, since + timedelta(hours=60))]
    windows = [(b["start_date"], b["end_date"]) for _, _, b in jos.calls]
    assert windows == [("2026-11-11 00:00:00", "2026-11-11 23:59:59"), ("2026-11-12 00:00:00", "2026-11-12 23:59:59"),
                       ("2026-11-13 00:00:00", "2026-11-13 11:59:59")]
    assert all(b["dateType"] == 0 and b["sortType"] == 1 for _, _, b in jos.calls)


async def test_pages_from_last_to_first_each_handed_over_once(jos):
    """Five orders, page size 2, newest first: page 1 learns the total, then 3, 2, 1."""
    rows = [order(str(300 + i), f"2026-11-11 00:0{9 - i}:00") for i in range(5)]  # newest first

    def search(b: dict[str, Any]) -> dict[str, Any]:
        page, size = int(b["page"]), int(b["page_size"])
        return search_answer(rows[(page - 1) * size:page * size], total=5)

    jos.handlers["jingdong.pop.order.enSearch"] = search
    since = gmt8("2026-11-11 00:00:00")
    conn = make(page_size=2)
    pages = [[r.external_id for r in page] async for page in conn.pull_orders(since, since + timedelta(hours=1))]
    assert [int(b["page"]) for _, _, b in jos.calls] == [1, 3, 2, 1]
    assert pages == [["304"], ["303", "302"], ["301", "300"]]


async def test_order_modified_during_the_walk_is_a_repeat_not_a_gap(jos):
    """While we read page 3, order 301 (page 1) is modified and leaves the window: pages shift."""
    rows = [order(str(300 + i), f"2026-11-11 00:0{9 - i}:00") for i in range(5)]
    state = {"moved": False}

    def search(b: dict[str, Any]) -> dict[str, Any]:
        page, size = int(b["page"]), int(b["page_size"])
        current = [r for r in rows if not (state["moved"] and r["orderId"] == "301")]
        if page == 3:
            state["moved"] = True
        return search_answer(current[(page - 1) * size:page * size], total=len(current))

    jos.handlers["jingdong.pop.order.enSearch"] = search
    since = gmt8("2026-11-11 00:00:00")
    seen = [r.external_id async for page in make(page_size=2).pull_orders(since, since + timedelta(hours=1))
            for r in page]
    assert set(seen) >= {"300", "302", "303", "304"} and len(seen) == len(set(seen))


async def test_list_order_ids_asks_ids_only(jos):
    jos.handlers["jingdong.pop.order.enSearch"] = lambda b: search_answer(
        [order("2", "2026-11-11 00:02:00"), order("1", "2026-11-11 00:01:00")])
    since = gmt8("2026-11-11 00:00:00")
    ids = await make().list_order_ids(since, since + timedelta(hours=1))
    assert [i for i, _ in ids] == ["1", "2"] and jos.calls[0][2]["optional_fields"] == "orderId,modified"


def test_ingest_defaults_lag_behind_jd_indexing():
    defaults = JdConnector.ingest_defaults
    assert defaults.lag >= timedelta(seconds=60) and defaults.window <= timedelta(days=30)


# --- errors and throttling -----------------------------------------------------------------------

async def test_app_call_limited_is_throttled_without_sleeping(jos):
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"error_response": {
        "code": "2", "zh_desc": "限制时间内调用失败次数", "en_desc": "App Call Limited"}}
    conn = make()
    started = datetime.now(UTC)
    with pytest.raises(ThrottledError) as info:
        await conn.get_order("1")
    assert info.value.retry_after == 60 and datetime.now(UTC) - started < timedelta(seconds=2)
    assert conn.api.limiter.ban_remaining() > 30
    with pytest.raises(ThrottledError):  # the shared limiter fails the next call fast
        await conn.get_order("2")
    assert len(jos.calls) == 1


async def test_invalid_token_is_auth_and_not_retried(jos):
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"error_response": {
        "code": "19", "zh_desc": "无效access_token", "en_desc": "Invalid access_token"}}
    with pytest.raises(AuthError):
        await make().get_order("1")
    assert len(jos.calls) == 1


async def test_http_503_is_retried(jos):
    answers = iter([httpx.Response(503), {"orderDetailInfo": {"apiResult": {"success": True},
                                                              "orderInfo": order("1", "2026-11-11 00:00:00")}}])
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: next(answers)
    assert (await make().get_order("1")).external_id == "1"


@pytest.mark.parametrize(("error", "kind"), [
    ({"code": "2", "en_desc": "App Call Limited"}, ThrottledError),
    ({"code": "12", "zh_desc": "无效签名", "en_desc": "Invalid Signature"}, AuthError),
    ({"code": "19", "en_desc": "Invalid access_token"}, AuthError),
    ({"code": "21", "zh_desc": "key=0 信息无效", "en_desc": "Invalid app_key"}, AuthError),
    ({"code": "8", "en_desc": "Invalid Timestamp"}, InvalidRequestError),
    ({"code": "15", "en_desc": "Invalid Method"}, InvalidRequestError),
])
def test_classification_table(error, kind):
    assert type(classify_error(error, method="m")) is kind


# --- shipments -----------------------------------------------------------------------------------

def shipment(carrier: str = "SF", tracking: str = "SF1234567890") -> Shipment:
    return Shipment(order_key="jd:s:1", carrier_code=carrier, tracking_number=tracking, shipped_at=datetime.now(UTC))


async def test_shipment_sends_jd_logistics_id(jos):
    jos.handlers["jingdong.pop.order.shipment"] = lambda b: {"sopjosshipment_result": {"success": True}}
    result = await make().push_shipment("300123456789", shipment())
    assert result.taken is True
    assert jos.calls[0][2] == {"orderId": "300123456789", "logiCoprId": "467", "logiNo": "SF1234567890"}


async def test_carriers_setting_overrides_the_table_and_unknown_carrier_is_refused(jos):
    jos.handlers["jingdong.pop.order.shipment"] = lambda b: {"sopjosshipment_result": {"success": True}}
    await make(carriers={"sf": "9999", "JT": "5555"}).push_shipment("1", shipment("JT", "JT0001234567"))
    assert jos.calls[0][2]["logiCoprId"] == "5555"
    with pytest.raises(InvalidRequestError, match="carriers"):
        await make().push_shipment("1", shipment("NOPE"))


async def test_repeat_shipment_reports_what_jd_shows(jos):
    jos.handlers["jingdong.pop.order.shipment"] = lambda b: {"sopjosshipment_result": {
        "success": False, "chineseErrCode": "订单状态为等待确认收货，不能出库发货"}}
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"orderDetailInfo": {"apiResult": {"success": True},
        "orderInfo": order("1", "2026-11-11 00:00:00", "WAIT_GOODS_RECEIVE_CONFIRM",
                           waybill="SF1234567890,SF1234567891|7350000001", logisticsId="467|1499")}}
    result = await make().push_shipment("1", shipment())
    assert result.taken is False and not result.conflicts_with("SF1234567890")
    assert result.tracking_on_platform == ["7350000001", "SF1234567890", "SF1234567891"]
    assert jos.calls[1][2]["optional_fields"].startswith("orderId,orderState,waybill")


async def test_split_package_ships_the_order_once_and_the_next_one_is_not_taken(jos):
    shipped: dict[str, str] = {}

    def ship(b: dict[str, Any]) -> dict[str, Any]:
        if shipped:
            return {"sopjosshipment_result": {"success": False, "chineseErrCode": "不能出库发货"}}
        shipped["waybill"] = b["logiNo"]
        return {"sopjosshipment_result": {"success": True}}

    jos.handlers["jingdong.pop.order.shipment"] = ship
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"orderDetailInfo": {"apiResult": {"success": True},
        "orderInfo": order("1", "2026-11-11 00:00:00", "WAIT_GOODS_RECEIVE_CONFIRM", waybill=shipped["waybill"])}}
    first = await make().push_shipment("1", shipment(tracking="SF0000000001"), line_ids=["100012043978"])
    second = await make().push_shipment("1", shipment(tracking="SF0000000002"), line_ids=["100012043999"])
    assert first.taken and "line" not in json.dumps(jos.calls[0][2])
    assert not second.taken and second.conflicts_with("SF0000000002")  # JD keeps one ship-out per order


async def test_refused_shipment_of_an_order_not_shipped_raises(jos):
    jos.handlers["jingdong.pop.order.shipment"] = lambda b: {"sopjosshipment_result": {
        "success": False, "chineseErrCode": "订单状态为已锁定，不能出库发货"}}
    jos.handlers["jingdong.pop.order.enGet"] = lambda b: {"orderDetailInfo": {"apiResult": {"success": True},
        "orderInfo": order("1", "2026-11-11 00:00:00", "LOCKED")}}
    with pytest.raises(InvalidRequestError, match="LOCKED"):
        await make().push_shipment("1", shipment())


def test_waybills_split_on_pipes_and_commas():
    assert waybills("1200458628372,111232|468778814888,323232323") == [
        "111232", "1200458628372", "323232323", "468778814888"]
    assert waybills("") == []


# --- TDE decryption ------------------------------------------------------------------------------

KEY = bytes(range(16))
KEY_ID = bytes(range(100, 116))
VOUCHER_KEY = bytes(range(32))


def tde_encrypt(text: str) -> str:
    """The TDE layout as JD's SDK writes it (sdk/secret/client.go Encrypt): 0x00 0x04, key id, IV, AES-CBC."""
    data = text.encode()
    pad = 16 - len(data) % 16
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor()
    return base64.b64encode(b"\x00\x04" + KEY_ID + iv + enc.update(data + bytes([pad]) * pad) + enc.finalize()).decode()


@pytest.fixture
def keys(jos):
    voucher = {"sig": "x", "data": {"id": "v-1", "key": base64.b64encode(VOUCHER_KEY).decode(), "service": "s",
                                    "act": "D", "effective": 0, "expired": 4102444800000, "stype": 1}}
    jos.handlers["jingdong.jos.voucher.info.get"] = lambda b: {"response": {"errorCode": "0", "data": {
        "voucher": base64.urlsafe_b64encode(json.dumps(voucher).encode()).decode()}}}

    def master(b: dict[str, Any]) -> dict[str, Any]:
        message = f'{{"sdk_ver":{b["sdk_ver"]},"ts":{b["ts"]},"tid":"{b["tid"]}"}}'.encode()
        expected = base64.b64encode(hmac.new(VOUCHER_KEY, message, hashlib.sha256).digest()).decode()
        if b["tid"] != "v-1" or b["sig"] != expected:
            return {"response": {"status_code": 403, "errorMsg": "sig"}}
        return {"response": {"status_code": 0, "service_key_list": [{"service": "s", "keys": [
            {"id": base64.b64encode(KEY_ID).decode(), "key_string": base64.b64encode(KEY).decode(), "version": 0}]}]}}

    jos.handlers["jingdong.jos.master.key.get"] = master
    return jos


async def test_shippable_receiver_decrypts_with_the_merchant_keys(keys):
    payload = {"orderId": "1", "consigneeInfo": {
        "fullname": tde_encrypt("张三"), "mobile": tde_encrypt("13800138000"), "telephone": "",
        "fullAddress": tde_encrypt("北京北京市大兴区亦庄镇科创十一街18号"), "province": "北京", "city": "北京市",
        "county": "大兴区", "town": "亦庄镇"}}
    conn = make()
    clear = await conn.shippable_receiver(payload)
    assert clear == {"name": "张三", "mobile": "13800138000", "phone": "",
                     "street": "北京北京市大兴区亦庄镇科创十一街18号",
                     "province": "北京", "city": "北京市", "district": "大兴区", "town": "亦庄镇"}
    await conn.shippable_receiver(payload)
    assert [m for m, _, _ in keys.calls] == ["jingdong.jos.voucher.info.get", "jingdong.jos.master.key.get"]


async def test_a_ciphertext_of_an_unknown_key_is_refused(keys):
    bad = base64.b64encode(b"\x00\x04" + bytes(16) + bytes(32)).decode()
    with pytest.raises(InvalidRequestError, match="decrypt"):
        await make().shippable_receiver({"consigneeInfo": {"fullname": bad}})


# --- configuration -------------------------------------------------------------------------------

def test_access_token_is_a_secret_and_required():
    with pytest.raises(ConfigurationError):
        JdConnector.from_config("x", {"base_url": ROUTER, "app_key": "k", "access_token": "t"}, {"app_secret": "s"})
    conn = make()
    assert conn.describe()["secrets"] == {"app_secret": "********", "access_token": "********"}
    assert TOKEN not in json.dumps(conn.describe()) and conn.channel == "jd"


def test_connector_has_no_push_capability_and_decrypts():
    assert JdConnector.capabilities == frozenset({"orders", "shipments", "receivers", "stock"})
