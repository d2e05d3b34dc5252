"""Business rule sets, versioned like flows, and the velocity log of velocity rules. Mixed into
:class:`store.Store`.

A rule set's version is its content (``mappings.rules.RuleSet.version()``): every version ever saved
is kept in ``rule_set_versions`` (an order's rule outcome names the version that decided it, and an
auditor must be able to read that exact version later); ``rule_sets`` says which version is current.
Saving the current content again is a no-op; any other save (a new version, or going back to an
older one) writes one append-only ``config_audit`` entry in the same transaction.

The velocity log holds, per kind (``phone``, ``address``, ``buyer``) and sha256 hash of the value
(never the value), the orders seen and when; ``count_velocity`` counts distinct orders in a window.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.rule_tables import RuleSetRow, RuleSetVersionRow, VelocityEventRow
from store.tables import ConfigAuditRow

VELOCITY_KINDS = ("phone", "address", "buyer")


def _now() -> datetime:
    return datetime.now(UTC)


class RuleSetVersion(BaseModel):
    """One saved version of a rule set; ``current`` when it is the one in effect."""

    name: str
    version: str
    created_at: datetime
    created_by: str
    current: bool = False
    definition: dict[str, Any] | None = None


class RuleSetQueries:
    """Methods of :class:`store.Store`; ``session`` is the Store's transaction context."""

    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    # -- rule sets ------------------------------------------------------------------------------
    def save_rule_set(self, name: str, version: str, definition: dict, actor: str) -> bool:
        """Make ``version`` the current version of rule set ``name``; True when anything changed.

        The version is kept in ``rule_set_versions`` the first time it is seen. Saving the current
        version again changes nothing and writes no audit entry; otherwise one ``ruleset.save``
        audit entry is written with the change.
        """
        actor = actor or "unknown"
        for attempt in range(3):
            try:
                with self.session() as s:
                    known = s.get(RuleSetVersionRow, (name, version))
                    if known is None:
                        s.add(RuleSetVersionRow(name=name, version=version, definition=definition, created_at=_now(),
                                                created_by=actor))
                    elif known.definition != definition:
                        raise ValueError(f"rule set {name!r} version {version} is stored with other content; "
                                         f"a version is the hash of its content")
                    row = s.get(RuleSetRow, name)
                    previous = row.version if row is not None else None
                    if row is None:
                        s.add(RuleSetRow(name=name, version=version, definition=definition, created_at=_now(),
                                         created_by=actor, updated_at=_now(), updated_by=actor))
                    elif row.version == version:
                        return False
                    else:
                        row.version, row.definition = version, definition
                        row.updated_at, row.updated_by = _now(), actor
                    s.add(ConfigAuditRow(at=_now(), actor=actor, action="ruleset.save", subject=name,
                                         details={"version": version, "previous": previous,
                                                  "new_version": known is None}))
                    return True
            except IntegrityError:  # a concurrent save of the same rule set or version won; redo it
                if attempt == 2:
                    raise
        return False  # pragma: no cover

    def get_rule_set(self, name: str, version: str | None = None) -> RuleSetVersion | None:
        """The current version of ``name`` (or the given ``version``, current or not), with its definition."""
        with self.session() as s:
            row = s.get(RuleSetRow, name)
            wanted = version or (row.version if row is not None else None)
            if wanted is None:
                return None
            stored = s.get(RuleSetVersionRow, (name, wanted))
            if stored is None:
                return None
            return RuleSetVersion(name=name, version=stored.version, created_at=stored.created_at,
                                  created_by=stored.created_by, current=row is not None and row.version == wanted,
                                  definition=stored.definition)

    def list_rule_sets(self) -> list[dict[str, Any]]:
        """Every rule set: name, current version, how many versions, and who changed it last when."""
        with self.session() as s:
            counts = {name: n for name, n in s.execute(select(RuleSetVersionRow.name, func.count())
                                                       .group_by(RuleSetVersionRow.name))}
            return [{"name": r.name, "version": r.version, "versions": counts.get(r.name, 1),
                     "description": (r.definition or {}).get("description", ""),
                     "created_at": r.created_at, "created_by": r.created_by,
                     "updated_at": r.updated_at, "updated_by": r.updated_by}
                    for r in s.scalars(select(RuleSetRow).order_by(RuleSetRow.name))]

    def rule_set_versions(self, name: str) -> list[RuleSetVersion]:
        """Every saved version of ``name``, oldest first (without definitions)."""
        with self.session() as s:
            row = s.get(RuleSetRow, name)
            rows = s.scalars(select(RuleSetVersionRow).filter_by(name=name)
                             .order_by(RuleSetVersionRow.created_at, RuleSetVersionRow.version))
            return [RuleSetVersion(name=name, version=r.version, created_at=r.created_at, created_by=r.created_by,
                                   current=row is not None and row.version == r.version) for r in rows]

    # -- velocity -------------------------------------------------------------------------------
    def record_velocity(self, kind: str, value_hash: str, order_key: str, at: datetime) -> bool:
        """Note that ``order_key`` went to this phone/address/buyer hash; False when already noted."""
        if kind not in VELOCITY_KINDS:
            raise ValueError(f"velocity kind is one of {', '.join(VELOCITY_KINDS)}, not {kind!r}")
        if not value_hash:
            return False
        try:
            with self.session() as s:
                if s.scalars(select(VelocityEventRow.id).filter_by(kind=kind, value_hash=value_hash,
                                                                   order_key=order_key)).first() is not None:
                    return False
                s.add(VelocityEventRow(kind=kind, value_hash=value_hash, order_key=order_key, at=at))
            return True
        except IntegrityError:  # recorded concurrently
            return False

    def count_velocity(self, kind: str, value_hash: str, since: datetime, *, until: datetime | None = None,
                       including: str | None = None) -> int:
        """Distinct orders recorded for this hash at or after ``since`` (and not after ``until``).

        ``including``: an order key counted as well when it is not recorded in the window (the order
        being evaluated, for a dry run that records nothing).
        """
        with self.session() as s:
            q = select(VelocityEventRow.order_key).filter_by(kind=kind, value_hash=value_hash) \
                .where(VelocityEventRow.at >= since)
            if until is not None:
                q = q.where(VelocityEventRow.at <= until)
            keys = set(s.scalars(q.distinct()))
        if including is not None:
            keys.add(including)
        return len(keys)

    def purge_velocity(self, before: datetime) -> int:
        """Forget velocity events older than ``before`` (no velocity window is longer than 31 days)."""
        with self.session() as s:
            return s.execute(delete(VelocityEventRow).where(VelocityEventRow.at < before)).rowcount or 0
