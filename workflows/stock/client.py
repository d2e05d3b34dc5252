"""Starting the hub's ``StockPump`` and applying the WMS's stock movements to the pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import date, timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from canonical import base_code
from workflows.schedules import ensure_interval_schedule
from workflows.stock.models import PumpSetup

log = structlog.get_logger("tongdao.stock")

_RUNNING: set[tuple[int, str]] = set()


def pump_workflow_id(task_queue: str) -> str:
    return f"stock-pump:{task_queue}"


async def ensure_pump(client: Client, task_queue: str, refresh: bool = False) -> None:
    """Start the hub's StockPump if it is not running; ``refresh``: make it re-read the channels
    (a flow with a stock block was saved). Cheap to call often: remembered per process."""
    from workflows.stock.workflow import StockPumpWorkflow

    key = (id(client), task_queue)
    if key in _RUNNING and not refresh:
        return
    options: dict[str, Any] = {"start_signal": "refresh"} if refresh else {}
    try:
        await client.start_workflow(StockPumpWorkflow.run, PumpSetup(), id=pump_workflow_id(task_queue),
                                    task_queue=task_queue, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                                    **options)
    except WorkflowAlreadyStartedError:
        pass
    _RUNNING.add(key)


# Qimen order types (taobao.qimen.stockchange.report, orderType)
RECEIPTS = frozenset({"CGRK", "DBRK", "SCRK", "LYRK", "B2BRK", "CCRK", "CNJG"})
RETURNS = frozenset({"XTRK", "HHRK", "THRK"})
COUNTS = frozenset({"QTRK", "QTCK", "BFCK"})
OUTBOUNDS = frozenset({"JYCK", "HHCK", "PTCK", "DBCK", "B2BCK"})


def cause_of(order_type: str, quantity: int) -> str:
    """The ledger cause of a WMS movement, by the Qimen order type (入库/出库 codes)."""
    kind = order_type.upper()
    if kind in RECEIPTS:
        return "receipt"
    if kind in RETURNS:
        return "return"
    if kind in COUNTS:
        return "count_correction"
    if kind in OUTBOUNDS:
        return "shipment"
    return "wms_report"


async def apply_stock_change(client: Client, store: Any, task_queue: str, connector: str,
                             event: dict[str, Any]) -> str:
    """Apply one ``stock_change`` push of a WMS to the pool: applied, duplicate or already_deducted.

    The warehouse is the WMS connector the push arrived at. A sale outbound (JYCK) of an order the
    hub reserved was deducted already when the WMS confirmed the package: it is noted in the ledger,
    not counted a second time. Everything else moves on-hand, once per ``change_id``.
    """
    sku = str(event.get("sku") or "")
    quantity = int(event.get("quantity") or 0)
    if not sku or not quantity or str(event.get("inventory_type") or "ZP").upper() != "ZP":
        return "ignored"  # only sellable stock (正品) is in the pool; damaged (CC) and the like are not
    order_type = str(event.get("order_type") or "")
    cause = cause_of(order_type, quantity)
    order_code = str(event.get("order_code") or "")
    dedupe = f"{connector}:{event.get('change_id') or ''}"
    expiry = _date(str(event.get("expire_date") or ""))
    ref = order_code or str(event.get("change_id") or "")
    if cause == "shipment" and order_code:
        row = await asyncio.to_thread(store.order_by_hub_code, base_code(order_code))
        if row is not None and await asyncio.to_thread(store.stock_reservations, sku, row.key):
            noted = await asyncio.to_thread(
                store.stock_note, sku, connector, "wms_report", ref=row.key, dedupe_key=dedupe,
                note=f"{order_type} {order_code} {quantity:+d} reported by the WMS; deducted at the shipment")
            return "already_deducted" if noted else "duplicate"
    applied = await asyncio.to_thread(
        store.stock_move, sku, connector, quantity, cause, ref=ref, dedupe_key=dedupe,
        batch_code=str(event.get("batch_code") or ""), expire_date=expiry,
        note=f"{order_type} reported by the WMS")
    if not applied:
        return "duplicate"
    await ensure_pump(client, task_queue)
    log.info("stock.wms_change", connector=connector, sku=sku, quantity=quantity, cause=cause)
    return "applied"


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def reconcile_interval() -> timedelta | None:
    """``TONGDAO_STOCK_RECONCILE_EVERY`` seconds (default 900); 0 turns the schedule off."""
    raw = os.environ.get("TONGDAO_STOCK_RECONCILE_EVERY", "900").strip()
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"TONGDAO_STOCK_RECONCILE_EVERY: {raw!r} is not a number of seconds") from None
    return timedelta(seconds=seconds) if seconds > 0 else None


async def ensure_reconciler(client: Client, task_queue: str, every: timedelta | None) -> str | None:
    """Create (or replace, when its interval changed) the stock reconciliation schedule; delete it when off."""
    from workflows.stock.workflow import StockReconcileWorkflow

    sid = f"stock-reconcile:{task_queue}"
    return await ensure_interval_schedule(client, sid, every, "stock reconciliation", ScheduleActionStartWorkflow(
        StockReconcileWorkflow.run, id=sid, task_queue=task_queue, execution_timeout=timedelta(minutes=30)))


async def start_stock(client: Client, store: Any, task_queue: str) -> str | None:
    """At hub start: the reconciliation schedule when a flow has a stock block (never fatal)."""
    from workflows.stock.propagate import stock_configs

    configs = await asyncio.to_thread(stock_configs, store)
    await _retire_stock_sync(client, task_queue)
    try:
        if configs:
            await ensure_pump(client, task_queue, refresh=True)
        return await ensure_reconciler(client, task_queue, reconcile_interval() if configs else None)
    except (RPCError, ValueError) as exc:
        log.error("stock.reconciler_not_scheduled", error=str(exc)[:300])
        return None


async def _retire_stock_sync(client: Client, task_queue: str) -> None:
    """Per-SKU ``StockSync`` workflows of a build before the outbox have nothing to do any more (the
    pump pushes every SKU the outbox marks): end those still running on this hub's task queue."""
    query = f'WorkflowType = "StockSync" AND ExecutionStatus = "Running" AND TaskQueue = "{task_queue}"'
    try:
        async for wf in client.list_workflows(query):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate(
                    "retired: the stock pump pushes changes from the store's outbox")
    except RPCError as exc:
        log.warning("stock.retire_failed", error=str(exc)[:200])
