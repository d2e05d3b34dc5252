"""Stock-pool steps of ``OrderLifecycle`` (mixed into the workflow class; deterministic code only):
reserve before the WMS gets the order (an ``out_of_stock`` task and a wait when it cannot be
reserved), deduct per package, release on cancellation. Only for flows with a stock block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.models import LifecycleState, OrderFacts, OrderInput
    from workflows.order.options import step_options
    from workflows.stock.activities import StockActivities
    from workflows.stock.models import ReleaseInput, ReserveInput, ShipInput


class StockSteps:
    """The workflow class provides ``_st``, ``_task``, ``_record``, ``_park``, ``_wait_for_fix``,
    ``_set_stage`` and the order's flags."""

    _st: LifecycleState
    _new_raw: bool
    _replay: bool
    _parked_reason: str
    _short_spells: int
    _short_now: bool

    async def _reserve(self, inp: OrderInput, facts: OrderFacts, cause: str = "order") -> bool:
        """Hold the order's units in the central pool before the WMS gets it (flows with a stock
        block). Out of stock: an ``out_of_stock`` task, and nothing is sent; the order tries again
        every ``recheck``, at a replay, or when a new version arrives. False = not reserved now."""
        stock = inp.route.stock
        if stock is None or not facts.active_qty or not workflow.patched("stock-pool"):
            return True
        try:
            lines = dict(facts.active_qty)
            for gift in inp.route.gifts:  # a promotion's gift leaves the same shelves
                lines[gift.sku] = lines.get(gift.sku, 0) + gift.quantity
            result = await workflow.execute_activity_method(
                StockActivities.reserve,
                ReserveInput(order_key=inp.key, warehouse=stock.warehouse, lines=lines,
                             channel=inp.channel, shop=inp.shop, external_id=inp.external_id, cause=cause),
                **step_options(inp.route, "wms"))
        except ActivityError as exc:
            reason = f"stock: gave up after retries: {exc.cause or exc}"[:500]
            await self._park(inp, "stock", reason)
            self._parked_reason = reason
            await self._wait_for_fix(allow_new_version=True)
            return False
        if result.ok:
            if self._short_now:
                self._short_now = False
                await self._record(inp, "reserved", facts.status)
            return True
        if not self._short_now:
            self._short_now = True
            self._short_spells += 1
        first = result.short[0]
        await self._task(inp, "out_of_stock", f"out of stock: {first.sku} needs {first.wanted}, "
                         f"{first.available} free", ref=f"stock-{self._short_spells}-r{self._st.revision}",
                         channel=inp.channel, shop=inp.shop, external_id=inp.external_id, sku=first.sku,
                         short=", ".join(f"{s.sku}: {s.wanted} wanted, {s.available} free" for s in result.short))
        if self._st.stage != "out_of_stock":
            self._set_stage("out_of_stock")
            await self._record(inp, "out_of_stock", facts.status)
        try:
            await workflow.wait_condition(lambda: self._new_raw or self._replay, timeout=stock.recheck)
        except TimeoutError:
            pass
        self._replay = False
        return False

    async def _release_stock(self, inp: OrderInput, cause: str) -> None:
        if inp.route.stock is None or not workflow.patched("stock-pool"):
            return
        await self._stock_call(inp, "release", StockActivities.release, ReleaseInput(order_key=inp.key, cause=cause))

    async def _deduct_stock(self, inp: OrderInput, package: str, lines: list[tuple[str, int]]) -> None:
        if inp.route.stock is None or not workflow.patched("stock-pool"):
            return
        units: dict[str, int] = {}
        for sku, quantity in lines:
            units[sku] = units.get(sku, 0) + quantity
        await self._stock_call(inp, "deduct", StockActivities.ship, ShipInput(
            order_key=inp.key, package=package, warehouse=inp.route.stock.warehouse, lines=units))

    async def _stock_call(self, inp: OrderInput, what: str, method: Callable[..., Any], arg: Any) -> None:
        """A release or deduction: retried as the flow allows, then parked (never a failed order)."""
        while True:
            try:
                await workflow.execute_activity_method(method, arg, **step_options(inp.route, "wms"))
                return
            except ActivityError as exc:
                reason = f"stock_{what}: gave up after retries: {exc.cause or exc}"[:500]
                await self._park(inp, f"stock_{what}", reason)
                self._parked_reason = reason
                await self._wait_for_fix(allow_new_version=False)

