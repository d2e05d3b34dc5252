"""The demo's order-to-cash story: the rule set decides on every order (big orders wait for a
director, East China ships SF and elsewhere ZTO, a gift over 199 CNY), a director answers the
approvals through the HTTP API, a DingTalk robot (simulated, signature checked) is told of every
shipment, every shipped order gets its Kingdee sales outbound and a voucher in a Beancount ledger
under the state directory, which ``bean-check`` must accept at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from connectors.beancount import check_ledger, ledger_summary
from connectors.registry import Registration
from hub.runtime import HubRuntime
from mappings.rules import load_rule_set
from simulators.dingtalk import DingTalkSimulator
from simulators.server import BackgroundServer

RULES = Path(__file__).resolve().parents[1] / "examples" / "rules" / "demo.yaml"
ROBOT_TOKEN, ROBOT_SECRET = "demo-robot-token-0007", "SECdemo0007robotsecret"


class DemoCash:
    def __init__(self, run_id: str, home: Path) -> None:
        self.run_id = run_id
        self.robot = DingTalkSimulator(robots={ROBOT_TOKEN: ROBOT_SECRET}, per_minute=10_000)
        self.server = BackgroundServer(self.robot.app)
        self.ledger = home / "ledger" / f"demo-{run_id}.beancount"
        self.approved: list[int] = []
        self._approver: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        if self._approver is not None:
            self._approver.cancel()
        self.server.stop()

    def registrations(self) -> list[Registration]:
        return [Registration(name="demo-robot", kind="dingtalk", settings={"base_url": self.server.base_url},
                             secrets={"access_token": ROBOT_TOKEN, "secret": ROBOT_SECRET}),
                Registration(name="ledger", kind="beancount", settings={"path": str(self.ledger)}, secrets={})]

    def save_rules(self, rt: HubRuntime) -> str:
        assert rt.store
        rules = load_rule_set(RULES)
        rt.store.save_rule_set(rules.name, rules.version(), rules.model_dump(mode="json"), "demo")
        return f"{rules.name}@{rules.version()}"

    def start_approver(self, rt: HubRuntime) -> None:
        """A director at work: answers this run's approval tasks through the API as they appear."""
        assert rt.store
        token = rt.store.create_token(f"director-{self.run_id}", "operator", "demo")
        self._approver = asyncio.create_task(self._approve(rt, token))

    async def _approve(self, rt: HubRuntime, token: str) -> None:
        assert rt.store
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=rt.settings.api_url, headers=headers, timeout=30) as api:
            while True:
                tasks = await asyncio.to_thread(rt.store.list_tasks, "open", "approval")
                for task in tasks:
                    if f"{self.run_id}:" not in task.order_key or task.id in self.approved:
                        continue
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await api.post(f"/tasks/{task.id}/decide", json={
                            "action": "approve", "role": "director", "comment": "checked the buyer: approved"})
                        if answer.status_code in (200, 409):
                            self.approved.append(task.id)
                await asyncio.sleep(0.5)

    def figures(self, rt: HubRuntime, wms_state: dict[str, Any]) -> dict[str, Any]:
        assert rt.store
        shipped_codes = {row.hub_code for row in rt.store.orders_with_outcome(("shipped", "split_shipments"))
                         if f"{self.run_id}:" in row.key}
        carriers = Counter(o["logistics_code"] for code, o in wms_state["orders"].items() if code in shipped_codes)
        gifts = sum(1 for code, o in wms_state["orders"].items() if code in shipped_codes
                    and any(str(line.get("sub_source_order_code") or "").startswith("GIFT-") for line in o["lines"]))
        errors = check_ledger(self.ledger) if self.ledger.exists() else ["no ledger written"]
        summary = ledger_summary(self.ledger) if self.ledger.exists() else {"channels": {}, "vouchers": 0}
        text = self.ledger.read_text(encoding="utf-8") if self.ledger.exists() else ""
        missing = sorted(code for code in shipped_codes if f'"{code}-SHIP"' not in text)
        per_channel = {channel: {currency: {k: str(v) for k, v in amounts.items()
                                            if k in ("revenue", "commission", "logistics", "vouchers")}
                                 for currency, amounts in figures.items()}
                       for channel, figures in summary["channels"].items()}
        held = [t for t in rt.store.list_tasks(None, "approval") if f"{self.run_id}:" in t.order_key]
        return {
            "approvals": len({t.order_key for t in held}),
            "approved_via_api": len(self.approved),
            "carriers": dict(carriers),
            "gift_parcels": gifts,
            "notifications": len(self.robot.messages),
            "ledger": str(self.ledger),
            "vouchers": summary["vouchers"],
            "shipped_without_voucher": len(missing),
            "bean_check_errors": errors[:5],
            "per_channel": per_channel,
        }


def print_cash(console: Any, c: dict[str, Any]) -> None:
    ok = "bean-check passes" if not c["bean_check_errors"] else f"[red]bean-check: {c['bean_check_errors'][0]}[/red]"
    console.print(
        f"order-to-cash: {c['approvals']} big orders held for a director, {c['approved_via_api']} approved "
        f"through the API; carriers {', '.join(f'{k} {v}' for k, v in sorted(c['carriers'].items()))}; "
        f"{c['gift_parcels']} parcels with a gift; {c['notifications']} DingTalk notifications; "
        f"{c['vouchers']} vouchers in {c['ledger']} ({ok}; "
        f"{c['shipped_without_voucher']} shipped orders without one)"
    )
    for channel, currencies in sorted(c["per_channel"].items()):
        for currency, f in sorted(currencies.items()):
            console.print(f"  {channel:<10} {currency} revenue {f.get('revenue', '0'):>10}  commission "
                          f"{f.get('commission', '0'):>8}  logistics {f.get('logistics', '0'):>8}  "
                          f"({f.get('vouchers', '0')} vouchers)")
