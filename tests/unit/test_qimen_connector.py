"""Qimen (奇门) WMS connector against a respx-mocked gateway.

The signature is recomputed here with hashlib from the documented rule
(``upper(md5(secret + k1v1k2v2... + body + secret))``, parameters sorted by name, ``sign`` left
out), never with the connector's own helper, so a drift in either shows up.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET  # noqa: N817
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx

from connectors.base import CancelResult, CreateResult
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy
from connectors.qimen import QimenConnector, qimen_sign

GATEWAY = "http://wms.test/router/qimen/service"
SECRET = "s3cr3t-qimen"


def doc_sign(params: dict[str, str], body: bytes, app_secret: str) -> str:
    """The documented rule, written out independently of the connector."""
    joined = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((app_secret + joined).encode() + body + app_secret.encode()).hexdigest().upper()


def make_connector(**overrides) -> QimenConnector:
    settings = {
        "base_url": GATEWAY,
        "app_key": "ak-123",
        "customerId": "CUST-1",
        "warehouseCode": "WH-SH",
        "ownerCode": "OWNER-1",
    } | overrides
    conn = QimenConnector.from_config("wms", settings, {"app_secret": SECRET})
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.005)
    return conn


def xml_response(inner: str, flag: str = "success", code: str = "0", message: str = "ok") -> httpx.Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><response><flag>{flag}</flag><code>{code}</code>'
            f"<message>{message}</message>{inner}</response>")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml;charset=utf-8"})


def document(code: str = "SO-1001", receiver_name: str = "张三") -> dict:
    return {
        "deliveryOrder": {
            "deliveryOrderCode": code,
            "orderType": "JYCK",
            "sourcePlatformCode": "TB",
            "shopNick": "tongdao-shop",
            "createTime": "2024-05-01 09:00:00",
            "placeOrderTime": "2024-05-01 08:59:00",
            "payTime": "2024-05-01 09:00:00",
            "operateTime": "2024-05-01 09:01:00",
            "totalAmount": "199.00",
            "logisticsCode": "SF",
            "buyerNick": "buyer_1",
            "receiverInfo": {"name": receiver_name, "mobile": "13800000000", "province": "上海",
                             "city": "上海市", "area": "浦东新区", "town": "", "detailAddress": "世纪大道 1 号",
                             "zipCode": "200120"},
            "senderInfo": {"name": "仓库", "mobile": "021-0000", "province": "上海", "city": "上海市",
                           "detailAddress": "仓库路 9 号"},
        },
        "orderLines": [
            {"orderLineNo": "1", "sourceOrderCode": "T1", "subSourceOrderCode": "T1-1", "itemCode": "SKU-A",
             "itemName": "Widget", "planQty": 2, "retailPrice": "99.50", "actualPrice": "99.50"},
            {"orderLineNo": "2", "sourceOrderCode": "T1", "subSourceOrderCode": "T1-2", "ownerCode": "OTHER",
             "itemCode": "SKU-B", "itemName": "Gadget", "planQty": 1, "retailPrice": "0", "actualPrice": "0"},
        ],
    }


class Gateway:
    """Checks every request's system parameters and signature, then answers per method."""

    def __init__(self, handlers: dict) -> None:
        self.handlers = handlers
        self.calls: list[tuple[str, dict[str, str], bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        body = request.content
        assert params["sign"] == doc_sign(params, body, SECRET), "bad signature"
        self.calls.append((params["method"], params, body))
        handler = self.handlers[params["method"]]
        return handler(ET.fromstring(body)) if callable(handler) else handler


@pytest.fixture
def gateway():
    with respx.mock(assert_all_called=False) as mock:
        holder = Gateway({})
        mock.post(host="wms.test", path="/router/qimen/service").mock(side_effect=holder)
        yield holder


def test_sign_known_answer():
    params = {"method": "taobao.qimen.entryorder.query", "timestamp": "2015-04-26 00:00:07", "format": "xml",
              "app_key": "testerp_appkey", "v": "2.0", "sign_method": "md5", "customerId": "stub-cust-code",
              "sign": "ignored"}
    body = b"<request><entryOrderCode>E1</entryOrderCode></request>"
    spelled_out = ("test" + "app_keytesterp_appkey" + "customerIdstub-cust-code" + "formatxml"
                   + "methodtaobao.qimen.entryorder.query" + "sign_methodmd5" + "timestamp2015-04-26 00:00:07"
                   + "v2.0" + body.decode() + "test")
    expected = hashlib.md5(spelled_out.encode()).hexdigest().upper()
    assert qimen_sign(params, body, "test") == expected
    assert re.fullmatch(r"[0-9A-F]{32}", expected)
    # an empty value is skipped by the sender; the SPI receiver appends its bare name
    assert qimen_sign(params | {"x": ""}, body, "test") == expected
    assert qimen_sign(params | {"x": ""}, body, "test", keep_empty=True) != expected


async def test_create_success_wire_format(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "<createTime>2024-05-01 09:02:00</createTime><deliveryOrderId>WMS-77</deliveryOrderId>")
    conn = make_connector()
    result = await conn.create_outbound_order(document())
    assert result == CreateResult(external_id="WMS-77", number="SO-1001", created=True)

    (method, params, body), = gateway.calls
    assert method == "taobao.qimen.deliveryorder.create"
    assert {k: params[k] for k in ("app_key", "customerId", "format", "sign_method", "v")} == {
        "app_key": "ak-123", "customerId": "CUST-1", "format": "xml", "sign_method": "md5", "v": "2.0"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", params["timestamp"])
    stamped = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
    beijing_now = datetime.now(UTC).replace(tzinfo=None) + (datetime(2000, 1, 1, 8) - datetime(2000, 1, 1))
    assert abs((stamped - beijing_now).total_seconds()) < 120  # GMT+8
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?><request>')
    root = ET.fromstring(body)
    assert root.tag == "request"
    assert root.findtext("deliveryOrder/warehouseCode") == "WH-SH"  # filled from settings
    assert root.findtext("deliveryOrder/receiverInfo/detailAddress") == "世纪大道 1 号"
    lines = root.findall("orderLines/orderLine")
    assert [line.findtext("itemCode") for line in lines] == ["SKU-A", "SKU-B"]
    assert [line.findtext("ownerCode") for line in lines] == ["OWNER-1", "OTHER"]  # filled only when absent
    assert lines[0].findtext("planQty") == "2"
    await conn.aclose()


async def test_create_keeps_explicit_warehouse(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response("<deliveryOrderId>W1</deliveryOrderId>")
    conn = make_connector()
    doc = document()
    doc["deliveryOrder"]["warehouseCode"] = "WH-BJ"
    await conn.create_outbound_order(doc)
    assert ET.fromstring(gateway.calls[0][2]).findtext("deliveryOrder/warehouseCode") == "WH-BJ"
    assert "warehouseCode" not in document()["deliveryOrder"]  # the caller's dict is not mutated


async def test_xml_escaping_of_special_characters(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response("<deliveryOrderId>W2</deliveryOrderId>")
    conn = make_connector()
    nasty = 'A&B <C> "D"'
    doc = document(receiver_name=nasty)
    doc["orderLines"][0]["itemName"] = "</itemName><inject>1</inject>"
    await conn.create_outbound_order(doc)
    body = gateway.calls[0][2]
    assert b"A&amp;B &lt;C&gt;" in body
    assert b"<inject>" not in body
    root = ET.fromstring(body)
    assert root.findtext("deliveryOrder/receiverInfo/name") == nasty
    assert root.findtext("orderLines/orderLine/itemName") == "</itemName><inject>1</inject>"


async def test_repeated_code_answered_with_success_is_confirmed_by_query(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "<deliveryOrderId>WMS-77</deliveryOrderId>", message="发货单已存在，重复单据")
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        "<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-77</deliveryOrderId>"
        "<status>ACCEPT</status></deliveryOrder>")
    result = await make_connector().create_outbound_order(document())
    assert result == CreateResult(external_id="WMS-77", number="SO-1001", created=False)
    assert [method for method, _, _ in gateway.calls] == [
        "taobao.qimen.deliveryorder.create", "taobao.qimen.deliveryorder.query"]


async def test_plain_success_is_not_double_checked(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response("<deliveryOrderId>W1</deliveryOrderId>")
    result = await make_connector().create_outbound_order(document())
    assert result.created and len(gateway.calls) == 1


@pytest.mark.parametrize("flag", ["success", "failure"])
async def test_duplicate_answer_not_confirmed_by_query_is_transient(gateway, flag):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "", flag=flag, code="B0001", message="单据重复")
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        "", flag="failure", code="isv.order-not-exist", message="deliveryOrder SO-1001 does not exist")
    with pytest.raises(TransientError) as info:
        await make_connector().create_outbound_order(document())
    assert info.value.retryable and "does not know the code" in info.value.message
    assert len(gateway.calls) == 2  # a business "does not exist" is not retried inside the call


async def test_duplicate_answer_with_empty_query_is_transient(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response("", flag="failure", message="already exists")
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response("<totalLines>0</totalLines>")
    with pytest.raises(TransientError):
        await make_connector().create_outbound_order(document())


@pytest.mark.parametrize("status", ["CANCELED", "CLOSED"])
async def test_duplicate_of_a_cancelled_code_is_a_permanent_error(gateway, status):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "", flag="failure", code="isv.order-duplicate", message="单据已存在(已取消),重复单据不能再次创建")
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        f"<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-9</deliveryOrderId>"
        f"<status>{status}</status></deliveryOrder>")
    with pytest.raises(InvalidRequestError, match="cancelled in the WMS") as info:
        await make_connector().create_outbound_order(document())
    assert not info.value.retryable and status in info.value.message


async def test_repeated_code_answered_with_failure_looks_up_the_id(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "", flag="failure", code="B0001", message="单据重复: SO-1001 already exists")
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        "<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-9</deliveryOrderId>"
        "<status>ACCEPT</status></deliveryOrder>")
    result = await make_connector().create_outbound_order(document())
    assert result == CreateResult(external_id="WMS-9", number="SO-1001", created=False)
    query_body = ET.fromstring(gateway.calls[1][2])
    assert query_body.findtext("orderCode") == "SO-1001"


async def test_failure_flag_is_invalid_request_without_secrets(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "", flag="failure", code="ITEM_NOT_EXISTS", message="商品SKU-A不存在")
    with pytest.raises(InvalidRequestError) as info:
        await make_connector().create_outbound_order(document())
    error = info.value
    assert error.code == "ITEM_NOT_EXISTS" and "商品SKU-A不存在" in error.message
    assert not error.retryable
    sent_sign = gateway.calls[0][1]["sign"]
    for text in (str(error), repr(error), str(error.to_application_error())):
        assert SECRET not in text and sent_sign not in text
    assert len(gateway.calls) == 1


async def test_system_busy_is_retried(gateway):
    answers = iter([
        xml_response("", flag="failure", code="isp.service-busy", message="系统繁忙，请稍后重试"),
        xml_response("<deliveryOrderId>WMS-5</deliveryOrderId>"),
    ])
    gateway.handlers["taobao.qimen.deliveryorder.create"] = lambda _root: next(answers)
    result = await make_connector().create_outbound_order(document())
    assert result.created and result.external_id == "WMS-5"
    assert len(gateway.calls) == 2  # the Gateway checked the signature of each attempt


async def test_system_busy_exhausted_is_transient(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.create"] = xml_response(
        "", flag="failure", code="SYSTEM_BUSY", message="system busy")
    with pytest.raises(TransientError):
        await make_connector().create_outbound_order(document())
    assert len(gateway.calls) == 3


async def test_response_with_doctype_is_refused(gateway):
    evil = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            "<response><flag>success</flag><code>0</code><message>&b;</message></response>")
    gateway.handlers["taobao.qimen.deliveryorder.create"] = httpx.Response(200, content=evil.encode())
    with pytest.raises(TransientError, match="DOCTYPE"):
        await make_connector().create_outbound_order(document())


