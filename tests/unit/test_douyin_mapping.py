"""The ``douyin_order`` mapping spec on a shop order as order.orderDetail returns it.

The fixture (tests/fixtures/douyin_order_detail.json) follows the documented response of
``order.orderDetail`` field by field -- names, types and units from the official SDK model
(``order_orderDetail`` / ``order_searchList`` response, doudian-sdk-golang 1.1.0): ids as strings,
times in Unix seconds, amounts in fen, the receiver encrypted and masked. The documentation's own
example page could not be read here, so its values are illustrative.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical.validation import validate_order
from mappings import DictLookups, load_spec

FIXTURE = Path(__file__).parents[1] / "fixtures" / "douyin_order_detail.json"


@pytest.fixture
def order_doc() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["data"]["shop_order_detail"]


def apply(doc: dict[str, Any], **lookups: dict[str, str]) -> Any:
    return load_spec("douyin_order").apply(doc, lookups=DictLookups(lookups) if lookups else None,
                                           context={"shop": "4463798"})


def test_fixture_maps_to_a_protected_canonical_order(order_doc: dict[str, Any]) -> None:
    result = apply(order_doc)
    assert result.ok, result.errors
    order = result.value
    assert (order.channel.value, order.shop, order.external_id) == ("douyin", "4463798", "4934517287891236517")
    assert order.status.value == "paid"
    assert order.created_at.isoformat() == "2021-04-02T09:23:20+00:00"  # 1617355400
    assert order.paid_at is not None and order.currency == "CNY"
    assert (order.item_total, order.shipping_fee, order.discount_total, order.total) == (
        Decimal("118.00"), Decimal("8.00"), Decimal("10.00"), Decimal("116.00"))
    receiver = order.receiver
    assert receiver.protected and receiver.name == "~4YW1MyxkXvIaAbhP7cIUPg==~1~"
    assert receiver.mobile.startswith("$$") and receiver.address.street.startswith("#")
    assert (receiver.address.province, receiver.address.city, receiver.address.district, receiver.address.town) == (
        "浙江省", "杭州市", "西湖区", "文新街道")
    first, gift = order.lines
    assert (first.line_id, first.sku, first.quantity, first.unit_price, first.discount, first.total) == (
        "4934517287891236518", "TD-SKU-0001", 2, Decimal("59.00"), Decimal("10.00"), Decimal("108.00"))
    assert not first.is_gift and first.refund_status.value == "none"
    assert gift.is_gift and gift.total == Decimal("0") and gift.refund_status.value == "requested"
    assert [t.value for t in order.tags] == ["gift"] and order.buyer_message == "请发顺丰"
    assert validate_order(order) == []


@pytest.mark.parametrize(("status", "expected"), [
    (1, "pending_payment"), (105, "pending_payment"), (2, "paid"), (101, "partially_shipped"), (3, "shipped"),
    (4, "cancelled"), (5, "completed"),
])
def test_every_documented_status(order_doc: dict[str, Any], status: int, expected: str) -> None:
    order_doc["order_status"] = status
    result = apply(order_doc)
    assert result.ok and result.value.status.value == expected


def test_unknown_status_is_an_error(order_doc: dict[str, Any]) -> None:
    order_doc["order_status"] = 99
    result = apply(order_doc)
    assert not result.ok and result.errors[0].target == "status"


def test_deposit_presale(order_doc: dict[str, Any]) -> None:
    order_doc.update(order_status=1, pay_time=0, order_phase_list=[
        {"current_phase": 1, "total_phase": 2, "pay_success": True, "phase_pay_amount": 2000},
        {"current_phase": 2, "total_phase": 2, "pay_success": False, "phase_pay_amount": 9600}])
    for sku in order_doc["sku_order_list"]:
        sku["trade_type"] = 2
    order = apply(order_doc).value
    assert order.status.value == "deposit_paid" and order.paid_at is None
    assert "presale" in [t.value for t in order.tags]
    order_doc["order_phase_list"][0]["pay_success"] = False  # nothing paid yet
    assert apply(order_doc).value.status.value == "pending_payment"


@pytest.mark.parametrize(("after_sale", "expected"), [
    ({"after_sale_status": 12, "after_sale_type": 2, "refund_status": 3}, "refunded"),
    ({"after_sale_status": 6, "after_sale_type": 2, "refund_status": 1}, "requested"),
    ({"after_sale_status": 7, "after_sale_type": 0, "refund_status": 1}, "requested"),
    ({"after_sale_status": 28, "after_sale_type": 2, "refund_status": 1}, "none"),  # buyer withdrew it
    ({"after_sale_status": 27, "after_sale_type": 2, "refund_status": 4}, "none"),  # refused
    ({"after_sale_status": 0, "after_sale_type": 0, "refund_status": 0}, "none"),
])
def test_line_refund_states(order_doc: dict[str, Any], after_sale: dict[str, int], expected: str) -> None:
    order_doc["sku_order_list"][0]["after_sale_info"] = after_sale
    assert apply(order_doc).value.lines[0].refund_status.value == expected


def test_fen_conversion_is_exact(order_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(order_doc)
    doc.update(order_amount=100000007, post_amount=5, pay_amount=99999999, promotion_amount=13)
    order = apply(doc).value
    assert (order.item_total, order.shipping_fee, order.total, order.discount_total) == (
        Decimal("1000000.02"), Decimal("0.05"), Decimal("999999.99"), Decimal("0.13"))


def test_malformed_orders_fail_naming_the_field(order_doc: dict[str, Any]) -> None:
    bad_pay = copy.deepcopy(order_doc)
    bad_pay["pay_amount"] = -11600
    assert "total" in {e.target for e in apply(bad_pay).errors}
    no_code = copy.deepcopy(order_doc)
    no_code["sku_order_list"][0]["code"] = ""
    assert "lines[0].sku" in {e.target for e in apply(no_code, sku={}).errors}
    mapped = apply(no_code, sku={"1694870396599299": "TD-SKU-0001"})
    assert mapped.ok and mapped.value.lines[0].sku == "TD-SKU-0001"
    no_address = copy.deepcopy(order_doc)
    no_address["post_addr"]["encrypt_detail"] = ""
    problems = validate_order(apply(no_address).value)
    assert [p.field for p in problems] == ["receiver.address.street"]
