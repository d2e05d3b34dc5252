"""Pinduoduo open platform (拼多多开放平台, POP) request signing and time formats.

Where each rule comes from:

* Gateway and common parameters -- the POP API pages ("公共参数"; e.g. the page of
  ``pdd.order.list.get``, mirrored at blog.youkuaiyun.com/YONG823_API/article/details/132664617):
  ``https://gw-api.pinduoduo.com/api/router`` (POST), ``type`` (API name), ``client_id``,
  ``access_token`` (the seller's authorisation, for APIs that need one), ``timestamp`` ("UNIX时间戳,
  单位秒,需要与拼多多服务器时间差值在10分钟内"), ``data_type`` (JSON or XML, "注意是大写", default JSON),
  ``version`` (default V1) and ``sign``.
* Signature -- the official PHP SDK ``Com\\Pdd\\Pop\\Sdk\\PopHttpClient::makeSign`` (vendored at
  github.com/brisk21/shopping-guide ``vendor/pdd/src/PopHttpClient.php``): "签名步骤一：按字典序排序参数",
  every parameter except ``sign`` and except empty values written as ``name + value`` with no
  separator, "签名步骤二：在string首尾加上client_secret", "签名步骤三：MD5加密", "签名步骤四：所有字符转为大写".
  Booleans travel as ``true``/``false`` (``uniqueParams``) and structured values as JSON
  (``PopBaseHttpRequest::setUserParam`` json_encodes non-primitive parameters; the Node SDK
  github.com/lywzx/pdd-node-sdk ``packages/core/src/libs/pdd-client.ts`` ``JSON.stringify``-es
  objects before ``sign()`` the same way), and the JSON text is what is signed.

No worked example with a published signature was found in the stored documentation, so the
known-answer tests spell out the documented base string and its MD5 (see
``tests/unit/test_pdd_connector.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connectors.signing import concat_sorted

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How POP writes times in answers (``updated_at``, ``pay_time``...): Beijing wall time."""

CST = timezone(timedelta(hours=8), "CST")  # China has had no DST since 1991


def param_value(value: Any) -> str | None:
    """How one parameter travels (and is signed): None left out, booleans lower-case, lists and
    dicts as compact JSON (the SDKs' json_encode / JSON.stringify), datetimes as unix seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return str(unix_seconds(value))
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def sign_base_string(params: Mapping[str, Any]) -> str:
    """Sorted ``name + value`` pairs; ``sign`` and empty values left out, as PopHttpClient does."""
    return concat_sorted(params, param_value)


def pdd_sign(params: Mapping[str, Any], client_secret: str) -> str:
    """``upper(md5(client_secret + sorted name+value + client_secret))``."""
    text = client_secret + sign_base_string(params) + client_secret
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def unix_seconds(value: datetime) -> int:
    """An aware datetime as POP wants it in time filters and ``timestamp``: whole unix seconds."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("POP times need a timezone-aware datetime (a naive one is ambiguous)")
    return int(value.timestamp())


def parse_pdd_time(text: str) -> datetime:
    """A POP "yyyy-MM-dd HH:mm:ss" (Beijing time) as an aware UTC datetime."""
    return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=CST).astimezone(UTC)


def pdd_timestamp(now: datetime | None = None) -> str:
    """The ``timestamp`` common parameter for a request sent now."""
    return str(unix_seconds(now or datetime.now(UTC)))
