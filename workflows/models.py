"""Inputs, outputs and signals of the workflows: small, and free of personal data.

Orders travel by reference (the raw document id and the business key), never as whole documents,
so histories stay small and an auditor reading them sees no names, phones or addresses.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field


class Route(BaseModel):
    """Where an order goes and under which mappings (the demo's fixed routing; flows will own it)."""

    channel: str = ""
    shop: str = ""
    order_mapping: str = "taobao_order"
    wms: str
    wms_mapping: str = "qimen_deliveryorder"
    erp: str | None = None
    erp_mapping: str = "kingdee_sale_order"
    context: dict[str, str] = Field(default_factory=dict, description="values for mapping specs' var/context")
    shipment_poll: timedelta = timedelta(minutes=15)


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


class IngestWindow(BaseModel):
    connector: str
    stream: str
    since: datetime
    until: datetime
    route: Route


class IngestCounts(BaseModel):
    fetched: int = 0
    started: int = 0
    signalled: int = 0
    already_done: int = 0

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})
