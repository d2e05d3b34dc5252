"""Encryption of connector secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``TONGDAO_SECRET_KEY`` or, on the embedded default, from ``<home>/secret.key``
created on first use with mode 0600. Losing the key means re-registering connectors' secrets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, key: str | None, home: Path) -> SecretBox:
        if key:
            return cls(key.encode())
        path = home / "secret.key"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, str]:
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ValueError("cannot decrypt connector secrets: wrong TONGDAO_SECRET_KEY?") from exc
