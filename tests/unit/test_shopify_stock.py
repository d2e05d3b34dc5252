"""Shopify 'stock' capability against a respx-mocked GraphQL Admin endpoint.

The documents are checked as sent (query text, variables), per API version: 2025-10 writes with
``compareQuantity``/``ignoreCompareQuantity`` and no directive, 2026-01 on with ``changeFromQuantity``
(null when there is nothing to compare) and ``@idempotent(key: $idempotencyKey)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connectors.base import ListingRef
from connectors.errors import InvalidRequestError, NotFoundError, ThrottledError, TransientError
from connectors.http import RetryPolicy
from connectors.shopify import ShopifyConnector
from connectors.shopify.queries import (
    PRIMARY_LOCATION_QUERY,
    STOCK_LEVEL_QUERY,
    STOCK_LISTING_QUERY,
    STOCK_SET_MUTATION,
    STOCK_SET_MUTATION_LEGACY,
)
from connectors.shopify.stock import CAS_ROUNDS, sku_search

BASE = "https://tongdao-a.myshopify.com"
TOKEN = "shpat_0123456789abcdef"
ITEM = "gid://shopify/InventoryItem/30322695"
VARIANT = "gid://shopify/ProductVariant/40322695"
PRIMARY = "gid://shopify/Location/1"
OTHER = "gid://shopify/Location/77"


def cost() -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": 14, "actualQueryCost": 14,
                     "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1986.0,
                                        "restoreRate": 100.0}}}


def make(version: str = "2025-10", **settings: Any) -> ShopifyConnector:
    conn = ShopifyConnector.from_config("shop-a", {"base_url": BASE, "api_version": version} | settings,
                                        {"access_token": TOKEN})
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2.0)
    return conn


class FakeShopify:
    """Answers by operation name; records (operation, query, variables) of every call."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/admin/api/{self.version}/graphql.json"
        assert request.headers["X-Shopify-Access-Token"] == TOKEN
        body = json.loads(request.content)
        operation = body["query"].split("(")[0].split("{")[0].split()[-1]
        self.calls.append((operation, body["query"], body["variables"]))
        answer = self.handlers[operation](body["variables"])
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer if "errors" in answer else {"data": answer, "extensions": cost()})

    def ops(self) -> list[str]:
        return [op for op, _, _ in self.calls]

    def sets(self) -> list[dict[str, Any]]:
        return [variables for op, _, variables in self.calls if op == "StockSet"]


@pytest.fixture
def fake(request: pytest.FixtureRequest):
    version = getattr(request, "param", "2025-10")
    with respx.mock(assert_all_called=False) as mock:
        shop = FakeShopify(version)
        mock.post(f"{BASE}/admin/api/{version}/graphql.json").mock(side_effect=shop)
        yield shop


def listing(location: str = PRIMARY) -> ListingRef:
    return ListingRef(sku="TD-SKU-0001", item_id=VARIANT, sku_id=ITEM, extra={"location_id": location})


def level(available: int) -> dict[str, Any]:
    return {"inventoryItem": {"id": ITEM, "inventoryLevel": {
        "id": "gid://shopify/InventoryLevel/1?inventory_item_id=30322695",
        "quantities": [{"name": "available", "quantity": available}]}}}


def applied(before: int, after: int) -> dict[str, Any]:
    return {"inventorySetQuantities": {
        "inventoryAdjustmentGroup": {"createdAt": "2025-06-18T04:00:00Z", "reason": "correction",
                                     "changes": [{"name": "available", "delta": after - before,
                                                  "quantityAfterChange": after}]},
        "userErrors": []}}


def refused(code: str, message: str = "refused") -> dict[str, Any]:
    return {"inventorySetQuantities": {"inventoryAdjustmentGroup": None, "userErrors": [
        {"field": ["input", "quantities", "0"], "message": message, "code": code}]}}


# --- find_listing ----------------------------------------------------------------------------------


