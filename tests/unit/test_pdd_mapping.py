"""The pdd_order mapping spec on a POP order document.

The fixture ``tests/fixtures/pdd_order_info.json`` is a ``pdd.order.information.get`` answer laid out
field by field as the API page documents ``order_info`` (mirrored in github.com/lywzx/pdd-node-sdk
``packages/pdd-origin-api/src/dingDan/PddOrderInformationGet.ts``); the stored documentation has no
literal example response, so the values are illustrative (catalogue SKUs, encrypted receiver).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical.validation import validate_order
from mappings import DictLookups, load_spec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pdd_order_info.json"


@pytest.fixture(scope="module")
def spec():
    return load_spec("pdd_order")


@pytest.fixture
def doc() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["order_info_get_response"]["order_info"]


def apply(spec, doc, **tables):
    return spec.apply(doc, lookups=DictLookups(tables), context={"shop": "pdd-flagship"})


def test_default_spec_name_for_the_kind():
    from connectors.base import default_order_mapping

    assert default_order_mapping("pdd") == "pdd_order"


def test_fixture_maps_to_a_valid_order(spec, doc):
    result = apply(spec, doc)
    assert result.ok, result.errors
    order = result.value
    assert (order.channel.value, order.shop, order.external_id) == ("pinduoduo", "pdd-flagship", doc["order_sn"])
    assert order.status.value == "paid"
    assert order.created_at == datetime(2025, 6, 18, 3, 20, 3, tzinfo=UTC)
    assert order.paid_at == datetime(2025, 6, 18, 3, 20, 12, tzinfo=UTC)
    assert (order.item_total, order.discount_total, order.shipping_fee, order.total) == (
        Decimal("163.00"), Decimal("5.00"), Decimal("8.00"), Decimal("166.00"))
    assert order.currency == "CNY"
    assert [(line.line_id, line.sku, line.quantity, line.unit_price, line.total) for line in order.lines] == [
        ("1203458871", "TD-SKU-0001", 2, Decimal("59.00"), Decimal("118.00")),
        ("1203459902", "TD-SKU-0010", 1, Decimal("45.00"), Decimal("45.00")),
    ]
    assert order.buyer_message == "请尽快发货，谢谢！"
    assert order.tags == []
    assert validate_order(order) == []


def test_receiver_keeps_the_ciphertext_and_is_protected(spec, doc):
    receiver = apply(spec, doc).value.receiver
    assert receiver.protected
    assert receiver.name == doc["receiver_name"] and receiver.mobile == doc["receiver_phone"]
    assert receiver.address.street == doc["receiver_address"]
    address = receiver.address
    assert (address.province, address.city, address.district) == ("浙江省", "杭州市", "西湖区")


def test_masked_values_when_pop_sends_no_ciphertext(spec, doc):
    doc.update(receiver_name="", receiver_phone="", receiver_address="", order_status=2)
    receiver = apply(spec, doc).value.receiver
    assert (receiver.name, receiver.mobile, receiver.address.street) == ("王*", "138****5678", "文***号")


@pytest.mark.parametrize(("changes", "status", "refund"), [
    ({}, "paid", "none"),
    ({"confirm_status": 0}, "pending_payment", "none"),
    ({"confirm_status": 2}, "cancelled", "none"),
    ({"refund_status": 2}, "refunding", "requested"),
    ({"refund_status": 3}, "refunding", "requested"),
    ({"refund_status": 4}, "cancelled", "refunded"),
    ({"order_status": 2}, "shipped", "none"),
    ({"order_status": 2, "refund_status": 2}, "shipped", "requested"),
    ({"order_status": 3}, "completed", "none"),
    ({"trade_type": 1, "confirm_status": 0, "step_order_info": {"step_trade_status": 0}}, "pending_payment", "none"),
    ({"trade_type": 1, "confirm_status": 0, "step_order_info": {"step_trade_status": 1}}, "deposit_paid", "none"),
    ({"trade_type": 1, "step_order_info": {"step_trade_status": 2}}, "paid", "none"),
])
def test_status_table(spec, doc, changes, status, refund):
    doc.update(copy.deepcopy(changes))
    result = apply(spec, doc)
    assert result.ok, result.errors
    assert result.value.status.value == status
    assert {line.refund_status.value for line in result.value.lines} == {refund}


def test_presale_and_gift_markers(spec, doc):
    doc.update(is_pre_sale=1, pre_sale_time="2025-06-25 00:00:00",
               gift_list=[{"goods_id": 1, "goods_name": "赠品", "goods_count": 1, "outer_id": "GIFT-1"}])
    assert apply(spec, doc).value.tags == ["presale", "gift"]
    doc.update(is_pre_sale=0, gift_list=[], trade_type=1, step_order_info={"step_trade_status": 2})
    assert [t.value for t in apply(spec, doc).value.tags] == ["presale"]


def test_sku_falls_back_to_the_cross_reference_of_sku_id(spec, doc):
    doc["item_list"][0]["outer_id"] = ""
    assert apply(spec, doc, sku={"1203458871": "TD-SKU-0001"}).value.lines[0].sku == "TD-SKU-0001"
    result = apply(spec, doc)
    assert not result.ok and any(e.target == "lines[0].sku" for e in result.errors)


def test_bad_amount_is_an_error_naming_the_field(spec, doc):
    doc["pay_amount"] = "166,00"
    result = apply(spec, doc)
    assert not result.ok and [e.target for e in result.errors] == ["total"]


def test_unknown_status_combination_is_an_error(spec, doc):
    doc["order_status"] = 9
    result = apply(spec, doc)
    assert not result.ok and result.errors[0].target == "status"
