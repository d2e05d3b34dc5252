"""WeCom (企业微信) group robot (群机器人) webhook: capability 'notify'.

Wire protocol (WeCom developer docs "群机器人配置说明", document/path/91770, and 全局错误码, path/90455):

* ``POST {base_url}/cgi-bin/webhook/send?key=KEY`` with a UTF-8 JSON body. **The key is the only
  credential**: WeCom group robots have no signing (unlike DingTalk's 加签); whoever holds the webhook
  URL can post to the group ("一定要保护好机器人的webhook地址，避免泄漏"), so the key is a secret and the
  URL is never logged.
* Markdown: ``{"msgtype": "markdown", "markdown": {"content"}}``, content "最长不超过4096个字节，必须是
  utf8编码"; a subset of markdown (headings, bold, links, inline code, quotes, ``<font color="info|
  comment|warning">``). There is no title field: the title is sent as the first heading. Content longer
  than 4096 bytes is cut at a character boundary (WeCom would refuse the whole message with 40058).
* Mentions: "text/markdown类型消息支持在content中使用<@userid>扩展语法来@群成员" -- markdown can only
  mention by **userid**; mentioning by **mobile** (``mentioned_mobile_list``, "@all") exists for
  ``text`` messages only (``{"msgtype": "text", "text": {"content", "mentioned_list",
  "mentioned_mobile_list"}}``, content at most 2048 bytes). So a notification with ``at_mobiles`` is
  followed by a short text message carrying ``mentioned_mobile_list`` (setting ``mobile_mentions:
  text_message``, the default; ``ignore`` drops the mentions).
* Limit: "每个机器人发送的消息不能超过20条/分钟".
* Answer (HTTP 200): ``{"errcode": 0, "errmsg": "ok"}``; otherwise ``93000`` ``invalid webhook url``
  (the key is wrong or the robot was removed from the group) -> :class:`AuthError`; ``45009``
  ``api freq out of limit`` -> :class:`ThrottledError` after 60 s ("按分钟拦截则被屏蔽60秒");
  ``-1`` 系统繁忙 ("建议稍候重试") -> :class:`TransientError`; ``40008`` invalid message type,
  ``40035`` invalid parameter, ``40058`` invalid request parameter (e.g. ``markdown.content exceed max
  length 4096``) -> :class:`InvalidRequestError`; anything else -> :class:`PermanentError`.

:meth:`WeComConnector.test` posts one short "connection test" text to the group: sending is the only
call a robot key allows that shows the key works.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal
from urllib.parse import quote

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

log = structlog.get_logger("tongdao.wecom")

PLATFORM = "wecom"
DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
SEND_PATH = "/cgi-bin/webhook/send"

MESSAGES_PER_MINUTE = 20  # "每个机器人发送的消息不能超过20条/分钟"
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
THROTTLE_RETRY_S = 60.0

OK = 0
SYSTEM_BUSY = -1
INVALID_WEBHOOK = 93000
FREQ_OUT_OF_LIMIT = 45009
INVALID_REQUEST_CODES = frozenset({40008, 40035, 40058})
TRUNCATED_MARK = "\n…"


class WeComSettings(ConnectorSettings):
    # a base_url pasted with the webhook query must not echo the token into the error
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(DEFAULT_BASE_URL, description="the WeCom API host (no path); a simulator in tests")
    mobile_mentions: Literal["text_message", "ignore"] = Field(
        "text_message", description="markdown cannot @ by mobile: follow it with a text message carrying "
                                    "mentioned_mobile_list, or ignore at_mobiles")

    @field_validator("base_url")
    @classmethod
    def _no_query(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host or url.query:
            raise ValueError("must be an absolute http(s) URL without a query (the key is a secret, "
                             "not part of base_url)")
        return value


class WeComSecrets(ConnectorSecrets):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    key: SecretStr = Field(description="the key=... value of the robot's webhook URL (the robot's only credential)")

    @field_validator("key")
    @classmethod
    def _not_a_url(cls, value: SecretStr) -> SecretStr:
        if "://" in value.get_secret_value() or "key=" in value.get_secret_value():
            raise ValueError("give only the value after key= in the webhook URL, not the URL")
        return value


def truncate_utf8(text: str, limit: int, mark: str = TRUNCATED_MARK) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (``mark`` appended when cut), never mid-character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False
    room = limit - len(mark.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + mark, True


def markdown_content(message: Notification) -> tuple[str, bool]:
    """The title as the first heading, then the markdown body, within 4096 bytes."""
    content = f"### {message.title}\n{message.text}" if message.title else message.text
    return truncate_utf8(content, MARKDOWN_MAX_BYTES)


def mention_body(message: Notification) -> dict[str, Any] | None:
    """The follow-up text message that @-mentions ``at_mobiles`` (None when there is nobody)."""
    mobiles = list(dict.fromkeys(m.strip() for m in message.at_mobiles if m.strip()))
    if not mobiles:
        return None
    content, _ = truncate_utf8(message.title or "notification", TEXT_MAX_BYTES)
    return {"msgtype": "text", "text": {"content": content, "mentioned_mobile_list": mobiles}}


def classify_error(errcode: int | None, errmsg: str) -> ConnectorError:
    """A non-zero ``errcode`` as the connector error taxonomy (``errmsg`` already redacted)."""
    text = f"webhook/send: {errmsg or 'error'}"
    kwargs: dict[str, Any] = {"code": None if errcode is None else str(errcode), "platform": PLATFORM,
                              "details": {"errcode": errcode}}
    if errcode == INVALID_WEBHOOK:
        return AuthError(text + " - check secret 'key' (and that the robot is still in the group)", **kwargs)
    if errcode == FREQ_OUT_OF_LIMIT:
        return ThrottledError(text, retry_after=THROTTLE_RETRY_S, **kwargs)
    if errcode == SYSTEM_BUSY:
        return TransientError(text, **kwargs)
    if errcode in INVALID_REQUEST_CODES:
        return InvalidRequestError(text, **kwargs)
    return PermanentError(text, **kwargs)


class HideWebhookQuery(logging.Filter):
    """httpx logs every request at INFO with its full URL ("HTTP Request: POST <url> ..."); on the
    robot's send path the query string carries the key, so it is replaced by ``?***`` before any
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


