"""Activities of the order workflow: mapping, the WMS/ERP documents, quarantine, tasks.

Each external call is idempotent (WMS by the document code, ERP by the bill number, both our hub
code or an amendment's ``{code}R{n}``), so Temporal may retry any of them freely. Connector errors
are classified once: transient ones are raised for Temporal to retry (with the platform's
``next_retry_delay``); permanent ones park the order in quarantine with a precise reason and
return ``parked``. Shipments and write-back are in :mod:`workflows.order.shipping`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import structlog
from temporalio import activity

from canonical import Address, LineRefundStatus, Order, OrderLine, hub_code, revision_code, validate_order
from connectors.base import CancelResult, OrderSource, OutboundOrderTarget, ReceiverSource, SalesDocumentTarget
from connectors.errors import ConfigurationError, ConnectorError
from connectors.registry import ConnectorPool
from mappings import DictLookups, load_spec
from store import Store
from workflows.models import (
    OrderFacts,
    OrderInput,
    OutboundStatus,
    OutcomeInput,
    ParkInput,
    PendingEvents,
    PrepareInput,
    StepInput,
    StepResult,
    TaskInput,
    shipment_info,
)
from workflows.order.routing import resolve_route

log = structlog.get_logger("tongdao.activities")

def with_gifts(order: Order, gifts: list[Any]) -> Order:
    """The order with the promotion rules' gift lines added (price 0, ``is_gift``) for the warehouse."""
    if not gifts:
        return order
    extra = [OrderLine(line_id=f"GIFT-{i}", sku=g.sku, title=g.title or "gift", quantity=g.quantity,
                       unit_price=Decimal("0"), total=Decimal("0"), is_gift=True) for i, g in enumerate(gifts, 1)]
    return order.model_copy(update={"lines": [*order.lines, *extra]})


PAID_STATUSES = frozenset({"paid", "partially_shipped", "shipped", "completed", "refunding"})


class _XrefCache:
    """Cross-reference tables, re-read at most every few seconds (they change rarely)."""

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._tables: dict[str, dict[str, str]] = {}
        self._at = 0.0

    def lookups(self) -> DictLookups:
        if time.monotonic() - self._at > self.ttl_s:
            self._tables = self.store.xref_tables()
            self._at = time.monotonic()
        return DictLookups(self._tables)


def order_facts(order: Order) -> OrderFacts:
    """What the workflow decides on; the fingerprint hashes receiver and lines (no clear text)."""
    active = [line for line in order.lines if line.refund_status != LineRefundStatus.REFUNDED]
    qty: dict[str, int] = {}
    for line in active:
        qty[line.sku] = qty.get(line.sku, 0) + line.quantity
    shipped_view = {"receiver": order.receiver.model_dump(mode="json"),
                    "lines": sorted((line.line_id, line.sku, line.quantity) for line in active)}
    fingerprint = hashlib.sha256(json.dumps(shipped_view, sort_keys=True).encode()).hexdigest()[:16]
    return OrderFacts(
        status=order.status.value, fingerprint=fingerprint, active_qty=qty, line_count=len(order.lines),
        refunded_lines=[line.line_id for line in order.lines if line.refund_status == LineRefundStatus.REFUNDED],
        requested_lines=[line.line_id for line in order.lines if line.refund_status == LineRefundStatus.REQUESTED],
        paid=order.paid_at is not None or order.status.value in PAID_STATUSES,
    )


