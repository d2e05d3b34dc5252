"""Flows on the real embedded Temporal server: schedules, pause with kept pushes, resume, backfill."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

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
                                                 'AND WorkflowType = "OrderSync"')
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
    import httpx

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
        async with httpx.AsyncClient(base_url=hub.settings.api_url) as api:
            assert (await api.post(f"/quarantine/{entry.id}/replay")).status_code == 200
        await wait_for(lambda: hub.store.get_quarantine(entry.id).status == "resolved")
        await wait_for(lambda: systems.figures()["tracking_written_back"] >= 1)
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_flows_http_api(hub: HubRuntime) -> None:
    import httpx

    assert hub.store
    systems = DemoSystems(2, seed=24, run_id="f4", callback_url=hub.settings.callback_url("demo-wms"))
    systems.start()
    try:
        for reg in systems.registrations("f4"):
            register(hub.store, reg, "test")
        async with httpx.AsyncClient(base_url=hub.settings.api_url) as api:
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
