"""The route a flow source hands to each of its orders: business-key parts (channel, shop), the
mappings, the targets, the rules and the step policies. Used by the scheduled ingest and by the
marketplace pushes alike (:mod:`flows.runtime`, :mod:`flows.pushes`)."""

from __future__ import annotations

from datetime import timedelta

from flows.model import Flow, FlowSource
from store import Store
from workflows.models import CashRoute, Route, StepOptions, StockRoute


def kind_of(store: Store, connector: str) -> str:
    """The registered kind of a connector ("" when it is not registered)."""
    row = store.get_connector(connector)
    return row.kind if row else ""


def _channel_of(kind: str) -> str:
    """The canonical channel of a kind's orders (``pdd`` → ``pinduoduo``); the kind itself by default."""
    from connectors import load_kinds

    cls = load_kinds().get(kind)
    return str(getattr(cls, "channel", "") or kind) if cls else kind


def route_for_source(flow: Flow, source: FlowSource, store: Store) -> Route:
    """The route an ingest run of ``source`` hands to each order: business-key parts, mappings,
    targets (a WMS, an ERP or both: ``wms`` None is an ERP-only flow), rules and step policies."""
    kind = kind_of(store, source.connector)
    return Route(
        channel=source.channel or _channel_of(kind),
        shop=source.shop,
        order_mapping=source.mapping_for(kind),
        wms=flow.targets.wms,
        wms_mapping=flow.targets.wms_mapping,
        erp=flow.targets.erp,
        erp_mapping=flow.targets.erp_mapping,
        context=dict(flow.context),
        rules=flow.route_rules(),
        flow=flow.name,
        flow_version=flow.version(),
        policies={step: StepOptions(timeout=p.timeout, initial_interval=p.initial_interval,
                                    max_interval=p.max_interval, max_attempts=p.max_attempts)
                  for step, p in flow.retry.items()},
        stock=(StockRoute(warehouse=flow.stock.warehouse, recheck=timedelta(seconds=flow.stock.recheck))
               if flow.stock is not None else None),
        cash=cash_route(flow, store),
    )


def cash_route(flow: Flow, store: Store) -> CashRoute | None:
    """The flow's order-to-cash steps (None when it has none: the order's life is as before)."""
    accounting = flow.accounting
    if not flow.rules and not flow.notify and accounting is None:
        return None
    outbound = accounting.outbound if accounting is not None else None
    if accounting is not None and outbound is None and flow.targets.erp:
        from connectors import load_kinds

        cls = load_kinds().get(kind_of(store, flow.targets.erp))
        if cls is not None and "sales_outbound" in cls.capabilities:
            outbound = flow.targets.erp
    return CashRoute(ruleset=flow.rules or "", notify=list(flow.notify), outbound=outbound,
                     vouchers=list(accounting.vouchers) if accounting else [],
                     fees=accounting.fees if accounting else "")
