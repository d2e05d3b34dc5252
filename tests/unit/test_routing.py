"""Routing rules chosen after mapping (the by-province example)."""

from __future__ import annotations

from pathlib import Path

from canonical import Order
from flows.model import load_flow
from workflows.models import Route, RouteRule
from workflows.order.routing import resolve_route

ROOT = Path(__file__).parents[2]


def order(province: str, total: str = "100.00") -> Order:
    return Order.model_validate({
        "channel": "taobao", "shop": "s", "external_id": "1", "status": "paid",
        "created_at": "2026-11-11T00:00:00+08:00", "modified_at": "2026-11-11T00:00:00+08:00",
        "item_total": total, "total": total,
        "receiver": {"name": "王五", "mobile": "13800138000",
                     "address": {"province": province, "city": "x", "street": "y"}},
        "lines": [{"line_id": "1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": total, "total": total}],
    })


def test_by_province_example_routes_east_china_to_shanghai() -> None:
    flow = load_flow(ROOT / "examples/flows/by-province.yaml")
    route = Route(wms=flow.targets.wms or "", erp=flow.targets.erp, context=dict(flow.context),
                  rules=[RouteRule(when=r.when, wms=r.wms, erp=r.erp, context=dict(r.context))
                         for r in flow.targets.routes])
    east = resolve_route(route, order("浙江省"))
    south = resolve_route(route, order("广东省"))
    assert east.wms == "qimen-sh" and east.context["warehouse_code"] == "WH-SH01"
    assert south.wms == "qimen-gz" and south.rules == []
    assert flow.route_for(order("浙江省"))[0] == east.wms  # the model's preview agrees with the runtime


def test_amounts_are_numbers_in_rules() -> None:
    route = Route(wms="small", rules=[RouteRule(when="order.total > 5000.0", wms="big")])
    assert resolve_route(route, order("x", "6000.00")).wms == "big"
    assert resolve_route(route, order("x", "60.00")).wms == "small"
