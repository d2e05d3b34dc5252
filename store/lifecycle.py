"""Store queries of the order's life beyond the happy path: the task inbox, pushes that arrived
before their order, and per-flow cursors. Mixed into :class:`store.Store`."""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.tables import CursorRow, FlowCursorRow, PendingPushRow, PushEventRow, TaskRow

TASK_KINDS = ("after_sales", "tracking_conflict", "out_of_stock", "approval", "manual_review", "missing_order",
              "low_stock", "erp_cancel_refused")


def _now() -> datetime:
    return datetime.now(UTC)


def fitted(value: str, size: int) -> str:
    """``value`` as kept in a column of ``size`` characters: itself when it fits, else a prefix and
    the SHA-256 of the whole (still one key per distinct value). Ids pushed from outside can be any
    length: PostgreSQL refuses an over-long one (SQLite would have kept it whole), and a push whose
    id cannot be stored would be refused and redelivered forever."""
    if len(value) <= size:
        return value
    return f"{value[:size - 65]}#{hashlib.sha256(value.encode()).hexdigest()}"


class LifecycleQueries:
    """Methods of :class:`store.Store`; ``session`` is the Store's transaction context."""

    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    # -- task inbox ---------------------------------------------------------------------------
    def raise_task(self, *, kind: str, order_key: str, title: str, details: dict[str, Any], ref: str = "",
                   workflow_id: str = "", role: str = "operator") -> tuple[int, bool]:
        """Open a task; the same (kind, order, ref) twice is one task. Returns (id, created)."""
        for _ in range(3):
            with self.session() as s:
                found = s.scalars(select(TaskRow).filter_by(kind=kind, order_key=order_key, ref=ref)).first()
                if found is not None:
                    return found.id, False
            try:
                with self.session() as s:
                    row = TaskRow(kind=kind, order_key=order_key, ref=ref, workflow_id=workflow_id, role=role,
                                  title=title[:300], details=details, status="open", created_at=_now(),
                                  updated_at=_now(), closed_by="")
                    s.add(row)
                    s.flush()
                    return row.id, True
            except IntegrityError:  # raised at the same moment by a retried activity: read it back
                continue
        raise RuntimeError(f"could not raise task {kind} for {order_key}")

    def list_tasks(self, status: str | None = "open", kind: str | None = None, role: str | None = None,
                   older_than: datetime | None = None) -> list[TaskRow]:
        with self.session() as s:
            q = select(TaskRow).order_by(TaskRow.id)
            if status:
                q = q.where(TaskRow.status == status)
            if kind:
                q = q.where(TaskRow.kind == kind)
            if role:
                q = q.where(TaskRow.role == role)
            if older_than:
                q = q.where(TaskRow.created_at < older_than)
            return list(s.scalars(q))

    def close_order_tasks(self, order_key: str, kinds: list[str], actor: str,
                          decision: dict[str, Any] | None = None) -> list[int]:
        """Close the open tasks of ``kinds`` of one order (a person decided); the decision is kept in
        each task's details. Returns the ids closed."""
        closed = []
        with self.session() as s:
            rows = s.scalars(select(TaskRow).where(TaskRow.order_key == order_key, TaskRow.status == "open",
                                                   TaskRow.kind.in_(kinds)))
            for row in rows:
                row.status, row.closed_by, row.updated_at = "done", actor, _now()
                if decision:
                    row.details = {**(row.details or {}), "decision": decision}
                closed.append(row.id)
        return closed

    def get_task(self, task_id: int) -> TaskRow | None:
        with self.session() as s:
            return s.get(TaskRow, task_id)

    def close_task(self, task_id: int, actor: str) -> TaskRow | None:
        with self.session() as s:
            row = s.get(TaskRow, task_id)
            if row is not None and row.status != "done":
                row.status, row.closed_by, row.updated_at = "done", actor, _now()
            return row

    # -- pushes for orders not known yet ---------------------------------------------------------
    def keep_pending_push(self, connector: str, order_code: str, event: dict[str, Any]) -> int:
        with self.session() as s:
            row = PendingPushRow(connector=connector, order_code=fitted(order_code, 100), event=event,
                                 received_at=_now(), delivered_at=None)
            s.add(row)
            s.flush()
            return row.id

    def take_pending_pushes(self, order_codes: list[str]) -> list[PendingPushRow]:
        """Pushes kept for these codes, oldest first, marked delivered (the caller applies them)."""
        with self.session() as s:
            codes = [fitted(code, 100) for code in order_codes]
            rows = list(s.scalars(select(PendingPushRow).where(PendingPushRow.order_code.in_(codes),
                                                               PendingPushRow.delivered_at.is_(None))
                                  .order_by(PendingPushRow.id)))
            for row in rows:
                row.delivered_at = _now()
            return rows

    def pending_pushes(self) -> list[PendingPushRow]:
        with self.session() as s:
            return list(s.scalars(select(PendingPushRow).where(PendingPushRow.delivered_at.is_(None))
                                  .order_by(PendingPushRow.id)))

    # -- marketplace pushes, deduplicated by event id ----------------------------------------------
    def push_event_seen(self, connector: str, event_id: str) -> bool:
        event_id = fitted(event_id, 200)
        with self.session() as s:
            return s.get(PushEventRow, (connector, event_id)) is not None

    def mark_push_event(self, connector: str, event_id: str) -> None:
        """Remember a push handed over (after it was: a failed hand-over is redelivered and retried)."""
        event_id = fitted(event_id, 200)
        try:
            with self.session() as s:
                if s.get(PushEventRow, (connector, event_id)) is None:
                    s.add(PushEventRow(connector=connector, event_id=event_id, received_at=_now()))
        except IntegrityError:  # marked at the same moment by a concurrent delivery
            pass

    # -- cursors ----------------------------------------------------------------------------------
    def get_cursor(self, connector: str, stream: str, flow: str = "") -> datetime | None:
        """The flow's cursor on a source; a flow without one yet starts from the connector's
        (shared, pre-flow) cursor, so upgrading keeps the position."""
        with self.session() as s:
            if flow:
                row = s.get(FlowCursorRow, (flow, connector, stream))
                if row is not None:
                    return row.position
            shared = s.get(CursorRow, (connector, stream))
            return shared.position if shared else None

    def set_cursor(self, connector: str, stream: str, position: datetime, force: bool = False,
                   flow: str = "") -> None:
        """Move the cursor forward (never back, unless ``force``: a deliberate re-read)."""
        for _ in range(3):
            try:
                with self.session() as s:
                    if flow:
                        row: Any = s.get(FlowCursorRow, (flow, connector, stream))
                        new: Any = FlowCursorRow(flow=flow, connector=connector, stream=stream, position=position,
                                                 updated_at=_now())
                    else:
                        row = s.get(CursorRow, (connector, stream))
                        new = CursorRow(connector=connector, stream=stream, position=position, updated_at=_now())
                    if row is None:
                        s.add(new)
                    elif force or position > row.position:
                        row.position, row.updated_at = position, _now()
                return
            except IntegrityError:  # two runs created the row at once; the next pass updates it
                continue

    def drop_flow_cursors(self, flow: str, connector: str | None = None) -> None:
        with self.session() as s:
            q = select(FlowCursorRow).where(FlowCursorRow.flow == flow)
            if connector:
                q = q.where(FlowCursorRow.connector == connector)
            for row in s.scalars(q):
                s.delete(row)


__all__ = ["LifecycleQueries", "TASK_KINDS"]
