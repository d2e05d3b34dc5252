"""Douyin shop (抖店开放平台) request signing, ``param_json`` serialisation and push signatures.

Where each rule comes from (the official SDKs, since the API-call guide on op.jinritemai.com is a
JavaScript page the stored corpus does not hold):

* Request signature -- official Java SDK ``com.doudian.open.utils.SignUtil.sign`` and the official
  Go SDK ``utils/sign_util.go`` (doudian-sdk-golang 1.1.0, mirrored in github zsmhub/doudian-sdk):
  ``pattern = app_secret + "app_key" + app_key + "method" + method + "param_json" + param_json +
  "timestamp" + timestamp + "v" + "2" + app_secret``; the Java SDK digests it with MD5 (lower-case
  hex, left-padded to 32 digits), the Go SDK with HMAC-SHA256 keyed with ``app_secret`` (lower-case
  hex) and says so with ``sign_method=hmac-sha256``. ``access_token`` and ``sign_method`` are not
  signed.
* ``param_json`` -- the Java SDK re-parses the business JSON and sorts its keys recursively
  (``sortParamJson``) before signing; the Go SDK round-trips it through a ``map`` (Go sorts map keys
  when marshalling, at every depth) with ``SetEscapeHTML(false)`` and no spaces. What is signed is
  the exact string sent as the request body, so we serialise once: keys sorted at every depth,
  separators ``,``/``:``, UTF-8 kept as is (no ``\\uXXXX`` for Chinese), ``<``/``>``/``&`` left
  alone (as the Go SDK; the Java SDK's Gson would escape them -- ambiguity noted in the report).
* ``method`` is the URL path with ``/`` as ``.`` (``/order/searchList`` -> ``order.searchList``), as
  both SDKs derive it (``urlPathToMethod``).
* ``timestamp`` -- the Go SDK sends Unix seconds (``time.Now().Unix()``); older guides show
  "yyyy-MM-dd HH:mm:ss" (GMT+8). We send Unix seconds.
* Push (消息推送) signature -- header ``event-sign`` = MD5(app_key + raw body + app_secret), lower-case
  hex, with header ``app-id`` = app_key: github minibear2021/doudian ``doudian/core.py`` ``callback``
  and zsmhub/doudian-sdk ``message/doudian_sign.go`` ``VerifySign``, both following the 消息推送服务
  接入指南 (op.jinritemai.com/docs/guide-docs/215/1977).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

SignMethod = Literal["md5", "hmac-sha256"]
SIGN_METHODS: tuple[str, ...] = ("md5", "hmac-sha256")
API_VERSION = "2"


def method_of(path: str) -> str:
    """``/order/searchList`` -> ``order.searchList`` (the SDKs' ``urlPathToMethod``)."""
    return path.strip("/").replace("/", ".")


def path_of(method: str) -> str:
    """``order.searchList`` -> ``/order/searchList``."""
    return "/" + method.strip(".").replace(".", "/")


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def param_json(params: Mapping[str, Any] | None) -> str:
    """The business parameters as the SDKs serialise them: keys sorted at every depth, compact,
    UTF-8 kept, no HTML escaping; ``{}`` when there are none."""
    if not params:
        return "{}"
    return json.dumps(_sorted(params), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def sign_pattern(app_key: str, app_secret: str, method: str, param_json_text: str, timestamp: str) -> str:
    """The string both SDKs digest (secret on both ends; ``v`` is always 2)."""
    body = f"app_key{app_key}method{method}param_json{param_json_text}timestamp{timestamp}v{API_VERSION}"
    return f"{app_secret}{body}{app_secret}"


def doudian_sign(app_key: str, app_secret: str, method: str, param_json_text: str, timestamp: str,
                 sign_method: str = "hmac-sha256") -> str:
    """The ``sign`` query parameter (lower-case hex)."""
    pattern = sign_pattern(app_key, app_secret, method, param_json_text, timestamp).encode("utf-8")
    if sign_method == "md5":
        return hashlib.md5(pattern, usedforsecurity=False).hexdigest()
    if sign_method == "hmac-sha256":
        return hmac.new(app_secret.encode("utf-8"), pattern, hashlib.sha256).hexdigest()
    raise ValueError(f"unsupported Douyin sign_method {sign_method!r}; use one of {', '.join(SIGN_METHODS)}")


def push_sign(app_key: str, app_secret: str, body: bytes) -> str:
    """The ``event-sign`` header of a message push: MD5(app_key + body + app_secret), lower-case hex."""
    return hashlib.md5(app_key.encode("utf-8") + body + app_secret.encode("utf-8"), usedforsecurity=False).hexdigest()


def verify_push(app_key: str, app_secret: str, body: bytes, event_sign: str) -> bool:
    """Constant-time check of a push's ``event-sign``."""
    return bool(event_sign) and hmac.compare_digest(push_sign(app_key, app_secret, body), event_sign.strip().lower())


def unix_timestamp(now: datetime | None = None) -> str:
    """The ``timestamp`` system parameter: Unix seconds, as the official Go SDK sends it."""
    return str(int((now or datetime.now(UTC)).timestamp()))
