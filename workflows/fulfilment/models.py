"""Inputs of the fulfilment steps after a package ships: the ERP sales outbound, the voucher, the
buyer's notification (no personal data)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class OutboundInput(BaseModel):
    order_key: str
    erp: str
    index: int = Field(description="1 for the first package, 2 for the second...")
    package: str
    lines: dict[str, int] = Field(default_factory=dict, description="sku -> units; empty = the whole order")
    shipped_at: datetime


class VoucherInput(BaseModel):
    order_key: str
    targets: list[str]
    carrier: str
    weight_g: int = 1000
    fees: str = ""
    reverse: bool = Field(False, description="book the reversal of the shipment voucher (cancelled after posting)")


class NotifyInput(BaseModel):
    key: str = Field(description="idempotency key: order + step")
    title: str
    text: str
    connectors: list[str]