async def test_missing_order_code_is_rejected_before_sending(gateway):
    doc = document()
    del doc["deliveryOrder"]["deliveryOrderCode"]
    with pytest.raises(InvalidRequestError):
        await make_connector().create_outbound_order(doc)
    assert gateway.calls == []


QUERY_DELIVERED = (
    "<totalLines>2</totalLines>"
    "<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-77</deliveryOrderId>"
    "<warehouseCode>WH-SH</warehouseCode><orderType>JYCK</orderType><status>DELIVERED</status>"
    "<operateTime>2024-05-02 18:30:00</operateTime></deliveryOrder>"
    "<packages><package><logisticsCode>SF</logisticsCode><expressCode>SF1234567890</expressCode>"
    "<items><item><itemCode>SKU-A</itemCode><quantity>2</quantity></item>"
    "<item><itemCode>SKU-B</itemCode><quantity>1</quantity></item></items></package></packages>"
    "<orderLines><orderLine><itemCode>SKU-A</itemCode><planQty>2</planQty><actualQty>2</actualQty></orderLine>"
    "<orderLine><itemCode>SKU-B</itemCode><planQty>1</planQty><actualQty>1</actualQty></orderLine></orderLines>"
)


async def test_get_shipment_delivered(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(QUERY_DELIVERED)
    shipment = await make_connector().get_shipment("SO-1001")
    assert shipment is not None
    assert shipment.order_key == "SO-1001"
    assert (shipment.carrier_code, shipment.tracking_number, shipment.warehouse) == ("SF", "SF1234567890", "WH-SH")
    assert shipment.shipped_at == datetime(2024, 5, 2, 10, 30, tzinfo=UTC)
    assert [(line.sku, line.quantity) for line in shipment.lines] == [("SKU-A", 2), ("SKU-B", 1)]
    request = ET.fromstring(gateway.calls[0][2])
    assert (request.findtext("orderCode"), request.findtext("warehouseCode"), request.findtext("ownerCode")) == (
        "SO-1001", "WH-SH", "OWNER-1")
    assert gateway.calls[0][0] == "taobao.qimen.deliveryorder.query"


async def test_get_shipment_not_yet_delivered(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        "<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><status>ACCEPT</status></deliveryOrder>")
    assert await make_connector().get_shipment("SO-1001") is None


async def test_get_shipment_unknown_order(gateway):
    gateway.handlers["taobao.qimen.deliveryorder.query"] = xml_response(
        "", flag="failure", code="ORDER_NOT_FOUND", message="发货单不存在")
    with pytest.raises(NotFoundError):
        await make_connector().get_shipment("SO-404")


async def test_query_inventory(gateway):
    gateway.handlers["taobao.qimen.inventory.query"] = xml_response(
        "<items>"
        "<item><warehouseCode>WH-SH</warehouseCode><itemCode>SKU-A</itemCode><inventoryType>ZP</inventoryType>"
        "<quantity>10</quantity><lockQuantity>3</lockQuantity><batchCode>B1</batchCode></item>"
        "<item><warehouseCode>WH-SH</warehouseCode><itemCode>SKU-A</itemCode><inventoryType>ZP</inventoryType>"
        "<quantity>5</quantity><lockQuantity>0</lockQuantity><batchCode>B2</batchCode></item>"
        "<item><warehouseCode>WH-SH</warehouseCode><itemCode>SKU-A</itemCode><inventoryType>CC</inventoryType>"
        "<quantity>99</quantity></item>"
        "<item><warehouseCode>WH-SH</warehouseCode><itemCode>SKU-B</itemCode><inventoryType>ZP</inventoryType>"
        "<quantity>0</quantity><lockQuantity>0</lockQuantity></item>"
        "</items>")
    levels = await make_connector().query_inventory(["SKU-A", "SKU-B"], "WH-SH")
    by_sku = {level.sku: level for level in levels}
    assert (by_sku["SKU-A"].on_hand, by_sku["SKU-A"].reserved, by_sku["SKU-A"].available) == (15, 3, 12)
    assert (by_sku["SKU-B"].on_hand, by_sku["SKU-B"].warehouse) == (0, "WH-SH")
    assert by_sku["SKU-A"].as_of.tzinfo is not None
    criteria = ET.fromstring(gateway.calls[0][2]).findall("criteriaList/criteria")
    assert [(c.findtext("warehouseCode"), c.findtext("ownerCode"), c.findtext("itemCode"),
             c.findtext("inventoryType")) for c in criteria] == [
        ("WH-SH", "OWNER-1", "SKU-A", "ZP"), ("WH-SH", "OWNER-1", "SKU-B", "ZP")]


async def test_test_summary(gateway):
    gateway.handlers["taobao.qimen.inventory.query"] = xml_response("<items></items>")
    summary = await make_connector().test()
    assert "Qimen OK" in summary and "ak-123" in summary
    assert len(ET.fromstring(gateway.calls[0][2]).findall("criteriaList/criteria")) == 1


# --- push: deliveryorder.confirm ---------------------------------------------------------------

CONFIRM_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><request>'
    "<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-77</deliveryOrderId>"
    "<warehouseCode>WH-SH</warehouseCode><orderType>JYCK</orderType><status>DELIVERED</status>"
    "<outBizCode>MSG-0001</outBizCode><confirmType>0</confirmType>"
    "<operateTime>2024-05-02 18:30:00</operateTime></deliveryOrder>"
    "<packages><package><logisticsCode>ZTO</logisticsCode><logisticsName>中通</logisticsName>"
    "<expressCode>ZT7788</expressCode><items><item><itemCode>SKU-A</itemCode><quantity>2</quantity></item>"
    "</items></package></packages>"
    "<orderLines><orderLine><orderLineNo>1</orderLineNo><itemCode>SKU-A</itemCode><actualQty>2</actualQty>"
    "</orderLine></orderLines></request>"
).encode()


