"""Inputs, outputs and signals of the workflows: small, and free of personal data.

Orders travel by reference (the raw document id and the business key), never as whole documents,
so histories stay small and an auditor reading them sees no names, phones or addresses.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field


class RouteRule(BaseModel):
    """A routing condition (CEL over ``order``, the canonical order) and where matching orders go."""

    when: str
    wms: str | None = None
    erp: str | None = None
    context: dict[str, str] = Field(default_factory=dict)


class StepOptions(BaseModel):
    """Timeout and retry of one step's activity (from the flow's ``retry`` section)."""

    timeout: timedelta = timedelta(minutes=2)
    initial_interval: timedelta = timedelta(seconds=1)
    max_interval: timedelta = timedelta(minutes=5)
    max_attempts: int = Field(0, ge=0, description="0 = until it succeeds")


class StockRoute(BaseModel):
    """The flow's stock block as an order carries it: reserve from ``warehouse`` before the WMS."""

    warehouse: str
    recheck: timedelta = Field(timedelta(minutes=5), description="out of stock: try to reserve again this often")


class GiftLine(BaseModel):
    """A line a promotion rule adds to the WMS outbound order (price 0)."""

    sku: str
    quantity: int = 1
    title: str = ""


class CashRoute(BaseModel):
    """Order-to-cash steps of a flow: its rule set, who is notified, the ERP outbound, the vouchers."""

    ruleset: str = Field("", description="stored rule set evaluated before release ('' = none)")
    notify: list[str] = Field(default_factory=list, description="notifier connectors (DingTalk, WeCom robots)")
    outbound: str | None = Field(None, description="ERP connector recording the sales outbound per package")
    vouchers: list[str] = Field(default_factory=list, description="voucher targets (Beancount ledger, Kingdee...)")
    fees: str = Field("", description="fee file ('' = mappings/fees/default.yaml)")


class Route(BaseModel):
    """Where an order goes and under which mappings; built from a flow (or given by the caller).

    ``rules`` are tried in order after mapping; the first match overrides ``wms``, ``erp`` and
    adds its ``context``. ``flow`` and ``flow_version`` record which flow version routed it.
    """

    channel: str = ""
    shop: str = ""
    order_mapping: str = "taobao_order"
    wms: str | None = Field(None, description="WMS connector; None for an ERP-only flow")
    wms_mapping: str = "qimen_deliveryorder"
    erp: str | None = None
    erp_mapping: str = "kingdee_sale_order"
    context: dict[str, str] = Field(default_factory=dict, description="values for mapping specs' var/context")
    shipment_poll: timedelta = timedelta(minutes=15)
    rules: list[RouteRule] = Field(default_factory=list)
    flow: str = ""
    flow_version: str = ""
    policies: dict[str, StepOptions] = Field(default_factory=dict, description="per step: ingest, mapping, wms...")
    payment_recheck: timedelta = Field(timedelta(hours=24), description="while unpaid, re-read the order this often "
                                       "(a platform closes unpaid orders itself, e.g. Taobao after 72 h)")
    watch_for: timedelta = Field(timedelta(days=30), description="ERP-only orders: how long changes are followed")
    history_limit: int = Field(10_000, ge=20, description="continue-as-new past this many history events")
    stock: StockRoute | None = Field(None, description="reserve from the central pool before the WMS gets it")
    cash: CashRoute | None = Field(None, description="rules, approvals, ERP outbound, vouchers, notifications")
    gifts: list[GiftLine] = Field(default_factory=list, description="lines the promotion rules added")

    def options(self, step: str) -> StepOptions:
        return self.policies.get(step) or StepOptions()


class OrderInput(BaseModel):
    key: str
    channel: str
    shop: str
    external_id: str
    source: str = Field(description="source connector name")
    raw_id: int
    route: Route
    # set when continuing as new while waiting for the shipment
    resume_stage: str = ""
    # OrderLifecycle: the state carried over a continue-as-new, and a fetch error to park with
    state: LifecycleState | None = None
    fetch_error: str = ""


