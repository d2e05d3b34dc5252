"""The mapping engine: shipped specs, error reporting, spec validation, the expression adapter."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical import Order
from canonical.validation import validate_order
from mappings import (
    DictLookups,
    ExpressionCompileError,
    ExpressionEvalError,
    MappingSpec,
    SpecError,
    SpecNotFoundError,
    compile_expr,
    load_spec,
    parse_spec,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SKUS = DictLookups({"sku": {"4901234567890": "SKU-TEE-BLK-M"}})  # the jacket has no entry: outer_sku_id


@pytest.fixture
def trade() -> dict[str, Any]:
    return json.loads((FIXTURES / "taobao_trade.json").read_text())


@pytest.fixture
def taobao() -> MappingSpec:
    return load_spec("taobao_order")


@pytest.fixture
def order(taobao: MappingSpec, trade: dict[str, Any]) -> Order:
    result = taobao.apply(trade, SKUS, {"shop": "tongdao-flagship"})
    assert result.ok, result.errors
    return result.value


def errors_by_target(result: Any) -> dict[str, Any]:
    return {e.target: e for e in result.errors}


# --------------------------------------------------------------------------- taobao_order


def test_taobao_trade_maps_to_the_canonical_order(order: Order) -> None:
    assert isinstance(order, Order)
    assert (order.channel.value, order.shop, order.external_id) == ("taobao", "tongdao-flagship", "3912345678901234567")
    assert order.key == "taobao:tongdao-flagship:3912345678901234567"
    assert order.status.value == "paid"
    # "yyyy-MM-dd HH:mm:ss" in GMT+8 → UTC
    assert order.created_at == datetime(2026, 11, 10, 16, 0, 5, tzinfo=UTC)
    assert order.modified_at == datetime(2026, 11, 10, 16, 1, 12, tzinfo=UTC)
    assert order.paid_at == datetime(2026, 11, 10, 16, 0, 41, tzinfo=UTC)
    assert order.created_at.utcoffset().total_seconds() == 0
    assert (order.total, order.item_total, order.shipping_fee, order.discount_total) == (
        Decimal("1268.00"), Decimal("1298.00"), Decimal("10.00"), Decimal("40.00"))
    assert isinstance(order.total, Decimal) and order.currency == "CNY"
    assert order.buyer.nick == "t**_buyer"
    receiver = order.receiver
    assert (receiver.name, receiver.mobile, receiver.phone) == ("王小明", "13812345678", "")
    assert receiver.address.model_dump() == {
        "country": "CN", "province": "浙江省", "city": "杭州市", "district": "西湖区", "town": "文新街道",
        "street": "文三路 90 号 东部软件园 1 号楼 501", "postal_code": "310012"}
    first, second = order.lines
    assert first.model_dump() == {
        "line_id": "3912345678901234568", "sku": "SKU-TEE-BLK-M", "external_sku_id": "4901234567890",
        "title": "通道 纯棉T恤 黑色 M", "quantity": 2, "unit_price": Decimal("199.00"),
        "discount": Decimal("20.00"), "total": Decimal("378.00"), "is_gift": False, "refund_status": "none"}
    assert second.sku == "TD-JKT-NAVY-L"  # no cross-reference: the merchant's outer_sku_id
    assert (second.quantity, second.unit_price, second.total) == (1, Decimal("900.00"), Decimal("880.00"))
    assert order.tags == [] and order.buyer_message == "请尽快发货，谢谢"


def test_channel_and_shop_come_from_context_or_the_trade(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    plain = taobao.apply(trade, SKUS).value
    assert (plain.channel.value, plain.shop) == ("taobao", "tongdao旗舰店")
    tmall = taobao.apply(trade, SKUS, {"channel": "tmall", "shop": "tm-shop"}).value
    assert (tmall.channel.value, tmall.shop) == ("tmall", "tm-shop")


def test_presale_and_cod_tags(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade |= {"step_trade_status": "FRONT_PAID_FINAL_NOPAID", "type": "cod"}
    assert [t.value for t in taobao.apply(trade, SKUS).value.tags] == ["presale", "cod"]
    trade["step_trade_status"] = ""
    assert [t.value for t in taobao.apply(trade, SKUS).value.tags] == ["cod"]


@pytest.mark.parametrize(("status", "expected"), [
    ("TRADE_NO_CREATE_PAY", "pending_payment"), ("WAIT_BUYER_PAY", "pending_payment"),
    ("PAY_PENDING", "pending_payment"), ("WAIT_PRE_AUTH_CONFIRM", "pending_payment"),
    ("PAID_FORBID_CONSIGN", "pending_payment"), ("WAIT_SELLER_SEND_GOODS", "paid"),
    ("SELLER_CONSIGNED_PART", "partially_shipped"), ("WAIT_BUYER_CONFIRM_GOODS", "shipped"),
    ("TRADE_BUYER_SIGNED", "shipped"), ("TRADE_FINISHED", "completed"), ("TRADE_CLOSED", "cancelled"),
    ("TRADE_CLOSED_BY_TAOBAO", "cancelled"),
])
def test_trade_statuses(taobao: MappingSpec, trade: dict[str, Any], status: str, expected: str) -> None:
    trade["status"] = status
    assert taobao.apply(trade, SKUS).value.status.value == expected


@pytest.mark.parametrize(("status", "step", "expected"), [
    ("WAIT_BUYER_PAY", "FRONT_NOPAID_FINAL_NOPAID", "pending_payment"),  # nothing paid yet
    ("WAIT_BUYER_PAY", "FRONT_PAID_FINAL_NOPAID", "deposit_paid"),  # deposit in, balance due
    ("TRADE_NO_CREATE_PAY", "FRONT_PAID_FINAL_NOPAID", "deposit_paid"),
    ("WAIT_SELLER_SEND_GOODS", "FRONT_PAID_FINAL_PAID", "paid"),  # balance paid: an ordinary paid trade
    ("TRADE_CLOSED_BY_TAOBAO", "FRONT_PAID_FINAL_NOPAID", "cancelled"),  # balance never paid: closed wins
    ("SELLER_CONSIGNED_PART", "FRONT_PAID_FINAL_PAID", "partially_shipped"),
    ("WAIT_BUYER_PAY", "", "pending_payment"),
])
def test_presale_steps(taobao: MappingSpec, trade: dict[str, Any], status: str, step: str, expected: str) -> None:
    trade |= {"status": status, "type": "step", "step_trade_status": step, "step_paid_fee": "100.00"}
    order = taobao.apply(trade, SKUS).value
    assert order.status.value == expected
    assert [t.value for t in order.tags] == (["presale"] if step else [])


@pytest.mark.parametrize(("refund_status", "expected"), [
    ("SUCCESS", "refunded"), ("WAIT_SELLER_AGREE", "requested"), ("WAIT_BUYER_RETURN_GOODS", "requested"),
    ("WAIT_SELLER_CONFIRM_GOODS", "requested"), ("NO_REFUND", "none"), ("CLOSED", "none"),
    ("SELLER_REFUSE_BUYER", "none"), (None, "none"), ("", "none"),
])
def test_line_refund_statuses(taobao: MappingSpec, trade: dict[str, Any], refund_status: str | None,
                              expected: str) -> None:
    line = trade["orders"]["order"][1]
    if refund_status is None:
        del line["refund_status"]
    else:
        line["refund_status"] = refund_status
    first, second = taobao.apply(trade, SKUS).value.lines
    assert (first.refund_status.value, second.refund_status.value) == ("none", expected)


def test_unknown_line_refund_status_is_an_error(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade["orders"]["order"][0]["refund_status"] = "REFUND_TELEPORTED"
    error = errors_by_target(taobao.apply(trade, SKUS))["lines[0].refund_status"]
    assert error.source_path == "orders.order[0].refund_status" and error.value == "REFUND_TELEPORTED"


def test_bad_decimal_names_target_source_and_value(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade["payment"] = "12,30"
    result = taobao.apply(trade, SKUS)
    assert not result.ok and result.value is None
    assert len(result.errors) == 1  # the model's "total is required" is not reported twice
    error = result.errors[0]
    assert (error.target, error.source_path, error.value) == ("total", "payment", "12,30")
    assert "decimal" in error.message


def test_all_errors_are_collected(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade |= {"payment": "abc", "status": "NOPE", "created": "yesterday"}
    trade["orders"]["order"][0]["num"] = "two"
    assert set(errors_by_target(taobao.apply(trade, SKUS))) == {"total", "status", "created_at", "lines[0].quantity"}


def test_unknown_sku_without_fallback_fails_at_the_line(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade["orders"]["order"][1]["outer_sku_id"] = ""
    error = errors_by_target(taobao.apply(trade, SKUS))["lines[1].sku"]
    assert error.source_path == "orders.order[1].sku_id" and error.value == "4901234567891"
    assert "'sku' cross-reference" in error.message and "orders.order[1].outer_sku_id" in error.message

    strict = parse_spec("""
