"""Answering a pending human step from the API or the CLI: the task names the order's workflow; the
decision goes to it as a Temporal update, so the caller learns at once whether it was taken."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.decisions.models import Decision, DecisionResult

DECIDABLE = ("approval", "manual_review")


class NotDecidable(ValueError):
    """The task is not a pending approval or review (closed, another kind, the order moved on)."""


async def decide(client: Client, store: Any, task_id: int, decision: Decision) -> DecisionResult:
    """Approve, reject, or edit and release the order behind task ``task_id``.

    Raises ``LookupError`` for an unknown task, :class:`NotDecidable` when nothing waits for it."""
    task = await asyncio.to_thread(store.get_task, task_id)
    if task is None:
        raise LookupError(f"no task {task_id}")
    if task.kind not in DECIDABLE:
        raise NotDecidable(f"task {task_id} is a {task.kind} task; only {' and '.join(DECIDABLE)} tasks take "
                           "a decision (tongdao tasks close ID for the others)")
    if task.status != "open":
        raise NotDecidable(f"task {task_id} was closed by {task.closed_by or 'someone'}")
    handle = client.get_workflow_handle(task.workflow_id)
    try:
        return await handle.execute_update("decide", decision, result_type=DecisionResult)
    except WorkflowUpdateFailedError as exc:
        raise NotDecidable(f"the order refused the decision: {exc.cause or exc}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotDecidable(f"the order of task {task_id} is no longer running") from None
        raise
