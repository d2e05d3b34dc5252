"""An order's real life on the embedded Temporal server, against the three simulators.

Every path of the lifecycle issue: unpaid then paid, unpaid then closed, a presale with deposit
and balance, cancelled after release (WMS order cancelled, ERP bill voided, no waybill), a line
refunded and an address changed after release (the WMS/ERP documents amended under ``R1``), a
split shipment (each package written back once, with its lines), a cancellation that comes too
late (an after-sales task), and the WMS cancelling on its own. Assertions read the simulators'
own state: nothing shipped that was not paid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from test_order_sync import ingest, record_histories, setup_systems, wait_for

from canonical import hub_code, order_key, revision_code
from hub.runtime import HubRuntime

SHOP = "demo-a-{run}"
CONNECTOR = "demo-taobao-a"


def voided(erp, number: str) -> bool:  # noqa: ANN001
    """The ERP no longer holds a live bill: deleted, or voided (作废)."""
    return erp.bill_status(number) is None or number in erp.cancelled_numbers()


def outcome_of(hub: HubRuntime, key: str) -> str:
    assert hub.store
    row = hub.store.get_order(key)
    return row.outcome if row else ""


async def wait_outcome(hub: HubRuntime, key: str, *outcomes: str, timeout: float = 60) -> None:
    await wait_for(lambda: outcome_of(hub, key) in outcomes, timeout=timeout)


async def pull(hub: HubRuntime, route, name: str) -> None:  # noqa: ANN001
    await ingest(hub, CONNECTOR, route, name)


async def test_every_lifecycle_path(hub: HubRuntime) -> None:
    run = "lc1"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms, erp = systems.taobao, systems.wms, systems.erp
    shop = SHOP.format(run=run)
    key: Callable[[int], str] = lambda tid: order_key("taobao", shop, str(tid))  # noqa: E731
    code: Callable[[int], str] = lambda tid: hub_code(key(tid))  # noqa: E731
    try:
        wms.split_packages = 1.0  # every order of 2+ lines ships in two packages
        unpaid_paid = tb.make_trade(shop, status="WAIT_BUYER_PAY", lines=1)
        unpaid_closed = tb.make_trade(shop, status="WAIT_BUYER_PAY", lines=1)
        presale = tb.make_trade(shop, presale=True, lines=1)
        cancel_after = tb.make_trade(shop, lines=1)
        line_refund = tb.make_trade(shop, lines=2)
        address = tb.make_trade(shop, lines=1)
        split = tb.make_trade(shop, lines=2)
        too_late = tb.make_trade(shop, lines=1)
        wms_cancels = tb.make_trade(shop, lines=1)
        held = (cancel_after, line_refund, address, too_late, wms_cancels)
        tb_tids = (unpaid_paid, unpaid_closed, presale, cancel_after, line_refund, address, split, too_late,
                   wms_cancels)
        for tid in held:
            wms.hold(code(tid))

        await pull(hub, route, "lc-1")
        for tid in (unpaid_paid, unpaid_closed, presale):
            await wait_outcome(hub, key(tid), "waiting_payment")
        for tid in (*held, split):
            await wait_outcome(hub, key(tid), "released", "shipped", "split_shipments")
        await wait_outcome(hub, key(split), "split_shipments")
        # nothing unpaid reached the WMS or the ERP
        for tid in (unpaid_paid, unpaid_closed, presale):
            assert wms.status_of(code(tid)) is None
            assert erp.bill_status(code(tid)) is None

        # the platform side of each story
        tb.pay(unpaid_paid)
        tb.close_unpaid(unpaid_closed)
        tb.pay_balance(presale)
        tb.refund_all(cancel_after)
        first_oid = tb.trade(line_refund)["orders"]["order"][0]["oid"]
        tb.refund_line(line_refund, first_oid)
        tb.change_address(address, receiver_address="文一西路 969 号 5 幢")
        # too late: the parcel leaves while the hub does not hear of it (no push), then the buyer cancels
        wms.set_callback(None)
        await wms.ship_now(code(too_late))
        wms.set_callback(hub.settings.callback_url("demo-wms"))
        tb.refund_all(too_late)
        await pull(hub, route, "lc-2")

        await wait_outcome(hub, key(unpaid_paid), "shipped")
        await wait_outcome(hub, key(presale), "shipped")
        await wait_outcome(hub, key(unpaid_closed), "closed_unpaid")
        await wait_outcome(hub, key(cancel_after), "cancelled_before_shipment")
        await wait_outcome(hub, key(too_late), "after_sales")
        # amended orders: R1 replaces the original in WMS and ERP, then ships
        for tid in (line_refund, address):
            await wait_for(lambda t=tid: wms.status_of(revision_code(code(t), 1)) is not None)
            assert code(tid) in wms.cancelled_codes()
            await wait_outcome(hub, key(tid), "shipped", "split_shipments")
        # the WMS cancels one on its own: the order's wait ends with a task
        await wms.wms_cancel(code(wms_cancels))
        await wait_outcome(hub, key(wms_cancels), "cancelled_by_wms")

        # -- what the outside systems hold ------------------------------------------------------
        assert tb.status(unpaid_closed) == "TRADE_CLOSED_BY_TAOBAO" and not tb.writebacks(unpaid_closed)
        assert wms.status_of(code(unpaid_closed)) is None and erp.bill_status(code(unpaid_closed)) is None
        assert code(cancel_after) in wms.cancelled_codes() and not wms.was_shipped(code(cancel_after))
        assert erp.bill_status(code(cancel_after)) is None or voided(erp, code(cancel_after))
        assert code(cancel_after) in erp.deleted_numbers() + erp.cancelled_numbers()  # it was there, then voided
        assert not tb.writebacks(cancel_after)
        refund_packages = tb.writebacks(line_refund)
        assert refund_packages and all(int(first_oid) not in oids for _, _, oids in refund_packages)
        assert not voided(erp, revision_code(code(line_refund), 1))
        assert voided(erp, code(line_refund))
        split_packages = tb.writebacks(split)
        assert len(split_packages) == 2 and len({p[0] for p in split_packages}) == 2
        assert sorted(o for _, _, oids in split_packages for o in oids) == sorted(
            int(o["oid"]) for o in tb.trade(split)["orders"]["order"])
        for tid in (unpaid_paid, presale, address):
            assert len(tb.writebacks(tid)) == 1
        assert not tb.writebacks(too_late)
        assert hub.store
        tasks = {(t.kind, t.order_key) for t in hub.store.list_tasks()}
        assert ("after_sales", key(too_late)) in tasks
        assert ("after_sales", key(wms_cancels)) in tasks
        # nothing shipped that was not paid: every shipped WMS order belongs to a paid trade
        for tid in (unpaid_closed,):
            assert not wms.was_shipped(code(tid))
        # auditors read these histories: no workflow task failed in any of them (no UnhandledCommand
        # from a signal arriving while the workflow completed, no nondeterminism)
        assert hub.client
        for tid in tb_tids:
            history = await hub.client.get_workflow_handle(f"order:{key(tid)}").fetch_history()
            failed = [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
            assert not failed, (tid, failed[0].workflow_task_failed_event_attributes.cause)
        await record_histories(hub, {
            "order_lifecycle_paid_later": f"order:{key(unpaid_paid)}",
            "order_lifecycle_closed_unpaid": f"order:{key(unpaid_closed)}",
            "order_lifecycle_cancelled": f"order:{key(cancel_after)}",
            "order_lifecycle_amended": f"order:{key(line_refund)}",
            "order_lifecycle_split": f"order:{key(split)}",
            "order_lifecycle_after_sales": f"order:{key(too_late)}",
        })
    finally:
        await wms.aclose()
        systems.stop()


async def test_erp_only_and_wms_only_routes(hub: HubRuntime) -> None:
    run = "lc2"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms, erp = systems.taobao, systems.wms, systems.erp
    shop = SHOP.format(run=run)
    try:
        erp_only = route.model_copy(update={"wms": None})
        await pull(hub, erp_only, "lc2-erp")
        await wait_for(lambda: erp.state()["sales_orders"] >= 1)
        assert wms.state()["outbound_orders"] == 0
        wms_only = route.model_copy(update={"erp": None})
        fresh = tb.make_trade(shop, lines=1)
        await asyncio.sleep(1.1)  # TOP times have whole seconds: let `modified` fall inside the window
        await pull(hub, wms_only, "lc2-wms")
        fresh_key = order_key("taobao", shop, str(fresh))
        try:
            await wait_for(lambda: outcome_of(hub, fresh_key) == "shipped")
        except AssertionError:
            assert hub.client and hub.store
            row = hub.store.get_order(fresh_key)
            state = None
            try:
                state = await hub.client.get_workflow_handle(f"order:{fresh_key}").query("state")
            except Exception as exc:  # noqa: BLE001
                state = repr(exc)
            raise AssertionError(f"{row and (row.stage, row.outcome, row.status)} {state}") from None
        assert erp.bill_status(hub_code(order_key("taobao", shop, str(fresh)))) is None
    finally:
        await wms.aclose()
        systems.stop()


async def test_a_wms_poll_out_of_retries_parks_the_order_it_does_not_fail(hub: HubRuntime) -> None:
    """A flow with ``retry: {wms: {max_attempts: 1}}`` and a WMS that answers 503 to every poll."""
    from datetime import timedelta

    from simulators.faults import FaultConfig
    from workflows.models import StepOptions

    run = "lc3"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    shop = SHOP.format(run=run)
    assert hub.store and hub.client
    try:
        route = route.model_copy(update={"shipment_poll": timedelta(seconds=1),
                                         "policies": {"wms": StepOptions(max_attempts=1)}})
        tid = tb.make_trade(shop, lines=1)
        k = order_key("taobao", shop, str(tid))
        wms.hold(hub_code(k))
        await asyncio.sleep(1.1)
        await pull(hub, route, "lc3-1")
        await wait_for(lambda: wms.status_of(hub_code(k)) is not None)
        wms.set_faults(FaultConfig(error_5xx_rate=1.0))
        await wait_for(lambda: any(q.order_key == k and q.stage == "wms_poll"
                                   for q in hub.store.list_quarantine("open")), timeout=90)
        handle = hub.client.get_workflow_handle(f"order:{k}")
        description = await handle.describe()
        assert description.status is not None and description.status.name == "RUNNING"
        assert await handle.query("stage") == "quarantined"
        # the WMS recovers; a replay (CLI/API) polls again, the parcel ships, the order completes
        wms.set_faults(FaultConfig())
        entry = next(q for q in hub.store.list_quarantine("open") if q.order_key == k)
        from workflows.order.client import request_replay

        await request_replay(hub.client, hub.store, entry.id, "test")
        wms.release(hub_code(k))
        await wms.ship_now(hub_code(k))
        await wait_outcome(hub, k, "shipped", timeout=90)
        assert hub.store.get_quarantine(entry.id).status == "resolved"
        assert len(tb.writebacks(tid)) == 1
        await record_histories(hub, {"order_lifecycle_poll_parked": f"order:{k}"})
    finally:
        wms.set_faults(FaultConfig())
        await wms.aclose()
        systems.stop()


async def test_a_terminated_order_workflow_is_picked_up_by_the_next_pull(hub: HubRuntime) -> None:
    run = "lc4"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    shop = SHOP.format(run=run)
    assert hub.store and hub.client
    try:
        tid = tb.make_trade(shop, status="WAIT_BUYER_PAY", lines=1)
        k = order_key("taobao", shop, str(tid))
        await asyncio.sleep(1.1)
        await pull(hub, route, "lc4-1")
        await wait_outcome(hub, k, "waiting_payment")
        await hub.client.get_workflow_handle(f"order:{k}").terminate("an operator's mistake")
        tb.pay(tid)
        await asyncio.sleep(1.1)
        counts = await ingest(hub, CONNECTOR, route, "lc4-2")
        assert counts.started >= 1  # the terminated order started again, not "already_done"
        await wait_outcome(hub, k, "shipped", timeout=90)
        assert len(tb.writebacks(tid)) == 1 and wms.was_shipped(hub_code(k))
    finally:
        await wms.aclose()
        systems.stop()


async def test_a_long_wait_continues_as_new_and_keeps_its_state(hub: HubRuntime) -> None:
    """Polling for a shipment that takes long: the run continues as new (history_limit), carrying
    what was sent; the order then ships once and the replay tests keep the first run's history."""
    from datetime import timedelta

    run = "lc5"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    shop = SHOP.format(run=run)
    assert hub.store and hub.client
    try:
        route = route.model_copy(update={"shipment_poll": timedelta(milliseconds=200), "history_limit": 40})
        tid = tb.make_trade(shop, lines=1)
        k = order_key("taobao", shop, str(tid))
        wms.hold(hub_code(k))
        await asyncio.sleep(1.1)
        await pull(hub, route, "lc5-1")
        handle = hub.client.get_workflow_handle(f"order:{k}")
        first_run = (await handle.describe()).run_id

        async def runs() -> int:
            return len([w async for w in hub.client.list_workflows(f'WorkflowId = "order:{k}"')])

        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            if await runs() >= 3:
                break
            await asyncio.sleep(0.5)
        assert await runs() >= 3
        wms.release(hub_code(k))
        await wms.ship_now(hub_code(k))
        await wait_outcome(hub, k, "shipped", timeout=60)
        assert len(tb.writebacks(tid)) == 1 and wms.state()["create_calls"] >= 1
        assert wms.status_of(hub_code(k)) is not None
        await record_histories(hub, {"order_lifecycle_continued": f"order:{k}"})
        if first_run:
            import os

            if os.environ.get("TONGDAO_RECORD_HISTORIES") == "1":
                from pathlib import Path

                from worker.codec import decode_history

                history = await decode_history(
                    await hub.client.get_workflow_handle(f"order:{k}", run_id=first_run).fetch_history(),
                    hub.client.data_converter.payload_codec)
                out = Path(__file__).parents[1] / "histories" / "order_lifecycle_continued_first_run.json"
                out.write_text(history.to_json())
    finally:
        await wms.aclose()
        systems.stop()


