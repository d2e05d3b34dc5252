"""Douyin shop (抖店开放平台, jinritemai) connector: orders, tracking write-back, receivers, pushes.

Wire protocol (official SDKs: Java ``com.doudian.open.core.DefaultDoudianOpClient``, Go
``core/doudian_op_api_client.go`` of doudian-sdk-golang 1.1.0; see :mod:`connectors.douyin.signing`):

* ``POST {base_url}/{method with / for .}`` (``https://openapi-fxg.jinritemai.com/order/searchList``)
  with ``app_key``, ``method``, ``access_token``, ``timestamp``, ``v=2``, ``sign_method`` and ``sign``
  in the query string and ``param_json`` (the business parameters) as the JSON body; headers
  ``x-open-no-old-err-code: 1`` (both SDKs send it: answers carry only the new ``code`` scheme).
* Answers: ``{"code": 10000, "msg": "success", "sub_code", "sub_msg", "log_id", "data": {...}}``
  (``BaseDoudianOpApiResponse``); 10000 is success, anything else an error from the 平台基础错误码
  table (op.jinritemai.com/docs/guide-docs/212/1427): 20000/20001 service unavailable/timeout,
  30001 permissions or shop authorisation, 30002 IP not whitelisted, 40001/40003 platform
  parameter checks (signature, app key, access token, timestamp), 40002/40004 business parameters,
  50001 platform failure, 50002 business failure (``isv.business-failed:...``), 60000 flow control
  ("触发限流，请稍后重试", sub code ``isp.traffic-limited:...``), 70000 API offline, 80000 security,
  90000 other.

Calls (request/response fields from the official SDK models, ``api/order_*``):

* ``order.searchList``: ``update_time_start``/``update_time_end`` (Unix seconds), ``order_by``
  ``update_time``, ``order_asc`` (default descending), ``page`` from 0, ``size`` at most 100;
  answers ``data.{page, size, total, shop_order_list[]}`` with each shop order in full (its
  ``sku_order_list``), so a pull needs no per-order detail call.
* ``order.orderDetail``: ``shop_order_id`` -> ``data.shop_order_detail``.
* ``order.logisticsAdd``: ``order_id``, ``company_code`` (from ``order.logisticsCompanyList``),
  ``logistics_code`` (the waybill number); one package for the whole order.
* ``order.logisticsAddMultiPack``: ``order_id``, ``pack_list[{shipped_order_info[{shipped_order_id,
  shipped_num}], logistics_code, company_code}]``, ``request_id`` ("相同request_id多次请求，第一次请求
  成功后，后续的请求会触发幂等"); used for one package of a split shipment (``line_ids`` = sku order
  ids).
* ``order.batchDecrypt``: ``cipher_infos[{auth_id: shop order id, cipher_text}]`` (at most 50) ->
  ``data.decrypt_infos[{auth_id, cipher_text, decrypt_text, err_no, err_msg, is_virtual_tel,
  phone_no_a, phone_no_b}]``.
* Message push: a JSON array of ``{tag, msg_id, data}`` (``data`` a JSON string with ``p_id`` =
  the shop order id, ``s_ids``/``s_id`` = sku order ids, ``shop_id``), headers ``app-id`` and
  ``event-sign``; answered ``{"code": 0, "msg": "success"}`` (zsmhub/doudian-sdk ``message/``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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
    ReceiverSource,
    ShipmentSink,
    WriteBackResult,
    connector_kind,
    secret,
)
from connectors.douyin.signing import (
    API_VERSION,
    doudian_sign,
    param_json,
    path_of,
    unix_timestamp,
    verify_push,
)
from connectors.douyin.stock import DouyinStock
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

log = structlog.get_logger("tongdao.douyin")

PLATFORM = "douyin"
DEFAULT_GATEWAY = "https://openapi-fxg.jinritemai.com"

METHOD_SEARCH = "order.searchList"
METHOD_DETAIL = "order.orderDetail"
METHOD_LOGISTICS_ADD = "order.logisticsAdd"
METHOD_MULTI_PACK = "order.logisticsAddMultiPack"
METHOD_DECRYPT = "order.batchDecrypt"
METHOD_COMPANIES = "order.logisticsCompanyList"

MAX_PAGE_SIZE = 100  # "单页大小，限制100以内"
MAX_DECRYPT_BATCH = 50  # "最大支持一次解密50条"
MAX_WINDOW_PASSES = 3
SUCCESS = 10000
PARTIAL_SUCCESS = 10001  # "请求部分失败" (isv.business-part-failed): look at each item

#: order_status values ("1 待确认/待支付; 105 已支付; 2 备货中; 101 部分发货; 3 已发货; 4 已取消; 5 已完成")
STATUS_UNPAID, STATUS_PAID, STATUS_STOCKING, STATUS_PART_SHIPPED = 1, 105, 2, 101
STATUS_SHIPPED, STATUS_CANCELLED, STATUS_COMPLETED = 3, 4, 5
SHIPPED_STATUSES = frozenset({STATUS_SHIPPED, STATUS_COMPLETED})

#: WMS carrier codes -> Douyin logistics company codes (``order.logisticsCompanyList`` ``code``). The
#: list is per platform and changes; these are the codes ISV integrations use for the big carriers
#: (kuaidi100-style names). Override or extend with the ``carriers`` setting.
CARRIER_CODES: dict[str, str] = {
    "SF": "shunfeng",
    "ZTO": "zhongtong",
    "YTO": "yuantong",
    "STO": "shentong",
    "YUNDA": "yunda",
    "EMS": "ems",
    "POSTB": "youzhengguonei",
    "JD": "jd",
    "DBL": "debangwuliu",
    "DBKD": "debangkuaidi",
    "JTSD": "jtexpress",
    "HTKY": "huitongkuaidi",
    "ZJS": "zhaijisong",
}

#: message tags that concern one shop order (data carries ``p_id``): 100 订单创建, 101 支付/确认,
#: 102 卖家发货, 103 交易完成, 105 收货信息变更, 106 订单取消, 108 部分发货, 110 已支付待处理, and the
#: after-sale family 200-2xx (200 买家发起售后申请 ... 206 退款成功)
ORDER_TAGS = frozenset({"100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110"})
AFTER_SALE_TAG_RANGE = range(200, 300)

ALREADY_SHIPPED_MARKERS = ("已发货", "重复发货", "已经发货", "不能重复")
NOT_FOUND_MARKERS = ("不存在", "not exist", "not found")


class DouyinSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_GATEWAY, description="the open-API host; paths are /order/searchList ...")
    app_key: str = Field(min_length=1)
    shop_id: str = Field(min_length=1, description="the authorised shop's id (also our shop name)")
    sign_method: Literal["md5", "hmac-sha256"] = "hmac-sha256"
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    max_window_hours: float = Field(24.0, gt=0, le=24 * 7, description="width of one searchList query")
    carriers: dict[str, str] = Field(default_factory=dict, description="WMS carrier code -> Douyin company_code")
    rate_limit_per_s: float | None = Field(None, gt=0, description="client-side cap; None = platform signals only")

    @field_validator("carriers")
    @classmethod
    def _upper(cls, value: dict[str, str]) -> dict[str, str]:
        return {str(k).strip().upper(): str(v).strip() for k, v in value.items() if str(v).strip()}


class DouyinSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    app_secret: SecretStr
    access_token: SecretStr


def classify_error(body: Mapping[str, Any], *, method: str, redact: Any = lambda s: s) -> ConnectorError:
    """A non-10000 answer as the connector error taxonomy (平台基础错误码, guide-docs/212/1427)."""
    code = _int(body.get("code"))
    if code is None:
        code = _int(body.get("err_no"))  # the old scheme, should the header be ignored
    sub_code = str(body.get("sub_code") or "").strip()
    msg = redact(str(body.get("msg") or body.get("message") or "").strip())
    sub_msg = redact(str(body.get("sub_msg") or "").strip())
    text = f"{method}: {msg or 'error'}"
    if sub_code or sub_msg:
        text += f" ({'; '.join(p for p in (sub_code, sub_msg) if p)})"
    kwargs: dict[str, Any] = {"code": sub_code or (str(code) if code is not None else None), "platform": PLATFORM,
                              "details": {"douyin_code": code, "sub_code": sub_code or None,
                                          "log_id": str(body.get("log_id") or "") or None}}
    low = sub_code.lower()
    if code == 60000 or "traffic-limit" in low or "flow-limit" in low:
        # no ban length is published or returned: wait a second, then Temporal's backoff
        return ThrottledError(text, retry_after=1.0, **kwargs)
    if code in (20000, 20001, 50001, 90000) and "token-generate" not in low:
        return TransientError(text, **kwargs)
    if code in (30001, 30002, 80000) or "signature" in low or "access-token" in low or "app-id" in low \
            or "authorization" in low or "token-generate" in low:
        return AuthError(text, **kwargs)
    if code == 70000:
        return ConfigurationError(text, **kwargs)
    if any(marker in f"{msg} {sub_msg}".lower() for marker in NOT_FOUND_MARKERS):
        return NotFoundError(text, **kwargs)
    if "timestamp" in low:
        text += " - the clock of this host may be off"
    return InvalidRequestError(text, **kwargs)


@connector_kind("douyin", title="Douyin shop (抖店开放平台)")
class DouyinConnector(Connector, OrderSource, ShipmentSink, ReceiverSource, PushReceiver, DouyinStock):
    Settings = DouyinSettings
    Secrets = DouyinSecrets
    channel = "douyin"

    #: * ``lag`` 30 s: searchList is a search index ("is_searchable"); an order updated a moment ago
    #:   may not be listed yet, so stay further behind than on TOP;
    #: * ``overlap`` 10 min: re-read before the cursor for orders indexed late;
    #: * ``chunk`` 1 day, ``window`` 1 h: one activity per day, a checkpoint per hour of updates.
    ingest_defaults = IngestDefaults(lag=timedelta(seconds=30), overlap=timedelta(minutes=10),
                                     chunk=timedelta(days=1), window=timedelta(hours=1))

    settings: DouyinSettings
    secrets: DouyinSecrets

    def __init__(self, name: str, settings: DouyinSettings, secrets: DouyinSecrets) -> None:
        super().__init__(name, settings, secrets)
        if not secret(secrets.app_secret) or not secret(secrets.access_token):
            raise ConfigurationError(f"connector {name!r} (douyin): app_secret and access_token must not be empty")
        url = httpx.URL(settings.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"connector {name!r} (douyin): base_url must be an absolute http(s) URL")
        self.api = ApiClient(platform=PLATFORM, base_url=settings.base_url.rstrip("/"), check=self._check_response,
                             limiter=RateLimiter(settings.rate_limit_per_s), timeout_s=settings.timeout_s)

    def __repr__(self) -> str:
        return f"<DouyinConnector {self.name!r} app_key={self.settings.app_key!r} shop={self.settings.shop_id!r}>"

    def shop_of(self, payload: dict[str, Any]) -> str:
        """The shop id: the setting (the access token is one shop's), else the order's ``shop_id``."""
        return self.settings.shop_id or str(payload.get("shop_id") or self.name)

    # --- transport -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self.redact_secrets(text)

    def _build(self, method: str, params: Mapping[str, Any] | None) -> httpx.Request:
        """A freshly stamped and signed request (one per attempt: the signature covers the time)."""
        body = param_json(params)
        timestamp = unix_timestamp()
        query = {
            "app_key": self.settings.app_key,
            "method": method,
            "access_token": secret(self.secrets.access_token),
            "timestamp": timestamp,
            "v": API_VERSION,
            "sign_method": self.settings.sign_method,
            "sign": doudian_sign(self.settings.app_key, secret(self.secrets.app_secret), method, body, timestamp,
                                 self.settings.sign_method),
        }
        headers = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json",
                   "x-open-no-old-err-code": "1"}
        return self.api.build("POST", path_of(method), params=query, content=body.encode("utf-8"), headers=headers)

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise TransientError(f"HTTP {response.status_code}: not JSON", platform=PLATFORM) from None
        if not isinstance(body, dict):
            raise TransientError("the gateway answered with a non-object", platform=PLATFORM)
        return body

    @staticmethod
    def _ok(body: Mapping[str, Any]) -> bool:
        code = _int(body.get("code"))
        if code is None:
            return _int(body.get("err_no")) == 0
        return code in (SUCCESS, PARTIAL_SUCCESS)

    def _check_response(self, response: httpx.Response) -> None:
        """Raise the classified error of a failed answer (the client retries what is retryable)."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the Douyin gateway", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the open-API host, without a path)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the Douyin gateway", code=str(status), platform=PLATFORM)
        body = self._decode(response)
        if not self._ok(body):
            method = response.request.url.params.get("method", "")
            raise classify_error(body, method=method, redact=self._redact)

    async def _call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(method, params))
        body = self._decode(response)
        if not self._ok(body):  # the check already raised; kept for a client without the check
            raise classify_error(body, method=method, redact=self._redact)
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # --- orders --------------------------------------------------------------------------------

    async def _search_page(self, start: int, end: int, page: int, size: int) -> tuple[int, list[dict[str, Any]]]:
        data = await self._call(METHOD_SEARCH, {
            "update_time_start": start, "update_time_end": end, "order_by": "update_time",
            "order_asc": False, "page": page, "size": size,
        })
        orders = data.get("shop_order_list")
        items = [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []
        return _int(data.get("total")) or 0, items

    async def _window_pages(self, since: datetime, until: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """searchList pages of one window, newest update first, walked from the last page back.

        An order updated while we page leaves the window's end and the rest move up one place:
        walking from the last page to the first turns that into a repeat (dropped by the caller)
        instead of a gap. When the total grows meanwhile the window is walked again (3 passes at
        most). Both ends are whole seconds; the end is made exclusive by asking up to ``until - 1``.
        """
        start, end = int(since.timestamp()), math.ceil(until.timestamp()) - 1
        if end < start:
            return
        size = self.settings.page_size
        total, first = await self._search_page(start, end, 0, size)
        if total <= size:
            if first:
                yield first
            return
        for _ in range(MAX_WINDOW_PASSES):
            largest = total
            for page in range(math.ceil(total / size) - 1, -1, -1):
                page_total, orders = await self._search_page(start, end, page, size)
                largest = max(largest, page_total)
                if orders:
                    yield orders
            if largest <= total:
                break
            total = largest
        else:
            log.warning("douyin.window_kept_growing", connector=self.name, start=start, end=end, total=total)

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Shop orders updated in [since, until), one batch per searchList page, handed over as read.

        searchList returns each shop order whole (sku orders, amounts, encrypted receiver), so the
        pages are the records. Each order comes once per pull, again only if updated after the copy
        handed over; within a batch, oldest update first.
        """
        _require_aware(since, until)
        yielded: dict[str, int] = {}
        width = timedelta(hours=self.settings.max_window_hours)
        for start, end in time_windows(since, until, width):
            async for page in self._window_pages(start, end):
                fresh: dict[str, dict[str, Any]] = {}
                for order in page:
                    oid = _order_id(order)
                    updated = _int(order.get("update_time")) or 0
                    if oid is None or updated <= yielded.get(oid, -1):
                        continue
                    if oid not in fresh or updated > (_int(fresh[oid].get("update_time")) or 0):
                        fresh[oid] = order
                records = [self._record(o) for o in sorted(fresh.values(), key=_update_key)]
                for record in records:
                    yielded[record.external_id] = _int(record.payload.get("update_time")) or 0
                if records:
                    yield records

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every shop order id searchList lists as updated in [since, until), with its update time,
        oldest first (for ``tongdao orders reconcile``)."""
        _require_aware(since, until)
        found: dict[str, int] = {}
        for start, end in time_windows(since, until, timedelta(hours=self.settings.max_window_hours)):
            async for page in self._window_pages(start, end):
                for order in page:
                    oid = _order_id(order)
                    if oid is not None:
                        found[oid] = max(found.get(oid, 0), _int(order.get("update_time")) or 0)
        return [(oid, _from_epoch(ts)) for oid, ts in sorted(found.items(), key=lambda kv: (kv[1], kv[0]))]

    def _record(self, order: dict[str, Any]) -> RawRecord:
        oid = _order_id(order)
        if oid is None:
            raise TransientError("a shop order without order_id", platform=PLATFORM)
        return RawRecord(external_id=oid, modified_at=_from_epoch(_int(order.get("update_time"))), payload=order)

    async def _detail(self, order_id: str) -> dict[str, Any]:
        data = await self._call(METHOD_DETAIL, {"shop_order_id": order_id})
        detail = data.get("shop_order_detail")
        if not isinstance(detail, dict) or not detail:
            raise NotFoundError(f"{METHOD_DETAIL}: no shop order {order_id}", platform=PLATFORM)
        return detail

    async def get_order(self, external_id: str) -> RawRecord:
        return self._record(await self._detail(_valid_id(external_id, "shop order id")))

    # --- shipments -----------------------------------------------------------------------------

    def company_code(self, carrier: str) -> str:
        """The Douyin ``company_code`` for a WMS carrier code (the ``carriers`` setting first)."""
        key = carrier.strip().upper()
        code = self.settings.carriers.get(key) or CARRIER_CODES.get(key)
        if not code:
            raise InvalidRequestError(f"no Douyin logistics company for carrier {carrier!r}; add it to "
                                      "settings.carriers (codes from order.logisticsCompanyList)", platform=PLATFORM)
        return code

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """``order.logisticsAdd`` for the whole order, or ``order.logisticsAddMultiPack`` with the sku
        orders of this package (``line_ids``) for one package of a split shipment.

        Idempotent: a multi-pack request carries a ``request_id`` derived from the order, the waybill
        and the lines (the platform answers a repeat with the first result). A refusal because the
        order (or those lines) already shipped is answered by reading the order: ``taken=False``
        with the waybill numbers Douyin shows, so the caller can tell ours from a conflict.
        """
        order_id = _valid_id(external_order_id, "shop order id")
        company = self.company_code(shipment.carrier_code)
        lines = [_valid_id(x, "sku order id") for x in dict.fromkeys(line_ids or [])]
        if lines:
            return await self._push_package(order_id, shipment, company, lines)
        try:
            await self._call(METHOD_LOGISTICS_ADD, {"order_id": order_id, "company_code": company,
                                                    "logistics_code": shipment.tracking_number})
        except (InvalidRequestError, NotFoundError) as exc:
            return await self._already_recorded(order_id, [], exc)
        return WriteBackResult(taken=True)

    async def _push_package(self, order_id: str, shipment: Shipment, company: str,
                            lines: list[str]) -> WriteBackResult:
        detail = await self._detail(order_id)
        sku_orders = {str(s.get("order_id")): s for s in detail.get("sku_order_list") or [] if isinstance(s, dict)}
        unknown = [x for x in lines if x not in sku_orders]
        if unknown:
            raise InvalidRequestError(f"sku order {unknown[0]} is not part of shop order {order_id}",
                                      platform=PLATFORM)
        shipped = _shipped_lines(detail)
        if all(x in shipped for x in lines):  # already recorded: do not send it again
            return WriteBackResult(taken=False, tracking_on_platform=_tracking(detail, lines))
        request_id = hashlib.sha256(f"{order_id}|{shipment.tracking_number}|{','.join(sorted(lines))}".encode())
        params = {
            "order_id": order_id,
            "request_id": request_id.hexdigest()[:32],
            "pack_list": [{
                "shipped_order_info": [{"shipped_order_id": x, "shipped_num": _int(sku_orders[x].get("item_num")) or 1}
                                       for x in lines],
                "logistics_code": shipment.tracking_number,
                "company_code": company,
            }],
        }
        try:
            await self._call(METHOD_MULTI_PACK, params)
        except (InvalidRequestError, NotFoundError) as exc:
            return await self._already_recorded(order_id, lines, exc)
        return WriteBackResult(taken=True)

    async def _already_recorded(self, order_id: str, lines: list[str], exc: ConnectorError) -> WriteBackResult:
        """After a refusal: shipped already (taken=False + waybills) or a real refusal (raise)."""
        if isinstance(exc, NotFoundError):
            raise exc
        detail = await self._detail(order_id)
        status = _int(detail.get("order_status"))
        shipped = _shipped_lines(detail)
        scope = lines or [str(s.get("order_id")) for s in detail.get("sku_order_list") or [] if isinstance(s, dict)]
        done = status in SHIPPED_STATUSES or (bool(scope) and all(x in shipped for x in scope))
        if not done or status == STATUS_CANCELLED:
            raise InvalidRequestError(f"{exc.message}; the order is in status {status}, not shipped",
                                      code=exc.code, platform=PLATFORM, details=exc.details) from None
        log.info("douyin.already_shipped", connector=self.name, order_id=order_id, status=status)
        return WriteBackResult(taken=False, tracking_on_platform=_tracking(detail, lines))

    # --- receivers -----------------------------------------------------------------------------

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """Clear receiver fields through ``order.batchDecrypt`` (auth_id = the shop order id).

        Names of province/city/district/street come in clear (``post_addr.*.name``); the name, the
        phone and the detailed address come as ``encrypt_post_receiver``, ``encrypt_post_tel`` and
        ``post_addr.encrypt_detail``. A virtual number comes back as "主机-分机". Nothing is logged.
        """
        order_id = _valid_id(str(payload.get("order_id") or ""), "shop order id")
        addr = payload.get("post_addr") if isinstance(payload.get("post_addr"), dict) else {}
        wanted = {
            "name": payload.get("encrypt_post_receiver"),
            "mobile": payload.get("encrypt_post_tel"),
            "street": addr.get("encrypt_detail"),
        }
        ciphers = {k: str(v) for k, v in wanted.items() if v}
        clear: dict[str, str] = {
            "province": _name(addr.get("province")), "city": _name(addr.get("city")),
            "district": _name(addr.get("town")), "town": _name(addr.get("street")),
        }
        if ciphers:
            decrypted = await self._decrypt(order_id, list(dict.fromkeys(ciphers.values())))
            for field, cipher in ciphers.items():
                clear[field] = decrypted[cipher]
        for field in ("name", "mobile", "street"):  # a field the platform sent in clear
            if field not in clear:
                value = {"name": payload.get("post_receiver"), "mobile": payload.get("post_tel"),
                         "street": addr.get("detail")}[field]
                if value:
                    clear[field] = str(value)
        return {k: v for k, v in clear.items() if v}

    async def _decrypt(self, order_id: str, ciphers: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(ciphers), MAX_DECRYPT_BATCH):
            batch = ciphers[i:i + MAX_DECRYPT_BATCH]
            data = await self._call(METHOD_DECRYPT, {
                "cipher_infos": [{"auth_id": order_id, "cipher_text": c} for c in batch]})
            custom = data.get("custom_err")
            if isinstance(custom, dict) and _int(custom.get("err_code")):
                raise InvalidRequestError(f"{METHOD_DECRYPT}: {custom.get('err_msg') or 'refused'}",
                                          code=str(custom.get("err_code")), platform=PLATFORM)
            for info in data.get("decrypt_infos") or []:
                if not isinstance(info, dict):
                    continue
                if _int(info.get("err_no")):
                    raise InvalidRequestError(f"{METHOD_DECRYPT} refused a field of order {order_id}: "
                                              f"{info.get('err_msg') or 'error'}", code=str(info.get("err_no")),
                                              platform=PLATFORM)
                out[str(info.get("cipher_text"))] = str(info.get("decrypt_text") or "")
        missing = [c for c in ciphers if c not in out]
        if missing:
            raise TransientError(f"{METHOD_DECRYPT}: {len(missing)} field(s) of order {order_id} not answered",
                                 platform=PLATFORM)
        return out

    # --- pushes --------------------------------------------------------------------------------

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        """Verify ``event-sign`` (and ``app-id``), then one ``order_changed`` per order message.

        Douyin pushes ids only, so ``record`` is None and the engine reads the order with
        ``get_order``; ``event_id`` is the message's ``msg_id`` (a redelivery carries the same one and
        the engine hands it over once). Other tags (products, tests) are acknowledged and ignored.
        """
        low = {k.lower(): v for k, v in headers.items()}
        app_id = low.get("app-id", "")
        signed = verify_push(self.settings.app_key, secret(self.secrets.app_secret), body, low.get("event-sign", ""))
        if not signed or (app_id and app_id != self.settings.app_key):
            log.warning("douyin.push_refused", connector=self.name, reason="signature")
            return PushResult(status_code=401, body=json.dumps({"code": 40041, "msg": "invalid event-sign"}))
        try:
            messages = json.loads(body.decode("utf-8") or "[]")
        except (UnicodeDecodeError, ValueError):
            return PushResult(status_code=400, body=json.dumps({"code": 1, "msg": "body is not JSON"}))
        if isinstance(messages, dict):
            messages = [messages]
        events: list[dict[str, Any]] = []
        seen: set[str] = set()
        for message in messages if isinstance(messages, list) else []:
            event = _order_event(message)
            if event is None or event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            events.append(event)
        return PushResult(events=events, body=json.dumps({"code": 0, "msg": "success"}))

    # --- connectivity --------------------------------------------------------------------------

    async def test(self) -> str:
        """One signed searchList over the last 5 minutes with size 1."""
        until = datetime.now(UTC).replace(microsecond=0)
        total, _ = await self._search_page(int((until - timedelta(minutes=5)).timestamp()), int(until.timestamp()),
                                           0, 1)
        return (f"ok: shop {self.settings.shop_id}, {total} orders updated in the last 5 min "
                f"(app_key {self.settings.app_key}, sign_method {self.settings.sign_method})")


# --- helpers --------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _name(region: Any) -> str:
    return str(region.get("name") or "") if isinstance(region, dict) else ""


def _order_id(order: Mapping[str, Any]) -> str | None:
    value = order.get("order_id")
    return str(value) if value not in (None, "") else None


def _update_key(order: Mapping[str, Any]) -> tuple[int, str]:
    return _int(order.get("update_time")) or 0, str(order.get("order_id"))


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _valid_id(value: str, what: str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidRequestError(f"a Douyin {what} is a number, not {value!r}", platform=PLATFORM)
    return text


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)


def _packages(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    info = detail.get("logistics_info")
    return [p for p in info if isinstance(p, dict)] if isinstance(info, list) else []


def _shipped_lines(detail: Mapping[str, Any]) -> set[str]:
    """Sku orders some package already carries (``logistics_info[].product_info[].sku_order_id``)."""
    return {str(item.get("sku_order_id")) for p in _packages(detail) for item in p.get("product_info") or []
            if isinstance(item, dict) and item.get("sku_order_id")}


def _tracking(detail: Mapping[str, Any], lines: list[str]) -> list[str]:
    """Waybills on the order; for a package of some lines, those carrying one of them."""
    numbers = set()
    for package in _packages(detail):
        carried = {str(i.get("sku_order_id")) for i in package.get("product_info") or [] if isinstance(i, dict)}
        if package.get("tracking_no") and (not lines or carried & set(lines)):
            numbers.add(str(package["tracking_no"]))
    return sorted(numbers)


def _order_event(message: Any) -> dict[str, Any] | None:
    """An ``order_changed`` event for one pushed message, None for tags that are not about an order."""
    if not isinstance(message, dict):
        return None
    tag = str(message.get("tag") or "").strip()
    tag_no = _int(tag)
    if tag not in ORDER_TAGS and (tag_no is None or tag_no not in AFTER_SALE_TAG_RANGE):
        return None
    data = message.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data or "{}")
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    order_id = data.get("p_id") or data.get("shop_order_id")
    if order_id in (None, "", 0) or not str(order_id).isdigit():
        return None
    msg_id = str(message.get("msg_id") or "") or f"{tag}:{order_id}:{data.get('update_time', '')}"
    return {"type": "order_changed", "external_id": str(order_id), "event_id": msg_id, "record": None,
            "tag": tag}