target: dict
lookups: [sku]
fields:
  lines:
    each: orders.order
    fields:
      sku: {path: outer_sku_id, lookup: sku}
""")
    result = strict.apply(trade, SKUS)  # line 1's outer_sku_id is empty: nothing to look up, not required
    assert [(e.target, e.source_path, e.value) for e in result.errors] == [
        ("lines[0].sku", "orders.order[0].outer_sku_id", "TD-TEE-BLK-M")]
    assert "no 'sku' cross-reference for 'TD-TEE-BLK-M'" in result.errors[0].message
    missing_table = strict.apply(trade, DictLookups({}))
    assert "lookup table 'sku' is not loaded" in missing_table.errors[0].message


@pytest.mark.parametrize(("on_missing", "expected"), [("keep", "TD-TEE-BLK-M"), ("null", None)])
def test_lookup_on_missing(trade: dict[str, Any], on_missing: str, expected: str | None) -> None:
    spec = parse_spec(f"""
target: dict
lookups: [sku]
fields:
  sku: {{path: "orders.order[0].outer_sku_id", lookup: sku, on_missing: {on_missing}}}
""")
    result = spec.apply(trade, SKUS)
    assert result.ok and result.value.get("sku") == expected


def test_enum_miss_names_the_value(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade["status"] = "TRADE_TELEPORTED"
    error = errors_by_target(taobao.apply(trade, SKUS))["status"]
    # the status goes through the presale expression; the value is shown in clear (not personal data)
    assert error.source_path.startswith("expr: has(root.step_trade_status)") and error.value == "TRADE_TELEPORTED"
    assert "unknown value 'TRADE_TELEPORTED'" in error.message and "WAIT_BUYER_PAY" in error.message
    spec = parse_spec("target: dict\nfields:\n  s: {path: s, enum: {A: a}, enum_default: other}\n")
    assert spec.apply({"s": "B"}).value == {"s": "other"}


def test_model_errors_are_translated_with_source_paths(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    trade["orders"]["order"][1]["num"] = 0
    trade["post_fee"] = "-5.00"
    errors = errors_by_target(taobao.apply(trade, SKUS))
    assert errors["lines[1].quantity"].source_path == "orders.order[1].num"
    assert errors["lines[1].quantity"].value == "0" and "greater than 0" in errors["lines[1].quantity"].message
    assert errors["shipping_fee"].source_path == "post_fee" and errors["shipping_fee"].value == "-5.00"
    trade["orders"]["order"] = []
    assert errors_by_target(taobao.apply(trade, SKUS))["lines"].source_path == "orders.order"
    assert taobao.source_path_for(("receiver", "address", "street")) == "receiver_address"


def masked_trade() -> dict[str, Any]:
    """A fullinfo trade for an app on TOP's privacy scheme: receiver masked (脱敏) plus Trade.oaid."""
    return json.loads((FIXTURES / "taobao_trade_masked.json").read_text())


