"""Replay recorded workflow histories against the current workflow code.

A change to a workflow that would break runs in flight fails here; guard such a change with
``workflow.patched``. Histories are recorded by the integration tests with
``TONGDAO_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    assert {p.stem for p in HISTORIES} >= {
        # version 1 (OrderSync), recorded before OrderLifecycle existed: runs in flight must finish
        "order_sync_completed", "order_sync_replayed", "order_ingest",
        # OrderLifecycle: every path, a parked-then-replayed order, polling, continue-as-new
        "order_lifecycle_completed", "order_lifecycle_replayed", "order_lifecycle_paid_later",
        "order_lifecycle_closed_unpaid", "order_lifecycle_cancelled", "order_lifecycle_amended",
        "order_lifecycle_split", "order_lifecycle_after_sales", "order_lifecycle_poll_parked",
        "order_lifecycle_continued", "order_lifecycle_continued_first_run", "order_ingest_v2"}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
