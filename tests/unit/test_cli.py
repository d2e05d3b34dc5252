"""The `tongdao` CLI: registration files, dry-run pull, mapping preview, quarantine, schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.settings import get_settings
from simulators.catalog import CATALOG
from simulators.server import BackgroundServer
from simulators.taobao import TaobaoSimulator

ROOT = Path(__file__).parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TONGDAO_HOME", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_connectors_add_list_show_remove() -> None:
    for name in ("taobao", "qimen-wms", "kingdee"):
        code, _, err = run("connectors", "add", "--file", str(ROOT / "examples/connectors" / f"{name}.yaml"))
        assert code == 0, err
    code, out, _ = run("connectors", "list", "--json")
    listed = {c["name"]: c for c in json.loads(out)}
    assert set(listed) == {"tmall-main", "qimen-hz", "kingdee-prod"}
    assert "orders" in listed["tmall-main"]["capabilities"]
    code, out, _ = run("connectors", "show", "tmall-main")
    assert code == 0 and "the-app-secret" not in out and "********" in out
    code, _, _ = run("connectors", "remove", "qimen-hz")
    assert code == 0
    code, _, err = run("connectors", "show", "qimen-hz")
    assert code == 1 and "no connector named" in err


def test_connectors_add_reports_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: taobao\nsettings: {base_url: http://x, app_key: '1', sign_method: sha1}\n"
                   "secrets: {app_secret: s}\n")
    code, _, err = run("connectors", "add", "--file", str(bad))
    assert code == 1 and "settings.sign_method" in err


def test_pull_is_a_dry_run_printing_canonical_orders(tmp_path: Path) -> None:
    sim = TaobaoSimulator(apps={"123": "sec"}, shops={"sess": "shop-x"}, orders_per_shop=7, malformed_per_shop=0,
                          seed=3)
    with BackgroundServer(sim.app) as server:
        reg = tmp_path / "shop.yaml"
        reg.write_text(f"name: shop-x\nkind: taobao\nsettings: {{base_url: '{server.base_url}/router/rest', "
                       "app_key: '123', session: sess, sign_method: md5}\nsecrets: {app_secret: sec}\n")
        assert run("connectors", "add", "--file", str(reg))[0] == 0
        xref = tmp_path / "skus.json"
        xref.write_text(json.dumps({str(c["sku_id"]): c["sku"] for c in CATALOG}))
        assert run("xref", "load", "sku", str(xref))[0] == 0
        since = (datetime.now(UTC) - timedelta(hours=8)).isoformat()
        code, out, err = run("connectors", "pull", "shop-x", "--stream", "orders", "--since", since, "--json")
    assert code == 0, err
    orders = json.loads(out)
    assert len(orders) == 7 and all(o["lines"] and o["channel"] == "taobao" for o in orders)
    assert sim.state()["shipped_count"] == 0  # nothing was written anywhere


def test_pull_rejects_a_time_without_zone() -> None:
    code, _, err = run("connectors", "pull", "x", "--since", "2026-11-11T00:00:00")
    assert code == 1 and "no time zone" in err


def test_mappings_preview_prints_result_or_errors(tmp_path: Path) -> None:
    fixture = ROOT / "tests/fixtures/taobao_trade.json"
    xref = tmp_path / "skus.json"
    trade = json.loads(fixture.read_text())
    xref.write_text(json.dumps({str(o["sku_id"]): "TD-SKU-0001" for o in trade["orders"]["order"]}))
    code, out, err = run("mappings", "preview", "taobao_order", str(fixture), "--xref", f"sku={xref}")
    assert code == 0, err
    assert json.loads(out)["external_id"] == str(trade["tid"])
    trade["payment"] = "12,30"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(trade))
    code, _, err = run("mappings", "preview", "taobao_order", str(bad), "--xref", f"sku={xref}")
    assert code == 1 and "payment" in err and "12,30" in err


def test_quarantine_list_and_schema_export(tmp_path: Path) -> None:
    code, out, _ = run("quarantine", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, _ = run("schema", "export", "--out", str(tmp_path / "schema"))
    assert code == 0 and (tmp_path / "schema/order.schema.json").exists()


def test_every_command_has_help_with_an_example() -> None:
    for args in (["up"], ["demo"], ["connectors", "add"], ["connectors", "list"], ["connectors", "show"],
                 ["connectors", "test"], ["connectors", "remove"], ["connectors", "pull"],
                 ["mappings", "preview"], ["quarantine", "list"], ["quarantine", "replay"], ["xref", "load"],
                 ["schema", "export"], ["flows", "add"], ["flows", "pause"], ["tasks", "list"],
                 ["tokens", "create"], ["orders", "reconcile"]):
        code, out, _ = run(*args, "--help")
        assert code == 0 and "Example" in out, args


def test_state_files_are_for_their_owner_only(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tongdao` sets umask 0o077 at start-up (children such as the embedded Temporal inherit it), the
    state directory is 0700 and the store and the key are 0600 even when a file was made wider."""
    import os
    import sys

    from hub import cli

    monkeypatch.setattr(sys, "argv", ["tongdao", "tokens", "create", "ops", "--role", "auditor"])
    old = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert os.umask(0o022) == 0o077  # what main() left for the process and its children
    finally:
        os.umask(old)
    assert exit_info.value.code in (0, None)
    assert home.stat().st_mode & 0o777 == 0o700
    files = {p.name: p.stat().st_mode & 0o777 for p in home.iterdir()}
    assert {"tongdao.db", "secret.key"} <= set(files)
    assert all(mode == 0o600 for mode in files.values()), files


def test_open_store_and_home_tighten_what_an_older_version_left(home: Path) -> None:
    import os

    from hub.settings import Settings
    from store import open_store

    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    open_store(f"sqlite:///{home / 'tongdao.db'}", None, home)
    for name in ("tongdao.db", "tongdao.db-wal", "tongdao.db-shm", "secret.key"):
        if (home / name).exists():
            os.chmod(home / name, 0o644)
    Settings(home=home).ensure_home()
    open_store(f"sqlite:///{home / 'tongdao.db'}", None, home)
    assert home.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in home.iterdir()}
    assert modes["tongdao.db"] == modes["secret.key"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
