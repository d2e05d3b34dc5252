"""Shopify over the GraphQL Admin API: incremental order pull, fulfillment write-back, webhooks.

Wire protocol (shopify.dev, GraphQL Admin API reference, https://shopify.dev/docs/api/admin-graphql):

* ``POST {base_url}/admin/api/{api_version}/graphql.json`` with ``{"query", "variables"}`` as JSON and
  the header ``X-Shopify-Access-Token`` ("All GraphQL Admin API requests require a valid Shopify access
  token ... include your token as a X-Shopify-Access-Token header", https://shopify.dev/docs/api/admin).
  Answers are ``{"data", "errors", "extensions"}``; a failed query has top-level ``errors`` with
  ``extensions.code`` while the HTTP status stays 200.
* HTTP statuses ("Shopify API response status and error codes", https://shopify.dev/docs/api/usage/response-codes):
  401 wrong credentials, 402 shop frozen (Payment Required), 403 missing scope, 404 wrong shop/version,
  423 locked shop, 429 throttled, 5xx Shopify's side.
* Throttling ("GraphQL Admin API rate limits", https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits):
  a leaky bucket of points per app and store; every answer carries ``extensions.cost`` with
  ``requestedQueryCost``, ``actualQueryCost`` and ``throttleStatus {maximumAvailable, currentlyAvailable,
  restoreRate}``; a query the bucket cannot pay for is refused with ``errors[].extensions.code ==
  "THROTTLED"`` (and ``actualQueryCost: null``). We wait what the bucket needs, ``(requested -
  available) / restoreRate`` seconds, through the shared limiter: in-process when short, otherwise as
  ``ThrottledError(retry_after=...)`` so that Temporal waits. When an answer shows the bucket too low
  for our biggest query, the limiter pauses before the next call instead of collecting a THROTTLED.
  A single query above 1,000 requested points is refused (``MAX_COST_EXCEEDED``): see
  :mod:`connectors.shopify.queries`.
* Orders: ``orders(first, after, query: "updated_at:>='…' updated_at:<'…'", sortKey: UPDATED_AT)`` with
  cursor pagination (``pageInfo {hasNextPage endCursor}``, ``first`` ≤ 250); the search syntax
  (https://shopify.dev/docs/api/usage/search-syntax) wants date values quoted and offers ``:<``, ``:>=``.
  The cursor marks a position in the sort order, not an offset, so an order updated while we page
  moves past ``until`` (out of this window, into a later one) without shifting the others: nothing
  slips between pages. Only the last 60 days are readable without ``read_all_orders``.
* Write-back (fulfillment orders, "fulfillment v2"): read the order's ``fulfillmentOrders`` (status
  OPEN/IN_PROGRESS, ``lineItems {remainingQuantity lineItem {id}}``) and ``fulfillments`` (``trackingInfo``),
  then ``fulfillmentCreate(fulfillment: {lineItemsByFulfillmentOrder: [{fulfillmentOrderId,
  fulfillmentOrderLineItems: [{id, quantity}]}], trackingInfo: {company, number}, notifyCustomer})``;
  "if the fulfillment order line items are left blank then all the fulfillment order line items of
  the associated fulfillment order ID will be fulfilled" (FulfillmentInput). One mutation covers the
  fulfillment orders of one location ("The fulfillment orders are associated with the same Order and
  are assigned to the same Location"), so a package spread over locations is one mutation per location.
* Webhooks ``orders/create``, ``orders/updated``, ``orders/cancelled``, ``orders/paid``,
  ``orders/fulfilled``, ``orders/partially_fulfilled``, ``orders/edited`` (body: the REST order, ``id``)
  and ``refunds/create`` (body: the REST refund, ``order_id``), verified as in :mod:`connectors.shopify.webhooks`.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator

from canonical import Shipment
from connectors.base import (
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    IngestDefaults,
    OrderSource,
    PushReceiver,
    PushResult,
    RawRecord,
    ShipmentSink,
    WriteBackResult,
    connector_kind,
    secret,
)
from connectors.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from connectors.http import ApiClient
from connectors.pagination import time_windows
from connectors.ratelimit import RateLimiter
from connectors.shopify.queries import (
    FULFILLMENT_CREATE_MUTATION,
    FULFILLMENT_STATE_QUERY,
    ORDER_LINES_QUERY,
    ORDER_QUERY,
    ORDERS_PAGE_QUERY,
    SHOP_QUERY,
)
from connectors.shopify.stock import ShopifyStock
from connectors.shopify.webhooks import (
    EVENT_ID_HEADER,
    HMAC_HEADER,
    SHOP_HEADER,
    TOPIC_HEADER,
    WEBHOOK_ID_HEADER,
    verify_webhook,
)

log = structlog.get_logger("tongdao.shopify")

T = TypeVar("T")

PLATFORM = "shopify"
DEFAULT_API_VERSION = "2025-10"
MAX_PAGE_SIZE = 250  # "first" of a connection: at most 250 nodes per page
GID_ORDER = "gid://shopify/Order/"
GID_LINE = "gid://shopify/LineItem/"

#: The WMS's carrier codes → the ``trackingInfo.company`` Shopify knows. Names are taken from the
#: "Supported tracking companies" list of ``FulfillmentTrackingInfo.company`` (Admin GraphQL reference;
#: "SF Express" and "China Post" are on it, so Shopify builds the tracking URL). The Chinese domestic
#: express companies are not on that list: Shopify then shows the name as given, without a link (it
#: "will guess the tracking provider" from the number format, not reliably), so we send their usual
#: English names. Override or extend with the ``carriers`` setting.
DEFAULT_CARRIERS: dict[str, str] = {
    "SF": "SF Express",
    "EMS": "China Post",  # EMS is China Post's express service; "China Post" is the listed company
    "POST": "China Post",
    "POSTB": "China Post",
    "ZTO": "ZTO Express",
    "YTO": "YTO Express",
    "STO": "STO Express",
    "YUNDA": "Yunda Express",
    "JD": "JD Logistics",
    "DBL": "Deppon Express",
    "DBKD": "Deppon Express",
    "JTSD": "J&T Express",
    "HTKY": "Best Express",
    "ZJS": "ZJS Express",
    "YUNEXPRESS": "YunExpress",
    "4PX": "4PX",
    "DHL": "DHL Express",
    "UPS": "UPS",
    "FEDEX": "FedEx",
    "USPS": "USPS",
}

#: webhook topics that say "this order changed"; ``refunds/create`` names the order as ``order_id``
ORDER_TOPICS = frozenset({
    "orders/create", "orders/updated", "orders/cancelled", "orders/paid", "orders/fulfilled",
    "orders/partially_fulfilled", "orders/edited",
})
REFUND_TOPICS = frozenset({"refunds/create"})
#: fulfillment order states that can still be fulfilled (FulfillmentOrderStatus)
FULFILLABLE_FO_STATUSES = frozenset({"OPEN", "IN_PROGRESS"})
#: Fulfillment.status values that no longer hold a parcel (FulfillmentStatus: CANCELLED, ERROR, FAILURE)
DEAD_FULFILLMENT_STATUSES = frozenset({"CANCELLED", "ERROR", "FAILURE"})

# GraphQL error codes (errors[].extensions.code) and what they mean for a retry
THROTTLED_CODES = frozenset({"THROTTLED"})
AUTH_CODES = frozenset({"ACCESS_DENIED", "UNAUTHORIZED", "FORBIDDEN"})
TRANSIENT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
#: how many webhook ids / event ids the connector remembers to drop redeliveries
SEEN_WEBHOOKS = 4096


def order_gid(external_id: str) -> str:
    """``450789469`` or ``gid://shopify/Order/450789469`` → the GID; anything else is refused."""
    text = str(external_id).strip()
    tail = text.removeprefix(GID_ORDER)
    if not tail.isdigit():
        raise InvalidRequestError(f"a Shopify order id is a number or an Order GID, not {external_id!r}",
                                  platform=PLATFORM)
    return GID_ORDER + tail


