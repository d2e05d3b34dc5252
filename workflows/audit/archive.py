"""Keeping closed order workflows after Temporal's retention removes them.

Each closed run of an ``OrderLifecycle`` / ``OrderSync`` workflow (completed, failed, terminated,
timed out, and every continued-as-new run) is stored in the hub store once, keyed by workflow id and
run id: its timeline entries (decoded and redacted, so reading them later needs no payload key,
even after a key was rotated out) and a gzip copy of its raw history JSON exactly as Temporal stored
it (payloads still encrypted: the archive holds no more clear data than Temporal did).

The archiver is a workflow (:class:`workflows.audit.workflow.AuditArchiverWorkflow`) run by a
Temporal Schedule; its activity lists closed runs on this hub's task queue from Temporal's
visibility (``ExecutionStatus != "Running" AND CloseTime > <newest archived close - overlap>``),
skips those archived already and archives the rest, oldest close first.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from store import Store
from workflows.audit.history import read_run
from workflows.audit.models import ArchiveCounts, ArchiverInput, RunTimeline
from workflows.audit.specs import capture_spec
from workflows.audit.timeline import fetch_history_json, order_types_clause, quote

log = structlog.get_logger("tongdao.audit")

_STATUS = {"COMPLETED": "completed", "FAILED": "failed", "CANCELED": "canceled", "TERMINATED": "terminated",
           "CONTINUED_AS_NEW": "continued_as_new", "TIMED_OUT": "timed_out", "RUNNING": "running"}


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def closed_runs_query(task_queue: str, after: datetime | None) -> str:
    query = f'{order_types_clause()} AND ExecutionStatus != "Running" AND TaskQueue = {quote(task_queue)}'
    if after is not None:
        query += f' AND CloseTime > "{rfc3339(after)}"'
    return query


def _capture_specs(store: Store, run: RunTimeline) -> None:
    known = store.spec_hashes()
    for digest, name in run.mappings.items():
        if not capture_spec(store, name, digest, known):
            log.warning("audit.spec_text_unknown", mapping=name, hash=digest[:12],
                        hint="the spec changed before the hub stored this version's text")


async def archive_run(client: Client, store: Store, wf: WorkflowExecution, task_queue: str) -> bool:
    """Archive one closed run; True when it was new (an archived run is kept once)."""
    text = await fetch_history_json(client, wf.id, wf.run_id)
    run = await read_run(json.loads(text).get("events", []), wf.run_id, client.data_converter.payload_codec)
    run.run.source = "archive"
    if wf.status is not None:
        run.run.status = _STATUS.get(wf.status.name, run.run.status)
    await asyncio.to_thread(_capture_specs, store, run)
    data = text.encode()
    return await asyncio.to_thread(
        store.archive_run, workflow_id=wf.id, run_id=wf.run_id, task_queue=task_queue,
        workflow_type=wf.workflow_type, order_key=run.order_key, status=run.run.status,
        start_time=wf.start_time, close_time=wf.close_time, history_events=run.run.events,
        history_sha256=hashlib.sha256(data).hexdigest(), history_gz=gzip.compress(data, 6),
        timeline=run.model_dump(mode="json"), skus=run.skus)


async def archive_closed(client: Client, store: Store, inp: ArchiverInput,
                         heartbeat: Callable[..., Any] | None = None) -> ArchiveCounts:
    """One pass: archive up to ``inp.batch`` closed runs not archived yet, oldest close first."""
    last = await asyncio.to_thread(store.last_archived_close, inp.task_queue)
    after = last - timedelta(seconds=inp.overlap_s) if last else None
    listed = [wf async for wf in client.list_workflows(closed_runs_query(inp.task_queue, after))]
    done = await asyncio.to_thread(store.archived_pairs, [(wf.id, wf.run_id) for wf in listed])
    epoch = datetime.fromtimestamp(0, UTC)
    todo = sorted((wf for wf in listed if (wf.id, wf.run_id) not in done), key=lambda wf: wf.close_time or epoch)
    counts = ArchiveCounts(listed=len(listed), remaining=max(0, len(todo) - inp.batch))
    for wf in todo[:inp.batch]:
        try:
            counts.archived += await archive_run(client, store, wf, inp.task_queue)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise  # Temporal unavailable: the activity is retried
            counts.failed += 1  # removed between the listing and the read: nothing left to keep
            log.error("audit.archive_missed", workflow_id=wf.id, run_id=wf.run_id, error=str(exc)[:200])
        if heartbeat is not None:
            heartbeat(counts.archived)
    if counts.archived:
        log.info("audit.archived", archived=counts.archived, remaining=counts.remaining, task_queue=inp.task_queue)
    return counts


class AuditActivities:
    def __init__(self, store: Store, client: Client) -> None:
        self.store = store
        self.client = client

    @activity.defn(name="archive_closed_orders")
    async def archive_closed_orders(self, inp: ArchiverInput) -> ArchiveCounts:
        """Archive the order workflows closed since the last pass (timeline + compressed raw history)."""
        return await archive_closed(self.client, self.store, inp, heartbeat=activity.heartbeat)
