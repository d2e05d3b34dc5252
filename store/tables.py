"""Table definitions. Portable across SQLite and PostgreSQL (JSON, timezone-aware timestamps).

Schema changes go through an Alembic revision in ``store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and gives them back aware (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ConnectorRow(Base):
    """A registered connector: kind, settings, encrypted secrets, and who changed it when."""

    __tablename__ = "connectors"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    settings: Mapped[dict] = mapped_column(JSON)
    secrets_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)


class RawDocument(Base):
    """A document exactly as a platform sent it; workflows carry its id, not its content."""

    __tablename__ = "raw_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(100))
    doc_type: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    modified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    payload: Mapped[dict] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (
        UniqueConstraint("connector", "doc_type", "external_id", "sha256", name="uq_raw_content"),
        Index("ix_raw_external", "connector", "doc_type", "external_id"),
    )


class OrderRow(Base):
    """Where each order stands, under which mapping, with the ids other systems gave it."""

    __tablename__ = "orders"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(30))
    shop: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    source_connector: Mapped[str] = mapped_column(String(100))
    raw_id: Mapped[int] = mapped_column(Integer)
    hub_code: Mapped[str] = mapped_column(String(40), unique=True)
    canonical: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    mapping_name: Mapped[str] = mapped_column(String(100), default="")
    mapping_hash: Mapped[str] = mapped_column(String(64), default="")
    stage: Mapped[str] = mapped_column(String(30))
    wms_connector: Mapped[str] = mapped_column(String(100), default="")
    wms_order_id: Mapped[str] = mapped_column(String(100), default="")
    erp_connector: Mapped[str] = mapped_column(String(100), default="")
    erp_number: Mapped[str] = mapped_column(String(100), default="")
    carrier_code: Mapped[str] = mapped_column(String(30), default="")
    tracking_number: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(30), default="", doc="canonical status of the latest version")
    revision: Mapped[int] = mapped_column(Integer, default=0, doc="amendments sent to the targets")
    outcome: Mapped[str] = mapped_column(String(40), default="", doc="released, closed_unpaid, cancelled_before...")
    ruleset_version: Mapped[str] = mapped_column(String(120), default="", doc="rule set name@version that decided it")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (Index("ix_orders_external", "channel", "external_id"), Index("ix_orders_stage", "stage"))


class QuarantineRow(Base):
    """An order parked because it could not be mapped, validated or accepted by a target."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_key: Mapped[str] = mapped_column(String(300))
    workflow_id: Mapped[str] = mapped_column(String(400))
    connector: Mapped[str] = mapped_column(String(100))
    raw_id: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(30), doc="where it failed: mapping, validation, wms, erp...")
    reason: Mapped[str] = mapped_column(Text)
    errors: Mapped[list] = mapped_column(JSON)
    mapping_name: Mapped[str] = mapped_column(String(100), default="")
    mapping_hash: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | replaying | resolved
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (Index("ix_quarantine_status", "status"), Index("ix_quarantine_order", "order_key"))


class CursorRow(Base):
    """How far an incremental pull has safely read, per connector and stream."""

    __tablename__ = "cursors"
    connector: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class XrefRow(Base):
    """Cross-reference tables for mapping lookups (external SKU → our SKU, warehouse codes...)."""

    __tablename__ = "xref"
    table: Mapped[str] = mapped_column(String(50), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class FlowRow(Base):
    """A flow as it stands now: its current version and definition, and whether it is paused."""

    __tablename__ = "flows"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(12))
    definition: Mapped[dict] = mapped_column(JSON)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))


class FlowVersionRow(Base):
    """Every version of every flow ever saved, so that runs in flight load the version they started with."""

    __tablename__ = "flow_versions"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(12), primary_key=True)
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HeldPushRow(Base):
    """An inbound push that arrived while its flow was paused; delivered (released) on resume."""

    __tablename__ = "held_pushes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(100))
    connector: Mapped[str] = mapped_column(String(100))
    event: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (Index("ix_held_pushes_flow", "flow", "released_at"),)


class FlowCursorRow(Base):
    """How far one flow has read one source: two flows on one connector keep separate cursors."""

    __tablename__ = "flow_cursors"
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    connector: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TaskRow(Base):
    """A human step: an after-sales case, a tracking conflict, an approval... (the task inbox).

    ``ref`` makes raising the same task twice a no-op (a retried activity, a replayed workflow).
    """

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    order_key: Mapped[str] = mapped_column(String(300), default="")
    ref: Mapped[str] = mapped_column(String(200), default="")
    workflow_id: Mapped[str] = mapped_column(String(400), default="")
    role: Mapped[str] = mapped_column(String(40), default="operator")
    title: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | done
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_by: Mapped[str] = mapped_column(String(100), default="")
    __table_args__ = (UniqueConstraint("kind", "order_key", "ref", name="uq_tasks_kind_order_ref"),
                      Index("ix_tasks_status", "status", "kind"))


class PendingPushRow(Base):
    """A validly signed push about an order code the hub does not know yet; delivered when it appears."""

    __tablename__ = "pending_pushes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(100))
    order_code: Mapped[str] = mapped_column(String(100))
    event: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (Index("ix_pending_pushes_code", "order_code", "delivered_at"),)


class PushEventRow(Base):
    """A marketplace push already handed over, by the platform's event id (redeliveries are no-ops)."""

    __tablename__ = "push_events"
    connector: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RateBucketRow(Base):
    """One platform limit's token bucket, shared by every worker process (times are epoch seconds)."""

    __tablename__ = "rate_buckets"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    banned_until: Mapped[float] = mapped_column(Float, default=0.0)


class ApiTokenRow(Base):
    """An API token: only its SHA-256 is kept (the token is shown once, at creation)."""

    __tablename__ = "api_tokens"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ConfigAuditRow(Base):
    """Append-only: every configuration change (connector, flow, token...), who and when."""

    __tablename__ = "config_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict] = mapped_column(JSON)


class MappingSpecTextRow(Base):
    """The text of a mapping spec, by its content hash: an order's history names the hash of the
    spec that mapped it, and an auditor must be able to read that exact version long after the file
    changed."""

    __tablename__ = "mapping_spec_texts"
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(500), default="")
    text: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditArchiveRow(Base):
    """One closed run of an order workflow, kept after Temporal's retention removes it: its
    timeline (decoded, redacted) and its raw history as Temporal stored it (still encrypted), gzipped."""

    __tablename__ = "audit_archive"
    workflow_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_queue: Mapped[str] = mapped_column(String(200), default="")
    workflow_type: Mapped[str] = mapped_column(String(100))
    order_key: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(30))
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    close_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    archived_at: Mapped[datetime] = mapped_column(UtcDateTime())
    history_events: Mapped[int] = mapped_column(Integer, default=0)
    history_sha256: Mapped[str] = mapped_column(String(64), doc="of the uncompressed history JSON")
    history_gz: Mapped[bytes] = mapped_column(LargeBinary)
    timeline: Mapped[dict] = mapped_column(JSON, doc="this run's timeline entries and run info")
    __table_args__ = (Index("ix_audit_archive_order", "order_key"),
                      Index("ix_audit_archive_close", "task_queue", "close_time"))


class AuditSkuRow(Base):
    """Which archived order workflows held a SKU (``tongdao audit sku`` after retention)."""

    __tablename__ = "audit_archive_skus"
    sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(400), primary_key=True)