def test_masked_receiver_with_oaid_is_protected_and_kept_as_given(taobao: MappingSpec) -> None:
    result = taobao.apply(masked_trade(), SKUS, {"shop": "tongdao-flagship"})
    assert result.ok, result.errors
    receiver = result.value.receiver
    assert receiver.protected
    assert (receiver.name, receiver.mobile, receiver.phone) == ("王**", "138****5678", "0571-****6666")
    assert (receiver.address.street, receiver.address.province, receiver.address.postal_code) == (
        "文三路***", "浙江省", "310012")
    assert "oaid" not in result.value.model_dump_json()  # the OAID stays in the raw trade, where decrypt reads it


def test_masked_receiver_passes_validation_clear_one_is_still_checked(taobao: MappingSpec,
                                                                       trade: dict[str, Any]) -> None:
    masked = taobao.apply(masked_trade(), SKUS).value
    assert not [p for p in validate_order(masked) if p.field.startswith("receiver")]
    trade["receiver_mobile"] = "138****5678"  # masked-looking, but no oaid: a clear receiver, checked
    clear = taobao.apply(trade, SKUS).value
    assert not clear.receiver.protected
    assert "receiver.mobile" in {p.field for p in validate_order(clear)}


@pytest.mark.parametrize("oaid", [None, ""])
def test_no_or_empty_oaid_is_a_clear_receiver(taobao: MappingSpec, trade: dict[str, Any], oaid: str | None) -> None:
    if oaid is not None:
        trade["oaid"] = oaid
    assert taobao.apply(trade, SKUS).value.receiver.protected is False


