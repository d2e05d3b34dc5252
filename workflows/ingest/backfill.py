"""Backfill: re-read a past period of one source, page by page, beside the live sync.

Each page is one ``ingest_window`` activity that does not move the live cursor; the workflow
sleeps between pages so that the platform's rate limit and the worker stay available to the
scheduled sync. Orders already known are no-ops (their workflows are keyed by business key).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.ingest.activities import IngestActivities
    from workflows.models import BackfillInput, IngestCounts, IngestWindow


@workflow.defn(name="OrderBackfill")
class BackfillWorkflow:
    def __init__(self) -> None:
        self._done_until = None
        self._totals = IngestCounts()

    @workflow.query(name="progress")
    def progress(self) -> dict:
        return {"done_until": self._done_until.isoformat() if self._done_until else None,
                **self._totals.model_dump()}

    @workflow.run
    async def run(self, inp: BackfillInput) -> IngestCounts:
        start = inp.since
        while start < inp.until:
            end = min(start + inp.page, inp.until)
            counts = await workflow.execute_activity_method(
                IngestActivities.ingest_window,
                IngestWindow(connector=inp.connector, stream=inp.stream, since=start, until=end, route=inp.route,
                             advance_cursor=False),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2)),
            )
            self._totals = self._totals + counts
            self._done_until = start = end
            if start < inp.until:
                await workflow.sleep(inp.pause)
                if workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(inp.model_copy(update={"since": start}))
        return self._totals
