"""The demo's stock story: the pool loaded from the WMS's count, every marketplace shown its part,
and the figures moving on every channel as orders arrive, reserve and ship.

What the summary reports is read from the simulators (what each platform shows, what the WMS
holds), checked against the pool: ``consistent`` when every channel shows what its policy gives
from the pool, ``pool_matches_wms`` when the pool's on-hand equals the WMS's count for every SKU.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hub.runtime import HubRuntime
from simulators.catalog import CATALOG
from workflows.stock.propagate import explain_sku
from workflows.stock.reconcile import reconcile

SKUS = [str(item["sku"]) for item in CATALOG]


class DemoStock:
    def __init__(self, systems: Any, run_id: str = "") -> None:
        self.systems = systems
        self.run_id = run_id
        self.warehouse = "demo-wms"
        views: dict[str, Callable[[str], int | None]] = {}
        for label, nick in zip("ab", systems.shops.values(), strict=True):
            views[f"demo-taobao-{label}"] = lambda sku, nick=nick: systems.taobao.shown_stock(sku, shop=nick)
        for market in systems.markets:
            views[market.connector] = market.sim.shown_stock
        self.views = views
        self.before: dict[str, dict[str, int | None]] = {}

    def shown(self) -> dict[str, dict[str, int | None]]:
        return {channel: {sku: view(sku) for sku in SKUS} for channel, view in self.views.items()}

    def writes(self) -> dict[str, int]:
        out = {"taobao": len(self.systems.taobao.stock_updates)}
        for market in self.systems.markets:
            out[market.channel] = len(market.sim.stock_updates)
        return out

    async def load(self, rt: HubRuntime) -> dict[str, Any]:
        """Read the WMS's count into the pool and show every channel its quantity."""
        assert rt.store and rt.pool
        report = await reconcile(rt.store, rt.pool, skus=SKUS, fix=True)
        self.before = self.shown()
        return {"skus": report.skus, "pushed": report.pushed, "errors": report.errors}

    def _expected(self, rt: HubRuntime) -> dict[str, dict[str, int]]:
        assert rt.store
        expected: dict[str, dict[str, int]] = {}
        for sku in SKUS:
            for e in explain_sku(rt.store, sku):
                expected.setdefault(e.channel, {})[sku] = e.quantity
        return expected

    def _check(self, rt: HubRuntime) -> tuple[list[str], list[str]]:
        assert rt.store
        shown, expected = self.shown(), self._expected(rt)
        off = [f"{channel} {sku}: shows {shown.get(channel, {}).get(sku)}, pool gives {qty}"
               for channel, skus in expected.items() for sku, qty in skus.items()
               if shown.get(channel, {}).get(sku) != qty]
        drift = []
        for sku in SKUS:
            pool = sum(lv.on_hand for lv in rt.store.stock_levels(sku) if lv.warehouse == self.warehouse)
            wms = self.systems.wms.on_hand(sku)
            if pool != wms:
                drift.append(f"{sku}: pool {pool}, WMS {wms}")
        return off, drift

    async def settle(self, rt: HubRuntime, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) until the channels show what the pool gives; the figures of the run."""
        assert rt.store and rt.pool
        # what the periodic reconciliation does: a parcel the WMS shipped while the hub was not told
        # (the late-cancellation story) is corrected from the WMS's count, and reported
        report = await reconcile(rt.store, rt.pool, skus=SKUS, fix=True)
        self.corrected = [f"{d.sku} {d.where}: {d.hub} -> {d.outside}" for d in report.drift]
        deadline = time.monotonic() + timeout_s
        off, drift = await asyncio.to_thread(self._check, rt)
        while (off or drift) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            off, drift = await asyncio.to_thread(self._check, rt)
        after = self.shown()
        moved = {channel: sum(1 for sku in SKUS if self.before.get(channel, {}).get(sku) != after[channel][sku])
                 for channel in after}
        sample_sku = max(SKUS, key=lambda s: sum(1 for c in after if self.before.get(c, {}).get(s) != after[c][s]))
        reserved_open = sum(r.quantity for r in rt.store.stock_reservations(state="open")
                            if f"{self.run_id}:" in r.order_key)  # this run's orders still held
        return {
            "channels": len(self.views),
            "skus": len(SKUS),
            "writes": self.writes(),
            "skus_moved": moved,
            "sample": {"sku": sample_sku, "shown": {c: [self.before.get(c, {}).get(sample_sku), after[c][sample_sku]]
                                                    for c in after}},
            "reserved_open": reserved_open,
            "reconciled": getattr(self, "corrected", []),
            "consistent": not off,
            "pool_matches_wms": not drift,
            "problems": (off + drift)[:10],
        }


def print_stock(console: Any, s: dict[str, Any]) -> None:
    sample = s["sample"]
    moves = ", ".join(f"{c.removeprefix('demo-')} {b}→{a}" for c, (b, a) in sample["shown"].items())
    verdict = "every channel shows what the pool gives" if s["consistent"] else "[red]channels disagree[/red]"
    match = "pool = WMS count" if s["pool_matches_wms"] else "[red]pool differs from the WMS[/red]"
    console.print(
        f"stock: {s['skus']} SKUs on {s['channels']} channels, {sum(s['writes'].values())} stock writes "
        f"({', '.join(f'{k} {v}' for k, v in s['writes'].items())}); {verdict}; {match}; "
        f"{s['reserved_open']} units still reserved. {sample['sku']}: {moves}"
    )
    for problem in s["problems"]:
        console.print(f"  [red]{problem}[/red]")
