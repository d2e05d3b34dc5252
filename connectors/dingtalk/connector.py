"""DingTalk (钉钉) custom group robot (自定义机器人) with the 加签 security setting: capability 'notify'.

Wire protocol (DingTalk open platform, "自定义机器人接入" / "自定义机器人安全设置" / "消息类型及数据格式"):

* ``POST {base_url}/robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN`` with a UTF-8 JSON body
  (``Content-Type: application/json;charset=utf-8``). ``access_token`` is the webhook's token,
  ``timestamp`` the current time in **milliseconds** ("与请求调用时间误差不能超过1小时").
* ``sign``: "把timestamp+"\\n"+密钥当做签名字符串，使用HmacSHA256算法计算签名，然后进行Base64 encode，
  最后再把签名参数再进行urlEncode" -- ``quote_plus(base64(HMAC-SHA256(key=secret,
  msg=f"{timestamp}\\n{secret}")))``, UTF-8; the secret is the ``SEC...`` string shown under 加签.
  A fresh timestamp and signature are made for every attempt (a retry never re-sends an old one).
* Body: ``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles": [...],
  "isAtAll": false}}``. ``title`` is only what the conversation list shows ("首屏会话透出的展示内容"),
  so the text starts with the title as a heading. To @ someone, the mobile must also appear in the
  text as ``@138...`` (members outside the group are not mentioned); the connector appends the ones
  the text lacks.
* Answer (HTTP 200): ``{"errcode": 0, "errmsg": "ok"}``; otherwise, as the platform answers them:
  ``310000`` the security settings refused the message (``sign not match``, ``invalid timestamp``,
  ``keywords not in content``, ``ip ... not in whitelist``) -> :class:`AuthError`;
  ``300001``/``300005`` ``token is not exist``, ``400101`` access_token 不存在, ``400102`` 机器人已停用,
  ``400106`` 机器人不存在 -> :class:`AuthError`; ``400013`` 群已被解散 -> :class:`ConfigurationError`;
  ``130101`` ``send too fast, exceed 20 times per minute`` and ``410100`` 发送速度太快而限流 ->
  :class:`ThrottledError` with ``retry_after`` 600 s ("每个机器人每分钟最多发送20条消息到群里，如果超过
  20条，会限流10分钟"); ``90030`` ``webhook over limit`` (a call quota, not the per-minute limit) ->
  :class:`ThrottledError` after an hour; ``-1`` 系统繁忙 -> :class:`TransientError`; ``400105``
  unsupported message type and ``430101``-``430104`` unsafe link/text/image/content ->
  :class:`InvalidRequestError`; anything else -> :class:`PermanentError`.

Secrets stay out of errors and logs: the URL carries the token and is never logged (the HTTP client
logs the path only), error texts go through :meth:`Connector.redact_secrets`, and ``repr`` shows the
connector's name only.

DingTalk has no read-only call for a robot: :meth:`DingTalkConnector.test` posts one short text
("connection test") to the group.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator

from connectors.base import (
    Connector,
    ConnectorSecrets,
    ConnectorSettings,
    Notification,
    NotificationSink,
    connector_kind,
    secret,
)
from connectors.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    InvalidRequestError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from connectors.http import ApiClient
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.dingtalk")

PLATFORM = "dingtalk"
DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
SEND_PATH = "/robot/send"

#: "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟"
MESSAGES_PER_MINUTE = 20
THROTTLE_BAN_S = 600.0
QUOTA_RETRY_S = 3600.0

OK = 0
SYSTEM_BUSY = -1
SECURITY_REFUSED = 310000  # sign not match / invalid timestamp / keywords not in content / ip not in whitelist
TOKEN_CODES = frozenset({300001, 300005, 400101, 400102, 400106})
GROUP_DISSOLVED = 400013
THROTTLE_CODES = frozenset({130101, 410100})
QUOTA_EXCEEDED = 90030
UNSUPPORTED_MSGTYPE = 400105
CONTENT_REFUSED = frozenset({430101, 430102, 430103, 430104})


class DingTalkSettings(ConnectorSettings):
    # a base_url pasted with the webhook query must not echo the token into the error
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_BASE_URL, description="the robot API host (no path); a simulator in tests")
    keyword: str = Field("", description="the robot's 自定义关键词, when its security settings also require one: "
                                         "added to the text when missing")

    @field_validator("base_url")
    @classmethod
    def _no_query(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host or url.query:
            raise ValueError("must be an absolute http(s) URL without a query (the token is a secret, "
                             "not part of base_url)")
        return value


class DingTalkSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    access_token: SecretStr = Field(description="the access_token=... value of the robot's webhook URL")
    secret: SecretStr = Field(description="the SEC... string shown under the robot's 加签 setting")

    @field_validator("access_token")
    @classmethod
    def _not_a_url(cls, value: SecretStr) -> SecretStr:
        if "://" in value.get_secret_value() or "access_token=" in value.get_secret_value():
            raise ValueError("give only the value after access_token= in the webhook URL, not the URL")
        return value


def dingtalk_sign(secret_value: str, timestamp: int | str) -> str:
    """``base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))``, UTF-8, before URL-encoding."""
    digest = hmac.new(secret_value.encode("utf-8"), f"{timestamp}\n{secret_value}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_query(access_token: str, secret_value: str, timestamp: int) -> str:
    """The query string of ``/robot/send``: the token, the millisecond timestamp and the URL-encoded sign."""
    return (f"access_token={quote(access_token, safe='')}&timestamp={timestamp}"
            f"&sign={quote_plus(dingtalk_sign(secret_value, timestamp))}")


def now_ms() -> int:
    return int(time.time() * 1000)


def markdown_body(message: Notification, keyword: str = "") -> dict[str, Any]:
    """The documented markdown message: the title as a heading, mentioned mobiles present in the text."""
    text = f"### {message.title}\n\n{message.text}" if message.title else message.text
    mobiles = list(dict.fromkeys(m.strip() for m in message.at_mobiles if m.strip()))
    missing = [m for m in mobiles if f"@{m}" not in text]
    if missing:
        text += "\n\n" + " ".join(f"@{m}" for m in missing)
    if keyword and keyword not in text:
        text += f"\n\n{keyword}"
    return {"msgtype": "markdown", "markdown": {"title": message.title or keyword or "Tongdao", "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False}}


def classify_error(errcode: int | None, errmsg: str) -> ConnectorError:
    """A non-zero ``errcode`` as the connector error taxonomy (``errmsg`` already redacted)."""
    text = f"robot/send: {errmsg or 'error'}"
    kwargs: dict[str, Any] = {"code": None if errcode is None else str(errcode), "platform": PLATFORM,
                              "details": {"errcode": errcode}}
    if errcode == SECURITY_REFUSED:
        low = errmsg.lower()
        if "timestamp" in low:
            text += " - the clock of this host may be off by more than an hour"
        elif "keyword" in low:
            text += " - set the robot's 自定义关键词 as setting 'keyword'"
        return AuthError(text, **kwargs)
    if errcode in TOKEN_CODES:
        return AuthError(text, **kwargs)
    if errcode in THROTTLE_CODES:
        return ThrottledError(text, retry_after=THROTTLE_BAN_S, **kwargs)
    if errcode == QUOTA_EXCEEDED:
        return ThrottledError(text, retry_after=QUOTA_RETRY_S, **kwargs)
    if errcode == SYSTEM_BUSY:
        return TransientError(text, **kwargs)
    if errcode == GROUP_DISSOLVED:
        return ConfigurationError(text, **kwargs)
    if errcode == UNSUPPORTED_MSGTYPE or errcode in CONTENT_REFUSED:
        return InvalidRequestError(text, **kwargs)
    return PermanentError(text, **kwargs)


class HideWebhookQuery(logging.Filter):
    """httpx logs every request at INFO with its full URL ("HTTP Request: POST <url> ..."); on the
    robot's send path the query string carries the token, so it is replaced by ``?***`` before any
    handler sees the record (installed once on the ``httpx`` logger when this module is imported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_hide_query(a) for a in record.args)
        return True


