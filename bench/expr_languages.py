"""Choose the expression language of mappings and rules by measurement: CEL vs JMESPath vs JSONata.

Each library compiles the same three realistic expressions once and evaluates them over the same
Taobao trades (the unit-test fixture padded to the ~70 keys a real ``trade.fullinfo.get`` returns):

* condition  — payment above 5000 and the province in a list (a routing / risk rule)
* tags       — a computed list: presale / cod / urgent from three different fields
* concat     — one address line from four fields

It prints evaluations per second per library and the ratio to the fastest, checks that every
library returned the same answers, probes safety and expressiveness, and finally measures what the
order workflow pays per order: ``MappingSpec.apply`` for the shipped specs.

    .venv/bin/python bench/expr_languages.py            # defaults: --n 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cel  # noqa: E402
import jmespath  # noqa: E402
import jsonata  # noqa: E402

from mappings import DictLookups, compile_expr, load_spec  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "taobao_trade.json"

CEL = {
    "condition": 'double(item.payment) > 5000.0 && item.receiver_state in ["广东省", "浙江省", "上海"]',
    "tags": '(has(item.step_trade_status) && item.step_trade_status != "" ? ["presale"] : [])'
            ' + (item.type == "cod" ? ["cod"] : [])'
            ' + (item.buyer_message.contains("加急") ? ["urgent"] : [])',
    "concat": 'item.receiver_state + item.receiver_city + item.receiver_district + " " + item.receiver_address',
}
JMESPATH = {
    "condition": "to_number(payment) > `5000` && contains(['广东省', '浙江省', '上海'], receiver_state)",
    "tags": "[(step_trade_status && 'presale'), (type == 'cod' && 'cod'),"
            " (contains(buyer_message || '', '加急') && 'urgent')] | [?@]",
    "concat": "join('', [receiver_state, receiver_city, receiver_district, ' ', receiver_address])",
}
JSONATA = {
    "condition": '$number(payment) > 5000 and receiver_state in ["广东省", "浙江省", "上海"]',
    "tags": '[step_trade_status ? "presale", type = "cod" ? "cod", $contains(buyer_message, "加急") ? "urgent"]',
    "concat": 'receiver_state & receiver_city & receiver_district & " " & receiver_address',
}

# What a real fullinfo trade carries besides the fields the rules read.
_PADDING: dict[str, Any] = {
    "alipay_no": "2026111122001100000000000001", "buyer_rate": False, "seller_rate": False,
    "trade_from": "WAP,WAP", "shipping_type": "express", "cod_fee": "0.00", "cod_status": "NEW_CREATED",
    "point_fee": 0, "real_point_fee": 0, "received_payment": "0.00", "commission_fee": "0.00",
    "has_post_fee": True, "timeout_action_time": "2026-11-14 00:00:41", "consign_time": "", "end_time": "",
    "is_brand_sale": False, "is_daixiao": False, "is_lgtype": False, "is_part_consign": False,
    "is_force_wlb": False, "is_wt": False, "is_sh_ship": False, "is_o2o_passport": False,
    "tmall_delivery": False, "cn_service": "", "delivery_cps": "", "service_tags": {"logistics_tag": []},
    "trade_attr": '{"erpHold":"0"}', "new_presell": False, "pic_path": "https://img.alicdn.com/x.jpg",
    "sid": "3912345678901234567", "snapshot_url": "p:3912345678901234567_1", "title": "tongdao旗舰店",
    "credit_card_fee": "0.00", "buyer_cod_fee": "0.00", "seller_cod_fee": "0.00",
    "express_agency_fee": "0.00", "available_confirm_fee": "1268.00", "mark_desc": "", "seller_flag": 0,
    "buyer_memo": "", "buyer_flag": 0, "buyer_area": "浙江杭州电信", "receiver_country": "",
    "promotion_details": {"promotion_detail": [
        {"id": 3912345678901234568, "promotion_name": "双11 满减", "discount_fee": "20.00",
         "gift_item_name": "", "promotion_id": "shopbonus-1"},
        {"id": 3912345678901234569, "promotion_name": "店铺优惠券", "discount_fee": "20.00",
         "gift_item_name": "", "promotion_id": "coupon-2"},
    ]},
    "est_con_time": "", "o2o_guide_id": "", "o2o_shop_id": "", "buyer_alipay_no": "", "seller_alipay_no": "",
    "seller_mobile": "", "seller_phone": "", "seller_name": "", "seller_email": "", "invoice_kind": "",
    "invoice_name": "", "invoice_type": "", "zero_purchase": False, "omnichannel_param": "", "is_gift": False,
    "trade_source": "heihe", "arrive_interval": 0, "arrive_cut_time": "", "consign_due_time": "",
}


def payloads() -> list[dict[str, Any]]:
    """Three trades that exercise every branch: plain, presale COD from Guangdong, urgent."""
    base = json.loads(FIXTURE.read_text()) | _PADDING
    presale = copy.deepcopy(base) | {"payment": "6888.00", "receiver_state": "广东省", "receiver_city": "深圳市",
                                      "receiver_district": "南山区", "step_trade_status": "FRONT_PAID_FINAL_NOPAID",
                                      "type": "cod"}
    urgent = copy.deepcopy(base) | {"payment": "5200.50", "buyer_message": "加急！周五前到"}
    return [base, presale, urgent]


# --------------------------------------------------------------------------- evaluators


def cel_adapter(source: str) -> Callable[[dict[str, Any]], Any]:
    """Tongdao's adapter: compile once, pass only the keys the expression reads."""
    expr = compile_expr(source)
    return lambda payload: expr.evaluate({"item": payload})


