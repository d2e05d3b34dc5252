"""Store queries of the audit trail: mapping spec texts by content hash, the archive of closed order
workflows (so an order's timeline outlives Temporal's retention), and the per-order reads a timeline
joins with the history (quarantine, tasks, raw document versions). Mixed into :class:`store.Store`."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.tables import (
    AuditArchiveRow,
    AuditSkuRow,
    FlowVersionRow,
    MappingSpecTextRow,
    OrderRow,
    QuarantineRow,
    RawDocument,
    TaskRow,
)

ORDER_SUMMARY = ("key", "channel", "shop", "external_id", "source_connector", "raw_id", "hub_code", "mapping_name",
                 "mapping_hash", "stage", "status", "outcome", "revision", "wms_connector", "wms_order_id",
                 "erp_connector", "erp_number", "carrier_code", "tracking_number", "created_at", "updated_at")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RawVersion:
    """A raw document's identity without its payload: the timeline says which version arrived when,
    never what it contained (the payload holds the buyer's personal data)."""

    id: int
    sha256: str
    modified_at: datetime | None
    fetched_at: datetime


class AuditQueries:
    """Methods of :class:`store.Store`; ``session`` is the Store's transaction context."""

    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    # -- mapping spec texts -------------------------------------------------------------------------
    def save_spec_text(self, content_hash: str, name: str, source: str, text: str) -> bool:
        """Keep a spec's text under its content hash (first writer wins; the text of a hash never
        changes). Returns True when it was new."""
        with self.session() as s:
            if s.get(MappingSpecTextRow, content_hash) is not None:
                return False
        try:
            with self.session() as s:
                s.add(MappingSpecTextRow(content_hash=content_hash, name=name[:100], source=source[:500], text=text,
                                         first_seen_at=_now()))
            return True
        except IntegrityError:  # saved at the same moment by another process
            return False

    def spec_hashes(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(MappingSpecTextRow.content_hash)))

    def get_spec_text(self, digest: str) -> MappingSpecTextRow | None:
        """By full hash, or by a unique prefix of at least 8 hex digits (logs show 12).
        Raises ValueError when a prefix is ambiguous."""
        digest = digest.strip().lower()
        with self.session() as s:
            row = s.get(MappingSpecTextRow, digest)
            if row is not None or len(digest) >= 64 or len(digest) < 8:
                return row
            found = list(s.scalars(select(MappingSpecTextRow)
                                   .where(MappingSpecTextRow.content_hash.like(f"{digest}%")).limit(2)))
        if len(found) > 1:
            raise ValueError(f"hash prefix {digest!r} names more than one spec; give more digits")
        return found[0] if found else None

    def flow_versions_known(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (flow, version) pairs have their definition in ``flow_versions``."""
        wanted = {p for p in pairs if p[0]}
        if not wanted:
            return set()
        with self.session() as s:
            rows = s.execute(select(FlowVersionRow.name, FlowVersionRow.version)
                             .where(FlowVersionRow.name.in_({n for n, _ in wanted}))).all()
        return {(n, v) for n, v in rows if (n, v) in wanted}

    # -- what the store knows of one order --------------------------------------------------------------
    def order_summary(self, order_key: str) -> dict[str, Any] | None:
        """Where an order stands and the ids other systems gave it: columns only, never the canonical
        order (which holds the receiver)."""
        cols = [getattr(OrderRow, name) for name in ORDER_SUMMARY]
        with self.session() as s:
            row = s.execute(select(*cols).where(OrderRow.key == order_key)).first()
        return dict(zip(ORDER_SUMMARY, row, strict=True)) if row is not None else None

    def quarantine_of_order(self, order_key: str) -> list[QuarantineRow]:
        with self.session() as s:
            return list(s.scalars(select(QuarantineRow).where(QuarantineRow.order_key == order_key)
                                  .order_by(QuarantineRow.id)))

    def tasks_of_order(self, order_key: str) -> list[TaskRow]:
        with self.session() as s:
            return list(s.scalars(select(TaskRow).where(TaskRow.order_key == order_key).order_by(TaskRow.id)))

    def raw_versions(self, connector: str, external_id: str) -> list[RawVersion]:
        with self.session() as s:
            rows = s.execute(select(RawDocument.id, RawDocument.sha256, RawDocument.modified_at,
                                    RawDocument.fetched_at)
                             .where(RawDocument.connector == connector, RawDocument.doc_type == "order",
                                    RawDocument.external_id == external_id)
                             .order_by(RawDocument.id)).all()
        return [RawVersion(*row) for row in rows]

    # -- the archive of closed order workflows -------------------------------------------------------
    def archived_pairs(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (workflow id, run id) pairs are archived already."""
        wanted = set(pairs)
        if not wanted:
            return set()
        found: set[tuple[str, str]] = set()
        ids = sorted({w for w, _ in wanted})
        with self.session() as s:
            for start in range(0, len(ids), 500):
                rows = s.execute(select(AuditArchiveRow.workflow_id, AuditArchiveRow.run_id)
                                 .where(AuditArchiveRow.workflow_id.in_(ids[start:start + 500]))).all()
                found.update((w, r) for w, r in rows if (w, r) in wanted)
        return found

    def last_archived_close(self, task_queue: str) -> datetime | None:
        """The newest close time archived for this hub's task queue: where the next archiver run looks from."""
        with self.session() as s:
            return s.scalar(select(func.max(AuditArchiveRow.close_time))
                            .where(AuditArchiveRow.task_queue == task_queue))

    def archive_run(self, *, workflow_id: str, run_id: str, task_queue: str, workflow_type: str, order_key: str,
                    status: str, start_time: datetime | None, close_time: datetime | None, history_events: int,
                    history_sha256: str, history_gz: bytes, timeline: dict[str, Any], skus: Iterable[str]) -> bool:
        """Keep one closed run (idempotent: a run archived twice is kept once). True when new."""
        try:
            with self.session() as s:
                if s.get(AuditArchiveRow, (workflow_id, run_id)) is not None:
                    return False
                s.add(AuditArchiveRow(workflow_id=workflow_id, run_id=run_id, task_queue=task_queue,
                                      workflow_type=workflow_type, order_key=order_key, status=status,
                                      start_time=start_time, close_time=close_time, archived_at=_now(),
                                      history_events=history_events, history_sha256=history_sha256,
                                      history_gz=history_gz, timeline=timeline))
                for sku in sorted(set(skus)):
                    if s.get(AuditSkuRow, (sku, workflow_id)) is None:
                        s.add(AuditSkuRow(sku=sku[:200], workflow_id=workflow_id))
            return True
        except IntegrityError:  # archived at the same moment by another worker
            return False

    def archived_runs(self, workflow_id: str) -> list[AuditArchiveRow]:
        """The runs of a workflow, oldest first; one without a start time first (NULLS FIRST on every
        database: PostgreSQL would put it last, SQLite first)."""
        with self.session() as s:
            return list(s.scalars(select(AuditArchiveRow).where(AuditArchiveRow.workflow_id == workflow_id)
                                  .order_by(AuditArchiveRow.start_time.nulls_first(), AuditArchiveRow.run_id)))

    def archived_workflows_with_sku(self, sku: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(AuditSkuRow.workflow_id).where(AuditSkuRow.sku == sku)
                                  .order_by(AuditSkuRow.workflow_id)))


__all__ = ["AuditQueries", "RawVersion"]
