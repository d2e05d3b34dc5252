"""The hub store behaves the same on SQLite (the default) and PostgreSQL (production).

Every test runs twice: on a SQLite file and on a fresh PostgreSQL database of its own (``pg_store``
in tests/conftest.py; needs ``TONGDAO_TEST_PG_URL``, which ``.ci/run`` sets from a throw-away
server; skipped locally without it, a failure in CI). Two store handles on one database stand for
two worker processes.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from store import Store, open_store
from store.db import MIGRATIONS, make_engine, migrate
from store.ratebudget import StoreRateBudget
from store.tables import Base, ConnectorRow, OrderRow, PushEventRow, QuarantineRow, RateBucketRow, RawDocument, TaskRow

PHONE = "13912345678"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    yield store
    store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")


@pytest.fixture
def other(store: Store) -> Iterator[Store]:
    """A second handle on the same database: another worker process."""
    handle = Store(make_engine(store.engine.url.render_as_string(hide_password=False)), store.box)
    yield handle
    handle.engine.dispose()


def stored(store: Store, column: Any, *where: Any) -> list[Any]:
    """A column's values as the database holds them (no decryption, no masking)."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(column).where(*where)).scalars())


def count(store: Store, table: type, *where: Any) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(table).where(*where)) or 0


def in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at once; their results in order."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def add_order(store: Store, key: str = "taobao:s:1", **values: Any) -> OrderRow:
    values = {"channel": "taobao", "shop": "s", "external_id": key.rsplit(":", 1)[-1], "source_connector": "c",
              "raw_id": 1, "stage": "mapped", **values}
    return store.upsert_order(key, **values)


# -- schema -----------------------------------------------------------------------------------------
def assert_at_head(store: Store) -> None:
    """The schema is at the newest revision and is exactly what the table classes declare."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrations_reach_head_twice_and_build_what_the_tables_declare(store: Store) -> None:
    migrate(store.engine)  # a second run (the fixture ran the first): nothing to do, nothing fails
    assert_at_head(store)


def test_down_to_nothing_then_up_from_two_processes_at_once(store: Store) -> None:
    """Every downgrade runs; then the worker and the API (two containers on one database) migrate an
    empty database at the same moment: one does the work, the other waits and finds it done."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    store.engine.dispose()
    url = store.engine.url.render_as_string(hide_password=False)
    code = "import sys; from store.db import make_engine, migrate; migrate(make_engine(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert_at_head(store)


# -- connectors -------------------------------------------------------------------------------------
def test_connector_secrets_are_sealed_at_rest(store: Store) -> None:
    assert store.save_connector("shop", "taobao", {"base_url": "x", "n": 1}, {"app_secret": "s3cr3t"}, "alice")
    [sealed] = stored(store, ConnectorRow.__table__.c.secrets_encrypted)
    assert isinstance(sealed, bytes) and b"s3cr3t" not in sealed
    row = store.get_connector("shop")
    assert store.connector_secrets(row) == {"app_secret": "s3cr3t"}
    assert (row.settings, row.version, row.created_by) == ({"base_url": "x", "n": 1}, 1, "alice")
    assert row.created_at.tzinfo is not None
    assert not store.save_connector("shop", "taobao", {"base_url": "y"}, {"app_secret": "n"}, "bob")
    row = store.get_connector("shop")
    assert (row.version, row.updated_by, row.created_by, row.settings) == (2, "bob", "alice", {"base_url": "y"})
    store.save_connector("erp", "kingdee", {}, {}, "alice")
    assert [r.name for r in store.list_connectors()] == ["erp", "shop"]
    assert store.rotate_secrets()["connectors"] == 2
    assert store.connector_secrets(store.get_connector("shop")) == {"app_secret": "n"}
    assert store.remove_connector("erp") and not store.remove_connector("erp")


