"""The hub store: migrations, encrypted secrets, raw dedupe, quarantine lifecycle, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canonical import hub_code
from store import open_store


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    return open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)


def test_secrets_are_encrypted_at_rest(store, tmp_path: Path) -> None:  # noqa: ANN001
    store.save_connector("shop", "taobao", {"base_url": "x"}, {"app_secret": "s3cr3t-value"}, "alice")
    raw = (tmp_path / "t.db").read_bytes()
    assert b"s3cr3t-value" not in raw
    row = store.get_connector("shop")
    assert store.connector_secrets(row) == {"app_secret": "s3cr3t-value"}
    assert row.created_by == "alice" and row.version == 1
    store.save_connector("shop", "taobao", {"base_url": "y"}, {"app_secret": "n"}, "bob")
    row = store.get_connector("shop")
    assert (row.version, row.updated_by, row.created_by) == (2, "bob", "alice")


def test_raw_documents_dedupe_by_content(store) -> None:  # noqa: ANN001
    a = store.put_raw("c", "order", "1", {"x": 1}, None)
    assert store.put_raw("c", "order", "1", {"x": 1}, None) == a
    b = store.put_raw("c", "order", "1", {"x": 2}, None)
    assert b != a and store.latest_raw("c", "order", "1").id == b


def test_quarantine_lifecycle(store) -> None:  # noqa: ANN001
    qid = store.park(order_key="k", workflow_id="w", connector="c", raw_id=1, stage="mapping", reason="bad",
                     errors=[{"target": "total"}])
    assert store.park(order_key="k", workflow_id="w", connector="c", raw_id=2, stage="mapping", reason="worse",
                      errors=[]) == qid
    assert store.mark_replaying(qid).replay_count == 1
    store.resolve_quarantine("k")
    assert store.list_quarantine("open") == [] and store.get_quarantine(qid).status == "resolved"


def test_cursor_only_moves_forward(store) -> None:  # noqa: ANN001
    t = datetime(2026, 11, 11, tzinfo=UTC)
    store.set_cursor("c", "orders", t)
    store.set_cursor("c", "orders", t - timedelta(hours=1))
    assert store.get_cursor("c", "orders") == t


def test_hub_code_is_stable_and_distinct() -> None:
    assert hub_code("taobao:a:1") == hub_code("taobao:a:1")
    assert hub_code("taobao:a:1") != hub_code("taobao:b:1")
    assert hub_code("taobao:a:1").startswith("TD") and len(hub_code("taobao:a:1")) == 18


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path}/m.db", None, tmp_path)
    open_store(f"sqlite:///{tmp_path}/m.db", None, tmp_path)


def test_personal_fields_are_sealed_and_read_back(store, tmp_path: Path) -> None:  # noqa: ANN001
    raw_id = store.put_raw("c", "order", "1", {"receiver_mobile": "13912345678", "tid": 1}, None)
    store.upsert_order("taobao:s:1", channel="taobao", shop="s", external_id="1", source_connector="c", raw_id=raw_id,
                       stage="mapped", canonical={"receiver": {"mobile": "13912345678"}, "buyer": {"email": "a@b.c"}})
    store.engine.dispose()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))
    assert b"13912345678" not in data and b"a@b.c" not in data
    assert store.get_raw(raw_id).payload == {"receiver_mobile": "13912345678", "tid": 1}
    assert store.get_order("taobao:s:1").canonical["buyer"]["email"] == "a@b.c"
    assert store.get_order("taobao:s:1", reveal=False).canonical["receiver"]["mobile"] == "139****78"


def test_a_key_that_did_not_seal_personal_data_says_so(store, tmp_path: Path) -> None:  # noqa: ANN001
    from cryptography.fernet import Fernet

    from store.secrets import SecretKeyError

    store.upsert_order("taobao:s:1", channel="taobao", shop="s", external_id="1", source_connector="c", raw_id=1,
                       stage="mapped", canonical={"receiver": {"mobile": "13912345678"}})
    other = open_store(f"sqlite:///{tmp_path}/t.db", Fernet.generate_key().decode(), tmp_path)
    with pytest.raises(SecretKeyError, match="cannot decrypt personal data: TONGDAO_SECRET_KEY holds none"):
        other.get_order("taobao:s:1")
    assert other.count_orders_by_stage() == {"mapped": 1}  # what needs no personal data still works
