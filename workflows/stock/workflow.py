"""``StockPump``: one workflow per hub (id ``stock-pump:{task queue}``) keeping every channel that
a flow shows stock to caught up with the pool, one long-running activity per channel (see
:mod:`workflows.stock.pump`).

A ``refresh`` signal (a flow with a stock block was saved) restarts the activities with the
current list of channels; each activity also returns every few minutes, so the list is re-read
anyway, and the workflow continues as new now and then to keep its history short.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.stock.activities import StockActivities
    from workflows.stock.models import PumpInput, PumpSetup
    from workflows.stock.reconcile import ReconcileReport

IDLE = timedelta(hours=1)
RUN_FOR_S = 300.0


@workflow.defn(name="StockPump")
class StockPumpWorkflow:
    def __init__(self) -> None:
        self._refresh = False

    @workflow.signal(name="refresh")
    def refresh(self) -> None:
        self._refresh = True

    @workflow.run
    async def run(self, setup: PumpSetup) -> int:
        cycles = setup.cycles
        while True:
            self._refresh = False
            channels = await workflow.execute_local_activity_method(
                StockActivities.pumped_channels, start_to_close_timeout=timedelta(seconds=30))
            if not channels:
                try:
                    await workflow.wait_condition(lambda: self._refresh, timeout=IDLE)
                except TimeoutError:
                    return cycles  # no flow shows stock: the next saved stock flow starts it again
                continue
            pumps = [asyncio.create_task(workflow.execute_activity_method(
                StockActivities.pump, PumpInput(channel=channel, run_for_s=RUN_FOR_S),
                start_to_close_timeout=timedelta(seconds=RUN_FOR_S + 120), heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                         maximum_interval=timedelta(minutes=1))))
                for channel in channels]
            await workflow.wait_condition(lambda pumps=pumps: self._refresh or all(p.done() for p in pumps))
            for task in pumps:
                if not task.done():
                    task.cancel()
            for outcome in await asyncio.gather(*pumps, return_exceptions=True):
                if isinstance(outcome, ActivityError):
                    workflow.logger.warning("a stock pump stopped: %s", outcome.cause or outcome)
            cycles += 1
            info = workflow.info()
            if cycles % 12 == 0 or info.is_continue_as_new_suggested():
                workflow.continue_as_new(PumpSetup(cycles=cycles))


@workflow.defn(name="StockReconcile")
class StockReconcileWorkflow:
    """Run by the hub's reconciliation schedule (see :mod:`workflows.stock.reconcile`)."""

    @workflow.run
    async def run(self) -> ReconcileReport:
        return await workflow.execute_activity_method(
            StockActivities.reconcile, start_to_close_timeout=timedelta(minutes=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3))
