"""Reading one run's Temporal history as audit timeline entries.

The history is taken in its JSON form (``WorkflowHistory.to_json()``, the same form the archive
keeps gzipped): payloads in it are still encrypted as Temporal stores them, and are decoded here
with the hub client's payload codec, so this module needs no key of its own and the archive can
keep the history exactly as it was. Every value taken from a payload goes through
:func:`canonical.redact.redact` before it reaches an entry; failure messages through
:func:`canonical.redact.scrub_text`.

The reading is pure once payloads are decoded (:func:`run_timeline`), so it is unit-tested on the
recorded histories in ``tests/histories``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from canonical import hub_code, revision_code
from canonical.redact import redact, scrub_text
from workflows.audit.models import RunInfo, RunTimeline, TimelineEntry

ORDER_WORKFLOW_TYPES = ("OrderLifecycle", "OrderSync")

CALLS = {
    # activity type → (what it calls, route field naming the connector)
    "create_wms_order": ("wms", "wms"),
    "cancel_wms_order": ("wms", "wms"),
    "poll_outbound": ("wms", "wms"),
    "poll_shipment": ("wms", "wms"),
    "create_erp_order": ("erp", "erp"),
    "cancel_erp_order": ("erp", "erp"),
    "write_back_package": ("marketplace", "source"),
    "write_back_shipment": ("marketplace", "source"),
    "refresh_order": ("marketplace", "source"),
}
"""Activities that call another system: their entries are ``call`` and carry the idempotency key."""

_CLOSE_STATUS = {
    "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED": "completed",
    "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW": "continued_as_new",
    "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED": "failed",
    "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED": "terminated",
    "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT": "timed_out",
    "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED": "canceled",
}


# -- payloads --------------------------------------------------------------------------------------
def _is_payload(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("metadata"), dict)
            and "encoding" in value["metadata"] and set(value) <= {"metadata", "data", "externalPayloads"})


def _value_of(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace")
    if encoding == "binary/null":
        return None
    if encoding in ("json/plain", "json/protobuf"):
        try:
            return json.loads(payload.data)
        except ValueError:
            return {"_undecodable": "not JSON"}
    if encoding == "binary/encrypted":
        return {"_encrypted": payload.metadata.get("encryption-key-id", b"").decode(errors="replace")}
    return {"_encoding": encoding, "_bytes": len(payload.data)}


async def _payload_value(raw: dict[str, Any], codec: PayloadCodec | None) -> Any:
    payload = Payload(metadata={k: base64.b64decode(v) for k, v in raw["metadata"].items()},
                      data=base64.b64decode(raw.get("data", "")))
    if codec is not None and payload.metadata.get("encoding") == b"binary/encrypted":
        try:
            payload = (await codec.decode([payload]))[0]
        except Exception as exc:  # a key rotated out: the entry says so, the rest of the timeline stands
            return {"_undecodable": scrub_text(str(exc))[:200]}
    return _value_of(payload)


async def decode_tree(value: Any, codec: PayloadCodec | None) -> Any:
    """A copy of a history event (proto JSON) with every payload replaced by its value, and every
    ``{"payloads": [...]}`` by the list of values."""
    if isinstance(value, dict):
        if _is_payload(value):
            return await _payload_value(value, codec)
        if set(value) == {"payloads"} and isinstance(value["payloads"], list):
            return [await decode_tree(p, codec) for p in value["payloads"]]
        return {k: await decode_tree(v, codec) for k, v in value.items()}
    if isinstance(value, list):
        return [await decode_tree(v, codec) for v in value]
    return value


async def decode_events(events: Sequence[dict[str, Any]], codec: PayloadCodec | None) -> list[dict[str, Any]]:
    return [await decode_tree(event, codec) for event in events]


# -- reading a run ---------------------------------------------------------------------------------
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: str | None) -> datetime | None:
    """Temporal's RFC 3339 times carry nanoseconds; Python keeps microseconds."""
    if not text:
        return None
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00")).astimezone(UTC)


