"""``tongdao rules``: business rule sets (audit, approval, routing, promotions), versioned in the store.

``test`` is a dry run: it evaluates a rule set (a file, or a stored name) on one canonical order and
prints every rule with why it fired or not, and the decisions. It records nothing; velocity counts
and stock levels are read from the local store (``--no-store`` leaves them out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

rules_app = typer.Typer(help="Business rule sets: review, approval, routing and promotion rules over orders.",
                        no_args_is_help=True)


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".yaml", ".yml", ".json"))


def _load(ruleset: str, version: str | None) -> tuple[Any, str]:
    """(RuleSet, where it came from): a file when ``ruleset`` is one, else a stored rule set's name."""
    from hub.cli import _fail, _read_text, _store
    from mappings.rules import RuleSetError, parse_rule_set

    path = Path(ruleset)
    if path.is_file():
        if version:
            raise _fail("--version is for a stored rule set, not a file")
        text = _read_text(path, "rule set (YAML)")
        try:
            return parse_rule_set(text, str(path)), str(path)
        except RuleSetError as exc:
            raise _fail(str(exc)) from None
    if _looks_like_path(ruleset) or path.exists():
        raise _fail(f"{ruleset}: no such rule set file")
    stored = _store().get_rule_set(ruleset, version)
    if stored is None:
        what = f"version {version} of rule set {ruleset!r}" if version else f"rule set {ruleset!r}"
        raise _fail(f"no {what} in the store (tongdao rules list; a file path must exist)")
    try:
        return parse_rule_set(stored.definition, f"rule set {ruleset} {stored.version}"), \
            f"stored {ruleset} {stored.version}"
    except RuleSetError as exc:  # stored by an older hub whose format has changed since
        raise _fail(str(exc)) from None


def _order(path: Path) -> Any:
    from pydantic import ValidationError

    from canonical import Order
    from hub.cli import _fail, _read_json

    data = _read_json(path, "order")
    try:
        return Order.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(order)'}: {e['msg']}" for e in exc.errors())
        raise _fail(f"{path}: not a canonical order: {problems}") from None


def _stock_file(path: Path) -> dict[str, dict[str, int]]:
    from hub.cli import _fail, _read_json

    data = _read_json(path, "stock levels")
    for sku, levels in data.items():
        if not isinstance(levels, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                   for v in levels.values()):
            raise _fail(f"{path}: {sku}: expected {{warehouse: units}}, e.g. {{\"wms-sh\": 3}}")
    return data


def _table(outcome: Any) -> None:
    from hub.cli import out

    table = Table("section", "rule", "fired", "reason", title=f"{outcome.ruleset} {outcome.version}: "
                  f"{outcome.order_key}", title_justify="left")
    for t in outcome.rules:
        fired = "[green]yes[/green]" if t.fired else ("[red]error[/red]" if t.error else "no")
        table.add_row(t.section, t.rule, fired, escape(t.reason))
    out.print(table)
    decisions = Table("decision", "value", show_header=False, title="decisions", title_justify="left")
    for reason in outcome.review:
        decisions.add_row("review", escape(reason))
    if not outcome.review:
        decisions.add_row("review", "no")
    if outcome.approval is not None:
        a = outcome.approval.model_dump(mode="json")
        text = f"{a['role']} within {a['within']}"
        text += f", remind after {a['remind_after']}" if a["remind_after"] else ""
        text += f", then escalate to {a['escalate_to']}" if a["escalate_to"] else ""
        decisions.add_row("approval", escape(text))
    if outcome.split:
        for code, lines in outcome.split.items():
            decisions.add_row(f"split → {code}", escape(", ".join(f"{x.sku} ×{x.quantity}" for x in lines)))
    else:
        decisions.add_row("warehouse", escape(outcome.warehouse or "-"))
    cost = f" (cost {outcome.model_dump(mode='json')['carrier_cost']})" if outcome.carrier_cost is not None else ""
    decisions.add_row("carrier", escape((outcome.carrier or "-") + cost))
    if outcome.merge_key:
        decisions.add_row("merge key", outcome.merge_key[:16] + "…")
    for gift in outcome.gifts:
        decisions.add_row("gift", escape(f"{gift.sku} ×{gift.quantity} {gift.title}".strip()))
    if outcome.hold_until_paid:
        decisions.add_row("hold until paid", "yes")
    out.print(decisions)


