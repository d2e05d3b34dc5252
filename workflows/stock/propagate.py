"""From the pool to the channels: compute each channel's quantity of a SKU and write it through
the channel's own inventory API, only where it changed.

Used by the ``stock_push`` activity (one SKU, every channel, in parallel) and by
``tongdao inventory explain`` (the same computation, nothing written), so what the CLI explains is
what the hub pushes.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import structlog

from connectors.base import ListingRef, StockTarget
from connectors.errors import ConnectorError
from workflows.stock.models import ChannelPush, PushSummary
from workflows.stock.policy import Explanation, FlowStock, explain, free_units

log = structlog.get_logger("tongdao.stock")

def stock_configs(store: Any, fresh: bool = True) -> list[tuple[str, FlowStock]]:
    """(flow name, stock block) of every flow that has one, in name order. Read each time (one
    small query): a flow saved a moment ago governs the very next push."""
    configs = []
    for row in store.list_flows():
        block = (row.definition or {}).get("stock")
        if block:
            configs.append((row.name, FlowStock.model_validate(block)))
    return configs


def channel_targets(configs: list[tuple[str, FlowStock]]) -> dict[str, FlowStock]:
    """Channel connector -> the stock block that governs it (the first flow naming it)."""
    out: dict[str, FlowStock] = {}
    for _, block in configs:
        for channel in block.channels:
            out.setdefault(channel, block)
    return out


def explain_sku(store: Any, sku: str, fresh: bool = True) -> list[Explanation]:
    """How every channel's quantity of ``sku`` is computed now."""
    free = free_units(store.stock_levels(sku))
    return [explain(channel, sku, block.policy.rule(channel, sku), _eligible(free, block, channel, sku))
            for channel, block in channel_targets(stock_configs(store, fresh=fresh)).items()]


def _eligible(free: dict[str, int], block: FlowStock, channel: str, sku: str) -> dict[str, int]:
    return {w: free.get(w, 0) for w in block.warehouses_for(channel, sku)}


def push_key(channel: str, sku: str, previous: int | None, quantity: int, pushes: int) -> str:
    """The idempotency key of one write: the same write retried has the same key, the next one not."""
    text = f"{channel}|{sku}|{previous}|{quantity}|{pushes}"
    return "td-" + hashlib.sha256(text.encode()).hexdigest()[:32]


async def push_channel(store: Any, pool: Any, sku: str, channel: str) -> ChannelPush:
    """Write one channel's quantity of ``sku`` if it changed; paced to the channel's documented
    limit (the figures are read *after* the wait, so a burst of changes becomes one write)."""
    targets = channel_targets(await asyncio.to_thread(stock_configs, store))
    block = targets.get(channel)
    if block is None:
        return ChannelPush(listed=False, error="no flow shows this channel stock any more")
    connector = await pool.get(channel)
    rate = getattr(connector, "stock_writes_per_s", None)
    budget = getattr(pool, "budget", None)
    if rate and budget is not None:
        await _pace(budget, f"{channel}:stock-writes", float(rate))
    free = free_units(await asyncio.to_thread(store.stock_levels, sku))
    quantity = explain(channel, sku, block.policy.rule(channel, sku), _eligible(free, block, channel, sku)).quantity
    try:
        return await _push_channel(store, pool, channel, sku, quantity)
    except ConnectorError as exc:
        text = str(exc)[:300]
        await asyncio.to_thread(store.stock_note_channel, channel, sku, computed=quantity, error=text)
        log.warning("stock.push_failed", channel=channel, sku=sku, error=text, retryable=exc.retryable)
        if exc.retryable:
            raise
        return ChannelPush(quantity=quantity, error=text)


async def _pace(budget: Any, key: str, rate: float) -> None:
    """Wait for a token of ``key``'s shared bucket (``rate`` per second, bursts of one second's worth)."""
    burst = max(1.0, rate)
    while True:
        wait = await asyncio.to_thread(budget.take, key, rate, burst)
        if wait <= 0:
            return
        await asyncio.sleep(min(wait, 1.0))


def low_stock(store: Any, sku: str) -> tuple[bool, int]:
    """(below the policy's threshold, units available) for ``sku``."""
    configs = stock_configs(store)
    available = sum(free_units(store.stock_levels(sku)).values())
    threshold = min((block.policy.low_stock.of(sku) for _, block in configs), default=0)
    return bool(threshold) and available < threshold, available


async def push_sku(store: Any, pool: Any, sku: str) -> PushSummary:
    """Recompute every channel of ``sku`` and write those that changed. A transient failure of a
    channel is raised after the others were written (the activity is retried; channels already
    written are not written again); a permanent one is recorded on the channel and reported."""
    configs = await asyncio.to_thread(stock_configs, store)
    targets = channel_targets(configs)
    levels = await asyncio.to_thread(store.stock_levels, sku)
    free = free_units(levels)
    summary = PushSummary(sku=sku, available=sum(free.values()))
    transient: list[BaseException] = []

    async def one(channel: str, block: FlowStock) -> None:
        explanation = explain(channel, sku, block.policy.rule(channel, sku), _eligible(free, block, channel, sku))
        quantity = explanation.quantity
        try:
            summary.channels[channel] = await _push_channel(store, pool, channel, sku, quantity)
        except ConnectorError as exc:
            text = str(exc)[:300]
            await asyncio.to_thread(store.stock_note_channel, channel, sku, computed=quantity, error=text)
            summary.channels[channel] = ChannelPush(quantity=quantity, error=text)
            log.warning("stock.push_failed", channel=channel, sku=sku, error=text, retryable=exc.retryable)
            if exc.retryable:
                transient.append(exc)

    await asyncio.gather(*(one(channel, block) for channel, block in targets.items()))
    threshold = min((block.policy.low_stock.of(sku) for _, block in configs), default=0)
    summary.low_stock = bool(threshold) and summary.available < threshold
    if transient:
        raise transient[0]
    return summary


async def _push_channel(store: Any, pool: Any, channel: str, sku: str, quantity: int) -> ChannelPush:
    row = await asyncio.to_thread(store.stock_channel, channel, sku)
    connector = await pool.get(channel)
    if not isinstance(connector, StockTarget):
        raise ConnectorError(f"connector {channel!r} ({connector.kind}) cannot write stock")
    if row is None or (row.listed and not row.listing):
        listing = await connector.find_listing(sku)
        await asyncio.to_thread(store.stock_note_channel, channel, sku, listed=int(listing is not None),
                                listing=listing.model_dump() if listing else {})
        row = await asyncio.to_thread(store.stock_channel, channel, sku)
    if row is None or not row.listed:
        return ChannelPush(quantity=quantity, listed=False)
    if row.pushed == quantity and not row.error:
        if row.computed != quantity:
            await asyncio.to_thread(store.stock_note_channel, channel, sku, computed=quantity)
        return ChannelPush(quantity=quantity)
    listing = ListingRef.model_validate(row.listing)
    key = push_key(channel, sku, row.pushed, quantity, row.pushes)
    await connector.set_stock(listing, quantity, key=key, previous=row.pushed)
    await asyncio.to_thread(store.stock_note_channel, channel, sku, computed=quantity, pushed=quantity, error="")
    log.info("stock.pushed", channel=channel, sku=sku, quantity=quantity, previous=row.pushed)
    return ChannelPush(quantity=quantity, pushed=True)
