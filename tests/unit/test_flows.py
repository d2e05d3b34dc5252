"""Flows: the model and its validation, routing, the registry check, and their storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import inspect

from canonical import Order
from flows import Flow, FlowError, check_against_registry, load_flow, parse_flow
from flows.model import StepPolicy, format_duration, parse_duration
from store import open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
MINIMAL = {
    "name": "tmall-to-wms-erp",
    "sources": [{"connector": "tmall-main", "stream": "orders"}],
    "targets": {"wms": "qimen-hz", "erp": "kingdee-prod"},
    "schedule": {"every": "1m"},
}


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    return open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)


def _problems(data: dict) -> list[str]:
    with pytest.raises(FlowError) as info:
        parse_flow(data)
    return info.value.problems


def _order(province: str, total: str) -> dict:
    """A canonical order as stored (model_dump(mode="json")): amounts are strings there."""
    order = Order(
        channel="taobao", shop="shop-a", external_id="3912345678901234567", status="paid",
        created_at=datetime(2026, 11, 11, tzinfo=UTC), modified_at=datetime(2026, 11, 11, tzinfo=UTC),
        item_total=Decimal(total), total=Decimal(total),
        receiver={"name": "张三", "mobile": "13800000000",
                  "address": {"province": province, "city": "某市", "street": "某路 1 号"}},
        lines=[{"line_id": "1", "sku": "SKU-1", "quantity": 1, "unit_price": Decimal(total),
                "total": Decimal(total)}],
    )
    return order.model_dump(mode="json")


# -- the model ------------------------------------------------------------------------------------
def test_minimal_file_loads_with_defaults() -> None:
    flow = load_flow(EXAMPLES / "minimal.yaml")
    assert flow.name == "tmall-to-wms-erp"
    source = flow.sources[0]
    assert (source.connector, source.stream, source.mapping, source.channel, source.shop) == (
        "tmall-main", "orders", None, "", "")
    assert source.mapping_for("taobao") == "taobao_order" and source.mapping_for("jd") == "jd_order"
    t = flow.targets
    assert (t.wms, t.erp, t.wms_mapping, t.erp_mapping, t.routes) == (
        "qimen-hz", "kingdee-prod", "qimen_deliveryorder", "kingdee_sale_order", [])
    assert flow.schedule.every == timedelta(minutes=1) and flow.schedule.cron is None
    assert not flow.schedule.webhooks
    assert flow.enabled and flow.context == {} and flow.retry == {} and flow.rules is None
    assert flow.backfill_page == timedelta(hours=1) and flow.backfill_pause == timedelta(seconds=2)
    policy = flow.policy("wms")
    assert policy == StepPolicy()
    assert (policy.timeout, policy.initial_interval, policy.max_interval, policy.max_attempts) == (
        timedelta(minutes=2), timedelta(seconds=1), timedelta(minutes=5), 0)
    assert flow == parse_flow(MINIMAL)


def test_default_schedule_is_every_five_minutes() -> None:
    data = {k: v for k, v in MINIMAL.items() if k != "schedule"}
    assert parse_flow(data).schedule.every == timedelta(minutes=5)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads_and_round_trips(path: Path) -> None:
    flow = load_flow(path)
    dumped = flow.model_dump(mode="json")
    again = Flow.model_validate(json.loads(json.dumps(dumped)))  # what the store gives back
    assert again == flow and again.version() == flow.version()


def test_demo_example_matches_the_demo_routing() -> None:
    flow = load_flow(EXAMPLES / "demo.yaml")
    assert [s.connector for s in flow.sources] == ["demo-taobao-a", "demo-taobao-b", "demo-jd", "demo-douyin",
                                                   "demo-shopify", "demo-pdd", "demo-amazon"]
    from hub.demo_channels import BUILDERS

    assert {f"demo-{kind}" for kind in BUILDERS} <= {s.connector for s in flow.sources}
    assert (flow.targets.wms, flow.targets.erp) == ("demo-wms", "demo-erp")
    assert flow.context == {"warehouse_code": "WH-HZ01", "owner_code": "TONGDAO", "customer": "CUST-TAOBAO",
                            "sale_org": "100"}


def test_json_files_load(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(MINIMAL))
    assert load_flow(path) == parse_flow(MINIMAL)


@pytest.mark.parametrize(("spelling", "expected"), [
    ("30s", timedelta(seconds=30)), ("1m", timedelta(minutes=1)), ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)), ("1h30m", timedelta(minutes=90)), (90, timedelta(seconds=90)),
    ("PT5M", "PT5M"),  # ISO 8601 is left for pydantic
])
def test_durations(spelling: object, expected: object) -> None:
    assert parse_duration(spelling) == expected
    if isinstance(expected, timedelta):
        assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("every", ["30s", 59, "0.5m"])
def test_schedule_under_a_minute_is_rejected(every: object) -> None:
    assert _problems({**MINIMAL, "schedule": {"every": every}}) == ["schedule.every: at least 1 minute"]


def test_schedule_forms() -> None:
    assert parse_flow({**MINIMAL, "schedule": {"every": 120}}).schedule.every == timedelta(minutes=2)
    assert parse_flow({**MINIMAL, "schedule": {"cron": "*/10 8-20 * * mon-fri"}}).schedule.cron
    hooks = parse_flow({**MINIMAL, "schedule": {"webhooks": True}}).schedule
    assert hooks.webhooks and hooks.every is None and hooks.cron is None
    assert "every or cron, not both" in _problems({**MINIMAL, "schedule": {"every": "1m", "cron": "* * * * *"}})[0]
    assert _problems({**MINIMAL, "schedule": {}})[0].startswith("schedule: give every")
    assert "5 fields" in _problems({**MINIMAL, "schedule": {"cron": "* * * *"}})[0]
    assert "out of range" in _problems({**MINIMAL, "schedule": {"cron": "61 * * * *"}})[0]
    assert "not a duration" in _problems({**MINIMAL, "schedule": {"every": "often"}})[0]


def test_bad_cel_in_a_route_is_rejected_naming_the_rule() -> None:
    targets = {"wms": "qimen-gz", "routes": [{"when": "order.total >", "wms": "qimen-sh"}]}
    problems = _problems({**MINIMAL, "targets": targets})
    assert len(problems) == 1 and problems[0].startswith("targets.routes[0].when: ")
    assert "order.total >" in problems[0]
    targets["routes"] = [{"when": "true"}, {"when": "shop == 'a'"}]
    assert _problems({**MINIMAL, "targets": targets})[0].startswith("targets.routes[1].when: unknown name 'shop'")


def test_unknown_keys_are_rejected() -> None:
    problems = _problems({**MINIMAL, "schedul": {"every": "1m"}, "targets": {"wms": "x", "wsm_mapping": "y"}})
    assert any(p.startswith("schedul: unknown field (did you mean 'schedule'?)") for p in problems)
    assert any(p.startswith("targets.wsm_mapping: unknown field (did you mean 'wms_mapping'?)") for p in problems)
    assert _problems({**MINIMAL, "retry": {"shipping": {}}})[0].startswith("retry.shipping: unknown step")


def test_every_problem_is_listed_with_its_path() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow({"name": "Bad Name", "sources": [], "targets": {}, "schedule": {"every": "10s"},
                    "retry": {"wms": {"max_attempts": -1}}})
    text = str(info.value)
    for expected in ("name: use lower-case", "sources: ", "targets: name at least one target",
                     "schedule.every: at least 1 minute", "retry.wms.max_attempts: "):
        assert expected in text
    assert len(info.value.problems) == 5


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="cannot read"):
        load_flow(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(FlowError, match="not valid YAML"):
        load_flow(bad)
    bad.write_text("- just a list")
    with pytest.raises(FlowError, match="a flow is a mapping"):
        load_flow(bad)


def test_content_hash_is_stable_across_key_order_and_follows_values(tmp_path: Path) -> None:
    flow = parse_flow(MINIMAL)
    reordered = dict(reversed(list(MINIMAL.items())))
    reordered["targets"] = {"erp": "kingdee-prod", "wms": "qimen-hz"}
    assert parse_flow(reordered).content_hash() == flow.content_hash()
    assert parse_flow({**MINIMAL, "schedule": {"every": 60}}).content_hash() == flow.content_hash()
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(reordered, allow_unicode=True))
    assert load_flow(path).version() == flow.version()
    assert len(flow.content_hash()) == 64 and flow.version() == flow.content_hash()[:12]
    changed = parse_flow({**MINIMAL, "schedule": {"every": "2m"}})
    assert changed.content_hash() != flow.content_hash() and changed.version() != flow.version()
    assert parse_flow({**MINIMAL, "context": {"owner_code": "X"}}).version() != flow.version()


def test_route_for_picks_the_first_matching_rule_and_falls_back_to_defaults() -> None:
    flow = parse_flow({
        **MINIMAL,
        "context": {"warehouse_code": "WH-GZ01", "owner_code": "TONGDAO"},
        "targets": {"wms": "qimen-gz", "erp": "kingdee-prod", "routes": [
            {"when": "order.total > 1000.0", "erp": "kingdee-vip", "context": {"customer": "VIP"}},
            {"when": "order.receiver.address.province in ['上海市', '江苏省', '浙江省', '安徽省']",
             "wms": "qimen-sh", "context": {"warehouse_code": "WH-SH01"}},
        ]},
    })
    assert flow.route_for(_order("上海市", "99.00")) == (
        "qimen-sh", "kingdee-prod", {"warehouse_code": "WH-SH01", "owner_code": "TONGDAO"})
    assert flow.route_for(_order("上海市", "1500.00")) == (  # first match wins, even if a later one matches
        "qimen-gz", "kingdee-vip", {"warehouse_code": "WH-GZ01", "owner_code": "TONGDAO", "customer": "VIP"})
    assert flow.route_for(_order("广东省", "99.00")) == (
        "qimen-gz", "kingdee-prod", {"warehouse_code": "WH-GZ01", "owner_code": "TONGDAO"})
    assert flow.route_for(Order.model_validate(_order("江苏省", "10")))[0] == "qimen-sh"
    # a plain dict with numbers works too
    assert flow.route_for({"total": 2000, "receiver": {"address": {"province": "广东省"}}})[1] == "kingdee-vip"
    assert flow.route_for({"total": 2000.0, "receiver": {"address": {"province": "广东省"}}})[1] == "kingdee-vip"


def test_by_province_example_routes() -> None:
    flow = load_flow(EXAMPLES / "by-province.yaml")
    wms, erp, context = flow.route_for(_order("浙江省", "50"))
    assert (wms, erp, context["warehouse_code"]) == ("qimen-sh", "kingdee-prod", "WH-SH01")
    wms, erp, context = flow.route_for(_order("四川省", "50"))
    assert (wms, erp, context["warehouse_code"]) == ("qimen-gz", "kingdee-prod", "WH-GZ01")


def test_route_for_names_the_rule_that_cannot_be_evaluated() -> None:
    flow = parse_flow({**MINIMAL, "targets": {"wms": "w", "routes": [{"when": "order.nothing == 1"}]}})
    with pytest.raises(FlowError, match=r"targets\.routes\[0\]\.when"):
        flow.route_for(_order("上海市", "1"))


def test_policy_per_step() -> None:
    flow = parse_flow({**MINIMAL, "retry": {"erp": {"timeout": "30s", "max_attempts": 5}}})
    assert flow.policy("erp").timeout == timedelta(seconds=30) and flow.policy("erp").max_attempts == 5
    assert flow.policy("erp").max_interval == timedelta(minutes=5)
    assert flow.policy("wms") == StepPolicy()
    with pytest.raises(ValueError, match="unknown step"):
        flow.policy("shipping")
    assert "max_interval must be at least" in _problems(
        {**MINIMAL, "retry": {"wms": {"initial_interval": "10m", "max_interval": "1m"}}})[0]


# -- against the registry -------------------------------------------------------------------------
def _register(store, *pairs: tuple[str, str]) -> None:  # noqa: ANN001
    for name, kind in pairs:
        store.save_connector(name, kind, {"base_url": "http://127.0.0.1:1"}, {}, "test")


def test_check_against_registry(store) -> None:  # noqa: ANN001
    flow = parse_flow(MINIMAL)
    _register(store, ("tmall-main", "taobao"), ("qimen-hz", "qimen"), ("kingdee-prod", "kingdee"))
    assert check_against_registry(flow, store) == []

    store.remove_connector("kingdee-prod")
    problems = check_against_registry(flow, store)
    assert problems == ["targets.erp: no connector named 'kingdee-prod' is registered (tongdao connectors list)"]

    _register(store, ("kingdee-prod", "qimen"))  # a WMS registered under the ERP's name
    problems = check_against_registry(flow, store)
    assert len(problems) == 1
    assert problems[0].startswith("targets.erp: connector 'kingdee-prod' (qimen) lacks the capability "
                                  "'sales_documents'")

    bad = parse_flow({**MINIMAL, "sources": [{"connector": "qimen-hz", "mapping": "no_such_spec"}],
                      "targets": {"wms": "qimen-hz", "routes": [{"when": "true", "wms": "ghost"}]}})
    problems = check_against_registry(bad, store)
    assert any(p.startswith("sources[0].connector: connector 'qimen-hz' (qimen) lacks the capability 'orders'")
               for p in problems)
    assert any(p.startswith("sources[0].mapping: mapping spec 'no_such_spec' does not load") for p in problems)
    assert any(p.startswith("targets.routes[0].wms: no connector named 'ghost'") for p in problems)


# -- storage --------------------------------------------------------------------------------------
def test_migrations_create_the_flow_tables(store) -> None:  # noqa: ANN001
    tables = set(inspect(store.engine).get_table_names())
    assert {"flows", "flow_versions", "held_pushes", "connectors", "alembic_version"} <= tables


def test_flow_storage_round_trip(store) -> None:  # noqa: ANN001
    one = parse_flow(MINIMAL)
    assert store.save_flow(one.name, one.version(), one.model_dump(mode="json"), "alice") is True
    row = store.get_flow(one.name)
    assert (row.version, row.paused, row.created_by, row.updated_by) == (one.version(), False, "alice", "alice")
    assert Flow.model_validate(row.definition) == one

    assert store.set_flow_paused(one.name, True, "bob") is True
    assert store.set_flow_paused("ghost", True, "bob") is False

    two = parse_flow({**MINIMAL, "schedule": {"every": "2m"}})
    assert store.save_flow(two.name, two.version(), two.model_dump(mode="json"), "carol") is False
    assert store.save_flow(two.name, two.version(), two.model_dump(mode="json"), "carol") is False  # same again
    row = store.get_flow(one.name)
    assert (row.version, row.paused, row.created_by, row.updated_by) == (two.version(), True, "alice", "carol")
    assert row.created_at <= row.updated_at and row.updated_at.tzinfo is not None

    assert parse_flow(store.get_flow_version(one.name, one.version())) == one
    assert parse_flow(store.get_flow_version(one.name, two.version())) == two
    assert store.get_flow_version(one.name, "000000000000") is None
    assert [r.name for r in store.list_flows()] == [one.name]

    assert store.remove_flow(one.name) is True and store.remove_flow(one.name) is False
    assert store.get_flow(one.name) is None and store.list_flows() == []
    assert store.get_flow_version(one.name, one.version()) is not None  # runs in flight can still load it


def test_held_pushes(store) -> None:  # noqa: ANN001
    first = store.hold_push("f", "demo-wms", {"type": "shipment", "order": "TD1"})
    second = store.hold_push("f", "demo-wms", {"type": "shipment", "order": "TD2"})
    store.hold_push("other", "demo-wms", {"type": "shipment", "order": "TD3"})
    held = store.held_pushes("f")
    assert [h.id for h in held] == [first, second] and held[0].event["order"] == "TD1"
    assert held[0].received_at.tzinfo is not None and held[0].released_at is None
    store.release_push(first)
    store.release_push(first)  # idempotent
    assert [h.id for h in store.held_pushes("f")] == [second]
    store.release_push(second)
    assert store.held_pushes("f") == [] and len(store.held_pushes("other")) == 1


# -- one target only; per-source ingest settings --------------------------------------------------
def test_erp_only_and_wms_only_flows_validate_and_route() -> None:
    erp_only = parse_flow({**MINIMAL, "targets": {"erp": "kingdee-prod", "routes": [
        {"when": "order.total > 1000.0", "erp": "kingdee-vip"}]}})
    assert erp_only.route_for(_order("上海市", "99.00")) == (None, "kingdee-prod", {})
    assert erp_only.route_for(_order("上海市", "1500.00")) == (None, "kingdee-vip", {})
    wms_only = parse_flow({**MINIMAL, "targets": {"wms": "qimen-hz"}})
    assert wms_only.route_for(_order("上海市", "99.00")) == ("qimen-hz", None, {})
    assert _problems({**MINIMAL, "targets": {"routes": []}}) == [
        "targets: name at least one target: wms or erp (or both)"]


def test_route_for_source_of_one_target_flows(store) -> None:  # noqa: ANN001
    from flows.runtime import route_for_source

    _register(store, ("tmall-main", "taobao"), ("kingdee-prod", "kingdee"), ("qimen-hz", "qimen"))
    erp_only = parse_flow({**MINIMAL, "targets": {"erp": "kingdee-prod"}})
    route = route_for_source(erp_only, erp_only.sources[0], store)
    assert (route.wms, route.erp, route.channel, route.flow) == (None, "kingdee-prod", "taobao", erp_only.name)
    assert check_against_registry(erp_only, store) == []
    wms_only = parse_flow({**MINIMAL, "targets": {"wms": "qimen-hz"}})
    assert (route_for_source(wms_only, wms_only.sources[0], store).erp, check_against_registry(wms_only, store)) == (
        None, [])


def test_source_ingest_settings_are_durations_and_default_to_the_kind() -> None:
    from connectors import connector_class

    flow = parse_flow({**MINIMAL, "sources": [
        {"connector": "tmall-main", "lag": "2m", "overlap": "15m", "chunk": "30m"},
        {"connector": "other-shop"}]})
    tuned, plain = flow.sources
    assert (tuned.lag, tuned.overlap, tuned.chunk) == (timedelta(minutes=2), timedelta(minutes=15),
                                                       timedelta(minutes=30))
    settings = tuned.ingest_settings("taobao")
    assert (settings.lag, settings.overlap, settings.chunk) == (tuned.lag, tuned.overlap, tuned.chunk)
    assert settings.window == timedelta(minutes=30)  # never wider than the chunk
    assert plain.ingest_settings("taobao") == connector_class("taobao").ingest_defaults
    assert plain.ingest_settings("no-such-kind").lag == timedelta(seconds=5)  # the base defaults
    dumped = flow.model_dump(mode="json")["sources"]
    assert dumped[0]["lag"] == "2m" and dumped[0]["chunk"] == "30m" and "lag" not in dumped[1]
    assert parse_flow(json.loads(flow.canonical_json())) == flow
    for bad, message in (({"lag": -1}, "lag: must not be negative"), ({"chunk": "10s"}, "chunk: at least 1 minute"),
                         ({"overlap": "soon"}, "overlap: 'soon' is not a duration")):
        problems = _problems({**MINIMAL, "sources": [{"connector": "tmall-main", **bad}]})
        assert any(message in p for p in problems), problems


def test_unset_ingest_settings_keep_the_version_of_existing_flows() -> None:
    """Versions are content hashes: adding optional fields must not re-version every stored flow."""
    assert load_flow(EXAMPLES / "minimal.yaml").version() == "32e4cd1f26f6"
    assert load_flow(EXAMPLES / "by-province.yaml").version() == "e81cc4edfda4"
    tuned = parse_flow({**MINIMAL, "sources": [{"connector": "tmall-main", "lag": "1m"}]})
    assert tuned.version() != parse_flow(MINIMAL).version()


def test_ingest_input_takes_the_flow_settings_and_the_kind_defaults(store) -> None:  # noqa: ANN001
    from connectors import connector_class
    from flows.runtime import ingest_input

    _register(store, ("tmall-main", "taobao"), ("qimen-hz", "qimen"), ("kingdee-prod", "kingdee"))
    flow = parse_flow({**MINIMAL, "sources": [{"connector": "tmall-main", "overlap": "20m"}]})
    inp = ingest_input(flow, flow.sources[0], store)
    defaults = connector_class("taobao").ingest_defaults
    assert (inp.lag, inp.overlap, inp.chunk, inp.window) == (defaults.lag, timedelta(minutes=20), defaults.chunk,
                                                             defaults.window)
    assert inp.flow == flow.name == inp.route.flow and inp.route.flow_version == flow.version()


# -- reconcile helpers (the whole reconcile runs on Temporal in tests/integration) ----------------
class _Record:
    def __init__(self, external_id: str, seller: str) -> None:
        self.external_id, self.payload = external_id, {"seller_nick": seller}


class _PullOnly:
    """A source without list_order_ids: reconcile reads it with pull_orders and asks it the shop."""

    async def pull_orders(self, since, until):  # noqa: ANN001, ANN201
        yield [_Record("1", "shop-x"), _Record("2", "shop-y")]
        yield [_Record("2", "shop-y")]  # a repeated record in a later page

    def shop_of(self, payload: dict) -> str:
        return payload["seller_nick"]


class _Lister(_PullOnly):
    async def list_order_ids(self, since, until):  # noqa: ANN001, ANN201
        return [("7", datetime(2026, 11, 11, tzinfo=UTC)), ("8", None)]


async def test_listed_orders_prefers_list_order_ids_and_falls_back_to_pull_orders() -> None:
    from flows.runtime import listed_orders

    window = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert await listed_orders(_PullOnly(), *window) == {"1": "shop-x", "2": "shop-y"}
    assert await listed_orders(_Lister(), *window) == {"7": None, "8": None}


async def test_order_presence_counts_workflows_that_gave_up_as_missing(store) -> None:  # noqa: ANN001
    from temporalio.client import WorkflowExecutionStatus as S
    from temporalio.service import RPCError, RPCStatusCode

    from flows.runtime import order_presence

    statuses: dict[str, S | None] = {}

    class Handle:
        def __init__(self, wf_id: str) -> None:
            self.wf_id = wf_id

        async def describe(self):  # noqa: ANN202
            status = statuses.get(self.wf_id)
            if status is None:
                raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")
            return type("D", (), {"status": status})()

    class Client:
        def get_workflow_handle(self, wf_id: str) -> Handle:
            return Handle(wf_id)

    def put(external_id: str, stage: str = "mapped") -> str:
        key = f"taobao:shop-a:{external_id}"
        store.upsert_order(key, channel="taobao", shop="shop-a", external_id=external_id, source_connector="tb",
                           raw_id=1, stage=stage)
        return key

    client = Client()
    statuses[f"order:{put('1')}"] = S.RUNNING
    statuses[f"order:{put('2')}"] = S.FAILED
    statuses[f"order:{put('3')}"] = S.TERMINATED
    put("4", stage="completed")  # history gone past retention: the store says it completed
    put("5")  # known to the store, unknown to Temporal
    statuses["order:taobao:shop-a:6"] = S.RUNNING  # just started, not mapped yet
    found = {i: (await order_presence(client, store, "taobao", "shop-a", "tb", i))[0] for i in "1234567"}
    assert found == {"1": True, "2": False, "3": False, "4": True, "5": False, "6": True, "7": False}
    # only ids known (no shop): found in the store by channel, external id and source
    assert await order_presence(client, store, "taobao", None, "tb", "1") == (True, "taobao:shop-a:1")
    assert await order_presence(client, store, "taobao", None, "tb", "9") == (False, "")