def gmt8(offset_s: float = 0) -> str:
    """Now (plus ``offset_s``) as a Qimen timestamp: yyyy-MM-dd HH:mm:ss in GMT+8."""
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")


def push_query(body: bytes, method: str = "taobao.qimen.deliveryorder.confirm", app_secret: str = SECRET,
               timestamp: str | None = None) -> dict:
    """Signed push parameters, stamped now unless ``timestamp`` is given ("" leaves it out)."""
    query = {"method": method, "app_key": "qimen-gw", "customerId": "CUST-1", "format": "xml",
             "sign_method": "md5", "timestamp": gmt8() if timestamp is None else timestamp, "v": "2.0"}
    if not query["timestamp"]:
        del query["timestamp"]
    query["sign"] = doc_sign(query, body, app_secret)
    return query


async def test_push_with_good_sign():
    conn = make_connector()
    result = await conn.handle_push({"content-type": "text/xml"}, push_query(CONFIRM_BODY), CONFIRM_BODY)
    assert result.status_code == 200 and result.media_type == "application/xml"
    answer = ET.fromstring(result.body.encode())
    assert (answer.findtext("flag"), answer.findtext("code"), answer.findtext("message")) == ("success", "0", "ok")
    (event,) = result.events
    assert event["type"] == "shipment"
    assert event["order_code"] == "SO-1001" and event["out_biz_code"] == "MSG-0001"
    shipment = event["shipment"]
    assert shipment["order_key"] == "SO-1001"
    assert (shipment["carrier_code"], shipment["tracking_number"], shipment["warehouse"]) == ("ZTO", "ZT7788", "WH-SH")
    assert shipment["shipped_at"] in ("2024-05-02T10:30:00Z", "2024-05-02T10:30:00+00:00")
    assert shipment["lines"] == [{"sku": "SKU-A", "quantity": 2, "line_id": "1"}]
    assert (shipment["package_id"], shipment["final"]) == ("ZT7788", True)  # no packageCode: the waybill