def test_filtered_lists_keep_source_indexes_in_errors(trade: dict[str, Any]) -> None:
    each = "    each: orders.order\n"
    text = Path(load_spec("taobao_order").source).read_text()
    text = text.replace(each, each + "    filter: \"item.refund_status != 'SUCCESS'\"\n")
    spec = parse_spec(text, name="taobao_order_without_refunds")
    trade["orders"]["order"][0]["refund_status"] = "SUCCESS"
    trade["orders"]["order"][1]["num"] = 0
    error = errors_by_target(spec.apply(trade, SKUS))["lines[0].quantity"]
    assert error.source_path == "orders.order[1].num"  # output line 0 is source line 1


def test_phones_and_names_are_masked_in_errors() -> None:
    spec = parse_spec("""
target: dict
fields:
  receiver:
    fields:
      mobile: {path: receiver_mobile, type: int}
      name: {path: receiver_name, enum: {x: y}}
  note: {path: note, type: int}
""")
    result = spec.apply({"receiver_mobile": "138-1234-5678", "receiver_name": "王小明同学", "note": "12,30"})
    errors = errors_by_target(result)
    assert errors["receiver.mobile"].value == "138****78"
    assert errors["receiver.name"].value == "****"  # too short to show any of it
    assert "王小明同学" not in errors["receiver.name"].message
    assert errors["note"].value == "12,30"  # not personal by its names


def test_when_conditions(trade: dict[str, Any]) -> None:
    spec = parse_spec("""
target: dict
fields:
  big: {const: true, when: "double(item.payment) > 1000.0"}
  small: {const: true, when: "double(item.payment) <= 1000.0"}
  zhejiang: {path: receiver_state, when: "root.receiver_state in ['浙江省', '江苏省']"}
  lines:
    each: orders.order
    fields:
      gift: {const: true, when: "item.price == '0.00'"}
      seq: {expr: "index + 1"}
""")
    trade["orders"]["order"][1]["price"] = "0.00"
    expected = {"big": True, "zhejiang": "浙江省", "lines": [{"seq": 1}, {"gift": True, "seq": 2}]}
    assert spec.apply(trade).value == expected
    not_a_condition = parse_spec("target: dict\nfields:\n  a: {const: 1, when: item.receiver_state}\n")
    error = not_a_condition.apply(trade).errors[0]
    assert error.target == "a" and "must be true or false" in error.message