async def test_another_tracking_number_on_the_trade_raises_a_task(hub: HubRuntime) -> None:
    """Someone shipped the trade outside the hub (another waybill): the hub's write-back finds it and
    raises a tracking_conflict task instead of a log line."""
    from datetime import UTC, datetime

    from canonical import Shipment
    from connectors.registry import instantiate

    run = "lc6"
    systems, route = setup_systems(hub, orders=2, run_id=run, malformed_per_shop=0)
    tb, wms = systems.taobao, systems.wms
    shop = SHOP.format(run=run)
    assert hub.store
    try:
        tid = tb.make_trade(shop, lines=1)
        k = order_key("taobao", shop, str(tid))
        wms.hold(hub_code(k))
        await asyncio.sleep(1.1)
        await pull(hub, route, "lc6-1")
        await wait_for(lambda: wms.status_of(hub_code(k)) is not None)
        other = instantiate(hub.store, CONNECTOR)  # another system with the shop's credentials
        try:
            await other.push_shipment(str(tid), Shipment(order_key=k, carrier_code="ZTO", tracking_number="ZT0000001",
                                                          shipped_at=datetime.now(UTC)))
        finally:
            await other.aclose()
        wms.release(hub_code(k))
        await wms.ship_now(hub_code(k))
        await wait_for(lambda: any(t.kind == "tracking_conflict" and t.order_key == k
                                   for t in hub.store.list_tasks()), timeout=60)
        task = next(t for t in hub.store.list_tasks() if t.kind == "tracking_conflict" and t.order_key == k)
        assert task.details["on_platform"] == "ZT0000001"
        assert [w[0] for w in tb.writebacks(tid)] == ["ZT0000001"]  # ours was not forced over it
    finally:
        await wms.aclose()
        systems.stop()
