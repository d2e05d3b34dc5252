"""What the stock activities and the StockPump workflow take and give (through Temporal's
pydantic converter). No personal data: SKUs, quantities and business keys only."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReserveInput(BaseModel):
    order_key: str
    warehouse: str
    lines: dict[str, int] = Field(description="SKU -> units the order needs (shipped units included)")
    channel: str = ""
    shop: str = ""
    external_id: str = ""
    cause: str = "order"


class Short(BaseModel):
    sku: str
    wanted: int
    available: int


class ReserveOutcome(BaseModel):
    ok: bool
    short: list[Short] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)


class ReleaseInput(BaseModel):
    order_key: str
    cause: str = "cancellation"


class ShipInput(BaseModel):
    order_key: str
    package: str
    warehouse: str
    lines: dict[str, int]


class ChannelPush(BaseModel):
    """One channel after a propagation: the quantity computed and whether it was written now."""

    quantity: int | None = None
    pushed: bool = False
    listed: bool = True
    error: str = ""


class PushSummary(BaseModel):
    sku: str
    available: int = 0
    channels: dict[str, ChannelPush] = Field(default_factory=dict)
    low_stock: bool = False


class PumpInput(BaseModel):
    channel: str
    run_for_s: float = Field(300.0, description="the activity returns after this long (the workflow starts it again)")


class PumpSetup(BaseModel):
    cycles: int = 0
