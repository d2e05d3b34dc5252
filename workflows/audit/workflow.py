"""The archiver workflow, run by a Temporal Schedule (every minute by default).

It only loops over its activity: listing and reading histories are side effects. A pass that
archived a full batch is followed by another, up to ``max_batches``; what is left waits for the
next scheduled run (the schedule skips a run while one is still going).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.audit.archive import AuditActivities
    from workflows.audit.models import ArchiveCounts, ArchiverInput


@workflow.defn(name="AuditArchiver")
class AuditArchiverWorkflow:
    @workflow.run
    async def run(self, inp: ArchiverInput) -> ArchiveCounts:
        total = ArchiveCounts()
        for _ in range(inp.max_batches):
            counts = await workflow.execute_activity_method(
                AuditActivities.archive_closed_orders, inp, start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3))
            total = ArchiveCounts(listed=total.listed + counts.listed, archived=total.archived + counts.archived,
                                  remaining=counts.remaining, failed=total.failed + counts.failed)
            if counts.remaining == 0 or counts.archived == 0:
                break
        return total
