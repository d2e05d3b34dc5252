"""Embedded Temporal throughput: SQLite defaults vs journal_mode=wal + synchronous=normal.

Both servers run in this process's machine, one after the other, with the same workload: N
workflows, each running two activities and completing (the shape of a lean order workflow).
Prints workflows/s for each and the ratio, which is what ``worker/embedded.py`` relies on.

    .venv/bin/python bench/temporal_sqlite.py --workflows 300
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from simulators.server import free_port
from worker.embedded import EmbeddedTemporal


@activity.defn
async def step(n: int) -> int:
    return n + 1


@workflow.defn(sandboxed=False)  # a bench module imports argparse; nothing to guard here
class BenchWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        a = await workflow.execute_activity(step, n, start_to_close_timeout=timedelta(seconds=30))
        return await workflow.execute_activity(step, a, start_to_close_timeout=timedelta(seconds=30))


class DefaultPragmas(EmbeddedTemporal):
    def command(self) -> list[str]:
        cmd = super().command()
        out: list[str] = []
        skip = False
        for part in cmd:
            if skip:
                skip = False
                continue
            if part == "--sqlite-pragma":
                skip = True
                continue
            out.append(part)
        return out


async def measure(server: EmbeddedTemporal, workflows: int, concurrency: int) -> float:
    client = await Client.connect(server.address)
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[BenchWorkflow], activities=[step],
                      max_concurrent_activities=200, max_concurrent_workflow_tasks=200):
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await client.execute_workflow(BenchWorkflow.run, i, id=f"{queue}-{i}", task_queue=queue)

        await one(-1)  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(workflows)))
        return workflows / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, float] = {}
    for label, cls in (("default pragmas", DefaultPragmas), ("wal + synchronous=normal", EmbeddedTemporal)):
        with tempfile.TemporaryDirectory() as tmp:
            server = cls(Path(tmp) / "temporal.db", port=free_port(), headless=True)
            with server:
                results[label] = await measure(server, args.workflows, args.concurrency)
        print(f"{label:<28} {results[label]:8.1f} workflows/s  ({args.workflows} workflows, 2 activities each)")
    base = results["default pragmas"]
    print(f"ratio wal/default: {results['wal + synchronous=normal'] / base:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
