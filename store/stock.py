"""The central stock pool: on-hand per SKU and warehouse, reservations per order, batches, and an
append-only ledger of every movement. Mixed into :class:`store.Store`.

Why it cannot oversell: a reservation is a conditional ``UPDATE`` of the level row
(``… WHERE on_hand - reserved - blocked >= q``). On PostgreSQL the row lock makes a concurrent
reservation wait and re-check the condition on the committed row; on SQLite the writer lock does the
same. All lines of an order are reserved in one transaction (SKUs in a fixed order, so two orders
cannot deadlock): either every line is held or none is.

Why nothing counts twice: a reservation is *the quantity held for this order and SKU*, not an
increment, so a retried or replayed reserve changes nothing; shipments and WMS movements carry a
``dedupe_key`` that is unique in the ledger, and the ledger row is written in the same transaction
as the change it records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.stock_tables import (
    StockBatchRow,
    StockChannelRow,
    StockLedgerRow,
    StockLevelRow,
    StockOutboxRow,
    StockReservationRow,
)

CAUSES = ("order", "amendment", "cancellation", "shipment", "receipt", "return", "count_correction", "reconcile",
          "wms_report")
"""Why stock moved; every ledger entry names one."""


def _now() -> datetime:
    return datetime.now(UTC)


class Shortage(BaseModel):
    """A line that could not be reserved: how many units it needed, how many were free."""

    sku: str
    wanted: int
    available: int


class ReserveResult(BaseModel):
    """``ok``: every line is held. ``changed``: SKUs whose figures moved (to recompute channels)."""

    ok: bool
    changed: list[str] = Field(default_factory=list)
    short: list[Shortage] = Field(default_factory=list)


class StockFigures(BaseModel):
    """One SKU in one warehouse."""

    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    blocked: int = 0

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.blocked)


class _Short(Exception):
    def __init__(self, short: list[Shortage]) -> None:
        self.short = short


class _Raced(Exception):
    """Another transaction changed a row this one read; the operation is simply run again."""


class StockQueries:
    """Methods of :class:`store.Store`; ``session`` is the Store's transaction context."""

    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    # -- reservations ---------------------------------------------------------------------------
    def stock_reserve(self, order_key: str, lines: Mapping[str, int], warehouse: str, *, channel: str = "",
                      shop: str = "", external_id: str = "", cause: str = "order") -> ReserveResult:
        """Hold exactly ``lines`` (SKU → units the order still needs, shipped units included) for the
        order, all or nothing. Idempotent: the same call again changes nothing; a changed order
        (a line refunded, a quantity changed) moves only the difference."""
        wanted = {sku: int(q) for sku, q in lines.items() if int(q) > 0}
        for _ in range(20):
            try:
                return self._reserve_once(order_key, wanted, warehouse, channel, shop, external_id, cause)
            except _Short as short:
                return ReserveResult(ok=False, short=short.short)
            except (_Raced, IntegrityError):
                continue
        raise RuntimeError(f"could not reserve stock for {order_key}: too much contention")

    def _reserve_once(self, order_key: str, wanted: dict[str, int], warehouse: str, channel: str, shop: str,
                      external_id: str, cause: str) -> ReserveResult:
        with self.session() as s:
            for sku in sorted(wanted):  # lock the level rows first, always in SKU order: no deadlock
                self._ensure_level(s, sku, warehouse)
            held = {r.sku: r for r in s.scalars(select(StockReservationRow).filter_by(order_key=order_key,
                                                                                      warehouse=warehouse)
                                                .execution_options(populate_existing=True))}
            for sku in sorted(set(held) - set(wanted)):
                self._ensure_level(s, sku, warehouse)
            plan: list[tuple[str, int, StockReservationRow | None]] = []
            for sku in sorted(set(wanted) | set(held)):
                row = held.get(sku)
                target = max(0, wanted.get(sku, 0) - (row.shipped if row else 0))
                current = row.quantity if row is not None and row.state == "open" else 0
                if target != current:
                    plan.append((sku, target - current, row))
            if not plan:
                return ReserveResult(ok=True)
            changed: list[str]
            short: list[Shortage] = []
            for sku, delta, _row in plan:  # the level rows first: the first statement takes the lock
                if delta > 0 and not self._hold(s, sku, warehouse, delta):
                    short.append(Shortage(sku=sku, wanted=delta, available=self._free(s, sku, warehouse)))
                elif delta < 0:
                    self._unhold(s, sku, warehouse, -delta)
            if short:
                raise _Short(short)  # rolls back every line held above
            now = _now()
            for sku, delta, row in plan:
                if row is None:
                    row = StockReservationRow(order_key=order_key, sku=sku, warehouse=warehouse, quantity=delta,
                                              shipped=0,
                                              state="open", channel=channel, shop=shop, external_id=external_id,
                                              batches={}, created_at=now, updated_at=now)
                    s.add(row)
                    s.flush()  # a concurrent first reservation of this order loses here (unique)
                else:
                    seen = row.quantity
                    moved = s.execute(update(StockReservationRow)
                                      .where(StockReservationRow.id == row.id, StockReservationRow.quantity == seen)
                                      .values(quantity=seen + delta, state="open", updated_at=now))
                    if moved.rowcount != 1:
                        raise _Raced()
                    s.expire(row)
                batches = self._allocate(s, sku, warehouse, dict(row.batches or {}), delta)
                s.execute(update(StockReservationRow).where(StockReservationRow.id == row.id)
                          .values(batches=batches))
                self._ledger(s, sku, warehouse, cause if delta > 0 or cause != "order" else "amendment",
                             order_key, reserved_delta=delta)
                self._bump(s, sku)
            changed = [sku for sku, _, _ in plan]
        self._changed(changed)
        return ReserveResult(ok=True, changed=changed)

    def stock_release(self, order_key: str, cause: str = "cancellation") -> list[str]:
        """Free everything still held for the order (cancelled, closed); idempotent. Returns the SKUs."""
        with self.session() as s:
            seen = s.execute(select(StockReservationRow.sku, StockReservationRow.warehouse)
                             .filter_by(order_key=order_key, state="open")).all()
            for sku, warehouse in sorted(set(seen)):
                self._ensure_level(s, sku, warehouse)
            rows = list(s.scalars(select(StockReservationRow).filter_by(order_key=order_key, state="open")
                                  .execution_options(populate_existing=True)))
            changed: list[str] = []
            for row in sorted(rows, key=lambda r: (r.sku, r.warehouse)):
                quantity = row.quantity
                moved = s.execute(update(StockReservationRow)
                                  .where(StockReservationRow.id == row.id, StockReservationRow.state == "open",
                                         StockReservationRow.quantity == quantity)
                                  .values(quantity=0, state="released", updated_at=_now()))
                if moved.rowcount != 1 or quantity == 0:
                    continue
                self._unhold(s, row.sku, row.warehouse, quantity)
                batches = self._allocate(s, row.sku, row.warehouse, dict(row.batches or {}), -quantity)
                s.execute(update(StockReservationRow).where(StockReservationRow.id == row.id).values(batches=batches))
                self._ledger(s, row.sku, row.warehouse, cause, order_key, reserved_delta=-quantity)
                self._bump(s, row.sku)
                changed.append(row.sku)
        self._changed(changed)
        return changed

    def stock_ship(self, order_key: str, package: str, lines: Mapping[str, int], warehouse: str) -> list[str]:
        """A package left the warehouse: its units leave on-hand and the order's reservation (a
        deduction). Once per (order, package, SKU): a repeated confirmation changes nothing."""
        changed: list[str] = []
        for sku, quantity in sorted(lines.items()):
            if quantity <= 0:
                continue
            key = f"ship:{order_key}:{package}:{sku}"
            try:
                with self.session() as s:
                    found = s.scalar(select(StockReservationRow.warehouse).filter_by(order_key=order_key, sku=sku)
                                     .order_by(StockReservationRow.id).limit(1))
                    where = found or warehouse
                    self._ensure_level(s, sku, where)  # the lock; what is read below is current
                    if s.scalar(select(StockLedgerRow.id).filter_by(dedupe_key=key)) is not None:
                        continue
                    row = s.scalars(select(StockReservationRow).filter_by(order_key=order_key, sku=sku, warehouse=where)
                                    .execution_options(populate_existing=True)).first()
                    from_held = min(quantity, row.quantity) if row is not None and row.state == "open" else 0
                    s.execute(update(StockLevelRow).where(StockLevelRow.sku == sku, StockLevelRow.warehouse == where)
                              .values(on_hand=StockLevelRow.on_hand - quantity,
                                      reserved=StockLevelRow.reserved - from_held, updated_at=_now()))
                    batch = ""
                    if row is not None:
                        left = row.quantity - from_held
                        batches, batch = self._consume(s, sku, where, dict(row.batches or {}), quantity)
                        s.execute(update(StockReservationRow).where(StockReservationRow.id == row.id)
                                  .values(quantity=left, shipped=row.shipped + quantity, batches=batches,
                                          state="shipped" if left == 0 and row.state == "open" else row.state,
                                          updated_at=_now()))
                    self._ledger(s, sku, where, "shipment", order_key, on_hand_delta=-quantity,
                                 reserved_delta=-from_held, dedupe_key=key, batch_code=batch, note=f"package {package}")
                    self._bump(s, sku)
                changed.append(sku)
            except IntegrityError:  # the same package confirmed at the same instant elsewhere
                continue
        self._changed(changed)
        return changed

    # -- movements reported by the warehouse ------------------------------------------------------
    def stock_move(self, sku: str, warehouse: str, delta: int, cause: str, *, ref: str = "",
                   dedupe_key: str | None = None, batch_code: str = "", expire_date: date | None = None,
                   note: str = "") -> bool:
        """Change on-hand by ``delta`` (receipt, return, count correction...); False when this
        ``dedupe_key`` was applied before (a redelivered push)."""
        if cause not in CAUSES:
            raise ValueError(f"unknown stock cause {cause!r}; one of {', '.join(CAUSES)}")
        try:
            with self.session() as s:
                self._ensure_level(s, sku, warehouse)
                if dedupe_key and s.scalar(select(StockLedgerRow.id).filter_by(dedupe_key=dedupe_key)) is not None:
                    return False
                s.execute(update(StockLevelRow).where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)
                          .values(on_hand=StockLevelRow.on_hand + delta, updated_at=_now()))
                if batch_code:
                    self._batch_move(s, sku, warehouse, batch_code, delta, expire_date)
                self._ledger(s, sku, warehouse, cause, ref, on_hand_delta=delta, dedupe_key=dedupe_key,
                             batch_code=batch_code, note=note)
                self._bump(s, sku)
        except IntegrityError:
            return False
        self._changed([sku])
        return True

    def stock_note(self, sku: str, warehouse: str, cause: str, *, ref: str, dedupe_key: str, note: str) -> bool:
        """A ledger entry that changes nothing (a WMS report of a shipment the hub already deducted)."""
        try:
            with self.session() as s:
                self._ensure_level(s, sku, warehouse)
                if s.scalar(select(StockLedgerRow.id).filter_by(dedupe_key=dedupe_key)) is not None:
                    return False
                self._ledger(s, sku, warehouse, cause, ref, dedupe_key=dedupe_key, note=note)
            return True
        except IntegrityError:
            return False

    def stock_set_on_hand(self, sku: str, warehouse: str, on_hand: int, cause: str = "reconcile",
                          ref: str = "", note: str = "") -> int:
        """Make on-hand ``on_hand`` (the WMS's count); returns the correction applied (0: none)."""
        with self.session() as s:
            self._ensure_level(s, sku, warehouse)
            level = s.execute(select(StockLevelRow.on_hand).where(StockLevelRow.sku == sku,
                                                                  StockLevelRow.warehouse == warehouse)).scalar_one()
            delta = on_hand - level
            if delta == 0:
                return 0
            s.execute(update(StockLevelRow).where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)
                      .values(on_hand=on_hand, updated_at=_now()))
            self._ledger(s, sku, warehouse, cause, ref, on_hand_delta=delta, note=note)
            self._bump(s, sku)
        self._changed([sku])
        return delta

    def stock_set_batches(self, sku: str, warehouse: str, batches: Iterable[tuple[str, date | None, int]],
                          today: date | None = None) -> None:
        """Take the WMS's batch list (code, expiry, units) as it is, and block expired units."""
        today = today or _now().date()
        with self.session() as s:
            self._ensure_level(s, sku, warehouse)
            known = {b.batch_code: b for b in s.scalars(select(StockBatchRow).filter_by(sku=sku, warehouse=warehouse))}
            for code, expiry, quantity in batches:
                row = known.pop(code, None)
                if row is None:
                    s.add(StockBatchRow(sku=sku, warehouse=warehouse, batch_code=code, expire_date=expiry,
                                        quantity=quantity, allocated=0, received_at=_now()))
                else:
                    row.quantity, row.expire_date = quantity, expiry or row.expire_date
            for gone in known.values():
                gone.quantity = 0
            s.flush()
            blocked = self._block_expired(s, sku, warehouse, today)
            if blocked:
                self._bump(s, sku)
        if blocked:
            self._changed([sku])

    def stock_block_expired(self, today: date | None = None) -> list[str]:
        """Recompute the blocked (expired, unallocated) units of every SKU with batches; the SKUs changed."""
        today = today or _now().date()
        changed = []
        with self.session() as s:
            pairs = s.execute(select(StockBatchRow.sku, StockBatchRow.warehouse).distinct()).all()
            for sku, warehouse in pairs:
                if self._block_expired(s, sku, warehouse, today):
                    self._bump(s, sku)
                    changed.append(sku)
        self._changed(changed)
        return sorted(set(changed))

    # -- reading --------------------------------------------------------------------------------
    def stock_levels(self, sku: str) -> list[StockFigures]:
        with self.session() as s:
            rows = s.scalars(select(StockLevelRow).filter_by(sku=sku).order_by(StockLevelRow.warehouse))
            return [StockFigures(sku=r.sku, warehouse=r.warehouse, on_hand=r.on_hand, reserved=r.reserved,
                                 blocked=r.blocked) for r in rows]

    def stock_skus(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(StockLevelRow.sku).distinct().order_by(StockLevelRow.sku)))

    def stock_ledger(self, sku: str | None = None, limit: int = 200, ref: str | None = None) -> list[StockLedgerRow]:
        """The newest ``limit`` movements (of one SKU, or of one order with ``ref``), oldest first."""
        with self.session() as s:
            q = select(StockLedgerRow).order_by(StockLedgerRow.id.desc()).limit(limit)
            if sku:
                q = q.where(StockLedgerRow.sku == sku)
            if ref:
                q = q.where(StockLedgerRow.ref == ref)
            return list(reversed(list(s.scalars(q))))

    def stock_reservations(self, sku: str | None = None, order_key: str | None = None,
                           state: str | None = None) -> list[StockReservationRow]:
        with self.session() as s:
            q = select(StockReservationRow).order_by(StockReservationRow.id)
            if sku:
                q = q.where(StockReservationRow.sku == sku)
            if order_key:
                q = q.where(StockReservationRow.order_key == order_key)
            if state:
                q = q.where(StockReservationRow.state == state)
            return list(s.scalars(q))

    def stock_reserved_total(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(StockReservationRow.quantity), 0))
                                .where(StockReservationRow.state == "open")) or 0)

    def stock_batches(self, sku: str) -> list[StockBatchRow]:
        with self.session() as s:
            return list(s.scalars(select(StockBatchRow).filter_by(sku=sku)
                                  .order_by(StockBatchRow.warehouse, StockBatchRow.expire_date, StockBatchRow.id)))

    # -- channels -------------------------------------------------------------------------------
    def stock_channel(self, channel: str, sku: str) -> StockChannelRow | None:
        with self.session() as s:
            return s.get(StockChannelRow, (channel, sku))

    def stock_channels(self, sku: str) -> list[StockChannelRow]:
        with self.session() as s:
            return list(s.scalars(select(StockChannelRow).filter_by(sku=sku).order_by(StockChannelRow.channel)))

    def stock_note_channel(self, channel: str, sku: str, **values: Any) -> None:
        """Record what the hub learnt of a SKU on a channel: ``listed``/``listing`` (the platform's
        ids), ``computed``, ``pushed`` (+ ``pushed_at``, counts a push), ``shown``, ``error``."""
        for _ in range(3):
            try:
                with self.session() as s:
                    row = s.get(StockChannelRow, (channel, sku))
                    if row is None:
                        row = StockChannelRow(channel=channel, sku=sku, listed=1, listing={}, pushes=0, error="",
                                              updated_at=_now())
                        s.add(row)
                    if "pushed" in values:
                        row.pushes = (row.pushes or 0) + 1
                        row.pushed_at = values.pop("pushed_at", None) or _now()
                    if "shown" in values:
                        row.checked_at = _now()
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.updated_at = _now()
                return
            except IntegrityError:  # two first notes at once: read it again
                continue

    # -- the outbox: what each channel has not been shown yet -------------------------------------
    def stock_dirty(self, channel: str, limit: int = 200) -> list[tuple[str, int]]:
        """(SKU, version) of the SKUs whose figures changed since ``channel`` was last pushed, oldest first."""
        with self.session() as s:
            rows = s.execute(
                select(StockOutboxRow.sku, StockOutboxRow.version)
                .join(StockChannelRow, (StockChannelRow.sku == StockOutboxRow.sku)
                      & (StockChannelRow.channel == channel), isouter=True)
                .where((StockChannelRow.synced_version.is_(None))
                       | (StockChannelRow.synced_version < StockOutboxRow.version))
                .order_by(StockOutboxRow.changed_at).limit(limit)).all()
            return [(sku, version) for sku, version in rows]

    def stock_mark_synced(self, channel: str, sku: str, version: int) -> None:
        """``channel`` shows ``sku`` as of outbox ``version`` (a later change makes it dirty again)."""
        for _ in range(3):
            try:
                with self.session() as s:
                    row = s.get(StockChannelRow, (channel, sku))
                    if row is None:
                        s.add(StockChannelRow(channel=channel, sku=sku, listed=1, listing={}, pushes=0, error="",
                                              updated_at=_now(), synced_version=version))
                    elif (row.synced_version or 0) < version:
                        row.synced_version = version
                return
            except IntegrityError:
                continue

    def stock_levels_many(self, skus: list[str]) -> dict[str, list[StockFigures]]:
        """The figures of several SKUs in one query (a pump's batch)."""
        out: dict[str, list[StockFigures]] = {sku: [] for sku in skus}
        with self.session() as s:
            for r in s.scalars(select(StockLevelRow).where(StockLevelRow.sku.in_(skus))):
                out[r.sku].append(StockFigures(sku=r.sku, warehouse=r.warehouse, on_hand=r.on_hand,
                                               reserved=r.reserved, blocked=r.blocked))
        return out

    def stock_channel_rows(self, channel: str, skus: list[str]) -> dict[str, StockChannelRow]:
        with self.session() as s:
            return {r.sku: r for r in s.scalars(select(StockChannelRow).where(StockChannelRow.channel == channel,
                                                                               StockChannelRow.sku.in_(skus)))}

    def stock_channel_done(self, channel: str, outcomes: list[dict[str, Any]]) -> None:
        """Record a pump batch in one transaction: per SKU ``version`` synced (unless ``retry``),
        ``computed``, ``pushed`` (a write made now), ``listed``/``listing``, ``error``."""
        if not outcomes:
            return
        for _ in range(3):
            try:
                with self.session() as s:
                    rows = {r.sku: r for r in s.scalars(select(StockChannelRow).where(
                        StockChannelRow.channel == channel,
                        StockChannelRow.sku.in_([o["sku"] for o in outcomes])))}
                    now = _now()
                    for o in outcomes:
                        row = rows.get(o["sku"])
                        if row is None:
                            row = StockChannelRow(channel=channel, sku=o["sku"], listed=1, listing={}, pushes=0,
                                                  error="", updated_at=now)
                            s.add(row)
                            rows[o["sku"]] = row
                        for name in ("computed", "listed", "listing", "error"):
                            if name in o:
                                setattr(row, name, o[name])
                        if o.get("pushed") is not None:
                            row.pushed, row.pushed_at, row.pushes = o["pushed"], now, (row.pushes or 0) + 1
                        if not o.get("retry") and (row.synced_version or 0) < o["version"]:
                            row.synced_version = o["version"]
                        row.updated_at = now
                return
            except IntegrityError:  # a first row inserted at the same moment elsewhere: again
                continue

    def on_stock_change(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(skus)`` after every committed change of stock figures in this process
        (from any thread): the channel pumps wake at once instead of at their next poll."""
        listeners: list[Callable[[list[str]], None]] = self.__dict__.setdefault("_stock_listeners", [])
        listeners.append(listener)

    def _changed(self, skus: list[str]) -> None:
        if skus:
            for listener in self.__dict__.get("_stock_listeners", ()):
                listener(list(skus))

    @staticmethod
    def _bump(s: Session, sku: str) -> None:
        """Move the SKU's outbox version, in the caller's transaction."""
        now = _now()
        for _ in range(3):
            done = s.execute(update(StockOutboxRow).where(StockOutboxRow.sku == sku)
                             .values(version=StockOutboxRow.version + 1, changed_at=now))
            if done.rowcount == 1:
                return
            try:
                with s.begin_nested():
                    s.add(StockOutboxRow(sku=sku, version=1, changed_at=now))
                return
            except IntegrityError:  # created by a concurrent transaction: update it
                continue

    # -- plumbing -------------------------------------------------------------------------------
    @staticmethod
    def _hold(s: Session, sku: str, warehouse: str, quantity: int) -> bool:
        done = s.execute(update(StockLevelRow)
                         .where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse,
                                StockLevelRow.on_hand - StockLevelRow.reserved - StockLevelRow.blocked >= quantity)
                         .values(reserved=StockLevelRow.reserved + quantity, updated_at=_now()))
        return done.rowcount == 1

    @staticmethod
    def _unhold(s: Session, sku: str, warehouse: str, quantity: int) -> None:
        s.execute(update(StockLevelRow).where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)
                  .values(reserved=func.max(StockLevelRow.reserved - quantity, 0)
                          if s.get_bind().dialect.name == "sqlite"
                          else func.greatest(StockLevelRow.reserved - quantity, 0),
                          updated_at=_now()))

    @staticmethod
    def _free(s: Session, sku: str, warehouse: str) -> int:
        row = s.execute(select(StockLevelRow.on_hand, StockLevelRow.reserved, StockLevelRow.blocked)
                        .where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)).first()
        return 0 if row is None else max(0, row[0] - row[1] - row[2])

    @staticmethod
    def _ensure_level(s: Session, sku: str, warehouse: str) -> None:
        """Lock the level row (creating it if missing) inside the caller's transaction.

        Every write begins here: on PostgreSQL it takes the row lock, on SQLite the first write of a
        transaction takes the database's writer lock, so whatever the caller reads afterwards is
        current and no other movement of this SKU can interleave."""
        exists = s.execute(update(StockLevelRow).where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)
                           .values(updated_at=_now()))
        if exists.rowcount == 0:
            try:
                with s.begin_nested():
                    s.add(StockLevelRow(sku=sku, warehouse=warehouse, on_hand=0, reserved=0, blocked=0,
                                        updated_at=_now()))
            except IntegrityError:  # created by a concurrent transaction (PostgreSQL): it exists now
                pass

    @staticmethod
    def _ledger(s: Session, sku: str, warehouse: str, cause: str, ref: str, *, on_hand_delta: int = 0,
                reserved_delta: int = 0, dedupe_key: str | None = None, batch_code: str = "", note: str = "") -> None:
        figures = s.execute(select(StockLevelRow.on_hand, StockLevelRow.reserved)
                            .where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse)).first()
        on_hand, reserved = figures if figures is not None else (0, 0)
        s.add(StockLedgerRow(at=_now(), sku=sku, warehouse=warehouse, cause=cause, ref=ref[:300],
                             on_hand_delta=on_hand_delta, reserved_delta=reserved_delta, on_hand_after=on_hand,
                             reserved_after=reserved, batch_code=batch_code, note=note[:500], dedupe_key=dedupe_key))
        s.flush()

    @staticmethod
    def _allocate(s: Session, sku: str, warehouse: str, batches: dict[str, int], delta: int) -> dict[str, int]:
        """Allocate ``delta`` units to batches, earliest expiry first (FIFO); a negative ``delta``
        gives back the latest-expiring allocations first. No batches known: nothing to track."""
        rows = list(s.scalars(select(StockBatchRow).filter_by(sku=sku, warehouse=warehouse)))
        if not rows:
            return batches
        by_code = {r.batch_code: r for r in rows}
        if delta > 0:
            left = delta
            for row in sorted(rows, key=lambda r: (r.expire_date is None, r.expire_date or date.max, r.id)):
                free = row.quantity - row.allocated
                if left <= 0 or free <= 0 or (row.expire_date is not None and row.expire_date < _now().date()):
                    continue
                take = min(free, left)
                row.allocated += take
                batches[row.batch_code] = batches.get(row.batch_code, 0) + take
                left -= take
        else:
            left = -delta
            def expiry(code: str) -> date:
                return (by_code[code].expire_date or date.max) if code in by_code else date.max

            for code in sorted(batches, key=expiry, reverse=True):
                if left <= 0:
                    break
                give = min(batches[code], left)
                if code in by_code:
                    by_code[code].allocated = max(0, by_code[code].allocated - give)
                batches[code] -= give
                left -= give
            batches = {c: q for c, q in batches.items() if q > 0}
        s.flush()
        return batches

    @staticmethod
    def _consume(s: Session, sku: str, warehouse: str, batches: dict[str, int],
                 quantity: int) -> tuple[dict[str, int], str]:
        """Units shipped leave their allocated batches, earliest expiry first."""
        rows = {r.batch_code: r for r in s.scalars(select(StockBatchRow).filter_by(sku=sku, warehouse=warehouse))}
        left, first = quantity, ""
        for code in sorted(batches, key=lambda c: (rows[c].expire_date or date.max) if c in rows else date.max):
            if left <= 0:
                break
            take = min(batches[code], left)
            if code in rows:
                rows[code].quantity = max(0, rows[code].quantity - take)
                rows[code].allocated = max(0, rows[code].allocated - take)
            batches[code] -= take
            left -= take
            first = first or code
        s.flush()
        return {c: q for c, q in batches.items() if q > 0}, first

    @staticmethod
    def _batch_move(s: Session, sku: str, warehouse: str, code: str, delta: int, expiry: date | None) -> None:
        row = s.scalars(select(StockBatchRow).filter_by(sku=sku, warehouse=warehouse, batch_code=code)).first()
        if row is None:
            s.add(StockBatchRow(sku=sku, warehouse=warehouse, batch_code=code, expire_date=expiry,
                                quantity=max(0, delta), allocated=0, received_at=_now()))
        else:
            row.quantity = max(0, row.quantity + delta)
            row.expire_date = expiry or row.expire_date
        s.flush()

    @staticmethod
    def _block_expired(s: Session, sku: str, warehouse: str, today: date) -> bool:
        rows = s.scalars(select(StockBatchRow).filter_by(sku=sku, warehouse=warehouse))
        blocked = sum(max(0, r.quantity - r.allocated) for r in rows
                      if r.expire_date is not None and r.expire_date < today)
        done = s.execute(update(StockLevelRow)
                         .where(StockLevelRow.sku == sku, StockLevelRow.warehouse == warehouse,
                                StockLevelRow.blocked != blocked)
                         .values(blocked=blocked, updated_at=_now()))
        return done.rowcount == 1


__all__ = ["CAUSES", "ReserveResult", "Shortage", "StockFigures", "StockQueries"]
