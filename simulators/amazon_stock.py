"""Listings of the Amazon SP-API simulator: ``getListingsItem`` and ``patchListingsItem`` (v2021-08-01).

Written from Amazon's documentation, never from the hub's connector: the official model
``listingsItems_2021-08-01.json`` (``amzn/selling-partner-api-models``) and the guides "Partially update
a listing" and "Merge a listing" (developer-docs.amazon.com/sp-api):

* ``GET|PATCH /listings/2021-08-01/items/{sellerId}/{sku}``; ``sellerId`` "A selling partner identifier,
  such as a merchant account or vendor code" (here: the seller the access token belongs to, else 403),
  ``sku`` URL-encoded; ``marketplaceIds`` required (csv); ``issueLocale`` optional.
* getListingsItem ``includedData`` (csv, default ``summaries``): ``summaries`` (``marketplaceId``,
  ``asin``, ``productType``, ``conditionType``, ``status`` BUYABLE/DISCOVERABLE, ``itemName``,
  ``createdDate``, ``lastUpdatedDate``), ``attributes`` (the listing's attributes, e.g.
  ``fulfillment_availability [{fulfillment_channel_code, quantity}]``), ``issues``, ``offers``,
  ``fulfillmentAvailability`` (``[{fulfillmentChannelCode, quantity}]``), ``procurement``,
  ``relationships``, ``productTypes`` (``[{marketplaceId, productType}]``). Unknown SKU: 404 ErrorList.
* patchListingsItem body ``ListingsItemPatchRequest {productType (required), patches (minItems 1) [{op
  (add|replace|merge|delete), path, value (array of objects)}]}``; "Only top-level listings item
  attributes can be patched. Patching nested attributes is not supported"; "JSON Patch documents can
  add, replace, or delete entire attributes"; ``merge`` on ``/attributes/fulfillment_availability``
  updates the entry with the same ``fulfillment_channel_code`` ("You must provide non-empty values for
  the selector field such as fulfillment_channel_code"). ``quantity``: "The item quantity that you're
  making available for sale", ``minimum: 0``. Answer ``{sku, status: ACCEPTED|INVALID|VALID,
  submissionId, issues}``; VALID only with ``mode=VALIDATION_PREVIEW`` (nothing is saved); patch
  ``includedData`` is ``identifiers`` (preview only) / ``issues``. A request the model cannot parse
  (no productType, no patches, an unknown ``op``) is 400 ``InvalidInput``.
* Usage plans (operation descriptions): getListingsItem 5 req/s burst 10, patchListingsItem 5 req/s
  burst 5, per seller, enforced by the simulator's existing buckets (429 ``QuotaExceeded``), with the
  ``x-amzn-RateLimit-Limit`` header on every answer.

Sim choices: every catalogue SKU is listed by every seller (ASIN derived from the SKU as for order
items, product type by catalogue category), merchant-fulfilled (DEFAULT) with a seeded quantity
(20..199); an ACCEPTED quantity shows at once (Amazon processes submissions shortly after); a patch of
an unknown SKU, a wrong product type, a nested path or a bad ``fulfillment_availability`` value answers
INVALID with an ERROR issue (codes and texts are sim); ``sell_on_channel`` lowers the DEFAULT quantity
as an order would; seller ids are derived from the seed and the shop (``seller_id(shop)``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

LISTINGS_PATH = "/listings/2021-08-01/items/{sellerId}/{sku}"
#: (rate per second, burst) from the Usage Plan table of each operation's description
LISTINGS_USAGE_PLANS: dict[str, tuple[float, int]] = {
    "getListingsItem": (5.0, 10),
    "patchListingsItem": (5.0, 5),
}
GET_INCLUDED = ("summaries", "attributes", "issues", "offers", "fulfillmentAvailability", "procurement",
                "relationships", "productTypes")
PATCH_INCLUDED = ("identifiers", "issues")
PATCH_OPS = ("add", "replace", "merge", "delete")
AVAILABILITY = "fulfillment_availability"
DEFAULT_CHANNEL = "DEFAULT"
#: catalogue category → Amazon product type (sim)
PRODUCT_TYPES = {"服饰": "APPAREL", "家居": "HOME", "数码配件": "CONSUMER_ELECTRONICS", "食品": "GROCERY",
                 "美妆": "BEAUTY"}


@dataclass
class Listing:
    sku: str
    asin: str
    product_type: str
    item_name: str
    created: str
    updated: str
    attributes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def quantity(self, channel: str = DEFAULT_CHANNEL) -> int | None:
        entry = next((e for e in self.attributes.get(AVAILABILITY, []) if e.get("fulfillment_channel_code") == channel),
                     None)
        return entry.get("quantity") if entry is not None else None


class AmazonStockSim:
    """Mixed into :class:`~simulators.amazon.AmazonSimulator` (``_init_stock`` in its ``__init__``)."""

    refresh_tokens: dict[str, str]
    seed: int
    catalog: list[dict[str, Any]]
    marketplace_id: str
    _lock: threading.RLock
    now: Callable[[], datetime]

    if TYPE_CHECKING:
        async def _guard(self, request: Request, operation: str) -> str: ...

        def _error(self, exc: Exception, operation: str | None) -> Response: ...

        def _answer(self, status: int, body: Any, operation: str | None) -> Response: ...

    def _init_stock(self) -> None:
        self._listings: dict[str, dict[str, Listing]] = {}
        self._submissions = itertools.count(1)
        self.stock_updates: list[tuple[float, str, int]] = []
        self.stock_writes = 0
        self.stock_throttled = 0
        self.stock_refusals = 0
        moment = _iso(self.now())
        for shop in dict.fromkeys(self.refresh_tokens.values()):
            rng = random.Random(f"amazon-stock:{self.seed}:{shop}")
            self._listings[shop] = {
                str(e["sku"]): Listing(
                    sku=str(e["sku"]), asin=f"B0{hashlib.sha1(str(e['sku']).encode()).hexdigest()[:8].upper()}",
                    product_type=PRODUCT_TYPES.get(str(e.get("category")), "PRODUCT"),
                    item_name=str(e.get("title") or e["sku"]), created=moment, updated=moment,
                    attributes={AVAILABILITY: [{"fulfillment_channel_code": DEFAULT_CHANNEL,
                                                "quantity": rng.randrange(20, 200)}]})
                for e in self.catalog}

    # -- Python API ---------------------------------------------------------------------------

    def seller_id(self, shop: str | None = None) -> str:
        """The selling partner id of a shop (or refresh token): what the Listings paths name."""
        name = self._stock_shop(shop)
        return "A" + hashlib.sha1(f"amazon-seller:{self.seed}:{name}".encode()).hexdigest()[:13].upper()

    def _stock_shop(self, shop: str | None) -> str:
        if shop is None:
            return next(iter(self.refresh_tokens.values()))
        if shop in self.refresh_tokens:
            return self.refresh_tokens[shop]
        if shop in self.refresh_tokens.values():
            return shop
        raise KeyError(f"unknown shop or refresh token {shop!r}")

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """The merchant-fulfilled (DEFAULT) quantity of ``sku`` (the first shop by default); None when
        the seller has no such listing or it has no DEFAULT availability."""
        with self._lock:
            listing = self._listings[self._stock_shop(shop)].get(sku)
            return listing.quantity() if listing else None

    def sell_on_channel(self, sku: str, n: int = 1, shop: str | None = None) -> int:
        """An order on Amazon takes ``n`` units off the DEFAULT quantity. Returns what is left."""
        if n <= 0:
            raise ValueError("a sale takes at least one unit")
        with self._lock:
            listing = self._listings[self._stock_shop(shop)].get(sku)
            entry = next((e for e in (listing.attributes.get(AVAILABILITY, []) if listing else [])
                          if e.get("fulfillment_channel_code") == DEFAULT_CHANNEL), None)
            if listing is None or entry is None:
                raise KeyError(f"no merchant-fulfilled listing {sku!r}")
            if n > int(entry.get("quantity") or 0):
                raise ValueError(f"{sku}: only {entry.get('quantity') or 0} available")
            entry["quantity"] = int(entry["quantity"]) - n
            listing.updated = _iso(self.now())
            return int(entry["quantity"])

    def stock_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "stock": {shop: {sku: lst.quantity() for sku, lst in listings.items()}
                          for shop, listings in self._listings.items()},
                "stock_writes": self.stock_writes, "stock_throttled": self.stock_throttled,
                "stock_refusals": self.stock_refusals, "stock_update_count": len(self.stock_updates),
            }

    # -- HTTP ---------------------------------------------------------------------------------

    async def _listings_item(self, request: Request) -> Response:
        from simulators.amazon import SpError  # that module imports this one

        operation = "getListingsItem" if request.method == "GET" else "patchListingsItem"
        try:
            try:
                shop = await self._guard(request, operation)
            except SpError as exc:
                if exc.status == 429:
                    with self._lock:
                        self.stock_throttled += 1
                raise
            if request.path_params["sellerId"] != self.seller_id(shop):
                raise SpError(403, "Unauthorized", "Access to requested resource is denied.",
                              "The sellerId does not match the seller of the access token.")  # sim details
            query = _query(request)
            sku = unquote(request.path_params["sku"])
            if operation == "getListingsItem":
                with self._lock:
                    body = self._get_listing(shop, sku, query)
            else:
                raw = await request.body()
                with self._lock:
                    body = self._patch_listing(shop, sku, query, raw)
        except SpError as exc:
            return self._error(exc, operation)
        return self._answer(200, body, operation)

    def _marketplace(self, query: Mapping[str, str]) -> str:
        from simulators.amazon import invalid

        ids = [m.strip() for m in query.get("marketplaceIds", "").split(",") if m.strip()]
        if not ids:
            raise invalid("marketplaceIds is required.")  # sim text
        if len(ids) > 1 or ids[0] != self.marketplace_id:
            raise invalid(f"The seller does not sell in marketplace {','.join(ids)}.")  # sim text
        return ids[0]

    def _get_listing(self, shop: str, sku: str, query: Mapping[str, str]) -> dict[str, Any]:
        from simulators.amazon import SpError

        _known(query, {"marketplaceIds", "issueLocale", "includedData"})
        marketplace = self._marketplace(query)
        included = _enum(query, "includedData", GET_INCLUDED) or ["summaries"]
        listing = self._listings[shop].get(sku)
        if listing is None:
            raise SpError(404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace {marketplace}")  # sim text
        body: dict[str, Any] = {"sku": listing.sku}
        quantity = listing.quantity()
        if "summaries" in included:
            body["summaries"] = [{"marketplaceId": marketplace, "asin": listing.asin,
                                  "productType": listing.product_type, "conditionType": "new_new",
                                  "status": ["BUYABLE", "DISCOVERABLE"] if quantity else ["DISCOVERABLE"],
                                  "itemName": listing.item_name, "createdDate": listing.created,
                                  "lastUpdatedDate": listing.updated}]
        if "attributes" in included:
            body["attributes"] = {"item_name": [{"value": listing.item_name, "language_tag": "zh_CN",
                                                 "marketplace_id": marketplace}]} | copy.deepcopy(listing.attributes)
        if "issues" in included:
            body["issues"] = []
        if "offers" in included:
            body["offers"] = []
        if "fulfillmentAvailability" in included:
            body["fulfillmentAvailability"] = [
                {"fulfillmentChannelCode": e["fulfillment_channel_code"],
                 **({"quantity": e["quantity"]} if isinstance(e.get("quantity"), int) else {})}
                for e in listing.attributes.get(AVAILABILITY, [])]
        if "relationships" in included:
            body["relationships"] = []
        if "productTypes" in included:
            body["productTypes"] = [{"marketplaceId": marketplace, "productType": listing.product_type}]
        return body

    def _patch_listing(self, shop: str, sku: str, query: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        from simulators.amazon import invalid

        _known(query, {"marketplaceIds", "issueLocale", "includedData", "mode"})
        marketplace = self._marketplace(query)
        included = _enum(query, "includedData", PATCH_INCLUDED) or ["issues"]
        mode = query.get("mode")
        if mode is not None and mode != "VALIDATION_PREVIEW":
            raise invalid(f"Invalid value for mode: {mode}")  # sim text
        if "identifiers" in included and mode != "VALIDATION_PREVIEW":
            raise invalid("identifiers can only be requested when mode is VALIDATION_PREVIEW.")  # sim text
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise invalid("The request body is not valid JSON.") from None  # sim text
        patches = _patch_request(body)
        submission = f"{hashlib.sha1(f'{self.seed}:sub:{next(self._submissions)}'.encode()).hexdigest()[:32]}"
        listing = self._listings[shop].get(sku)

        def answer(status: str, issues: list[dict[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {"sku": sku, "status": status, "submissionId": submission}
            if "issues" in included:
                out["issues"] = issues
            if "identifiers" in included and listing is not None:
                out["identifiers"] = [{"marketplaceId": marketplace, "asin": listing.asin}]
            return out

        if listing is None:
            return self._refused(answer, "NOT_FOUND", f"SKU '{sku}' does not exist; patchListingsItem only "
                                 "changes an existing listing.", marketplace)
        if body["productType"] != listing.product_type:
            return self._refused(answer, "PRODUCT_TYPE_MISMATCH", f"productType {body['productType']} does not "
                                 f"match the listing's product type {listing.product_type}.", marketplace)
        attributes = copy.deepcopy(listing.attributes)
        for patch in patches:
            problem = _apply_patch(attributes, patch)
            if problem is not None:
                return self._refused(answer, "INVALID_ATTRIBUTE", problem, marketplace,
                                     attribute=patch["path"].removeprefix("/attributes/").split("/")[0])
        if mode == "VALIDATION_PREVIEW":
            return answer("VALID", [])
        listing.attributes = attributes
        listing.updated = _iso(self.now())
        self.stock_writes += 1
        if any(p["path"] == f"/attributes/{AVAILABILITY}" for p in patches):
            after = listing.quantity()
            self.stock_updates.append((time.monotonic(), sku, after if after is not None else 0))
        return answer("ACCEPTED", [])

    def _refused(self, answer: Callable[[str, list[dict[str, Any]]], dict[str, Any]], code: str, message: str,
                 marketplace: str, attribute: str | None = None) -> dict[str, Any]:
        self.stock_refusals += 1
        issue: dict[str, Any] = {"code": code, "message": message, "severity": "ERROR",
                                 "categories": ["INVALID_ATTRIBUTE"] if attribute else [],
                                 "marketplaceIds": [marketplace]}
        if attribute:
            issue["attributeNames"] = [attribute]
        return answer("INVALID", [issue])


# ----------------------------------------------------------------------------- helpers


def _query(request: Request) -> dict[str, str]:
    merged: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        merged.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in merged.items()}


def _known(query: Mapping[str, str], names: set[str]) -> None:
    from simulators.amazon import invalid

    unknown = sorted(set(query) - names)
    if unknown:
        raise invalid(f"Unknown parameter: {unknown[0]}")  # sim text


def _enum(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> list[str] | None:
    from simulators.amazon import invalid

    if name not in query:
        return None
    values = [v.strip() for v in query[name].split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise invalid(f"Invalid value for {name}: {bad[0]}")  # sim text
    return values


def _patch_request(body: Any) -> list[dict[str, Any]]:
    """ListingsItemPatchRequest as the model defines it; what it cannot parse is 400 InvalidInput."""
    from simulators.amazon import invalid

    if not isinstance(body, dict):
        raise invalid("The request body must be a ListingsItemPatchRequest object.")  # sim text
    if not isinstance(body.get("productType"), str) or not body["productType"]:
        raise invalid("productType is required.")
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        raise invalid("patches must contain at least one patch operation.")
    for index, patch in enumerate(patches):
        if not isinstance(patch, dict):
            raise invalid(f"patches[{index}] must be an object.")
        if patch.get("op") not in PATCH_OPS:
            raise invalid(f"patches[{index}].op must be one of {', '.join(PATCH_OPS)}.")
        if not isinstance(patch.get("path"), str) or not patch["path"]:
            raise invalid(f"patches[{index}].path is required.")
        value = patch.get("value")
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, dict) for v in value)):
            raise invalid(f"patches[{index}].value must be an array of objects.")
    return patches


def _apply_patch(attributes: dict[str, list[dict[str, Any]]], patch: Mapping[str, Any]) -> str | None:
    """Apply one patch to ``attributes`` (a copy); the problem as text when it is not valid."""
    path, op, value = patch["path"], patch["op"], patch.get("value")
    name = path.removeprefix("/attributes/")
    if not path.startswith("/attributes/") or not name or "/" in name:
        return f"{path}: only top-level listings item attributes can be patched."
    if op != "delete" and not value:
        return f"{path}: a value is required for {op}."
    if name == AVAILABILITY and value:
        for entry in value:
            code = entry.get("fulfillment_channel_code")
            if not isinstance(code, str) or not code:
                return "fulfillment_channel_code is required (the selector of fulfillment_availability)."
            quantity = entry.get("quantity")
            if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0):
                return f"quantity must be an integer of at least 0, not {json.dumps(quantity)}."
            if op in ("add", "replace") and quantity is None and "is_inventory_available" not in entry:
                return "quantity is required for fulfillment_availability."
    if op in ("add", "replace"):
        attributes[name] = copy.deepcopy(list(value or []))
    elif op == "merge":
        current = attributes.setdefault(name, [])
        for entry in value or []:
            selector = entry.get("fulfillment_channel_code") if name == AVAILABILITY else None
            known = next((e for e in current if selector is not None
                          and e.get("fulfillment_channel_code") == selector), None)
            if known is not None:
                known.update(copy.deepcopy(entry))
            else:
                current.append(copy.deepcopy(entry))
    else:  # delete: the whole attribute, or the entries named by their selector
        if name == AVAILABILITY and value:
            codes = {e.get("fulfillment_channel_code") for e in value}
            attributes[name] = [e for e in attributes.get(name, []) if e.get("fulfillment_channel_code") not in codes]
        else:
            attributes.pop(name, None)
    return None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
