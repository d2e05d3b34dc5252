"""Encrypted payloads on the real embedded Temporal server: what Temporal stores of an order is
ciphertext (only search attributes stay clear, to be searchable), the hub's codec endpoint gives
an auditor the clear payloads and nobody without a token, and the Temporal CLI decodes through it."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import stat
import subprocess
from collections.abc import Sequence

import httpx
from conftest import api_client
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from test_order_sync import completed_orders, ingest, setup_systems, wait_for

from hub.runtime import HubRuntime
from worker.client import connect
from worker.codec import ENCODING, KEY_ID, convert_payloads_in, decode_history, payloads_from_json, payloads_to_json
from worker.embedded import temporal_binary


async def stored_payloads(events: Sequence[HistoryEvent]) -> list[Payload]:
    """Every payload of the history events except search attributes and local-activity marker data (which the
    codec never sees: the SDK writes them itself, and neither carries order data)."""
    found: list[Payload] = []

    async def collect(payloads: Sequence[Payload]) -> list[Payload]:
        found.extend(payloads)
        return list(payloads)

    for event in events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        kind = copy.WhichOneof("attributes")
        if kind in ("workflow_execution_started_event_attributes", "upsert_workflow_search_attributes_event_attributes",
                    "start_child_workflow_execution_initiated_event_attributes",
                    "workflow_execution_continued_as_new_event_attributes"):
            getattr(copy, kind).ClearField("search_attributes")
        if kind == "marker_recorded_event_attributes":  # a local activity's marker: its "data" is the SDK's own
            del copy.marker_recorded_event_attributes.details["data"]  # bookkeeping (seq, type, times); result sealed
        await convert_payloads_in(copy, collect)
    return found


def payload_data(cli_json: str) -> bytes:
    """The payloads' bytes in ``temporal ... -o json`` output (proto JSON: base64 ``data``)."""
    json.loads(cli_json)
    return b"\n".join(base64.b64decode(m) for m in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', cli_json))


async def test_history_holds_ciphertext_and_the_codec_endpoint_decodes_for_auditors(hub: HubRuntime) -> None:
    assert hub.client and hub.store
    key_file = hub.settings.home / "payload.keys"  # the embedded default: generated, private
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    systems, route = setup_systems(hub, orders=4, run_id="cx", malformed_per_shop=0)
    try:
        await ingest(hub, "demo-taobao-a", route, "ingest-codec-a")
        await ingest(hub, "demo-taobao-b", route, "ingest-codec-b")
        await wait_for(lambda: bool(completed_orders(hub)))
        order = completed_orders(hub)[0]
        wf_id, tid = f"order:{order.key}", order.external_id
        shipments = systems.taobao.state()["shipments"]
        tracking = (shipments.get(int(tid)) or shipments[tid])["out_sid"]

        # what Temporal stores, read by a client WITHOUT the codec
        raw_client = await connect(hub.settings.temporal_target, hub.settings.temporal_namespace, codec=None)
        raw = await raw_client.get_workflow_handle(wf_id).fetch_history()
        payloads = await stored_payloads(raw.events)
        assert len(payloads) >= 5
        assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
        active = hub.client.data_converter.payload_codec.keyring.active_id  # type: ignore[union-attr]
        assert {p.metadata[KEY_ID] for p in payloads} == {active.encode()}
        blob = b"".join(p.SerializeToString() for p in payloads)
        assert str(tid).encode() not in blob and tracking.encode() not in blob
        assert tracking.encode() not in b"".join(e.SerializeToString() for e in raw.events)
        # the search attributes stay clear: the order is still found by its id
        found = [w.id async for w in raw_client.list_workflows(f'ExternalOrderId="{tid}"')]
        assert found == [wf_id]

        # the hub's own decoding of the same history has the clear order in it
        clear = await decode_history(raw, hub.client.data_converter.payload_codec)  # type: ignore[arg-type]
        clear_blob = b"".join(p.data for p in await stored_payloads(clear.events))
        assert str(tid).encode() in clear_blob and tracking.encode() in clear_blob

        # the codec server: an auditor gets the clear payloads, nobody without a token gets anything
        body = payloads_to_json(payloads)
        async with api_client(hub, "auditor") as auditor:
            answer = await auditor.post("/codec/decode", json=body, headers={"X-Namespace": "default"})
        assert answer.status_code == 200, answer.text
        decoded = payloads_from_json(answer.json())
        assert len(decoded) == len(payloads) and all(p.metadata["encoding"] != ENCODING for p in decoded)
        assert tracking.encode() in b"".join(p.data for p in decoded)
        async with httpx.AsyncClient(base_url=hub.settings.api_url) as anonymous:
            refused = await anonymous.post("/codec/decode", json=body)
        assert refused.status_code == 401
        assert tracking not in refused.text

        # the Temporal CLI decodes through the same endpoint with a token (--codec-endpoint/--codec-auth)
        async with api_client(hub, "auditor") as auditor:
            token = auditor.headers["Authorization"]

        def show(*codec: str) -> str:
            return subprocess.run(
                [temporal_binary(), "workflow", "show", "--address", hub.settings.temporal_target,
                 "--workflow-id", wf_id, "-o", "json", *codec], capture_output=True, text=True, timeout=60,
                check=True).stdout

        plain, via_codec = await asyncio.gather(
            asyncio.to_thread(show),
            asyncio.to_thread(show, "--codec-endpoint", f"{hub.settings.api_url}/codec", "--codec-auth", token))
        assert tracking.encode() not in payload_data(plain)
        assert tracking.encode() in payload_data(via_codec)
    finally:
        await systems.wms.aclose()
        systems.stop()
