"""Personal data at rest: receivers and buyers are sealed field by field in the hub store, given back
in clear only to the code that maps or ships the order, masked for auditors, and purged after the
retention period.

A store file is checked as bytes (the database and its WAL): SQLAlchemy writes JSON with
``ensure_ascii``, so a Chinese name is looked for both as UTF-8 and as its ``\\uXXXX`` escape.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from canonical import Order
from mappings import load_spec
from store import open_store
from store.db import Store
from store.personal import ENC, PURGED, FieldCipher, is_sealed, parse_age, personal_key
from store.tables import OrderRow

FIXTURES = Path(__file__).parents[1] / "fixtures"
TRADE: dict[str, Any] = json.loads((FIXTURES / "taobao_trade.json").read_text("utf-8"))
KEY = f"taobao:tmall-main:{TRADE['tid']}"
CLEAR = [TRADE["receiver_name"], TRADE["receiver_mobile"], TRADE["receiver_address"], TRADE["buyer_nick"]]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)


def store_bytes(tmp_path: Path) -> bytes:
    """Everything SQLite wrote: the database file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))


def forms(value: str) -> list[bytes]:
    """How a value can appear in a store file: UTF-8, or JSON-escaped (ensure_ascii)."""
    return [value.encode(), json.dumps(value)[1:-1].encode()]


def leaked(data: bytes, values: list[str]) -> list[str]:
    return [v for v in values if v and any(f in data for f in forms(v))]


def canonical_of(trade: dict[str, Any]) -> dict[str, Any]:
    result = load_spec("taobao_order").apply(trade, context={"shop": "tmall-main", "channel": "taobao"})
    assert result.ok, result.errors
    return result.value.model_dump(mode="json")


def put_order(store: Store) -> int:
    raw_id = store.put_raw("tmall-main", "order", str(TRADE["tid"]), TRADE, None)
    store.upsert_order(KEY, channel="taobao", shop="tmall-main", external_id=str(TRADE["tid"]),
                       source_connector="tmall-main", raw_id=raw_id, stage="mapped", canonical=canonical_of(TRADE))
    return raw_id


def test_the_store_file_holds_no_clear_receiver_but_activities_read_it(store: Store, tmp_path: Path) -> None:
    assert leaked(json.dumps(TRADE).encode(), CLEAR) == CLEAR  # the check would see them in clear
    raw_id = put_order(store)
    store.engine.dispose()
    assert leaked(store_bytes(tmp_path), CLEAR) == []

    raw = store.get_raw(raw_id)
    assert raw is not None and raw.payload == json.loads(json.dumps(TRADE))
    assert store.latest_raw("tmall-main", "order", str(TRADE["tid"])).payload["receiver_mobile"] == "13812345678"
    row = store.get_order(KEY)
    assert row is not None and row.canonical == canonical_of(TRADE)
    order = Order.model_validate(row.canonical)  # what the WMS activity builds its document from
    assert (order.receiver.name, order.receiver.mobile) == ("王小明", "13812345678")
    assert order.receiver.address.street == TRADE["receiver_address"] and order.buyer.nick == "t**_buyer"
    assert store.orders_by_external_id(str(TRADE["tid"]))[0].canonical == row.canonical
    assert store.order_by_hub_code(row.hub_code).canonical == row.canonical


def test_what_stays_readable_at_rest_and_the_markers(store: Store) -> None:
    raw_id = put_order(store)
    with store.session() as s:
        stored = s.get(OrderRow, KEY).canonical
        raw = s.get(type(store.get_raw(raw_id)), raw_id).payload
    # ids, amounts, lines and the protected flag stay clear; the receiver's and buyer's text does not
    assert stored["external_id"] == str(TRADE["tid"]) and stored["lines"] and stored["receiver"]["protected"] is False
    assert is_sealed(stored["receiver"]["name"]) and is_sealed(stored["receiver"]["address"]["street"])
    assert is_sealed(stored["buyer"]["nick"]) and stored["buyer"]["id"] == TRADE["buyer_open_uid"]
    assert stored["receiver"]["name"][ENC].startswith("v1:")
    assert raw["tid"] == TRADE["tid"] and raw["payment"] == "1268.00" and raw["seller_nick"] == TRADE["seller_nick"]
    assert all(is_sealed(raw[k]) for k in ("receiver_name", "receiver_mobile", "receiver_address", "buyer_nick"))
    assert raw["receiver_phone"] == ""  # absence is not personal


def test_auditors_read_it_masked(store: Store) -> None:
    raw_id = put_order(store)
    masked = store.get_order(KEY, reveal=False).canonical
    assert masked["receiver"]["mobile"] == "138****78" and masked["external_id"] == str(TRADE["tid"])
    assert "王小明" not in json.dumps(masked, ensure_ascii=False)
    assert store.get_raw(raw_id, reveal=False).payload["receiver_mobile"] == "138****78"


