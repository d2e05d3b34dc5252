"""The canonical model: UTC normalisation, Decimal money, validation problems, JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from canonical import Order, validate_order
from canonical.schema import export_schemas

GMT8 = timezone(timedelta(hours=8))


def make_order(**overrides: object) -> Order:
    data: dict = {
        "channel": "taobao", "shop": "shop-a", "external_id": "1001", "status": "paid",
        "created_at": datetime(2026, 11, 11, 0, 0, 5, tzinfo=GMT8),
        "modified_at": datetime(2026, 11, 11, 0, 1, tzinfo=GMT8),
        "item_total": "199.00", "total": "189.00", "discount_total": "10.00",
        "receiver": {"name": "张三", "mobile": "13800138000",
                     "address": {"province": "浙江省", "city": "杭州市", "district": "余杭区",
                                 "street": "文一西路969号"}},
        "lines": [{"line_id": "1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": "199.00", "total": "189.00"}],
    }
    data.update(overrides)
    return Order.model_validate(data)


def test_timestamps_are_stored_in_utc_and_money_is_decimal() -> None:
    order = make_order()
    assert order.created_at == datetime(2026, 11, 10, 16, 0, 5, tzinfo=UTC)
    assert order.created_at.utcoffset() == timedelta(0)
    assert isinstance(order.total, Decimal) and order.total == Decimal("189.00")
    assert order.key == "taobao:shop-a:1001"
    assert json.loads(order.model_dump_json())["total"] == "189.00"


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        make_order(created_at=datetime(2026, 11, 11))


def test_an_order_needs_lines() -> None:
    with pytest.raises(ValidationError):
        make_order(lines=[])


def test_validation_flags_incomplete_address_and_bad_mobile_with_masking() -> None:
    order = make_order(receiver={"name": "李四", "mobile": "1380013",
                                 "address": {"province": "浙江省", "city": "杭州市", "street": ""}})
    problems = {p.field: p for p in validate_order(order)}
    assert "receiver.address.street" in problems
    assert problems["receiver.mobile"].value == "138****13"
    assert validate_order(make_order()) == []


def test_schema_export(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path)
    schema = json.loads((tmp_path / "order.schema.json").read_text())
    assert len(paths) == 4 and "lines" in schema["properties"]
