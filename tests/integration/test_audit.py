"""The auditor's walk-through on the real embedded Temporal server: an order runs through (pull →
WMS ‖ ERP → shipment → write-back); the auditor finds it by its external id with the stock Temporal
CLI, reads its decoded timeline with an auditor token (no personal data in it), reads the mapping
spec behind its hash, and - once the archiver kept it and the history was deleted from Temporal, as
retention would - still reads the same timeline from the archive, through the API and the CLI."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import api_client
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode
from test_order_sync import completed_orders, ingest, setup_systems, wait_for

from hub.runtime import HubRuntime
from worker.embedded import temporal_binary
from workflows.audit.client import archive_now, archiver_schedule_id


def personal_values(trade: dict) -> list[str]:
    return [str(trade[f]) for f in ("receiver_name", "receiver_mobile", "receiver_address") if trade.get(f)]


def cli(hub: HubRuntime, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``tongdao`` CLI on this hub's state directory and Temporal (as an auditor on the hub's machine)."""
    env = {**os.environ, "TONGDAO_HOME": str(hub.settings.home), "TONGDAO_TEMPORAL_ADDRESS":
           hub.settings.temporal_target, "TONGDAO_TASK_QUEUE": hub.settings.task_queue}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=Path(__file__).parents[2])


async def test_auditor_walk_through_outlives_temporal_retention(hub: HubRuntime, tmp_path: Path) -> None:
    assert hub.client and hub.store
    systems, route = setup_systems(hub, orders=4, run_id="au", malformed_per_shop=0)
    route.flow, route.flow_version = "audit-flow", "v1"
    hub.store.save_flow("audit-flow", "v1", {"name": "audit-flow"}, "test")
    try:
        await ingest(hub, "demo-taobao-a", route, "ingest-audit-a")
        await wait_for(lambda: bool(completed_orders(hub)))
        order = completed_orders(hub)[0]
        wf_id, tid, shop = f"order:{order.key}", order.external_id, order.shop
        await hub.client.get_workflow_handle(wf_id).result()
        trade = systems.taobao.get_trade(tid)
        assert trade is not None and personal_values(trade)

        # 1. found by its external id in the stock Temporal CLI
        listed = (await asyncio.to_thread(
            subprocess.run, [temporal_binary(), "workflow", "list", "--address", hub.settings.temporal_target,
                             "--query", f'ExternalOrderId="{tid}"', "-o", "json"],
            capture_output=True, text=True, timeout=60, check=True)).stdout
        assert wf_id in listed

        # 2. the decoded timeline, with an auditor token; no personal data in it
        async with api_client(hub, "auditor") as auditor:
            answer = await auditor.get(f"/audit/orders/taobao/{shop}/{tid}")
            assert answer.status_code == 200, answer.text
            live = answer.json()
            for value in personal_values(trade):
                assert value not in answer.text
            assert live["source"] == "temporal" and live["workflow_id"] == wf_id
            assert [r["status"] for r in live["runs"]] == ["completed"]
            calls = {e["step"]: e for e in live["entries"] if e["kind"] == "call"}
            assert calls["create_wms_order"]["key"] == order.hub_code
            assert calls["create_wms_order"]["outcome"] == "created"
            assert calls["create_erp_order"]["key"] == order.hub_code
            assert calls["write_back_package"]["key"] == tid
            kinds = {e["kind"] for e in live["entries"]}
            assert {"workflow", "signal", "stage", "version", "step", "call", "document"} <= kinds
            assert any(e["what"] == "stage → completed" for e in live["entries"])
            assert live["flows"] == [{"name": "audit-flow", "version": "v1", "definition_stored": True}]
            assert live["order"]["tracking_number"] and live["order"]["tracking_number"] in answer.text

            # 3. the mapping spec behind the hash on the order
            mapping = live["mappings"][0]
            assert mapping["name"] == "taobao_order" and mapping["spec_stored"]
            spec = await auditor.get(f"/audit/specs/{mapping['hash'][:12]}")
            assert spec.status_code == 200, spec.text
            assert hashlib.sha256(spec.json()["text"].encode()).hexdigest() == mapping["hash"]

            by_sku = await auditor.get(f"/audit/skus/{live['skus'][0]}")
            assert by_sku.status_code == 200 and wf_id in {o["workflow_id"] for o in by_sku.json()["orders"]}

        # 4. the archiver (a workflow on a Temporal Schedule) keeps the closed run
        schedule = hub.client.get_schedule_handle(archiver_schedule_id(hub.settings.task_queue))
        await schedule.trigger()
        await wait_for(lambda: bool(hub.store.archived_runs(wf_id)), timeout=60)
        row = hub.store.archived_runs(wf_id)[0]
        assert row.status == "completed" and row.history_events == live["runs"][0]["events"]
        stored = gzip.decompress(row.history_gz)
        assert hashlib.sha256(stored).hexdigest() == row.history_sha256 and b"binary/encrypted" not in stored
        assert base64.b64encode(b"binary/encrypted").decode().encode() in stored  # payloads kept encrypted
        print(f"archived history: {len(stored)} bytes of JSON, {len(row.history_gz)} gzipped")
        again = await archive_now(hub.client, hub.store, hub.settings.task_queue)
        assert again.failed == 0
        assert len(hub.store.archived_runs(wf_id)) == 1  # kept once

        # 5. Temporal's retention removes the history (the same call retention makes)
        await hub.client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
            namespace=hub.settings.temporal_namespace,
            workflow_execution=WorkflowExecution(workflow_id=wf_id, run_id=row.run_id)))

        for _ in range(300):  # deletion is asynchronous in Temporal (a task, ~10 s on the dev server)
            try:
                await hub.client.get_workflow_handle(wf_id).fetch_history()
            except RPCError as exc:
                assert exc.status == RPCStatusCode.NOT_FOUND
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError("the execution was not deleted")

        # 6. the same timeline, now from the archive
        async with api_client(hub, "auditor") as auditor:
            answer = await auditor.get(f"/audit/orders/taobao/{shop}/{tid}")
            assert answer.status_code == 200, answer.text
            archived = answer.json()
            export = await auditor.get(f"/audit/orders/taobao/{shop}/{tid}/export")
            assert export.status_code == 200
        assert archived["source"] == "archive"
        assert archived["entries"] == live["entries"]
        assert [{**r, "source": "temporal"} for r in archived["runs"]] == live["runs"]
        assert archived["mappings"] == live["mappings"] and archived["skus"] == live["skus"]
        for value in personal_values(trade):
            assert value not in answer.text and value not in export.text
        history = export.json()["orders"][0]["histories"][0]
        assert history["source"] == "archive" and len(history["history"]["events"]) == row.history_events

        # the CLI reads it too (text and JSON), and exports a file without personal data in clear
        text = await asyncio.to_thread(cli, hub, "audit", "order", "taobao", shop, tid)
        assert text.returncode == 0, text.stderr
        assert "read from archive" in text.stdout and order.hub_code in text.stdout
        print(text.stdout)
        as_json = await asyncio.to_thread(cli, hub, "audit", "order", "taobao", shop, tid, "--json")
        assert json.loads(as_json.stdout)["entries"] == live["entries"]
        out_file = tmp_path / "audit.json"
        exported = await asyncio.to_thread(cli, hub, "audit", "export", "taobao", shop, tid, "--out", str(out_file))
        assert exported.returncode == 0, exported.stderr
        content = out_file.read_text()
        assert tid in content and all(v not in content for v in personal_values(trade))
        spec_text = await asyncio.to_thread(cli, hub, "audit", "spec", mapping["hash"])
        assert spec_text.returncode == 0 and "taobao" in spec_text.stdout
    finally:
        await systems.wms.aclose()
        systems.stop()


async def test_every_audit_route_refuses_a_missing_or_unknown_token(hub: HubRuntime) -> None:
    async with httpx.AsyncClient(base_url=hub.settings.api_url) as anonymous:
        paths = [p for p in (await anonymous.get("/openapi.json")).json()["paths"] if p.startswith("/audit")]
        assert {"/audit/orders/{channel}/{shop}/{external_id}", "/audit/skus/{sku}", "/audit/specs/{digest}",
                "/audit/orders/{channel}/{shop}/{external_id}/export", "/audit/config"} <= set(paths)
        for path in paths:
            url = path.replace("{channel}", "taobao").replace("{shop}", "s").replace("{external_id}", "1") \
                .replace("{sku}", "TD-SKU-0001").replace("{digest}", "0" * 64)
            assert (await anonymous.get(url)).status_code == 401, path
            wrong = await anonymous.get(url, headers={"Authorization": "Bearer td_not-a-token"})
            assert wrong.status_code == 401, path
    async with api_client(hub, "auditor") as auditor:
        missing = await auditor.get("/audit/orders/taobao/nowhere/404")
        assert missing.status_code == 404
