"""Activities of the stock pool: reserve, release and deduct for an order, and push a SKU's new
quantities to its channels.

Every activity is idempotent (see :mod:`store.stock`): Temporal may retry any of them, and a
replayed order workflow calls them again without holding a unit twice. Whatever changes a SKU's
figures marks it in the store's outbox in the same transaction; the channel pumps
(:mod:`workflows.stock.pump`, run by the ``StockPump`` workflow) push it from there.
"""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.client import Client

from connectors.registry import ConnectorPool
from store import Store
from workflows.stock.client import ensure_pump
from workflows.stock.models import (
    PumpInput,
    PushSummary,
    ReleaseInput,
    ReserveInput,
    ReserveOutcome,
    ShipInput,
    Short,
)
from workflows.stock.propagate import channel_targets, low_stock, stock_configs
from workflows.stock.pump import Waker, pump
from workflows.stock.reconcile import ReconcileReport, reconcile

log = structlog.get_logger("tongdao.stock")


class StockActivities:
    def __init__(self, store: Store, pool: ConnectorPool, client: Client, task_queue: str) -> None:
        self.store = store
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.waker = Waker()
        store.on_stock_change(self.waker)
        store.on_stock_change(self._check_low)

    @activity.defn(name="stock_reserve")
    async def reserve(self, inp: ReserveInput) -> ReserveOutcome:
        """Hold the order's lines in the pool, all or none; SKUs whose figures moved are propagated."""
        result = await asyncio.to_thread(self.store.stock_reserve, inp.order_key, inp.lines, inp.warehouse,
                                         channel=inp.channel, shop=inp.shop, external_id=inp.external_id,
                                         cause=inp.cause)
        await ensure_pump(self.client, self.task_queue)
        if not result.ok:
            log.info("stock.out_of_stock", order_key=inp.order_key,
                     short={s.sku: [s.wanted, s.available] for s in result.short})
        return ReserveOutcome(ok=result.ok, changed=result.changed,
                              short=[Short(sku=s.sku, wanted=s.wanted, available=s.available) for s in result.short])

    @activity.defn(name="stock_release")
    async def release(self, inp: ReleaseInput) -> list[str]:
        return await asyncio.to_thread(self.store.stock_release, inp.order_key, inp.cause)

    @activity.defn(name="stock_ship")
    async def ship(self, inp: ShipInput) -> list[str]:
        return await asyncio.to_thread(self.store.stock_ship, inp.order_key, inp.package, inp.lines,
                                       inp.warehouse)

    @activity.defn(name="stock_pump")
    async def pump(self, inp: PumpInput) -> int:
        """Keep one channel caught up with the pool for a while (see :mod:`workflows.stock.pump`)."""
        wake = self.waker.event()
        try:
            return await pump(self.store, self.pool, inp.channel, run_for_s=inp.run_for_s, wake=wake,
                              heartbeat=activity.heartbeat)
        finally:
            self.waker.drop(wake)

    @activity.defn(name="stock_pumped_channels")
    async def pumped_channels(self) -> list[str]:
        """Every channel some flow shows stock to."""
        return sorted(channel_targets(await asyncio.to_thread(stock_configs, self.store)))

    def _check_low(self, skus: list[str]) -> None:
        """After a change: the low-stock signal for the SKUs that crossed their threshold."""
        for sku in skus:
            try:
                below, available = low_stock(self.store, sku)
                if below:
                    self._low_stock(PushSummary(sku=sku, available=available))
            except Exception as exc:  # an alert must never undo the movement that triggered it
                log.warning("stock.low_check_failed", sku=sku, error=str(exc)[:200])

    @activity.defn(name="stock_reconcile")
    async def reconcile(self) -> ReconcileReport:
        """The WMS's counts and the channels' displays against the pool; drift corrected and reported."""
        # the expired units of perishable batches stop being sellable the day they expire
        await asyncio.to_thread(self.store.stock_block_expired)
        return await reconcile(self.store, self.pool, fix=True)

    def _low_stock(self, summary: PushSummary) -> None:
        """One open low-stock task per SKU at a time (an alert for procurement, until it exists)."""
        open_tasks = self.store.list_tasks(status="open", kind="low_stock")
        if any(t.details.get("sku") == summary.sku for t in open_tasks):
            return
        count = len(self.store.list_tasks(status=None, kind="low_stock"))
        self.store.raise_task(kind="low_stock", order_key="", ref=f"{summary.sku}#{count + 1}", role="operator",
                              title=f"{summary.sku}: only {summary.available} units left",
                              details={"sku": summary.sku, "available": str(summary.available)})
        log.warning("stock.low", sku=summary.sku, available=summary.available)
