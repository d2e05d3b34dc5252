"""Qimen ``taobao.qimen.stockchange.report`` pushes and the batch rows of ``inventory.query``.

Pushes are signed here with an independent copy of the documented Qimen rule
(``upper(md5(secret + k1v1k2v2... + body + secret))``, parameters sorted, ``sign`` left out), as
tests/unit/test_qimen_connector.py does, never with the connector's helper.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET  # noqa: N817
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx

from connectors.http import RetryPolicy
from connectors.qimen import QimenConnector
from connectors.qimen.stock import StockBatch

GATEWAY = "http://wms.test/router/qimen/service"
SECRET = "s3cr3t-qimen"
GMT8 = timezone(timedelta(hours=8))


def doc_sign(params: dict[str, str], body: bytes, app_secret: str) -> str:
    joined = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5((app_secret + joined).encode() + body + app_secret.encode()).hexdigest().upper()


def gmt8(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).astimezone(GMT8).strftime("%Y-%m-%d %H:%M:%S")


def push_query(body: bytes, method: str = "taobao.qimen.stockchange.report", app_secret: str = SECRET,
               timestamp: str | None = None) -> dict[str, str]:
    query = {"method": method, "app_key": "qimen-gw", "customerId": "CUST-1", "format": "xml",
             "sign_method": "md5", "timestamp": gmt8() if timestamp is None else timestamp, "v": "2.0"}
    query["sign"] = doc_sign(query, body, app_secret)
    return query


def make_connector(**overrides) -> QimenConnector:
    settings = {"base_url": GATEWAY, "app_key": "ak-123", "customerId": "CUST-1", "warehouseCode": "WH-SH",
                "ownerCode": "OWNER-1"} | overrides
    conn = QimenConnector.from_config("wms", settings, {"app_secret": SECRET})
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=2, initial_s=0.001, max_s=0.002)
    return conn


def answer_of(result) -> tuple[str, str, str]:
    root = ET.fromstring(result.body.encode())
    return root.findtext("flag"), root.findtext("code"), root.findtext("message")


def item(**fields: str) -> str:
    return "<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items()) + "</item>"


def report(*items: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><request><items>' + "".join(items) + "</items></request>").encode()


SHIPPED = item(ownerCode="OWNER-1", warehouseCode="WH-SH", orderCode="SO-1001", orderType="JYCK",
               outBizCode="SC-1", itemCode="SKU-A", itemId="QMI1", inventoryType="ZP", quantity="-2",
               batchCode="B-2025-01", productDate="2024-12-01", expireDate="2025-06-30",
               changeTime="2024-05-02 18:30:00")
RECEIVED = item(ownerCode="OWNER-1", warehouseCode="WH-SH", orderCode="RK-77", orderType="CGRK",
                outBizCode="SC-1", itemCode="SKU-B", quantity="10.0000", changeTime="2024-05-02 08:00:05")
REPORT = report(SHIPPED, RECEIVED)


async def test_a_signed_report_gives_one_signed_event_per_item():
    result = await make_connector().handle_push({"content-type": "text/xml"}, push_query(REPORT), REPORT)
    assert answer_of(result) == ("success", "0", "ok")
    assert result.status_code == 200 and result.media_type == "application/xml"
    assert result.events == [
        {"type": "stock_change", "change_id": "SC-1:1:SKU-A", "warehouse": "WH-SH", "sku": "SKU-A", "quantity": -2,
         "order_code": "SO-1001", "order_type": "JYCK", "inventory_type": "ZP", "batch_code": "B-2025-01",
         "expire_date": "2025-06-30", "changed_at": "2024-05-02T10:30:00+00:00"},
        {"type": "stock_change", "change_id": "SC-1:2:SKU-B", "warehouse": "WH-SH", "sku": "SKU-B", "quantity": 10,
         "order_code": "RK-77", "order_type": "CGRK", "inventory_type": "ZP", "batch_code": "",
         "expire_date": "", "changed_at": "2024-05-02T00:00:05+00:00"},
    ]


async def test_the_short_method_name_is_accepted_and_a_redelivery_gives_the_same_ids():
    conn = make_connector()
    first = await conn.handle_push({}, push_query(REPORT, method="stockchange.report"), REPORT)
    again = await conn.handle_push({}, push_query(REPORT, timestamp=gmt8(-60)), REPORT)
    assert answer_of(first)[0] == answer_of(again)[0] == "success"
    assert [e["change_id"] for e in first.events] == [e["change_id"] for e in again.events] == [
        "SC-1:1:SKU-A", "SC-1:2:SKU-B"]


async def test_defaults_other_owners_and_zero_changes():
    """No inventoryType = ZP; no changeTime = the push's signed timestamp; another owner's item and a
    zero change give no event."""
    body = report(
        item(ownerCode="OWNER-1", warehouseCode="WH-GZ", orderCode="PD-1", outBizCode="M2", itemCode="SKU-C",
             quantity="-1", expireDate="2026-01-31 00:00:00"),
        item(ownerCode="SOMEONE-ELSE", warehouseCode="WH-GZ", orderCode="PD-1", outBizCode="M2", itemCode="SKU-D",
             quantity="5"),
        item(ownerCode="OWNER-1", warehouseCode="WH-GZ", orderCode="PD-1", outBizCode="M2", itemCode="SKU-E",
             quantity="0"),
    )
    stamp = gmt8(-5)
    result = await make_connector().handle_push({}, push_query(body, timestamp=stamp), body)
    expected_at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8).astimezone(UTC).isoformat()
    assert result.events == [
        {"type": "stock_change", "change_id": "M2:1:SKU-C", "warehouse": "WH-GZ", "sku": "SKU-C", "quantity": -1,
         "order_code": "PD-1", "order_type": "", "inventory_type": "ZP", "batch_code": "",
         "expire_date": "2026-01-31", "changed_at": expected_at},
    ]
    anyone = make_connector(ownerCode="")
    assert [e["sku"] for e in (await anyone.handle_push({}, push_query(body), body)).events] == ["SKU-C", "SKU-D"]


async def test_a_bad_signature_is_refused_before_anything_else():
    stale_and_forged = push_query(REPORT, app_secret="not-the-secret", timestamp="2024-05-02 18:31:00")
    result = await make_connector().handle_push({}, stale_and_forged, REPORT)
    assert answer_of(result) == ("failure", "sign-check-failure", "Illegal request") and result.events == []
    tampered = REPORT.replace(b"<quantity>-2</quantity>", b"<quantity>-200</quantity>")
    result = await make_connector().handle_push({}, push_query(REPORT), tampered)
    assert answer_of(result)[1] == "sign-check-failure" and result.events == []


@pytest.mark.parametrize("offset_s", [-11 * 60, 11 * 60])
async def test_a_stale_or_future_dated_report_is_refused(offset_s):
    result = await make_connector().handle_push({}, push_query(REPORT, timestamp=gmt8(offset_s)), REPORT)
    flag, code, message = answer_of(result)
    assert (flag, code) == ("failure", "invalid-timestamp") and "600 s" in message and result.events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (report(), "stockchange.report: items/item is required (at least one changed item)"),
        (b"<request><item><itemCode>A</itemCode></item></request>",
         "stockchange.report: items/item is required (at least one changed item)"),
        (report(SHIPPED, item(ownerCode="OWNER-1", warehouseCode="WH-SH", orderCode="RK-1", itemCode="SKU-B",
                              quantity="3")),
         "stockchange.report: items.item[2].outBizCode is required"),
        (report(item(ownerCode="OWNER-1", orderCode="RK-1", outBizCode="M", itemCode="SKU-B", quantity="3")),
         "stockchange.report: items.item[1].warehouseCode is required"),
        (report(item(ownerCode="OWNER-1", warehouseCode="W", orderCode="RK-1", outBizCode="M", itemCode="SKU-B")),
         "stockchange.report: items.item[1].quantity is required"),
        (report(item(ownerCode="OWNER-1", warehouseCode="W", orderCode="RK-1", outBizCode="M", itemCode="SKU-B",
                     quantity="1.5")),
         "stockchange.report: items.item[1].quantity must be a whole number, got '1.5'"),
        (report(item(ownerCode="OWNER-1", warehouseCode="W", orderCode="RK-1", outBizCode="M", itemCode="SKU-B",
                     quantity="abc")),
         "stockchange.report: items.item[1].quantity must be a whole number, got 'abc'"),
        (report(item(ownerCode="OWNER-1", warehouseCode="W", orderCode="RK-1", outBizCode="M", itemCode="SKU-B",
                     quantity="2", expireDate="2025-13-01")),
         "stockchange.report: items.item[1].expireDate must be a date YYYY-MM-DD, got '2025-13-01'"),
        (report(item(ownerCode="OWNER-1", warehouseCode="W", orderCode="RK-1", outBizCode="M", itemCode="SKU-B",
                     quantity="2", changeTime="yesterday")),
         "stockchange.report: items.item[1].changeTime must be YYYY-MM-DD HH:MM:SS (GMT+8), got 'yesterday'"),
        (b"<response><flag>success</flag></response>",
         "stockchange.report: the body must be a <request> document, got <response>"),
    ],
)
async def test_a_malformed_report_is_refused_with_a_precise_message(body, message):
    result = await make_connector().handle_push({}, push_query(body), body)
    assert answer_of(result) == ("failure", "invalid-request", message)
    assert result.events == []


async def test_a_report_with_a_doctype_is_refused():
    body = (b'<?xml version="1.0"?><!DOCTYPE request [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<request><items><item><itemCode>&x;</itemCode></item></items></request>")
    result = await make_connector().handle_push({}, push_query(body), body)
    assert answer_of(result)[:2] == ("failure", "invalid-request") and result.events == []


async def test_confirms_still_work_and_other_methods_are_refused():
    body = (b"<request><deliveryOrder><deliveryOrderCode>SO-9</deliveryOrderCode><status>REJECT</status>"
            b"<outBizCode>M9</outBizCode></deliveryOrder></request>")
    result = await make_connector().handle_push({}, push_query(body, method="taobao.qimen.deliveryorder.confirm"), body)
    assert [e["type"] for e in result.events] == ["outbound_status"]
    result = await make_connector().handle_push({}, push_query(REPORT, method="taobao.qimen.inventory.report"), REPORT)
    assert answer_of(result)[:2] == ("failure", "invalid-method") and result.events == []


# --- inventory.query batch rows ---------------------------------------------------------------------


def xml_response(inner: str) -> httpx.Response:
    body = ('<?xml version="1.0" encoding="utf-8"?><response><flag>success</flag><code>0</code>'
            f"<message>ok</message>{inner}</response>")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml;charset=utf-8"})


def row(sku: str, quantity: int, kind: str = "ZP", warehouse: str = "WH-SH", **batch: str) -> str:
    fields = {"warehouseCode": warehouse, "itemCode": sku, "inventoryType": kind, "quantity": str(quantity),
              "lockQuantity": "1"} | batch
    return item(**fields)


INVENTORY = "<items>" + "".join([
    row("SKU-A", 10, batchCode="B1", productDate="2024-01-01", expireDate="2025-01-31"),
    row("SKU-A", 4, batchCode="B1", productDate="2024-01-01", expireDate="2025-01-31"),
    row("SKU-A", 6, batchCode="B2", expireDate="2025/03/01"),
    row("SKU-A", 99, kind="CC", batchCode="B1"),
    row("SKU-A", 3),
    row("SKU-B", 7, warehouse=""),
    row("SKU-Z", 50, batchCode="Z1"),
]) + "</items>"


@pytest.fixture
def gateway():
    calls: list[tuple[dict[str, str], bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        assert params["sign"] == doc_sign(params, request.content, SECRET)
        assert params["method"] == "taobao.qimen.inventory.query"
        calls.append((params, request.content))
        return xml_response(INVENTORY)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(host="wms.test", path="/router/qimen/service").mock(side_effect=answer)
        yield calls


async def test_query_batches_reads_the_batch_fields(gateway):
    conn = make_connector()
    batches = await conn.query_batches(["SKU-A", "SKU-B", "SKU-A", ""], "WH-SH")
    assert batches == [
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="B1", expire_date="2025-01-31",
                   product_date="2024-01-01", quantity=14),
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="B2", expire_date="2025-03-01", quantity=6),
        StockBatch(sku="SKU-A", warehouse="WH-SH", batch_code="", quantity=3),
        StockBatch(sku="SKU-B", warehouse="WH-SH", batch_code="", quantity=7),
    ]
    assert batches[0].model_dump() == {"sku": "SKU-A", "warehouse": "WH-SH", "batch_code": "B1",
                                       "expire_date": "2025-01-31", "product_date": "2024-01-01", "quantity": 14}
    (params, body), = gateway
    criteria = ET.fromstring(body).findall("criteriaList/criteria")
    assert [(c.findtext("itemCode"), c.findtext("inventoryType"), c.findtext("ownerCode")) for c in criteria] == [
        ("SKU-A", "ZP", "OWNER-1"), ("SKU-B", "ZP", "OWNER-1")]
    assert await conn.query_batches([], "WH-SH") == [] and len(gateway) == 1
    await conn.aclose()


async def test_query_inventory_still_adds_the_batches_up(gateway):
    levels = {level.sku: level for level in await make_connector().query_inventory(["SKU-A", "SKU-B"], "")}
    assert (levels["SKU-A"].on_hand, levels["SKU-A"].reserved, levels["SKU-A"].warehouse) == (23, 4, "WH-SH")
    assert (levels["SKU-B"].on_hand, levels["SKU-B"].reserved) == (7, 1)
