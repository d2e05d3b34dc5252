"""Choosing an order's targets by a flow's routing rules (CEL, the same language as mappings).

Runs inside the prepare activity, right after mapping, because the rules look at the canonical
order (province, amount, SKUs...). Money is given to expressions as numbers.
"""

from __future__ import annotations

from typing import Any

from canonical import Order
from mappings.expr import compile_expr
from workflows.models import Route


def order_facts(order: Order) -> dict[str, Any]:
    data = order.model_dump(mode="json")
    for name in ("item_total", "discount_total", "shipping_fee", "total"):
        data[name] = float(getattr(order, name))
    for line, src in zip(data["lines"], order.lines, strict=True):
        for name in ("unit_price", "discount", "total"):
            line[name] = float(getattr(src, name))
    data["skus"] = order.skus
    return data


def resolve_route(route: Route, order: Order) -> Route:
    """Apply the first matching rule; no rule matching keeps the route's defaults."""
    if not route.rules:
        return route
    facts = {"order": order_facts(order)}
    for rule in route.rules:
        if compile_expr(rule.when).evaluate_bool(facts):
            return route.model_copy(update={
                "wms": rule.wms or route.wms,
                "erp": rule.erp or route.erp,
                "context": {**route.context, **rule.context},
                "rules": [],
            })
    return route.model_copy(update={"rules": []})
