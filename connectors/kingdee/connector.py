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
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from connectors.base import (
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
from connectors.http import ApiClient, RetryPolicy
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.kingdee")

PLATFORM = "kingdee"
_STUB = "Kingdee.BOS.WebApi.ServicesStub."
LOGIN_PASSWORD_PATH = _STUB + "AuthService.ValidateUser.common.kdsvc"
LOGIN_APPSECRET_PATH = _STUB + "AuthService.LoginByAppSecret.common.kdsvc"
SAVE_PATH = _STUB + "DynamicFormService.Save.common.kdsvc"
VIEW_PATH = _STUB + "DynamicFormService.View.common.kdsvc"
QUERY_PATH = _STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"

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
class KingdeeConnector(Connector, SalesDocumentTarget):
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
        self._session_id = ""
        self._session_generation = 0
        self._login_lock = asyncio.Lock()

    @property
    def uses_app_secret(self) -> bool:
        return bool(self.settings.appid)

    async def aclose(self) -> None:
        await self.api.aclose()

    # --- transport -----------------------------------------------------------------------------

    def _add_session_header(self, request: httpx.Request) -> None:
        if self._session_id and not request.url.path.endswith(("ValidateUser.common.kdsvc",
                                                                "LoginByAppSecret.common.kdsvc")):
            request.headers[SESSION_COOKIE] = self._session_id

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
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
                return message
            raise TransientError(f"K3Cloud server error: {message[:300]}", platform=PLATFORM)
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise TransientError("unreadable (non-JSON) answer from K3Cloud", platform=PLATFORM) from None

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        policy = self.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, ConnectorError) and exc.retry_after:
                return float(exc.retry_after)
            return wait_exponential_jitter(multiplier=policy.initial_s, max=policy.max_s)(state)

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, ConnectorError) and e.retryable),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_elapsed_s),
            wait=wait,
            reraise=True,
        ):
            with attempt:
                return await operation()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- session -------------------------------------------------------------------------------

    async def _login(self) -> None:
        """Log in (caller holds the lock); keeps the session cookies in the shared HTTP client."""
        s = self.settings
        if self.uses_app_secret:
            path = LOGIN_APPSECRET_PATH
            payload: dict[str, Any] = {"acctID": s.acctID, "username": s.username, "appId": s.appid,
                                       "appSecret": secret(self.secrets.appsecret), "lcid": s.lcid}
        else:
            path = LOGIN_PASSWORD_PATH
            payload = {"acctID": s.acctID, "username": s.username,
                       "password": secret(self.secrets.password), "lcid": s.lcid}
        self.api.client.cookies.clear()
        self._session_id = ""
        data = await self._post(path, payload)
        if not isinstance(data, dict):
            raise AuthError("K3Cloud login answered without a login result", platform=PLATFORM)
        result_type = data.get("LoginResultType")
        try:
            result_type = int(result_type)
        except (TypeError, ValueError):
            result_type = None
        if result_type != 1:
            message = str(data.get("Message") or "login refused")
            raise AuthError(f"K3Cloud login failed for user {s.username!r} on data centre {s.acctID!r}: {message}",
                            code=None if result_type is None else str(result_type), platform=PLATFORM)
        session_id = self.api.client.cookies.get(SESSION_COOKIE) or str(data.get("KDSVCSessionId") or "")
        if session_id and SESSION_COOKIE not in self.api.client.cookies:
            self.api.client.cookies.set(SESSION_COOKIE, session_id, domain=httpx.URL(self.api.base_url).host)
        self._session_id = session_id
        self._session_generation += 1
        log.info("kingdee login", connector=self.name, mode="appsecret" if self.uses_app_secret else "password")

    async def _ensure_session(self) -> int:
        if self._session_generation == 0:
            async with self._login_lock:
                if self._session_generation == 0:
                    await self._login()
        return self._session_generation

    async def _relogin(self, stale_generation: int) -> None:
        async with self._login_lock:
            if self._session_generation == stale_generation:  # nobody logged in again meanwhile
                await self._login()

    async def _call(self, path: str, payload: dict[str, Any]) -> Any:
        """Call with the session; when K3Cloud says the session/context is lost, log in again once."""
        generation = await self._ensure_session()
        data = await self._post(path, payload)
        if _session_lost(data):
            log.info("kingdee session lost; logging in again", connector=self.name)
            await self._relogin(generation)
            data = await self._post(path, payload)
            if _session_lost(data):
                raise AuthError("K3Cloud rejected the session right after a fresh login", code="1",
                                platform=PLATFORM)
        return data

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

    async def test(self) -> str:
        async def attempt() -> str:
            await self._ensure_session()
            rows = await self._query("FID", "", limit=1, top=1)
            mode = "LoginByAppSecret" if self.uses_app_secret else "ValidateUser"
            return (f"K3Cloud login OK ({mode}, data centre {self.settings.acctID}, user {self.settings.username}); "
                    f"ExecuteBillQuery on {self.settings.form_id} returned {len(rows)} row(s)")

        return await self._retrying(attempt)