# -- raw documents ----------------------------------------------------------------------------------
def test_a_document_stored_twice_is_one_row(store: Store) -> None:
    modified = datetime(2026, 11, 11, 8, 30, 15, 123456, tzinfo=UTC)
    payload = {"tid": 1, "receiver_mobile": PHONE, "items": [{"sku": "A", "qty": 2}], "paid": True, "fee": 1.5}
    a = store.put_raw("c", "order", "1", payload, modified)
    assert store.put_raw("c", "order", "1", payload, modified) == a
    assert count(store, RawDocument) == 1
    b = store.put_raw("c", "order", "1", {**payload, "tid": 2}, None)
    assert b != a and count(store, RawDocument) == 2
    assert store.latest_raw("c", "order", "1").id == b
    raw = store.get_raw(a)
    assert raw.payload == payload and raw.modified_at == modified and raw.fetched_at.tzinfo is not None
    assert store.get_raw(a, reveal=False).payload["receiver_mobile"] == "139****78"
    assert all(PHONE not in json.dumps(p) for p in stored(store, RawDocument.__table__.c.payload))
    assert [v.id for v in store.raw_versions("c", "1")] == [a, b]


def test_the_same_document_from_many_workers_at_once_is_one_row(store: Store, other: Store) -> None:
    ids = in_threads(6, lambda i: (store, other)[i % 2].put_raw("c", "order", "9", {"tid": 9}, None))
    assert len(set(ids)) == 1 and count(store, RawDocument) == 1


# -- orders -----------------------------------------------------------------------------------------
def test_orders_upsert(store: Store) -> None:
    canonical = {"receiver": {"mobile": PHONE, "name": "张三"}, "total": "12.50"}
    row = add_order(store, canonical=canonical)
    assert row.canonical == canonical and row.hub_code.startswith("TD")
    add_order(store, stage="sent", wms_order_id="W1", revision=1)
    got = store.get_order("taobao:s:1")
    assert (got.stage, got.wms_order_id, got.revision, got.canonical) == ("sent", "W1", 1, canonical)
    assert got.updated_at >= got.created_at and got.created_at.tzinfo is not None
    assert store.get_order("taobao:s:1", reveal=False).canonical["receiver"]["mobile"] == "139****78"
    assert all(PHONE not in json.dumps(c) and "张三" not in json.dumps(c, ensure_ascii=False)
               for c in stored(store, OrderRow.__table__.c.canonical))
    assert store.order_by_hub_code(row.hub_code).key == "taobao:s:1"
    add_order(store, "taobao:s:2", stage="mapped")
    assert [o.key for o in store.orders_by_external_id("2")] == ["taobao:s:2"]
    assert store.count_orders_by_stage() == {"sent": 1, "mapped": 1}
    summary = store.order_summary("taobao:s:1")
    assert summary["wms_order_id"] == "W1" and summary["created_at"].tzinfo is not None
    assert store.order_summary("nope") is None


def test_purge_and_rotation_of_personal_data(store: Store) -> None:
    raw_id = store.put_raw("c", "order", "1", {"tid": 1, "receiver_mobile": PHONE}, None)
    add_order(store, raw_id=raw_id, stage="completed", outcome="shipped", canonical={"receiver": {"mobile": PHONE}})
    add_order(store, "taobao:s:2", stage="sent", canonical={"receiver": {"mobile": PHONE}})
    assert store.rotate_personal_data()["fields_rotated"] == 3
    later = datetime.now(UTC) + timedelta(days=1)
    assert store.purge_personal_data(later, dry_run=True)["orders_purged"] == 1
    counts = store.purge_personal_data(later)
    assert (counts["orders_purged"], counts["raw_documents_purged"]) == (1, 1)
    assert store.get_order("taobao:s:1").canonical == {"receiver": {"mobile": ""}}
    assert store.get_order("taobao:s:2").canonical == {"receiver": {"mobile": PHONE}}
    assert store.purge_personal_data(later)["fields_purged"] == 0


