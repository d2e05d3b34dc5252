"""JD's TDE receiver encryption (the "en" order APIs) and the key route that decrypts it.

``jingdong.pop.order.enSearch`` / ``enGet`` return ``consigneeInfo.fullname``, ``mobile``,
``telephone`` and ``fullAddress`` as TDE ciphertext; province/city/county/town stay clear. JD's
SDKs decrypt them with keys the app fetches for the authorised merchant (the "TDE" client in the
official Java SDK, mirrored by the ``sdk/secret`` package of github.com/XiBao/jos, files
``sdk/secret/client.go``, ``sdk/crypto/aes.go``, ``api/voucher/infoGet.go``, ``api/master/keyGet.go``):

1. ``jingdong.jos.voucher.info.get`` (business param ``customer_user_id`` optional) answers
   ``response.data.voucher``: base64url of ``{"sig": ..., "data": {"id", "key", "service", "act",
   "effective", "expired", "stype"}}``;
2. ``jingdong.jos.master.key.get`` with ``sdk_ver`` 2, ``ts`` (ms), ``tid`` = the voucher id and
   ``sig`` = base64(HMAC-SHA256(key=base64decode(voucher.key), '{"sdk_ver":2,"ts":<ts>,"tid":"<tid>"}'))
   answers ``response.service_key_list[].keys[]`` = ``{"id", "key_string" (base64), "version", ...}``;
3. a ciphertext is base64 of ``0x00 0x04 | key id (16 bytes) | IV (16 bytes) | AES-CBC(PKCS#5)``; the key
   id is looked up (base64 of those 16 bytes) and the key bytes are cut/zero-padded to 16 (AES-128).

Not done (and said so in the report): the SDK verifies the voucher's RSA ``sig`` against JD's public
key; a simulator cannot sign with JD's private key, so the connector only checks the voucher's
validity window. The keys live in memory only, never logged or stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HEADER = b"\x00\x04"
KEY_ID_LEN = 16
BLOCK = 16


class TdeError(ValueError):
    """A value that is not TDE ciphertext, or one no known key opens."""


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError) as exc:
            raise TdeError("not base64") from exc


def key_id_of(ciphertext: str) -> str:
    """The base64 key id a ciphertext was made with (TdeError if it is no TDE ciphertext)."""
    raw = _b64decode(ciphertext.strip())
    if len(raw) < len(HEADER) + KEY_ID_LEN + 2 * BLOCK or raw[:2] != HEADER:
        raise TdeError("not a TDE ciphertext")
    return base64.b64encode(raw[2:2 + KEY_ID_LEN]).decode()


def is_ciphertext(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 40:
        return False
    try:
        key_id_of(value)
    except TdeError:
        return False
    return True


def _aes_key(key: bytes) -> bytes:
    return key[:BLOCK] if len(key) >= BLOCK else key + b"\x00" * (BLOCK - len(key))


def decrypt(ciphertext: str, keys: Mapping[str, bytes]) -> str:
    """Clear text of one TDE value; ``keys`` maps base64 key id → key bytes."""
    key_id = key_id_of(ciphertext)
    key = keys.get(key_id)
    if key is None:
        raise TdeError("no key for this ciphertext's key id")
    raw = _b64decode(ciphertext.strip())
    body = raw[2 + KEY_ID_LEN:]
    iv, data = body[:BLOCK], body[BLOCK:]
    if not data or len(data) % BLOCK:
        raise TdeError("ciphertext length is not a multiple of the AES block")
    decryptor = Cipher(algorithms.AES(_aes_key(key)), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise TdeError("bad padding (wrong key?)")
    try:
        return padded[:-pad].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TdeError("clear text is not UTF-8 (wrong key?)") from exc


def parse_voucher(voucher: str) -> dict[str, Any]:
    """The ``data`` of a voucher from ``jingdong.jos.voucher.info.get`` (base64url JSON)."""
    try:
        decoded = json.loads(_b64decode(voucher.strip()).decode("utf-8"))
    except (TdeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TdeError("unreadable voucher") from exc
    data = decoded.get("data") if isinstance(decoded, dict) else None
    if not isinstance(data, dict) or not data.get("id") or not data.get("key"):
        raise TdeError("voucher without id/key")
    return data


def master_key_sig(voucher_key: str, sdk_ver: int, ts: int, tid: str) -> str:
    """``sig`` of ``jingdong.jos.master.key.get``: base64 HMAC-SHA256 over the SDK's exact JSON text."""
    message = f'{{"sdk_ver":{sdk_ver},"ts":{ts},"tid":"{tid}"}}'.encode()
    return base64.b64encode(hmac.new(_b64decode(voucher_key), message, hashlib.sha256).digest()).decode()


def keys_from_master(answer: Mapping[str, Any]) -> dict[str, bytes]:
    """Key id → key bytes from a ``master.key.get`` ``response`` object."""
    keys: dict[str, bytes] = {}
    for store in answer.get("service_key_list") or []:
        if not isinstance(store, Mapping):
            continue
        for key in store.get("keys") or []:
            if isinstance(key, Mapping) and key.get("id") and key.get("key_string"):
                keys[str(key["id"])] = _b64decode(str(key["key_string"]))
    return keys
