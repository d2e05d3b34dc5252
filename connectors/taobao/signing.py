"""TOP (Taobao Open Platform) request signing and time formats.

From TOP's "API调用方法详解" (open.taobao.com docId=101617, mirrored at
developer.alibaba.com/docs/doc.htm?articleId=101617):

* every call carries the system parameters ``method``, ``app_key``, ``session`` (when the API
  needs authorisation), ``timestamp`` ("yyyy-MM-dd HH:mm:ss", time zone GMT+8; the server accepts
  at most 10 minutes of clock error), ``v`` (2.0), ``sign_method`` (``hmac``, ``md5`` or
  ``hmac-sha256``), ``sign`` and optionally ``format`` (xml by default, or json);
* the signature covers all request parameters, system and business, except ``sign`` itself and
  byte[] (file) parameters, sorted by parameter name in ASCII order; names and values are
  concatenated with no separators (``bar2foo1foo_bar3foobar4``), UTF-8 encoded, then digested:
  ``md5(secret + s + secret)`` for md5, HMAC_MD5 keyed with the secret for ``hmac`` and
  HMAC_SHA256 keyed with the secret for ``hmac-sha256``; the digest is written as upper-case hex.
  The official SDKs skip parameters whose value is empty, and append a raw request body (not used
  by the form-encoded calls of this connector) after the parameters.

The documented example (secret ``helloworld``, ``taobao.item.seller.get`` ...) signs to
``66987CB115214E59E6EC978214934FB8``; ``tests/unit/test_taobao_signing.py`` checks it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from connectors.signing import concat_sorted

SignMethod = Literal["md5", "hmac", "hmac-sha256"]
SIGN_METHODS: tuple[str, ...] = ("md5", "hmac", "hmac-sha256")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""TOP's "yyyy-MM-dd HH:mm:ss"."""

try:  # China has had no DST since 1991, so the fixed offset is equivalent when tzdata is missing
    from zoneinfo import ZoneInfo

    GMT8: Any = ZoneInfo("Asia/Shanghai")
except Exception:  # pragma: no cover - depends on the host's tz database
    GMT8 = timezone(timedelta(hours=8), "GMT+8")


def param_value(value: Any) -> str | None:
    """How a parameter travels (and is signed): booleans lower-case, None left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_top_time(value)
    return str(value)


def sign_base_string(params: Mapping[str, Any]) -> str:
    """Sorted ``name + value`` pairs, ``sign`` and empty values left out (as the TOP SDKs do)."""
    return concat_sorted(params, param_value)


def top_sign(
    params: Mapping[str, Any],
    app_secret: str,
    sign_method: str = "md5",
    body: bytes | str | None = None,
) -> str:
    """The ``sign`` parameter for ``params`` (upper-case hex)."""
    payload = sign_base_string(params).encode("utf-8")
    if body:
        payload += body.encode("utf-8") if isinstance(body, str) else body
    key = app_secret.encode("utf-8")
    if sign_method == "md5":
        digest = hashlib.md5(key + payload + key, usedforsecurity=False).digest()
    elif sign_method == "hmac":
        digest = hmac.new(key, payload, hashlib.md5).digest()
    elif sign_method == "hmac-sha256":
        digest = hmac.new(key, payload, hashlib.sha256).digest()
    else:
        raise ValueError(f"unsupported TOP sign_method {sign_method!r}; use one of {', '.join(SIGN_METHODS)}")
    return digest.hex().upper()


def format_top_time(value: datetime) -> str:
    """An aware datetime as TOP wants it: "yyyy-MM-dd HH:mm:ss" in GMT+8 (sub-seconds dropped)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("TOP times need a timezone-aware datetime (a naive one is ambiguous)")
    return value.astimezone(GMT8).strftime(TIME_FORMAT)


def parse_top_time(text: str) -> datetime:
    """A TOP "yyyy-MM-dd HH:mm:ss" (GMT+8) as an aware UTC datetime."""
    return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=GMT8).astimezone(UTC)


def top_timestamp(now: datetime | None = None) -> str:
    """The ``timestamp`` system parameter for a request sent now."""
    return format_top_time(now or datetime.now(UTC))
