"""Amazon Selling Partner API (SP-API): incremental order pull, one order, shipment confirmation.

Sources, all official (the OpenAPI models are the ones in ``amzn/selling-partner-api-models``,
``models/orders-api-model/``; the tests validate every request and answer against them):

* Orders API **v2026-01-01** (``orders_2026-01-01.json``), the current version: ``searchOrders``
  (``GET /orders/2026-01-01/orders``) and ``getOrder`` (``GET /orders/2026-01-01/orders/{orderId}``).
  v0's ``getOrders``/``getOrder``/``getOrderItems``/``getOrderAddress``/``getOrderBuyerInfo`` are deprecated
  (removal 27 March 2027, "New: Introducing the Orders API v2026-01-01" and the "Orders API Migration
  Guide"): the order items now always come with the order, and buyer, recipient, proceeds, packages...
  are asked for with ``includedData``. No Restricted Data Token any more ("Accessing PII with the
  Orders API v2026-01-01 does not require a Restricted Data Token", "Access Orders PII"): PII comes with
  the Direct-to-Consumer Delivery (Restricted) role and only while the order is UNSHIPPED,
  PARTIALLY_SHIPPED or SHIPPED; otherwise those fields are simply absent.
* Shipment write-back: the 2026-01-01 model has **no** write operation. The documented one is v0
  ``confirmShipment`` (``POST /orders/v0/orders/{orderId}/shipmentConfirmation``, ``ordersV0.json``),
  which is *not* among the deprecated v0 operations. "Confirm the shipment status" (developer-docs):
  several packages = several calls "with the same order ID but different package reference IDs"; the
  package reference ID is "any positive numerical value ... meant for the purpose of editing a shipment
  ... submit another confirmShipment operation with the same packageReferenceID. The other shipment
  details are edited". We derive it from the tracking number, so a repeat is a harmless edit with the
  same values, and a different parcel never overwrites another one.
* Searching: ``lastUpdatedAfter`` / ``lastUpdatedBefore`` are both inclusive ("at or after", "at or
  before"); ``lastUpdatedBefore`` "must be ... at least two minutes before the time of the request";
  ``maxResultsPerPage`` 1..100 (default 100); the next page is asked with ``paginationToken`` = the
  previous ``pagination.nextToken`` and "All other parameters must be provided with the same values";
  the token expires after 24 hours. Array parameters have no ``collectionFormat`` in the model, so they
  go as Swagger 2.0's default ``csv`` (``marketplaceIds=A,B``).
* Usage plans, from each operation's description in the models: searchOrders 0.0056 req/s burst 20,
  getOrder 0.5 burst 30, confirmShipment 2 burst 10; "The ``x-amzn-RateLimit-Limit`` response header
  returns the usage plan rate limits that are applied", and a throttled call answers 429 ("Usage Plans
  and Rate Limits": token bucket). One bucket per operation here, refilled at the rate the header last
  reported; a wait longer than the short-retry budget raises ``ThrottledError`` (Temporal waits).
* Errors: ``ErrorList`` ``{"errors": [{"code", "message", "details"}]}``; 403 "Access Denied,
  Unauthorized, Expired Token, or Invalid Signature" (and v0's 401 "does not contain a valid token"):
  the token is exchanged again once, then it is an ``AuthError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator

from canonical import Shipment
from connectors.amazon.auth import DEFAULT_LWA_ENDPOINT, LwaTokenSource, check_lwa_response
from connectors.amazon.stock import AmazonStock
from connectors.base import (
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    IngestDefaults,
    OrderSource,
    RawRecord,
    ReceiverSource,
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
from connectors.http import ApiClient, parse_retry_after
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.amazon")

PLATFORM = "amazon"
DEFAULT_ENDPOINT = "https://sellingpartnerapi-na.amazon.com"
SEARCH_PATH = "/orders/2026-01-01/orders"
ORDER_PATH = "/orders/2026-01-01/orders/{orderId}"
CONFIRM_PATH = "/orders/v0/orders/{orderId}/shipmentConfirmation"
RATE_HEADER = "x-amzn-RateLimit-Limit"
USER_AGENT = "Tongdao/1.0 (Language=Python)"

#: datasets a pulled order carries (``includedData``); the order items always come with the order
INCLUDED_DATA = ("BUYER", "RECIPIENT", "PROCEEDS", "PROMOTION", "CANCELLATION", "FULFILLMENT", "PACKAGES")
#: what the write-back needs to see: status, per-item quantities, the packages already confirmed
WRITEBACK_DATA = ("FULFILLMENT", "PACKAGES", "CANCELLATION")
MAX_PAGE_SIZE = 100
MAX_MARKETPLACES = 50  # marketplaceIds "maxItems": 50
#: "lastUpdatedBefore ... must be ... at least two minutes before the time of the request"
MIN_AGE = timedelta(minutes=2)

#: (rate per second, burst) per operation, from the **Usage Plan** table in each operation's description
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "searchOrders": (0.0056, 20),
    "getOrder": (0.5, 30),
    "confirmShipment": (2.0, 10),
}

#: FulfillmentStatus values (``orders_2026-01-01.json`` definitions.FulfillmentStatus)
NOT_PAID = frozenset({"PENDING", "PENDING_AVAILABILITY"})
CLOSED = frozenset({"CANCELLED", "UNFULFILLABLE"})

#: The WMS's carrier codes → (Amazon ``carrierCode``, ``carrierName``). ``carrierCode`` "Identifies the
#: carrier ... For more information, refer to the CarrierCode announcement" (ordersV0.json PackageDetail):
#: listed carriers by their Amazon code; the others as "Other" with the name, which the announcement
#: allows ("If the seller is using an unlisted carrier, they can use the CarrierCode value of Other, then
#: provide the carrier name in the CarrierName field"). Which Chinese carriers Amazon lists is not in
#: the model: SF Express, China Post and JD Logistics are used as listed names, the rest go as Other.
CARRIERS: dict[str, tuple[str, str]] = {
    "SF": ("SF Express", "SF Express"),
    "EMS": ("China Post", "China Post EMS"),
    "POSTB": ("China Post", "China Post"),
    "POST": ("China Post", "China Post"),
    "JD": ("JD Logistics", "JD Logistics"),
    "ZTO": ("Other", "ZTO Express"),
    "YTO": ("Other", "YTO Express"),
    "STO": ("Other", "STO Express"),
    "YUNDA": ("Other", "Yunda Express"),
    "DBL": ("Other", "Deppon Express"),
    "DBKD": ("Other", "Deppon Express"),
    "HTKY": ("Other", "Best Express"),
    "ZJS": ("Other", "ZJS Express"),
    "JTSD": ("Other", "J&T Express"),
    "UPS": ("UPS", "UPS"),
    "USPS": ("USPS", "USPS"),
    "FEDEX": ("FedEx", "FedEx"),
    "DHL": ("DHL", "DHL"),
}

_ORDER_ID = re.compile(r"^\d{3}-\d{7}-\d{7}$")  # "An Amazon-defined order identifier, in 3-7-7 format"


def format_time(moment: datetime, *, up: bool = False) -> str:
    """ISO 8601 in UTC with milliseconds; ``up`` rounds a sub-millisecond rest up instead of down
    (an inclusive upper bound must not lose the last microseconds of a window)."""
    moment = moment.astimezone(UTC)
    rest = moment.microsecond % 1000
    if rest:
        moment = moment + timedelta(microseconds=1000 - rest) if up else moment - timedelta(microseconds=rest)
    if moment.microsecond == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 date-time (``2024-12-25T14:45:00Z``) as an aware UTC datetime, else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else None


def package_reference_id(tracking_number: str) -> str:
    """A positive number (what PackageReferenceId accepts) derived from the tracking number: the same
    parcel always gets the same reference, so a repeat edits it with the same values."""
    digest = hashlib.sha256(tracking_number.strip().encode()).digest()
    return str(int.from_bytes(digest[:4], "big") % 999_999_999 + 1)


def sp_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``errors`` of an SP-API ErrorList answer (empty when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class TokenRejected(AuthError):
    """401/403 Unauthorized: the access token was refused (expired, revoked); exchange it once more."""

    def __init__(self, message: str, token: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.token = token


def classify(response: httpx.Response, operation: str) -> ConnectorError | None:
    """The connector error for an SP-API answer of 400 and above (429/5xx are the ApiClient's)."""
    status = response.status_code
    if status < 400:
        return None
    errors = sp_errors(response)
    first = errors[0] if errors else {}
    code = str(first.get("code") or status)
    text = f"{operation}: {first.get('message') or f'HTTP {status}'}"
    if first.get("details"):
        text += f" ({first['details']})"
    kwargs: dict[str, Any] = {"code": code, "platform": PLATFORM,
                              "details": {"http_status": status,
                                          "request_id": response.headers.get("x-amzn-RequestId")}}
    if status == 401 or (status == 403 and code == "Unauthorized"):
        return TokenRejected(text, response.request.headers.get("x-amz-access-token", ""), **kwargs)
    if status == 403:
        return AuthError(text, **kwargs)
    if status == 404:
        return NotFoundError(text, **kwargs)
    if status in (400, 409, 413, 415, 422):
        return InvalidRequestError(text, **kwargs)
    return TransientError(text, **kwargs)


class UsagePlan:
    """The client side of one operation's token bucket: ``rate`` tokens per second, up to ``burst``.

    ``take`` waits for a token when the wait fits ``max_wait_s`` and raises ``ThrottledError`` with the
    wait as ``retry_after`` otherwise (searchOrders refills one token every ~3 minutes: that wait
    belongs to Temporal, not to a worker slot). ``observe`` adopts the rate the platform reports.
    """

    def __init__(self, operation: str, rate: float, burst: int) -> None:
        self.operation = operation
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, max_wait_s: float) -> None:
        async with self._lock:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return
            wait = (1 - self.tokens) / self.rate
            if wait > max_wait_s:
                raise ThrottledError(f"{self.operation}: usage plan of {self.rate:g} req/s spent; next call "
                                     f"in {wait:.0f} s", code="usage_plan", platform=PLATFORM, retry_after=wait)
            self.tokens -= 1
        await asyncio.sleep(wait)

    def observe(self, header: str | None) -> None:
        rate = _rate(header)
        if rate is not None:
            self.rate = rate

    def drain(self) -> None:
        """A 429 came: the platform's bucket is empty, so is ours."""
        self._refill()
        self.tokens = min(self.tokens, 0.0)


