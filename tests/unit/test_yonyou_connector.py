"""Yonyou YonSuite connector against a respx-mocked open platform (token host + business gateway)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest
import respx

from canonical import Voucher, VoucherLine
from connectors import connector_class
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    SessionExpiredError,
    ThrottledError,
)
from connectors.http import RetryPolicy
from connectors.yonyou import YonyouConnector
from connectors.yonyou.signing import sign, string_to_sign, token_query

GATEWAY = "https://c2.example.com/iuap-api-gateway"
AUTH = "https://c2.example.com/iuap-api-auth"
TOKEN_URL = AUTH + "/open-auth/selfAppAuth/base/v1/getAccessToken"
APP_KEY, APP_SECRET = "41832a3d2df94989b500da6a22268747", "app-Secret-0123456789"
NOW_MS = 1568098531823


def expected_signature(app_key: str, timestamp: int, secret: str) -> str:
    """Written from the documentation, independently of connectors.yonyou.signing."""
    plain = f"appKey{app_key}timestamp{timestamp}"
    return base64.b64encode(hmac.new(secret.encode(), plain.encode(), hashlib.sha256).digest()).decode()


def make(**settings: Any) -> YonyouConnector:
    base = {"base_url": GATEWAY, "auth_url": AUTH, "app_key": APP_KEY, "accbook_code": "book001",
            "accbook_id": "BOOK-ID", "voucher_type_code": "01", "maker_mobile": "13800000000"}
    conn = YonyouConnector.from_config("yy", base | settings, {"app_secret": APP_SECRET})
    assert isinstance(conn, YonyouConnector)
    conn.retry = RetryPolicy(attempts=1)
    conn.now_ms = lambda: NOW_MS
    return conn


def token_answer(token: str = "tok-1", expire: int = 7200) -> httpx.Response:
    return httpx.Response(200, json={"code": "00000", "message": "成功！", "data": {"access_token": token,
                                                                                    "expire": expire}})


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"code": "200", "message": "操作成功", "data": data})


def batch(passed: int = 1, failed: int = 0, messages: list[str] | None = None) -> httpx.Response:
    return ok({"count": passed + failed, "sucessCount": passed, "failCount": failed, "messages": messages or [],
               "infos": [{"id": 1}] * passed, "failInfos": []})


def page(*rows: dict[str, Any]) -> httpx.Response:
    return ok({"pageIndex": 1, "pageSize": 20, "recordCount": len(rows), "recordList": list(rows)})


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


def gw(path: str) -> str:
    return GATEWAY + path


# --- signing -------------------------------------------------------------------------------------


def test_string_to_sign_is_the_documented_example() -> None:
    params = {"timestamp": "1568098531823", "appKey": "41832a3d2df94989b500da6a22268747"}
    assert string_to_sign(params) == "appKey41832a3d2df94989b500da6a22268747timestamp1568098531823"
    assert string_to_sign(params | {"signature": "x"}) == string_to_sign(params)


def test_signature_is_base64_hmac_sha256_url_encoded_once() -> None:
    expected = expected_signature(APP_KEY, NOW_MS, APP_SECRET)
    assert sign({"appKey": APP_KEY, "timestamp": str(NOW_MS)}, APP_SECRET) == expected
    query = token_query(APP_KEY, NOW_MS, APP_SECRET)
    assert query == f"appKey={APP_KEY}&timestamp={NOW_MS}&signature={quote(expected, safe='')}"
    assert parse_qs(query)["signature"] == [expected]  # one decoding gives the base64 back
    assert "%25" not in query  # not encoded twice


# --- token ---------------------------------------------------------------------------------------


async def test_token_request_is_the_documented_get_and_is_cached() -> None:
    conn = make()
    with respx.mock(assert_all_called=True) as mock:
        token = mock.get(TOKEN_URL).mock(return_value=token_answer("tok+/=1"))
        listing = mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=page())
        await conn.test()
        await conn.test()
    assert token.call_count == 1 and listing.call_count == 2
    request = token.calls[0].request
    assert request.method == "GET"
    query = parse_qs(request.url.query.decode())
    assert query == {"appKey": [APP_KEY], "timestamp": [str(NOW_MS)],
                     "signature": [expected_signature(APP_KEY, NOW_MS, APP_SECRET)]}
    business = listing.calls[0].request
    assert business.url.params["access_token"] == "tok+/=1"  # the token travels in the query, encoded
    assert b"tok%2B%2F%3D1" in business.url.query
    assert body_of(business) == {"pageIndex": 1, "pageSize": 1, "isSum": True}


async def test_token_is_fetched_again_when_its_documented_expiry_passes() -> None:
    conn = make(token_margin_s=60)
    now = [1000.0]
    conn.clock = lambda: now[0]
    with respx.mock(assert_all_called=False) as mock:
        token = mock.get(TOKEN_URL).mock(side_effect=[token_answer("t1", expire=600), token_answer("t2")])
        listing = mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=page())
        await conn.test()
        now[0] += 539  # expire 600 minus margin min(60, 600/10)
        await conn.test()
        assert token.call_count == 1
        now[0] += 2
        await conn.test()
    assert token.call_count == 2
    assert [c.request.url.params["access_token"] for c in listing.calls] == ["t1", "t1", "t2"]


async def test_invalid_token_answer_refetches_once_and_resends() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        token = mock.get(TOKEN_URL).mock(side_effect=[token_answer("old"), token_answer("new")])
        listing = mock.post(gw("/yonbip/scm/salesout/list")).mock(side_effect=[
            httpx.Response(200, json={"code": "310036", "message": "非法token"}), page()])
        assert "token OK" in await conn.test()
    assert token.call_count == 2
    assert [c.request.url.params["access_token"] for c in listing.calls] == ["old", "new"]
    assert conn.token_fetches == 2


async def test_a_fresh_token_refused_again_is_a_retryable_session_error() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(side_effect=[token_answer("a"), token_answer("b")])
        mock.post(gw("/yonbip/scm/salesout/list")).mock(
            return_value=httpx.Response(200, json={"code": "310036", "message": "非法token"}))
        with pytest.raises(SessionExpiredError) as caught:
            await conn.test()
    assert caught.value.retryable


async def test_text_plain_bad_token_answer_is_recognised() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(side_effect=[token_answer("a"), token_answer("b")])
        mock.post(gw("/yonbip/scm/salesout/list")).mock(side_effect=[
            httpx.Response(200, text="非法token", headers={"content-type": "text/plain"}), page()])
        await conn.test()
    assert conn.token_fetches == 2


async def test_refused_token_request_is_auth_error_without_the_secret() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=httpx.Response(200, json={
            "code": "10018", "message": f"应用不存在或appKey已停用 secret={APP_SECRET}"}))
        with pytest.raises(AuthError) as caught:
            await conn.test()
    assert caught.value.code == "10018" and not caught.value.retryable
    assert APP_SECRET not in str(caught.value)


async def test_old_token_path_can_be_configured() -> None:
    conn = make(token_path="/open-auth/selfAppAuth/getAccessToken")
    with respx.mock(assert_all_called=False) as mock:
        token = mock.get(AUTH + "/open-auth/selfAppAuth/getAccessToken").mock(return_value=token_answer())
        mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=page())
        await conn.test()
    assert token.called


# --- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "answer", "error"), [
    (200, {"code": "310046", "message": "API调用频率超过限制"}, ThrottledError),
    (404, {"code": "310404", "message": "API不存在"}, ConfigurationError),
    (200, {"code": "999", "message": "服务端逻辑异常"}, InvalidRequestError),
    (200, {"code": "1002", "message": "数据不存在"}, NotFoundError),
    (403, None, AuthError),
])
async def test_gateway_answers_map_to_the_taxonomy(status: int, answer: Any, error: type[Exception]) -> None:
    conn = make()
    conn.retry = RetryPolicy(attempts=1, max_s=0.0)
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer("tok-secret-1"))
        response = httpx.Response(status, json=answer) if answer is not None else httpx.Response(status, text="no")
        mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=response)
        with pytest.raises(error):
            await conn.test()


async def test_error_messages_do_not_echo_the_token() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer("tok-secret-1"))
        mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=httpx.Response(200, json={
            "code": "999", "message": "bad call access_token=tok-secret-1"}))
        with pytest.raises(InvalidRequestError) as caught:
            await conn.test()
    assert "tok-secret-1" not in str(caught.value)


def test_settings_and_registration() -> None:
    assert connector_class("yonyou") is YonyouConnector
    assert YonyouConnector.title == "Yonyou YonSuite"
    assert YonyouConnector.capabilities == {"sales_documents", "sales_outbound", "vouchers"}
    with pytest.raises(ConfigurationError):
        YonyouConnector.from_config("yy", {"base_url": GATEWAY, "app_key": APP_KEY}, {})
    with pytest.raises(ConfigurationError):
        YonyouConnector.from_config("yy", {"base_url": "not a url", "app_key": APP_KEY}, {"app_secret": "s"})
    conn = make()
    assert conn.describe()["secrets"] == {"app_secret": "********"}


# --- sales outbound ------------------------------------------------------------------------------

ORDER_ROW = {"id": 777, "code": "SO-1", "status": 1}
ORDER_DETAIL = {"id": 777, "code": "SO-1", "status": 1, "orderDetails": [
    {"id": 7771, "productCode": "SKU-A", "skuCode": "SKU-A", "qty": 3, "totalOutStockQuantity": 1},
    {"id": 7772, "productCode": "SKU-B", "skuCode": "SKU-B-RED", "qty": 5},
    {"id": 7773, "productCode": "SKU-A", "skuCode": "SKU-A", "qty": 4}]}
SHIPPED = datetime(2024, 5, 20, 2, 30, tzinfo=UTC)


def outbound_routes(mock: respx.MockRouter, *, existing: list[Any] | None = None) -> dict[str, respx.Route]:
    return {
        "token": mock.get(TOKEN_URL).mock(return_value=token_answer()),
        "out_list": mock.post(gw("/yonbip/scm/salesout/list")).mock(side_effect=existing or [page()]),
        "so_list": mock.post(gw("/yonbip/sd/voucherorder/list")).mock(return_value=page(ORDER_ROW)),
        "so_detail": mock.get(gw("/yonbip/sd/voucherorder/detail")).mock(return_value=ok(ORDER_DETAIL)),
        "save": mock.post(gw("/yonbip/scm/salesout/mergeSourceData/save")).mock(
            return_value=ok({"count": 1, "sucessCount": 1, "failCount": 0, "messages": [],
                             "infos": [{"id": 9001, "code": "SO-1-OUT1"}], "failInfos": []})),
    }


async def test_outbound_is_made_from_the_sales_order_lines() -> None:
    conn = make(warehouse="WH01")
    with respx.mock(assert_all_called=False) as mock:
        routes = outbound_routes(mock)
        result = await conn.create_sales_outbound(
            "SO-1", "SO-1-OUT1", [{"sku": "SKU-A", "quantity": 4}, {"sku": "SKU-B", "quantity": 1}], SHIPPED)
    assert (result.external_id, result.number, result.created) == ("9001", "SO-1-OUT1", True)
    assert body_of(routes["out_list"].calls[0].request)["code"] == "SO-1-OUT1"
    assert body_of(routes["so_list"].calls[0].request)["code"] == "SO-1"
    assert routes["so_detail"].calls[0].request.url.params["id"] == "777"
    data = body_of(routes["save"].calls[0].request)["data"]
    assert len(data.pop("resubmitCheckKey")) == 32
    assert data == {
        "mergeSourceData": True, "code": "SO-1-OUT1", "vouchdate": "2024-05-20 10:30:00", "bustype": "A30001",
        "_status": "Insert", "warehouse": "WH01", "details": [
            {"_status": "Insert", "qty": 2, "sourceid": 777, "sourceautoid": 7771, "makeRuleCode": "orderTosalesout"},
            {"_status": "Insert", "qty": 2, "sourceid": 777, "sourceautoid": 7773, "makeRuleCode": "orderTosalesout"},
            {"_status": "Insert", "qty": 1, "sourceid": 777, "sourceautoid": 7772, "makeRuleCode": "orderTosalesout"},
        ]}


async def test_existing_outbound_code_is_not_saved_again() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        rows = page({"id": 55, "code": "SO-1-OUT1X"}, {"id": 56, "code": "SO-1-OUT1"})
        routes = outbound_routes(mock, existing=[rows])
        result = await conn.create_sales_outbound("SO-1", "SO-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    assert (result.external_id, result.created) == ("56", False)
    assert not routes["save"].called and not routes["so_list"].called


async def test_refused_save_then_found_is_a_repeat() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        routes = outbound_routes(mock, existing=[page(), page({"id": 57, "code": "SO-1-OUT1"})])
        routes["save"].mock(return_value=httpx.Response(200, json={"code": "10004", "message": "重复提交"}))
        result = await conn.create_sales_outbound("SO-1", "SO-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    assert (result.external_id, result.created) == ("57", False)


async def test_refused_save_not_found_raises_with_yonyou_message() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        routes = outbound_routes(mock, existing=[page(), page()])
        routes["save"].mock(return_value=ok({"count": 1, "sucessCount": 0, "failCount": 1,
                                             "messages": ["来源单据未审核"], "infos": [], "failInfos": []}))
        with pytest.raises(InvalidRequestError, match="来源单据未审核"):
            await conn.create_sales_outbound("SO-1", "SO-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)


async def test_unknown_sku_or_order_is_refused_before_saving() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        routes = outbound_routes(mock, existing=[page(), page()])
        with pytest.raises(InvalidRequestError, match="SKU-Z"):
            await conn.create_sales_outbound("SO-1", "SO-1-OUT1", [{"sku": "SKU-Z", "quantity": 1}], SHIPPED)
        routes["so_list"].mock(return_value=page())
        with pytest.raises(NotFoundError):
            await conn.create_sales_outbound("SO-9", "SO-9-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        assert not routes["save"].called


@pytest.mark.parametrize(("status", "timing", "outcome", "calls"), [
    (1, "1", "cancelled", ["batchunaudit"]),
    (3, "1", "cancelled", ["batchunsubmit"]),
    (0, "1", "already_cancelled", []),
    (1, "0", "refused", ["batchunaudit"]),
])
async def test_cancel_outbound(status: int, timing: str, outcome: str, calls: list[str]) -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=page({"id": 9001, "code": "OUT-1"}))
        mock.get(gw("/yonbip/scm/salesout/detail")).mock(return_value=ok({"id": 9001, "status": status,
                                                                          "impactStockTiming": timing}))
        unaudit = mock.post(gw("/yonbip/scm/salesout/batchunaudit")).mock(return_value=batch())
        unsubmit = mock.post(gw("/yonbip/scm/salesout/batchunsubmit")).mock(return_value=batch())
        result = await conn.cancel_sales_outbound("OUT-1", "order cancelled")
    assert result.outcome == outcome
    made = [name for name, route in (("batchunaudit", unaudit), ("batchunsubmit", unsubmit)) if route.called]
    assert made == calls
    if calls:
        route = unaudit if calls == ["batchunaudit"] else unsubmit
        assert body_of(route.calls[0].request) == {"data": [{"id": 9001}]}


async def test_cancel_outbound_not_found_and_refused_unaudit() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        listing = mock.post(gw("/yonbip/scm/salesout/list")).mock(return_value=page())
        assert (await conn.cancel_sales_outbound("OUT-1")).outcome == "not_found"
        listing.mock(return_value=page({"id": 9001, "code": "OUT-1"}))
        mock.get(gw("/yonbip/scm/salesout/detail")).mock(return_value=ok({"id": 9001, "status": 1,
                                                                          "impactStockTiming": "1"}))
        mock.post(gw("/yonbip/scm/salesout/batchunaudit")).mock(return_value=batch(0, 1, ["已生成下游发票"]))
        result = await conn.cancel_sales_outbound("OUT-1")
    assert result.outcome == "refused" and "已生成下游发票" in result.message


# --- sales orders --------------------------------------------------------------------------------

SO_DOC = {"salesOrgId": "org01", "transactionTypeId": "SO01", "vouchdate": "2024-05-20 00:00:00", "agentId": "C1",
          "settlementOrgId": "org01", "invoiceAgentId": "C1", "payMoney": 20, "orderPrices!currency": "CNY",
          "orderDetails": [{"productId": "SKU-A", "qty": 2, "oriSum": 20}]}


async def test_sales_order_is_saved_with_code_and_audited() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        listing = mock.post(gw("/yonbip/sd/voucherorder/list")).mock(return_value=page())
        save = mock.post(gw("/yonbip/sd/voucherorder/singleSave")).mock(return_value=ok({"id": 31, "code": "SO-1"}))
        audit = mock.post(gw("/yonbip/sd/voucherorder/batchaudit")).mock(return_value=batch())
        result = await conn.create_sales_document(SO_DOC, "SO-1")
    assert (result.external_id, result.number, result.created) == ("31", "SO-1", True)
    assert body_of(listing.calls[0].request) == {"pageIndex": 1, "pageSize": 20, "code": "SO-1", "isSum": True}
    data = body_of(save.calls[0].request)["data"]
    assert data["code"] == "SO-1" and data["_status"] == "Insert" and len(data["resubmitCheckKey"]) == 32
    assert data["orderDetails"] == [{"_status": "Insert", "productId": "SKU-A", "qty": 2, "oriSum": 20}]
    assert body_of(audit.calls[0].request) == {"data": [{"id": 31}]}
    assert "code" not in SO_DOC  # the caller's document is not changed


async def test_existing_sales_order_is_a_repeat() -> None:
    conn = make(audit_sales_orders=False)
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        mock.post(gw("/yonbip/sd/voucherorder/list")).mock(return_value=page({"id": 31, "code": "SO-1", "status": 0}))
        save = mock.post(gw("/yonbip/sd/voucherorder/singleSave"))
        result = await conn.create_sales_document(SO_DOC, "SO-1")
    assert (result.external_id, result.created) == ("31", False) and not save.called


async def test_cancel_audited_sales_order_unaudits_then_deletes() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        mock.post(gw("/yonbip/sd/voucherorder/list")).mock(return_value=page({"id": 31, "code": "SO-1"}))
        mock.get(gw("/yonbip/sd/voucherorder/detail")).mock(return_value=ok({"id": 31, "status": 1}))
        unaudit = mock.post(gw("/yonbip/sd/voucherorder/batchunaudit")).mock(return_value=batch())
        delete = mock.post(gw("/yonbip/sd/voucherorder/delete")).mock(return_value=batch())
        result = await conn.cancel_sales_document("SO-1")
    assert result.outcome == "cancelled" and "un-audited" in result.message
    assert body_of(unaudit.calls[0].request) == {"data": [{"id": 31}]}
    data = body_of(delete.calls[0].request)["data"]
    assert data["id"] == [31] and data["code"] == ["SO-1"]


async def test_cancel_sales_order_states() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        listing = mock.post(gw("/yonbip/sd/voucherorder/list")).mock(return_value=page())
        assert (await conn.cancel_sales_document("SO-1")).outcome == "not_found"
        listing.mock(return_value=page({"id": 31, "code": "SO-1"}))
        detail = mock.get(gw("/yonbip/sd/voucherorder/detail")).mock(
            return_value=ok({"id": 31, "status": 0, "nextStatus": "OPPOSE"}))
        assert (await conn.cancel_sales_document("SO-1")).outcome == "already_cancelled"
        detail.mock(return_value=ok({"id": 31, "status": 0}))
        mock.post(gw("/yonbip/sd/voucherorder/delete")).mock(return_value=batch(0, 1, ["存在下游单据，删除失败！"]))
        result = await conn.cancel_sales_document("SO-1")
    assert result.outcome == "refused" and "存在下游单据" in result.message


# --- vouchers ------------------------------------------------------------------------------------

VOUCHER = Voucher(number="TD-9-SHIP", date=date(2024, 5, 20), reference="tmall:9", narration="shipped",
                  lines=[VoucherLine(account="1122", debit=Decimal("113.50"), memo="receivable"),
                         VoucherLine(account="6001", credit=Decimal("113.50"))])


async def test_voucher_is_looked_up_then_saved_with_top_level_fields() -> None:
    conn = make()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        query = mock.post(gw("/yonbip/fi/ficloud/voucher/queryconditiondetail")).mock(
            return_value=httpx.Response(200, json={"totalcount": 0, "code": 200, "data": [], "success": True}))
        add = mock.post(gw("/yonbip/fi/ficloud/openapi/voucher/addVoucher")).mock(
            return_value=ok({"voucherId": "V-1", "voucherStatus": "01", "period": "2024-05", "billCode": 3}))
        result = await conn.post_voucher(VOUCHER)
    assert (result.external_id, result.number, result.created) == ("V-1", "TD-9-SHIP", True)
    lookup = body_of(query.calls[0].request)
    assert lookup["accbook"] == "BOOK-ID"
    assert {"field": "period", "part": "header", "value": "2024-05", "operator": "="} in lookup["conditions"]
    body = body_of(add.calls[0].request)
    assert "data" not in body
    assert body["businessId"] == "TD-9-SHIP" and body["accbookCode"] == "book001"
    assert body["voucherTypeCode"] == "01" and body["makerMobile"] == "13800000000"
    assert body["period"] == "2024-05" and body["makeTime"] == "2024-05-20"
    assert body["description"] == "TD-9-SHIP shipped"
    assert body["bodies"] == [
        {"description": "receivable", "accsubjectCode": "1122", "currencyCode": "CNY", "busidate": "2024-05-20",
         "debitOriginal": 113.5, "debitOrg": 113.5},
        {"description": "shipped", "accsubjectCode": "6001", "currencyCode": "CNY", "busidate": "2024-05-20",
         "creditOriginal": 113.5, "creditOrg": 113.5}]


async def test_voucher_found_by_number_is_not_posted_again() -> None:
    conn = make()
    found = {"header": {"id": "V-1", "description": "TD-9-SHIP shipped", "voucherstatus": "01"}, "body": []}
    other = {"header": {"id": "V-2", "description": "TD-9-SHIP-REV reversal", "voucherstatus": "01"}, "body": []}
    with respx.mock(assert_all_called=False) as mock:
        mock.get(TOKEN_URL).mock(return_value=token_answer())
        mock.post(gw("/yonbip/fi/ficloud/voucher/queryconditiondetail")).mock(
            return_value=httpx.Response(200, json={"totalcount": 2, "code": 200, "data": [other, found]}))
        add = mock.post(gw("/yonbip/fi/ficloud/openapi/voucher/addVoucher"))
        result = await conn.post_voucher(VOUCHER)
    assert (result.external_id, result.created) == ("V-1", False) and not add.called


async def test_voucher_needs_its_settings() -> None:
    conn = make(accbook_id="", maker_mobile="")
    with pytest.raises(ConfigurationError, match="accbook_id"):
        await conn.post_voucher(VOUCHER)


def test_example_registration_is_valid() -> None:
    from pathlib import Path

    from connectors.registry import load_registration

    registration = load_registration(Path(__file__).parents[2] / "examples/connectors/yonyou.yaml")
    assert registration.kind == "yonyou"
    assert registration.validate_kind() is YonyouConnector
