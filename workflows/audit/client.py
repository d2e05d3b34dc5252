"""Client-side audit calls, shared by the hub's start-up, the API and the CLI: the archiver's
Temporal Schedule, exports, and a pass of the archiver on demand."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
)
from temporalio.service import RPCError

from store import Store
from workflows.audit.archive import archive_closed
from workflows.audit.models import ArchiveCounts, ArchiverInput
from workflows.audit.specs import record_specs
from workflows.audit.timeline import live_runs, timeline_for_key
from workflows.audit.workflow import AuditArchiverWorkflow
from workflows.order import order_workflow_id
from workflows.schedules import ensure_interval_schedule

log = structlog.get_logger("tongdao.audit")

EXPORT_FORMAT = "tongdao-audit-export/1"
HISTORIES_ENCODING = ("as stored by Temporal: payloads encrypted (binary/encrypted, AES-256-GCM, key id in "
                      "'encryption-key-id'); decode with the hub's payload keyring")


def archiver_schedule_id(task_queue: str) -> str:
    return f"audit-archiver:{task_queue}"


def archive_interval() -> timedelta | None:
    """``TONGDAO_AUDIT_ARCHIVE_EVERY`` seconds (default 60); 0 turns the schedule off."""
    raw = os.environ.get("TONGDAO_AUDIT_ARCHIVE_EVERY", "60").strip() or "60"
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"TONGDAO_AUDIT_ARCHIVE_EVERY: {raw!r} is not a number of seconds") from None
    return timedelta(seconds=seconds) if seconds > 0 else None


async def ensure_archiver(client: Client, task_queue: str, every: timedelta | None) -> str | None:
    """Create (or replace, when its interval changed) the archiver's schedule; delete it when off."""
    sid = archiver_schedule_id(task_queue)
    return await ensure_interval_schedule(client, sid, every, "audit archiver", ScheduleActionStartWorkflow(
        AuditArchiverWorkflow.run, ArchiverInput(task_queue=task_queue), id=sid, task_queue=task_queue,
        execution_timeout=timedelta(minutes=15)))


async def start_audit(client: Client, store: Store, task_queue: str) -> str | None:
    """At hub start: store the text of every shipped mapping spec by hash, and schedule the archiver.
    A failure is logged, never fatal: the hub's work does not depend on its audit trail's schedule."""
    count = await asyncio.to_thread(record_specs, store)
    try:
        sid = await ensure_archiver(client, task_queue, archive_interval())
    except (RPCError, ValueError) as exc:
        log.error("audit.archiver_not_scheduled", error=str(exc)[:300])
        return None
    log.info("audit.started", specs=count, archiver=sid)
    return sid


async def archive_now(client: Client, store: Store, task_queue: str, batch: int = 500) -> ArchiveCounts:
    """Archive what closed since the last pass, here and now (``tongdao audit archive``)."""
    total = ArchiveCounts()
    while True:
        counts = await archive_closed(client, store, ArchiverInput(task_queue=task_queue, batch=batch))
        total.listed, total.archived = total.listed + counts.listed, total.archived + counts.archived
        total.failed, total.remaining = total.failed + counts.failed, counts.remaining
        if counts.remaining == 0 or counts.archived == 0:
            return total


async def histories_of(client: Client | None, store: Store, key: str) -> list[dict[str, Any]]:
    """Every run's raw history, as stored (encrypted payloads): from Temporal, else from the archive."""
    workflow_id = order_workflow_id(key)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    if client is not None:
        for run, text in await live_runs(client, workflow_id):
            seen.add(run.run.run_id)
            out.append({"run_id": run.run.run_id, "source": "temporal", "events": run.run.events,
                        "history": json.loads(text)})
    for row in await asyncio.to_thread(store.archived_runs, workflow_id):
        if row.run_id in seen:
            continue
        out.append({"run_id": row.run_id, "source": "archive", "events": row.history_events,
                    "sha256": row.history_sha256, "history": json.loads(gzip.decompress(row.history_gz))})
    return out


async def export_orders(client: Client | None, store: Store, keys: list[str], actor: str) -> dict[str, Any]:
    """What ``tongdao audit export`` writes: each order's timeline (redacted) and raw histories
    (encrypted as Temporal stored them), so the file holds no personal data in clear."""
    orders = []
    for key in keys:
        timeline = await timeline_for_key(client, store, key)
        orders.append({"timeline": timeline.model_dump(mode="json"),
                       "histories": await histories_of(client, store, key)})
    return {"format": EXPORT_FORMAT, "exported_at": datetime.now(UTC).isoformat(), "exported_by": actor,
            "histories_encoding": HISTORIES_ENCODING, "orders": orders}
