"""WMS over Qimen (奇门): outbound (delivery) orders, shipment confirmations, stock levels.

Wire protocol (奇门仓储 API, format=xml):

* ``POST {base_url}?method=..&app_key=..&customerId=..&format=xml&sign_method=md5&timestamp=..&v=2.0&sign=..``
  with an XML body ``<?xml ..?><request>..</request>``; ``timestamp`` is "yyyy-MM-dd HH:mm:ss" in GMT+8.
* ``sign = upper(hex(md5(secret + k1v1k2v2.. + body + secret)))`` over the query parameters except
  ``sign``, sorted by name (empty values are left out by the sender), UTF-8. The receiving side of a
  push (Taobao SPI ``SpiUtils.checkSign``) computes the same over the URL parameters, the headers
  named in ``top-sign-list`` and the raw body.
* Answers are ``<response><flag>success|failure</flag><code/><message/>..</response>``; a sign
  failure is answered ``flag=failure, code=sign-check-failure, message=Illegal request``.

Methods used, with the Qimen standard document each one follows (奇门仓储 API, open platform apiId):

* ``taobao.qimen.deliveryorder.create`` (发货单创建, 26002): idempotent by deliveryOrderCode.
* ``taobao.qimen.deliveryorder.query`` (发货单查询, 24690): ``deliveryOrder.status`` is one of
  NEW (未开始处理), ACCEPT (仓库接单), PARTDELIVERED (部分发货完成), DELIVERED (发货完成),
  EXCEPTION (异常), CANCELED (取消), CLOSED (关闭), REJECT (拒单), CANCELEDFAIL (取消失败);
  ``packages/package`` carries logisticsCode, expressCode, packageCode and ``items/item``.
* ``taobao.qimen.order.cancel`` (单据取消, 26000): warehouseCode and orderCode required,
  ownerCode/orderId/orderType (JYCK = 一般交易出库单)/cancelReason optional; the answer is only
  flag/code/message, so what a failure *means* (already shipped, unknown, already cancelled) is
  read from the message, with a ``deliveryorder.query`` as the tie-breaker.
* ``taobao.qimen.deliveryorder.confirm`` (发货单确认, pushed by the WMS): ``confirmType`` 0 = the
  final confirmation of the order, 1 = an intermediate one (出库单多次发货: more packages follow);
  ``outBizCode`` is the message id used for de-duplication.
* ``taobao.qimen.stockchange.report`` (库存异动通知, 25996, pushed by the WMS): signed stock movements,
  one ``stock_change`` event per item (see ``connectors.qimen.stock``).
* ``taobao.qimen.inventory.query`` (库存查询, 25999): quantity/lockQuantity per item and warehouse, and
  batchCode/productDate/expireDate per row for batch-managed items (``query_batches``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode
from xml.etree.ElementTree import Element

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr

from canonical import InventoryLevel, Shipment, ShipmentLine
from connectors.base import (
    CancelResult,
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    CreateResult,
    InventorySource,
    OutboundOrderTarget,
    OutboundState,
    PushReceiver,
    PushResult,
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
from connectors.qimen import xml as qx
from connectors.qimen.stock import (
    STOCK_CHANGE_METHODS,
    StockBatch,
    StockReportError,
    batches_from_items,
    parse_stock_change_report,
)
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.qimen")

PLATFORM = "qimen"
API_VERSION = "2.0"
METHOD_DELIVERY_CREATE = "taobao.qimen.deliveryorder.create"
METHOD_DELIVERY_QUERY = "taobao.qimen.deliveryorder.query"
METHOD_DELIVERY_CONFIRM = "taobao.qimen.deliveryorder.confirm"
METHOD_INVENTORY_QUERY = "taobao.qimen.inventory.query"
METHOD_ORDER_CANCEL = "taobao.qimen.order.cancel"
#: orderType of a sales outbound (一般交易出库单) in order.cancel, as deliveryorder.create sends it
SALES_OUTBOUND_TYPE = "JYCK"
#: the Qimen gateway hands the WMS-side short name ("deliveryorder.confirm") to some receivers
PUSH_METHODS = {METHOD_DELIVERY_CONFIRM, "deliveryorder.confirm"}
#: every push method handle_push takes: the confirms above and stockchange.report (full and short name)
ACCEPTED_PUSH_METHODS = frozenset(PUSH_METHODS | STOCK_CHANGE_METHODS)

SHIPPED_STATUSES = {"DELIVERED", "PARTDELIVERED"}
#: statuses after which the order will not ship (CANCELEDFAIL means the cancel *failed*: it may ship)
CANCELLED_STATUSES = {"CANCELED", "CANCELLED", "CLOSED"}
#: created and not shipped: the documented NEW/ACCEPT plus the in-warehouse steps some WMSs report
#: (orderprocess statuses: printed, picked, checked, packed - all still cancellable in principle)
ACCEPTED_STATUSES = {"NEW", "ACCEPT", "ACCEPTED", "PRINT", "PICK", "CHECK", "PACKAGE"}
#: terminal "did not ship" statuses of deliveryorder.confirm worth reporting upstream, normalised
PROBLEM_STATUSES = {"CANCELED": "cancelled", "CANCELLED": "cancelled", "CLOSED": "closed",
                    "REJECT": "rejected", "EXCEPTION": "exception"}
#: deliveryorder.confirm ``confirmType`` of an intermediate confirmation (more packages follow)
CONFIRM_TYPE_PARTIAL = "1"

_SIGN_ERROR = ("sign-check-failure", "Illegal request")
_TIMESTAMP_ERROR = "invalid-timestamp"
#: TOP's public parameters: "timestamp ... GMT+8 ... 服务端允许客户端请求最大时间误差为10分钟"; the
#: receiving side's SDK check (``SpiUtils.checkTimestamp(request, minutes)``) refuses a missing one
PUSH_MAX_AGE_S = 600.0

# --- error classification (codes/messages of the Qimen gateway and of WMS answers) -----------------
_THROTTLE_MARKERS = ("call-limited", "call-exceeded", "limited-by", "accesscontrol", "限流", "频繁", "too many")
_TRANSIENT_MARKERS = (
    "isp.",
    "timeout",
    "time-out",
    "unavailable",
    "busy",
    "系统繁忙",
    "服务繁忙",
    "系统忙",
    "超时",
    "请稍后",
    "稍后重试",
    "system-error",
    "service-error",
)
_AUTH_MARKERS = (
    "sign-check-failure",
    "invalid-signature",
    "invalid-sign",
    "invalid-app-key",
    "appkey-not-exists",
    "app-key",
    "invalid-customerid",
    "customerid",
    "签名",
)
# "exists" alone would also match "not exists"; only positive phrasings count as a repeated code
_DUPLICATE_MARKERS = ("重复", "已存在", "已经存在", "已创建", "duplicate", "already exist", "repeat")
# order.cancel answers only flag/code/message; these phrasings say what a failure means. They are
# checked in this order: "已取消,不能重复取消" is a repeat, "单据不存在,不能取消" is unknown.
_ALREADY_CANCELLED_MARKERS = ("已取消", "已经取消", "重复取消", "已作废", "已关闭", "already cancel", "already closed",
                              "already been cancel", "was cancelled", "was canceled", "is cancelled", "is canceled")
_NOT_FOUND_MARKERS = ("不存在", "查无", "未找到", "找不到", "not exist", "not found", "no such", "does not exist")
_REFUSED_MARKERS = ("已发货", "部分发货", "已出库", "已揽收", "已交接", "不能取消", "无法取消", "不允许取消",
                    "不可取消", "取消失败", "already shipped", "already delivered", "has shipped", "been shipped",
                    "cannot cancel", "can not cancel", "can't cancel", "not allowed to cancel", "cancel not allowed")


def qimen_sign(params: Mapping[str, str], body: bytes, app_secret: str, *, keep_empty: bool = False) -> str:
    """``upper(md5(secret + sorted(k+v) + body + secret))``; ``sign`` itself never takes part.

    ``keep_empty`` follows the receiving-side SDK (``SpiUtils``), which appends the name of an empty
    parameter; the sending-side SDK skips empty values instead. Both agree when none is empty.
    """
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(app_secret.encode("utf-8"))
    for key in sorted(params):
        value = params[key]
        if key == "sign" or value is None:
            continue
        if value == "" and not keep_empty:
            continue
        digest.update(f"{key}{value}".encode())
    digest.update(body)
    digest.update(app_secret.encode("utf-8"))
    return digest.hexdigest().upper()


def now_gmt8() -> str:
    return datetime.now(qx.GMT8).strftime(qx.TIME_FORMAT)


def _has(haystack: str, markers: tuple[str, ...]) -> bool:
    low = haystack.lower()
    return any(marker.lower() in low for marker in markers)


OutboundStatus = Literal["accepted", "partially_shipped", "shipped", "cancelled", "other"]


def normalise_status(raw: str) -> OutboundStatus:
    """deliveryorder.query status -> OutboundState.status (accepted/partially_shipped/shipped/cancelled/other).

    EXCEPTION, REJECT and CANCELEDFAIL are ``other``: none of them says for sure whether the
    parcel will leave, so the engine must not treat them as cancelled (nor as cancellable).
    """
    status = (raw or "").strip().upper()
    if status == "DELIVERED":
        return "shipped"
    if status == "PARTDELIVERED":
        return "partially_shipped"
    if status in CANCELLED_STATUSES:
        return "cancelled"
    if status in ACCEPTED_STATUSES:
        return "accepted"
    return "other"


def classify_failure(code: str, message: str, *, context: str) -> ConnectorError:
    """Turn a ``flag=failure`` (or gateway ``error_response``) into the connector error taxonomy."""
    both = f"{code} {message}"
    text = f"{context}: {message or 'failure'}"
    if _has(both, _THROTTLE_MARKERS):
        return ThrottledError(text, code=code or None, platform=PLATFORM, retry_after=1.0)
    if _has(both, _AUTH_MARKERS):
        return AuthError(text, code=code or None, platform=PLATFORM)
    if _has(both, _TRANSIENT_MARKERS):
        return TransientError(text, code=code or None, platform=PLATFORM)
    return InvalidRequestError(text, code=code or None, platform=PLATFORM)


class QimenResponse:
    """A parsed ``<response>`` (or gateway ``<error_response>``)."""

    def __init__(self, root: Element) -> None:
        self.root = root
        if root.tag == "error_response":  # TOP-style gateway error
            self.flag = "failure"
            self.code = qx.text(root, "sub_code") or qx.text(root, "code")
            self.message = qx.text(root, "sub_msg") or qx.text(root, "msg")
        else:
            self.flag = qx.text(root, "flag").lower()
            self.code = qx.text(root, "code")
            self.message = qx.text(root, "message")

    @property
    def ok(self) -> bool:
        return self.flag == "success"

    def text(self, path: str, default: str = "") -> str:
        return qx.text(self.root, path, default)


class QimenSettings(ConnectorSettings):
    base_url: str = Field(description='full gateway URL, e.g. "http://127.0.0.1:8080/router/qimen/service"')
    app_key: str = Field(min_length=1)
    customerId: str = Field(min_length=1, description="customer id the WMS issued (奇门 customerId)")
    sign_method: Literal["md5"] = "md5"
    warehouseCode: str = Field(min_length=1, description="default warehouse code")
    ownerCode: str = Field("", description="owner (货主) code filled into lines and queries when set")
    push_max_age_s: float = Field(
        PUSH_MAX_AGE_S, gt=0,
        description="a push whose signed timestamp is further than this from our clock (either way) is refused "
                    "as a replay; TOP allows a caller's clock 10 minutes of error")


class QimenSecrets(ConnectorSecrets):
    # a mistyped key must not echo its (secret) value into the ConfigurationError message
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    app_secret: SecretStr


@connector_kind("qimen", title="WMS over Qimen (奇门)")
class QimenConnector(Connector, OutboundOrderTarget, InventorySource, PushReceiver):
    Settings = QimenSettings
    Secrets = QimenSecrets

    settings: QimenSettings
    secrets: QimenSecrets

    def __init__(self, name: str, settings: QimenSettings, secrets: QimenSecrets) -> None:
        super().__init__(name, settings, secrets)
        if not secret(secrets.app_secret):
            raise ConfigurationError(f"connector {name!r} (qimen): app_secret must not be empty")
        url = httpx.URL(settings.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"connector {name!r} (qimen): base_url must be an absolute http(s) URL")
        self.api = ApiClient(
            platform=PLATFORM,
            base_url="",
            signer=self._sign_request,
            check=self._check_response,
            limiter=RateLimiter(settings.rate_limit_per_s),
            timeout_s=settings.timeout_s,
        )

    # --- transport -----------------------------------------------------------------------------

    def _system_params(self, method: str) -> dict[str, str]:
        return {
            "method": method,
            "app_key": self.settings.app_key,
            "customerId": self.settings.customerId,
            "format": "xml",
            "sign_method": self.settings.sign_method,
            "v": API_VERSION,
        }

    def _sign_request(self, request: httpx.Request) -> None:
        """Stamp a fresh timestamp and sign; runs once per attempt (ApiClient rebuilds requests)."""
        params = {k: v for k, v in request.url.params.items() if k != "sign"}
        params["timestamp"] = now_gmt8()
        params["sign"] = qimen_sign(params, request.content, secret(self.secrets.app_secret))
        # %20 for the space in the timestamp, as in the Qimen examples (not the form-style "+")
        request.url = request.url.copy_with(query=urlencode(params, quote_via=quote).encode("ascii"))

    @staticmethod
    def _parse(response: httpx.Response) -> QimenResponse:
        try:
            root = qx.parse(response.content)
        except qx.UnsafeXmlError as exc:
            raise TransientError(f"unreadable answer from the Qimen gateway ({exc})", platform=PLATFORM) from None
        if root.tag not in ("response", "error_response"):
            raise TransientError(f"unexpected root element <{root.tag}> from the Qimen gateway", platform=PLATFORM)
        return QimenResponse(root)

    def _check_response(self, response: httpx.Response) -> None:
        """Raise for what a retry may fix; everything else is judged by the caller."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the Qimen gateway", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the Qimen gateway URL)", code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the Qimen gateway", code=str(status), platform=PLATFORM)
        parsed = self._parse(response)
        if not parsed.ok:
            error = classify_failure(parsed.code, parsed.message, context="qimen")
            if error.retryable:
                raise error

    async def _call(self, method: str, request: Mapping[str, Any]) -> QimenResponse:
        try:
            body = qx.to_xml("request", request)
        except ValueError as exc:
            raise InvalidRequestError(f"{method}: cannot serialise request: {exc}", platform=PLATFORM) from None
        response = await self.api.request(
            "POST",
            self.settings.base_url,
            params=self._system_params(method),
            content=body,
            headers={"Content-Type": "text/xml;charset=utf-8", "Accept": "text/xml"},
        )
        return self._parse(response)

    # --- outbound orders -----------------------------------------------------------------------

    def _complete_document(self, document: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(document, Mapping) or not isinstance(document.get("deliveryOrder"), Mapping):
            raise InvalidRequestError("outbound order document needs a 'deliveryOrder' object", platform=PLATFORM)
        request = dict(document)
        order = dict(request["deliveryOrder"])
        if not str(order.get("deliveryOrderCode") or "").strip():
            raise InvalidRequestError("deliveryOrder.deliveryOrderCode is required", platform=PLATFORM)
        if not order.get("warehouseCode"):
            order["warehouseCode"] = self.settings.warehouseCode
        request["deliveryOrder"] = order
        lines = request.get("orderLines")
        if lines is not None:
            if not isinstance(lines, list | tuple):
                raise InvalidRequestError("'orderLines' must be a list of order lines", platform=PLATFORM)
            completed = []
            for line in lines:
                if not isinstance(line, Mapping):
                    raise InvalidRequestError("each entry of 'orderLines' must be an object", platform=PLATFORM)
                line = dict(line)
                if not line.get("ownerCode") and self.settings.ownerCode:
                    line["ownerCode"] = self.settings.ownerCode
                completed.append(line)
            request["orderLines"] = completed
        return request

    async def create_outbound_order(self, document: dict[str, Any]) -> CreateResult:
        """``taobao.qimen.deliveryorder.create``; idempotent by ``deliveryOrderCode``.

        A WMS answers a repeated code with success (and the id it assigned the first time) or with
        a message saying the order already exists. Such a "duplicate" answer is not taken on
        faith: some WMSs say it for a code they never stored (a half-failed first attempt) or for
        a code they cancelled. ``deliveryorder.query`` decides: known -> ``created=False``;
        unknown -> TransientError (Temporal retries the create); cancelled/closed ->
        InvalidRequestError (the engine re-sends amended orders under a new code, so a cancelled
        code coming back is a real problem, not a retry).
        """
        request = self._complete_document(document)
        code = str(request["deliveryOrder"]["deliveryOrderCode"])
        answer = await self._call(METHOD_DELIVERY_CREATE, request)
        order_id = answer.text("deliveryOrderId") or answer.text("deliveryOrders/deliveryOrder/deliveryOrderId")
        duplicate = _has(f"{answer.code} {answer.message}", _DUPLICATE_MARKERS)
        if answer.ok and not duplicate:
            return CreateResult(external_id=order_id or code, number=code, created=True)
        if not duplicate:
            raise classify_failure(answer.code, answer.message, context=f"deliveryorder.create {code}")
        return await self._confirm_existing(code, request["deliveryOrder"].get("warehouseCode"), order_id,
                                            answer.message)

    async def _confirm_existing(self, code: str, warehouse: str | None, order_id: str, said: str) -> CreateResult:
        """Check with deliveryorder.query that a code the WMS called a duplicate really is there."""
        context = f"deliveryorder.create {code}"
        answer = await self._query_delivery_order(code, warehouse)
        order = answer.root.find("deliveryOrder") if answer.ok else None
        if not answer.ok:
            error = classify_failure(answer.code, answer.message, context=f"{context}: confirming duplicate")
            if not (isinstance(error, InvalidRequestError) and _has(f"{answer.code} {answer.message}",
                                                                    _NOT_FOUND_MARKERS)):
                raise error
        found_code = qx.text(order, "deliveryOrderCode")
        if order is None or (found_code and found_code != code):
            raise TransientError(
                f"{context}: the WMS answered {said!r} (duplicate) but deliveryorder.query does not know the code; "
                "the create will be retried",
                platform=PLATFORM,
            )
        status = qx.text(order, "status").upper()
        if status in CANCELLED_STATUSES:
            raise InvalidRequestError(
                f"{context}: the code was cancelled in the WMS (status {status}); it cannot be created again - "
                "an amended order must be sent under a new code",
                code=status,
                platform=PLATFORM,
            )
        return CreateResult(external_id=qx.text(order, "deliveryOrderId") or order_id or code, number=code,
                            created=False)

    async def _query_delivery_order(self, order_code: str, warehouse: str | None = None) -> QimenResponse:
        request: dict[str, Any] = {
            "ownerCode": self.settings.ownerCode or None,
            "warehouseCode": warehouse or self.settings.warehouseCode,
            "orderCode": order_code,
            "page": 1,
            "pageSize": 100,
        }
        return await self._call(METHOD_DELIVERY_QUERY, request)

    async def _read_outbound(self, order_code: str, warehouse: str | None, *, strict: bool) -> OutboundState | None:
        """deliveryorder.query -> OutboundState; an explicit "does not exist" is None, or NotFoundError
        when ``strict`` (get_shipment's contract); an empty success answer is None either way."""
        answer = await self._query_delivery_order(order_code, warehouse)
        if not answer.ok:
            error = classify_failure(answer.code, answer.message, context=f"deliveryorder.query {order_code}")
            if isinstance(error, InvalidRequestError) and _has(f"{answer.code} {answer.message}", _NOT_FOUND_MARKERS):
                if strict:
                    raise NotFoundError(error.message, code=error.code, platform=PLATFORM)
                return None
            raise error
        order = answer.root.find("deliveryOrder")
        if order is None:
            return None
        raw = qx.text(order, "status").upper()
        status = normalise_status(raw)
        shipments: list[Shipment] = []
        if status in ("shipped", "partially_shipped"):
            try:
                shipments = self._shipments(order_code, answer.root, order, final=status == "shipped")
            except ValueError as exc:  # includes pydantic's ValidationError
                raise InvalidRequestError(f"deliveryorder.query {order_code}: unusable shipment data: {exc}",
                                          platform=PLATFORM) from None
        return OutboundState(status=status, raw_status=raw, shipments=shipments)

    async def get_outbound(self, order_code: str, warehouse: str | None = None) -> OutboundState | None:
        """``taobao.qimen.deliveryorder.query``: status (normalised, raw kept) and one Shipment per package.

        None when the WMS does not know the code. Shipments of a PARTDELIVERED order have
        ``final=False``; ``package_id`` is the packageCode, or the tracking number without one.
        """
        return await self._read_outbound(order_code, warehouse, strict=False)

    async def get_shipment(self, order_code: str) -> Shipment | None:
        """The first package once the WMS reports the order (partly) shipped; NotFoundError if unknown."""
        state = await self._read_outbound(order_code, None, strict=True)
        return state.shipments[0] if state is not None and state.shipments else None

    async def cancel_outbound_order(self, order_code: str, warehouse: str = "", reason: str = "") -> CancelResult:
        """``taobao.qimen.order.cancel`` (单据取消, orderType JYCK) of a sales outbound order.

        success -> cancelled (already_cancelled when the message says so); a failure saying the
        order was already cancelled -> already_cancelled, unknown -> not_found, shipped/left or an
        explicit refusal -> refused with the WMS's message. Throttling, outages and auth failures
        raise as every call does. A failure the message does not explain is settled by
        ``deliveryorder.query``, so a repeat cancel is ``already_cancelled`` whatever the WMS says.
        """
        code = (order_code or "").strip()
        if not code:
            raise InvalidRequestError("order.cancel: an order code is required", platform=PLATFORM)
        request = {
            "warehouseCode": warehouse or self.settings.warehouseCode,
            "ownerCode": self.settings.ownerCode or None,
            "orderCode": code,
            "orderType": SALES_OUTBOUND_TYPE,
            "cancelReason": reason or None,
        }
        answer = await self._call(METHOD_ORDER_CANCEL, request)
        said = f"{answer.code} {answer.message}"
        if answer.ok:
            if _has(said, _ALREADY_CANCELLED_MARKERS):
                return CancelResult(outcome="already_cancelled", message=answer.message)
            return CancelResult(outcome="cancelled", message=answer.message)
        error = classify_failure(answer.code, answer.message, context=f"order.cancel {code}")
        if not isinstance(error, InvalidRequestError):
            raise error
        if _has(said, _ALREADY_CANCELLED_MARKERS):
            return CancelResult(outcome="already_cancelled", message=answer.message)
        if _has(said, _NOT_FOUND_MARKERS):
            return CancelResult(outcome="not_found", message=answer.message)
        if _has(said, _REFUSED_MARKERS):
            return CancelResult(outcome="refused", message=answer.message)
        state = await self.get_outbound(code, warehouse or None)
        if state is None:
            return CancelResult(outcome="not_found", message=answer.message)
        if state.status == "cancelled":
            return CancelResult(outcome="already_cancelled", message=answer.message)
        if state.status in ("shipped", "partially_shipped"):
            return CancelResult(outcome="refused",
                                message=f"{answer.message or 'cancel refused'} (WMS status {state.raw_status})")
        raise error

    # --- inventory -----------------------------------------------------------------------------

    async def _inventory_items(self, skus: list[str], warehouse: str) -> list[Element]:
        """``taobao.qimen.inventory.query`` for sellable stock (inventoryType ZP) of ``skus``: the answer's items."""
        criteria = [
            {
                "warehouseCode": warehouse,
                "ownerCode": self.settings.ownerCode or None,
                "itemCode": sku,
                "inventoryType": "ZP",
            }
            for sku in skus
        ]
        answer = await self._call(METHOD_INVENTORY_QUERY, {"criteriaList": criteria})
        if not answer.ok:
            raise classify_failure(answer.code, answer.message, context="inventory.query")
        return qx.entries(answer.root, "items")

    async def query_inventory(self, skus: list[str], warehouse: str) -> list[InventoryLevel]:
        """``taobao.qimen.inventory.query`` for sellable stock (inventoryType ZP) of ``skus``."""
        skus = [s for s in dict.fromkeys(skus) if s]
        if not skus:
            return []
        warehouse = warehouse or self.settings.warehouseCode
        items = await self._inventory_items(skus, warehouse)
        as_of = datetime.now(UTC)
        totals: dict[tuple[str, str], list[int]] = {}
        wanted = set(skus)
        for item in items:
            sku = qx.text(item, "itemCode")
            kind = qx.text(item, "inventoryType").upper()
            if not sku or sku not in wanted or (kind and kind != "ZP"):
                continue
            where = qx.text(item, "warehouseCode") or warehouse
            bucket = totals.setdefault((sku, where), [0, 0])
            bucket[0] += _int(qx.text(item, "quantity"))
            bucket[1] += _int(qx.text(item, "lockQuantity"))
        return [
            InventoryLevel(sku=sku, warehouse=where, on_hand=on_hand, reserved=reserved, as_of=as_of)
            for (sku, where), (on_hand, reserved) in totals.items()
        ]

    async def query_batches(self, skus: list[str], warehouse: str) -> list[StockBatch]:
        """Sellable stock per batch: the same ``inventory.query`` as ``query_inventory``, read per row.

        One StockBatch per (sku, warehouse, batchCode) with the row's expireDate/productDate (ISO
        dates, "" when absent) and quantity; stock the WMS reports without batch fields is one entry
        with ``batch_code=""``.
        """
        skus = [s for s in dict.fromkeys(skus) if s]
        if not skus:
            return []
        warehouse = warehouse or self.settings.warehouseCode
        items = await self._inventory_items(skus, warehouse)
        return batches_from_items(items, set(skus), warehouse)

    async def test(self) -> str:
        """One signed ``inventory.query`` for a single item; a business "no such item" still proves
        that the gateway, the signature and the customerId are right."""
        probe = "TONGDAO-CONNECTIVITY-PROBE"
        criteria = {"warehouseCode": self.settings.warehouseCode, "ownerCode": self.settings.ownerCode or None,
                    "itemCode": probe, "inventoryType": "ZP"}
        answer = await self._call(METHOD_INVENTORY_QUERY, {"criteriaList": [criteria]})
        where = (f"app_key {self.settings.app_key}, customerId {self.settings.customerId}, "
                 f"warehouse {self.settings.warehouseCode}")
        if answer.ok:
            items = len(qx.entries(answer.root, "items"))
            return f"Qimen OK ({where}): inventory.query for one item answered success with {items} item(s)"
        error = classify_failure(answer.code, answer.message, context="inventory.query")
        if not isinstance(error, InvalidRequestError):
            raise error
        return (f"Qimen reachable and signature accepted ({where}); inventory.query for probe item "
                f"answered failure [{answer.code}] {answer.message}")

    # --- push: deliveryorder.confirm, stockchange.report --------------------------------------

    def _verify_push_sign(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> bool:
        remote = str(query.get("sign") or "").strip().upper()
        if not remote or (query.get("sign_method") or "md5").lower() != "md5":
            return False
        params = {str(k): str(v) for k, v in query.items() if k != "sign"}
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        for name in filter(None, (n.strip() for n in lowered.get("top-sign-list", "").split(","))):
            params[name] = lowered.get(name.lower(), "")
        app_secret = secret(self.secrets.app_secret)
        candidates = {qimen_sign(params, body, app_secret, keep_empty=True), qimen_sign(params, body, app_secret)}
        return any(hmac.compare_digest(remote.encode(), c.encode()) for c in candidates)

    def _push_staleness(self, timestamp: str) -> str:
        """Why a push's signed ``timestamp`` is refused ("" when it is fresh): missing, unreadable, or
        further than ``push_max_age_s`` from our clock in either direction."""
        window = self.settings.push_max_age_s
        if not timestamp.strip():
            return "timestamp is required (yyyy-MM-dd HH:mm:ss, GMT+8, among the signed parameters)"
        sent = qx.parse_time(timestamp)
        if sent is None:
            return "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)"
        skew = (datetime.now(UTC) - sent).total_seconds()
        if skew > window:
            return f"timestamp {timestamp} is {skew:.0f} s old; pushes older than {window:.0f} s are refused"
        if -skew > window:
            return (f"timestamp {timestamp} is {-skew:.0f} s in the future; "
                    f"at most {window:.0f} s of clock skew is allowed")
        return ""

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        """deliveryorder.confirm and stockchange.report: signature, then freshness, then the content."""
        answer = _push_answer
        if not self._verify_push_sign(headers, query, body):
            log.warning("qimen push refused: bad signature", connector=self.name, method=query.get("method"))
            return answer("failure", *_SIGN_ERROR)
        # the signature covers the timestamp: a captured push replayed later is stale, and one
        # redelivered by the WMS is signed anew (the order workflow de-duplicates its content)
        stale = self._push_staleness(str(query.get("timestamp") or ""))
        if stale:
            log.warning("qimen push refused: timestamp", connector=self.name, method=query.get("method"),
                        reason=stale)
            return answer("failure", _TIMESTAMP_ERROR, stale)
        method = str(query.get("method") or "")
        if method not in ACCEPTED_PUSH_METHODS:
            return answer("failure", "invalid-method", f"method {method or '(none)'} is not supported here")
        try:
            root = qx.parse(body)
        except qx.UnsafeXmlError as exc:
            return answer("failure", "invalid-request", f"request body refused: {exc}")
        if method in STOCK_CHANGE_METHODS:
            try:
                events, foreign = parse_stock_change_report(
                    root, owner_code=self.settings.ownerCode, sent_at=qx.parse_time(str(query.get("timestamp") or "")))
            except StockReportError as exc:
                log.warning("qimen push refused: malformed stockchange.report", connector=self.name, reason=str(exc))
                return answer("failure", "invalid-request", f"stockchange.report: {exc}")
            if foreign:
                log.warning("qimen stockchange.report: items of another owner left out", connector=self.name,
                            owner=self.settings.ownerCode, skus=foreign[:20], count=len(foreign))
            return answer("success", "0", "ok", events)
        return self._confirm_answer(root)

    def _confirm_answer(self, root: Element) -> PushResult:
        """deliveryorder.confirm -> ``shipment`` events (one per package) or an ``outbound_status`` one."""
        answer = _push_answer
        order = root.find("deliveryOrder") if root.tag == "request" else None
        order_code = qx.text(order, "deliveryOrderCode")
        if order is None or not order_code:
            return answer("failure", "invalid-request", "deliveryOrder.deliveryOrderCode is required")
        out_biz_code = qx.text(order, "outBizCode")
        status = qx.text(order, "status").upper()
        # confirmType 1 = intermediate confirmation (more packages follow); 0 or absent = final
        final = qx.text(order, "confirmType") != CONFIRM_TYPE_PARTIAL
        events: list[dict[str, Any]] = []
        try:
            shipments = self._shipments(order_code, root, order, final=final)
        except ValueError as exc:
            return answer("failure", "invalid-request", f"cannot read the confirmation: {exc}")
        for shipment in shipments:
            events.append(
                {
                    "type": "shipment",
                    "order_code": order_code,
                    "out_biz_code": out_biz_code,
                    "shipment": shipment.model_dump(mode="json"),
                }
            )
        if not shipments and status in PROBLEM_STATUSES:
            events.append(
                {
                    "type": "outbound_status",
                    "order_code": order_code,
                    "out_biz_code": out_biz_code,
                    "status": PROBLEM_STATUSES[status],
                    "raw_status": status,
                }
            )
        return answer("success", "0", "ok", events)

    # --- shared parsing ------------------------------------------------------------------------

    def _shipments(
        self, order_code: str, root: Element, order: Element | None, *, final: bool = True
    ) -> list[Shipment]:
        """One Shipment per package that carries a tracking number (deliveryorder.confirm/query).

        ``package_id`` is the packageCode (the tracking number when the WMS sends none); each line
        carries the WMS ``orderLineNo`` as ``line_id`` when it can be told (see ``_LineResolver``).
        """
        when = qx.parse_time(qx.text(order, "operateTime")) or qx.parse_time(qx.text(order, "orderConfirmTime"))
        shipped_at = when or datetime.now(UTC)
        warehouse = qx.text(order, "warehouseCode") or self.settings.warehouseCode
        order_lines = qx.entries(root, "orderLines")
        resolver = _LineResolver(order_lines)
        packages = [p for p in qx.entries(root, "packages") if qx.text(p, "expressCode")]
        if not packages and order is not None and qx.text(order, "expressCode"):
            packages = [order]  # some WMSs put logisticsCode/expressCode on the order itself
        shipments = []
        for package in packages:
            carrier = qx.text(package, "logisticsCode") or qx.text(order, "logisticsCode")
            tracking = qx.text(package, "expressCode")
            if not carrier:
                raise ValueError(f"package {tracking} has no logisticsCode")
            items = qx.entries(package, "items")
            if items:
                lines = resolver.lines(items)
            elif len(packages) == 1:
                lines = _LineResolver([]).lines(order_lines, qty_fields=("actualQty", "planQty"))
            else:
                lines = []
            shipments.append(
                Shipment(
                    order_key=order_code,
                    warehouse=warehouse,
                    carrier_code=carrier,
                    tracking_number=tracking,
                    shipped_at=shipped_at,
                    lines=lines,
                    package_id=(qx.text(package, "packageCode") if package is not order else "") or tracking,
                    final=final,
                )
            )
        return shipments


def _push_answer(flag: str, code: str, message: str, events: list[dict[str, Any]] | None = None) -> PushResult:
    """The ``<response>`` a push is answered with (always HTTP 200, as the Qimen SPI expects)."""
    return PushResult(events=events or [], status_code=200, media_type="application/xml",
                      body=qx.response_xml(flag, code, message))


def _int(value: str) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


class _LineResolver:
    """Attribute package items to order lines (``orderLineNo``), for split write-back.

    Standard package items carry only itemCode/quantity, so an item without its own orderLineNo
    takes the one order line with that itemCode; when several lines share the item, quantities
    are handed out in line order up to each line's actualQty (planQty when absent). An item no
    order line explains keeps an empty line_id rather than a guessed one.
    """

    def __init__(self, order_lines: list[Element]) -> None:
        self._by_sku: dict[str, list[list[Any]]] = {}
        for line in order_lines:
            sku, number = qx.text(line, "itemCode"), qx.text(line, "orderLineNo")
            qty = next((_int(qx.text(line, f)) for f in ("actualQty", "planQty") if qx.text(line, f)), 0)
            if sku:
                self._by_sku.setdefault(sku, []).append([number, qty])

    def _allocate(self, sku: str, qty: int) -> list[tuple[str, int]]:
        candidates = self._by_sku.get(sku, [])
        if len(candidates) == 1:
            return [(candidates[0][0], qty)]
        parts: list[tuple[str, int]] = []
        for candidate in candidates:
            if qty <= 0:
                break
            take = min(qty, candidate[1])
            if take > 0:
                candidate[1] -= take
                qty -= take
                parts.append((candidate[0], take))
        if qty > 0:
            parts.append(("", qty))
        return parts

    def lines(
        self, elements: list[Element], qty_fields: tuple[str, ...] = ("quantity", "actualQty")
    ) -> list[ShipmentLine]:
        totals: dict[tuple[str, str], int] = {}
        for element in elements:
            sku = qx.text(element, "itemCode")
            qty = next((_int(qx.text(element, f)) for f in qty_fields if qx.text(element, f)), 0)
            if not sku or qty <= 0:
                continue
            explicit = qx.text(element, "orderLineNo")
            parts = [(explicit, qty)] if explicit or not self._by_sku else self._allocate(sku, qty)
            for number, part in parts:
                totals[(sku, number)] = totals.get((sku, number), 0) + part
        return [ShipmentLine(sku=sku, quantity=qty, line_id=number) for (sku, number), qty in totals.items()]
