"""Activities after a package ships: the ERP's sales outbound (K3Cloud pushes it from the sales
order; YonSuite makes it from the order's lines), the shipment voucher (revenue, receivable,
platform commission, logistics fee; its reversal when the order is cancelled after posting), and
the notification. Each is idempotent by order and step (``{hub code}-OUT{n}``, ``{hub code}-SHIP``,
``{hub code}-SHIP-REV``, ``{hub code}:shipped:{package}``).

A permanent refusal is raised as a non-retryable error: the order workflow parks the step and
waits for a replay; a transient one is retried by Temporal.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from temporalio import activity

from canonical import LineRefundStatus, Order
from connectors.base import Notification, NotificationSink, SalesOutboundTarget, VoucherTarget
from connectors.errors import ConfigurationError, ConnectorError
from connectors.registry import ConnectorPool
from mappings.vouchers import FeeError, FeeFileError, compose_shipment_voucher, load_fees
from store import Store
from workflows.fulfilment.models import NotifyInput, OutboundInput, VoucherInput

log = structlog.get_logger("tongdao.fulfilment")

SCHEMES = {"beancount": "beancount"}
"""Account scheme per voucher target kind; every other kind books to account codes (``kingdee``)."""

CARRIER_ALIASES = {"YUNDA": "YD", "YUNDA56": "YD", "JDL": "JD"}
"""WMS logistics codes that the fee table knows by another code."""


class FulfilmentActivities:
    def __init__(self, store: Store, pool: ConnectorPool) -> None:
        self.store = store
        self.pool = pool

    def _order(self, key: str) -> tuple[Order, str, str]:
        row = self.store.get_order(key)  # in memory only: the model needs the fields it validates
        if row is None or row.canonical is None:
            raise ConfigurationError(f"order {key} has no mapped version").to_application_error()
        return Order.model_validate(row.canonical), row.hub_code, row.erp_number or row.hub_code

    @activity.defn(name="record_sales_outbound")
    async def sales_outbound(self, inp: OutboundInput) -> str:
        order, code, sales_number = await asyncio.to_thread(self._order, inp.order_key)
        sold = {line.sku: line.quantity for line in order.lines if line.refund_status != LineRefundStatus.REFUNDED}
        # the ERP's sales order holds what was sold: a promotion's gift in the parcel is not on it
        lines = {sku: units for sku, units in inp.lines.items() if sku in sold} if inp.lines else sold
        number = f"{code}-OUT{inp.index}"
        try:
            erp = await self.pool.get(inp.erp)
            if not isinstance(erp, SalesOutboundTarget):
                raise ConfigurationError(f"connector {inp.erp!r} cannot record sales outbounds")
            result = await erp.create_sales_outbound(sales_number, number,
                                                     [{"sku": s, "quantity": q} for s, q in lines.items()],
                                                     inp.shipped_at)
        except ConnectorError as exc:
            raise exc.to_application_error() from exc
        log.info("erp.sales_outbound", order_key=inp.order_key, number=number, erp=inp.erp,
                 erp_number=result.number, created=result.created)
        return result.number or number

    @activity.defn(name="post_shipment_voucher")
    async def voucher(self, inp: VoucherInput) -> str:
        order, code, _ = await asyncio.to_thread(self._order, inp.order_key)
        number = f"{code}-SHIP"
        today = datetime.now(UTC).date()
        try:
            fees = await asyncio.to_thread(load_fees, inp.fees or None)
        except FeeFileError as exc:
            raise ConfigurationError(str(exc)).to_application_error() from exc
        posted = []
        for target in inp.targets:
            try:
                connector = await self.pool.get(target)
                if not isinstance(connector, VoucherTarget):
                    raise ConfigurationError(f"connector {target!r} cannot post vouchers")
                carrier = CARRIER_ALIASES.get(inp.carrier.upper(), inp.carrier)
                voucher = compose_shipment_voucher(order, number=number, on=today, carrier=carrier,
                                                   weight_g=inp.weight_g, fees=fees,
                                                   scheme=SCHEMES.get(connector.kind, "kingdee"),
                                                   region=order.receiver.address.province or None)
                if inp.reverse:
                    voucher = voucher.reversal(f"{number}-REV", today)
                result = await connector.post_voucher(voucher)
            except FeeError as exc:
                raise ConfigurationError(f"voucher {number}: {exc}").to_application_error() from exc
            except ConnectorError as exc:
                raise exc.to_application_error() from exc
            posted.append(voucher.number)
            log.info("voucher.posted", order_key=inp.order_key, number=voucher.number, target=target,
                     created=result.created, reverse=inp.reverse)
        return posted[0] if posted else ""

    @activity.defn(name="notify")
    async def notify(self, inp: NotifyInput) -> int:
        """Send once per (connector, key): robots take no idempotency key, so the hub remembers."""
        sent = 0
        for name in inp.connectors:
            if await asyncio.to_thread(self.store.push_event_seen, f"notify:{name}", inp.key):
                continue
            try:
                connector = await self.pool.get(name)
                if not isinstance(connector, NotificationSink):
                    raise ConfigurationError(f"connector {name!r} cannot send notifications")
                await connector.notify(Notification(key=inp.key, title=inp.title, text=inp.text))
            except ConnectorError as exc:
                raise exc.to_application_error() from exc
            await asyncio.to_thread(self.store.mark_push_event, f"notify:{name}", inp.key)
            sent += 1
        return sent