# -- quarantine -------------------------------------------------------------------------------------
def park(store: Store, stage: str = "mapping", key: str = "k", **kw: Any) -> int:
    args = {"order_key": key, "workflow_id": "w", "connector": "c", "raw_id": 1, "stage": stage,
            "reason": f"bad {stage}", "errors": [{"stage": stage}], **kw}
    return store.park(**args)


def test_quarantine_park_and_replay(store: Store) -> None:
    qid = park(store)
    assert park(store, raw_id=2) == qid  # one open entry per order
    assert park(store, "wms") == qid  # a parallel step failing too: both kept
    row = store.get_quarantine(qid)
    assert row.stage == "mapping+wms" and row.errors == [{"stage": "mapping"}, {"stage": "wms"}]
    assert store.mark_replaying(qid).replay_count == 1
    assert store.list_quarantine("open") == [] and [r.id for r in store.list_quarantine("replaying")] == [qid]
    store.resolve_quarantine("k")
    assert store.get_quarantine(qid).status == "resolved"
    again = park(store)
    assert again != qid and [r.id for r in store.quarantine_of_order("k")] == [qid, again]
    assert [r.id for r in store.list_quarantine(None)] == [qid, again]


def test_two_workers_parking_one_order_leave_one_entry(store: Store, other: Store) -> None:
    in_threads(2, lambda i: park((store, other)[i], ("wms", "erp")[i]))
    open_rows = store.list_quarantine("open")
    assert len(open_rows) == 1 and set(open_rows[0].stage.split("+")) == {"wms", "erp"}


# -- task inbox, pending pushes, push events, cursors -------------------------------------------------
def test_tasks(store: Store) -> None:
    tid, created = store.raise_task(kind="after_sales", order_key="k", title="t" * 400, details={"a": [1]}, ref="r1")
    assert created and store.raise_task(kind="after_sales", order_key="k", title="x", details={}, ref="r1") == (
        tid, False)
    other_id, _ = store.raise_task(kind="approval", order_key="k", title="ok?", details={}, role="admin")
    assert [t.id for t in store.list_tasks(kind="after_sales")] == [tid]
    assert [t.id for t in store.list_tasks(role="admin")] == [other_id]
    assert store.list_tasks(older_than=datetime.now(UTC) - timedelta(hours=1)) == []
    assert len(store.list_tasks(older_than=datetime.now(UTC) + timedelta(hours=1))) == 2
    assert store.close_task(tid, "alice").status == "done"
    assert [t.id for t in store.list_tasks()] == [other_id]
    assert [t.id for t in store.tasks_of_order("k")] == [tid, other_id]
    assert len(store.tasks_of_order("k")[0].title) == 300


def test_a_task_raised_by_many_workers_at_once_is_one_task(store: Store, other: Store) -> None:
    results = in_threads(6, lambda i: (store, other)[i % 2].raise_task(kind="manual_review", order_key="k",
                                                                        title="t", details={}, ref="same"))
    assert len({tid for tid, _ in results}) == 1 and [c for _, c in results].count(True) == 1
    assert count(store, TaskRow) == 1


def test_pending_pushes_and_push_events(store: Store) -> None:
    first = store.keep_pending_push("wms", "TD1", {"type": "shipment", "n": 1})
    store.keep_pending_push("wms", "TD2", {"type": "shipment", "n": 2})
    assert [p.id for p in store.pending_pushes()] == [first, first + 1]
    taken = store.take_pending_pushes(["TD1"])
    assert [p.event for p in taken] == [{"type": "shipment", "n": 1}] and taken[0].delivered_at is not None
    assert [p.order_code for p in store.pending_pushes()] == ["TD2"]
    assert store.take_pending_pushes(["TD1"]) == []
    assert not store.push_event_seen("shop", "e1")
    store.mark_push_event("shop", "e1")
    store.mark_push_event("shop", "e1")
    assert store.push_event_seen("shop", "e1") and count(store, PushEventRow) == 1