def test_dedupe_still_works_on_the_clear_content(store: Store) -> None:
    a = store.put_raw("c", "order", "1", TRADE, None)
    assert store.put_raw("c", "order", "1", json.loads(json.dumps(TRADE)), None) == a
    changed = {**TRADE, "receiver_address": "文二路 1 号"}
    assert store.put_raw("c", "order", "1", changed, None) != a


def test_every_marketplace_receiver_is_sealed(store: Store) -> None:
    """The rule is by field name: the receiver and buyer fields each mapping spec reads, on every platform."""
    docs = {
        "taobao_order": TRADE,
        "jd_order": json.loads((FIXTURES / "jd_order.json").read_text("utf-8")),
        "pdd_order": json.loads((FIXTURES / "pdd_order_info.json").read_text("utf-8"))
        ["order_info_get_response"]["order_info"],
        "douyin_order": json.loads((FIXTURES / "douyin_order_detail.json").read_text("utf-8"))
        ["data"]["shop_order_detail"],
        "shopify_order": json.loads((FIXTURES / "shopify_order.json").read_text("utf-8")),
        "amazon_order": json.loads((FIXTURES / "amazon_get_order.json").read_text("utf-8"))["order"],
    }
    for n, (spec, doc) in enumerate(docs.items()):
        channel = spec.split("_")[0]
        order = load_spec(spec).apply(doc, context={"shop": "s", "channel": channel}).value
        assert order is not None, spec
        values = [order.receiver.name, order.receiver.mobile, order.receiver.phone, order.receiver.address.street,
                  order.buyer.nick, order.buyer.email]
        assert [v for v in values if v], spec
        raw_id = store.put_raw(spec, "order", str(n), doc, None)
        with store.session() as s:
            at_rest = json.dumps(s.get(type(store.get_raw(raw_id)), raw_id).payload, ensure_ascii=False)
        assert [v for v in values if v and v in at_rest] == [], spec
        assert store.get_raw(raw_id).payload == json.loads(json.dumps(doc)), spec


@pytest.mark.parametrize(("key", "parent", "personal"), [
    ("receiver_mobile", None, True), ("buyer_nick", None, True), ("consigneeInfo", None, True),
    ("shippingAddress", None, True), ("pin", None, True), ("displayName", "customer", True),
    ("name", "customer", True), ("name", None, False), ("name", "lineItems", False), ("seller_nick", None, False),
    ("buyer_message", None, False), ("buyer_open_uid", None, False), ("tid", None, False),
])
def test_which_fields_are_personal(key: str, parent: str | None, personal: bool) -> None:
    assert personal_key(key, parent) is personal


def test_types_and_markers_round_trip(store: Store) -> None:
    cipher = store.cipher
    doc = {"receiver": {"name": "王", "mobile": 13812345678, "protected": True, "zip": None, "tags": ["a", 1]}}
    sealed = cipher.seal(doc)
    assert sealed["receiver"]["protected"] is True and sealed["receiver"]["zip"] is None
    assert is_sealed(sealed["receiver"]["mobile"]) and all(is_sealed(t) for t in sealed["receiver"]["tags"])
    assert cipher.seal(sealed) == sealed  # sealing a sealed document changes nothing
    assert cipher.open(sealed) == doc and cipher.open(doc) == doc  # rows stored before encryption read as they are


# -- retention -----------------------------------------------------------------------------------------
def age(store: Store, key: str, days: int, **values: str) -> None:
    with store.session() as s:
        s.execute(update(OrderRow).where(OrderRow.key == key)
                  .values(updated_at=datetime.now(UTC) - timedelta(days=days), **values))


def test_purge_removes_personal_data_of_finished_orders_only(store: Store, tmp_path: Path) -> None:
    put_order(store)
    other = {**TRADE, "tid": 1, "receiver_mobile": "13900000001", "receiver_name": "李四"}
    other_key = "taobao:tmall-main:1"
    raw_other = store.put_raw("tmall-main", "order", "1", other, None)
    store.upsert_order(other_key, channel="taobao", shop="tmall-main", external_id="1", source_connector="tmall-main",
                       raw_id=raw_other, stage="in_wms", canonical=canonical_of(other))
    age(store, KEY, 40, stage="completed", outcome="shipped")
    age(store, other_key, 40)  # old, but still on its way: the WMS may need the address again

    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert store.purge_personal_data(datetime.now(UTC) - timedelta(days=60))["orders_eligible"] == 0
    dry = store.purge_personal_data(cutoff, dry_run=True)
    assert dry == {"orders_eligible": 1, "orders_purged": 1, "raw_documents_purged": 1,
                   "fields_purged": dry["fields_purged"]} and dry["fields_purged"] >= 10
    assert store.get_order(KEY).canonical["receiver"]["mobile"] == "13812345678"  # dry run: nothing changed

    assert store.purge_personal_data(cutoff) == dry
    row = store.get_order(KEY)
    assert row.canonical["receiver"]["mobile"] == "" and row.canonical["buyer"]["nick"] == ""
    assert row.canonical["lines"] == canonical_of(TRADE)["lines"] and row.stage == "completed"
    Order.model_validate(row.canonical)  # still a valid order for whoever reads it later
    with store.session() as s:
        assert s.get(OrderRow, KEY).canonical["receiver"]["name"] == {PURGED: datetime.now(UTC).date().isoformat()}
    assert store.get_raw(row.raw_id).payload["receiver_address"] == ""
    assert store.get_order(other_key).canonical["receiver"]["mobile"] == "13900000001"
    assert store.purge_personal_data(cutoff)["fields_purged"] == 0  # nothing left the second time

    store.engine.dispose()
    data = store_bytes(tmp_path)
    assert leaked(data, CLEAR) == []


