"""Store queries for who may do what: API tokens (hashed at rest) and the append-only audit log of
configuration changes. Mixed into :class:`store.Store`."""

from __future__ import annotations

import hashlib
import re
import secrets
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.tables import ApiTokenRow, ConfigAuditRow

ROLES = ("admin", "operator", "auditor")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def token_hash(token: str) -> str:
    """Tokens are 256-bit random strings, so one SHA-256 is enough to keep them unusable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


class AccessQueries:
    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    def create_token(self, name: str, role: str, actor: str) -> str:
        """A new token for ``name`` (replacing a revoked one); returned once, stored hashed."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not _TOKEN_NAME.match(name):
            raise ValueError(f"token name {name!r}: use letters, digits, '.', '_', '-' or '@' (at most 100)")
        token = "td_" + secrets.token_urlsafe(32)
        with self.session() as s:
            row = s.get(ApiTokenRow, name)
            if row is not None and row.revoked_at is None:
                raise ValueError(f"a token named {name!r} exists; revoke it first")
            if row is not None:
                s.delete(row)
                s.flush()
            s.add(ApiTokenRow(name=name, role=role, token_hash=token_hash(token), created_at=datetime.now(UTC),
                              created_by=actor, last_used_at=None, revoked_at=None))
        self.audit(actor, "token.create", name, {"role": role})
        return token

    def token_role(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a valid token, None for an unknown or revoked one."""
        with self.session() as s:
            row = s.scalars(select(ApiTokenRow).filter_by(token_hash=token_hash(token))).first()
            if row is None or row.revoked_at is not None:
                return None
            row.last_used_at = datetime.now(UTC)
            return row.name, row.role

    def list_tokens(self) -> list[ApiTokenRow]:
        with self.session() as s:
            return list(s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name)))

    def revoke_token(self, name: str, actor: str) -> bool:
        with self.session() as s:
            row = s.get(ApiTokenRow, name)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
        self.audit(actor, "token.revoke", name, {})
        return True

    def audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        """Append one configuration change to the audit log (never updated, never deleted)."""
        with self.session() as s:
            s.add(ConfigAuditRow(at=datetime.now(UTC), actor=actor or "unknown", action=action, subject=subject,
                                 details=details))

    def audit_log(self, limit: int = 200) -> list[ConfigAuditRow]:
        with self.session() as s:
            return list(s.scalars(select(ConfigAuditRow).order_by(ConfigAuditRow.id.desc()).limit(limit)))
