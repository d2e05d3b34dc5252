"""The order path against the real embedded Temporal server and the three simulators.

Covers: every good order reaches the WMS and the ERP exactly once with tracking written back; a
repeated pull (cursor reset) and overlapping pulls create no duplicate outbound order or bill;
malformed orders are quarantined and a replay after a fix completes them.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import api_client

from connectors.registry import register
from hub.demo import DemoSystems
from hub.runtime import HubRuntime
from simulators.catalog import CATALOG
from workflows.ingest import IngestWorkflow
from workflows.models import IngestInput, Route


async def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(every)


def setup_systems(hub: HubRuntime, orders: int, run_id: str, malformed_per_shop: int | None = None,
                  ) -> tuple[DemoSystems, Route]:
    assert hub.store
    systems = DemoSystems(orders, seed=11, run_id=run_id, callback_url=hub.settings.callback_url("demo-wms"),
                          malformed_per_shop=malformed_per_shop)
    systems.start()
    for reg in systems.registrations(run_id):
        register(hub.store, reg, "test")
    hub.store.set_xref("sku", {str(item["sku_id"]): item["sku"] for item in CATALOG})
    route = Route(channel="taobao", wms="demo-wms", erp="demo-erp",
                  context={"warehouse_code": "WH-HZ01", "owner_code": "TONGDAO", "customer": "CUST-TAOBAO"})
    return systems, route


def completed_orders(hub: HubRuntime) -> list:
    assert hub.store
    from sqlalchemy import select

    from store.tables import OrderRow

    with hub.store.session() as s:
        return list(s.scalars(select(OrderRow).where(OrderRow.stage == "completed")))


async def assert_no_personal_data_in_history(hub: HubRuntime, systems: DemoSystems, key: str) -> None:
    """Auditors read histories: receiver name, phone and address must not be in any payload."""
    import base64
    import re

    assert hub.client
    trade = systems.taobao.get_trade(key.rsplit(":", 1)[1])
    assert trade is not None
    from worker.codec import decode_history

    raw = await hub.client.get_workflow_handle(f"order:{key}").fetch_history()
    history = (await decode_history(raw, hub.client.data_converter.payload_codec)).to_json()
    payloads = "\n".join(base64.b64decode(m).decode("utf-8", "replace")
                          for m in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history))
    assert payloads and trade["tid"] and str(trade["tid"]) in payloads
    for field in ("receiver_name", "receiver_mobile", "receiver_address"):
        assert trade[field] and str(trade[field]) not in payloads, field


async def record_histories(hub: HubRuntime, workflows: dict[str, str]) -> None:
    """With TONGDAO_RECORD_HISTORIES=1, save these workflows' histories for tests/test_replay.py."""
    if os.environ.get("TONGDAO_RECORD_HISTORIES") != "1":
        return
    assert hub.client
    out = Path(__file__).parents[1] / "histories"
    out.mkdir(exist_ok=True)
    from worker.codec import decode_history

    for name, wf_id in workflows.items():
        # decoded: the recorded histories replay with the plain converter (no key in the repo)
        history = await decode_history(await hub.client.get_workflow_handle(wf_id).fetch_history(),
                                       hub.client.data_converter.payload_codec)
        (out / f"{name}.json").write_text(history.to_json())


async def ingest(hub: HubRuntime, connector: str, route: Route, wf_id: str):  # noqa: ANN201
    assert hub.client
    return await hub.client.execute_workflow(
        IngestWorkflow.run, IngestInput(connector=connector, route=route, lag=timedelta(0)),
        id=wf_id, task_queue=hub.settings.task_queue,
    )


async def test_orders_flow_once_even_when_pulled_again(hub: HubRuntime) -> None:
    systems, route = setup_systems(hub, orders=12, run_id="t1")
    try:
        good = systems.taobao.state()["orders_created"] - systems.taobao.state()["orders_malformed"]
        # two overlapping pulls of the same shop at once: same orders, same workflows
        first, second = await asyncio.gather(ingest(hub, "demo-taobao-a", route, "ingest-a-1"),
                                             ingest(hub, "demo-taobao-a", route, "ingest-a-2"))
        assert first.fetched > 0 and second.fetched > 0
        # the same orders seen twice start one workflow each, never two
        assert first.started + second.started == systems.taobao.state()["orders_by_shop"]["demo-a-t1"]
        await ingest(hub, "demo-taobao-b", route, "ingest-b-1")
        await wait_for(lambda: systems.figures()["tracking_written_back"] >= good)
        before = systems.figures()
        create_calls = systems.wms.state()["create_calls"]
        assert before["wms_outbound_orders"] == good and before["erp_sales_orders"] == good
        # a full re-pull from scratch (cursor reset) after everything completed
        assert hub.store
        hub.store.set_cursor("demo-taobao-a", "orders", datetime.now(UTC) - timedelta(days=1), force=True)
        again = await ingest(hub, "demo-taobao-a", route, "ingest-a-3")
        assert again.fetched > 0 and again.started == 0
        await asyncio.sleep(1.0)
        after = systems.figures()
        assert after["wms_outbound_orders"] == good and after["wms_duplicates"] == 0
        assert after["erp_sales_orders"] == good and after["erp_duplicates"] == 0
        assert after["tracking_written_back"] == good
        assert systems.wms.state()["create_calls"] == create_calls  # not even a repeated call
    finally:
        await systems.wms.aclose()
        systems.stop()



