"""Activities of the stock pool: reserve, release and deduct for an order, and push a SKU's new
quantities to its channels.

Every activity is idempotent (see :mod:`store.stock`): Temporal may retry any of them, and a
replayed order workflow calls them again without holding a unit twice. Whatever changed a SKU's
figures wakes that SKU's ``StockSync`` workflow (signal-with-start), which pushes the channels.
"""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.client import Client

from connectors.registry import ConnectorPool
from store import Store
from workflows.stock.client import notify_changed
from workflows.stock.models import (
    ChannelInput,
    ChannelPush,
    PushSummary,
    ReleaseInput,
    ReserveInput,
    ReserveOutcome,
    ShipInput,
    Short,
    SyncInput,
)
from workflows.stock.propagate import channel_targets, low_stock, push_channel, push_sku, stock_configs
from workflows.stock.reconcile import ReconcileReport, reconcile

log = structlog.get_logger("tongdao.stock")


class StockActivities:
    def __init__(self, store: Store, pool: ConnectorPool, client: Client, task_queue: str) -> None:
        self.store = store
        self.pool = pool
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name="stock_reserve")
    async def reserve(self, inp: ReserveInput) -> ReserveOutcome:
        """Hold the order's lines in the pool, all or none; SKUs whose figures moved are propagated."""
        result = await asyncio.to_thread(self.store.stock_reserve, inp.order_key, inp.lines, inp.warehouse,
                                         channel=inp.channel, shop=inp.shop, external_id=inp.external_id,
                                         cause=inp.cause)
        await notify_changed(self.client, self.task_queue, result.changed)
        if not result.ok:
            log.info("stock.out_of_stock", order_key=inp.order_key,
                     short={s.sku: [s.wanted, s.available] for s in result.short})
        return ReserveOutcome(ok=result.ok, changed=result.changed,
                              short=[Short(sku=s.sku, wanted=s.wanted, available=s.available) for s in result.short])

    @activity.defn(name="stock_release")
    async def release(self, inp: ReleaseInput) -> list[str]:
        changed = await asyncio.to_thread(self.store.stock_release, inp.order_key, inp.cause)
        await notify_changed(self.client, self.task_queue, changed)
        return changed

    @activity.defn(name="stock_ship")
    async def ship(self, inp: ShipInput) -> list[str]:
        changed = await asyncio.to_thread(self.store.stock_ship, inp.order_key, inp.package, inp.lines,
                                          inp.warehouse)
        await notify_changed(self.client, self.task_queue, changed)
        return changed

    @activity.defn(name="stock_push")
    async def push(self, inp: SyncInput) -> PushSummary:
        """Every channel of one SKU at once (the reconciliation and the CLI use this too)."""
        summary = await push_sku(self.store, self.pool, inp.sku)
        if summary.low_stock:
            await asyncio.to_thread(self._low_stock, PushSummary(sku=inp.sku, available=summary.available))
        return summary

    @activity.defn(name="stock_channels")
    async def channels(self, inp: SyncInput) -> list[str]:
        """The channels shown ``inp.sku`` now; raises the low-stock signal when the SKU crossed it."""
        below, available = await asyncio.to_thread(low_stock, self.store, inp.sku)
        if below:
            await asyncio.to_thread(self._low_stock, PushSummary(sku=inp.sku, available=available))
        return sorted(channel_targets(await asyncio.to_thread(stock_configs, self.store)))

    @activity.defn(name="stock_push_channel")
    async def push_channel(self, inp: ChannelInput) -> ChannelPush:
        return await push_channel(self.store, self.pool, inp.sku, inp.channel)

    @activity.defn(name="stock_reconcile")
    async def reconcile(self) -> ReconcileReport:
        """The WMS's counts and the channels' displays against the pool; drift corrected and reported."""
        # the expired units of perishable batches stop being sellable the day they expire
        expired = await asyncio.to_thread(self.store.stock_block_expired)
        await notify_changed(self.client, self.task_queue, expired)
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
