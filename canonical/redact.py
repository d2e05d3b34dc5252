"""The one redaction policy: what is secret, what is personal, and how each is shown.

Logs (``hub.logging``), validation problems (``canonical.validation``) and anything else that shows
a payload to a person (errors, timelines, the mapping engine's error values) use these rules, so a
field is hidden everywhere or nowhere. It lives in ``canonical`` because that is the bottom layer:
connectors, mappings, workflows, store and hub may all import it.

Rules, by field name (the key of a dict, at any depth):

* A key is split into words at ``_``, ``-``, ``.``, spaces and camelCase humps (``appSecret`` →
  ``app``, ``secret``). Matching is by whole word, never by substring: ``signalled``, ``design``,
  ``assignee``, ``tokenizer`` and ``nickel`` are not secrets or personal data.
* **Secret** (shown as ``********``, whatever the value): a word among :data:`SECRET_WORDS`
  (``secret``, ``password``, ``token``, ``session``, ``sign``, ``signature``, ``authorization``,
  ``cookie``...), or the whole key among :data:`SECRET_NAMES` (``api_key``, ``apikey``,
  ``private_key``...) — unless the last word only qualifies it (``sign_method``, ``token_type``,
  ``session_expires``, ``token_name``: describing a secret is not the secret).
* **Personal** (shown partially, enough to find the record): a word among :data:`PERSONAL_WORDS`
  (``mobile``, ``phone``, ``tel``, ``address``, ``street``, ``detail``, ``email``, ``nick``...),
  ``id_card``, or ``name`` when it is the whole key or qualifies a person (``receiver_name``,
  ``buyer_name``; not ``connector_name`` or ``flow_name``, which operators need to read).
* Values under a secret or personal key are hidden whole, nested or not; other dicts and lists
  are walked recursively.

Masking keeps the first 3 and the last 2 characters of values longer than 5 (``138****78``),
otherwise ``****`` (a short name shows nothing). Free text (log messages, error strings) is not
parsed by key, so :func:`scrub_text` also hides anything shaped like a mainland mobile number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

SECRET_MASK = "********"

SECRET_WORDS = frozenset({
    "secret", "secrets", "password", "passwd", "pwd", "passphrase", "token", "tokens", "session", "sessionkey",
    "sign", "signature", "sig", "authorization", "auth", "cookie", "cookies", "credential", "credentials",
    "apikey", "accesstoken", "refreshtoken", "appsecret", "clientsecret", "jwt", "bearer",
})
"""A key holding one of these words is a secret (``app_secret``, ``access_token``, ``X-Auth-Token``)."""

SECRET_NAMES = frozenset({
    "api_key", "x_api_key", "private_key", "secret_key", "session_key", "access_key_secret", "app_key_secret",
    "encrypt_key", "encryption_key", "encryption_keys", "aes_key", "signing_key", "payload_key", "payload_keys",
    "fernet_key",
})
"""Whole keys that are secrets although none of their words is (``key`` alone is not: ``order_key``)."""

QUALIFIERS = frozenset({
    "method", "methods", "type", "kind", "count", "expires", "expiry", "expire", "expired", "ttl", "in", "at",
    "version", "name", "names", "url", "length", "len", "algorithm", "alg", "mode", "role", "required", "valid",
    "status", "ok",
})
"""Last words that describe a secret rather than hold it: ``sign_method``, ``token_type``, ``expires_in``."""

PERSONAL_WORDS = frozenset({
    "mobile", "mobiles", "phone", "phones", "tel", "telephone", "cellphone", "address", "addresses", "addr",
    "street", "detail", "email", "emails", "nick", "nickname", "idcard", "receiver", "consignee",
    "recipient",
})
"""A key holding one of these words is personal data (``receiver_mobile``, ``buyer_nick``, ``post_tel``)."""

PERSON_QUALIFIERS = frozenset({
    "receiver", "buyer", "consignee", "customer", "recipient", "contact", "real", "full", "first", "last",
    "given", "family", "user", "member", "post", "shipping", "billing", "person", "holder",
})
"""``name`` is personal when it is the whole key or follows one of these (``buyer_name``)."""

_PERSONAL_PAIRS = frozenset({("id", "card"), ("id", "number"), ("zip", "code")})
# ``receiver`` alone holds the whole receiver (a dict or a string): personal. The pairs catch
# ``id_card``/``idCard``/``id_number`` (identity card numbers) without touching ``id`` or ``card``.

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+")
_CN_MOBILE_IN_TEXT = re.compile(r"(?<![\d.])(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?![\d.])")
_PAIR_IN_TEXT = re.compile(  # key=value anywhere; key: value only quoted ("k": v, 'k': v), as prose uses "x: y"
    r"(?<![\w-])(?:([\"'])([A-Za-z][\w.-]*)\1(\s?:\s?)|([A-Za-z][\w.-]*)(\s?=\s?))(?!\*{8})"
    r"(\"[^\"]*\"|'[^']*'|[^\s&,;'\")\]}]+)")
_BEARER_IN_TEXT = re.compile(r"\b(Bearer|Basic)\s+[\w.~+/=-]+", re.I)


def words(key: str) -> list[str]:
    """``receiverMobile`` / ``receiver-mobile`` / ``RECEIVER_MOBILE`` → ``["receiver", "mobile"]``."""
    return [w.lower() for part in re.split(r"[\s_.\-/:]+", key) if part for w in _WORD.findall(part)]


@lru_cache(maxsize=4096)  # every log event asks about the same few dozen keys
def is_secret(key: str) -> bool:
    """Whether a field with this name holds a credential (its value is never shown, not even in part)."""
    parts = words(key)
    if not parts:
        return False
    if "_".join(parts) in SECRET_NAMES or "".join(parts) in SECRET_WORDS:
        return True
    if not any(p in SECRET_WORDS for p in parts):
        return False
    return parts[-1] not in QUALIFIERS


@lru_cache(maxsize=4096)
def is_personal(key: str) -> bool:
    """Whether a field with this name holds personal data (shown masked: enough to find the record)."""
    parts = words(key)
    if not parts or is_secret(key):
        return False
    if any(p in PERSONAL_WORDS for p in parts) or "".join(parts) in PERSONAL_WORDS:
        return True
    if any(pair in _PERSONAL_PAIRS for pair in zip(parts, parts[1:], strict=False)):
        return True
    if parts[-1] in ("name", "names"):
        return len(parts) == 1 or any(p in PERSON_QUALIFIERS for p in parts[:-1])
    return False


def mask(value: Any) -> str:
    """A personal value, partly: ``13812345678`` → ``138****78``; 5 characters or fewer → ``****``."""
    text = value if isinstance(value, str) else str(value)
    return text[:3] + "****" + text[-2:] if len(text) > 5 else "****"


def _scrub_pair(match: re.Match[str]) -> str:
    groups = match.groups()
    quote, key, sep = groups[:3] if groups[1] else ("", groups[3], groups[4])
    return f"{quote}{key}{quote}{sep}{SECRET_MASK}" if is_secret(key) else match.group()


_WEBHOOK_KEY_IN_TEXT = re.compile(r"(webhook/send\?(?:[^\s&\"']*&)*key=)[^\s&\"']+")
"""A WeCom robot's webhook key is its only credential, carried in the URL (``…/webhook/send?key=…``)."""


