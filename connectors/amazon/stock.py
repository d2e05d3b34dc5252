"""Amazon capability 'stock': a seller SKU's listing, an absolute merchant-fulfilled quantity, read back.

Sources (official): the Listings Items API v2021-08-01 model, ``listingsItems_2021-08-01.json`` in
``amzn/selling-partner-api-models`` (the tests validate every request and answer against it), and the
developer guides "Partially update a listing" / "Merge a listing" (developer-docs.amazon.com/sp-api):

* ``getListingsItem`` - ``GET /listings/2021-08-01/items/{sellerId}/{sku}`` with ``marketplaceIds``
  (required, csv) and ``includedData`` (csv of ``summaries``, ``attributes``, ``issues``, ``offers``,
  ``fulfillmentAvailability``, ``procurement``, ``relationships``, ``productTypes``; default
  ``summaries``). ``summaries[]`` carry ``marketplaceId``, ``asin``, ``productType`` (required);
  ``fulfillmentAvailability[]`` carries ``fulfillmentChannelCode`` and ``quantity`` ("The item quantity
  that you're making available for sale", ``minimum: 0``). An unknown SKU is 404 with an ErrorList.
* ``patchListingsItem`` - ``PATCH`` on the same path, body ``ListingsItemPatchRequest {productType
  (required), patches [{op: add|replace|merge|delete, path, value: [objects]}] (minItems 1)}``; "For
  Amazon listings, JSON Patch documents can add, replace, or delete entire attributes". The quantity is
  the ``fulfillment_availability`` attribute: ``replace`` on ``/attributes/fulfillment_availability``
  with ``[{"fulfillment_channel_code": "DEFAULT", "quantity": N}]`` (DEFAULT = fulfilled by the
  merchant). Answer ``ListingsItemSubmissionResponse {sku, status: ACCEPTED|INVALID|VALID,
  submissionId, issues}``: ACCEPTED "was accepted for processing" (Amazon applies it shortly after),
  INVALID "was not valid and was not accepted" with ``issues`` (``code``, ``message``, ``severity``).
  A ``replace`` sets the whole attribute, so optional members such as ``lead_time_to_ship_max_days``
  are not kept; the ``merge`` operation (changelog of 16 June 2025, "Merge a listing") updates
  ``quantity`` "without specifying other optional fields" given the selector
  ``fulfillment_channel_code`` - one constant (``PATCH_OP``) should a shop rely on those fields.
* ``sellerId`` is "A selling partner identifier, such as a merchant account or vendor code": the
  ``seller_id`` setting. The SKU goes URL-encoded in the path ("URL Encoding").
* Usage plans, from each operation's description: getListingsItem 5 req/s burst 10, patchListingsItem
  5 req/s burst 5; ``x-amzn-RateLimit-Limit`` tells the applied rate, 429 is a throttle - handled as
  for the Orders operations (one client-side bucket per operation, ``SpApiClient``).

Neither operation takes an idempotency key or a compare value: the hub's ``key`` is only logged and
``previous`` is not used; a repeated absolute ``replace`` is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import ConfigurationError, InvalidRequestError, NotFoundError, TransientError

if TYPE_CHECKING:
    from connectors.amazon.connector import AmazonSettings, SpApiClient, UsagePlan

log = structlog.get_logger("tongdao.amazon")

PLATFORM = "amazon"  # the same value as connectors.amazon.connector.PLATFORM (that module imports this one)
LISTING_PATH = "/listings/2021-08-01/items/{sellerId}/{sku}"
#: (rate per second, burst) from the Usage Plan table of each operation's description
LISTINGS_USAGE_PLANS: dict[str, tuple[float, int]] = {
    "getListingsItem": (5.0, 10),
    "patchListingsItem": (5.0, 5),
}
ATTRIBUTE = "fulfillment_availability"
PATCH_PATH = f"/attributes/{ATTRIBUTE}"
#: the JSON Patch operation: ``replace`` writes the whole attribute (an absolute quantity)
PATCH_OP = "replace"
#: fulfillment_channel_code of merchant-fulfilled stock (FBA stock is Amazon's, not ours to set)
DEFAULT_CHANNEL = "DEFAULT"

M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ItemSummary(_Model):
    marketplace_id: str = Field("", alias="marketplaceId")
    asin: str | None = None
    product_type: str = Field("", alias="productType")


class ItemProductType(_Model):
    marketplace_id: str = Field("", alias="marketplaceId")
    product_type: str = Field("", alias="productType")


class FulfillmentAvailability(_Model):
    fulfillment_channel_code: str = Field(alias="fulfillmentChannelCode")
    quantity: int | None = Field(None, ge=0)


class ListingsItem(_Model):
    """``Item`` of getListingsItem, the datasets this capability asks for."""

    sku: str
    summaries: list[ItemSummary] = Field(default_factory=list)
    product_types: list[ItemProductType] = Field(default_factory=list, alias="productTypes")
    fulfillment_availability: list[FulfillmentAvailability] = Field(default_factory=list,
                                                                    alias="fulfillmentAvailability")


class Issue(_Model):
    code: str = ""
    message: str = ""
    severity: str = ""
    attribute_names: list[str] = Field(default_factory=list, alias="attributeNames")


class Submission(_Model):
    """``ListingsItemSubmissionResponse``."""

    sku: str = ""
    status: Literal["ACCEPTED", "INVALID", "VALID"]
    submission_id: str = Field(alias="submissionId")
    issues: list[Issue] = Field(default_factory=list)


class PatchOperation(BaseModel):
    op: Literal["add", "replace", "merge", "delete"]
    path: str
    value: list[dict[str, Any]]


class PatchRequest(BaseModel):
    """``ListingsItemPatchRequest``."""

    model_config = ConfigDict(populate_by_name=True)

    product_type: str = Field(alias="productType", min_length=1)
    patches: list[PatchOperation] = Field(min_length=1)


def quantity_patch(product_type: str, quantity: int) -> dict[str, Any]:
    """The patchListingsItem body that shows ``quantity`` units, merchant-fulfilled."""
    value = [{"fulfillment_channel_code": DEFAULT_CHANNEL, "quantity": quantity}]
    patch = PatchOperation(op=PATCH_OP, path=PATCH_PATH, value=value)
    request = PatchRequest(product_type=product_type, patches=[patch])
    return request.model_dump(by_alias=True)


class AmazonStock(StockTarget):
    """Mixed into :class:`~connectors.amazon.connector.AmazonConnector`; uses its ``_call`` (LWA token,
    usage plans, one retry with a fresh token, ErrorList classification)."""

    if TYPE_CHECKING:
        name: str
        settings: AmazonSettings
        plans: dict[str, UsagePlan]
        apis: dict[str, SpApiClient]

        def _client(self, plan: UsagePlan) -> SpApiClient: ...

        async def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response: ...

    async def find_listing(self, sku: str) -> ListingRef | None:
        """getListingsItem (``includedData=summaries``): the ASIN and product type; None on 404."""
        code = str(sku).strip()
        if not code:
            raise InvalidRequestError("find_listing needs a seller SKU", platform=PLATFORM)
        marketplace = self.settings.marketplace_ids[0]
        try:
            item = await self._listings_item(code, marketplace, ("summaries",))
        except NotFoundError:
            return None
        summary = next((s for s in item.summaries if s.marketplace_id == marketplace), None) or \
            (item.summaries[0] if item.summaries else None)
        extra = {"marketplace_id": marketplace}
        if summary is not None and summary.product_type:
            extra["product_type"] = summary.product_type
        return ListingRef(sku=code, item_id=(summary.asin or "") if summary else "", sku_id=item.sku or code,
                          extra=extra)

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """patchListingsItem: ``replace`` ``fulfillment_availability`` with DEFAULT = ``quantity``.

        ACCEPTED is done (Amazon processes it shortly after); INVALID is refused for good (the
        issues are in the error). ``key``/``previous`` have nowhere to go: the write is absolute."""
        amount = _quantity(quantity)
        seller_sku = listing.sku_id or listing.sku
        marketplace = listing.extra.get("marketplace_id") or self.settings.marketplace_ids[0]
        product_type = listing.extra.get("product_type") or await self._product_type(seller_sku, marketplace)
        self._listings_operation("patchListingsItem")
        response = await self._call("patchListingsItem", "PATCH", self._path(seller_sku),
                                    params={"marketplaceIds": marketplace, "includedData": "issues"},
                                    json=quantity_patch(product_type, amount))
        submission = _parse(Submission, response, "patchListingsItem")
        errors = [i for i in submission.issues if i.severity == "ERROR"]
        if submission.status != "ACCEPTED":
            text = "; ".join(f"{i.code}: {i.message}" for i in errors or submission.issues)[:500] or "no issues given"
            raise InvalidRequestError(f"patchListingsItem {submission.status} for {seller_sku} = {amount}: {text}",
                                      code=(errors or submission.issues or [Issue(code=submission.status)])[0].code,
                                      platform=PLATFORM,
                                      details={"sku": listing.sku, "submission_id": submission.submission_id,
                                               "issues": [i.code for i in submission.issues]})
        if submission.issues:
            log.warning("amazon.stock_issues", connector=self.name, sku=seller_sku,
                        issues=[f"{i.severity} {i.code}" for i in submission.issues])
        log.info("amazon.stock_set", connector=self.name, sku=seller_sku, quantity=amount, key=key,
                 submission_id=submission.submission_id)
        return StockWrite(quantity=amount)

    async def get_stock(self, listing: ListingRef) -> int:
        """getListingsItem (``includedData=fulfillmentAvailability``): the DEFAULT channel's quantity
        (0 when the listing has no merchant-fulfilled availability)."""
        seller_sku = listing.sku_id or listing.sku
        marketplace = listing.extra.get("marketplace_id") or self.settings.marketplace_ids[0]
        item = await self._listings_item(seller_sku, marketplace, ("fulfillmentAvailability",))
        entry = next((a for a in item.fulfillment_availability if a.fulfillment_channel_code == DEFAULT_CHANNEL), None)
        return (entry.quantity or 0) if entry is not None else 0

    # --- helpers ---------------------------------------------------------------------------------

    def _path(self, seller_sku: str) -> str:
        seller = self.settings.seller_id.strip()
        if not seller:
            raise ConfigurationError(f"connector {self.name!r} (amazon): the 'stock' capability needs the seller_id "
                                     "setting (the Listings Items API names the selling partner in its path)",
                                     platform=PLATFORM)
        return LISTING_PATH.format(sellerId=quote(seller, safe=""), sku=quote(seller_sku, safe=""))

    async def _listings_item(self, seller_sku: str, marketplace: str, included: tuple[str, ...]) -> ListingsItem:
        self._listings_operation("getListingsItem")
        response = await self._call("getListingsItem", "GET", self._path(seller_sku),
                                    params={"marketplaceIds": marketplace, "includedData": ",".join(included)})
        return _parse(ListingsItem, response, "getListingsItem")

    async def _product_type(self, seller_sku: str, marketplace: str) -> str:
        """A listing handed over without its product type: ask for it (``productTypes``, ``summaries``)."""
        item = await self._listings_item(seller_sku, marketplace, ("summaries", "productTypes"))
        for entry in (*item.product_types, *item.summaries):
            if entry.product_type and entry.marketplace_id in ("", marketplace):
                return entry.product_type
        raise InvalidRequestError(f"listing {seller_sku} has no product type in {marketplace}", platform=PLATFORM)

    def _listings_operation(self, operation: str) -> None:
        """Register the operation's usage plan and client once (the connector builds those of the
        Orders operations), with the same retry policy and transport as its other SP-API clients."""
        if operation in self.apis:
            return
        from connectors.amazon.connector import UsagePlan  # the connector imports this module

        rate, burst = LISTINGS_USAGE_PLANS[operation]
        plan = UsagePlan(operation, rate, burst)
        client = self._client(plan)
        template = next(iter(self.apis.values()), None)
        if template is not None:
            client.retry, client.transport = template.retry, template.transport
        self.plans[operation] = plan
        self.apis[operation] = client


def _quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise InvalidRequestError(f"a stock quantity is a whole number >= 0, not {quantity!r}", platform=PLATFORM)
    return quantity


def _parse(model: type[M], response: httpx.Response, operation: str) -> M:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise TransientError(f"{operation}: unexpected answer ({type(exc).__name__})", platform=PLATFORM) from None
