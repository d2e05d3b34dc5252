"""``tongdao demo``: the embedded stack against two Taobao shops, a Qimen WMS and Kingdee ERP.

The simulators run in this process on free ports; connectors are registered pointing at them; the
flow ``examples/flows/demo.yaml`` creates a Temporal Schedule per shop that runs the real ingest
workflow, and is triggered at once; the WMS pushes its shipment
confirmations to the hub's API. The summary is computed from the simulators' own state (what the
external systems actually hold), not from the hub's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.service import RPCError

from connectors.registry import Registration, register
from flows.model import Flow, load_flow
from flows.runtime import FlowOps
from hub.demo_cash import DemoCash, print_cash
from hub.demo_channels import BUILDERS, Marketplace
from hub.demo_life import LifeStories
from hub.demo_stock import DemoStock, print_stock
from hub.logging import configure
from hub.runtime import HubRuntime
from hub.settings import Settings
from simulators.catalog import CATALOG
from simulators.faults import FaultConfig
from simulators.kingdee import KingdeeSimulator
from simulators.qimen import QimenWmsSimulator
from simulators.server import BackgroundServer, free_port
from simulators.taobao import TaobaoSimulator
from worker.embedded import port_open

log = structlog.get_logger("tongdao.demo")

APP_KEY, APP_SECRET = "12345678", "demo-top-secret-0001"
WMS_APP_KEY, WMS_SECRET, WMS_CUSTOMER = "23456789", "demo-qimen-secret-0002", "TONGDAO-DEMO"
WAREHOUSE, OWNER = "WH-HZ01", "TONGDAO"
ERP_ACCT, ERP_USER, ERP_PASSWORD = "DEMO-ACCT", "demo", "demo-kingdee-pass-0003"
CUSTOMER = "CUST-TAOBAO"
DEMO_FLOW = Path(__file__).resolve().parents[1] / "examples" / "flows" / "demo.yaml"
DEMO_FLOW_NAME = "demo"


def demo_flow(markets: list[Marketplace] | None = None) -> Flow:
    """The demo's routing is a flow file like any other (``examples/flows/demo.yaml``), whose
    sources are the marketplaces this run simulates (a demo with fewer channels drops the others)."""
    flow = load_flow(DEMO_FLOW)
    if markets is None:
        return flow
    wanted = {"demo-taobao-a", "demo-taobao-b", *(m.connector for m in markets)}
    update: dict[str, Any] = {"sources": [src for src in flow.sources if src.connector in wanted]}
    if flow.stock is not None:
        update["stock"] = flow.stock.model_copy(update={"channels": [c for c in flow.stock.channels if c in wanted]})
    return flow.model_copy(update=update)


async def _park_demo_flow(rt: HubRuntime, name: str, run_id: str = "") -> None:
    """Pause the demo flow and stop its in-flight runs: the simulators go away with us.

    The flow stays registered (paused), so `tongdao flows status` shows what ran. Orders of this
    run still waiting (for a payment that will never come) are terminated with a reason; their
    histories stay readable.
    """
    assert rt.client and rt.store
    with contextlib.suppress(Exception):
        await FlowOps(rt.client, rt.store, rt.settings.task_queue, "demo").pause(name)
    queries = [f'FlowName = "{name}" AND WorkflowType = "OrderIngest" AND ExecutionStatus = "Running"']
    if run_id:
        queries.append(f'FlowName = "{name}" AND WorkflowType = "OrderLifecycle" AND ExecutionStatus = "Running"')
    for query in queries:
        with contextlib.suppress(RPCError):
            async for wf in rt.client.list_workflows(query):
                if "OrderLifecycle" in query and f"-{run_id}:" not in wf.id:
                    continue
                with contextlib.suppress(RPCError):
                    await rt.client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("demo finished")


class DemoSystems:
    """The simulated outside world: one TOP gateway with two shops, a WMS, an ERP."""

    def __init__(self, orders: int, seed: int, run_id: str, callback_url: str,
                 malformed_per_shop: int | None = None, ship_delay_s: float = 0.3,
                 channels: tuple[str, ...] = ()) -> None:
        # the plain orders are shared between Taobao's two shops and each other marketplace
        share = orders // (len(channels) + 2) if channels else 0
        per_shop = max(1, (orders - share * len(channels)) // 2)
        if malformed_per_shop is None:  # "a few": about 2%
            malformed_per_shop = max(1, round(per_shop * 0.02))
        self.malformed_per_shop = malformed_per_shop
        self.shops = {f"session-a-{run_id}": f"demo-a-{run_id}", f"session-b-{run_id}": f"demo-b-{run_id}"}
        # the newest order is older than the ingest lag (5 s), so the first run sees every order
        # instead of the next tick
        past = datetime.now(UTC) - timedelta(seconds=10)
        self.taobao = TaobaoSimulator(apps={APP_KEY: APP_SECRET}, shops=self.shops, orders_per_shop=per_shop,
                                      malformed_per_shop=self.malformed_per_shop, seed=seed, now=past)
        self.markets: list[Marketplace] = [BUILDERS[c](seed, run_id, max(1, share), past) for c in channels]
        self.wms = QimenWmsSimulator(WMS_APP_KEY, WMS_SECRET, WMS_CUSTOMER, warehouses=[WAREHOUSE],
                                     items=CATALOG, seed=seed, ship_delay_s=ship_delay_s, callback_url=callback_url,
                                     owner_code=OWNER, stock_reports=True)
        self.erp = KingdeeSimulator(acct_id=ERP_ACCT, username=ERP_USER, password=ERP_PASSWORD,
                                    materials=[c["sku"] for c in CATALOG], customers=[CUSTOMER], seed=seed)
        self.servers = [BackgroundServer(self.taobao.app), BackgroundServer(self.wms.app),
                        BackgroundServer(self.erp.app), *(m.server for m in self.markets)]
        self.stories: LifeStories | None = None

    def add_life_stories(self, per_story: int = 1) -> LifeStories:
        """Orders with a life beyond paid-and-shipped (see :mod:`hub.demo_life`)."""
        self.stories = LifeStories(self, per_story=per_story)
        self.stories.create()
        return self.stories

    def inject_chaos(self, seed: int) -> None:
        """Faults on every simulated system: 5xx, throttling with Retry-After, latency, duplicates
        (a repeated trade in a page, a confirmation pushed twice, an ERP save whose reply is lost)."""
        chaos = FaultConfig(latency_ms=5, error_5xx_rate=0.05, throttle_rate=0.03, retry_after_s=1,
                            duplicate_rate=0.05, seed=seed)
        self.taobao.faults.reconfigure(chaos)
        # the marketplaces get 5xx, latency and duplicates; throttling is left to Taobao's TOP: a
        # JD "App Call Limited" means a 60 s pause, longer than a demo
        calmer = chaos.model_copy(update={"throttle_rate": 0.0})
        for market in self.markets:
            market.sim.faults.reconfigure(calmer)
        self.wms.set_faults(chaos)
        self.erp.set_faults(chaos)

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def registrations(self, run_id: str) -> list[Registration]:
        tb, wms, erp = (s.base_url for s in self.servers[:3])
        regs = [
            Registration(name=f"demo-taobao-{label}", kind="taobao",
                         settings={"base_url": f"{tb}/router/rest", "app_key": APP_KEY,
                                   "sign_method": "hmac-sha256", "shop": nick},
                         secrets={"app_secret": APP_SECRET, "session": session})
            for label, (session, nick) in zip("ab", self.shops.items(), strict=True)
        ]
        regs.append(Registration(name="demo-wms", kind="qimen",
                                 settings={"base_url": f"{wms}/router/qimen/service", "app_key": WMS_APP_KEY,
                                           "customerId": WMS_CUSTOMER, "warehouseCode": WAREHOUSE,
                                           "ownerCode": OWNER},
                                 secrets={"app_secret": WMS_SECRET}))
        regs += [m.register() for m in self.markets]
        regs.append(Registration(name="demo-erp", kind="kingdee",
                                 settings={"base_url": f"{erp}/k3cloud/", "acctID": ERP_ACCT, "username": ERP_USER},
                                 secrets={"password": ERP_PASSWORD}))
        return regs

    def faults_injected(self) -> dict[str, dict[str, int]]:
        return {"taobao": dict(self.taobao.faults.injected), "wms": dict(self.wms.state()["faults_injected"]),
                "erp": dict(self.erp.state()["faults_injected"])}

    def figures(self) -> dict[str, int]:
        """The plain paid orders' figures, from the simulators (the life stories are counted apart)."""
        wms, erp = self.wms.state(), self.erp.state()
        channels = self.per_channel().values()
        stories = self.stories
        story_wms = stories.story_codes_in(wms["orders"]) if stories else 0
        story_erp = stories.story_codes_in(erp["bills"]) if stories else 0
        return {
            "orders_created": sum(c["orders_created"] for c in channels),
            "orders_malformed": sum(c["orders_malformed"] for c in channels),
            "wms_outbound_orders": int(wms["outbound_orders"]) - story_wms,
            "wms_duplicates": int(wms["duplicates"]),
            "erp_sales_orders": int(erp["sales_orders"]) - story_erp,
            "erp_duplicates": int(erp["duplicates"]),
            "tracking_written_back": sum(c["tracking_written_back"] for c in channels),
            "tracking_repeat_attempts": int(self.taobao.state().get("shipment_repeat_attempts", 0)),
        }

    def per_channel(self) -> dict[str, dict[str, int]]:
        """What each marketplace holds of the plain orders, from its own simulator."""
        tb = self.taobao.state()
        stories = self.stories.all_tids() if self.stories else []
        story_shipped = sum(1 for t in stories
                            if self.taobao.status(t) == "WAIT_BUYER_CONFIRM_GOODS" and self.taobao.writebacks(t))
        out = {"taobao": {"orders_created": int(tb["orders_created"]) - len(stories),
                          "orders_malformed": int(tb["orders_malformed"]),
                          "tracking_written_back": int(tb["shipped_count"]) - story_shipped}}
        for m in self.markets:
            out[m.channel] = m.figures()
        return out


