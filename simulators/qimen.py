"""A local WMS that speaks the Qimen (奇门) warehouse standard, written from the Qimen documentation.

What it implements, and where each rule comes from:

* Gateway and signature. System parameters travel in the URL query string (method, app_key,
  customerId, format=xml, sign_method=md5, timestamp "yyyy-MM-dd HH:mm:ss" GMT+8, v=2.0, sign) and
  the business payload is the XML body ``<request>...</request>``. The sign is
  ``MD5(secret + k1v1k2v2... + body + secret)`` in upper-case hex, the keys being every query
  parameter except ``sign`` sorted by name, empty values left out (Qimen signing guide, worked
  example for taobao.qimen.entryorder.query; the official Qimen SDK ``TopUtils.signTopRequest``
  skips empty values the same way). A bad signature is answered like the Qimen gateway does:
  flag=failure, code ``sign-check-failure``, message ``Illegal request``.
* ``taobao.qimen.deliveryorder.create`` (发货单创建, open platform apiId 26002 and the Qimen WMS
  spec): required fields are the ones the spec marks 必填 (see ``ORDER_REQUIRED`` and friends).
  A success answer means the outbound order really exists in the WMS, and carries
  ``deliveryOrderId`` and ``createTime``. deliveryOrderCode is the ERP's unique code: the WMS
  must not accept it twice, so a repeat (same owner) gets the same deliveryOrderId back and no
  new order is made.
* ``taobao.qimen.deliveryorder.confirm`` (发货单确认), pushed by this WMS to the ERP once an
  order ships, signed like any Qimen call, with a fresh ``outBizCode`` per confirm ("message id
  used for de-duplication") and retried on failure. With the ``duplicate`` fault the very same
  confirm (same outBizCode) is pushed twice, as real WMSs do after network trouble.
  ``confirmType`` ("支持出库单多次发货"): 0 = the final confirmation of the order, 1 = an
  intermediate one. With ``split_packages`` an order of 2+ lines ships in two packages, each
  pushed as its own confirm carrying only that package: the first with confirmType=1 and status
  PARTDELIVERED, the second with confirmType=0 and status DELIVERED.
* ``taobao.qimen.deliveryorder.query`` (发货单查询, apiId 24690): orderCode, page and pageSize
  are required; returns deliveryOrder, packages, orderLines and totalLines. Status values are
  the documented ones (NEW, ACCEPT, PARTDELIVERED, DELIVERED, EXCEPTION, CANCELED, CLOSED,
  REJECT, CANCELEDFAIL); this WMS uses ACCEPT, PARTDELIVERED, DELIVERED, CANCELED and CLOSED.
  Every package shipped so far is listed.
* ``taobao.qimen.order.cancel`` (单据取消, apiId 26000): warehouseCode and orderCode are
  required (必须), ownerCode, orderId, orderType and cancelReason optional; the answer has only
  flag/code/message. An order not yet shipped becomes CANCELED and never ships nor pushes a
  confirm afterwards. One that shipped (even in part) is refused with flag=failure and
  "单据已发货,不能取消"; an unknown code gets "单据不存在". The spec defines no error for a
  repeat, so a repeat cancel of a cancelled order is answered flag=success with message
  "单据已取消" (the cancel is idempotent). A create that reuses the code of a cancelled order is
  refused as a duplicate ("单据已存在(已取消),重复单据不能再次创建"): the code is spent.
* ``taobao.qimen.inventory.query`` (库存查询, apiId 25999): ``criteriaList/criteria`` in,
  ``items/item`` (warehouseCode, itemCode, itemId, inventoryType, quantity, lockQuantity) out; an
  item kept in batches is answered one row per batch with batchCode, productDate and expireDate
  (and one row without them for the stock held outside any batch).
* Stock. On-hand per (warehouse, item) goes down when a package ships (what shipped, once per
  package) and up with ``receive``; ``adjust`` corrects it. With ``stock_reports`` every shipment
  is also reported by ``taobao.qimen.stockchange.report`` (库存异动通知, apiId 25996; quantity
  signed, negative = left the warehouse, orderType JYCK and the deliveryOrderCode as orderCode),
  pushed, signed and retried like the confirms; receipts and corrections are always reported.
  Batches leave first-expired-first-out (``simulators.qimen_stock``).

The simulator never imports the hub's own code (connectors, mappings, canonical, workflows,
hub): it is an independent reading of the documentation, so a connector that got the protocol
wrong fails against it instead of agreeing with itself.

State is kept in memory behind a lock, because a test thread may read ``state()`` while the
uvicorn thread serves requests. Background work (shipping timers, confirm pushes) runs as
asyncio tasks on the loop that serves the app; the public coroutines ``ship``, ``ship_all``,
``flush`` and ``aclose`` hop onto that loop when called from another one.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.faults import FaultConfig, FaultInjector
from simulators.qimen_stock import (
    COUNT_GAIN_TYPE,
    COUNT_LOSS_TYPE,
    INBOUND_TYPES,
    METHOD_STOCK_CHANGE,
    RECEIPT_TYPE,
    STOCK_ORDER_TYPES,
    Lot,
    StockChange,
    Taken,
    as_date,
    batched_total,
    changes_for,
    put,
    stock_change_report_xml,
    take,
)

T = TypeVar("T")

GMT8 = timezone(timedelta(hours=8), "GMT+8")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_WINDOW = timedelta(minutes=10)
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'
XML_MEDIA_TYPE = "text/xml"
MAX_BODY_BYTES = 2_000_000

METHOD_CREATE = "taobao.qimen.deliveryorder.create"
METHOD_CONFIRM = "taobao.qimen.deliveryorder.confirm"
METHOD_QUERY = "taobao.qimen.deliveryorder.query"
METHOD_INVENTORY = "taobao.qimen.inventory.query"
METHOD_CANCEL = "taobao.qimen.order.cancel"

SYSTEM_PARAMS = ("method", "app_key", "customerId", "format", "sign_method", "timestamp", "v", "sign")
"""Gateway parameters every call must carry in its query string."""

ORDER_TYPES = ("JYCK", "HHCK", "BFCK", "QTCK")
"""JYCK=一般交易出库单, HHCK=换货出库单, BFCK=补发出库单, QTCK=其他出库单."""

ORDER_REQUIRED = (
    "deliveryOrderCode",
    "orderType",
    "warehouseCode",
    "sourcePlatformCode",
    "createTime",
    "placeOrderTime",
    "operateTime",
    "shopNick",
    "logisticsCode",
)
"""deliveryOrder fields the Qimen spec marks 必填 for deliveryorder.create."""

CONTACT_REQUIRED = ("name", "mobile", "province", "city", "detailAddress")
"""receiverInfo and senderInfo fields marked 必填 (area, town, zipCode, tel are optional)."""

LINE_REQUIRED = ("ownerCode", "itemCode", "planQty", "actualPrice")
"""orderLine fields marked 必填 (orderLineNo, sourceOrderCode, itemName, retailPrice are optional)."""

ORDER_TIME_FIELDS = ("createTime", "placeOrderTime", "operateTime", "payTime")

LOGISTICS_NAMES = {
    "SF": "顺丰速运",
    "EMS": "EMS",
    "YTO": "圆通速递",
    "ZTO": "中通快递",
    "STO": "申通快递",
    "YUNDA": "韵达快递",
    "HTKY": "百世快递",
    "JD": "京东配送",
    "DBKD": "德邦快递",
    "POSTB": "邮政小包",
    "OTHER": "其他",
}
WAYBILL_PREFIX = {"SF": "SF", "YTO": "YT", "ZTO": "ZT", "STO": "ST", "YUNDA": "YD", "JD": "JD", "EMS": "EM"}
DEFAULT_ITEM_WEIGHT_G = 500
STATUS_ACCEPTED = "ACCEPT"
STATUS_PARTDELIVERED = "PARTDELIVERED"
STATUS_DELIVERED = "DELIVERED"
STATUS_CANCELED = "CANCELED"
STATUS_CLOSED = "CLOSED"
SHIPPABLE = (STATUS_ACCEPTED, STATUS_PARTDELIVERED)
CONFIRM_FINAL, CONFIRM_PARTIAL = "0", "1"
ITEM_CODE_KEYS = ("item_code", "itemCode", "sku", "sku_code", "code")

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


# --------------------------------------------------------------------------- signing


def qimen_sign(params: Mapping[str, str], body: str, secret: str) -> str:
    """Qimen MD5 sign: upper hex MD5 of secret + sorted(key+value) + body + secret.

    ``sign`` itself and empty values are left out, as the official SDK does, so an optional
    parameter sent empty does not change the signature.
    """
    joined = "".join(f"{key}{value}" for key, value in sorted(params.items()) if key != "sign" and key and value)
    return hashlib.md5(f"{secret}{joined}{body}{secret}".encode()).hexdigest().upper()


def qimen_now() -> datetime:
    """Now in GMT+8, the timezone every Qimen timestamp is written in."""
    return datetime.now(GMT8)


def format_qimen_time(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8; naive datetimes are refused so no clock is guessed."""
    if moment.tzinfo is None:
        raise ValueError("Qimen timestamps need a timezone-aware datetime")
    return moment.astimezone(GMT8).strftime(TIMESTAMP_FORMAT)


