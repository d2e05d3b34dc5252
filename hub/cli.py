"""The ``tongdao`` command line, for IT teams (typer + rich).

Every command has ``--help`` with an example. Commands that only read or change the hub store
work without a running hub; commands that talk to workflows need ``tongdao up`` (or a cluster
named by ``TONGDAO_TEMPORAL_ADDRESS``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.cli_inventory import inventory_app
from hub.cli_rules import rules_app
from hub.logging import configure
from hub.settings import Settings, get_settings

app = typer.Typer(help="Tongdao: a headless integration hub for e-commerce operations.",
                  no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_show_locals=False)
connectors_app = typer.Typer(help="Register, inspect and try connectors.", no_args_is_help=True)
mappings_app = typer.Typer(help="Work with mapping specs.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Orders parked with a precise error, and their replay.", no_args_is_help=True)
xref_app = typer.Typer(help="Cross-reference tables used by mapping lookups.", no_args_is_help=True)
schema_app = typer.Typer(help="The canonical model's JSON Schema.", no_args_is_help=True)
flows_app = typer.Typer(help="Declarative sync jobs: what flows where, on which schedule.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")
app.add_typer(mappings_app, name="mappings")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(xref_app, name="xref")
app.add_typer(schema_app, name="schema")
app.add_typer(flows_app, name="flows")
orders_app = typer.Typer(help="Orders across the hub and its sources.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
tokens_app = typer.Typer(help="API tokens with roles (admin, operator, auditor).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
tasks_app = typer.Typer(help="The task inbox: human steps (after-sales cases, conflicts, approvals).",
                        no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
audit_app = typer.Typer(help="The audit trail: an order's timeline, mapping spec texts, exports, the archive.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")
privacy_app = typer.Typer(help="Personal data of orders: retention and purge.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
secrets_app = typer.Typer(help="The secret key ring (connector secrets, personal data): rotation.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
app.add_typer(inventory_app, name="inventory")
app.add_typer(rules_app, name="rules")

console = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print one ``error:`` line (never wrapped, never read as markup, never showing a secret or a
    phone number) and return the exit to raise."""
    console.print(f"[red]error:[/red] {escape(_one_line(message))}", soft_wrap=True)
    return typer.Exit(code)