def test_expressions_see_item_root_out_context_and_index(trade: dict[str, Any]) -> None:
    spec = parse_spec("""
target: dict
fields:
  paid: {path: payment, type: decimal}
  doubled: {expr: "out.paid * 2.0", type: decimal, scale: 2}
  label: {expr: "context.prefix + '-' + string(root.tid)"}
  warehouse: {var: route.warehouse, default: WH-DEFAULT}
  lines:
    each: orders.order
    filter: "item.sku_id != '4901234567890'"
    fields:
      parent: {path: $root.tid, type: string}
      n: {expr: "string(index + 1) + '/' + string(size(root.orders.order))"}
      title: {expr: "src.title.upperAscii()"}
""")
    result = spec.apply(trade, context={"prefix": "TD", "route": {"warehouse": "WH-HZ01"}})
    assert result.ok, result.errors
    assert result.value == {
        "paid": "1268.00", "doubled": "2536.00", "label": "TD-3912345678901234567", "warehouse": "WH-HZ01",
        "lines": [{"parent": "3912345678901234567", "n": "1/2", "title": "通道 羽绒服 藏青 L"}],
    }
    assert spec.source_path_for(("lines", 0, "parent")) == "tid"


def test_naive_time_without_zone_is_an_error() -> None:
    spec = parse_spec("target: dict\nfields:\n  at: {path: at, type: datetime}\n")
    assert "without a zone" in spec.apply({"at": "2026-11-11 00:00:05"}).errors[0].message
    assert spec.apply({"at": "2026-11-11T00:00:05+08:00"}).value == {"at": "2026-11-10T16:00:05+00:00"}
    parsed = parse_spec("target: dict\nfields:\n  at: {path: at, type: datetime, parse: '%d/%m/%Y %H:%M',"
                        " timezone: '+08:00', format: '%Y-%m-%dT%H:%M'}\n")
    assert parsed.apply({"at": "11/11/2026 08:30"}).value == {"at": "2026-11-11T08:30"}


def test_single_element_is_a_one_item_list_and_bad_payloads() -> None:
    spec = parse_spec("target: dict\nfields:\n  lines: {each: a.b, fields: {x: {path: x}}}\n")
    assert spec.apply({"a": {"b": {"x": 1}}}).value == {"lines": [{"x": 1}]}
    assert spec.apply({"a": {"b": "text"}}).errors[0].target == "lines"
    assert not spec.apply(["not", "a", "dict"]).ok  # type: ignore[arg-type]


# --------------------------------------------------------------------------- outbound specs


OUTBOUND_CONTEXT = {"outbound_code": "TD0000000001", "warehouse_code": "WH-HZ01", "owner_code": "TONGDAO",
                    "customer": "CUST-TAOBAO"}