async def test_push_with_bad_sign():
    conn = make_connector()
    query = push_query(CONFIRM_BODY, app_secret="not-the-secret")
    result = await conn.handle_push({}, query, CONFIRM_BODY)
    assert result.events == []
    assert result.status_code == 200 and result.media_type == "application/xml"
    answer = ET.fromstring(result.body.encode())
    assert (answer.findtext("flag"), answer.findtext("code"), answer.findtext("message")) == (
        "failure", "sign-check-failure", "Illegal request")
    assert SECRET not in result.body


async def test_push_with_tampered_body():
    query = push_query(CONFIRM_BODY)
    tampered = CONFIRM_BODY.replace(b"ZT7788", b"ZT0000")
    result = await make_connector().handle_push({}, query, tampered)
    assert result.events == [] and "sign-check-failure" in result.body


async def test_push_unknown_method():
    body = b"<request><x>1</x></request>"
    result = await make_connector().handle_push({}, push_query(body, method="taobao.qimen.entryorder.confirm"), body)
    assert result.events == []
    assert ET.fromstring(result.body.encode()).findtext("flag") == "failure"


async def test_push_with_doctype_is_refused():
    body = (b'<?xml version="1.0"?><!DOCTYPE request [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<request><deliveryOrder><deliveryOrderCode>&x;</deliveryOrderCode></deliveryOrder></request>")
    result = await make_connector().handle_push({}, push_query(body), body)
    assert result.events == []
    assert ET.fromstring(result.body.encode()).findtext("flag") == "failure"


async def test_push_without_tracking_and_rejected():
    body = (b"<request><deliveryOrder><deliveryOrderCode>SO-9</deliveryOrderCode><status>REJECT</status>"
            b"<outBizCode>M9</outBizCode></deliveryOrder></request>")
    result = await make_connector().handle_push({}, push_query(body), body)
    assert ET.fromstring(result.body.encode()).findtext("flag") == "success"
    assert result.events == [{"type": "outbound_status", "order_code": "SO-9", "out_biz_code": "M9",
                              "status": "rejected", "raw_status": "REJECT"}]


async def test_push_sign_covers_headers_in_top_sign_list():
    query = {"method": "deliveryorder.confirm", "app_key": "gw", "format": "xml", "sign_method": "md5",
             "timestamp": gmt8(), "v": "2.0"}
    signed = query | {"x-extra": "1"}
    query["sign"] = doc_sign(signed, CONFIRM_BODY, SECRET)
    headers = {"top-sign-list": "x-extra", "x-extra": "1"}
    result = await make_connector().handle_push(headers, query, CONFIRM_BODY)
    assert len(result.events) == 1


# --- push freshness: the signed timestamp must be within push_max_age_s (TOP: 10 minutes) ----------


def flag_code(result) -> tuple[str, str, str]:
    answer = ET.fromstring(result.body.encode())
    return answer.findtext("flag"), answer.findtext("code"), answer.findtext("message")


async def test_fresh_push_is_accepted():
    result = await make_connector().handle_push({}, push_query(CONFIRM_BODY, timestamp=gmt8(-30)), CONFIRM_BODY)
    assert flag_code(result)[0] == "success" and len(result.events) == 1


@pytest.mark.parametrize(("offset_s", "words"), [(-601, "s old"), (-86400, "s old"), (601, "in the future"),
                                                 (3600, "in the future")])
async def test_stale_or_future_dated_push_is_refused(offset_s, words):
    result = await make_connector().handle_push({}, push_query(CONFIRM_BODY, timestamp=gmt8(offset_s)), CONFIRM_BODY)
    flag, code, message = flag_code(result)
    assert (flag, code) == ("failure", "invalid-timestamp") and words in message and "600 s" in message
    assert result.events == [] and result.status_code == 200 and result.media_type == "application/xml"


@pytest.mark.parametrize("timestamp", ["", "yesterday", "2024/13/45 99:00:00"])
async def test_push_without_a_readable_timestamp_is_refused(timestamp):
    result = await make_connector().handle_push({}, push_query(CONFIRM_BODY, timestamp=timestamp), CONFIRM_BODY)
    flag, code, message = flag_code(result)
    assert (flag, code) == ("failure", "invalid-timestamp") and "yyyy-MM-dd HH:mm:ss" in message
    assert result.events == []


async def test_captured_push_replayed_later_is_refused():
    """A push recorded today (the documented example's time) and sent again is refused; re-signing it
    with a fresh timestamp needs the app secret."""
    query = push_query(CONFIRM_BODY, timestamp="2024-05-02 18:31:00")
    result = await make_connector().handle_push({"content-type": "text/xml"}, query, CONFIRM_BODY)
    assert flag_code(result)[:2] == ("failure", "invalid-timestamp") and result.events == []
    forged = dict(query, timestamp=gmt8())  # the attacker refreshes the timestamp but cannot re-sign
    result = await make_connector().handle_push({}, forged, CONFIRM_BODY)
    assert flag_code(result)[:2] == ("failure", "sign-check-failure") and result.events == []


async def test_push_replayed_after_the_window_is_refused(monkeypatch):
    """The same signed request: accepted when it arrives, refused when replayed 11 minutes later."""
    from connectors.qimen import connector as qimen_module

    conn = make_connector()
    query = push_query(CONFIRM_BODY)
    assert flag_code(await conn.handle_push({}, query, CONFIRM_BODY))[0] == "success"
    later = datetime.now(UTC) + timedelta(minutes=11)

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return later if tz is None else later.astimezone(tz)

    monkeypatch.setattr(qimen_module, "datetime", Later)
    result = await conn.handle_push({}, query, CONFIRM_BODY)
    assert flag_code(result)[:2] == ("failure", "invalid-timestamp") and result.events == []


async def test_redelivered_push_with_a_fresh_timestamp_is_accepted_again():
    """The WMS redelivers (same content, signed anew): accepted; the order workflow de-duplicates."""
    conn = make_connector()
    first = await conn.handle_push({}, push_query(CONFIRM_BODY, timestamp=gmt8(-120)), CONFIRM_BODY)
    again = await conn.handle_push({}, push_query(CONFIRM_BODY), CONFIRM_BODY)
    assert flag_code(first)[0] == flag_code(again)[0] == "success"
    assert first.events == again.events


async def test_push_window_is_a_setting():
    conn = make_connector(push_max_age_s=60)
    assert conn.settings.push_max_age_s == 60 and make_connector().settings.push_max_age_s == 600
    result = await conn.handle_push({}, push_query(CONFIRM_BODY, timestamp=gmt8(-120)), CONFIRM_BODY)
    assert flag_code(result)[:2] == ("failure", "invalid-timestamp") and "60 s" in flag_code(result)[2]
    with pytest.raises(ConfigurationError):
        make_connector(push_max_age_s=0)


async def test_a_bad_signature_is_reported_before_the_timestamp():
    query = push_query(CONFIRM_BODY, app_secret="not-the-secret", timestamp="2024-05-02 18:31:00")
    assert flag_code(await make_connector().handle_push({}, query, CONFIRM_BODY))[1] == "sign-check-failure"


def test_describe_masks_secret_and_config_errors():
    conn = make_connector()
    described = conn.describe()
    assert described["secrets"] == {"app_secret": "********"}
    assert SECRET not in repr(described) and SECRET not in repr(conn.secrets)
    assert described["capabilities"] == ["inventory", "outbound_orders", "push"]
    with pytest.raises(ConfigurationError) as info:
        QimenConnector.from_config("wms", {"base_url": GATEWAY, "app_key": "a", "customerId": "c",
                                           "warehouseCode": "w"}, {"app_secert": "typo-secret-value"})
    assert "typo-secret-value" not in str(info.value)


# --- order.cancel ------------------------------------------------------------------------------

CANCEL = "taobao.qimen.order.cancel"
QUERY = "taobao.qimen.deliveryorder.query"


def query_status(status: str, packages: str = "") -> httpx.Response:
    return xml_response(
        f"<deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode><deliveryOrderId>WMS-77</deliveryOrderId>"
        f"<status>{status}</status></deliveryOrder>{packages}")


async def test_cancel_success_wire_format(gateway):
    gateway.handlers[CANCEL] = xml_response("", message="取消成功")
    result = await make_connector().cancel_outbound_order("SO-1001", warehouse="WH-BJ", reason="buyer refunded")
    assert result == CancelResult(outcome="cancelled", message="取消成功") and result.done
    (method, params, body), = gateway.calls
    assert method == CANCEL and params["sign"] == doc_sign(params, body, SECRET)
    request = ET.fromstring(body)
    assert {child.tag: child.text for child in request} == {
        "warehouseCode": "WH-BJ", "ownerCode": "OWNER-1", "orderCode": "SO-1001", "orderType": "JYCK",
        "cancelReason": "buyer refunded"}


async def test_cancel_defaults_to_the_settings_warehouse_and_omits_empty_reason(gateway):
    gateway.handlers[CANCEL] = xml_response("")
    await make_connector().cancel_outbound_order("SO-1001")
    request = ET.fromstring(gateway.calls[0][2])
    assert request.findtext("warehouseCode") == "WH-SH" and request.find("cancelReason") is None


@pytest.mark.parametrize(
    ("flag", "code", "message", "outcome"),
    [
        ("success", "0", "单据已取消", "already_cancelled"),
        ("failure", "B0010", "单据已取消,不能重复取消", "already_cancelled"),
        ("failure", "ORDER_CANCELED", "order already cancelled", "already_cancelled"),
        ("failure", "isv.order-not-exist", "单据不存在: SO-1001", "not_found"),
        ("failure", "B0404", "order SO-1001 not found", "not_found"),
        ("failure", "B0020", "单据已发货,不能取消", "refused"),
        ("failure", "B0021", "出库单已出库", "refused"),
        ("failure", "B0022", "order already shipped", "refused"),
        ("failure", "B0023", "订单已拣货完成,无法取消", "refused"),
    ],
)
async def test_cancel_outcomes_read_from_the_answer(gateway, flag, code, message, outcome):
    gateway.handlers[CANCEL] = xml_response("", flag=flag, code=code, message=message)
    result = await make_connector().cancel_outbound_order("SO-1001")
    assert result.outcome == outcome and result.message == message
    assert result.done == (outcome != "refused")
    assert [m for m, _, _ in gateway.calls] == [CANCEL]  # the message was enough: no status check


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("DELIVERED", "refused"), ("PARTDELIVERED", "refused"), ("CANCELED", "already_cancelled"),
     ("CLOSED", "already_cancelled")],
)
async def test_cancel_unexplained_failure_is_settled_by_a_status_check(gateway, status, outcome):
    gateway.handlers[CANCEL] = xml_response("", flag="failure", code="E500", message="状态不符")
    gateway.handlers[QUERY] = query_status(status)
    result = await make_connector().cancel_outbound_order("SO-1001")
    assert result.outcome == outcome
    if outcome == "refused":
        assert "状态不符" in result.message and status in result.message
    assert [m for m, _, _ in gateway.calls] == [CANCEL, QUERY]


