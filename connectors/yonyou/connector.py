"""Yonyou YonSuite / YonBIP (用友 YonBIP 公有云) open API: sales orders, sales outbounds, GL vouchers.

Wire protocol, from Yonyou's open-platform documentation (open.yonyoucloud.com 文档中心):

* Token ("获取 access_token", 自建应用): ``GET {tokenUrl}/open-auth/selfAppAuth/base/v1/getAccessToken``
  with ``appKey``, ``timestamp`` (ms) and ``signature`` (see :mod:`connectors.yonyou.signing`); the
  2023-07-21 note moved the path from ``/open-auth/selfAppAuth/getAccessToken`` (parameters
  unchanged). Answer ``{"code": "00000", "message", "data": {"access_token", "expire"}}``, ``expire``
  in seconds (7200). The token is cached until shortly before it expires.
* Business calls: ``{gatewayUrl}/yonbip/...?access_token=...``, JSON bodies, answered
  ``{"code": "200", "message", "data"}`` (HTTP 200 also for refusals). A bad or lapsed token is
  answered ``{"code": "310036", "message": "非法token"}`` and a missing one ``310001``: the token is
  fetched again once and the call resent (safe: the gateway refuses before the service runs).
  ``310404``: the path is not registered on that gateway (wrong ``base_url``). ``310032`` /
  ``310039`` / ``310042`` / ``310046``: call limits, retried later.
* Batch operations (``batchaudit``, ``batchunaudit``, ``batchunsubmit``, delete, ``mergeSourceData/save``)
  answer ``code 200`` with ``data: {count, sucessCount (sic), failCount, messages, infos, failInfos}``:
  ``code 200`` alone does not mean it worked.
* Sales order (销售订单, ``udinghuo.voucher_order``): ``POST /yonbip/sd/voucherorder/list`` (``code``,
  ``isSum``), ``GET /yonbip/sd/voucherorder/detail?id=`` (``status`` 0 开立, 3 审核中, 1 已审核, 2 已关闭;
  ``nextStatus`` OPPOSE = 已取消; ``orderDetails[]`` with ``id``, ``productCode``, ``skuCode``, ``qty``),
  ``POST /yonbip/sd/voucherorder/singleSave`` (``{"data": {..., "_status": "Insert"}}``, MDD-idempotent
  with ``resubmitCheckKey`` of at most 32 characters), ``batchaudit`` / ``batchunaudit`` /
  ``batchunsubmit`` (``{"data": [{"id"}]}``) and ``delete`` (``{"data": {"id": [...], "code": [...]}}``).
* Sales outbound (销售出库单, ``st.salesout.SalesOut``): ``POST /yonbip/scm/salesout/list`` (``code``),
  ``GET /yonbip/scm/salesout/detail?id=`` (``status``, ``impactStockTiming`` 0 = stock and finance are
  updated at save, 1 = at audit), ``POST /yonbip/scm/salesout/mergeSourceData/save`` (销售出库来源生单:
  ``mergeSourceData: true``, ``details[]`` with ``sourceid`` = sales order id, ``sourceautoid`` = its
  line id, ``makeRuleCode`` = the conversion rule, e.g. ``orderTosalesout``), ``batchunaudit`` (弃审)
  and ``batchunsubmit`` (撤回). The documentation has no delete for sales outbounds.
* GL voucher (凭证保存接口): ``POST /yonbip/fi/ficloud/openapi/voucher/addVoucher`` with top-level fields
  (no ``data`` shell): ``businessId`` ("业务唯一标识，做业务幂等校验"), ``accbookCode``, ``voucherTypeCode``,
  ``makerMobile``/``makerEmail``, ``makeTime``, ``period``, ``description``, ``bodies[]`` (``description``,
  ``accsubjectCode``, ``debitOriginal``/``debitOrg`` or ``creditOriginal``/``creditOrg``, ``currencyCode``),
  answered ``data: {voucherId, voucherStatus, period, billCode}``. Lookup: 凭证列表查询
  ``POST /yonbip/fi/ficloud/voucher/queryconditiondetail`` (``accbook`` = book id, ``conditions`` on
  ``period`` and the header ``description``), answered ``data: [{header, body}]``.

Creates are idempotent by our number: every attempt first looks the code up; a save that fails after
an earlier attempt committed it (lost reply) is answered from a second lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr

from canonical import Voucher
from connectors.base import (
    CancelResult,
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    CreateResult,
    SalesDocumentTarget,
    SalesOutboundTarget,
    VoucherTarget,
    connector_kind,
    secret,
)
from connectors.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
)
from connectors.http import ApiClient, RetryPolicy, short_retrying
from connectors.ratelimit import RateLimiter
from connectors.yonyou import signing

log = structlog.get_logger("tongdao.yonyou")

PLATFORM = "yonyou"
TOKEN_PATH = "/open-auth/selfAppAuth/base/v1/getAccessToken"

SO_LIST = "/yonbip/sd/voucherorder/list"
SO_DETAIL = "/yonbip/sd/voucherorder/detail"
SO_SAVE = "/yonbip/sd/voucherorder/singleSave"
SO_AUDIT = "/yonbip/sd/voucherorder/batchaudit"
SO_UNAUDIT = "/yonbip/sd/voucherorder/batchunaudit"
SO_UNSUBMIT = "/yonbip/sd/voucherorder/batchunsubmit"
SO_DELETE = "/yonbip/sd/voucherorder/delete"
OUT_LIST = "/yonbip/scm/salesout/list"
OUT_DETAIL = "/yonbip/scm/salesout/detail"
OUT_SAVE = "/yonbip/scm/salesout/mergeSourceData/save"
OUT_UNAUDIT = "/yonbip/scm/salesout/batchunaudit"
OUT_UNSUBMIT = "/yonbip/scm/salesout/batchunsubmit"
VOUCHER_ADD = "/yonbip/fi/ficloud/openapi/voucher/addVoucher"
VOUCHER_QUERY = "/yonbip/fi/ficloud/voucher/queryconditiondetail"

TOKEN_OK = "00000"
CODE_OK = "200"
TOKEN_INVALID_CODES = frozenset({"310036", "310001"})  # 非法token / no token
TOKEN_INVALID_TEXTS = ("非法token", "token失效", "token已失效", "token过期", "token已过期", "invalid token")
THROTTLE_CODES = frozenset({"310032", "310039", "310042", "310046"})
PATH_NOT_REGISTERED = "310404"
NOT_FOUND_CODE = "1002"  # 数据不存在

# bill status (单据状态): 0 开立, 3 审核中, 1 已审核, 2 已关闭
STATUS_OPEN, STATUS_AUDITED, STATUS_CLOSED, STATUS_APPROVING = "0", "1", "2", "3"
ORDER_CANCELLED = "OPPOSE"  # nextStatus 已取消
VOUCHER_VOID = "05"  # voucherStatus 作废
IMPACT_AT_AUDIT = "1"  # impactStockTiming: 0 保存, 1 审核

CHINA = timezone(timedelta(hours=8))
T = TypeVar("T")


class YonyouSettings(ConnectorSettings):
    base_url: str = Field(description='business gateway (gatewayUrl), e.g. "https://c2.yonyoucloud.com/iuap-api-gateway"')
    auth_url: str = Field("", description='token host (tokenUrl), e.g. "https://c2.yonyoucloud.com/iuap-api-auth"; '
                          '"" = base_url')
    token_path: str = Field(TOKEN_PATH, description="self-built app token path (the pre-2023 one was "
                            "/open-auth/selfAppAuth/getAccessToken)")
    app_key: str = Field(min_length=1, description="the self-built app's appKey (not secret)")
    token_margin_s: float = Field(120.0, ge=0, description="fetch a new token this long before the old one expires")
    # sales orders
    audit_sales_orders: bool = Field(True, description="audit (batchaudit) a sales order after saving it: "
                                     "YonSuite makes outbounds only from audited orders")
    # sales outbounds (销售出库来源生单)
    outbound_bustype: str = Field("A30001", min_length=1, description="交易类型 id or code of the 销售出库单")
    make_rule_code: str = Field("orderTosalesout", min_length=1, description="单据转换规则 sales order -> outbound")
    warehouse: str = Field("", description="仓库 id or code; '' = carried over from the sales order")
    # GL vouchers
    accbook_code: str = Field("", description="账簿 code for addVoucher")
    accbook_id: str = Field("", description="账簿 id for the voucher lookup (queryconditiondetail)")
    voucher_type_code: str = Field("", description="凭证类型 code, e.g. 01")
    maker_mobile: str = Field("", description="制单人 mobile (this or maker_email is required)")
    maker_email: str = Field("", description="制单人 e-mail")
    source_system_name: str = Field("Tongdao", description="externalSourceSystemName / externalSourceDataType")


class YonyouSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    app_secret: SecretStr


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float  # on self.clock


def idempotency_key(kind: str, number: str) -> str:
    """A stable ``resubmitCheckKey`` (at most 32 characters, unique per API within the tenant)."""
    return hashlib.md5(f"tongdao:{kind}:{number}".encode(), usedforsecurity=False).hexdigest()


def check_code(number: str, what: str = "bill code") -> str:
    if not isinstance(number, str) or not number.strip():
        raise InvalidRequestError(f"{what} must be a non-empty string", platform=PLATFORM)
    if any(ord(ch) < 32 for ch in number) or len(number) > 100:
        raise InvalidRequestError(f"{what} {number!r} has control characters or is too long", platform=PLATFORM)
    return number


def yonyou_time(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in China time (YonSuite shows and stores server-local wall time)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> Any:
    """JSON-ready quantity or amount: Decimals as numbers (ints when whole)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        rows = data.get("recordList")
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def _batch_text(data: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("messages", "failInfos"):
        for item in data.get(key) or []:
            if isinstance(item, dict):
                text = item.get("message") or item.get("msg")
                if text:
                    parts.append(str(text))
            elif item not in (None, "", "null"):
                parts.append(str(item))
    return "; ".join(dict.fromkeys(parts)) or "refused without a message"


def error_for(code: str, message: str, what: str) -> ConnectorError:
    """Map a non-200 answer code to the error taxonomy."""
    text = f"{what}: [{code}] {message}" if message else f"{what}: [{code}]"
    if code in THROTTLE_CODES:
        return ThrottledError(text, code=code, platform=PLATFORM, retry_after=2.0)
    if code == PATH_NOT_REGISTERED:
        return ConfigurationError(text + " (path not registered on this gateway: check base_url)", code=code,
                                  platform=PLATFORM)
    if code == NOT_FOUND_CODE:
        return NotFoundError(text, code=code, platform=PLATFORM)
    if code.startswith("5") and len(code) == 3:
        return TransientError(text, code=code, platform=PLATFORM)
    return InvalidRequestError(text, code=code, platform=PLATFORM)


@connector_kind("yonyou", title="Yonyou YonSuite")
class YonyouConnector(Connector, SalesDocumentTarget, SalesOutboundTarget, VoucherTarget):
    Settings = YonyouSettings
    Secrets = YonyouSecrets

    settings: YonyouSettings
    secrets: YonyouSecrets

    def __init__(self, name: str, settings: YonyouSettings, secrets: YonyouSecrets) -> None:
        super().__init__(name, settings, secrets)
        for label, value in (("base_url", settings.base_url), ("auth_url", settings.auth_url or settings.base_url)):
            url = httpx.URL(value)
            if url.scheme not in ("http", "https") or not url.host:
                raise ConfigurationError(f"connector {name!r} (yonyou): {label} must be an absolute http(s) URL")
        if not settings.token_path.startswith("/"):
            raise ConfigurationError(f"connector {name!r} (yonyou): token_path must start with '/'")
        limiter = RateLimiter(settings.rate_limit_per_s)
        #: retries happen around whole operations (lookup first), never around a bare save
        self.retry = RetryPolicy()
        self.api = ApiClient(platform=PLATFORM, base_url=_slash(settings.base_url), limiter=limiter,
                             retry=RetryPolicy(attempts=1), timeout_s=settings.timeout_s)
        self.auth = ApiClient(platform=PLATFORM, base_url=_slash(settings.auth_url or settings.base_url),
                              retry=RetryPolicy(attempts=1), timeout_s=settings.timeout_s)
        #: monotonic clock for token expiry, wall clock (ms) for the signed timestamp; tests replace them
        self.clock: Callable[[], float] = time.monotonic
        self.now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        #: tokens fetched (for tests and logs)
        self.token_fetches = 0

    # --- token ---------------------------------------------------------------------------------

    async def _fetch_token(self) -> _Token:
        s = self.settings
        app_secret = secret(self.secrets.app_secret)
        query = signing.token_query(s.app_key, self.now_ms(), app_secret)
        response = await self.auth.request("GET", f"{s.token_path.lstrip('/')}?{query}",
                                           headers={"Accept": "application/json"})
        if response.status_code == 404:
            raise ConfigurationError("HTTP 404 from the token endpoint: check auth_url and token_path",
                                     code="404", platform=PLATFORM)
        if response.status_code in (401, 403):
            raise AuthError(f"HTTP {response.status_code} from the token endpoint", code=str(response.status_code),
                            platform=PLATFORM)
        payload = _json(response)
        if not isinstance(payload, dict) or "code" not in payload:
            raise TransientError("token endpoint answered without a result code", platform=PLATFORM)
        code = str(payload.get("code"))
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        token = str(data.get("access_token") or "")
        if code != TOKEN_OK or not token:
            message = self.redact_secrets(str(payload.get("message") or "token refused"))
            raise AuthError(f"YonSuite refused the token request for app key {s.app_key!r}: {message}",
                            code=code, platform=PLATFORM)
        try:
            expire = float(data.get("expire") or 7200)
        except (TypeError, ValueError):
            expire = 7200.0
        margin = min(s.token_margin_s, expire / 10)
        self.token_fetches += 1
        log.info("yonyou token", connector=self.name, expire=expire, fetches=self.token_fetches)
        return _Token(token, self.clock() + max(expire - margin, 0.0))

    async def _current_token(self) -> _Token:
        token = self._token
        if token is not None and self.clock() < token.expires_at:
            return token
        async with self._token_lock:  # single flight: concurrent callers wait for one fetch
            token = self._token
            if token is None or self.clock() >= token.expires_at:
                token = await self._fetch_token()
                self._token = token
            return token

    def _drop_token(self, token: _Token) -> None:
        if self._token is token:
            self._token = None

    # --- transport -----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                    params: dict[str, str] | None = None) -> Any:
        """One business call; the ``data`` of a ``code 200`` answer, else a ConnectorError.

        A token the gateway calls invalid (expired early, revoked, rotated) is fetched again once
        and the call resent; a second refusal is a retryable ``SessionExpiredError``.
        """
        for attempt in (1, 2):
            token = await self._current_token()
            query = {"access_token": token.value, **(params or {})}
            kwargs: dict[str, Any] = {"params": query, "headers": {"Accept": "application/json"}}
            if body is not None:
                kwargs["json"] = body
            response = await self.api.request(method, path, **kwargs)
            status = response.status_code
            payload = _json(response)
            code = str(payload.get("code")) if isinstance(payload, dict) else ""
            message = str(payload.get("message") or "") if isinstance(payload, dict) else response.text[:200]
            if status == 200 and code == CODE_OK:
                return payload.get("data")
            if code in TOKEN_INVALID_CODES or any(t in message.lower() for t in TOKEN_INVALID_TEXTS):
                self._drop_token(token)
                log.info("yonyou token refused", connector=self.name, path=path, attempt=attempt, code=code)
                if attempt == 1:
                    continue
                raise SessionExpiredError(f"{path}: the gateway refused a freshly fetched token ([{code}])",
                                          code=code or None, platform=PLATFORM)
            message = self.redact_secrets(message, token.value)
            if code:
                error = error_for(code, message, path)
                if isinstance(error, ThrottledError):
                    self.api.limiter.penalize(error.retry_after or 1.0)
                raise error
            if status in (401, 403):
                raise AuthError(f"{path}: HTTP {status}", code=str(status), platform=PLATFORM)
            if status == 404:
                raise ConfigurationError(f"{path}: HTTP 404 (check base_url, the gatewayUrl)", code="404",
                                         platform=PLATFORM)
            if status >= 400:
                raise InvalidRequestError(f"{path}: HTTP {status}", code=str(status), platform=PLATFORM)
            raise TransientError(f"{path}: answer without a result code", platform=PLATFORM)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _batch(self, path: str, body: dict[str, Any]) -> tuple[bool, str]:
        """A batch operation: (all passed, YonSuite's messages). Refusals come back, other errors raise."""
        data = await self._call("POST", path, body=body)
        if not isinstance(data, dict):
            return True, ""
        try:
            failed = int(data.get("failCount") or 0)
            passed = int(data.get("sucessCount", data.get("successCount", 1)) or 0)
        except (TypeError, ValueError):
            failed, passed = 0, 1
        if failed or not passed:
            return False, _batch_text(data)
        return True, ""

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        async for attempt in short_retrying(self.retry):
            with attempt:
                return await operation()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- sales orders --------------------------------------------------------------------------

    async def _find_sales_order(self, number: str) -> dict[str, Any] | None:
        data = await self._call("POST", SO_LIST, body={"pageIndex": 1, "pageSize": 20, "code": number, "isSum": True})
        return next((row for row in _records(data) if str(row.get("code")) == number), None)

    async def _sales_order_detail(self, order_id: Any) -> dict[str, Any]:
        data = await self._call("GET", SO_DETAIL, params={"id": str(order_id)})
        if not isinstance(data, dict):
            raise TransientError(f"sales order {order_id}: detail answered without data", platform=PLATFORM)
        return data

    async def _audit_sales_order(self, order_id: Any, number: str) -> None:
        ok, text = await self._batch(SO_AUDIT, {"data": [{"id": order_id}]})
        if not ok:  # approval flow (审批流) or a rule: the order stays 开立 until a person audits it
            log.warning("yonyou sales order not audited", connector=self.name, number=number, message=text)

    async def create_sales_document(self, document: dict[str, Any], number: str) -> CreateResult:
        """Save ``document`` (the singleSave ``data``) as sales order ``code = number``; idempotent."""
        check_code(number)
        if not isinstance(document, dict):
            raise InvalidRequestError("sales document must be a singleSave 'data' object", platform=PLATFORM)
        data = dict(document)
        data["code"] = number
        data["_status"] = "Insert"
        data.setdefault("resubmitCheckKey", idempotency_key("voucherorder", number))
        details = data.get("orderDetails")
        if not isinstance(details, list) or not details:
            raise InvalidRequestError(f"sales order {number}: orderDetails (the lines) is required",
                                      platform=PLATFORM)
        data["orderDetails"] = [{"_status": "Insert", **line} if isinstance(line, dict) else line for line in details]
        audit = self.settings.audit_sales_orders

        async def attempt() -> CreateResult:
            existing = await self._find_sales_order(number)
            if existing is not None:
                if audit and str(existing.get("status", "")) == STATUS_OPEN:  # an attempt cut short after saving
                    await self._audit_sales_order(existing["id"], number)
                return CreateResult(external_id=str(existing["id"]), number=number, created=False)
            try:
                saved = await self._call("POST", SO_SAVE, body={"data": data})
            except InvalidRequestError:
                existing = await self._find_sales_order(number)  # committed by an earlier or concurrent attempt
                if existing is not None:
                    return CreateResult(external_id=str(existing["id"]), number=number, created=False)
                raise
            saved = saved if isinstance(saved, dict) else {}
            order_id = saved.get("id")
            if order_id in (None, ""):
                found = await self._find_sales_order(number)
                if found is None:
                    raise TransientError(f"singleSave of {number} answered without an id", platform=PLATFORM)
                order_id = found["id"]
            if audit:
                await self._audit_sales_order(order_id, number)
            return CreateResult(external_id=str(order_id), number=str(saved.get("code") or number), created=True)

        return await self._retrying(attempt)

    async def cancel_sales_document(self, number: str, reason: str = "") -> CancelResult:
        """Delete sales order ``number``: withdraw (撤回) or un-audit (弃审) first when needed."""
        check_code(number)

        async def attempt() -> CancelResult:
            row = await self._find_sales_order(number)
            if row is None:
                return CancelResult(outcome="not_found", message=f"no sales order {number}")
            order = await self._sales_order_detail(row["id"])
            status, next_status = str(order.get("status", "")), str(order.get("nextStatus") or "")
            if next_status == ORDER_CANCELLED:
                return CancelResult(outcome="already_cancelled", message=f"{number} is 已取消 (OPPOSE)")
            if status == STATUS_CLOSED:
                return CancelResult(outcome="already_cancelled", message=f"{number} is 已关闭 (closed)")
            done: list[str] = []
            order_id = row["id"]
            if status == STATUS_AUDITED:
                ok, text = await self._batch(SO_UNAUDIT, {"data": [{"id": order_id}]})
                if not ok:
                    return CancelResult(outcome="refused", message=f"弃审 (batchunaudit) refused: {text}")
                done.append("un-audited (弃审)")
            elif status == STATUS_APPROVING:
                ok, text = await self._batch(SO_UNSUBMIT, {"data": [{"id": order_id}]})
                if not ok:
                    return CancelResult(outcome="refused", message=f"撤回 (batchunsubmit) refused: {text}")
                done.append("withdrawn (撤回)")
            elif status != STATUS_OPEN:
                return CancelResult(outcome="refused", message=f"{number} has status {status!r}")
            ok, text = await self._batch(SO_DELETE, {"data": {"id": [order_id], "code": [number],
                                                              "resubmitCheckKey": idempotency_key("delete", number)}})
            if ok or await self._find_sales_order(number) is None:
                return CancelResult(outcome="cancelled", message=", ".join([*done, "deleted"]))
            prefix = ", ".join(done)
            message = (prefix + "; " if prefix else "") + f"delete refused: {text}"
            return CancelResult(outcome="refused", message=message)

        log.info("yonyou cancel sales order", connector=self.name, number=number, reason=reason)
        return await self._retrying(attempt)

    # --- sales outbounds -----------------------------------------------------------------------

    async def _find_outbound(self, number: str) -> dict[str, Any] | None:
        data = await self._call("POST", OUT_LIST, body={"pageIndex": 1, "pageSize": 20, "code": number, "isSum": True})
        return next((row for row in _records(data) if str(row.get("code")) == number), None)

    @staticmethod
    def _allocate(number: str, sales_number: str, order_id: Any, order_lines: list[dict[str, Any]],
                  lines: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
        """One outbound detail per (sku, order line): quantities go to the order's lines for that SKU
        (``skuCode`` or ``productCode``) in order, each up to what it has not shipped yet; a rest that
        fits no line is put on the last one (YonSuite decides whether over-shipping is allowed)."""
        remaining: dict[int, Decimal] = {}
        for index, line in enumerate(order_lines):
            qty = Decimal(str(line.get("qty") or 0))
            shipped = Decimal(str(line.get("totalOutStockQuantity") or 0))
            remaining[index] = max(qty - shipped, Decimal(0))
        details: list[dict[str, Any]] = []
        for wanted in lines:
            sku = str(wanted.get("sku") or "")
            quantity = Decimal(str(wanted.get("quantity") or 0))
            if not sku or quantity <= 0:
                raise InvalidRequestError(f"outbound {number}: each line needs a sku and a positive quantity",
                                          platform=PLATFORM)
            matches = [i for i, ol in enumerate(order_lines) if sku in (str(ol.get("skuCode") or ""),
                                                                        str(ol.get("productCode") or ""))]
            if not matches:
                raise InvalidRequestError(f"outbound {number}: sales order {sales_number} has no line for SKU {sku}",
                                          platform=PLATFORM)
            for position, index in enumerate(matches):
                take = quantity if position == len(matches) - 1 else min(quantity, remaining[index])
                if take <= 0:
                    continue
                remaining[index] -= take
                quantity -= take
                details.append({"_status": "Insert", "qty": _number(take), "sourceid": order_id,
                                "sourceautoid": order_lines[index].get("id"), "makeRuleCode": rule})
                if quantity <= 0:
                    break
        return details

    async def create_sales_outbound(self, sales_number: str, number: str, lines: list[dict[str, Any]],
                                    shipped_at: datetime) -> CreateResult:
        """销售出库来源生单 from sales order ``sales_number``: outbound code ``number``, idempotent."""
        check_code(number, "outbound code")
        check_code(sales_number, "sales order code")
        if not lines:
            raise InvalidRequestError(f"outbound {number}: no lines", platform=PLATFORM)
        s = self.settings

        async def attempt() -> CreateResult:
            existing = await self._find_outbound(number)
            if existing is not None:
                return CreateResult(external_id=str(existing["id"]), number=number, created=False)
            row = await self._find_sales_order(sales_number)
            if row is None:
                raise NotFoundError(f"outbound {number}: no sales order {sales_number} in YonSuite", platform=PLATFORM)
            order = await self._sales_order_detail(row["id"])
            order_lines = [ol for ol in order.get("orderDetails") or [] if isinstance(ol, dict)]
            details = self._allocate(number, sales_number, row["id"], order_lines, lines, s.make_rule_code)
            data: dict[str, Any] = {"resubmitCheckKey": idempotency_key("salesout", number), "mergeSourceData": True,
                                    "code": number, "vouchdate": yonyou_time(shipped_at), "bustype": s.outbound_bustype,
                                    "details": details, "_status": "Insert"}
            if s.warehouse:
                data["warehouse"] = s.warehouse
            try:
                result = await self._call("POST", OUT_SAVE, body={"data": data})
            except InvalidRequestError:
                existing = await self._find_outbound(number)
                if existing is not None:
                    return CreateResult(external_id=str(existing["id"]), number=number, created=False)
                raise
            result = result if isinstance(result, dict) else {}
            infos = [i for i in result.get("infos") or [] if isinstance(i, dict) and i.get("id") not in (None, "")]
            if int(result.get("failCount") or 0) or not infos:
                existing = await self._find_outbound(number)
                if existing is not None:
                    return CreateResult(external_id=str(existing["id"]), number=number, created=False)
                raise InvalidRequestError(f"销售出库来源生单 {number} refused: {_batch_text(result)}",
                                          platform=PLATFORM)
            info = infos[0]
            return CreateResult(external_id=str(info["id"]), number=str(info.get("code") or number), created=True)

        return await self._retrying(attempt)

    async def cancel_sales_outbound(self, number: str, reason: str = "") -> CancelResult:
        """Take outbound ``number`` out of effect the way the open API allows: 弃审 or 撤回.

        The documentation has no delete for 销售出库单, so the bill stays in YonSuite as 开立 (open).
        Whether that undoes it depends on ``impactStockTiming``: at 1 (stock and finance move at
        audit) an open bill has no effect -> ``cancelled`` / ``already_cancelled``; at 0 (they moved
        at save) it still counts -> ``refused``, and a person deletes the bill in YonSuite.
        """
        check_code(number, "outbound code")

        async def attempt() -> CancelResult:
            row = await self._find_outbound(number)
            if row is None:
                return CancelResult(outcome="not_found", message=f"no 销售出库单 {number}")
            detail = await self._call("GET", OUT_DETAIL, params={"id": str(row["id"])})
            detail = detail if isinstance(detail, dict) else {}
            status = str(detail.get("status", row.get("status", "")))
            done = ""
            if status == STATUS_AUDITED:
                ok, text = await self._batch(OUT_UNAUDIT, {"data": [{"id": row["id"]}]})
                if not ok:
                    return CancelResult(outcome="refused", message=f"弃审 (batchunaudit) refused: {text}")
                done = "un-audited (弃审)"
            elif status == STATUS_APPROVING:
                ok, text = await self._batch(OUT_UNSUBMIT, {"data": [{"id": row["id"]}]})
                if not ok:
                    return CancelResult(outcome="refused", message=f"撤回 (batchunsubmit) refused: {text}")
                done = "withdrawn from approval (撤回)"
            elif status != STATUS_OPEN:
                return CancelResult(outcome="refused", message=f"{number} has status {status!r}")
            timing = str(detail.get("impactStockTiming", "") or "")
            if timing == IMPACT_AT_AUDIT:
                note = ("the bill stays 开立 in YonSuite without effect on stock or receivables "
                        "(impactStockTiming=1); the open API has no delete for it")
                if done:
                    return CancelResult(outcome="cancelled", message=f"{done}; {note}")
                return CancelResult(outcome="already_cancelled", message=f"{number} is not audited; {note}")
            prefix = f"{done}; " if done else ""
            return CancelResult(outcome="refused", message=(
                f"{prefix}{number} is 开立 but YonSuite moved stock when it was saved (impactStockTiming="
                f"{timing or 'not given'}) and the open API documents no delete for 销售出库单: delete it in YonSuite"))

        log.info("yonyou cancel outbound", connector=self.name, number=number, reason=reason)
        return await self._retrying(attempt)

    # --- GL vouchers ---------------------------------------------------------------------------

    def _voucher_settings(self) -> None:
        s = self.settings
        missing = [n for n in ("accbook_code", "accbook_id", "voucher_type_code") if not getattr(s, n)]
        if not (s.maker_mobile or s.maker_email):
            missing.append("maker_mobile or maker_email")
        if missing:
            raise ConfigurationError(f"connector {self.name!r} (yonyou): vouchers need setting(s) {', '.join(missing)}",
                                     platform=PLATFORM)

    async def _find_voucher(self, number: str, period: str) -> dict[str, Any] | None:
        """The header of the voucher whose header description starts with ``number``, None if none
        (voided ones, voucherStatus 05, do not count)."""
        page = 50
        for begin in range(0, 2000, page):
            body = {"accbook": self.settings.accbook_id, "groupnum": page, "begin": begin, "conditions": [
                {"field": "period", "part": "header", "value": period, "operator": "="},
                {"field": "description", "part": "header", "value": number, "operator": "like"}]}
            rows = _records(await self._call("POST", VOUCHER_QUERY, body=body))
            for row in rows:
                header = row.get("header") if isinstance(row.get("header"), dict) else {}
                description = str(header.get("description") or "")
                if description.split(" ", 1)[0] == number and str(header.get("voucherstatus")) != VOUCHER_VOID:
                    return header
            if len(rows) < page:
                return None
        return None

    async def post_voucher(self, voucher: Voucher) -> CreateResult:
        """addVoucher, idempotent by ``voucher.number`` (sent as ``businessId`` and at the head of the
        header description, by which the lookup finds it)."""
        self._voucher_settings()
        s = self.settings
        number = check_code(voucher.number, "voucher number")
        if " " in number:
            raise InvalidRequestError(f"voucher number {number!r} contains a space", platform=PLATFORM)
        period = voucher.date.strftime("%Y-%m")
        day = voucher.date.isoformat()
        description = f"{number} {voucher.narration}".strip()[:200]
        bodies = []
        for line in voucher.lines:
            entry: dict[str, Any] = {"description": (line.memo or voucher.narration or number)[:200],
                                     "accsubjectCode": line.account, "currencyCode": voucher.currency,
                                     "busidate": day}
            if line.debit > 0:
                entry |= {"debitOriginal": _number(line.debit), "debitOrg": _number(line.debit)}
            else:
                entry |= {"creditOriginal": _number(line.credit), "creditOrg": _number(line.credit)}
            bodies.append(entry)
        body: dict[str, Any] = {"businessId": number, "srcSystemCode": "figl", "accbookCode": s.accbook_code,
                                "period": period, "voucherTypeCode": s.voucher_type_code, "makeTime": day,
                                "description": description, "bodies": bodies,
                                "externalSourceDataId": number, "externalSourceDataCode": voucher.reference[:60],
                                "externalSourceDataType": s.source_system_name,
                                "externalSourceSystemName": s.source_system_name}
        if s.maker_mobile:
            body["makerMobile"] = s.maker_mobile
        else:
            body["makerEmail"] = s.maker_email

        async def attempt() -> CreateResult:
            found = await self._find_voucher(number, period)
            if found is not None:
                return CreateResult(external_id=str(found.get("id")), number=number, created=False)
            try:
                data = await self._call("POST", VOUCHER_ADD, body=body)
            except InvalidRequestError:
                found = await self._find_voucher(number, period)
                if found is not None:
                    return CreateResult(external_id=str(found.get("id")), number=number, created=False)
                raise
            data = data if isinstance(data, dict) else {}
            voucher_id = data.get("voucherId")
            if not voucher_id:
                found = await self._find_voucher(number, period)
                if found is None:
                    raise TransientError(f"addVoucher {number} answered without a voucherId", platform=PLATFORM)
                voucher_id = found.get("id")
            return CreateResult(external_id=str(voucher_id), number=number, created=True)

        return await self._retrying(attempt)

    # --- test ----------------------------------------------------------------------------------

    async def test(self) -> str:
        async def attempt() -> str:
            data = await self._call("POST", OUT_LIST, body={"pageIndex": 1, "pageSize": 1, "isSum": True})
            count = data.get("recordCount", len(_records(data))) if isinstance(data, dict) else 0
            return (f"YonSuite token OK (app key {self.settings.app_key}); 销售出库单 list answered, "
                    f"{count} record(s)")

        return await self._retrying(attempt)


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        text = response.text.strip()
        if "非法token" in text:  # some services answer a bad token in text/plain
            return {"code": "310036", "message": text[:100]}
        if response.status_code >= 400:
            return None
        raise TransientError("unreadable (non-JSON) answer from YonSuite", platform=PLATFORM) from None
