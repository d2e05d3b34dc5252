"""Encryption of connector secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``TONGDAO_SECRET_KEY`` or, on the embedded default, from ``<home>/secret.key``
created on first use with mode 0600 (an existing one is tightened to 0600). Losing the key means
re-registering connectors' secrets.

A key that is not a Fernet key, or not the one the secrets were sealed with, is an operator's
mistake, not a bug: :class:`SecretKeyError` says which in one sentence (the CLI prints it as one
line, the API as a 500 with that text), naming where the key came from.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

MAKE_KEY = 'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretKeyError(ValueError):
    """The secret key is malformed or does not open the stored secrets (a ``ValueError`` for callers
    that already catch those)."""


class SecretBox:
    def __init__(self, key: bytes, source: str = "TONGDAO_SECRET_KEY") -> None:
        self.source = source
        try:
            self._fernet = Fernet(key)
        except (ValueError, binascii.Error, TypeError):
            raise SecretKeyError(f"{source} is not a Fernet key (32 url-safe base64-encoded bytes, 44 characters); "
                                 f"make one with: {MAKE_KEY}") from None

    @classmethod
    def from_settings(cls, key: str | None, home: Path) -> SecretBox:
        if key:
            return cls(key.strip().encode(), "TONGDAO_SECRET_KEY")
        path = home / "secret.key"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        elif path.stat().st_mode & 0o077:
            with contextlib.suppress(OSError):  # not ours to change: still usable, only readable by others
                path.chmod(0o600)
        try:
            raw = path.read_bytes().strip()
        except OSError as exc:
            raise SecretKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls(raw, str(path))

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, str]:
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise SecretKeyError(f"cannot decrypt connector secrets: {self.source} is not the key they were sealed "
                                 "with (use that key, or register the connectors' secrets again)") from None
