"""Turning flow definitions into Temporal Schedules and workflows, and operating them.

One Schedule per flow source (``flow:{flow}:{connector}:{stream}``) runs the ingest workflow with
the route the flow defines, stamped with the flow's name and version (its content hash). A changed
flow replaces its schedules; runs already in flight keep the input, hence the version, they
started with. Pausing pauses the schedules (new work is held: the cursor stays where it is and
the next run catches up) and keeps inbound pushes in the store until resume.
"""

from __future__ import annotations

import asyncio
import contextlib
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
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from flows.model import Flow, FlowSource, check_against_registry
from store import Store
from workflows import search
from workflows.ingest import BackfillWorkflow, IngestWorkflow
from workflows.models import BackfillInput, IngestInput, Route, RouteRule, StepOptions
from workflows.order.client import release_held

log = structlog.get_logger("tongdao.flows")

def schedule_id(flow: str, source: FlowSource) -> str:
    return f"flow:{flow}:{source.connector}:{source.stream}"


def route_for_source(flow: Flow, source: FlowSource, store: Store) -> Route:
    row = store.get_connector(source.connector)
    kind = row.kind if row else ""
    if not flow.targets.wms:
        raise ValueError(f"flow {flow.name!r}: targets.wms is required for order flows")
    return Route(
        channel=source.channel or kind,
        shop=source.shop,
        order_mapping=source.mapping_for(kind),
        wms=flow.targets.wms,
        wms_mapping=flow.targets.wms_mapping,
        erp=flow.targets.erp,
        erp_mapping=flow.targets.erp_mapping,
        context=dict(flow.context),
        rules=[RouteRule(when=r.when, wms=r.wms, erp=r.erp, context=dict(r.context)) for r in flow.targets.routes],
        flow=flow.name,
        flow_version=flow.version(),
        policies={step: StepOptions(timeout=p.timeout, initial_interval=p.initial_interval,
                                    max_interval=p.max_interval, max_attempts=p.max_attempts)
                  for step, p in flow.retry.items()},
    )


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


async def apply_flow(client: Client, store: Store, flow: Flow, task_queue: str, paused: bool = False) -> list[str]:
    """Create or replace the flow's schedules (idempotent)."""
    ids = []
    for source in flow.sources:
        sid = schedule_id(flow.name, source)
        route = await asyncio.to_thread(route_for_source, flow, source, store)
        inp = IngestInput(connector=source.connector, stream=source.stream, route=route, flow=flow.name)
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                IngestWorkflow.run, inp, id=f"ingest:{flow.name}:{source.connector}", task_queue=task_queue,
                typed_search_attributes=_attributes(flow, source),
            ),
            spec=_spec(flow),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(paused=paused or not flow.enabled,
                                note=f"flow {flow.name} version {flow.version()}"),
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
    log.info("flow.applied", flow=flow.name, version=flow.version(), schedules=ids, paused=paused)
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


async def remove_flow(client: Client, flow: Flow) -> None:
    for handle in await _schedule_handles(client, flow):
        with contextlib.suppress(RPCError):
            await handle.delete()


async def start_backfill(client: Client, store: Store, flow: Flow, since: datetime, until: datetime,
                         task_queue: str) -> list[str]:
    ids = []
    for source in flow.sources:
        route = await asyncio.to_thread(route_for_source, flow, source, store)
        wf_id = f"backfill:{flow.name}:{source.connector}:{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}"
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
        cursor = await asyncio.to_thread(store.get_cursor, source.connector, source.stream)
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
                client, f'{src} AND WorkflowType = "OrderSync" AND StartTime > "{hour_ago}"')
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
        row = self.store.get_flow(flow.name)
        schedules: list[str] = []
        if self.client is not None:
            schedules = await apply_flow(self.client, self.store, flow, self.task_queue,
                                         paused=bool(row and row.paused))
        return {"flow": flow.name, "version": flow.version(), "created": created, "schedules": schedules,
                "applied": self.client is not None}

    async def pause(self, name: str) -> dict[str, Any]:
        flow, _ = self.get(name)
        await pause_flow(self._need_client(), flow, self.actor)
        await asyncio.to_thread(self.store.set_flow_paused, name, True, self.actor)
        return {"flow": name, "paused": True}

    async def resume(self, name: str) -> dict[str, Any]:
        flow, _ = self.get(name)
        client = self._need_client()
        await asyncio.to_thread(self.store.set_flow_paused, name, False, self.actor)
        await resume_flow(client, flow, self.actor)
        released = await release_held(client, self.store, name)
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
        if self.client is not None:
            await remove_flow(self.client, flow)
        await asyncio.to_thread(self.store.remove_flow, name)
        return {"flow": name, "removed": True}

    async def status(self, name: str | None = None) -> list[dict[str, Any]]:
        rows = [self.get(name)[1]] if name else await asyncio.to_thread(self.store.list_flows)
        return [await flow_status(self.client, self.store, Flow.model_validate(r.definition), r.paused)
                for r in rows]

    async def reconcile(self) -> int:
        """Make the schedules match the stored flows (at hub start-up)."""
        client = self._need_client()
        rows = await asyncio.to_thread(self.store.list_flows)
        for row in rows:
            await apply_flow(client, self.store, Flow.model_validate(row.definition), self.task_queue,
                             paused=row.paused)
        return len(rows)
