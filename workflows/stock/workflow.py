"""One ``StockSync`` workflow per SKU (id ``stock:{sku}``): pushes the SKU's channel quantities
whenever its figures change.

Changes arrive as ``changed`` signals (signal-with-start, from whatever moved the stock). Each
channel has its own loop: it pushes once, and if more changes came in meanwhile it pushes once
more with the newest figures, so a burst of a thousand sales becomes a handful of absolute writes
per channel, never a queue of stale ones, and a slow or rate-limited channel (paced to its
documented limit) never delays the others. Idle for an hour, it completes; the next change
starts it again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.stock.activities import StockActivities
    from workflows.stock.models import ChannelInput, ChannelPush, SyncInput
    from workflows.stock.reconcile import ReconcileReport

IDLE = timedelta(hours=1)


@workflow.defn(name="StockSync")
class StockSyncWorkflow:
    def __init__(self) -> None:
        self._changed = False
        self._dirty: set[str] = set()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._pushes = 0
        self._last: dict[str, ChannelPush] = {}

    @workflow.signal(name="changed")
    def changed(self) -> None:
        self._changed = True

    @workflow.query(name="last")
    def last(self) -> dict:
        return {"pushes": self._pushes, "channels": {c: p.model_dump(mode="json") for c, p in self._last.items()}}

    @workflow.run
    async def run(self, inp: SyncInput) -> int:
        self._pushes = inp.pushes
        while True:
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=IDLE)
            except TimeoutError:
                if not self._changed and self._idle():
                    return self._pushes
                continue
            self._changed = False
            channels = await workflow.execute_local_activity_method(
                StockActivities.channels, SyncInput(sku=inp.sku), start_to_close_timeout=timedelta(seconds=30))
            for channel in channels:
                self._dirty.add(channel)
                loop = self._loops.get(channel)
                if loop is None or loop.done():
                    self._loops[channel] = asyncio.create_task(self._channel(inp.sku, channel))
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > 2000:
                await workflow.wait_condition(self._idle)
                if not self._changed:
                    workflow.continue_as_new(SyncInput(sku=inp.sku, pushes=self._pushes))

    def _idle(self) -> bool:
        return all(loop.done() for loop in self._loops.values())

    async def _channel(self, sku: str, channel: str) -> None:
        """One channel's pushes, one at a time: a slow or throttled channel never holds up the others,
        and the changes that arrive while a push is in flight become the next push."""
        while channel in self._dirty:
            self._dirty.discard(channel)
            try:
                self._last[channel] = await workflow.execute_activity_method(
                    StockActivities.push_channel, ChannelInput(sku=sku, channel=channel),
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=500), backoff_coefficient=2.0,
                                             maximum_interval=timedelta(minutes=1)))
            except ActivityError as exc:  # a bug, not the platform: the next change tries again
                self._last[channel] = ChannelPush(error=str(exc.cause or exc)[:300])
                workflow.logger.warning("stock push to %s failed for %s: %s", channel, sku, exc.cause or exc)
                return
            self._pushes += 1


@workflow.defn(name="StockReconcile")
class StockReconcileWorkflow:
    """Run by the hub's reconciliation schedule (see :mod:`workflows.stock.reconcile`)."""

    @workflow.run
    async def run(self) -> ReconcileReport:
        return await workflow.execute_activity_method(
            StockActivities.reconcile, start_to_close_timeout=timedelta(minutes=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3))
