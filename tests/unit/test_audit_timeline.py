"""The audit timeline read from recorded histories (tests/histories), without a Temporal server:
what each kind of event becomes, retries, encrypted payloads, redaction, the archive fallback
across continue-as-new runs, and mapping spec texts by hash."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from canonical import hub_code
from store import Store, open_store
from worker.codec import EncryptionCodec, Keyring, convert_payloads_in
from workflows.audit.history import read_run
from workflows.audit.specs import capture_spec, record_specs
from workflows.audit.timeline import render_text, timeline_for_key

HISTORIES = Path(__file__).parents[1] / "histories"


def events(name: str) -> list[dict[str, Any]]:
    return json.loads((HISTORIES / f"{name}.json").read_text())["events"]


def read(name: str, run_id: str = "run-1") -> Any:
    return asyncio.run(read_run(events(name), run_id, None))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)


def test_a_split_shipment_reads_as_steps_calls_signals_and_stages() -> None:
    run = read("order_lifecycle_split")
    key = run.order_key
    code = hub_code(key)
    assert run.run.workflow_type == "OrderLifecycle" and run.run.status == "completed"
    calls = [e for e in run.entries if e.kind == "call"]
    assert [(c.step, c.key, c.outcome) for c in calls[:2]] == [("create_wms_order", code, "created"),
                                                              ("create_erp_order", code, "created")]
    writes = [c for c in calls if c.step == "write_back_package"]
    assert len(writes) == 2 and {w.key for w in writes} == {key.rsplit(":", 1)[1]}
    assert all("split package" in w.what for w in writes)
    assert [e.what for e in run.entries if e.kind == "stage"][-1] == "stage → completed"
    assert [e.step for e in run.entries if e.kind == "signal"] == ["", "", ""]
    assert sum(e.what.startswith("shipment:") for e in run.entries) == 2
    assert run.skus == ["TD-SKU-0005", "TD-SKU-0025"]
    (digest, name), = run.mappings.items()
    assert name == "taobao_order" and len(digest) == 64
    assert any(e.kind == "version" and digest[:12] in e.what for e in run.entries)


def test_a_replay_shows_who_asked_and_the_refusals_before_it() -> None:
    run = read("order_lifecycle_replayed")
    refused = [e for e in run.entries if e.outcome == "parked"]
    assert {e.step for e in refused} == {"create_wms_order", "create_erp_order"}
    assert all("quarantine #" in e.what for e in refused)
    decision, = [e for e in run.entries if e.kind == "decision"]
    assert decision.actor and decision.what.startswith(f"replay requested by {decision.actor}")


def test_continue_as_new_runs_link_up() -> None:
    first = read("order_lifecycle_continued_first_run", "run-a")
    assert first.run.status == "continued_as_new"
    assert first.entries[-1].details["new_run_id"]
    assert any(e.step == "poll_outbound" and e.kind == "call" for e in first.entries)


def test_retries_are_visible_with_the_last_failure() -> None:
    def payload(value: Any) -> dict[str, Any]:
        return {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(json.dumps(value).encode()).decode()}

    order = {"key": "taobao:s:42", "channel": "taobao", "shop": "s", "external_id": "42", "source": "tb", "raw_id": 1,
             "route": {"wms": "wms-1", "erp": "erp-1"}}
    history = [
        {"eventId": "1", "eventTime": "2026-12-01T00:00:00.123456789Z",
         "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
         "workflowExecutionStartedEventAttributes": {"workflowType": {"name": "OrderLifecycle"},
                                                     "input": {"payloads": [payload(order)]}}},
        {"eventId": "5", "eventTime": "2026-12-01T00:00:01Z", "eventType": "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
         "activityTaskScheduledEventAttributes": {"activityId": "2", "activityType": {"name": "create_wms_order"},
                                                  "input": {"payloads": [payload({"revision": 2})]}}},
        {"eventId": "6", "eventTime": "2026-12-01T00:00:09Z", "eventType": "EVENT_TYPE_ACTIVITY_TASK_STARTED",
         "activityTaskStartedEventAttributes": {"scheduledEventId": "5", "attempt": 3, "lastFailure": {
             "message": "qimen 503 for receiver 13812345678", "applicationFailureInfo": {"type": "Transient"}}}},
        {"eventId": "7", "eventTime": "2026-12-01T00:00:10Z", "eventType": "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
         "activityTaskCompletedEventAttributes": {"scheduledEventId": "5", "startedEventId": "6", "result": {
             "payloads": [payload({"ok": True, "created": False, "external_id": "W1",
                                   "receiver_mobile": "13812345678"})]}}},
    ]
    run = asyncio.run(read_run(history, "r", None))
    call, = [e for e in run.entries if e.kind == "call"]
    assert call.key == hub_code("taobao:s:42") + "R2" and call.attempt == 3 and call.outcome == "already_there"
    assert "attempt 3, 2 failed before: Transient: qimen 503" in call.what
    dumped = json.dumps([e.model_dump(mode="json") for e in run.entries], ensure_ascii=False)
    assert "13812345678" not in dumped and "138****78" in dumped  # payload values and failure text are redacted
    assert run.entries[0].at.microsecond == 123456


def test_encrypted_payloads_decode_with_the_hubs_codec() -> None:
    codec = EncryptionCodec(Keyring.parse("k1:" + base64.b64encode(b"k" * 32).decode()))
    plain = WorkflowHistory.from_json("wf", (HISTORIES / "order_lifecycle_split.json").read_text())

    async def sealed_json() -> str:
        out = []
        for event in plain.events:
            copy = HistoryEvent()
            copy.CopyFrom(event)
            await convert_payloads_in(copy, codec.encode)
            out.append(copy)
        return WorkflowHistory("wf", out).to_json()

    stored = json.loads(asyncio.run(sealed_json()))["events"]
    assert "binary/encrypted" in base64.b64decode(stored[0]["workflowExecutionStartedEventAttributes"]["input"]
                                                  ["payloads"][0]["metadata"]["encoding"]).decode()
    clear = read("order_lifecycle_split", "r")
    decoded = asyncio.run(read_run(stored, "r", codec))
    assert [e.what for e in decoded.entries] == [e.what for e in clear.entries]
    without_key = asyncio.run(read_run(stored, "r", None))  # no codec: the entries say so instead of failing
    assert without_key.run.status == "completed"


def _archive(store: Store, name: str, run_id: str) -> str:
    run = read(name, run_id)
    text = (HISTORIES / f"{name}.json").read_text()
    store.archive_run(workflow_id=f"order:{run.order_key}", run_id=run_id, task_queue="tq",
                      workflow_type="OrderLifecycle", order_key=run.order_key, status=run.run.status,
                      start_time=run.run.started_at, close_time=run.run.closed_at, history_events=run.run.events,
                      history_sha256=hashlib.sha256(text.encode()).hexdigest(), history_gz=gzip.compress(text.encode()),
                      timeline=run.model_dump(mode="json"), skus=run.skus)
    return run.order_key


def test_the_archive_answers_alone_with_every_run_in_order(store: Store) -> None:
    key = _archive(store, "order_lifecycle_continued", "run-b")
    assert _archive(store, "order_lifecycle_continued_first_run", "run-a") == key
    assert not _archive_again(store, key)
    timeline = asyncio.run(timeline_for_key(None, store, key))
    assert timeline.source == "archive" and [r.run_id for r in timeline.runs] == ["run-a", "run-b"]
    assert [r.status for r in timeline.runs] == ["continued_as_new", "completed"]
    assert timeline.entries == sorted(timeline.entries, key=lambda e: e.at)
    assert timeline.entries[-1].kind == "workflow" and timeline.hub_code == hub_code(key)
    text = render_text(timeline)
    assert "read from archive" in text and "continued as new" in text
    assert store.archived_workflows_with_sku(timeline.skus[0]) == [f"order:{key}"]
    assert store.last_archived_close("tq") == timeline.runs[-1].closed_at
    with pytest.raises(LookupError):
        asyncio.run(timeline_for_key(None, store, "taobao:nowhere:1"))


def _archive_again(store: Store, key: str) -> bool:
    row = store.archived_runs(f"order:{key}")[0]
    return store.archive_run(workflow_id=row.workflow_id, run_id=row.run_id, task_queue="tq", workflow_type="x",
                             order_key=key, status="completed", start_time=None, close_time=None, history_events=0,
                             history_sha256="", history_gz=b"", timeline={}, skus=[])


def test_spec_texts_are_kept_by_content_hash(store: Store) -> None:
    assert record_specs(store) >= 5
    from mappings import load_spec

    spec = load_spec("taobao_order")
    row = store.get_spec_text(spec.content_hash[:12])
    assert row is not None and row.name == "taobao_order"
    assert hashlib.sha256(row.text.encode()).hexdigest() == spec.content_hash
    assert capture_spec(store, "taobao_order", spec.content_hash)
    assert not capture_spec(store, "taobao_order", "0" * 64)  # an old version the hub never saw
    assert store.get_spec_text("0123") is None  # too short a prefix to look up
