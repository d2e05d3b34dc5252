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
    assert {p.stem for p in HISTORIES} >= {"order_sync_completed", "order_sync_replayed", "order_ingest"}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