async def run_demo(settings: Settings, *, orders: int = 200, seed: int | None = None, timeout_s: float = 600,
                   show_progress: bool = True, chaos: bool = False, life: bool = True,
                   channels: tuple[str, ...] = tuple(BUILDERS)) -> dict[str, Any]:
    configure(settings.log_format, "WARNING")
    console = Console(stderr=True)
    run_id = f"{int(time.time()) % 1_000_000:06d}"
    seed = seed if seed is not None else int(run_id)
    if port_open(settings.api_host, settings.api_port):
        settings = settings.model_copy(update={"api_port": free_port()})  # `tongdao up` holds the default
    started = time.monotonic()
    systems = DemoSystems(orders, seed, run_id, settings.callback_url("demo-wms"), channels=channels)
    cash = DemoCash(run_id, settings.home)
    stories = systems.add_life_stories() if life else None
    stories_at = time.monotonic()
    if chaos:
        systems.inject_chaos(seed)
    rt = HubRuntime(settings)
    flow_name = ""
    try:
        systems.start()
        cash.start()
        console.print(f"[bold]Tongdao demo[/bold] run {run_id}: starting Temporal, worker, API and simulators...")
        await rt.start()
        assert rt.store and rt.client
        for reg in [*systems.registrations(run_id), *cash.registrations()]:
            register(rt.store, reg, "demo")
            # the demo's connectors point at fresh simulators: start their cursors a day back
            rt.store.set_cursor(reg.name, "orders", datetime.now(UTC) - timedelta(days=1), force=True)
        rt.store.drop_flow_cursors(DEMO_FLOW_NAME)  # the flow's own cursors start from those
        rt.store.set_xref("sku", {str(item["sku_id"]): item["sku"] for item in CATALOG})
        flow = demo_flow(systems.markets)
        rt.store.set_flow_paused(flow.name, False, "demo")  # a previous demo left it paused
        ops = FlowOps(rt.client, rt.store, settings.task_queue, "demo")
        rules = cash.save_rules(rt)
        await ops.add(flow)
        cash.start_approver(rt)  # a director answers the approvals through the API
        console.print(f"rule set {rules}: big orders wait for a director, carriers by region, a gift over 199")
        stock = DemoStock(systems, run_id)
        loaded = await stock.load(rt)  # the pool reads the WMS's count; every channel is shown its part
        console.print(f"stock pool: {loaded['skus']} SKUs read from the WMS, {loaded['pushed']} channel stock writes")
        # the stories' trades are new: the first pull must see them past the ingest lag (5 s)
        await asyncio.sleep(max(0.0, 6.0 - (time.monotonic() - stories_at)))
        await ops.run_now(flow.name)
        flow_name = flow.name
        deadline = time.monotonic() + timeout_s
        good = await _wait_until_done(systems, rt, run_id, timeout_s, show_progress, console)
        if stories is not None:
            malformed = systems.figures()["orders_malformed"]

            def hub_caught_up() -> bool:
                """The hub's side of the stories: an after-sales task per late cancellation, and no
                quarantine left beside the malformed orders (a refused write-back clears once the
                refund is pulled)."""
                assert rt.store is not None
                tasks = [t for t in rt.store.list_tasks() if f"-{run_id}:" in t.order_key and t.kind == "after_sales"]
                parked = [q for q in rt.store.list_quarantine("open") if f"-{run_id}:" in q.order_key]
                return len(tasks) >= stories.figures()["after_sales"] and len(parked) <= malformed

            await _live_the_stories(stories, ops, flow.name, deadline, console, hub_caught_up)
        await asyncio.sleep(1.0)  # let late duplicates (if any) land before counting
        stock_figures = await stock.settle(rt)
        figures = systems.figures()
        quarantined = len([q for q in rt.store.list_quarantine("open") if f"-{run_id}:" in q.order_key])
        summary: dict[str, Any] = {
            **figures,
            "quarantined": quarantined,
            "good_orders": good,
            "elapsed_s": round(time.monotonic() - started, 2),
            "temporal_db": str(settings.temporal_db) if settings.embedded else None,
            "run_id": run_id,
            "seed": seed,
            "chaos": chaos,
            "faults_injected": systems.faults_injected(),
        }
        summary["channels"] = systems.per_channel()
        summary["stock"] = stock_figures
        cash_figures = await asyncio.to_thread(cash.figures, rt, systems.wms.state())
        summary["cash"] = cash_figures
        violations: list[str] = []
        if stories is not None:
            summary.update(stories.figures())
            violations = stories.violations()
            summary["lifecycle_violations"] = violations
            summary["after_sales_tasks"] = len([t for t in rt.store.list_tasks() if f"-{run_id}:" in t.order_key
                                                and t.kind == "after_sales"])
        checks = {
            "every good order in the WMS once": figures["wms_outbound_orders"] == good,
            "every good order in the ERP once": figures["erp_sales_orders"] == good,
            "every good order's tracking written back": figures["tracking_written_back"] == good,
            "no duplicates": figures["wms_duplicates"] == 0 and figures["erp_duplicates"] == 0,
            "only the malformed orders quarantined": quarantined == figures["orders_malformed"],
            "stock books consistent": bool(stock_figures["consistent"]),
            "pool matches the WMS": bool(stock_figures["pool_matches_wms"]),
            "ledger passes bean-check": not cash_figures["bean_check_errors"],
            "a voucher for every shipped order": cash_figures["shipped_without_voucher"] == 0,
            "approvals answered through the API": cash_figures["approved_via_api"] >= cash_figures["approvals"],
            "order-life stories settled": not violations and (
                stories is None or (stories.settled() and summary["after_sales_tasks"] == summary["after_sales"])),
        }
        summary["ok"] = all(checks.values())
        summary["failed_checks"] = [name for name, passed in checks.items() if not passed]
        if not checks["only the malformed orders quarantined"]:
            summary["quarantine_reasons"] = [f"{q.order_key} [{q.stage}] {q.reason}"[:400]
                                             for q in rt.store.list_quarantine("open") if f"-{run_id}:" in q.order_key]
        _print_summary(console, summary, systems, settings)
        return summary
    finally:
        if rt.client is not None and rt.store is not None and flow_name:
            await _park_demo_flow(rt, flow_name, run_id)
        await rt.stop()
        with contextlib.suppress(Exception):
            await systems.wms.aclose()
        systems.stop()
        cash.stop()