class OrderSeen(BaseModel):
    """Signal: the source sent (another version of) this order."""

    raw_id: int


class ReplayRequest(BaseModel):
    quarantine_id: int | None = None
    requested_by: str = ""


class PackageLine(BaseModel):
    sku: str
    quantity: int
    line_id: str = ""


class ShipmentInfo(BaseModel):
    """Signal: the warehouse shipped (a package of) the order (no personal data)."""

    carrier_code: str
    tracking_number: str
    shipped_at: datetime
    warehouse: str = ""
    source: str = Field("", description="'push' or 'poll'")
    package_id: str = Field("", description="the WMS's package id (tracking number when none)")
    final: bool = Field(True, description="False: a partial confirmation, more packages follow")
    lines: list[PackageLine] = Field(default_factory=list, description="what this package holds; empty = all")
    order_code: str = Field("", description="the WMS document code it confirms (an amendment's code)")

    @property
    def package(self) -> str:
        return self.package_id or self.tracking_number


class OutboundStatus(BaseModel):
    """Signal: the WMS says the outbound order will not ship (cancelled, closed)."""

    status: str
    raw_status: str = ""
    order_code: str = ""


class OrderFacts(BaseModel):
    """What the order workflow decides on, read from the canonical order (no personal data).

    ``fingerprint`` hashes what the warehouse needs (receiver and the lines still to ship), so an
    address change or a refunded line shows as a new fingerprint without the address in history.
    """

    status: str
    fingerprint: str = ""
    active_qty: dict[str, int] = Field(default_factory=dict, description="sku → quantity still to ship")
    refunded_lines: list[str] = Field(default_factory=list)
    requested_lines: list[str] = Field(default_factory=list)
    line_count: int = 0
    paid: bool = False


class LifecycleState(BaseModel):
    """What OrderLifecycle carries over a continue-as-new."""

    raw_id: int
    stage: str = "received"
    released: bool = False
    revision: int = 0
    sent_fingerprint: str = ""
    facts: OrderFacts | None = None
    sent_to: list[str] = Field(default_factory=list, description="targets holding the current revision")
    written_packages: list[str] = Field(default_factory=list)
    written_tracking: list[str] = Field(default_factory=list)
    shipped_qty: dict[str, int] = Field(default_factory=dict)
    hub_code: str = ""
    decided_for: str = Field("", description="the fingerprint the rule set (and a person) last decided on")
    voucher: str = Field("", description="the voucher posted for the shipment ('' = none yet)")
    outbounds: int = Field(0, description="ERP sales outbounds recorded (one per package)")
    carrier: str = Field("", description="the carrier of the last package written back")
    gifts_shipped: dict[str, int] = Field(default_factory=dict, description="gift units found in packages so far")


class PrepareInput(BaseModel):
    order: OrderInput
    raw_id: int
    workflow_id: str
    was_parked: bool = False


class StepInput(BaseModel):
    order: OrderInput
    workflow_id: str
    was_parked: bool = False
    revision: int = Field(0, description="which amendment's document code to use (0 = the hub code)")
    reason: str = ""


class TaskInput(BaseModel):
    kind: str
    order_key: str
    workflow_id: str
    title: str
    ref: str = ""
    details: dict[str, str] = Field(default_factory=dict)
    role: str = Field("", description="who should act (approver role); '' = operator")


class CancelOutcome(BaseModel):
    outcome: str
    message: str = ""

    @property
    def done(self) -> bool:
        return self.outcome in ("cancelled", "already_cancelled", "not_found")


class OutboundPoll(BaseModel):
    status: str
    raw_status: str = ""
    packages: list[ShipmentInfo] = Field(default_factory=list)


class PendingEvents(BaseModel):
    shipments: list[ShipmentInfo] = Field(default_factory=list)
    statuses: list[OutboundStatus] = Field(default_factory=list)