def test_overlong_ids_from_outside_are_kept(store: Store) -> None:
    """What a platform or a WMS pushes may be longer than its column: PostgreSQL would refuse it
    where SQLite took it, so the store keeps it in a form that fits, the same on both."""
    long_id = "evt-" + "x" * 300
    store.mark_push_event("shop", long_id)
    assert store.push_event_seen("shop", long_id) and not store.push_event_seen("shop", long_id[:-1])
    store.keep_pending_push("wms", "C" * 150, {"type": "shipment"})
    assert [p.event for p in store.take_pending_pushes(["C" * 150])] == [{"type": "shipment"}]


def test_cursors(store: Store) -> None:
    t = datetime(2026, 11, 11, 0, 0, 0, 1, tzinfo=UTC)
    store.set_cursor("c", "orders", t)
    store.set_cursor("c", "orders", t - timedelta(hours=1))
    assert store.get_cursor("c", "orders") == t
    assert store.get_cursor("c", "orders", flow="f") == t  # a flow without its own starts from the shared one
    store.set_cursor("c", "orders", t + timedelta(hours=2), flow="f")
    assert store.get_cursor("c", "orders", flow="f") == t + timedelta(hours=2)
    store.set_cursor("c", "orders", t - timedelta(days=1), force=True)
    assert store.get_cursor("c", "orders") == t - timedelta(days=1)
    store.drop_flow_cursors("f")
    assert store.get_cursor("c", "orders", flow="f") == t - timedelta(days=1)


# -- flows, held pushes, cross references -----------------------------------------------------------
def test_flows_and_held_pushes(store: Store) -> None:
    assert store.save_flow("f", "v1", {"sources": [1]}, "alice")
    assert not store.save_flow("f", "v2", {"sources": [2]}, "bob")
    assert store.get_flow("f").paused is False
    assert store.set_flow_paused("f", True, "bob") and store.get_flow("f").paused is True
    assert [f.name for f in store.list_flows()] == ["f"] and not store.set_flow_paused("nope", True, "bob")
    pid = store.hold_push("f", "c", {"type": "order_changed"})
    assert [p.id for p in store.held_pushes("f")] == [pid]
    store.release_push(pid)
    store.release_push(pid)
    assert store.held_pushes("f") == []
    assert store.remove_flow("f") and store.get_flow_version("f", "v1") == {"sources": [1]}
    assert store.flow_versions_known([("f", "v1"), ("f", "v9"), ("", "v1")]) == {("f", "v1")}


def test_cross_references(store: Store) -> None:
    store.set_xref("sku", {"1": "A", "2": "B"})
    store.set_xref("sku", {"2": "C"})
    store.set_xref("warehouse", {"hz": "WH1"})
    assert store.xref_tables(["sku"]) == {"sku": {"1": "A", "2": "C"}}
    assert store.xref_tables() == {"sku": {"1": "A", "2": "C"}, "warehouse": {"hz": "WH1"}}


# -- API tokens and the configuration audit log -------------------------------------------------------
def test_api_tokens(store: Store) -> None:
    token = store.create_token("ops", "operator", "alice")
    assert store.token_role(token) == ("ops", "operator") and store.token_role("td_nope") is None
    assert store.list_tokens()[0].last_used_at is not None
    with pytest.raises(ValueError, match="exists"):
        store.create_token("ops", "admin", "alice")
    assert store.revoke_token("ops", "alice") and not store.revoke_token("ops", "alice")
    assert store.token_role(token) is None
    again = store.create_token("ops", "admin", "alice")  # a revoked name may be given a new token
    assert store.token_role(again) == ("ops", "admin")
    assert [e.action for e in store.audit_log()] == ["token.create", "token.revoke", "token.create"]  # newest first
    assert store.audit_log()[0].details == {"role": "admin"} and store.audit_log()[0].at.tzinfo is not None


# -- rate buckets shared by worker processes ------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.123456

    def __call__(self) -> float:
        return self.now


