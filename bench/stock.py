"""The stock pool's two benchmarks, on the embedded stack (Temporal dev server, hub worker, SQLite
store, the marketplaces' simulators on loopback).

* ``latency``: a sale accepted on channel A (a reservation, exactly as the order workflow's
  ``stock_reserve`` activity makes it: the store's transaction with its outbox mark) until
  the new quantity is visible on every *other* channel's simulator; p50/p99 at 1, 10 and 100
  changes per second spread over the catalogue's SKUs, beside the latency of one direct stock write
  to a simulator in the same run (the floor: what a push costs with no pool, no workflow).
* ``flash``: 1,000 orders from 4 channels within 5 s for the last 100 units of one SKU: units
  reserved (must be exactly 100), seconds until every channel shows 0, stock calls per channel,
  and throttling answers from the platforms (target 0).

The figures are printed, never asserted. Run:

    .venv/bin/python bench/stock.py                # both, full rates (about 60 s)
    .venv/bin/python bench/stock.py --quick        # shorter runs
    .venv/bin/python bench/stock.py --only flash
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.base import ListingRef  # noqa: E402
from connectors.registry import register  # noqa: E402
from hub.demo_channels import BUILDERS, Marketplace  # noqa: E402
from hub.logging import configure  # noqa: E402
from hub.runtime import HubRuntime  # noqa: E402
from hub.settings import Settings  # noqa: E402
from simulators.catalog import CATALOG  # noqa: E402
from simulators.server import free_port  # noqa: E402
from workflows.stock.client import ensure_pump  # noqa: E402

WH = "bench-wms"
CHANNELS = ("jd", "douyin", "pdd", "shopify")
SKUS = [str(item["sku"]) for item in CATALOG]
LATENCY_SKUS, FLOOR_SKU, FLASH_SKU = SKUS[:-2], SKUS[-2], SKUS[-1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Bench:
    def __init__(self, home: Path) -> None:
        self.settings = Settings(home=home, temporal_port=free_port(), temporal_ui_port=free_port(),
                                 api_port=free_port(), task_queue="bench-stock", log_format="console",
                                 log_level="WARNING")
        self.rt = HubRuntime(self.settings)
        now = datetime.now(UTC)
        self.markets: list[Marketplace] = [BUILDERS[kind](7, "bench", 0, now) for kind in CHANNELS]

    async def __aenter__(self) -> Bench:
        for market in self.markets:
            market.server.start()
        await self.rt.start()
        assert self.rt.store
        for market in self.markets:
            register(self.rt.store, market.register(), "bench")
        definition = {"name": "bench-stock", "sources": [{"connector": self.markets[0].connector}],
                      "targets": {"wms": WH},
                      "stock": {"warehouse": WH, "channels": [m.connector for m in self.markets]}}
        self.rt.store.save_flow("bench-stock", "v1", definition, "bench")
        assert self.rt.client
        await ensure_pump(self.rt.client, self.settings.task_queue, refresh=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rt.stop()
        for market in self.markets:
            market.server.stop()

    @staticmethod
    def counter(sim: Any, name: str) -> int:
        """A simulator's own count (each keeps it its own way: a counters dict, an attribute, its state)."""
        counters = getattr(sim, "counters", None)
        if counters is not None and name in counters:
            return int(counters[name])
        value = getattr(sim, name, None)
        return int(value if isinstance(value, int) else sim.state().get(name, 0))

    def throttled(self) -> dict[str, int]:
        return {m.channel: self.counter(m.sim, "stock_throttled") for m in self.markets}

    def calls(self) -> dict[str, int]:
        return {m.channel: self.counter(m.sim, "stock_writes") for m in self.markets}

    async def sell(self, order: str, sku: str, channel: str, units: int = 1) -> bool:
        """What the order workflow's stock_reserve activity does: hold, then wake the SKU's sync."""
        store, client = self.rt.store, self.rt.client
        assert store and client
        result = await asyncio.to_thread(store.stock_reserve, order, {sku: units}, WH, channel=channel)
        return result.ok

    async def stock(self, skus: list[str], units: int) -> None:
        assert self.rt.store and self.rt.client
        for sku in skus:  # ``units`` free: what earlier phases still hold comes on top
            held = sum(lv.reserved for lv in self.rt.store.stock_levels(sku) if lv.warehouse == WH)
            await asyncio.to_thread(self.rt.store.stock_set_on_hand, sku, WH, units + held, "receipt", "bench")
        await self.until(lambda: all(m.sim.shown_stock(s) == units for m in self.markets for s in skus), 60)

    @staticmethod
    async def until(predicate: Any, limit_s: float) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > limit_s:
                raise TimeoutError("not reached in time")
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    async def floor(self, n: int) -> list[float]:
        """One direct stock write (connector → simulator), no pool and no workflow."""
        assert self.rt.pool
        market = self.markets[0]
        connector: Any = await self.rt.pool.get(market.connector)
        listing: ListingRef | None = await connector.find_listing(FLOOR_SKU)
        assert listing is not None
        out = []
        for i in range(n):
            started = time.perf_counter()
            await connector.set_stock(listing, 500 + i % 7, key=f"floor-{i}")
            out.append(time.perf_counter() - started)
        return out

    async def latency(self, rate: float, seconds: float, start: int = 10_000) -> dict[str, Any]:
        """Sales at ``rate``/s over the SKUs for ``seconds``; per sale, until every other channel
        shows a quantity at or below the one that sale left."""
        await self.stock(LATENCY_SKUS, start)
        sales: list[tuple[float, str, int, str]] = []  # (t0, sku, expected, source channel)
        left = dict.fromkeys(LATENCY_SKUS, start)
        count = max(1, int(rate * seconds))
        began = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            sku = LATENCY_SKUS[i % len(LATENCY_SKUS)]
            source = self.markets[i % len(self.markets)].channel
            t0 = time.monotonic()
            if await self.sell(f"lat-{rate}-{i}", sku, source):
                left[sku] -= 1
                sales.append((t0, sku, left[sku], source))
        await self.until(lambda: all(m.sim.shown_stock(s) == left[s] for m in self.markets for s in LATENCY_SKUS), 60)
        latencies = []
        per_channel: dict[str, list[float]] = {m.channel: [] for m in self.markets}
        for t0, sku, expected, source in sales:
            worst = 0.0
            for market in self.markets:
                if market.channel == source:
                    continue
                seen = next((t for t, s, q in market.sim.stock_updates if s == sku and t >= t0 and q <= expected),
                            None)
                if seen is None:
                    raise RuntimeError(f"{market.channel} never showed {sku} <= {expected}")
                worst = max(worst, seen - t0)
                per_channel[market.channel].append(seen - t0)
            latencies.append(worst)
        return {"rate": rate, "sales": len(sales), "p50_ms": pct(latencies, 0.5) * 1000,
                "p99_ms": pct(latencies, 0.99) * 1000, "max_ms": max(latencies) * 1000,
                "throttled": sum(self.throttled().values()),
                "channels_p99_ms": {c: pct(v, 0.99) * 1000 for c, v in per_channel.items()}}

    async def flash(self, orders: int, units: int, within: float) -> dict[str, Any]:
        sku = FLASH_SKU
        await self.stock([sku], units)
        calls0, throttled0 = self.calls(), self.throttled()
        channels = [m.channel for m in self.markets]
        began = time.monotonic()
        accepted_at: list[float] = []

        async def one(i: int) -> bool:
            await asyncio.sleep(within * i / orders)
            ok = await self.sell(f"flash-{i}", sku, channels[i % len(channels)])
            if ok:
                accepted_at.append(time.monotonic())
            return ok

        results = await asyncio.gather(*(one(i) for i in range(orders)))
        orders_in = time.monotonic() - began
        await self.until(lambda: all(m.sim.shown_stock(sku) == 0 for m in self.markets), 120)
        sold_out = max(accepted_at)  # the last unit reserved
        zero_at = max(next(t for t, s, q in m.sim.stock_updates if s == sku and q == 0 and t >= began)
                      for m in self.markets)
        assert self.rt.store
        (level,) = [lv for lv in self.rt.store.stock_levels(sku) if lv.warehouse == WH]
        calls, throttled = self.calls(), self.throttled()
        return {"orders": orders, "units": units, "reserved": level.reserved, "accepted": sum(results),
                "orders_in_s": orders_in, "zero_after_sold_out_s": zero_at - sold_out,
                "sold_out_after_s": sold_out - began,
                "calls": {c: calls[c] - calls0[c] for c in calls},
                "throttled": {c: throttled[c] - throttled0[c] for c in throttled}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("latency", "flash"))
    args = parser.parse_args()
    configure("console", "WARNING")
    with tempfile.TemporaryDirectory() as home:
        async with Bench(Path(home)) as bench:
            if args.only in (None, "latency"):
                floor = await bench.floor(30 if args.quick else 100)
                print(f"floor: one direct stock write to a simulator: p50 {pct(floor, .5) * 1000:.1f} ms, "
                      f"p99 {pct(floor, .99) * 1000:.1f} ms")
                print("| changes/s | sales | p50 ms | p99 ms | max ms | p99 / floor p99 | throttled (total) "
                      "| p99 ms per channel |")
                print("|---|---|---|---|---|---|---|---|")
                for rate, seconds in ((1, 5 if args.quick else 10), (10, 3 if args.quick else 10),
                                      (100, 2 if args.quick else 5)):
                    r = await bench.latency(rate, seconds)
                    print(f"| {rate} | {r['sales']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | "
                          f"{r['p99_ms'] / (pct(floor, .99) * 1000):.0f}x | {r['throttled']} | "
                          + ", ".join(f"{c} {v:.0f}" for c, v in r["channels_p99_ms"].items()) + " |")
            if args.only in (None, "flash"):
                orders = 400 if args.quick else 1000
                f = await bench.flash(orders, 100, 5.0)
                print(f"flash sale: {f['orders']} orders from {len(f['calls'])} channels in {f['orders_in_s']:.1f} s "
                      f"for {f['units']} units: {f['reserved']} reserved ({f['accepted']} orders accepted); "
                      f"sold out {f['sold_out_after_s']:.2f} s in; every channel showed 0 "
                      f"{f['zero_after_sold_out_s']:.2f} s after the last unit was reserved; stock calls "
                      f"{', '.join(f'{c} {n}' for c, n in f['calls'].items())}; throttled "
                      f"{sum(f['throttled'].values())}")


if __name__ == "__main__":
    asyncio.run(main())
