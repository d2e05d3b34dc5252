"""Turning flow definitions into Temporal Schedules and workflows, and operating them.

One Schedule per flow source (``flow:{flow}:{connector}:{stream}``) runs the ingest workflow with
the route the flow defines, stamped with the flow's name and version (its content hash). A changed
flow replaces its schedules; runs already in flight keep the input, hence the version, they
started with. Pausing pauses the schedules (new work is held: the cursor stays where it is and
the next run catches up) and keeps inbound pushes in the store until resume.

Each flow keeps its own cursor per source (``IngestInput.flow``), so two flows on one connector do
not move each other's position; a source taken out of a flow, or a removed flow, loses its
schedules and cursors. ``FlowOps.reconcile_orders`` compares what the sources list with what the
hub holds (store and Temporal) and can re-ingest what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecutionStatus,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from canonical import order_key
from flows.model import Flow, FlowSource, check_against_registry
from flows.routes import kind_of, route_for_source
from store import Store
from workflows import search
from workflows.ingest import BackfillWorkflow, IngestWorkflow
from workflows.models import BackfillInput, IngestCounts, IngestInput
from workflows.order.client import release_held

log = structlog.get_logger("tongdao.flows")

def schedule_id(flow: str, source: FlowSource) -> str:
    return f"flow:{flow}:{source.connector}:{source.stream}"


def schedule_prefix(flow: str) -> str:
    """Every schedule of a flow starts with this (flow names cannot contain ':')."""
    return f"flow:{flow}:"


def _spec(flow: Flow) -> ScheduleSpec:
    if flow.schedule.cron:
        return ScheduleSpec(cron_expressions=[flow.schedule.cron])
    if flow.schedule.every:
        return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=flow.schedule.every)])
    return ScheduleSpec()  # push-only flow: the schedule runs only when triggered (run-now, backfills)


def _attributes(flow: Flow, source: FlowSource) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(search.FLOW_NAME, flow.name),
        SearchAttributePair(search.FLOW_VERSION, flow.version()),
        SearchAttributePair(search.CONNECTOR, source.connector),
    ])


def ingest_input(flow: Flow, source: FlowSource, store: Store) -> IngestInput:
    """The ingest workflow's input for one source: its route and its lag/overlap/chunk/window,
    as the flow sets them or else as the connector kind recommends (``ingest_defaults``)."""
    settings = source.ingest_settings(kind_of(store, source.connector))
    return IngestInput(connector=source.connector, stream=source.stream, route=route_for_source(flow, source, store),
                       lag=settings.lag, overlap=settings.overlap, chunk=settings.chunk, window=settings.window,
                       flow=flow.name)


async def flow_schedule_ids(client: Client, flow_name: str) -> list[str]:
    """Ids of every schedule Temporal holds for the flow, including those of sources it no longer has."""
    prefix = schedule_prefix(flow_name)
    return [entry.id async for entry in await client.list_schedules() if entry.id.startswith(prefix)]


async def apply_flow(client: Client, store: Store, flow: Flow, task_queue: str, paused: bool = False) -> list[str]:
    """Create or replace the flow's schedules (idempotent), and delete those of removed sources.

    A source taken out of the flow loses its schedule and its cursor for this flow: were it added
    back later, it should start afresh rather than from a position that may be months old.
    """
    ids = []
    for source in flow.sources:
        sid = schedule_id(flow.name, source)
        inp = await asyncio.to_thread(ingest_input, flow, source, store)
        # the input depends on the connector kind's ingest defaults too, not only on the flow's content:
        # its digest in the note makes a hub whose defaults changed replace the schedule at start-up
        digest = hashlib.sha256(inp.model_dump_json().encode()).hexdigest()[:8]
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                IngestWorkflow.run, inp, id=f"ingest:{flow.name}:{source.connector}", task_queue=task_queue,
                typed_search_attributes=_attributes(flow, source),
            ),
            spec=_spec(flow),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(paused=paused or not flow.enabled,
                                note=f"flow {flow.name} version {flow.version()} input {digest}"),
        )
        handle = client.get_schedule_handle(sid)
        try:
            current = (await handle.describe()).schedule.state
        except RPCError:
            current = None
        if current is None or current.note != schedule.state.note or current.paused != schedule.state.paused:
            # a new or changed flow (or a changed pause state): replace; unchanged ones are left as they
            # are, so `tongdao up` reconciling every flow at start costs one describe per schedule
            if current is not None:
                await handle.delete()
            await client.create_schedule(sid, schedule)
        ids.append(sid)
    stale = [sid for sid in await flow_schedule_ids(client, flow.name) if sid not in ids]
    for sid in stale:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(sid).delete()
        connector = sid.removeprefix(schedule_prefix(flow.name)).rsplit(":", 1)[0]
        if connector not in {s.connector for s in flow.sources}:
            await asyncio.to_thread(store.drop_flow_cursors, flow.name, connector)
    log.info("flow.applied", flow=flow.name, version=flow.version(), schedules=ids, removed=stale, paused=paused)
    return ids


async def _schedule_handles(client: Client, flow: Flow) -> list[Any]:
    return [client.get_schedule_handle(schedule_id(flow.name, s)) for s in flow.sources]


async def pause_flow(client: Client, flow: Flow, actor: str) -> None:
    for handle in await _schedule_handles(client, flow):
        await handle.pause(note=f"paused by {actor}")


async def resume_flow(client: Client, flow: Flow, actor: str) -> None:
    for handle in await _schedule_handles(client, flow):
        await handle.unpause(note=f"resumed by {actor}")


async def run_now(client: Client, flow: Flow) -> None:
    for handle in await _schedule_handles(client, flow):
        await handle.trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def remove_flow(client: Client | None, flow: Flow, store: Store | None = None) -> None:
    """Delete every schedule of the flow (also those of sources removed earlier) and, given the
    store, the flow's cursors: a flow added again under the same name starts afresh."""
    if client is not None:
        ids = {schedule_id(flow.name, s) for s in flow.sources}
        with contextlib.suppress(RPCError):
            ids |= set(await flow_schedule_ids(client, flow.name))
        for sid in sorted(ids):
            with contextlib.suppress(RPCError):
                await client.get_schedule_handle(sid).delete()
    if store is not None:
        await asyncio.to_thread(store.drop_flow_cursors, flow.name)


