"""A local Shopify GraphQL Admin API for one or more stores, written from Shopify's documentation.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the documentation, so that a connector that misreads it fails here.

Rules enforced, and where each one comes from (shopify.dev):

* Endpoint and auth -- GraphQL Admin API reference (https://shopify.dev/docs/api/admin-graphql):
  ``POST /admin/api/{version}/graphql.json`` with a JSON ``{"query", "variables"}`` body and the
  ``X-Shopify-Access-Token`` header. A missing or unknown token is ``401`` with
  ``{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}`` (the
  REST-style body Shopify answers for both APIs). Statuses from "Shopify API response status and
  error codes" (https://shopify.dev/docs/api/usage/response-codes). Each token belongs to one store
  here (the real endpoint is per shop domain; a simulator on 127.0.0.1 tells the stores apart by token).
* GraphQL -- the document is parsed (operations, aliases, arguments, variables, nested selections; no
  fragments) and every answer carries only what was selected; a field the schema subset does not have
  is refused like Shopify does (``Field 'x' doesn't exist on type 'Order'``, code ``undefinedField``),
  so a connector that asks for a wrong field fails here.
* Calculated query cost -- "GraphQL Admin API rate limits"
  (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): scalars and enums cost 0,
  objects 1, a connection 2 plus ``first`` times its node, a mutation 10; the bucket must hold the
  requested cost, and the difference to the actual cost is refunded; every answer has
  ``extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus {maximumAvailable,
  currentlyAvailable, restoreRate}}``; when the bucket is short the answer is
  ``errors: [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]`` with ``actualQueryCost``
  null; a single query above 1,000 points is ``MAX_COST_EXCEEDED``. Plan figures: Standard 100
  points/second (``restore_rate``); the bucket size is a constructor option (``bucket_size``, 2,000 by
  default: sim choice, the page gives rates, not our plan's size).
* Orders -- ``orders(first ≤ 250, after, query, sortKey, reverse)`` with ``pageInfo {hasNextPage
  endCursor}``; the ``query`` filter understands ``updated_at`` / ``created_at`` with ``:``, ``:<``,
  ``:<=``, ``:>``, ``:>=`` and quoted date values (search syntax, https://shopify.dev/docs/api/usage/search-syntax);
  cursors are opaque and mark a position in the sort order (keyset), so an order updated during a walk
  moves to the end instead of shifting the others. Only the last 60 days are visible without
  ``read_all_orders`` (sim: always applied). ``order(id)`` is ``null`` for an unknown id.
* Statuses -- ``displayFinancialStatus`` (OrderDisplayFinancialStatus: PENDING, AUTHORIZED, PARTIALLY_PAID,
  PAID, PARTIALLY_REFUNDED, REFUNDED, VOIDED, EXPIRED) and ``displayFulfillmentStatus``
  (UNFULFILLED, PARTIALLY_FULFILLED, FULFILLED, ...); ``cancelledAt``/``cancelReason``; a refunded line
  keeps ``quantity`` and drops ``currentQuantity``; every change moves ``updatedAt``.
* Fulfillment orders and ``fulfillmentCreate(fulfillment: FulfillmentInput!)`` -- FulfillmentInput:
  ``lineItemsByFulfillmentOrder [{fulfillmentOrderId, fulfillmentOrderLineItems [{id, quantity}]}]``
  (blank line items = all of that fulfillment order), ``trackingInfo {company number url}``,
  ``notifyCustomer``; all fulfillment orders of one mutation belong to the same order and location;
  only OPEN / IN_PROGRESS fulfillment orders can be fulfilled; refusals are ``userErrors``. Any
  ``company`` text is accepted (Shopify shows unknown companies as given).
* Webhooks -- "Webhooks delivery structure" / "Verify webhook deliveries": a POST of the REST
  resource with ``X-Shopify-Topic``, ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body with
  the app's client secret), ``X-Shopify-Shop-Domain``, ``X-Shopify-API-Version``, ``X-Shopify-Webhook-Id``,
  ``X-Shopify-Event-Id``, ``X-Shopify-Triggered-At``; a retry re-sends the same ids.

Sim choices (documentation silent): one fulfillment order per order at one location; presentment
currency = shop currency; money as 2-decimal strings; a COD order stays PENDING with gateway
"Cash on Delivery (COD)"; the ``error_5xx`` fault answers HTTP 503, the ``throttle`` fault a THROTTLED
answer whose bucket needs ``retry_after_s`` seconds.

Public API: ``ShopifySimulator(stores, client_secret, orders_per_shop, malformed_per_shop, seed, now,
spread_hours, faults, bucket_size, restore_rate, currency, catalog)``; ``.app`` (ASGI: the GraphQL
endpoint, ``GET /_sim/state``, ``GET|POST /_sim/faults``, ``POST /_sim/orders``, ``POST
/_sim/orders/{id}/{action}``); ``state()``, ``orders(shop)``, ``order(id)``, ``status(id)``,
``writebacks(id)``, ``add_orders(shop, n, malformed, *, financial, lines, presale)``; lifecycle
``pay``, ``pay_balance``, ``cancel``, ``refund_all``, ``refund_line``, ``change_address``; webhooks
``webhooks()``, ``flush_webhooks(url)``; ``now()``/``set_now()``/``advance()``; ``sign_webhook(body)``.
Stock (``simulators/shopify_stock.py``: variants by SKU, locations, levels, ``inventorySetQuantities``
with compare-and-set and ``@idempotent`` by API version): ``shown_stock(sku, shop=None)``,
``sell_on_channel(sku, n, shop=None)`` (also ``POST /_sim/stock/{sku}/sell``), ``set_channel_stock``,
``stock_updates`` ``[(time.monotonic(), sku, available)]``, ``stock_writes``, ``stock_throttled``; the
stock and its counters are in ``state()``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.catalog import CATALOG
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector
from simulators.shopify_stock import ShopifyStockSim

MAX_FIRST = 250
MAX_QUERY_COST = 1000
MUTATION_COST = 10
HISTORY = timedelta(days=60)
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
VERSION_SHAPE = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
LOCATION = "gid://shopify/Location/1"
COD_GATEWAY = "Cash on Delivery (COD)"
DEFECT_KINDS = ("empty_address", "invalid_mobile", "missing_sku", "bad_amount")
CENT = Decimal("0.01")
DEPOSIT_SHARE = Decimal("0.3")  # sim choice: a partial payment (deposit) is 30 %


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_webhook(body: bytes, client_secret: str) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256(raw body, client secret)."""
    return base64.b64encode(hmac.new(client_secret.encode(), body, hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- a small GraphQL reader


class GraphQLError(Exception):
    def __init__(self, message: str, code: str = "", status: int = 200) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass
class Selection:
    name: str
    alias: str
    args: dict[str, Any]
    children: list[Selection] | None
    directives: dict[str, dict[str, Any]] = field(default_factory=dict)  # ``@name(args)`` on the field


_TOKEN = re.compile(r'\s*(?:(\.\.\.)|([{}()\[\]:!$=@,])|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|([A-Za-z_]\w*))')


def _tokens(text: str) -> list[str]:
    text = re.sub(r"#[^\n]*", "", text)
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise GraphQLError(f"Parse error on {text[pos:pos + 10]!r}", "parseError")
        token = match.group(0).strip()
        pos = match.end()
        if token != ",":
            out.append(token)
    return out


class _Parser:
    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.variables = variables

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if not token or (expected is not None and token != expected):
            raise GraphQLError(f"Parse error: expected {expected or 'a token'}, got {token or 'end'}", "parseError")
        self.pos += 1
        return token

    def document(self) -> tuple[str, list[Selection]]:
        kind = "query"
        if self.peek() in ("query", "mutation", "subscription"):
            kind = self.take()
            if self.peek() not in ("{", "("):
                self.take()  # operation name
            if self.peek() == "(":
                depth = 0
                while True:  # variable definitions: skipped, values come from "variables"
                    token = self.take()
                    depth += token == "("
                    depth -= token == ")"
                    if depth == 0:
                        break
        if self.peek() == "...":
            raise GraphQLError("fragments are not supported by this simulator", "parseError")
        selections = self.selection_set()
        if self.peek():
            raise GraphQLError("only one operation per document is supported here", "parseError")
        return kind, selections

    def selection_set(self) -> list[Selection]:
        self.take("{")
        items = []
        while self.peek() != "}":
            if self.peek() == "...":
                raise GraphQLError("fragments are not supported by this simulator", "parseError")
            name = self.take()
            alias = name
            if self.peek() == ":":
                self.take()
                name = self.take()
            args = self.arguments() if self.peek() == "(" else {}
            directives = {}
            while self.peek() == "@":
                self.take("@")
                directive = self.take()
                directives[directive] = self.arguments() if self.peek() == "(" else {}
            children = self.selection_set() if self.peek() == "{" else None
            items.append(Selection(name, alias, args, children, directives))
        self.take("}")
        return items

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args = {}
        while self.peek() != ")":
            key = self.take()
            self.take(":")
            args[key] = self.value()
        self.take(")")
        return args

    def value(self) -> Any:
        token = self.take()
        if token == "$":
            return self.variables.get(self.take())
        if token.startswith('"'):
            return json.loads(token)
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if token == "{":
            obj = {}
            while self.peek() != "}":
                key = self.take()
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if token in ("true", "false"):
            return token == "true"
        if token == "null":
            return None
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        return token  # enum value


def requested_cost(selections: list[Selection]) -> int:
    """Requested cost: objects 1, connections 2 + first × node, lists with ``first`` first × item."""
    total = 0
    for sel in selections:
        if sel.children is None:
            continue
        names = {c.name for c in sel.children}
        first = int(sel.args.get("first") or 0)
        if names & {"nodes", "edges", "pageInfo"}:
            nodes = next((c for c in sel.children if c.name in ("nodes", "edges")), None)
            per_node = 1 + requested_cost(nodes.children or []) if nodes and nodes.children else 1
            if nodes and nodes.name == "edges":
                node = next((c for c in nodes.children or [] if c.name == "node"), None)
                per_node = 1 + requested_cost(node.children or []) if node else 1
            total += 2 + max(first, 1) * per_node
        elif first:
            total += first * (1 + requested_cost(sel.children))
        else:
            total += 1 + requested_cost(sel.children)
    return total


def actual_cost(value: Any) -> int:
    """Objects actually returned (a connection object counts 2)."""
    if isinstance(value, list):
        return sum(actual_cost(v) for v in value)
    if isinstance(value, dict):
        own = 2 if "pageInfo" in value or "nodes" in value else 1
        return own + sum(actual_cost(v) for v in value.values() if isinstance(v, (dict, list)))
    return 0


def project(value: Any, selections: list[Selection], typename: str = "QueryRoot") -> Any:
    """Keep what the selection asks for; paginate nested connections and lists by ``first``/``after``."""
    if value is None:
        return None
    if isinstance(value, list):
        return [project(v, selections, typename) for v in value]
    out: dict[str, Any] = {}
    kind = str(value.get("__typename") or typename)
    for sel in selections:
        if sel.name == "__typename":
            out[sel.alias] = kind
            continue
        if sel.name not in value:
            raise GraphQLError(f"Field '{sel.name}' doesn't exist on type '{kind}'", "undefinedField")
        item = value[sel.name]
        if sel.directives and not callable(item):
            raise GraphQLError(f"Directive '{next(iter(sel.directives))}' is not allowed on '{kind}.{sel.name}'",
                               "directiveNotAllowed")  # sim text
        if callable(item):  # a field with arguments; its directives come as "@" (only mutations read them)
            item = item(sel.args | {"@": sel.directives} if sel.directives else sel.args)
        elif isinstance(item, dict) and "nodes" in item:
            if "first" not in sel.args:
                raise GraphQLError(f"you must provide one of first or last ({kind}.{sel.name})", "argumentMissing")
            item = paginate(item["nodes"], sel.args)
        elif isinstance(item, list) and "first" in sel.args:
            item = item[: int(sel.args["first"] or 0)]
        if sel.children is None:
            if isinstance(item, (dict, list)) and item and not isinstance(item, list):
                raise GraphQLError(f"Field '{sel.name}' of type '{kind}' must have a selection of subfields",
                                   "selectionMismatch")
            out[sel.alias] = item
        else:
            out[sel.alias] = project(item, sel.children, kind)
    return out


def paginate(items: list[Any], args: Mapping[str, Any], key: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """A connection page: ``first`` (≤ 250) items after the opaque cursor ``after``."""
    first = args.get("first")
    if first is None:
        raise GraphQLError("you must provide one of first or last", "argumentMissing")
    if not 0 <= int(first) <= MAX_FIRST:
        raise GraphQLError(f"The first argument must be between 0 and {MAX_FIRST}", "argumentLiteralsIncompatible")
    key = key or (lambda item: str(item.get("id")))
    start = 0
    after = args.get("after")
    if after:
        try:
            marker = base64.b64decode(str(after)).decode()
        except ValueError:
            raise GraphQLError("Invalid cursor for current pagination sort.", "argumentLiteralsIncompatible") from None
        start = next((i + 1 for i, item in enumerate(items) if key(item) == marker), None)
        if start is None:  # the item moved: keyset position = first item sorting after the marker
            start = sum(1 for item in items if key(item) < marker)
    page = items[start:start + int(first)]
    cursor = base64.b64encode(key(page[-1]).encode()).decode() if page else None
    return {"__typename": "Connection", "nodes": page, "edges": [{"node": n, "cursor": None} for n in page],
            "pageInfo": {"__typename": "PageInfo", "hasNextPage": start + len(page) < len(items),
                         "endCursor": cursor, "hasPreviousPage": start > 0, "startCursor": None}}


# --------------------------------------------------------------------------- data


@dataclass
class SimOrder:
    number: int
    shop: str
    data: dict[str, Any]
    defect: str | None = None
    fulfillment_orders: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gid(self) -> str:
        return str(self.data["id"])

    @property
    def updated(self) -> datetime:
        return datetime.fromisoformat(self.data["updatedAt"].replace("Z", "+00:00"))

    def touch(self, moment: datetime) -> None:
        self.data["updatedAt"] = iso(moment)


NAMES = ("王伟", "李娜", "张敏", "刘洋", "陈静", "杨磊", "黄艳", "赵勇", "吴杰", "周娟", "徐涛", "孙明")
REGIONS = (("浙江省", "ZJ", "杭州市", "310012"), ("上海市", "SH", "上海市", "201203"),
           ("北京市", "BJ", "北京市", "100102"), ("广东省", "GD", "深圳市", "518057"),
           ("江苏省", "JS", "南京市", "210009"), ("四川省", "SC", "成都市", "610041"))
ROADS = ("文一西路", "学院路", "建国路", "人民路", "中山路", "科技园路")


class _Factory:
    def __init__(self, shop: str, seed: int, catalog: list[dict[str, Any]], currency: str,
                 new_number: Callable[[], int]) -> None:
        self.shop = shop
        self.rng = random.Random(f"shopify:{seed}:{shop}")
        self.catalog = catalog
        self.currency = currency
        self.new_number = new_number
        self.ids = itertools.count(int(self.rng.randrange(10_000_000, 90_000_000)) * 1000)

    def _id(self) -> int:
        return next(self.ids)

    def _bag(self, amount: Decimal) -> dict[str, Any]:
        value = {"__typename": "MoneyV2", "amount": money(amount), "currencyCode": self.currency}
        return {"__typename": "MoneyBag", "shopMoney": value, "presentmentMoney": dict(value)}

    def _address(self) -> dict[str, Any]:
        province, code, city, zip_code = self.rng.choice(REGIONS)
        name = self.rng.choice(NAMES)
        phone = "+86 1" + self.rng.choice("3589") + "".join(self.rng.choice("0123456789") for _ in range(9))
        return {"__typename": "MailingAddress", "name": name, "firstName": name[1:], "lastName": name[0],
                "company": None, "address1": f"{self.rng.choice(ROADS)}{self.rng.randrange(1, 999)}号",
                "address2": f"{self.rng.randrange(1, 30)}幢{self.rng.randrange(101, 2999)}室", "city": city,
                "province": province, "provinceCode": code, "zip": zip_code, "country": "China",
                "countryCodeV2": "CN", "phone": phone}

    def order(self, created: datetime, financial: str, defect: str | None, lines: int | None,
              presale: bool) -> SimOrder:
        number = self.new_number()
        oid = self._id()
        count = lines or self.rng.choice((1, 1, 2, 2, 3))
        goods = self.rng.sample(self.catalog, k=min(count, len(self.catalog)))
        line_items, subtotal, discounts = [], Decimal(0), Decimal(0)
        for entry in goods:
            qty = self.rng.choice((1, 1, 2, 3))
            price = Decimal(str(entry["price"]))
            off = Decimal("5.00") if self.rng.random() < 0.25 and price * qty > 5 else Decimal(0)
            line_id = self._id()
            sku = str(entry["sku"])
            line_items.append({
                "__typename": "LineItem", "id": f"gid://shopify/LineItem/{line_id}", "sku": sku,
                "name": str(entry.get("title") or sku), "title": str(entry.get("item_title") or sku),
                "quantity": qty, "currentQuantity": qty,
                "variant": {"__typename": "ProductVariant", "id": f"gid://shopify/ProductVariant/{entry['sku_id']}",
                            "sku": sku},
                "sellingPlan": {"__typename": "LineItemSellingPlan", "name": "Pre-order"} if presale else None,
                "originalUnitPriceSet": self._bag(price), "discountedTotalSet": self._bag(price * qty - off),
                "totalDiscountSet": self._bag(off),
            })
            subtotal += price * qty
            discounts += off
        shipping = Decimal(self.rng.choice(("0.00", "0.00", "10.00", "12.00")))
        total = subtotal - discounts + shipping
        cod = financial == "PENDING" and self.rng.random() < 0.5
        data = {
            "__typename": "Order", "id": f"gid://shopify/Order/{oid}", "legacyResourceId": str(oid),
            "name": f"#{number}", "createdAt": iso(created), "updatedAt": iso(created), "processedAt": iso(created),
            "closed": False, "closedAt": None, "cancelledAt": None, "cancelReason": None,
            "displayFinancialStatus": financial, "displayFulfillmentStatus": "UNFULFILLED",
            "currencyCode": self.currency, "presentmentCurrencyCode": self.currency, "test": False,
            "email": f"buyer{self.rng.randrange(1000, 9999)}@example.com", "note": None, "tags": [],
            "paymentGatewayNames": [COD_GATEWAY] if cod else ["shopify_payments"],
            "totalPriceSet": self._bag(total), "totalLineItemsPriceSet": self._bag(subtotal),
            "totalDiscountsSet": self._bag(discounts), "totalShippingPriceSet": self._bag(shipping),
            "totalTaxSet": self._bag(Decimal(0)),
            "customer": {"__typename": "Customer", "id": f"gid://shopify/Customer/{self._id()}",
                         "displayName": self.rng.choice(NAMES)},
            "shippingAddress": self._address(),
            "lineItems": {"nodes": line_items}, "refunds": [], "fulfillments": [],
        }
        order = SimOrder(number=number, shop=self.shop, data=data, defect=defect)
        order.fulfillment_orders = [{
            "__typename": "FulfillmentOrder", "id": f"gid://shopify/FulfillmentOrder/{self._id()}", "status": "OPEN",
            "assignedLocation": {"__typename": "FulfillmentOrderAssignedLocation",
                                 "location": {"__typename": "Location", "id": LOCATION}},
            "lineItems": {"nodes": [{"__typename": "FulfillmentOrderLineItem",
                                     "id": f"gid://shopify/FulfillmentOrderLineItem/{self._id()}",
                                     "remainingQuantity": li["quantity"], "totalQuantity": li["quantity"],
                                     "lineItem": {"__typename": "LineItem", "id": li["id"]}} for li in line_items]},
        }]
        self.spoil(order, defect)
        return order

    def spoil(self, order: SimOrder, defect: str | None) -> None:
        data = order.data
        if defect == "empty_address":
            data["shippingAddress"]["address1"] = ""
            data["shippingAddress"]["address2"] = ""
        elif defect == "invalid_mobile":
            data["shippingAddress"]["phone"] = self.rng.choice(("+86 1381234", "138abcd5678"))
        elif defect == "missing_sku":
            line = data["lineItems"]["nodes"][0]
            line["sku"] = None
            line["variant"]["sku"] = None
        elif defect == "bad_amount":
            bag = data["totalPriceSet"]
            bag["shopMoney"]["amount"] = bag["shopMoney"]["amount"].replace(".", ",")


# --------------------------------------------------------------------------- the simulator


@dataclass
class _Bucket:
    size: float
    rate: float
    level: float = -1.0
    last: float = field(default_factory=time.monotonic)

    def available(self) -> float:
        now = time.monotonic()
        if self.level < 0:
            self.level = self.size
        self.level = min(self.size, self.level + (now - self.last) * self.rate)
        self.last = now
        return self.level


class ShopifySimulator(SimClock, SimAdmin, ShopifyStockSim):
    """Shopify stores behind one GraphQL Admin endpoint; ``app`` is the ASGI app.

    ``stores`` maps access token → shop domain (``tongdao-a.myshopify.com``); ``client_secret`` signs
    the webhooks. Each store starts with ``orders_per_shop`` paid, unfulfilled orders created over the
    ``spread_hours`` before ``now``, ``malformed_per_shop`` of them defective (cycling ``DEFECT_KINDS``).
    """

    def __init__(self, stores: Mapping[str, str], client_secret: str = "shpss_sim_secret", orders_per_shop: int = 20,
                 malformed_per_shop: int = 0, seed: int = 1, now: datetime | None = None, spread_hours: float = 6,
                 faults: FaultConfig | None = None, bucket_size: float = 2000.0, restore_rate: float = 100.0,
                 currency: str = "CNY", catalog: Iterable[Mapping[str, Any]] | None = None,
                 api_version: str = "2025-10") -> None:
        if not stores:
            raise ValueError("at least one store (access token -> shop domain) is needed")
        if not 0 <= malformed_per_shop <= orders_per_shop:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.stores = dict(stores)
        self.client_secret = client_secret
        self.seed = seed
        self.currency = currency
        self.api_version = api_version
        self.catalog = [dict(e) for e in (catalog if catalog is not None else CATALOG)]
        self.faults = FaultInjector(faults or FaultConfig())
        self.bucket_size, self.restore_rate = float(bucket_size), float(restore_rate)
        self.start_clock(now)
        self._lock = threading.RLock()
        self._orders: dict[str, SimOrder] = {}  # by legacy id
        self._factories: dict[str, _Factory] = {}
        self._numbers = itertools.count(1001)
        self._defects = itertools.cycle(DEFECT_KINDS)
        self._buckets: dict[str, _Bucket] = {}
        self._writebacks: dict[str, list[tuple[str, str, list[str]]]] = {}
        self._webhooks: list[dict[str, Any]] = []
        self._hook_ids = itertools.count(1)
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rejected_tokens = 0
        self._throttled = 0
        self._fulfillment_attempts = 0
        self._fulfillment_refusals = 0
        self._webhooks_sent = 0
        start = self.now().replace(microsecond=0)
        for shop in dict.fromkeys(self.stores.values()):
            factory = self._factory(shop)
            positions = set(factory.rng.sample(range(orders_per_shop), k=malformed_per_shop))
            for index in range(orders_per_shop):
                created = start - timedelta(seconds=int(factory.rng.uniform(60, max(120.0, spread_hours * 3600))))
                defect = next(self._defects) if index in positions else None
                self._add(factory.order(created, "PAID", defect, None, False), emit=False)
        self._init_stock()
        self.app = self._build_app()

    # -- data -------------------------------------------------------------------------------

    def _factory(self, shop: str) -> _Factory:
        if shop not in self._factories:
            self._factories[shop] = _Factory(shop, self.seed, self.catalog, self.currency, lambda: next(self._numbers))
        return self._factories[shop]

    def _shop_of(self, shop_or_token: str) -> str:
        if shop_or_token in self.stores:
            return self.stores[shop_or_token]
        if shop_or_token in self.stores.values():
            return shop_or_token
        raise KeyError(f"unknown store or token {shop_or_token!r}")

    def _add(self, order: SimOrder, emit: bool = True) -> None:
        self._orders[order.data["legacyResourceId"]] = order
        if emit:
            self._emit("orders/create", order)

    def add_orders(self, shop_or_token: str, n: int, malformed: int = 0, *, financial: str = "PAID",
                   lines: int | None = None, presale: bool = False) -> list[str]:
        """``n`` new orders now; ``financial``: PAID (default), PENDING (unpaid; COD for some),
        AUTHORIZED, or PARTIALLY_PAID (a deposit: drive on with ``pay_balance``). Returns legacy ids."""
        if financial not in ("PAID", "PENDING", "AUTHORIZED", "PARTIALLY_PAID"):
            raise ValueError("new orders are PAID, PENDING, AUTHORIZED or PARTIALLY_PAID")
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        with self._lock:
            factory = self._factory(self._shop_of(shop_or_token))
            positions = set(factory.rng.sample(range(n), k=malformed))
            ids = []
            for index in range(n):
                order = factory.order(self.now().replace(microsecond=0), financial,
                                      next(self._defects) if index in positions else None, lines, presale)
                self._add(order)
                ids.append(order.data["legacyResourceId"])
            return ids

    # -- lifecycle --------------------------------------------------------------------------

    def _live(self, order_id: str | int) -> SimOrder:
        key = str(order_id).rsplit("/", 1)[-1]
        if key not in self._orders:
            raise KeyError(f"no order {order_id}")
        return self._orders[key]

    def _changed(self, order: SimOrder, topic: str, **extra: Any) -> None:
        order.touch(self.now())
        self._emit(topic, order, **extra)
        if topic != "orders/updated":
            self._emit("orders/updated", order)

    def pay(self, order_id: str | int) -> None:
        """PENDING/AUTHORIZED → PAID (captured, or a manual payment marked as paid)."""
        with self._lock:
            order = self._live(order_id)
            if order.data["displayFinancialStatus"] not in ("PENDING", "AUTHORIZED"):
                raise ValueError(f"order {order_id} is {order.data['displayFinancialStatus']}, not awaiting payment")
            order.data["displayFinancialStatus"] = "PAID"
            self._changed(order, "orders/paid")

    def pay_balance(self, order_id: str | int) -> None:
        """PARTIALLY_PAID → PAID (the balance of a deposit order)."""
        with self._lock:
            order = self._live(order_id)
            if order.data["displayFinancialStatus"] != "PARTIALLY_PAID":
                raise ValueError(f"order {order_id} is not partially paid")
            order.data["displayFinancialStatus"] = "PAID"
            self._changed(order, "orders/paid")

    def cancel(self, order_id: str | int, reason: str = "CUSTOMER", refund: bool = True) -> None:
        """``orderCancel``: cancelledAt/cancelReason; paid money refunded (REFUNDED) or an unpaid
        order VOIDED; lines' currentQuantity 0; open fulfillment orders closed."""
        with self._lock:
            order = self._live(order_id)
            if order.data["cancelledAt"]:
                raise ValueError(f"order {order_id} is already cancelled")
            if order.data["displayFulfillmentStatus"] == "FULFILLED":
                raise ValueError(f"order {order_id} is fulfilled; it cannot be cancelled")
            paid = order.data["displayFinancialStatus"] in ("PAID", "PARTIALLY_PAID", "PARTIALLY_REFUNDED")
            order.data.update(cancelledAt=iso(self.now()), cancelReason=reason, closed=True,
                              closedAt=iso(self.now()))
            order.data["displayFinancialStatus"] = ("REFUNDED" if refund else "PAID") if paid else "VOIDED"
            if paid and refund:
                self._record_refund(order, [li for li in order.data["lineItems"]["nodes"] if li["currentQuantity"]])
            for line in order.data["lineItems"]["nodes"]:
                line["currentQuantity"] = 0
            for fo in order.fulfillment_orders:
                if fo["status"] in ("OPEN", "IN_PROGRESS"):
                    fo["status"] = "CLOSED"
            self._changed(order, "orders/cancelled")

    def refund_all(self, order_id: str | int) -> None:
        """The whole order refunded and cancelled (REFUNDED, cancelledAt set)."""
        self.cancel(order_id, reason="CUSTOMER", refund=True)

    def refund_line(self, order_id: str | int, line_id: str | int) -> None:
        """One line refunded (restocked): currentQuantity 0, its fulfillment order line removed,
        PARTIALLY_REFUNDED (REFUNDED when nothing is left); a ``refunds/create`` webhook."""
        with self._lock:
            order = self._live(order_id)
            gid = str(line_id) if str(line_id).startswith("gid://") else f"gid://shopify/LineItem/{line_id}"
            line = next((li for li in order.data["lineItems"]["nodes"] if li["id"] == gid), None)
            if line is None:
                raise KeyError(f"order {order_id} has no line {line_id}")
            if not line["currentQuantity"]:
                raise ValueError(f"line {line_id} is already refunded or removed")
            self._record_refund(order, [line])
            line["currentQuantity"] = 0
            for fo in order.fulfillment_orders:
                for item in fo["lineItems"]["nodes"]:
                    if item["lineItem"]["id"] == gid:
                        item["remainingQuantity"] = 0
                if fo["status"] in ("OPEN", "IN_PROGRESS") and not any(
                        i["remainingQuantity"] for i in fo["lineItems"]["nodes"]):
                    fo["status"] = "CLOSED"
            left = any(li["currentQuantity"] for li in order.data["lineItems"]["nodes"])
            order.data["displayFinancialStatus"] = "PARTIALLY_REFUNDED" if left else "REFUNDED"
            self._update_fulfillment_status(order)
            self._changed(order, "refunds/create")

    def _record_refund(self, order: SimOrder, lines: list[dict[str, Any]]) -> None:
        factory = self._factory(order.shop)
        order.data["refunds"].append({
            "__typename": "Refund", "id": f"gid://shopify/Refund/{factory._id()}", "createdAt": iso(self.now()),
            "refundLineItems": {"nodes": [{"__typename": "RefundLineItem", "quantity": li["currentQuantity"],
                                           "lineItem": {"__typename": "LineItem", "id": li["id"]}} for li in lines]},
        })

    def change_address(self, order_id: str | int, **fields: str) -> None:
        """``orderUpdate`` of the shipping address (address1, city, phone, ...) before fulfillment."""
        with self._lock:
            order = self._live(order_id)
            address = order.data["shippingAddress"]
            unknown = [k for k in fields if k not in address or k == "__typename"]
            if unknown or not fields:
                raise ValueError(f"not shipping address fields: {unknown or '(none)'}")
            if order.data["displayFulfillmentStatus"] != "UNFULFILLED" or order.data["cancelledAt"]:
                raise ValueError(f"order {order_id} is already (partly) fulfilled or cancelled")
            address.update({k: str(v) for k, v in fields.items()})
            self._changed(order, "orders/updated")

    @staticmethod
    def _update_fulfillment_status(order: SimOrder) -> None:
        shipped = any(f["status"] == "SUCCESS" for f in order.data["fulfillments"])
        remaining = sum(i["remainingQuantity"] for fo in order.fulfillment_orders for i in fo["lineItems"]["nodes"]
                        if fo["status"] in ("OPEN", "IN_PROGRESS"))
        if shipped:
            order.data["displayFulfillmentStatus"] = "PARTIALLY_FULFILLED" if remaining else "FULFILLED"

    # -- accessors --------------------------------------------------------------------------

    def order(self, order_id: str | int) -> dict[str, Any]:
        """A copy of one order (GraphQL shape, every field), KeyError when unknown."""
        with self._lock:
            return _plain(self._live(order_id).data)

    def status(self, order_id: str | int) -> tuple[str, str, bool]:
        """(displayFinancialStatus, displayFulfillmentStatus, cancelled)."""
        with self._lock:
            data = self._live(order_id).data
            return data["displayFinancialStatus"], data["displayFulfillmentStatus"], bool(data["cancelledAt"])

    def orders(self, shop_or_token: str) -> list[dict[str, Any]]:
        with self._lock:
            shop = self._shop_of(shop_or_token)
            return [_plain(o.data) for o in sorted(self._orders.values(), key=lambda o: o.number) if o.shop == shop]

    def writebacks(self, order_id: str | int) -> list[tuple[str, str, list[str]]]:
        """Every fulfillment created for the order: (tracking number, company, line item legacy ids)."""
        with self._lock:
            return [(n, c, list(lines)) for n, c, lines in self._writebacks.get(str(order_id).rsplit("/", 1)[-1], [])]

    def state(self) -> dict[str, Any]:
        with self._lock:
            malformed = {k: o.defect for k, o in self._orders.items() if o.defect}
            shipped = [k for k, o in self._orders.items() if k in self._writebacks
                       and o.data["displayFulfillmentStatus"] == "FULFILLED"]
            return {
                "orders_created": len(self._orders), "orders_malformed": len(malformed),
                "malformed_tids": sorted(malformed), "malformed": malformed,
                "orders_by_shop": dict(Counter(o.shop for o in self._orders.values())),
                "shipped_count": len(shipped), "fulfillments": sum(len(v) for v in self._writebacks.values()),
                "fulfillment_attempts": self._fulfillment_attempts,
                "fulfillment_refusals": self._fulfillment_refusals,
                "requests": dict(self._requests), "requests_total": sum(self._requests.values()),
                "errors": dict(self._errors), "rejected_tokens": self._rejected_tokens, "throttled": self._throttled,
                "faults": dict(self.faults.injected), "webhooks_queued": len(self._webhooks),
                "webhooks_sent": self._webhooks_sent, "now": iso(self.now()),
            } | self.stock_state()

    # -- webhooks ---------------------------------------------------------------------------

    def sign_webhook(self, body: bytes) -> str:
        return sign_webhook(body, self.client_secret)

    def _emit(self, topic: str, order: SimOrder, **extra: Any) -> None:
        data = order.data
        if topic == "refunds/create":
            refund = data["refunds"][-1] if data["refunds"] else {"id": "gid://shopify/Refund/0"}
            payload: dict[str, Any] = {"id": int(str(refund["id"]).rsplit("/", 1)[-1]),
                                       "order_id": int(data["legacyResourceId"]), "created_at": iso(self.now())}
        else:
            payload = {"id": int(data["legacyResourceId"]), "admin_graphql_api_id": data["id"], "name": data["name"],
                       "updated_at": data["updatedAt"], "cancelled_at": data["cancelledAt"],
                       "financial_status": data["displayFinancialStatus"].lower(),
                       "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(
                           data["displayFulfillmentStatus"]), "currency": data["currencyCode"]}
        body = json.dumps(payload, separators=(",", ":")).encode()
        number = next(self._hook_ids)
        headers = {
            "Content-Type": "application/json", "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": self.sign_webhook(body), "X-Shopify-Shop-Domain": order.shop,
            "X-Shopify-API-Version": self.api_version,
            "X-Shopify-Webhook-Id": f"{hashlib.sha1(f'{self.seed}:w:{number}'.encode()).hexdigest()[:8]}-{number}",
            "X-Shopify-Event-Id": f"{hashlib.sha1(f'{self.seed}:e:{number}'.encode()).hexdigest()[:8]}-{number}",
            "X-Shopify-Triggered-At": iso(self.now()),
        }
        self._webhooks.append({"topic": topic, "headers": headers, "body": body, "order_id": data["legacyResourceId"]})

    def webhooks(self, clear: bool = False) -> list[dict[str, Any]]:
        """Queued deliveries (``topic``, ``headers``, raw ``body``, ``order_id``), oldest first."""
        with self._lock:
            queued = list(self._webhooks)
            if clear:
                self._webhooks.clear()
            return queued

    def flush_webhooks(self, url: str, timeout: float = 10.0) -> int:
        """POST every queued delivery to ``url`` (a redelivery, same ids, when the duplicate fault
        fires); returns how many POSTs answered 2xx. Undelivered ones stay queued."""
        pending = self.webhooks(clear=True)
        sent = 0
        with httpx.Client(timeout=timeout) as client:
            for index, hook in enumerate(pending):
                copies = 2 if self.faults.duplicate() else 1
                for _ in range(copies):
                    try:
                        answer = client.post(url, content=hook["body"], headers=hook["headers"])
                    except httpx.HTTPError:
                        answer = None
                    if answer is None or answer.status_code >= 300:
                        with self._lock:
                            self._webhooks[:0] = pending[index:]
                        return sent
                    sent += 1
        with self._lock:
            self._webhooks_sent += sent
        return sent

    # -- HTTP -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/_sim/orders", self._admin_orders, methods=["POST"]),
            Route("/_sim/orders/{order_id}/{action}", self._admin_lifecycle, methods=["POST"]),
            Route("/_sim/stock/{sku}/sell", self._admin_sell, methods=["POST"]),
        ])

    def _answer(self, body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")

    def _cost(self, requested: int, actual: int | None, available: float) -> dict[str, Any]:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                         "throttleStatus": {"maximumAvailable": self.bucket_size,
                                            "currentlyAvailable": round(available, 1),
                                            "restoreRate": self.restore_rate}}}

    async def _graphql(self, request: Request) -> Response:
        with self._lock:
            self._requests["graphql"] += 1
        if not VERSION_SHAPE.match(request.path_params["version"]):
            return PlainTextResponse("Not Found", status_code=404)
        token = request.headers.get("x-shopify-access-token", "")
        shop = self.stores.get(token)
        if shop is None:
            with self._lock:
                self._rejected_tokens += 1
            return self._answer({"errors": INVALID_TOKEN}, 401)
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            return PlainTextResponse("Service Unavailable", status_code=503)
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise GraphQLError("No query string was present", "badRequest", 400)
            kind, selections = _Parser(body["query"], body.get("variables") or {}).document()
        except (ValueError, GraphQLError) as exc:
            error = exc if isinstance(exc, GraphQLError) else GraphQLError("Invalid JSON body", "badRequest", 400)
            with self._lock:
                self._errors[error.code] += 1
            return self._answer({"errors": [{"message": error.message, "extensions": {"code": error.code}}]},
                                error.status)
        requested = requested_cost(selections) + (MUTATION_COST if kind == "mutation" else 0)
        with self._lock:
            bucket = self._buckets.setdefault(token, _Bucket(self.bucket_size, self.restore_rate))
            available = bucket.available()
            if requested > MAX_QUERY_COST:
                self._errors["MAX_COST_EXCEEDED"] += 1
                return self._answer({"errors": [{"message": f"Query cost is {requested}, which exceeds the single "
                                                 f"query max cost limit ({MAX_QUERY_COST}).",
                                                 "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                                                "maxCost": MAX_QUERY_COST}}],
                                     "extensions": self._cost(requested, None, available)})
            if fault == "throttle":
                available = max(0.0, requested - self.faults.config.retry_after_s * self.restore_rate)
                bucket.level = available
            if available < requested:
                self._throttled += 1
                self._note_stock_throttle({s.name for s in selections})
                return self._answer({"errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": self._cost(requested, None, available)})
            bucket.level -= requested
            try:
                data = self._execute(kind, selections, shop, request.path_params["version"])
            except GraphQLError as exc:
                bucket.level += requested
                self._errors[exc.code] += 1
                return self._answer({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]})
            actual = min(requested, actual_cost(data) + (MUTATION_COST if kind == "mutation" else 0))
            bucket.level = min(self.bucket_size, bucket.level + requested - actual)
            return self._answer({"data": data, "extensions": self._cost(requested, actual, bucket.level)})

    def _execute(self, kind: str, selections: list[Selection], shop: str, version: str) -> dict[str, Any]:
        root: dict[str, Any]
        if kind == "mutation":
            root = {"__typename": "Mutation", "fulfillmentCreate": lambda args: self._fulfillment_create(args, shop),
                    **self._stock_mutation_fields(shop, version)}
        else:
            root = {"__typename": "QueryRoot", "orders": lambda args: self._orders_connection(args, shop),
                    "order": lambda args: self._order_node(args, shop),
                    "shop": {"__typename": "Shop", "name": shop.split(".")[0], "myshopifyDomain": shop,
                             "currencyCode": self.currency},
                    **self._stock_query_fields(shop)}
        return project(root, selections)

    def _view(self, order: SimOrder) -> dict[str, Any]:
        """The order as the schema shows it, with its fulfillment orders."""
        return {**order.data, "fulfillmentOrders": {"nodes": order.fulfillment_orders}}

    def _order_node(self, args: Mapping[str, Any], shop: str) -> dict[str, Any] | None:
        gid = str(args.get("id") or "")
        if not gid.startswith("gid://shopify/Order/"):
            raise GraphQLError(f"Invalid global id '{gid}'", "argumentLiteralsIncompatible")
        order = self._orders.get(gid.rsplit("/", 1)[-1])
        if order is None or order.shop != shop or order.updated < self.now() - HISTORY:
            return None
        return self._view(order)

    def _orders_connection(self, args: Mapping[str, Any], shop: str) -> dict[str, Any]:
        test = _search(str(args.get("query") or ""))
        sort = str(args.get("sortKey") or "ID")
        keys: dict[str, Callable[[SimOrder], Any]] = {
            "ID": lambda o: int(o.data["legacyResourceId"]), "UPDATED_AT": lambda o: (o.data["updatedAt"], o.number),
            "CREATED_AT": lambda o: (o.data["createdAt"], o.number), "ORDER_NUMBER": lambda o: o.number,
        }
        if sort not in keys:
            raise GraphQLError(f"Argument 'sortKey' has an invalid value ({sort}).", "argumentLiteralsIncompatible")
        oldest = self.now() - HISTORY
        chosen = sorted((o for o in self._orders.values() if o.shop == shop and o.updated >= oldest and test(o.data)),
                        key=keys[sort], reverse=bool(args.get("reverse")))
        marker = {o.data["legacyResourceId"]: o for o in chosen}

        def key(view: dict[str, Any]) -> str:
            value = keys[sort](marker[view["legacyResourceId"]])
            return json.dumps(value if not isinstance(value, tuple) else [value[0], f"{value[1]:012d}"])

        page = paginate([self._view(o) for o in chosen], args, key)
        if page["nodes"] and self.faults.duplicate():
            page["nodes"] = [*page["nodes"], page["nodes"][0]]
        return page

    def _fulfillment_create(self, args: Mapping[str, Any], shop: str) -> dict[str, Any]:
        self._fulfillment_attempts += 1
        spec = args.get("fulfillment")
        payload = {"__typename": "FulfillmentCreatePayload", "fulfillment": None, "userErrors": []}

        def refuse(message: str, where: list[str]) -> dict[str, Any]:
            self._fulfillment_refusals += 1
            payload["userErrors"] = [{"__typename": "UserError", "field": where, "message": message}]
            return payload

        if not isinstance(spec, Mapping) or not spec.get("lineItemsByFulfillmentOrder"):
            return refuse("Line items by fulfillment order can't be blank",
                          ["fulfillment", "lineItemsByFulfillmentOrder"])
        tracking = spec.get("trackingInfo") or {}
        fos: list[tuple[SimOrder, dict[str, Any], list[tuple[dict[str, Any], int]]]] = []
        for entry in spec["lineItemsByFulfillmentOrder"]:
            fo_id = str(entry.get("fulfillmentOrderId") or "")
            found = next(((o, fo) for o in self._orders.values() if o.shop == shop
                          for fo in o.fulfillment_orders if fo["id"] == fo_id), None)
            if found is None:
                return refuse(f"Fulfillment order {fo_id} does not exist.", ["fulfillment"])
            order, fo = found
            if fo["status"] not in ("OPEN", "IN_PROGRESS"):
                return refuse(f"Fulfillment order {fo_id} has an unfulfillable status= {fo['status'].lower()}.",
                              ["fulfillment"])
            wanted = entry.get("fulfillmentOrderLineItems")
            items = []
            if not wanted:
                items = [(i, i["remainingQuantity"]) for i in fo["lineItems"]["nodes"] if i["remainingQuantity"] > 0]
            for want in wanted or []:
                item = next((i for i in fo["lineItems"]["nodes"] if i["id"] == want.get("id")), None)
                qty = int(want.get("quantity") or 0)
                if item is None or qty <= 0 or qty > item["remainingQuantity"]:
                    return refuse("Invalid fulfillment order line item quantity requested.", ["fulfillment"])
                items.append((item, qty))
            if not items:
                return refuse(f"Fulfillment order {fo_id} has nothing left to fulfill.", ["fulfillment"])
            fos.append((order, fo, items))
        locations = {fo["assignedLocation"]["location"]["id"] for _, fo, _ in fos}
        if len({o.gid for o, _, _ in fos}) > 1 or len(locations) > 1:
            return refuse("All fulfillment orders must belong to the same order and location.", ["fulfillment"])
        order = fos[0][0]
        factory = self._factory(order.shop)
        lines = []
        for _, fo, items in fos:
            for item, qty in items:
                item["remainingQuantity"] -= qty
                lines.append({"__typename": "FulfillmentLineItem", "quantity": qty,
                              "lineItem": {"__typename": "LineItem", "id": item["lineItem"]["id"]}})
            left = any(i["remainingQuantity"] for i in fo["lineItems"]["nodes"])
            fo["status"] = "IN_PROGRESS" if left else "CLOSED"
        info = {"__typename": "FulfillmentTrackingInfo", "company": tracking.get("company"),
                "number": tracking.get("number"), "url": tracking.get("url")}
        fulfillment = {"__typename": "Fulfillment", "id": f"gid://shopify/Fulfillment/{factory._id()}",
                       "status": "SUCCESS", "createdAt": iso(self.now()),
                       "trackingInfo": [info] if info["number"] or info["company"] else [],
                       "fulfillmentLineItems": {"nodes": lines}}
        order.data["fulfillments"].append(fulfillment)
        self._update_fulfillment_status(order)
        self._writebacks.setdefault(order.data["legacyResourceId"], []).append(
            (str(info["number"] or ""), str(info["company"] or ""),
             [line["lineItem"]["id"].rsplit("/", 1)[-1] for line in lines]))
        topic = "orders/fulfilled" if order.data["displayFulfillmentStatus"] == "FULFILLED" else \
            "orders/partially_fulfilled"
        self._changed(order, topic)
        payload["fulfillment"] = fulfillment
        return payload

    # -- admin ------------------------------------------------------------------------------

    async def _admin_orders(self, request: Request) -> Response:
        try:
            body = await request.json()
            ids = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                  financial=str(body.get("financial") or "PAID"),
                                  lines=int(body["lines"]) if body.get("lines") else None,
                                  presale=bool(body.get("presale")))
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"ids": ids})

    async def _admin_lifecycle(self, request: Request) -> Response:
        actions: dict[str, Callable[..., None]] = {
            "pay": self.pay, "pay_balance": self.pay_balance, "cancel": self.cancel, "refund_all": self.refund_all,
            "refund_line": self.refund_line, "change_address": self.change_address,
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": f"unknown action; one of {', '.join(actions)}"}, status_code=404)
        try:
            body = await request.json() if await request.body() else {}
            action(request.path_params["order_id"], **(body or {}))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        financial, fulfillment, cancelled = self.status(request.path_params["order_id"])
        return JSONResponse({"id": request.path_params["order_id"], "financial": financial,
                             "fulfillment": fulfillment, "cancelled": cancelled})

    async def _admin_sell(self, request: Request) -> Response:
        """``POST /_sim/stock/{sku}/sell`` ``{"n": 1, "shop": ...}``: a sale on the channel."""
        try:
            body = await request.json() if await request.body() else {}
            left = self.sell_on_channel(request.path_params["sku"], int(body.get("n", 1)), body.get("shop"))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"sku": request.path_params["sku"], "available": left})


