"""Flows on the real embedded Temporal server: schedules, pause with kept pushes, resume, backfill."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from conftest import api_client

from connectors.registry import register
from flows.model import parse_flow
from flows.runtime import FlowOps
from hub.demo import DemoSystems
from hub.runtime import HubRuntime
from simulators.catalog import CATALOG
from workflows.models import IngestCounts


async def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


def demo_flow(name: str) -> dict:
    return {
        "name": name,
        "sources": [{"connector": "demo-taobao-a", "stream": "orders"}],
        "targets": {"wms": "demo-wms", "erp": "demo-erp"},
        "context": {"warehouse_code": "WH-HZ01", "owner_code": "TONGDAO", "customer": "CUST-TAOBAO"},
        "schedule": {"every": "1h"},
        "backfill_page": "1d",
        "backfill_pause": "0s",
    }


async def test_flow_runs_pauses_keeps_pushes_resumes_and_backfills(hub: HubRuntime) -> None:
    assert hub.store and hub.client
    systems = DemoSystems(8, seed=21, run_id="f1", callback_url=hub.settings.callback_url("demo-wms"),
                          malformed_per_shop=0, ship_delay_s=0)  # the WMS ships only when told
    systems.start()
    try:
        for reg in systems.registrations("f1"):
            register(hub.store, reg, "test")
        hub.store.set_xref("sku", {str(c["sku_id"]): c["sku"] for c in CATALOG})
        ops = FlowOps(hub.client, hub.store, hub.settings.task_queue, "tester")
        added = await ops.add(parse_flow(demo_flow("shop-a-flow")))
        assert added["applied"] and len(added["schedules"]) == 1
        version = added["version"]

        await ops.run_now("shop-a-flow")
        good = systems.taobao.state()["orders_by_shop"]["demo-a-f1"]
        await wait_for(lambda: systems.figures()["wms_outbound_orders"] == good)
        await wait_for(lambda: systems.figures()["erp_sales_orders"] == good)
        count = await hub.client.count_workflows(f'FlowName = "shop-a-flow" AND FlowVersion = "{version}" '
                                                 'AND WorkflowType = "OrderLifecycle"')
        assert count.count == good

        # pause: the WMS ships now, its confirmations are kept; new orders are not pulled
        await ops.pause("shop-a-flow")
        systems.taobao.add_orders("demo-a-f1", 3)
        await systems.wms.ship_all()
        await wait_for(lambda: len(hub.store.held_pushes("shop-a-flow")) >= good)
        await asyncio.sleep(5.5)  # past the ingest lag (5 s), so the catch-up run sees the new orders
        assert systems.figures()["tracking_written_back"] == 0
        assert systems.figures()["wms_outbound_orders"] == good

        # resume: kept pushes delivered, a catch-up run pulls the new orders
        resumed = await ops.resume("shop-a-flow")
        assert resumed["released_pushes"] >= good
        await wait_for(lambda: systems.figures()["tracking_written_back"] == good)
        await wait_for(lambda: systems.figures()["wms_outbound_orders"] == good + 3)
        await systems.wms.ship_all()
        await wait_for(lambda: systems.figures()["tracking_written_back"] == good + 3)

        # a 30-day backfill beside the live sync: everything is known already, nothing is doubled
        now = datetime.now(UTC)
        started = await ops.backfill("shop-a-flow", now - timedelta(days=30), now)
        result = await hub.client.get_workflow_handle(started["workflows"][0], result_type=IngestCounts).result()
        assert result.fetched >= good + 3 and result.started == 0
        figures = systems.figures()
        assert figures["wms_duplicates"] == figures["erp_duplicates"] == 0
        assert figures["wms_outbound_orders"] == figures["erp_sales_orders"] == good + 3

        status = (await ops.status("shop-a-flow"))[0]
        assert status["version"] == version and status["paused"] is False and status["held_pushes"] == 0
        assert status["sources"][0]["orders_last_hour"] == good + 3
        assert status["sources"][0]["lag_s"] is not None
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_a_changed_flow_is_a_new_version_for_new_runs_only(hub: HubRuntime) -> None:
    assert hub.store and hub.client
    systems = DemoSystems(2, seed=22, run_id="f2", callback_url=hub.settings.callback_url("demo-wms"))
    systems.start()
    try:
        for reg in systems.registrations("f2"):
            register(hub.store, reg, "test")
        ops = FlowOps(hub.client, hub.store, hub.settings.task_queue, "tester")
        first = await ops.add(parse_flow(demo_flow("versioned")))
        changed = demo_flow("versioned") | {"schedule": {"every": "2h"}}
        second = await ops.add(parse_flow(changed))
        assert first["version"] != second["version"] and second["created"] is False
        assert hub.store.get_flow_version("versioned", first["version"]) is not None
        desc = await hub.client.get_schedule_handle(second["schedules"][0]).describe()
        assert second["version"] in (desc.schedule.state.note or "")
        await ops.remove("versioned")
        assert hub.store.get_flow("versioned") is None
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_step_policy_parks_an_order_when_retries_run_out_and_replay_completes_it(hub: HubRuntime) -> None:

    from simulators.faults import FaultConfig

    assert hub.store and hub.client
    systems = DemoSystems(2, seed=23, run_id="f3", callback_url=hub.settings.callback_url("demo-wms"),
                          malformed_per_shop=0)
    systems.start()
    try:
        for reg in systems.registrations("f3"):
            register(hub.store, reg, "test")
        hub.store.set_xref("sku", {str(c["sku_id"]): c["sku"] for c in CATALOG})
        systems.wms.set_faults(FaultConfig(error_5xx_rate=1.0))  # the WMS is down
        flow = demo_flow("strict") | {
            "schedule": {"webhooks": True},  # push-only: runs only when triggered
            "retry": {"wms": {"timeout": "10s", "initial_interval": "100ms", "max_interval": "200ms",
                              "max_attempts": 2}},
        }
        ops = FlowOps(hub.client, hub.store, hub.settings.task_queue, "tester")
        await ops.add(parse_flow(flow))
        await ops.run_now("strict")
        await wait_for(lambda: any(q.stage == "wms" and "gave up after retries" in q.reason
                                   for q in hub.store.list_quarantine("open")))
        assert systems.figures()["wms_outbound_orders"] == 0
        systems.wms.set_faults(FaultConfig())  # the WMS is back
        entry = next(q for q in hub.store.list_quarantine("open") if q.stage == "wms")
        async with api_client(hub) as api:
            assert (await api.post(f"/quarantine/{entry.id}/replay")).status_code == 200
        await wait_for(lambda: hub.store.get_quarantine(entry.id).status == "resolved")
        await wait_for(lambda: systems.figures()["tracking_written_back"] >= 1)
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_flows_http_api(hub: HubRuntime) -> None:

    assert hub.store
    systems = DemoSystems(2, seed=24, run_id="f4", callback_url=hub.settings.callback_url("demo-wms"))
    systems.start()
    try:
        for reg in systems.registrations("f4"):
            register(hub.store, reg, "test")
        async with api_client(hub) as api:
            bad = await api.post("/flows", json=demo_flow("api-flow") | {"schedule": {"every": "10s"}})
            assert bad.status_code == 422 and "at least 1 minute" in bad.text
            created = await api.post("/flows", json=demo_flow("api-flow"))
            assert created.status_code == 200, created.text
            assert (await api.post("/flows/api-flow/pause")).json()["paused"] is True
            status = (await api.get("/flows/status")).json()
            assert status[0]["flow"] == "api-flow" and status[0]["paused"] is True
            assert (await api.post("/flows/api-flow/run-now")).status_code == 422  # paused
            assert (await api.post("/flows/api-flow/resume")).json()["paused"] is False
            shown = (await api.get("/flows/api-flow")).json()
            assert shown["version"] == created.json()["version"]
            assert (await api.delete("/flows/api-flow")).status_code == 200
            assert (await api.get("/flows/api-flow")).status_code == 404
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_removed_sources_lose_their_schedule_and_flows_keep_separate_cursors(hub: HubRuntime) -> None:
    from flows.runtime import flow_schedule_ids

    assert hub.store and hub.client
    systems = DemoSystems(4, seed=25, run_id="f5", callback_url=hub.settings.callback_url("demo-wms"),
                          malformed_per_shop=0, ship_delay_s=0)
    systems.start()
    try:
        for reg in systems.registrations("f5"):
            register(hub.store, reg, "test")
        hub.store.set_xref("sku", {str(c["sku_id"]): c["sku"] for c in CATALOG})
        ops = FlowOps(hub.client, hub.store, hub.settings.task_queue, "tester")
        both = demo_flow("both-shops") | {"schedule": {"webhooks": True},  # runs only when triggered
                                          "sources": [{"connector": "demo-taobao-a"}, {"connector": "demo-taobao-b"}]}
        added = await ops.add(parse_flow(both))
        assert sorted(added["schedules"]) == ["flow:both-shops:demo-taobao-a:orders",
                                              "flow:both-shops:demo-taobao-b:orders"]
        hub.store.set_cursor("demo-taobao-b", "orders", datetime.now(UTC), flow="both-shops")

        # the flow without shop b: b's schedule is deleted, and b's cursor for this flow dropped
        await ops.add(parse_flow(both | {"sources": [{"connector": "demo-taobao-a"}]}))
        await wait_for_async(lambda: flow_schedule_ids(hub.client, "both-shops"),
                             ["flow:both-shops:demo-taobao-a:orders"])
        assert hub.store.get_cursor("demo-taobao-b", "orders", "both-shops") is None

        # a second flow on shop a keeps its own cursor
        await ops.add(parse_flow(demo_flow("shop-a-again") | {"schedule": {"webhooks": True}}))
        await ops.run_now("both-shops")
        await wait_for(lambda: hub.store.get_cursor("demo-taobao-a", "orders", "both-shops") is not None)
        assert hub.store.get_cursor("demo-taobao-a", "orders", "shop-a-again") is None
        statuses = {s["flow"]: s["sources"][0]["cursor"] for s in await ops.status()}
        assert statuses["both-shops"] is not None and statuses["shop-a-again"] is None
        await ops.run_now("shop-a-again")
        await wait_for(lambda: hub.store.get_cursor("demo-taobao-a", "orders", "shop-a-again") is not None)

        # removing a flow deletes every schedule it has and its cursors
        await ops.remove("both-shops")
        assert hub.store.get_cursor("demo-taobao-a", "orders", "both-shops") is None
        assert hub.store.get_cursor("demo-taobao-a", "orders", "shop-a-again") is not None
        await wait_for_async(lambda: flow_schedule_ids(hub.client, "both-shops"), [])
        await ops.remove("shop-a-again")

        # a flow removed from the store while the hub was down loses its schedules at the next start,
        # unless they start work on another hub's task queue (hubs may share a namespace)
        other = FlowOps(hub.client, hub.store, "another-hub", "tester")
        await ops.add(parse_flow(demo_flow("orphan") | {"schedule": {"webhooks": True}}))
        await other.add(parse_flow(demo_flow("foreign") | {"schedule": {"webhooks": True}}))
        hub.store.remove_flow("orphan")
        hub.store.remove_flow("foreign")
        await wait_for_async(lambda: flow_schedule_ids(hub.client, "foreign"), ["flow:foreign:demo-taobao-a:orders"])
        await wait_for_async(lambda: flow_schedule_ids(hub.client, "orphan"), ["flow:orphan:demo-taobao-a:orders"])
        await ops.reconcile()
        await wait_for_async(lambda: flow_schedule_ids(hub.client, "orphan"), [])
        assert await flow_schedule_ids(hub.client, "foreign") == ["flow:foreign:demo-taobao-a:orders"]
        await hub.client.get_schedule_handle("flow:foreign:demo-taobao-a:orders").delete()
    finally:
        await systems.wms.aclose()
        systems.stop()


async def wait_for_async(get, expected, timeout: float = 30.0) -> None:  # noqa: ANN001
    """Schedule listings are eventually consistent (visibility): poll until they show ``expected``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await get()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{value} != {expected}"
        await asyncio.sleep(0.3)


