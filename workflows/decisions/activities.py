"""Activities of the decisions capability: evaluate the flow's rule set on an order (with the
store's velocity counts and the stock pool), and record what a person decided."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio import activity

from canonical import Order
from connectors.errors import ConfigurationError
from mappings.rules import RuleOutcome, address_hash, buyer_hash, evaluate, parse_rule_set, phone_hash
from store import Store
from workflows.decisions.models import ApprovalNeed, DecisionRecord, RuleDecision, RulesInput
from workflows.models import GiftLine

log = structlog.get_logger("tongdao.decisions")


class DecisionActivities:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="evaluate_rules")
    async def evaluate_rules(self, inp: RulesInput) -> RuleDecision:
        """The flow's rule set on the order's current version; its version goes on the order."""
        return await asyncio.to_thread(self._evaluate, inp)

    def _evaluate(self, inp: RulesInput) -> RuleDecision:
        row = self.store.get_order(inp.order_key)
        if row is None or row.canonical is None:
            raise ConfigurationError(f"order {inp.order_key} has no mapped version").to_application_error()
        stored = self.store.get_rule_set(inp.ruleset)
        if stored is None:
            raise ConfigurationError(f"no rule set named {inp.ruleset!r} (tongdao rules apply FILE)"
                                     ).to_application_error()
        rules = parse_rule_set(stored.definition, f"rule set {inp.ruleset}")
        order = Order.model_validate(row.canonical)
        now = datetime.now(UTC)
        for kind, value in (("phone", phone_hash(order.receiver.mobile or order.receiver.phone)),
                            ("address", address_hash(order.receiver.address)), ("buyer", buyer_hash(order))):
            if value:
                self.store.record_velocity(kind, value, order.key, now)

        def velocity(kind: str, value_hash: str, within: timedelta) -> int:
            return self.store.count_velocity(kind, value_hash, now - within, until=now, including=order.key)

        def stock(sku: str) -> dict[str, int]:
            return {f.warehouse: f.available for f in self.store.stock_levels(sku)}

        outcome = evaluate(rules, order, velocity=velocity, stock=stock, now=now)
        self.store.upsert_order(order.key, ruleset_version=f"{outcome.ruleset}@{outcome.version}")
        decision = decision_of(outcome)
        if decision.warehouse and self._is_wms(decision.warehouse):
            decision.wms = decision.warehouse
        log.info("rules.evaluated", order_key=order.key, ruleset=outcome.ruleset, version=outcome.version,
                 fired=decision.fired, review=bool(decision.review), approval=bool(decision.approval))
        return decision

    def _is_wms(self, name: str) -> bool:
        """Is ``name`` a registered connector that creates outbound orders (a warehouse of its own)?"""
        from connectors import load_kinds

        row = self.store.get_connector(name)
        cls = load_kinds().get(row.kind) if row is not None else None
        return cls is not None and "outbound_orders" in cls.capabilities

    @activity.defn(name="record_decision")
    async def record_decision(self, inp: DecisionRecord) -> list[int]:
        """Close the order's pending approval/review tasks with who decided, how and why."""
        decision: dict[str, Any] = {"action": inp.action, "actor": inp.actor, "comment": inp.comment,
                                    "role": inp.role, "at": datetime.now(UTC).isoformat()}
        closed = await asyncio.to_thread(self.store.close_order_tasks, inp.order_key, inp.kinds, inp.actor, decision)
        await asyncio.to_thread(self.store.audit, inp.actor, f"order.{inp.action}", inp.order_key,
                                {"comment": inp.comment, "role": inp.role, "tasks": closed})
        log.info("order.decided", order_key=inp.order_key, action=inp.action, actor=inp.actor, tasks=closed)
        return closed


def decision_of(outcome: RuleOutcome) -> RuleDecision:
    approval = None
    if outcome.approval is not None:
        a = outcome.approval
        approval = ApprovalNeed(rule=a.rule, role=a.role, within=a.within, escalate_to=a.escalate_to or "",
                                remind_after=a.remind_after)
    return RuleDecision(
        ruleset=outcome.ruleset, version=outcome.version, fired=outcome.fired(),
        reasons={t.rule: (t.reason or "")[:200] for t in outcome.rules if t.fired},
        review=list(outcome.review), approval=approval, warehouse=outcome.warehouse or "",
        carrier=outcome.carrier or "", merge_key=outcome.merge_key or "",
        gifts=[GiftLine(sku=line.sku, quantity=line.quantity, title=line.title) for line in outcome.gifts],
        split={w: {line.sku: line.quantity for line in lines} for w, lines in (outcome.split or {}).items()})