def scrub_text(text: str) -> str:
    """Free text made safe: ``key=value`` / ``key: value`` pairs whose key is a secret are hidden (a URL's
    ``sign=...&session=...`` in an HTTP error), as are bearer credentials and every number shaped
    like a mainland mobile (``... 13812345678 ...`` → ``138****78``)."""
    text = _BEARER_IN_TEXT.sub(lambda m: f"{m.group(1)} {SECRET_MASK}", text)
    text = _WEBHOOK_KEY_IN_TEXT.sub(lambda m: f"{m.group(1)}{SECRET_MASK}", text)
    text = _PAIR_IN_TEXT.sub(_scrub_pair, text)
    return _CN_MOBILE_IN_TEXT.sub(lambda m: mask(re.sub(r"[^\d]", "", m.group())[-11:]), text)


def redact_value(key: str, value: Any) -> Any:
    """``value`` as it may be shown under field name ``key``."""
    if value is None or value == "":
        return value  # absence is not a secret, and "no phone" is what an operator must see
    if is_secret(key):
        return SECRET_MASK
    if is_personal(key):
        if isinstance(value, Mapping):
            return {k: _hide_all(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_hide_all(v) for v in value]
        return mask(value)
    return redact(value)


def _hide_all(value: Any) -> Any:
    """Everything under a personal key is personal (a ``receiver`` dict's ``province`` too)."""
    if isinstance(value, Mapping):
        return {k: SECRET_MASK if is_secret(str(k)) else _hide_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hide_all(v) for v in value]
    return value if value is None or value == "" else mask(value)


def redact(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, scalars; any depth) safe to log or show.

    Dict keys decide (see the module docstring); strings outside any such key go through
    :func:`scrub_text`; pydantic models are redacted as their JSON dump. Other scalars are returned
    as they are.
    """
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    if hasattr(value, "model_dump") and not isinstance(value, type):  # a pydantic model: an Order, a result
        return redact(value.model_dump(mode="json"))
    return value