def _rate(header: str | None) -> float | None:
    try:
        rate = float(str(header).strip())
    except (TypeError, ValueError):
        return None
    return rate if rate > 0 and math.isfinite(rate) else None


class SpApiClient(ApiClient):
    """The ApiClient with SP-API's throttling signal: a 429 without Retry-After waits for one token at
    the rate ``x-amzn-RateLimit-Limit`` reports (else the operation's documented rate)."""

    plan: UsagePlan | None = None

    def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code == 429:
            plan = self.plan
            if plan is not None:
                plan.observe(response.headers.get(RATE_HEADER))
                plan.drain()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None:
                rate = _rate(response.headers.get(RATE_HEADER)) or (plan.rate if plan else 1.0)
                retry_after = min(600.0, max(1.0, 1.0 / rate))
            errors = sp_errors(response)
            code = str(errors[0].get("code")) if errors and errors[0].get("code") else "429"
            self.limiter.penalize(retry_after)
            raise ThrottledError(f"HTTP 429 {code} ({plan.operation if plan else 'SP-API'})", code=code,
                                 platform=self.platform, retry_after=retry_after)
        super()._raise_for_status(response)


class AmazonSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_ENDPOINT, description="regional SP-API endpoint, e.g. "
                          "https://sellingpartnerapi-eu.amazon.com (or a sandbox / simulator)")
    lwa_endpoint: str = Field(DEFAULT_LWA_ENDPOINT, description="Login with Amazon token endpoint")
    marketplace_ids: list[str] = Field(min_length=1, max_length=MAX_MARKETPLACES,
                                       description="marketplaces whose orders are pulled, e.g. ATVPDKIKX0DER")
    shop: str = Field("", description="our shop name; empty = the connector's name")
    seller_id: str = Field("", description="the selling partner id (merchant token) the Listings Items API "
                           "names in its paths; needed by the 'stock' capability")
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    fulfilled_by: list[Literal["MERCHANT", "AMAZON"]] = Field(
        default_factory=lambda: ["MERCHANT"],
        description="MERCHANT = orders we ship (FBM); FBA orders are Amazon's to ship")
    carriers: dict[str, str] = Field(default_factory=dict, description=(
        "WMS carrier code → Amazon carrierCode, over the built-in table; 'Other:Name' sends "
        "carrierCode Other with carrierName Name"))

    @field_validator("marketplace_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        ids = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if not ids:
            raise ValueError("at least one marketplace id is needed")
        if any("," in v for v in ids):
            raise ValueError("a marketplace id has no comma (give a list)")
        return ids


class AmazonSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    client_id: SecretStr
    client_secret: SecretStr
    refresh_token: SecretStr


@connector_kind("amazon", title="Amazon Selling Partner API")
class AmazonConnector(Connector, OrderSource, ShipmentSink, ReceiverSource, AmazonStock):
    Settings = AmazonSettings
    Secrets = AmazonSecrets
    channel = "amazon"

    #: * ``lag`` 5 min: searchOrders refuses a ``lastUpdatedBefore`` less than two minutes old, and
    #:   Amazon publishes changes to search with a delay (payment authorisation, PII release), so the
    #:   ingest stays well behind now; ``overlap`` 15 min re-reads what was indexed late.
    #: * ``window`` 1 h, ``chunk`` 1 day: one search (20-call burst, then one call per ~3 min) per window.
    # searchOrders' usage plan is 0.0056 req/s with a burst of 20: one search per hour-long window
    # would spend the burst on a day's catch-up, so a window is a whole chunk (the paging token
    # carries the rest) and the checkpoint falls once a chunk
    ingest_defaults = IngestDefaults(lag=timedelta(minutes=5), overlap=timedelta(minutes=15),
                                     chunk=timedelta(days=1), window=timedelta(days=1))

    settings: AmazonSettings
    secrets: AmazonSecrets

    def __init__(self, name: str, settings: AmazonSettings, secrets: AmazonSecrets) -> None:
        super().__init__(name, settings, secrets)
        for field in ("client_id", "client_secret", "refresh_token"):
            if not secret(getattr(secrets, field)):
                raise ConfigurationError(f"connector {name!r} (amazon): {field} must not be empty")
        for field in ("base_url", "lwa_endpoint"):
            url = httpx.URL(getattr(settings, field))
            if url.scheme not in ("http", "https") or not url.host:
                raise ConfigurationError(f"connector {name!r} (amazon): {field} must be an absolute http(s) URL")
        self.plans = {op: UsagePlan(op, rate, burst) for op, (rate, burst) in USAGE_PLANS.items()}
        self.apis = {op: self._client(self.plans[op]) for op in USAGE_PLANS}
        self.lwa_api = ApiClient(platform=PLATFORM, base_url="", check=check_lwa_response,
                                 limiter=RateLimiter(None), timeout_s=settings.timeout_s)
        self.tokens = LwaTokenSource(self.lwa_api, settings.lwa_endpoint, secret(secrets.client_id),
                                     secret(secrets.client_secret), secret(secrets.refresh_token))
        self.carriers = {code.upper(): value for code, value in CARRIERS.items()}
        for code, value in settings.carriers.items():
            kind, _, label = value.partition(":")
            self.carriers[code.strip().upper()] = (kind.strip(), (label or kind).strip())

    def _client(self, plan: UsagePlan) -> SpApiClient:
        client = SpApiClient(platform=PLATFORM, base_url=self.settings.base_url.rstrip("/"),
                             signer=self._sign, check=lambda r: self._check(r, plan),
                             limiter=RateLimiter(self.settings.rate_limit_per_s), timeout_s=self.settings.timeout_s)
        client.plan = plan
        return client

    def __repr__(self) -> str:
        return f"<AmazonConnector {self.name!r} url={self.settings.base_url!r}>"

    def shop_of(self, payload: dict[str, Any]) -> str:
        return self.settings.shop or self.name

    # --- transport -----------------------------------------------------------------------------

    async def _sign(self, request: httpx.Request) -> None:
        """No signature since October 2023: the LWA access token is the credential."""
        request.headers["x-amz-access-token"] = await self.tokens.token()
        request.headers["x-amz-date"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        request.headers["user-agent"] = USER_AGENT

    @staticmethod
    def _check(response: httpx.Response, plan: UsagePlan) -> None:
        plan.observe(response.headers.get(RATE_HEADER))
        error = classify(response, plan.operation)
        if error is not None:
            raise error

    async def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One SP-API operation: a usage-plan token, the access token, and one retry with a fresh
        access token when the platform refuses the current one."""
        api = self.apis[operation]
        for attempt in (1, 2):
            await self.plans[operation].take(api.retry.max_s)
            try:
                return await api.request(method, path, **kwargs)
            except TokenRejected as exc:
                self.tokens.invalidate(exc.token)
                if attempt == 2:
                    raise AuthError(f"{exc.message}; refused again with a fresh LWA token", code=exc.code,
                                    platform=PLATFORM, details=exc.details) from None
                log.info("amazon.token_refused", connector=self.name, operation=operation)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- orders --------------------------------------------------------------------------------

    def _search_params(self, since: datetime, until: datetime, included: Iterable[str], size: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "lastUpdatedAfter": format_time(since),
            "lastUpdatedBefore": format_time(until, up=True),
            "marketplaceIds": ",".join(self.settings.marketplace_ids),
            "fulfilledBy": ",".join(self.settings.fulfilled_by),
            "maxResultsPerPage": size,
        }
        included = list(included)
        if included:
            params["includedData"] = ",".join(included)
        return params

    async def _search_pages(self, since: datetime, until: datetime, included: Iterable[str] = INCLUDED_DATA,
                            size: int | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """searchOrders pages for [since, until] (both inclusive at Amazon), each as soon as it is read."""
        params = self._search_params(since, until, included, size or self.settings.page_size)
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            query = dict(params) | ({"paginationToken": token} if token else {})
            answer = (await self._call("searchOrders", "GET", SEARCH_PATH, params=query)).json()
            orders = answer.get("orders") if isinstance(answer, dict) else None
            if not isinstance(orders, list):
                raise TransientError("searchOrders answered without an orders list", platform=PLATFORM)
            page = [o for o in orders if isinstance(o, dict)]
            if page:
                yield page
            pagination = answer.get("pagination")
            token = pagination.get("nextToken") if isinstance(pagination, dict) else None
            if not token:
                return
            if token in seen_tokens:  # a platform repeating itself must not hold the worker forever
                raise TransientError("searchOrders returned the same nextToken twice", platform=PLATFORM)
            seen_tokens.add(token)

    def _ripe(self, until: datetime) -> None:
        """searchOrders refuses a ``lastUpdatedBefore`` younger than two minutes: such a window is
        retried once it is old enough (never clamped, which would skip its last minutes)."""
        wait = (until - (datetime.now(UTC) - MIN_AGE)).total_seconds()
        if wait > 0:
            raise ThrottledError(f"searchOrders: the window ends less than 2 min ago; retry in {wait:.0f} s",
                                 code="window_too_recent", platform=PLATFORM, retry_after=math.ceil(wait))

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Orders last updated in [since, until), one batch per searchOrders page, handed over as read.

        Amazon's bounds are both inclusive, so an order updated exactly at ``until`` is left to the
        next window. Each order comes once per pull (again only if updated after the copy handed
        over); an order without a readable ``lastUpdatedTime`` comes as a record with ``error``.
        """
        _require_aware(since, until)
        if until <= since:
            return
        self._ripe(until)
        yielded: dict[str, datetime] = {}
        async for page in self._search_pages(since, until):
            records: list[RawRecord] = []
            for order in page:
                record = self._record(order)
                if record is None:
                    continue
                modified = record.modified_at
                if record.error is None and modified is not None:
                    if not since <= modified < until:
                        continue
                    known = yielded.get(record.external_id)
                    if known is not None and modified <= known:
                        continue
                    yielded[record.external_id] = modified
                records.append(record)
            if records:
                never = datetime.min.replace(tzinfo=UTC)
                yield sorted(records, key=lambda r: (r.modified_at or never, r.external_id))

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every orderId searchOrders lists as updated in [since, until), with its lastUpdatedTime,
        oldest first (no includedData: the smallest answer Amazon gives)."""
        _require_aware(since, until)
        if until <= since:
            return []
        self._ripe(until)
        found: dict[str, datetime | None] = {}
        async for page in self._search_pages(since, until, included=()):
            for order in page:
                order_id = str(order.get("orderId") or "")
                modified = parse_time(order.get("lastUpdatedTime"))
                if not order_id or (modified is not None and not since <= modified < until):
                    continue
                known = found.get(order_id)
                if order_id not in found or (modified is not None and (known is None or modified > known)):
                    found[order_id] = modified
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(found.items(), key=lambda item: (item[1] or never, item[0]))

    def _record(self, order: dict[str, Any]) -> RawRecord | None:
        order_id = str(order.get("orderId") or "")
        if not order_id:
            log.warning("amazon.order_without_id", connector=self.name)
            return None
        modified = parse_time(order.get("lastUpdatedTime"))
        if modified is None:
            return RawRecord(external_id=order_id, payload=order,
                             error=f"order {order_id}: lastUpdatedTime {order.get('lastUpdatedTime')!r} "
                                   "is not an ISO 8601 date-time")
        return RawRecord(external_id=order_id, modified_at=modified, payload=order)

    async def _get(self, order_id: str, included: Iterable[str]) -> dict[str, Any]:
        response = await self._call("getOrder", "GET", ORDER_PATH.format(orderId=order_id),
                                    params={"includedData": ",".join(included)})
        order = response.json().get("order")
        if not isinstance(order, dict) or not order:
            raise NotFoundError(f"getOrder: no order {order_id}", platform=PLATFORM)
        return order

    async def get_order(self, external_id: str) -> RawRecord:
        order_id = _valid_order_id(external_id)
        record = self._record(await self._get(order_id, INCLUDED_DATA))
        if record is None:
            raise TransientError(f"getOrder {order_id}: answer without orderId", platform=PLATFORM)
        return record

    # --- receivers -----------------------------------------------------------------------------

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """The delivery address as getOrder gives it now (includedData=RECIPIENT). v2026-01-01 has no
        decryption call and no Restricted Data Token: PII is released to the Direct-to-Consumer
        Delivery (Restricted) role while the order is UNSHIPPED, PARTIALLY_SHIPPED or SHIPPED. An
        order pulled before that carries no name or street; asking again is the documented way."""
        order_id = _valid_order_id(str(payload.get("orderId") or ""))
        order = await self._get(order_id, ("RECIPIENT",))
        address = ((order.get("recipient") or {}).get("deliveryAddress") or {})
        if not address.get("name") or not address.get("addressLine1"):
            raise AuthError(f"order {order_id}: Amazon withholds the delivery address (the application needs "
                            "the Direct-to-Consumer Delivery (Restricted) role, and the order must be paid "
                            "and not cancelled)", code="pii_withheld", platform=PLATFORM)
        street = " ".join(str(address.get(k) or "").strip() for k in ("addressLine1", "addressLine2", "addressLine3"))
        clear = {
            "name": address.get("name"), "phone": address.get("phone"), "mobile": address.get("phone"),
            "province": address.get("stateOrRegion"), "city": address.get("city"),
            "district": address.get("districtOrCounty"), "town": address.get("municipality"),
            "street": " ".join(street.split()), "postal_code": address.get("postalCode"),
        }
        return {k: str(v) for k, v in clear.items() if v not in (None, "")}

    # --- shipments -----------------------------------------------------------------------------

    def carrier(self, code: str) -> tuple[str, str]:
        """(carrierCode, carrierName) for a WMS carrier code; unknown codes go as Other + the code."""
        return self.carriers.get(code.strip().upper(), ("Other", code.strip()))

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """confirmShipment for one package: the whole order, or with ``line_ids`` (orderItemIds) the
        items of one package of a split shipment.

        Idempotent: the order is read first (getOrder with FULFILLMENT and PACKAGES); a package with
        our tracking number, or items with nothing left to ship, answer ``taken=False`` with the
        tracking numbers Amazon shows. The packageReferenceId is derived from the tracking number,
        so a call whose answer was lost, sent again, edits the same package with the same values.
        """
        order_id = _valid_order_id(external_order_id)
        wanted = list(dict.fromkeys(str(i).strip() for i in line_ids or [] if str(i).strip()))
        order = await self._get(order_id, WRITEBACK_DATA)
        status = _status(order)
        if status in CLOSED:
            raise InvalidRequestError(f"order {order_id} is {status}: nothing to ship", code=status, platform=PLATFORM)
        if status in NOT_PAID:
            raise InvalidRequestError(f"order {order_id} is {status} (not paid): it cannot ship yet",
                                      code=status, platform=PLATFORM)
        done = self._already_recorded(order, wanted, shipment)
        if done is not None:
            return done
        items = self._package_items(order, wanted, shipment)
        code, name = self.carrier(shipment.carrier_code)
        detail: dict[str, Any] = {
            "packageReferenceId": package_reference_id(shipment.tracking_number),
            "carrierCode": code,
            "trackingNumber": shipment.tracking_number,
            "shipDate": format_time(shipment.shipped_at),
            "orderItems": items,
        }
        if code == "Other" or name != code:
            detail["carrierName"] = name
        marketplace = str((order.get("salesChannel") or {}).get("marketplaceId") or self.settings.marketplace_ids[0])
        body = {"marketplaceId": marketplace, "packageDetail": detail}
        try:
            await self._call("confirmShipment", "POST", CONFIRM_PATH.format(orderId=order_id), json=body)
        except InvalidRequestError:
            # refused: maybe someone (or our own lost call) confirmed it meanwhile; look again
            again = self._already_recorded(await self._get(order_id, WRITEBACK_DATA), wanted, shipment)
            if again is not None:
                return again
            raise
        log.info("amazon.shipment_confirmed", connector=self.name, order_id=order_id,
                 package=detail["packageReferenceId"], items=len(items), split=bool(wanted))
        return WriteBackResult(taken=True)

    def _already_recorded(self, order: dict[str, Any], wanted: list[str], shipment: Shipment) -> WriteBackResult | None:
        packages = [p for p in order.get("packages") or [] if isinstance(p, dict)]
        if _status(order) == "SHIPPED" and not packages:
            return WriteBackResult(taken=False)  # shipped, but Amazon shows no package (e.g. label bought there)
        all_tracking = sorted({str(p["trackingNumber"]) for p in packages if p.get("trackingNumber")})
        if shipment.tracking_number in all_tracking:
            return WriteBackResult(taken=False, tracking_on_platform=all_tracking)
        scope = _scope(order, wanted)
        if scope and all(_left_to_ship(item) == 0 for item in scope):
            ids = {str(item.get("orderItemId")) for item in scope}
            mine = sorted({str(p["trackingNumber"]) for p in packages if p.get("trackingNumber")
                           and any(str(i.get("orderItemId")) in ids for i in p.get("packageItems") or [])})
            return WriteBackResult(taken=False, tracking_on_platform=mine or all_tracking)
        return None

    def _package_items(self, order: dict[str, Any], wanted: list[str], shipment: Shipment) -> list[dict[str, Any]]:
        scope = _scope(order, wanted)
        known = {str(i.get("orderItemId")) for i in order.get("orderItems") or [] if isinstance(i, dict)}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise InvalidRequestError(f"order {order.get('orderId')} has no order item {missing[0]}",
                                      platform=PLATFORM)
        by_line = {line.line_id: line.quantity for line in shipment.lines if line.line_id}
        items = []
        for item in scope:
            item_id = str(item.get("orderItemId"))
            left = _left_to_ship(item)
            quantity = min(by_line.get(item_id, left), left)
            if quantity > 0:
                items.append({"orderItemId": item_id, "quantity": quantity})
        if not items:
            raise InvalidRequestError(f"order {order.get('orderId')}: nothing left to ship in this package",
                                      platform=PLATFORM)
        return items

    # --- connectivity --------------------------------------------------------------------------

    async def test(self) -> str:
        """One searchOrders over the hour before the last two minutes, one order per page."""
        until = datetime.now(UTC).replace(microsecond=0) - MIN_AGE - timedelta(seconds=5)
        count = 0
        async for page in self._search_pages(until - timedelta(hours=1), until, included=(), size=1):
            count += len(page)
            break
        return (f"ok: LWA token exchanged, searchOrders answered ({count} order(s) updated in the hour before "
                f"{format_time(until)}) for marketplaces {', '.join(self.settings.marketplace_ids)}")


# --- helpers --------------------------------------------------------------------------------------


def _status(order: Mapping[str, Any]) -> str:
    return str((order.get("fulfillment") or {}).get("fulfillmentStatus") or "")


def _cancelled(item: Mapping[str, Any]) -> bool:
    return bool((item.get("cancellation") or {}).get("cancellationExecution"))


def _left_to_ship(item: Mapping[str, Any]) -> int:
    """Units of an order item still to ship: ``quantityUnfulfilled`` when Amazon gives it, else the
    ordered quantity less what was fulfilled; nothing for a cancelled item."""
    if _cancelled(item):
        return 0
    fulfillment = item.get("fulfillment") or {}
    if isinstance(fulfillment.get("quantityUnfulfilled"), int):
        return max(0, fulfillment["quantityUnfulfilled"])
    ordered = item.get("quantityOrdered") if isinstance(item.get("quantityOrdered"), int) else 0
    shipped = fulfillment.get("quantityFulfilled") if isinstance(fulfillment.get("quantityFulfilled"), int) else 0
    return max(0, ordered - shipped)


def _scope(order: Mapping[str, Any], wanted: list[str]) -> list[dict[str, Any]]:
    """The order items a package is about: ``wanted`` ones, or every item not cancelled."""
    items = [i for i in order.get("orderItems") or [] if isinstance(i, dict)]
    if wanted:
        return [i for i in items if str(i.get("orderItemId")) in wanted]
    return [i for i in items if not _cancelled(i)]


def _valid_order_id(external_id: str) -> str:
    order_id = str(external_id).strip()
    if not _ORDER_ID.match(order_id):
        raise InvalidRequestError(f"an Amazon order id is 3-7-7 digits, not {external_id!r}", platform=PLATFORM)
    return order_id


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)
