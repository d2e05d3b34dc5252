"""Where one order's time goes inside the engine: its workflow history, event by event.

Prints each event's offset from the workflow start for the most recent completed order (or the
one named). Run it against a hub after a demo (`tongdao up` must be running):

    .venv/bin/python bench/order_timeline.py [--workflow-id order:taobao:SHOP:TID]
"""

from __future__ import annotations

import argparse
import asyncio

from worker.client import connect


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--workflow-id", default=None)
    args = parser.parse_args()
    client = await connect(args.address)
    wf_id = args.workflow_id
    if wf_id is None:
        async for wf in client.list_workflows('WorkflowType = "OrderLifecycle" AND ExecutionStatus = "Completed"',
                                              limit=1):
            wf_id = wf.id
    if wf_id is None:
        raise SystemExit("no completed order workflow found: run `tongdao demo` first")
    history = await client.get_workflow_handle(wf_id).fetch_history()
    start = history.events[0].event_time.ToDatetime()
    print(wf_id)
    for event in history.events:
        offset = (event.event_time.ToDatetime() - start).total_seconds()
        name = type(event).__name__
        kind = event.WhichOneof("attributes") or name
        print(f"{offset:7.3f} s  {kind.removesuffix('_event_attributes')}")


if __name__ == "__main__":
    asyncio.run(main())
