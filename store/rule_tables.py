"""Tables of business rule sets (migration 0009). See :mod:`store.rulesets` for how they are used.

A rule set is versioned like a flow: its version is its content (the first 12 hex of the sha256 of its
canonical JSON), every version ever saved is kept, and ``rule_sets`` says which one is current.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.tables import Base, UtcDateTime


class RuleSetRow(Base):
    """A rule set by name and its current version."""

    __tablename__ = "rule_sets"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(12))
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))


class RuleSetVersionRow(Base):
    """Every version of every rule set ever saved (an order's outcome names the version that decided it)."""

    __tablename__ = "rule_set_versions"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(12), primary_key=True)
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(100))


class VelocityEventRow(Base):
    """One order seen for a phone, address or buyer (by hash, never the value), for velocity rules.

    Unique per (kind, hash, order): recording a replayed order again changes no count."""

    __tablename__ = "velocity_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    value_hash: Mapped[str] = mapped_column(String(64))
    order_key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("kind", "value_hash", "order_key", name="uq_velocity_events"),
                      Index("ix_velocity_events_at", "kind", "value_hash", "at"),
                      Index("ix_velocity_events_purge", "at"))