def _hide_query(arg: object) -> object:
    if isinstance(arg, httpx.URL) and arg.path.endswith(SEND_PATH) and arg.query:
        return str(arg.copy_with(query=None)) + "?***"
    return arg


if not any(isinstance(f, HideWebhookQuery) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(HideWebhookQuery())


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@connector_kind("dingtalk", title="DingTalk custom group robot (钉钉自定义机器人, 加签)")
class DingTalkConnector(Connector, NotificationSink):
    Settings = DingTalkSettings
    Secrets = DingTalkSecrets

    settings: DingTalkSettings
    secrets: DingTalkSecrets

    def __init__(self, name: str, settings: DingTalkSettings, secrets: DingTalkSecrets) -> None:
        super().__init__(name, settings, secrets)
        token, signing_secret = secret(secrets.access_token).strip(), secret(secrets.secret).strip()
        if not token or not signing_secret:
            raise ConfigurationError(f"connector {name!r} (dingtalk): access_token and secret must not be empty")
        self.api = ApiClient(platform=PLATFORM, base_url=settings.base_url.rstrip("/"), check=self._check_response,
                             limiter=RateLimiter(settings.rate_limit_per_s), timeout_s=settings.timeout_s)

    def __repr__(self) -> str:
        return f"<DingTalkConnector {self.name!r}>"

    # --- transport -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        token = secret(self.secrets.access_token)
        return self.redact_secrets(text, quote(token, safe=""), quote_plus(secret(self.secrets.secret)))

    def _build(self, body: dict[str, Any]) -> httpx.Request:
        """A freshly stamped and signed request (one per attempt: the sign covers the timestamp)."""
        query = signed_query(secret(self.secrets.access_token), secret(self.secrets.secret), now_ms())
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.api.build("POST", f"{SEND_PATH}?{query}", content=content,
                              headers={"Content-Type": "application/json;charset=utf-8"})

    def _check_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the robot API", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the robot API host, without a path)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the robot API", code=str(status), platform=PLATFORM)
        try:
            answer = response.json()
        except ValueError:
            raise TransientError(f"HTTP {status}: not JSON", platform=PLATFORM) from None
        if not isinstance(answer, dict):
            raise TransientError("the robot API answered with a non-object", platform=PLATFORM)
        errcode = _int(answer.get("errcode"))
        if errcode != OK:
            raise classify_error(errcode, self._redact(str(answer.get("errmsg") or "").strip()))

    async def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(body))
        self._check_response(response)  # kept for a client without the check
        return response.json()

    # --- notify --------------------------------------------------------------------------------

    async def notify(self, message: Notification) -> str:
        """Send ``message`` as one markdown message; raises a ConnectorError when DingTalk refuses it."""
        body = markdown_body(message, self.settings.keyword)
        answer = await self._send(body)
        log.info("notified", connector=self.name, key=message.key, mentions=len(body["at"]["atMobiles"]))
        return f"dingtalk accepted {message.title!r} (errcode {answer.get('errcode')}, {answer.get('errmsg', 'ok')})"

    async def test(self) -> str:
        """Posts one short text to the group: DingTalk has no read-only robot call to check the token
        and the 加签 secret, so the check is a visible "connection test" message."""
        content = f"Tongdao connection test ({self.name})"
        if self.settings.keyword and self.settings.keyword not in content:
            content += f" {self.settings.keyword}"
        await self._send({"msgtype": "text", "text": {"content": content}, "at": {"atMobiles": [], "isAtAll": False}})
        return f"ok: robot accepted a connection-test message (connector {self.name}, 加签 verified)"
