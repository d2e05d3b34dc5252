"""Activities of the order workflow: every side effect on the store and on external systems.

Each external call is idempotent (WMS by our hub code as deliveryOrderCode, ERP by our hub code as
bill number, marketplace write-back by checking the trade's state), so Temporal may retry any of
them freely. Connector errors are classified once: transient ones are raised for Temporal to retry;
permanent ones park the order in quarantine with a precise reason and return ``parked``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from temporalio import activity

from canonical import Order, Shipment, hub_code, validate_order
from connectors.base import OutboundOrderTarget, SalesDocumentTarget, ShipmentSink
from connectors.errors import ConfigurationError, ConnectorError
from connectors.registry import ConnectorPool
from mappings import DictLookups, load_spec
from store import Store
from workflows.models import (
    OrderInput,
    ParkInput,
    PrepareInput,
    ShipmentInfo,
    ShipmentStepInput,
    StepInput,
    StepResult,
)
from workflows.order.routing import resolve_route

log = structlog.get_logger("tongdao.activities")


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


class OrderActivities:
    def __init__(self, store: Store, pool: ConnectorPool) -> None:
        self.store = store
        self.pool = pool
        self.xref = _XrefCache(store)

    # -- order workflow -------------------------------------------------------------------------
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
        self.store.upsert_order(order.key, stage="mapped", canonical=canonical.model_dump(mode="json"), **common)
        bind.info("order.mapped", mapping_hash=spec.content_hash[:12], skus=canonical.skus)
        return StepResult(ok=True, skus=canonical.skus, hub_code=code, mapping_hash=spec.content_hash, route=route)

    def _load_order(self, inp: OrderInput) -> tuple[Order, str]:
        row = self.store.get_order(inp.key)
        if row is None or row.canonical is None:
            raise ConfigurationError(f"order {inp.key} has no mapped version").to_application_error()
        return Order.model_validate(row.canonical), row.hub_code

    def _target_document(self, order: Order, spec_name: str, keys: dict[str, str],
                         route_context: dict[str, str]) -> Any:
        """Map the canonical order to a target's document; a mapping error is permanent."""
        context = {**keys, "channel": order.channel.value, "shop": order.shop, **route_context}
        mapped = load_spec(spec_name).apply(order.model_dump(mode="json"), lookups=self.xref.lookups(),
                                            context=context)
        if not mapped.ok:
            raise ConfigurationError("; ".join(f"{e.target}: {e.message}" for e in mapped.errors))
        return mapped.value

    def _park_step(self, order: OrderInput, workflow_id: str, step: str, reason: str) -> int:
        """Quarantine an order at a target step, keeping the mapping version it was mapped with."""
        row = self.store.get_order(order.key)
        qid = self.store.park(
            order_key=order.key, workflow_id=workflow_id, connector=order.source,
            raw_id=row.raw_id if row else order.raw_id, stage=step, reason=reason,
            errors=[{"target": step, "source_path": "", "value": None, "message": reason}],
            mapping_name=row.mapping_name if row else "", mapping_hash=row.mapping_hash if row else "",
        )
        self.store.upsert_order(order.key, stage="quarantined")
        return qid

    async def _park_on_permanent(self, step: str, inp: StepInput, exc: ConnectorError) -> StepResult:
        if exc.retryable:
            raise exc.to_application_error() from exc
        qid = await asyncio.to_thread(self._park_step, inp.order, inp.workflow_id, step, str(exc))
        log.warning("order.quarantined", workflow_id=inp.workflow_id, order_key=inp.order.key, stage=step,
                    error=exc.type_name, quarantine_id=qid)
        return StepResult(ok=False, parked=True, quarantine_id=qid, reason=f"{step}: {exc}"[:500])

    @activity.defn(name="create_wms_order")
    async def create_wms_order(self, inp: StepInput) -> StepResult:
        route = inp.order.route
        order, code = await asyncio.to_thread(self._load_order, inp.order)
        try:
            wms = await self.pool.get(route.wms)
            if not isinstance(wms, OutboundOrderTarget):
                raise ConfigurationError(f"connector {route.wms!r} cannot create outbound orders")
            document = self._target_document(order, route.wms_mapping, {"outbound_code": code}, route.context)
            document.setdefault("deliveryOrder", {})["deliveryOrderCode"] = code  # the idempotency key
            result = await wms.create_outbound_order(document)
        except ConnectorError as exc:
            return await self._park_on_permanent("wms", inp, exc)
        await asyncio.to_thread(self.store.upsert_order, inp.order.key, wms_connector=route.wms,
                                wms_order_id=result.external_id, stage="in_wms")
        log.info("wms.outbound_created", workflow_id=inp.workflow_id, order_key=inp.order.key, hub_code=code,
                 wms_order_id=result.external_id, created=result.created)
        return StepResult(ok=True, hub_code=code, external_id=result.external_id, created=result.created)

    @activity.defn(name="create_erp_order")
    async def create_erp_order(self, inp: StepInput) -> StepResult:
        route = inp.order.route
        assert route.erp
        order, code = await asyncio.to_thread(self._load_order, inp.order)
        try:
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
        return StepResult(ok=True, hub_code=code, external_id=result.external_id, created=result.created)

    @activity.defn(name="park_failed_step")
    async def park_failed_step(self, inp: ParkInput) -> int:
        """Record in quarantine a step that exhausted its retries (the workflow waits for a replay)."""
        return await asyncio.to_thread(self._park_step, inp.order, inp.workflow_id, inp.step, inp.reason)

    @activity.defn(name="resolve_quarantine")
    async def resolve_quarantine(self, order_key: str) -> None:
        """The parked order went through after a replay: close its quarantine entry."""
        await asyncio.to_thread(self.store.resolve_quarantine, order_key)

    @activity.defn(name="poll_shipment")
    async def poll_shipment(self, inp: StepInput) -> ShipmentInfo | None:
        wms = await self.pool.get(inp.order.route.wms)
        assert isinstance(wms, OutboundOrderTarget)
        try:
            shipment = await wms.get_shipment(hub_code(inp.order.key))
        except NotImplementedError:
            return None
        except ConnectorError as exc:
            raise exc.to_application_error() from exc
        if shipment is None:
            return None
        return ShipmentInfo(carrier_code=shipment.carrier_code, tracking_number=shipment.tracking_number,
                            shipped_at=shipment.shipped_at, warehouse=shipment.warehouse, source="poll")

    @activity.defn(name="write_back_shipment")
    async def write_back_shipment(self, inp: ShipmentStepInput) -> StepResult:
        order = inp.order
        info = inp.shipment
        try:
            source = await self.pool.get(order.source)
            if not isinstance(source, ShipmentSink):
                raise ConfigurationError(f"connector {order.source!r} cannot take shipments")
            shipment = Shipment(order_key=order.key, warehouse=info.warehouse, carrier_code=info.carrier_code,
                                tracking_number=info.tracking_number, shipped_at=info.shipped_at)
            taken = await source.push_shipment(order.external_id, shipment)
        except ConnectorError as exc:
            return await self._park_on_permanent("writeback", inp, exc)
        await asyncio.to_thread(self.store.upsert_order, order.key, stage="completed", carrier_code=info.carrier_code,
                                tracking_number=info.tracking_number)
        if inp.was_parked:
            await asyncio.to_thread(self.store.resolve_quarantine, order.key)
        log.info("marketplace.tracking_written", workflow_id=inp.workflow_id, order_key=order.key,
                 carrier=info.carrier_code, already=not taken)
        return StepResult(ok=True, created=taken)
