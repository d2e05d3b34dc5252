"""Opening the store (engine, pragmas, migrations) and the queries the hub needs.

All methods are synchronous and short; async callers run them with ``asyncio.to_thread``.
SQLite runs in WAL mode with a busy timeout so that the worker's activities, the API and the CLI
can use one file at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from canonical import base_code, hub_code
from store.access import AccessQueries
from store.audit import AuditQueries
from store.lifecycle import LifecycleQueries
from store.personal import FieldCipher, PersonalDataQueries
from store.rulesets import RuleSetQueries
from store.secrets import SecretBox
from store.stock import StockQueries
from store.tables import (
    ConnectorRow,
    FlowRow,
    FlowVersionRow,
    HeldPushRow,
    OrderRow,
    QuarantineRow,
    RawDocument,
    XrefRow,
)

MIGRATIONS = Path(__file__).parent / "migrations"


_PARK_LOCKS = [threading.Lock() for _ in range(64)]


def now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIGRATION_LOCK = 0x7D0_DA0_0001
"""PostgreSQL advisory lock key held while migrating (any constant bigint that no one else uses)."""


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent).

    One transaction, taken exclusively first: the worker and the API (two containers on one
    database) start together and both migrate; the second waits for the first and then finds the
    schema at head, instead of failing on a table the first has just created."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        elif conn.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction unless one is begun explicitly; IMMEDIATE takes
            # the write lock now (the other process waits out the busy timeout) and makes the DDL atomic
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store(LifecycleQueries, AccessQueries, AuditQueries, PersonalDataQueries, StockQueries, RuleSetQueries):
    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box
        self.cipher = FieldCipher(box)  # personal fields of raw documents and orders, same key ring
        self._session = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # -- connectors -------------------------------------------------------------------------
    def save_connector(self, name: str, kind: str, settings: dict, secrets: dict[str, str], actor: str) -> bool:
        """Insert or update a registration; returns True when it was new."""
        with self.session() as s:
            row = s.get(ConnectorRow, name)
            sealed = self.box.seal(secrets)
            if row is None:
                s.add(ConnectorRow(name=name, kind=kind, settings=settings, secrets_encrypted=sealed,
                                   created_at=now(), created_by=actor, updated_at=now(), updated_by=actor, version=1))
                return True
            row.kind, row.settings, row.secrets_encrypted = kind, settings, sealed
            row.updated_at, row.updated_by, row.version = now(), actor, row.version + 1
            return False

    def get_connector(self, name: str) -> ConnectorRow | None:
        with self.session() as s:
            return s.get(ConnectorRow, name)

    def connector_secrets(self, row: ConnectorRow) -> dict[str, str]:
        return self.box.open(row.secrets_encrypted)

    def list_connectors(self) -> list[ConnectorRow]:
        with self.session() as s:
            return list(s.scalars(select(ConnectorRow).order_by(ConnectorRow.name)))

    def rotate_secrets(self) -> dict[str, int]:
        """Re-encrypt every connector's secrets and every personal-data field with the first key of the
        ring (``tongdao secrets rotate``); afterwards the other keys may be removed. Counts per kind."""
        connectors = 0
        with self.session() as s:
            for row in s.scalars(select(ConnectorRow).order_by(ConnectorRow.name)):
                row.secrets_encrypted = self.box.rotate(row.secrets_encrypted, f"the secrets of connector {row.name}")
                connectors += 1
        return {"connectors": connectors, **self.rotate_personal_data()}

    def remove_connector(self, name: str) -> bool:
        with self.session() as s:
            row = s.get(ConnectorRow, name)
            if row is None:
                return False
            s.delete(row)
            return True

    # -- raw documents ----------------------------------------------------------------------
    def put_raw(self, connector: str, doc_type: str, external_id: str, payload: dict,
                modified_at: datetime | None) -> int:
        """Store a document once per distinct content; returns its id (existing id for a repeat).

        The digest is of the clear payload, taken before its personal fields are sealed: sealing is
        randomised, so only the clear content can tell a repeat from a change."""
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        key = dict(connector=connector, doc_type=doc_type, external_id=external_id, sha256=digest)
        with self.session() as s:
            existing = s.scalar(select(RawDocument.id).filter_by(**key))
            if existing is not None:
                return existing
        sealed = self.cipher.seal(json.loads(json.dumps(payload, default=str)))
        try:
            with self.session() as s:
                row = RawDocument(**key, payload=sealed, modified_at=modified_at, fetched_at=now())
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:  # a concurrent insert of the same content won
            with self.session() as s:
                return s.scalar(select(RawDocument.id).filter_by(**key))  # type: ignore[return-value]

    def _opened_raw(self, row: RawDocument | None, reveal: bool) -> RawDocument | None:
        """The detached row with its payload in clear (``reveal``) or masked; the stored row is untouched."""
        if row is not None:
            row.payload = self.cipher.open(row.payload) if reveal else self.cipher.masked(row.payload)
        return row

    def get_raw(self, raw_id: int, reveal: bool = True) -> RawDocument | None:
        """The raw document, personal fields decrypted for the activity that maps it, or masked
        (``reveal=False``) for anyone who only needs to look at it (auditors, timelines)."""
        with self.session() as s:
            row = s.get(RawDocument, raw_id)
        return self._opened_raw(row, reveal)

    def latest_raw(self, connector: str, doc_type: str, external_id: str, reveal: bool = True) -> RawDocument | None:
        with self.session() as s:
            row = s.scalars(
                select(RawDocument).filter_by(connector=connector, doc_type=doc_type, external_id=external_id)
                .order_by(RawDocument.id.desc()).limit(1)
            ).first()
        return self._opened_raw(row, reveal)

    # -- orders -----------------------------------------------------------------------------
    def upsert_order(self, key: str, **values: Any) -> OrderRow:
        """Insert or update an order; a canonical order given is stored with its personal fields sealed
        (the returned row shows it in clear, as given)."""
        clear = values.get("canonical")
        if clear is not None:
            values["canonical"] = self.cipher.seal(clear)
        with self.session() as s:
            row = s.get(OrderRow, key)
            if row is None:
                row = OrderRow(key=key, hub_code=hub_code(key), created_at=now(), updated_at=now(), **values)
                s.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated_at = now()
        if clear is not None:
            row.canonical = clear  # detached: what the caller gave, not a second decryption
            return row
        return self._opened_order(row, True)  # type: ignore[return-value]

    def _opened_order(self, row: OrderRow | None, reveal: bool) -> OrderRow | None:
        """The detached row with its canonical order in clear (``reveal``) or masked."""
        if row is not None and row.canonical is not None:
            row.canonical = self.cipher.open(row.canonical) if reveal else self.cipher.masked(row.canonical)
        return row

    def get_order(self, key: str, reveal: bool = True) -> OrderRow | None:
        """The order, its receiver and buyer decrypted for the activity that builds a target's document,
        or masked (``reveal=False``: ``138****78``) for auditors, timelines and exports."""
        with self.session() as s:
            row = s.get(OrderRow, key)
        return self._opened_order(row, reveal)

    def order_by_hub_code(self, code: str, reveal: bool = True) -> OrderRow | None:
        """The order a WMS/ERP document code belongs to (an amendment's code included)."""
        with self.session() as s:
            row = s.scalars(select(OrderRow).filter_by(hub_code=base_code(code))).first()
        return self._opened_order(row, reveal)

    def orders_by_external_id(self, external_id: str, reveal: bool = True) -> list[OrderRow]:
        with self.session() as s:
            rows = list(s.scalars(select(OrderRow).filter_by(external_id=external_id)))
        return [self._opened_order(row, reveal) for row in rows]  # type: ignore[misc]

    def orders_with_outcome(self, outcomes: tuple[str, ...]) -> list[OrderRow]:
        """Orders whose recorded outcome is one of ``outcomes`` (personal fields left sealed)."""
        with self.session() as s:
            return list(s.scalars(select(OrderRow).where(OrderRow.outcome.in_(outcomes))))

    def count_orders_by_stage(self) -> dict[str, int]:
        with self.session() as s:
            return dict(s.execute(select(OrderRow.stage, func.count()).group_by(OrderRow.stage)).all())  # type: ignore[arg-type]

    # -- quarantine -------------------------------------------------------------------------
    def park(self, *, order_key: str, workflow_id: str, connector: str, raw_id: int, stage: str, reason: str,
             errors: list[dict], mapping_name: str = "", mapping_hash: str = "") -> int:
        """Open (or refresh) the quarantine entry of an order; one open entry per order.

        The WMS and ERP steps of one order fail in parallel: the read-then-write below is made
        atomic per order within this process by a lock, and any duplicate a second worker process
        slipped in is merged into the oldest entry afterwards.
        """
        with _PARK_LOCKS[hash(order_key) % len(_PARK_LOCKS)]:
            qid = self._park(order_key=order_key, workflow_id=workflow_id, connector=connector, raw_id=raw_id,
                             stage=stage, reason=reason, errors=errors, mapping_name=mapping_name,
                             mapping_hash=mapping_hash)
        return self._merge_open_entries(order_key) or qid

    def _merge_open_entries(self, order_key: str) -> int | None:
        with self.session() as s:
            rows = list(s.scalars(select(QuarantineRow).where(QuarantineRow.order_key == order_key,
                                                              QuarantineRow.status != "resolved")
                                  .order_by(QuarantineRow.id)))
            if len(rows) < 2:
                return rows[0].id if rows else None
            keep = rows[0]
            for extra in rows[1:]:
                if extra.stage not in keep.stage.split("+"):
                    keep.stage = f"{keep.stage}+{extra.stage}"[:30]
                    keep.reason = f"{keep.reason} | {extra.reason}"
                    keep.errors = [*keep.errors, *extra.errors]
                    keep.mapping_name = " + ".join(filter(None, (keep.mapping_name, extra.mapping_name)))[:100]
                s.delete(extra)
            keep.updated_at = now()
            return keep.id

    def _park(self, *, order_key: str, workflow_id: str, connector: str, raw_id: int, stage: str, reason: str,
              errors: list[dict], mapping_name: str = "", mapping_hash: str = "") -> int:
        with self.session() as s:
            row = s.scalars(
                select(QuarantineRow).where(QuarantineRow.order_key == order_key, QuarantineRow.status != "resolved")
            ).first()
            if row is None:
                row = QuarantineRow(order_key=order_key, workflow_id=workflow_id, connector=connector,
                                    raw_id=raw_id, stage=stage, reason=reason, errors=errors,
                                    mapping_name=mapping_name, mapping_hash=mapping_hash, status="open",
                                    replay_count=0, created_at=now(), updated_at=now())
                s.add(row)
            elif row.status == "open" and row.stage != stage and stage not in row.stage.split("+"):
                # another step failed in the same attempt (WMS and ERP in parallel): keep both errors
                row.stage = f"{row.stage}+{stage}"[:30]
                row.reason = f"{row.reason} | {reason}"
                row.errors = [*row.errors, *errors]
                row.mapping_name = " + ".join(filter(None, (row.mapping_name, mapping_name)))[:100]
                row.mapping_hash = mapping_hash or row.mapping_hash
                row.raw_id, row.updated_at = raw_id, now()
            else:
                row.raw_id, row.stage, row.reason, row.errors = raw_id, stage, reason, errors
                row.mapping_name, row.mapping_hash = mapping_name, mapping_hash
                row.status, row.updated_at = "open", now()
            s.flush()
            return row.id

    def resolve_quarantine(self, order_key: str) -> None:
        with self.session() as s:
            for row in s.scalars(select(QuarantineRow).where(QuarantineRow.order_key == order_key,
                                                             QuarantineRow.status != "resolved")):
                row.status, row.updated_at = "resolved", now()

    def mark_replaying(self, qid: int) -> QuarantineRow | None:
        with self.session() as s:
            row = s.get(QuarantineRow, qid)
            if row is not None:
                row.status, row.replay_count, row.updated_at = "replaying", row.replay_count + 1, now()
            return row

    def get_quarantine(self, qid: int) -> QuarantineRow | None:
        with self.session() as s:
            return s.get(QuarantineRow, qid)

    def list_quarantine(self, status: str | None = "open") -> list[QuarantineRow]:
        with self.session() as s:
            q = select(QuarantineRow).order_by(QuarantineRow.id)
            if status:
                q = q.where(QuarantineRow.status == status)
            return list(s.scalars(q))

    # -- cross references -------------------------------------------------------------------
    def set_xref(self, table: str, values: dict[str, str]) -> None:
        with self.session() as s:
            for key, value in values.items():
                s.merge(XrefRow(table=table, key=str(key), value=str(value)))

    def xref_tables(self, tables: list[str] | None = None) -> dict[str, dict[str, str]]:
        with self.session() as s:
            q = select(XrefRow)
            if tables:
                q = q.where(XrefRow.table.in_(tables))
            out: dict[str, dict[str, str]] = {}
            for row in s.scalars(q):
                out.setdefault(row.table, {})[row.key] = row.value
            return out


    # -- flows ------------------------------------------------------------------------------
    def save_flow(self, flow_name: str, version: str, definition: dict, actor: str) -> bool:
        """Insert or update a flow; returns True when it was new.

        The version is recorded in ``flow_versions`` the first time it is seen (runs in flight
        load their version from there). An update keeps the flow's ``paused`` state.
        """
        for attempt in range(3):
            try:
                with self.session() as s:
                    if s.get(FlowVersionRow, (flow_name, version)) is None:
                        s.add(FlowVersionRow(name=flow_name, version=version, definition=definition,
                                             created_at=now()))
                    row = s.get(FlowRow, flow_name)
                    if row is None:
                        s.add(FlowRow(name=flow_name, version=version, definition=definition, paused=False,
                                      created_at=now(), created_by=actor, updated_at=now(), updated_by=actor))
                        return True
                    if row.version != version or row.definition != definition:
                        row.version, row.definition = version, definition
                        row.updated_at, row.updated_by = now(), actor
                    return False
            except IntegrityError:  # a concurrent save of the same flow or version won; redo as an update
                if attempt == 2:
                    raise
        return False  # pragma: no cover

    def get_flow(self, name: str) -> FlowRow | None:
        with self.session() as s:
            return s.get(FlowRow, name)

    def get_flow_version(self, name: str, version: str) -> dict | None:
        """The definition of one version of a flow (also after the flow changed or was removed)."""
        with self.session() as s:
            row = s.get(FlowVersionRow, (name, version))
            return row.definition if row else None

    def list_flows(self) -> list[FlowRow]:
        with self.session() as s:
            return list(s.scalars(select(FlowRow).order_by(FlowRow.name)))

    def set_flow_paused(self, name: str, paused: bool, actor: str) -> bool:
        """Returns False when there is no such flow."""
        with self.session() as s:
            row = s.get(FlowRow, name)
            if row is None:
                return False
            if row.paused != paused:
                row.paused, row.updated_at, row.updated_by = paused, now(), actor
            return True

    def remove_flow(self, name: str) -> bool:
        """Remove the flow; its versions stay (runs in flight may still load theirs)."""
        with self.session() as s:
            row = s.get(FlowRow, name)
            if row is None:
                return False
            s.delete(row)
            return True

    # -- pushes held while a flow is paused -------------------------------------------------
    def hold_push(self, flow: str, connector: str, event: dict) -> int:
        with self.session() as s:
            row = HeldPushRow(flow=flow, connector=connector, event=event, received_at=now(), released_at=None)
            s.add(row)
            s.flush()
            return row.id

    def held_pushes(self, flow: str) -> list[HeldPushRow]:
        """Pushes of ``flow`` not yet released, oldest first."""
        with self.session() as s:
            return list(s.scalars(
                select(HeldPushRow).where(HeldPushRow.flow == flow, HeldPushRow.released_at.is_(None))
                .order_by(HeldPushRow.id)
            ))

    def release_push(self, push_id: int) -> None:
        """Mark a held push delivered (idempotent)."""
        with self.session() as s:
            row = s.get(HeldPushRow, push_id)
            if row is not None and row.released_at is None:
                row.released_at = now()


def _sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and ``:memory:``)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def owner_only(path: Path, mode: int = 0o600) -> None:
    """Make ``path`` (if it exists) readable by its owner only: the store holds personal data and
    sealed secrets, and a state directory made by an older version (or another umask) left them 0644.
    A file we may not change is left as it is (whoever owns it decides)."""
    try:
        if path.exists() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError:
        pass


def open_store(url: str, secret_key: str | None, home: Path, run_migrations: bool = True,
               secret_key_file: Path | None = None) -> Store:
    """Open (and migrate) the hub store; a SQLite file is created 0600, and so are its -wal and -shm
    (SQLite gives them the database file's mode, so the file is made before the first connection).

    ``secret_key`` (``TONGDAO_SECRET_KEY``, comma-separated keys) or ``secret_key_file``
    (``TONGDAO_SECRET_KEY_FILE``, read from the environment when not given) is the key ring sealing
    connector secrets and personal data; neither = ``<home>/secret.key``."""
    # a bad key fails here, before anything is written
    box = SecretBox.from_settings(secret_key, home, secret_key_file)
    db_file = _sqlite_path(url)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        if not db_file.exists():
            os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT, 0o600))
        owner_only(db_file)
    engine = make_engine(url)
    if run_migrations:
        migrate(engine)
    if db_file is not None:
        for suffix in ("-wal", "-shm", "-journal"):
            owner_only(db_file.with_name(db_file.name + suffix))
    return Store(engine, box)