def test_after_sales_waits_for_its_tasks(store: Store) -> None:
    put_order(store)
    age(store, KEY, 40, stage="closed", outcome="after_sales")
    task_id, _ = store.raise_task(kind="after_sales", order_key=KEY, title="return", details={})
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert store.purge_personal_data(cutoff)["orders_eligible"] == 0
    store.close_task(task_id, "alice")
    assert store.purge_personal_data(cutoff)["orders_purged"] == 1


@pytest.mark.parametrize(("text", "days"), [("30d", 30), ("2w", 14), ("12h", 0.5), ("90", 90), ("6m", 180)])
def test_ages(text: str, days: float) -> None:
    assert parse_age(text) == timedelta(days=days)


def test_privacy_purge_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import app
    from hub.settings import get_settings

    home = tmp_path / "var"
    monkeypatch.setenv("TONGDAO_HOME", str(home))
    monkeypatch.delenv("TONGDAO_SECRET_KEY", raising=False)
    monkeypatch.setenv("TONGDAO_PERSONAL_DATA_RETENTION_DAYS", "35")
    get_settings.cache_clear()
    try:
        store = open_store(f"sqlite:///{(home / 'tongdao.db').resolve()}", None, home)
        put_order(store)
        age(store, KEY, 40, stage="completed", outcome="shipped")
        runner = CliRunner()
        result = runner.invoke(app, ["privacy", "purge", "--dry-run", "--json"])
        assert result.exit_code == 0, result.output
        counts = json.loads(result.stdout.strip().splitlines()[-1])
        assert counts["dry_run"] is True and counts["orders_purged"] == 1 and counts["raw_documents_purged"] == 1
        result = runner.invoke(app, ["privacy", "purge", "--older-than", "41d", "--json"])
        assert json.loads(result.stdout.strip().splitlines()[-1])["orders_eligible"] == 0
        result = runner.invoke(app, ["privacy", "purge", "--older-than", "30d"])
        assert result.exit_code == 0 and "purged personal data of 1 orders" in result.output
        assert store.get_order(KEY).canonical["receiver"]["mobile"] == ""
        bad = runner.invoke(app, ["privacy", "purge", "--older-than", "soon"])
        assert bad.exit_code == 1 and "not an age like 30d" in bad.output
    finally:
        get_settings.cache_clear()


# -- a whole demo run: no clear buyer phone in the hub store -------------------------------------------
@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_demo_store_holds_no_clear_buyer_phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.demo as demo
    from hub.settings import Settings
    from simulators.server import free_port

    systems: list[Any] = []

    class RecordedSystems(demo.DemoSystems):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            systems.append(self)

    monkeypatch.setattr(demo, "DemoSystems", RecordedSystems)
    settings = Settings(home=tmp_path / "var", temporal_port=free_port(), temporal_ui_port=free_port(),
                        api_port=free_port())
    old_umask = os.umask(0o077)
    try:
        summary = await demo.run_demo(settings, orders=6, seed=11, timeout_s=90, show_progress=False, channels=())
    finally:
        os.umask(old_umask)
    assert summary["ok"] is True, summary

    (sim,) = systems
    trades = [t for session in sim.shops for t in sim.taobao.orders(session)]
    phones = {t[k] for t in trades for k in ("receiver_mobile", "receiver_phone") if len(t.get(k) or "") >= 7}
    names = {t["receiver_name"] for t in trades if len(t.get("receiver_name") or "") >= 2}
    assert len(phones) >= 6
    data = b"".join(p.read_bytes() for p in settings.home.iterdir() if p.name.startswith("tongdao.db"))
    assert leaked(data, sorted(phones | names)) == []

    store = open_store(settings.db_url, None, settings.home, run_migrations=False)
    with store.session() as s:
        keys = list(s.scalars(select(OrderRow.key)))
    orders = [row.canonical for row in map(store.get_order, keys) if row is not None and row.canonical]
    assert orders
    clear = [order["receiver"]["mobile"] for order in orders]
    assert set(clear) <= phones | {""} and any(clear)  # the hub reads back what it sealed


def test_field_cipher_rejects_an_unknown_marker_version(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown personal-data marker version"):
        FieldCipher(store.box).open({"receiver_name": {ENC: "v9:abc"}})