class OrderActivities:
    def __init__(self, store: Store, pool: ConnectorPool) -> None:
        self.store = store
        self.pool = pool
        self.xref = _XrefCache(store)

    # -- mapping ------------------------------------------------------------------------------
    @activity.defn(name="prepare_order")
    async def prepare_order(self, inp: PrepareInput) -> StepResult:
        """Map the raw document with the source's spec, validate, and record the canonical order."""
        return await asyncio.to_thread(self._prepare_sync, inp)

    def _prepare_sync(self, inp: PrepareInput) -> StepResult:
        order = inp.order
        bind = log.bind(workflow_id=inp.workflow_id, order_key=order.key, connector=order.source)
        raw = self.store.get_raw(inp.raw_id)
        if raw is None:
            raise ConfigurationError(f"raw document {inp.raw_id} is missing").to_application_error()
        spec = load_spec(order.route.order_mapping)
        code = hub_code(order.key)
        context = {"channel": order.channel, "shop": order.shop, **order.route.context}
        result = spec.apply(raw.payload, lookups=self.xref.lookups(), context=context)
        common: dict[str, Any] = dict(channel=order.channel, shop=order.shop, external_id=order.external_id,
                                      source_connector=order.source, raw_id=inp.raw_id,
                                      mapping_name=spec.name, mapping_hash=spec.content_hash)
        errors: list[dict[str, Any]] = [e.model_dump() for e in result.errors]
        stage = "mapping"
        canonical: Order | None = result.value if result.ok else None
        if canonical is not None:
            if canonical.key != order.key:
                errors = [{"target": "key", "source_path": "", "value": canonical.key,
                           "message": f"mapped key differs from the ingest key {order.key}"}]
            else:
                stage = "validation"
                errors = [{"target": p.field, "source_path": "", "value": p.value, "message": p.message}
                          for p in validate_order(canonical)]
        route = None
        if canonical is not None and not errors and order.route.rules:
            try:
                route = resolve_route(order.route, canonical)
            except Exception as exc:  # a rule that cannot be evaluated on this order parks it
                stage = "routing"
                errors = [{"target": "route", "source_path": f"flow {order.route.flow}", "value": None,
                           "message": str(exc)[:300]}]
        if errors:
            self.store.upsert_order(order.key, stage="quarantined", canonical=None, **common)
            reason = "; ".join(f"{e['target']}: {e['message']}" for e in errors[:5])
            qid = self.store.park(order_key=order.key, workflow_id=inp.workflow_id, connector=order.source,
                                  raw_id=inp.raw_id, stage=stage, reason=reason, errors=errors,
                                  mapping_name=spec.name, mapping_hash=spec.content_hash)
            bind.warning("order.quarantined", stage=stage, quarantine_id=qid, errors=len(errors))
            return StepResult(ok=False, parked=True, quarantine_id=qid, reason=f"{stage}: {reason}"[:500],
                              hub_code=code, mapping_hash=spec.content_hash)
        assert canonical is not None
        facts = order_facts(canonical)
        self.store.upsert_order(order.key, stage="mapped", status=facts.status,
                                canonical=canonical.model_dump(mode="json"), **common)
        if inp.was_parked:
            self.store.resolve_quarantine(order.key)
        bind.info("order.mapped", mapping_hash=spec.content_hash[:12], skus=canonical.skus, status=facts.status)
        return StepResult(ok=True, skus=canonical.skus, hub_code=code, mapping_hash=spec.content_hash, route=route,
                          facts=facts)

    def _load_order(self, inp: OrderInput) -> tuple[Order, str]:
        row = self.store.get_order(inp.key)
        if row is None or row.canonical is None:
            raise ConfigurationError(f"order {inp.key} has no mapped version").to_application_error()
        return Order.model_validate(row.canonical), row.hub_code

    def _target_document(self, order: Order, spec_name: str, keys: dict[str, str],
                         route_context: dict[str, str]) -> Any:
        """Map the canonical order to a target's document (refunded lines left out); a mapping
        error is permanent."""
        active = [line for line in order.lines if line.refund_status != LineRefundStatus.REFUNDED]
        shipping = order.model_copy(update={"lines": active or order.lines})
        context = {**keys, "channel": order.channel.value, "shop": order.shop, **route_context}
        mapped = load_spec(spec_name).apply(shipping.model_dump(mode="json"), lookups=self.xref.lookups(),
                                            context=context)
        if not mapped.ok:
            raise ConfigurationError("; ".join(f"{e.target}: {e.message}" for e in mapped.errors))
        return mapped.value

    # -- quarantine ----------------------------------------------------------------------------
    def _park_step(self, order: OrderInput, workflow_id: str, step: str, reason: str) -> int:
        """Quarantine an order at a step, with the version of what failed there: the target's spec
        for a WMS or ERP step, the source mapping otherwise."""
        row = self.store.get_order(order.key)
        target_spec = {"wms": order.route.wms_mapping, "erp": order.route.erp_mapping}.get(step.split("_")[0])
        if target_spec:
            try:
                spec = load_spec(target_spec)
                name, digest = spec.name, spec.content_hash
            except Exception:  # a spec that does not load is itself the reason
                name, digest = target_spec, ""
        else:
            name, digest = (row.mapping_name, row.mapping_hash) if row else ("", "")
        qid = self.store.park(
            order_key=order.key, workflow_id=workflow_id, connector=order.source,
            raw_id=row.raw_id if row else order.raw_id, stage=step, reason=reason,
            errors=[{"target": step, "source_path": "", "value": None, "message": reason}],
            mapping_name=name, mapping_hash=digest,
        )
        if row is None:  # parked before it was ever mapped (e.g. the platform refused to return it)
            self.store.upsert_order(order.key, stage="quarantined", channel=order.channel, shop=order.shop,
                                    external_id=order.external_id, source_connector=order.source,
                                    raw_id=order.raw_id, canonical=None)
        else:
            self.store.upsert_order(order.key, stage="quarantined")
        return qid

    async def _park_on_permanent(self, step: str, inp: StepInput, exc: ConnectorError) -> StepResult:
        if exc.retryable:
            raise exc.to_application_error() from exc
        qid = await asyncio.to_thread(self._park_step, inp.order, inp.workflow_id, step, str(exc))
        log.warning("order.quarantined", workflow_id=inp.workflow_id, order_key=inp.order.key, stage=step,
                    error=exc.type_name, quarantine_id=qid)
        return StepResult(ok=False, parked=True, quarantine_id=qid, reason=f"{step}: {exc}"[:500])

    @activity.defn(name="park_failed_step")
    async def park_failed_step(self, inp: ParkInput) -> int:
        """Record in quarantine a step that exhausted its retries (the workflow waits for a replay)."""
        return await asyncio.to_thread(self._park_step, inp.order, inp.workflow_id, inp.step, inp.reason)

    @activity.defn(name="resolve_quarantine")
    async def resolve_quarantine(self, order_key: str) -> None:
        """The parked order went through after a replay: close its quarantine entry."""
        await asyncio.to_thread(self.store.resolve_quarantine, order_key)

    # -- the targets --------------------------------------------------------------------------
    @activity.defn(name="create_wms_order")
    async def create_wms_order(self, inp: StepInput) -> StepResult:
        route = inp.order.route
        order, base = await asyncio.to_thread(self._load_order, inp.order)
        code = revision_code(base, inp.revision)
        try:
            if not route.wms:
                raise ConfigurationError("this flow has no WMS target")
            wms = await self.pool.get(route.wms)
            if not isinstance(wms, OutboundOrderTarget):
                raise ConfigurationError(f"connector {route.wms!r} cannot create outbound orders")
            order = with_gifts(await self._shippable(inp.order, order), route.gifts)
            document = self._target_document(order, route.wms_mapping, {"outbound_code": code}, route.context)
            document.setdefault("deliveryOrder", {})["deliveryOrderCode"] = code  # the idempotency key
            result = await wms.create_outbound_order(document)
        except ConnectorError as exc:
            return await self._park_on_permanent("wms", inp, exc)
        await asyncio.to_thread(self.store.upsert_order, inp.order.key, wms_connector=route.wms,
                                wms_order_id=result.external_id, stage="in_wms", revision=inp.revision)
        log.info("wms.outbound_created", workflow_id=inp.workflow_id, order_key=inp.order.key, hub_code=code,
                 wms_order_id=result.external_id, created=result.created)
        return StepResult(ok=True, hub_code=base, external_id=result.external_id, created=result.created)

    async def _shippable(self, inp: OrderInput, order: Order) -> Order:
        """The order with a receiver the warehouse can ship to. A platform that returns receivers
        encrypted or masked is asked for a clear copy here, in memory, for this document only:
        the clear text is never stored, logged or put in a history."""
        if not order.receiver.protected:
            return order
        source = await self.pool.get(inp.source)
        if not isinstance(source, ReceiverSource):
            raise ConfigurationError(f"the receiver of {inp.key} is encrypted and connector {inp.source!r} "
                                     "cannot decrypt it")
        row = await asyncio.to_thread(self.store.get_order, inp.key)  # the version that was mapped
        raw = await asyncio.to_thread(self.store.get_raw, row.raw_id if row is not None else inp.raw_id)
        if raw is None:
            raise ConfigurationError(f"raw document of {inp.key} is missing")
        clear = await source.shippable_receiver(raw.payload)
        address_fields = {k: v for k, v in clear.items() if k in Address.model_fields}
        receiver = order.receiver.model_copy(update={
            **{k: v for k, v in clear.items() if k in ("name", "mobile", "phone")},
            "address": order.receiver.address.model_copy(update=address_fields), "protected": False})
        return order.model_copy(update={"receiver": receiver})

    @activity.defn(name="create_erp_order")
    async def create_erp_order(self, inp: StepInput) -> StepResult:
        route = inp.order.route
        order, base = await asyncio.to_thread(self._load_order, inp.order)
        code = revision_code(base, inp.revision)
        try:
            if not route.erp:
                raise ConfigurationError("this flow has no ERP target")
            erp = await self.pool.get(route.erp)
            if not isinstance(erp, SalesDocumentTarget):
                raise ConfigurationError(f"connector {route.erp!r} cannot create sales documents")
            document = self._target_document(order, route.erp_mapping, {"bill_no": code}, route.context)
            result = await erp.create_sales_document(document, code)
        except ConnectorError as exc:
            return await self._park_on_permanent("erp", inp, exc)
        await asyncio.to_thread(self.store.upsert_order, inp.order.key, erp_connector=route.erp,
                                erp_number=result.number or code)
        log.info("erp.sales_order_created", workflow_id=inp.workflow_id, order_key=inp.order.key, hub_code=code,
                 erp_id=result.external_id, created=result.created)
        return StepResult(ok=True, hub_code=base, external_id=result.external_id, created=result.created)

    @activity.defn(name="cancel_wms_order")
    async def cancel_wms_order(self, inp: StepInput) -> StepResult:
        """Cancel (intercept) the WMS outbound order of a revision; ``refused`` when it left."""
        result = await self._cancel(
            inp, "wms_cancel", "wms.outbound_cancel", inp.order.route.wms, OutboundOrderTarget, "outbound orders",
            lambda wms, code: wms.cancel_outbound_order(code, reason=inp.reason))
        if result.ok and result.outcome in ("cancelled", "already_cancelled", "not_found"):
            await asyncio.to_thread(self.store.upsert_order, inp.order.key, stage="wms_cancelled")
        return result

    @activity.defn(name="cancel_erp_order")
    async def cancel_erp_order(self, inp: StepInput) -> StepResult:
        """Void the ERP sales order of a revision the way the ERP documents it."""
        return await self._cancel(
            inp, "erp_cancel", "erp.sales_order_cancel", inp.order.route.erp, SalesDocumentTarget, "sales documents",
            lambda erp, code: erp.cancel_sales_document(code, reason=inp.reason))

    async def _cancel(self, inp: StepInput, step: str, event: str, name: str | None, capability: type, what: str,
                      call: Callable[[Any, str], Awaitable[CancelResult]]) -> StepResult:
        """One target's cancel of the revision's document (idempotent on the target's side); a
        permanent refusal to *answer* parks the order, a refusal to *cancel* is an outcome."""
        code = revision_code(hub_code(inp.order.key), inp.revision)
        try:
            target = await self.pool.get(name or "")
            if not isinstance(target, capability):
                raise ConfigurationError(f"connector {name!r} cannot cancel {what}")
            result = await call(target, code)
        except ConnectorError as exc:
            return await self._park_on_permanent(step, inp, exc)
        log.info(event, workflow_id=inp.workflow_id, order_key=inp.order.key, code=code,
                 outcome=result.outcome)
        return StepResult(ok=True, outcome=result.outcome, reason=result.message[:300])

    # -- the source ---------------------------------------------------------------------------
    @activity.defn(name="refresh_order")
    async def refresh_order(self, inp: StepInput) -> StepResult:
        """Fetch the order again from its source and store it (a new raw id when it changed)."""
        order = inp.order
        try:
            source = await self.pool.get(order.source)
            if not isinstance(source, OrderSource):
                raise ConfigurationError(f"connector {order.source!r} has no orders stream")
            record = await source.get_order(order.external_id)
        except ConnectorError as exc:
            if inp.reason and not exc.retryable:  # it could not be read at ingest either
                exc.message = f"{exc.message} (at ingest: {inp.reason})"
            return await self._park_on_permanent("fetch", inp, exc)
        raw_id = await asyncio.to_thread(self.store.put_raw, order.source, "order", record.external_id,
                                         record.payload, record.modified_at)
        return StepResult(ok=True, raw_id=raw_id)

    # -- pushes kept before the order was known -------------------------------------------------
    @activity.defn(name="take_pending_events")
    async def take_pending_events(self, order_key: str) -> PendingEvents:
        def take() -> PendingEvents:
            row = self.store.get_order(order_key)
            base = hub_code(order_key)
            codes = [revision_code(base, r) for r in range(0, (row.revision if row else 0) + 2)]
            out = PendingEvents()
            for pending in self.store.take_pending_pushes(codes):
                event = pending.event
                if event.get("type") == "shipment":
                    out.shipments.append(shipment_info(event, source="push"))
                elif event.get("type") == "outbound_status":
                    out.statuses.append(OutboundStatus(status=str(event.get("status", "")),
                                                       raw_status=str(event.get("raw_status", "")),
                                                       order_code=str(event.get("order_code", ""))))
            return out

        return await asyncio.to_thread(take)

    # -- people and records ---------------------------------------------------------------------
    @activity.defn(name="raise_task")
    async def raise_task(self, inp: TaskInput) -> int:
        """Open a task in the inbox (idempotent by kind, order and ref)."""
        task_id, created = await asyncio.to_thread(
            self.store.raise_task, kind=inp.kind, order_key=inp.order_key, title=inp.title, details=inp.details,
            ref=inp.ref, workflow_id=inp.workflow_id, role=inp.role or "operator")
        if created:
            log.warning("task.raised", kind=inp.kind, order_key=inp.order_key, task_id=task_id, title=inp.title)
        return task_id

    @activity.defn(name="record_outcome")
    async def record_outcome(self, inp: OutcomeInput) -> None:
        values: dict[str, Any] = {"outcome": inp.outcome}
        if inp.status:
            values["status"] = inp.status
        if inp.stage:
            values["stage"] = inp.stage

        def record() -> None:
            if self.store.get_order(inp.key) is not None:  # never mapped: nothing to record on
                self.store.upsert_order(inp.key, **values)

        await asyncio.to_thread(record)