async def test_malformed_orders_are_parked_and_a_replay_after_a_fix_completes_them(hub: HubRuntime) -> None:

    assert hub.store
    systems, route = setup_systems(hub, orders=8, run_id="t2", malformed_per_shop=2)
    try:
        tb = systems.taobao.state()
        malformed = {str(tid): kind for tid, kind in tb["malformed"].items()}
        await ingest(hub, "demo-taobao-a", route, "ingest-q-a")
        await ingest(hub, "demo-taobao-b", route, "ingest-q-b")
        await wait_for(lambda: len(hub.store.list_quarantine("open")) == len(malformed))
        entries = {q.order_key.rsplit(":", 1)[1]: q for q in hub.store.list_quarantine("open")}
        assert set(entries) == set(malformed)
        for tid, kind in malformed.items():
            entry = entries[tid]
            assert entry.errors, kind
            if kind == "unknown_sku":  # both targets refuse: both errors kept, with the targets' specs
                assert set(entry.stage.split("+")) == {"wms", "erp"}, entry.stage  # in whichever order they failed
                assert {e["target"] for e in entry.errors} == {"wms", "erp"}
                assert set(entry.mapping_name.split(" + ")) == {"qimen_deliveryorder", "kingdee_sale_order"}
                continue
            assert entry.mapping_name == "taobao_order" and len(entry.mapping_hash) == 64
            if kind == "bad_payment":
                assert entry.stage == "mapping" and "'source_path': 'payment'" in str(entry.errors)
            if kind == "empty_address":
                assert entry.stage == "validation" and "receiver.address.street" in str(entry.errors)
            if kind == "invalid_mobile":
                assert entry.stage == "validation" and "receiver.mobile" in str(entry.errors)
        # the unknown SKU is rejected by the targets; teach the hub the SKU, then replay
        tid = next(t for t, k in malformed.items() if k == "unknown_sku")
        trade = systems.taobao.get_trade(tid)
        assert trade is not None
        known = {str(c["sku_id"]) for c in CATALOG}
        unknown = next(str(o["sku_id"]) for o in trade["orders"]["order"] if str(o["sku_id"]) not in known)
        hub.store.set_xref("sku", {unknown: "TD-SKU-0001"})
        await asyncio.sleep(5.1)  # the worker re-reads cross-references every 5 s
        async with api_client(hub) as api:
            response = await api.post(f"/quarantine/{entries[tid].id}/replay")
            assert response.status_code == 200, response.text
        await wait_for(lambda: int(tid) in systems.taobao.state()["shipments"] or
                       tid in systems.taobao.state()["shipments"])
        await wait_for(lambda: hub.store.get_quarantine(entries[tid].id).status == "resolved")
        await wait_for(lambda: hub.store.get_order(entries[tid].order_key).stage == "completed")
        assert systems.figures()["wms_duplicates"] == 0 and systems.figures()["erp_duplicates"] == 0
        assert len(hub.store.list_quarantine("open")) == len(malformed) - 1
        await assert_no_personal_data_in_history(hub, systems, entries[tid].order_key)
        await record_histories(hub, {
            "order_lifecycle_replayed": f"order:{entries[tid].order_key}",
            "order_lifecycle_completed": next(f"order:{r.key}" for r in completed_orders(hub) if r.external_id != tid),
            "order_ingest_v2": "ingest-q-a",
        })
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_search_attributes_are_registered_on_a_bare_server(tmp_path: Path) -> None:
    """A reused or external server may lack the hub's search attributes: the hub adds them once."""
    import subprocess

    from simulators.server import free_port
    from worker.client import connect
    from worker.embedded import port_open, temporal_binary
    from workflows import search

    port = free_port()
    proc = subprocess.Popen([temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                             "--port", str(port), "--db-filename", str(tmp_path / "bare.db"), "--log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), timeout=30)
        client = await connect(f"127.0.0.1:{port}")
        assert await search.ensure_registered(client, "default") == sorted(k.name for k in search.ALL)
        assert await search.ensure_registered(client, "default") == []
    finally:
        proc.terminate()
        proc.wait(10)
