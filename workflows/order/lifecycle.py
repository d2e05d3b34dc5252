"""The order's life as pure decisions: given what the platform says now (``OrderFacts``) and what
the hub already did (``LifecycleState``), what happens next. No I/O, so the workflow stays
deterministic and every rule is unit-tested on its own.

Canonical status → what the hub does (each platform's mapping translates its own statuses):

=================  ===========================  ==========================================
status             before release               after release (sent to WMS/ERP)
=================  ===========================  ==========================================
pending_payment    wait (durable timer, re-read) (cannot happen: ignored)
deposit_paid       wait for the balance         (cannot happen: ignored)
paid               release                      amend if lines/receiver changed
refunding          wait (a refund is open)      amend when a line is refunded
partially_shipped  not ours to ship: record     follow the packages
shipped/completed  not ours to ship: record     follow the packages
cancelled          close, nothing is ever sent  cancel in WMS and ERP (after-sales if too late)
=================  ===========================  ==========================================

A line with a refund *requested* holds an unreleased order (it may still be refunded); a line
*refunded* is left out of what ships. An order whose every line is refunded is cancelled.
"""

from __future__ import annotations

from enum import StrEnum

from workflows.models import OrderFacts

WAITING_PAYMENT = frozenset({"pending_payment", "deposit_paid"})
SHIPPED_ELSEWHERE = frozenset({"partially_shipped", "shipped", "completed"})


class Next(StrEnum):
    WAIT_PAYMENT = "wait_payment"
    WAIT_REFUND = "wait_refund_decision"
    RELEASE = "release"
    CLOSE = "close"  # never sent: nothing to undo
    NOT_OURS = "shipped_outside_hub"
    CANCEL = "cancel"  # sent: undo in WMS and ERP
    AMEND = "amend"
    NOTHING = "nothing"


class Outcome(StrEnum):
    """How an order's life ended (or where it stands), as the demo and the store report it."""

    RELEASED = "released"
    WAITING_PAYMENT = "waiting_payment"
    CLOSED_UNPAID = "closed_unpaid"
    CANCELLED_BEFORE_SHIPMENT = "cancelled_before_shipment"
    AFTER_SALES = "after_sales"
    SHIPPED = "shipped"
    SPLIT_SHIPMENTS = "split_shipments"
    SHIPPED_OUTSIDE_HUB = "shipped_outside_hub"
    CANCELLED_BY_WMS = "cancelled_by_wms"
    REJECTED = "rejected"


def is_cancelled(facts: OrderFacts) -> bool:
    return facts.status == "cancelled" or (facts.line_count > 0 and not facts.active_qty)


def before_release(facts: OrderFacts) -> Next:
    """What to do with an order the hub has not sent anywhere yet."""
    if is_cancelled(facts):
        return Next.CLOSE
    if facts.status in WAITING_PAYMENT:
        return Next.WAIT_PAYMENT
    if facts.status in SHIPPED_ELSEWHERE:
        return Next.NOT_OURS
    if facts.status == "refunding" or facts.requested_lines:
        return Next.WAIT_REFUND
    return Next.RELEASE


def after_release(facts: OrderFacts, sent_fingerprint: str) -> Next:
    """What a new version of an order already sent to the targets asks for."""
    if is_cancelled(facts):
        return Next.CANCEL
    if facts.fingerprint and sent_fingerprint and facts.fingerprint != sent_fingerprint:
        return Next.AMEND
    return Next.NOTHING


def all_shipped(active_qty: dict[str, int], shipped_qty: dict[str, int]) -> bool:
    """Every line still to ship has left in some package (quantities per SKU)."""
    return all(shipped_qty.get(sku, 0) >= qty for sku, qty in active_qty.items())


def add_package(shipped_qty: dict[str, int], lines: list[tuple[str, int]],
                active_qty: dict[str, int]) -> dict[str, int]:
    """Shipped quantities after one more package; a package without lines ships everything."""
    out = dict(shipped_qty)
    if not lines:
        return {sku: max(out.get(sku, 0), qty) for sku, qty in active_qty.items()} | {
            k: v for k, v in out.items() if k not in active_qty}
    for sku, qty in lines:
        out[sku] = out.get(sku, 0) + qty
    return out
