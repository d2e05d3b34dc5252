"""Payload encryption for everything the hub hands to Temporal (AES-256-GCM), with key rotation.

Workflow inputs and results, signals, queries, activity inputs and results carry orders: names,
phones, addresses. Temporal stores them in its history database (and shows them in its Web UI)
for as long as the history is retained, so the hub encrypts every payload before it leaves the
process: Temporal only ever sees ``encoding: binary/encrypted`` and the id of the key used.
Search attributes are *not* payloads of the codec (the SDK converts them on its own path), so
``ExternalOrderId``/``Stage``/... stay searchable; failure messages stay clear text too (Temporal's
default), which is why connectors keep personal data out of error messages.

**Keys.** A keyring of ``id:base64key`` pairs (comma- or newline-separated), from
``TONGDAO_PAYLOAD_KEYS`` or the file ``TONGDAO_PAYLOAD_KEYS_FILE``; the *first* key encrypts, every
key decrypts. Rotation = put a new key first and keep the old ones for as long as histories
encrypted with them are retained. With neither set (the embedded default) a key file is generated
in the state directory, mode 0600, on first use: fine on a laptop, not in production, where the
key must live outside the state directory (a backup of ``var/`` would otherwise carry both the
ciphertext and its key).

**Format.** ``data = nonce (12 bytes, fresh per payload) || AES-GCM(serialized original payload)``
with the key id as associated data, so a payload relabelled with another key id fails to
authenticate instead of decrypting under the wrong key. The original payload's metadata
(``json/plain``, message type...) is inside the ciphertext. Payloads not marked
``binary/encrypted`` pass through decode unchanged: histories recorded before the codec existed
(and the replay fixtures) still decode.

The codec-server protocol (``POST /codec/decode``, ``/codec/encode`` on the API, used by the
Temporal CLI's ``--codec-endpoint`` and the Web UI) is JSON with base64 bytes:
:func:`payloads_from_json` / :func:`payloads_to_json`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
_AAD_PREFIX = b"tongdao-payload-v1:"
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_FILE_NAME = "payload.keys"


class PayloadCodecError(ValueError):
    """A payload or a keyring the codec cannot use; the message never contains key material."""


class UnknownPayloadKey(PayloadCodecError):
    """A payload was encrypted with a key id that is not in the keyring (rotated out too early?)."""

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        self.key_id = key_id
        super().__init__(
            f"payload encrypted with key id {key_id!r}, which is not in the keyring (known: "
            f"{', '.join(known) or 'none'}); add that key to TONGDAO_PAYLOAD_KEYS or TONGDAO_PAYLOAD_KEYS_FILE")


@dataclass(frozen=True)
class Keyring:
    """Ordered ``key id → AES key``; the first entry is the active (encrypting) key."""

    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if not self.keys:
            raise PayloadCodecError("the payload keyring is empty")

    @property
    def active_id(self) -> str:
        return next(iter(self.keys))

    @classmethod
    def parse(cls, spec: str, source: str = "TONGDAO_PAYLOAD_KEYS") -> Keyring:
        """``id:base64key`` pairs separated by commas or newlines; ``#`` starts a comment line."""
        keys: dict[str, bytes] = {}
        entries = [e.strip() for line in spec.splitlines() if not line.strip().startswith("#")
                   for e in line.split(",")]
        for n, entry in enumerate((e for e in entries if e), 1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID_RE.match(key_id):
                raise PayloadCodecError(f"{source}: entry {n} is not 'id:base64key' with an id of letters, digits, "
                                        "'.', '_' or '-'")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise PayloadCodecError(f"{source}: key {key_id!r} is not valid base64") from None
            if len(key) not in (16, 24, 32):
                raise PayloadCodecError(f"{source}: key {key_id!r} is {len(key)} bytes; AES needs 16, 24 or 32 "
                                        "(generate 32)")
            if key_id in keys:
                raise PayloadCodecError(f"{source}: key id {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise PayloadCodecError(f"{source}: no keys")
        return cls(keys)

    @classmethod
    def generate_entry(cls, key_id: str | None = None) -> str:
        """A fresh ``id:base64key`` line (256-bit key), for a key file or ``TONGDAO_PAYLOAD_KEYS``."""
        key_id = key_id or f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
        return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"

    @classmethod
    def load(cls, keys: str | None, keys_file: Path | None, home: Path) -> Keyring:
        """From the variable, else the file, else ``<home>/payload.keys`` (created 0600 if missing)."""
        if keys:
            return cls.parse(keys)
        if keys_file is not None:
            try:
                return cls.parse(keys_file.read_text(), f"TONGDAO_PAYLOAD_KEYS_FILE ({keys_file})")
            except OSError as exc:
                raise PayloadCodecError(f"cannot read TONGDAO_PAYLOAD_KEYS_FILE {keys_file}: {exc.strerror}") from None
        path = home / KEY_FILE_NAME
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of this hub made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write("# Tongdao payload keys: id:base64key, the first one encrypts. Generated on first start;\n"
                             "# in production set TONGDAO_PAYLOAD_KEYS or TONGDAO_PAYLOAD_KEYS_FILE instead.\n")
                    fh.write(cls.generate_entry() + "\n")
        return cls.parse(path.read_text(), str(path))


@dataclass(frozen=True)
class KeySource:
    """Where the keyring comes from; read once, on first use (so merely connecting creates no file)."""

    keys: str | None = None
    keys_file: Path | None = None
    home: Path = Path("var")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeySource:
        """The same variables as ``hub.settings.Settings``, read directly: ``worker`` may not import ``hub``,
        and the CLI's connections must use the keys the hub uses."""
        env = os.environ if env is None else env
        keys_file = env.get("TONGDAO_PAYLOAD_KEYS_FILE")
        return cls(env.get("TONGDAO_PAYLOAD_KEYS") or None, Path(keys_file) if keys_file else None,
                   Path(env.get("TONGDAO_HOME") or "var"))


@dataclass
class EncryptionCodec(PayloadCodec):
    """AES-GCM payload codec over a :class:`Keyring` (or a :class:`KeySource` loaded lazily)."""

    source: Keyring | KeySource = field(default_factory=KeySource.from_env)
    _keyring: Keyring | None = field(default=None, init=False, repr=False)
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            with self._lock:
                if self._keyring is None:
                    ring = self.source if isinstance(self.source, Keyring) else Keyring.load(
                        self.source.keys, self.source.keys_file, self.source.home)
                    self._ciphers.update({kid: AESGCM(key) for kid, key in ring.keys.items()})
                    self._keyring = ring
        return self._keyring

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.active_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), _AAD_PREFIX + key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # recorded before the codec, or never encoded: nothing to undo
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        ring = self.keyring
        if key_id not in ring.keys:
            raise UnknownPayloadKey(key_id, list(ring.keys))
        data = payload.data
        try:
            clear = self._ciphers[key_id].decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                                  _AAD_PREFIX + key_id.encode())
        except InvalidTag:
            raise PayloadCodecError(f"payload encrypted with key id {key_id!r} failed authentication: tampered "
                                    "with, or that id names another key than the one it was encrypted with") from None
        out = Payload()
        out.ParseFromString(clear)
        return out

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


