"""One interval schedule per hub job (the audit archiver, the stock reconciliation): created when
missing, replaced when its interval changed, deleted when switched off. The schedule's note holds
its interval, so a hub restarted with another setting sees the difference."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError


async def ensure_interval_schedule(client: Client, sid: str, every: timedelta | None, what: str,
                                   action: ScheduleActionStartWorkflow) -> str | None:
    """Make schedule ``sid`` run ``action`` every ``every`` (None: no schedule); returns its id or None."""
    handle = client.get_schedule_handle(sid)
    try:
        current = (await handle.describe()).schedule.state.note
    except RPCError:
        current = None
    note = f"{what} every {every.total_seconds():g}s" if every else ""
    if current is not None and current == note:
        return sid
    if current is not None:
        await handle.delete()
    if every is None:
        return None
    schedule = Schedule(action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP), state=ScheduleState(note=note))
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:  # another worker of this hub created it at the same moment
        pass
    return sid
