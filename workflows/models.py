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


class OrderSeen(BaseModel):
    """Signal: the source sent (another version of) this order."""

    raw_id: int


class ReplayRequest(BaseModel):
    quarantine_id: int | None = None
    requested_by: str = ""


class ShipmentInfo(BaseModel):
    """Signal: the warehouse shipped the order (no personal data)."""

    carrier_code: str
    tracking_number: str
    shipped_at: datetime
    warehouse: str = ""
    source: str = Field("", description="'push' or 'poll'")


class PrepareInput(BaseModel):
    order: OrderInput
    raw_id: int
    workflow_id: str
    was_parked: bool = False


class StepInput(BaseModel):
    order: OrderInput
    workflow_id: str
    was_parked: bool = False


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


class ShipmentStepInput(BaseModel):
    order: OrderInput
    workflow_id: str
    shipment: ShipmentInfo
    was_parked: bool = False


class OrderOutcome(BaseModel):
    key: str
    stage: str
    hub_code: str = ""
    tracking_number: str = ""


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

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})