def cel_raw(source: str) -> Callable[[dict[str, Any]], Any]:
    """The binding as documented: the whole payload converted into CEL values on every call."""
    program = cel.compile(source)
    return lambda payload: program.execute({"item": payload})


def jmespath_eval(source: str) -> Callable[[dict[str, Any]], Any]:
    compiled = jmespath.compile(source)
    return compiled.search


def jsonata_eval(source: str) -> Callable[[dict[str, Any]], Any]:
    compiled = jsonata.Jsonata(source)
    return compiled.evaluate


LIBRARIES: list[tuple[str, dict[str, str], Callable[[str], Callable[[dict[str, Any]], Any]]]] = [
    ("CEL (tongdao adapter)", CEL, cel_adapter),
    ("CEL (raw binding)", CEL, cel_raw),
    ("JMESPath", JMESPATH, jmespath_eval),
    ("JSONata", JSONATA, jsonata_eval),
]


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def time_loop(fn: Callable[[dict[str, Any]], Any], data: list[dict[str, Any]], n: int, repeat: int) -> float:
    """Best-of-``repeat`` evaluations per second over ``n`` calls cycling through ``data``."""
    best = float("inf")
    count = len(data)
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            fn(data[i % count])
        best = min(best, time.perf_counter() - start)
    return n / best


def compile_rate(factory: Callable[[str], Any], source: str, n: int = 200) -> float:
    start = time.perf_counter()
    for i in range(n):
        factory(source + " " * i)  # a new text each time: defeats the compile caches (ours, JMESPath's)
    return n / (time.perf_counter() - start)


