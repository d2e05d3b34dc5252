"""The audit timeline's shape, and the archiver workflow's input and output.

A timeline is built for people who were not there: every entry says when, what kind of thing
happened, in one sentence (``what``), and carries the identifiers an auditor checks against the
other systems (``key``: the WMS/ERP document code or the marketplace order id). Nothing in it is
personal data: values taken from payloads go through :func:`canonical.redact.redact`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EntryKind = Literal["workflow", "signal", "step", "call", "stage", "attribute", "version", "decision", "task",
                    "quarantine", "document", "stock"]


class TimelineEntry(BaseModel):
    """One thing that happened to the order."""

    at: datetime
    kind: EntryKind
    what: str = Field(description="one sentence, the text form's line")
    run_id: str = Field("", description="the workflow run it comes from ('' for the hub store)")
    event_id: int | None = Field(None, description="the history event (Temporal's event id in that run)")
    step: str = Field("", description="activity type of a step or call")
    attempt: int | None = Field(None, description="attempt that ended the step; > 1 means it was retried")
    key: str = Field("", description="idempotency key of an external call: TD… / TD…R{n}, the marketplace order id")
    target: str = Field("", description="connector called")
    outcome: str = ""
    actor: str = Field("", description="who: a replay's requester, a task's closer, a terminating client")
    details: dict[str, Any] = Field(default_factory=dict)


class RunInfo(BaseModel):
    """One run of the order's workflow id (continue-as-new starts a new run)."""

    run_id: str
    workflow_type: str = ""
    status: str = Field("", description="running, completed, continued_as_new, failed, terminated, timed_out...")
    started_at: datetime | None = None
    closed_at: datetime | None = None
    continued_from: str = ""
    events: int = 0
    source: Literal["temporal", "archive"] = "temporal"


class RunTimeline(BaseModel):
    """What one run's history says: kept as is in the archive, so the archive needs no key to be read."""

    run: RunInfo
    order_key: str = ""
    order: dict[str, str] = Field(default_factory=dict, description="channel, shop, external_id, source")
    entries: list[TimelineEntry] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)
    mappings: dict[str, str] = Field(default_factory=dict, description="content hash → mapping name")
    flows: list[tuple[str, str]] = Field(default_factory=list, description="(flow, version) pairs")


class MappingVersion(BaseModel):
    name: str
    hash: str
    spec_stored: bool = Field(description="its text can be read with `tongdao audit spec HASH`")


class FlowVersionRef(BaseModel):
    name: str
    version: str
    definition_stored: bool = Field(description="the definition is kept in the store's flow_versions")


class Timeline(BaseModel):
    """An order's whole life, from every run of its workflow and the hub store, oldest first."""

    workflow_id: str
    order_key: str
    channel: str
    shop: str
    external_id: str
    hub_code: str
    source: str = Field(description="temporal, archive, temporal+archive, or store (no workflow history left)")
    runs: list[RunInfo] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)
    mappings: list[MappingVersion] = Field(default_factory=list)
    flows: list[FlowVersionRef] = Field(default_factory=list)
    order: dict[str, Any] = Field(default_factory=dict, description="the store's order row (no personal data)")
    entries: list[TimelineEntry] = Field(default_factory=list)


class ArchiverInput(BaseModel):
    task_queue: str
    batch: int = Field(200, ge=1, description="runs archived per activity call")
    max_batches: int = Field(20, ge=1, description="calls per archiver run; the next scheduled run goes on")
    overlap_s: float = Field(600.0, ge=0, description="re-list this far before the newest archived close time: "
                             "visibility may index a close late")


class ArchiveCounts(BaseModel):
    listed: int = 0
    archived: int = 0
    remaining: int = 0
    failed: int = 0
