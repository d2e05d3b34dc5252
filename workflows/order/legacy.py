"""Version 1 of the order workflow (type ``OrderSync``), kept unchanged for runs in flight.

New orders start ``OrderLifecycle`` (:mod:`workflows.order.workflow`); this class is still
registered so that ``OrderSync`` runs started before the upgrade finish, and its recorded
histories keep replaying (tests/test_replay.py). Do not change its commands.

What it did: one workflow per channel order, with the business key as its id.

The id makes duplicates impossible: every pull or push of the same order signals this workflow
(signal-with-start) instead of starting another. The workflow maps and validates (a local
activity: no extra round trip), creates the WMS outbound order and the ERP sales order in
parallel (each idempotent by our hub code), waits for the shipment (pushed by the WMS, polled as a
fallback), writes the tracking number back to the marketplace and completes.

A permanent problem at any step parks the order in quarantine; it waits here until a replay
signal (after a mapping or data fix) or a new version of the order arrives, then resumes from the
step that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import search
    from workflows.models import (
        OrderInput,
        OrderOutcome,
        OrderSeen,
        ParkInput,
        PrepareInput,
        ReplayRequest,
        Route,
        ShipmentInfo,
        ShipmentStepInput,
        StepInput,
        StepResult,
    )
    from workflows.order.activities import OrderActivities
    from workflows.order.shipping import ShipmentActivities

def step_options(route: Route, step: str) -> dict:
    """Activity timeout and retry policy of a step, as the flow configured them (safe defaults)."""
    o = route.options(step)
    return {"start_to_close_timeout": o.timeout,
            "retry_policy": RetryPolicy(initial_interval=o.initial_interval, backoff_coefficient=2.0,
                                        maximum_interval=o.max_interval, maximum_attempts=o.max_attempts)}


@workflow.defn(name="OrderSync")
class OrderSyncV1:
    def __init__(self) -> None:
        self._raw_id: int | None = None
        self._replay = False
        self._new_raw = False
        self._shipment: ShipmentInfo | None = None
        self._stage = "received"
        self._hub_code = ""
        self._parked_reason = ""

    # -- signals and queries ----------------------------------------------------------------
    @workflow.signal(name="order_seen")
    def order_seen(self, seen: OrderSeen) -> None:
        if seen.raw_id != self._raw_id:
            self._raw_id = seen.raw_id
            self._new_raw = True

    @workflow.signal(name="replay")
    def replay(self, _: ReplayRequest) -> None:
        self._replay = True

    @workflow.signal(name="shipment")
    def shipment(self, info: ShipmentInfo) -> None:
        if self._shipment is None:  # WMSs repeat confirmations; the first one wins
            self._shipment = info

    @workflow.query(name="stage")
    def stage(self) -> str:
        return self._stage

    # -- the process ------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: OrderInput) -> OrderOutcome:
        if self._raw_id is None:
            self._raw_id = inp.raw_id
        wf_id = workflow.info().workflow_id
        resume = inp.resume_stage

        if resume != "awaiting_shipment":
            inp = await self._map_and_send(inp, wf_id)

        self._set_stage("awaiting_shipment")
        while self._shipment is None:
            try:
                await workflow.wait_condition(lambda: self._shipment is not None, timeout=inp.route.shipment_poll)
            except TimeoutError:
                polled = await workflow.execute_activity_method(
                    ShipmentActivities.poll_shipment, StepInput(order=inp, workflow_id=wf_id),
                    **step_options(inp.route, "wms"),
                )
                if polled is not None and self._shipment is None:
                    self._shipment = polled
                elif self._shipment is None and workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(inp.model_copy(update={"resume_stage": "awaiting_shipment",
                                                                    "raw_id": self._raw_id}))

        shipment = self._shipment
        self._set_stage("writing_back")
        await self._until_ok("writeback", lambda parked: self._guard(inp, "writeback", workflow.execute_activity_method(
            ShipmentActivities.write_back_shipment,
            ShipmentStepInput(order=inp, workflow_id=wf_id, shipment=shipment, was_parked=parked),
            **step_options(inp.route, "writeback"),
        )))
        self._set_stage("completed")
        return OrderOutcome(key=inp.key, stage="completed", hub_code=self._hub_code,
                            tracking_number=shipment.tracking_number)

    # -- helpers ------------------------------------------------------------------------------
    async def _map_and_send(self, inp: OrderInput, wf_id: str) -> OrderInput:
        """Map, then create in WMS and ERP in parallel; on a parked failure wait for a fix and redo.

        A replay re-maps from the latest raw document with the current spec before retrying the
        targets, so a fix to a mapping or a cross-reference takes effect. Re-sending to a target
        that already has the document is harmless: both creates are idempotent by the hub code.
        """
        parked = False
        while True:
            prepared = await workflow.execute_local_activity_method(
                OrderActivities.prepare_order,
                PrepareInput(order=inp, raw_id=self._raw_id or inp.raw_id, workflow_id=wf_id, was_parked=parked),
                **step_options(inp.route, "mapping"),
            )
            self._note(prepared)
            if prepared.ok:
                # flows route by the mapped order (e.g. province → warehouse); added after v1 histories
                if prepared.route is not None and workflow.patched("flow-routes"):
                    inp = inp.model_copy(update={"route": prepared.route})
                self._set_stage("mapped")
                steps = [self._activity(OrderActivities.create_wms_order, inp, parked, "wms")]
                if inp.route.erp:
                    steps.append(self._activity(OrderActivities.create_erp_order, inp, parked, "erp"))
                results = await asyncio.gather(*steps)
                if all(r.ok for r in results):
                    if parked:
                        await workflow.execute_local_activity_method(
                            OrderActivities.resolve_quarantine, inp.key, start_to_close_timeout=timedelta(seconds=30))
                    return inp
                self._parked_reason = next(r.reason for r in results if not r.ok)
            parked = True
            await self._wait_for_fix(allow_new_version=True)

    async def _until_ok(self, step: str, call: Callable[[bool], Awaitable[StepResult]]) -> StepResult:
        """Run a step; while it parks the order, wait for a replay and retry it."""
        parked = False
        while True:
            result = await call(parked)
            self._note(result)
            if result.ok:
                return result
            parked = True
            self._parked_reason = result.reason
            await self._wait_for_fix(allow_new_version=False)
            self._set_stage(f"retrying_{step}")

    def _note(self, result: StepResult) -> None:
        if result.hub_code:
            self._hub_code = result.hub_code
        if result.skus:
            workflow.upsert_search_attributes([search.SKUS.value_set(result.skus)])
        if not result.ok:
            self._parked_reason = result.reason

    async def _wait_for_fix(self, allow_new_version: bool) -> None:
        self._set_stage("quarantined")
        self._replay = False
        self._new_raw = False
        await workflow.wait_condition(lambda: self._replay or (allow_new_version and self._new_raw))
        self._set_stage("replaying")

    def _activity(self, method: Callable, inp: OrderInput, parked: bool, step: str) -> Awaitable[StepResult]:
        return self._guard(inp, step, workflow.execute_activity_method(
            method, StepInput(order=inp, workflow_id=workflow.info().workflow_id, was_parked=parked),
            **step_options(inp.route, step),
        ))

    async def _guard(self, inp: OrderInput, step: str, call: Awaitable[StepResult]) -> StepResult:
        """A step whose retries ran out (a flow's max_attempts) parks the order instead of failing it."""
        try:
            return await call
        except ActivityError as exc:
            reason = f"{step}: gave up after retries: {exc.cause or exc}"[:500]
            await workflow.execute_local_activity_method(
                OrderActivities.park_failed_step,
                ParkInput(order=inp, workflow_id=workflow.info().workflow_id, step=step, reason=reason),
                start_to_close_timeout=timedelta(seconds=30),
            )
            return StepResult(ok=False, parked=True, reason=reason)

    def _set_stage(self, stage: str) -> None:
        if stage != self._stage:
            self._stage = stage
            workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
