"""Pinduoduo (拼多多开放平台, POP): incremental order pull, tracking write-back, receiver decryption.

Wire protocol (see :mod:`connectors.pdd.signing`): ``POST {base_url}`` form-encoded with the common
parameters ``type``, ``client_id``, ``access_token``, ``timestamp`` (unix seconds), ``data_type=JSON``,
``version=V1`` and ``sign``; a fresh timestamp and signature per attempt. A successful answer is
``{"<api>_response": {...}}``, a failed one ``{"error_response": {"error_code", "error_msg",
"sub_code", "sub_msg", "request_id"}}``.

APIs used (request/response fields as the official API pages document them, mirrored as typed
interfaces in github.com/lywzx/pdd-node-sdk ``packages/pdd-origin-api/src/...``, file named per API):

* ``pdd.order.number.list.increment.get`` (``dingDan/PddOrderNumberListIncrementGet.ts``): "一次请求
  只能查询时间跨度为30分钟的增量交易记录,即end_updated_at - start_updated_at<= 30min", "通过从后往前翻页
  的方式以及结束时间不小于拼多多系统时间前3min可以避免漏单问题", ``page``: "注:必须采用倒序的分页方式
  (从最后一页往回取)才能避免漏单问题", ``page_size`` "默认 100。最大 100", ``use_has_next`` (no total
  when true), required filters ``order_status`` (5 = 全部), ``refund_status`` (5 = 全部),
  ``is_lucky_flag`` (0 = 全部). The answer ``order_sn_increment_get_response`` carries
  ``total_count``, ``has_next`` and ``order_sn_list`` with each *full* order (items, amounts,
  statuses, encrypted receiver), so no second call per order is needed. Limit: 3000 calls / 60 s.
* ``pdd.order.information.get`` (``dingDan/PddOrderInformationGet.ts``): one order by ``order_sn``,
  answered as ``order_info_get_response.order_info``.
* ``pdd.logistics.online.send`` (``wuLiu/PddLogisticsOnlineSend.ts``, 订单发货通知接口):
  ``order_sn``, ``logistics_id`` (快递公司编号, from ``pdd.logistics.companies.get``),
  ``tracking_number``; answer ``logistics_online_send_response.is_success``. POP ships an order as
  a whole (there are no order-line ids); further parcels of the same order go through
  ``pdd.order.upload.extra.logistics`` (``dingDan/PddOrderUploadExtraLogistics.ts``: "针对一笔订单分
  多笔物流发货的场景（分包发货...）", ``extra_track_type`` 1 = 分包发货, ``extra_track_list`` of
  ``{shipping_id, tracking_number}``), which the order then lists in ``extra_delivery_list``.
* ``pdd.open.decrypt.batch`` (``gongJu/PddOpenDecryptBatch.ts``): ``data_list`` of ``{data_tag:
  order_sn, encrypted_data}`` ("默认列表大小不超过100"), answer ``data_decrypt_list`` with
  ``decrypted_data`` and ``error_code`` (0 = 成功) per item.
* ``pdd.logistics.companies.get`` (``wuLiu/PddLogisticsCompaniesGet.ts``): ``logistics_companies``
  of ``{id, logistics_company, code, available}``; used by ``test()`` to check the carrier table.

Errors: ``error_code`` 70031 (调用过于频繁，请调整调用频率) and 52101 (当前接口被限流) are throttling,
52102/52103 (暂时不可用) transient, 10019 (access_token已过期) an authorisation problem -- the codes
and texts the Node SDK handles (``packages/core/src/exceptions/pdd-response.exception.ts``).
Other codes are classified by their documented ranges and messages (see :func:`classify_error`).
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr

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
from connectors.pdd.signing import param_value, parse_pdd_time, pdd_sign, pdd_timestamp, unix_seconds
from connectors.pdd.stock import PddStock
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.pdd")

PLATFORM = "pdd"
DEFAULT_GATEWAY = "https://gw-api.pinduoduo.com/api/router"
API_VERSION = "V1"
DATA_TYPE = "JSON"

TYPE_INCREMENT = "pdd.order.number.list.increment.get"
TYPE_INFORMATION = "pdd.order.information.get"
TYPE_ONLINE_SEND = "pdd.logistics.online.send"
TYPE_EXTRA_LOGISTICS = "pdd.order.upload.extra.logistics"
TYPE_DECRYPT = "pdd.open.decrypt.batch"
TYPE_COMPANIES = "pdd.logistics.companies.get"

RESPONSE_KEYS = {
    TYPE_INCREMENT: "order_sn_increment_get_response",
    TYPE_INFORMATION: "order_info_get_response",
    TYPE_ONLINE_SEND: "logistics_online_send_response",
    TYPE_EXTRA_LOGISTICS: "upload_extra_logistics_response",
    TYPE_DECRYPT: "open_decrypt_batch_response",
    TYPE_COMPANIES: "logistics_companies_get_response",
}

MAX_WINDOW = timedelta(minutes=30)  # "end_updated_at - start_updated_at<= 30min"
MAX_PAGE_SIZE = 100  # "默认 100。最大 100"
MAX_WINDOW_PASSES = 3
DECRYPT_BATCH = 100  # "数据列表, 默认列表大小不超过100"
#: the tightest published limit on the pull path: increment.get 3000 calls per 60 s
DEFAULT_RATE_PER_S = 50.0

#: order_status: 1 待发货, 2 已发货待签收, 3 已签收
WAIT_SHIP, SHIPPED, RECEIVED = 1, 2, 3
#: extra_track_type 1 = 分包发货
EXTRA_TRACK_SPLIT = 1

#: Our carrier codes (the WMS's) → POP 快递公司编号 (``logistics_id``). The ids are those
#: ``pdd.logistics.companies.get`` lists; they are not published on a static page, so check them
#: against ``tongdao connectors test`` (which reads the list) and override with ``carriers``.
CARRIERS: dict[str, int] = {
    "STO": 1,  # 申通快递
    "HTKY": 3,  # 百世快递
    "SF": 44,  # 顺丰快递
    "YTO": 85,  # 圆通快递
    "ZTO": 115,  # 中通快递
    "EMS": 118,  # 邮政EMS
    "JD": 120,  # 京东配送
    "YUNDA": 121,  # 韵达快递
    "DBL": 131,  # 德邦快递
    "POSTB": 132,  # 邮政快递包裹
}

# --- error taxonomy ------------------------------------------------------------------------------
THROTTLE_CODES = frozenset({70031, 52101})  # 调用过于频繁 / 当前接口被限流
TRANSIENT_CODES = frozenset({52102, 52103})  # 当前接口暂时不可用 / 服务暂时不可用
AUTH_CODES = frozenset({10019})  # access_token已过期
AUTH_MARKERS = ("签名", "sign", "access_token", "client_id", "授权", "权限", "token")
THROTTLE_MARKERS = ("频繁", "限流")
NOT_FOUND_MARKERS = ("不存在", "not exist", "not found")
ALREADY_SHIPPED_MARKERS = ("已发货", "重复发货", "已签收")
#: seconds to wait after a flow-control answer: POP gives no Retry-After; its windows are 1 s to 60 s
THROTTLE_RETRY_S = 1.0

_ORDER_SN = re.compile(r"^\d{6}-\d{6,20}$")  # "订单号。形如：20150909-452750051" (yyMMdd-...)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def classify_error(error: Mapping[str, Any], *, api: str) -> ConnectorError:
    """Turn a POP ``error_response`` into the connector error taxonomy.

    Known codes first (70031/52101 throttled, 52102/52103 transient, 10019 token expired); then,
    as the Node SDK does, the ranges: 10000-39999 are the caller's problem (not retried), 50000+
    the platform's. Within the caller's range a message about the signature, token, client or
    permission is an ``AuthError`` (it will not pass with the same credentials) and "不存在" is
    ``NotFoundError``. The exact codes of those cases are not listed in the stored docs, hence
    the message test (ambiguity listed in the report).
    """
    code = _int(error.get("error_code"))
    msg = str(error.get("error_msg") or "").strip()
    sub_msg = str(error.get("sub_msg") or "").strip()
    sub_code = str(error.get("sub_code") or "").strip()
    text = f"{api}: {msg or 'error'}"
    if sub_msg and sub_msg != msg:
        text += f" ({sub_msg})"
    words = f"{msg} {sub_msg}".lower()
    kwargs: dict[str, Any] = {
        "code": str(code) if code is not None else (sub_code or None),
        "platform": PLATFORM,
        "details": {"error_code": code, "sub_code": sub_code or None,
                    "request_id": str(error.get("request_id") or "") or None},
    }
    if code in THROTTLE_CODES or any(m in words for m in THROTTLE_MARKERS):
        return ThrottledError(text, retry_after=THROTTLE_RETRY_S, **kwargs)
    if code in TRANSIENT_CODES:
        return TransientError(text, **kwargs)
    if code in AUTH_CODES:
        return AuthError(text, **kwargs)
    if code is not None and code >= 50000:
        return TransientError(text, **kwargs)
    if any(m in words for m in NOT_FOUND_MARKERS):
        return NotFoundError(text, **kwargs)
    if any(m in words for m in AUTH_MARKERS):
        return AuthError(text, **kwargs)
    return InvalidRequestError(text, **kwargs)


class PddSettings(ConnectorSettings):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_GATEWAY, description="full POP gateway URL, ending in /api/router")
    client_id: str = Field(min_length=1)
    shop: str = Field("", description="our shop name; empty = the connector's name")
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    max_window_minutes: float = Field(30.0, gt=0, le=30, description="POP allows at most 30 minutes per query")
    carriers: dict[str, int] | None = Field(None, description="our carrier code → POP logistics_id, "
                                            "merged over the built-in table")
    rate_limit_per_s: float | None = Field(None, gt=0, description="client-side cap; None = 50/s "
                                           "(increment.get: 3000 calls per minute)")


class PddSecrets(ConnectorSecrets):
    client_secret: SecretStr
    access_token: SecretStr


@connector_kind("pdd", title="Pinduoduo (POP)")
class PddConnector(Connector, OrderSource, ShipmentSink, ReceiverSource, PushReceiver, PddStock):
    """One Pinduoduo shop (mall) through POP, authorised by its ``access_token``."""

    channel = "pinduoduo"
    Settings = PddSettings
    Secrets = PddSecrets
    settings: PddSettings
    secrets: PddSecrets

    #: POP indexes updates late: its own advice is to end a window no later than 3 minutes before
    #: its clock ("结束时间不小于拼多多系统时间前3min"), so stay 5 minutes behind and re-read 10.
    ingest_defaults: ClassVar[IngestDefaults] = IngestDefaults(
        lag=timedelta(minutes=5), overlap=timedelta(minutes=10), chunk=timedelta(hours=6),
        window=timedelta(minutes=30),
    )

    def __init__(self, name: str, settings: PddSettings, secrets: PddSecrets) -> None:  # type: ignore[override]
        super().__init__(name, settings, secrets)
        self.api = ApiClient(
            platform=PLATFORM,
            base_url=settings.base_url,
            check=self._check,
            limiter=RateLimiter(settings.rate_limit_per_s or DEFAULT_RATE_PER_S),
            timeout_s=settings.timeout_s,
        )
        self.carriers = {**CARRIERS, **{k.upper(): int(v) for k, v in (settings.carriers or {}).items()}}

    # --- transport -------------------------------------------------------------------------------

    def _build(self, api: str, params: Mapping[str, Any]) -> httpx.Request:
        common: dict[str, str] = {
            "type": api,
            "client_id": self.settings.client_id,
            "access_token": secret(self.secrets.access_token),
            "timestamp": pdd_timestamp(),
            "data_type": DATA_TYPE,
            "version": API_VERSION,
        }
        business = {k: v for k, v in ((k, param_value(v)) for k, v in params.items()) if v is not None}
        clash = set(common) & set(business)
        if clash:
            raise InvalidRequestError(f"{api}: business parameters shadow common ones: {sorted(clash)}",
                                      platform=PLATFORM)
        form = common | business
        form["sign"] = pdd_sign(form, secret(self.secrets.client_secret))
        return self.api.build("POST", self.settings.base_url, data=form, headers={"Accept": "application/json"})

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise TransientError(f"unreadable answer from the POP gateway (HTTP {response.status_code})",
                                 platform=PLATFORM) from None
        if not isinstance(body, dict):
            raise TransientError("unexpected JSON from the POP gateway (not an object)", platform=PLATFORM)
        return body

    def _check(self, response: httpx.Response) -> None:
        """Raise the classified error of an ``error_response`` inside the HTTP client, so that its
        limiter learns about throttling and its short retries cover transient answers."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the POP gateway", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the full POP gateway URL, .../api/router)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the POP gateway", code=str(status), platform=PLATFORM)
        body = self._decode(response)
        error = body.get("error_response")
        if isinstance(error, Mapping):
            raise classify_error(error, api=_api_of(response.request))

    async def _call(self, api: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(api, params))
        body = self._decode(response)
        answer = body.get(RESPONSE_KEYS.get(api, ""))
        if answer is None:
            candidates = [v for k, v in body.items() if k.endswith("_response") and k != "error_response"]
            answer = candidates[0] if len(candidates) == 1 else None
        if not isinstance(answer, dict):
            raise TransientError(f"{api}: the POP gateway answered without {RESPONSE_KEYS.get(api)!r}",
                                 platform=PLATFORM)
        return answer

    # --- orders ----------------------------------------------------------------------------------

    async def _increment_page(self, start: int, end: int, page: int) -> tuple[int, list[dict[str, Any]]]:
        answer = await self._call(TYPE_INCREMENT, {
            "start_updated_at": start,
            "end_updated_at": end,
            "order_status": 5,  # 全部
            "refund_status": 5,  # 全部
            "is_lucky_flag": 0,  # 全部
            "page": page,
            "page_size": self.settings.page_size,
            "use_has_next": False,  # we need total_count to start from the last page
        })
        total = _int(answer.get("total_count")) or 0
        orders = answer.get("order_sn_list")
        return total, [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []

    async def _window_pages(self, since: datetime, until: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of one window (≤ 30 min), from the last page back to the first, as read.

        POP: "必须采用倒序的分页方式（从最后一页往回取）才能避免漏单问题". An order updated while we page
        leaves the window and the rest move up a place; walking backwards turns that into a repeat
        (dropped by the caller) instead of a gap. When the total grows while we walk (orders entered
        the window), we walk again, at most 3 times. Page 1 is read first only to learn the total;
        unless it is the only page it is read again at the end of the walk.
        """
        start, end = unix_seconds(since), unix_seconds(until)
        size = self.settings.page_size
        total, first = await self._increment_page(start, end, 1)
        if total <= size:
            if first:
                yield first
            return
        for _ in range(MAX_WINDOW_PASSES):
            largest = total
            for page in range(max(1, math.ceil(total / size)), 0, -1):
                page_total, orders = await self._increment_page(start, end, page)
                largest = max(largest, page_total)
                if orders:
                    yield orders
            if largest <= total:
                break
            total = largest
        else:
            log.warning("pdd.window_kept_growing", connector=self.name, start=start, end=end, total=total)

    def _windows(self, since: datetime, until: datetime) -> Iterable[tuple[datetime, datetime]]:
        _require_aware(since, until)
        return time_windows(since, until, timedelta(minutes=self.settings.max_window_minutes))

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Orders updated in [since, until), one batch per increment page, handed over as read.

        The increment answer already holds each full order, so a page is yielded as soon as it is
        read. Each order_sn comes once per pull, again only when it was updated after the copy we
        yielded; within a batch, oldest update first. An entry without ``order_sn`` is skipped.
        """
        yielded: dict[str, datetime] = {}
        for start, end in self._windows(since, until):
            async for page in self._window_pages(start, end):
                records = _fresh([self._record(o) for o in page if _sn(o)], yielded)
                for record in records:
                    yielded[record.external_id] = record.modified_at or _NEVER
                if records:
                    yield records

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every order_sn POP lists as updated in [since, until), with its ``updated_at``, oldest
        first (for ``tongdao orders reconcile``)."""
        found: dict[str, datetime | None] = {}
        for start, end in self._windows(since, until):
            async for page in self._window_pages(start, end):
                for order in page:
                    sn = _sn(order)
                    if sn is None:
                        continue
                    updated = _updated(order)
                    known = found.get(sn)
                    if sn not in found or (updated is not None and (known is None or updated > known)):
                        found[sn] = updated
        return sorted(found.items(), key=lambda item: (item[1] or _NEVER, item[0]))

    def _record(self, order: dict[str, Any]) -> RawRecord:
        return RawRecord(external_id=_sn(order) or "", modified_at=_updated(order), payload=dict(order))

    async def _order_info(self, order_sn: str) -> dict[str, Any]:
        answer = await self._call(TYPE_INFORMATION, {"order_sn": order_sn})
        info = answer.get("order_info")
        if not isinstance(info, dict) or not info:
            raise NotFoundError(f"{TYPE_INFORMATION}: no order {order_sn}", platform=PLATFORM)
        return info

    async def get_order(self, external_id: str) -> RawRecord:
        return self._record(await self._order_info(_valid_sn(external_id)))

    # --- shipments -------------------------------------------------------------------------------

    def logistics_id(self, carrier_code: str) -> int:
        """POP's 快递公司编号 for one of our carrier codes (the ``carriers`` setting wins)."""
        code = carrier_code.strip().upper()
        if code.isdigit():
            return int(code)  # already a POP id
        if code not in self.carriers:
            raise InvalidRequestError(f"no POP logistics_id for carrier {carrier_code!r}; add it to the "
                                      f"connector's carriers setting (known: {', '.join(sorted(self.carriers))})",
                                      platform=PLATFORM)
        return self.carriers[code]

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """Write one parcel back. POP ships an order as a whole: the first parcel goes through
        ``pdd.logistics.online.send`` (the order becomes 已发货待签收); a further parcel of a split
        shipment (``line_ids`` given, POP having no line ids to take) is added with
        ``pdd.order.upload.extra.logistics`` (分包发货). Idempotent: before an extra parcel and after a
        refused send we read the order, and a tracking number POP already shows is answered
        ``taken=False`` with the numbers on the order, so the hub tells "ours" from a conflict. A
        refused send on an order that is not shipped (cancelled, refunded) raises."""
        order_sn = _valid_sn(external_order_id)
        logistics_id = self.logistics_id(shipment.carrier_code)
        split = bool(line_ids)
        if split:
            order = await self._order_info(order_sn)
            if _int(order.get("order_status")) in (SHIPPED, RECEIVED):
                return await self._extra_parcel(order_sn, order, logistics_id, shipment)
        try:
            answer = await self._call(TYPE_ONLINE_SEND, {
                "order_sn": order_sn, "logistics_id": logistics_id, "tracking_number": shipment.tracking_number,
            })
        except InvalidRequestError as exc:
            order = await self._order_info(order_sn)
            if _int(order.get("order_status")) not in (SHIPPED, RECEIVED):
                raise
            log.info("pdd.already_shipped", connector=self.name, order_sn=order_sn, error=exc.code)
            if split:
                return await self._extra_parcel(order_sn, order, logistics_id, shipment)
            return WriteBackResult(taken=False, tracking_on_platform=sorted(_tracking_numbers(order)))
        if answer.get("is_success") in (False, "false"):
            raise InvalidRequestError(f"{TYPE_ONLINE_SEND}: POP did not take order {order_sn}", platform=PLATFORM)
        return WriteBackResult(taken=True)

    async def _extra_parcel(self, order_sn: str, order: Mapping[str, Any], logistics_id: int,
                            shipment: Shipment) -> WriteBackResult:
        """One more parcel of an order POP already shows as shipped."""
        known = _tracking_numbers(order)
        if shipment.tracking_number in known:
            return WriteBackResult(taken=False, tracking_on_platform=sorted(known))
        answer = await self._call(TYPE_EXTRA_LOGISTICS, {
            "order_sn": order_sn,
            "extra_track_type": EXTRA_TRACK_SPLIT,
            "extra_track_list": [{"shipping_id": logistics_id, "tracking_number": shipment.tracking_number}],
        })
        if answer.get("success") in (False, "false"):
            raise InvalidRequestError(f"{TYPE_EXTRA_LOGISTICS}: POP did not take the parcel of {order_sn}",
                                      platform=PLATFORM)
        return WriteBackResult(taken=True)

    # --- receivers -------------------------------------------------------------------------------

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """Clear receiver of one order through ``pdd.open.decrypt.batch`` (data_tag = order_sn).

        POP sends ``receiver_name``, ``receiver_phone`` and ``receiver_address`` (without province,
        city and district) as ciphertext; province, city and ``town`` (区县) come in clear. The clear
        values are returned to the caller only, never logged. A virtual number (虚拟号) keeps its
        extension as ``mobile-extension``.
        """
        order_sn = _valid_sn(str(payload.get("order_sn") or ""))
        wanted = {"name": "receiver_name", "mobile": "receiver_phone", "street": "receiver_address"}
        cipher = {field: str(payload.get(key) or "") for field, key in wanted.items()}
        todo = sorted({c for c in cipher.values() if c})
        clear: dict[str, dict[str, Any]] = {}
        for offset in range(0, len(todo), DECRYPT_BATCH):
            batch = todo[offset:offset + DECRYPT_BATCH]
            answer = await self._call(TYPE_DECRYPT, {
                "data_list": [{"data_tag": order_sn, "encrypted_data": c} for c in batch],
            })
            for item in answer.get("data_decrypt_list") or []:
                if isinstance(item, dict):
                    clear[str(item.get("encrypted_data") or "")] = item
        result: dict[str, str] = {}
        for field, value in cipher.items():
            if not value:
                continue
            item = clear.get(value)
            if item is None:
                raise TransientError(f"{TYPE_DECRYPT}: no answer for the {field} of {order_sn}", platform=PLATFORM)
            code = _int(item.get("error_code"))
            if code not in (0, None):
                raise classify_error({"error_code": code, "error_msg": item.get("error_msg")}, api=TYPE_DECRYPT)
            text = str(item.get("decrypted_data") or "")
            if field == "mobile" and _int(item.get("virtual_number_type")) == 1 and item.get("virtual_identify_number"):
                text = f"{text}-{item['virtual_identify_number']}"
            result[field] = text
        for field, key in (("province", "province"), ("city", "city"), ("district", "town")):
            if payload.get(key):
                result[field] = str(payload[key])
        return result

    # --- pushes ----------------------------------------------------------------------------------

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        """A POP message-service frame (消息服务, e.g. ``pdd_trade_TradeModified``) relayed to
        ``POST /hooks/{connector}``.

        POP delivers messages over its WebSocket message service, not as HTTP calls, so a bridge
        relays each frame as it arrived. The relay is authenticated the POP way: query
        ``client_id``, ``timestamp`` (unix seconds, ±10 minutes) and ``sign`` = POP signature over
        ``client_id``, ``timestamp`` and ``body`` (the frame's text). Forged or stale → 401. Each
        order message becomes one ``order_changed`` event whose ``event_id`` is the frame ``id``, so
        a redelivered frame is dropped by the engine; the answer is the service's ``Ack`` frame.
        """
        text = body.decode("utf-8", errors="replace")
        if not self._push_signed(query, text):
            return PushResult(status_code=401, body=json.dumps(
                {"error_response": {"error_code": 401, "error_msg": "invalid signature"}}))
        try:
            frame = json.loads(text)
        except json.JSONDecodeError:
            return PushResult(status_code=400, body=json.dumps({"error": "body is not JSON"}))
        events: list[dict[str, Any]] = []
        message = frame.get("message") if isinstance(frame, dict) else None
        if isinstance(message, dict) and str(message.get("type") or "").startswith("pdd_trade_"):
            content = message.get("content")
            if isinstance(content, str):
                try:
                    content = json.loads(content)
                except json.JSONDecodeError:
                    content = {}
            sn = str((content or {}).get("tid") or "") if isinstance(content, dict) else ""
            if sn:
                events.append({"type": "order_changed", "external_id": sn,
                               "event_id": f"pdd:{frame.get('id')}:{message.get('type')}", "record": None})
        ack = {"commandType": "Ack", "id": frame.get("id") if isinstance(frame, dict) else None,
               "sendTime": int(datetime.now(UTC).timestamp() * 1000)}
        return PushResult(events=events, body=json.dumps(ack))

    def _push_signed(self, query: Mapping[str, str], text: str) -> bool:
        sign = query.get("sign", "")
        stamp = _int(query.get("timestamp"))
        if not sign or stamp is None or query.get("client_id") != self.settings.client_id:
            return False
        if abs(datetime.now(UTC).timestamp() - stamp) > 600:
            return False
        expected = pdd_sign({"client_id": query["client_id"], "timestamp": str(stamp), "body": text},
                            secret(self.secrets.client_secret))
        return _same(sign.upper(), expected)

    # --- connectivity ----------------------------------------------------------------------------

    async def test(self) -> str:
        """One signed increment.get over the last 5 minutes, then the carrier table against
        ``pdd.logistics.companies.get``."""
        until = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
        since = until - timedelta(minutes=5)
        total, _ = await self._increment_page(unix_seconds(since), unix_seconds(until), 1)
        answer = await self._call(TYPE_COMPANIES, {})
        companies = {_int(c.get("id")) for c in answer.get("logistics_companies") or [] if isinstance(c, dict)
                     and _int(c.get("available")) != 0}
        unknown = sorted(code for code, lid in self.carriers.items() if lid not in companies)
        note = f"; carriers POP does not list as available: {', '.join(unknown)}" if unknown else ""
        return f"ok: {total} orders updated between 8 and 3 min ago (client_id {self.settings.client_id}){note}"


# --- helpers --------------------------------------------------------------------------------------

_NEVER = datetime.min.replace(tzinfo=UTC)


def _api_of(request: httpx.Request) -> str:
    try:
        form = dict(httpx.QueryParams(request.content.decode("utf-8")))
    except (UnicodeDecodeError, httpx.RequestNotRead):
        return "POP call"
    return form.get("type", "POP call")


def _sn(order: Mapping[str, Any]) -> str | None:
    value = order.get("order_sn")
    return str(value) if value not in (None, "") else None


def _valid_sn(external_id: str) -> str:
    sn = str(external_id).strip()
    if not _ORDER_SN.match(sn):
        raise InvalidRequestError(f"a Pinduoduo order_sn looks like 200909-452750051, not {external_id!r}",
                                  platform=PLATFORM)
    return sn


def _updated(order: Mapping[str, Any]) -> datetime | None:
    value = order.get("updated_at")
    if not value:
        return None
    try:
        return parse_pdd_time(str(value))
    except ValueError:
        return None


def _tracking_numbers(order: Mapping[str, Any]) -> set[str]:
    """The waybill numbers POP shows for an order: its own and the extra parcels'."""
    numbers = {str(order["tracking_number"])} if order.get("tracking_number") else set()
    for extra in order.get("extra_delivery_list") or []:
        if isinstance(extra, Mapping) and extra.get("tracking_number"):
            numbers.add(str(extra["tracking_number"]))
    return numbers


def _fresh(records: list[RawRecord], yielded: Mapping[str, datetime]) -> list[RawRecord]:
    """Records not yet handed over (or updated since), each once, oldest update first."""
    latest: dict[str, RawRecord] = {}
    for record in records:
        moment = record.modified_at or _NEVER
        if record.external_id in yielded and moment <= yielded[record.external_id]:
            continue
        known = latest.get(record.external_id)
        if known is None or moment > (known.modified_at or _NEVER):
            latest[record.external_id] = record
    return sorted(latest.values(), key=lambda r: (r.modified_at or _NEVER, r.external_id))


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
