"""The demo's order-life stories: orders that are not simply paid and shipped.

Beside the plain paid orders, the demo creates in the simulated shops an order of each kind the
hub must handle (unpaid then paid, unpaid then closed, still unpaid, a presale paid in two steps,
cancelled after release, a line refunded, an address changed, cancelled too late) and lets the WMS
ship some multi-line orders in two packages. Once the hub has released what it should, the
platform side of each story happens; the next pull brings it to the hub.

Every figure here is computed from the simulators' own state (what the outside systems hold),
and ``violations`` lists any disagreement with what each story requires: the demo exits
non-zero when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from canonical import hub_code, order_key, revision_code


class DemoSystems(Protocol):
    """The simulated outside world the stories play in (:class:`hub.demo.DemoSystems`)."""

    taobao: Any
    wms: Any
    erp: Any
    shops: dict[str, str]

STORIES = ("unpaid_then_paid", "unpaid_then_closed", "unpaid_waiting", "presale", "cancel_after_release",
           "line_refund", "address_change", "too_late")
HELD = ("cancel_after_release", "line_refund", "address_change", "too_late")
UNPAID = "WAIT_BUYER_PAY"
CLOSED, CLOSED_UNPAID = "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"


@dataclass
class LifeStories:
    systems: DemoSystems
    per_story: int = 1
    tids: dict[str, list[int]] = field(default_factory=dict)
    shops: dict[int, str] = field(default_factory=dict)
    refunded_oid: dict[int, int] = field(default_factory=dict)

    def create(self) -> None:
        """Make the stories' trades (before the first pull) and hold the ones to be changed later."""
        tb, wms = self.systems.taobao, self.systems.wms
        shops = list(self.systems.shops.values())
        for i, story in enumerate(STORIES):
            for n in range(self.per_story):
                shop = shops[(i + n) % len(shops)]
                if story.startswith("unpaid"):
                    tid = tb.make_trade(shop, status=UNPAID, lines=1)
                elif story == "presale":
                    tid = tb.make_trade(shop, presale=True, lines=1)
                else:
                    tid = tb.make_trade(shop, lines=2 if story == "line_refund" else 1)
                self.tids.setdefault(story, []).append(tid)
                self.shops[tid] = shop
                if story in HELD:
                    wms.hold(self.code(tid))
        wms.split_packages = max(wms.split_packages, 0.3)  # some multi-line orders ship in two packages

    def code(self, tid: int) -> str:
        return hub_code(order_key("taobao", self.shops[tid], str(tid)))

    def all_tids(self) -> list[int]:
        return [t for tids in self.tids.values() for t in tids]

    def codes(self) -> set[str]:
        """Every document code of the stories (originals and first amendments)."""
        return {c for t in self.all_tids() for c in (self.code(t), revision_code(self.code(t), 1))}

    # -- the two phases ---------------------------------------------------------------------------
    def released(self) -> bool:
        """The hub sent every held story to the WMS (so the platform side may now happen)."""
        return all(self.systems.wms.status_of(self.code(t)) is not None for s in HELD for t in self.tids[s])

    async def happen(self) -> None:
        """The platform side of each story."""
        tb, wms = self.systems.taobao, self.systems.wms
        for tid in self.tids["unpaid_then_paid"]:
            tb.pay(tid)
        for tid in self.tids["unpaid_then_closed"]:
            tb.close_unpaid(tid)
        for tid in self.tids["presale"]:
            tb.pay_balance(tid)
        for tid in self.tids["cancel_after_release"]:
            tb.refund_all(tid)
        for tid in self.tids["line_refund"]:
            oid = int(tb.trade(tid)["orders"]["order"][0]["oid"])
            self.refunded_oid[tid] = oid
            tb.refund_line(tid, oid)
        for tid in self.tids["address_change"]:
            tb.change_address(tid, receiver_address="文一西路 969 号 5 幢 (改)")
        callback = wms.callback_url
        wms.set_callback(None)  # the parcel leaves and the hub does not hear of it at once...
        for tid in self.tids["too_late"]:
            await wms.ship_now(self.code(tid))
        for tid in self.tids["too_late"]:
            tb.refund_all(tid)  # ...while the buyer gets a refund
        wms.set_callback(callback)

    def settled(self) -> bool:
        """Every story reached what the outside systems should show."""
        f = self.figures()
        return (f["cancelled_before_shipment"] == len(self.tids["cancel_after_release"])
                and f["after_sales"] == len(self.tids["too_late"])
                and f["amended"] == len(self.tids["line_refund"]) + len(self.tids["address_change"])
                and all(self.systems.taobao.writebacks(t) for s in ("unpaid_then_paid", "presale", "line_refund",
                                                                    "address_change") for t in self.tids[s])
                and not self.violations())

    # -- figures, from the simulators ------------------------------------------------------------
    def figures(self) -> dict[str, int]:
        tb, wms = self.systems.taobao, self.systems.wms
        status = {t: tb.status(t) for t in self.all_tids()}
        in_wms = {t for t in status if wms.status_of(self.code(t)) is not None}
        cancelled = set(wms.cancelled_codes())
        return {
            "lifecycle_orders": len(status),
            "released": len(in_wms),
            "waiting_payment": sum(1 for t, s in status.items() if s == UNPAID and t not in in_wms),
            "closed_unpaid": sum(1 for t, s in status.items() if s == CLOSED_UNPAID and t not in in_wms),
            "cancelled_before_shipment": sum(
                1 for t, s in status.items() if s == CLOSED and self.code(t) in cancelled
                and not wms.was_shipped(self.code(t)) and not tb.writebacks(t)),
            "after_sales": sum(1 for t, s in status.items() if s == CLOSED and wms.was_shipped(self.code(t))),
            "amended": sum(1 for t in status if wms.status_of(revision_code(self.code(t), 1)) is not None),
            "split_shipments": sum(1 for t in tb.state()["shipments"] if len(tb.writebacks(t)) > 1),
        }

    def violations(self) -> list[str]:
        """What the outside systems hold that a story forbids (empty when they agree)."""
        tb, wms, erp = self.systems.taobao, self.systems.wms, self.systems.erp
        out: list[str] = []
        for tid in self.all_tids():
            state, code = tb.status(tid), self.code(tid)
            if state in (UNPAID, CLOSED_UNPAID) and (wms.status_of(code) is not None or erp.bill_status(code)):
                out.append(f"{tid}: {state} but the WMS or the ERP holds it")
            if state == CLOSED and not wms.was_shipped(code) and tb.writebacks(tid):
                out.append(f"{tid}: cancelled before shipment but a waybill was written back")
            if state == CLOSED and code in wms.cancelled_codes() and erp.bill_status(code) and \
                    code not in erp.cancelled_numbers():
                out.append(f"{tid}: cancelled in the WMS but the ERP bill is live")
        for tid, oid in self.refunded_oid.items():
            if any(oid in oids for _, _, oids in tb.writebacks(tid)):
                out.append(f"{tid}: refunded line {oid} was shipped")
        return out

    def story_codes_in(self, numbers: list[str] | dict[str, Any]) -> int:
        codes = self.codes()
        return sum(1 for n in numbers if n in codes)
