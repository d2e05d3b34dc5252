"""The Shopify simulator's inventory (variants by SKU, levels, ``inventorySetQuantities``) and the real
connector's 'stock' capability against it, for the connector's default version (2025-10:
``compareQuantity``) and for 2026-04 (``changeFromQuantity`` and a mandatory ``@idempotent`` key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.errors import InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from connectors.shopify import ShopifyConnector
from simulators.catalog import CATALOG
from simulators.shopify import ShopifySimulator
from simulators.shopify_stock import PRIMARY_LOCATION, SECOND_LOCATION

TOKEN_A, TOKEN_B = "shpat_a", "shpat_b"
SHOP_A, SHOP_B = "tongdao-a.myshopify.com", "tongdao-b.myshopify.com"
NOW = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)
SKU = "TD-SKU-0005"
ITEM = f"gid://shopify/InventoryItem/{next(e['sku_id'] for e in CATALOG if e['sku'] == SKU)}"
ITEM_6 = f"gid://shopify/InventoryItem/{next(e['sku_id'] for e in CATALOG if e['sku'] == 'TD-SKU-0006')}"

SET_LEGACY = ("mutation S($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { "
              "inventoryAdjustmentGroup { changes { name delta quantityAfterChange } } userErrors { field code } } }")
SET_KEYED = ("mutation S($input: InventorySetQuantitiesInput!, $k: String!) { inventorySetQuantities(input: $input) "
             "@idempotent(key: $k) { inventoryAdjustmentGroup { id changes(quantityNames: [\"available\"]) "
             "{ name delta quantityAfterChange } } userErrors { field code message } } }")


def make_sim(**overrides: Any) -> ShopifySimulator:
    options: dict[str, Any] = {"stores": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B}, "orders_per_shop": 2, "seed": 5,
                               "now": NOW}
    return ShopifySimulator(**(options | overrides))


async def gql(sim: ShopifySimulator, query: str, variables: dict[str, Any] | None = None, version: str = "2025-10",
              token: str = TOKEN_A) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client:
        answer = await client.post(f"http://sim.test/admin/api/{version}/graphql.json",
                                   json={"query": query, "variables": variables or {}},
                                   headers={"X-Shopify-Access-Token": token})
        return answer.json()


def quantity(value: int, *, item: str = ITEM, location: str = PRIMARY_LOCATION, **compare: Any) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": location, "quantity": value, **compare}


def set_input(*quantities: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"input": {"name": "available", "reason": "correction", "quantities": list(quantities), **extra}}


def codes(answer: dict[str, Any]) -> list[str]:
    return [e["code"] for e in answer["data"]["inventorySetQuantities"]["userErrors"]]


# --- the simulator, spoken to directly -------------------------------------------------------------


async def test_every_catalogue_sku_is_a_stocked_variant() -> None:
    sim = make_sim()
    query = ('query { productVariants(first: 50, query: "sku:*") { nodes { sku inventoryItem { id tracked '
             f'inventoryLevel(locationId: "{PRIMARY_LOCATION}") {{ quantities(names: ["available", "on_hand"]) '
             '{ name quantity } } } } } location { id isActive } }')
    answer = (await gql(sim, query))["data"]
    assert answer["location"] == {"id": PRIMARY_LOCATION, "isActive": True}
    assert len(answer["productVariants"]["nodes"]) == len(CATALOG)  # "sku:*": every variant with a SKU
    for node in answer["productVariants"]["nodes"]:
        shown = {q["name"]: q["quantity"] for q in node["inventoryItem"]["inventoryLevel"]["quantities"]}
        assert shown["available"] == shown["on_hand"] == sim.shown_stock(node["sku"]) and 20 <= shown["available"] < 200
    one = (await gql(sim, 'query { productVariants(first: 5, query: "sku:\\"td-sku-0005\\"") { nodes { id sku } } }'))
    assert one["data"]["productVariants"]["nodes"] == [{"id": ITEM.replace("InventoryItem", "ProductVariant"),
                                                         "sku": SKU}]
    prefix = await gql(sim, 'query { productVariants(first: 10, query: "sku:TD-SKU-000*") { nodes { sku } } }')
    assert len(prefix["data"]["productVariants"]["nodes"]) == 9
    assert sim.shown_stock("NOPE") is None and sim.shown_stock(SKU, SHOP_B) is not None


async def test_2025_10_compare_quantity_rules() -> None:
    sim = make_sim()
    shown = sim.shown_stock(SKU)
    assert codes(await gql(sim, SET_LEGACY, set_input(quantity(5)))) == ["COMPARE_QUANTITY_REQUIRED"]
    assert codes(await gql(sim, SET_LEGACY, set_input(quantity(5, compareQuantity=shown + 1)))) == [
        "COMPARE_QUANTITY_STALE"]
    done = await gql(sim, SET_LEGACY, set_input(quantity(5, compareQuantity=shown)))
    assert done["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"][0] == {
        "name": "available", "delta": 5 - shown, "quantityAfterChange": 5}
    assert codes(await gql(sim, SET_LEGACY, set_input(quantity(8), ignoreCompareQuantity=True))) == []
    assert sim.shown_stock(SKU) == 8 and [u[1:] for u in sim.stock_updates] == [(SKU, 5), (SKU, 8)]
    refused = await gql(sim, SET_LEGACY, set_input(quantity(5, changeFromQuantity=8)))
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"  # not a 2025-10 field
    keyed = await gql(sim, SET_KEYED, set_input(quantity(5, compareQuantity=8)) | {"k": "x"})
    assert keyed["errors"][0]["extensions"]["code"] == "undefinedDirective"
    assert sim.shown_stock(SKU) == 8 and sim.state()["stock_writes"] == 2


async def test_refusals_are_user_errors_and_all_or_nothing() -> None:
    sim = make_sim()
    before = sim.shown_stock(SKU)
    answer = await gql(sim, SET_LEGACY, set_input(
        quantity(3, compareQuantity=before), quantity(1, location=SECOND_LOCATION, compareQuantity=0),
        quantity(1, item="gid://shopify/InventoryItem/1", compareQuantity=0),
        quantity(-1, item=ITEM_6, compareQuantity=0), quantity(4, compareQuantity=before)))
    assert codes(answer) == ["ITEM_NOT_STOCKED_AT_LOCATION", "INVALID_INVENTORY_ITEM", "INVALID_QUANTITY_NEGATIVE",
                             "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"]
    assert sim.shown_stock(SKU) == before  # nothing applied
    bad_name = await gql(sim, SET_LEGACY, {"input": {"name": "committed", "reason": "correction",
                                                     "quantities": [quantity(1, compareQuantity=before)]}})
    assert codes(bad_name) == ["INVALID_NAME"]
    assert sim.state()["stock_refusals"] == 2


async def test_2026_04_idempotency_key_and_change_from_quantity() -> None:
    sim = make_sim()
    shown = sim.shown_stock(SKU)
    missing_key = await gql(sim, SET_LEGACY, set_input(quantity(5, changeFromQuantity=shown)), version="2026-04")
    assert missing_key["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    no_change_from = await gql(sim, SET_KEYED, set_input(quantity(5)) | {"k": "a"}, version="2026-04")
    assert no_change_from["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
    first = await gql(sim, SET_KEYED, set_input(quantity(5, changeFromQuantity=shown)) | {"k": "key-1"},
                      version="2026-04")
    again = await gql(sim, SET_KEYED, set_input(quantity(5, changeFromQuantity=shown)) | {"k": "key-1"},
                      version="2026-04")
    assert first["data"] == again["data"] and codes(first) == []  # the original result, replayed
    assert sim.state()["stock_writes"] == 1 and sim.state()["stock_replays"] == 1 and len(sim.stock_updates) == 1
    other = await gql(sim, SET_KEYED, set_input(quantity(6, changeFromQuantity=5)) | {"k": "key-1"},
                      version="2026-04")
    assert codes(other) == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"] and sim.shown_stock(SKU) == 5
    stale = await gql(sim, SET_KEYED, set_input(quantity(6, changeFromQuantity=4)) | {"k": "key-2"},
                      version="2026-04")
    assert codes(stale) == ["CHANGE_FROM_QUANTITY_STALE"]
    repeat = await gql(sim, SET_KEYED, set_input(quantity(6, changeFromQuantity=4)) | {"k": "key-2"},
                       version="2026-04")
    assert codes(repeat) == ["IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"]
    blind = await gql(sim, SET_KEYED, set_input(quantity(6, changeFromQuantity=None)) | {"k": "key-3"},
                      version="2026-04")
    assert codes(blind) == [] and sim.shown_stock(SKU) == 6
    sim.advance(24 * 3600 + 1)  # keys are kept 24 hours
    later = await gql(sim, SET_KEYED, set_input(quantity(5, changeFromQuantity=6)) | {"k": "key-1"},
                      version="2026-04")
    assert codes(later) == [] and sim.shown_stock(SKU) == 5


async def test_sale_on_the_channel_and_state() -> None:
    sim = make_sim()
    before = sim.shown_stock(SKU)
    assert sim.sell_on_channel(SKU, 2) == before - 2
    level = (await gql(sim, f'query {{ inventoryItem(id: "{ITEM}") {{ inventoryLevel(locationId: '
                             f'"{PRIMARY_LOCATION}") {{ quantities(names: ["available", "committed", "on_hand"]) '
                             '{ name quantity } } } }'))["data"]["inventoryItem"]["inventoryLevel"]["quantities"]
    assert {q["name"]: q["quantity"] for q in level} == {"available": before - 2, "committed": 2, "on_hand": before}
    with pytest.raises(ValueError):
        sim.sell_on_channel(SKU, 10_000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test") as client:
        sold = await client.post(f"/_sim/stock/{SKU}/sell", json={"n": 1, "shop": SHOP_B})
        state = (await client.get("/_sim/state")).json()
    assert sold.json()["available"] == sim.shown_stock(SKU, SHOP_B)
    assert state["stock"][SHOP_A][SKU] == before - 2 and state["stock_writes"] == 0
    assert {"stock_throttled", "stock_update_count"} <= set(state)


# --- the real connector against it -----------------------------------------------------------------


def connector(sim: ShopifySimulator, version: str = "2025-10", **settings: Any) -> ShopifyConnector:
    conn = ShopifyConnector.from_config("shop-a", {"base_url": "https://tongdao-a.myshopify.com",
                                                   "api_version": version} | settings, {"access_token": TOKEN_A})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=1.0)
    return conn


@pytest.mark.parametrize("version", ["2025-10", "2026-01", "2026-04"])
async def test_contract_find_write_read_and_stale_compare_recovered(version: str) -> None:
    sim = make_sim()
    conn = connector(sim, version)
    assert await conn.find_listing("TD-SKU-9999") is None
    listing = await conn.find_listing(SKU)
    assert listing is not None and listing.sku_id == ITEM and listing.extra["location_id"] == PRIMARY_LOCATION
    shown = await conn.get_stock(listing)
    assert shown == sim.shown_stock(SKU)
    first = await conn.set_stock(listing, 40, key="push-1", previous=shown)
    assert (first.quantity, first.previous) == (40, shown) and sim.shown_stock(SKU) == 40
    sim.sell_on_channel(SKU, 3)  # a sale on Shopify: the hub's previous (40) is stale now
    second = await conn.set_stock(listing, 30, key="push-2", previous=40)
    assert (second.quantity, second.previous) == (30, 37) and sim.shown_stock(SKU) == 30
    assert await conn.get_stock(listing) == 30
    assert [u[1:] for u in sim.stock_updates] == [(SKU, 40), (SKU, 30)]
    assert sim.state()["stock_writes"] == 2 and sim.state()["stock_refusals"] == 1  # the stale one


async def test_contract_repeated_key_changes_nothing_twice() -> None:
    sim = make_sim()
    conn = connector(sim, "2026-04")
    listing = await conn.find_listing(SKU)
    assert listing is not None
    shown = sim.shown_stock(SKU)
    one = await conn.set_stock(listing, 50, key="push-7", previous=shown)
    two = await conn.set_stock(listing, 50, key="push-7", previous=shown)  # a retried activity
    assert one == two and sim.shown_stock(SKU) == 50
    state = sim.state()
    assert (state["stock_writes"], state["stock_replays"], len(sim.stock_updates)) == (1, 1, 1)


async def test_contract_lost_answer_under_2025_10_is_not_written_twice() -> None:
    sim = make_sim()
    conn = connector(sim)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    shown = sim.shown_stock(SKU)
    await conn.set_stock(listing, 50, key="push-8", previous=shown)
    again = await conn.set_stock(listing, 50, key="push-8", previous=shown)  # the answer was lost: sent again
    assert (again.quantity, again.previous) == (50, 50) and sim.state()["stock_writes"] == 1


async def test_contract_throttled() -> None:
    sim = make_sim(restore_rate=1.0)
    conn = connector(sim)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    sim._buckets[TOKEN_A].level = 0.0  # the shop's bucket is empty: 14 points take 14 s at 1 point/s
    with pytest.raises(ThrottledError) as info:
        await conn.set_stock(listing, 1, key="push-9", previous=0)
    assert info.value.retry_after is not None and info.value.retry_after > 1.0
    assert sim.state()["stock_throttled"] >= 1 and sim.state()["stock_writes"] == 0


async def test_contract_location_without_the_item() -> None:
    sim = make_sim()
    conn = connector(sim, location_id=SECOND_LOCATION)
    listing = await conn.find_listing(SKU)
    assert listing is not None and listing.extra["location_id"] == SECOND_LOCATION
    with pytest.raises(InvalidRequestError) as info:
        await conn.set_stock(listing, 1, key="push-10")
    assert info.value.code == "ITEM_NOT_STOCKED_AT_LOCATION"
    with pytest.raises(NotFoundError):
        await conn.get_stock(listing)


@pytest.mark.parametrize("version", ["2025-10", "2026-04"])
async def test_many_skus_in_one_mutation_and_a_stale_batch_written_one_by_one(version: str) -> None:
    from connectors.base import StockWriteRequest
    from simulators.catalog import CATALOG

    sim = make_sim()
    conn = connector(sim, version)
    skus = [str(item["sku"]) for item in CATALOG[:3]]
    listings = [await conn.find_listing(sku) for sku in skus]
    assert all(listings)
    writes = [StockWriteRequest(listing=listing, quantity=40 + i, key=f"k{i}-{version}",
                                previous=sim.shown_stock(listing.sku, SHOP_A))
              for i, listing in enumerate(listings)]
    before = len(sim.stock_updates)
    results = await conn.set_stocks(writes)
    assert [r.quantity for r in results] == [40, 41, 42]
    assert [sim.shown_stock(sku, SHOP_A) for sku in skus] == [40, 41, 42]
    assert len(sim.stock_updates) - before == 3
    # one SKU sold on Shopify meanwhile: the batch's compare fails, each write re-reads and lands
    sim.sell_on_channel(skus[1], 1, SHOP_A)
    again = [StockWriteRequest(listing=listing, quantity=30, key=f"j{i}-{version}", previous=40 + i)
             for i, listing in enumerate(listings)]
    results = await conn.set_stocks(again)
    assert all(not isinstance(r, Exception) for r in results)
    assert [sim.shown_stock(sku, SHOP_A) for sku in skus] == [30, 30, 30]
    await conn.aclose()
