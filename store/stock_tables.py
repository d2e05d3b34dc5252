"""Tables of the central stock pool (migration 0008). See :mod:`store.stock` for how they are used.

A *warehouse* is a registered WMS connector (pushes arrive at ``/hooks/{connector}``, so that is
the name the hub can always tell); a *channel* is a registered marketplace connector.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Date, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.tables import Base, UtcDateTime


class StockLevelRow(Base):
    """On-hand and reserved units of one SKU in one warehouse.

    ``blocked`` is the part of on-hand that may not be sold (expired batches). A reservation is
    one conditional ``UPDATE … SET reserved = reserved + q WHERE on_hand - reserved - blocked >= q``
    on this row: the database, not the hub's code, decides who gets the last unit.
    """

    __tablename__ = "stock_levels"
    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(100), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (CheckConstraint("reserved >= 0", name="ck_stock_levels_reserved"),)


class StockBatchRow(Base):
    """A batch (lot) of a perishable SKU: reservations take the earliest expiry first (FIFO)."""

    __tablename__ = "stock_batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(200))
    warehouse: Mapped[str] = mapped_column(String(100))
    batch_code: Mapped[str] = mapped_column(String(100))
    expire_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("sku", "warehouse", "batch_code", name="uq_stock_batches"),)


class StockReservationRow(Base):
    """Units of one SKU held for one order (all its lines of that SKU), until shipped or released."""

    __tablename__ = "stock_reservations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_key: Mapped[str] = mapped_column(String(300))
    sku: Mapped[str] = mapped_column(String(200))
    warehouse: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)  # still held (not shipped, not released)
    shipped: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20))  # open | shipped | released
    channel: Mapped[str] = mapped_column(String(100), default="")
    shop: Mapped[str] = mapped_column(String(100), default="")
    external_id: Mapped[str] = mapped_column(String(200), default="")
    batches: Mapped[dict] = mapped_column(JSON, default=dict)  # batch code -> units allocated
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("order_key", "sku", "warehouse", name="uq_stock_reservations"),
                      Index("ix_stock_reservations_sku", "sku", "state"))


class StockLedgerRow(Base):
    """One stock movement, append-only: what changed, by how much, why, and the figures after it.

    ``dedupe_key`` (unique when set) makes a movement that arrives twice - a redelivered WMS push,
    a retried shipment - one entry and one change.
    """

    __tablename__ = "stock_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    sku: Mapped[str] = mapped_column(String(200))
    warehouse: Mapped[str] = mapped_column(String(100))
    cause: Mapped[str] = mapped_column(String(30))
    ref: Mapped[str] = mapped_column(String(300), default="")
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    on_hand_after: Mapped[int] = mapped_column(Integer, default=0)
    reserved_after: Mapped[int] = mapped_column(Integer, default=0)
    batch_code: Mapped[str] = mapped_column(String(100), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    dedupe_key: Mapped[str | None] = mapped_column(String(400), nullable=True)
    __table_args__ = (Index("ix_stock_ledger_sku", "sku", "id"),
                      UniqueConstraint("dedupe_key", name="uq_stock_ledger_dedupe"))


class StockChannelRow(Base):
    """What the hub knows of one SKU on one channel: the platform's ids and the last quantity pushed."""

    __tablename__ = "stock_channels"
    channel: Mapped[str] = mapped_column(String(100), primary_key=True)
    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    listed: Mapped[int] = mapped_column(Integer, default=1)  # 0: the channel does not sell it
    listing: Mapped[dict] = mapped_column(JSON, default=dict)
    computed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pushed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pushed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    pushes: Mapped[int] = mapped_column(Integer, default=0)
    shown: Mapped[int | None] = mapped_column(Integer, nullable=True)  # read back by the reconciliation
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    synced_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # outbox version last pushed


class StockOutboxRow(Base):
    """The transactional outbox of stock changes: ``version`` moves in the same transaction as the
    figures of ``sku``; a channel is behind while its ``synced_version`` is lower. Nothing to signal,
    so nothing can be lost between a commit and a notification."""

    __tablename__ = "stock_outbox"
    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (Index("ix_stock_outbox_changed", "changed_at"),)
