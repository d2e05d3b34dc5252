"""Choosing an order's targets by a flow's routing rules (CEL, the same language as mappings).

This is the **one** routing implementation: the prepare activity calls :func:`resolve_route` right
after mapping (the rules look at the canonical order: province, amount, SKUs...), and the flow
preview (``flows.Flow.route_for``, ``tongdao`` previews) calls the same function, so a rule that
matches in a preview matches in production and vice versa. They used to disagree: production
handed CEL the order's JSON dump, where ``created_at`` is a string, so the documented
``order.created_at > timestamp(...)`` raised "No such overload" on every real order.

What a condition sees as ``order`` (:func:`order_facts`):

* timestamps (``created_at``, ``modified_at``, ``paid_at``) are CEL timestamps;
* money (``total``, ``item_total``, ``discount_total``, ``shipping_fee``, and each line's
  ``unit_price``, ``discount``, ``total``) are doubles; CEL compares doubles with ints, so
  ``order.total > 1000`` and ``order.total > 1000.0`` both work (arithmetic needs doubles:
  ``order.total - order.shipping_fee > 10.0``);
* enums are their lower-case values, ``lines`` a list of line maps, ``tags`` a list of strings,
  and ``skus`` the sorted distinct SKU codes (``"TD-SKU-0001" in order.skus``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from canonical import Order
from mappings.expr import ExpressionError, compile_expr, to_cel
from workflows.models import Route

__all__ = ["RoutingError", "first_match", "order_facts", "resolve_route"]

MONEY = frozenset({"item_total", "discount_total", "shipping_fee", "total"})
LINE_MONEY = frozenset({"unit_price", "discount", "total"})
TIMESTAMPS = frozenset({"created_at", "modified_at", "paid_at"})


class RuleLike(Protocol):
    """A routing rule as both the flow model and the workflow route carry it."""

    when: str


class RoutingError(ValueError):
    """A rule's condition could not be evaluated on this order; ``index`` names the rule.

    The message names the rule as it is written in the flow file (``targets.routes[1].when``), so
    an order parked at the ``routing`` stage says which line to fix.
    """

    def __init__(self, index: int, cause: ExpressionError) -> None:
        self.index = index
        self.cause = cause
        super().__init__(f"targets.routes[{index}].when: {cause}")


def order_facts(order: Order | Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """The order as routing conditions see it (see the module docstring), ready for CEL.

    A canonical ``Order`` is taken as it is; a dict (a JSON dump of an order, e.g. from the store
    or a preview file) is read back through the canonical model so that its amounts and timestamps
    get their types. A dict that is not a whole order (a preview of a few fields) is converted
    field by field with the same rules, so previews of partial orders behave like real ones.
    """
    if isinstance(order, Mapping) and not isinstance(order, BaseModel):
        try:
            order = Order.model_validate(dict(order))
        except ValidationError:
            return _partial_facts(order)
    if isinstance(order, Order):
        facts: dict[str, Any] = to_cel(order.model_dump())
        facts["skus"] = order.skus
        return facts
    if isinstance(order, BaseModel):
        return order_facts(order.model_dump())
    raise TypeError(f"an order is a canonical Order or a dict, not {type(order).__name__}")


def _number(value: Any) -> Any:
    """Money as a double, whatever it was written as (Decimal, int, "129.0000")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except InvalidOperation:
            return value
    return value


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _partial_facts(order: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = to_cel(dict(order))
    for name in MONEY & facts.keys():
        facts[name] = _number(facts[name])
    for name in TIMESTAMPS & facts.keys():
        facts[name] = _timestamp(facts[name])
    lines = facts.get("lines")
    if isinstance(lines, list):
        for line in lines:
            if isinstance(line, dict):
                for name in LINE_MONEY & line.keys():
                    line[name] = _number(line[name])
        if "skus" not in facts:
            facts["skus"] = sorted({str(line["sku"]) for line in lines if isinstance(line, dict) and "sku" in line})
    return facts


def first_match(rules: Sequence[RuleLike], order: Order | Mapping[str, Any]) -> int | None:
    """Index of the first rule whose condition is true for ``order``; None when none is.

    Later rules are not evaluated once one matches (a later rule may rely on a guard of an earlier
    one). A condition that cannot be evaluated raises :class:`RoutingError` naming the rule.
    """
    if not rules:
        return None
    facts = {"order": order_facts(order)}
    for index, rule in enumerate(rules):
        try:
            if compile_expr(rule.when).evaluate_bool(facts):
                return index
        except ExpressionError as exc:
            raise RoutingError(index, exc) from None
    return None


def resolve_route(route: Route, order: Order | Mapping[str, Any]) -> Route:
    """Apply the first matching rule; no rule matching keeps the route's defaults.

    The result has no rules left, so that a route recorded after routing says where the order went
    rather than how it might go.
    """
    if not route.rules:
        return route
    index = first_match(route.rules, order)
    if index is None:
        return route.model_copy(update={"rules": []})
    rule = route.rules[index]
    return route.model_copy(update={
        "wms": rule.wms or route.wms,
        "erp": rule.erp or route.erp,
        "context": {**route.context, **rule.context},
        "rules": [],
    })
