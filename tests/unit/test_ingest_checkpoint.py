"""The ingest activity hands pages over as they are read and checkpoints after each window, so a
retried attempt resumes after the last finished window (a peak day is never read twice whole)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from connectors.base import Connector, OrderSource, RawRecord
from connectors.errors import TransientError
from store import open_store
from workflows.ingest import activities as ingest_activities
from workflows.ingest.activities import IngestActivities
from workflows.models import IngestWindow, Route

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


class FlakySource(Connector, OrderSource):
    kind = "flaky"
    channel = "taobao"

    def __init__(self, fail_at: int | None) -> None:
        self.name = "flaky"
        self.windows: list[tuple[datetime, datetime]] = []
        self.fail_at = fail_at

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        self.windows.append((since, until))
        if self.fail_at is not None and len(self.windows) == self.fail_at:
            raise TransientError("the platform went away mid-chunk")
        yield [RawRecord(external_id=f"{since:%H}", modified_at=since, payload={"tid": f"{since:%H}"})]


class Pool:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    async def get(self, name: str) -> Connector:
        return self.connector


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    async def fake_hand_over(client: Any, store: Any, task_queue: str, connector: Any, record: RawRecord,
                             route: Route) -> str:
        seen.append(record.external_id)
        return "started"

    monkeypatch.setattr(ingest_activities, "hand_over", fake_hand_over)
    return seen


async def test_a_retry_resumes_after_the_last_finished_window(tmp_path: Path, handed: list[str]) -> None:
    store = open_store(f"sqlite:///{tmp_path / 't.db'}", None, tmp_path)
    window = IngestWindow(connector="flaky", stream="orders", since=T0, until=T0 + timedelta(hours=4),
                          route=Route(wms="wms"), flow="f", window=timedelta(hours=1))
    first = FlakySource(fail_at=3)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    with pytest.raises(ApplicationError):
        await env.run(IngestActivities(store, Pool(first), None, "q").ingest_window, window)  # type: ignore[arg-type]
    assert handed == ["00", "01"]  # two windows handed over before the failure
    assert beats[-1]["done_until"] == (T0 + timedelta(hours=2)).isoformat()
    assert store.get_cursor("flaky", "orders", "f") == T0 + timedelta(hours=2)  # the live cursor moved too

    second = FlakySource(fail_at=None)
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(ActivityEnvironment.default_info(), attempt=2, heartbeat_details=[beats[-1]])
    counts = await retry.run(IngestActivities(store, Pool(second), None, "q").ingest_window, window)  # type: ignore[arg-type]
    assert second.windows[0][0] == T0 + timedelta(hours=2)  # resumed, not restarted
    assert handed == ["00", "01", "02", "03"]
    assert counts.fetched == 4 and counts.started == 4  # the counts carried over the checkpoint
    assert store.get_cursor("flaky", "orders", "f") == T0 + timedelta(hours=4)
