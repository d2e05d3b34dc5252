"""Rule sets in the store (every version kept, audit entries, the velocity log) and `tongdao rules`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from hub.cli_rules import rules_app
from hub.settings import get_settings
from mappings.rules import DEFAULT_RULE_SET, load_rule_set, parse_rule_set
from store import open_store
from store.tables import Base

ROOT = Path(__file__).parents[2]
BIG = ROOT / "examples/orders/big_order.json"
SUSPICIOUS = ROOT / "examples/orders/suspicious_order.json"
T0 = datetime(2026, 11, 11, 2, 0, tzinfo=UTC)

app = typer.Typer()
app.add_typer(rules_app, name="rules")  # hub/cli.py registers it the same way
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    return open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TONGDAO_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("TONGDAO_ACTOR", "tester")
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def changed_copy(tmp_path: Path, threshold: int) -> Path:
    data = yaml.safe_load(DEFAULT_RULE_SET.read_text(encoding="utf-8"))
    data["sections"]["approval"][0]["when"] = f"order.currency == 'CNY' && order.total > {threshold}"
    path = tmp_path / f"rules-{threshold}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# -- store ---------------------------------------------------------------------------------------------
def test_the_migration_builds_what_the_tables_declare(store) -> None:  # noqa: ANN001
    with store.engine.connect() as conn:
        diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                if any(t in str(d) for t in ("rule_set", "velocity"))]
    assert diff == []


def test_every_version_is_kept_and_identical_content_is_a_no_op(store) -> None:  # noqa: ANN001
    v1 = load_rule_set(DEFAULT_RULE_SET)
    data = v1.model_dump(mode="json")
    data["sections"]["approval"][0]["when"] = "order.total > 8000"
    v2 = parse_rule_set(data)
    assert store.save_rule_set(v1.name, v1.version(), v1.model_dump(mode="json"), "alice") is True
    assert store.save_rule_set(v1.name, v1.version(), v1.model_dump(mode="json"), "bob") is False
    assert store.save_rule_set(v2.name, v2.version(), v2.model_dump(mode="json"), "bob") is True
    assert [v.version for v in store.rule_set_versions(v1.name)] == [v1.version(), v2.version()]
    current = store.get_rule_set(v1.name)
    assert current.version == v2.version() and current.current and current.created_by == "bob"
    old = store.get_rule_set(v1.name, v1.version())
    assert not old.current and parse_rule_set(old.definition).version() == v1.version()
    # back to the first version: no new version, but the current one changes (and is audited)
    assert store.save_rule_set(v1.name, v1.version(), v1.model_dump(mode="json"), "carol") is True
    assert len(store.rule_set_versions(v1.name)) == 2 and store.get_rule_set(v1.name).version == v1.version()
    audit = [(e.actor, e.action, e.subject, e.details) for e in reversed(store.audit_log()) if
             e.action == "ruleset.save"]
    assert audit == [
        ("alice", "ruleset.save", v1.name, {"version": v1.version(), "previous": None, "new_version": True}),
        ("bob", "ruleset.save", v1.name, {"version": v2.version(), "previous": v1.version(), "new_version": True}),
        ("carol", "ruleset.save", v1.name, {"version": v1.version(), "previous": v2.version(), "new_version": False}),
    ]
    listed = store.list_rule_sets()
    assert [(r["name"], r["version"], r["versions"], r["updated_by"]) for r in listed] == [
        (v1.name, v1.version(), 2, "carol")]
    assert store.get_rule_set("nope") is None and store.get_rule_set(v1.name, "000000000000") is None


def test_a_version_is_its_content(store) -> None:  # noqa: ANN001
    store.save_rule_set("x", "abcdefabcdef", {"name": "x"}, "a")
    with pytest.raises(ValueError, match="stored with other content"):
        store.save_rule_set("x", "abcdefabcdef", {"name": "x", "description": "other"}, "a")


def test_the_velocity_log_counts_distinct_orders_in_the_window(store) -> None:  # noqa: ANN001
    h = "ab" * 32
    assert store.record_velocity("phone", h, "tmall:s:1", T0) is True
    assert store.record_velocity("phone", h, "tmall:s:1", T0 + timedelta(minutes=1)) is False  # a replay
    store.record_velocity("phone", h, "tmall:s:2", T0 + timedelta(minutes=10))
    store.record_velocity("phone", h, "tmall:s:3", T0 + timedelta(minutes=40))
    store.record_velocity("address", h, "tmall:s:4", T0 + timedelta(minutes=40))
    assert store.count_velocity("phone", h, T0) == 3
    assert store.count_velocity("phone", h, T0 + timedelta(minutes=5)) == 2
    assert store.count_velocity("phone", h, T0, until=T0 + timedelta(minutes=30)) == 2
    assert store.count_velocity("phone", h, T0, until=T0 + timedelta(minutes=30), including="tmall:s:9") == 3
    assert store.count_velocity("phone", h, T0, including="tmall:s:2") == 3  # already counted
    assert store.count_velocity("phone", "cd" * 32, T0) == 0
    with pytest.raises(ValueError, match="velocity kind"):
        store.record_velocity("email", h, "k", T0)
    assert store.purge_velocity(T0 + timedelta(minutes=20)) == 2
    assert store.count_velocity("phone", h, T0) == 1


# -- CLI -----------------------------------------------------------------------------------------------
def test_rules_test_on_the_shipped_examples(home: Path) -> None:
    code, out, err = run("rules", "test", str(DEFAULT_RULE_SET), str(BIG))
    assert code == 0, err
    assert "big-order" in out and "director within 4h, remind after 2h, then escalate to cfo" in out
    assert "wms-sh" in out and "TD-SKU-0099" in out
    code, out, err = run("rules", "test", str(DEFAULT_RULE_SET), str(SUSPICIOUS), "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["review"] == ["address incomplete", "phone format", "blacklisted phone"]
    assert outcome["version"] == load_rule_set(DEFAULT_RULE_SET).version()
    fired = {(t["section"], t["rule"]) for t in outcome["rules"] if t["fired"]}
    assert {("audit", "address-complete"), ("audit", "mainland-mobile"), ("audit", "blacklist")} <= fired
    velocity = next(t for t in outcome["rules"] if t["rule"] == "velocity")
    assert velocity["reason"] == "1 order to this phone within 30m, not more than 3"  # this order, nothing recorded
    assert "1380013800" not in out


def test_rules_test_reads_velocity_and_stock_from_the_store(home: Path) -> None:
    from hub.cli import _store
    from mappings.rules import phone_hash

    store = _store()
    at = datetime(2026, 11, 11, 2, 50, tzinfo=UTC)
    for i in range(3):
        store.record_velocity("phone", phone_hash("1380013800"), f"pinduoduo:other:{i}", at - timedelta(minutes=i))
    code, out, err = run("rules", "test", str(DEFAULT_RULE_SET), str(SUSPICIOUS), "--json",
                         "--now", "2026-11-11T03:00:00+08:00")  # 19:00 UTC the day before: outside the window
    assert "more than 3 orders to one phone in 30 minutes" not in json.loads(out)["review"]
    code, out, err = run("rules", "test", str(DEFAULT_RULE_SET), str(SUSPICIOUS), "--json",
                         "--now", "2026-11-11T02:55:00Z")
    assert code == 0, err
    assert "more than 3 orders to one phone in 30 minutes" in json.loads(out)["review"]
    code, out, _ = run("rules", "test", str(DEFAULT_RULE_SET), str(SUSPICIOUS), "--json", "--no-store",
                       "--now", "2026-11-11T02:55:00Z")
    assert "more than 3 orders to one phone in 30 minutes" not in json.loads(out)["review"]
    # stock levels: a file, or the store's pool
    stock = home.parent / "stock.json"
    stock.write_text(json.dumps({"TD-SKU-0021": {"wms-sh": 0, "wms-gz": 1}}))
    code, out, err = run("rules", "test", str(DEFAULT_RULE_SET), str(SUSPICIOUS), "--json", "--stock", str(stock))
    assert code == 0, err
    assert json.loads(out)["review"][-1] == "stock short in the eligible warehouses: TD-SKU-0021 needs 2, 1 available"


def test_rules_apply_list_show_and_test_by_name(home: Path, tmp_path: Path) -> None:
    code, _, err = run("rules", "apply", str(DEFAULT_RULE_SET))
    assert code == 0 and "saved rule set default-audit" in err
    code, _, err = run("rules", "apply", str(DEFAULT_RULE_SET))
    assert code == 0 and "unchanged" in err
    code, out, err = run("rules", "apply", str(changed_copy(tmp_path, 8000)), "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["changed"] and second["versions"] == 2
    code, out, _ = run("rules", "list", "--json")
    assert [(r["name"], r["version"], r["versions"], r["updated_by"]) for r in json.loads(out)] == [
        ("default-audit", second["version"], 2, "tester")]
    first = load_rule_set(DEFAULT_RULE_SET).version()
    code, out, _ = run("rules", "show", "default-audit", "--version", first)
    assert code == 0 and out.startswith(f"# default-audit version {first}, saved") and "order.total > 5000" in out
    assert parse_rule_set(out).version() == first  # what show prints is the rule set again
    code, out, _ = run("rules", "show", "default-audit", "--json")
    shown = json.loads(out)
    assert shown["version"] == second["version"] and [v["version"] for v in shown["versions"]] == [
        first, second["version"]]
    # by name: the current version (threshold 8000) does not ask for approval of 5,999
    code, out, err = run("rules", "test", "default-audit", str(BIG), "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["approval"] is None and outcome["source"] == f"stored default-audit {second['version']}"
    code, out, _ = run("rules", "test", "default-audit", str(BIG), "--json", "--version", first)
    assert json.loads(out)["approval"]["role"] == "director"


def test_rules_commands_fail_with_one_precise_line(home: Path, tmp_path: Path) -> None:
    code, _, err = run("rules", "test", "no-such-set", str(BIG))
    assert code == 1 and "no rule set 'no-such-set' in the store" in err
    code, _, err = run("rules", "test", "missing/rules.yaml", str(BIG))
    assert code == 1 and "no such rule set file" in err
    bad_order = tmp_path / "order.json"
    bad_order.write_text(json.dumps({"channel": "tmall", "shop": "s"}))
    code, _, err = run("rules", "test", str(DEFAULT_RULE_SET), str(bad_order))
    assert code == 1 and "not a canonical order" in err and "external_id: Field required" in err
    bad_rules = tmp_path / "bad.yaml"
    bad_rules.write_text("name: x\nsections:\n  audit:\n    - {name: r, when: 'order.totl > 1', action: {review: x}}\n")
    code, _, err = run("rules", "apply", str(bad_rules))
    assert code == 1 and "sections.audit[0] (r).when: order has no field 'totl'" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run("rules", "show", "nothing")
    assert code == 1 and "no rule set named 'nothing'" in err


def test_rules_hash_matches_what_conditions_compare() -> None:
    from mappings.rules import phone_hash

    code, out, _ = run("rules", "hash", "13800138000", "+86 138-0013-8000")
    assert code == 0 and out.split() == [phone_hash("13800138000")] * 2


def test_every_rules_command_has_an_example() -> None:
    for name in ("test", "apply", "list", "show", "hash"):
        code, out, _ = run("rules", name, "--help")
        assert code == 0 and "Example:" in out, name
