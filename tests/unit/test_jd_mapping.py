"""The jd_order spec on a JOS orderInfo fixture.

tests/fixtures/jd_order.json is shaped after the orderInfo structure of jingdong.pop.order.enSearch /
enGet (field names and meanings as JOS documents them, mirrored in github.com/XiBao/jos
api/order/order.interface.go): amounts as strings, GMT+8 times, ``paymentConfirmTime`` set,
``orderEndTime`` "0001-01-01 00:00:00" (not finished), the consignee's fullname/mobile/telephone/
fullAddress as TDE ciphertext (made with a test key) and the region clear. JOS publishes no full
example answer we could quote, so the values are ours.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from canonical import OrderStatus
from canonical.validation import validate_order
from mappings import DictLookups, load_spec

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "jd_order.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def spec():
    return load_spec("jd_order")


def test_fixture_maps_to_a_valid_order(spec):
    result = spec.apply(FIXTURE, context={"shop": "jd-flagship"})
    assert result.ok, result.errors
    order = result.value
    assert order.channel.value == "jd" and order.shop == "jd-flagship" and order.external_id == "300123456789"
    assert order.status is OrderStatus.PAID
    assert order.created_at == datetime(2026, 11, 10, 16, 0, 5, tzinfo=UTC)
    assert order.paid_at == datetime(2026, 11, 10, 16, 0, 41, tzinfo=UTC)
    assert order.modified_at == datetime(2026, 11, 10, 16, 1, 12, tzinfo=UTC)
    assert (order.item_total, order.discount_total, order.shipping_fee, order.total) == (
        Decimal("1297.00"), Decimal("20.00"), Decimal("6.00"), Decimal("1283.00"))
    assert order.currency == "CNY" and order.buyer_message == "请尽快发货"
    assert order.buyer.id == "o1234567890abcdef"
    assert validate_order(order) == []


def test_receiver_is_kept_as_ciphertext_and_marked_protected(spec):
    receiver = spec.apply(FIXTURE, context={"shop": "s"}).value.receiver
    assert receiver.protected is True
    assert receiver.name == FIXTURE["consigneeInfo"]["fullname"] and receiver.name != "张三"
    assert receiver.mobile == FIXTURE["consigneeInfo"]["mobile"]
    assert (receiver.address.province, receiver.address.city, receiver.address.district, receiver.address.town) == (
        "北京", "北京市", "大兴区", "亦庄镇")
    assert receiver.address.street == FIXTURE["consigneeInfo"]["fullAddress"]


def test_lines_sku_price_quantity_and_gift(spec):
    lines = spec.apply(FIXTURE, context={"shop": "s"}).value.lines
    assert [line.line_id for line in lines] == ["100012043978", "100012043999", "100012044001"]
    assert [line.sku for line in lines] == ["TD-TEE-BLK-M", "TD-JKT-NAVY-L", "TD-GIFT-BAG"]  # outerSkuId
    assert [line.quantity for line in lines] == [2, 1, 1]
    assert [line.total for line in lines] == [Decimal("398.00"), Decimal("899.00"), Decimal("0.00")]
    assert [line.is_gift for line in lines] == [False, False, True]


def test_sku_cross_reference_wins_over_outer_sku_id(spec):
    lookups = DictLookups({"sku": {"100012043978": "SKU-TEE-BLK-M"}})
    lines = spec.apply(FIXTURE, lookups=lookups, context={"shop": "s"}).value.lines
    assert lines[0].sku == "SKU-TEE-BLK-M" and lines[1].sku == "TD-JKT-NAVY-L"


@pytest.mark.parametrize(("state", "status"), [
    ("WAIT_SELLER_STOCK_OUT", "paid"), ("WAIT_SELLER_DELIVERY", "paid"), ("WAIT_SEND_CODE", "paid"),
    ("LOCKED", "refunding"), ("PAUSE", "refunding"), ("POP_ORDER_PAUSE", "refunding"),
    ("WAIT_GOODS_RECEIVE_CONFIRM", "shipped"), ("FINISHED_L", "completed"), ("TRADE_CANCELED", "cancelled"),
])
def test_every_documented_state(spec, state, status):
    doc = copy.deepcopy(FIXTURE) | {"orderState": state}
    assert spec.apply(doc, context={"shop": "s"}).value.status.value == status


def test_unknown_state_is_an_error_naming_it(spec):
    result = spec.apply(copy.deepcopy(FIXTURE) | {"orderState": "NOT_A_STATE"}, context={"shop": "s"})
    assert not result.ok and any(e.target == "status" and "NOT_A_STATE" in (e.value or "") for e in result.errors)


def test_no_payment_time_placeholder_is_left_out(spec):
    doc = copy.deepcopy(FIXTURE) | {"paymentConfirmTime": "0001-01-01 00:00:00"}
    assert spec.apply(doc, context={"shop": "s"}).value.paid_at is None


def test_cash_on_delivery_tag_and_shop_fallback(spec):
    order = spec.apply(copy.deepcopy(FIXTURE) | {"payType": "1"}).value
    assert [t.value for t in order.tags] == ["cod"] and order.shop == "10086"


def test_bad_amount_is_reported_with_its_source(spec):
    result = spec.apply(copy.deepcopy(FIXTURE) | {"orderPayment": "1283,00"}, context={"shop": "s"})
    assert not result.ok and any(e.target == "total" and e.source_path == "orderPayment" for e in result.errors)