async def _live_the_stories(stories: LifeStories, ops: FlowOps, flow: str, deadline: float,
                            console: Console, hub_caught_up: Callable[[], bool]) -> None:
    """Once the hub released the held stories, the platform side happens; pull until they settle
    on the platforms' side and the hub has caught up with them (under chaos a pull is retried for
    seconds, so the platforms can be settled well before the hub heard of it)."""
    while time.monotonic() < deadline:
        if stories.released():
            break
        await asyncio.sleep(0.3)
    console.print("order life: payments, closures, refunds, an address change and a late cancellation happen...")
    await stories.happen()
    await asyncio.sleep(6.0)  # past the ingest lag
    last_pull = 0.0
    while not (stories.settled() and await asyncio.to_thread(hub_caught_up)) and time.monotonic() < deadline:
        if time.monotonic() - last_pull > 10:
            with contextlib.suppress(Exception):
                await ops.run_now(flow)
            last_pull = time.monotonic()
        await asyncio.sleep(0.3)


async def _wait_until_done(systems: DemoSystems, rt: HubRuntime, run_id: str, timeout_s: float,
                           show_progress: bool, console: Console) -> int:
    assert rt.store
    created = systems.figures()["orders_created"]
    good = created - systems.figures()["orders_malformed"]
    columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as progress:
        bars = {
            "wms_outbound_orders": progress.add_task("WMS outbound orders", total=good),
            "erp_sales_orders": progress.add_task("ERP sales orders", total=good),
            "tracking_written_back": progress.add_task("tracking written back", total=good),
            "quarantined": progress.add_task("quarantined (malformed)", total=created - good),
        }
        while True:
            figures = systems.figures()
            figures["quarantined"] = len([q for q in await asyncio.to_thread(rt.store.list_quarantine, "open")
                                          if f"-{run_id}:" in q.order_key])
            for name, task in bars.items():
                progress.update(task, completed=figures[name])
            if (figures["tracking_written_back"] >= good and figures["quarantined"] >= created - good
                    and figures["wms_outbound_orders"] >= good and figures["erp_sales_orders"] >= good):
                return good
            if time.monotonic() > deadline:
                console.print("[red]timed out waiting for the demo to finish[/red]")
                return good
            await asyncio.sleep(0.3)