def test_qimen_deliveryorder_document(order: Order) -> None:
    result = load_spec("qimen_deliveryorder").apply(order.model_dump(mode="json"), None, OUTBOUND_CONTEXT)
    assert result.ok, result.errors
    assert result.value == {
        "deliveryOrder": {
            "deliveryOrderCode": "TD0000000001", "orderType": "JYCK", "warehouseCode": "WH-HZ01",
            "sourcePlatformCode": "TB", "shopNick": "tongdao-flagship",
            "createTime": "2026-11-11 00:00:05", "placeOrderTime": "2026-11-11 00:00:05",
            "payTime": "2026-11-11 00:00:41", "operateTime": "2026-11-11 00:01:12",
            "totalAmount": "1268.00", "itemAmount": "1298.00", "discountAmount": "40.00", "freight": "10.00",
            "buyerNick": "t**_buyer", "logisticsCode": "SF",
            "receiverInfo": {"name": "王小明", "mobile": "13812345678", "tel": "", "province": "浙江省",
                             "city": "杭州市", "area": "西湖区", "town": "文新街道",
                             "detailAddress": "文三路 90 号 东部软件园 1 号楼 501", "zipCode": "310012"},
            "senderInfo": {"name": "Tongdao DC", "mobile": "4000000000", "province": "浙江省", "city": "杭州市",
                           "detailAddress": "Tongdao DC"},
        },
        "orderLines": [
            {"orderLineNo": "1", "sourceOrderCode": "3912345678901234567",
             "subSourceOrderCode": "3912345678901234568", "ownerCode": "TONGDAO", "itemCode": "SKU-TEE-BLK-M",
             "itemName": "通道 纯棉T恤 黑色 M", "planQty": 2, "retailPrice": "199.00", "actualPrice": "189.00"},
            {"orderLineNo": "2", "sourceOrderCode": "3912345678901234567",
             "subSourceOrderCode": "3912345678901234569", "ownerCode": "TONGDAO", "itemCode": "TD-JKT-NAVY-L",
             "itemName": "通道 羽绒服 藏青 L", "planQty": 1, "retailPrice": "900.00", "actualPrice": "880.00"},
        ],
    }
    json.dumps(result.value)  # JSON-ready: no Decimal or datetime left


def test_qimen_platform_codes_and_context_overrides(order: Order) -> None:
    spec = load_spec("qimen_deliveryorder")
    document = order.model_dump(mode="json") | {"channel": "tmall", "paid_at": None}
    value = spec.apply(document, None, OUTBOUND_CONTEXT | {"carrier_code": "ZTO"}).value
    assert value["deliveryOrder"]["sourcePlatformCode"] == "TM" and value["deliveryOrder"]["logisticsCode"] == "ZTO"
    assert "payTime" not in value["deliveryOrder"]
    other = spec.apply(order.model_dump(mode="json") | {"channel": "pinduoduo"}, None, OUTBOUND_CONTEXT).value
    assert other["deliveryOrder"]["sourcePlatformCode"] == "OTHER"
    missing = spec.apply(order.model_dump(mode="json"), None, {})
    assert [e.target for e in missing.errors] == ["deliveryOrder.deliveryOrderCode"]


def test_kingdee_sale_order_model(order: Order) -> None:
    result = load_spec("kingdee_sale_order").apply(order.model_dump(mode="json"), None, OUTBOUND_CONTEXT)
    assert result.ok, result.errors
    entry = {"FEntryTaxRate": 13, "FDeliveryDate": "2026-11-11 00:00:41"}
    assert result.value == {
        "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
        "FDate": "2026-11-11 00:00:05",
        "FSaleOrgId": {"FNumber": "100"},
        "FCustId": {"FNumber": "CUST-TAOBAO"},
        "FSaleOrderFinance": {"FSettleCurrId": {"FNumber": "PRE001"}},
        "FNote": "taobao tongdao-flagship 3912345678901234567",
        "FSaleOrderEntry": [
            {"FMaterialId": {"FNumber": "SKU-TEE-BLK-M"}, "FQty": 2, "FTaxPrice": "199.00", **entry},
            {"FMaterialId": {"FNumber": "TD-JKT-NAVY-L"}, "FQty": 1, "FTaxPrice": "900.00", **entry},
        ],
    }