async def test_cancel_unexplained_failure_of_an_unknown_code_is_not_found(gateway):
    gateway.handlers[CANCEL] = xml_response("", flag="failure", code="E500", message="状态不符")
    gateway.handlers[QUERY] = xml_response("", flag="failure", code="ORDER_NOT_FOUND", message="发货单不存在")
    assert (await make_connector().cancel_outbound_order("SO-1001")).outcome == "not_found"


async def test_cancel_unexplained_failure_of_a_live_order_raises(gateway):
    gateway.handlers[CANCEL] = xml_response("", flag="failure", code="E500", message="状态不符")
    gateway.handlers[QUERY] = query_status("ACCEPT")
    with pytest.raises(InvalidRequestError, match="状态不符"):
        await make_connector().cancel_outbound_order("SO-1001")


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        ("isp.service-busy", "系统繁忙", TransientError),
        ("7", "App Call Limited (accesscontrol.limited-by-app-access-count)", ThrottledError),
        ("sign-check-failure", "Illegal request", AuthError),
    ],
)
async def test_cancel_transient_throttle_and_auth_failures_raise(gateway, code, message, error):
    gateway.handlers[CANCEL] = xml_response("", flag="failure", code=code, message=message)
    with pytest.raises(error):
        await make_connector().cancel_outbound_order("SO-1001")