def parse_qimen_time(value: str) -> datetime:
    """Parse ``yyyy-MM-dd HH:mm:ss`` as GMT+8; raises ValueError on any other shape."""
    return datetime.strptime(value.strip(), TIMESTAMP_FORMAT).replace(tzinfo=GMT8)


def signed_gateway_url(url: str, params: Mapping[str, str], body: str, secret: str) -> str:
    """Add system params and their sign to ``url``; params already in the URL are signed too."""
    parts = urlsplit(url)
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(params)
    merged["sign"] = qimen_sign(merged, body, secret)
    return urlunsplit(parts._replace(query=urlencode(merged, quote_via=quote)))


# --------------------------------------------------------------------------- XML helpers


class QimenError(Exception):
    """A request the WMS refuses; answered as ``<flag>failure</flag>`` with HTTP 200."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_request_xml(body: bytes) -> ET.Element:
    """Parse a ``<request>`` body; DTDs are refused outright so entity tricks cannot run."""
    if _DTD.search(body):
        raise QimenError("isv.invalid-xml", "DTD / entity declarations are not allowed in the body")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise QimenError("isv.invalid-xml", f"body is not well-formed XML: {exc}") from exc
    if root.tag != "request":
        raise QimenError("isv.invalid-xml", f"root element must be <request>, got <{root.tag}>")
    return root


def _text(element: ET.Element | None, path: str) -> str:
    if element is None:
        return ""
    return (element.findtext(path) or "").strip()


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def _subs(parent: ET.Element, fields: Iterable[tuple[str, object]]) -> ET.Element:
    for tag, value in fields:
        _sub(parent, tag, value)
    return parent


def render_response(flag: str, code: str, message: str, extra: Iterable[ET.Element] = ()) -> bytes:
    """A Qimen ``<response>``: flag, code, message, then the method's own elements."""
    root = ET.Element("response")
    _subs(root, (("flag", flag), ("code", code), ("message", message)))
    root.extend(extra)
    return (XML_DECLARATION + ET.tostring(root, encoding="unicode")).encode()


def _required(element: ET.Element | None, names: Iterable[str], where: str) -> dict[str, str]:
    """Read ``names`` below ``element``; the first missing one is reported by its full path."""
    values: dict[str, str] = {}
    for name in names:
        value = _text(element, name)
        if not value:
            raise QimenError("isv.missing-parameter", f"{where}.{name} is required")
        values[name] = value
    return values


def _positive_int(value: str, where: str) -> int:
    """Quantities are int in the spec; "2" and "2.0000" (decimal(19,4) WMSs) are both accepted."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal(-1)
    if not number.is_finite() or number <= 0 or number != number.to_integral_value():
        raise QimenError("isv.invalid-parameter", f"{where} must be a positive whole number, got {value!r}")
    return int(number)


# --------------------------------------------------------------------------- model


@dataclass
class OrderLine:
    """One ``orderLine`` of an outbound order, as the WMS stored it."""

    order_line_no: str
    owner_code: str
    item_code: str
    item_name: str
    plan_qty: int
    actual_price: str
    retail_price: str = ""
    source_order_code: str = ""
    sub_source_order_code: str = ""
    inventory_type: str = "ZP"
    actual_qty: int = 0

    def fingerprint(self) -> tuple[str, str, int]:
        return (self.item_code, self.order_line_no, self.plan_qty)


@dataclass
class Package:
    """One parcel that left the warehouse: its waybill and what it holds (line, quantity)."""

    number: int
    package_code: str
    logistics_code: str
    logistics_name: str
    express_code: str
    weight_kg: str
    shipped_at: str
    contents: list[tuple[OrderLine, int]]

    def as_state(self) -> dict[str, Any]:
        return {
            "package_code": self.package_code,
            "express_code": self.express_code,
            "logistics_code": self.logistics_code,
            "shipped_at": self.shipped_at,
            "items": [
                {"order_line_no": line.order_line_no, "item_code": line.item_code, "quantity": qty}
                for line, qty in self.contents
            ],
        }


@dataclass
class PendingConfirm:
    """A deliveryorder.confirm to push: package ``number`` of the order, or a status-only one (0)."""

    key: tuple[str, str]
    number: int
    status: str


@dataclass
class OutboundOrder:
    """An outbound (delivery) order held by the simulated WMS."""

    delivery_order_code: str
    delivery_order_id: str
    owner_code: str
    order_type: str
    warehouse_code: str
    source_platform_code: str
    source_platform_name: str
    shop_nick: str
    buyer_nick: str
    logistics_code: str
    create_time: str
    receiver: dict[str, str]
    lines: list[OrderLine]
    status: str = STATUS_ACCEPTED
    express_code: str = ""
    logistics_name: str = ""
    weight_kg: str = ""
    operate_time: str = ""
    out_biz_codes: list[str] = field(default_factory=list)
    confirm_acked: bool = False
    #: line indexes per package, decided at creation (one group unless the order ships split)
    plan: list[list[int]] = field(default_factory=list)
    packages: list[Package] = field(default_factory=list)
    cancel_reason: str = ""

    def line_identities(self) -> set[tuple[str, str, str, str]]:
        """Business identity of each line: which platform order line it fulfils.

        Two outbound orders fulfilling the same platform order line are the duplicate the hub
        must never create. Lines without a sourceOrderCode cannot be attributed and are skipped.
        """
        return {
            (
                self.source_platform_code,
                self.shop_nick,
                line.source_order_code,
                line.sub_source_order_code or line.item_code,
            )
            for line in self.lines
            if line.source_order_code
        }

    def as_state(self) -> dict[str, Any]:
        return {
            "delivery_order_code": self.delivery_order_code,
            "delivery_order_id": self.delivery_order_id,
            "owner_code": self.owner_code,
            "order_type": self.order_type,
            "status": self.status,
            "warehouse": self.warehouse_code,
            "source_platform_code": self.source_platform_code,
            "shop_nick": self.shop_nick,
            "logistics_code": self.logistics_code,
            "waybill": self.express_code or None,
            "create_time": self.create_time,
            "out_biz_codes": list(self.out_biz_codes),
            "confirm_acked": self.confirm_acked,
            "packages": [package.as_state() for package in self.packages],
            "planned_packages": len(self.plan),
            "cancel_reason": self.cancel_reason,
            "lines": [
                {
                    "order_line_no": line.order_line_no,
                    "item_code": line.item_code,
                    "plan_qty": line.plan_qty,
                    "actual_qty": line.actual_qty,
                    "source_order_code": line.source_order_code,
                    "sub_source_order_code": line.sub_source_order_code,
                }
                for line in self.lines
            ],
        }


def _item_code_of(entry: Any) -> str:
    """Item code of one item-master entry: a string, a mapping or an object with a code field."""
    if isinstance(entry, str):
        return entry
    for key in ITEM_CODE_KEYS:
        value = entry.get(key) if isinstance(entry, Mapping) else getattr(entry, key, None)
        if value:
            return str(value)
    raise ValueError(f"item master entry has no item code ({', '.join(ITEM_CODE_KEYS)}): {entry!r}")


def _attributes_of(entry: Any) -> dict[str, Any]:
    if isinstance(entry, Mapping):
        return dict(entry)
    if isinstance(entry, str) or not hasattr(entry, "__dict__"):
        return {}
    return {key: value for key, value in vars(entry).items() if not key.startswith("_")}


def normalise_item_master(items: Iterable[Any] | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Item master as code -> attributes, from a list of codes/records or a code->attributes dict."""
    if isinstance(items, Mapping):
        return {
            str(code): (dict(attrs) if isinstance(attrs, Mapping) else {"title": str(attrs)})
            for code, attrs in items.items()
        }
    return {_item_code_of(entry): _attributes_of(entry) for entry in items}