@connector_kind("wecom", title="WeCom group robot (企业微信群机器人)")
class WeComConnector(Connector, NotificationSink):
    Settings = WeComSettings
    Secrets = WeComSecrets

    settings: WeComSettings
    secrets: WeComSecrets

    def __init__(self, name: str, settings: WeComSettings, secrets: WeComSecrets) -> None:
        super().__init__(name, settings, secrets)
        key = secret(secrets.key).strip()
        if not key:
            raise ConfigurationError(f"connector {name!r} (wecom): secret 'key' must not be empty")
        self.api = ApiClient(platform=PLATFORM, base_url=settings.base_url.rstrip("/"), check=self._check_response,
                             limiter=RateLimiter(settings.rate_limit_per_s), timeout_s=settings.timeout_s)

    def __repr__(self) -> str:
        return f"<WeComConnector {self.name!r}>"

    # --- transport -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self.redact_secrets(text, quote(secret(self.secrets.key), safe=""))

    def _build(self, body: dict[str, Any]) -> httpx.Request:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.api.build("POST", f"{SEND_PATH}?key={quote(secret(self.secrets.key), safe='')}",
                              content=content, headers={"Content-Type": "application/json"})

    def _check_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from the webhook API", code=str(status), platform=PLATFORM)
        if status == 404:
            raise ConfigurationError("HTTP 404: check base_url (the WeCom API host, without a path)",
                                     code="404", platform=PLATFORM)
        if status >= 400:
            raise InvalidRequestError(f"HTTP {status} from the webhook API", code=str(status), platform=PLATFORM)
        try:
            answer = response.json()
        except ValueError:
            raise TransientError(f"HTTP {status}: not JSON", platform=PLATFORM) from None
        if not isinstance(answer, dict):
            raise TransientError("the webhook API answered with a non-object", platform=PLATFORM)
        errcode = _int(answer.get("errcode"))
        if errcode != OK:
            raise classify_error(errcode, self._redact(str(answer.get("errmsg") or "").strip()))

    async def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.send_with_retry(lambda: self._build(body))
        self._check_response(response)  # kept for a client without the check
        return response.json()

    # --- notify --------------------------------------------------------------------------------

    async def notify(self, message: Notification) -> str:
        """Send ``message`` as one markdown message (plus a text message for mobile mentions).

        The markdown message is the notification: its failure raises. A failed mention follow-up
        does not (raising would make the hub send the markdown again); it is logged and reported in
        the returned summary."""
        content, cut = markdown_content(message)
        await self._send({"msgtype": "markdown", "markdown": {"content": content}})
        summary = f"wecom accepted {message.title!r}" + (" (truncated to 4096 bytes)" if cut else "")
        mention = mention_body(message) if self.settings.mobile_mentions == "text_message" else None
        if mention is not None:
            try:
                await self._send(mention)
                summary += f"; mentioned {len(mention['text']['mentioned_mobile_list'])} by mobile"
            except ConnectorError as exc:
                log.warning("mention not delivered", connector=self.name, key=message.key, error=self._redact(str(exc)))
                summary += f"; mentions not delivered: {self._redact(str(exc))}"
        log.info("notified", connector=self.name, key=message.key, truncated=cut)
        return summary

    async def test(self) -> str:
        """Posts one short text to the group (a robot key allows no read-only call)."""
        await self._send({"msgtype": "text", "text": {"content": f"Tongdao connection test ({self.name})"}})
        return f"ok: robot accepted a connection-test message (connector {self.name})"
