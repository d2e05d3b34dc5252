"""Shopify capability 'stock': find a merchant SKU's inventory item, show an absolute quantity, read it.

What the GraphQL Admin API reference says, and where (shopify.dev, ``/docs/api/admin-graphql/{version}``):

* ``productVariants(first, query)`` takes the search syntax; ``sku:"…"`` filters on the variant SKU
  (query ``productVariants``: "Search for product variants by attributes such as SKU"). Shopify does
  not make SKUs unique and does not document the term as an exact match, so a few variants are read
  and the one whose ``sku`` is exactly ours is taken. ``ProductVariant.inventoryItem { id tracked }``
  is what inventory mutations name.
* Where to write: the ``location_id`` setting when given, else the shop's primary location, which is
  what ``location`` answers without an ``id`` ("If no ID is provided, the primary location of the
  Shop is returned", query ``location``, 2025-10).
* ``inventorySetQuantities(input: {name: "available", reason: "correction", quantities: [{inventoryItemId,
  locationId, quantity, …}]})`` "Set quantities of specified name using absolute values" - meant for "a
  system that acts as the source of truth for inventory quantities", which the hub is. Compare-and-set,
  by API version:

  - before 2026-01 (the connector's default 2025-10): ``compareQuantity`` per quantity, or
    ``ignoreCompareQuantity: true`` to opt out; a mismatch is the user error ``COMPARE_QUANTITY_STALE``.
  - 2026-01: ``changeFromQuantity`` ("The quantity currently expected at this location, before setting
    the new quantity ... To skip the CAS check, pass null"); "Passing any value (including null) to
    changeFromQuantity will override any values passed to the compareQuantity and ignoreCompareQuantity
    fields" (changelog "Improved compare and swap inventory updates", 2026-01); a mismatch is
    ``CHANGE_FROM_QUANTITY_STALE``. From 2026-04 it is mandatory ("Omitting changeFromQuantity returns
    an error"), so it is always sent, ``null`` when the hub has no previous quantity.

  Idempotency, by API version: from 2026-01 the mutation takes ``@idempotent(key: …)`` (changelog
  "Adding idempotency for inventory adjustments and refund mutations", optional), required from
  2026-04 ("Making idempotency mandatory ..."; "calling these mutations without an idempotency
  directive will result in an error at runtime"). "Implementing idempotency": the same key with the
  same variables is a duplicate and answers the original result; the same key with other variables
  is ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``; ``IDEMPOTENCY_CONCURRENT_REQUEST`` "is currently in
  progress, please try again"; ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`` "Retry with a new idempotency
  key". Before 2026-01 the schema has no directive for this mutation: the write is absolute and
  compare-and-set, which is what makes a repeat harmless there (a lost-answer repeat meets
  ``COMPARE_QUANTITY_STALE``, the re-read shows our quantity, and nothing is written twice).
* ``InventoryAdjustmentGroup.changes { name delta quantityAfterChange }`` tells what the quantity
  was before (``quantityAfterChange - delta``).
* ``inventoryItem(id) { inventoryLevel(locationId) { quantities(names: ["available"]) { name quantity } } }``
  reads the quantity back.

Compare-and-set, as the hub wants it: the first write compares with ``previous`` (the quantity the hub
last pushed). When Shopify answers stale (a sale on Shopify meanwhile), the current quantity is read and
the write is sent again comparing with it, under a fresh idempotency key (a key is tied to its
variables), at most ``CAS_ROUNDS`` times; then the write is given back to Temporal as transient.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ListingRef, StockTarget, StockWrite, StockWriteRequest
from connectors.errors import InvalidRequestError, NotFoundError, TransientError
from connectors.shopify.queries import (
    PRIMARY_LOCATION_QUERY,
    STOCK_LEVEL_QUERY,
    STOCK_LISTING_QUERY,
    STOCK_SET_MUTATION,
    STOCK_SET_MUTATION_LEGACY,
)

if TYPE_CHECKING:
    from connectors.shopify.connector import ShopifySettings

log = structlog.get_logger("tongdao.shopify")

PLATFORM = "shopify"  # the same value as connectors.shopify.connector.PLATFORM (that module imports this one)
GID_INVENTORY_ITEM = "gid://shopify/InventoryItem/"
GID_LOCATION = "gid://shopify/Location/"
QUANTITY_NAME = "available"
REASON = "correction"
#: first version with ``changeFromQuantity`` and the ``@idempotent`` directive on this mutation
CHANGE_FROM_VERSION = "2026-01"
#: writes per ``set_stock`` call: the first one and two more after a stale compare
CAS_ROUNDS = 3
#: "The total quantity can't be higher than 1,000,000,000" (INVALID_QUANTITY_TOO_HIGH)
MAX_QUANTITY = 1_000_000_000

STALE_CODES = frozenset({"COMPARE_QUANTITY_STALE", "CHANGE_FROM_QUANTITY_STALE"})
#: a failed earlier attempt under this key: like a stale compare, read again and use a new key
RETRY_WITH_NEW_KEY = frozenset({"IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"})
BUSY_CODES = frozenset({"IDEMPOTENCY_CONCURRENT_REQUEST"})
GONE_CODES = frozenset({"INVALID_INVENTORY_ITEM", "INVALID_LOCATION"})

M = TypeVar("M", bound=BaseModel)


class _Node(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InventoryItemNode(_Node):
    id: str = Field(min_length=1)
    tracked: bool | None = None


class VariantNode(_Node):
    id: str = Field(min_length=1)
    sku: str | None = None
    inventory_item: InventoryItemNode | None = Field(None, alias="inventoryItem")


class LocationNode(_Node):
    id: str = Field(min_length=1)
    is_active: bool | None = Field(None, alias="isActive")


class QuantityNode(_Node):
    name: str
    quantity: int


class LevelNode(_Node):
    id: str = ""
    quantities: list[QuantityNode] = Field(default_factory=list)


class ChangeNode(_Node):
    name: str
    delta: int
    quantity_after_change: int | None = Field(None, alias="quantityAfterChange")


class AdjustmentGroupNode(_Node):
    changes: list[ChangeNode] = Field(default_factory=list)


class SetUserError(_Node):
    field_path: list[str] | None = Field(None, alias="field")
    message: str = ""
    code: str | None = None


class SetPayload(_Node):
    """``InventorySetQuantitiesPayload``."""

    group: AdjustmentGroupNode | None = Field(None, alias="inventoryAdjustmentGroup")
    user_errors: list[SetUserError] = Field(default_factory=list, alias="userErrors")


def supports_change_from(api_version: str) -> bool:
    """``changeFromQuantity`` and ``@idempotent`` exist on ``inventorySetQuantities`` (2026-01 on)."""
    return api_version == "unstable" or api_version >= CHANGE_FROM_VERSION


def sku_search(sku: str) -> str:
    """``sku:"…"`` in the search syntax, the value quoted (SKUs carry hyphens and spaces)."""
    return 'sku:"' + sku.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_input(item: str, location: str, quantity: int, expected: int | None, *, change_from: bool) -> dict[str, Any]:
    """The ``InventorySetQuantitiesInput`` for one absolute write of ``available``.

    ``expected`` is the compare value (None = no compare): ``changeFromQuantity`` (sent even when
    null: mandatory from 2026-04) or, before 2026-01, ``compareQuantity`` / ``ignoreCompareQuantity``."""
    entry: dict[str, Any] = {"inventoryItemId": item, "locationId": location, "quantity": quantity}
    body: dict[str, Any] = {"name": QUANTITY_NAME, "reason": REASON, "quantities": [entry]}
    if change_from:
        entry["changeFromQuantity"] = expected
    elif expected is None:
        body["ignoreCompareQuantity"] = True
    else:
        entry["compareQuantity"] = expected
    return body


class ShopifyStock(StockTarget):
    """Mixed into :class:`~connectors.shopify.connector.ShopifyConnector`; uses its ``_graphql``
    (token, cost-based throttling and error classification)."""

    #: Standard plan: 100 cost points restored per second, 10 per mutation; 8 writes/s leaves room
    #: for the order pulls and lookups sharing the bucket
    stock_writes_per_s: ClassVar[float | None] = 8.0
    #: one inventorySetQuantities carries up to 250 quantities for the cost of one mutation
    max_stock_batch: ClassVar[int] = 100

    if TYPE_CHECKING:
        name: str
        settings: ShopifySettings

        async def _graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]: ...

    _primary_location: str | None = None

    async def find_listing(self, sku: str) -> ListingRef | None:
        """The variant whose ``sku`` is exactly ``sku`` and its inventory item, plus the location to
        write. None when no variant carries the SKU. Several variants with one SKU (Shopify allows
        it) is logged and the first one listed is taken."""
        code = str(sku).strip()
        if not code:
            raise InvalidRequestError("find_listing needs a merchant SKU code", platform=PLATFORM)
        data = await self._graphql(STOCK_LISTING_QUERY, {"query": sku_search(code)})
        variants = _models(VariantNode, _nodes(data.get("productVariants")), "productVariants")
        found = [v for v in variants if (v.sku or "").strip() == code and v.inventory_item is not None]
        if not found:
            return None
        chosen = found[0]
        if len(found) > 1:
            log.warning("shopify.duplicate_sku", connector=self.name, sku=code, chosen=chosen.id,
                        others=[v.id for v in found[1:]])
        location = self.settings.location_id or self._remember_primary(data.get("location"))
        assert chosen.inventory_item is not None
        if chosen.inventory_item.tracked is False:
            log.warning("shopify.stock_untracked", connector=self.name, sku=code, variant=chosen.id)
        extra = {"location_id": location}
        if chosen.inventory_item.tracked is not None:
            extra["tracked"] = str(chosen.inventory_item.tracked).lower()
        return ListingRef(sku=code, item_id=chosen.id, sku_id=chosen.inventory_item.id, extra=extra)

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """``inventorySetQuantities`` of ``available`` = ``quantity`` at the listing's location,
        comparing with ``previous``; a stale compare is read again and written again (bounded)."""
        amount = _quantity(quantity)
        item = _item_gid(listing)
        location = await self._location(listing)
        change_from = supports_change_from(self.settings.api_version)
        expected = previous
        attempt_key = key
        for round_no in range(1, CAS_ROUNDS + 1):
            payload = await self._set_once(item, location, amount, expected, attempt_key, change_from)
            codes = {e.code or "" for e in payload.user_errors}
            if not payload.user_errors:
                before = _before(payload, expected)
                log.info("shopify.stock_set", connector=self.name, sku=listing.sku, quantity=amount,
                         previous=before, key=attempt_key, round=round_no)
                return StockWrite(quantity=amount, previous=before)
            if not codes & (STALE_CODES | RETRY_WITH_NEW_KEY):
                raise _user_error(payload.user_errors, listing, amount)
            current = await self._available(item, location)
            log.info("shopify.stock_stale", connector=self.name, sku=listing.sku, expected=expected,
                     current=current, codes=sorted(codes), round=round_no)
            if current == amount:  # shown already (our own earlier write, or the channel got there)
                return StockWrite(quantity=amount, previous=current)
            expected = current
            # a key belongs to its variables, and a failed attempt's key may not be used again
            attempt_key = f"{key}:cas:{uuid.uuid4().hex[:12]}"
        raise TransientError(f"inventorySetQuantities: the available quantity of {listing.sku} kept changing "
                             f"({CAS_ROUNDS} compare-and-set rounds)", code="CHANGE_FROM_QUANTITY_STALE",
                             platform=PLATFORM, retry_after=1.0, details={"sku": listing.sku})

    async def set_stocks(self, writes: list[StockWriteRequest]) -> list[StockWrite | Exception]:
        """Many SKUs in one ``inventorySetQuantities`` (one mutation's cost, all or nothing), each
        with its own compare value. A refused batch (one SKU moved meanwhile, one listing gone) is
        written again one by one, where each write re-reads on a stale compare."""
        if len(writes) == 1:
            return await super().set_stocks(writes)
        try:
            amounts = [_quantity(w.quantity) for w in writes]
            items = [_item_gid(w.listing) for w in writes]
            locations = [await self._location(w.listing) for w in writes]
        except InvalidRequestError:
            return await super().set_stocks(writes)
        change_from = supports_change_from(self.settings.api_version)
        body: dict[str, Any] = {"name": QUANTITY_NAME, "reason": REASON, "quantities": []}
        for w, item, location, amount in zip(writes, items, locations, amounts, strict=True):
            single = set_input(item, location, amount, w.previous, change_from=change_from)
            body["quantities"].append(single["quantities"][0])
            if single.get("ignoreCompareQuantity") and not change_from:
                # the legacy input compares all or none: without every previous value, write one by one
                return await super().set_stocks(writes)
        variables: dict[str, Any] = {"input": body}
        if change_from:
            variables["idempotencyKey"] = "td-batch-" + hashlib.sha256("|".join(w.key for w in writes).encode()
                                                                       ).hexdigest()[:32]
        data = await self._graphql(STOCK_SET_MUTATION if change_from else STOCK_SET_MUTATION_LEGACY, variables)
        raw = data.get("inventorySetQuantities")
        payload = _model(SetPayload, raw, "inventorySetQuantities") if isinstance(raw, Mapping) else None
        if payload is None or payload.user_errors:
            log.info("shopify.stock_batch_refused", connector=self.name, size=len(writes),
                     codes=sorted({e.code or "" for e in payload.user_errors}) if payload else [])
            return await super().set_stocks(writes)
        log.info("shopify.stock_batch_set", connector=self.name, size=len(writes))
        return [StockWrite(quantity=amount, previous=w.previous) for w, amount in zip(writes, amounts, strict=True)]

    async def get_stock(self, listing: ListingRef) -> int:
        """``available`` of the listing's inventory item at its location."""
        return await self._available(_item_gid(listing), await self._location(listing))

    # --- helpers ---------------------------------------------------------------------------------

    async def _set_once(self, item: str, location: str, amount: int, expected: int | None, key: str,
                        change_from: bool) -> SetPayload:
        variables: dict[str, Any] = {"input": set_input(item, location, amount, expected, change_from=change_from)}
        if change_from:
            variables["idempotencyKey"] = key
        data = await self._graphql(STOCK_SET_MUTATION if change_from else STOCK_SET_MUTATION_LEGACY, variables)
        raw = data.get("inventorySetQuantities")
        if not isinstance(raw, Mapping):
            raise TransientError("inventorySetQuantities answered no payload", platform=PLATFORM)
        return _model(SetPayload, raw, "inventorySetQuantities")

    async def _available(self, item: str, location: str) -> int:
        data = await self._graphql(STOCK_LEVEL_QUERY, {"item": item, "location": location})
        node = data.get("inventoryItem")
        if not isinstance(node, Mapping):
            raise NotFoundError(f"no inventory item {item}", code="INVALID_INVENTORY_ITEM", platform=PLATFORM)
        raw = node.get("inventoryLevel")
        if not isinstance(raw, Mapping):
            raise NotFoundError(f"inventory item {item} is not stocked at {location}",
                                code="ITEM_NOT_STOCKED_AT_LOCATION", platform=PLATFORM)
        level = _model(LevelNode, raw, "inventoryLevel")
        found = next((q.quantity for q in level.quantities if q.name == QUANTITY_NAME), None)
        if found is None:
            raise TransientError(f"inventoryLevel of {item} without an '{QUANTITY_NAME}' quantity", platform=PLATFORM)
        return found

    async def _location(self, listing: ListingRef) -> str:
        """The ``location_id`` setting, else the location ``find_listing`` recorded, else the primary."""
        location = self.settings.location_id or listing.extra.get("location_id", "")
        if not location:
            location = self._primary_location or self._remember_primary(
                (await self._graphql(PRIMARY_LOCATION_QUERY)).get("location"))
        if not location.startswith(GID_LOCATION):
            raise InvalidRequestError(f"a Shopify location is a Location GID, not {location!r}", platform=PLATFORM)
        return location

    def _remember_primary(self, raw: Any) -> str:
        if not isinstance(raw, Mapping):
            raise InvalidRequestError("the shop answered no primary location; set location_id", platform=PLATFORM)
        node = _model(LocationNode, raw, "location")
        if node.is_active is False:
            raise InvalidRequestError(f"the shop's primary location {node.id} is not active; set location_id",
                                      platform=PLATFORM)
        self._primary_location = node.id
        return node.id


def _before(payload: SetPayload, expected: int | None) -> int | None:
    """What ``available`` was: from the adjustment's change, else the compare value that held."""
    for change in (payload.group.changes if payload.group else []):
        if change.name == QUANTITY_NAME and change.quantity_after_change is not None:
            return change.quantity_after_change - change.delta
    return expected


def _user_error(errors: list[SetUserError], listing: ListingRef, amount: int) -> Exception:
    codes = [e.code or "" for e in errors]
    text = "; ".join(f"{e.code or '?'}: {e.message}" for e in errors)[:500]
    message = f"inventorySetQuantities refused {listing.sku} = {amount}: {text}"
    code = next((c for c in codes if c), None)
    details = {"codes": codes, "sku": listing.sku}
    if any(c in BUSY_CODES for c in codes):
        return TransientError(message, code=code, platform=PLATFORM, retry_after=1.0, details=details)
    if any(c in GONE_CODES for c in codes):
        return NotFoundError(message, code=code, platform=PLATFORM, details=details)
    # ITEM_NOT_STOCKED_AT_LOCATION, NON_MUTABLE_INVENTORY_ITEM, INVALID_QUANTITY_*,
    # IDEMPOTENCY_KEY_PARAMETER_MISMATCH ...: the same write stays refused
    return InvalidRequestError(message, code=code, platform=PLATFORM, details=details)


def _quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_QUANTITY:
        raise InvalidRequestError(f"a stock quantity is a whole number from 0 to {MAX_QUANTITY}, not {quantity!r}",
                                  platform=PLATFORM)
    return quantity


def _item_gid(listing: ListingRef) -> str:
    item = listing.sku_id.strip()
    if not item.startswith(GID_INVENTORY_ITEM) or not item.removeprefix(GID_INVENTORY_ITEM).isdigit():
        raise InvalidRequestError(f"a Shopify stock listing names an InventoryItem GID, not {listing.sku_id!r} "
                                  f"(sku {listing.sku})", platform=PLATFORM)
    return item


def _nodes(connection: Any) -> list[Any]:
    if isinstance(connection, Mapping):
        if isinstance(connection.get("nodes"), list):
            return list(connection["nodes"])
        return [e.get("node") for e in connection.get("edges") or [] if isinstance(e, Mapping)]
    return []


def _model(model: type[M], raw: Any, what: str) -> M:
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise TransientError(f"{what}: unexpected answer ({exc.error_count()} errors)", platform=PLATFORM) from None


def _models(model: type[M], raws: list[Any], what: str) -> list[M]:
    return [_model(model, raw, what) for raw in raws]
