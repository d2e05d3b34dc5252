"""Taobao / Tmall over TOP (淘宝开放平台): incremental order pull, tracking write-back, OAID receivers.

Wire protocol (TOP "API调用方法详解", open.taobao.com docId=101617):

* ``POST {base_url}`` (the full gateway URL, e.g. ``https://eco.taobao.com/router/rest``) with the
  system parameters in the query string and the business parameters form-encoded in the body, as
  the official SDKs send them; ``format=json``, ``v=2.0``; ``timestamp`` is "yyyy-MM-dd HH:mm:ss"
  in GMT+8 and ``sign`` covers every parameter (see :mod:`connectors.taobao.signing`). A fresh
  timestamp and signature are made for every attempt.
* A successful answer is ``{"<method without 'taobao.', dots as '_'>_response": {...}}``; a failed
  one is ``{"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}``.

Calls used:

* ``taobao.trades.sold.increment.get`` (apiId=128): "一次请求只能查询时间跨度为一天的增量交易记录,
  即end_modified - start_modified <= 1天" and "返回的数据结果是以订单的修改时间倒序排列的,通过从后往前
  翻页的方式可以避免漏单问题"; ``page_no``: "注:必须采用倒序的分页方式(从最后一页往回取)才能避免漏单问题";
  ``page_size`` 1..100; ``use_has_next=true`` drops ``total_results`` (so it cannot tell which
  page is the last), hence we ask with ``use_has_next=false`` for the total and walk from the last
  page back to the first. The results carry only part of each trade.
* ``taobao.trade.fullinfo.get`` (apiId=54) for the full trade of every tid.
* ``taobao.logistics.offline.send`` (自己联系物流发货) with ``tid``, ``out_sid``, ``company_code``, and for
  one package of a split shipment ``is_split=1`` ("表明是否是拆单，默认值0，1表示拆单") with ``sub_tid``
  ("需要拆单发货的子订单集合 ... 1次可传人多个子订单号，子订单间用逗号隔开；为空表示不做拆单发货");
  ``isv.logistics-offline-service-error:B04`` ("订单状态不对该物流订单已经发货或者已关闭，不能重复发货")
  is answered when the trade (or those lines) is already shipped, or closed, so we look at the
  trade (Order ``invoice_no`` / ``consign_time`` per oid) to decide.
* ``taobao.top.oaid.decrypt`` (OAID解密, 隐私保护API, apiId=54714) for a shippable receiver of a masked
  trade, see :meth:`TaobaoConnector.shippable_receiver`. Apps on TOP's privacy scheme get ``receiver_*``
  masked (脱敏) in ``fullinfo`` plus the trade's ``oaid`` (收件人ID, "OAID通过加密生成 ... 可以用于订单合单,
  电子面单生成打印, 服务短信发送, 订单敏感信息解密等场景", 隐私字段名词解释 articleId=120397); Trade.oaid
  is only there when asked for in ``fields`` and when "(收货人+手机号+收货地址+create) 4字段返回值都不能为空".
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

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
    PermanentError,
    ThrottledError,
    TransientError,
)
from connectors.http import ApiClient
from connectors.pagination import time_windows
from connectors.ratelimit import RateLimiter
from connectors.taobao.signing import format_top_time, param_value, parse_top_time, top_sign, top_timestamp
from connectors.taobao.stock import TaobaoStock

log = structlog.get_logger("tongdao.taobao")

T = TypeVar("T")

PLATFORM = "taobao"
API_VERSION = "2.0"
DEFAULT_GATEWAY = "https://eco.taobao.com/router/rest"

METHOD_INCREMENT = "taobao.trades.sold.increment.get"
METHOD_FULLINFO = "taobao.trade.fullinfo.get"
METHOD_OFFLINE_SEND = "taobao.logistics.offline.send"
METHOD_OAID_DECRYPT = "taobao.top.oaid.decrypt"

#: the example value the fullinfo documentation gives for ``fields``
DOC_FULLINFO_FIELDS = "tid,type,status,payment,orders,promotion_details"
#: what the order mapping needs on top of it (all fields of the documented Trade structure)
DEFAULT_FULLINFO_FIELDS = DOC_FULLINFO_FIELDS + (
    ",seller_nick,buyer_nick,buyer_open_uid,created,modified,pay_time,consign_time,end_time"
    ",total_fee,post_fee,discount_fee,adjust_fee,buyer_message,seller_memo,shipping_type"
    ",receiver_name,receiver_country,receiver_state,receiver_city,receiver_district,receiver_town"
    ",receiver_address,receiver_zip,receiver_mobile,receiver_phone,step_trade_status,step_paid_fee,oaid"
)
#: fields every fullinfo request carries, whatever the settings say (ids, cursor, shop, and the OAID:
#: without it a masked receiver would look like a clear one and be shipped to "王**")
REQUIRED_FULLINFO_FIELDS = ("tid", "modified", "seller_nick", "oaid")
INCREMENT_FIELDS = "tid,modified,seller_nick"
#: what a reconcile listing needs: ids and the modification time, nothing else
LIST_FIELDS = "tid,modified"
#: after B04: the trade's state and, per order line, its status, consign time and waybill (invoice_no)
STATUS_FIELDS = "tid,status,consign_time,orders"

MAX_PAGE_SIZE = 100
#: passes over one window when its total grows while we page (new trades pushed the list down)
MAX_WINDOW_PASSES = 3

#: trade states after the seller shipped the whole trade
SHIPPED_STATUSES = frozenset({"WAIT_BUYER_CONFIRM_GOODS", "TRADE_BUYER_SIGNED", "TRADE_FINISHED"})
#: trade states in which nothing can have been consigned by us: closed (TRADE_CLOSED "付款以后用户退款成功，
#: 交易自动关闭", TRADE_CLOSED_BY_TAOBAO "付款以前，卖家或买家主动关闭交易") or not paid yet
NOT_SHIPPABLE_STATUSES = frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO", "WAIT_BUYER_PAY", "TRADE_NO_CREATE_PAY"})

# --- error taxonomy (TOP "错误码一览": platform codes < 100, isp.* = server side, isv.* = caller) ------
THROTTLE_CODES = frozenset({4, 5, 6, 7, 8})  # 7 App Call Limited (4/5/6/8: older call-limit codes)
AUTH_CODES = frozenset({
    11, 12, 13,  # insufficient ISV / user / partner permissions
    24, 25,  # missing / invalid signature
    26, 27,  # missing / invalid session
    28, 29,  # missing / invalid app key
    42,  # forbidden request
    53,  # authorisation (as the brief lists it)
})
TRANSIENT_CODES = frozenset({10, 15})  # service currently unavailable / remote service error (isp.*)
INVALID_CODES = frozenset({9, 21, 22, 23, 30, 31, 32, 33, 34, 40, 41, 43, 47})
SESSION_SUB_CODES = ("invalid-sessionkey", "session-expired", "session-not-exist", "invalid-session")
INVALID_SUB_PREFIXES = ("isv.missing-parameter", "isv.invalid-parameter", "isv.parameters-mismatch")
NOT_FOUND_SUB_CODES = frozenset({
    "isv.trade-not-exist",
    "isv.logistics-offline-service-error:B01",  # 订单不存在
    "isv.logistics-offline-service-error:P02",  # 订单不存在
    "isv.logistics-offline-service-error:ORDER_NOT_FOUND_ERROR",
})
#: isv.* answers that say "try again later"
TRANSIENT_SUB_CODES = frozenset({
    "isv.logistics-offline-service-error:B150",  # 发货异常，请稍等后重试
    "isv.logistics-offline-service-error:S01",  # 数据异常，稍后请重试
})
ALREADY_SHIPPED_SUB_CODES = frozenset({"isv.logistics-offline-service-error:B04"})
ALREADY_SHIPPED_MARKERS = ("不能重复发货", "已经发货", "已发货")

# --- OAID (taobao.top.oaid.decrypt, apiId=54714) ----------------------------------------------------
#: ReceiverQuery.scene: "解密场景编号。不同场景,解密策略不同 ... 1001(顺丰电子面单发货)、1002(4通一达电子面单
#: 发货)、1003(EMS电子面单发货)、1004(其他电子面单发货)、1005(线下门店发货)、1006(手工单发货)、1007(代发货)";
#: the after-sales / care scenes (2001, 2002) return the phone only and are no use for shipping
OaidScene = Literal["1001", "1002", "1003", "1004", "1005", "1006", "1007"]
#: "收件人ID (Open Addressee ID),长度在128个字符之内"
MAX_OAID_LENGTH = 128
#: decrypt Receiver field -> our shippable_receiver key ("only what TOP gives": no zip, no country)
DECRYPT_FIELDS = {"name": "name", "mobile": "mobile", "phone": "phone", "state": "province", "city": "city",
                  "district": "district", "town": "town", "address_detail": "street"}
#: a trade that is not masked: its own receiver_* fields
TRADE_RECEIVER_FIELDS = {"receiver_name": "name", "receiver_mobile": "mobile", "receiver_phone": "phone",
                         "receiver_state": "province", "receiver_city": "city", "receiver_district": "district",
                         "receiver_town": "town", "receiver_address": "street", "receiver_zip": "postal_code"}

_BAN_SECONDS = re.compile(r"ban will last for\s+(\d+(?:\.\d+)?)\s+more seconds", re.IGNORECASE)


def response_key(method: str) -> str:
    """``taobao.trade.fullinfo.get`` → ``trade_fullinfo_get_response``."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


