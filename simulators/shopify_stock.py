"""Inventory of the Shopify simulator: variants by SKU, locations, levels and ``inventorySetQuantities``.

Written from the GraphQL Admin API reference (shopify.dev), never from the hub's connector:

* Every catalogue SKU is a ``ProductVariant`` (``gid://shopify/ProductVariant/{sku_id}``, the id the
  order lines already carry) with an ``InventoryItem`` (``gid://shopify/InventoryItem/{sku_id}``,
  ``tracked``) stocked at the primary location. ``productVariants(first, after, query)`` understands
  ``sku:VALUE`` / ``sku:"VALUE"`` of the search syntax and the prefix form ``sku:VAL*`` (sim: exact,
  case-insensitive matches; other terms are ignored). ``location`` without ``id`` is the primary
  location ("If no ID is provided, the primary location of the Shop is returned");
  ``locations(first)``; ``inventoryItem(id)``; ``InventoryItem.inventoryLevel(locationId)`` (null where
  the item is not stocked) and ``inventoryLevels(first)``; ``InventoryLevel.quantities(names:
  [String!]!)`` with the documented names (available, committed, damaged, incoming, on_hand,
  quality_control, reserved, safety_stock).
* ``inventorySetQuantities(input: {name, reason, quantities [{inventoryItemId, locationId, quantity,
  compareQuantity | changeFromQuantity}], ignoreCompareQuantity, referenceDocumentUri})`` "Set quantities
  of specified name using absolute values" (name ``available`` or ``on_hand``: INVALID_NAME otherwise),
  all or nothing, refusals as ``userErrors {field message code}`` (InventorySetQuantitiesUserErrorCode):
  INVALID_REASON, INVALID_INVENTORY_ITEM, INVALID_LOCATION, ITEM_NOT_STOCKED_AT_LOCATION,
  INVALID_QUANTITY_NEGATIVE, INVALID_QUANTITY_TOO_HIGH ("can't be higher than 1,000,000,000"),
  NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR. The answer's ``inventoryAdjustmentGroup`` has
  ``changes(quantityNames, inventoryItemIds, locationIds) { name delta quantityAfterChange }``.
  Compare-and-set by the version in the URL:

  - before 2026-01: ``compareQuantity`` must be given per quantity unless ``ignoreCompareQuantity`` is
    true (COMPARE_QUANTITY_REQUIRED), a mismatch is COMPARE_QUANTITY_STALE; ``changeFromQuantity`` is
    not a field of that schema (the variable is refused).
  - 2026-01: ``changeFromQuantity`` (null = no check) "will override any values passed to the
    compareQuantity and ignoreCompareQuantity fields"; a mismatch is CHANGE_FROM_QUANTITY_STALE; without
    it the 2025 rules apply.
  - 2026-04 on (and ``unstable``): "each quantity in quantities must include a changeFromQuantity value
    ... Omitting changeFromQuantity returns an error".

* Idempotency ("Idempotent requests", "Implementing idempotency" and the 2026-01 / 2026-04 changelogs):
  ``inventorySetQuantities(input: …) @idempotent(key: …)`` from 2026-01 (optional), required from
  2026-04; before 2026-01 the directive is not defined. The same key with the same variables answers
  the original result and changes nothing; the same key with other variables is
  IDEMPOTENCY_KEY_PARAMETER_MISMATCH; from 2026-04 a key whose attempt failed answers
  IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED ("Retry with a new idempotency key"). Keys are kept 24 hours.
* Sales on the channel (``sell_on_channel``): an order moves units from ``available`` to ``committed``
  (``on_hand`` unchanged), which is what makes a compare-and-set write stale.

Sim choices: one primary location (``gid://shopify/Location/1``, where the fulfillment orders are) and
a second active location where nothing is stocked; initial ``available`` is seeded per shop (20..199);
an ``available`` write that changes nothing answers ``inventoryAdjustmentGroup: null``; a missing
directive (2026-04) and a ``changeFromQuantity`` before 2026-01 are top-level errors (texts are sim).
Time of ``stock_updates`` is ``time.monotonic()``, the idempotency window runs on the sim clock.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

PRIMARY_LOCATION = "gid://shopify/Location/1"
SECOND_LOCATION = "gid://shopify/Location/2"
LOCATION_NAMES = {PRIMARY_LOCATION: "杭州仓 (primary)", SECOND_LOCATION: "上海退货仓"}
CHANGE_FROM_VERSION = "2026-01"
KEY_REQUIRED_VERSION = "2026-04"
IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_QUANTITY = 1_000_000_000
QUANTITY_NAMES = ("available", "committed", "damaged", "incoming", "on_hand", "quality_control", "reserved",
                  "safety_stock")
SETTABLE_NAMES = ("available", "on_hand")
#: the documented ``reason`` values of inventory mutations
REASONS = frozenset({"correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
                     "movement_received", "movement_canceled", "other", "promotion", "quality_control",
                     "received", "reservation_created", "reservation_deleted", "reservation_updated", "restock",
                     "safety_stock", "shrinkage"})
#: root fields of this module: a THROTTLED answer to a document asking for one counts as a stock throttle
STOCK_FIELDS = frozenset({"productVariants", "location", "locations", "inventoryItem", "inventorySetQuantities"})
_SKU_TERM = re.compile(r'(?:^|\s)sku:(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def at_least(version: str, floor: str) -> bool:
    """``version`` (``YYYY-MM`` or ``unstable``) is ``floor`` or later; unstable is the newest."""
    return version == "unstable" or version >= floor


@dataclass
class StockLevel:
    """One inventory item at one location."""

    available: int
    committed: int = 0
    updated: str = ""

    @property
    def on_hand(self) -> int:
        return self.available + self.committed

    def quantity(self, name: str) -> int:
        return {"available": self.available, "committed": self.committed, "on_hand": self.on_hand}.get(name, 0)


@dataclass
class StockItem:
    sku: str
    variant: str
    item: str
    product: str
    title: str
    item_title: str
    levels: dict[str, StockLevel] = field(default_factory=dict)  # location gid → level


@dataclass
class _KeyRecord:
    fingerprint: str
    payload: dict[str, Any] | None  # None: the attempt failed
    at: datetime


class ShopifyStockSim:
    """Mixed into :class:`~simulators.shopify.ShopifySimulator` (``_init_stock`` in its ``__init__``)."""

    stores: dict[str, str]
    seed: int
    catalog: list[dict[str, Any]]
    _lock: threading.RLock
    now: Callable[[], datetime]

    def _init_stock(self) -> None:
        self._stock: dict[str, dict[str, StockItem]] = {}
        self._idempotency: dict[str, dict[str, _KeyRecord]] = {}
        self._adjustment_ids = itertools.count(90_000_001)
        self.stock_updates: list[tuple[float, str, int]] = []
        self.stock_writes = 0
        self.stock_throttled = 0
        self.stock_replays = 0
        self.stock_refusals = 0
        for shop in dict.fromkeys(self.stores.values()):
            rng = random.Random(f"shopify-stock:{self.seed}:{shop}")
            items: dict[str, StockItem] = {}
            for entry in self.catalog:
                number = entry["sku_id"]
                items[str(entry["sku"])] = StockItem(
                    sku=str(entry["sku"]), variant=f"gid://shopify/ProductVariant/{number}",
                    item=f"gid://shopify/InventoryItem/{number}", product=f"gid://shopify/Product/{entry['num_iid']}",
                    title=" / ".join(p.split(":", 1)[-1] for p in str(entry.get("properties") or "").split(";")
                                     if p) or "Default Title",
                    item_title=str(entry.get("item_title") or entry["title"]),
                    levels={PRIMARY_LOCATION: StockLevel(available=rng.randrange(20, 200), updated=_iso(self.now()))})
            self._stock[shop] = items

    # -- Python API ---------------------------------------------------------------------------

    def _stock_shop(self, shop: str | None) -> str:
        if shop is None:
            return next(iter(self.stores.values()))
        if shop in self.stores:
            return self.stores[shop]
        if shop in self.stores.values():
            return shop
        raise KeyError(f"unknown store or token {shop!r}")

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """``available`` of ``sku`` at the primary location (the first store by default); None when the
        shop has no variant with that SKU."""
        with self._lock:
            item = self._stock[self._stock_shop(shop)].get(sku)
            level = item.levels.get(PRIMARY_LOCATION) if item else None
            return level.available if level else None

    def sell_on_channel(self, sku: str, n: int = 1, shop: str | None = None) -> int:
        """A sale on Shopify: ``n`` units move from available to committed. Returns the new available."""
        if n <= 0:
            raise ValueError("a sale takes at least one unit")
        with self._lock:
            item = self._stock[self._stock_shop(shop)].get(sku)
            if item is None or PRIMARY_LOCATION not in item.levels:
                raise KeyError(f"no stocked variant with sku {sku!r}")
            level = item.levels[PRIMARY_LOCATION]
            if n > level.available:
                raise ValueError(f"{sku}: only {level.available} available")
            level.available -= n
            level.committed += n
            level.updated = _iso(self.now())
            return level.available

    def set_channel_stock(self, sku: str, available: int, shop: str | None = None) -> None:
        """The merchant edits ``available`` in the Shopify admin (no webhook, no ``stock_updates``)."""
        if available < 0:
            raise ValueError("available cannot be negative")
        with self._lock:
            item = self._stock[self._stock_shop(shop)][sku]
            item.levels.setdefault(PRIMARY_LOCATION, StockLevel(0)).available = available

    def stock_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "stock": {shop: {sku: i.levels[PRIMARY_LOCATION].available for sku, i in items.items()
                                 if PRIMARY_LOCATION in i.levels} for shop, items in self._stock.items()},
                "stock_writes": self.stock_writes, "stock_throttled": self.stock_throttled,
                "stock_replays": self.stock_replays, "stock_refusals": self.stock_refusals,
                "stock_update_count": len(self.stock_updates),
            }

    def _note_stock_throttle(self, names: set[str]) -> None:
        if names & STOCK_FIELDS:
            self.stock_throttled += 1

    # -- GraphQL fields -----------------------------------------------------------------------

    def _stock_query_fields(self, shop: str) -> dict[str, Any]:
        return {
            "productVariants": lambda args: self._variants(args, shop),
            "location": lambda args: self._location_node(args.get("id") or PRIMARY_LOCATION),
            "locations": lambda args: _paginate([self._location_node(g) for g in LOCATION_NAMES], args),
            "inventoryItem": lambda args: self._item_by_gid(shop, str(args.get("id") or "")),
        }

    def _stock_mutation_fields(self, shop: str, version: str) -> dict[str, Any]:
        return {"inventorySetQuantities": lambda args: self._set_quantities(args, shop, version)}

    def _location_node(self, gid: str) -> dict[str, Any] | None:
        if gid not in LOCATION_NAMES:
            return None
        return {"__typename": "Location", "id": gid, "legacyResourceId": gid.rsplit("/", 1)[-1],
                "name": LOCATION_NAMES[gid], "isActive": True}

    def _variants(self, args: Mapping[str, Any], shop: str) -> dict[str, Any]:
        wanted = _sku_terms(str(args.get("query") or ""))
        items = [i for i in self._stock[shop].values() if wanted is None or any(test(i.sku) for test in wanted)]
        return _paginate([self._variant_node(i) for i in items], args)

    def _variant_node(self, item: StockItem) -> dict[str, Any]:
        return {"__typename": "ProductVariant", "id": item.variant, "legacyResourceId": item.variant.rsplit("/", 1)[-1],
                "sku": item.sku, "title": item.title, "displayName": f"{item.item_title} - {item.title}",
                "inventoryQuantity": sum(level.available for level in item.levels.values()),
                "product": {"__typename": "Product", "id": item.product, "title": item.item_title},
                "inventoryItem": self._item_node(item)}

    def _item_by_gid(self, shop: str, gid: str) -> dict[str, Any] | None:
        if not gid.startswith("gid://shopify/InventoryItem/"):
            from simulators.shopify import GraphQLError  # that module imports this one

            raise GraphQLError(f"Invalid global id '{gid}'", "argumentLiteralsIncompatible")
        item = next((i for i in self._stock[shop].values() if i.item == gid), None)
        return self._item_node(item) if item else None

    def _item_node(self, item: StockItem) -> dict[str, Any]:
        def level(args: Mapping[str, Any]) -> dict[str, Any] | None:
            gid = str(args.get("locationId") or "")
            return self._level_node(item, gid) if gid in item.levels else None

        return {"__typename": "InventoryItem", "id": item.item, "legacyResourceId": item.item.rsplit("/", 1)[-1],
                "sku": item.sku, "tracked": True, "inventoryLevel": level,
                "inventoryLevels": {"nodes": [self._level_node(item, g) for g in item.levels]}}

    def _level_node(self, item: StockItem, location: str) -> dict[str, Any]:
        state = item.levels[location]

        def quantities(args: Mapping[str, Any]) -> list[dict[str, Any]]:
            names = args.get("names")
            if not isinstance(names, list) or not names:
                from simulators.shopify import GraphQLError

                raise GraphQLError("Field 'quantities' is missing required arguments: names",
                                   "missingRequiredArguments")
            bad = [n for n in names if n not in QUANTITY_NAMES]
            if bad:
                from simulators.shopify import GraphQLError

                raise GraphQLError(f"Invalid quantity name: {bad[0]}", "argumentLiteralsIncompatible")
            return [{"__typename": "InventoryQuantity", "name": n, "quantity": state.quantity(n),
                     "updatedAt": state.updated} for n in names]

        number = location.rsplit("/", 1)[-1]
        return {"__typename": "InventoryLevel",
                "id": f"gid://shopify/InventoryLevel/{number}?inventory_item_id={item.item.rsplit('/', 1)[-1]}",
                "location": self._location_node(location), "item": {"__typename": "InventoryItem", "id": item.item},
                "quantities": quantities, "updatedAt": state.updated}

    # -- inventorySetQuantities ---------------------------------------------------------------

    def _set_quantities(self, args: Mapping[str, Any], shop: str, version: str) -> dict[str, Any]:
        from simulators.shopify import GraphQLError

        directive = (args.get("@") or {}).get("idempotent")
        if directive is not None and not at_least(version, CHANGE_FROM_VERSION):
            raise GraphQLError("Directive 'idempotent' is not defined", "undefinedDirective")  # sim text
        if directive is None and at_least(version, KEY_REQUIRED_VERSION):
            raise GraphQLError("inventorySetQuantities requires an idempotency key: add @idempotent(key: ...)",
                               "BAD_REQUEST")  # sim text
        key = None
        if directive is not None:
            key = directive.get("key")
            if not isinstance(key, str) or not key.strip():
                raise GraphQLError("Argument 'key' on Directive 'idempotent' has an invalid value (null). "
                                   "Expected type 'String!'.", "argumentLiteralsIncompatible")
        spec = args.get("input")
        self._check_input(spec, version)
        assert isinstance(spec, dict)
        fingerprint = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        keys = self._idempotency.setdefault(shop, {})
        moment = self.now()
        for old in [k for k, r in keys.items() if moment - r.at > IDEMPOTENCY_WINDOW]:
            del keys[old]
        if key is not None and key in keys:
            record = keys[key]
            if record.fingerprint != fingerprint:
                return self._refusal([("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", ["input"],
                                       "The same idempotency key cannot be used with different operation parameters.")],
                                     count=False)
            if record.payload is not None:
                self.stock_replays += 1
                return copy.deepcopy(record.payload)
            return self._refusal([("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", ["input"],
                                   "A previous request with this idempotency key failed. Retry with a new "
                                   "idempotency key.")], count=False)
        payload = self._apply(spec, shop, version)
        if key is not None and (payload["userErrors"] == [] or at_least(version, KEY_REQUIRED_VERSION)):
            keys[key] = _KeyRecord(fingerprint, copy.deepcopy(payload) if not payload["userErrors"] else None, moment)
        return payload

    def _check_input(self, spec: Any, version: str) -> None:
        """What GraphQL itself refuses (the variable's type), as top-level errors."""
        from simulators.shopify import GraphQLError

        def bad(path: str, why: str) -> GraphQLError:
            return GraphQLError(f"Variable $input of type InventorySetQuantitiesInput! was provided invalid value "
                                f"for {path} ({why})", "INVALID_VARIABLE")

        if not isinstance(spec, dict):
            raise bad("input", "Expected value to not be null")
        for name in ("name", "reason"):
            if not isinstance(spec.get(name), str):
                raise bad(name, "Expected value to not be null")
        if spec.get("ignoreCompareQuantity") is not None and not isinstance(spec["ignoreCompareQuantity"], bool):
            raise bad("ignoreCompareQuantity", "Could not coerce value to Boolean")
        quantities = spec.get("quantities")
        if not isinstance(quantities, list) or not quantities:
            raise bad("quantities", "Expected value to not be null")
        known = {"inventoryItemId", "locationId", "quantity", "compareQuantity"}
        if at_least(version, CHANGE_FROM_VERSION):
            known.add("changeFromQuantity")
        for index, entry in enumerate(quantities):
            where = f"quantities.{index}"
            if not isinstance(entry, dict):
                raise bad(where, "Expected value to be an object")
            unknown = sorted(set(entry) - known)
            if unknown:
                raise bad(f"{where}.{unknown[0]}", "Field is not defined on InventoryQuantityInput")
            for name in ("inventoryItemId", "locationId"):
                if not isinstance(entry.get(name), str):
                    raise bad(f"{where}.{name}", "Expected value to not be null")
            for name in ("quantity", "compareQuantity", "changeFromQuantity"):
                value = entry.get(name)
                wrong = isinstance(value, bool) or not isinstance(value, int)
                if (name == "quantity" or value is not None) and wrong:
                    raise bad(f"{where}.{name}", "Could not coerce value to Int")
            if at_least(version, KEY_REQUIRED_VERSION) and "changeFromQuantity" not in entry:
                raise bad(f"{where}.changeFromQuantity", "changeFromQuantity must be given; pass null to skip "
                                                          "the compare-and-swap check")  # sim text

    def _refusal(self, errors: list[tuple[str, list[str], str]], count: bool = True) -> dict[str, Any]:
        if count:
            self.stock_refusals += 1
        return {"__typename": "InventorySetQuantitiesPayload", "inventoryAdjustmentGroup": None,
                "userErrors": [{"__typename": "InventorySetQuantitiesUserError", "code": code, "field": where,
                                "message": message} for code, where, message in errors]}

    def _apply(self, spec: dict[str, Any], shop: str, version: str) -> dict[str, Any]:
        name, reason = spec["name"], spec["reason"]
        if name not in SETTABLE_NAMES:
            return self._refusal([("INVALID_NAME", ["input", "name"],
                                   "The quantity name must be either 'available' or 'on_hand'.")])
        if reason not in REASONS:
            return self._refusal([("INVALID_REASON", ["input", "reason"], "The specified reason is invalid.")])
        errors: list[tuple[str, list[str], str]] = []
        targets: list[tuple[StockItem, str, int]] = []
        seen: set[tuple[str, str]] = set()
        for index, entry in enumerate(spec["quantities"]):
            where = ["input", "quantities", str(index)]
            item = next((i for i in self._stock[shop].values() if i.item == entry["inventoryItemId"]), None)
            location = entry["locationId"]
            quantity = entry["quantity"]
            pair = (entry["inventoryItemId"], location)
            if pair in seen:
                errors.append(("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", where,
                               "The combination of inventoryItemId and locationId must be unique."))
                continue
            seen.add(pair)
            if item is None:
                errors.append(("INVALID_INVENTORY_ITEM", [*where, "inventoryItemId"],
                               "The specified inventory item could not be found."))
                continue
            if location not in LOCATION_NAMES:
                errors.append(("INVALID_LOCATION", [*where, "locationId"],
                               "The specified location could not be found."))
                continue
            if location not in item.levels:
                errors.append(("ITEM_NOT_STOCKED_AT_LOCATION", [*where, "locationId"],
                               "The specified inventory item is not stocked at the location."))
                continue
            if quantity < 0:
                errors.append(("INVALID_QUANTITY_NEGATIVE", [*where, "quantity"], "The quantity can't be negative."))
                continue
            if quantity > MAX_QUANTITY:
                errors.append(("INVALID_QUANTITY_TOO_HIGH", [*where, "quantity"],
                               "The total quantity can't be higher than 1,000,000,000."))
                continue
            current = item.levels[location].quantity(name)
            stale = self._compare(spec, entry, current, version, where)
            if stale is not None:
                errors.append(stale)
                continue
            targets.append((item, location, quantity))
        if errors:
            return self._refusal(errors)
        changes: list[dict[str, Any]] = []
        for item, location, quantity in targets:
            level = item.levels[location]
            delta = quantity - level.quantity(name)
            if delta == 0:
                continue
            level.available += delta  # setting on_hand moves available by the same delta
            level.updated = _iso(self.now())
            for changed in ("available", "on_hand"):
                changes.append({"__typename": "InventoryChange", "name": changed, "delta": delta,
                                "quantityAfterChange": level.quantity(changed), "ledgerDocumentUri": None,
                                "item": {"__typename": "InventoryItem", "id": item.item},
                                "location": self._location_node(location)})
        for item, location, _ in targets:
            if location == PRIMARY_LOCATION:
                self.stock_updates.append((time.monotonic(), item.sku, item.levels[location].available))
        self.stock_writes += 1
        group = None
        if changes:
            group = {"__typename": "InventoryAdjustmentGroup",
                     "id": f"gid://shopify/InventoryAdjustmentGroup/{next(self._adjustment_ids)}",
                     "createdAt": _iso(self.now()), "reason": spec["reason"],
                     "referenceDocumentUri": spec.get("referenceDocumentUri"), "changes": _changes(changes)}
        return {"__typename": "InventorySetQuantitiesPayload", "inventoryAdjustmentGroup": group, "userErrors": []}

    @staticmethod
    def _compare(spec: Mapping[str, Any], entry: Mapping[str, Any], current: int, version: str,
                 where: list[str]) -> tuple[str, list[str], str] | None:
        if at_least(version, CHANGE_FROM_VERSION) and "changeFromQuantity" in entry:
            expected = entry["changeFromQuantity"]
            if expected is not None and expected != current:
                return ("CHANGE_FROM_QUANTITY_STALE", [*where, "changeFromQuantity"],
                        "The changeFromQuantity value does not match persisted value.")
            return None
        if spec.get("ignoreCompareQuantity") is True:
            return None
        if entry.get("compareQuantity") is None:
            return ("COMPARE_QUANTITY_REQUIRED", [*where, "compareQuantity"],
                    "The compareQuantity argument must be given to each quantity or ignored using "
                    "ignoreCompareQuantity.")
        if entry["compareQuantity"] != current:
            return ("COMPARE_QUANTITY_STALE", [*where, "compareQuantity"],
                    "The compareQuantity value does not match persisted value.")
        return None


def _changes(changes: list[dict[str, Any]]) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    """``InventoryAdjustmentGroup.changes(inventoryItemIds, locationIds, quantityNames)``."""

    def select(args: Mapping[str, Any]) -> list[dict[str, Any]]:
        names, items, locations = args.get("quantityNames"), args.get("inventoryItemIds"), args.get("locationIds")
        return [c for c in changes if (not names or c["name"] in names)
                and (not items or c["item"]["id"] in items) and (not locations or c["location"]["id"] in locations)]

    return select


def _sku_terms(query: str) -> list[Callable[[str], bool]] | None:
    """Tests for the ``sku:`` terms of a search query (ORed), None when it has none: a quoted value
    matches exactly, a bare one too unless it ends in ``*`` (a prefix query; ``sku:*`` = has a SKU);
    case-insensitive (sim)."""
    tests: list[Callable[[str], bool]] = []
    for quoted, bare in _SKU_TERM.findall(query):
        if bare.endswith("*"):
            prefix = bare[:-1].lower()
            tests.append(lambda sku, p=prefix: bool(sku) and sku.lower().startswith(p))
        else:
            value = (quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted else bare).lower()
            tests.append(lambda sku, v=value: sku.lower() == v)
    return tests or None


def _paginate(items: list[Any], args: Mapping[str, Any]) -> dict[str, Any]:
    from simulators.shopify import paginate  # that module imports this one

    return paginate(items, args)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
