"""``connectors pull``: walk a source exactly as the sync does and map, without starting workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from canonical import Order, order_key
from connectors.base import OrderSource, default_order_mapping
from connectors.errors import ConfigurationError
from connectors.registry import instantiate
from mappings import DictLookups, load_spec
from store import Store


async def pull_canonical(store: Store, name: str, since: datetime, until: datetime, mapping: str | None,
                         progress: Any = None) -> tuple[list[Order], list[str]]:
    connector = instantiate(store, name)
    if not isinstance(connector, OrderSource):
        raise ConfigurationError(f"connector {name!r} has no orders stream")
    spec = load_spec(mapping or default_order_mapping(connector.kind))
    lookups = DictLookups(store.xref_tables())
    orders: list[Order] = []
    problems: list[str] = []
    seen: set[str] = set()
    try:
        async for page in connector.pull_orders(since, until):
            for record in page:
                if record.error:  # the platform would not give this one: say so, as the sync parks it
                    problems.append(f"{record.external_id}: {record.error}")
                    continue
                shop = connector.shop_of(record.payload)
                channel = connector.channel or connector.kind
                key = order_key(channel, shop, record.external_id)
                if key in seen:
                    continue
                seen.add(key)
                result = spec.apply(record.payload, lookups=lookups,
                                    context={"channel": channel, "shop": shop})
                if result.ok:
                    orders.append(result.value)
                else:
                    problems.append(f"{key}: " + "; ".join(f"{e.target}: {e.message}" for e in result.errors))
            if progress is not None:
                progress.print(f"... {len(seen)} orders read", highlight=False)
    finally:
        await connector.aclose()
    return orders, problems