def _print_summary(console: Console, s: dict[str, Any], systems: DemoSystems, settings: Settings) -> None:
    verdict = "[green]all systems agree[/green]" if s["ok"] else "[red]the systems disagree[/red]"
    console.print(
        f"\n{verdict}: {s['orders_created']} orders created ({s['orders_malformed']} malformed) in "
        f"{len(s.get('channels') or {'taobao': 1})} marketplaces ({', '.join(s.get('channels') or ['taobao'])}); "
        f"WMS holds {s['wms_outbound_orders']} outbound orders ({s['wms_duplicates']} duplicates), "
        f"ERP {s['erp_sales_orders']} sales orders ({s['erp_duplicates']} duplicates); "
        f"{s['tracking_written_back']} tracking numbers written back; {s['quarantined']} quarantined; "
        f"{s['elapsed_s']} s."
    )
    for name in s.get("failed_checks", []):
        console.print(f"[red]  not so: {name}[/red]")
    for reason in s.get("quarantine_reasons", []):
        console.print(f"  quarantined: {reason}")
    if "lifecycle_orders" in s:
        console.print(
            f"order life ({s['lifecycle_orders']} orders): {s['released']} released, {s['waiting_payment']} waiting "
            f"for payment, {s['closed_unpaid']} closed unpaid (never sent), {s['cancelled_before_shipment']} "
            f"cancelled before shipment (WMS and ERP cancelled), {s['amended']} amended, {s['after_sales']} "
            f"after-sales (cancelled too late: see `tongdao tasks list`), {s['split_shipments']} shipped in "
            f"several packages" + (f"; [red]{len(s['lifecycle_violations'])} violations[/red]"
                                   if s["lifecycle_violations"] else "")
        )
    if "stock" in s:
        print_stock(console, s["stock"])
    if "cash" in s:
        print_cash(console, s["cash"])
    tid = next(iter(systems.taobao.state().get("shipments", {}) or {"<tid>": None}))
    console.print(
        "Histories are kept. Inspect them with `tongdao up` running (or the Web UI at "
        f"http://localhost:{settings.temporal_ui_port}):\n"
        f"  temporal workflow list --address {settings.temporal_target} --query 'ExternalOrderId=\"{tid}\"'\n"
        "  tongdao quarantine list"
    )
