"""Activities of the order workflow that follow the parcel: polling the WMS for packages and
writing each package back to the marketplace (split shipments with their line ids).

Write-back is idempotent on the platform's side (Taobao answers a repeat with "already shipped",
and the connector then reads which tracking numbers the trade holds); a different tracking number
already on the order is a conflict a person must look at, so it raises a task instead of a log line.
"""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity

from canonical import LineRefundStatus, Order, Shipment, ShipmentLine, hub_code, revision_code
from connectors.base import OutboundOrderTarget, ShipmentSink, WriteBackResult
from connectors.errors import ConfigurationError, ConnectorError
from connectors.registry import ConnectorPool
from store import Store
from workflows.models import OutboundPoll, PackageLine, ShipmentInfo, ShipmentStepInput, StepInput, StepResult
from workflows.order.activities import OrderActivities

log = structlog.get_logger("tongdao.shipping")


def _info(shipment: Shipment, final: bool, code: str) -> ShipmentInfo:
    return ShipmentInfo(carrier_code=shipment.carrier_code, tracking_number=shipment.tracking_number,
                        shipped_at=shipment.shipped_at, warehouse=shipment.warehouse, source="poll",
                        package_id=shipment.package_id or shipment.tracking_number, final=final,
                        lines=[PackageLine(sku=line.sku, quantity=line.quantity, line_id=line.line_id)
                               for line in shipment.lines], order_code=code)


def line_ids_for(order: Order, package: ShipmentInfo) -> list[str]:
    """The marketplace's line ids a package holds: by line id when the WMS gave one, else by SKU."""
    active = [line for line in order.lines if line.refund_status != LineRefundStatus.REFUNDED]
    by_id = {line.line_id for line in active}
    ids = [line.line_id for line in package.lines if line.line_id in by_id]
    if ids:
        return sorted(set(ids))
    skus = {line.sku for line in package.lines}
    return [line.line_id for line in active if line.sku in skus] or [line.line_id for line in active]


class ShipmentActivities:
    def __init__(self, store: Store, pool: ConnectorPool, orders: OrderActivities) -> None:
        self.store = store
        self.pool = pool
        self.orders = orders

    async def _wms(self, name: str | None) -> OutboundOrderTarget:
        wms = await self.pool.get(name or "")
        if not isinstance(wms, OutboundOrderTarget):
            raise ConfigurationError(f"connector {name!r} cannot create outbound orders").to_application_error()
        return wms

    @activity.defn(name="poll_outbound")
    async def poll_outbound(self, inp: StepInput) -> OutboundPoll | None:
        """The WMS's view of the current revision: status and one entry per package."""
        wms = await self._wms(inp.order.route.wms)
        code = revision_code(hub_code(inp.order.key), inp.revision)
        try:
            state = await wms.get_outbound(code)
        except NotImplementedError:
            shipment = await wms.get_shipment(code)
            return OutboundPoll(status="shipped" if shipment else "accepted",
                                packages=[_info(shipment, True, code)] if shipment else [])
        except ConnectorError as exc:
            raise exc.to_application_error() from exc
        if state is None:
            return None
        final = state.status == "shipped"
        return OutboundPoll(status=state.status, raw_status=state.raw_status,
                            packages=[_info(s, final, code) for s in state.shipments])

    @activity.defn(name="write_back_package")
    async def write_back_package(self, inp: ShipmentStepInput) -> StepResult:
        """Write one package back to the marketplace; a conflicting tracking number raises a task."""
        order = inp.order
        info = inp.shipment
        canonical, _ = await asyncio.to_thread(self.orders._load_order, order)
        line_ids = line_ids_for(canonical, info) if inp.split else None
        try:
            source = await self.pool.get(order.source)
            if not isinstance(source, ShipmentSink):
                raise ConfigurationError(f"connector {order.source!r} cannot take shipments")
            shipment = Shipment(order_key=order.key, warehouse=info.warehouse, carrier_code=info.carrier_code,
                                tracking_number=info.tracking_number, shipped_at=info.shipped_at,
                                package_id=info.package, final=info.final,
                                lines=[ShipmentLine(sku=x.sku, quantity=x.quantity, line_id=x.line_id)
                                       for x in info.lines])
            result = await source.push_shipment(order.external_id, shipment, line_ids)
        except ConnectorError as exc:
            return await self.orders._park_on_permanent("writeback", inp, exc)  # type: ignore[arg-type]
        if isinstance(result, bool):  # a connector written before WriteBackResult
            result = WriteBackResult(taken=result)
        # a conflict is a tracking number on the platform that the hub never wrote (someone else
        # shipped it); a platform taking one waybill per order (JD, Pinduoduo) shows our first one
        ours = {info.tracking_number, *inp.previous_tracking}
        conflict = result.conflicts_with(info.tracking_number) and not (set(result.tracking_on_platform) & ours)
        if conflict:
            await asyncio.to_thread(
                self.store.raise_task, kind="tracking_conflict", order_key=order.key, ref=info.tracking_number,
                workflow_id=inp.workflow_id, title="the marketplace holds another tracking number",
                details={"ours": info.tracking_number, "carrier": info.carrier_code,
                         "on_platform": ",".join(result.tracking_on_platform)[:300]})
        await asyncio.to_thread(self.store.upsert_order, order.key, stage="shipped", carrier_code=info.carrier_code,
                                tracking_number=info.tracking_number)
        if inp.was_parked:
            await asyncio.to_thread(self.store.resolve_quarantine, order.key)
        log.info("marketplace.tracking_written", workflow_id=inp.workflow_id, order_key=order.key,
                 carrier=info.carrier_code, split=inp.split, lines=len(line_ids or []), already=not result.taken,
                 conflict=conflict)
        return StepResult(ok=True, created=result.taken, conflict=conflict)

    # -- version 1 (OrderSync) runs in flight still call these ------------------------------------
    @activity.defn(name="poll_shipment")
    async def poll_shipment(self, inp: StepInput) -> ShipmentInfo | None:
        wms = await self._wms(inp.order.route.wms)
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
        result = await self.write_back_package(inp.model_copy(update={"split": False}))
        if result.ok:
            await asyncio.to_thread(self.store.upsert_order, inp.order.key, stage="completed")
        return result