def legacy_id(gid: str) -> str:
    """The numeric tail of a GID (``gid://shopify/LineItem/1`` → ``1``)."""
    return str(gid).rsplit("/", 1)[-1]


def format_search_time(moment: datetime) -> str:
    """A quoted UTC timestamp for the search syntax, whole seconds (``updatedAt`` has no fractions)."""
    if moment.tzinfo is None:
        raise InvalidRequestError("Shopify times need a timezone-aware datetime", platform=PLATFORM)
    return "'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def updated_query(since: datetime, until: datetime) -> str:
    """The ``query`` argument for orders updated in [since, until): ``updated_at:>='…' updated_at:<'…'``
    (terms without a connective are ANDed, per the search syntax)."""
    return f"updated_at:>={format_search_time(since)} updated_at:<{format_search_time(until)}"


def parse_time(value: Any) -> datetime | None:
    """Shopify's ISO 8601 ``DateTime`` (``2025-06-18T04:00:00Z``) → aware UTC; None when absent/bad."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def classify_graphql_errors(errors: list[Any], cost: Mapping[str, Any] | None) -> ConnectorError:
    """Top-level GraphQL ``errors`` → the connector error taxonomy (THROTTLED waits for the bucket)."""
    codes = [str((e.get("extensions") or {}).get("code") or "") for e in errors if isinstance(e, Mapping)]
    message = "; ".join(str(e.get("message") or "") for e in errors if isinstance(e, Mapping))[:500] or "error"
    code = next((c for c in codes if c), None)
    details = {"codes": codes}
    if any(c in THROTTLED_CODES for c in codes) or message.strip().lower() == "throttled":
        return ThrottledError(f"GraphQL: {message}", code="THROTTLED", platform=PLATFORM,
                              retry_after=bucket_wait(cost), details=details)
    if any(c in AUTH_CODES for c in codes):
        return AuthError(f"GraphQL: {message}", code=code, platform=PLATFORM, details=details)
    if any(c in TRANSIENT_CODES for c in codes):
        return TransientError(f"GraphQL: {message}", code=code, platform=PLATFORM, details=details)
    # MAX_COST_EXCEEDED, undefinedField, argumentLiteralsIncompatible ...: our query is wrong
    return InvalidRequestError(f"GraphQL: {message}", code=code, platform=PLATFORM, details=details)


def bucket_wait(cost: Mapping[str, Any] | None, needed: float | None = None) -> float:
    """Seconds until the bucket holds ``needed`` points (default: the requested cost), at least 0.5."""
    if not isinstance(cost, Mapping):
        return 1.0
    status = cost.get("throttleStatus") or {}
    try:
        requested = float(needed if needed is not None else cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return 1.0
    if rate <= 0:
        return 1.0
    return max(0.5, (requested - available) / rate)


class ShopifySettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(description="the shop, e.g. https://example.myshopify.com (or a simulator)")
    api_version: str = Field(DEFAULT_API_VERSION, pattern=r"^(\d{4}-\d{2}|unstable)$")
    shop: str = Field("", description="our shop name; empty = the myshopify domain, else the connector name")
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="orders per listing page")
    location_id: str = Field("", description="fulfil only fulfillment orders assigned to this location (GID), "
                             "and write stock there; empty = every location / stock at the primary location")
    carriers: dict[str, str] = Field(default_factory=dict, description="WMS carrier code → Shopify company")
    notify_customer: bool = Field(False, description="fulfillmentCreate notifyCustomer")
    max_window_hours: float = Field(24.0, gt=0, le=24 * 60, description="our own bound per listing query")
    order_concurrency: int = Field(4, ge=1, le=32, description="orders read at once (each ≈ 800 points)")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = httpx.URL(value.strip())
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL, e.g. https://example.myshopify.com")
        return value.strip().rstrip("/")

    @field_validator("carriers")
    @classmethod
    def _carriers(cls, value: dict[str, str]) -> dict[str, str]:
        return {str(k).strip().upper(): str(v).strip() for k, v in value.items() if str(v).strip()}


class ShopifySecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    access_token: SecretStr
    client_secret: SecretStr | None = Field(None, description="the app's client secret (webhook HMAC)")


@connector_kind("shopify", title="Shopify (GraphQL Admin API)")
class ShopifyConnector(Connector, OrderSource, ShipmentSink, PushReceiver, ShopifyStock):
    Settings = ShopifySettings
    Secrets = ShopifySecrets
    channel = "shopify"

    #: * ``lag`` 60 s: the ``query`` filter of ``orders`` runs on Shopify's search index, which is
    #:   updated asynchronously after a change (not documented as a figure; we stay a minute behind);
    #: * ``overlap`` 10 min: re-reading costs one cheap listing and a dedupe;
    #: * ``window`` 1 h / ``chunk`` 1 day, as for Taobao: keyset pages make window width harmless, the
    #:   checkpoint moves every hour of orders.
    ingest_defaults = IngestDefaults(lag=timedelta(seconds=60), overlap=timedelta(minutes=10),
                                     chunk=timedelta(days=1), window=timedelta(hours=1))

    settings: ShopifySettings
    secrets: ShopifySecrets

    def __init__(self, name: str, settings: ShopifySettings, secrets: ShopifySecrets) -> None:
        super().__init__(name, settings, secrets)
        if not secret(secrets.access_token):
            raise ConfigurationError(f"connector {name!r} (shopify): access_token must not be empty")
        self.endpoint = f"{settings.base_url}/admin/api/{settings.api_version}/graphql.json"
        self.carriers = DEFAULT_CARRIERS | settings.carriers
        self._largest_cost = 0.0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.api = ApiClient(
            platform=PLATFORM,
            base_url="",
            signer=self._sign,
            check=self._check_response,
            limiter=RateLimiter(settings.rate_limit_per_s),
            timeout_s=settings.timeout_s,
        )

    def shop_of(self, payload: dict[str, Any]) -> str:
        """The ``shop`` setting, else the ``*.myshopify.com`` host of ``base_url``, else our name."""
        if self.settings.shop:
            return self.settings.shop
        host = httpx.URL(self.settings.base_url).host
        return host if host.endswith(".myshopify.com") else self.name

    def carrier_company(self, carrier_code: str) -> str:
        """The ``trackingInfo.company`` for a WMS carrier code (unknown codes are sent as they are)."""
        return self.carriers.get(carrier_code.strip().upper(), carrier_code.strip())

    # --- transport -----------------------------------------------------------------------------

    def _sign(self, request: httpx.Request) -> None:
        request.headers["X-Shopify-Access-Token"] = secret(self.secrets.access_token)

    def _check_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 401:
            raise AuthError("HTTP 401: invalid access token", code="401", platform=PLATFORM)
        if status == 403:
            raise AuthError("HTTP 403: the app lacks an access scope for this call", code="403", platform=PLATFORM)
        if status == 402:
            raise ConfigurationError("HTTP 402: the shop is frozen (Payment Required)", code="402", platform=PLATFORM)
        if status == 423:
            raise ConfigurationError("HTTP 423: the shop is locked", code="423", platform=PLATFORM)
        if status == 404:
            raise ConfigurationError(f"HTTP 404: check base_url and api_version ({self.settings.api_version})",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status}: {response.text[:200]}", code=str(status), platform=PLATFORM)
        body = _json(response)
        cost = (body.get("extensions") or {}).get("cost")
        errors = body.get("errors")
        if errors:
            raise classify_graphql_errors(errors if isinstance(errors, list) else [{"message": str(errors)}], cost)
        self._note_cost(cost)

    def _note_cost(self, cost: Any) -> None:
        """Pause the shared limiter when the bucket could not pay for our biggest query."""
        if not isinstance(cost, Mapping):
            return
        try:
            requested = float(cost.get("requestedQueryCost") or 0)
        except (TypeError, ValueError):
            return
        self._largest_cost = max(self._largest_cost, requested)
        status = cost.get("throttleStatus") or {}
        try:
            available = float(status.get("currentlyAvailable"))
        except (TypeError, ValueError):
            return
        if available < self._largest_cost:
            self.api.limiter.penalize(bucket_wait(cost, needed=self._largest_cost))

    async def _graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one document; return ``data`` (errors raised, classified, by the response check)."""
        payload = {"query": query, "variables": dict(variables or {})}
        response = await self.api.send_with_retry(
            lambda: self.api.build("POST", self.endpoint, json=payload,
                                   headers={"Accept": "application/json"}))
        data = _json(response).get("data")
        if not isinstance(data, dict):
            raise TransientError("GraphQL answer without data", platform=PLATFORM)
        return data

    # --- orders --------------------------------------------------------------------------------

    async def _listing_pages(self, since: datetime, until: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """Listing pages (ids and ``updatedAt``) of one window, oldest first, as read."""
        after: str | None = None
        query = updated_query(since, until)
        while True:
            data = await self._graphql(ORDERS_PAGE_QUERY, {"first": self.settings.page_size, "after": after,
                                                           "query": query})
            connection = data.get("orders") or {}
            nodes = [n for n in connection.get("nodes") or [] if isinstance(n, dict) and n.get("id")]
            if nodes:
                yield nodes
            info = connection.get("pageInfo") or {}
            after = info.get("endCursor")
            if not info.get("hasNextPage") or not after or not nodes:
                return

    def _windows(self, since: datetime, until: datetime) -> Iterable[tuple[datetime, datetime]]:
        _require_aware(since, until)
        return time_windows(_floor(since), _floor(until), timedelta(hours=self.settings.max_window_hours))

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Full orders updated in [since, until), one batch per listing page, handed over as soon as
        that page's orders are read. An order comes once per pull, again only if it was updated after
        the copy we yielded; an order that vanished between listing and reading is skipped."""
        yielded: dict[str, datetime] = {}
        for start, end in self._windows(since, until):
            async for page in self._listing_pages(start, end):
                todo = _fresh(page, yielded)
                if not todo:
                    continue
                records = await self._read_orders(todo)
                for record in records:
                    yielded[record.external_id] = record.modified_at or datetime.min.replace(tzinfo=UTC)
                if records:
                    yield records

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every order id listed as updated in [since, until) with its ``updatedAt``, oldest first
        (the cheap listing only), for ``tongdao orders reconcile``."""
        found: dict[str, datetime | None] = {}
        for start, end in self._windows(since, until):
            async for page in self._listing_pages(start, end):
                for node in page:
                    oid = _order_id(node)
                    updated = parse_time(node.get("updatedAt"))
                    known = found.get(oid)
                    if oid not in found or (updated is not None and (known is None or updated > known)):
                        found[oid] = updated
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(found.items(), key=lambda item: (item[1] or never, int(item[0]) if item[0].isdigit() else 0))

    async def _read_orders(self, nodes: list[dict[str, Any]]) -> list[RawRecord]:
        limit = asyncio.Semaphore(self.settings.order_concurrency)

        async def one(node: dict[str, Any]) -> RawRecord | None:
            async with limit:
                try:
                    return await self._order_record(str(node["id"]))
                except NotFoundError:
                    log.warning("shopify.listed_order_not_found", connector=self.name, order=_order_id(node))
                    return None

        records = await _gather_or_cancel([one(n) for n in nodes])
        return sorted((r for r in records if r is not None),
                      key=lambda r: (r.modified_at or datetime.min.replace(tzinfo=UTC), r.external_id))

    async def _order_record(self, gid: str) -> RawRecord:
        data = await self._graphql(ORDER_QUERY, {"id": gid})
        order = data.get("order")
        if not isinstance(order, dict) or not order:
            raise NotFoundError(f"no order {legacy_id(gid)}", code="NOT_FOUND", platform=PLATFORM)
        await self._complete_lines(order)
        return RawRecord(external_id=_order_id(order), modified_at=parse_time(order.get("updatedAt")),
                         payload=order)

    async def _complete_lines(self, order: dict[str, Any]) -> None:
        """Read the remaining line items when an order has more than one page of them."""
        lines = order.get("lineItems") or {}
        info = lines.get("pageInfo") or {}
        while info.get("hasNextPage") and info.get("endCursor"):
            data = await self._graphql(ORDER_LINES_QUERY, {"id": order["id"], "after": info["endCursor"]})
            more = ((data.get("order") or {}).get("lineItems")) or {}
            lines.setdefault("nodes", []).extend(more.get("nodes") or [])
            info = more.get("pageInfo") or {}
            lines["pageInfo"] = info

    async def get_order(self, external_id: str) -> RawRecord:
        return await self._order_record(order_gid(external_id))

    # --- shipments -----------------------------------------------------------------------------

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """Fulfil the order's open fulfillment order lines (all, or those of ``line_ids``: LineItem
        GIDs or their numeric ids) with this tracking number. Idempotent: the order's fulfillments
        are read first, and a tracking number already on one of them is answered ``taken=False`` with
        the numbers Shopify shows; lines already fulfilled under another number are the same answer
        (the caller sees the conflict). A cancelled order, or nothing left to fulfil without any
        tracking on the order, is refused (InvalidRequestError)."""
        gid = order_gid(external_order_id)
        wanted = _line_gids(line_ids)
        state = await self._fulfillment_state(gid)
        on_platform = _tracking_numbers(state)
        if shipment.tracking_number in on_platform:
            return WriteBackResult(taken=False, tracking_on_platform=sorted(on_platform))
        if state.get("cancelledAt"):
            raise InvalidRequestError(f"order {legacy_id(gid)} is cancelled; nothing can be fulfilled",
                                      platform=PLATFORM)
        groups = self._fulfillable(state, wanted, shipment)
        if not groups:
            if on_platform:
                return WriteBackResult(taken=False, tracking_on_platform=sorted(on_platform))
            raise InvalidRequestError(f"order {legacy_id(gid)} has nothing left to fulfil "
                                      f"({state.get('displayFulfillmentStatus') or 'unknown'})", platform=PLATFORM)
        tracking: dict[str, Any] = {"company": self.carrier_company(shipment.carrier_code),
                                    "number": shipment.tracking_number}
        for location, items in groups.items():
            fulfillment = {"lineItemsByFulfillmentOrder": items, "trackingInfo": tracking,
                           "notifyCustomer": self.settings.notify_customer}
            data = await self._graphql(FULFILLMENT_CREATE_MUTATION, {"fulfillment": fulfillment})
            result = data.get("fulfillmentCreate") or {}
            errors = result.get("userErrors") or []
            if errors or not result.get("fulfillment"):
                again = _tracking_numbers(await self._fulfillment_state(gid))
                if shipment.tracking_number in again:  # a concurrent or earlier attempt made it
                    return WriteBackResult(taken=False, tracking_on_platform=sorted(again))
                text = "; ".join(str(e.get("message") or "") for e in errors if isinstance(e, Mapping))
                raise InvalidRequestError(
                    f"fulfillmentCreate refused order {legacy_id(gid)}: {text or 'no fulfillment'}",
                    platform=PLATFORM, details={"location": location})
        log.info("shopify.fulfilled", connector=self.name, order=legacy_id(gid), split=bool(wanted),
                 locations=len(groups))
        return WriteBackResult(taken=True)

    async def _fulfillment_state(self, gid: str) -> dict[str, Any]:
        data = await self._graphql(FULFILLMENT_STATE_QUERY, {"id": gid})
        order = data.get("order")
        if not isinstance(order, dict):
            raise NotFoundError(f"no order {legacy_id(gid)}", code="NOT_FOUND", platform=PLATFORM)
        return order

    def _fulfillable(self, state: Mapping[str, Any], wanted: set[str] | None,
                     shipment: Shipment) -> dict[str, list[dict[str, Any]]]:
        """``lineItemsByFulfillmentOrder`` entries per location for what this package ships."""
        quantities = {_line_gid(x.line_id): x.quantity for x in shipment.lines if x.line_id}
        groups: dict[str, list[dict[str, Any]]] = {}
        for fo in _nodes(state.get("fulfillmentOrders")):
            if str(fo.get("status") or "") not in FULFILLABLE_FO_STATUSES:
                continue
            location = str((((fo.get("assignedLocation") or {}).get("location")) or {}).get("id") or "")
            if self.settings.location_id and location and location != self.settings.location_id:
                continue
            items = []
            for item in _nodes(fo.get("lineItems")):
                remaining = int(item.get("remainingQuantity") or 0)
                line = str(((item.get("lineItem") or {}).get("id")) or "")
                if remaining <= 0 or (wanted is not None and line not in wanted):
                    continue
                quantity = min(remaining, quantities.get(line, remaining)) if wanted is not None else remaining
                items.append({"id": item["id"], "quantity": quantity})
            if not items:
                continue
            entry: dict[str, Any] = {"fulfillmentOrderId": fo["id"]}
            if wanted is not None:  # a split package names its lines; a whole order takes each FO entirely
                entry["fulfillmentOrderLineItems"] = items
            groups.setdefault(location, []).append(entry)
        return groups

    # --- webhooks ------------------------------------------------------------------------------

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        """Verify ``X-Shopify-Hmac-Sha256`` (401 when wrong), drop a redelivery (same webhook or event
        id, remembered here and passed on as ``event_id`` for the engine's own dedupe), and turn an
        order or refund topic into ``order_changed`` without a record: the engine reads the GraphQL
        order with ``get_order`` (the webhook body is the REST shape, not what the mapping reads)."""
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
        client_secret = secret(self.secrets.client_secret)
        if not client_secret:
            log.error("shopify.webhook_without_secret", connector=self.name)
            return PushResult(status_code=401, media_type="text/plain", body="no client_secret configured")
        if not verify_webhook(body, client_secret, lower.get(HMAC_HEADER)):
            log.warning("shopify.webhook_bad_hmac", connector=self.name, topic=lower.get(TOPIC_HEADER))
            return PushResult(status_code=401, media_type="text/plain", body="invalid hmac")
        topic = lower.get(TOPIC_HEADER, "").strip().lower()
        webhook_id = lower.get(WEBHOOK_ID_HEADER, "").strip()
        event_id = lower.get(EVENT_ID_HEADER, "").strip() or webhook_id
        keys = [k for k in (f"w:{webhook_id}" if webhook_id else "", f"e:{event_id}" if event_id else "") if k]
        if any(k in self._seen for k in keys):
            log.info("shopify.webhook_duplicate", connector=self.name, topic=topic, webhook_id=webhook_id)
            return PushResult(body="duplicate")
        try:
            document = json.loads(body.decode("utf-8")) if body else {}
        except (UnicodeDecodeError, ValueError):
            return PushResult(status_code=400, media_type="text/plain", body="body is not JSON")
        order_id = None
        if isinstance(document, dict):
            if topic in ORDER_TOPICS:
                order_id = document.get("id")
            elif topic in REFUND_TOPICS:
                order_id = document.get("order_id")
        self._remember(keys)
        if order_id in (None, ""):
            return PushResult(body="ignored")
        event = {"type": "order_changed", "external_id": str(order_id), "event_id": event_id or None,
                 "record": None, "topic": topic, "shop_domain": lower.get(SHOP_HEADER, "")}
        return PushResult(events=[event], body="ok")

    def _remember(self, keys: list[str]) -> None:
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > SEEN_WEBHOOKS:
            self._seen.popitem(last=False)

    # --- connectivity --------------------------------------------------------------------------

    async def test(self) -> str:
        """One cheap authenticated call: ``shop { name myshopifyDomain currencyCode }``."""
        data = await self._graphql(SHOP_QUERY)
        shop = data.get("shop") or {}
        return (f"ok: shop {shop.get('name') or '?'} ({shop.get('myshopifyDomain') or '?'}), "
                f"currency {shop.get('currencyCode') or '?'}, api_version {self.settings.api_version}")


# --- helpers --------------------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(f"HTTP {response.status_code}: not JSON", platform=PLATFORM) from exc
    return body if isinstance(body, dict) else {}


def _nodes(connection: Any) -> list[dict[str, Any]]:
    """A connection's nodes (``{"nodes": [...]}`` or ``{"edges": [{"node"}]}``) or a plain list."""
    if isinstance(connection, list):
        return [x for x in connection if isinstance(x, dict)]
    if not isinstance(connection, Mapping):
        return []
    if isinstance(connection.get("nodes"), list):
        return [x for x in connection["nodes"] if isinstance(x, dict)]
    edges = connection.get("edges") or []
    return [e["node"] for e in edges if isinstance(e, Mapping) and isinstance(e.get("node"), dict)]


def _order_id(node: Mapping[str, Any]) -> str:
    return str(node.get("legacyResourceId") or legacy_id(str(node.get("id") or "")))


def _line_gid(value: str) -> str:
    text = str(value).strip()
    return text if text.startswith("gid://") else GID_LINE + text


def _line_gids(line_ids: list[str] | None) -> set[str] | None:
    if not line_ids:
        return None
    gids = {_line_gid(x) for x in line_ids if str(x).strip()}
    bad = [g for g in gids if not g.startswith(GID_LINE) or not legacy_id(g).isdigit()]
    if bad:
        raise InvalidRequestError(f"a Shopify line item id is a number or a LineItem GID, not {bad[0]!r}",
                                  platform=PLATFORM)
    return gids


def _tracking_numbers(state: Mapping[str, Any]) -> set[str]:
    """Tracking numbers of the order's live fulfillments."""
    numbers: set[str] = set()
    for fulfillment in _nodes(state.get("fulfillments")):
        if str(fulfillment.get("status") or "") in DEAD_FULFILLMENT_STATUSES:
            continue
        for info in fulfillment.get("trackingInfo") or []:
            if isinstance(info, Mapping) and info.get("number"):
                numbers.add(str(info["number"]))
    return numbers


def _fresh(page: list[dict[str, Any]], yielded: Mapping[str, datetime]) -> list[dict[str, Any]]:
    """The page's orders not yet handed over (or updated since), each once."""
    never = datetime.min.replace(tzinfo=UTC)
    latest: dict[str, dict[str, Any]] = {}
    for node in page:
        oid = _order_id(node)
        updated = parse_time(node.get("updatedAt")) or never
        if oid in yielded and updated <= yielded[oid]:
            continue
        known = latest.get(oid)
        if known is None or updated > (parse_time(known.get("updatedAt")) or never):
            latest[oid] = node
    return list(latest.values())


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)


async def _gather_or_cancel(coros: list[Awaitable[T]]) -> list[T]:
    """``gather`` that cancels the siblings when one fails, so no call outlives the activity."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
