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
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    CreateResult,
    InventorySource,
    OutboundOrderTarget,
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
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.qimen")

PLATFORM = "qimen"
API_VERSION = "2.0"
METHOD_DELIVERY_CREATE = "taobao.qimen.deliveryorder.create"
METHOD_DELIVERY_QUERY = "taobao.qimen.deliveryorder.query"
METHOD_DELIVERY_CONFIRM = "taobao.qimen.deliveryorder.confirm"
METHOD_INVENTORY_QUERY = "taobao.qimen.inventory.query"
#: the Qimen gateway hands the WMS-side short name ("deliveryorder.confirm") to some receivers
PUSH_METHODS = {METHOD_DELIVERY_CONFIRM, "deliveryorder.confirm"}

SHIPPED_STATUSES = {"DELIVERED", "PARTDELIVERED"}
#: terminal "did not ship" statuses of deliveryorder.confirm worth reporting upstream
PROBLEM_STATUSES = {"EXCEPTION", "CANCELED", "CLOSED", "REJECT"}

_SIGN_ERROR = ("sign-check-failure", "Illegal request")

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

    async def aclose(self) -> None:
        await self.api.aclose()

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

        A WMS answers a repeated code either with success (and the id it assigned the first time)
        or with a failure saying the order already exists; both mean "already there".
        """
        request = self._complete_document(document)
        code = str(request["deliveryOrder"]["deliveryOrderCode"])
        answer = await self._call(METHOD_DELIVERY_CREATE, request)
        order_id = answer.text("deliveryOrderId") or answer.text("deliveryOrders/deliveryOrder/deliveryOrderId")
        duplicate = _has(f"{answer.code} {answer.message}", _DUPLICATE_MARKERS)
        if answer.ok:
            return CreateResult(external_id=order_id or code, number=code, created=not duplicate)
        if duplicate:
            if not order_id:
                order_id = await self._lookup_order_id(code, request["deliveryOrder"].get("warehouseCode"))
            return CreateResult(external_id=order_id or code, number=code, created=False)
        raise classify_failure(answer.code, answer.message, context=f"deliveryorder.create {code}")

    async def _lookup_order_id(self, order_code: str, warehouse: str | None) -> str:
        try:
            answer = await self._query_delivery_order(order_code, warehouse)
        except ConnectorError:
            return ""
        return answer.text("deliveryOrder/deliveryOrderId") if answer.ok else ""

    async def _query_delivery_order(self, order_code: str, warehouse: str | None = None) -> QimenResponse:
        request: dict[str, Any] = {
            "ownerCode": self.settings.ownerCode or None,
            "warehouseCode": warehouse or self.settings.warehouseCode,
            "orderCode": order_code,
            "page": 1,
            "pageSize": 100,
        }
        return await self._call(METHOD_DELIVERY_QUERY, request)

    async def get_shipment(self, order_code: str) -> Shipment | None:
        """``taobao.qimen.deliveryorder.query``: the shipment once the WMS reports it shipped."""
        answer = await self._query_delivery_order(order_code)
        if not answer.ok:
            error = classify_failure(answer.code, answer.message, context=f"deliveryorder.query {order_code}")
            if isinstance(error, InvalidRequestError) and _has(answer.message, ("不存在", "not exist", "not found")):
                raise NotFoundError(error.message, code=error.code, platform=PLATFORM)
            raise error
        order = answer.root.find("deliveryOrder")
        status = qx.text(order, "status").upper()
        if status not in SHIPPED_STATUSES:
            return None
        try:
            shipments = self._shipments(order_code, answer.root, order)
        except ValueError as exc:  # includes pydantic's ValidationError
            raise InvalidRequestError(f"deliveryorder.query {order_code}: unusable shipment data: {exc}",
                                      platform=PLATFORM) from None
        return shipments[0] if shipments else None

    # --- inventory -----------------------------------------------------------------------------

    async def query_inventory(self, skus: list[str], warehouse: str) -> list[InventoryLevel]:
        """``taobao.qimen.inventory.query`` for sellable stock (inventoryType ZP) of ``skus``."""
        skus = [s for s in dict.fromkeys(skus) if s]
        if not skus:
            return []
        warehouse = warehouse or self.settings.warehouseCode
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
        as_of = datetime.now(UTC)
        totals: dict[tuple[str, str], list[int]] = {}
        wanted = set(skus)
        for item in qx.entries(answer.root, "items"):
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

    # --- push: deliveryorder.confirm -----------------------------------------------------------

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

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        def answer(flag: str, code: str, message: str, events: list[dict[str, Any]] | None = None) -> PushResult:
            return PushResult(
                events=events or [],
                status_code=200,
                media_type="application/xml",
                body=qx.response_xml(flag, code, message),
            )

        if not self._verify_push_sign(headers, query, body):
            log.warning("qimen push refused: bad signature", connector=self.name, method=query.get("method"))
            return answer("failure", *_SIGN_ERROR)
        method = str(query.get("method") or "")
        if method not in PUSH_METHODS:
            return answer("failure", "invalid-method", f"method {method or '(none)'} is not supported here")
        try:
            root = qx.parse(body)
        except qx.UnsafeXmlError as exc:
            return answer("failure", "invalid-request", f"request body refused: {exc}")
        order = root.find("deliveryOrder") if root.tag == "request" else None
        order_code = qx.text(order, "deliveryOrderCode")
        if order is None or not order_code:
            return answer("failure", "invalid-request", "deliveryOrder.deliveryOrderCode is required")
        out_biz_code = qx.text(order, "outBizCode")
        status = qx.text(order, "status").upper()
        events: list[dict[str, Any]] = []
        try:
            shipments = self._shipments(order_code, root, order)
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
                {"type": "outbound_status", "order_code": order_code, "out_biz_code": out_biz_code, "status": status}
            )
        return answer("success", "0", "ok", events)

    # --- shared parsing ------------------------------------------------------------------------

    def _shipments(self, order_code: str, root: Element, order: Element | None) -> list[Shipment]:
        """One Shipment per package that carries a tracking number (deliveryorder.confirm/query)."""
        when = qx.parse_time(qx.text(order, "operateTime")) or qx.parse_time(qx.text(order, "orderConfirmTime"))
        shipped_at = when or datetime.now(UTC)
        warehouse = qx.text(order, "warehouseCode") or self.settings.warehouseCode
        order_lines = _lines(qx.entries(root, "orderLines"), qty_fields=("actualQty", "planQty"))
        packages = [p for p in qx.entries(root, "packages") if qx.text(p, "expressCode")]
        if not packages and order is not None and qx.text(order, "expressCode"):
            packages = [order]  # some WMSs put logisticsCode/expressCode on the order itself
        shipments = []
        for package in packages:
            carrier = qx.text(package, "logisticsCode") or qx.text(order, "logisticsCode")
            tracking = qx.text(package, "expressCode")
            if not carrier:
                raise ValueError(f"package {tracking} has no logisticsCode")
            lines = _lines(qx.entries(package, "items"), qty_fields=("quantity", "actualQty"))
            if not lines and len(packages) == 1:
                lines = order_lines
            shipments.append(
                Shipment(
                    order_key=order_code,
                    warehouse=warehouse,
                    carrier_code=carrier,
                    tracking_number=tracking,
                    shipped_at=shipped_at,
                    lines=lines,
                )
            )
        return shipments


def _int(value: str) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


def _lines(elements: list[Element], qty_fields: tuple[str, ...]) -> list[ShipmentLine]:
    totals: dict[str, int] = {}
    for element in elements:
        sku = qx.text(element, "itemCode")
        qty = next((_int(qx.text(element, f)) for f in qty_fields if qx.text(element, f)), 0)
        if sku and qty > 0:
            totals[sku] = totals.get(sku, 0) + qty
    return [ShipmentLine(sku=sku, quantity=qty) for sku, qty in totals.items()]
