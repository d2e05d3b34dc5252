"""One workflow per channel order (type ``OrderLifecycle``), with the business key as its id.

Every pull or push of the same order reaches this one workflow (signal-with-start), so the
order's whole life is decided in one place, durably:

1. **Until released** - map and validate the latest version (local activity), then decide with
   :mod:`workflows.order.lifecycle`: an unpaid order (or a presale with only the deposit paid)
   waits on a durable timer, re-reading the order now and then, and touches no WMS or ERP; one the
   platform closes is finished with nothing sent; a paid one is released.
2. **Released** - the WMS outbound order and the ERP sales order are created in parallel, each
   idempotent by the hub code (an amendment uses ``{hub code}R{n}``).
3. **Following** - packages arrive (pushed by the WMS, polled as a fallback, or kept by the API
   for an order it did not know yet); each is written back to the marketplace once, split
   shipments with their line ids; a new version of the order that cancels it cancels the WMS and
   ERP documents (an after-sales task when the parcel already left), one that refunds a line or
   changes the address amends them. The order completes when every line shipped, or ends when it
   was cancelled.

A step that fails permanently, or runs out of the retries its flow allows, parks the order in
quarantine: the workflow waits for a replay (or a new version) and retries that step. It never
fails. Version 1 (``OrderSync``) is kept in :mod:`workflows.order.legacy` for runs in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import search
    from workflows.decisions.models import Decision, DecisionResult
    from workflows.models import (
        LifecycleState,
        OrderFacts,
        OrderInput,
        OrderOutcome,
        OrderSeen,
        OutboundStatus,
        OutcomeInput,
        ParkInput,
        PrepareInput,
        ReplayRequest,
        ShipmentInfo,
        ShipmentStepInput,
        StepInput,
        StepResult,
        TaskInput,
    )
    from workflows.order.activities import OrderActivities
    from workflows.order.cash import CashSteps
    from workflows.order.lifecycle import Next, Outcome, add_package, after_release, all_shipped, before_release
    from workflows.order.options import step_options
    from workflows.order.shipping import ShipmentActivities
    from workflows.order.stock_steps import StockSteps

LOCAL = timedelta(seconds=30)


def order_workflow_id(key: str) -> str:
    return f"order:{key}"


@workflow.defn(name="OrderLifecycle")
class OrderWorkflow(StockSteps, CashSteps):
    def __init__(self) -> None:
        self._init_cash()
        self._raw_id: int | None = None
        self._new_raw = False
        self._replay = False
        self._packages: list[ShipmentInfo] = []
        self._package_ids: set[str] = set()
        self._wms_status: OutboundStatus | None = None
        self._st = LifecycleState(raw_id=0)
        self._parked_reason = ""
        self._outcome = ""
        self._short_spells = 0
        self._short_now = False

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
        # WMSs repeat confirmations: one entry per package
        if info.package not in self._package_ids:
            self._package_ids.add(info.package)
            self._packages.append(info)

    @workflow.signal(name="outbound_status")
    def outbound_status(self, status: OutboundStatus) -> None:
        self._wms_status = status

    @workflow.update(name="decide")
    async def decide(self, decision: Decision) -> DecisionResult:
        """A person approves, rejects, or edits and releases the order waiting for them."""
        self._decision = decision
        return DecisionResult(accepted=True, stage=self._st.stage,
                              message=f"{decision.action} by {decision.actor} recorded")

    @decide.validator
    def _decision_expected(self, decision: Decision) -> None:
        if not self._awaiting:
            raise ValueError(f"order is not waiting for a decision (stage {self._st.stage})")
        if self._decision is not None:
            raise ValueError(f"already decided: {self._decision.action} by {self._decision.actor}")

    @workflow.query(name="stage")
    def stage(self) -> str:
        return self._st.stage

    @workflow.query(name="state")
    def state(self) -> dict[str, Any]:
        return {**self._st.model_dump(mode="json", exclude={"facts"}), "outcome": self._outcome,
                "parked_reason": self._parked_reason, "status": self._st.facts.status if self._st.facts else ""}

    # -- the process ------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: OrderInput) -> OrderOutcome:
        if inp.state is not None:
            self._st = inp.state
            self._package_ids.update(self._st.written_packages)
        else:
            self._st = LifecycleState(raw_id=inp.raw_id)
        if self._raw_id is None or self._raw_id == inp.raw_id:
            self._raw_id, self._new_raw = self._st.raw_id or inp.raw_id, False
        if not self._st.released:
            ended = await self._until_released(inp)
            if ended is not None:
                return await self._finish(inp, ended)
        return await self._finish(inp, await self._follow(inp))

    # -- 1. until released ----------------------------------------------------------------------
    async def _until_released(self, inp: OrderInput) -> Outcome | None:
        fetch_error = inp.fetch_error
        while True:
            if fetch_error:
                refreshed = await self._step(inp, "fetch", lambda parked, why=fetch_error: self._activity(
                    OrderActivities.refresh_order, inp, "ingest", was_parked=parked, reason=why))
                fetch_error = ""
                if refreshed.raw_id is not None:
                    self._raw_id = refreshed.raw_id
            facts = await self._prepare(inp, allow_new_version=True)
            if facts is None:
                continue
            nxt = before_release(facts)
            if nxt is Next.CLOSE:
                if self._st.sent_to:  # a send half done before the order was closed: undo it
                    return await self._cancel_everywhere(inp, "closed by the platform")
                await self._release_stock(inp, "cancellation")
                return Outcome.CANCELLED_BEFORE_SHIPMENT if facts.paid else Outcome.CLOSED_UNPAID
            if nxt is Next.NOT_OURS:
                return Outcome.SHIPPED_OUTSIDE_HUB
            if nxt is Next.RELEASE:
                answer = await self._decide(inp, facts)
                if answer == "again":
                    continue  # a new version, or a parked rule set replayed: decide on it
                if answer == "rejected":
                    return Outcome.REJECTED
                if not await self._reserve(inp, facts):
                    continue  # out of stock: nothing goes to the WMS; tried again later
                if await self._send(inp, facts):
                    self._st.released = True
                    await self._record(inp, Outcome.RELEASED, facts.status)
                    return None
                continue
            # waiting: for payment, the balance, or a refund decision
            if self._st.stage != nxt.value:
                self._set_stage(nxt.value)
                await self._record(inp, Outcome.WAITING_PAYMENT if nxt is Next.WAIT_PAYMENT else nxt.value,
                                   facts.status)
            try:
                await workflow.wait_condition(lambda: self._new_raw or self._replay, timeout=inp.route.payment_recheck)
            except TimeoutError:
                await self._refresh(inp)
            self._replay = False
            self._continue_as_new_if_suggested(inp)

    async def _prepare(self, inp: OrderInput, allow_new_version: bool) -> OrderFacts | None:
        """Map the latest version; None when it parked (the caller loops after the fix arrives)."""
        self._new_raw = False
        raw_id = self._raw_id or inp.raw_id
        self._st.raw_id = raw_id
        result = await self._guard(inp, "mapping", workflow.execute_local_activity_method(
            OrderActivities.prepare_order,
            PrepareInput(order=inp, raw_id=raw_id, workflow_id=workflow.info().workflow_id,
                         was_parked=bool(self._parked_reason)),
            **step_options(inp.route, "mapping"),
        ))
        self._note(result)
        if not result.ok or result.facts is None:
            await self._wait_for_fix(allow_new_version=allow_new_version)
            return None
        if result.route is not None:
            inp.route = result.route  # routed by the flow's rules (e.g. province → warehouse)
        self._st.facts = result.facts
        return result.facts

    async def _send(self, inp: OrderInput, facts: OrderFacts) -> bool:
        """Create the current revision in WMS and ERP (in parallel); park when one refuses."""
        self._set_stage("sending")
        rev = self._st.revision
        calls: list[tuple[str, Awaitable[StepResult]]] = []
        if inp.route.wms and "wms" not in self._st.sent_to:
            calls.append(("wms", self._activity(OrderActivities.create_wms_order, inp, "wms", revision=rev)))
        if inp.route.erp and "erp" not in self._st.sent_to:
            calls.append(("erp", self._activity(OrderActivities.create_erp_order, inp, "erp", revision=rev)))
        results = await asyncio.gather(*(c for _, c in calls))
        for (target, _), result in zip(calls, results, strict=True):
            self._note(result)
            if result.ok:
                self._st.sent_to.append(target)
        failed = [r.reason for r in results if not r.ok]
        if failed:
            self._parked_reason = " | ".join(failed)[:500]
            await self._wait_for_fix(allow_new_version=True)
            return False
        if self._parked_reason:
            await workflow.execute_local_activity_method(OrderActivities.resolve_quarantine, inp.key,
                                                         start_to_close_timeout=LOCAL)
            self._parked_reason = ""
        self._st.sent_fingerprint = facts.fingerprint
        self._set_stage("in_wms" if inp.route.wms else "in_erp")
        return True

    # -- 3. following the released order ---------------------------------------------------------
    async def _follow(self, inp: OrderInput) -> Outcome:
        await self._take_pending(inp)
        while True:
            woke = self._new_raw or self._replay or self._packages or self._wms_status is not None
            if not woke:
                self._set_stage("awaiting_shipment" if inp.route.wms else "in_erp")
                timeout = inp.route.shipment_poll if inp.route.wms else inp.route.watch_for
                try:
                    await workflow.wait_condition(
                        lambda: self._new_raw or self._replay or bool(self._packages) or self._wms_status is not None,
                        timeout=timeout)
                except TimeoutError:
                    if not inp.route.wms:
                        return Outcome.RELEASED  # ERP-only: followed long enough
                    await self._poll(inp)
                    await self._take_pending(inp)
            if self._new_raw or self._replay:
                self._replay = False
                facts = await self._prepare(inp, allow_new_version=True)
                if facts is not None:
                    nxt = after_release(facts, self._st.sent_fingerprint)
                    if nxt is Next.CANCEL and not self._st.written_packages:
                        return await self._cancel_everywhere(inp, f"order {facts.status} on the platform")
                    if nxt is Next.CANCEL:
                        await self._task(inp, "after_sales", "cancelled after a package shipped",
                                         ref=f"cancel-r{self._st.revision}", status=facts.status)
                        await self._reverse_voucher(inp, self._last_carrier())
                        return Outcome.AFTER_SALES
                    if nxt is Next.AMEND:
                        if not await self._amend(inp, facts):
                            return Outcome.AFTER_SALES
            if self._wms_status is not None:
                status, self._wms_status = self._wms_status, None
                if self._is_current(status.order_code) and not self._packages:
                    await self._task(inp, "after_sales", f"the WMS {status.status} the outbound order",
                                     ref=f"wms-{status.status}-r{self._st.revision}", status=status.raw_status)
                    await self._release_stock(inp, "cancellation")
                    return Outcome.CANCELLED_BY_WMS
            if self._packages:
                done = await self._write_packages(inp)
                if done is not None:
                    return done
            self._continue_as_new_if_suggested(inp)

    async def _write_packages(self, inp: OrderInput) -> Outcome | None:
        final_seen = False
        while self._packages:
            package = self._packages[0]
            if package.package in self._st.written_packages:
                self._packages.pop(0)
                continue
            facts = self._st.facts
            active = facts.active_qty if facts else {}
            lines = [(line.sku, line.quantity) for line in package.lines]
            await self._deduct_stock(inp, package.package, lines)
            whole = (not self._st.written_packages and package.final
                     and all_shipped(active, add_package({}, lines, active)))
            self._set_stage("writing_back")
            result = await self._guard(inp, "writeback", workflow.execute_activity_method(
                ShipmentActivities.write_back_package,
                ShipmentStepInput(order=inp, workflow_id=workflow.info().workflow_id, shipment=package,
                                  was_parked=bool(self._parked_reason), split=not whole,
                                  previous_tracking=list(self._st.written_tracking)),
                **step_options(inp.route, "writeback")))
            self._note(result)
            if not result.ok:
                # the platform refused the waybill: wait for a replay, or for a new version of the
                # order that explains it (refunded or closed while the parcel was on its way); read
                # the order again at once rather than wait for the next pull to bring that version
                if workflow.patched("writeback-refresh") and not self._new_raw:
                    await self._refresh(inp)
                await self._wait_for_fix(allow_new_version=True)
                if self._new_raw:
                    refreshed = await self._prepare(inp, allow_new_version=True)
                    if refreshed is not None and after_release(refreshed, self._st.sent_fingerprint) is Next.CANCEL:
                        await workflow.execute_local_activity_method(
                            OrderActivities.resolve_quarantine, inp.key, start_to_close_timeout=LOCAL)
                        self._parked_reason = ""
                        await self._task(inp, "after_sales", "cancelled on the platform while the parcel was "
                                         "on its way", ref=f"cancel-r{self._st.revision}", status=refreshed.status,
                                         tracking=package.tracking_number)
                        return Outcome.AFTER_SALES
                continue
            if self._parked_reason:
                await workflow.execute_local_activity_method(OrderActivities.resolve_quarantine, inp.key,
                                                             start_to_close_timeout=LOCAL)
                self._parked_reason = ""
            self._packages.pop(0)
            self._st.written_packages.append(package.package)
            self._st.written_tracking.append(package.tracking_number)
            self._st.shipped_qty = add_package(self._st.shipped_qty, lines, active)
            units: dict[str, int] = {}
            for sku, quantity in lines:
                units[sku] = units.get(sku, 0) + quantity
            await self._after_package(inp, package, units)
            final_seen = final_seen or package.final
        active = self._st.facts.active_qty if self._st.facts else {}
        if final_seen or all_shipped(active, self._st.shipped_qty):
            return Outcome.SPLIT_SHIPMENTS if len(self._st.written_packages) > 1 else Outcome.SHIPPED
        self._set_stage("partially_shipped")
        return None

    async def _poll(self, inp: OrderInput) -> None:
        """Ask the WMS (the push may have been lost). A poll out of the retries its flow allows
        parks the order - visible in quarantine, never a failed workflow - until a replay, a push
        or a new version of the order wakes it."""
        try:
            polled = await workflow.execute_activity_method(
                ShipmentActivities.poll_outbound,
                StepInput(order=inp, workflow_id=workflow.info().workflow_id, revision=self._st.revision),
                **step_options(inp.route, "wms"))
        except ActivityError as exc:
            reason = f"wms_poll: gave up after retries: {exc.cause or exc}"[:500]
            await self._park(inp, "wms_poll", reason)
            self._parked_reason = reason
            self._set_stage("quarantined")
            await workflow.wait_condition(lambda: self._replay or self._new_raw or bool(self._packages)
                                          or self._wms_status is not None)
            self._set_stage("replaying")
            if self._replay and not self._new_raw:
                self._replay = False
                await self._poll(inp)
            return
        if self._parked_reason.startswith("wms_poll"):
            await workflow.execute_local_activity_method(OrderActivities.resolve_quarantine, inp.key,
                                                         start_to_close_timeout=LOCAL)
            self._parked_reason = ""
        if polled is None:
            return
        for package in polled.packages:
            self.shipment(package)
        if polled.status == "cancelled" and not polled.packages:
            self._wms_status = OutboundStatus(status="cancelled", raw_status=polled.raw_status)

    async def _take_pending(self, inp: OrderInput) -> None:
        """Pushes the API kept because they came before the hub knew this order."""
        pending = await workflow.execute_local_activity_method(
            OrderActivities.take_pending_events, inp.key, start_to_close_timeout=LOCAL)
        for package in pending.shipments:
            self.shipment(package)
        for status in pending.statuses:
            self._wms_status = status

    # -- cancellations and amendments ----------------------------------------------------------
    async def _cancel_everywhere(self, inp: OrderInput, reason: str) -> Outcome:
        """Cancel the current revision in the WMS, then in the ERP; too late → an after-sales case."""
        self._set_stage("cancelling")
        rev = self._st.revision
        if "wms" in self._st.sent_to:
            wms = await self._step(inp, "wms_cancel", lambda parked: self._activity(
                OrderActivities.cancel_wms_order, inp, "wms", was_parked=parked, revision=rev, reason=reason))
            if wms.outcome == "refused":
                await self._task(inp, "after_sales", "cancelled, but the WMS could not stop the parcel",
                                 ref=f"cancel-r{rev}", status=reason, wms_answer=wms.reason)
                return Outcome.AFTER_SALES
            self._st.sent_to.remove("wms")
        if "erp" in self._st.sent_to:
            erp = await self._step(inp, "erp_cancel", lambda parked: self._activity(
                OrderActivities.cancel_erp_order, inp, "erp", was_parked=parked, revision=rev, reason=reason))
            if erp.outcome == "refused":
                await self._task(inp, "erp_cancel_refused", "cancelled, but the ERP kept the sales order",
                                 ref=f"erp-cancel-r{rev}", erp_answer=erp.reason)
            else:
                self._st.sent_to.remove("erp")
        await self._release_stock(inp, "cancellation")
        return Outcome.CANCELLED_BEFORE_SHIPMENT

    async def _amend(self, inp: OrderInput, facts: OrderFacts) -> bool:
        """A line refunded or the address changed: cancel the current revision, send the next one.

        False when the WMS could not cancel (the parcel left): that is an after-sales case."""
        self._set_stage("amending")
        rev = self._st.revision
        reason = "amended on the platform"
        if "wms" in self._st.sent_to:
            wms = await self._step(inp, "wms_cancel", lambda parked: self._activity(
                OrderActivities.cancel_wms_order, inp, "wms", was_parked=parked, revision=rev, reason=reason))
            if wms.outcome == "refused":
                await self._task(inp, "after_sales", "changed on the platform after the parcel left",
                                 ref=f"amend-r{rev}", wms_answer=wms.reason)
                return False
        if "erp" in self._st.sent_to:
            await self._step(inp, "erp_cancel", lambda parked: self._activity(
                OrderActivities.cancel_erp_order, inp, "erp", was_parked=parked, revision=rev, reason=reason))
        self._st.revision = rev + 1
        self._st.sent_to = []
        while not await self._reserve(inp, facts, cause="amendment"):
            refreshed = await self._prepare(inp, allow_new_version=True)
            if refreshed is not None:
                facts = refreshed
        while not await self._send(inp, facts):
            refreshed = await self._prepare(inp, allow_new_version=True)
            if refreshed is not None:
                facts = refreshed
        return True

    # -- plumbing ---------------------------------------------------------------------------------
    def _last_carrier(self) -> str:
        return self._st.carrier or "SF"

    def _is_current(self, order_code: str) -> bool:
        """Is a WMS message about the revision the WMS should hold now (not one we cancelled)?"""
        if not order_code or not self._st.hub_code:
            return True
        rev = self._st.revision
        return order_code == (self._st.hub_code if rev == 0 else f"{self._st.hub_code}R{rev}")

    def _activity(self, method: Callable[..., Any], inp: OrderInput, step: str, was_parked: bool = False,
                  revision: int | None = None, reason: str = "") -> Awaitable[StepResult]:
        return self._guard(inp, step, workflow.execute_activity_method(
            method, StepInput(order=inp, workflow_id=workflow.info().workflow_id, was_parked=was_parked,
                              revision=self._st.revision if revision is None else revision, reason=reason),
            **step_options(inp.route, step),
        ))

    async def _step(self, inp: OrderInput, step: str, call: Callable[[bool], Awaitable[StepResult]]) -> StepResult:
        """Run a step; while it parks the order, wait for a replay and retry it."""
        parked = False
        while True:
            result = await call(parked)
            self._note(result)
            if result.ok:
                if parked:
                    await workflow.execute_local_activity_method(OrderActivities.resolve_quarantine, inp.key,
                                                                 start_to_close_timeout=LOCAL)
                    self._parked_reason = ""
                return result
            parked = True
            await self._wait_for_fix(allow_new_version=False)
            self._set_stage(f"retrying_{step}")

    async def _guard(self, inp: OrderInput, step: str, call: Awaitable[StepResult]) -> StepResult:
        """A step whose retries ran out (a flow's max_attempts) parks the order instead of failing it."""
        try:
            return await call
        except ActivityError as exc:
            reason = f"{step}: gave up after retries: {exc.cause or exc}"[:500]
            await self._park(inp, step, reason)
            return StepResult(ok=False, parked=True, reason=reason)

    async def _park(self, inp: OrderInput, step: str, reason: str) -> None:
        try:
            await workflow.execute_local_activity_method(
                OrderActivities.park_failed_step,
                ParkInput(order=inp, workflow_id=workflow.info().workflow_id, step=step, reason=reason),
                start_to_close_timeout=LOCAL)
        except ActivityError:
            workflow.logger.warning("could not record the parked step %s", step)

    async def _refresh(self, inp: OrderInput) -> None:
        """Re-read the order from its source (platforms close unpaid orders without telling us)."""
        result = await self._guard(inp, "ingest", workflow.execute_activity_method(
            OrderActivities.refresh_order, StepInput(order=inp, workflow_id=workflow.info().workflow_id),
            **step_options(inp.route, "ingest")))
        if result.ok and result.raw_id is not None and result.raw_id != self._raw_id:
            self._raw_id, self._new_raw = result.raw_id, True

    async def _task(self, inp: OrderInput, kind: str, title: str, ref: str, task_role: str = "",
                    **details: str) -> None:
        await workflow.execute_local_activity_method(
            OrderActivities.raise_task,
            TaskInput(kind=kind, order_key=inp.key, workflow_id=workflow.info().workflow_id, title=title, ref=ref,
                      details={k: str(v)[:300] for k, v in details.items()}, role=task_role),
            start_to_close_timeout=LOCAL)

    async def _record(self, inp: OrderInput, outcome: str, status: str = "") -> None:
        self._outcome = str(outcome)
        await workflow.execute_local_activity_method(
            OrderActivities.record_outcome,
            OutcomeInput(key=inp.key, outcome=str(outcome), status=status, stage=self._st.stage),
            start_to_close_timeout=LOCAL)

    async def _finish(self, inp: OrderInput, outcome: Outcome) -> OrderOutcome:
        if outcome in (Outcome.SHIPPED, Outcome.SPLIT_SHIPMENTS):
            await self._release_stock(inp, "shipment")  # units the WMS confirmed short go back to the pool
        self._set_stage("completed" if outcome in (Outcome.SHIPPED, Outcome.SPLIT_SHIPMENTS, Outcome.RELEASED)
                        else "closed")
        await self._record(inp, outcome, self._st.facts.status if self._st.facts else "")
        return OrderOutcome(key=inp.key, stage=self._st.stage, hub_code=self._st.hub_code, outcome=str(outcome),
                            packages=len(self._st.written_packages),
                            tracking_number=self._st.written_packages[0] if self._st.written_packages else "")

    def _note(self, result: StepResult) -> None:
        if result.hub_code:
            self._st.hub_code = result.hub_code
        if result.skus:
            workflow.upsert_search_attributes([search.SKUS.value_set(result.skus)])
        if not result.ok:
            self._parked_reason = result.reason

    async def _wait_for_fix(self, allow_new_version: bool) -> None:
        self._set_stage("quarantined")
        # a replay asked for in the instant between parking (in the activity) and this wait must not
        # be lost; runs recorded before this fix dropped it, so they keep doing so on replay
        if not workflow.patched("keep-early-replay"):
            self._replay = False
        await workflow.wait_condition(lambda: self._replay or (allow_new_version and self._new_raw))
        self._replay = False
        self._set_stage("replaying")

    def _continue_as_new_if_suggested(self, inp: OrderInput) -> None:
        info = workflow.info()
        long = info.is_continue_as_new_suggested() or info.get_current_history_length() >= inp.route.history_limit
        if long and not self._packages and self._wms_status is None and not self._new_raw:
            self._st.raw_id = self._raw_id or self._st.raw_id
            workflow.continue_as_new(inp.model_copy(update={"state": self._st, "raw_id": self._st.raw_id,
                                                            "fetch_error": ""}))

    def _set_stage(self, stage: str) -> None:
        if stage != self._st.stage:
            self._st.stage = stage
            workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