def test_kingdee_currency_customer_lookup_and_gifts(order: Order) -> None:
    spec = load_spec("kingdee_sale_order")
    document = order.model_dump(mode="json") | {"currency": "USD"}
    document["lines"][1] |= {"is_gift": True, "unit_price": "0"}
    by_shop = DictLookups({"customer": {"tongdao-flagship": "CUST-TMALL-01"}})
    value = spec.apply(document, by_shop, {}).value
    assert value["FCustId"] == {"FNumber": "CUST-TMALL-01"}
    assert value["FSaleOrderFinance"]["FSettleCurrId"]["FNumber"] == "PRE007"
    assert value["FSaleOrderEntry"][1]["FIsFree"] is True and "FIsFree" not in value["FSaleOrderEntry"][0]
    unknown = spec.apply(order.model_dump(mode="json") | {"currency": "XAU"}, by_shop, {})
    assert errors_by_target(unknown)["FSaleOrderFinance.FSettleCurrId.FNumber"].value == "XAU"
    no_customer = errors_by_target(spec.apply(order.model_dump(mode="json"), DictLookups({}), {}))
    assert "customer" in no_customer["FCustId.FNumber"].message


# --------------------------------------------------------------------------- spec validation


def spec_issues(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return str(info.value)


def test_two_sources_in_one_field_name_the_field() -> None:
    message = spec_issues("target: dict\nfields:\n  receiver:\n    fields:\n      name: {path: a, const: b}\n")
    assert "receiver.name" in message and "2 value sources (path, const)" in message


def test_unknown_type_key_and_missing_source() -> None:
    message = spec_issues("target: dict\nfields:\n  total: {path: payment, type: money}\n"
                          "  shop: {pth: seller_nick}\n  x: {}\n  y: seller_nick\n")
    assert "total.type: Input should be 'string'" in message and "'money'" in message
    assert "shop: unknown key 'pth'" in message
    assert "x: no value source" in message
    assert "y: expected a rule like {path: ...}, got 'seller_nick'" in message


def test_bad_expressions_are_compile_errors_naming_the_field() -> None:
    message = spec_issues("target: dict\nfields:\n  tags: {expr: 'item.a >'}\n  t2: {expr: 'shout(item.a)'}\n"
                          "  t3: {const: 1, when: 'paymnet > 1'}\n")
    assert "tags: expr: Syntax error" in message and "(expression: item.a >)" in message
    assert "t2: expr: unknown function 'shout'" in message
    assert "t3: when: unknown name 'paymnet'" in message


def test_checks_against_the_target_model() -> None:
    message = spec_issues("""
target: canonical.Order
lookups: [sku]
fields:
  channel: {const: taobao}
  status: {path: status, enum: {X: payed}}
  receiver: {fields: {adress: {path: a}}}
  lines: {each: orders, fields: {sku: {path: s, lookup: skus}}}
  tags: {const: [presale, vip]}
""")
    for expected in (
        "status.enum[X]: 'payed' is not a valid OrderStatus",
        "receiver.adress: not a field of Receiver",
        "lines.sku.lookup: table 'skus' is not declared",
        "tags.const: 'vip' is not a valid OrderTag",
        "shop: required by Order but not mapped",
        "lines.quantity: required by OrderLine but not mapped",
    ):
        assert expected in message
    nope = spec_issues("target: canonical.Nope\nfields: {a: {const: 1}}\n")
    assert "target: 'canonical.Nope': canonical has no model 'Nope'" in nope
    assert "use dict or canonical" in spec_issues("target: os.system\nfields: {a: {const: 1}}\n")


def test_yaml_traps_and_other_rule_checks() -> None:
    assert "duplicate key 'a'" in spec_issues("target: dict\nfields:\n  a: {const: 1}\n  a: {const: 2}\n")
    no_is_text = parse_spec("target: dict\nfields:\n  c: {path: c, enum: {NO: norway, yes: y}}\n")
    assert no_is_text.apply({"c": "NO"}).value == {"c": "norway"}
    message = spec_issues("target: dict\nsource_timezone: Mars/Base\nfields:\n"
                          "  a: {path: 'x[', scale: 2}\n  b: {path: b, type: datetime, format: '.2f'}\n"
                          "  c: {path: c, timezone: Asia/Shanghai}\n")
    assert "unknown time zone 'Mars/Base'" in message
    assert "a: path: bad path" in message and "scale needs type: decimal" in message
    assert "b: format '.2f' for a datetime must be a strftime pattern" in message
    assert "c: timezone needs type: datetime or date" in message


# --------------------------------------------------------------------------- loading and hashing


def test_content_hash_is_stable_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "demo_spec.yaml"
    path.write_text("target: dict\nfields:\n  a: {const: 1}\n")
    first, again = load_spec(path), load_spec(str(path))
    assert first is again  # compiled once, cached by content
    assert first.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.short_hash == first.content_hash[:12] and first.name == "demo_spec"
    path.write_text("target: dict\nfields:\n  a: {const: 2}\n")
    changed = load_spec(path)
    assert changed.content_hash != first.content_hash and changed.apply({}).value == {"a": 2}


def test_shipped_specs_load_by_name() -> None:
    for name in ("taobao_order", "qimen_deliveryorder", "kingdee_sale_order"):
        spec = load_spec(name)
        assert spec.name == name and len(spec.content_hash) == 64
    assert load_spec("taobao-order") is load_spec("taobao_order")
    assert load_spec("taobao_order").target == "canonical.Order"
    with pytest.raises(SpecNotFoundError, match="available: .*taobao_order"):
        load_spec("no_such_spec")


# --------------------------------------------------------------------------- the expression API


def test_compile_expr_is_cached_and_converts_python_types() -> None:
    expr = compile_expr("amount * 2.0 > 100.0 && at < timestamp('2027-01-01T00:00:00Z') && day.getFullYear() == 2026")
    assert compile_expr(expr.source) is expr
    assert expr.names == {"amount", "at", "day"}
    assert expr.evaluate({"amount": Decimal("50.01"), "at": datetime(2026, 11, 11), "day": date(2026, 11, 11)})
    assert compile_expr("[1, 2].map(x, x * 2)").evaluate({}) == [2, 4]
    assert compile_expr("t + duration('8h')").evaluate({"t": datetime(2026, 1, 1, tzinfo=UTC)}) == datetime(
        2026, 1, 1, 8, tzinfo=UTC)


def test_projection_reads_only_what_is_used_and_stays_correct() -> None:
    big = {f"k{i}": "v" for i in range(200)} | {"payment": "6000.00", "state": "广东省", "tags": ["a"]}
    expr = compile_expr("double(root.payment) > 5000.0 && has(root.state) && !has(root.missing)")
    assert expr.evaluate({"root": big}) is True
    assert compile_expr("size(root) > 200").evaluate({"root": big}) is True  # whole-variable use: passed whole
    assert compile_expr("root.tags.exists(t, t == 'a')").evaluate({"root": big}) is True


def test_expression_errors_carry_the_text() -> None:
    with pytest.raises(ExpressionCompileError, match=r"expression: 1 \+"):
        compile_expr("1 +")
    with pytest.raises(ExpressionEvalError, match="no such key: 'b'.*expression: a.b"):
        compile_expr("a.b").evaluate({"a": {}})
    with pytest.raises(ExpressionEvalError, match="unknown name 'a'"):
        compile_expr("a.b").evaluate({})
    with pytest.raises(ExpressionEvalError, match="coerce"):
        compile_expr("1 + 2.5").evaluate({})


def test_dict_lookups() -> None:
    lookups = DictLookups({"sku": {"1": "A"}})
    assert lookups.get("sku", "1") == "A" and lookups.get("sku", "2") is None and lookups.get("x", "1") is None
    assert lookups.has_table("sku") and not lookups.has_table("x") and lookups.tables == ["sku"]


def test_apply_does_not_modify_the_payload(taobao: MappingSpec, trade: dict[str, Any]) -> None:
    before = copy.deepcopy(trade)
    taobao.apply(trade, SKUS, {"shop": "s"})
    assert trade == before
