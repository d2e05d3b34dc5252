"""A local Amazon Selling Partner API (Orders) and Login with Amazon endpoint, written from the docs.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the documentation, so a connector that misreads the protocol fails here.

Rules enforced, and where each comes from:

* Login with Amazon -- "Connecting to the Selling Partner API", step 1: ``POST /auth/o2/token``
  (form) with ``grant_type=refresh_token``, ``refresh_token``, ``client_id``, ``client_secret``; answer
  ``{"access_token", "refresh_token", "token_type": "bearer", "expires_in": 3600}`` ("An LWA access token
  expires one hour after it is issued"). Refusals in OAuth 2.0's form (RFC 6749 5.2):
  ``invalid_client`` (HTTP 401), ``invalid_grant``, ``invalid_request``, ``unsupported_grant_type`` (400).
* Every SP-API call carries the token in ``x-amz-access-token`` (no AWS Signature V4 since 2 October
  2023: "SP-API no longer requires AWS IAM or AWS Signature Version 4"). A missing, unknown or expired
  token is HTTP 403 ``{"errors": [{"code": "Unauthorized", "message": "Access to requested resource is
  denied.", "details": ...}]}`` -- the shape of real answers ("The access token you provided is revoked,
  malformed or invalid." / "... has expired.").
* Orders API v2026-01-01 (``orders_2026-01-01.json``): ``searchOrders`` -- exactly one of
  ``createdAfter`` / ``lastUpdatedAfter``; the matching ``...Before`` optional, not before the after, and
  "at least two minutes before the time of the request"; bounds inclusive ("at or after", "at or
  before"); ``maxResultsPerPage`` 1..100, default 100; ``marketplaceIds`` at most 50; enum filters
  ``fulfillmentStatuses``, ``fulfilledBy``, ``includedData``; array parameters as Swagger 2.0's default
  ``csv``; ``pagination.nextToken`` only when more pages follow, to be sent back as ``paginationToken``
  with "All other parameters ... the same values" (except ``maxResultsPerPage`` and ``includedData``),
  expiring after 24 hours. ``getOrder`` by ``orderId``. The order items always come; buyer, recipient,
  proceeds, promotion, cancellation, fulfillment and packages only when asked by ``includedData``.
* PII ("Access Orders PII"): ``buyer.buyerName``/``buyerEmail`` and ``recipient.deliveryAddress`` name,
  address lines, postal code and phone only with the Direct-to-Consumer Delivery (Restricted) role
  (``pii_role``) and while the order is UNSHIPPED, PARTIALLY_SHIPPED or SHIPPED; otherwise left out
  (city, state, country stay). No Restricted Data Token in this version.
* FulfillmentStatus (definitions.FulfillmentStatus): PENDING_AVAILABILITY (pre-order, release date in
  the future) → PENDING ("when payment authorization begins") → UNSHIPPED ("ready for shipment") →
  PARTIALLY_SHIPPED → SHIPPED; CANCELLED. ``lastUpdatedTime`` moves with every change ("The most recent
  time when any aspect of this order was modified by Amazon or the seller").
* ``confirmShipment`` (v0, ``ordersV0.json``, not deprecated): body ``ConfirmShipmentRequest``
  (``marketplaceId``, ``packageDetail`` with ``packageReferenceId``, ``carrierCode``, ``trackingNumber``,
  ``shipDate``, ``orderItems`` of ``orderItemId`` + ``quantity``; ``carrierName`` "Required when
  carrierCode is Other"); PackageReferenceId "Only positive numeric values"; success is HTTP 204.
  "Confirm the shipment status": one call per package, "different package reference IDs"; the same
  reference again *edits* that package.
* Usage plans (each operation's description): searchOrders 0.0056 req/s burst 20, getOrder 0.5/30,
  confirmShipment 2/10, as token buckets per seller and operation; every answer carries
  ``x-amzn-RateLimit-Limit`` and ``x-amzn-RequestId``; an empty bucket answers 429 ``QuotaExceeded``.

Choices where the documentation is silent (``# sim``): search results come oldest update first and
the page token is a keyset cursor (the last ``lastUpdatedTime`` + ``orderId`` handed out, signed), so
an order updated while a client pages moves behind the cursor instead of shifting the pages; a
PENDING order has no proceeds and no item price (as v0 documents for Pending orders); confirming an
order whose items have nothing left to ship, or that is not UNSHIPPED/PARTIALLY_SHIPPED, answers 400
``InvalidInput``; the DISCOUNT proceeds are negative amounts; prices are the catalogue's CNY prices
converted at a fixed rate per marketplace currency.

Public API: ``AmazonSimulator(apps, shops, orders_per_shop, malformed_per_shop, seed, now, spread_hours,
faults, marketplace_id, usage_plans, pii_role, catalog, token_ttl_s, min_age_s)``; ``.app`` (ASGI:
``/auth/o2/token``, ``/orders/2026-01-01/orders[/{orderId}]``, ``/orders/v0/orders/{orderId}/shipmentConfirmation``,
``GET /_sim/state``, ``GET|POST /_sim/faults``, ``POST /_sim/orders`` ``{"shop", "n", "malformed", "status",
"preorder", "lines"}``, ``POST /_sim/orders/{orderId}/{action}``); ``state()``, ``orders(shop)``,
``order(order_id)``, ``status(order_id)``, ``writebacks(order_id)``, ``add_orders(...)``, ``make_order(...)``;
lifecycle ``release_preorder``, ``pay``, ``cancel``/``refund_all``, ``request_cancel``, ``cancel_item``/
``refund_line``, ``change_address``; ``access_token(refresh_token)``, ``expire_tokens()``; clock
``now()``/``set_now()``/``advance()``. Listings (``simulators/amazon_stock.py``: ``getListingsItem``,
``patchListingsItem`` on ``/listings/2021-08-01/items/{sellerId}/{sku}``, usage plans 5/10 and 5/5):
``seller_id(shop)``, ``shown_stock(sku, shop=None)``, ``sell_on_channel(sku, n, shop=None)``,
``stock_updates`` ``[(time.monotonic(), sku, quantity)]``, ``stock_writes``, ``stock_throttled``; the
listings' quantities and the counters are in ``state()``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import random
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.amazon_stock import LISTINGS_PATH, LISTINGS_USAGE_PLANS, AmazonStockSim
from simulators.catalog import CATALOG
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector
from simulators.ratelimit import CallBucket

SEARCH_PATH = "/orders/2026-01-01/orders"
RATE_HEADER = "x-amzn-RateLimit-Limit"
#: (rate per second, burst) from the Usage Plan table of each operation's description
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "searchOrders": (0.0056, 20),
    "getOrder": (0.5, 30),
    "confirmShipment": (2.0, 10),
}
FULFILLMENT_STATUSES = ("PENDING_AVAILABILITY", "PENDING", "UNSHIPPED", "PARTIALLY_SHIPPED", "SHIPPED",
                        "CANCELLED", "UNFULFILLABLE")
INCLUDED_DATA = ("BUYER", "RECIPIENT", "PROCEEDS", "EXPENSE", "PROMOTION", "CANCELLATION", "FULFILLMENT",
                 "PACKAGES", "TAX", "PAYMENT", "FULFILLMENT_ORDERS")
FULFILLED_BY = ("MERCHANT", "AMAZON")
PII_STATUSES = frozenset({"UNSHIPPED", "PARTIALLY_SHIPPED", "SHIPPED"})
SHIPPABLE = frozenset({"UNSHIPPED", "PARTIALLY_SHIPPED"})
MAX_PAGE = 100
MAX_MARKETPLACES = 50
TOKEN_LIFETIME = timedelta(hours=24)  # "The token will expire after 24 hours"
#: marketplace id → (name, currency, CNY per unit of the currency, decimals) -- sim exchange rates
MARKETPLACES: dict[str, tuple[str, str, Decimal, int]] = {
    "ATVPDKIKX0DER": ("Amazon.com", "USD", Decimal("7.10"), 2),
    "A1F83G8C2ARO7P": ("Amazon.co.uk", "GBP", Decimal("9.00"), 2),
    "A1PA6795UKMFR9": ("Amazon.de", "EUR", Decimal("7.70"), 2),
    "A1VC38T7YXB528": ("Amazon.co.jp", "JPY", Decimal("0.048"), 0),
    "AAHKV2X7AFYLW": ("Amazon.cn", "CNY", Decimal("1"), 2),
}
SEED_QUIET = timedelta(minutes=7)
DEFECT_KINDS = ("unknown_sku", "missing_sku", "bad_amount", "empty_address")
CARRIER_OTHER = "Other"

FIRST_NAMES = ("James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Ethan", "Sophia", "Mason", "Chloe")
LAST_NAMES = ("Smith", "Johnson", "Brown", "Wilson", "Taylor", "Clark", "Walker", "Young", "King", "Wright")
PLACES = (  # city, state or region, postal code prefix
    ("Seattle", "WA", "981"), ("Austin", "TX", "787"), ("Denver", "CO", "802"), ("Boston", "MA", "021"),
    ("Chicago", "IL", "606"), ("Portland", "OR", "972"), ("Miami", "FL", "331"), ("Phoenix", "AZ", "850"),
)
STREETS = ("Main Street", "Oak Avenue", "Pine Road", "Maple Drive", "Cedar Lane", "Elm Street", "Lake View")


def iso(moment: datetime) -> str:
    """``2024-12-25T14:45:00Z``: whole seconds, UTC, as the model's examples write times."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """ISO 8601 date-time with a zone (``Z`` or an offset) → aware UTC; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("a zone is required")
    return value.astimezone(UTC)


