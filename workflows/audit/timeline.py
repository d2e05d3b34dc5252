"""An order's audit timeline: every run of its workflow (from Temporal, or from the archive once
Temporal's retention removed it) joined with what the hub store knows (raw document versions,
quarantine entries, tasks and who closed them, the mapping and flow versions behind it).

Temporal is read first; a run it no longer has is read from the archive (:mod:`workflows.audit.archive`),
and without Temporal at all (unreachable) the archive alone answers. Both give the same entries for
a run, because the archive keeps exactly what :func:`workflows.audit.history.read_run` made of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from canonical import hub_code
from canonical.redact import redact, scrub_text
from store import Store
from workflows.audit.history import CALLS, ORDER_WORKFLOW_TYPES, read_run
from workflows.audit.models import FlowVersionRef, MappingVersion, RunTimeline, Timeline, TimelineEntry
from workflows.audit.specs import capture_spec
from workflows.order import order_workflow_id

log = structlog.get_logger("tongdao.audit")


def quote(value: str) -> str:
    """A value inside a visibility query's double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def order_types_clause() -> str:
    return "WorkflowType IN (" + ", ".join(quote(t) for t in ORDER_WORKFLOW_TYPES) + ")"


async def fetch_history_json(client: Client, workflow_id: str, run_id: str) -> str:
    """One run's history as Temporal stores it (payloads still encrypted), in its JSON form."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return history.to_json()


async def live_runs(client: Client, workflow_id: str) -> list[tuple[RunTimeline, str]]:
    """Every run Temporal still has of ``workflow_id``, read, with its history JSON. A run listed but
    already deleted (retention at work) is left out: the archive has it."""
    import json

    out: list[tuple[RunTimeline, str]] = []
    codec = client.data_converter.payload_codec
    async for wf in client.list_workflows(f"WorkflowId = {quote(workflow_id)}"):
        try:
            text = await fetch_history_json(client, wf.id, wf.run_id)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        run = await read_run(json.loads(text).get("events", []), wf.run_id, codec)
        run.run.source = "temporal"
        if wf.status == WorkflowExecutionStatus.RUNNING:
            run.entries.extend(await _pending(client, wf.id, wf.run_id, run))
        out.append((run, text))
    return out


async def _pending(client: Client, workflow_id: str, run_id: str, run: RunTimeline) -> list[TimelineEntry]:
    """Activities of a running order still being retried: their attempts and last failure are not in
    the history until they end, so an auditor looking now would otherwise not see the retries."""
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError:
        return []
    entries = []
    for p in desc.raw_description.pending_activities:
        step = p.activity_type.name
        scheduled = next((e for e in reversed(run.entries) if e.what.startswith(f"{step} scheduled")), None)
        when = next((t.ToDatetime(tzinfo=UTC) for t in (p.last_attempt_complete_time, p.last_started_time,
                                                          p.scheduled_time) if t.seconds), datetime.now(UTC))
        failure = scrub_text(p.last_failure.message)[:300] if p.HasField("last_failure") else ""
        entries.append(TimelineEntry(
            at=when, kind="call" if step in CALLS else "step", run_id=run_id, step=step, attempt=p.attempt,
            key=scheduled.key if scheduled else "", target=scheduled.target if scheduled else "", outcome="pending",
            what=f"{step} in progress: attempt {p.attempt}" + (f", last failure: {failure[:160]}" if failure else ""),
            details={"last_failure": failure, "state": int(p.state)}))
    return entries


def archived_runs(store: Store, workflow_id: str, skip: set[str]) -> list[RunTimeline]:
    runs = []
    for row in store.archived_runs(workflow_id):
        if row.run_id in skip:
            continue
        run = RunTimeline.model_validate(row.timeline)
        run.run.source = "archive"
        runs.append(run)
    return runs


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def store_entries(store: Store, order_key: str, order: dict[str, Any] | None, external_id: str,
                  source: str) -> list[TimelineEntry]:
    """What the hub store says happened: versions received, quarantine, tasks, who decided what."""
    entries: list[TimelineEntry] = []
    connector = (order or {}).get("source_connector") or source
    if connector and external_id:
        for raw in store.raw_versions(connector, external_id):
            modified = f", modified on the platform {raw.modified_at:%Y-%m-%d %H:%M:%S}" if raw.modified_at else ""
            entries.append(TimelineEntry(at=raw.fetched_at, kind="document", key=external_id, target=connector,
                                         what=f"raw document {raw.id} stored (sha256 {raw.sha256[:12]}{modified})",
                                         details={"raw_id": raw.id, "sha256": raw.sha256,
                                                  "modified_at": _iso(raw.modified_at)}))
    for q in store.quarantine_of_order(order_key):
        entries.append(TimelineEntry(
            at=q.created_at, kind="quarantine", outcome=q.status,
            what=f"quarantine #{q.id} opened at {q.stage}: {scrub_text(q.reason)[:200]}",
            details=redact({"id": q.id, "stage": q.stage, "reason": q.reason, "errors": q.errors,
                            "mapping": q.mapping_name, "mapping_hash": q.mapping_hash, "status": q.status,
                            "replay_count": q.replay_count})))
        if q.status == "resolved":
            entries.append(TimelineEntry(at=q.updated_at, kind="quarantine", outcome="resolved",
                                         what=f"quarantine #{q.id} resolved after {q.replay_count} replay(s)",
                                         details={"id": q.id, "replay_count": q.replay_count}))
    for t in store.tasks_of_order(order_key):
        entries.append(TimelineEntry(at=t.created_at, kind="task", outcome=t.status,
                                     what=f"task #{t.id} raised ({t.kind}, for {t.role}): {scrub_text(t.title)}",
                                     details=redact({"id": t.id, "kind": t.kind, "ref": t.ref, "role": t.role,
                                                     "details": t.details})))
        if t.status == "done":
            decision = (t.details or {}).get("decision") or {}
            said = (f": {decision.get('action')} as {decision.get('role') or '-'}, "
                    f"\"{scrub_text(str(decision.get('comment') or ''))[:120]}\"") if decision else ""
            entries.append(TimelineEntry(at=t.updated_at, kind="decision", actor=t.closed_by, outcome="closed",
                                         what=f"task #{t.id} closed by {t.closed_by or '?'}{said}",
                                         details={"id": t.id, "kind": t.kind, **({"decision": decision}
                                                                                 if decision else {})}))
    for m in store.stock_ledger(ref=order_key, limit=500):
        entries.append(stock_entry(m))
    return entries


def stock_entry(m: Any) -> TimelineEntry:
    """One stock movement of the pool's ledger (cause, units, the figures after it)."""
    moved = ", ".join(part for part in (f"on hand {m.on_hand_delta:+d}" if m.on_hand_delta else "",
                                        f"reserved {m.reserved_delta:+d}" if m.reserved_delta else "") if part)
    return TimelineEntry(at=m.at, kind="stock", outcome=m.cause, key=m.ref, target=m.warehouse,
                         what=f"stock {m.cause}: {m.sku} in {m.warehouse} {moved or 'noted'} → on hand "
                              f"{m.on_hand_after}, reserved {m.reserved_after}" + (f" ({m.note})" if m.note else ""),
                         details={"sku": m.sku, "warehouse": m.warehouse, "cause": m.cause, "ref": m.ref,
                                  "on_hand_delta": m.on_hand_delta, "reserved_delta": m.reserved_delta,
                                  "on_hand_after": m.on_hand_after, "reserved_after": m.reserved_after,
                                  "batch": m.batch_code, "ledger_id": m.id})


