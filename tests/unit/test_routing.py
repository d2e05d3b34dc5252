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


# -- one implementation: the preview (Flow.route_for) and production (resolve_route) agree ---------
import pytest  # noqa: E402

from flows.model import FlowError, parse_flow  # noqa: E402
from workflows.order.routing import RoutingError, order_facts  # noqa: E402

RULES = [
    # timestamps are CEL timestamps, as documented in docs/flows.md
    ("order.created_at > timestamp('2026-11-11T00:00:00+08:00')", "after-1111"),
    ("order.created_at >= timestamp('2026-11-09T00:00:00Z') && order.created_at < timestamp('2026-11-10T00:00:00Z')",
     "day-before"),
    # money compares with doubles and with ints, and does arithmetic as doubles
    ("order.total > 5000.0", "big-double"),
    ("order.total > 4000", "big-int"),
    ("order.lines.exists(l, l.unit_price >= 300.0 && l.quantity > 1)", "line-money"),
    ("order.shipping_fee > 0 && order.total - order.shipping_fee >= 99.5", "net"),
    # lists: skus, lines, tags
    ("'TD-SKU-0042' in order.skus", "sku"),
    ("size(order.lines) > 1", "many-lines"),
    ("'presale' in order.tags", "presale"),
    ("order.status == 'paid' && order.channel == 'taobao'", "enum"),
]


def full_order(created_at: str, *, total: str = "100.00", skus: tuple[str, ...] = ("TD-SKU-0001",),
               quantity: int = 1, tags: tuple[str, ...] = (), shipping: str = "0.00") -> Order:
    price = str(round(float(total) / (quantity * len(skus)), 2))
    return Order.model_validate({
        "channel": "taobao", "shop": "s", "external_id": "1", "status": "paid",
        "created_at": created_at, "modified_at": created_at, "item_total": total, "total": total,
        "shipping_fee": shipping, "tags": list(tags),
        "receiver": {"name": "王五", "mobile": "13800138000",
                     "address": {"province": "广东省", "city": "x", "street": "y"}},
        "lines": [{"line_id": str(i), "sku": sku, "quantity": quantity, "unit_price": price,
                   "total": str(round(float(price) * quantity, 2))} for i, sku in enumerate(skus)],
    })


CASES = [
    (full_order("2026-11-11T00:00:01+08:00"), "after-1111"),
    (full_order("2026-11-11T00:00:00+08:00"), "enum"),  # not after: the boundary itself
    (full_order("2026-11-09T12:00:00+00:00"), "day-before"),
    (full_order("2026-11-01T00:00:00+08:00", total="6000.00"), "big-double"),
    (full_order("2026-11-01T00:00:00+08:00", total="4500.00"), "big-int"),
    (full_order("2026-11-01T00:00:00+08:00", total="110.00", shipping="10.00"), "net"),
    (full_order("2026-11-01T00:00:00+08:00", total="90.00", shipping="10.00"), "enum"),
    (full_order("2026-11-01T00:00:00+08:00", total="700.00", quantity=2), "line-money"),
    (full_order("2026-11-01T00:00:00+08:00", total="50.00", skus=("TD-SKU-0042",)), "sku"),
    (full_order("2026-11-01T00:00:00+08:00", total="50.00", skus=("TD-SKU-0001", "TD-SKU-0002")), "many-lines"),
    (full_order("2026-11-01T00:00:00+08:00", total="50.00", tags=("presale",)), "presale"),
]


def rules_flow() -> dict:
    return {"name": "rules", "sources": [{"connector": "shop"}],
            "targets": {"wms": "default", "erp": "erp", "routes": [{"when": w, "wms": t} for w, t in RULES]}}


@pytest.mark.parametrize(("canonical", "expected"), CASES, ids=[c[1] + f"-{i}" for i, c in enumerate(CASES)])
def test_preview_and_production_route_every_rule_kind_alike(canonical: Order, expected: str) -> None:
    flow = parse_flow(rules_flow())
    route = Route(wms="default", erp="erp", rules=flow.route_rules())
    production = resolve_route(route, canonical)  # what the prepare activity does after mapping
    as_stored = resolve_route(route, canonical.model_dump(mode="json"))  # the store's JSON dump
    preview = flow.route_for(canonical)
    preview_json = flow.route_for(canonical.model_dump(mode="json"))
    assert production.wms == as_stored.wms == preview[0] == preview_json[0] == expected


def test_facts_types() -> None:
    facts = order_facts(full_order("2026-11-11T00:00:00+08:00", total="129.50"))
    assert facts["created_at"].isoformat() == "2026-11-10T16:00:00+00:00"
    assert facts["total"] == 129.5 and isinstance(facts["lines"][0]["unit_price"], float)
    assert facts["skus"] == ["TD-SKU-0001"] and facts["status"] == "paid" and type(facts["status"]) is str
    # a partial dict (a preview of a few fields) gets the same types
    partial = order_facts({"total": "12.5", "created_at": "2026-11-11T00:00:00Z", "lines": [{"sku": "A"}]})
    assert partial["total"] == 12.5 and partial["created_at"].year == 2026 and partial["skus"] == ["A"]


def test_a_rule_that_cannot_be_evaluated_is_named_in_both_entry_points() -> None:
    flow = parse_flow({**rules_flow(), "targets": {"wms": "w", "routes": [
        {"when": "order.total > 1.0", "wms": "x"}, {"when": "order.nothing == 1", "wms": "y"}]}})
    route = Route(wms="w", rules=flow.route_rules())
    cheap = full_order("2026-11-01T00:00:00+08:00", total="0.50")
    with pytest.raises(RoutingError, match=r"targets\.routes\[1\]\.when") as production:
        resolve_route(route, cheap)
    assert production.value.index == 1
    with pytest.raises(FlowError, match=r"targets\.routes\[1\]\.when"):
        flow.route_for(cheap)
    assert resolve_route(route, full_order("2026-11-01T00:00:00+08:00", total="5.00")).wms == "x"  # never reaches [1]


def test_erp_only_route_keeps_no_wms() -> None:
    route = Route(wms=None, erp="k3", rules=[RouteRule(when="order.total > 10.0", erp="k3-vip")])
    chosen = resolve_route(route, full_order("2026-11-01T00:00:00+08:00", total="50.00"))
    assert chosen.wms is None and chosen.erp == "k3-vip"