def bench_expressions(n: int, repeat: int) -> dict[str, dict[str, float]]:
    data = payloads()
    figures: dict[str, dict[str, float]] = {}
    expected: dict[str, list[Any]] = {}
    for library, sources, factory in LIBRARIES:
        figures[library] = {}
        slow = library in ("JSONata", "CEL (raw binding)")  # ~2k/s: a tenth of the runs says as much
        for name, source in sources.items():
            fn = factory(source)
            answers = [_normal(fn(p)) for p in data]
            if expected.setdefault(name, answers) != answers:
                raise SystemExit(f"{library} disagrees on {name}: {answers} != {expected[name]}")
            figures[library][name] = time_loop(fn, data, n // 10 if slow else n, 1 if slow else repeat)
        figures[library]["compile"] = compile_rate(factory, sources["tags"], 50 if slow else 200)
    return figures


def print_expression_table(figures: dict[str, dict[str, float]]) -> None:
    names = ["condition", "tags", "concat"]
    fastest = {name: max(f[name] for f in figures.values()) for name in names}
    print("\nEvaluations per second (best of runs; ratio = fastest / this, 1.0 = fastest)\n")
    print(f"| {'library':<22} | " + " | ".join(f"{n:>22}" for n in names) + f" | {'compiles/s':>10} |")
    print(f"|{'-' * 24}|" + "|".join("-" * 24 for _ in names) + f"|{'-' * 12}|")
    for library, f in figures.items():
        cells = " | ".join(f"{f[n]:>12,.0f} ({fastest[n] / f[n]:>5.1f}x)" for n in names)
        print(f"| {library:<22} | {cells} | {f['compile']:>10,.0f} |")


# --------------------------------------------------------------------------- safety & expressiveness


def probe(fn: Callable[[], Any]) -> str:
    try:
        return repr(fn())
    except Exception as exc:  # each library has its own error types
        return f"error: {type(exc).__name__}"


def print_notes() -> None:
    recursion = "($f := function($n){ $f($n + 1) }; $f(1))"
    bounded = jsonata.Jsonata(recursion)
    frame = bounded.create_frame()
    frame.set_runtime_bounds(500, 100)
    rows = [
        ("0.1 + 0.2 == 0.3 (money as numbers)",
         probe(lambda: cel.evaluate("0.1 + 0.2 == 0.3")),
         probe(lambda: jmespath.search("`0.1` + `0.2`", {})),
         probe(lambda: jsonata.Jsonata("0.1 + 0.2 = 0.3").evaluate({}))),
        ("int + double without a cast",
         probe(lambda: cel.evaluate("1 + 2.5")),
         "no arithmetic at all",
         probe(lambda: jsonata.Jsonata("1 + 2.5").evaluate({}))),
        ("upper-case a string",
         probe(lambda: compile_expr('"ab".upperAscii()').evaluate({})),
         "no (only join/contains/starts_with/...)",
         probe(lambda: jsonata.Jsonata('$uppercase("ab")').evaluate({}))),
        ("unbounded recursion",
         "cannot be written (no functions, no loops)",
         "cannot be written",
         probe(lambda: bounded.evaluate({}, frame)) + " with set_runtime_bounds; hangs without"),
    ]
    print("\nProbes (CEL | JMESPath | JSONata)\n")
    for label, *cells in rows:
        print(f"- {label}: " + " | ".join(cells))
    print(
        "\nSafety and expressiveness\n"
        "- CEL: non-Turing-complete by design (comprehensions only over existing lists), no I/O, no\n"
        "  user functions; typed (no silent coercion; int vs double must be cast); Rust core. Conditions,\n"
        "  ternaries, lists/maps, has(), map/filter/exists, string functions via cel-go's extension\n"
        "  libraries. No decimal type: money is double, so results are rounded by the spec (scale/format).\n"
        "- JMESPath: a query language: no I/O, always terminates, pure Python. No arithmetic, no\n"
        "  ternary (only && / || tricks), no string concatenation operator: weak for rules.\n"
        "- JSONata: Turing-complete (lambdas, recursion, $eval of strings), pure Python port;\n"
        "  termination needs an opt-in runtime bound per evaluation. Most expressive; hardest to bound.\n"
    )


# --------------------------------------------------------------------------- apply()


def bench_apply(n: int, repeat: int) -> None:
    data = payloads()
    lookups = DictLookups({"sku": {"4901234567890": "SKU-TEE-BLK-M", "4901234567891": "SKU-JKT-NAVY-L"},
                           "customer": {}})
    inbound = load_spec("taobao_order")
    context = {"channel": "taobao", "shop": "tongdao-flagship"}
    orders = [inbound.apply(p, lookups, context) for p in data]
    assert all(r.ok for r in orders), [r.errors for r in orders]
    documents = [r.value.model_dump(mode="json") for r in orders]
    outbound_ctx = {"outbound_code": "TD0000000001", "warehouse_code": "WH-HZ01", "owner_code": "TONGDAO",
                    "customer": "CUST-TAOBAO"}
    print("\nMappingSpec.apply per order (2-line orders, lookups in memory)\n")
    print(f"| {'spec':<22} | {'orders/s':>10} | {'µs/order':>9} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 11}|")
    cases: list[tuple[str, Callable[[dict[str, Any]], Any], list[dict[str, Any]]]] = [
        ("taobao_order", lambda p: inbound.apply(p, lookups, context), data),
    ]
    for name in ("qimen_deliveryorder", "kingdee_sale_order"):
        spec = load_spec(name)
        cases.append((name, lambda d, spec=spec: spec.apply(d, lookups, outbound_ctx), documents))
    for name, fn, inputs in cases:
        assert fn(inputs[0]).ok
        rate = time_loop(fn, inputs, n, repeat)
        print(f"| {name:<22} | {rate:>10,.0f} | {1e6 / rate:>9.1f} |")
    spec_path = ROOT / "mappings" / "specs" / "taobao_order.yaml"
    start = time.perf_counter()
    for _ in range(1000):
        load_spec(spec_path)
    print(f"\nload_spec (cached; file re-read and hashed): {(time.perf_counter() - start) * 1000:.1f} µs per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluations per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}; cel "
          f"{_version('common-expression-language')}, jmespath {_version('jmespath')}, "
          f"jsonata-python {_version('jsonata-python')}; n={args.n}, repeat={args.repeat}")
    print(f"payload: Taobao fullinfo trade, {len(payloads()[0])} top-level keys, 2 lines")
    print_expression_table(bench_expressions(args.n, args.repeat))
    print_notes()
    bench_apply(max(args.n // 4, 100), args.repeat)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