async def test_reconcile_orders_finds_missing_and_terminated_orders_and_fixes_them(hub: HubRuntime) -> None:
    assert hub.store and hub.client
    systems = DemoSystems(6, seed=26, run_id="f6", callback_url=hub.settings.callback_url("demo-wms"),
                          malformed_per_shop=0, ship_delay_s=0)
    systems.start()
    try:
        for reg in systems.registrations("f6"):
            register(hub.store, reg, "test")
        hub.store.set_xref("sku", {str(c["sku_id"]): c["sku"] for c in CATALOG})
        ops = FlowOps(hub.client, hub.store, hub.settings.task_queue, "tester")
        await ops.add(parse_flow(demo_flow("recon") | {"schedule": {"webhooks": True}}))
        await ops.run_now("recon")
        good = systems.taobao.state()["orders_by_shop"]["demo-a-f6"]
        await wait_for(lambda: systems.figures()["wms_outbound_orders"] == good)
        since, until = datetime.now(UTC) - timedelta(days=30), datetime.now(UTC) + timedelta(minutes=1)

        clean = await ops.reconcile_orders("recon", since, until)
        assert clean["missing_total"] == 0 and clean["sources"][0]["listed"] == good
        assert clean["sources"][0]["in_hub"] == good and set(clean) >= {"flow", "since", "until", "sources"}

        # an order whose workflow was terminated, and new orders nobody pulled, are missing
        row = next(r for r in (hub.store.get_order(k) for k in _keys(hub, "demo-taobao-a")) if r)
        await hub.client.get_workflow_handle(f"order:{row.key}").terminate("test")
        new = systems.taobao.add_orders("demo-a-f6", 2)
        report = await ops.reconcile_orders("recon", since, until)
        missing = set(report["sources"][0]["missing"])
        assert missing == {row.external_id, *map(str, new)} and report["missing_total"] == 3
        assert report["sources"][0]["listed"] == good + 2 and report["sources"][0]["in_hub"] == good - 1
        code, cli = await _tongdao(hub, "orders", "reconcile", "recon", "--since", since.isoformat(),
                                   "--until", until.isoformat(), "--json")
        assert code == 1 and cli["missing_total"] == 3 and set(cli["sources"][0]["missing"]) == missing
        assert set(cli["sources"][0]) >= {"connector", "listed", "in_hub", "missing", "fixed"}

        fixed = await ops.reconcile_orders("recon", since, until, fix=True, wait_s=120)
        assert fixed["sources"][0]["fixed"] == 3 and fixed["sources"][0]["workflow"].startswith("reconcile:recon:")
        assert (await ops.reconcile_orders("recon", since, until))["missing_total"] == 0
        await wait_for(lambda: systems.figures()["wms_outbound_orders"] == good + 2)
    finally:
        await systems.wms.aclose()
        systems.stop()


async def _tongdao(hub: HubRuntime, *args: str) -> tuple[int, dict]:
    """Run the CLI against this hub (its state directory, Temporal and task queue); parse --json."""
    import json
    import os
    import sys
    from pathlib import Path

    s = hub.settings
    env = {**os.environ, "TONGDAO_HOME": str(s.home), "TONGDAO_TEMPORAL_ADDRESS": s.temporal_target,
           "TONGDAO_TASK_QUEUE": s.task_queue}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tongdao"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert out.strip(), err.decode()
    return proc.returncode or 0, json.loads(out.decode().strip().splitlines()[-1])


def _keys(hub: HubRuntime, connector: str) -> list[str]:
    from sqlalchemy import select

    from store.tables import OrderRow

    assert hub.store
    with hub.store.session() as s:
        return list(s.scalars(select(OrderRow.key).where(OrderRow.source_connector == connector)))
