"""Kingdee K3Cloud (金蝶云星空) WebAPI: sales documents (销售订单 SAL_SaleOrder by default).

Wire protocol (K3Cloud WebAPI, JSON over HTTP POST, session cookie):

* Login: ``{base_url}Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc`` with
  ``{"acctID","username","password","lcid"}`` or ``...AuthService.LoginByAppSecret.common.kdsvc`` with
  ``{"acctID","username","appId","appSecret","lcid"}``. ``LoginResultType == 1`` is success; the
  session lives in the ``kdservice-sessionid`` / ``ASP.NET_SessionId`` cookies (the body repeats it
  as ``KDSVCSessionId``, which the official SDKs also send as a ``kdservice-sessionid`` header).
* Calls: ``...DynamicFormService.{Save,View,ExecuteBillQuery}.common.kdsvc``. Save and View answer
  ``{"Result": {"ResponseStatus": {"IsSuccess", "Errors": [{"FieldName","Message","DIndex"}],
  "SuccessEntitys": [{"Id","Number","DIndex"}], "MsgCode"}, "Id", "Number", ...}}``; ExecuteBillQuery
  answers rows ``[[v1, v2], ...]`` or, on error, ``[[{"Result": {"ResponseStatus": {...}}}]]``.
* ``MsgCode``: 0 default, 1 context (session) lost, 2 no permission, 3 empty operation id, 4 exception,
  5 empty form id, 6 database operation failed, 7 licence error, 8 parameter error, 9 field/value does
  not exist, 10 no matching data, 11 validation failed, 12 not operable, 13 network-control conflict,
  14 call limit, 15 administrator login forbidden.
* Status operations (K3Cloud WebAPI 接口说明书 V2.0, 5.1.7 UnAudit / 5.1.8 Delete; the official SDKs'
  ``CancelAssign`` 撤销 and ``ExcuteOperation`` -- sic -- methods): ``{"formid", "data": {"CreateOrgId": 0,
  "Numbers": [], "Ids": "<FID>", ...}}`` (``ExcuteOperation`` adds ``"opNumber"``), answered in the Save
  envelope. Operations that are not a service of their own (作废 ``Cancel``, 整单关闭) go through
  ``ExcuteOperation`` with the form's operation code (Kingdee community, "K/3Cloud WebAPI
  调用任意操作实现方案", vip.kingdee.com/article/34018).

Sessions: one login is shared by every call of the connector instance. A call that is told the
session is lost logs in again -- single-flight: concurrent callers wait for one login, and a login
only replaces the session (it never clears it first), so calls in flight keep theirs. Each request
records the session generation it actually carried; a loss only triggers a login when that
generation is still the current one. A loss right after a fresh login (an ERP that ends sessions
after a few calls, many orders sharing one session) is retried a few times and then raised as the
retryable ``SessionExpiredError``; only a login refused for its credentials is ``AuthError``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr, model_validator

from connectors.base import (
    CancelResult,
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    CreateResult,
    SalesDocumentTarget,
    connector_kind,
    secret,
)
from connectors.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    InvalidRequestError,
    PermanentError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
)
from connectors.http import ApiClient, RetryPolicy, short_retrying
from connectors.kingdee.outbound import KingdeeOutboundMixin
from connectors.kingdee.vouchers import KingdeeVoucherMixin
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.kingdee")

PLATFORM = "kingdee"
_STUB = "Kingdee.BOS.WebApi.ServicesStub."
LOGIN_PASSWORD_PATH = _STUB + "AuthService.ValidateUser.common.kdsvc"
LOGIN_APPSECRET_PATH = _STUB + "AuthService.LoginByAppSecret.common.kdsvc"
SAVE_PATH = _STUB + "DynamicFormService.Save.common.kdsvc"
VIEW_PATH = _STUB + "DynamicFormService.View.common.kdsvc"
QUERY_PATH = _STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"
UNAUDIT_PATH = _STUB + "DynamicFormService.UnAudit.common.kdsvc"
DELETE_PATH = _STUB + "DynamicFormService.Delete.common.kdsvc"
CANCEL_ASSIGN_PATH = _STUB + "DynamicFormService.CancelAssign.common.kdsvc"
OPERATION_PATH = _STUB + "DynamicFormService.ExcuteOperation.common.kdsvc"  # sic: the SDKs' spelling
LOGIN_PATHS = (LOGIN_PASSWORD_PATH, LOGIN_APPSECRET_PATH)
GENERATION_KEY = "tongdao.kingdee.session_generation"  # request extension: which session it carried

SESSION_COOKIE = "kdservice-sessionid"
SESSION_LOST_TEXTS = ("会话信息已丢失", "上下文丢失", "session lost", "context lost")

# MsgCode values (K3Cloud WebAPI documentation, "错误代码MsgCode说明")
MSG_CONTEXT_LOST = 1
MSG_NO_PERMISSION = 2
MSG_EXCEPTION = 4
MSG_DB_FAILED = 6
MSG_LICENSE = 7
MSG_NOT_FOUND = 10
MSG_NETWORK_CONTROL = 13
MSG_CALL_LIMIT = 14
MSG_ADMIN_FORBIDDEN = 15

T = TypeVar("T")


class KingdeeSettings(ConnectorSettings):
    base_url: str = Field(description='K3Cloud site root, e.g. "http://host/k3cloud/"')
    acctID: str = Field(min_length=1, description="data centre (账套) id")
    username: str = Field(min_length=1)
    lcid: int = Field(2052, description="language: 2052 = zh-CN")
    appid: str = Field("", description="third-party app id; when set, log in with LoginByAppSecret")
    form_id: str = Field("SAL_SaleOrder", min_length=1)
    void_operation: str = Field(
        "Cancel", description="ExcuteOperation opNumber of 作废 (void), used when Delete is refused; '' = none")
    close_operation: str = Field(
        "BillClose", description="ExcuteOperation opNumber of 整单关闭 (close the whole bill), used when an "
        "audited bill cannot be un-audited (downstream bills exist); sites may rename it; '' = none")
    # sales outbound (connectors/kingdee/outbound.py)
    outbound_form_id: str = Field("SAL_OUTSTOCK", min_length=1, description="target form of the push (销售出库单)")
    outbound_rule_id: str = Field("SaleOrder-OutStock", min_length=1,
                                  description="conversion rule of the push (standard: SaleOrder-OutStock)")
    outbound_bill_no: bool = Field(False, description="also write the hub number into the outbound's FBillNo "
                                   "(only where SAL_OUTSTOCK's coding rule allows manual numbers); it is always "
                                   "kept in FNote as tongdao:{number}")
    outbound_audit: bool = Field(True, description="Submit and Audit the outbound once it fits the package")
    # vouchers (connectors/kingdee/vouchers.py)
    account_book: str = Field("", description="账簿编码 (GL_VOUCHER.FAccountBookID.FNumber); required for vouchers")
    voucher_group: str = Field("PRE001", min_length=1, description="凭证字 number (preset PRE001 = 记)")
    voucher_audit: bool = Field(True, description="Submit and Audit a voucher after Save; false leaves it saved")
    voucher_accounts: dict[str, str] = Field(default_factory=dict,
                                             description="hub account -> K3Cloud account number (科目编码); "
                                             "accounts not listed are sent as they are")
    exchange_rate_type: str = Field("HLTX01_SYS", min_length=1, description="汇率类型 of voucher entries")


class KingdeeSecrets(ConnectorSecrets):
    # a mistyped key must not echo its (secret) value into the ConfigurationError message
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    password: SecretStr | None = None
    appsecret: SecretStr | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> KingdeeSecrets:
        if not secret(self.password) and not secret(self.appsecret):
            raise ValueError("Kingdee needs a credential: set secret 'password' (ValidateUser login) "
                             "or 'appsecret' together with setting 'appid' (LoginByAppSecret login)")
        return self


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _msg_code(status: dict[str, Any]) -> int | None:
    try:
        return int(status.get("MsgCode"))
    except (TypeError, ValueError):
        return None


def _response_status(data: Any) -> dict[str, Any] | None:
    """``Result.ResponseStatus`` wherever K3Cloud put it (plain, or wrapped in lists by queries)."""
    while isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        result = data.get("Result")
        if isinstance(result, dict) and isinstance(result.get("ResponseStatus"), dict):
            return result["ResponseStatus"]
    return None


def _errors(status: dict[str, Any]) -> list[dict[str, Any]]:
    errors = status.get("Errors") or []
    return [e for e in errors if isinstance(e, dict)]


def _error_text(status: dict[str, Any]) -> str:
    parts = []
    for error in _errors(status):
        field, message = error.get("FieldName"), error.get("Message") or ""
        parts.append(f"{field}: {message}" if field else str(message))
    return "; ".join(p for p in parts if p) or "operation failed"


def _session_lost(data: Any) -> bool:
    status = _response_status(data)
    if status is not None:
        if _msg_code(status) == MSG_CONTEXT_LOST:
            return True
        texts = [str(e.get("Message") or "") for e in _errors(status)]
    elif isinstance(data, dict):
        texts = [str(data.get("Message") or "")]
    elif isinstance(data, str):
        texts = [data]
    else:
        texts = []
    return any(marker in text.lower() for text in texts for marker in SESSION_LOST_TEXTS)


def error_from_status(status: dict[str, Any], operation: str) -> ConnectorError:
    """Map a failed ``ResponseStatus`` to the connector error taxonomy (by MsgCode)."""
    code = _msg_code(status)
    text = f"{operation}: {_error_text(status)}"
    details = {
        "msg_code": code,
        "errors": [{"field": e.get("FieldName"), "message": e.get("Message")} for e in _errors(status)],
    }
    code_s = None if code is None else str(code)
    if code == MSG_CONTEXT_LOST:
        return SessionExpiredError(text, code=code_s, platform=PLATFORM, details=details)
    if code == MSG_CALL_LIMIT:
        return ThrottledError(text, code=code_s, platform=PLATFORM, retry_after=1.0, details=details)
    if code in (MSG_NETWORK_CONTROL, MSG_DB_FAILED):
        return TransientError(text, code=code_s, platform=PLATFORM, details=details)
    if code in (MSG_NO_PERMISSION, MSG_LICENSE, MSG_ADMIN_FORBIDDEN):
        return AuthError(text, code=code_s, platform=PLATFORM, details=details)
    if code == MSG_EXCEPTION:
        return PermanentError(text, code=code_s, platform=PLATFORM, details=details)
    return InvalidRequestError(text, code=code_s, platform=PLATFORM, details=details)


@dataclass(frozen=True)
class _Session:
    """One login: replaced as a whole by the next login, never cleared under calls using it."""

    generation: int
    session_id: str
    cookies: tuple[tuple[str, str], ...]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies)


@dataclass(frozen=True)
class BillState:
    """FID and status fields of one bill (ExecuteBillQuery)."""

    fid: str
    document_status: str  # FDocumentStatus: Z 暂存, A 创建, B 审核中, C 已审核, D 重新审核
    cancel_status: str  # FCancelStatus: A 未作废, B 已作废
    close_status: str  # FCloseStatus: A 未关闭, B 已关闭


@dataclass(frozen=True)
class _OpOutcome:
    ok: bool
    msg_code: int | None = None
    text: str = ""


def check_bill_number(number: str) -> str:
    """A bill number safe to put inside ``FBillNo='...'``: quotes are refused, not escaped."""
    if not isinstance(number, str) or not number.strip():
        raise InvalidRequestError("bill number must be a non-empty string", platform=PLATFORM)
    if any(ch in number for ch in "'\"\\") or any(ord(ch) < 32 for ch in number):
        raise InvalidRequestError(
            f"bill number {number!r} contains a quote, backslash or control character; refused rather "
            "than escaped into an ExecuteBillQuery FilterString",
            platform=PLATFORM,
        )
    return number


@connector_kind("kingdee", title="Kingdee K3Cloud (金蝶云星空) WebAPI")
class KingdeeConnector(Connector, SalesDocumentTarget, KingdeeOutboundMixin, KingdeeVoucherMixin):
    Settings = KingdeeSettings
    Secrets = KingdeeSecrets

    settings: KingdeeSettings
    secrets: KingdeeSecrets

    def __init__(self, name: str, settings: KingdeeSettings, secrets: KingdeeSecrets) -> None:
        super().__init__(name, settings, secrets)
        if settings.appid and not secret(secrets.appsecret):
            raise ConfigurationError(f"connector {name!r} (kingdee): setting 'appid' is set, so secret "
                                     "'appsecret' is required for LoginByAppSecret")
        if not settings.appid and not secret(secrets.password):
            raise ConfigurationError(f"connector {name!r} (kingdee): secret 'appsecret' needs setting 'appid'; "
                                     "or give secret 'password' for a ValidateUser login")
        url = httpx.URL(settings.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"connector {name!r} (kingdee): base_url must be an absolute http(s) URL")
        base = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        #: retries happen here, around whole operations, so a Save is never re-sent blindly: every
        #: attempt of a create first asks K3Cloud whether the bill number already exists
        self.retry = RetryPolicy()
        self.api = ApiClient(
            platform=PLATFORM,
            base_url=base,
            signer=self._add_session_header,
            limiter=RateLimiter(settings.rate_limit_per_s),
            retry=RetryPolicy(attempts=1),
            timeout_s=settings.timeout_s,
        )
        #: a call gives up (SessionExpiredError) after this many losses of sessions that served no
        #: call at all (K3Cloud is not keeping our sessions), or after ``session_max_sends`` sends
        self.session_attempts = 4
        self.session_max_sends = 30
        self._session: _Session | None = None
        self._served: dict[int, int] = {}  # session generation -> calls it answered (not "lost")
        self._session_generation = 0
        self._login_lock = asyncio.Lock()
        #: logins made (first one included): for tests and logs
        self.logins = 0

    @property
    def uses_app_secret(self) -> bool:
        return bool(self.settings.appid)

    # --- transport -----------------------------------------------------------------------------

    def _add_session_header(self, request: httpx.Request) -> None:
        """Signer: put the current session on the request and remember which one it was.

        The ``Cookie`` header is set from our own session record, not from the shared cookie jar,
        so a login in progress cannot leave a request half-authenticated; logins carry none.
        """
        if request.url.path.endswith(LOGIN_PATHS):
            request.headers.pop("Cookie", None)
            request.headers.pop(SESSION_COOKIE, None)
            return
        session = self._session
        if session is None:
            return
        request.headers["Cookie"] = session.cookie_header
        request.headers[SESSION_COOKIE] = session.session_id
        request.extensions[GENERATION_KEY] = session.generation

    async def _post_raw(self, path: str, payload: dict[str, Any]) -> tuple[Any, httpx.Response]:
        """One POST (the ApiClient throttles and classifies 429/5xx/timeouts), decoded JSON back."""
        response = await self.api.request("POST", path, json=payload, headers={"Accept": "application/json"})
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from K3Cloud", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404 from K3Cloud: check base_url (e.g. http://host/k3cloud/)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from K3Cloud", code=str(status), platform=PLATFORM)
        text = response.text.strip()
        if text.startswith("response_error:"):  # the official SDKs treat this prefix as a server fault
            message = text[len("response_error:"):].strip()
            if any(marker in message.lower() for marker in SESSION_LOST_TEXTS):
                return message, response
            raise TransientError(f"K3Cloud server error: {message[:300]}", platform=PLATFORM)
        try:
            return (json.loads(text) if text else None), response
        except ValueError:
            raise TransientError("unreadable (non-JSON) answer from K3Cloud", platform=PLATFORM) from None

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Short retries around a whole operation (lookup first, so a Save is never re-sent blindly);
        a wait longer than the policy allows is left to Temporal (see ``connectors/http.py``)."""
        async for attempt in short_retrying(self.retry):
            with attempt:
                try:
                    return await operation()
                except ThrottledError as exc:
                    # MsgCode 14 (call limit) arrives in an HTTP 200, so the ApiClient did not see it:
                    # pause the whole connector as for a 429 (a long pause makes the others fail fast)
                    self.api.limiter.penalize(exc.retry_after if exc.retry_after is not None else 1.0)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- session -------------------------------------------------------------------------------

    async def _login(self) -> None:
        """Log in (caller holds the lock) and swap in the new session in one assignment.

        The old session stays in place until the new one exists: calls already using it carry on,
        and if this login fails nothing was taken away from them.
        """
        s = self.settings
        if self.uses_app_secret:
            path = LOGIN_APPSECRET_PATH
            payload: dict[str, Any] = {"acctID": s.acctID, "username": s.username, "appId": s.appid,
                                       "appSecret": secret(self.secrets.appsecret), "lcid": s.lcid}
        else:
            path = LOGIN_PASSWORD_PATH
            payload = {"acctID": s.acctID, "username": s.username,
                       "password": secret(self.secrets.password), "lcid": s.lcid}
        data, response = await self._post_raw(path, payload)
        if not isinstance(data, dict) or "LoginResultType" not in data:
            # not a credential verdict (a proxy page, a half-started server): may work next time
            raise TransientError("K3Cloud login answered without a login result", platform=PLATFORM)
        result_type = data.get("LoginResultType")
        try:
            result_type = int(result_type)
        except (TypeError, ValueError):
            result_type = None
        if result_type != 1:
            message = str(data.get("Message") or "login refused")
            raise AuthError(f"K3Cloud login failed for user {s.username!r} on data centre {s.acctID!r}: {message}",
                            code=None if result_type is None else str(result_type), platform=PLATFORM)
        cookies = {name: value for name, value in response.cookies.items() if value}
        session_id = cookies.get(SESSION_COOKIE) or str(data.get("KDSVCSessionId") or "")
        if not session_id:
            raise TransientError("K3Cloud login succeeded without a session id", platform=PLATFORM)
        cookies[SESSION_COOKIE] = session_id
        self._session_generation += 1
        self._session = _Session(self._session_generation, session_id, tuple(cookies.items()))
        self._served = {g: n for g, n in self._served.items() if g >= self._session_generation - 8}
        self.logins += 1
        log.info("kingdee login", connector=self.name, generation=self._session_generation,
                 mode="appsecret" if self.uses_app_secret else "password")

    async def _ensure_session(self) -> None:
        if self._session is None:
            async with self._login_lock:
                if self._session is None:
                    await self._login()

    async def _relogin(self, stale_generation: int) -> None:
        """Single-flight re-login: only if the session that was refused is still the current one."""
        async with self._login_lock:
            if self._session is None or self._session.generation == stale_generation:
                await self._login()

    async def _call(self, path: str, payload: dict[str, Any]) -> Any:
        """Call with the session; when K3Cloud says the session is lost, log in again and resend.

        Resending is safe: a "session lost" answer is given before the service runs. How long to
        keep trying depends on whether K3Cloud is making progress: a lost session that had served
        other calls is being *recycled* (sessions end after a few calls while many orders share
        one) and the call tries again, up to ``session_max_sends``; a session lost before it served
        anything means K3Cloud is not keeping our sessions, and after ``session_attempts`` of those
        the call raises ``SessionExpiredError`` -- retryable: the operation retry here, then
        Temporal's activity retry, try again later. Never ``AuthError``: the login itself worked.
        """
        barren = 0
        for send in range(1, self.session_max_sends + 1):
            await self._ensure_session()
            data, response = await self._post_raw(path, payload)
            generation = int(response.request.extensions.get(GENERATION_KEY, 0))
            if not _session_lost(data):
                self._served[generation] = self._served.get(generation, 0) + 1
                return data
            if not self._served.get(generation):
                barren += 1
            log.info("kingdee session lost", connector=self.name, generation=generation, send=send,
                     barren=barren)
            if barren >= self.session_attempts or send == self.session_max_sends:
                break
            await self._relogin(generation)
        raise SessionExpiredError(
            f"K3Cloud kept ending the session, also right after fresh logins ({send} sends, {barren} on "
            "sessions that served nothing): sessions recycled after a few calls, or not kept at all",
            code=str(MSG_CONTEXT_LOST), platform=PLATFORM)

    # --- queries -------------------------------------------------------------------------------

    async def _query(self, field_keys: str, filter_string: str, limit: int = 2000, top: int = 0) -> list[list[Any]]:
        payload = {"data": {"FormId": self.settings.form_id, "FieldKeys": field_keys, "FilterString": filter_string,
                            "OrderString": "", "TopRowCount": top, "StartRow": 0, "Limit": limit}}
        data = await self._call(QUERY_PATH, payload)
        status = _response_status(data)
        if status is not None:
            raise error_from_status(status, "ExecuteBillQuery")
        if not isinstance(data, list):
            raise TransientError("unexpected ExecuteBillQuery answer", platform=PLATFORM)
        return [row for row in data if isinstance(row, list)]

    async def _bill_state(self, number: str) -> BillState | None:
        """FID and statuses of the bill numbered ``number``, or None."""
        rows = await self._query("FID,FBillNo,FDocumentStatus,FCancelStatus,FCloseStatus",
                                 f"FBillNo='{check_bill_number(number)}'")
        for row in rows:
            if len(row) >= 5 and str(row[1]) == number:
                return BillState(fid=str(row[0]), document_status=str(row[2] or "").upper(),
                                 cancel_status=str(row[3] or "").upper(), close_status=str(row[4] or "").upper())
        return None

    async def _find_bill(self, number: str) -> str | None:
        """FID of the bill numbered ``number`` in ``form_id``, or None."""
        rows = await self._query("FID,FBillNo", f"FBillNo='{check_bill_number(number)}'")
        for row in rows:
            if row and (len(row) < 2 or str(row[1]) == number):
                return str(row[0])
        return None

    # --- capability: sales documents -----------------------------------------------------------

    async def create_sales_document(self, document: dict[str, Any], number: str) -> CreateResult:
        """Save ``document`` (the Save ``Model``) with ``FBillNo = number``; idempotent by number.

        Every attempt first looks the number up; a Save that fails after the bill was committed by an
        earlier attempt (lost reply) or by a concurrent worker is answered from a second lookup.
        """
        check_bill_number(number)
        if not isinstance(document, dict):
            raise InvalidRequestError("sales document must be a Save 'Model' object", platform=PLATFORM)
        model = dict(document)
        model["FBillNo"] = number
        payload = {"formid": self.settings.form_id,
                   "data": {"NeedUpDateFields": [], "NeedReturnFields": [], "IsDeleteEntry": True,
                            "IsVerifyBaseDataField": False, "Model": model}}

        async def attempt() -> CreateResult:
            existing = await self._find_bill(number)
            if existing is not None:
                return CreateResult(external_id=existing, number=number, created=False)
            data = await self._call(SAVE_PATH, payload)
            status = _response_status(data)
            if status is None:
                raise TransientError("Save answered without a ResponseStatus", platform=PLATFORM)
            if _truthy(status.get("IsSuccess")):
                result = data["Result"] if isinstance(data, dict) else {}
                entity = next(iter(status.get("SuccessEntitys") or []), {}) or {}
                bill_id = result.get("Id") or entity.get("Id")
                bill_number = result.get("Number") or entity.get("Number") or number
                if bill_id in (None, "", 0, "0"):
                    found = await self._find_bill(number)
                    if found is None:
                        raise TransientError("Save succeeded without returning an Id", platform=PLATFORM)
                    bill_id = found
                return CreateResult(external_id=str(bill_id), number=str(bill_number), created=True)
            error = error_from_status(status, f"Save {self.settings.form_id} {number}")
            # "number already exists" (a concurrent create, or our own earlier attempt whose reply was
            # lost): whatever the wording, the bill being there now is what decides
            existing = await self._find_bill(number)
            if existing is not None:
                return CreateResult(external_id=existing, number=number, created=False)
            raise error

        return await self._retrying(attempt)

    async def get_sales_document(self, number: str) -> dict[str, Any] | None:
        """The bill as ``View`` returns it (``Result.Result``), or None when there is none."""
        check_bill_number(number)

        async def attempt() -> dict[str, Any] | None:
            data = await self._call(VIEW_PATH, {"formid": self.settings.form_id, "data": {"Number": number}})
            status = _response_status(data)
            if status is None:
                raise TransientError("View answered without a ResponseStatus", platform=PLATFORM)
            if not _truthy(status.get("IsSuccess")):
                text = _error_text(status)
                if _msg_code(status) == MSG_NOT_FOUND or any(t in text for t in ("不存在", "not exist", "未找到")):
                    return None
                raise error_from_status(status, f"View {self.settings.form_id} {number}")
            bill = data["Result"].get("Result")
            return bill if isinstance(bill, dict) and bill else None

        return await self._retrying(attempt)

    async def _operation(self, path: str, fid: str, what: str, op_number: str = "") -> _OpOutcome:
        """Run one status operation on the bill ``fid``; a refusal comes back, other failures raise.

        Refusal = K3Cloud answered the request and said no (state rules, downstream bills, an
        operation code the form does not have). Throttling, lost sessions and database trouble are
        retryable errors; missing permission or licence is a configuration problem: both raise.
        """
        data: dict[str, Any] = {"CreateOrgId": 0, "Numbers": [], "Ids": fid, "NetworkCtrl": ""}
        if path == UNAUDIT_PATH:
            data |= {"InterationFlags": "", "IsVerifyProcInst": "", "IgnoreInterationFlag": ""}
        payload: dict[str, Any] = {"formid": self.settings.form_id, "data": data}
        if path == OPERATION_PATH:
            payload["opNumber"] = op_number
            data |= {"PkEntryIds": [], "IgnoreInterationFlag": ""}
        answer = await self._call(path, payload)
        status = _response_status(answer)
        if status is None:
            raise TransientError(f"{what} answered without a ResponseStatus", platform=PLATFORM)
        if _truthy(status.get("IsSuccess")):
            return _OpOutcome(True)
        error = error_from_status(status, f"{what} {self.settings.form_id} FID {fid}")
        if error.retryable or isinstance(error, AuthError | ConfigurationError):
            raise error
        return _OpOutcome(False, _msg_code(status), _error_text(status))

    async def cancel_sales_document(self, number: str, reason: str = "") -> CancelResult:
        """Cancel bill ``number`` the way K3Cloud documents it; idempotent.

        Decided from the bill's statuses (ExecuteBillQuery ``FDocumentStatus``, ``FCancelStatus``,
        ``FCloseStatus``), re-read on every attempt so an attempt cut short resumes where it stopped:

        * no such bill: ``not_found``; voided (FCancelStatus B) or closed (FCloseStatus B):
          ``already_cancelled`` (K3Cloud does not say who closed a bill; a closed one no longer executes);
        * Z 暂存 / A 创建 / D 重新审核: ``Delete``;
        * B 审核中: ``CancelAssign`` (撤销, back to A or D), then ``Delete``;
        * C 已审核: ``UnAudit`` (to D), then ``Delete``.
          K3Cloud refuses to un-audit a bill that downstream bills were pushed from (发货通知单 ...);
          the documented way out is the whole-bill close (整单关闭, ``close_operation``) -> ``cancelled``;
        * a refused ``Delete`` falls back to void (作废, ``void_operation``), allowed for bills that
          are not audited -> ``cancelled``;
        * otherwise ``refused`` with K3Cloud's own message.

        ``reason`` is logged; the standard operations take no reason text. Sources: K3Cloud WebAPI
        接口说明书 V2.0 (5.1.7 UnAudit, 5.1.8 Delete), the official SDKs' ``CancelAssign`` and
        ``ExcuteOperation``, vip.kingdee.com/article/34018 (作废 ``Cancel`` / 整单关闭 via ExcuteOperation).
        """
        check_bill_number(number)
        form = self.settings.form_id

        async def attempt() -> CancelResult:
            bill = await self._bill_state(number)
            if bill is None:
                return CancelResult(outcome="not_found", message=f"no {form} numbered {number}")
            if bill.cancel_status == "B":
                return CancelResult(outcome="already_cancelled", message=f"{number} is voided (作废)")
            if bill.close_status == "B":
                return CancelResult(outcome="already_cancelled", message=f"{number} is closed (整单关闭)")
            done: list[str] = []
            status = bill.document_status
            if status == "B":
                outcome = await self._operation(CANCEL_ASSIGN_PATH, bill.fid, "CancelAssign")
                if not outcome.ok:
                    return CancelResult(outcome="refused", message=f"CancelAssign (撤销) refused: {outcome.text}")
                done.append("withdrawn from approval (CancelAssign)")
            elif status == "C":
                outcome = await self._operation(UNAUDIT_PATH, bill.fid, "UnAudit")
                if not outcome.ok:
                    return await self._close_instead(bill, f"UnAudit refused: {outcome.text}")
                done.append("un-audited")
            elif status not in ("Z", "A", "D"):
                return CancelResult(outcome="refused", message=f"{number} has FDocumentStatus {status!r}; "
                                    "not a status K3Cloud documents a cancellation for")
            outcome = await self._operation(DELETE_PATH, bill.fid, "Delete")
            if outcome.ok or outcome.msg_code == MSG_NOT_FOUND:  # not found: deleted meanwhile
                return CancelResult(outcome="cancelled", message=", ".join([*done, "deleted"]))
            return await self._void_instead(bill, done, f"Delete refused: {outcome.text}")

        log.info("kingdee cancel", connector=self.name, number=number, reason=reason)
        return await self._retrying(attempt)

    async def _close_instead(self, bill: BillState, why: str) -> CancelResult:
        op = self.settings.close_operation
        if not op:
            return CancelResult(outcome="refused", message=why)
        outcome = await self._operation(OPERATION_PATH, bill.fid, f"ExcuteOperation {op}", op)
        if outcome.ok:
            return CancelResult(outcome="cancelled", message=f"closed (整单关闭, {op}); {why}")
        return CancelResult(outcome="refused", message=f"{why}; {op} (整单关闭) refused: {outcome.text}")

    async def _void_instead(self, bill: BillState, done: list[str], why: str) -> CancelResult:
        op = self.settings.void_operation
        steps = ", ".join(done)
        prefix = f"{steps}; " if steps else ""
        if not op:
            return CancelResult(outcome="refused", message=prefix + why)
        outcome = await self._operation(OPERATION_PATH, bill.fid, f"ExcuteOperation {op}", op)
        if outcome.ok:
            return CancelResult(outcome="cancelled", message=f"{prefix}voided (作废, {op}); {why}")
        return CancelResult(outcome="refused", message=f"{prefix}{why}; {op} (作废) refused: {outcome.text}")

    async def test(self) -> str:
        async def attempt() -> str:
            await self._ensure_session()
            rows = await self._query("FID", "", limit=1, top=1)
            mode = "LoginByAppSecret" if self.uses_app_secret else "ValidateUser"
            return (f"K3Cloud login OK ({mode}, data centre {self.settings.acctID}, user {self.settings.username}); "
                    f"ExecuteBillQuery on {self.settings.form_id} returned {len(rows)} row(s)")

        return await self._retrying(attempt)
