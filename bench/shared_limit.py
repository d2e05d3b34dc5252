"""What holding a platform's rate limit across worker processes costs per request: a limiter that
counts in the hub store (one compare-and-set on SQLite) vs the in-process limiter alone.

Both are given a rate high enough never to wait, so the figure is the bookkeeping only; a
platform call it guards takes tens of milliseconds.

    .venv/bin/python bench/shared_limit.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.ratelimit import RateLimiter  # noqa: E402
from store import open_store  # noqa: E402
from store.ratebudget import StoreRateBudget  # noqa: E402


async def per_call(limiter: RateLimiter, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await limiter.acquire(max_wait_s=1.0)
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp())
    store = open_store(f"sqlite:///{home / 'hub.db'}", None, home)
    local = RateLimiter(1e9, burst=10**9)
    shared = RateLimiter(1e9, burst=10**9)
    shared.share("bench-connector", StoreRateBudget(store))
    await per_call(shared, 50)  # warm up
    alone = min([await per_call(local, args.n) for _ in range(2)])
    counted = min([await per_call(shared, args.n) for _ in range(2)])
    print(f"{args.n} acquisitions each")
    print(f"in-process limiter          {alone:9.1f} µs/request")
    print(f"shared through the store    {counted:9.1f} µs/request")
    print(f"ratio shared/in-process: {counted / alone:.0f}x (+{(counted - alone) / 1000:.2f} ms per request)")


if __name__ == "__main__":
    asyncio.run(main())