async def start_backfill(client: Client, store: Store, flow: Flow, since: datetime, until: datetime,
                         task_queue: str, sources: list[FlowSource] | None = None,
                         prefix: str = "backfill") -> list[str]:
    """Start one backfill workflow per source (``sources``: only these) over [since, until)."""
    ids = []
    for source in flow.sources if sources is None else sources:
        route = await asyncio.to_thread(route_for_source, flow, source, store)
        wf_id = f"{prefix}:{flow.name}:{source.connector}:{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}"
        await client.start_workflow(
            BackfillWorkflow.run,
            BackfillInput(connector=source.connector, stream=source.stream, route=route, since=since, until=until,
                          page=flow.backfill_page, pause=flow.backfill_pause),
            id=wf_id, task_queue=task_queue, search_attributes=_attributes(flow, source),
        )
        ids.append(wf_id)
    return ids


async def _count(client: Client, query: str) -> int:
    try:
        return (await client.count_workflows(query)).count
    except RPCError:
        return -1


async def flow_status(client: Client | None, store: Store, flow: Flow, paused: bool) -> dict[str, Any]:
    """Per flow and source: cursor, lag, runs and orders in the last hour, failures, quarantine."""
    now = datetime.now(UTC)
    hour_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = f'FlowName = "{flow.name}"'
    sources = []
    for source in flow.sources:
        cursor = await asyncio.to_thread(store.get_cursor, source.connector, source.stream, flow.name)
        entry: dict[str, Any] = {
            "connector": source.connector, "stream": source.stream,
            "cursor": cursor.isoformat() if cursor else None,
            "lag_s": round((now - cursor).total_seconds(), 1) if cursor else None,
        }
        if client is not None:
            src = f'{base} AND Connector = "{source.connector}"'
            entry["runs_last_hour"] = await _count(
                client, f'{src} AND WorkflowType = "OrderIngest" AND StartTime > "{hour_ago}"')
            entry["orders_last_hour"] = await _count(
                client, f'{src} AND (WorkflowType = "OrderLifecycle" OR WorkflowType = "OrderSync") '
                        f'AND StartTime > "{hour_ago}"')
            entry["failures_last_hour"] = await _count(
                client, f'{src} AND ExecutionStatus = "Failed" AND StartTime > "{hour_ago}"')
            entry["quarantined"] = await _count(
                client, f'{src} AND Stage = "quarantined" AND ExecutionStatus = "Running"')
        sources.append(entry)
    held = await asyncio.to_thread(store.held_pushes, flow.name)
    return {
        "flow": flow.name, "version": flow.version(), "enabled": flow.enabled, "paused": paused,
        "sources": sources, "held_pushes": len(held),
        "pending_approvals": 0,  # approvals arrive with the order-to-cash rules
    }


