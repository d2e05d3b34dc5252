"""The stock pool in the store: reservations all-or-nothing and idempotent, release, shipment as a
deduction once per package, WMS movements deduplicated, FIFO batches, expired units blocked."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from store import open_store

WH = "wms-sh"


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    s = open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)
    s.stock_move("A", WH, 10, "receipt", ref="r1", dedupe_key="r1")
    s.stock_move("B", WH, 2, "receipt", ref="r2", dedupe_key="r2")
    return s


def figures(store, sku: str) -> tuple[int, int, int]:  # noqa: ANN001
    (level,) = store.stock_levels(sku)
    return level.on_hand, level.reserved, level.available


def test_reserve_is_all_or_nothing_and_idempotent(store) -> None:  # noqa: ANN001
    ok = store.stock_reserve("o1", {"A": 3, "B": 1}, WH, channel="taobao", shop="s", external_id="1")
    assert ok.ok and sorted(ok.changed) == ["A", "B"]
    again = store.stock_reserve("o1", {"A": 3, "B": 1}, WH)
    assert again.ok and again.changed == []  # a retry holds nothing more
    assert figures(store, "A") == (10, 3, 7) and figures(store, "B") == (2, 1, 1)
    short = store.stock_reserve("o2", {"A": 1, "B": 2}, WH)
    assert not short.ok and [(s.sku, s.wanted, s.available) for s in short.short] == [("B", 2, 1)]
    assert figures(store, "A") == (10, 3, 7)  # A was not held for o2 either
    assert store.stock_reservations(order_key="o2") == []


def test_a_changed_order_moves_only_the_difference(store) -> None:  # noqa: ANN001
    store.stock_reserve("o1", {"A": 3, "B": 1}, WH)
    changed = store.stock_reserve("o1", {"A": 5}, WH, cause="amendment")  # B refunded, A +2
    assert changed.ok and sorted(changed.changed) == ["A", "B"]
    assert figures(store, "A") == (10, 5, 5) and figures(store, "B") == (2, 0, 2)
    causes = [(e.sku, e.cause, e.reserved_delta) for e in store.stock_ledger(ref="o1")]
    assert causes[-2:] == [("A", "amendment", 2), ("B", "amendment", -1)]


def test_release_frees_and_is_idempotent(store) -> None:  # noqa: ANN001
    store.stock_reserve("o1", {"A": 4}, WH)
    assert store.stock_release("o1") == ["A"]
    assert store.stock_release("o1") == []
    assert figures(store, "A") == (10, 0, 10)
    assert store.stock_reservations(order_key="o1")[0].state == "released"


def test_shipment_turns_the_reservation_into_a_deduction_once(store) -> None:  # noqa: ANN001
    store.stock_reserve("o1", {"A": 4}, WH)
    assert store.stock_ship("o1", "P1", {"A": 1}, WH) == ["A"]
    assert store.stock_ship("o1", "P1", {"A": 1}, WH) == []  # the same package confirmed again
    assert figures(store, "A") == (9, 3, 6)
    store.stock_ship("o1", "P2", {"A": 3}, WH)
    assert figures(store, "A") == (6, 0, 6)
    (res,) = store.stock_reservations(order_key="o1")
    assert (res.state, res.quantity, res.shipped) == ("shipped", 0, 4)
    # a replayed reserve after shipping holds nothing again
    assert store.stock_reserve("o1", {"A": 4}, WH).changed == []
    assert figures(store, "A") == (6, 0, 6)


def test_wms_movements_are_deduplicated(store) -> None:  # noqa: ANN001
    assert store.stock_move("A", WH, 5, "receipt", ref="PO-1", dedupe_key="chg-1")
    assert not store.stock_move("A", WH, 5, "receipt", ref="PO-1", dedupe_key="chg-1")
    assert figures(store, "A")[0] == 15
    assert store.stock_set_on_hand("A", WH, 12, note="count") == -3
    assert store.stock_set_on_hand("A", WH, 12) == 0
    entries = store.stock_ledger("A")
    assert [e.cause for e in entries] == ["receipt", "receipt", "reconcile"]
    assert entries[-1].on_hand_after == 12
    with pytest.raises(ValueError, match="unknown stock cause"):
        store.stock_move("A", WH, 1, "magic")


def test_batches_are_allocated_earliest_expiry_first_and_expired_units_blocked(store) -> None:  # noqa: ANN001
    store.stock_set_on_hand("M", WH, 10)
    store.stock_set_batches("M", WH, [("LATE", date(2099, 6, 1), 6), ("EARLY", date(2099, 1, 1), 4)],
                            today=date(2026, 12, 3))
    store.stock_reserve("o1", {"M": 5}, WH)
    (res,) = store.stock_reservations(order_key="o1")
    assert res.batches == {"EARLY": 4, "LATE": 1}
    store.stock_ship("o1", "P1", {"M": 5}, WH)
    left = {b.batch_code: (b.quantity, b.allocated) for b in store.stock_batches("M")}
    assert left == {"EARLY": (0, 0), "LATE": (5, 0)}
    # the later batch expires: its free units cannot be sold
    assert store.stock_block_expired(today=date(2099, 7, 1)) == ["M"]
    assert figures(store, "M") == (5, 0, 0)
    assert not store.stock_reserve("o2", {"M": 1}, WH).ok


def test_an_unknown_sku_cannot_be_reserved(store) -> None:  # noqa: ANN001
    result = store.stock_reserve("o1", {"NOPE": 1}, WH)
    assert not result.ok and result.short[0].available == 0
