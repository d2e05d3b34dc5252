"""The periodic reconciliation: compare the WMS's count and each channel's displayed stock with
the pool, correct drift, and report it.

* WMS: ``inventory.query`` gives free (未冻结) and locked (冻结) units; their sum is what is on the
  shelf, which is what the pool's on-hand means. A difference is corrected in the pool with a
  ``reconcile`` ledger entry that names both figures.
* Channels: what each channel shows (its own read API) against what the hub last pushed; a channel
  that moved (a sale the hub has not heard of yet, a person editing stock in the seller centre) is
  written again with the pool's figure.

Run by the ``StockReconcile`` schedule (``TONGDAO_STOCK_RECONCILE_EVERY`` seconds, default 900;
0 turns it off) and by ``tongdao inventory reconcile``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from pydantic import BaseModel, Field

from connectors.base import InventorySource, ListingRef, StockTarget
from connectors.errors import ConnectorError
from workflows.stock.propagate import channel_targets, push_sku, stock_configs

log = structlog.get_logger("tongdao.stock")

CHUNK = 50


class Drift(BaseModel):
    sku: str
    where: str = Field(description="warehouse or channel connector")
    kind: str = Field(description="wms | channel")
    hub: int | None = Field(description="the pool's on-hand, or the quantity last pushed")
    outside: int = Field(description="what the WMS counts, or what the channel shows")
    corrected: bool = False


class ReconcileReport(BaseModel):
    skus: int = 0
    warehouses: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    drift: list[Drift] = Field(default_factory=list)
    pushed: int = 0
    errors: list[str] = Field(default_factory=list)


async def reconcile(store: Any, pool: Any, *, skus: list[str] | None = None, fix: bool = True) -> ReconcileReport:
    """Compare, correct (``fix``) and report. ``skus``: these only (default: every SKU the pool knows)."""
    configs = await asyncio.to_thread(stock_configs, store)
    targets = channel_targets(configs)
    warehouses = sorted({block.warehouse for _, block in configs}
                        | {w for _, block in configs for rule in block.policy.channels.values()
                           for w in (rule.warehouses or [])})
    known = await asyncio.to_thread(store.stock_skus)
    wanted = sorted(set(skus) if skus else set(known))
    report = ReconcileReport(skus=len(wanted), warehouses=warehouses, channels=sorted(targets))
    changed: set[str] = set()
    for warehouse in warehouses:
        await _warehouse(store, pool, warehouse, wanted, fix, report, changed)
    for channel in sorted(targets):
        await _channel(store, pool, channel, wanted, fix, report, changed)
    if fix:
        for sku in sorted(changed | (set(wanted) - set(known))):
            try:
                summary = await push_sku(store, pool, sku)
                report.pushed += sum(1 for c in summary.channels.values() if c.pushed)
            except ConnectorError as exc:
                report.errors.append(f"push {sku}: {exc}"[:300])
    log.info("stock.reconciled", skus=report.skus, drift=len(report.drift), pushed=report.pushed,
             errors=len(report.errors))
    return report


async def _warehouse(store: Any, pool: Any, warehouse: str, skus: list[str], fix: bool, report: ReconcileReport,
                     changed: set[str]) -> None:
    try:
        connector = await pool.get(warehouse)
    except ConnectorError as exc:
        report.errors.append(f"{warehouse}: {exc}"[:300])
        return
    if not isinstance(connector, InventorySource):
        report.errors.append(f"{warehouse}: connector {connector.kind} cannot read inventory")
        return
    for start in range(0, len(skus), CHUNK):
        chunk = skus[start:start + CHUNK]
        try:
            levels = await connector.query_inventory(chunk, "")
        except ConnectorError as exc:
            report.errors.append(f"{warehouse}: inventory.query: {exc}"[:300])
            continue
        counted: dict[str, int] = {}
        for level in levels:
            counted[level.sku] = counted.get(level.sku, 0) + level.on_hand + level.reserved
        for sku in chunk:
            if sku not in counted:
                continue  # the WMS does not stock it: nothing to say
            ours = {f.warehouse: f.on_hand for f in await asyncio.to_thread(store.stock_levels, sku)}.get(warehouse)
            if ours == counted[sku]:
                continue
            drift = Drift(sku=sku, where=warehouse, kind="wms", hub=ours, outside=counted[sku])
            if fix:
                await asyncio.to_thread(store.stock_set_on_hand, sku, warehouse, counted[sku], "reconcile",
                                        f"reconcile:{warehouse}",
                                        f"the WMS counts {counted[sku]}, the pool had {ours}")
                drift.corrected = True
                changed.add(sku)
            report.drift.append(drift)


async def _channel(store: Any, pool: Any, channel: str, skus: list[str], fix: bool, report: ReconcileReport,
                   changed: set[str]) -> None:
    try:
        connector = await pool.get(channel)
    except ConnectorError as exc:
        report.errors.append(f"{channel}: {exc}"[:300])
        return
    if not isinstance(connector, StockTarget):
        report.errors.append(f"{channel}: connector {connector.kind} cannot read stock")
        return
    for sku in skus:
        row = await asyncio.to_thread(store.stock_channel, channel, sku)
        if row is None or not row.listed or not row.listing or row.pushed is None:
            continue
        try:
            shown = await connector.get_stock(ListingRef.model_validate(row.listing))
        except ConnectorError as exc:
            report.errors.append(f"{channel} {sku}: {exc}"[:300])
            continue
        await asyncio.to_thread(store.stock_note_channel, channel, sku, shown=shown)
        if shown == row.pushed:
            continue
        drift = Drift(sku=sku, where=channel, kind="channel", hub=row.pushed, outside=shown)
        if fix:  # forget what was pushed: the next push writes the pool's figure again
            await asyncio.to_thread(store.stock_note_channel, channel, sku, pushed=None)
            drift.corrected = True
            changed.add(sku)
        report.drift.append(drift)