def split_key(key: str) -> tuple[str, str, str]:
    """``channel:shop:external_id`` (channels have no colon; the external id is the last part)."""
    channel, _, rest = key.partition(":")
    shop, _, external_id = rest.rpartition(":")
    return channel, shop, external_id


def assemble(store: Store, key: str, runs: Sequence[RunTimeline]) -> Timeline:
    """The timeline from the runs found (live or archived) and the store; LookupError when the hub
    knows nothing of the order."""
    order = store.order_summary(key)
    if not runs and order is None:
        raise LookupError(f"no order {key} in Temporal, the archive or the hub store")
    runs = sorted(runs, key=lambda r: (r.run.started_at or datetime.fromtimestamp(0, UTC), r.run.run_id))
    ref = next((r.order for r in runs if r.order.get("external_id")), {})
    channel, shop, external_id = split_key(key)
    channel = (order or {}).get("channel") or ref.get("channel") or channel
    shop = (order or {}).get("shop") or ref.get("shop") or shop
    external_id = (order or {}).get("external_id") or ref.get("external_id") or external_id
    entries = [e for r in runs for e in r.entries]
    entries += store_entries(store, key, order, external_id, ref.get("source", ""))
    entries.sort(key=lambda e: e.at)  # stable: a run's entries keep their history order at equal times
    mappings: dict[str, str] = {}
    for r in runs:
        mappings.update({h: n for h, n in r.mappings.items() if h not in mappings})
    if order and order.get("mapping_hash") and order["mapping_hash"] not in mappings:
        mappings[order["mapping_hash"]] = order.get("mapping_name", "")
    known = store.spec_hashes()
    flows = list(dict.fromkeys(f for r in runs for f in r.flows))
    stored_flows = store.flow_versions_known(flows)
    sources = sorted({r.run.source for r in runs})
    skus = list(dict.fromkeys(s for r in runs for s in r.skus))
    return Timeline(
        workflow_id=order_workflow_id(key), order_key=key, channel=channel, shop=shop, external_id=external_id,
        hub_code=(order or {}).get("hub_code") or hub_code(key),
        source="+".join(s for s in ("temporal", "archive") if s in sources) or "store",
        runs=[r.run for r in runs], skus=skus,
        mappings=[MappingVersion(name=n, hash=h, spec_stored=capture_spec(store, n, h, known)) for h, n in
                  mappings.items()],
        flows=[FlowVersionRef(name=n, version=v, definition_stored=(n, v) in stored_flows) for n, v in flows],
        order=redact({k: _iso(v) for k, v in (order or {}).items()}), entries=entries)