def test_rate_buckets(store: Store, other: Store) -> None:
    clock = Clock()
    a, b = StoreRateBudget(store, clock), StoreRateBudget(other, clock)
    assert a.take("shop", 2.0, 2.0) == 0.0 and b.take("shop", 2.0, 2.0) == 0.0
    assert a.take("shop", 2.0, 2.0) == pytest.approx(0.5)
    clock.now += 1.0
    assert [p.take("shop", 2.0, 2.0) == 0.0 for p in (a, b, a, b)].count(True) == 2
    a.ban("shop", clock.now + 300)
    assert b.take("shop", 5.0, 5.0) == pytest.approx(300) and b.banned_until("shop") == clock.now + 300
    assert b.banned_until("unknown") == 0.0


def test_a_bucket_taken_from_many_threads_grants_its_burst_once(store: Store, other: Store) -> None:
    clock = Clock()
    budgets = [StoreRateBudget(h, clock) for h in (store, other)]
    budgets[0].take("shop", 1.0, 5.0)  # the bucket exists: 4 tokens left
    waits = in_threads(8, lambda i: budgets[i % 2].take("shop", 1.0, 5.0))
    assert 1 <= waits.count(0.0) <= 4  # never more than the bucket held (a loser of many races may wait)
    with store.session() as s:
        assert s.get(RateBucketRow, "shop").tokens == pytest.approx(4 - waits.count(0.0))


# -- audit: spec texts and the archive of closed workflows ------------------------------------------------
def archive(store: Store, run_id: str, start: datetime | None, close: datetime | None, skus: list[str]) -> bool:
    history = json.dumps({"events": [run_id]}).encode()
    return store.archive_run(workflow_id="order:k", run_id=run_id, task_queue="tq", workflow_type="OrderLifecycle",
                             order_key="k", status="completed", start_time=start, close_time=close, history_events=3,
                             history_sha256="0" * 64, history_gz=gzip.compress(history), timeline={"entries": [1]},
                             skus=skus)


def test_audit_archive(store: Store) -> None:
    t = datetime(2026, 11, 11, 12, tzinfo=UTC)
    assert archive(store, "r2", t, t + timedelta(minutes=5), ["A", "B", "A"])
    assert not archive(store, "r2", t, t + timedelta(minutes=5), ["A"])  # archived twice = kept once
    assert archive(store, "r1", None, None, ["B"])
    assert store.archived_pairs([("order:k", "r1"), ("order:k", "r9"), ("order:x", "r2")]) == {("order:k", "r1")}
    assert store.last_archived_close("tq") == t + timedelta(minutes=5) and store.last_archived_close("x") is None
    runs = store.archived_runs("order:k")
    assert [r.run_id for r in runs] == ["r1", "r2"]  # no start time first, on both databases
    assert gzip.decompress(runs[1].history_gz) == b'{"events": ["r2"]}' and runs[1].timeline == {"entries": [1]}
    assert runs[1].start_time == t
    assert store.archived_workflows_with_sku("A") == ["order:k"] and store.archived_workflows_with_sku("C") == []


def test_spec_texts(store: Store) -> None:
    assert store.save_spec_text("ab" * 32, "taobao_order", "mappings/x.yaml", "spec: 1")
    assert not store.save_spec_text("ab" * 32, "changed", "", "spec: 2")
    store.save_spec_text("abababab" + "0" * 56, "other", "", "spec: 3")
    assert store.get_spec_text("ABABABABAB").text == "spec: 1"  # a unique prefix, any case
    assert store.get_spec_text("abab") is None  # too short for a prefix
    with pytest.raises(ValueError, match="more than one"):
        store.get_spec_text("abababab")
    assert store.spec_hashes() == {"ab" * 32, "abababab" + "0" * 56}
    assert store.get_spec_text("ab" * 32).first_seen_at.tzinfo is not None


def test_nothing_is_left_between_tests(store: Store) -> None:
    """Each test has a database of its own (on PostgreSQL: created for it, dropped after it)."""
    assert count(store, RawDocument) == 0 and count(store, QuarantineRow) == 0 and store.list_tokens() == []