class OutcomeInput(BaseModel):
    key: str
    outcome: str
    status: str = ""
    stage: str = ""


class ParkInput(BaseModel):
    order: OrderInput
    workflow_id: str
    step: str
    reason: str


class StepResult(BaseModel):
    """Outcome of one step. ``parked`` means a permanent problem: the order waits in quarantine."""

    ok: bool
    parked: bool = False
    quarantine_id: int | None = None
    reason: str = ""
    skus: list[str] = Field(default_factory=list)
    hub_code: str = ""
    mapping_hash: str = ""
    external_id: str = ""
    created: bool = False
    route: Route | None = Field(None, description="the route chosen by the flow's rules, after mapping")
    facts: OrderFacts | None = Field(None, description="OrderLifecycle: status and what to ship")
    conflict: bool = Field(False, description="write-back: the platform holds another tracking number")
    outcome: str = Field("", description="cancel steps: cancelled, already_cancelled, refused, not_found")
    raw_id: int | None = Field(None, description="refresh: the raw document of the latest version")


class ShipmentStepInput(BaseModel):
    order: OrderInput
    workflow_id: str
    shipment: ShipmentInfo
    was_parked: bool = False
    split: bool = Field(False, description="one of several packages: write back with the package's line ids")
    previous_tracking: list[str] = Field(default_factory=list, description="tracking numbers already written back")


class OrderOutcome(BaseModel):
    key: str
    stage: str
    hub_code: str = ""
    tracking_number: str = ""
    outcome: str = Field("", description="released, closed_unpaid, cancelled_before_shipment, after_sales...")
    packages: int = 0


class IngestInput(BaseModel):
    connector: str
    stream: str = "orders"
    route: Route
    initial_lookback: timedelta = timedelta(days=1)
    overlap: timedelta = Field(timedelta(minutes=5), description="re-read before the cursor; duplicates are no-ops")
    lag: timedelta = Field(timedelta(seconds=5), description="stay behind now: platforms index late")
    chunk: timedelta = Field(timedelta(hours=6), description="one activity per chunk, cursor saved after each")
    flow: str = ""
    window: timedelta = Field(timedelta(hours=1), description="checkpoint granularity inside a chunk")


class IngestWindow(BaseModel):
    connector: str
    stream: str
    since: datetime
    until: datetime
    route: Route
    advance_cursor: bool = Field(True, description="False for backfills: they never move the live cursor")
    flow: str = Field("", description="whose cursor to move (each flow keeps its own)")
    window: timedelta = Field(timedelta(hours=1), description="checkpoint granularity: resume after the last window")


class BackfillInput(BaseModel):
    connector: str
    stream: str = "orders"
    route: Route
    since: datetime
    until: datetime
    page: timedelta = timedelta(hours=1)
    pause: timedelta = Field(timedelta(seconds=2), description="between pages, so the live sync is not starved")


class IngestCounts(BaseModel):
    fetched: int = 0
    started: int = 0
    signalled: int = 0
    already_done: int = 0
    held: int = Field(0, description="not handed over because the flow is paused")
    unreadable: int = Field(0, description="could not be fetched (permanent error): parked by their workflow")

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})


def shipment_info(event: dict, source: str = "push") -> ShipmentInfo:
    """A push event ``{"type": "shipment", "order_code", "shipment": {...}}`` as the signal's payload."""
    data = event["shipment"]
    return ShipmentInfo(
        carrier_code=data["carrier_code"], tracking_number=data["tracking_number"], shipped_at=data["shipped_at"],
        warehouse=data.get("warehouse", ""), source=source,
        package_id=data.get("package_id") or data["tracking_number"], final=bool(data.get("final", True)),
        lines=[PackageLine(sku=x["sku"], quantity=int(x["quantity"]), line_id=x.get("line_id", ""))
               for x in data.get("lines") or []],
        order_code=str(event.get("order_code", "")),
    )