async def test_cancel_needs_a_code(gateway):
    with pytest.raises(InvalidRequestError):
        await make_connector().cancel_outbound_order("  ")
    assert gateway.calls == []


# --- get_outbound ------------------------------------------------------------------------------

TWO_PACKAGES = (
    "<packages>"
    "<package><logisticsCode>SF</logisticsCode><expressCode>SF001</expressCode><packageCode>PK-1</packageCode>"
    "<items><item><itemCode>SKU-A</itemCode><quantity>2</quantity></item></items></package>"
    "<package><logisticsCode>SF</logisticsCode><expressCode>SF002</expressCode>"
    "<items><item><itemCode>SKU-B</itemCode><quantity>1</quantity></item></items></package>"
    "</packages>"
    "<orderLines><orderLine><orderLineNo>1</orderLineNo><itemCode>SKU-A</itemCode><planQty>2</planQty>"
    "<actualQty>2</actualQty></orderLine><orderLine><orderLineNo>2</orderLineNo><itemCode>SKU-B</itemCode>"
    "<planQty>1</planQty><actualQty>1</actualQty></orderLine></orderLines>"
)


@pytest.mark.parametrize(
    ("raw", "status"),
    [("NEW", "accepted"), ("ACCEPT", "accepted"), ("PICK", "accepted"), ("CANCELED", "cancelled"),
     ("CLOSED", "cancelled"), ("CANCELEDFAIL", "other"), ("EXCEPTION", "other"), ("REJECT", "other"),
     ("SOMETHING", "other")],
)
async def test_get_outbound_normalises_status(gateway, raw, status):
    gateway.handlers[QUERY] = query_status(raw)
    state = await make_connector().get_outbound("SO-1001")
    assert state is not None and (state.status, state.raw_status, state.shipments) == (status, raw, [])


