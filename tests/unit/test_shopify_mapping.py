"""mappings/specs/shopify_order.yaml on a GraphQL Admin ``order`` document.

The fixture ``tests/fixtures/shopify_order.json`` follows the Order, LineItem, MoneyBag and
MailingAddress shapes of the GraphQL Admin API reference (2025-10) for the selection in
connectors/shopify/queries.py (ids/names in the style of the reference's examples: order 450789469,
line items 466157049/466157050), with CNY as the shop currency and USD as the presentment currency.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical import Order
from mappings import MappingSpec, load_spec

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "shopify_order.json"
CONTEXT = {"shop": "tongdao-a.myshopify.com"}


@pytest.fixture
def doc() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def spec() -> MappingSpec:
    return load_spec("shopify_order")


def mapped(spec: MappingSpec, doc: dict[str, Any]) -> Order:
    result = spec.apply(doc, context=CONTEXT)
    assert result.ok, result.errors
    return result.value


def test_fixture_maps_to_a_canonical_order(spec: MappingSpec, doc: dict[str, Any]) -> None:
    order = mapped(spec, doc)
    assert (order.channel.value, order.shop, order.external_id) == ("shopify", "tongdao-a.myshopify.com", "450789469")
    assert order.status.value == "paid"
    assert order.currency == "CNY"  # the shop currency, not the presentment (USD)
    assert (order.item_total, order.discount_total, order.shipping_fee, order.total) == (
        Decimal("287.0"), Decimal("12.0"), Decimal("10.0"), Decimal("285.0"))
    assert order.created_at.isoformat() == "2025-06-18T02:10:00+00:00"
    assert order.paid_at is not None
    assert order.receiver.name == "王伟" and order.receiver.mobile == "+86 13812345678"
    assert order.receiver.protected is False
    address = order.receiver.address
    assert (address.country, address.province, address.city, address.street, address.postal_code) == (
        "CN", "浙江省", "杭州市", "文一西路969号 3幢502室", "310012")
    first, second = order.lines
    assert (first.line_id, first.sku, first.quantity, first.unit_price, first.discount, first.total) == (
        "gid://shopify/LineItem/466157049", "TD-SKU-0001", 2, Decimal("59.0"), Decimal("12.0"), Decimal("106.0"))
    assert second.sku == "TD-SKU-0007"  # no sku on the line: the variant's
    assert order.buyer_message == "请尽快发货" and order.buyer.email == "bob.norman@mail.example.com"
    assert order.tags == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"displayFinancialStatus": "PENDING"}, "pending_payment"),
    ({"displayFinancialStatus": "EXPIRED"}, "pending_payment"),
    ({"displayFinancialStatus": "PENDING", "paymentGatewayNames": ["Cash on Delivery (COD)"]}, "paid"),
    ({"displayFinancialStatus": "PARTIALLY_PAID"}, "deposit_paid"),
    ({"displayFinancialStatus": "AUTHORIZED"}, "paid"),
    ({"displayFinancialStatus": "PARTIALLY_REFUNDED"}, "paid"),
    ({"displayFulfillmentStatus": "PARTIALLY_FULFILLED"}, "partially_shipped"),
    ({"displayFulfillmentStatus": "FULFILLED"}, "shipped"),
    ({"displayFulfillmentStatus": "FULFILLED", "closed": True}, "completed"),
    ({"displayFulfillmentStatus": "ON_HOLD"}, "paid"),
    ({"displayFulfillmentStatus": "RESTOCKED"}, "cancelled"),
    ({"displayFinancialStatus": "REFUNDED"}, "cancelled"),
    ({"displayFinancialStatus": "VOIDED"}, "cancelled"),
    ({"cancelledAt": "2025-06-18T03:00:00Z", "cancelReason": "CUSTOMER"}, "cancelled"),
])
def test_statuses(spec: MappingSpec, doc: dict[str, Any], changes: dict[str, Any], expected: str) -> None:
    doc.update(changes)
    assert mapped(spec, doc).status.value == expected


def test_refunded_line_keeps_its_quantity_and_is_marked(spec: MappingSpec, doc: dict[str, Any]) -> None:
    doc["lineItems"]["nodes"][1]["currentQuantity"] = 0
    doc["lineItems"]["nodes"][0]["currentQuantity"] = 1  # one of two units refunded
    doc["displayFinancialStatus"] = "PARTIALLY_REFUNDED"
    order = mapped(spec, doc)
    assert [(line.quantity, line.refund_status.value) for line in order.lines] == [(1, "none"), (1, "refunded")]


def test_presale_cod_and_gift_markers(spec: MappingSpec, doc: dict[str, Any]) -> None:
    doc["lineItems"]["nodes"][0]["sellingPlan"] = {"name": "Pre-order, ships in July"}
    doc["paymentGatewayNames"] = ["Cash on Delivery (COD)"]
    doc["displayFinancialStatus"] = "PENDING"
    gift = doc["lineItems"]["nodes"][1]
    gift["discountedTotalSet"]["shopMoney"]["amount"] = "0.0"
    order = mapped(spec, doc)
    assert [t.value for t in order.tags] == ["presale", "cod"]
    assert [line.is_gift for line in order.lines] == [False, True]


def test_missing_sku_and_bad_amount_are_errors(spec: MappingSpec, doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    broken["lineItems"]["nodes"][1]["variant"]["sku"] = None
    result = spec.apply(broken, context=CONTEXT)
    assert [e.target for e in result.errors] == ["lines[1].sku"]
    doc["totalPriceSet"]["shopMoney"]["amount"] = "285,0"
    result = spec.apply(doc, context=CONTEXT)
    assert [e.target for e in result.errors] == ["total"]


def test_order_without_shipping_address_maps_with_empty_receiver(spec: MappingSpec, doc: dict[str, Any]) -> None:
    doc["shippingAddress"] = None
    order = mapped(spec, doc)
    assert order.receiver.name == "" and order.receiver.address.street == ""