@rules_app.command("test")
def rules_test(
    ruleset: str = typer.Argument(..., metavar="RULESET", help="a rule set file, or the name of a stored one"),
    order_file: Path = typer.Argument(..., metavar="ORDER.json", help="a canonical order (JSON)"),
    version: str | None = typer.Option(None, "--version", help="a stored rule set's version (default: current)"),
    now: str | None = typer.Option(None, "--now", help="evaluate as of this time (ISO 8601 with zone); default now"),
    stock_file: Path | None = typer.Option(None, "--stock", help="stock levels JSON {sku: {warehouse: units}} "
                                           "instead of the store's stock pool"),
    no_store: bool = typer.Option(False, "--no-store", help="read no velocity counts or stock from the store"),
    as_json: bool = typer.Option(False, "--json", help="the whole outcome as one JSON object"),
) -> None:
    """Dry-run a rule set on one order: which rules fire and why, and what they decide. Records nothing.

    Example: `tongdao rules test mappings/rulesets/default.yaml examples/orders/big_order.json`
    """
    from hub.cli import _parse_time, _store, console
    from mappings.rules import evaluate

    rules, source = _load(ruleset, version)
    order = _order(order_file)
    at = _parse_time(now, "--now") if now else datetime.now(UTC)
    velocity = None
    stock = None
    store = None if no_store else _store()
    if stock_file is not None:
        levels = _stock_file(stock_file)

        def stock(sku: str) -> Mapping[str, int]:
            return levels.get(sku, {})
    elif store is not None and rules.warehouses:
        pool = {sku: {f.warehouse: f.available for f in store.stock_levels(sku)} for sku in order.skus}
        if any(pool.values()):  # the pool knows these SKUs: choose by its levels
            def stock(sku: str) -> Mapping[str, int]:
                return pool.get(sku, {})
    if store is not None:
        def velocity(kind: str, value_hash: str, within: timedelta) -> int:
            return store.count_velocity(kind, value_hash, at - within, until=at, including=order.key)

    outcome = evaluate(rules, order, velocity=velocity, stock=stock, now=at)
    if as_json:
        print(json.dumps({"source": source, **outcome.model_dump(mode="json")}, ensure_ascii=False))
        return
    _table(outcome)
    notes = [f"rule set from {source}"]
    notes.append("stock: " + ("from " + str(stock_file) if stock_file else "the store's pool" if stock else
                              "not checked"))
    notes.append("velocity: " + ("the store's log (this order counted)" if velocity else "not checked"))
    console.print("; ".join(notes), highlight=False)


@rules_app.command("apply")
def rules_apply(file: Path = typer.Argument(..., metavar="FILE", help="rule set YAML"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Save a rule set file as a new version (the same content again changes nothing); every version is kept.

    Example: `tongdao rules apply mappings/rulesets/default.yaml`
    """
    from hub.cli import _actor, _fail, _read_text, _settings, _store, console
    from mappings.rules import RuleSetError, parse_rule_set

    text = _read_text(file, "rule set (YAML)")
    try:
        rules = parse_rule_set(text, str(file))
    except RuleSetError as exc:
        raise _fail(str(exc)) from None
    s = _settings()
    store = _store(s)
    try:
        changed = store.save_rule_set(rules.name, rules.version(), rules.model_dump(mode="json"), _actor(s))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    result = {"name": rules.name, "version": rules.version(), "changed": changed,
              "versions": len(store.rule_set_versions(rules.name))}
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    what = "saved" if changed else "unchanged:"
    console.print(f"{what} rule set [bold]{escape(rules.name)}[/bold] version {result['version']} "
                  f"({result['versions']} version{'s' if result['versions'] != 1 else ''} kept)")


@rules_app.command("list")
def rules_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List stored rule sets with their current version and how many versions are kept.

    Example: `tongdao rules list --json`
    """
    from hub.cli import _store, out

    data = [{**r, "created_at": r["created_at"].isoformat(), "updated_at": r["updated_at"].isoformat()}
            for r in _store().list_rule_sets()]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("name", "version", "versions", "updated", "by", "description")
    for d in data:
        table.add_row(escape(d["name"]), d["version"], str(d["versions"]), d["updated_at"][:19],
                      escape(d["updated_by"]), escape(d["description"][:60]))
    out.print(table)


@rules_app.command("show")
def rules_show(name: str = typer.Argument(..., metavar="NAME"),
               version: str | None = typer.Option(None, "--version", help="a version (default: the current one)"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a stored rule set (as YAML, or JSON) and the list of its versions.

    Example: `tongdao rules show default-audit --version 4d94b42588fb`
    """
    import yaml

    from hub.cli import _fail, _store, console

    store = _store()
    stored = store.get_rule_set(name, version)
    if stored is None:
        raise _fail(f"no version {version} of rule set {name!r}" if version else f"no rule set named {name!r}")
    versions = store.rule_set_versions(name)
    if as_json:
        print(json.dumps({**stored.model_dump(mode="json"),
                          "versions": [v.model_dump(mode="json", exclude={"definition"}) for v in versions]},
                         ensure_ascii=False))
        return
    definition = _without_nulls(stored.definition)
    print(f"# {name} version {stored.version}{' (current)' if stored.current else ''}, saved "
          f"{stored.created_at.isoformat()[:19]} by {stored.created_by}")
    print(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False, width=120), end="")
    console.print("versions: " + ", ".join(f"{v.version}{'*' if v.current else ''}" for v in versions),
                  highlight=False)


def _without_nulls(value: Any) -> Any:
    """A stored definition as a person wrote it: unset (null) keys left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@rules_app.command("hash")
def rules_hash(values: list[str] = typer.Argument(..., metavar="VALUE..."),
               kind: str = typer.Option("phone", "--kind",
                                        help="phone (normalized first) or buyer (CHANNEL:ID)")) -> None:
    """The sha256 a rule set's lists hold for a phone number or a buyer (never the value itself).

    Example: `tongdao rules hash 13800138000 "+86 139-0000-0000"`
    """
    import hashlib

    from hub.cli import _fail
    from mappings.rules import phone_hash

    if kind not in ("phone", "buyer"):
        raise _fail("--kind is phone or buyer")
    for value in values:
        if kind == "buyer" and ":" not in value:
            raise _fail(f"a buyer is CHANNEL:ID (or CHANNEL:NICK), e.g. taobao:tb_buyer_1, not {value!r}")
        print(phone_hash(value) if kind == "phone" else hashlib.sha256(value.strip().encode()).hexdigest())