async def test_get_outbound_delivered_has_one_final_shipment_per_package(gateway):
    gateway.handlers[QUERY] = query_status("DELIVERED", TWO_PACKAGES)
    state = await make_connector().get_outbound("SO-1001")
    assert state is not None and state.status == "shipped"
    assert [(s.package_id, s.tracking_number, s.final) for s in state.shipments] == [
        ("PK-1", "SF001", True), ("SF002", "SF002", True)]
    assert [[(line.sku, line.quantity, line.line_id) for line in s.lines] for s in state.shipments] == [
        [("SKU-A", 2, "1")], [("SKU-B", 1, "2")]]


async def test_get_outbound_partdelivered_is_partial(gateway):
    gateway.handlers[QUERY] = query_status("PARTDELIVERED", TWO_PACKAGES)
    conn = make_connector()
    state = await conn.get_outbound("SO-1001")
    assert state is not None and state.status == "partially_shipped"
    assert [s.final for s in state.shipments] == [False, False]
    first = await conn.get_shipment("SO-1001")  # the poll fallback sees the first package
    assert first is not None and first.tracking_number == "SF001"


async def test_get_outbound_unknown_code_is_none(gateway):
    gateway.handlers[QUERY] = xml_response("", flag="failure", code="isv.order-not-exist",
                                           message="deliveryOrder SO-404 does not exist")
    assert await make_connector().get_outbound("SO-404") is None


async def test_get_outbound_transient_failure_raises(gateway):
    gateway.handlers[QUERY] = xml_response("", flag="failure", code="isp.timeout", message="timeout")
    with pytest.raises(TransientError):
        await make_connector().get_outbound("SO-1001")


async def test_line_ids_when_two_lines_share_an_item(gateway):
    packages = (
        "<packages><package><logisticsCode>SF</logisticsCode><expressCode>SF1</expressCode>"
        "<items><item><itemCode>SKU-A</itemCode><quantity>3</quantity></item></items></package></packages>"
        "<orderLines><orderLine><orderLineNo>1</orderLineNo><itemCode>SKU-A</itemCode><actualQty>1</actualQty>"
        "</orderLine><orderLine><orderLineNo>2</orderLineNo><itemCode>SKU-A</itemCode><actualQty>2</actualQty>"
        "</orderLine></orderLines>")
    gateway.handlers[QUERY] = query_status("DELIVERED", packages)
    state = await make_connector().get_outbound("SO-1001")
    assert state is not None
    assert [(line.sku, line.quantity, line.line_id) for line in state.shipments[0].lines] == [
        ("SKU-A", 1, "1"), ("SKU-A", 2, "2")]


# --- push: partial and cancelled confirmations -------------------------------------------------


def confirm(status: str, confirm_type: str | None, packages: str, out_biz: str) -> bytes:
    kind = f"<confirmType>{confirm_type}</confirmType>" if confirm_type is not None else ""
    return (
        "<request><deliveryOrder><deliveryOrderCode>SO-1001</deliveryOrderCode>"
        f"<warehouseCode>WH-SH</warehouseCode><orderType>JYCK</orderType><status>{status}</status>"
        f"<outBizCode>{out_biz}</outBizCode>{kind}<operateTime>2024-05-02 18:30:00</operateTime>"
        f"</deliveryOrder>{packages}</request>"
    ).encode()


PACKAGE_1 = ("<packages><package><logisticsCode>SF</logisticsCode><expressCode>SF001</expressCode>"
             "<packageCode>PK-1</packageCode><items><item><itemCode>SKU-A</itemCode><quantity>2</quantity></item>"
             "</items></package></packages><orderLines><orderLine><orderLineNo>1</orderLineNo>"
             "<itemCode>SKU-A</itemCode><actualQty>2</actualQty></orderLine></orderLines>")
PACKAGE_2 = ("<packages><package><logisticsCode>SF</logisticsCode><expressCode>SF002</expressCode>"
             "<packageCode>PK-2</packageCode><items><item><itemCode>SKU-B</itemCode><quantity>1</quantity></item>"
             "</items></package></packages><orderLines><orderLine><orderLineNo>1</orderLineNo>"
             "<itemCode>SKU-A</itemCode><actualQty>2</actualQty></orderLine><orderLine><orderLineNo>2</orderLineNo>"
             "<itemCode>SKU-B</itemCode><actualQty>1</actualQty></orderLine></orderLines>")


async def test_partial_then_final_confirmation():
    conn = make_connector()
    first = confirm("PARTDELIVERED", "1", PACKAGE_1, "M1")
    second = confirm("DELIVERED", "0", PACKAGE_2, "M2")
    events = []
    for body in (first, second):
        result = await conn.handle_push({}, push_query(body), body)
        assert ET.fromstring(result.body.encode()).findtext("flag") == "success"
        events.extend(result.events)
    assert [(e["type"], e["out_biz_code"], e["shipment"]["package_id"], e["shipment"]["final"]) for e in events] == [
        ("shipment", "M1", "PK-1", False), ("shipment", "M2", "PK-2", True)]
    assert events[0]["shipment"]["lines"] == [{"sku": "SKU-A", "quantity": 2, "line_id": "1"}]
    assert events[1]["shipment"]["lines"] == [{"sku": "SKU-B", "quantity": 1, "line_id": "2"}]


