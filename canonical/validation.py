"""Business validation of a canonical order, beyond what the types enforce.

An order that fails here is parked in quarantine with these problems as its reason; each problem
names the field so an IT engineer can see what to fix (the source data or the mapping).
"""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel

from canonical.models import Order
from canonical.redact import mask

_CN_MOBILE = re.compile(r"^(\+?86)?1[3-9]\d{9}$")
_ANY_PHONE = re.compile(r"^\+?[\d\- ()]{6,20}$")


class Problem(BaseModel):
    field: str
    message: str
    value: str | None = None


def _masked(value: str) -> str:
    """Phones are personal data: shown as the one redaction policy shows them (``138****78``), so a
    problem's value reads the same in quarantine, logs and the API."""
    return mask(value)


def validate_order(order: Order) -> list[Problem]:
    problems: list[Problem] = []
    addr = order.receiver.address
    for name in ("province", "city", "street"):
        if not getattr(addr, name):
            problems.append(Problem(field=f"receiver.address.{name}", message="address is incomplete"))
    if not order.receiver.name:
        problems.append(Problem(field="receiver.name", message="receiver name is empty"))
    mobile = order.receiver.mobile.replace(" ", "")
    phone = order.receiver.phone
    if order.receiver.protected:  # ciphertext or masked: the platform vouches for the format
        if not (mobile or phone):
            problems.append(Problem(field="receiver.mobile", message="no phone number (encrypted or not)"))
    elif addr.country == "CN":
        if mobile and not _CN_MOBILE.match(mobile):
            problems.append(
                Problem(field="receiver.mobile", message="not a valid mainland mobile", value=_masked(mobile))
            )
        if not mobile and not (phone and _ANY_PHONE.match(phone)):
            problems.append(Problem(field="receiver.mobile", message="no valid phone number"))
    line_sum = sum((line.total for line in order.lines), Decimal("0"))
    if line_sum > order.total + order.discount_total + Decimal("0.01") and line_sum - order.total > 1:
        # Lines may carry order-level discounts or not depending on the channel; only flag the
        # impossible case where the lines cost more than everything paid plus every discount.
        problems.append(
            Problem(
                field="total",
                message=f"line totals {line_sum} exceed paid total {order.total} + discounts",
                value=str(order.total),
            )
        )
    return problems
