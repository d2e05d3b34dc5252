"""Rule sets (mappings.rules): loading errors, each rule kind, evaluation order, velocity, stock split,
cheapest carrier, versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from canonical import Order, Sku
from mappings.rules import (
    DEFAULT_RULE_SET,
    RuleSet,
    RuleSetError,
    address_hash,
    evaluate,
    load_rule_set,
    merge_key,
    normalize_phone,
    parse_rule_set,
    phone_hash,
    region_name,
)

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 11, 11, 3, 0, tzinfo=UTC)


def order(**changes: Any) -> Order:
    """A plain paid Tmall order to Hangzhou: one T-shirt line, 59.00, a valid mobile."""
    data: dict[str, Any] = {
        "channel": "tmall", "shop": "tmall-main", "external_id": "1001", "status": "paid",
        "created_at": "2026-11-11T01:00:00Z", "modified_at": "2026-11-11T01:00:00Z",
        "item_total": "59.00", "total": "59.00",
        "buyer": {"nick": "buyer-1", "id": "u1"},
        "receiver": {"name": "张三", "mobile": "13812345678",
                     "address": {"province": "浙江省", "city": "杭州市", "district": "西湖区",
                                 "street": "文三路 1 号"}},
        "lines": [{"line_id": "L1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": "59.00", "total": "59.00"}],
    }
    for key, value in changes.items():
        if key in ("receiver", "address"):
            target = data["receiver"] if key == "receiver" else data["receiver"]["address"]
            target.update(value)
        else:
            data[key] = value
    return Order.model_validate(data)


def rules(sections: dict[str, Any], **extra: Any) -> RuleSet:
    return parse_rule_set({"name": "t", "sections": sections, **extra})


def problems(data: Any) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(data, "t.yaml")
    return caught.value.problems


def trace(outcome: Any, name: str) -> Any:
    return next(t for t in outcome.rules if t.rule == name)


# -- loading -------------------------------------------------------------------------------------------
def test_the_shipped_rule_set_loads_and_every_rule_kind_is_in_it() -> None:
    rs = load_rule_set(DEFAULT_RULE_SET)
    kinds = {key for _, _, rule in rs.sections.rules() for key in rule.action.keys()}
    assert kinds == {"review", "approve", "warehouse", "carrier", "merge", "gift", "hold_until_paid"}
    assert any(rule.velocity for _, _, rule in rs.sections.rules())
    assert rs.carriers and rs.warehouses and rs.lists["blacklist_phones"]


def test_an_unknown_name_in_a_condition_is_refused_with_its_path_and_rule_name() -> None:
    found = problems({"name": "t", "sections": {"audit": [
        {"name": "ok", "when": "true", "action": {"review": "x"}},
        {"name": "bad", "when": "order.total > limit", "action": {"review": "x"}}]}})
    assert len(found) == 1
    assert found[0].startswith("sections.audit[1] (bad).when: unknown name 'limit'")


def test_a_typo_in_an_order_field_is_refused_at_load_with_a_suggestion() -> None:
    found = problems({"name": "t", "sections": {"approval": [
        {"name": "big", "when": "order.totl > 5000", "action": {"review": "x"}}]}})
    assert found == ["sections.approval[0] (big).when: order has no field 'totl' (did you mean order.total?) "
                     "(expression: order.totl > 5000)"]
    found = problems({"name": "t", "sections": {"audit": [
        {"name": "a", "when": "order.receiver.adress.city == ''", "action": {"review": "x"}}]}})
    assert "order.receiver has no field 'adress' (did you mean order.receiver.address?)" in found[0]


def test_syntax_errors_functions_and_the_lists_namespace_are_explained() -> None:
    found = problems({"name": "t", "sections": {"audit": [
        {"name": "syntax", "when": "order.total >", "action": {"review": "x"}},
        {"name": "fn", "when": "!matches_phone(order.receiver.mobile)", "action": {"review": "x"}},
        {"name": "ns", "when": "order.receiver.mobile_hash in lists.blacklist", "action": {"review": "x"}}]},
        "lists": {"blacklist": []}})
    assert found[0].startswith("sections.audit[0] (syntax).when: Syntax error")
    assert found[1].startswith("sections.audit[1] (fn).when: unknown function 'matches_phone'")
    assert "phone_ok" in found[1]
    assert "`lists` is a CEL namespace" in found[2] and "write `blacklist`" in found[2]


def test_schema_errors_name_the_field_and_the_rule() -> None:
    found = problems({"name": "Bad Name", "sections": {"routing": [
        {"name": "r1", "when": "true", "action": {"carrier": "SF"}, "priority": 1},
        {"name": "r2", "action": {"warehouse": "wms-sh"}},
        {"name": "r3", "when": "true", "action": {}},
    ], "later": []}})
    assert "name: Value error" not in " ".join(found)
    assert any(p.startswith("name: rule set name 'Bad Name'") for p in found)
    assert "sections.routing[0] (r1).priority: Extra inputs are not permitted" in found
    assert any(p.startswith("sections.routing[1] (r2): a rule needs `when`") for p in found)
    assert any(p.startswith("sections.routing[2] (r3).action: an action needs at least one of") for p in found)
    assert "sections.later: Extra inputs are not permitted" in found


def test_cross_checks_actions_in_the_wrong_section_tables_and_duplicate_names() -> None:
    found = problems({"name": "t", "sections": {
        "audit": [{"name": "a", "when": "true", "action": {"warehouse": "wms-x"}}],
        "routing": [{"name": "a", "when": "true", "action": {"carrier": "cheapest"}},
                    {"name": "b", "when": "true", "action": {"warehouse": "auto"}},
                    {"name": "c", "when": "true", "action": {"carrier": "EMS"}}]},
        "carriers": [], "warehouses": {}})
    assert any(p.startswith("sections.audit[0] (a).action.warehouse: not an action of section audit (it belongs "
                            "in routing)") for p in found)
    assert "sections.routing[0] (a).name: 'a' is also the name of sections.audit[0] (a)" in found
    assert "sections.routing[0] (a).action.carrier: `cheapest` needs a `carriers:` cost table" in found
    assert "sections.routing[1] (b).action.warehouse: `auto` needs a `warehouses:` table" in found
    found = problems({"name": "t", "sections": {"routing": [
        {"name": "c", "when": "true", "action": {"carrier": "EMS"}}]},
        "carriers": [{"code": "SF", "base": 12}, {"code": "SF", "base": 10}]})
    assert "carriers: 'SF' is listed twice" in found
    assert any(p.startswith("sections.routing[0] (c).action.carrier: 'EMS' is not in the carriers table")
               for p in found)


def test_durations_lists_and_yaml_errors() -> None:
    found = problems({"name": "t", "sections": {"approval": [
        {"name": "a", "when": "true", "action": {"approve": {"role": "director", "within": "soon"}}},
        {"name": "b", "when": "true", "action": {"approve": {"role": "d", "within": "2h", "remind_after": "3h"}}}],
        "audit": [{"name": "v", "velocity": {"by": "email", "within": "30m", "more_than": 3},
                   "action": {"review": "x"}}]},
        "lists": {"vip": ["13812345678"], "audit": []}})
    assert "sections.approval[0] (a).action.approve.within: 'soon' is not a duration; use e.g. 30m, 4h, 1d, 1h30m" \
        in found
    assert any("remind_after (3h) must be shorter than within (2h)" in p for p in found)
    assert "sections.audit[0] (v).velocity.by: Input should be 'phone', 'address' or 'buyer'" in found
    assert any(p.startswith("lists: vip[0] looks like a phone number in clear") for p in found)
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set("name: t\nsections: {audit: [}\n", "x.yaml")
    assert caught.value.problems[0].startswith("not valid YAML at line 2")
    with pytest.raises(RuleSetError, match="a rule set is a mapping"):
        parse_rule_set("- 1\n")
    with pytest.raises(RuleSetError, match="cannot read"):
        load_rule_set(ROOT / "no-such-file.yaml")


def test_a_list_name_may_not_shadow_a_variable() -> None:
    found = problems({"name": "t", "lists": {"urgent": []}})
    assert any("list name 'urgent' is taken" in p for p in found)


# -- version -------------------------------------------------------------------------------------------
def test_version_is_stable_across_key_order_spelling_and_set_order() -> None:
    text = (DEFAULT_RULE_SET).read_text(encoding="utf-8")
    data = yaml.safe_load(text)

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    base = parse_rule_set(data)
    shuffled = parse_rule_set(reverse(data))
    assert base.version() == shuffled.version() and len(base.version()) == 12
    respelled = json.loads(json.dumps(data))
    respelled["carriers"][0]["base"] = 12.0  # 12 and 12.0 are one amount
    respelled["sections"]["approval"][0]["action"]["approve"]["within"] = "240m"  # 4h
    respelled["lists"]["blacklist_phones"] = list(reversed(respelled["lists"]["blacklist_phones"]))
    assert parse_rule_set(respelled).version() == base.version()
    changed = json.loads(json.dumps(data))
    changed["sections"]["approval"][0]["when"] = "order.total > 6000"
    assert parse_rule_set(changed).version() != base.version()
    # the stored form reads back as the same rule set
    assert parse_rule_set(base.model_dump(mode="json")).version() == base.version()


def test_rule_order_within_a_section_is_part_of_the_version() -> None:
    a = {"name": "x", "when": "true", "action": {"review": "x"}}
    b = {"name": "y", "when": "false", "action": {"review": "y"}}
    assert rules({"audit": [a, b]}).version() != rules({"audit": [b, a]}).version()


# -- each rule kind ------------------------------------------------------------------------------------
AUDIT = {"audit": [
    {"name": "address-complete", "when": "order.receiver.address.street == '' || order.receiver.address.city == ''",
     "action": {"review": "address incomplete"}},
    {"name": "phone", "when": "!phone_ok", "action": {"review": "phone format"}},
    {"name": "blacklist", "when": "order.receiver.mobile_hash in blacklist_phones",
     "action": {"review": "blacklisted"}},
]}


def test_review_rules_fire_and_do_not() -> None:
    rs = rules(AUDIT, lists={"blacklist_phones": [phone_hash("+86 139 0000 0000")]})
    clean = evaluate(rs, order(), now=NOW)
    assert clean.review == [] and not any(t.fired for t in clean.rules)
    bad = evaluate(rs, order(receiver={"mobile": "13900000000"}, address={"street": ""}), now=NOW)
    assert bad.review == ["address incomplete", "blacklisted"]
    assert trace(bad, "address-complete").read["order.receiver.address.street"] == ""
    wrong = evaluate(rs, order(receiver={"mobile": "1380013800"}), now=NOW)
    assert wrong.review == ["phone format"]
    assert trace(wrong, "phone").reason == "condition true: phone_ok=false"


def test_phone_checks_mainland_international_and_protected() -> None:
    rs = rules(AUDIT, lists={"blacklist_phones": []})
    for mobile, mainland, international in (("13812345678", True, False), ("+86 138-1234-5678", True, False),
                                            ("008613812345678", True, False), ("+44 20 7946 0958", False, True),
                                            ("12812345678", False, False), ("+8610", False, False)):
        facts = evaluate(rs, order(receiver={"mobile": mobile}), now=NOW).facts
        assert (facts["phone_mainland"], facts["phone_international"]) == (mainland, international), mobile
    protected = evaluate(rs, order(receiver={"mobile": "$$x7f3a$$", "protected": True}), now=NOW)
    assert protected.facts["phone_ok"] is True and protected.review == []
    landline_only = evaluate(rs, order(receiver={"mobile": "", "phone": "13812345678"}), now=NOW)
    assert landline_only.facts["phone_ok"] is True
    assert normalize_phone("+86 138-1234-5678") == normalize_phone("13812345678") == "13812345678"
    assert phone_hash("") == ""


def test_values_read_are_masked_when_personal() -> None:
    rs = rules({"audit": [{"name": "m", "when": "order.receiver.mobile.startsWith('138')",
                           "action": {"review": "x"}}]})
    outcome = evaluate(rs, order(), now=NOW)
    assert outcome.rules[0].read == {"order.receiver.mobile": "138****78"}
    assert "13812345678" not in outcome.model_dump_json()


def test_approval_fires_above_the_threshold_and_first_rule_decides() -> None:
    rs = rules({"approval": [
        {"name": "huge", "when": "order.total > 50000", "action": {"approve": {"role": "cfo", "within": "1d"}}},
        {"name": "big", "when": "order.total > 5000",
         "action": {"approve": {"role": "director", "within": "4h", "escalate_to": "cfo", "remind_after": "2h"}}}]})
    assert evaluate(rs, order(), now=NOW).approval is None
    big = evaluate(rs, order(total="5999.00", item_total="5999.00"), now=NOW)
    assert big.approval is not None and big.approval.rule == "big" and big.approval.role == "director"
    assert big.approval.within == timedelta(hours=4) and big.approval.remind_after == timedelta(hours=2)
    assert big.model_dump(mode="json")["approval"]["within"] == "4h"
    huge = evaluate(rs, order(total="60000", item_total="60000"), now=NOW)
    assert huge.approval.rule == "huge" and huge.approval.role == "cfo"
    assert trace(huge, "big").fired and trace(huge, "big").decided == []
    assert "approval already decided by huge" in trace(huge, "big").reason
    at_threshold = evaluate(rs, order(total="5000.00", item_total="5000.00"), now=NOW)
    assert at_threshold.approval is None


SKUS = {"TD-SKU-001[89]": {"category": "electronics", "weight_g": 150},
        "TD-SKU-0001": {"category": "apparel", "weight_g": 200},
        "TD-SKU-01*": {"category": "frozen-food", "weight_g": 1000, "temperature": "frozen"}}


def test_routing_rules_by_region_category_urgency_and_temperature() -> None:
    rs = rules({"routing": [
        {"name": "cold", "when": "temperature == 'frozen'", "action": {"warehouse": "wms-cold", "carrier": "SF"}},
        {"name": "east-3c", "when": "province in ['上海', '江苏', '浙江'] && 'electronics' in categories",
         "action": {"warehouse": "wms-sh", "carrier": "SF"}},
        {"name": "cheap", "when": "order.total < 50 && !urgent", "action": {"carrier": "cheapest"}}]},
        skus=SKUS, carriers=[{"code": "SF", "base": 12, "per_kg": 2, "temperature": ["ambient", "frozen"]},
                             {"code": "ZTO", "base": 5, "per_kg": 1}],
        warehouses={"wms-sh": {}, "wms-cold": {"temperature": ["frozen"]}})
    phones = [{"line_id": "L1", "sku": "TD-SKU-0018", "quantity": 1, "unit_price": "29.00", "total": "29.00"}]
    east = evaluate(rs, order(lines=phones, total="29.00", item_total="29.00"), now=NOW)
    assert (east.warehouse, east.carrier) == ("wms-sh", "SF")
    assert trace(east, "cheap").fired and "carrier already decided by east-3c" in trace(east, "cheap").reason
    west = evaluate(rs, order(lines=phones, total="29.00", item_total="29.00", address={"province": "四川省"}),
                    now=NOW)
    assert (west.warehouse, west.carrier) == (None, "ZTO")
    urgent = evaluate(rs, order(lines=phones, total="29.00", item_total="29.00", address={"province": "四川省"},
                                tags=["urgent"]), now=NOW)
    assert urgent.carrier is None
    frozen = [{"line_id": "L1", "sku": "TD-SKU-0101", "quantity": 2, "unit_price": "20", "total": "40"}]
    cold = evaluate(rs, order(lines=frozen, total="40", item_total="40"), now=NOW)
    assert (cold.warehouse, cold.carrier) == ("wms-cold", "SF")
    assert cold.facts["temperature"] == "frozen" and cold.facts["weight_g"] == 2000
    assert cold.carrier_cost == Decimal("14")  # 12 for the first kg, 2 for the second


def test_merge_key_hold_and_gifts() -> None:
    rs = rules({"routing": [{"name": "merge", "when": "!urgent", "action": {"merge": True}}],
                "promotions": [
                    {"name": "presale", "when": "'presale' in order.tags", "action": {"hold_until_paid": True}},
                    {"name": "gift", "when": "order.total >= 199",
                     "action": {"gift": {"sku": "TD-SKU-0099", "quantity": 1, "title": "sample"}}},
                    {"name": "gift-2", "when": "order.total >= 500", "action": {"gift": {"sku": "TD-SKU-0098"}}}]})
    plain = evaluate(rs, order(), now=NOW)
    assert plain.merge_key == merge_key(order()) and not plain.hold_until_paid and plain.gifts == []
    same_place = order(external_id="1002", address={"province": "浙江", "street": "文三路1号"})
    assert merge_key(same_place) == plain.merge_key  # other order, same buyer and address (spelled apart)
    assert merge_key(order(address={"street": "文二路 2 号"})) != plain.merge_key
    assert evaluate(rs, order(tags=["urgent"]), now=NOW).merge_key is None
    rich = evaluate(rs, order(total="600", item_total="600", tags=["presale"]), now=NOW)
    assert rich.hold_until_paid
    assert [(g.sku, g.quantity, g.is_gift, g.total) for g in rich.gifts] == [
        ("TD-SKU-0099", 1, True, Decimal("0")), ("TD-SKU-0098", 1, True, Decimal("0"))]
    assert rich.gifts[0].line_id == "gift:gift" and rich.gifts[0].title == "sample"


def test_sections_run_in_fixed_order_and_rules_in_file_order() -> None:
    data = {"name": "t", "sections": {
        "promotions": [{"name": "p1", "when": "true", "action": {"review": "p1"}}],
        "routing": [{"name": "r2", "when": "true", "action": {"review": "r2"}},
                    {"name": "r1", "when": "true", "action": {"review": "r1"}}],
        "audit": [{"name": "a1", "when": "true", "action": {"review": "a1"}}],
        "approval": [{"name": "b1", "when": "false", "action": {"review": "b1"}}]}}
    outcome = evaluate(parse_rule_set(data), order(), now=NOW)
    assert [t.rule for t in outcome.rules] == ["a1", "b1", "r2", "r1", "p1"]
    assert outcome.review == ["a1", "r2", "r1", "p1"]
    assert outcome.fired() == ["a1", "r2", "r1", "p1"]


def test_a_condition_that_fails_on_an_order_sends_it_to_review() -> None:
    rs = rules({"audit": [{"name": "typed", "when": "order.total > '5000'", "action": {"review": "x"}},
                          {"name": "fine", "when": "true", "action": {"review": "fine"}}]})
    outcome = evaluate(rs, order(), now=NOW)
    broken = trace(outcome, "typed")
    assert not broken.fired and broken.error and "could not be evaluated" in broken.reason
    assert outcome.review[0].startswith("rule typed could not be evaluated:") and outcome.review[1] == "fine"


def test_conditions_see_timestamps_now_and_the_catalog() -> None:
    rs = rules({"audit": [
        {"name": "stale", "when": "now - order.created_at > duration('1h')", "action": {"review": "stale"}},
        {"name": "heavy", "when": "weight_g > 1000", "action": {"review": "heavy"}}]})
    assert evaluate(rs, order(), now=NOW).review == ["stale"]
    assert evaluate(rs, order(), now=NOW - timedelta(hours=1, minutes=30)).review == []
    catalog = {"TD-SKU-0001": Sku(code="TD-SKU-0001", category="apparel", weight_g=1500)}
    heavy = evaluate(rs, order(), now=NOW - timedelta(hours=1, minutes=30), catalog=catalog)
    assert heavy.review == ["heavy"] and heavy.facts["categories"] == ["apparel"]


def test_refunded_lines_do_not_count_for_weight_and_categories() -> None:
    rs = rules({}, skus=SKUS)
    lines = [{"line_id": "L1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": "59", "total": "59"},
             {"line_id": "L2", "sku": "TD-SKU-0018", "quantity": 1, "unit_price": "29", "total": "29",
              "refund_status": "refunded"}]
    facts = evaluate(rs, order(lines=lines, item_total="88", total="88"), now=NOW).facts
    assert facts["categories"] == ["apparel"] and facts["weight_g"] == 200


# -- velocity ------------------------------------------------------------------------------------------
VELOCITY = {"audit": [
    {"name": "phone-velocity", "velocity": {"by": "phone", "within": "30m", "more_than": 3},
     "action": {"review": "more than 3 orders to one phone in 30 minutes"}},
    {"name": "address-velocity", "when": "order.total > 100",
     "velocity": {"by": "address", "within": "1d", "more_than": 0}, "action": {"review": "address velocity"}}]}


def test_velocity_counts_through_the_callback() -> None:
    calls: list[tuple[str, str, timedelta]] = []

    def counter(n: int):  # noqa: ANN202
        def count(kind: str, value_hash: str, within: timedelta) -> int:
            calls.append((kind, value_hash, within))
            return n
        return count

    rs = rules(VELOCITY)
    o = order()
    quiet = evaluate(rs, o, velocity=counter(3), now=NOW)
    assert quiet.review == []
    assert trace(quiet, "phone-velocity").reason == "3 orders to this phone within 30m, not more than 3"
    assert calls == [("phone", phone_hash("13812345678"), timedelta(minutes=30))]  # address rule's `when` is false
    busy = evaluate(rs, o, velocity=counter(4), now=NOW)
    assert busy.review == ["more than 3 orders to one phone in 30 minutes"]
    assert trace(busy, "phone-velocity").read == {"velocity.phone": 4}
    calls.clear()
    big = evaluate(rs, order(total="150", item_total="150"), velocity=counter(1), now=NOW)
    assert calls[-1] == ("address", address_hash(o.receiver.address), timedelta(days=1))
    assert big.review == ["address velocity"]


def test_velocity_without_a_counter_or_a_value_does_not_fire() -> None:
    rs = rules(VELOCITY)
    outcome = evaluate(rs, order(), now=NOW)
    assert outcome.review == [] and "no counter" in trace(outcome, "phone-velocity").reason
    no_phone = evaluate(rs, order(receiver={"mobile": ""}), velocity=lambda *_: 99, now=NOW)
    assert "no phone on the order" in trace(no_phone, "phone-velocity").reason


# -- warehouses and split ------------------------------------------------------------------------------
WAREHOUSES = {"wms-sh": {"regions": ["上海", "江苏", "浙江"], "priority": 10},
              "wms-gz": {"priority": 20},
              "wms-bj": {"regions": ["北京"], "priority": 5},
              "wms-cold": {"temperature": ["frozen"], "priority": 30}}
TWO_LINES = [{"line_id": "L1", "sku": "TD-SKU-0001", "quantity": 3, "unit_price": "10", "total": "30"},
             {"line_id": "L2", "sku": "TD-SKU-0018", "quantity": 2, "unit_price": "10", "total": "20"}]


def auto() -> RuleSet:
    return rules({"routing": [{"name": "by-stock", "when": "true", "action": {"warehouse": "auto"}}]},
                 warehouses=WAREHOUSES, skus=SKUS)


def stock_of(levels: dict[str, dict[str, int]]):  # noqa: ANN201
    return lambda sku: levels.get(sku, {})


def test_auto_warehouse_without_stock_takes_the_preferred_eligible_one() -> None:
    outcome = evaluate(auto(), order(lines=TWO_LINES), now=NOW)
    assert outcome.warehouse == "wms-sh" and outcome.split is None
    far = evaluate(auto(), order(lines=TWO_LINES, address={"province": "四川省"}), now=NOW)
    assert far.warehouse == "wms-gz"


def test_auto_warehouse_with_stock_takes_one_that_can_fill_every_line() -> None:
    levels = {"TD-SKU-0001": {"wms-sh": 1, "wms-gz": 5}, "TD-SKU-0018": {"wms-sh": 9, "wms-gz": 2}}
    outcome = evaluate(auto(), order(lines=TWO_LINES), stock=stock_of(levels), now=NOW)
    assert outcome.warehouse == "wms-gz" and outcome.split is None
    assert "wms-gz has stock for every line" in trace(outcome, "by-stock").reason


def test_auto_warehouse_splits_when_no_single_warehouse_can() -> None:
    levels = {"TD-SKU-0001": {"wms-sh": 3, "wms-gz": 0}, "TD-SKU-0018": {"wms-sh": 0, "wms-gz": 2}}
    outcome = evaluate(auto(), order(lines=TWO_LINES), stock=stock_of(levels), now=NOW)
    assert outcome.warehouse is None
    assert {w: [(x.line_id, x.sku, x.quantity) for x in lines] for w, lines in outcome.split.items()} == {
        "wms-sh": [("L1", "TD-SKU-0001", 3)], "wms-gz": [("L2", "TD-SKU-0018", 2)]}
    # one line's quantity across two warehouses
    levels = {"TD-SKU-0001": {"wms-sh": 2, "wms-gz": 1}, "TD-SKU-0018": {"wms-sh": 2}}
    outcome = evaluate(auto(), order(lines=TWO_LINES), stock=stock_of(levels), now=NOW)
    assert {w: [(x.line_id, x.quantity) for x in lines] for w, lines in outcome.split.items()} == {
        "wms-sh": [("L1", 2), ("L2", 2)], "wms-gz": [("L1", 1)]}


def test_auto_warehouse_short_or_homeless_goes_to_review() -> None:
    levels = {"TD-SKU-0001": {"wms-sh": 1, "wms-gz": 1, "wms-bj": 50}, "TD-SKU-0018": {"wms-sh": 2}}
    short = evaluate(auto(), order(lines=TWO_LINES), stock=stock_of(levels), now=NOW)
    assert short.warehouse is None and short.split is None
    assert short.review == ["stock short in the eligible warehouses: TD-SKU-0001 needs 3, 2 available"]
    frozen = [{"line_id": "L1", "sku": "TD-SKU-0101", "quantity": 1, "unit_price": "10", "total": "10"}]
    rs = rules({"routing": [{"name": "auto", "when": "true", "action": {"warehouse": "auto"}}]},
               warehouses={"wms-sh": {}}, skus=SKUS)
    homeless = evaluate(rs, order(lines=frozen, total="10", item_total="10"), now=NOW)
    assert homeless.review == ["no warehouse ships TD-SKU-0101 to 浙江省"]


def test_split_by_eligibility_without_stock() -> None:
    lines = [*TWO_LINES, {"line_id": "L3", "sku": "TD-SKU-0101", "quantity": 1, "unit_price": "10", "total": "10"}]
    outcome = evaluate(auto(), order(lines=lines, item_total="60", total="60"), now=NOW)
    assert {w: [x.line_id for x in ls] for w, ls in outcome.split.items()} == {"wms-sh": ["L1", "L2"],
                                                                              "wms-cold": ["L3"]}


# -- carriers ------------------------------------------------------------------------------------------
CARRIERS = [{"code": "SF", "base": 12, "per_kg": 2, "temperature": ["ambient", "chilled", "frozen"]},
            {"code": "ZTO", "base": 5, "per_kg": 1, "regions": ["CN"],
             "rates": [{"regions": ["新疆", "西藏"], "base": 15, "per_kg": 10}]},
            {"code": "YTO", "base": "4.5", "per_kg": "1.2", "regions": ["上海", "浙江"], "max_weight_g": 3000}]


def cheapest() -> RuleSet:
    return rules({"routing": [{"name": "cheap", "when": "true", "action": {"carrier": "cheapest"}}]},
                 carriers=CARRIERS, skus={"TD-SKU-0001": {"weight_g": 1000}, "TD-SKU-0101": {"weight_g": 500,
                                                                                         "temperature": "chilled"}})


def test_cheapest_carrier_by_region_and_weight() -> None:
    one_kg = evaluate(cheapest(), order(), now=NOW)
    assert (one_kg.carrier, one_kg.carrier_cost) == ("YTO", Decimal("4.5"))
    assert "cheapest carrier YTO at 4.5 (1000 g)" in trace(one_kg, "cheap").reason
    sichuan = evaluate(cheapest(), order(address={"province": "四川省"}), now=NOW)
    assert (sichuan.carrier, sichuan.carrier_cost) == ("ZTO", Decimal("5"))
    heavy = [{"line_id": "L1", "sku": "TD-SKU-0001", "quantity": 4, "unit_price": "10", "total": "40"}]
    over_limit = evaluate(cheapest(), order(lines=heavy, total="40", item_total="40"), now=NOW)
    assert (over_limit.carrier, over_limit.carrier_cost) == ("ZTO", Decimal("8"))  # YTO takes 3 kg at most
    xinjiang = evaluate(cheapest(), order(address={"province": "新疆维吾尔自治区"}), now=NOW)
    assert (xinjiang.carrier, xinjiang.carrier_cost) == ("SF", Decimal("12"))  # ZTO's remote rate is 15


def test_cheapest_carrier_respects_temperature_and_reports_none() -> None:
    chilled = [{"line_id": "L1", "sku": "TD-SKU-0101", "quantity": 1, "unit_price": "10", "total": "10"}]
    cold = evaluate(cheapest(), order(lines=chilled, total="10", item_total="10"), now=NOW)
    assert cold.carrier == "SF"
    rs = rules({"routing": [{"name": "cheap", "when": "true", "action": {"carrier": "cheapest"}}]},
               carriers=[{"code": "YTO", "base": 4, "regions": ["上海"]}])
    nobody = evaluate(rs, order(), now=NOW)
    assert nobody.carrier is None and nobody.review == ["no carrier in the cost table serves 浙江省 (ambient, 0 g, "
                                                        "some weights unknown)"]


def test_region_names_compare_in_short_form() -> None:
    assert region_name("上海市") == region_name("上海") == "上海"
    assert region_name("广西壮族自治区") == "广西" and region_name("香港特别行政区") == "香港"
    assert region_name(" Zhejiang ") == "zhejiang"


# -- the shipped examples ------------------------------------------------------------------------------
def example(name: str) -> Order:
    return Order.model_validate(json.loads((ROOT / "examples/orders" / name).read_text(encoding="utf-8")))


def test_the_shipped_examples_fire_approval_and_review() -> None:
    rs = load_rule_set(DEFAULT_RULE_SET)
    big = evaluate(rs, example("big_order.json"), now=NOW, velocity=lambda *_: 1)
    assert big.review == [] and big.approval is not None and big.approval.role == "director"
    assert (big.warehouse, big.carrier) == ("wms-sh", "SF") and [g.sku for g in big.gifts] == ["TD-SKU-0099"]
    suspicious = evaluate(rs, example("suspicious_order.json"), now=NOW, velocity=lambda *_: 5)
    assert suspicious.approval is None
    assert suspicious.review == ["address incomplete", "phone format", "blacklisted phone",
                                 "more than 3 orders to one phone in 30 minutes"]
    assert suspicious.carrier == "ZTO"


def test_evaluate_refuses_a_naive_now_and_a_dict() -> None:
    rs = rules({})
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(rs, order(), now=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        evaluate(rs, order().model_dump(), now=NOW)  # type: ignore[arg-type]
