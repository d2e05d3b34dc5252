"""JD (京东 JOS) POP orders: incremental pull, one order, tracking write-back, receiver decryption.

Wire protocol (see :mod:`connectors.jd.signing`): ``POST {base_url}`` (``https://api.jd.com/routerjson``)
with the system parameters in the query string and ``360buy_param_json`` form-encoded in the body,
as ``com.jd.open.api.sdk.DefaultJdClient`` sends them; a fresh timestamp and signature per attempt.
A success is ``{"<method, dots as '_'>_responce": {"code": "0", ...}}`` (JOS spells it *responce*:
``jingdong_pop_order_enSearch_responce``, ``jingdong_pop_order_enGet_responce``); a gateway error is
``{"error_response": {"code": "19", "zh_desc": "无效access_token", "en_desc": "Invalid access_token"}}``
(the code is a string); a business refusal comes inside the success wrapper as ``apiResult`` /
``..._result`` with ``success: false`` and ``chineseErrCode`` / ``englishErrCode`` / ``numberCode``.

Calls used (documentation pages named by their open.jd.com ``apiId``):

* ``jingdong.pop.order.enSearch`` (apiId=2388, "根据条件检索订单信息"): ``start_date``/``end_date``
  ("不得相差超过1个月。此时间仅针对订单状态及运单号修改的时间"), ``order_state`` (comma-separated:
  WAIT_SELLER_STOCK_OUT, WAIT_GOODS_RECEIVE_CONFIRM, WAIT_SELLER_DELIVERY, PAUSE, FINISHED_L,
  TRADE_CANCELED, LOCKED, POP_ORDER_PAUSE), ``optional_fields``, ``page``, ``page_size`` ("最大page_size
  100条"), ``sortType`` ("默认升序,1是降序"), ``dateType`` ("默认按修改时间查询。1为按订单创建时间查询").
  Answers ``searchorderinfo_result`` = ``{orderInfoList, orderTotal, apiResult}`` with whole orders
  (items and consignee included), so no per-order call is needed while pulling.
* ``jingdong.pop.order.enGet`` ("输入单个订单id，得到所有相关订单信息"): ``order_id``, ``optional_fields``,
  ``order_state``; answers ``orderDetailInfo`` = ``{orderInfo, apiResult}``.
* ``jingdong.pop.order.shipment`` (apiId=1948, "sop出库发货接口"): ``orderId``, ``logiCoprId`` ("物流公司ID
  (只可通过获取商家物流公司接口获得),多个物流公司以|分隔"), ``logiNo`` ("不同物流公司的运单号用|分隔，如果同一
  物流公司有多个运单号，则用英文逗号分隔").
* TDE keys for the encrypted consignee: see :mod:`connectors.jd.tde`.

The JOS gateway error table ("网关系统错误码", mirrored e.g. at diansan.com/n/123725.htm): 2 App Call
Limited (限制时间内调用失败次数), 4/5 version, 7/8 timestamp ("允许客户端请求时间误差为6分钟"), 11/12
signature, 14/15 method; 19 Invalid access_token and 21 Invalid app_key come from captured answers.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
from connectors.http import ApiClient
from connectors.jd import tde
from connectors.jd.signing import PARAM_JSON, format_jos_time, jos_sign, jos_timestamp, param_json, parse_jos_time
from connectors.jd.stock import JdStock
from connectors.pagination import time_windows
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.jd")

PLATFORM = "jd"
API_VERSION = "2.0"
DEFAULT_GATEWAY = "https://api.jd.com/routerjson"

METHOD_SEARCH = "jingdong.pop.order.enSearch"
METHOD_GET = "jingdong.pop.order.enGet"
METHOD_SHIPMENT = "jingdong.pop.order.shipment"
METHOD_VOUCHER = "jingdong.jos.voucher.info.get"
METHOD_MASTER_KEY = "jingdong.jos.master.key.get"

#: every state enSearch documents for ``order_state`` ("多订单状态可以用英文逗号隔开")
ORDER_STATES = ("WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY", "PAUSE",
                "FINISHED_L", "TRADE_CANCELED", "LOCKED", "POP_ORDER_PAUSE")
#: states after ship-out (the order carries waybills)
SHIPPED_STATES = frozenset({"WAIT_GOODS_RECEIVE_CONFIRM", "FINISHED_L"})
#: what the order mapping needs (orderInfo fields, "orderInfo结构体中的所有字段；字段之间用,分隔")
ORDER_FIELDS = (
    "orderId,venderId,orderType,payType,orderTotalPrice,orderSellerPrice,orderPayment,freightPrice,"
    "sellerDiscount,orderState,orderStateRemark,orderRemark,orderStartTime,orderEndTime,modified,"
    "paymentConfirmTime,consigneeInfo,itemInfoList,couponDetailList,venderRemark,waybill,logisticsId,"
    "parentOrderId,pin,open_id_buyer"
)
LIST_FIELDS = "orderId,modified"
STATUS_FIELDS = "orderId,orderState,waybill,logisticsId,modified"

MAX_PAGE_SIZE = 100
MAX_WINDOW = timedelta(days=30)  # "不得相差超过1个月"
MAX_WINDOW_PASSES = 3
CONSIGNEE_SECRET_FIELDS = {"fullname": "name", "mobile": "mobile", "telephone": "phone", "fullAddress": "street"}
CONSIGNEE_CLEAR_FIELDS = {"province": "province", "city": "city", "county": "district", "town": "town"}

#: WMS carrier codes → JD logistics company ids (``logiCoprId``). JD says the ids come only from the
#: merchant's logistics-company API ("只可通过获取商家物流公司接口获得"); these are the commonly published
#: ids of the national carriers, override per shop with the ``carriers`` setting.
CARRIER_IDS: dict[str, str] = {
    "SF": "467",  # 顺丰速运
    "ZTO": "1499",  # 中通快递
    "YTO": "463",  # 圆通速递
    "STO": "470",  # 申通快递
    "YUNDA": "1327",  # 韵达快递
    "EMS": "465",  # 邮政EMS
    "JD": "2087",  # 京东快递
    "DBL": "3046",  # 德邦快递
    "SELF": "1274",  # 厂家自送 (no waybill kept by JD)
}

# --- error taxonomy ---------------------------------------------------------------------------
THROTTLE_CODES = frozenset({"2"})  # App Call Limited
AUTH_CODES = frozenset({"11", "12", "16", "17", "18", "19", "20", "21"})  # signature, token, app key
INVALID_CODES = frozenset({"4", "5", "7", "8", "14", "15"})
THROTTLE_MARKERS = ("call limited", "流控", "限流", "频繁", "调用次数", "超过限制", "too many")
TRANSIENT_MARKERS = ("系统繁忙", "系统异常", "服务不可用", "超时", "timeout", "busy", "unavailable")
NOT_FOUND_MARKERS = ("不存在", "not exist", "not found", "查询不到")
#: a ban JD gives no length for: wait a minute (its limits are per minute/day; a daily one recurs)
DEFAULT_BAN_S = 60.0
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|秒|seconds?)\b", re.IGNORECASE)


def response_key(method: str) -> str:
    """``jingdong.pop.order.enGet`` → ``jingdong_pop_order_enGet_responce`` (JOS's spelling)."""
    return method.replace(".", "_") + "_responce"


def _text(*parts: Any) -> str:
    return "; ".join(str(p) for p in parts if p not in (None, ""))


def classify_error(error: Mapping[str, Any], *, method: str) -> ConnectorError:
    """A gateway ``error_response`` (``code``/``zh_desc``/``en_desc``) as a connector error."""
    code = str(error.get("code") or "").strip()
    zh, en = str(error.get("zh_desc") or ""), str(error.get("en_desc") or "")
    text = f"{method}: {_text(en, zh) or 'error'}"
    low = f"{zh} {en}".lower()
    kwargs: dict[str, Any] = {"code": code or None, "platform": PLATFORM}
    if code in THROTTLE_CODES or any(m in low for m in THROTTLE_MARKERS):
        match = _SECONDS.search(low)
        return ThrottledError(text, retry_after=float(match.group(1)) if match else DEFAULT_BAN_S, **kwargs)
    if code in AUTH_CODES or "access_token" in low or "app_key" in low or "signature" in low:
        return AuthError(text, **kwargs)
    if code in INVALID_CODES:
        return InvalidRequestError(text, **kwargs)
    if any(m in low for m in TRANSIENT_MARKERS):
        return TransientError(text, **kwargs)
    if any(m in low for m in NOT_FOUND_MARKERS):
        return NotFoundError(text, **kwargs)
    return InvalidRequestError(text, **kwargs)


def classify_result(result: Mapping[str, Any], *, method: str) -> ConnectorError:
    """A business refusal (``apiResult``/``..._result`` with ``success: false``)."""
    zh = str(result.get("chineseErrCode") or result.get("chineseErrorCode") or "")
    en = str(result.get("englishErrCode") or result.get("englishErrorCode") or "")
    number = result.get("numberCode") or result.get("errorCode") or result.get("code")
    text = f"{method}: {_text(en, zh) or 'refused'}"
    low = f"{zh} {en}".lower()
    kwargs: dict[str, Any] = {"code": str(number) if number not in (None, "") else None, "platform": PLATFORM,
                              "details": {"chinese": zh or None, "english": en or None}}
    if any(m in low for m in THROTTLE_MARKERS):
        return ThrottledError(text, retry_after=DEFAULT_BAN_S, **kwargs)
    if any(m in low for m in TRANSIENT_MARKERS):
        return TransientError(text, **kwargs)
    if any(m in low for m in NOT_FOUND_MARKERS):
        return NotFoundError(text, **kwargs)
    return InvalidRequestError(text, **kwargs)


class JdSettings(ConnectorSettings):
    """``base_url`` is the full router URL (``.../routerjson``); ``shop`` our name for the store
    (else the order's ``venderId``); ``carriers`` overrides ``CARRIER_IDS`` (WMS code → logiCoprId)."""

    base_url: str = DEFAULT_GATEWAY
    app_key: str = Field(min_length=1)
    shop: str = ""
    page_size: int = Field(100, ge=1, le=MAX_PAGE_SIZE)
    max_window_hours: int = Field(24, ge=1, le=24 * 30)
    carriers: dict[str, str] | None = None
    order_states: list[str] = Field(default_factory=lambda: list(ORDER_STATES))

    @field_validator("order_states")
    @classmethod
    def _known_states(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in ORDER_STATES]
        if unknown or not value:
            raise ValueError(f"order_states must be among {', '.join(ORDER_STATES)} (got {unknown or 'none'})")
        return value


class JdSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    app_secret: SecretStr
    access_token: SecretStr


@connector_kind("jd", title="JD (京东 JOS, POP)")
class JdConnector(Connector, OrderSource, ShipmentSink, ReceiverSource, JdStock):
    channel = "jd"
    Settings = JdSettings
    Secrets = JdSecrets

    #: * ``lag`` 60 s: JD's search index of ``modified`` follows the order with a delay, and the
    #:   modified time only moves for state and waybill changes ("此时间仅针对订单状态及运单号修改的
    #:   时间"), so we stay a minute behind (a choice: JD publishes no figure);
    #: * ``overlap`` 10 min: re-read across the cursor for late-indexed orders (one dedupe each);
    #: * ``chunk`` 1 day and ``window`` 1 h, well inside the one-month query limit.
    ingest_defaults = IngestDefaults(lag=timedelta(seconds=60), overlap=timedelta(minutes=10),
                                     chunk=timedelta(days=1), window=timedelta(hours=1))

    settings: JdSettings
    secrets: JdSecrets

    def __init__(self, name: str, settings: JdSettings, secrets: JdSecrets) -> None:
        super().__init__(name, settings, secrets)
        if not secret(secrets.app_secret) or not secret(secrets.access_token):
            raise ConfigurationError(f"connector {name!r} (jd): app_secret and access_token must not be empty")
        url = httpx.URL(settings.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"connector {name!r} (jd): base_url must be an absolute http(s) URL")
        self.api = ApiClient(platform=PLATFORM, base_url="", check=self._check_response,
                             limiter=RateLimiter(settings.rate_limit_per_s), timeout_s=settings.timeout_s)
        self._keys: dict[str, bytes] = {}
        self._keys_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<JdConnector {self.name!r} app_key={self.settings.app_key!r} url={self.settings.base_url!r}>"

    def shop_of(self, payload: dict[str, Any]) -> str:
        """The ``shop`` setting, else the order's ``venderId``."""
        return self.settings.shop or str(payload.get("venderId") or self.name)

    # --- transport -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self.redact_secrets(text)

    def _build(self, method: str, business: Mapping[str, Any]) -> httpx.Request:
        """A freshly stamped and signed request (one per attempt: the signature covers the time)."""
        system = {"method": method, "app_key": self.settings.app_key,
                  "access_token": secret(self.secrets.access_token), "timestamp": jos_timestamp(),
                  "format": "json", "v": API_VERSION}
        body = {PARAM_JSON: param_json({k: v for k, v in business.items() if v is not None})}
        system["sign"] = jos_sign(system | body, secret(self.secrets.app_secret))
        return self.api.build("POST", self.settings.base_url, params=system, data=body,
                              headers={"Accept": "application/json"})

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise TransientError(f"unreadable answer from the JOS router (HTTP {response.status_code})",
                                 platform=PLATFORM) from None
        if not isinstance(body, dict):
            raise TransientError("unexpected JSON from the JOS router (not an object)", platform=PLATFORM)
        return body

    def _check_response(self, response: httpx.Response) -> None:
        """Gateway errors raised inside the HTTP client, so short bans are retried there; a ban
        longer than the client may sleep is left to the caller (Temporal waits, not the worker)."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the JOS router", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the full router URL, .../routerjson)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the JOS router", code=str(status), platform=PLATFORM)
        error = self._decode(response).get("error_response")
        if isinstance(error, Mapping):
            exc = classify_error(error, method=response.request.url.params.get("method", "JOS call"))
            exc.message = self._redact(exc.message)
            if isinstance(exc, ThrottledError) and (exc.retry_after or 0) > self.api.retry.max_s:
                return
            raise exc

    async def _call(self, method: str, business: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(method, business))
        body = self._decode(response)
        error = body.get("error_response")
        if isinstance(error, Mapping):
            exc = classify_error(error, method=method)
            exc.message = self._redact(exc.message)
            if isinstance(exc, ThrottledError):  # a long ban: every request of this connector waits it out
                self.api.limiter.penalize(exc.retry_after or DEFAULT_BAN_S)
            raise exc
        answer = body.get(response_key(method))
        if not isinstance(answer, dict):
            raise TransientError(f"{method}: the router answered without {response_key(method)!r}",
                                 platform=PLATFORM)
        return answer

    # --- orders --------------------------------------------------------------------------------

    async def _search_page(self, start: str, end: str, page: int, size: int,
                           fields: str) -> tuple[int, list[dict[str, Any]]]:
        answer = await self._call(METHOD_SEARCH, {
            "start_date": start, "end_date": end, "order_state": ",".join(self.settings.order_states),
            "optional_fields": fields, "page": str(page), "page_size": str(size),
            "sortType": 1, "dateType": 0,  # newest modification first; by modification time
        })
        result = answer.get("searchorderinfo_result")
        if not isinstance(result, Mapping):
            raise TransientError(f"{METHOD_SEARCH}: no searchorderinfo_result", platform=PLATFORM)
        _raise_unless_success(result.get("apiResult"), METHOD_SEARCH)
        orders = [o for o in result.get("orderInfoList") or [] if isinstance(o, dict)]
        try:
            total = int(result.get("orderTotal") or 0)
        except (TypeError, ValueError):
            total = len(orders)
        return total, orders

    async def _window_pages(self, since: datetime, until: datetime,
                            fields: str = ORDER_FIELDS) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of one window, newest modification first, walked from the last page back to the
        first: an order modified during the walk leaves the window and the rest move up one place,
        which backwards turns into a repeat (dropped by the caller) instead of a gap. When the
        total grows (orders entered the window) the walk is repeated, at most 3 times. Page 1 is
        read first only to learn ``orderTotal``; it is handed over only when it is the only page."""
        start, end = format_jos_time(since), format_jos_time(until - timedelta(seconds=1))
        if end < start:
            return
        size = self.settings.page_size
        total, first = await self._search_page(start, end, 1, size, fields)
        if total <= size:
            if first:
                yield first
            return
        for _ in range(MAX_WINDOW_PASSES):
            largest = total
            for page in range(max(1, math.ceil(total / size)), 0, -1):
                page_total, orders = await self._search_page(start, end, page, size, fields)
                largest = max(largest, page_total)
                if orders:
                    yield orders
            if largest <= total:
                break
            total = largest
        else:
            log.warning("jd.window_kept_growing", connector=self.name, start=start, end=end, total=total)

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Whole orders modified in [since, until), one batch per search page as it is read.

        JOS's ``end_date`` is inclusive at whole seconds, so a window asks up to ``until - 1 s``;
        each order comes once per pull, again only if modified after the copy handed over."""
        _require_aware(since, until)
        width = min(timedelta(hours=self.settings.max_window_hours), MAX_WINDOW)
        yielded: dict[str, datetime] = {}
        for start, end in time_windows(since, until, width):
            async for page in self._window_pages(start, end):
                records: dict[str, RawRecord] = {}
                for order in page:
                    record = self._record(order)
                    seen = yielded.get(record.external_id)
                    stamp = record.modified_at or datetime.min.replace(tzinfo=UTC)
                    if seen is not None and stamp <= seen:
                        continue
                    known = records.get(record.external_id)
                    if known is None or stamp > (known.modified_at or stamp):
                        records[record.external_id] = record
                batch = sorted(records.values(), key=lambda r: (r.modified_at or datetime.min.replace(tzinfo=UTC),
                                                                 r.external_id))
                for record in batch:
                    yielded[record.external_id] = record.modified_at or datetime.min.replace(tzinfo=UTC)
                if batch:
                    yield batch

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every order id listed as modified in [since, until) with its ``modified``, oldest first
        (``optional_fields=orderId,modified`` only), for ``tongdao orders reconcile``."""
        _require_aware(since, until)
        width = min(timedelta(hours=self.settings.max_window_hours), MAX_WINDOW)
        found: dict[str, datetime | None] = {}
        for start, end in time_windows(since, until, width):
            async for page in self._window_pages(start, end, fields=LIST_FIELDS):
                for order in page:
                    oid = _order_id(order)
                    if oid is None:
                        continue
                    modified = _modified(order)
                    known = found.get(oid)
                    if oid not in found or (modified is not None and (known is None or modified > known)):
                        found[oid] = modified
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(found.items(), key=lambda item: (item[1] or never, int(item[0]) if item[0].isdigit() else 0))

    def _record(self, order: dict[str, Any]) -> RawRecord:
        oid = _order_id(order)
        if oid is None:
            raise TransientError("JOS answered an order without orderId", platform=PLATFORM)
        return RawRecord(external_id=oid, modified_at=_modified(order), payload=dict(order))

    async def _get(self, order_id: str, fields: str = ORDER_FIELDS) -> dict[str, Any]:
        answer = await self._call(METHOD_GET, {"order_id": order_id, "optional_fields": fields,
                                               "order_state": ",".join(ORDER_STATES)})
        detail = answer.get("orderDetailInfo")
        if not isinstance(detail, Mapping):
            raise TransientError(f"{METHOD_GET}: no orderDetailInfo", platform=PLATFORM)
        _raise_unless_success(detail.get("apiResult"), METHOD_GET)
        order = detail.get("orderInfo")
        if not isinstance(order, dict) or not order:
            raise NotFoundError(f"{METHOD_GET}: no order {order_id}", platform=PLATFORM)
        return order

    async def get_order(self, external_id: str) -> RawRecord:
        return self._record(await self._get(_valid_id(external_id)))

    # --- shipments -----------------------------------------------------------------------------

    def _carrier_id(self, carrier_code: str) -> str:
        table = {**CARRIER_IDS, **{k.upper(): v for k, v in (self.settings.carriers or {}).items()}}
        code = carrier_code.strip()
        if code.upper() in table:
            return table[code.upper()]
        if code.isdigit():  # already a JD logistics id
            return code
        raise InvalidRequestError(f"no JD logistics company id for carrier {carrier_code!r}; add it to the "
                                  "connector's `carriers` setting (WMS code → logiCoprId)", platform=PLATFORM)

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """``jingdong.pop.order.shipment`` (sop出库发货) with ``logiCoprId`` and ``logiNo``.

        JD ships a POP order as a whole, once: there is no line parameter, and several parcels of
        one order are several waybill numbers of one call ("如果同一物流公司有多个运单号，则用英文
        逗号分隔"). So a package with ``line_ids`` is sent like any other (logged), and a later
        package of the same order finds the order already shipped. Idempotent: when JD refuses,
        the order is read (enGet ``orderState``, ``waybill``); if it has left, the answer is
        ``taken=False`` with the waybills JD shows (``|`` and ``,`` separated), else the refusal
        is raised."""
        order_id = _valid_id(external_order_id)
        if line_ids:
            log.info("jd.split_package_ships_whole_order", connector=self.name, order_id=order_id,
                     lines=len(line_ids))
        business = {"orderId": order_id, "logiCoprId": self._carrier_id(shipment.carrier_code),
                    "logiNo": shipment.tracking_number}
        try:
            answer = await self._call(METHOD_SHIPMENT, business)
            result = _result_object(answer)
            _raise_unless_success(result, METHOD_SHIPMENT)
        except (InvalidRequestError, NotFoundError) as exc:
            return await self._already_recorded(order_id, shipment, exc)
        return WriteBackResult(taken=True)

    async def _already_recorded(self, order_id: str, shipment: Shipment, exc: ConnectorError) -> WriteBackResult:
        try:
            order = await self._get(order_id, STATUS_FIELDS)
        except NotFoundError:
            raise exc from None
        state = str(order.get("orderState") or "")
        if state not in SHIPPED_STATES:
            raise InvalidRequestError(f"{exc.message}; the order is {state or 'in an unknown state'}, not shipped",
                                      code=exc.code, platform=PLATFORM, details=exc.details) from None
        tracking = waybills(order.get("waybill"))
        log.info("jd.already_shipped", connector=self.name, order_id=order_id, state=state,
                 same_tracking=shipment.tracking_number in tracking if tracking else None)
        return WriteBackResult(taken=False, tracking_on_platform=tracking)

    # --- receivers -----------------------------------------------------------------------------

    async def _load_keys(self) -> dict[str, bytes]:
        """Voucher, then master keys (TDE), once per connector instance; kept in memory only."""
        async with self._keys_lock:
            if self._keys:
                return self._keys
            answer = await self._call(METHOD_VOUCHER, {})
            response = answer.get("response") if isinstance(answer.get("response"), Mapping) else {}
            if str(response.get("errorCode", "0")) != "0":
                raise AuthError(f"{METHOD_VOUCHER}: {response.get('errorMsg') or 'refused'}",
                                code=str(response.get("errorCode")), platform=PLATFORM)
            try:
                voucher = tde.parse_voucher(str((response.get("data") or {}).get("voucher") or ""))
            except tde.TdeError as err:
                raise TransientError(f"{METHOD_VOUCHER}: {err}", platform=PLATFORM) from None
            expired = voucher.get("expired")
            if isinstance(expired, int | float) and expired and expired / 1000 < time.time():
                raise TransientError(f"{METHOD_VOUCHER}: the voucher has expired", platform=PLATFORM)
            ts = int(time.time() * 1000)
            tid = str(voucher["id"])
            master = await self._call(METHOD_MASTER_KEY, {
                "sdk_ver": 2, "ts": ts, "tid": tid, "sig": tde.master_key_sig(str(voucher["key"]), 2, ts, tid)})
            result = master.get("response") if isinstance(master.get("response"), Mapping) else {}
            if int(result.get("status_code") or 0) != 0:
                raise AuthError(f"{METHOD_MASTER_KEY}: {result.get('errorMsg') or 'refused'}",
                                code=str(result.get("status_code")), platform=PLATFORM)
            self._keys = tde.keys_from_master(result)
            if not self._keys:
                raise TransientError(f"{METHOD_MASTER_KEY}: no keys", platform=PLATFORM)
            return self._keys

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """Clear receiver of one order: the TDE fields of ``consigneeInfo`` decrypted in memory
        (``fullname``, ``mobile``, ``telephone``, ``fullAddress``), the clear region fields as they
        are. A key id the cached key store does not know makes it fetch the keys again once."""
        consignee = payload.get("consigneeInfo")
        if not isinstance(consignee, Mapping):
            raise InvalidRequestError("the JD order has no consigneeInfo", platform=PLATFORM)
        out = {ours: str(consignee.get(theirs) or "") for theirs, ours in CONSIGNEE_CLEAR_FIELDS.items()}
        for attempt in range(2):
            keys = await self._load_keys()
            try:
                for theirs, ours in CONSIGNEE_SECRET_FIELDS.items():
                    value = consignee.get(theirs)
                    out[ours] = tde.decrypt(value, keys) if tde.is_ciphertext(value) else str(value or "")
                return out
            except tde.TdeError as err:
                if attempt == 0 and "no key" in str(err):
                    self._keys = {}  # a rotated key: fetch the store again
                    continue
                raise InvalidRequestError(f"cannot decrypt the JD receiver: {err}", platform=PLATFORM) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- connectivity --------------------------------------------------------------------------

    async def test(self) -> str:
        """One signed enSearch over the last 5 minutes with page_size=1."""
        until = datetime.now(UTC).replace(microsecond=0)
        total, _ = await self._search_page(format_jos_time(until - timedelta(minutes=5)), format_jos_time(until),
                                           1, 1, LIST_FIELDS)
        return f"ok: {total} orders modified in the last 5 min (app_key {self.settings.app_key})"


# --- helpers --------------------------------------------------------------------------------------


def _raise_unless_success(result: Any, method: str) -> None:
    if isinstance(result, Mapping) and result.get("success") in (False, "false"):
        raise classify_result(result, method=method)


def _result_object(answer: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``..._result`` object of a write call (``sopjosshipment_result`` for shipment)."""
    for key, value in answer.items():
        if key.endswith("_result") and isinstance(value, Mapping):
            return value
    return None


def waybills(value: Any) -> list[str]:
    """JD's ``waybill``: companies separated by ``|``, several waybills of one company by ``,``."""
    return sorted({w.strip() for part in str(value or "").split("|") for w in part.split(",") if w.strip()})


def _order_id(order: Mapping[str, Any]) -> str | None:
    value = order.get("orderId")
    return str(value) if value not in (None, "") else None


def _modified(order: Mapping[str, Any]) -> datetime | None:
    value = order.get("modified")
    if not value:
        return None
    try:
        return parse_jos_time(str(value))
    except ValueError:
        return None


def _valid_id(external_id: str) -> str:
    oid = str(external_id).strip()
    if not oid.isdigit():
        raise InvalidRequestError(f"a JD order id is a number, not {external_id!r}", platform=PLATFORM)
    return oid


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)