def test_sku_search_quotes_the_value() -> None:
    assert sku_search("TD-SKU-0001") == 'sku:"TD-SKU-0001"'
    assert sku_search('A "B" \\C') == 'sku:"A \\"B\\" \\\\C"'


async def test_find_listing_takes_the_exact_sku_and_the_primary_location(fake: FakeShopify) -> None:
    fake.handlers["StockListing"] = lambda v: {
        "productVariants": {"nodes": [
            {"id": "gid://shopify/ProductVariant/1", "sku": "TD-SKU-0001-B",
             "inventoryItem": {"id": "x", "tracked": True}},
            {"id": VARIANT, "sku": "TD-SKU-0001", "inventoryItem": {"id": ITEM, "tracked": True}}]},
        "location": {"id": PRIMARY, "isActive": True}}
    found = await make().find_listing(" TD-SKU-0001 ")
    assert found == ListingRef(sku="TD-SKU-0001", item_id=VARIANT, sku_id=ITEM,
                               extra={"location_id": PRIMARY, "tracked": "true"})
    ((op, query, variables),) = fake.calls
    assert (op, query, variables) == ("StockListing", STOCK_LISTING_QUERY, {"query": 'sku:"TD-SKU-0001"'})
    assert "productVariants(first: 5, query: $query)" in query and "location { id isActive }" in query


async def test_find_listing_none_for_unknown_sku_and_location_setting_wins(fake: FakeShopify) -> None:
    fake.handlers["StockListing"] = lambda v: {"productVariants": {"nodes": []}, "location": {"id": PRIMARY}}
    assert await make().find_listing("NOPE-1") is None
    fake.handlers["StockListing"] = lambda v: {
        "productVariants": {"nodes": [{"id": VARIANT, "sku": "TD-SKU-0001", "inventoryItem": {"id": ITEM}}]},
        "location": {"id": PRIMARY, "isActive": True}}
    found = await make(location_id=OTHER).find_listing("TD-SKU-0001")
    assert found is not None and found.extra == {"location_id": OTHER}
    with pytest.raises(InvalidRequestError):
        await make().find_listing("  ")


async def test_inactive_primary_location_is_a_configuration_problem(fake: FakeShopify) -> None:
    fake.handlers["StockListing"] = lambda v: {
        "productVariants": {"nodes": [{"id": VARIANT, "sku": "TD-SKU-0001", "inventoryItem": {"id": ITEM}}]},
        "location": {"id": PRIMARY, "isActive": False}}
    with pytest.raises(InvalidRequestError, match="location_id"):
        await make().find_listing("TD-SKU-0001")


# --- set_stock, 2025-10 ----------------------------------------------------------------------------