async def test_confirmation_without_confirm_type_is_final():
    body = confirm("DELIVERED", None, PACKAGE_1, "M1")
    (event,) = (await make_connector().handle_push({}, push_query(body), body)).events
    assert event["shipment"]["final"] is True


async def test_one_confirmation_with_two_packages_gives_two_events():
    body = confirm("DELIVERED", "0", TWO_PACKAGES, "M1")
    events = (await make_connector().handle_push({}, push_query(body), body)).events
    assert [(e["shipment"]["tracking_number"], e["shipment"]["final"]) for e in events] == [
        ("SF001", True), ("SF002", True)]


@pytest.mark.parametrize(("raw", "status"), [("CANCELED", "cancelled"), ("CLOSED", "closed")])
async def test_cancelled_or_closed_confirmation_is_an_outbound_status_event(raw, status):
    body = confirm(raw, "0", "", "M7")
    result = await make_connector().handle_push({}, push_query(body), body)
    assert ET.fromstring(result.body.encode()).findtext("flag") == "success"
    assert result.events == [{"type": "outbound_status", "order_code": "SO-1001", "out_biz_code": "M7",
                              "status": status, "raw_status": raw}]


# --- contract: the connector against the Qimen simulator (two independent readings of the spec) ---


@pytest.fixture
async def wms_sim():
    """A simulated WMS reached in-process (ASGI), plus a local ERP endpoint that feeds handle_push."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from simulators.qimen import QimenWmsSimulator
    from simulators.server import BackgroundServer

    sim = QimenWmsSimulator("ak-123", SECRET, "CUST-1", ["WH-SH"], ["SKU-A", "SKU-B"], ship_delay_s=0,
                            split_packages=1.0, push_backoff_s=0.01)
    conn = make_connector()
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    events: list[dict] = []

    async def hook(request: Request) -> Response:
        result = await conn.handle_push(dict(request.headers), dict(request.query_params), await request.body())
        events.extend(result.events)
        return Response(result.body, status_code=result.status_code, media_type=result.media_type)

    with BackgroundServer(Starlette(routes=[Route("/hooks/wms", hook, methods=["POST"])])) as server:
        sim.set_callback(f"{server.base_url}/hooks/wms")
        yield sim, conn, events
        await sim.aclose()
    await conn.aclose()


def one_line(doc: dict) -> dict:
    doc["orderLines"] = doc["orderLines"][:1]
    return doc


async def test_contract_cancel_and_recreate_against_simulator(wms_sim):
    sim, conn, _ = wms_sim
    created = await conn.create_outbound_order(one_line(document("SO-C1")))
    assert created.created and created.external_id.startswith("QM")
    assert (await conn.get_outbound("SO-C1")).status == "accepted"
    assert (await conn.cancel_outbound_order("SO-C1", reason="refund")).outcome == "cancelled"
    assert (await conn.cancel_outbound_order("SO-C1")).outcome == "already_cancelled"
    assert (await conn.get_outbound("SO-C1")).status == "cancelled"
    assert sim.cancelled_codes() == ["SO-C1"] and sim.cancel_calls() == 2
    with pytest.raises(InvalidRequestError, match="cancelled in the WMS"):
        await conn.create_outbound_order(one_line(document("SO-C1")))
    assert (await conn.cancel_outbound_order("SO-NONE")).outcome == "not_found"
    assert await conn.get_outbound("SO-NONE") is None
    repeat = await conn.create_outbound_order(one_line(document("SO-C2")))
    again = await conn.create_outbound_order(one_line(document("SO-C2")))
    assert again.external_id == repeat.external_id  # the simulator answers a live repeat with its id


async def test_contract_split_shipment_against_simulator(wms_sim):
    sim, conn, events = wms_sim
    await conn.create_outbound_order(document("SO-S1"))  # two lines -> two packages
    assert await sim.ship("SO-S1")
    await sim.flush(max_wait_s=5)
    state = await conn.get_outbound("SO-S1")
    assert state is not None and (state.status, state.raw_status) == ("partially_shipped", "PARTDELIVERED")
    assert [(s.final, [(line.sku, line.quantity, line.line_id) for line in s.lines]) for s in state.shipments] == [
        (False, [("SKU-A", 2, "1")])]
    refused = await conn.cancel_outbound_order("SO-S1")
    assert refused.outcome == "refused" and "已发货" in refused.message and not refused.done

    assert await sim.ship("SO-S1")
    await sim.flush(max_wait_s=5)
    state = await conn.get_outbound("SO-S1")
    assert state is not None and state.status == "shipped"
    assert [s.package_id for s in state.shipments] == [p["package_code"] for p in sim.packages_of("SO-S1")]
    assert [e["type"] for e in events] == ["shipment", "shipment"]
    assert [(e["shipment"]["package_id"], e["shipment"]["final"]) for e in events] == [
        (s.package_id, final) for s, final in zip(state.shipments, (False, True), strict=True)]
    assert events[1]["shipment"]["lines"] == [{"sku": "SKU-B", "quantity": 1, "line_id": "2"}]
    assert sim.state()["orders"]["SO-S1"]["confirm_acked"] is True


async def test_contract_wms_cancel_push_against_simulator(wms_sim):
    sim, conn, events = wms_sim
    await conn.create_outbound_order(one_line(document("SO-W1")))
    assert await sim.wms_cancel("SO-W1")
    await sim.flush(max_wait_s=5)
    assert [(e["type"], e["status"], e["raw_status"]) for e in events] == [("outbound_status", "cancelled", "CANCELED")]
