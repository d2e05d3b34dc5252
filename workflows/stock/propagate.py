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

from connectors.base import ListingRef, StockTarget, StockWriteRequest
from connectors.errors import ConnectorError
from workflows.stock.models import ChannelPush, PushSummary
from workflows.stock.policy import Explanation, FlowStock, explain, free_units

log = structlog.get_logger("tongdao.stock")

def stock_configs(store: Any) -> list[tuple[str, FlowStock]]:
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


def explain_sku(store: Any, sku: str) -> list[Explanation]:
    """How every channel's quantity of ``sku`` is computed now."""
    free = free_units(store.stock_levels(sku))
    return [explain(channel, sku, block.policy.rule(channel, sku), _eligible(free, block, channel, sku))
            for channel, block in channel_targets(stock_configs(store)).items()]


def _eligible(free: dict[str, int], block: FlowStock, channel: str, sku: str) -> dict[str, int]:
    return {w: free.get(w, 0) for w in block.warehouses_for(channel, sku)}


def push_key(channel: str, sku: str, previous: int | None, quantity: int, pushes: int) -> str:
    """The idempotency key of one write: the same write retried has the same key, the next one not."""
    text = f"{channel}|{sku}|{previous}|{quantity}|{pushes}"
    return "td-" + hashlib.sha256(text.encode()).hexdigest()[:32]


async def push_batch(store: Any, pool: Any, channel: str, dirty: list[tuple[str, int]],
                     parallel: int = 8) -> tuple[int, int]:
    """One pump round for ``channel``: compute the quantity of every dirty SKU (a few queries for
    the whole batch), write those that changed (in parallel, paced), record everything in one
    transaction. Returns (writes made, SKUs left dirty for a transient failure)."""
    skus = [sku for sku, _ in dirty]
    block = channel_targets(await asyncio.to_thread(stock_configs, store)).get(channel)
    if block is None:  # no flow shows this channel stock any more
        await asyncio.to_thread(store.stock_channel_done, channel, [{"sku": k, "version": v} for k, v in dirty])
        return 0, 0
    connector = await pool.get(channel)
    if not isinstance(connector, StockTarget):
        raise ConnectorError(f"connector {channel!r} ({connector.kind}) cannot write stock")
    levels = await asyncio.to_thread(store.stock_levels_many, skus)
    rows = await asyncio.to_thread(store.stock_channel_rows, channel, skus)
    rate = getattr(connector, "stock_writes_per_s", None)
    budget = getattr(pool, "budget", None)
    limit = asyncio.Semaphore(parallel)
    outcomes: dict[str, dict[str, Any]] = {}
    writes: list[StockWriteRequest] = []

    async def plan(sku: str, version: int) -> None:
        """The quantity, the listing (looked up once), and whether a write is needed."""
        free = free_units(levels.get(sku, []))
        quantity = explain(channel, sku, block.policy.rule(channel, sku), _eligible(free, block, channel, sku)).quantity
        row = rows.get(sku)
        outcome = outcomes[sku] = {"sku": sku, "version": version, "computed": quantity}
        listing = row.listing if row is not None and row.listing else None
        if row is None or (row.listed and not row.listing):
            async with limit:
                try:
                    found = await connector.find_listing(sku)
                except ConnectorError as exc:
                    _failed(outcome, exc)
                    return
            outcome["listed"], outcome["listing"] = int(found is not None), found.model_dump() if found else {}
            listing = outcome["listing"] or None
        elif not row.listed:
            return
        previous = row.pushed if row is not None else None
        if listing is None or (previous == quantity and not (row is not None and row.error)):
            return
        writes.append(StockWriteRequest(listing=ListingRef.model_validate(listing), quantity=quantity,
                                        key=push_key(channel, sku, previous, quantity, row.pushes if row else 0),
                                        previous=previous))

    async def write(chunk: list[StockWriteRequest]) -> None:
        async with limit:
            if rate and budget is not None:
                await _pace(budget, f"{channel}:stock-writes", float(rate))
            try:
                results = await connector.set_stocks(chunk)
            except ConnectorError as exc:
                results = [exc] * len(chunk)
        for request, result in zip(chunk, results, strict=True):
            outcome = outcomes[request.listing.sku]
            if isinstance(result, ConnectorError):
                _failed(outcome, result)
            elif isinstance(result, Exception):
                raise result
            else:
                outcome.update(pushed=request.quantity, error="")
                log.info("stock.pushed", channel=channel, sku=request.listing.sku, quantity=request.quantity,
                         previous=request.previous)

    await asyncio.gather(*(plan(sku, version) for sku, version in dirty))
    size = max(1, int(getattr(connector, "max_stock_batch", 1) or 1))
    await asyncio.gather(*(write(writes[i:i + size]) for i in range(0, len(writes), size)))
    done = list(outcomes.values())
    await asyncio.to_thread(store.stock_channel_done, channel, done)
    return sum(1 for o in done if o.get("pushed") is not None), sum(1 for o in done if o.get("retry"))


def _failed(outcome: dict[str, Any], exc: ConnectorError) -> None:
    """Transient: the SKU stays dirty (tried again); permanent: recorded, the reconciliation retries."""
    outcome["error"] = str(exc)[:300]
    outcome["retry"] = exc.retryable
    log.warning("stock.push_failed", sku=outcome["sku"], error=outcome["error"], retryable=exc.retryable)


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