async def timeline_for_key(client: Client | None, store: Store, key: str) -> Timeline:
    """The timeline of the order ``key`` (``channel:shop:external_id``): Temporal first, then the archive."""
    workflow_id = order_workflow_id(key)
    live: list[RunTimeline] = []
    if client is not None:
        live = [run for run, _ in await live_runs(client, workflow_id)]
    have = {r.run.run_id for r in live}
    archived = await asyncio.to_thread(archived_runs, store, workflow_id, have)
    return await asyncio.to_thread(assemble, store, key, [*live, *archived])


async def order_timeline(client: Client | None, store: Store, channel: str, shop: str, external_id: str
                         ) -> Timeline:
    from canonical import order_key

    return await timeline_for_key(client, store, order_key(channel, shop, external_id))


async def sku_order_keys(client: Client | None, store: Store, sku: str, task_queue: str = "") -> list[str]:
    """Keys of the orders that held ``sku``: the ``Skus`` search attribute in Temporal (this hub's
    task queue) and the archive's SKU index, oldest workflow id first."""
    ids: dict[str, None] = {}
    if client is not None:
        query = f"Skus = {quote(sku)} AND {order_types_clause()}"
        if task_queue:
            query += f" AND TaskQueue = {quote(task_queue)}"
        async for wf in client.list_workflows(query):
            ids.setdefault(wf.id, None)
    for wid in await asyncio.to_thread(store.archived_workflows_with_sku, sku):
        ids.setdefault(wid, None)
    return sorted(wid.removeprefix("order:") for wid in ids if wid.startswith("order:"))


async def sku_timelines(client: Client | None, store: Store, sku: str, task_queue: str = "", limit: int = 20
                        ) -> dict[str, Any]:
    """``{"sku", "total", "truncated", "orders": [timeline, ...]}``: the orders holding a SKU, each
    with its timeline (the first ``limit``)."""
    keys = await sku_order_keys(client, store, sku, task_queue)
    orders = []
    for key in keys[:limit]:
        try:
            orders.append(await timeline_for_key(client, store, key))
        except LookupError:
            continue
    movements = await asyncio.to_thread(store.stock_ledger, sku, 500)
    return {"sku": sku, "total": len(keys), "truncated": len(keys) > limit,
            "orders": [t.model_dump(mode="json") for t in orders],
            "stock": [stock_entry(m).model_dump(mode="json") for m in movements]}


# -- text --------------------------------------------------------------------------------------------
def render_text(timeline: Timeline) -> str:
    """The timeline as an auditor reads it in a terminal: a header, then one line per entry."""
    t = timeline
    lines = [f"order {t.order_key}  ·  workflow {t.workflow_id}  ·  hub code {t.hub_code}  ·  read from {t.source}"]
    for r in t.runs:
        span = f"{r.started_at:%Y-%m-%d %H:%M:%S}" if r.started_at else "?"
        if r.closed_at:
            span += f" → {r.closed_at:%Y-%m-%d %H:%M:%S}"
        lines.append(f"run {r.run_id[:8]}  {r.workflow_type} {r.status}  {span}  ({r.events} events, {r.source})")
    o = t.order
    if o:
        lines.append(f"store: stage {o.get('stage') or '-'}, outcome {o.get('outcome') or '-'}, status "
                     f"{o.get('status') or '-'}; WMS {o.get('wms_connector') or '-'} {o.get('wms_order_id') or ''}; "
                     f"ERP {o.get('erp_connector') or '-'} {o.get('erp_number') or ''}; tracking "
                     f"{o.get('carrier_code') or ''} {o.get('tracking_number') or '-'}")
    versions = [f"mapping {m.name} {m.hash[:12]} ({'spec stored' if m.spec_stored else 'spec text unknown'})"
                for m in t.mappings]
    versions += [f"flow {f.name} {f.version} ({'definition stored' if f.definition_stored else 'not stored'})"
                 for f in t.flows]
    if versions:
        lines.append("versions: " + "; ".join(versions))
    if t.skus:
        lines.append("SKUs: " + ", ".join(t.skus))
    for e in t.entries:
        stamp = f"{e.at:%Y-%m-%d %H:%M:%S.%f}"[:23]
        lines.append(f"{stamp}  {(e.run_id[:8] or 'store'):<8}  {e.kind:<10} {e.what}")
    return "\n".join(lines)