# -- whole histories ------------------------------------------------------------------------------
async def decode_history(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of ``history`` with every payload decoded: what ``fetch_history`` gives is the stored (encrypted)
    form, while history files kept for replay tests or support must be readable with the keys long gone."""
    events = []
    for event in history.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        await decode_payloads_in(copy, codec)
        events.append(copy)
    return WorkflowHistory(history.workflow_id, events)


async def decode_payloads_in(message: Message, codec: PayloadCodec) -> None:
    """Decode, in place, every ``Payload`` anywhere inside a protobuf message (repeated, maps, nested)."""
    await convert_payloads_in(message, codec.decode)


async def convert_payloads_in(message: Message,
                              convert: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]) -> None:
    """Replace, in place, every ``Payload`` inside ``message`` by ``convert``'s result (a codec's encode or decode)."""
    for fd, value in message.ListFields():
        kind = fd.message_type
        if kind is None:
            continue
        if kind.GetOptions().map_entry:
            value_kind = kind.fields_by_name["value"].message_type
            for k in list(value) if value_kind is not None else ():
                if value_kind.full_name == _PAYLOAD:
                    value[k].CopyFrom((await convert([value[k]]))[0])
                else:
                    await convert_payloads_in(value[k], convert)
        elif kind.full_name == _PAYLOAD:
            if fd.is_repeated:
                converted = await convert(list(value))
                del value[:]
                value.extend(converted)
            else:
                value.CopyFrom((await convert([value]))[0])
        elif fd.is_repeated:
            for item in value:
                await convert_payloads_in(item, convert)
        else:
            await convert_payloads_in(value, convert)


_PAYLOAD = Payload.DESCRIPTOR.full_name


# -- the codec-server protocol (proto3 JSON of Payloads: every bytes value base64) -----------------
def payloads_from_json(body: Any) -> list[Payload]:
    """``{"payloads": [{"metadata": {k: b64}, "data": b64}]}`` → payloads; ValueError when malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        raise ValueError('expected {"payloads": [...]}')
    out = []
    for n, item in enumerate(body["payloads"]):
        metadata = item.get("metadata", {}) if isinstance(item, dict) else None
        if not isinstance(metadata, dict):
            raise ValueError(f"payload {n}: expected an object with 'metadata' and 'data'")
        try:
            out.append(Payload(metadata={str(k): _b64(v) for k, v in metadata.items()},
                               data=_b64(item.get("data", ""))))
        except (binascii.Error, ValueError, TypeError):
            raise ValueError(f"payload {n}: metadata values and data must be base64 strings") from None
    return out


def payloads_to_json(payloads: Sequence[Payload]) -> dict[str, list[dict[str, Any]]]:
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return base64.b64decode(value, validate=True)