# --------------------------------------------------------------------------- helpers

_TERM = re.compile(r"""(\w+):(<=|>=|<|>)?('[^']*'|"[^"]*"|\S+)""")


def _search(query: str) -> Callable[[Mapping[str, Any]], bool]:
    """The ``query`` argument: ANDed terms on ``updated_at`` / ``created_at`` (others ignored: sim)."""
    fields = {"updated_at": "updatedAt", "created_at": "createdAt"}
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for name, op, raw in _TERM.findall(query):
        if name not in fields:
            continue
        text = raw.strip("'\"")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise GraphQLError(f"Invalid date in query: {raw}", "argumentLiteralsIncompatible") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
                   ">=": lambda a, b: a >= b, "": lambda a, b: a == b}[op]

        def test(data: Mapping[str, Any], key: str = fields[name], bound: datetime = moment,
                 cmp: Callable[[datetime, datetime], bool] = compare) -> bool:
            return cmp(datetime.fromisoformat(str(data[key]).replace("Z", "+00:00")), bound)

        tests.append(test)
    return lambda data: all(t(data) for t in tests)


def _plain(data: Any) -> Any:
    """A deep copy without ``__typename`` keys (what a client sees when it does not ask for them)."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items() if k != "__typename"}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return copy.deepcopy(data)
