"""Order-to-cash steps of ``OrderLifecycle`` (mixed into the workflow class; deterministic code only).

Before release, with a rule set on the flow: the rules decide (manual review, approval, warehouse,
carrier, gifts); a review or an approval waits for a person (the ``decide`` update: approve,
reject, or edit and release), reminding after ``remind_after`` and escalating to a second approver
after ``within``. Who decided, when, in which role and with what comment is in the history (the
update) and on the closed task.

After each package: the ERP's sales outbound, the shipment voucher (once, at the first package; a
cancellation after it books the reversal), the notification. Every step is idempotent by order and
step, retried as the flow allows, then parked until a replay; never a failed workflow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.decisions.activities import DecisionActivities
    from workflows.decisions.models import Decision, DecisionRecord, RuleDecision, RulesInput
    from workflows.fulfilment.activities import FulfilmentActivities
    from workflows.fulfilment.models import NotifyInput, OutboundInput, VoucherInput
    from workflows.models import LifecycleState, OrderFacts, OrderInput, Route, ShipmentInfo
    from workflows.order.activities import OrderActivities
    from workflows.order.options import step_options

LOCAL = timedelta(seconds=30)
HUMAN_KINDS = ["approval", "manual_review"]


class CashSteps:
    """State and steps of order-to-cash; the workflow class provides ``_st``, ``_task``, ``_record``,
    ``_park``, ``_wait_for_fix``, ``_set_stage`` and the order's flags."""

    _st: LifecycleState
    _new_raw: bool
    _replay: bool
    _parked_reason: str

    def _init_cash(self) -> None:
        self._awaiting: str = ""
        self._decision: Decision | None = None
        self._rules: RuleDecision | None = None

    # -- before release -------------------------------------------------------------------------
    async def _decide(self, inp: OrderInput, facts: OrderFacts) -> str:
        """``go`` (release it), ``again`` (a new version arrived: decide on that one) or ``rejected``."""
        cash = inp.route.cash
        if cash is None or not cash.ruleset or not workflow.patched("order-to-cash"):
            return "go"
        if self._st.decided_for == facts.fingerprint and self._rules is not None:
            self._apply_route(inp.route, self._rules, self._decision)
            return "go"
        try:
            rules = await workflow.execute_activity_method(
                DecisionActivities.evaluate_rules,
                RulesInput(order_key=inp.key, ruleset=cash.ruleset, workflow_id=workflow.info().workflow_id),
                **step_options(inp.route, "mapping"))
        except ActivityError as exc:
            reason = f"rules: {exc.cause or exc}"[:500]
            await self._park(inp, "rules", reason)  # type: ignore[attr-defined]
            self._parked_reason = reason
            await self._wait_for_fix(allow_new_version=True)  # type: ignore[attr-defined]
            return "again"
        self._rules = rules
        if rules.review or rules.approval is not None:
            answer = await self._human_step(inp, rules)
            if answer != "go":
                return answer
        self._apply_route(inp.route, rules, self._decision)
        self._st.decided_for = facts.fingerprint
        return "go"

    async def _human_step(self, inp: OrderInput, rules: RuleDecision) -> str:
        approval = rules.approval
        kind = "approval" if approval is not None else "manual_review"
        rev = self._st.revision
        if approval is not None:
            title = f"approve: {approval.rule} (role {approval.role})"
            details: dict[str, Any] = {"role": approval.role, "rule": approval.rule,
                                       "within": str(approval.within), "escalate_to": approval.escalate_to}
        else:
            title = "review: " + "; ".join(rules.review)
            details = {"reasons": "; ".join(rules.review)}
        details.update(channel=inp.channel, shop=inp.shop, external_id=inp.external_id, ruleset=rules.ruleset,
                       version=rules.version)
        await self._task(inp, kind, title[:300], ref=f"{kind}-r{rev}",  # type: ignore[attr-defined]
                         task_role=approval.role if approval is not None else "", **details)
        self._awaiting, self._decision = kind, None
        self._set_stage("awaiting_approval" if approval else "in_review")  # type: ignore[attr-defined]
        await self._record(inp, self._st.stage, "")  # type: ignore[attr-defined]
        started = workflow.now()
        reminded = escalated = False
        while self._decision is None:
            timers: list[timedelta] = []
            if approval is not None and approval.remind_after is not None and not reminded:
                timers.append(approval.remind_after - (workflow.now() - started))
            if approval is not None and approval.escalate_to and not escalated:
                timers.append(approval.within - (workflow.now() - started))
            timeout = max(min(timers), timedelta(milliseconds=1)) if timers else None
            try:
                await workflow.wait_condition(lambda: self._decision is not None or self._new_raw, timeout=timeout)
            except TimeoutError:
                elapsed = workflow.now() - started
                if approval is not None and approval.remind_after is not None and not reminded \
                        and elapsed >= approval.remind_after:
                    reminded = True
                    await self._notify(inp, f"{inp.key}:remind:{kind}-r{rev}", f"reminder: {title}",
                                       f"Order {inp.external_id} ({inp.channel}/{inp.shop}) waits for "
                                       f"{approval.role}: {approval.rule}.")
                    await self._task(inp, "approval", f"reminder: {title}"[:300],  # type: ignore[attr-defined]
                                     ref=f"{kind}-r{rev}-reminder", task_role=approval.role, **details)
                if approval is not None and approval.escalate_to and not escalated and elapsed >= approval.within:
                    escalated = True
                    await self._task(inp, "approval",  # type: ignore[attr-defined]
                                     f"escalated to {approval.escalate_to}: {title}"[:300],
                                     ref=f"{kind}-r{rev}-escalated", task_role=approval.escalate_to,
                                     **{**details, "role": approval.escalate_to, "escalated_from": approval.role})
                    await self._notify(inp, f"{inp.key}:escalate:{kind}-r{rev}",
                                       f"escalated to {approval.escalate_to}: {title}",
                                       f"Order {inp.external_id}: no decision by {approval.role} within "
                                       f"{approval.within}; {approval.escalate_to} please decide.")
                continue
            if self._new_raw and self._decision is None:
                self._awaiting = ""
                return "again"  # a new version: the rules decide on it (the task stays, deduplicated)
        decision = self._decision
        self._awaiting = ""
        await workflow.execute_local_activity_method(
            DecisionActivities.record_decision,
            DecisionRecord(order_key=inp.key, workflow_id=workflow.info().workflow_id, kinds=HUMAN_KINDS,
                           actor=decision.actor, action=decision.action, comment=decision.comment,
                           role=decision.role),
            start_to_close_timeout=LOCAL)
        done = {"approve": "approved", "reject": "rejected", "edit": "edited"}[decision.action]
        await self._record(inp, f"{done}_by_person", "")  # type: ignore[attr-defined]
        return "rejected" if decision.action == "reject" else "go"

    @staticmethod
    def _apply_route(route: Route, rules: RuleDecision, decision: Decision | None) -> None:
        """The warehouse and carrier the rules (or a person editing) chose, and the gifts, go into the
        WMS document through the route's context."""
        warehouse = (decision.warehouse if decision is not None and decision.warehouse else rules.warehouse)
        carrier = (decision.carrier if decision is not None and decision.carrier else rules.carrier)
        if warehouse and warehouse == rules.wms:
            # the warehouse is a WMS of its own: the order goes there, and reserves from its stock
            route.wms = warehouse
            if route.stock is not None:
                route.stock = route.stock.model_copy(update={"warehouse": warehouse})
        elif warehouse:
            route.context["warehouse_code"] = warehouse
        if carrier:
            route.context["carrier_code"] = carrier
        route.gifts = list(rules.gifts)

    # -- after a package ----------------------------------------------------------------------------
    async def _after_package(self, inp: OrderInput, package: ShipmentInfo, lines: dict[str, int]) -> None:
        cash = inp.route.cash
        if cash is None or not workflow.patched("order-to-cash"):
            return
        self._st.carrier = package.carrier_code
        sold = dict(lines)
        for gift in inp.route.gifts:  # the ERP's sales order holds what was sold, not the promotion's gift
            left = gift.quantity - self._st.gifts_shipped.get(gift.sku, 0)
            take = min(left, sold.get(gift.sku, 0))
            if take > 0:
                sold[gift.sku] -= take
                self._st.gifts_shipped[gift.sku] = self._st.gifts_shipped.get(gift.sku, 0) + take
        sold = {sku: units for sku, units in sold.items() if units > 0}
        if cash.outbound and (sold or not lines):
            self._st.outbounds += 1
            await self._cash_step(inp, "erp_outbound", FulfilmentActivities.sales_outbound, OutboundInput(
                order_key=inp.key, erp=cash.outbound, index=self._st.outbounds, package=package.package,
                lines=sold, shipped_at=package.shipped_at))
        if cash.vouchers and not self._st.voucher:
            self._st.voucher = await self._cash_step(inp, "voucher", FulfilmentActivities.voucher, VoucherInput(
                order_key=inp.key, targets=cash.vouchers, carrier=package.carrier_code, fees=cash.fees)) or "posted"
        await self._notify(inp, f"{inp.key}:shipped:{package.package}", f"order {inp.external_id} shipped",
                           f"Order {inp.external_id} ({inp.channel}/{inp.shop}) left the warehouse: "
                           f"{package.carrier_code} {package.tracking_number}.")

    async def _reverse_voucher(self, inp: OrderInput, carrier: str) -> None:
        """Cancelled after the shipment voucher was posted: book its reversal."""
        cash = inp.route.cash
        if cash is None or not cash.vouchers or not self._st.voucher or not workflow.patched("order-to-cash"):
            return
        await self._cash_step(inp, "voucher_reversal", FulfilmentActivities.voucher, VoucherInput(
            order_key=inp.key, targets=cash.vouchers, carrier=carrier, fees=cash.fees, reverse=True))

    async def _notify(self, inp: OrderInput, key: str, title: str, text: str) -> None:
        cash = inp.route.cash
        if cash is None or not cash.notify:
            return
        await self._cash_step(inp, "notify", FulfilmentActivities.notify,
                              NotifyInput(key=key, title=title, text=text, connectors=cash.notify))

    async def _cash_step(self, inp: OrderInput, step: str, method: Any, arg: Any) -> Any:
        """Retried as the flow allows, then parked until a replay (never a failed order)."""
        while True:
            try:
                result = await workflow.execute_activity_method(method, arg, **step_options(inp.route, "erp"))
            except ActivityError as exc:
                reason = f"{step}: {exc.cause or exc}"[:500]
                await self._park(inp, step, reason)  # type: ignore[attr-defined]
                self._parked_reason = reason
                await self._wait_for_fix(allow_new_version=False)  # type: ignore[attr-defined]
                continue
            if self._parked_reason.startswith(f"{step}:"):
                await workflow.execute_local_activity_method(
                    OrderActivities.resolve_quarantine, inp.key, start_to_close_timeout=LOCAL)
                self._parked_reason = ""
            return result

