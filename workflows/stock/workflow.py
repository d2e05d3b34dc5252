"""One ``StockSync`` workflow per SKU (id ``stock:{sku}``): pushes the SKU's channel quantities
whenever its figures change.

Changes arrive as ``changed`` signals (signal-with-start, from whatever moved the stock). The
workflow pushes once, and if more changes came in meanwhile it pushes once more with the newest
figures: a burst of a thousand sales becomes a handful of absolute writes per channel, never a
queue of stale ones. Idle for an hour, it completes; the next change starts it again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.stock.activities import StockActivities
    from workflows.stock.models import PushSummary, SyncInput
    from workflows.stock.reconcile import ReconcileReport

IDLE = timedelta(hours=1)


@workflow.defn(name="StockSync")
class StockSyncWorkflow:
    def __init__(self) -> None:
        self._dirty = False
        self._pushes = 0
        self._last: PushSummary | None = None

    @workflow.signal(name="changed")
    def changed(self) -> None:
        self._dirty = True

    @workflow.query(name="last")
    def last(self) -> dict:
        return {"pushes": self._pushes, "last": self._last.model_dump(mode="json") if self._last else None}

    @workflow.run
    async def run(self, inp: SyncInput) -> int:
        self._pushes = inp.pushes
        while True:
            try:
                await workflow.wait_condition(lambda: self._dirty, timeout=IDLE)
            except TimeoutError:
                if not self._dirty:
                    return self._pushes
            self._dirty = False
            self._last = await workflow.execute_activity_method(
                StockActivities.push, SyncInput(sku=inp.sku),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=500), backoff_coefficient=2.0,
                                         maximum_interval=timedelta(minutes=1)))
            self._pushes += 1
            info = workflow.info()
            if not self._dirty and (info.is_continue_as_new_suggested() or info.get_current_history_length() > 2000):
                workflow.continue_as_new(SyncInput(sku=inp.sku, pushes=self._pushes))


@workflow.defn(name="StockReconcile")
class StockReconcileWorkflow:
    """Run by the hub's reconciliation schedule (see :mod:`workflows.stock.reconcile`)."""

    @workflow.run
    async def run(self) -> ReconcileReport:
        return await workflow.execute_activity_method(
            StockActivities.reconcile, start_to_close_timeout=timedelta(minutes=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3))