class SpError(Exception):
    """An SP-API refusal, answered as an ErrorList with ``status``."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"errors": [error]}


def invalid(message: str, details: str | None = None) -> SpError:
    return SpError(400, "InvalidInput", message, details)


@dataclass
class SimOrder:
    """One order in the 2026-01-01 representation with everything in it; ``view`` trims per request."""

    order_id: str
    shop: str
    data: dict[str, Any]
    defect: str | None = None

    @property
    def status(self) -> str:
        return str(self.data["fulfillment"]["fulfillmentStatus"])

    @property
    def updated(self) -> datetime:
        return parse_iso(self.data["lastUpdatedTime"])

    @property
    def created(self) -> datetime:
        return parse_iso(self.data["createdTime"])

    def touch(self, moment: datetime) -> None:
        self.data["lastUpdatedTime"] = iso(moment)




class _OrderFactory:
    """Seeded, deterministic orders for one shop."""

    def __init__(self, shop: str, seed: int, catalog: list[dict[str, Any]], marketplace: str,
                 new_id: Callable[[random.Random], str]) -> None:
        self.shop = shop
        self.rng = random.Random(f"amazon:{seed}:{shop}")
        self.catalog = catalog
        self.marketplace = marketplace
        self.name, self.currency, self.rate, self.decimals = MARKETPLACES[marketplace]
        self.new_id = new_id

    def money(self, value: Decimal) -> dict[str, str]:
        quantum = Decimal(1) if self.decimals == 0 else Decimal(1).scaleb(-self.decimals)
        return {"amount": str(value.quantize(quantum, ROUND_HALF_UP)), "currencyCode": self.currency}

    def price(self, cny: str) -> Decimal:
        quantum = Decimal(1) if self.decimals == 0 else Decimal(1).scaleb(-self.decimals)
        return (Decimal(cny) / self.rate).quantize(quantum, ROUND_HALF_UP)

    def _address(self) -> dict[str, Any]:
        city, state, prefix = self.rng.choice(PLACES)
        name = f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"
        address = {
            "name": name, "addressLine1": f"{self.rng.randrange(1, 9999)} {self.rng.choice(STREETS)}",
            "city": city, "districtOrCounty": "", "stateOrRegion": state, "municipality": "",
            "postalCode": f"{prefix}{self.rng.randrange(10, 99)}", "countryCode": "US",
            "phone": f"+1 {self.rng.randrange(200, 999)}-{self.rng.randrange(200, 999)}-"
                     f"{self.rng.randrange(1000, 9999)}",
            "addressType": "RESIDENTIAL",
        }
        if self.rng.random() < 0.3:
            address["addressLine2"] = f"Apt {self.rng.randrange(1, 40)}"
        if self.marketplace != "ATVPDKIKX0DER":
            address["countryCode"] = {"A1F83G8C2ARO7P": "GB", "A1PA6795UKMFR9": "DE", "A1VC38T7YXB528": "JP",
                                      "AAHKV2X7AFYLW": "CN"}[self.marketplace]
        return address

    def order(self, order_id: str, created: datetime, updated: datetime, status: str, defect: str | None,
              *, lines: int | None = None, preorder: bool = False) -> SimOrder:
        count = lines if lines is not None else self.rng.choice((1, 1, 1, 2, 2, 3))
        goods = self.rng.sample(self.catalog, k=min(count, len(self.catalog)))
        items = []
        item_total = shipping_total = discount_total = Decimal(0)
        for index, entry in enumerate(goods):
            quantity = self.rng.choice((1, 1, 1, 2, 3))
            unit = self.price(str(entry["price"]))
            item_amount = unit * quantity
            shipping = self.price("20.00") if self.rng.random() < 0.3 else Decimal(0)
            discount = (item_amount * Decimal("0.1")) if self.rng.random() < 0.2 else Decimal(0)
            discount = Decimal(self.money(discount)["amount"])
            breakdowns = [{"type": "ITEM", "subtotal": self.money(item_amount)}]
            if shipping:
                breakdowns.append({"type": "SHIPPING", "subtotal": self.money(shipping)})
            if discount:
                breakdowns.append({"type": "DISCOUNT", "subtotal": self.money(-discount)})  # sim: negative
            sku = str(entry["sku"])
            if defect == "unknown_sku" and index == 0:
                sku = f"TD-SKU-9{self.rng.randrange(100, 1000)}"
            product: dict[str, Any] = {"asin": f"B0{hashlib.sha1(sku.encode()).hexdigest()[:8].upper()}",
                                       "title": str(entry.get("title") or entry.get("item_title") or sku),
                                       "sellerSku": sku, "condition": {"conditionType": "NEW",
                                                                       "conditionSubtype": "NEW"},
                                       "price": {"unitPrice": self.money(unit)}}
            if defect == "missing_sku" and index == 0:
                del product["sellerSku"]
            item: dict[str, Any] = {
                "orderItemId": f"{self.rng.randrange(10**13, 10**14)}",
                "quantityOrdered": quantity,
                "product": product,
                "proceeds": {"proceedsTotal": self.money(item_amount + shipping - discount), "breakdowns": breakdowns},
                "fulfillment": {"quantityFulfilled": 0, "quantityUnfulfilled": quantity},
            }
            if discount:
                item["promotion"] = {"breakdowns": [{"promotionId": f"PROMO-{self.rng.randrange(1000, 9999)}"}]}
            if self.rng.random() < 0.08:
                item["fulfillment"]["packing"] = {"giftOption": {"giftMessage": "Happy birthday!",
                                                                 "giftWrapLevel": "STANDARD"}}
            items.append(item)
            item_total += item_amount
            shipping_total += shipping
            discount_total += discount
        grand = item_total + shipping_total - discount_total
        breakdowns = [{"type": "ITEM", "subtotal": self.money(item_total)}]
        if shipping_total:
            breakdowns.append({"type": "SHIPPING", "subtotal": self.money(shipping_total)})
        if discount_total:
            breakdowns.append({"type": "DISCOUNT", "subtotal": self.money(-discount_total)})
        grand_money = self.money(grand)
        if defect == "bad_amount":
            grand_money["amount"] = grand_money["amount"].replace(".", ",")  # "12,30": a decimal comma
        address = self._address()
        if defect == "empty_address":
            address["addressLine1"] = ""
        buyer_name = address["name"]
        data: dict[str, Any] = {
            "orderId": order_id,
            "createdTime": iso(created),
            "lastUpdatedTime": iso(updated),
            "programs": ["PREORDER"] if preorder else [],
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": self.marketplace, "marketplaceName": self.name},
            "buyer": {"buyerName": buyer_name,
                      "buyerEmail": f"{hashlib.sha1(order_id.encode()).hexdigest()[:14]}@marketplace.amazon.com"},
            "recipient": {"deliveryAddress": address},
            "proceeds": {"grandTotal": grand_money, "breakdowns": breakdowns},
            "fulfillment": {"fulfillmentStatus": status, "fulfilledBy": "MERCHANT",
                            "fulfillmentServiceLevel": self.rng.choice(("STANDARD", "STANDARD", "EXPEDITED"))},
            "orderItems": items,
            "packages": [],
        }
        if not data["programs"]:
            del data["programs"]
        return SimOrder(order_id=order_id, shop=self.shop, data=data, defect=defect)


class AmazonSimulator(SimClock, SimAdmin, AmazonStockSim):
    """SP-API Orders + LWA for seeded sellers; ``app`` is the ASGI app.

    ``apps`` maps LWA client_id → client_secret, ``shops`` maps refresh_token → our shop (one selling
    partner each, all selling in ``marketplace_id``). Each distinct shop starts with ``orders_per_shop``
    paid orders waiting for shipment (UNSHIPPED), ``malformed_per_shop`` of them deliberately malformed
    (cycling through ``DEFECT_KINDS``), updated over the ``spread_hours`` before ``now``.
    ``usage_plans``: per-operation (rate, burst) enforced per seller; the documented ones by default,
    ``{}`` for none. ``pii_role=False``: the application lacks the Direct-to-Consumer Delivery role.
    ``min_age_s``: how old ``lastUpdatedBefore``/``createdBefore`` must be (120 s documented).
    """

    def __init__(
        self,
        apps: Mapping[str, str],
        shops: Mapping[str, str],
        orders_per_shop: int = 20,
        malformed_per_shop: int = 0,
        seed: int = 1,
        now: datetime | None = None,
        spread_hours: float = 6,
        faults: FaultConfig | None = None,
        marketplace_id: str = "ATVPDKIKX0DER",
        usage_plans: Mapping[str, tuple[float, int]] | None = None,
        pii_role: bool = True,
        catalog: Iterable[Mapping[str, Any]] | None = None,
        token_ttl_s: int = 3600,
        min_age_s: float = 120.0,
    ) -> None:
        if not apps or not shops:
            raise ValueError("at least one app (client_id -> secret) and one shop (refresh_token -> shop) are needed")
        if not 0 <= malformed_per_shop <= orders_per_shop:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if marketplace_id not in MARKETPLACES:
            raise ValueError(f"marketplace_id must be one of {', '.join(MARKETPLACES)}")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.apps = dict(apps)
        self.refresh_tokens = dict(shops)
        self.seed = seed
        self.marketplace_id = marketplace_id
        self.catalog = [dict(e) for e in (catalog if catalog is not None else CATALOG)]
        self.faults = FaultInjector(faults or FaultConfig())
        self.usage_plans = dict((USAGE_PLANS | LISTINGS_USAGE_PLANS) if usage_plans is None else usage_plans)
        self.pii_role = pii_role
        self.token_ttl_s = token_ttl_s
        self.min_age = timedelta(seconds=min_age_s)
        self.start_clock(now)
        self._lock = threading.RLock()
        self._key = hashlib.sha256(f"amazon-sim:{seed}".encode()).digest()
        self._orders: dict[str, SimOrder] = {}
        self._ids: set[str] = set()
        self._factories: dict[str, _OrderFactory] = {}
        self._defects = itertools.cycle(DEFECT_KINDS)
        self._tokens: dict[str, tuple[str, datetime]] = {}  # access token → (shop, expiry)
        self._buckets: dict[tuple[str, str], CallBucket] = {}
        self._shipments: dict[str, list[dict[str, Any]]] = {}
        self._attempts: list[dict[str, Any]] = []
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rejected_tokens = 0
        self._rate_limited = 0
        self._throttle_faults = 0
        self._token_exchanges = 0
        self._request_ids = itertools.count(1)
        start = self.now().replace(microsecond=0)
        for shop in dict.fromkeys(self.refresh_tokens.values()):
            self._seed_shop(shop, orders_per_shop, malformed_per_shop, start, spread_hours)
        self._init_stock()
        self.app = self._build_app()

    # -- data ---------------------------------------------------------------------------------

    def _new_id(self, rng: random.Random) -> str:
        while True:
            value = f"{rng.randrange(100, 1000)}-{rng.randrange(10**6, 10**7):07d}-{rng.randrange(10**6, 10**7):07d}"
            if value not in self._ids:
                self._ids.add(value)
                return value

    def _factory(self, shop: str) -> _OrderFactory:
        if shop not in self._factories:
            self._factories[shop] = _OrderFactory(shop, self.seed, self.catalog, self.marketplace_id, self._new_id)
        return self._factories[shop]

    def _defect_list(self, rng: random.Random, total: int, malformed: int) -> list[str | None]:
        positions = set(rng.sample(range(total), k=malformed))
        return [next(self._defects) if i in positions else None for i in range(total)]

    def _seed_shop(self, shop: str, count: int, malformed: int, end: datetime, spread_hours: float) -> None:
        factory = self._factory(shop)
        spread = max(1800.0, spread_hours * 3600)
        for defect in self._defect_list(factory.rng, count, malformed):
            # sim: seeded orders were last updated at least SEED_QUIET ago, so that an ingest staying
            # minutes behind now (searchOrders' two-minute rule, Amazon's late indexing) sees them all
            created = end - timedelta(seconds=int(factory.rng.uniform(900, spread)))
            updated = min(created + timedelta(seconds=factory.rng.randrange(30, 600)), end - SEED_QUIET)
            order = factory.order(self._new_id(factory.rng), created, updated, "UNSHIPPED", defect)
            self._orders[order.order_id] = order

    def _shop_of(self, shop_or_token: str) -> str:
        if shop_or_token in self.refresh_tokens:
            return self.refresh_tokens[shop_or_token]
        if shop_or_token in self.refresh_tokens.values():
            return shop_or_token
        raise KeyError(f"unknown shop or refresh token {shop_or_token!r}")

    def add_orders(self, shop: str, n: int, malformed: int = 0, *, status: str = "UNSHIPPED",
                   preorder: bool = False, lines: int | None = None) -> list[str]:
        """``n`` new orders now; ``status`` UNSHIPPED (paid), PENDING (payment not authorised) or
        PENDING_AVAILABILITY (a pre-order, ``preorder`` implied); ``lines`` items each."""
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        if status not in ("UNSHIPPED", "PENDING", "PENDING_AVAILABILITY"):
            raise ValueError("new orders start as UNSHIPPED, PENDING or PENDING_AVAILABILITY")
        if lines is not None and not 1 <= lines <= len(self.catalog):
            raise ValueError(f"lines must be between 1 and {len(self.catalog)}")
        with self._lock:
            factory = self._factory(self._shop_of(shop))
            end = self.now().replace(microsecond=0)
            ids = []
            for defect in self._defect_list(factory.rng, n, malformed):
                created = end - timedelta(seconds=factory.rng.randrange(5, 120))
                order = factory.order(self._new_id(factory.rng), created, end, status, defect, lines=lines,
                                      preorder=preorder or status == "PENDING_AVAILABILITY")
                self._orders[order.order_id] = order
                ids.append(order.order_id)
            return ids

    def make_order(self, shop: str, *, status: str = "UNSHIPPED", preorder: bool = False, lines: int | None = None,
                   defect: str | None = None) -> str:
        if defect is not None and defect not in DEFECT_KINDS:
            raise ValueError(f"defect must be one of {', '.join(DEFECT_KINDS)}")
        with self._lock:
            factory = self._factory(self._shop_of(shop))
            end = self.now().replace(microsecond=0)
            order = factory.order(self._new_id(factory.rng), end - timedelta(seconds=30), end, status, defect,
                                  lines=lines, preorder=preorder or status == "PENDING_AVAILABILITY")
            self._orders[order.order_id] = order
            return order.order_id

    # -- lifecycle ----------------------------------------------------------------------------

    def _live(self, order_id: str) -> SimOrder:
        order = self._orders.get(str(order_id))
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    def _set_status(self, order: SimOrder, status: str) -> None:
        order.data["fulfillment"]["fulfillmentStatus"] = status
        order.touch(self.now())

    def release_preorder(self, order_id: str) -> None:
        """PENDING_AVAILABILITY → PENDING: the pre-order's release date came, payment authorisation begins."""
        with self._lock:
            order = self._live(order_id)
            if order.status != "PENDING_AVAILABILITY":
                raise ValueError(f"order {order_id} is {order.status}, not PENDING_AVAILABILITY")
            self._set_status(order, "PENDING")

    def pay(self, order_id: str) -> None:
        """PENDING → UNSHIPPED: payment authorised, ready for shipment (a pre-order is released first)."""
        with self._lock:
            order = self._live(order_id)
            if order.status == "PENDING_AVAILABILITY":
                order.data["fulfillment"]["fulfillmentStatus"] = "PENDING"
            if order.status != "PENDING":
                raise ValueError(f"order {order_id} is {order.status}, not waiting for payment")
            self._set_status(order, "UNSHIPPED")

    def cancel(self, order_id: str, by: str = "BUYER") -> None:
        """The whole order cancelled (before shipment): CANCELLED, every item with a cancellationExecution."""
        with self._lock:
            order = self._live(order_id)
            if order.status not in ("PENDING", "PENDING_AVAILABILITY", "UNSHIPPED"):
                raise ValueError(f"order {order_id} is {order.status}: only an order not shipped can be cancelled")
            for item in order.data["orderItems"]:
                self._cancel_item(item, by)
            self._set_status(order, "CANCELLED")

    refund_all = cancel

    def request_cancel(self, order_id: str, order_item_id: str | None = None, reason: str = "Changed mind") -> None:
        """The buyer asks to cancel (all items, or one): a cancellationRequest, nothing else moves."""
        with self._lock:
            order = self._live(order_id)
            for item in order.data["orderItems"]:
                if order_item_id is None or item["orderItemId"] == str(order_item_id):
                    item.setdefault("cancellation", {})["cancellationRequest"] = {"requester": "BUYER",
                                                                                  "cancelReason": reason}
            order.touch(self.now())

    def cancel_item(self, order_id: str, order_item_id: str, by: str = "MERCHANT") -> None:
        """One item cancelled; the order is CANCELLED when nothing is left, else keeps its status (or
        becomes SHIPPED when every other item already left)."""
        with self._lock:
            order = self._live(order_id)
            if order.status in ("CANCELLED", "SHIPPED"):
                raise ValueError(f"order {order_id} is {order.status}")
            item = self._item(order, order_item_id)
            if item["fulfillment"]["quantityFulfilled"]:
                raise ValueError(f"item {order_item_id} already shipped")
            self._cancel_item(item, by)
            live = [i for i in order.data["orderItems"] if "cancellationExecution" not in i.get("cancellation", {})]
            if not live:
                self._set_status(order, "CANCELLED")
            elif all(i["fulfillment"]["quantityUnfulfilled"] == 0 for i in live):
                self._set_status(order, "SHIPPED")
            else:
                order.touch(self.now())

    refund_line = cancel_item

    @staticmethod
    def _cancel_item(item: dict[str, Any], by: str) -> None:
        item.setdefault("cancellation", {})["cancellationExecution"] = {"cancelledBy": by,
                                                                        "cancelReason": "Cancelled"}
        item["fulfillment"]["quantityUnfulfilled"] = 0

    def change_address(self, order_id: str, **fields: str) -> None:
        """The buyer changes the delivery address before shipment (CustomerAddress fields)."""
        allowed = {"name", "addressLine1", "addressLine2", "addressLine3", "city", "districtOrCounty",
                   "stateOrRegion", "municipality", "postalCode", "countryCode", "phone"}
        with self._lock:
            order = self._live(order_id)
            if order.status not in ("PENDING", "PENDING_AVAILABILITY", "UNSHIPPED"):
                raise ValueError(f"order {order_id} is {order.status}: the address can change only before shipment")
            unknown = set(fields) - allowed
            if unknown or not fields:
                raise ValueError(f"change_address takes some of {', '.join(sorted(allowed))}")
            order.data["recipient"]["deliveryAddress"].update({k: str(v) for k, v in fields.items()})
            order.touch(self.now())

    @staticmethod
    def _item(order: SimOrder, order_item_id: str) -> dict[str, Any]:
        for item in order.data["orderItems"]:
            if item["orderItemId"] == str(order_item_id):
                return item
        raise KeyError(f"order {order.order_id} has no item {order_item_id}")

    # -- accessors ----------------------------------------------------------------------------

    def order(self, order_id: str) -> dict[str, Any]:
        """A copy of the full order (every dataset, PII included)."""
        with self._lock:
            return copy.deepcopy(self._live(order_id).data)

    def status(self, order_id: str) -> str:
        with self._lock:
            return self._live(order_id).status

    def orders(self, shop: str) -> list[dict[str, Any]]:
        with self._lock:
            name = self._shop_of(shop)
            found = sorted((o for o in self._orders.values() if o.shop == name), key=lambda o: (o.created, o.order_id))
            return [copy.deepcopy(o.data) for o in found]

    def writebacks(self, order_id: str) -> list[tuple[str, str, list[str]]]:
        """Every package confirmShipment recorded, in order: (trackingNumber, carrierCode, orderItemIds)."""
        with self._lock:
            return [(p["trackingNumber"], p["carrierCode"], [i["orderItemId"] for i in p["orderItems"]])
                    for p in self._shipments.get(str(order_id), [])]

    def access_token(self, refresh_token: str) -> str:
        """Issue an access token for a seller directly (tests)."""
        with self._lock:
            return self._issue(self._shop_of(refresh_token))

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (the next call is refused 403)."""
        with self._lock:
            past = self.now() - timedelta(seconds=1)
            self._tokens = {t: (shop, past) for t, (shop, _) in self._tokens.items()}

    def state(self) -> dict[str, Any]:
        with self._lock:
            malformed = {o.order_id: o.defect for o in self._orders.values() if o.defect}
            statuses = Counter(o.status for o in self._orders.values())
            return {
                "orders_created": len(self._orders),
                "orders_malformed": len(malformed),
                "malformed_tids": sorted(malformed),
                "malformed": malformed,
                "orders_by_shop": dict(Counter(o.shop for o in self._orders.values())),
                "statuses": dict(statuses),
                "shipped_count": statuses.get("SHIPPED", 0),
                "shipments": {k: copy.deepcopy(v) for k, v in self._shipments.items()},
                "shipment_attempts": len(self._attempts),
                "shipment_attempt_log": copy.deepcopy(self._attempts),
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "errors": dict(self._errors),
                "rejected_tokens": self._rejected_tokens,
                "token_exchanges": self._token_exchanges,
                "throttled": self._rate_limited + self._throttle_faults,
                "rate_limited": self._rate_limited,
                "faults": dict(self.faults.injected),
                "fault_config": self.faults.config.model_dump(),
                "now": iso(self.now()),
            } | self.stock_state()

    # -- HTTP ---------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/auth/o2/token", self._lwa, methods=["POST"]),
            Route(SEARCH_PATH, self._search, methods=["GET"]),
            Route(SEARCH_PATH + "/{orderId}", self._get, methods=["GET"]),
            Route("/orders/v0/orders/{orderId}/shipmentConfirmation", self._confirm, methods=["POST"]),
            Route(LISTINGS_PATH, self._listings_item, methods=["GET", "PATCH"]),
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/_sim/orders", self._admin_orders, methods=["POST"]),
            Route("/_sim/orders/{orderId}/{action}", self._admin_lifecycle, methods=["POST"]),
        ])

    def _request_id(self) -> str:
        number = next(self._request_ids)
        digest = hashlib.sha1(f"{self.seed}:{number}".encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    def _answer(self, status: int, body: Any, operation: str | None) -> Response:
        headers = {"x-amzn-RequestId": self._request_id()}
        if operation and operation in self.usage_plans:
            headers[RATE_HEADER] = f"{self.usage_plans[operation][0]:g}"
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def _error(self, exc: SpError, operation: str | None) -> Response:
        with self._lock:
            self._errors[f"{exc.status} {exc.code}"] += 1
        return self._answer(exc.status, exc.body(), operation)

    async def _guard(self, request: Request, operation: str) -> str:
        """Faults, the access token and the usage plan, in that order; returns the seller's shop."""
        with self._lock:
            self._requests[operation] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            raise SpError(503, "ServiceUnavailable", "Service temporarily unavailable. Please retry.")  # sim
        if fault == "throttle":
            with self._lock:
                self._throttle_faults += 1
            raise SpError(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
        token = request.headers.get("x-amz-access-token", "")
        with self._lock:
            known = self._tokens.get(token)
            if known is None or known[1] <= self.now():
                self._rejected_tokens += 1
                details = ("The access token you provided has expired." if known is not None
                           else "The access token you provided is revoked, malformed or invalid.")
                raise SpError(403, "Unauthorized", "Access to requested resource is denied.", details)
            shop = known[0]
            plan = self.usage_plans.get(operation)
            if plan is not None:
                bucket = self._buckets.setdefault((shop, operation), CallBucket(*plan))
                if not bucket.take():
                    self._rate_limited += 1
                    raise SpError(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
        return shop

    # -- LWA ----------------------------------------------------------------------------------

    def _issue(self, shop: str) -> str:
        token = "Atza|" + secrets.token_urlsafe(32)
        self._tokens[token] = (shop, self.now() + timedelta(seconds=self.token_ttl_s))
        return token

    async def _lwa(self, request: Request) -> Response:
        with self._lock:
            self._requests["lwa"] += 1
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))

        def refuse(status: int, error: str, description: str) -> Response:
            with self._lock:
                self._errors[f"lwa {error}"] += 1
            return JSONResponse({"error": error, "error_description": description}, status_code=status)

        missing = [k for k in ("grant_type", "client_id", "client_secret") if not form.get(k)]
        if missing:
            return refuse(400, "invalid_request", f"The request is missing a required parameter : {missing[0]}")
        if form["grant_type"] != "refresh_token":
            return refuse(400, "unsupported_grant_type", "The authorization grant type is not supported")  # sim
        if not hmac.compare_digest(self.apps.get(form["client_id"], "\0"), form["client_secret"]):
            return refuse(401, "invalid_client", "Client authentication failed")
        shop = self.refresh_tokens.get(form.get("refresh_token", ""))
        if shop is None:
            return refuse(400, "invalid_grant", "The request has an invalid grant parameter : refresh_token")
        with self._lock:
            self._token_exchanges += 1
            token = self._issue(shop)
        return JSONResponse({"access_token": token, "refresh_token": form["refresh_token"], "token_type": "bearer",
                             "expires_in": self.token_ttl_s})

    # -- searchOrders -------------------------------------------------------------------------

    def _cursor(self, query: Mapping[str, Any], last: SimOrder | None) -> str:
        payload = {"q": _query_key(query), "t": last.data["lastUpdatedTime"] if last else "",
                   "c": last.data["createdTime"] if last else "", "id": last.order_id if last else "",
                   "x": iso(self.now() + TOKEN_LIFETIME)}
        raw = json.dumps(payload, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _read_cursor(self, token: str, query: Mapping[str, Any]) -> dict[str, Any]:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            raw, mac = blob[:-12], blob[-12:]
            if not hmac.compare_digest(mac, hmac.new(self._key, raw, hashlib.sha256).digest()[:12]):
                raise ValueError("mac")
            cursor = json.loads(raw)
        except (ValueError, TypeError):
            raise invalid("Invalid paginationToken.") from None  # sim text
        if parse_iso(cursor["x"]) < self.now():
            raise invalid("The paginationToken has expired.")  # sim text
        if cursor["q"] != _query_key(query):
            raise invalid("paginationToken was issued for a different request; all other parameters must be "
                          "provided with the same values.")  # sim text
        return cursor

    async def _search(self, request: Request) -> Response:
        try:
            shop = await self._guard(request, "searchOrders")
            query = _multi(request)
            with self._lock:
                body = self._search_orders(shop, query)
        except SpError as exc:
            return self._error(exc, "searchOrders")
        return self._answer(200, body, "searchOrders")

    def _search_orders(self, shop: str, query: dict[str, str]) -> dict[str, Any]:
        known = {"createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore", "fulfillmentStatuses",
                 "marketplaceIds", "fulfilledBy", "maxResultsPerPage", "paginationToken", "includedData"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise invalid(f"Unknown parameter: {unknown[0]}")  # sim text
        created_after, updated_after = query.get("createdAfter"), query.get("lastUpdatedAfter")
        if bool(created_after) == bool(updated_after):
            raise invalid("Exactly one of createdAfter and lastUpdatedAfter must be provided.")
        if created_after and (query.get("lastUpdatedBefore") or query.get("lastUpdatedAfter")):
            raise invalid("lastUpdatedBefore cannot be provided with createdAfter.")
        if updated_after and query.get("createdBefore"):
            raise invalid("createdBefore cannot be provided with lastUpdatedAfter.")
        by_update = bool(updated_after)
        after = _time_param(query, "lastUpdatedAfter" if by_update else "createdAfter")
        before_name = "lastUpdatedBefore" if by_update else "createdBefore"
        latest = self.now() - self.min_age
        before = _time_param(query, before_name) if query.get(before_name) else latest
        if before < after:
            after_name = "lastUpdatedAfter" if by_update else "createdAfter"
            raise invalid(f"{before_name} must be equal to or after {after_name}.")
        if before > latest:
            raise invalid(f"{before_name} must be at least two minutes before the time of the request.")
        statuses = _enum_list(query, "fulfillmentStatuses", FULFILLMENT_STATUSES)
        fulfilled = _enum_list(query, "fulfilledBy", FULFILLED_BY)
        included = _enum_list(query, "includedData", INCLUDED_DATA) or []
        marketplaces = _list(query.get("marketplaceIds"))
        if len(marketplaces) > MAX_MARKETPLACES:
            raise invalid("marketplaceIds may list at most 50 marketplaces.")
        size = _int_param(query, "maxResultsPerPage", MAX_PAGE, 1, MAX_PAGE)
        cursor = self._read_cursor(query["paginationToken"], query) if query.get("paginationToken") else None

        def key(order: SimOrder) -> tuple[str, str]:
            return (order.data["lastUpdatedTime"] if by_update else order.data["createdTime"], order.order_id)

        matching = sorted(
            (o for o in self._orders.values()
             if o.shop == shop and after <= (o.updated if by_update else o.created) <= before
             and (not marketplaces or o.data["salesChannel"]["marketplaceId"] in marketplaces)
             and (statuses is None or o.status in statuses)
             and (fulfilled is None or o.data["fulfillment"]["fulfilledBy"] in fulfilled)),
            key=key)
        if cursor is not None:
            mark = (cursor["t"] if by_update else cursor["c"], cursor["id"])
            matching = [o for o in matching if key(o) > mark]
        page = matching[:size]
        views = [self._view(o, included) for o in page]
        if views and self.faults.duplicate():
            views.append(copy.deepcopy(views[0]))  # a repeated order, as pages sometimes overlap
        answer: dict[str, Any] = {"orders": views}
        if len(matching) > size:
            answer["pagination"] = {"nextToken": self._cursor(query, page[-1])}
        answer[before_name] = iso(before)
        return answer

    def _view(self, order: SimOrder, included: Iterable[str]) -> dict[str, Any]:
        """The order as the API shows it: datasets by ``includedData``, PII only where released."""
        included = set(included)
        data = order.data
        pii = self.pii_role and order.status in PII_STATUSES
        priced = order.status not in ("PENDING", "PENDING_AVAILABILITY")  # sim: as v0 documents for Pending
        out: dict[str, Any] = {k: copy.deepcopy(data[k]) for k in ("orderId", "createdTime", "lastUpdatedTime",
                                                                   "programs", "salesChannel") if k in data}
        if "BUYER" in included:
            out["buyer"] = copy.deepcopy(data["buyer"]) if pii else {}
        if "RECIPIENT" in included:
            address = copy.deepcopy(data["recipient"]["deliveryAddress"])
            if not pii:
                for name in ("name", "addressLine1", "addressLine2", "addressLine3", "postalCode", "phone",
                             "extendedFields"):
                    address.pop(name, None)
            out["recipient"] = {"deliveryAddress": address}
        if "PROCEEDS" in included and priced:
            out["proceeds"] = copy.deepcopy(data["proceeds"])
        if "FULFILLMENT" in included:
            out["fulfillment"] = copy.deepcopy(data["fulfillment"])
        items = []
        for item in data["orderItems"]:
            view: dict[str, Any] = {"orderItemId": item["orderItemId"], "quantityOrdered": item["quantityOrdered"],
                                    "product": copy.deepcopy(item["product"])}
            if not priced:
                view["product"].pop("price", None)
            if "PROCEEDS" in included and priced:
                view["proceeds"] = copy.deepcopy(item["proceeds"])
            if "PROMOTION" in included and "promotion" in item:
                view["promotion"] = copy.deepcopy(item["promotion"])
            if "CANCELLATION" in included and item.get("cancellation"):
                view["cancellation"] = copy.deepcopy(item["cancellation"])
            if "FULFILLMENT" in included:
                view["fulfillment"] = copy.deepcopy(item["fulfillment"])
                if not pii and "packing" in view["fulfillment"]:
                    view["fulfillment"]["packing"].get("giftOption", {}).pop("giftMessage", None)
            items.append(view)
        out["orderItems"] = items
        if "PACKAGES" in included and data["fulfillment"]["fulfilledBy"] == "MERCHANT":
            out["packages"] = copy.deepcopy(data["packages"])
        return out

    # -- getOrder -----------------------------------------------------------------------------

    async def _get(self, request: Request) -> Response:
        try:
            shop = await self._guard(request, "getOrder")
            query = _multi(request)
            unknown = sorted(set(query) - {"includedData"})
            if unknown:
                raise invalid(f"Unknown parameter: {unknown[0]}")  # sim text
            included = _enum_list(query, "includedData", INCLUDED_DATA) or []
            with self._lock:
                order = self._orders.get(request.path_params["orderId"])
                if order is None or order.shop != shop:
                    raise SpError(404, "NotFound", "The requested order was not found.")  # sim text
                body = {"order": self._view(order, included)}
        except SpError as exc:
            return self._error(exc, "getOrder")
        return self._answer(200, body, "getOrder")

    # -- confirmShipment ----------------------------------------------------------------------

    async def _confirm(self, request: Request) -> Response:
        try:
            shop = await self._guard(request, "confirmShipment")
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                raise invalid("The request body is not valid JSON.") from None  # sim text
            with self._lock:
                self._confirm_shipment(shop, request.path_params["orderId"], body)
        except SpError as exc:
            return self._error(exc, "confirmShipment")
        return self._answer(204, None, "confirmShipment")

    def _confirm_shipment(self, shop: str, order_id: str, body: Any) -> None:
        attempt: dict[str, Any] = {"order_id": order_id, "at": iso(self.now()), "ok": False, "error": None}
        self._attempts.append(attempt)
        try:
            self._ship(shop, order_id, body, attempt)
        except SpError as exc:
            attempt["error"] = f"{exc.code}: {exc.message}"
            raise
        attempt["ok"] = True

    def _ship(self, shop: str, order_id: str, body: Any, attempt: dict[str, Any]) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("packageDetail"), dict):
            raise invalid("packageDetail is required.")
        if not isinstance(body.get("marketplaceId"), str) or not body["marketplaceId"]:
            raise invalid("marketplaceId is required.")
        detail = body["packageDetail"]
        for name in ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate", "orderItems"):
            if detail.get(name) in (None, "", []):
                raise invalid(f"packageDetail.{name} is required.")
        reference = str(detail["packageReferenceId"])
        if not reference.isdigit() or int(reference) <= 0:
            raise invalid("packageReferenceId must be a positive numeric value.")
        if detail["carrierCode"] == CARRIER_OTHER and not detail.get("carrierName"):
            raise invalid("carrierName is required when carrierCode is Other.")
        try:
            parse_iso(str(detail["shipDate"]))
        except ValueError:
            raise invalid("Invalid Input", "shipDate must be an ISO 8601 date-time.") from None
        attempt.update(reference=reference, tracking=detail["trackingNumber"], carrier=detail["carrierCode"])
        order = self._orders.get(order_id)
        if order is None or order.shop != shop:
            raise SpError(404, "NotFound", "The requested order was not found.")  # sim text
        if body["marketplaceId"] != order.data["salesChannel"]["marketplaceId"]:
            raise invalid("The order does not belong to this marketplaceId.")  # sim text
        wanted: dict[str, int] = {}
        for line in detail["orderItems"]:
            if not isinstance(line, dict) or not isinstance(line.get("quantity"), int) or line["quantity"] <= 0 \
                    or not line.get("orderItemId"):
                raise invalid("Each order item needs an orderItemId and a positive quantity.")
            wanted[str(line["orderItemId"])] = wanted.get(str(line["orderItemId"]), 0) + line["quantity"]
        packages = self._shipments.setdefault(order_id, [])
        existing = next((p for p in packages if p["packageReferenceId"] == reference), None)
        if existing is not None:  # "submit another confirmShipment with the same packageReferenceID": an edit
            existing.update(carrierCode=detail["carrierCode"], carrierName=detail.get("carrierName"),
                            trackingNumber=detail["trackingNumber"], shipDate=detail["shipDate"])
            for package in order.data["packages"]:
                if package["packageReferenceId"] == reference:
                    package.update(carrier=detail.get("carrierName") or detail["carrierCode"],
                                   trackingNumber=detail["trackingNumber"], shipTime=iso(parse_iso(detail["shipDate"])))
            order.touch(self.now())
            attempt["edit"] = True
            return
        if order.status not in SHIPPABLE:
            raise invalid(f"The order cannot be confirmed in status {order.status}.")  # sim text
        for item_id, quantity in wanted.items():
            item = self._item_or_none(order, item_id)
            if item is None:
                raise invalid(f"Order item {item_id} is not part of order {order_id}.")  # sim text
            if quantity > item["fulfillment"]["quantityUnfulfilled"]:
                raise invalid(f"Quantity for order item {item_id} exceeds the quantity left to ship.")  # sim text
        moment = self.now()
        for item_id, quantity in wanted.items():
            fulfillment = self._item(order, item_id)["fulfillment"]
            fulfillment["quantityFulfilled"] += quantity
            fulfillment["quantityUnfulfilled"] -= quantity
        packages.append({"packageReferenceId": reference, "carrierCode": detail["carrierCode"],
                         "carrierName": detail.get("carrierName"), "trackingNumber": detail["trackingNumber"],
                         "shipDate": detail["shipDate"], "at": iso(moment),
                         "orderItems": [{"orderItemId": k, "quantity": v} for k, v in wanted.items()]})
        order.data["packages"].append({
            "packageReferenceId": reference, "createdTime": iso(moment),
            "packageStatus": {"status": "SHIPPED"}, "carrier": detail.get("carrierName") or detail["carrierCode"],
            "shipTime": iso(parse_iso(detail["shipDate"])), "trackingNumber": detail["trackingNumber"],
            "packageItems": [{"orderItemId": k, "quantity": v} for k, v in wanted.items()],
        })
        live = [i for i in order.data["orderItems"] if "cancellationExecution" not in i.get("cancellation", {})]
        done = all(i["fulfillment"]["quantityUnfulfilled"] == 0 for i in live)
        self._set_status(order, "SHIPPED" if done else "PARTIALLY_SHIPPED")

    @staticmethod
    def _item_or_none(order: SimOrder, order_item_id: str) -> dict[str, Any] | None:
        return next((i for i in order.data["orderItems"] if i["orderItemId"] == order_item_id), None)

    # -- admin --------------------------------------------------------------------------------

    async def _admin_orders(self, request: Request) -> Response:
        try:
            body = await request.json()
            lines = body.get("lines")
            ids = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                  status=str(body.get("status") or "UNSHIPPED"), preorder=bool(body.get("preorder")),
                                  lines=int(lines) if lines is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"order_ids": ids})

    async def _admin_lifecycle(self, request: Request) -> Response:
        actions: dict[str, Callable[..., None]] = {
            "release_preorder": self.release_preorder, "pay": self.pay, "cancel": self.cancel,
            "refund_all": self.refund_all, "request_cancel": self.request_cancel, "cancel_item": self.cancel_item,
            "refund_line": self.refund_line, "change_address": self.change_address,
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": f"unknown action; one of {', '.join(actions)}"}, status_code=404)
        order_id = request.path_params["orderId"]
        try:
            body = await request.json() if await request.body() else {}
            action(order_id, **(body or {}))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"orderId": order_id, "status": self.status(order_id)})


# ----------------------------------------------------------------------------- request helpers


def _multi(request: Request) -> dict[str, str]:
    """Query parameters; a repeated name is joined with commas (csv is the Swagger 2.0 default)."""
    merged: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        merged.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in merged.items()}


def _query_key(query: Mapping[str, Any]) -> str:
    """What must stay the same between pages: all but paginationToken, maxResultsPerPage, includedData."""
    kept = {k: v for k, v in sorted(query.items()) if k not in ("paginationToken", "maxResultsPerPage", "includedData")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _enum_list(query: Mapping[str, str], name: str, allowed: Iterable[str]) -> set[str] | None:
    if name not in query:
        return None
    values = _list(query[name])
    allowed = set(allowed)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise invalid(f"Invalid value for {name}: {bad[0]}")  # sim text
    return set(values)


def _time_param(query: Mapping[str, str], name: str) -> datetime:
    try:
        return parse_iso(query[name])
    except (KeyError, ValueError):
        raise invalid(f"{name} must be an ISO 8601 date-time.") from None  # sim text


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise invalid(f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise invalid(f"The value must be between {low} and {high}.", f"{name}={value}")  # sim text
    return value