def _one_line(message: str) -> str:
    """A multi-line message (pydantic's, YAML's with its caret) as one scrubbed line: scripts and log
    collectors read the error as one record."""
    from canonical.redact import scrub_text

    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and line != "^" and not line.startswith("For further information")]
    return scrub_text(" ".join(kept))


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        s = get_settings()
    except ValidationError as exc:  # e.g. TONGDAO_API_PORT=abc
        problems = "; ".join(f"TONGDAO_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise _fail(f"bad setting: {problems}") from None
    configure(s.log_format, os.environ.get("TONGDAO_LOG_LEVEL", "WARNING"))
    return s


def _store(s: Settings | None = None):  # noqa: ANN202
    from store import open_store
    from store.secrets import SecretKeyError

    s = s or _settings()
    try:
        s.ensure_home()
    except OSError as exc:
        raise _fail(f"state directory {s.home} (TONGDAO_HOME): {exc.strerror or exc}") from None
    try:
        return open_store(s.db_url, s.secret_key.get_secret_value() if s.secret_key else None, s.home,
                          secret_key_file=s.secret_key_file)
    except SecretKeyError as exc:
        raise _fail(str(exc)) from None


def _read_text(path: Path, what: str) -> str:
    """A file given on the command line as text: a binary or unreadable file is one error line."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"{path}: not a UTF-8 text {what} (undecodable byte at offset {exc.start})") from None
    except OSError as exc:
        raise _fail(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_json(path: Path, what: str, kind: type = dict) -> Any:
    """A JSON file given on the command line, which must hold a ``kind`` (object by default)."""
    text = _read_text(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, kind):
        expected = {dict: "a JSON object {...}", list: "a JSON array [...]"}.get(kind, kind.__name__)
        raise _fail(f"{path}: the {what} must be {expected}, not a JSON {type(value).__name__}") from None
    return value


def _key_values(items: list[str], option: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; one without ``=`` or with an empty key is one error line."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} {example}")
        pairs[key.strip()] = value
    return pairs


def _actor(s: Settings) -> str:
    return s.actor or os.environ.get("USER") or getpass.getuser()


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{name}: {value!r} is not ISO 8601 (e.g. 2026-11-11T00:00:00+08:00)") from None
    if parsed.tzinfo is None:
        raise _fail(f"{name}: {value!r} has no time zone; add Z or an offset like +08:00")
    return parsed.astimezone(UTC)


# -- up ------------------------------------------------------------------------------------------
@app.command()
def up(
    api_port: int = typer.Option(None, "--api-port", help="HTTP API port (default 8700 or $TONGDAO_API_PORT)"),
    headless: bool = typer.Option(False, "--headless", help="do not serve the Temporal Web UI"),
    role: str = typer.Option("all", "--role", help="all | worker | api (production runs them apart)"),
) -> None:
    """Run the whole hub in the foreground: Temporal (embedded unless configured), worker, HTTP API.

    Example: `tongdao up` then open http://localhost:8233 (Temporal UI) and http://127.0.0.1:8700/docs (API).
    Ctrl-C stops everything cleanly.
    """
    s = _settings()
    if role not in ("all", "worker", "api"):
        raise _fail("--role is one of all, worker, api")
    if api_port:
        s.api_port = api_port
    configure(s.log_format, s.log_level)
    from hub.runtime import HubRuntime

    async def main() -> None:
        import signal

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        rt = await HubRuntime(s, headless_ui=headless, run_api=role in ("all", "api"),
                              run_worker=role in ("all", "worker")).start()
        console.print(f"[green]Tongdao is up.[/green] API: {s.api_url}  (OpenAPI: {s.api_url}/docs)")
        console.print(f"Temporal: {s.temporal_target}" + ("" if headless or not s.embedded else
                      f"  Web UI: http://localhost:{s.temporal_ui_port}"))
        if s.embedded:
            console.print(f"Temporal history: {s.temporal_db}")
        console.print("Ctrl-C to stop.")
        try:
            await stop.wait()
        finally:
            console.print("stopping...")
            await rt.stop()

    from worker.embedded import TemporalPortTaken

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("stopped.")
    except TemporalPortTaken as exc:
        raise _fail(str(exc)) from None


# -- demo ----------------------------------------------------------------------------------------
@app.command()
def demo(
    orders: int = typer.Option(200, "--orders", min=2, help="orders to generate across the two shops"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary as the last line"),
    seed: int = typer.Option(None, "--seed", help="simulator seed (default: a new one per run)"),
    timeout: float = typer.Option(600, "--timeout", help="give up after this many seconds"),
    chaos: bool = typer.Option(False, "--chaos", help="inject 5xx, throttling, latency and duplicates"),
    life: bool = typer.Option(True, "--life/--no-life", help="add orders with a real life: unpaid, cancelled, "
                              "refunded, amended, split, cancelled too late"),
) -> None:
    """Run the demo: two Taobao shops' simulators → Qimen WMS + Kingdee ERP, through real workflows.

    Example: `tongdao demo --orders 200 --json` or `tongdao demo --chaos`. Exits non-zero when the systems
    disagree.
    """
    from hub.demo import run_demo
    from worker.embedded import TemporalPortTaken

    s = _settings()
    try:
        summary = asyncio.run(run_demo(s, orders=orders, seed=seed, timeout_s=timeout, show_progress=True,
                                       chaos=chaos, life=life))
    except TemporalPortTaken as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(data=summary) if sys.stdout.isatty() else print(json.dumps(summary, default=str))
    raise typer.Exit(0 if summary.get("ok") else 1)


# -- connectors ----------------------------------------------------------------------------------
@connectors_app.command("add")
def connectors_add(file: Path = typer.Option(..., "--file", "-f", exists=True, dir_okay=False,
                                             help="registration YAML/JSON: name, kind, settings, secrets")) -> None:
    """Register (or update) a connector from a file.

    Example: `tongdao connectors add --file examples/connectors/taobao.yaml`
    """
    from connectors.errors import ConfigurationError
    from connectors.registry import load_registration, register

    s = _settings()
    _read_text(file, "registration file (YAML or JSON)")
    try:
        reg = load_registration(file)
        store = _store(s)
        created = register(store, reg, _actor(s))
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    store.audit(_actor(s), "connector.save", reg.name, {"kind": reg.kind, "secrets": sorted(reg.secrets),
                                                          "created": created, "via": "cli"})
    console.print(f"{'registered' if created else 'updated'} connector [bold]{reg.name}[/bold] ({reg.kind})")


@connectors_app.command("list")
def connectors_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List registered connectors.

    Example: `tongdao connectors list --json`
    """
    from connectors import load_kinds

    rows = _store().list_connectors()
    kinds = load_kinds()
    data = [{"name": r.name, "kind": r.kind,
             "capabilities": sorted(kinds[r.kind].capabilities) if r.kind in kinds else [],
             "base_url": r.settings.get("base_url", ""), "updated_at": r.updated_at.isoformat(),
             "updated_by": r.updated_by, "version": r.version} for r in rows]
    if as_json:
        print(json.dumps(data))
        return
    table = Table("name", "kind", "capabilities", "base_url", "updated", "by")
    for d in data:
        table.add_row(d["name"], d["kind"], ", ".join(d["capabilities"]), d["base_url"], d["updated_at"][:19],
                      d["updated_by"])
    out.print(table)


@connectors_app.command("show")
def connectors_show(name: str) -> None:
    """Show one connector's registration, secrets masked.

    Example: `tongdao connectors show taobao-shop-a`
    """
    from connectors.errors import ConnectorError
    from connectors.registry import instantiate

    store = _store()
    try:
        connector = instantiate(store, name)
    except (ConnectorError, ValueError) as exc:  # ValueError: the secret key does not open its secrets
        raise _fail(f"{name}: {exc}") from None
    row = store.get_connector(name)
    assert row is not None
    info = connector.describe() | {"created_at": row.created_at.isoformat(), "created_by": row.created_by,
                                   "updated_at": row.updated_at.isoformat(), "updated_by": row.updated_by,
                                   "version": row.version}
    if "push" in connector.capabilities:  # give this URL to the platform as the callback address
        info["callback_url"] = _settings().callback_url(name)
    print(json.dumps(info, indent=2, ensure_ascii=False))


@connectors_app.command("test")
def connectors_test(name: str) -> None:
    """Make one cheap authenticated call to the connector's endpoint.

    Example: `tongdao connectors test kingdee-prod`
    """
    from connectors.errors import ConnectorError
    from connectors.registry import instantiate

    store = _store()

    async def run() -> str:
        connector = instantiate(store, name)
        try:
            return await connector.test()
        finally:
            await connector.aclose()

    try:
        console.print(f"[green]ok[/green] {name}: {asyncio.run(run())}")
    except (ConnectorError, ValueError) as exc:
        raise _fail(_connector_problem(store, name, exc)) from None


def _connector_problem(store: Any, name: str, exc: Exception) -> str:
    """One line for a failed call to a connector's endpoint: which connector, which URL, what went wrong."""
    from connectors.errors import TransientError

    row = store.get_connector(name)
    url = (row.settings or {}).get("base_url") if row is not None else None
    if isinstance(exc, TransientError) and url:
        return f"{name}: cannot reach {url}: {exc} (is the endpoint up? `tongdao connectors test {name}`)"
    return f"{name}: {exc}"


@connectors_app.command("remove")
def connectors_remove(name: str) -> None:
    """Remove a connector registration.

    Example: `tongdao connectors remove old-shop`
    """
    s = _settings()
    store = _store(s)
    if store.remove_connector(name):
        store.audit(_actor(s), "connector.remove", name, {"via": "cli"})
    else:
        raise _fail(f"no connector named {name!r}")
    console.print(f"removed {name}")


@connectors_app.command("pull")
def connectors_pull(
    name: str,
    stream: str = typer.Option("orders", "--stream", help="what to pull (orders)"),
    since: str = typer.Option(..., "--since", help="ISO 8601 with zone, e.g. 2026-11-11T00:00:00+08:00"),
    until: str = typer.Option(None, "--until", help="ISO 8601 with zone; default now"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON array of canonical orders"),
    mapping: str = typer.Option(None, "--mapping", help="mapping spec (default: the kind's order spec)"),
) -> None:
    """Dry run against the live endpoint: walk windows and pages as the sync does, map, print.

    Starts no workflow and changes nothing. Orders that fail mapping are reported on stderr.
    Example: `tongdao connectors pull taobao-shop-a --stream orders --since 2026-11-11T00:00:00+08:00 --json`
    """
    from hub.dryrun import pull_canonical

    if stream != "orders":
        raise _fail(f"stream {stream!r} is not supported yet; use --stream orders")
    start = _parse_time(since, "--since")
    end = _parse_time(until, "--until") if until else datetime.now(UTC)
    if end <= start:
        raise _fail("--until must be after --since")
    from connectors.errors import ConnectorError

    s = _settings()
    store = _store(s)
    try:
        orders, problems = asyncio.run(pull_canonical(store, name, start, end, mapping, progress=console))
    except ConnectorError as exc:
        raise _fail(_connector_problem(store, name, exc)) from None
    except (ValueError, FileNotFoundError) as exc:  # unknown/broken --mapping spec, or a key that opens no secrets
        raise _fail(f"{name}: {exc}") from None
    for p in problems:
        console.print(f"[yellow]unmapped[/yellow] {p}")
    if as_json:
        print(json.dumps([o.model_dump(mode="json") for o in orders], ensure_ascii=False))
    else:
        table = Table("key", "status", "total", "lines", "modified (UTC)")
        for o in orders:
            table.add_row(o.key, o.status.value, f"{o.total} {o.currency}", str(len(o.lines)),
                          o.modified_at.isoformat())
        out.print(table)
        console.print(f"{len(orders)} orders, {len(problems)} could not be mapped")


# -- mappings ------------------------------------------------------------------------------------
@mappings_app.command("preview")
def mappings_preview(
    spec: str = typer.Argument(..., help="spec file or name under mappings/specs (e.g. taobao_order)"),
    payload: Path = typer.Argument(..., exists=True, dir_okay=False, help="sample payload JSON"),
    context: list[str] = typer.Option([], "--context", "-c", help="KEY=VALUE visible to the spec, repeatable"),
    xref: list[str] = typer.Option([], "--xref", help="TABLE=FILE.json cross-reference table, repeatable"),
    use_store: bool = typer.Option(False, "--store", help="use the hub store's cross-reference tables"),
) -> None:
    """Map a sample payload and print the result, or the errors (exit 1).

    Example: `tongdao mappings preview taobao_order tests/fixtures/taobao_trade.json
    --xref sku=examples/xref/taobao_skus.json --context shop=tmall-main`
    """
    from mappings import DictLookups, load_spec

    try:
        mapping = load_spec(spec)
    except Exception as exc:  # a spec error names its field
        raise _fail(f"{spec}: {exc}") from None
    ctx = _key_values(context, "--context", "shop=tmall-main")
    xref_files = _key_values(xref, "--xref", "sku=examples/xref/taobao_skus.json")
    document = _read_json(payload, "sample payload")
    tables: dict[str, dict[str, str]] = _store().xref_tables() if use_store else {}
    for table, path in xref_files.items():
        if not Path(path).is_file():
            raise _fail(f"--xref {table}={path}: no such file")
        tables[table] = {str(k): str(v) for k, v in _read_json(Path(path), "cross-reference table").items()}
    result = mapping.apply(document, lookups=DictLookups(tables), context=ctx)
    console.print(f"spec {mapping.name} @ {mapping.content_hash[:12]}")
    if result.ok:
        value = result.value
        print(json.dumps(value.model_dump(mode="json") if hasattr(value, "model_dump") else value,
                         indent=2, ensure_ascii=False, default=str))
        return
    table = Table("target", "source path", "value", "message", title="mapping errors")
    for e in result.errors:
        table.add_row(e.target, e.source_path or "", str(e.value or ""), e.message)
    console.print(table)
    raise typer.Exit(1)


# -- quarantine ----------------------------------------------------------------------------------
class QuarantineStatus(StrEnum):
    open = "open"
    replaying = "replaying"
    resolved = "resolved"
    all = "all"


class TaskStatus(StrEnum):
    open = "open"
    done = "done"
    all = "all"


@quarantine_app.command("list")
def quarantine_list(
    status: QuarantineStatus = typer.Option(QuarantineStatus.open, "--status"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List parked orders with their precise reason (the mapping/spec version is in --json).

    Example: `tongdao quarantine list --json`
    """
    from hub.api import quarantine_view

    rows = _store().list_quarantine(None if status == "all" else status.value)
    data = [quarantine_view(r) for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    # fits 80 columns: the order is shown by its external id, the reason wraps
    table = Table("id", "order", "stage", "status", "reason", show_lines=True)
    for d in data:
        table.add_row(str(d["id"]), d["order_key"].rsplit(":", 1)[-1], d["stage"],
                      f"{d['status']}" + (f" x{d['replay_count']}" if d["replay_count"] else ""),
                      d["reason"][:160])
    out.print(table)
    console.print(f"{len(data)} entries")


# -- tokens --------------------------------------------------------------------------------------
class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    auditor = "auditor"


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="who or what uses it, e.g. ops-laptop or erp-team"),
    role: Role = typer.Option(..., "--role", help="admin | operator | auditor"),
    as_json: bool = typer.Option(False, "--json", help='one JSON object with the key "token"'),
) -> None:
    """Create an API token; it is printed once (only its hash is kept). Clients send it as
    `Authorization: Bearer TOKEN`.

    Example: `tongdao tokens create ops-laptop --role operator --json`
    """
    s = _settings()
    try:
        token = _store(s).create_token(name, role.value, _actor(s))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps({"name": name, "role": role.value, "token": token}))
        return
    console.print(f"token for {name} ({role.value}) - shown once, keep it safe:")
    print(token)


@tokens_app.command("list")
def tokens_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (names, roles, last use; never the tokens).

    Example: `tongdao tokens list --json`
    """
    from hub.api import token_view

    data = [token_view(r) for r in _store().list_tokens()]
    if as_json:
        print(json.dumps(data))
        return
    table = Table("name", "role", "created", "last used", "revoked")
    for d in data:
        table.add_row(d["name"], d["role"], d["created_at"][:19], (d["last_used_at"] or "")[:19],
                      (d["revoked_at"] or "")[:19])
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str) -> None:
    """Revoke a token at once (the next call with it gets 401).

    Example: `tongdao tokens revoke ops-laptop`
    """
    s = _settings()
    if not _store(s).revoke_token(name, _actor(s)):
        raise _fail(f"no active token named {name!r} (tongdao tokens list)")
    console.print(f"token {name} revoked")


# -- tasks ---------------------------------------------------------------------------------------
@tasks_app.command("list")
def tasks_list(
    kind: str | None = typer.Option(None, "--kind", help="after_sales, tracking_conflict, erp_cancel_refused..."),
    role: str | None = typer.Option(None, "--role", help="operator, finance..."),
    older_than: str | None = typer.Option(None, "--older-than", help="age, e.g. 30m, 2h, 1d"),
    status: TaskStatus = typer.Option(TaskStatus.open, "--status"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List pending human steps: what happened to which order, and what a person must decide.

    Example: `tongdao tasks list --kind after_sales --older-than 2h --json`
    """
    cutoff = None
    if older_than:
        from datetime import timedelta

        from pydantic import TypeAdapter, ValidationError

        from flows.model import parse_duration

        try:  # 30m, 2h, 1d, seconds, or ISO 8601 (P1D) as in flow files
            age = TypeAdapter(timedelta).validate_python(parse_duration(older_than))
        except (ValueError, TypeError, ValidationError):
            raise _fail(f"--older-than: {older_than!r} is not a duration; use e.g. 30m, 2h, 1d, 1h30m") from None
        cutoff = datetime.now(UTC) - age
    from hub.api import task_view

    rows = _store().list_tasks(None if status == "all" else status.value, kind=kind, role=role, older_than=cutoff)
    data = [task_view(r) for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("id", "kind", "order", "title", "age", show_lines=True)
    now = datetime.now(UTC)
    for d in data:
        age = now - datetime.fromisoformat(d["created_at"])
        table.add_row(str(d["id"]), d["kind"], d["order_key"].rsplit(":", 1)[-1], d["title"],
                      f"{int(age.total_seconds() // 3600)}h{int(age.total_seconds() % 3600 // 60):02d}m")
    out.print(table)
    console.print(f"{len(data)} tasks")


@tasks_app.command("close")
def tasks_close(task_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Mark a task done once a person has handled it (recorded with who did it).

    Example: `tongdao tasks close 7`
    """
    s = _settings()
    row = _store(s).close_task(task_id, _actor(s))
    if row is None:
        raise _fail(f"no task {task_id} (tongdao tasks list)")
    console.print(f"task {task_id} done")


class DecisionAction(StrEnum):
    approve = "approve"
    reject = "reject"
    edit = "edit"


@tasks_app.command("decide")
def tasks_decide(
    task_id: int = typer.Argument(..., metavar="ID"),
    action: DecisionAction = typer.Argument(..., metavar="approve|reject|edit"),
    comment: str = typer.Option("", "--comment", "-m", help="why: kept in the order's history and on the task"),
    role: str = typer.Option("", "--role", help="the business role you decide in (director, cfo...)"),
    warehouse: str = typer.Option("", "--warehouse", help="edit: ship from this warehouse code"),
    carrier: str = typer.Option("", "--carrier", help="edit: ship with this carrier code (SF, ZTO...)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer an approval or manual-review task: approve, reject, or edit (warehouse, carrier) and release.

    The order's workflow takes the decision at once (a Temporal update) or says why not.
    Example: `tongdao tasks decide 12 approve --role director -m "known customer"`
    """
    from worker.client import connect
    from workflows.decisions.client import NotDecidable, decide
    from workflows.decisions.models import Decision

    s = _settings()
    store = _store(s)
    if action != DecisionAction.edit and (warehouse or carrier):
        raise _fail("--warehouse and --carrier go with edit")
    decision = Decision(action=action.value, actor=_actor(s), comment=comment, role=role, warehouse=warehouse,
                        carrier=carrier)

    async def run() -> Any:
        try:
            client = await connect(s.temporal_target, s.temporal_namespace, wait_s=2)
        except Exception:
            raise _fail(f"Temporal at {s.temporal_target} is not reachable: start `tongdao up`") from None
        return await decide(client, store, task_id, decision)

    try:
        result = asyncio.run(run())
    except typer.Exit:
        raise
    except (LookupError, NotDecidable) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps({"task": task_id, **result.model_dump()}, ensure_ascii=False))
        return
    console.print(f"task {task_id}: {result.message}; the order is now {result.stage}")


@quarantine_app.command("replay")
def quarantine_replay(qid: int = typer.Argument(..., metavar="ID")) -> None:
    """Replay a parked order (after fixing the mapping, the cross-reference or the source data).

    The order's workflow re-runs the step that failed with the current mapping version.
    Example: `tongdao quarantine replay 3`
    """
    from worker.client import connect
    from workflows.order.client import request_replay

    s = _settings()
    store = _store(s)

    async def run() -> Any:
        try:
            client = await connect(s.temporal_target, s.temporal_namespace, wait_s=5)
        except Exception:
            raise _fail(f"Temporal at {s.temporal_target} is not reachable: start `tongdao up`") from None
        return await request_replay(client, store, qid, _actor(s))

    try:
        row = asyncio.run(run())
    except typer.Exit:
        raise
    except (LookupError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        raise _fail(f"cannot signal the order's workflow: {exc} (is `tongdao up` running?)") from None
    console.print(f"replaying {row.order_key} (workflow {row.workflow_id})")


# -- xref, schema --------------------------------------------------------------------------------
@xref_app.command("load")
def xref_load(table: str, file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                       help="JSON object {external: ours}")) -> None:
    """Load a cross-reference table used by mapping lookups.

    Example: `tongdao xref load sku examples/xref/taobao_skus.json`
    """
    values: dict[str, Any] = _read_json(file, "cross-reference table")
    if any(isinstance(v, dict | list) for v in values.values()):
        raise _fail(f"{file}: values must be strings or numbers ({{\"external\": \"ours\"}}), not objects or lists")
    _store().set_xref(table, {str(k): str(v) for k, v in values.items()})
    console.print(f"{len(values)} entries in {table}")


@schema_app.command("export")
def schema_export(out_dir: Path = typer.Option(Path("docs/schema"), "--out", help="directory to write into")) -> None:
    """Write the canonical model's JSON Schema files (order, sku, inventory level, shipment).

    Example: `tongdao schema export --out docs/schema`
    """
    from canonical.schema import export_schemas

    try:
        paths = export_schemas(out_dir)
    except OSError as exc:
        raise _fail(f"--out {out_dir}: {exc.strerror or exc}") from None
    for path in paths:
        console.print(f"wrote {path}")


# -- flows ---------------------------------------------------------------------------------------
def _flow_ops(need_temporal: bool):  # noqa: ANN202
    """FlowOps with a Temporal client when one answers (or fail when the command needs it)."""
    from flows.runtime import FlowOps
    from worker.client import connect

    s = _settings()
    store = _store(s)

    async def make() -> FlowOps:
        try:
            client = await connect(s.temporal_target, s.temporal_namespace, wait_s=2)
        except Exception:
            if need_temporal:
                raise _fail(f"Temporal at {s.temporal_target} is not reachable: start `tongdao up`") from None
            client = None
        return FlowOps(client, store, s.task_queue, _actor(s))

    return make


def _run_flow_op(need_temporal: bool, op: str, *args: Any, as_json: bool = False) -> Any:
    from flows.model import FlowError
    from flows.runtime import FlowNotFound

    async def go() -> Any:
        ops = await _flow_ops(need_temporal)()
        return await getattr(ops, op)(*args)

    try:
        result = asyncio.run(go())
    except typer.Exit:  # already reported (click's Exit is a RuntimeError: it must not be reported twice)
        raise
    except (FlowNotFound, FlowError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    return result


@flows_app.command("add")
def flows_add(file: Path = typer.Option(..., "--file", "-f", exists=True, dir_okay=False,
                                        help="flow YAML/JSON")) -> None:
    """Add or change a flow; its schedules are (re)created. Runs in flight keep their version.

    Example: `tongdao flows add --file examples/flows/minimal.yaml`
    """
    from flows.model import FlowError, load_flow

    _read_text(file, "flow file (YAML or JSON)")
    try:
        flow = load_flow(file)
    except FlowError as exc:
        raise _fail(str(exc)) from None
    result = _run_flow_op(False, "add", flow)
    note = "" if result["applied"] else " (stored; schedules are created when `tongdao up` starts)"
    console.print(f"{'added' if result['created'] else 'changed'} flow [bold]{flow.name}[/bold] "
                  f"version {result['version']}{note}")


@flows_app.command("list")
def flows_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List flows with their version and state.

    Example: `tongdao flows list`
    """
    rows = _store().list_flows()
    data = [{"name": r.name, "version": r.version, "paused": r.paused,
             "enabled": r.definition.get("enabled", True),
             "sources": [f"{x['connector']}/{x.get('stream', 'orders')}" for x in r.definition["sources"]],
             "targets": {k: v for k, v in r.definition["targets"].items() if k in ("wms", "erp") and v},
             "schedule": {k: v for k, v in r.definition.get("schedule", {}).items() if v},
             "updated_at": r.updated_at.isoformat(), "updated_by": r.updated_by} for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str))
        return
    table = Table("name", "version", "state", "sources", "targets", "schedule", "updated by")
    for d in data:
        state = "paused" if d["paused"] else ("enabled" if d["enabled"] else "disabled")
        table.add_row(d["name"], d["version"], state, ", ".join(d["sources"]),
                      ", ".join(f"{k}={v}" for k, v in d["targets"].items()), json.dumps(d["schedule"], default=str),
                      d["updated_by"])
    out.print(table)


@flows_app.command("show")
def flows_show(name: str) -> None:
    """Show a flow's definition, version and state.

    Example: `tongdao flows show tmall-to-wms-erp`
    """
    row = _store().get_flow(name)
    if row is None:
        raise _fail(f"no flow named {name!r}")
    print(json.dumps({"name": row.name, "version": row.version, "paused": row.paused,
                      "created_at": row.created_at.isoformat(), "created_by": row.created_by,
                      "updated_at": row.updated_at.isoformat(), "updated_by": row.updated_by,
                      "definition": row.definition}, indent=2, ensure_ascii=False, default=str))


@flows_app.command("pause")
def flows_pause(name: str) -> None:
    """Pause a flow: its schedules stop, inbound pushes are kept until resume.

    Example: `tongdao flows pause tmall-to-wms-erp`
    """
    _run_flow_op(True, "pause", name)
    console.print(f"paused {name}")


@flows_app.command("resume")
def flows_resume(name: str) -> None:
    """Resume a paused flow: kept pushes are delivered and a run starts at once to catch up.

    Example: `tongdao flows resume tmall-to-wms-erp`
    """
    result = _run_flow_op(True, "resume", name)
    console.print(f"resumed {name}; {result['released_pushes']} kept pushes delivered")


@flows_app.command("run-now")
def flows_run_now(name: str) -> None:
    """Start a run of every source of the flow now (a running one is not doubled).

    Example: `tongdao flows run-now tmall-to-wms-erp`
    """
    _run_flow_op(True, "run_now", name)
    console.print(f"triggered {name}")


@flows_app.command("backfill")
def flows_backfill(
    name: str,
    since: str = typer.Option(..., "--since", help="ISO 8601 with zone"),
    until: str = typer.Option(None, "--until", help="ISO 8601 with zone; default now"),
) -> None:
    """Re-read a past period in pages beside the live sync (known orders are no-ops).

    Example: `tongdao flows backfill tmall-to-wms-erp --since 2026-10-24T00:00:00+08:00`
    """
    start = _parse_time(since, "--since")
    end = _parse_time(until, "--until") if until else datetime.now(UTC)
    if end <= start:
        raise _fail("--until must be after --since")
    result = _run_flow_op(True, "backfill", name, start, end)
    for wf in result["workflows"]:
        console.print(f"started {wf}")


@flows_app.command("remove")
def flows_remove(name: str) -> None:
    """Remove a flow and its schedules (orders in flight finish).

    Example: `tongdao flows remove old-flow`
    """
    _run_flow_op(False, "remove", name)
    console.print(f"removed {name}")


@flows_app.command("status")
def flows_status(name: str = typer.Argument(None), as_json: bool = typer.Option(False, "--json")) -> None:
    """Per flow and source: cursor, lag, runs and orders in the last hour, failures, quarantine.

    Example: `tongdao flows status --json`
    """
    result = _run_flow_op(False, "status", *( [name] if name else []))
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    table = Table("flow", "state", "source", "cursor (UTC)", "lag", "runs/h", "orders/h", "failed/h", "quarantined",
                  "held pushes")
    for f in result:
        for src in f["sources"]:
            lag = f"{src['lag_s']:.0f}s" if src.get("lag_s") is not None else "-"
            table.add_row(f"{f['flow']}@{f['version']}", "paused" if f["paused"] else "running",
                          f"{src['connector']}/{src['stream']}", (src["cursor"] or "-")[:19], lag,
                          str(src.get("runs_last_hour", "-")), str(src.get("orders_last_hour", "-")),
                          str(src.get("failures_last_hour", "-")), str(src.get("quarantined", "-")),
                          str(f["held_pushes"]))
    out.print(table)



# -- audit ---------------------------------------------------------------------------------------
async def _audit_client(s: Settings, required: bool = False) -> Any:
    """A Temporal client, or None (with a note) when Temporal does not answer: timelines then come
    from the archive alone."""
    from worker.client import connect

    try:
        return await connect(s.temporal_target, s.temporal_namespace, wait_s=2)
    except Exception:
        if required:
            raise _fail(f"Temporal at {s.temporal_target} is not reachable: start `tongdao up`") from None
        console.print(f"[yellow]note:[/yellow] Temporal at {escape(s.temporal_target)} is not reachable; "
                      "reading the archive only")
        return None


def _audit_run(coro_of: Any, required: bool = False) -> Any:
    """Run an audit call with a client (connected in the same event loop); one error line for what
    the auditor can act on."""
    from temporalio.service import RPCError

    s = _settings()
    store = _store(s)

    async def go() -> Any:
        return await coro_of(await _audit_client(s, required), store, s)

    try:
        return asyncio.run(go())
    except typer.Exit:
        raise
    except LookupError as exc:
        raise _fail(str(exc).strip("'\"")) from None
    except RPCError as exc:
        raise _fail(f"Temporal: {exc.message}") from None


@audit_app.command("order")
def audit_order(channel: str, shop: str, external_id: str = typer.Argument(..., metavar="EXTERNAL_ID"),
                as_json: bool = typer.Option(False, "--json", help="the timeline as one JSON object")) -> None:
    """An order's timeline: each step, external call (with its idempotency key), signal, stage, mapping and
    flow version, quarantine, task and human decision, from Temporal or, after retention, the archive.

    Example: `tongdao audit order taobao tmall-main 3912345678901234567`
    """
    from workflows.audit.timeline import order_timeline, render_text

    timeline = _audit_run(lambda c, st, s: order_timeline(c, st, channel, shop, external_id))
    if as_json:
        print(timeline.model_dump_json())
        return
    print(render_text(timeline))


@audit_app.command("sku")
def audit_sku(sku: str, as_json: bool = typer.Option(False, "--json"),
              limit: int = typer.Option(20, "--limit", min=1, help="timelines shown (the total is counted)")) -> None:
    """The orders that held a SKU (Temporal's Skus search attribute, and the archive), with their timelines.

    Example: `tongdao audit sku TD-SKU-0005 --limit 5`
    """
    from workflows.audit.models import Timeline
    from workflows.audit.timeline import render_text, sku_timelines

    result = _audit_run(lambda c, st, s: sku_timelines(c, st, sku, s.task_queue, limit))
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for data in result["orders"]:
        print(render_text(Timeline.model_validate(data)) + "\n")
    if result.get("stock"):
        print(f"stock movements of {sku} (the pool's ledger, oldest first):")
        for entry in result["stock"]:
            print(f"  {entry['at'][:23]}  {entry['what']}")
    console.print(f"{result['total']} orders held {sku}" + (f" (first {limit} shown)" if result["truncated"] else ""))


@audit_app.command("spec")
def audit_spec(digest: str = typer.Argument(..., metavar="HASH", help="content hash, or a unique prefix (8+)"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the mapping spec text behind a hash shown on an order (timeline, quarantine, logs).

    Example: `tongdao audit spec b41acfd514ad`
    """
    try:
        row = _store().get_spec_text(digest)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if row is None:
        raise _fail(f"no mapping spec text with hash {digest!r}")
    if as_json:
        print(json.dumps({"hash": row.content_hash, "name": row.name, "source": row.source,
                          "first_seen_at": row.first_seen_at.isoformat(), "text": row.text}, ensure_ascii=False))
        return
    console.print(f"# {row.name} @ {row.content_hash} (from {row.source}, first seen {row.first_seen_at:%Y-%m-%d})")
    sys.stdout.write(row.text if row.text.endswith("\n") else row.text + "\n")


@audit_app.command("export")
def audit_export(
    channel: str = typer.Argument(None), shop: str = typer.Argument(None),
    external_id: str = typer.Argument(None, metavar="EXTERNAL_ID"),
    sku: str = typer.Option(None, "--sku", help="every order that held this SKU instead of one order"),
    out_file: Path = typer.Option(..., "--out", dir_okay=False, help="JSON file to write"),
) -> None:
    """Write timelines and raw histories to a file an auditor can keep. Timelines are redacted; histories
    are as Temporal stored them (payloads encrypted), so the file holds no personal data in clear.

    Example: `tongdao audit export taobao tmall-main 3912345678901234567 --out order.json`
    """
    from canonical import order_key
    from workflows.audit.client import export_orders
    from workflows.audit.timeline import sku_order_keys

    if sku and (channel or shop or external_id):
        raise _fail("give either CHANNEL SHOP EXTERNAL_ID or --sku SKU, not both")
    if not sku and not (channel and shop and external_id):
        raise _fail("give CHANNEL SHOP EXTERNAL_ID, or --sku SKU")

    async def run(client: Any, store: Any, s: Settings) -> Any:
        keys = (await sku_order_keys(client, store, sku, s.task_queue) if sku
                else [order_key(channel, shop, external_id)])
        if not keys:
            raise LookupError(f"no order held SKU {sku}")
        return await export_orders(client, store, keys, _actor(s))

    data = _audit_run(run)
    try:
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # an audit file is not for everyone
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
    except OSError as exc:
        raise _fail(f"--out {out_file}: {exc.strerror or exc}") from None
    console.print(f"wrote {len(data['orders'])} order(s) to {out_file}")


@audit_app.command("archive")
def audit_archive(as_json: bool = typer.Option(False, "--json")) -> None:
    """Archive now what closed since the archiver's last pass (it runs on its own every minute).

    Example: `tongdao audit archive --json`
    """
    from workflows.audit.client import archive_now

    counts = _audit_run(lambda c, st, s: archive_now(c, st, s.task_queue), required=True)
    if as_json:
        print(counts.model_dump_json())
        return
    console.print(f"archived {counts.archived} closed run(s) ({counts.listed} listed, {counts.failed} missed)")


# -- orders reconcile ----------------------------------------------------------------------------
@orders_app.command("reconcile")
def orders_reconcile(
    flow: str = typer.Argument(..., metavar="FLOW", help="the flow whose sources are compared"),
    since: str = typer.Option(..., "--since", help="ISO 8601 with zone: start of the window (modification time)"),
    until: str = typer.Option(None, "--until", help="ISO 8601 with zone; default now"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON line"),
    fix: bool = typer.Option(False, "--fix", help="re-ingest the missing orders (a backfill of the window) and "
                                                  "wait for it"),
) -> None:
    """Compare what each source of FLOW lists in a window with what the hub holds; report the missing.

    An order is missing when the hub store does not know it, or when its workflow failed, was
    terminated or timed out. `--fix` re-reads the window as a backfill: known orders are no-ops,
    missing ones are handed over again (failed workflows start anew). Exits 1 while orders are missing.

    Example: `tongdao orders reconcile tmall-to-wms-erp --since 2026-11-11T00:00:00+08:00 --json --fix`
    """
    start = _parse_time(since, "--since")
    end = _parse_time(until, "--until") if until else datetime.now(UTC)
    if end <= start:
        raise _fail("--until must be after --since")
    result = _run_flow_op(True, "reconcile_orders", flow, start, end, fix, as_json=as_json)
    if not as_json:
        table = Table("source", "listed", "in hub", "missing", "fixed", "missing ids (first 20)")
        for src in result["sources"]:
            table.add_row(src["connector"], str(src["listed"]), str(src["in_hub"]), str(len(src["missing"])),
                          str(src["fixed"]) if fix else "-", " ".join(src["missing"][:20]))
        out.print(table)
        console.print(f"{flow}: {result['missing_total']} missing between {result['since']} and {result['until']}"
                      + (f", {result['fixed_total']} fixed" if fix else ""))
    still = result["missing_total"] - (result["fixed_total"] if fix else 0)
    raise typer.Exit(1 if still > 0 else 0)


@privacy_app.command("purge")
def privacy_purge(
    older_than: str | None = typer.Option(None, "--older-than", metavar="AGE",
                                          help="30d, 12h, 2w, 6m; default TONGDAO_PERSONAL_DATA_RETENTION_DAYS"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be purged, change nothing"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove receivers' and buyers' personal data of finished orders last changed before the cutoff.

    Finished: shipped, split shipments, released, closed unpaid, cancelled before shipment (an
    after-sales order once its tasks are closed). Both the canonical order and every raw document
    of it keep ids, amounts and SKUs; names, phones and addresses become a purge marker. Run it
    daily (cron, a Kubernetes CronJob): PIPL asks for the shortest retention needed.

    Example: `tongdao privacy purge --older-than 30d --dry-run --json`
    """
    from store.personal import parse_age
    from store.secrets import SecretKeyError

    s = _settings()
    try:
        age = parse_age(older_than) if older_than is not None else parse_age(f"{s.personal_data_retention_days}d")
    except ValueError as exc:
        raise _fail(f"--older-than: {exc}") from None
    cutoff = datetime.now(UTC) - age
    try:
        counts = _store(s).purge_personal_data(cutoff, dry_run=dry_run)
    except SecretKeyError as exc:
        raise _fail(str(exc)) from None
    result = {"cutoff": cutoff.isoformat(), "dry_run": dry_run, **counts}
    if as_json:
        print(json.dumps(result))
        return
    verb = "would purge" if dry_run else "purged"
    console.print(f"{verb} personal data of {counts['orders_purged']} orders and {counts['raw_documents_purged']} "
                  f"raw documents ({counts['fields_purged']} fields; {counts['orders_eligible']} finished orders "
                  f"last changed before {cutoff:%Y-%m-%d %H:%M} UTC)")


@secrets_app.command("rotate")
def secrets_rotate(as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-encrypt every connector secret and every personal-data field with the FIRST key of the ring.

    Rotation: put a new key first in TONGDAO_SECRET_KEY (or TONGDAO_SECRET_KEY_FILE), keeping the old
    ones after it; restart the hub; run this; then remove the old keys. Fields still in clear (stored
    by a version without encryption) are sealed on the way. Running it twice is harmless.

    Example: `TONGDAO_SECRET_KEY=NEWKEY,OLDKEY tongdao secrets rotate --json`
    """
    from store.secrets import SecretKeyError

    s = _settings()
    store = _store(s)
    try:
        counts = store.rotate_secrets()
    except SecretKeyError as exc:
        raise _fail(str(exc)) from None
    result = {"keys_in_ring": store.box.key_count, **counts}
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"re-encrypted with the first of {store.box.key_count} keys: {counts['connectors']} connectors' "
                  f"secrets, {counts['fields_rotated']} personal-data fields in {counts['raw_documents']} raw "
                  f"documents and {counts['orders']} orders ({counts['fields_sealed']} found in clear, now sealed)")


def main() -> None:
    """The ``tongdao`` entry point.

    Files the hub creates (its store, the secret key, the embedded Temporal's history and log, which
    that server creates itself) are for this user only: the umask is set here so child processes
    inherit it. Any error a command did not turn into a sentence still ends as one line and exit 1;
    ``TONGDAO_DEBUG=1`` shows the traceback instead.
    """
    os.umask(0o077)
    try:
        app()
    except Exception as exc:
        if os.environ.get("TONGDAO_DEBUG", "") not in ("", "0"):
            raise
        text = _one_line(f"{type(exc).__name__}: {exc}").rstrip(": ")
        console.print(f"[red]error:[/red] {escape(text)} (TONGDAO_DEBUG=1 shows the traceback)", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
