"""Incremental ingest of one marketplace connector's stream, run by a Temporal Schedule.

Each run reads from the saved cursor (minus an overlap, since platforms index modifications
late) up to now (minus a small lag), in chunks; each chunk is one activity that pulls the pages,
stores the raw documents and signals-with-start one order workflow per order. The cursor moves
only after a chunk succeeded, so a crash re-reads rather than skips; the re-read is harmless
because order workflows are keyed by the order's business key.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.ingest.activities import IngestActivities
    from workflows.models import IngestCounts, IngestInput, IngestWindow


def ingest_workflow_id(connector: str, stream: str = "orders") -> str:
    return f"ingest:{connector}:{stream}"


@workflow.defn(name="OrderIngest")
class IngestWorkflow:
    @workflow.run
    async def run(self, inp: IngestInput) -> IngestCounts:
        cursor = await workflow.execute_activity_method(
            IngestActivities.load_cursor, inp, start_to_close_timeout=timedelta(seconds=30),
        )
        since = cursor - inp.overlap
        until = workflow.now() - inp.lag
        totals = IngestCounts()
        start = since
        while start < until:
            end = min(start + inp.chunk, until)
            counts = await workflow.execute_activity_method(
                IngestActivities.ingest_window,
                IngestWindow(connector=inp.connector, stream=inp.stream, since=start, until=end, route=inp.route,
                             flow=inp.flow, window=inp.window),
                start_to_close_timeout=max(timedelta(minutes=30), inp.route.options("ingest").timeout),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(initial_interval=inp.route.options("ingest").initial_interval,
                                         maximum_interval=inp.route.options("ingest").max_interval,
                                         maximum_attempts=inp.route.options("ingest").max_attempts),
            )
            totals = totals + counts
            start = end
        return totals