def ban_seconds(sub_msg: str) -> float | None:
    """Seconds out of TOP's "This ban will last for N more seconds"."""
    match = _BAN_SECONDS.search(sub_msg or "")
    return float(match.group(1)) if match else None


def _int_code(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def classify_error(
    error: Mapping[str, Any], *, method: str, redact: Callable[[str], str] = lambda s: s
) -> ConnectorError:
    """Turn a TOP ``error_response`` into the connector error taxonomy."""
    code = _int_code(error.get("code"))
    sub_code = str(error.get("sub_code") or "").strip()
    msg = redact(str(error.get("msg") or "").strip())
    sub_msg = redact(str(error.get("sub_msg") or "").strip())
    sub_low = sub_code.lower()
    text = f"{method}: {msg or 'error'}"
    if sub_code or sub_msg:
        text += f" ({'; '.join(p for p in (sub_code, sub_msg) if p)})"
    kwargs: dict[str, Any] = {
        "code": sub_code or (str(code) if code is not None else None),
        "platform": PLATFORM,
        "details": {"top_code": code, "sub_code": sub_code or None,
                    "request_id": str(error.get("request_id") or "") or None},
    }
    if code in THROTTLE_CODES or sub_low.startswith("accesscontrol.") or (
        sub_low.startswith("isp.") and "limit" in sub_low
    ):
        return ThrottledError(text, retry_after=ban_seconds(sub_msg) or 1.0, **kwargs)
    if code in AUTH_CODES or any(marker in sub_low for marker in SESSION_SUB_CODES):
        return AuthError(text, **kwargs)
    if sub_low.startswith("isp.") or sub_code in TRANSIENT_SUB_CODES:
        return TransientError(text, **kwargs)
    if sub_code in NOT_FOUND_SUB_CODES:
        return NotFoundError(text, **kwargs)
    if code in INVALID_CODES or sub_low.startswith(INVALID_SUB_PREFIXES):
        if code == 31:
            text += " - the clock of this host may be more than 10 minutes off"
        return InvalidRequestError(text, **kwargs)
    if code in TRANSIENT_CODES and not sub_low.startswith("isv."):
        return TransientError(text, **kwargs)
    # code 15 with an isv.* sub_code: the platform rejected this request on business rules
    return InvalidRequestError(text, **kwargs)


class TaobaoSettings(ConnectorSettings):
    # a wrong value must not echo its input (the session) into the validation message
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_GATEWAY, description="full TOP gateway URL, ending in /router/rest")
    app_key: str = Field(min_length=1)
    session: str = Field("", repr=False, description="the seller's authorised session (access token); "
                         "may be given as secrets.session instead, which keeps it encrypted")
    sign_method: Literal["md5", "hmac", "hmac-sha256"] = "hmac-sha256"
    shop: str = Field("", description="our shop name; empty = the trade's seller_nick")
    page_size: int = Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    max_window_hours: float = Field(24.0, gt=0, le=24, description="TOP allows at most one day per query")
    fullinfo_fields: str = Field(DEFAULT_FULLINFO_FIELDS, min_length=1)
    fullinfo_concurrency: int = Field(8, ge=1, le=64)
    oaid_scene: OaidScene = Field("1004", description="taobao.top.oaid.decrypt scene; 1004 = 其他电子面单发货 "
                                  "(the WMS prints an e-waybill of whichever carrier); 1001/1002/1003 when the "
                                  "warehouse ships only with SF / the 4通一达 / EMS")
    rate_limit_per_s: float | None = Field(None, gt=0, description="client-side cap; None = platform default")

    @field_validator("fullinfo_fields")
    @classmethod
    def _fields(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        names += [n for n in REQUIRED_FULLINFO_FIELDS if n not in names]
        return ",".join(names)


class TaobaoSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    app_secret: SecretStr
    session: SecretStr | None = None


@connector_kind("taobao", title="Taobao / Tmall (TOP)")
class TaobaoConnector(Connector, OrderSource, ShipmentSink, ReceiverSource, TaobaoStock):
    Settings = TaobaoSettings
    Secrets = TaobaoSecrets

    #: How the engine should run ``pull_orders`` for Taobao:
    #: * ``window`` 1 h (TOP allows at most one day per increment query, "end_modified -
    #:   start_modified <= 1天"; an hour of a busy shop is a few dozen pages, so a retried activity
    #:   loses little and the checkpoint moves often);
    #: * ``chunk`` 1 day: one activity per TOP day, so a 90-day backfill (the increment API's reach,
    #:   "只能获取到三个月以内的交易信息") is 90 activities;
    #: * ``overlap`` 5 min: TOP indexes ``modified`` with a short delay, so a trade modified just before
    #:   the cursor can show up in the listing after we passed it; re-reading costs one dedupe;
    #: * ``lag`` 5 s: the demo creates trades ~10 s in the past and expects the first run to see
    #:   them; a production shop that sees late-indexed trades should raise it per source.
    ingest_defaults = IngestDefaults(lag=timedelta(seconds=5), overlap=timedelta(minutes=5),
                                     chunk=timedelta(days=1), window=timedelta(hours=1))

    settings: TaobaoSettings
    secrets: TaobaoSecrets

    def __init__(self, name: str, settings: TaobaoSettings, secrets: TaobaoSecrets) -> None:
        super().__init__(name, settings, secrets)
        if not secret(secrets.app_secret):
            raise ConfigurationError(f"connector {name!r} (taobao): app_secret must not be empty")
        if not self._session():
            raise ConfigurationError(f"connector {name!r} (taobao): the seller's session is required "
                                     "(settings.session or secrets.session)")
        url = httpx.URL(settings.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"connector {name!r} (taobao): base_url must be an absolute http(s) URL")
        self.api = ApiClient(
            platform=PLATFORM,
            base_url="",
            check=self._check_response,
            limiter=RateLimiter(settings.rate_limit_per_s),
            timeout_s=settings.timeout_s,
        )

    def shop_of(self, payload: dict[str, Any]) -> str:
        """The ``shop`` setting, else the trade's seller nick."""
        return self.settings.shop or str(payload.get("seller_nick") or self.name)

    def __repr__(self) -> str:
        return f"<TaobaoConnector {self.name!r} app_key={self.settings.app_key!r} url={self.settings.base_url!r}>"

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if described["settings"].get("session"):
            described["settings"]["session"] = "********"
        return described

    # --- transport -----------------------------------------------------------------------------

    def _session(self) -> str:
        return secret(self.secrets.session) or self.settings.session

    def _redact(self, text: str, *extra: str) -> str:
        return self.redact_secrets(text, self.settings.session, *extra)

    def _build(self, method: str, params: Mapping[str, Any]) -> httpx.Request:
        """A freshly stamped and signed request (one per attempt: the signature covers the time)."""
        system = {
            "method": method,
            "app_key": self.settings.app_key,
            "session": self._session(),
            "timestamp": top_timestamp(),
            "format": "json",
            "v": API_VERSION,
            "sign_method": self.settings.sign_method,
        }
        business = {k: v for k, v in ((k, param_value(v)) for k, v in params.items()) if v is not None}
        clash = set(system) & set(business)
        if clash:
            raise InvalidRequestError(f"{method}: business parameters shadow system ones: {sorted(clash)}",
                                      platform=PLATFORM)
        system["sign"] = top_sign(system | business, secret(self.secrets.app_secret), self.settings.sign_method)
        return self.api.build("POST", self.settings.base_url, params=system, data=business,
                              headers={"Accept": "application/json"})

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise TransientError(f"unreadable answer from the TOP gateway (HTTP {response.status_code}, "
                                 f"{response.headers.get('content-type', 'no content-type')})",
                                 platform=PLATFORM) from None
        if not isinstance(body, dict):
            raise TransientError("unexpected JSON from the TOP gateway (not an object)", platform=PLATFORM)
        return body

    def _error_for(self, response: httpx.Response, error: Mapping[str, Any]) -> ConnectorError:
        request = response.request
        method = request.url.params.get("method", "TOP call")
        return classify_error(error, method=method,
                              redact=lambda s: self._redact(s, request.url.params.get("sign", "")))

    def _check_response(self, response: httpx.Response) -> None:
        """Raise the classified error of an ``error_response``; long bans are left to the caller,
        so that the HTTP client does not sleep for hours (Temporal waits instead)."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the TOP gateway", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the full TOP gateway URL, .../router/rest)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the TOP gateway", code=str(status), platform=PLATFORM)
        body = self._decode(response)
        error = body.get("error_response")
        if isinstance(error, Mapping):
            exc = self._error_for(response, error)
            if isinstance(exc, ThrottledError) and (exc.retry_after or 0) > self.api.retry.max_s:
                return
            raise exc

    async def _call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(method, params))
        body = self._decode(response)
        error = body.get("error_response")
        if isinstance(error, Mapping):
            raise self._error_for(response, error)
        key = response_key(method)
        answer = body.get(key)
        if answer is None:
            candidates = [v for k, v in body.items() if k.endswith("_response")]
            answer = candidates[0] if len(candidates) == 1 else None
        if not isinstance(answer, dict):
            raise TransientError(f"{method}: the TOP gateway answered without {key!r}", platform=PLATFORM)
        return answer

    # --- orders --------------------------------------------------------------------------------

    async def _increment_page(self, start: str, end: str, page_no: int, page_size: int,
                              fields: str = INCREMENT_FIELDS) -> tuple[int, list[dict[str, Any]]]:
        answer = await self._call(METHOD_INCREMENT, {
            "fields": fields,
            "start_modified": start,
            "end_modified": end,
            "page_no": page_no,
            "page_size": page_size,
            "use_has_next": False,  # we need total_results to know which page is the last
        })
        total = _int_code(answer.get("total_results")) or 0
        return total, _listed(answer.get("trades"), "trade")

    async def _window_pages(self, since: datetime, until: datetime,
                            fields: str = INCREMENT_FIELDS) -> AsyncIterator[list[dict[str, Any]]]:
        """Increment pages of one window (≤ 1 day), from the last page back to the first, as read.

        Trades are listed newest-modified first; one modified while we page leaves the window and
        the rest move up a place. Walking from the last page to the first turns that move into a
        repeat (the caller drops it) instead of a gap. A trade that *enters* the window while we
        page pushes the list down, so when the total grows we walk again (at most 3 passes).
        The first call (page 1) only learns the total, unless it is the only page; it is not handed
        over, so that what the caller sees comes oldest first as far as the walk allows.
        """
        start, end = format_top_time(since), format_top_time(until)
        size = self.settings.page_size
        total, first = await self._increment_page(start, end, 1, size, fields)
        if total <= size:  # one page: nothing can slip between pages
            log.debug("taobao.window", connector=self.name, start=start, end=end, total=total)
            if first:
                yield first
            return
        for _ in range(MAX_WINDOW_PASSES):
            largest = total
            for page_no in range(max(1, math.ceil(total / size)), 0, -1):
                page_total, trades = await self._increment_page(start, end, page_no, size, fields)
                largest = max(largest, page_total)
                if trades:
                    yield trades
            if largest <= total:
                break
            total = largest
        else:
            log.warning("taobao.window_kept_growing", connector=self.name, start=start, end=end, total=total)
        log.debug("taobao.window", connector=self.name, start=start, end=end, total=total)

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Full trades modified in [since, until), one batch per increment page, handed over as
        soon as that page's trades are fetched (so the engine checkpoints and heartbeats while a
        big window is still being walked). Each tid comes once per pull, again only if it was
        modified after the copy we yielded; within a batch, oldest modification first.

        A trade whose fullinfo fails for a reason that will not go away (an ``isv.*`` refusal of
        that one trade) comes as a ``RawRecord`` with ``error`` set and the listing's partial trade
        as payload, so the engine quarantines it and the window moves on; a trade that vanished
        (not found) is skipped; throttling, transient and credential errors still raise.
        """
        _require_aware(since, until)
        width = timedelta(hours=self.settings.max_window_hours)
        yielded: dict[str, datetime] = {}
        for start, end in time_windows(since, until, width):
            async for page in self._window_pages(start, end):
                todo = _fresh(page, yielded)
                if not todo:
                    continue
                records = await self._full_records(todo)
                for record in records:
                    yielded[record.external_id] = record.modified_at or datetime.min.replace(tzinfo=UTC)
                if records:
                    yield records

    async def list_order_ids(self, since: datetime, until: datetime) -> list[tuple[str, datetime | None]]:
        """Every tid the platform lists as modified in [since, until), with its ``modified``, oldest
        first: the increment listing alone (fields ``tid,modified``, every page, no fullinfo), for
        a reconcile that compares what the source lists with what the hub holds."""
        _require_aware(since, until)
        width = timedelta(hours=self.settings.max_window_hours)
        found: dict[str, datetime | None] = {}
        for start, end in time_windows(since, until, width):
            async for page in self._window_pages(start, end, fields=LIST_FIELDS):
                for trade in page:
                    tid = _tid(trade)
                    if tid is None:
                        continue
                    modified = _parse_modified(trade)
                    known = found.get(tid)
                    if tid not in found or (modified is not None and (known is None or modified > known)):
                        found[tid] = modified
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(found.items(), key=lambda item: (item[1] or never, int(item[0]) if item[0].isdigit() else 0))

    async def _full_records(self, partial: list[dict[str, Any]]) -> list[RawRecord]:
        limit = asyncio.Semaphore(self.settings.fullinfo_concurrency)

        async def one(trade: dict[str, Any]) -> RawRecord | None:
            async with limit:
                tid = _tid(trade) or ""
                try:
                    full = await self._fullinfo(tid)
                except NotFoundError:
                    log.warning("taobao.listed_trade_not_found", connector=self.name, tid=tid)
                    return None
                except (AuthError, ConfigurationError):
                    raise  # the whole connector is refused, not this trade
                except PermanentError as exc:
                    log.warning("taobao.trade_unreadable", connector=self.name, tid=tid, error=str(exc))
                    return self._failed_record(trade, exc)
                return self._record(full, fallback=trade)

        results = await _gather_or_cancel([one(t) for t in partial])
        return [r for r in results if r is not None]

    def _failed_record(self, partial: dict[str, Any], exc: ConnectorError) -> RawRecord:
        """The listing's partial trade, marked with why its full copy could not be read."""
        payload = dict(partial)
        if not payload.get("seller_nick") and self.settings.shop:
            payload["seller_nick"] = self.settings.shop
        tid = _tid(payload) or ""
        reason = f"{METHOD_FULLINFO} refused tid {tid}: {exc.message}"
        if exc.code and exc.code not in reason:
            reason += f" [{exc.code}]"
        return RawRecord(external_id=tid, modified_at=_parse_modified(payload), payload=payload, error=reason)

    async def _fullinfo(self, tid: str, fields: str | None = None) -> dict[str, Any]:
        answer = await self._call(METHOD_FULLINFO, {"fields": fields or self.settings.fullinfo_fields, "tid": tid})
        trade = answer.get("trade")
        if not isinstance(trade, dict) or not trade:
            raise NotFoundError(f"{METHOD_FULLINFO}: no trade {tid}", code="isv.trade-not-exist", platform=PLATFORM)
        return trade

    def _record(self, trade: dict[str, Any], fallback: Mapping[str, Any] | None = None) -> RawRecord:
        payload = dict(trade)
        if not payload.get("seller_nick"):
            nick = (fallback or {}).get("seller_nick") or self.settings.shop
            if nick:
                payload["seller_nick"] = nick
        tid = _tid(payload) or _tid(fallback or {})
        if tid is None:
            raise TransientError(f"{METHOD_FULLINFO}: trade without tid", platform=PLATFORM)
        modified = _parse_modified(payload) or _parse_modified(fallback or {})
        return RawRecord(external_id=tid, modified_at=modified, payload=payload)

    async def get_order(self, external_id: str) -> RawRecord:
        tid = _valid_tid(external_id)
        return self._record(await self._fullinfo(tid))

    # --- shipments -----------------------------------------------------------------------------

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """``taobao.logistics.offline.send`` (自己联系物流发货) for the whole trade, or with
        ``line_ids`` (oids) for one package of a split shipment: ``is_split=1`` ("表明是否是拆单，
        默认值0，1表示拆单") and ``sub_tid`` = the oids comma-separated ("需要拆单发货的子订单集合 ...
        子订单间用逗号隔开；为空表示不做拆单发货"). Idempotent: a repeat is answered B04 (不能重复发货);
        we then read the trade and return ``taken=False`` with the waybill numbers TOP shows for
        those lines, and the caller decides whether a different number is a conflict. B04 on a
        trade that is closed or unpaid (nothing shipped) is a refusal and raises."""
        tid = _valid_tid(external_order_id)
        oids = _valid_oids(line_ids)
        params: dict[str, Any] = {"tid": tid, "out_sid": shipment.tracking_number,
                                  "company_code": shipment.carrier_code}
        if oids:
            params |= {"is_split": 1, "sub_tid": ",".join(oids)}
        try:
            answer = await self._call(METHOD_OFFLINE_SEND, params)
        except InvalidRequestError as exc:
            if not _already_shipped(exc):
                raise
            return await self._already_recorded(tid, oids, shipment, exc)
        shipping = answer.get("shipping")
        if isinstance(shipping, Mapping) and shipping.get("is_success") in (False, "false"):
            raise InvalidRequestError(f"{METHOD_OFFLINE_SEND}: the platform did not take tid {tid}",
                                      platform=PLATFORM)
        return WriteBackResult(taken=True)

    async def _already_recorded(self, tid: str, oids: list[str], shipment: Shipment,
                                exc: InvalidRequestError) -> WriteBackResult:
        """After B04: what the trade shows for the lines of this package (all lines when whole)."""
        trade = await self._fullinfo(tid, STATUS_FIELDS)
        status = str(trade.get("status") or "")
        lines = _listed(trade.get("orders"), "order")
        scope = [o for o in lines if str(o.get("oid_str") or o.get("oid")) in oids] if oids else lines
        shipped = status in SHIPPED_STATUSES or any(_line_consigned(o) for o in scope)
        if status in NOT_SHIPPABLE_STATUSES or not shipped:
            raise InvalidRequestError(f"{exc.message}; the trade is {status or 'in an unknown state'}, "
                                      "not shipped", code=exc.code, platform=PLATFORM, details=exc.details) from None
        tracking = sorted(_tracking_numbers(scope)) or sorted(_tracking_numbers(lines))
        log.info("taobao.already_shipped", connector=self.name, tid=tid, status=status, oids=oids or None,
                 same_tracking=(shipment.tracking_number in tracking) if tracking else None)
        return WriteBackResult(taken=False, tracking_on_platform=tracking)

    # --- receivers -----------------------------------------------------------------------------

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """Clear receiver of one trade, for the WMS document only (never stored or logged).

        A trade without ``oaid`` is not masked: its own ``receiver_*`` fields are returned. A masked
        trade is decrypted with ``taobao.top.oaid.decrypt`` (OAID解密, apiId=54714), ``query_list`` =
        one ReceiverQuery ``{oaid, tid, scene}`` ("解密请求列表,最多支持20个"; oaid and tid 必须, scene
        from the ``oaid_scene`` setting), sent as JSON the way the SDKs serialise object lists. The
        answer's ``receiver_list`` gives ``name``, ``mobile`` ("privacy_protection=true是为隐私号,格式为
        18877771111-123": kept as given, the carrier dials it), ``phone``, ``address_detail``,
        ``state``/``city``/``district``/``town``; only what TOP gives is returned (no zip: the hub
        keeps the trade's own ``receiver_zip``).

        ``matched`` ("oaid是否和tid当前的oaid匹配 ... 当不匹配时，建议通过taobao.trade.fullinfo.get获取
        最新的oaid") false means the buyer changed the receiver after our copy: the current OAID is
        read with fullinfo and decrypted once more, so the parcel goes where the buyer now wants it
        (the changed ``modified`` brings the new version to the hub through the pull as well).

        Why not the alternatives TOP documents: ``taobao.top.oaid.client.decrypt`` (端侧OAID解密,
        apiId=55714) needs a ``sec_once_token`` from a person's client ("解密数据不经过ISV服务器"), which
        a worker does not have; handing the OAID to the WMS (Qimen ``deliveryorder.create``
        ``receiverInfo.oaid``, the WMS then calls ``taobao.qimen.receiverinfo.query``, apiId=55142)
        needs a WMS on that scheme and lives in the Qimen mapping, not here.

        Errors are classified like every call (code 7 → throttled, ``isp.*`` → transient); the app
        or the seller lacking the decrypt permission (codes 11/12/13, ``isv.permission-*``) becomes
        an ``AuthError`` that says so in plain words, since only a person can apply for it.
        """
        tid = _valid_tid(str(_tid(payload) or ""))
        oaid = str(payload.get("oaid") or "").strip()
        if not oaid:
            return {ours: str(payload[key]) for key, ours in TRADE_RECEIVER_FIELDS.items()
                    if payload.get(key) not in (None, "")}
        receiver = await self._decrypt(tid, oaid)
        if not _matched(receiver):
            current = str((await self._fullinfo(tid, "tid,oaid")).get("oaid") or "").strip()
            if current and current != oaid:
                log.warning("taobao.oaid_changed", connector=self.name, tid=tid)  # no receiver data logged
                receiver = await self._decrypt(tid, current)
            if not _matched(receiver):
                raise TransientError(f"{METHOD_OAID_DECRYPT}: the OAID of tid {tid} does not match the trade's "
                                     "current receiver", code="oaid-not-matched", platform=PLATFORM)
        return {ours: str(receiver[key]) for key, ours in DECRYPT_FIELDS.items()
                if receiver.get(key) not in (None, "")}

    async def _decrypt(self, tid: str, oaid: str) -> dict[str, Any]:
        """One ``taobao.top.oaid.decrypt`` for (tid, oaid): the Receiver of that tid."""
        if len(oaid) > MAX_OAID_LENGTH:
            raise InvalidRequestError(f"the OAID of tid {tid} is longer than {MAX_OAID_LENGTH} characters",
                                      platform=PLATFORM)
        query = [{"oaid": oaid, "tid": tid, "scene": self.settings.oaid_scene}]
        try:
            answer = await self._call(METHOD_OAID_DECRYPT, {
                "query_list": json.dumps(query, ensure_ascii=False, separators=(",", ":"))})
        except AuthError as exc:
            if _lacks_permission(exc):
                raise AuthError(
                    f"the TOP app {self.settings.app_key} lacks the OAID decrypt permission "
                    f"({METHOD_OAID_DECRYPT}, 隐私保护API) for this shop, so masked receivers cannot be shipped: "
                    f"apply for it in the TOP console and have the seller authorise it ({exc.message})",
                    code=exc.code, platform=PLATFORM, details=exc.details) from None
            raise
        found = [r for r in _listed(answer.get("receiver_list"), "receiver") if str(r.get("tid") or tid) == tid]
        if not found:
            raise TransientError(f"{METHOD_OAID_DECRYPT}: no receiver for tid {tid} in the answer", platform=PLATFORM)
        return found[0]

    # --- connectivity --------------------------------------------------------------------------

    async def test(self) -> str:
        """One signed increment.get over the last 5 minutes with page_size=1."""
        until = datetime.now(UTC).replace(microsecond=0)
        since = until - timedelta(minutes=5)
        total, trades = await self._increment_page(format_top_time(since), format_top_time(until), 1, 1)
        seller = (trades[0].get("seller_nick") if trades else "") or self.settings.shop or "(no recent orders)"
        return (f"ok: seller {seller}, {total} orders modified in the last 5 min "
                f"(app_key {self.settings.app_key}, sign_method {self.settings.sign_method})")


# --- helpers --------------------------------------------------------------------------------------


def _listed(container: Any, item: str) -> list[dict[str, Any]]:
    """TOP JSON lists as ``{"trades": {"trade": [...]}}`` (or a bare list when simplified)."""
    if isinstance(container, Mapping):
        container = container.get(item)
    if isinstance(container, Mapping):
        container = [container]
    return [x for x in container if isinstance(x, dict)] if isinstance(container, list) else []


def _tid(trade: Mapping[str, Any]) -> str | None:
    value = trade.get("tid_str") or trade.get("tid")
    return str(value) if value not in (None, "") else None


def _valid_tid(external_id: str) -> str:
    tid = str(external_id).strip()
    if not tid.isdigit():
        raise InvalidRequestError(f"a Taobao tid is a number, not {external_id!r}", platform=PLATFORM)
    return tid


def _parse_modified(trade: Mapping[str, Any]) -> datetime | None:
    value = trade.get("modified")
    if not value:
        return None
    try:
        return parse_top_time(str(value))
    except ValueError:
        return None


def _modified(trade: Mapping[str, Any]) -> datetime:
    return _parse_modified(trade) or datetime.min.replace(tzinfo=UTC)


def _order_key(trade: Mapping[str, Any]) -> tuple[datetime, int, str]:
    tid = _tid(trade) or ""
    return _modified(trade), int(tid) if tid.isdigit() else 0, tid


def _newer(trade: Mapping[str, Any], yielded: Mapping[str, datetime]) -> bool:
    tid = _tid(trade)
    return tid not in yielded or _modified(trade) > yielded[tid]


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequestError("pull_orders needs timezone-aware datetimes", platform=PLATFORM)


def _already_shipped(exc: ConnectorError) -> bool:
    sub_code = str(exc.details.get("sub_code") or exc.code or "")
    return sub_code in ALREADY_SHIPPED_SUB_CODES or (
        sub_code.startswith("isv.logistics-offline-service-error")
        and any(marker in exc.message for marker in ALREADY_SHIPPED_MARKERS)
    )


def _matched(receiver: Mapping[str, Any]) -> bool:
    """Decrypt ``matched``: absent counts as matched (older answers do not carry it)."""
    return receiver.get("matched") not in (False, "false")


def _lacks_permission(exc: ConnectorError) -> bool:
    """Codes 11/12/13 (Insufficient ISV / User / Partner Permissions) or an ``isv.permission-*``
    sub code (e.g. isv.permission-api-package-limit "关联的包中不允许访问该API"), as opposed to a
    bad signature or session, which the generic message already explains."""
    sub_code = str(exc.details.get("sub_code") or "").lower()
    return exc.details.get("top_code") in (11, 12, 13) or sub_code.startswith("isv.permission")


def _tracking_numbers(lines: Iterable[Mapping[str, Any]]) -> set[str]:
    """Waybill numbers on order lines (Order.invoice_no, set per oid once it is consigned)."""
    return {str(o["invoice_no"]) for o in lines if o.get("invoice_no")}


def _line_consigned(line: Mapping[str, Any]) -> bool:
    return str(line.get("status") or "") in SHIPPED_STATUSES or bool(line.get("invoice_no") or line.get("consign_time"))


def _valid_oids(line_ids: list[str] | None) -> list[str]:
    """The oids of a split package, as TOP wants them (numbers, each once, order kept)."""
    if not line_ids:
        return []
    oids = list(dict.fromkeys(str(oid).strip() for oid in line_ids))
    bad = [oid for oid in oids if not oid.isdigit()]
    if bad:
        raise InvalidRequestError(f"a Taobao oid is a number, not {bad[0]!r}", platform=PLATFORM)
    return oids


def _fresh(page: list[dict[str, Any]], yielded: Mapping[str, datetime]) -> list[dict[str, Any]]:
    """The page's trades not yet handed over (or modified since), each once, oldest first."""
    latest: dict[str, dict[str, Any]] = {}
    for trade in page:
        tid = _tid(trade)
        if tid is None or not _newer(trade, yielded):
            continue
        known = latest.get(tid)
        if known is None or _modified(trade) > _modified(known):
            latest[tid] = trade
    return sorted(latest.values(), key=_order_key)


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
