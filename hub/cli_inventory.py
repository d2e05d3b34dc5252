"""``tongdao inventory``: the central stock pool as operators and auditors look at it.

Reads the local store (no token needed on the hub's own machine); ``reconcile`` also calls the WMS
and the channels with the registered connectors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.table import Table

inventory_app = typer.Typer(help="The central stock pool: what is on hand, held, and shown on each channel.",
                            no_args_is_help=True)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def inventory_view(store: Any, sku: str) -> dict[str, Any]:
    """One SKU: per warehouse, totals, per channel (last pushed and when), batches, open reservations."""
    levels = store.stock_levels(sku)
    channels = store.stock_channels(sku)
    return {
        "sku": sku,
        "on_hand": sum(lv.on_hand for lv in levels),
        "reserved": sum(lv.reserved for lv in levels),
        "blocked": sum(lv.blocked for lv in levels),
        "available": sum(lv.available for lv in levels),
        "warehouses": [{"warehouse": lv.warehouse, "on_hand": lv.on_hand, "reserved": lv.reserved,
                        "blocked": lv.blocked, "available": lv.available} for lv in levels],
        "channels": [{"channel": c.channel, "listed": bool(c.listed), "quantity": c.pushed,
                      "pushed_at": _iso(c.pushed_at), "computed": c.computed, "shown": c.shown,
                      "checked_at": _iso(c.checked_at), "pushes": c.pushes, "error": c.error or None}
                     for c in channels],
        "batches": [{"warehouse": b.warehouse, "batch_code": b.batch_code,
                     "expire_date": b.expire_date.isoformat() if b.expire_date else None,
                     "quantity": b.quantity, "allocated": b.allocated} for b in store.stock_batches(sku)],
        "open_reservations": len(store.stock_reservations(sku=sku, state="open")),
    }


@inventory_app.command("show")
def inventory_show(sku: str = typer.Argument(..., metavar="SKU"),
                   as_json: bool = typer.Option(False, "--json", help="one JSON object")) -> None:
    """On-hand per warehouse, reserved, available, and per channel the quantity last pushed and when.

    Example: `tongdao inventory show TD-SKU-0001 --json`
    """
    from hub.cli import _fail, _store, console, out

    store = _store()
    data = inventory_view(store, sku)
    if not data["warehouses"] and not data["channels"]:
        raise _fail(f"the stock pool knows no SKU {sku!r} (tongdao inventory reconcile --sku {sku} reads the WMS)")
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("warehouse", "on hand", "reserved", "blocked", "available", title=f"{sku}")
    for w in data["warehouses"]:
        table.add_row(w["warehouse"], str(w["on_hand"]), str(w["reserved"]), str(w["blocked"]), str(w["available"]))
    table.add_row("[b]total[/b]", str(data["on_hand"]), str(data["reserved"]), str(data["blocked"]),
                  f"[b]{data['available']}[/b]")
    out.print(table)
    channels = Table("channel", "shown (last pushed)", "pushed at", "pushes", "read back", "error")
    for c in data["channels"]:
        channels.add_row(c["channel"], "not listed" if not c["listed"] else str(c["quantity"]),
                         (c["pushed_at"] or "-")[:19], str(c["pushes"]), "-" if c["shown"] is None else str(c["shown"]),
                         (c["error"] or "")[:40])
    out.print(channels)
    if data["batches"]:
        batches = Table("warehouse", "batch", "expires", "units", "allocated")
        for b in data["batches"]:
            batches.add_row(b["warehouse"], b["batch_code"], b["expire_date"] or "-", str(b["quantity"]),
                            str(b["allocated"]))
        out.print(batches)
    console.print(f"{data['open_reservations']} open reservations")


@inventory_app.command("explain")
def inventory_explain(sku: str = typer.Argument(..., metavar="SKU"),
                      as_json: bool = typer.Option(False, "--json")) -> None:
    """How each channel's quantity of SKU is computed from the pool, step by step, under its policy.

    Example: `tongdao inventory explain TD-SKU-0001`
    """
    from hub.cli import _fail, _store, out
    from workflows.stock.propagate import explain_sku

    store = _store()
    explanations = explain_sku(store, sku)
    if not explanations:
        raise _fail("no flow has a stock block with channels (flows: stock: {warehouse: ..., channels: [...]})")
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in explanations], ensure_ascii=False))
        return
    for e in explanations:
        row = store.stock_channel(e.channel, sku)
        pushed = "never pushed" if row is None or row.pushed is None else f"last pushed {row.pushed}"
        out.print(f"[b]{e.channel}[/b]: {e.quantity} ({pushed})")
        out.print(e.text(), highlight=False)


@inventory_app.command("ledger")
def inventory_ledger(sku: str = typer.Argument(..., metavar="SKU"),
                     limit: int = typer.Option(50, "--limit", min=1, max=10_000),
                     as_json: bool = typer.Option(False, "--json")) -> None:
    """Every movement of SKU, oldest first: cause (order, cancellation, shipment, receipt, return,
    count_correction, reconcile...), the order or document, and the figures after it.

    Example: `tongdao inventory ledger TD-SKU-0001 --limit 20`
    """
    from hub.cli import _store, out

    rows = _store().stock_ledger(sku, limit=limit)
    data = [{"id": r.id, "at": r.at.isoformat(), "warehouse": r.warehouse, "cause": r.cause, "ref": r.ref,
             "on_hand_delta": r.on_hand_delta, "reserved_delta": r.reserved_delta, "on_hand_after": r.on_hand_after,
             "reserved_after": r.reserved_after, "batch_code": r.batch_code, "note": r.note} for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("at", "warehouse", "cause", "ref", "on hand", "reserved", "after (on hand/reserved)")
    for d in data:
        table.add_row(d["at"][:19], d["warehouse"], d["cause"], d["ref"][-40:], f"{d['on_hand_delta']:+d}",
                      f"{d['reserved_delta']:+d}", f"{d['on_hand_after']}/{d['reserved_after']}")
    out.print(table)


@inventory_app.command("reconcile")
def inventory_reconcile(
    skus: list[str] = typer.Option([], "--sku", help="only these SKUs (repeat); default every SKU the pool knows"),
    fix: bool = typer.Option(True, "--fix/--report-only", help="correct the drift found (default) or only report"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compare the WMS's count and each channel's displayed stock with the pool; correct and report drift.

    Example: `tongdao inventory reconcile --sku TD-SKU-0001 --json`
    """
    from connectors.registry import ConnectorPool
    from hub.cli import _store, console, out
    from store.ratebudget import StoreRateBudget
    from workflows.stock.reconcile import reconcile

    store = _store()

    async def run() -> Any:
        pool = ConnectorPool(store, StoreRateBudget(store))
        try:
            return await reconcile(store, pool, skus=skus or None, fix=fix)
        finally:
            await pool.aclose()

    report = asyncio.run(run())
    if as_json:
        print(report.model_dump_json())
        return
    table = Table("sku", "where", "kind", "hub", "outside", "corrected")
    for d in report.drift:
        table.add_row(d.sku, d.where, d.kind, str(d.hub), str(d.outside), "yes" if d.corrected else "no")
    out.print(table)
    console.print(f"{report.skus} SKUs, {len(report.warehouses)} warehouses, {len(report.channels)} channels: "
                  f"{len(report.drift)} drifted, {report.pushed} pushes, {len(report.errors)} errors")
    for error in report.errors:
        console.print(f"[red]error[/red] {error}")