# -- reconciling orders ---------------------------------------------------------------------------
GAVE_UP = frozenset({WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TERMINATED,
                     WorkflowExecutionStatus.TIMED_OUT})
"""Order workflows in these states did not bring their order through: reconcile counts them missing.
A cancelled one was stopped on purpose by someone and is left alone."""


async def listed_orders(connector: Any, since: datetime, until: datetime) -> dict[str, str | None]:
    """What a source lists in [since, until): external id → the shop its document names (None when
    only ids are known).

    ``list_order_ids`` (ids and modification times from the platform's increment listing) is
    preferred: it costs one call per page instead of one per order. Connectors without it are
    read with ``pull_orders``, whose full documents also tell the shop.
    """
    found: dict[str, str | None] = {}
    lister = getattr(connector, "list_order_ids", None)
    if lister is not None:
        for item in await lister(since, until):
            found[str(item[0] if isinstance(item, tuple | list) else item)] = None
        return found
    async for page in connector.pull_orders(since, until):
        for record in page:
            found[record.external_id] = connector.shop_of(record.payload)
    return found


async def order_presence(client: Client, store: Store, channel: str, shop: str | None, source: str,
                         external_id: str) -> tuple[bool, str]:
    """Whether the hub has this order in hand: ``(present, business key or "")``.

    Present means the store knows the order and its workflow is running or finished normally. A
    workflow that failed, was terminated or timed out counts as missing, and so does one Temporal
    does not know, unless the store says the order completed (its history may have outlived the
    namespace's retention). Without a shop (a listing of ids only), the order is found in the store
    by channel, external id and source connector.
    """
    from workflows.order import order_workflow_id

    if shop is not None:
        row = await asyncio.to_thread(store.get_order, order_key(channel, shop, external_id))
    else:
        rows = await asyncio.to_thread(store.orders_by_external_id, external_id)
        matching = [r for r in rows if r.channel == channel and r.source_connector == source] or \
                   [r for r in rows if r.channel == channel]
        row = matching[0] if matching else None
    key = row.key if row is not None else (order_key(channel, shop, external_id) if shop is not None else "")
    if not key:
        return False, ""
    try:
        status = (await client.get_workflow_handle(order_workflow_id(key)).describe()).status
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        status = None
    if status is None:
        return bool(row is not None and (row.stage == "completed" or row.outcome)), key
    if status in GAVE_UP:
        return False, key
    return row is not None or status == WorkflowExecutionStatus.RUNNING, key