def _attrs(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventAttributes") and isinstance(v, dict)), {})


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _encoded_message(failure: dict[str, Any]) -> str:
    """The real message of a failure whose attributes were encoded (the hub's data converter moves
    message and stack trace into an encrypted payload; the history read here is already decoded)."""
    encoded = failure.get("encodedAttributes")
    if not isinstance(encoded, dict) or not encoded.get("data"):
        return ""
    try:
        attributes = json.loads(base64.b64decode(encoded["data"]))
    except (ValueError, TypeError):
        return ""
    return str(attributes.get("message", "")) if isinstance(attributes, dict) else ""


def _failure_text(failure: Any) -> str:
    """A failure's message with its causes (Temporal wraps the activity's error), scrubbed."""
    parts: list[str] = []
    while isinstance(failure, dict) and len(parts) < 4:
        message = str(_encoded_message(failure) or failure.get("message", "")).strip()
        info = failure.get("applicationFailureInfo") or {}
        kind = info.get("type", "") if isinstance(info, dict) else ""
        text = f"{kind}: {message}" if kind and message else message or kind
        if text and text not in parts:
            parts.append(text)
        failure = failure.get("cause")
    return scrub_text(" ← ".join(parts))[:500]


class _RunReader:
    """Walks one run's decoded events in order, remembering what later events refer back to."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.info = RunInfo(run_id=run_id, status="running")
        self.order: dict[str, Any] = {}
        self.route: dict[str, Any] = {}
        self.order_key = ""
        self.entries: list[TimelineEntry] = []
        self.scheduled: dict[int, dict[str, Any]] = {}
        self.started: dict[int, dict[str, Any]] = {}
        self.skus: list[str] = []
        self.mappings: dict[str, str] = {}
        self.flows: list[tuple[str, str]] = []

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, at: datetime | None, kind: str, what: str, event_id: int | None, **fields: Any) -> None:
        details = fields.pop("details", {}) or {}
        self.entries.append(TimelineEntry(at=at or datetime.fromtimestamp(0, UTC), kind=kind,  # type: ignore[arg-type]
                                          what=what, run_id=self.run_id, event_id=event_id,
                                          details=redact(details), **fields))

    def code(self, revision: Any) -> str:
        """The WMS/ERP document code (idempotency key) of a revision of this order."""
        if not self.order_key:
            return ""
        try:
            rev = int(revision or 0)
        except (TypeError, ValueError):
            rev = 0
        return revision_code(hub_code(self.order_key), rev)

    def connector(self, field: str) -> str:
        if field == "source":
            return str(self.order.get("source", ""))
        return str(self.route.get(field) or "")

    def mapping_seen(self, at: datetime | None, event_id: int, name: str, digest: str) -> None:
        if digest and digest not in self.mappings:
            self.mappings[digest] = name
            self.add(at, "version", f"mapping {name or '?'} version {digest[:12]}", event_id,
                     details={"mapping": name, "hash": digest})

    # -- events ----------------------------------------------------------------------------------
    def read(self, event: dict[str, Any]) -> None:
        kind = str(event.get("eventType", ""))
        at = parse_time(event.get("eventTime"))
        eid = int(event.get("eventId", 0) or 0)
        a = _attrs(event)
        handler = getattr(self, "_" + kind.removeprefix("EVENT_TYPE_").lower(), None)
        if handler is not None:
            handler(at, eid, a)
        if kind in _CLOSE_STATUS:
            self.info.status = _CLOSE_STATUS[kind]
            self.info.closed_at = at

    def _workflow_execution_started(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self.info.workflow_type = str((a.get("workflowType") or {}).get("name", ""))
        self.info.started_at = at
        self.info.continued_from = str(a.get("continuedExecutionRunId", ""))
        self.order = _first(a.get("input")) or {}
        if not isinstance(self.order, dict):
            self.order = {}
        self.route = self.order.get("route") or {}
        self.order_key = str(self.order.get("key", ""))
        attrs = ((a.get("searchAttributes") or {}).get("indexedFields") or {})
        flow = str(self.route.get("flow") or attrs.get("FlowName") or "")
        version = str(self.route.get("flow_version") or attrs.get("FlowVersion") or "")
        how = f"continued from run {self.info.continued_from[:8]}" if self.info.continued_from else "started"
        route = {k: self.route.get(k) for k in ("wms", "erp", "order_mapping", "wms_mapping", "erp_mapping", "flow",
                                                 "flow_version") if self.route.get(k)}
        self.add(at, "workflow", f"{self.info.workflow_type} {how}; source {self.order.get('source', '?')}, "
                 f"raw document {self.order.get('raw_id', '?')}", eid,
                 details={"source": self.order.get("source"), "raw_id": self.order.get("raw_id"), "route": route,
                          "attempt": a.get("attempt"), "initiator": a.get("initiator", ""),
                          "identity": a.get("identity", ""), "resume_stage": self.order.get("resume_stage", "")})
        if flow:
            self.flows.append((flow, version))
            self.add(at, "version", f"flow {flow} version {version or '?'}", eid,
                     details={"flow": flow, "version": version})

    def _workflow_execution_signaled(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        name = str(a.get("signalName", ""))
        value = _first(a.get("input"))
        body = value if isinstance(value, dict) else {}
        identity = str(a.get("identity", ""))
        if name == "order_seen":
            self.add(at, "signal", f"order_seen: raw document {body.get('raw_id', '?')}", eid,
                     key=str(self.order.get("external_id", "")), details={**body, "identity": identity})
        elif name == "shipment":
            lines = body.get("lines") or []
            self.add(at, "signal", f"shipment: package {body.get('package_id') or body.get('tracking_number', '?')} "
                     f"{body.get('carrier_code', '')} {body.get('tracking_number', '')} "
                     f"({'final' if body.get('final', True) else 'more to come'}, "
                     f"{len(lines) or 'all'} line(s), by {body.get('source') or 'push'})", eid,
                     key=str(body.get("order_code", "")), details={**body, "identity": identity})
        elif name == "replay":
            who = str(body.get("requested_by", "")) or identity
            self.add(at, "decision", f"replay requested by {who or '?'}"
                     + (f" (quarantine #{body['quarantine_id']})" if body.get("quarantine_id") else ""), eid,
                     actor=who, details={**body, "identity": identity})
        elif name == "outbound_status":
            self.add(at, "signal", f"WMS says {body.get('status', '?')} ({body.get('raw_status', '')}) for "
                     f"{body.get('order_code') or '?'}", eid, key=str(body.get("order_code", "")),
                     details={**body, "identity": identity})
        else:
            self.add(at, "signal", f"signal {name}", eid, details={"value": value, "identity": identity})

    def _activity_task_scheduled(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        step = str((a.get("activityType") or {}).get("name", ""))
        inp = _first(a.get("input"))
        inp = inp if isinstance(inp, dict) else {}
        self.scheduled[eid] = {"step": step, "input": inp, "at": at}
        key, target = self._call_key(step, inp)
        retry = a.get("retryPolicy") or {}
        self.add(at, "step", f"{step} scheduled" + (f" for {key}" if key else "") + (f" at {target}" if target else ""),
                 eid, step=step, key=key, target=target,
                 details={"activity_id": a.get("activityId"), "max_attempts": retry.get("maximumAttempts", 0),
                          "timeout": a.get("startToCloseTimeout", "")})

    def _call_key(self, step: str, inp: dict[str, Any]) -> tuple[str, str]:
        call = CALLS.get(step)
        if call is None:
            return "", ""
        target = self.connector(call[1])
        if call[0] == "marketplace":
            return str(self.order.get("external_id", "")), target
        return self.code(inp.get("revision", 0)), target

    def _activity_task_started(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self.started[int(a.get("scheduledEventId", 0) or 0)] = {
            "attempt": int(a.get("attempt", 1) or 1),
            "last_failure": _failure_text(a.get("lastFailure")) if a.get("lastFailure") else ""}

    def _ended(self, a: dict[str, Any]) -> tuple[str, dict[str, Any], int, str, str, str]:
        sid = int(a.get("scheduledEventId", 0) or 0)
        sched = self.scheduled.get(sid, {"step": "?", "input": {}})
        started = self.started.get(sid, {"attempt": 1, "last_failure": ""})
        key, target = self._call_key(sched["step"], sched["input"])
        return sched["step"], sched["input"], started["attempt"], started["last_failure"], key, target

    @staticmethod
    def _retried(attempt: int, last_failure: str) -> str:
        if attempt <= 1:
            return ""
        why = f": {last_failure[:120]}" if last_failure else ""
        return f" (attempt {attempt}, {attempt - 1} failed before{why})"

    def _activity_task_completed(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        step, inp, attempt, last_failure, key, target = self._ended(a)
        result = _first(a.get("result"))
        r = result if isinstance(result, dict) else {}
        what, outcome = self._describe(step, inp, r, key, target)
        self.add(at, "call" if step in CALLS else "step", what + self._retried(attempt, last_failure), eid,
                 step=step, attempt=attempt, key=key, target=target, outcome=outcome,
                 details={"result": result, **({"last_failure": last_failure} if last_failure else {})})

    def _describe(self, step: str, inp: dict[str, Any], r: dict[str, Any], key: str, target: str
                  ) -> tuple[str, str]:
        """One sentence for a finished step, and its outcome word."""
        if r.get("parked") or r.get("ok") is False:
            qid = r.get("quarantine_id")
            return (f"{step} for {key or '?'} refused: parked" + (f" in quarantine #{qid}" if qid else "")
                    + f": {scrub_text(str(r.get('reason', '')))[:200]}"), "parked"
        if step in ("create_wms_order", "create_erp_order"):
            doc = "WMS outbound order" if step == "create_wms_order" else "ERP sales order"
            outcome = "created" if r.get("created") else "already_there"
            how = "created" if r.get("created") else "already there (idempotent repeat)"
            return f"{doc} {key} {how} in {target}: their id {r.get('external_id') or '?'}", outcome
        if step in ("cancel_wms_order", "cancel_erp_order"):
            doc = "WMS outbound order" if step == "cancel_wms_order" else "ERP sales order"
            return f"{doc} {key} cancel in {target}: {r.get('outcome') or '?'}", str(r.get("outcome") or "")
        if step in ("write_back_package", "write_back_shipment"):
            ship = inp.get("shipment") or {}
            how = "written back" if r.get("created", True) else "already on the platform"
            if r.get("conflict"):
                how += ", CONFLICT: another tracking number is on the order"
            split = " (split package)" if inp.get("split") else ""
            return (f"tracking {ship.get('carrier_code', '')} {ship.get('tracking_number', '')}{split} {how} to "
                    f"{target} order {key}"), "conflict" if r.get("conflict") else (
                        "written" if r.get("created", True) else "already_there")
        if step == "refresh_order":
            return f"order {key} re-read from {target}: raw document {r.get('raw_id', '?')}", "ok"
        if step in ("poll_outbound", "poll_shipment"):
            if not r:
                return f"{target} polled for {key}: nothing yet", "nothing"
            packages = r.get("packages")
            count = len(packages) if isinstance(packages, list) else (1 if r.get("tracking_number") else 0)
            return f"{target} polled for {key}: {r.get('status', 'shipped')}, {count} package(s)", str(
                r.get("status", "shipped"))
        return f"{step} completed", "ok"

    def _activity_task_failed(self, at: datetime | None, eid: int, a: dict[str, Any], how: str = "failed") -> None:
        step, _, attempt, last_failure, key, target = self._ended(a)
        message = _failure_text(a.get("failure"))
        self.add(at, "call" if step in CALLS else "step",
                 f"{step}" + (f" for {key}" if key else "") + f" {how} after {attempt} attempt(s): {message[:200]}",
                 eid, step=step, attempt=attempt, key=key, target=target, outcome=how,
                 details={"failure": message, "retry_state": a.get("retryState", ""),
                          **({"last_failure": last_failure} if last_failure else {})})

    def _activity_task_timed_out(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self._activity_task_failed(at, eid, a, how="timed_out")

    def _activity_task_canceled(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        step, _, attempt, _, key, target = self._ended(a)
        self.add(at, "step", f"{step} cancelled", eid, step=step, attempt=attempt, key=key, target=target,
                 outcome="cancelled")

    def _marker_recorded(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        if a.get("markerName") != "core_local_activity":
            return
        details = a.get("details") or {}
        data = _first(details.get("data"))
        data = data if isinstance(data, dict) else {}
        step = str(data.get("activity_type", "?"))
        attempt = int(data.get("attempt", 1) or 1)
        if a.get("failure"):
            message = _failure_text(a.get("failure"))
            self.add(at, "step", f"{step} failed (local) after {attempt} attempt(s): {message[:200]}", eid,
                     step=step, attempt=attempt, outcome="failed", details={"failure": message})
            return
        result = _first(details.get("result"))
        r = result if isinstance(result, dict) else {}
        kind, outcome = "step", "ok"
        if step == "prepare_order":
            name = str(self.route.get("order_mapping", ""))
            self.mapping_seen(at, eid, name, str(r.get("mapping_hash", "")))
            for sku in r.get("skus") or []:
                if sku not in self.skus:
                    self.skus.append(str(sku))
            if r.get("ok"):
                facts = r.get("facts") or {}
                status = f"status {facts['status']}, " if facts.get("status") else ""
                what = (f"mapped with {name} @ {str(r.get('mapping_hash', ''))[:12]}: {status}"
                        f"SKUs {', '.join(r.get('skus') or []) or '-'}")
            else:
                what, outcome, kind = (f"mapping parked in quarantine #{r.get('quarantine_id') or '?'}: "
                                       f"{scrub_text(str(r.get('reason', '')))[:200]}"), "parked", "quarantine"
        elif step == "raise_task":
            what, kind = f"task #{result} raised", "task"
        elif step == "park_failed_step":
            what, kind, outcome = f"step out of retries parked in quarantine #{result}", "quarantine", "parked"
        elif step == "resolve_quarantine":
            what, kind = "quarantine entry resolved", "quarantine"
        elif step == "record_outcome":
            what = "outcome recorded in the hub store"
        elif step == "take_pending_events":
            what = (f"pushes kept before the order was known: {len(r.get('shipments') or [])} shipment(s), "
                    f"{len(r.get('statuses') or [])} status(es)")
        else:
            what = f"{step} completed (local)"
        self.add(at, kind, what + self._retried(attempt, ""), eid, step=step, attempt=attempt, outcome=outcome,
                 details={"result": result})

    def _upsert_workflow_search_attributes(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        fields = ((a.get("searchAttributes") or {}).get("indexedFields") or {})
        for name, value in fields.items():
            if name == "Stage":
                self.add(at, "stage", f"stage → {value}", eid, outcome=str(value), details={"stage": value})
            else:
                if name == "Skus" and isinstance(value, list):
                    self.skus.extend(str(s) for s in value if str(s) not in self.skus)
                shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                self.add(at, "attribute", f"{name} = {shown}", eid, details={name: value})

    def _timer_fired(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self.add(at, "step", "timer fired: waited its full time (a re-check or a WMS poll is due)", eid,
                 step="timer", details={"timer_id": a.get("timerId")})

    def _workflow_task_failed(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        message = _failure_text(a.get("failure"))
        self.add(at, "step", f"workflow task failed ({a.get('cause', '')}): {message[:200]}", eid, outcome="failed",
                 details={"cause": a.get("cause", ""), "failure": message})

    def _workflow_execution_completed(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        result = _first(a.get("result"))
        r = result if isinstance(result, dict) else {}
        what = f"{self.info.workflow_type} completed: {r.get('outcome') or r.get('stage') or 'done'}"
        if r.get("packages"):
            what += f", {r['packages']} package(s)"
        self.add(at, "workflow", what, eid, outcome=str(r.get("outcome") or r.get("stage") or "completed"),
                 details={"result": result})

    def _workflow_execution_continued_as_new(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        new = str(a.get("newExecutionRunId", ""))
        self.add(at, "workflow", f"continued as new: run {new[:8]}", eid, outcome="continued_as_new",
                 details={"new_run_id": new})

    def _workflow_execution_failed(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        message = _failure_text(a.get("failure"))
        self.add(at, "workflow", f"{self.info.workflow_type} failed: {message[:200]}", eid, outcome="failed",
                 details={"failure": message})

    def _workflow_execution_terminated(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        who = str(a.get("identity", ""))
        self.add(at, "decision", f"terminated by {who or '?'}: {scrub_text(str(a.get('reason', '')))[:200]}", eid,
                 actor=who, outcome="terminated", details={"reason": a.get("reason", "")})

    def _workflow_execution_timed_out(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self.add(at, "workflow", f"{self.info.workflow_type} timed out", eid, outcome="timed_out")

    def _workflow_execution_canceled(self, at: datetime | None, eid: int, a: dict[str, Any]) -> None:
        self.add(at, "workflow", f"{self.info.workflow_type} cancelled", eid, outcome="cancelled")


def run_timeline(events: Sequence[dict[str, Any]], run_id: str) -> RunTimeline:
    """The entries of one run from its *decoded* events (:func:`decode_events`), in history order."""
    reader = _RunReader(run_id)
    for event in events:
        reader.read(event)
    reader.info.events = len(events)
    ref = {k: str(reader.order.get(k, "")) for k in ("channel", "shop", "external_id", "source")}
    return RunTimeline(run=reader.info, order_key=reader.order_key, order=ref, entries=reader.entries,
                       skus=reader.skus, mappings=reader.mappings, flows=reader.flows)


async def read_run(events: Sequence[dict[str, Any]], run_id: str, codec: PayloadCodec | None) -> RunTimeline:
    """:func:`run_timeline` of a history as Temporal stores it (payloads encrypted)."""
    return run_timeline(await decode_events(events, codec), run_id)
