"""Order-to-cash on the embedded Temporal server: the flow's rule set decides before release
(routing, gifts, manual review, approval with reminder and escalation), people answer through the
``decide`` update, and every shipped order gets its ERP sales outbound, a voucher in the Beancount
ledger (``bean-check`` accepts it) and a notification through a signed DingTalk robot.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from conftest import api_client
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from test_order_lifecycle import outcome_of, pull, wait_outcome
from test_order_sync import record_histories, setup_systems, wait_for

from canonical import hub_code, order_key
from connectors.beancount import check_ledger
from connectors.registry import Registration, register
from hub.runtime import HubRuntime
from mappings.rules import parse_rule_set
from simulators.dingtalk import DingTalkSimulator
from simulators.server import BackgroundServer
from workflows.decisions.models import Decision, DecisionResult
from workflows.models import CashRoute

SHOP = "demo-a-{run}"
TOKEN, SECRET = "robot-token-0001", "SEC0123456789abcdef"


def rule_set(approve: str, review: list[str], elsewhere: str = "") -> dict:
    return {
        "name": "o2c-test",
        "sections": {
            "audit": [{"name": "flagged", "when": f"order.external_id in {review!r}",
                       "action": {"review": "flagged for a look"}}],
            "approval": [{"name": "big", "when": f"order.external_id == '{approve}'",
                          "action": {"approve": {"role": "director", "within": "4s", "escalate_to": "cfo",
                                                 "remind_after": "1s"}}}],
            "routing": [{"name": "second-warehouse", "when": f"order.external_id == '{elsewhere}'",
                         "action": {"warehouse": "wms-b"}},
                        {"name": "east", "when": "true", "action": {"carrier": "ZTO"}}],
            "promotions": [{"name": "sample", "when": "order.total >= 0",
                            "action": {"gift": {"sku": "TD-SKU-0009", "quantity": 1, "title": "sample"}}}],
        },
        "carriers": [{"code": "ZTO", "base": 5, "per_kg": 1}, {"code": "SF", "base": 12, "per_kg": 2}],
        "warehouses": {"wms-b": {}},
    }


async def test_rules_people_outbound_vouchers_and_notifications(hub: HubRuntime, tmp_path) -> None:  # noqa: ANN001
    run = "o2c"
    systems, route = setup_systems(hub, orders=0, run_id=run, malformed_per_shop=0)
    tb, wms, erp = systems.taobao, systems.wms, systems.erp
    robot = DingTalkSimulator(robots={TOKEN: SECRET})
    robot_server = BackgroundServer(robot.app).start()
    store, client = hub.store, hub.client
    assert store and client
    shop = SHOP.format(run=run)
    ledger = tmp_path / "ledger" / "tongdao.beancount"
    register(store, Registration(name="ledger", kind="beancount", settings={"path": str(ledger)}, secrets={}), "t")
    register(store, Registration(name="robot", kind="dingtalk", settings={"base_url": robot_server.base_url},
                                 secrets={"access_token": TOKEN, "secret": SECRET}), "t")
    try:
        plain, big, rejected, edited = (tb.make_trade(shop, lines=1) for _ in range(4))
        rules = parse_rule_set(rule_set(str(big), [str(rejected), str(edited)], elsewhere=str(plain)))
        # a second warehouse: a WMS connector of its own (here on the same simulated WMS)
        (wms_reg,) = [r for r in systems.registrations(run) if r.name == "demo-wms"]
        register(store, wms_reg.model_copy(update={"name": "wms-b"}), "t")
        store.save_rule_set(rules.name, rules.version(), rules.model_dump(mode="json"), "test")
        route.cash = CashRoute(ruleset=rules.name, notify=["robot"], outbound="demo-erp", vouchers=["ledger"])
        key = {t: order_key("taobao", shop, str(t)) for t in (plain, big, rejected, edited)}
        code = {t: hub_code(k) for t, k in key.items()}

        await pull(hub, route, f"{run}-1")
        await wait_outcome(hub, key[plain], "shipped")
        await wait_outcome(hub, key[big], "awaiting_approval")
        await wait_outcome(hub, key[rejected], "in_review")
        await wait_outcome(hub, key[edited], "in_review")
        for t in (big, rejected, edited):
            assert wms.status_of(code[t]) is None  # nothing released while a person has to look

        # the plain order: routed carrier and gift in the WMS, outbound in the ERP, voucher, notification
        wms_order = wms.state()["orders"][code[plain]]
        assert wms_order["logistics_code"] == "ZTO"
        assert "TD-SKU-0009" in {line["item_code"] for line in wms_order["lines"]}
        assert any(o["FSrcBillNo"] == code[plain] for o in erp.outbounds().values())
        await wait_for(lambda: bool(robot.received(text_contains=str(plain))), timeout=20)
        assert store.get_order(key[plain]).ruleset_version == f"{rules.name}@{rules.version()}"
        assert store.get_order(key[plain]).wms_connector == "wms-b"  # routed to the other warehouse
        assert store.get_order(key[big]).wms_connector in (None, "", "demo-wms")

        # the approval: a reminder after 1 s, escalated to the CFO after 4 s, then approved
        await wait_for(lambda: bool(robot.received(title_contains="reminder")), timeout=20)
        await wait_for(lambda: any(t.role == "cfo" for t in store.list_tasks(kind="approval")
                                   if t.order_key == key[big]), timeout=20)
        assert {t.role for t in store.list_tasks(kind="approval") if t.order_key == key[big]} == {"director", "cfo"}
        handle = client.get_workflow_handle(f"order:{key[big]}")
        answer = await handle.execute_update("decide", Decision(action="approve", actor="alice", role="cfo",
                                                                comment="known customer"),
                                             result_type=DecisionResult)
        assert answer.accepted
        await wait_outcome(hub, key[big], "shipped")
        closed = [t for t in store.list_tasks(status="done", kind="approval") if t.order_key == key[big]]
        assert closed and all(t.closed_by == "alice" for t in closed)
        assert closed[0].details["decision"]["comment"] == "known customer"
        assert closed[0].details["decision"]["role"] == "cfo"

        # reject: never reaches the WMS; edit: released with the carrier the person chose
        (review,) = [t for t in store.list_tasks(kind="manual_review") if t.order_key == key[rejected]]
        async with api_client(hub, "operator") as api:
            answer = await api.post(f"/tasks/{review.id}/decide", json={"action": "reject", "comment": "fraud"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] is True
            again = await api.post(f"/tasks/{review.id}/decide", json={"action": "approve"})
            assert again.status_code == 409  # closed: nothing waits for it any more
        async with api_client(hub, "auditor") as api:
            assert (await api.post(f"/tasks/{review.id}/decide", json={"action": "approve"})).status_code == 403
        await client.get_workflow_handle(f"order:{key[edited]}").execute_update(
            "decide", Decision(action="edit", actor="bob", carrier="SF", comment="fragile"))
        await wait_outcome(hub, key[rejected], "rejected")
        await wait_outcome(hub, key[edited], "shipped")
        assert wms.status_of(code[rejected]) is None
        assert wms.state()["orders"][code[edited]]["logistics_code"] == "SF"
        # a decision for an order that waits for none is refused, not recorded
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await client.get_workflow_handle(f"order:{key[rejected]}").execute_update(
                "decide", Decision(action="approve", actor="mallory"))

        # the books: one voucher per shipped order, balanced, bean-check accepts the file
        for t in (plain, big, edited):
            assert f"{code[t]}-SHIP" in ledger.read_text()
        assert f"{code[rejected]}-SHIP" not in ledger.read_text()
        assert check_ledger(ledger) == []
        assert outcome_of(hub, key[plain]) == "shipped"
        await record_histories(hub, {"order_lifecycle_o2c_approved": f"order:{key[big]}",
                                     "order_lifecycle_o2c_rejected": f"order:{key[rejected]}",
                                     "order_lifecycle_o2c_edited": f"order:{key[edited]}"})
    finally:
        await asyncio.sleep(0)
        robot_server.stop()
        await wms.aclose()
        systems.stop()


def test_durations_in_rule_sets_read_as_durations() -> None:
    rules = parse_rule_set(rule_set("1", ["2"]))
    approval = rules.sections.approval[0].action.approve
    assert approval is not None and approval.within == timedelta(seconds=4)


async def test_a_cancellation_after_the_voucher_books_its_reversal(hub: HubRuntime, tmp_path) -> None:  # noqa: ANN001
    """Split parcels: the first package ships (voucher posted), then the buyer cancels: an after-sales
    case, and the reversal voucher in the ledger; bean-check still accepts it."""
    run = "o2c-rev"
    systems, route = setup_systems(hub, orders=0, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    store = hub.store
    assert store
    shop = SHOP.format(run=run)
    ledger = tmp_path / "ledger" / "rev.beancount"
    register(store, Registration(name="ledger", kind="beancount", settings={"path": str(ledger)}, secrets={}), "t")
    route.cash = CashRoute(vouchers=["ledger"])
    try:
        wms.split_packages = 1.0
        tid = tb.make_trade(shop, lines=2)
        key = order_key("taobao", shop, str(tid))
        code = hub_code(key)
        wms.hold(code)
        await pull(hub, route, f"{run}-1")
        await wait_outcome(hub, key, "released")
        assert await wms.ship(code)  # the first of two packages leaves
        await wait_for(lambda: ledger.exists() and f'"{code}-SHIP"' in ledger.read_text(), timeout=30)
        tb.refund_all(tid)
        await pull(hub, route, f"{run}-2")
        await wait_outcome(hub, key, "after_sales")
        await wait_for(lambda: f'"{code}-SHIP-REV"' in ledger.read_text(), timeout=30)
        assert ledger.read_text().count(f'voucher: "{code}-SHIP"') == 1
        assert check_ledger(ledger) == []
    finally:
        await wms.aclose()
        systems.stop()