async def _source_report(client: Client, store: Store, flow: Flow, source: FlowSource, since: datetime,
                         until: datetime) -> dict[str, Any]:
    """One source's line of a reconcile report: what it lists, what the hub holds, what is missing."""
    from connectors.registry import instantiate

    route = await asyncio.to_thread(route_for_source, flow, source, store)
    connector = await asyncio.to_thread(instantiate, store, source.connector)
    try:
        listed = await listed_orders(connector, since, until)
        fallback_shop = route.shop or str(getattr(connector.settings, "shop", "") or "") or None
    finally:
        await connector.aclose()
    channel = route.channel
    gate = asyncio.Semaphore(20)

    async def check(external_id: str, shop: str | None) -> bool:
        async with gate:
            present, _ = await order_presence(client, store, channel, route.shop or shop or fallback_shop,
                                              source.connector, external_id)
            return present

    ids = list(listed)
    present = await asyncio.gather(*(check(i, listed[i]) for i in ids))
    missing = [i for i, ok in zip(ids, present, strict=True) if not ok]
    return {"connector": source.connector, "stream": source.stream, "listed": len(ids),
            "in_hub": len(ids) - len(missing), "missing": missing, "fixed": 0}



class FlowNotFound(LookupError):
    pass


class FlowOps:
    """What the CLI and the HTTP API do to flows: one implementation for both."""

    def __init__(self, client: Client | None, store: Store, task_queue: str, actor: str) -> None:
        self.client, self.store, self.task_queue, self.actor = client, store, task_queue, actor

    def _need_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("Temporal is not reachable: start the hub with `tongdao up`")
        return self.client

    def get(self, name: str) -> tuple[Flow, Any]:
        row = self.store.get_flow(name)
        if row is None:
            raise FlowNotFound(f"no flow named {name!r} (tongdao flows list)")
        return Flow.model_validate(row.definition), row

    async def add(self, flow: Flow) -> dict[str, Any]:
        problems = await asyncio.to_thread(check_against_registry, flow, self.store)
        if problems:
            raise ValueError(f"flow {flow.name!r}: " + "; ".join(problems))
        created = await asyncio.to_thread(self.store.save_flow, flow.name, flow.version(),
                                          flow.model_dump(mode="json"), self.actor)
        await asyncio.to_thread(self.store.audit, self.actor, "flow.save", flow.name,
                                {"version": flow.version(), "created": created})
        row = self.store.get_flow(flow.name)
        schedules: list[str] = []
        if self.client is not None:
            schedules = await apply_flow(self.client, self.store, flow, self.task_queue,
                                         paused=bool(row and row.paused))
            if flow.stock is not None:  # the pump shows the flow's channels their stock from now on
                from workflows.stock.client import ensure_pump

                await ensure_pump(self.client, self.task_queue, refresh=True)
        return {"flow": flow.name, "version": flow.version(), "created": created, "schedules": schedules,
                "applied": self.client is not None}

    async def pause(self, name: str) -> dict[str, Any]:
        flow, _ = self.get(name)
        await pause_flow(self._need_client(), flow, self.actor)
        await asyncio.to_thread(self.store.set_flow_paused, name, True, self.actor)
        await asyncio.to_thread(self.store.audit, self.actor, "flow.pause", name, {})
        return {"flow": name, "paused": True}

    async def resume(self, name: str) -> dict[str, Any]:
        flow, _ = self.get(name)
        client = self._need_client()
        await asyncio.to_thread(self.store.set_flow_paused, name, False, self.actor)
        await asyncio.to_thread(self.store.audit, self.actor, "flow.resume", name, {})
        await resume_flow(client, flow, self.actor)
        from flows.pushes import release_held_orders

        released = await release_held(client, self.store, name)
        released += await release_held_orders(client, self.store, self.task_queue, name)
        await run_now(client, flow)  # catch up at once rather than at the next tick
        return {"flow": name, "paused": False, "released_pushes": released}

    async def run_now(self, name: str) -> dict[str, Any]:
        flow, row = self.get(name)
        if row.paused:
            raise ValueError(f"flow {name!r} is paused; resume it first")
        await run_now(self._need_client(), flow)
        return {"flow": name, "triggered": [schedule_id(name, s) for s in flow.sources]}

    async def backfill(self, name: str, since: datetime, until: datetime) -> dict[str, Any]:
        flow, _ = self.get(name)
        ids = await start_backfill(self._need_client(), self.store, flow, since, until, self.task_queue)
        return {"flow": name, "workflows": ids, "since": since.isoformat(), "until": until.isoformat()}

    async def remove(self, name: str) -> dict[str, Any]:
        flow, _ = self.get(name)
        await remove_flow(self.client, flow, self.store)
        await asyncio.to_thread(self.store.remove_flow, name)
        await asyncio.to_thread(self.store.audit, self.actor, "flow.remove", name, {})
        return {"flow": name, "removed": True}

    async def status(self, name: str | None = None) -> list[dict[str, Any]]:
        rows = [self.get(name)[1]] if name else await asyncio.to_thread(self.store.list_flows)
        return [await flow_status(self.client, self.store, Flow.model_validate(r.definition), r.paused)
                for r in rows]

    async def reconcile_orders(self, name: str, since: datetime, until: datetime, fix: bool = False,
                               wait_s: float = 600.0) -> dict[str, Any]:
        """Compare what each source of the flow lists in [since, until) with what the hub holds.

        An order is missing when the store does not know it, or when its workflow failed, was
        terminated or timed out (or is unknown to Temporal while the store does not say it
        completed). ``fix`` re-reads the window of every source with missing orders as a backfill
        (workflow id ``reconcile:...``): known orders are no-ops (order workflows are keyed by
        business key), missing ones are handed over again, and workflows that gave up are started
        anew (the order workflow id reuse policy allows a new run after a failed one). It waits up
        to ``wait_s`` for those backfills and counts as ``fixed`` the missing orders now present.
        """
        flow, _ = self.get(name)
        client = self._need_client()
        if until <= since:
            raise ValueError("until must be after since")
        sources: list[dict[str, Any]] = []
        for source in flow.sources:
            sources.append(await _source_report(client, self.store, flow, source, since, until))
        if fix:
            started: dict[int, str] = {}
            for index, (source, report) in enumerate(zip(flow.sources, sources, strict=True)):
                if not report["missing"]:
                    continue
                try:
                    (started[index],) = await start_backfill(client, self.store, flow, since, until, self.task_queue,
                                                             sources=[source], prefix="reconcile")
                except WorkflowAlreadyStartedError as exc:  # the same reconcile is still running: join it
                    started[index] = exc.workflow_id
            if started:
                results = [client.get_workflow_handle(i, result_type=IngestCounts).result() for i in started.values()]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*results), timeout=wait_s)
            for index, workflow_id in started.items():
                report = sources[index]
                after = await _source_report(client, self.store, flow, flow.sources[index], since, until)
                still = set(after["missing"])
                report["fixed"] = sum(1 for i in report["missing"] if i not in still)
                report["workflow"] = workflow_id
        return {"flow": name, "since": since.isoformat(), "until": until.isoformat(), "sources": sources,
                "missing_total": sum(len(r["missing"]) for r in sources),
                "fixed_total": sum(r["fixed"] for r in sources)}

    async def reconcile(self) -> int:
        """Make the schedules match the stored flows (at hub start-up).

        Also deletes the schedules of flows no longer stored (``tongdao flows remove`` run while
        the hub was down removed the flow from the store only), but only those that start work on
        this hub's task queue: another hub may share the namespace.
        """
        client = self._need_client()
        rows = await asyncio.to_thread(self.store.list_flows)
        for row in rows:
            await apply_flow(client, self.store, Flow.model_validate(row.definition), self.task_queue,
                             paused=row.paused)
        stored = {row.name for row in rows}
        async for entry in await client.list_schedules():
            name = entry.id.split(":", 2)[1] if entry.id.startswith("flow:") and entry.id.count(":") >= 2 else None
            if name is None or name in stored:
                continue
            handle = client.get_schedule_handle(entry.id)
            with contextlib.suppress(RPCError):
                action = (await handle.describe()).schedule.action
                if isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == self.task_queue:
                    await handle.delete()
                    log.info("flow.orphan_schedule_deleted", schedule=entry.id)
        return len(rows)