async def test_legacy_write_compares_with_previous(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: applied(7, 12)
    written = await make().set_stock(listing(), 12, key="hub-key-1", previous=7)
    assert (written.quantity, written.previous) == (12, 7)
    ((op, query, variables),) = fake.calls
    assert query == STOCK_SET_MUTATION_LEGACY and "@idempotent" not in query
    assert variables == {"input": {"name": "available", "reason": "correction", "quantities": [
        {"inventoryItemId": ITEM, "locationId": PRIMARY, "quantity": 12, "compareQuantity": 7}]}}


async def test_legacy_write_without_previous_opts_out_of_the_compare(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: applied(3, 9)
    written = await make().set_stock(listing(), 9, key="k")
    assert written.previous == 3
    (variables,) = fake.sets()
    assert variables["input"]["ignoreCompareQuantity"] is True
    assert "compareQuantity" not in variables["input"]["quantities"][0]


async def test_stale_compare_is_read_again_and_written_again(fake: FakeShopify) -> None:
    answers = iter([refused("COMPARE_QUANTITY_STALE", "The compareQuantity value does not match persisted value."),
                    applied(4, 12)])
    fake.handlers["StockSet"] = lambda v: next(answers)
    fake.handlers["StockLevel"] = lambda v: level(4)
    written = await make().set_stock(listing(), 12, key="hub-key-2", previous=7)
    assert (written.quantity, written.previous) == (12, 4)
    assert fake.ops() == ["StockSet", "StockLevel", "StockSet"]
    first, second = fake.sets()
    assert first["input"]["quantities"][0]["compareQuantity"] == 7
    assert second["input"]["quantities"][0]["compareQuantity"] == 4
    (_, query, variables) = fake.calls[1]
    assert query == STOCK_LEVEL_QUERY and variables == {"item": ITEM, "location": PRIMARY}
    assert 'quantities(names: ["available"])' in query


async def test_stale_after_our_own_lost_write_does_not_write_twice(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: refused("COMPARE_QUANTITY_STALE")
    fake.handlers["StockLevel"] = lambda v: level(12)  # the earlier attempt got through
    written = await make().set_stock(listing(), 12, key="k", previous=7)
    assert (written.quantity, written.previous) == (12, 12)
    assert fake.ops() == ["StockSet", "StockLevel"]


async def test_compare_and_set_rounds_are_bounded(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: refused("COMPARE_QUANTITY_STALE")
    counter = iter(range(50, 0, -1))
    fake.handlers["StockLevel"] = lambda v: level(next(counter))  # a sale between every read and write
    with pytest.raises(TransientError) as info:
        await make().set_stock(listing(), 12, key="k", previous=7)
    assert info.value.retryable and info.value.code == "CHANGE_FROM_QUANTITY_STALE"
    assert fake.ops().count("StockSet") == CAS_ROUNDS


@pytest.mark.parametrize(("code", "error"), [
    ("ITEM_NOT_STOCKED_AT_LOCATION", InvalidRequestError),
    ("INVALID_QUANTITY_TOO_HIGH", InvalidRequestError),
    ("NON_MUTABLE_INVENTORY_ITEM", InvalidRequestError),
    ("INVALID_INVENTORY_ITEM", NotFoundError),
    ("INVALID_LOCATION", NotFoundError),
])
async def test_other_user_errors_are_permanent(fake: FakeShopify, code: str, error: type[Exception]) -> None:
    fake.handlers["StockSet"] = lambda v: refused(code, "nope")
    with pytest.raises(error) as info:
        await make().set_stock(listing(), 5, key="k", previous=1)
    assert info.value.code == code and not info.value.retryable
    assert fake.ops() == ["StockSet"]


async def test_throttled_write_is_a_throttled_error(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {"cost": {"requestedQueryCost": 14, "actualQueryCost": None,
                                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 0.0,
                                                   "restoreRate": 1.0}}}}
    with pytest.raises(ThrottledError) as info:
        await make().set_stock(listing(), 5, key="k", previous=1)
    assert info.value.retry_after == pytest.approx(14.0)


async def test_bad_quantity_and_listing_are_refused_before_any_call(fake: FakeShopify) -> None:
    conn = make()
    for bad in (-1, True, 1.5, 1_000_000_001):
        with pytest.raises(InvalidRequestError):
            await conn.set_stock(listing(), bad, key="k")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="InventoryItem"):
        await conn.set_stock(ListingRef(sku="X", sku_id="12345"), 1, key="k")
    assert fake.calls == []


# --- set_stock, 2026-01 and later ------------------------------------------------------------------


@pytest.mark.parametrize("fake", ["2026-01", "2026-04"], indirect=True)
async def test_modern_write_sends_change_from_quantity_and_the_key(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: applied(7, 12)
    await make(fake.version).set_stock(listing(), 12, key="hub-key-3", previous=7)
    await make(fake.version).set_stock(listing(), 12, key="hub-key-4")
    (_, query, first), (_, _, second) = fake.calls
    assert query == STOCK_SET_MUTATION
    assert "inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey)" in query
    assert first == {"idempotencyKey": "hub-key-3", "input": {"name": "available", "reason": "correction",
                                                              "quantities": [{"inventoryItemId": ITEM,
                                                                              "locationId": PRIMARY, "quantity": 12,
                                                                              "changeFromQuantity": 7}]}}
    entry = second["input"]["quantities"][0]
    assert "changeFromQuantity" in entry and entry["changeFromQuantity"] is None  # explicit null: no compare
    assert "ignoreCompareQuantity" not in second["input"]


@pytest.mark.parametrize("fake", ["2026-04"], indirect=True)
async def test_modern_stale_and_failed_key_retry_under_a_new_key(fake: FakeShopify) -> None:
    answers = iter([refused("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"), refused("CHANGE_FROM_QUANTITY_STALE"),
                    applied(2, 12)])
    fake.handlers["StockSet"] = lambda v: next(answers)
    levels = iter([5, 2])
    fake.handlers["StockLevel"] = lambda v: level(next(levels))
    written = await make(fake.version).set_stock(listing(), 12, key="hub-key-5", previous=7)
    assert (written.quantity, written.previous) == (12, 2)
    keys = [v["idempotencyKey"] for v in fake.sets()]
    expected = [v["input"]["quantities"][0]["changeFromQuantity"] for v in fake.sets()]
    assert keys[0] == "hub-key-5" and all(k.startswith("hub-key-5:cas:") for k in keys[1:])
    assert len(set(keys)) == 3 and expected == [7, 5, 2]


@pytest.mark.parametrize("fake", ["2026-04"], indirect=True)
async def test_idempotency_codes(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: refused("IDEMPOTENCY_CONCURRENT_REQUEST")
    with pytest.raises(TransientError) as busy:
        await make(fake.version).set_stock(listing(), 12, key="k", previous=7)
    assert busy.value.retryable and not isinstance(busy.value, ThrottledError)
    fake.handlers["StockSet"] = lambda v: refused("IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
    with pytest.raises(InvalidRequestError):
        await make(fake.version).set_stock(listing(), 12, key="k", previous=7)


@pytest.mark.parametrize("fake", ["2026-01"], indirect=True)
async def test_unchanged_quantity_answers_without_adjustment_group(fake: FakeShopify) -> None:
    fake.handlers["StockSet"] = lambda v: {"inventorySetQuantities": {"inventoryAdjustmentGroup": None,
                                                                      "userErrors": []}}
    written = await make(fake.version).set_stock(listing(), 12, key="k", previous=12)
    assert (written.quantity, written.previous) == (12, 12)


# --- get_stock and locations -----------------------------------------------------------------------


async def test_get_stock_reads_available_at_the_location(fake: FakeShopify) -> None:
    fake.handlers["StockLevel"] = lambda v: level(33)
    assert await make().get_stock(listing(OTHER)) == 33
    assert fake.calls[0][2] == {"item": ITEM, "location": OTHER}
    fake.handlers["StockLevel"] = lambda v: {"inventoryItem": {"id": ITEM, "inventoryLevel": None}}
    with pytest.raises(NotFoundError) as info:
        await make().get_stock(listing())
    assert info.value.code == "ITEM_NOT_STOCKED_AT_LOCATION"
    fake.handlers["StockLevel"] = lambda v: {"inventoryItem": None}
    with pytest.raises(NotFoundError):
        await make().get_stock(listing())


async def test_listing_without_location_uses_the_setting_else_the_primary_once(fake: FakeShopify) -> None:
    fake.handlers["StockLevel"] = lambda v: level(1)
    fake.handlers["PrimaryLocation"] = lambda v: {"location": {"id": PRIMARY, "isActive": True}}
    bare = ListingRef(sku="TD-SKU-0001", sku_id=ITEM)
    conn = make()
    assert await conn.get_stock(bare) == 1 and await conn.get_stock(bare) == 1
    assert fake.ops() == ["PrimaryLocation", "StockLevel", "StockLevel"]
    assert fake.calls[0][1] == PRIMARY_LOCATION_QUERY
    assert [v["location"] for op, _, v in fake.calls if op == "StockLevel"] == [PRIMARY, PRIMARY]
    await make(location_id=OTHER).get_stock(listing(PRIMARY))
    assert fake.calls[-1][2]["location"] == OTHER  # the setting wins over what the listing recorded


def test_stock_is_a_capability() -> None:
    assert "stock" in ShopifyConnector.capabilities
