"""Encryption at rest with the hub's secret key ring (MultiFernet: AES-128-CBC + HMAC-SHA256 per key).

The ring seals connector secrets and, field by field, the personal data of orders (``store.personal``).

**Where the keys come from**, first found wins:

1. ``TONGDAO_SECRET_KEY``: one Fernet key, or several separated by commas (or newlines);
2. ``TONGDAO_SECRET_KEY_FILE``: a file holding the same (one key a line, ``#`` comments), which in
   production lives *outside* the state directory: a copy or backup of ``var/`` must not carry the
   ciphertext and its key together;
3. on the embedded default, ``<home>/secret.key``, created on first use with mode 0600 (an existing
   one is tightened to 0600). Fine on a laptop; with ``TONGDAO_LOG_FORMAT=json`` (how production
   runs) a key file inside the state directory is logged as a warning.

**Rotation.** The *first* key encrypts, every key decrypts: put a new key first, keep the old ones
after it, run ``tongdao secrets rotate`` (re-encrypts every sealed value with the first key, see
:meth:`SecretBox.rotate`), then drop the old keys. Losing every key means re-registering connectors'
secrets; the personal data sealed with it is then unreadable (which is also what purging achieves).

A key that is not a Fernet key, or a ring that does not open the stored values, is an operator's
mistake, not a bug: :class:`SecretKeyError` says which in one sentence (the CLI prints it as one
line, the API as a 500 with that text), naming where the key came from, never the key.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MAKE_KEY = 'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
KEY_FILE_NAME = "secret.key"

log = structlog.get_logger("tongdao.store.secrets")


class SecretKeyError(ValueError):
    """The secret key is malformed or does not open the stored secrets (a ``ValueError`` for callers
    that already catch those)."""


def parse_keys(spec: str | bytes) -> list[bytes]:
    """Keys separated by commas or newlines, blank entries and ``#`` comment lines skipped."""
    text = spec.decode(errors="replace") if isinstance(spec, bytes) else spec
    return [entry.strip().encode() for line in text.splitlines() if not line.strip().startswith("#")
            for entry in line.split(",") if entry.strip()]


class SecretBox:
    """The key ring: ``seal``/``open`` connector secrets, ``encrypt``/``decrypt`` single values,
    ``rotate`` tokens onto the first key."""

    def __init__(self, key: bytes | list[bytes], source: str = "TONGDAO_SECRET_KEY") -> None:
        self.source = source
        keys = key if isinstance(key, list) else parse_keys(key)
        if not keys:
            raise SecretKeyError(f"{source} holds no key; make one with: {MAKE_KEY}")
        fernets = []
        for n, raw in enumerate(keys, 1):
            try:
                fernets.append(Fernet(raw))
            except (ValueError, binascii.Error, TypeError):
                which = f" (entry {n} of {len(keys)})" if len(keys) > 1 else ""
                raise SecretKeyError(f"{source} is not a Fernet key{which} (32 url-safe base64-encoded bytes, "
                                     f"44 characters); make one with: {MAKE_KEY}") from None
        self.key_count = len(fernets)
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, key: str | None, home: Path, key_file: Path | str | None = None,
                      production: bool | None = None) -> SecretBox:
        """The ring from ``TONGDAO_SECRET_KEY``, else ``TONGDAO_SECRET_KEY_FILE``, else ``<home>/secret.key``.

        ``key_file`` and ``production`` default to the environment (``TONGDAO_SECRET_KEY_FILE``,
        ``TONGDAO_LOG_FORMAT=json``) so that every process opening the store (worker, API, CLI) finds
        the same ring without each caller having to pass it.
        """
        if key and key.strip():
            return cls(parse_keys(key), "TONGDAO_SECRET_KEY")
        if key_file is None:
            key_file = os.environ.get("TONGDAO_SECRET_KEY_FILE") or None
        if production is None:
            production = os.environ.get("TONGDAO_LOG_FORMAT", "").lower() == "json"
        if key_file is not None:
            path = Path(key_file)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise SecretKeyError(f"cannot read TONGDAO_SECRET_KEY_FILE {path}: {exc.strerror or exc}") from None
            if production and _inside(path, home):
                _warn_inside(path, home)
            return cls(parse_keys(raw), f"TONGDAO_SECRET_KEY_FILE ({path})")
        path = home / KEY_FILE_NAME
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of this hub made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(Fernet.generate_key())
        elif path.stat().st_mode & 0o077:
            with contextlib.suppress(OSError):  # not ours to change: still usable, only readable by others
                path.chmod(0o600)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SecretKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
        if production:
            _warn_inside(path, home)
        return cls(parse_keys(raw), str(path))

    # -- connector secrets (one token per connector) ----------------------------------------------
    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, str]:
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise SecretKeyError(f"cannot decrypt connector secrets: {self.source} is not the key they were sealed "
                                 "with (use that key, or register the connectors' secrets again)") from None

    # -- single values (personal-data fields) --------------------------------------------------------
    def encrypt(self, data: bytes) -> str:
        """A Fernet token (url-safe base64 text) for ``data``, sealed with the first key."""
        return self._fernet.encrypt(data).decode()

    def decrypt(self, token: str, what: str = "personal data") -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise SecretKeyError(f"cannot decrypt {what}: {self.source} holds none of the keys it was sealed with "
                                 "(keep the old key after the new one until `tongdao secrets rotate` ran)") from None

    def rotate(self, token: bytes | str, what: str = "connector secrets") -> bytes:
        """``token`` re-encrypted with the first key (``MultiFernet.rotate``: any key of the ring may open it)."""
        raw = token.encode() if isinstance(token, str) else token
        try:
            return self._fernet.rotate(raw)
        except InvalidToken:
            raise SecretKeyError(f"cannot rotate {what}: {self.source} holds none of the keys it was sealed with")\
                from None


def _inside(path: Path, home: Path) -> bool:
    try:
        return path.resolve().is_relative_to(home.resolve())
    except OSError:
        return False


def _warn_inside(path: Path, home: Path) -> None:
    """Production keeps the key apart from the data it protects; say so once per process start."""
    log.warning("secrets.key_file_in_state_directory", key_file=str(path), home=str(home),
                hint="set TONGDAO_SECRET_KEY or TONGDAO_SECRET_KEY_FILE (a file outside the state directory)")