# --------------------------------------------------------------------------- simulator


class QimenWmsSimulator:
    """In-memory WMS reached through a Qimen-style gateway; ``.app`` is its ASGI app."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        customer_id: str,
        warehouses: list[str],
        items: Iterable[Any] | Mapping[str, Any],
        stock: int | Mapping[str, int] = 1000,
        seed: int = 7,
        ship_delay_s: float = 0.3,
        callback_url: str | None = None,
        faults: FaultConfig | None = None,
        *,
        owner_code: str | None = None,
        push_max_attempts: int = 20,
        push_backoff_s: float = 0.1,
        push_backoff_cap_s: float = 5.0,
        push_timeout_s: float = 5.0,
        split_packages: float = 0.0,
        split_gap_s: float | None = None,
        stock_reports: bool = False,
    ) -> None:
        """``split_packages``: share (0..1) of orders with 2+ lines that ship in two packages, chosen
        per order from the seed and the code (replayable); ``split_gap_s``: time between the two
        packages when shipping on the timer (default ``ship_delay_s``).

        ``stock``: the opening on-hand of every item in every warehouse, or item code -> quantity
        (items not named start at 0), held without batch. ``stock_reports``: also push a
        stockchange.report for every shipped package (receipts and corrections always push one)."""
        if not warehouses:
            raise ValueError("at least one warehouse is needed")
        if not 0.0 <= split_packages <= 1.0:
            raise ValueError("split_packages is a share between 0 and 1")
        self.split_packages = split_packages
        self.split_gap_s = ship_delay_s if split_gap_s is None else split_gap_s
        self.app_key = app_key
        self.app_secret = app_secret
        self.customer_id = customer_id
        self.warehouses = list(warehouses)
        self.items = normalise_item_master(items)
        self.seed = seed
        self.ship_delay_s = ship_delay_s
        self.callback_url = callback_url
        self.owner_code = owner_code
        self.push_max_attempts = push_max_attempts
        self.push_backoff_s = push_backoff_s
        self.push_backoff_cap_s = push_backoff_cap_s
        self.push_timeout_s = push_timeout_s
        self.faults = FaultInjector(faults or FaultConfig())
        self.stock_reports = stock_reports
        self.stock: dict[tuple[str, str], int] = self._opening_stock(stock)
        #: batches per (warehouse, item); their quantities are part of (never more than) ``stock``
        self.batches: dict[tuple[str, str], dict[str, Lot]] = {}
        self.orders: dict[tuple[str, str], OutboundOrder] = {}
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "create_calls",
                "create_rejected",
                "create_repeats",
                "create_conflicts",
                "duplicates",
                "shipped",
                "confirm_pushes",
                "confirm_acked",
                "confirm_push_failures",
                "confirm_abandoned",
                "confirm_duplicates_sent",
                "rejected_signatures",
                "rejected_requests",
                "throttled",
                "errors_5xx",
                "query_calls",
                "inventory_calls",
                "packages_shipped",
                "create_refused_cancelled",
                "cancel_calls",
                "cancelled",
                "cancel_repeats",
                "cancel_refused",
                "cancel_not_found",
                "stockchange_reports",
                "stockchange_pushes",
                "stockchange_acked",
                "stockchange_push_failures",
                "stockchange_abandoned",
                "stockchange_duplicates_sent",
            ),
            0,
        )
        self.last_push_error: str | None = None
        self._item_ids = {code: f"QMI{index:06d}" for index, code in enumerate(self.items, start=1)}
        self._line_owner: dict[tuple[str, str, str, str], str] = {}
        self._unsent: list[PendingConfirm] = []
        self._unsent_stock: list[str] = []
        self._stock_seq = itertools.count(1)
        self._stock_doc_seq = itertools.count(1)
        self._held: set[str] = set()
        self._cancelled: list[str] = []
        self._order_seq = itertools.count(1)
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers = {
            METHOD_CREATE: self._handle_create,
            METHOD_QUERY: self._handle_query,
            METHOD_INVENTORY: self._handle_inventory,
            METHOD_CANCEL: self._handle_cancel,
        }
        self.app = self._build_app()

    # ------------------------------------------------------------------ app and routes

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/router/qimen/service", self._gateway, methods=["POST"]),
                Route("/qimen", self._gateway, methods=["POST"]),
                Route("/_sim/state", self._admin_state, methods=["GET"]),
                Route("/_sim/faults", self._admin_faults, methods=["POST"]),
                Route("/_sim/callback", self._admin_callback, methods=["POST"]),
                Route("/_sim/ship", self._admin_ship_all, methods=["POST"]),
                Route("/_sim/ship/{code}", self._admin_ship_one, methods=["POST"]),
                Route("/_sim/receive", self._admin_receive, methods=["POST"]),
                Route("/_admin/receive", self._admin_receive, methods=["POST"]),
            ]
        )

    def _opening_stock(self, stock: int | Mapping[str, int]) -> dict[tuple[str, str], int]:
        if isinstance(stock, Mapping):
            unknown = sorted(str(code) for code in stock if code not in self.items)
            if unknown:
                raise ValueError(f"opening stock for items not in the item master: {', '.join(unknown)}")
            per_item = {code: int(stock.get(code, 0)) for code in self.items}
        else:
            per_item = dict.fromkeys(self.items, int(stock))
        if any(quantity < 0 for quantity in per_item.values()):
            raise ValueError("opening stock cannot be negative")
        return {(w, code): per_item[code] for w in self.warehouses for code in self.items}

    async def _gateway(self, request: Request) -> Response:
        """Entry point for every Qimen call: faults, then auth, then the method's handler."""
        self._loop = asyncio.get_running_loop()
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            self._bump("errors_5xx")
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        if fault == "throttle":
            return self._throttled_response()
        body = await request.body()
        try:
            method = self._authenticate(dict(request.query_params), body)
            handler = self._handlers.get(method)
            if handler is None:
                raise QimenError("invalid-method", f"method {method} is not served by this WMS")
            root = parse_request_xml(body)
            with self._lock:
                answer = handler(root)
        except QimenError as exc:
            self._bump("rejected_requests")
            return self._xml(render_response("failure", exc.code, exc.message))
        self._drain_unsent()
        message, extra = answer if isinstance(answer, tuple) else ("success", answer)
        return self._xml(render_response("success", "0", message, extra))

    def _throttled_response(self) -> Response:
        """HTTP 429 + Retry-After, with a Qimen-shaped body naming the TOP throttle error."""
        self._bump("throttled")
        retry_after = self.faults.config.retry_after_s
        body = render_response(
            "failure", "7", f"App Call Limited (accesscontrol.limited-by-app-access-count), retry after {retry_after}s"
        )
        return Response(body, status_code=429, media_type=XML_MEDIA_TYPE, headers={"Retry-After": str(retry_after)})

    @staticmethod
    def _xml(body: bytes, status_code: int = 200) -> Response:
        return Response(body, status_code=status_code, media_type=XML_MEDIA_TYPE)

    async def _admin_state(self, request: Request) -> Response:
        return JSONResponse(self.state())

    async def _admin_faults(self, request: Request) -> Response:
        try:
            config = FaultConfig.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
        self.faults.reconfigure(config)
        return JSONResponse({"ok": True, "faults": config.model_dump()})

    async def _admin_callback(self, request: Request) -> Response:
        payload = await request.json()
        url = payload.get("url") if isinstance(payload, dict) else None
        self._loop = asyncio.get_running_loop()
        self.set_callback(url)
        return JSONResponse({"ok": True, "callback_url": url})

    async def _admin_ship_all(self, request: Request) -> Response:
        self._loop = asyncio.get_running_loop()
        return JSONResponse({"shipped": self._ship_all_local()})

    async def _admin_ship_one(self, request: Request) -> Response:
        self._loop = asyncio.get_running_loop()
        return JSONResponse({"shipped": int(self._ship_local(request.path_params["code"]))})

    async def _admin_receive(self, request: Request) -> Response:
        """``{sku, quantity, warehouse?, batch_code?, expire_date?, product_date?, order_type?}``: ``receive``."""
        self._loop = asyncio.get_running_loop()
        try:
            payload = await request.json()
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            unknown = set(payload) - {"sku", "quantity", "warehouse", "batch_code", "expire_date", "product_date",
                                      "order_type", "order_code"}
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
            quantity = payload.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int):
                raise ValueError("quantity must be a whole number")
            sku = payload.get("sku")
            if not isinstance(sku, str):
                raise ValueError("sku must be a string")
            self.receive(
                sku,
                quantity,
                warehouse=payload.get("warehouse"),
                batch_code=str(payload.get("batch_code") or ""),
                expire_date=payload.get("expire_date"),
                product_date=payload.get("product_date"),
                order_type=str(payload.get("order_type") or RECEIPT_TYPE),
                order_code=str(payload["order_code"]) if payload.get("order_code") else None,
            )
        except ValueError as exc:  # includes a body that is not JSON
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
        warehouse = payload.get("warehouse") or self.warehouses[0]
        return JSONResponse({"ok": True, "on_hand": self.on_hand(sku, warehouse)})

    # ------------------------------------------------------------------ authentication

    def _authenticate(self, params: dict[str, str], body: bytes) -> str:
        """Check the gateway parameters and the sign; returns the method name."""
        for name in SYSTEM_PARAMS:
            if not params.get(name):
                raise QimenError("missing-parameter", f"missing required system parameter: {name}")
        if params["app_key"] != self.app_key:
            raise QimenError("invalid-app-key", f"app_key {params['app_key']} is unknown")
        if params["customerId"] != self.customer_id:
            raise QimenError("invalid-customer-id", f"customerId {params['customerId']} is not served by this WMS")
        if params["format"].lower() != "xml":
            raise QimenError("invalid-format", f"format must be xml, got {params['format']}")
        if params["sign_method"].lower() != "md5":
            raise QimenError("invalid-sign-method", f"sign_method must be md5, got {params['sign_method']}")
        if params["v"] != "2.0":
            raise QimenError("invalid-version", f"v must be 2.0, got {params['v']}")
        self._check_timestamp(params["timestamp"])
        if len(body) > MAX_BODY_BYTES:
            raise QimenError("isv.invalid-parameter", f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QimenError("isv.invalid-xml", "body must be UTF-8") from exc
        if qimen_sign(params, text, self.app_secret) != params["sign"].upper():
            self._bump("rejected_signatures")
            raise QimenError("sign-check-failure", "Illegal request")
        return params["method"]

    @staticmethod
    def _check_timestamp(value: str) -> None:
        try:
            sent = parse_qimen_time(value)
        except ValueError as exc:
            raise QimenError("invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)") from exc
        if abs(qimen_now() - sent) > TIMESTAMP_WINDOW:
            raise QimenError("invalid-timestamp", "timestamp is more than 10 minutes away from the server clock")

    # ------------------------------------------------------------------ deliveryorder.create

    def _handle_create(self, root: ET.Element) -> list[ET.Element]:
        self.counters["create_calls"] += 1
        try:
            order = self._parse_create(root)
        except QimenError:
            self.counters["create_rejected"] += 1
            raise
        key = (order.owner_code, order.delivery_order_code)
        existing = self.orders.get(key)
        if existing is not None and existing.status in (STATUS_CANCELED, STATUS_CLOSED):
            self.counters["create_refused_cancelled"] += 1
            raise QimenError(
                "isv.order-duplicate",
                f"单据已存在(已取消),重复单据不能再次创建: deliveryOrderCode {order.delivery_order_code} "
                f"is {existing.status}",
            )
        if existing is not None:
            self._count_repeat(existing, order)
            return self._create_answer(existing)
        self._store(order)
        return self._create_answer(order)

    def _parse_create(self, root: ET.Element) -> OutboundOrder:
        """Validate a create request per the spec's 必填 marks and the WMS master data."""
        header = root.find("deliveryOrder")
        if header is None:
            raise QimenError("isv.missing-parameter", "deliveryOrder is required")
        fields = _required(header, ORDER_REQUIRED, "deliveryOrder")
        receiver = self._contact(header, "receiverInfo")
        self._contact(header, "senderInfo")
        self._check_order_header(header, fields)
        warehouse = self._resolve_warehouse(fields["warehouseCode"])
        lines = self._parse_lines(root)
        return OutboundOrder(
            delivery_order_code=fields["deliveryOrderCode"],
            delivery_order_id="",
            owner_code=lines[0].owner_code,
            order_type=fields["orderType"],
            warehouse_code=warehouse,
            source_platform_code=fields["sourcePlatformCode"],
            source_platform_name=_text(header, "sourcePlatformName"),
            shop_nick=fields["shopNick"],
            buyer_nick=_text(header, "buyerNick"),
            logistics_code=fields["logisticsCode"],
            create_time="",
            receiver=receiver,
            lines=lines,
        )

    @staticmethod
    def _contact(header: ET.Element, tag: str) -> dict[str, str]:
        element = header.find(tag)
        if element is None:
            raise QimenError("isv.missing-parameter", f"deliveryOrder.{tag} is required")
        values = _required(element, CONTACT_REQUIRED, f"deliveryOrder.{tag}")
        values.update({name: _text(element, name) for name in ("area", "town", "zipCode", "tel")})
        return values

    @staticmethod
    def _check_order_header(header: ET.Element, fields: dict[str, str]) -> None:
        if fields["orderType"] not in ORDER_TYPES:
            raise QimenError(
                "isv.invalid-parameter",
                f"deliveryOrder.orderType {fields['orderType']} is not one of {', '.join(ORDER_TYPES)}",
            )
        if fields["orderType"] == "HHCK" and not _text(header, "preDeliveryOrderCode"):
            raise QimenError("isv.missing-parameter", "deliveryOrder.preDeliveryOrderCode is required for HHCK")
        for name in ORDER_TIME_FIELDS:
            value = _text(header, name)
            if not value:
                continue
            try:
                parse_qimen_time(value)
            except ValueError as exc:
                raise QimenError(
                    "isv.invalid-parameter", f"deliveryOrder.{name} must be YYYY-MM-DD HH:MM:SS, got {value!r}"
                ) from exc

    def _resolve_warehouse(self, code: str) -> str:
        """A known warehouse, or the first one for OTHER (统仓统配: the WMS picks the warehouse)."""
        if code == "OTHER":
            return self.warehouses[0]
        if code not in self.warehouses:
            raise QimenError("isv.warehouse-not-exist", f"deliveryOrder.warehouseCode {code} does not exist here")
        return code

    def _parse_lines(self, root: ET.Element) -> list[OrderLine]:
        elements = root.findall("orderLines/orderLine")
        if not elements:
            raise QimenError("isv.missing-parameter", "orderLines/orderLine is required (at least one line)")
        return [self._parse_line(element, index) for index, element in enumerate(elements, start=1)]

    def _parse_line(self, element: ET.Element, index: int) -> OrderLine:
        where = f"orderLines.orderLine[{index}]"
        values = _required(element, LINE_REQUIRED, where)
        item_code = values["itemCode"]
        if item_code not in self.items:
            raise QimenError("isv.item-not-exist", f"{where}.itemCode {item_code} does not exist in the item master")
        if self.owner_code is not None and values["ownerCode"] != self.owner_code:
            raise QimenError("isv.owner-not-exist", f"{where}.ownerCode {values['ownerCode']} is not an owner here")
        attrs = self.items[item_code]
        return OrderLine(
            order_line_no=_text(element, "orderLineNo") or str(index),
            owner_code=values["ownerCode"],
            item_code=item_code,
            item_name=_text(element, "itemName") or str(attrs.get("title") or attrs.get("name") or ""),
            plan_qty=_positive_int(values["planQty"], f"{where}.planQty"),
            actual_price=values["actualPrice"],
            retail_price=_text(element, "retailPrice"),
            source_order_code=_text(element, "sourceOrderCode"),
            sub_source_order_code=_text(element, "subSourceOrderCode"),
            inventory_type=_text(element, "inventoryType") or "ZP",
        )

    def _count_repeat(self, existing: OutboundOrder, incoming: OutboundOrder) -> None:
        """A repeated deliveryOrderCode is not a new order; a changed payload is noted as a conflict."""
        self.counters["create_repeats"] += 1
        if [line.fingerprint() for line in existing.lines] != [line.fingerprint() for line in incoming.lines]:
            self.counters["create_conflicts"] += 1

    def _store(self, order: OutboundOrder) -> None:
        order.delivery_order_id = f"QM{self.seed:03d}{next(self._order_seq):09d}"
        order.create_time = format_qimen_time(qimen_now())
        identities = order.line_identities()
        # the same source lines under another live code would ship twice; a cancelled code's lines
        # are free again (an amended order is re-sent under a new code)
        cancelled = {code for (_, code), o in self.orders.items() if o.status in (STATUS_CANCELED, STATUS_CLOSED)}
        owners = {self._line_owner.get(identity) for identity in identities}
        if any(owner not in (None, order.delivery_order_code) and owner not in cancelled for owner in owners):
            self.counters["duplicates"] += 1
        for identity in identities:
            if self._line_owner.get(identity) in (None, *cancelled):
                self._line_owner[identity] = order.delivery_order_code
        order.plan = self._plan(order)
        self.orders[(order.owner_code, order.delivery_order_code)] = order
        if self.ship_delay_s > 0:
            self._spawn(self._ship_later((order.owner_code, order.delivery_order_code)))

    @staticmethod
    def _create_answer(order: OutboundOrder) -> list[ET.Element]:
        answer = []
        for tag, value in (
            ("deliveryOrderId", order.delivery_order_id),
            ("createTime", order.create_time),
            ("warehouseCode", order.warehouse_code),
            ("logisticsCode", order.logistics_code),
        ):
            element = ET.Element(tag)
            element.text = value
            answer.append(element)
        return answer

    # ------------------------------------------------------------------ deliveryorder.query

    def _handle_query(self, root: ET.Element) -> list[ET.Element]:
        self.counters["query_calls"] += 1
        values = _required(root, ("orderCode", "page", "pageSize"), "request")
        page = _positive_int(values["page"], "request.page")
        page_size = _positive_int(values["pageSize"], "request.pageSize")
        if page_size > 100:
            raise QimenError("isv.invalid-parameter", "request.pageSize must be at most 100")
        order = self._find_order(values["orderCode"], _text(root, "ownerCode"), _text(root, "orderId"))
        if order is None:
            raise QimenError("isv.order-not-exist", f"deliveryOrder {values['orderCode']} does not exist")
        lines = order.lines[(page - 1) * page_size : page * page_size]
        total = ET.Element("totalLines")
        total.text = str(len(order.lines))
        extra = [total, self._query_header(order)]
        if order.packages:
            extra.append(self._packages(order.packages))
        extra.append(self._lines_element(order, lines))
        return extra

    def _find_order(self, code: str, owner: str = "", order_id: str = "") -> OutboundOrder | None:
        for (order_owner, order_code), order in self.orders.items():
            if order_code == code and (not owner or owner == order_owner):
                if not order_id or order_id == order.delivery_order_id:
                    return order
        return None

    @staticmethod
    def _query_header(order: OutboundOrder) -> ET.Element:
        header = ET.Element("deliveryOrder")
        return _subs(
            header,
            (
                ("deliveryOrderCode", order.delivery_order_code),
                ("deliveryOrderId", order.delivery_order_id),
                ("warehouseCode", order.warehouse_code),
                ("orderType", order.order_type),
                ("status", order.status),
                ("outBizCode", order.out_biz_codes[-1] if order.out_biz_codes else ""),
                ("confirmType", CONFIRM_PARTIAL if order.status == STATUS_PARTDELIVERED else CONFIRM_FINAL),
                ("orderConfirmTime", order.operate_time),
                ("operateTime", order.operate_time or order.create_time),
            ),
        )

    # ------------------------------------------------------------------ inventory.query

    def _handle_inventory(self, root: ET.Element) -> list[ET.Element]:
        self.counters["inventory_calls"] += 1
        criteria = root.findall("criteriaList/criteria")
        if not criteria:
            raise QimenError("isv.missing-parameter", "criteriaList/criteria is required (at least one)")
        items = ET.Element("items")
        for index, element in enumerate(criteria, start=1):
            self._inventory_rows(items, element, f"criteriaList.criteria[{index}]")
        return [items]

    def _inventory_rows(self, items: ET.Element, criteria: ET.Element, where: str) -> None:
        """One row per warehouse for the item; only ZP (正品) stock exists in this WMS."""
        item_code = _required(criteria, ("itemCode",), where)["itemCode"]
        warehouse = _text(criteria, "warehouseCode")
        if warehouse and warehouse not in self.warehouses:
            raise QimenError("isv.warehouse-not-exist", f"{where}.warehouseCode {warehouse} does not exist")
        if item_code not in self.items:
            return
        inventory_type = _text(criteria, "inventoryType") or "ZP"
        for code in [warehouse] if warehouse else self.warehouses:
            total = self.stock[(code, item_code)] if inventory_type == "ZP" else 0
            lots = sorted(self.batches.get((code, item_code), {}).values(), key=lambda lot: lot.batch_code)
            if inventory_type != "ZP" or not lots:
                self._inventory_row(items, code, item_code, inventory_type, total)
                continue
            for lot in lots:
                self._inventory_row(items, code, item_code, inventory_type, lot.quantity, lot)
            outside = total - batched_total(lots)
            if outside > 0:
                self._inventory_row(items, code, item_code, inventory_type, outside)

    def _inventory_row(self, items: ET.Element, warehouse: str, item_code: str, inventory_type: str, quantity: int,
                       lot: Lot | None = None) -> None:
        row = _subs(
            _sub(items, "item"),
            (
                ("warehouseCode", warehouse),
                ("itemCode", item_code),
                ("itemId", self._item_ids[item_code]),
                ("inventoryType", inventory_type),
                ("quantity", quantity),
                ("lockQuantity", 0),
            ),
        )
        if lot is not None:
            _sub(row, "batchCode", lot.batch_code)
            if lot.product_date:
                _sub(row, "productDate", lot.product_date)
            if lot.expire_date:
                _sub(row, "expireDate", lot.expire_date)

    # ------------------------------------------------------------------ order.cancel

    def _handle_cancel(self, root: ET.Element) -> tuple[str, list[ET.Element]]:
        """taobao.qimen.order.cancel: cancel an order that has not shipped; see the module docstring."""
        self.counters["cancel_calls"] += 1
        values = _required(root, ("warehouseCode", "orderCode"), "request")
        warehouse, code = values["warehouseCode"], values["orderCode"]
        if warehouse != "OTHER" and warehouse not in self.warehouses:
            raise QimenError("isv.warehouse-not-exist", f"request.warehouseCode {warehouse} does not exist here")
        order_type = _text(root, "orderType")
        order = self._find_order(code, _text(root, "ownerCode"), _text(root, "orderId"))
        if order is None or (order_type and order_type != order.order_type):
            self.counters["cancel_not_found"] += 1
            raise QimenError("isv.order-not-exist", f"单据不存在: {code}")
        if order.status == STATUS_CANCELED:
            self.counters["cancel_repeats"] += 1
            return "单据已取消", []
        if order.status == STATUS_CLOSED:
            self.counters["cancel_repeats"] += 1
            return "单据已关闭", []
        if order.status not in (STATUS_ACCEPTED,):
            self.counters["cancel_refused"] += 1
            what = "单据已发货(部分发货)" if order.status == STATUS_PARTDELIVERED else "单据已发货"
            raise QimenError("isv.order-status-invalid", f"{what},不能取消: {code} is {order.status}")
        order.status = STATUS_CANCELED
        order.cancel_reason = _text(root, "cancelReason")
        order.operate_time = format_qimen_time(qimen_now())
        self.counters["cancelled"] += 1
        self._cancelled.append(code)
        self._held.discard(code)
        return "success", []

    # ------------------------------------------------------------------ shipping

    def _plan(self, order: OutboundOrder) -> list[list[int]]:
        """Which lines go in which package: one package, or two for a split order (2+ lines)."""
        indexes = list(range(len(order.lines)))
        if len(indexes) < 2 or self.split_packages <= 0:
            return [indexes]
        digest = hashlib.sha256(f"{self.seed}:split:{order.owner_code}:{order.delivery_order_code}".encode())
        if self.split_packages < 1 and int(digest.hexdigest(), 16) % 10_000 / 10_000 >= self.split_packages:
            return [indexes]
        half = len(indexes) // 2
        return [indexes[:half], indexes[half:]]

    def _orders_with(self, code: str) -> list[OutboundOrder]:
        return [order for (_, order_code), order in self.orders.items() if order_code == code]

    async def _ship_later(self, key: tuple[str, str]) -> None:
        """The shipping timer: first package after ship_delay_s, the next one split_gap_s later."""
        await asyncio.sleep(self.ship_delay_s)
        while True:
            with self._lock:
                order = self.orders[key]
                if order.delivery_order_code in self._held:
                    return
                shipped = self._ship_next(order)
                more = order.status == STATUS_PARTDELIVERED
            if shipped:
                self._drain_unsent()
            if not (shipped and more):
                return
            await asyncio.sleep(self.split_gap_s)

    def _ship_local(self, code: str, *, everything: bool = False) -> bool:
        with self._lock:
            step = self._ship_order if everything else self._ship_next
            shipped = [step(order) for order in self._orders_with(code)]
        self._drain_unsent()
        return any(shipped)

    def _ship_all_local(self) -> int:
        with self._lock:
            count = sum(
                self._ship_order(order)
                for order in list(self.orders.values())
                if order.delivery_order_code not in self._held
            )
        self._drain_unsent()
        return count

    def _ship_order(self, order: OutboundOrder) -> bool:
        """Ship every package still due; True if at least one left."""
        shipped = False
        while self._ship_next(order):
            shipped = True
        return shipped

    def _ship_next(self, order: OutboundOrder) -> bool:
        """Pick, pack and hand over the next package: waybill, stock decrement, status, confirm queued.

        A line ships what stock allows (actualQty may be below planQty); stock never goes negative.
        A cancelled or fully shipped order never ships again.
        """
        if order.status not in SHIPPABLE or len(order.packages) >= len(order.plan):
            return False
        number = len(order.packages) + 1
        contents: list[tuple[OrderLine, int]] = []
        taken: list[tuple[OrderLine, list[Taken]]] = []
        for index in order.plan[number - 1]:
            line = order.lines[index]
            key = (order.warehouse_code, line.item_code)
            available = self.stock[key]
            quantity = min(line.plan_qty, available)
            taken.append((line, take(self.batches.setdefault(key, {}), available, quantity)))
            self.stock[key] = available - quantity
            line.actual_qty = quantity
            contents.append((line, quantity))
        now = format_qimen_time(qimen_now())
        package = Package(
            number=number,
            package_code=f"{order.delivery_order_id}-P{number}",
            logistics_code=order.logistics_code,
            logistics_name=LOGISTICS_NAMES.get(order.logistics_code, order.logistics_code),
            express_code=self._waybill(order, number),
            weight_kg=self._weight_kg(contents),
            shipped_at=now,
            contents=contents,
        )
        order.packages.append(package)
        order.express_code = order.packages[0].express_code
        order.logistics_name = package.logistics_name
        order.weight_kg = self._weight_kg([item for p in order.packages for item in p.contents])
        order.operate_time = now
        final = number == len(order.plan)
        order.status = STATUS_DELIVERED if final else STATUS_PARTDELIVERED
        self.counters["packages_shipped"] += 1
        if final:
            self.counters["shipped"] += 1
        self._unsent.append(PendingConfirm((order.owner_code, order.delivery_order_code), number, order.status))
        if self.stock_reports:
            changes = [
                change
                for line, parts in taken
                for change in changes_for(
                    parts, sign=-1, owner_code=order.owner_code, warehouse_code=order.warehouse_code,
                    order_code=order.delivery_order_code, order_type=order.order_type,
                    out_biz_code=f"{package.package_code}-S", item_code=line.item_code,
                    item_id=self._item_ids[line.item_code], change_time=now,
                )
            ]
            self._queue_stock_report(changes)
        return True

    def _waybill(self, order: OutboundOrder, number: int = 1) -> str:
        """Deterministic waybill: carrier prefix + 12 digits from the seed, the order and the package."""
        suffix = "" if number == 1 else f":{number}"
        seed = f"{self.seed}:{order.owner_code}:{order.delivery_order_code}{suffix}"
        digest = hashlib.sha256(seed.encode()).hexdigest()
        return WAYBILL_PREFIX.get(order.logistics_code, "QM") + str(int(digest, 16) % 10**12).zfill(12)

    def _weight_kg(self, contents: list[tuple[OrderLine, int]]) -> str:
        grams = sum(
            float(self.items[line.item_code].get("weight_g") or DEFAULT_ITEM_WEIGHT_G) * quantity
            for line, quantity in contents
        )
        return f"{grams / 1000:.3f}"

    # ------------------------------------------------------------------ pushes (confirm, stockchange.report)

    def _drain_unsent(self) -> None:
        """Start a push for every confirm and stock report not yet pushed, once a callback URL is known.

        With the ``duplicate`` fault a message is pushed twice (same outBizCode), as WMSs do after
        network trouble.
        """
        if not self.callback_url:
            return
        with self._lock:
            pending, self._unsent = self._unsent, []
            confirms = [self._new_confirm(self.orders[item.key], item) for item in pending]
            reports, self._unsent_stock = self._unsent_stock, []
        messages = [(METHOD_CONFIRM, body, "confirm") for body in confirms]
        messages += [(METHOD_STOCK_CHANGE, body, "stockchange") for body in reports]
        for method, body, kind in messages:
            copies = 2 if self.faults.duplicate() else 1
            if copies == 2:
                self._bump(f"{kind}_duplicates_sent")
            for _ in range(copies):
                self._spawn(self._push(method, body, kind))

    def _queue_stock_report(self, changes: list[StockChange]) -> None:
        """Queue a stockchange.report of ``changes`` (caller holds the lock); nothing when empty."""
        if not changes:
            return
        self.counters["stockchange_reports"] += 1
        self._unsent_stock.append(stock_change_report_xml(changes))

    def _kick(self) -> None:
        """Push what is queued from wherever a public method was called: on the serving loop, from
        another thread onto it, or (no loop serving yet) on the caller's running loop."""
        loop = self._loop
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is not None and loop.is_running() and not loop.is_closed() and loop is not current:
            loop.call_soon_threadsafe(self._drain_unsent)
            return
        if current is None:
            return  # no loop at all: pushed by the next drain (a gateway call, ship, flush, set_callback)
        self._loop = current
        self._drain_unsent()

    def _new_confirm(self, order: OutboundOrder, pending: PendingConfirm) -> str:
        out_biz_code = f"{order.delivery_order_id}-C{len(order.out_biz_codes) + 1}"
        order.out_biz_codes.append(out_biz_code)
        return self._confirm_xml(order, out_biz_code, pending)

    def _confirm_xml(self, order: OutboundOrder, out_biz_code: str, pending: PendingConfirm) -> str:
        """The deliveryorder.confirm body: deliveryOrder, packages/package, orderLines/orderLine.

        Each confirm carries the package it reports; a partial one (confirmType=1) lists the lines
        of that package with what shipped in it, the final one every line with its total actualQty.
        A status-only confirm (the WMS cancelled or closed the order) has no package.
        """
        package = order.packages[pending.number - 1] if pending.number else None
        final = package is None or pending.number == len(order.plan)
        when = package.shipped_at if package is not None else order.operate_time
        root = ET.Element("request")
        _subs(
            _sub(root, "deliveryOrder"),
            (
                ("deliveryOrderCode", order.delivery_order_code),
                ("deliveryOrderId", order.delivery_order_id),
                ("warehouseCode", order.warehouse_code),
                ("orderType", order.order_type),
                ("status", pending.status),
                ("outBizCode", out_biz_code),
                ("confirmType", CONFIRM_FINAL if final else CONFIRM_PARTIAL),
                ("orderConfirmTime", when),
                ("operatorCode", "SIM"),
                ("operatorName", "qimen-simulator"),
                ("operateTime", when),
            ),
        )
        if package is not None:
            root.append(self._packages([package]))
        if package is None or final:
            root.append(self._lines_element(order, order.lines))
        else:
            root.append(self._lines_element(order, [line for line, _ in package.contents],
                                            {id(line): qty for line, qty in package.contents}))
        return XML_DECLARATION + ET.tostring(root, encoding="unicode")

    @staticmethod
    def _packages(packages: list[Package]) -> ET.Element:
        element = ET.Element("packages")
        for package in packages:
            entry = _subs(
                _sub(element, "package"),
                (
                    ("logisticsCode", package.logistics_code),
                    ("logisticsName", package.logistics_name),
                    ("expressCode", package.express_code),
                    ("packageCode", package.package_code),
                    ("weight", package.weight_kg),
                ),
            )
            items = _sub(entry, "items")
            for line, quantity in package.contents:
                if quantity:
                    _subs(_sub(items, "item"), (("itemCode", line.item_code), ("quantity", quantity)))
        return element

    def _lines_element(
        self, order: OutboundOrder, lines: list[OrderLine], shipped: Mapping[int, int] | None = None
    ) -> ET.Element:
        element = ET.Element("orderLines")
        for line in lines:
            _subs(
                _sub(element, "orderLine"),
                (
                    ("orderLineNo", line.order_line_no),
                    ("ownerCode", line.owner_code),
                    ("itemCode", line.item_code),
                    ("itemId", self._item_ids[line.item_code]),
                    ("itemName", line.item_name),
                    ("inventoryType", line.inventory_type),
                    ("planQty", line.plan_qty),
                    ("actualQty", line.actual_qty if shipped is None else shipped.get(id(line), 0)),
                ),
            )
        return element

    async def _push(self, method: str, body: str, kind: str) -> None:
        """POST one message (deliveryorder.confirm or stockchange.report) until the ERP answers
        flag=success, signed anew on every attempt; bounded exponential backoff. Counters are
        ``{kind}_pushes``, ``{kind}_acked``, ``{kind}_push_failures`` and ``{kind}_abandoned``."""
        delay = self.push_backoff_s
        async with httpx.AsyncClient(timeout=self.push_timeout_s) as client:
            for attempt in range(1, self.push_max_attempts + 1):
                self._bump(f"{kind}_pushes")
                if await self._post(client, method, body):
                    self._bump(f"{kind}_acked")
                    if method == METHOD_CONFIRM:
                        self._mark_acked(body)
                    return
                self._bump(f"{kind}_push_failures")
                if attempt < self.push_max_attempts:
                    await asyncio.sleep(min(delay, self.push_backoff_cap_s))
                    delay *= 2
        self._bump(f"{kind}_abandoned")

    async def _post(self, client: httpx.AsyncClient, method: str, body: str) -> bool:
        url = self.callback_url
        if not url:
            self.last_push_error = "no callback URL"
            return False
        params = {
            "method": method,
            "app_key": self.app_key,
            "customerId": self.customer_id,
            "format": "xml",
            "sign_method": "md5",
            "timestamp": format_qimen_time(qimen_now()),
            "v": "2.0",
        }
        try:
            response = await client.post(
                signed_gateway_url(url, params, body, self.app_secret),
                content=body.encode(),
                headers={"Content-Type": "text/xml;charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            self.last_push_error = f"{type(exc).__name__}: {exc}"
            return False
        return self._acknowledged(response)

    def _acknowledged(self, response: httpx.Response) -> bool:
        """Only HTTP 200 with ``<response><flag>success</flag>`` counts as received by the ERP."""
        if response.status_code != 200:
            self.last_push_error = f"HTTP {response.status_code}"
            return False
        if _DTD.search(response.content):
            self.last_push_error = "answer carries a DTD"
            return False
        try:
            flag = (ET.fromstring(response.content).findtext("flag") or "").strip().lower()
        except ET.ParseError:
            self.last_push_error = "answer is not XML"
            return False
        if flag != "success":
            self.last_push_error = f"flag={flag or 'missing'}"
            return False
        return True

    def _mark_acked(self, body: str) -> None:
        root = ET.fromstring(body)
        if _text(root, "deliveryOrder/confirmType") == CONFIRM_PARTIAL:
            return  # confirm_acked means the ERP has the final confirmation
        code = _text(root, "deliveryOrder/deliveryOrderCode")
        order_id = _text(root, "deliveryOrder/deliveryOrderId")
        with self._lock:
            for order in self.orders.values():
                if order.delivery_order_code == code and order.delivery_order_id == order_id:
                    order.confirm_acked = True

    # ------------------------------------------------------------------ tasks and loops

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _live_tasks(self) -> list[asyncio.Task[Any]]:
        """Pending tasks of the running loop; tasks of a loop that has since stopped are dropped."""
        loop = asyncio.get_running_loop()
        stale = {task for task in self._tasks if task.get_loop() is not loop}
        self._tasks -= stale
        return list(self._tasks)

    def _bump(self, name: str) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def _foreign_loop(self) -> asyncio.AbstractEventLoop | None:
        """The serving loop when it runs in another thread than the caller, else None."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return None
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        return None if current is loop else loop

    async def _on_serving_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` where the app's tasks live, so timers and pushes stay on one loop."""
        loop = self._foreign_loop()
        if loop is None:
            self._loop = asyncio.get_running_loop()
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    # ------------------------------------------------------------------ public API

    def set_callback(self, url: str | None) -> None:
        """Where confirms go (the ERP's Qimen endpoint); queued confirms are pushed once it is set."""
        self.callback_url = url
        loop = self._loop
        if url and loop is not None and loop.is_running() and not loop.is_closed():
            loop.call_soon_threadsafe(self._drain_unsent)

    def set_faults(self, config: FaultConfig) -> None:
        self.faults.reconfigure(config)

    async def ship(self, code: str) -> bool:
        """Ship the next package of this deliveryOrderCode now (the whole order unless it ships split).

        False if unknown, cancelled or already fully shipped. Works on a held order (explicit).
        """

        async def run() -> bool:
            return self._ship_local(code)

        return await self._on_serving_loop(run())

    async def ship_now(self, code: str) -> bool:
        """Ship every package still due for this code now, held or not; False if nothing shipped."""

        async def run() -> bool:
            return self._ship_local(code, everything=True)

        return await self._on_serving_loop(run())

    async def ship_all(self) -> int:
        """Ship every accepted (not held) order now, all its packages; returns how many shipped."""

        async def run() -> int:
            return self._ship_all_local()

        return await self._on_serving_loop(run())

    async def flush(self, max_wait_s: float = 30.0) -> None:
        """Wait until every pending ship timer and confirm push has finished (or raise TimeoutError)."""

        async def run() -> None:
            self._drain_unsent()  # messages queued while no loop was serving
            async with asyncio.timeout(max_wait_s):
                while tasks := self._live_tasks():
                    await asyncio.gather(*tasks, return_exceptions=True)

        await self._on_serving_loop(run())

    async def aclose(self) -> None:
        """Cancel pending timers and pushes, e.g. at the end of a test."""

        async def run() -> None:
            tasks = self._live_tasks()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        await self._on_serving_loop(run())

    def hold(self, code: str) -> None:
        """Keep this code in the warehouse: the timer and ship_all skip it (the code may be unknown
        yet), so a test can cancel it before it ships; ship/ship_now still ship it."""
        with self._lock:
            self._held.add(code)

    def release(self, code: str) -> None:
        """Undo ``hold``; with a shipping timer configured the order ships ship_delay_s later."""
        with self._lock:
            self._held.discard(code)
        loop = self._loop
        if self.ship_delay_s > 0 and loop is not None and loop.is_running() and not loop.is_closed():
            loop.call_soon_threadsafe(self._restart_timers, code)

    def _restart_timers(self, code: str) -> None:
        with self._lock:
            keys = [key for key, order in self.orders.items() if key[1] == code and order.status in SHIPPABLE]
        for key in keys:
            self._spawn(self._ship_later(key))

    async def wms_cancel(self, code: str, status: str = STATUS_CANCELED) -> bool:
        """The WMS itself cancels (or, with status CLOSED, closes) an order not yet shipped, e.g. out
        of stock, and pushes a status-only deliveryorder.confirm. False if it cannot."""
        if status not in (STATUS_CANCELED, STATUS_CLOSED):
            raise ValueError(f"status must be {STATUS_CANCELED} or {STATUS_CLOSED}")

        async def run() -> bool:
            with self._lock:
                orders = [order for order in self._orders_with(code) if order.status == STATUS_ACCEPTED]
                for order in orders:
                    order.status = status
                    order.operate_time = format_qimen_time(qimen_now())
                    self._unsent.append(PendingConfirm((order.owner_code, order.delivery_order_code), 0, status))
            self._drain_unsent()
            return bool(orders)

        return await self._on_serving_loop(run())

    # ------------------------------------------------------------------ stock

    def _stock_key(self, sku: str, warehouse: str | None) -> tuple[str, str]:
        """(warehouse, item) of a known item; ``warehouse`` None means the first (default) warehouse."""
        where = warehouse or self.warehouses[0]
        if where not in self.warehouses:
            raise ValueError(f"warehouse {where} does not exist here")
        if sku not in self.items:
            raise ValueError(f"item {sku} does not exist in the item master")
        return where, sku

    def _stock_owner(self, owner_code: str | None) -> str:
        """ownerCode of a receipt or correction (必须 in stockchange.report): the given one, else the
        configured owner, else the customerId (one owner per customer)."""
        return owner_code or self.owner_code or self.customer_id

    def _report_movement(self, key: tuple[str, str], parts: list[Taken], sign: int, *, order_code: str,
                         order_type: str, owner_code: str | None) -> None:
        """Queue the stockchange.report of a receipt or correction (caller holds the lock)."""
        self._queue_stock_report(changes_for(
            parts, sign=sign, owner_code=self._stock_owner(owner_code), warehouse_code=key[0], order_code=order_code,
            order_type=order_type, out_biz_code=f"SC{self.seed:03d}{next(self._stock_seq):09d}", item_code=key[1],
            item_id=self._item_ids[key[1]], change_time=format_qimen_time(qimen_now())))

    def receive(
        self,
        sku: str,
        quantity: int,
        warehouse: str | None = None,
        batch_code: str = "",
        expire_date: date | str | None = None,
        order_type: str = RECEIPT_TYPE,
        *,
        product_date: date | str | None = None,
        order_code: str | None = None,
        owner_code: str | None = None,
    ) -> None:
        """Goods received (入库): on-hand of ``sku`` in ``warehouse`` (default: the first) grows by
        ``quantity``, into batch ``batch_code`` with its dates when given, and a stockchange.report
        (+quantity, ``order_type`` CGRK unless another 入库 type is named) is pushed - queued until a
        callback URL is set. The order code defaults to a generated receipt number."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise ValueError(f"quantity must be a positive whole number, got {quantity!r}")
        if order_type not in INBOUND_TYPES:
            raise ValueError(f"order_type {order_type} is not a receipt type ({', '.join(INBOUND_TYPES)})")
        expire, produced = as_date(expire_date, "expire_date"), as_date(product_date, "product_date")
        if (expire or produced) and not batch_code:
            raise ValueError("expire_date and product_date belong to a batch: give a batch_code")
        with self._lock:
            key = self._stock_key(sku, warehouse)
            parts = [put(self.batches.setdefault(key, {}), quantity, batch_code, expire, produced)] if batch_code \
                else [Taken(quantity)]
            self.stock[key] += quantity
            code = order_code or f"RK{self.seed:03d}{next(self._stock_doc_seq):06d}"
            self._report_movement(key, parts, +1, order_code=code, order_type=order_type, owner_code=owner_code)
        self._kick()

    def adjust(
        self,
        sku: str,
        delta: int,
        warehouse: str | None = None,
        *,
        batch_code: str = "",
        order_type: str | None = None,
        order_code: str | None = None,
        owner_code: str | None = None,
    ) -> None:
        """A count correction (盘点): on-hand changes by ``delta`` (never below 0) and a
        stockchange.report is pushed with orderType QTRK (gain) or QTCK (loss) unless ``order_type``
        names one of the documented codes. A loss comes out of ``batch_code`` when given, else out of
        the stock held without batch first, then first-expired-first-out."""
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise ValueError(f"delta must be a non-zero whole number, got {delta!r}")
        kind = order_type or (COUNT_GAIN_TYPE if delta > 0 else COUNT_LOSS_TYPE)
        if kind not in STOCK_ORDER_TYPES:
            raise ValueError(f"order_type {kind} is not one of {', '.join(STOCK_ORDER_TYPES)}")
        with self._lock:
            key = self._stock_key(sku, warehouse)
            lots = self.batches.setdefault(key, {})
            on_hand = self.stock[key]
            if delta > 0:
                parts = [put(lots, delta, batch_code)] if batch_code else [Taken(delta)]
            elif batch_code:
                lot = lots.get(batch_code)
                if lot is None or lot.quantity < -delta:
                    raise ValueError(f"batch {batch_code} of {sku} holds {lot.quantity if lot else 0}, "
                                     f"cannot remove {-delta}")
                parts = take({batch_code: lot}, lot.quantity, -delta)
                if lot.quantity == 0:
                    del lots[batch_code]
            else:
                if on_hand < -delta:
                    raise ValueError(f"{sku} has {on_hand} on hand in {key[0]}, cannot remove {-delta}")
                outside = min(on_hand - batched_total(lots.values()), -delta)
                parts = ([Taken(outside)] if outside else []) + take(lots, on_hand - outside, -delta - outside)
            self.stock[key] = on_hand + delta
            code = order_code or f"PD{self.seed:03d}{next(self._stock_doc_seq):06d}"
            self._report_movement(key, parts, 1 if delta > 0 else -1, order_code=code, order_type=kind,
                                  owner_code=owner_code)
        self._kick()

    def on_hand(self, sku: str, warehouse: str | None = None) -> int:
        """On-hand of ``sku`` in ``warehouse`` (default: the first warehouse), batches included."""
        with self._lock:
            return self.stock[self._stock_key(sku, warehouse)]

    def batches_of(self, sku: str, warehouse: str | None = None) -> list[dict[str, object]]:
        """The batches of ``sku`` in ``warehouse`` (default: the first): batch_code, quantity,
        expire_date, product_date, by batch code."""
        with self._lock:
            lots = self.batches.get(self._stock_key(sku, warehouse), {})
            return [lot.as_state() for lot in sorted(lots.values(), key=lambda lot: lot.batch_code)]

    def cancelled_codes(self) -> list[str]:
        """Codes cancelled through order.cancel, in the order the cancels arrived."""
        with self._lock:
            return list(self._cancelled)

    def status_of(self, code: str) -> str | None:
        """The WMS status of this code (ACCEPT, PARTDELIVERED, DELIVERED, CANCELED, CLOSED), None if unknown."""
        with self._lock:
            orders = self._orders_with(code)
            return orders[0].status if orders else None

    def was_shipped(self, code: str) -> bool:
        """True once at least one package of this code left the warehouse."""
        with self._lock:
            return any(order.packages for order in self._orders_with(code))

    def packages_of(self, code: str) -> list[dict[str, Any]]:
        """The packages shipped so far for this code: package_code, express_code, logistics_code,
        shipped_at and items (order_line_no, item_code, quantity)."""
        with self._lock:
            return [package.as_state() for order in self._orders_with(code) for package in order.packages]

    def cancel_calls(self) -> int:
        """How many order.cancel calls passed the gateway (repeats and refusals included)."""
        with self._lock:
            return self.counters["cancel_calls"]

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: counters, orders by deliveryOrderCode, stock per warehouse."""
        with self._lock:
            stock: dict[str, dict[str, int]] = {w: {} for w in self.warehouses}
            for (warehouse, item), quantity in self.stock.items():
                stock[warehouse][item] = quantity
            batches: dict[str, dict[str, list[dict[str, object]]]] = {}
            for (warehouse, item), lots in self.batches.items():
                if lots:
                    batches.setdefault(warehouse, {})[item] = [
                        lot.as_state() for lot in sorted(lots.values(), key=lambda lot: lot.batch_code)]
            return {
                "outbound_orders": len(self.orders),
                "orders": {order.delivery_order_code: order.as_state() for order in self.orders.values()},
                **self.counters,
                "stock": stock,
                "batches": batches,
                "stock_reports": self.stock_reports,
                "callback_url": self.callback_url,
                "last_push_error": self.last_push_error,
                "pending_tasks": len(self._tasks),
                "faults_injected": dict(self.faults.injected),
                "held": sorted(self._held),
                "cancelled_codes": list(self._cancelled),
            }
