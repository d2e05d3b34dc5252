"""Voucher composition from the fee file: balanced double entry, commission rounding, carrier fees, errors."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import yaml

from canonical import Channel, Order, Voucher
from mappings.vouchers import (
    DEFAULT_FEES,
    FeeError,
    FeeFileError,
    compose_shipment_voucher,
    is_beancount_account,
    load_fees,
    parse_fees,
)

GMT8 = timezone(timedelta(hours=8))
ON = date(2026, 11, 12)
FEES = load_fees()


def make_order(channel: str = "taobao", total: str = "189.00", province: str = "浙江省", **overrides: object) -> Order:
    data: dict = {
        "channel": channel, "shop": "shop-a", "external_id": "1001", "status": "paid",
        "created_at": datetime(2026, 11, 11, 0, 0, 5, tzinfo=GMT8),
        "modified_at": datetime(2026, 11, 11, 0, 1, tzinfo=GMT8),
        "item_total": total, "total": total,
        "receiver": {"name": "张三", "mobile": "13800138000",
                     "address": {"province": province, "city": "杭州市", "street": "文一西路969号"}},
        "lines": [{"line_id": "1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": total, "total": total}],
    }
    data.update(overrides)
    return Order.model_validate(data)


def compose(order: Order | None = None, **kw: object) -> Voucher:
    args: dict = {"number": "TDX-SHIP", "on": ON, "carrier": "SF", "weight_g": 1200, "fees": FEES}
    args.update(kw)
    return compose_shipment_voucher(order or make_order(), **args)


def by_account(voucher: Voucher) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for line in voucher.lines:
        debit, credit = out.get(line.account, (Decimal("0"), Decimal("0")))
        out[line.account] = (debit + line.debit, credit + line.credit)
    return out


def balanced(voucher: Voucher) -> bool:
    return sum(line.debit for line in voucher.lines) == sum(line.credit for line in voucher.lines)


# --------------------------------------------------------------------------- the shipped file


def test_the_shipped_fee_file_loads_with_every_canonical_channel_it_names() -> None:
    assert FEES.source == str(DEFAULT_FEES)
    assert set(FEES.channels) <= {c.value for c in Channel}
    assert {"taobao", "tmall", "jd", "pinduoduo", "douyin", "shopify", "amazon"} <= set(FEES.channels)
    assert {"SF", "ZTO", "YTO", "YD", "STO", "JD"} <= set(FEES.carriers)
    assert {"beancount", "kingdee"} <= set(FEES.schemes)
    assert FEES.channels["jd"].commission_rate == Decimal("0.08")
    assert FEES.channels["pinduoduo"].commission_rate == Decimal("0.006")  # exact: YAML floats read as Decimal
    assert all(isinstance(c.commission_rate, Decimal) for c in FEES.channels.values())


# --------------------------------------------------------------------------- composition


def test_shipment_voucher_books_sale_commission_and_logistics_separately() -> None:
    voucher = compose()
    assert balanced(voucher) and voucher.number == "TDX-SHIP" and voucher.date == ON
    assert voucher.reference == "taobao:shop-a:1001" and voucher.channel == "taobao" and voucher.currency == "CNY"
    assert "1001" in voucher.narration and "SF" in voucher.narration
    assert by_account(voucher) == {
        "Assets:Receivable:Taobao": (Decimal("189.00"), Decimal("0")),
        "Income:Sales:Taobao": (Decimal("0"), Decimal("189.00")),
        "Expenses:Commission:Taobao": (Decimal("9.45"), Decimal("0")),  # 5 % of 189.00
        "Liabilities:Payable:Taobao": (Decimal("0"), Decimal("9.45")),
        "Expenses:Logistics:SF": (Decimal("14.00"), Decimal("0")),  # 12.00 first kg + 2.00 for the started 2nd kg
        "Liabilities:Payable:Logistics:SF": (Decimal("0"), Decimal("14.00")),
    }
    assert [line.account for line in voucher.lines][:2] == ["Assets:Receivable:Taobao", "Income:Sales:Taobao"]
    assert all(isinstance(line.debit, Decimal) and isinstance(line.credit, Decimal) for line in voucher.lines)


def test_kingdee_scheme_books_the_same_amounts_to_codes() -> None:
    voucher = compose(scheme="kingdee")
    assert balanced(voucher)
    accounts = by_account(voucher)
    assert accounts["1122"] == (Decimal("189.00"), Decimal("0"))
    assert accounts["6001"] == (Decimal("0"), Decimal("189.00"))
    assert accounts["6601.01"] == (Decimal("9.45"), Decimal("0"))
    assert accounts["6601.02"] == (Decimal("14.00"), Decimal("0"))
    assert accounts["2202"] == (Decimal("0"), Decimal("23.45"))  # platform and carrier both payable
    assert any("taobao" in line.memo for line in voucher.lines if line.account == "1122")


@pytest.mark.parametrize(("channel", "account", "rate"), [
    ("taobao", "Taobao", "0.05"), ("tmall", "Tmall", "0.05"), ("jd", "JD", "0.08"),
    ("pinduoduo", "Pinduoduo", "0.006"), ("douyin", "Douyin", "0.05"), ("shopify", "Shopify", "0.02"),
    ("amazon", "Amazon", "0.15"), ("kuaishou", "Kuaishou", "0.05"), ("wechat", "WeChat", "0.006"),
])
def test_each_channel_books_to_its_own_accounts_at_its_rate(channel: str, account: str, rate: str) -> None:
    voucher = compose(make_order(channel, total="1234.56"))
    accounts = by_account(voucher)
    commission = (Decimal(rate) * Decimal("1234.56")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert accounts[f"Assets:Receivable:{account}"] == (Decimal("1234.56"), Decimal("0"))
    assert accounts[f"Income:Sales:{account}"] == (Decimal("0"), Decimal("1234.56"))
    assert accounts[f"Expenses:Commission:{account}"] == (commission, Decimal("0"))
    assert accounts[f"Liabilities:Payable:{account}"] == (Decimal("0"), commission)
    assert voucher.channel == channel and balanced(voucher)
    assert all(is_beancount_account(name) for name in accounts)


def test_commission_rounds_half_up_to_cents() -> None:
    # 5 % of 0.10 = 0.005 → 0.01 (banker's rounding would give 0.00); 0.6 % of 99.90 = 0.5994 → 0.60
    assert FEES.commission("taobao", Decimal("0.10")) == Decimal("0.01")
    assert FEES.commission("taobao", Decimal("0.30")) == Decimal("0.02")  # 0.015 → 0.02
    assert FEES.commission("pinduoduo", Decimal("99.90")) == Decimal("0.60")
    assert FEES.commission("pinduoduo", Decimal("75.00")) == Decimal("0.45")
    assert FEES.commission("pinduoduo", Decimal("0.83")) == Decimal("0.00")  # 0.00498 → 0.00
    assert FEES.commission("jd", Decimal("18.8125")) == Decimal("1.51")  # 1.505 → 1.51
    voucher = compose(make_order("taobao", total="0.30"), carrier="ZTO", weight_g=100)
    assert by_account(voucher)["Expenses:Commission:Taobao"] == (Decimal("0.02"), Decimal("0"))


def test_many_amounts_channels_and_weights_always_balance() -> None:
    rng = random.Random(20261111)
    channels = sorted(FEES.channels)
    carriers = sorted(c for c in FEES.carriers if FEES.carrier_currency(c) == "CNY")  # the orders here are CNY
    provinces = ["浙江省", "新疆维吾尔自治区", "西藏自治区", "内蒙古自治区", "广东省", ""]
    for i in range(600):
        cents = rng.choice([0, 1, 5, 10, 15, 99, 100, 995, rng.randrange(0, 10**7), rng.randrange(0, 10**11)])
        total = Decimal(cents).scaleb(-2)
        channel = rng.choice(channels)
        weight = rng.choice([0, 1, 999, 1000, 1001, 2000, rng.randrange(0, 60_000)])
        order = make_order(channel, total=str(total), province=rng.choice(provinces), currency="CNY")
        try:
            voucher = compose(order, number=f"V{i}", carrier=rng.choice(carriers), weight_g=weight,
                              scheme=rng.choice(["beancount", "kingdee"]))
        except FeeError as exc:  # only the "nothing to book" case is allowed to fail
            assert "nothing to book" in str(exc)
            continue
        assert balanced(voucher)
        debit = sum(line.debit for line in voucher.lines)
        commission = FEES.commission(channel, total)
        assert commission == (FEES.channels[channel].commission_rate * total).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert debit == total + commission + FEES.logistics_fee(
            voucher.lines[-1].memo.split()[0], weight, order.receiver.address.province)
        assert all(line.debit > 0 or line.credit > 0 for line in voucher.lines)
        reversal = voucher.reversal(f"V{i}-REV", ON)
        assert balanced(reversal)


def test_zero_amounts_are_left_out() -> None:
    pos = compose(make_order("pos", total="50.00"))  # no platform commission on our own tills
    assert not any("Commission" in line.account for line in pos.lines) and len(pos.lines) == 4
    gift = compose(make_order("taobao", total="0.00"))  # a free gift: only the parcel costs
    assert [line.account for line in gift.lines] == ["Expenses:Logistics:SF", "Liabilities:Payable:Logistics:SF"]


def test_nothing_to_book_is_an_error() -> None:
    fees = parse_fees(DEFAULT_FEES.read_text(encoding="utf-8").replace("first_price: 12.00", "first_price: 0")
                      .replace("additional_per_kg: 2.00", "additional_per_kg: 0"))
    with pytest.raises(FeeError, match="nothing to book"):
        compose(make_order("pos", total="0"), fees=fees, weight_g=500)


# --------------------------------------------------------------------------- carrier fee table


@pytest.mark.parametrize(("carrier", "weight_g", "province", "fee"), [
    ("SF", 0, "浙江省", "12.00"),
    ("SF", 1000, "浙江省", "12.00"),
    ("SF", 1001, "浙江省", "14.00"),  # a started kilogram is a kilogram
    ("SF", 3000, "浙江省", "16.00"),
    ("SF", 3001, "新疆维吾尔自治区", "28.00"),  # 12 + 3 × 2 + 10 surcharge
    ("sf", 500, "", "12.00"),  # codes are case-insensitive
    ("ZTO", 800, "广东省", "3.00"),
    ("ZTO", 2500, "西藏自治区", "14.00"),  # 3.00 + 2 × 1.50 + 8.00
    ("YTO", 1500, "内蒙古自治区", "6.50"),  # 3.00 + 1.50 + 2.00
    ("YD", 1000, "江苏省", "2.80"),
    ("STO", 5000, "青海省", "11.80"),  # 2.80 + 4 × 1.50 + 3.00
    ("JD", 1200, "北京市", "11.00"),
])
def test_carrier_fee_table(carrier: str, weight_g: int, province: str, fee: str) -> None:
    assert FEES.logistics_fee(carrier, weight_g, province) == Decimal(fee)


def test_fee_steps_and_longest_region_match() -> None:
    text = """
channels: {taobao: {account: Taobao, commission_rate: 0.05}}
carriers:
  EMS:
    first_weight_g: 500
    first_price: 10
    additional_per_kg: 3.33
    step_g: 500
    region_surcharges: {新疆: 5, 新疆喀什: 20}
schemes:
  b: {style: beancount, receivable: "Assets:R:{channel}", revenue: "Income:S:{channel}",
      commission_expense: "Expenses:C:{channel}", commission_payable: "Liabilities:P:{channel}",
      logistics_expense: "Expenses:L:{carrier}", logistics_payable: "Liabilities:P:L:{carrier}"}
"""
    fees = parse_fees(text)
    assert fees.logistics_fee("EMS", 500) == Decimal("10.00")
    assert fees.logistics_fee("EMS", 501) == Decimal("11.67")  # 10 + 3.33 × 0.5 = 11.665 → 11.67 (half-up)
    assert fees.logistics_fee("EMS", 1001, "新疆喀什地区") == Decimal("33.33")  # 10 + 2 × 1.665 + 20
    assert fees.logistics_fee("EMS", 400, "新疆乌鲁木齐") == Decimal("15.00")
    voucher = compose(make_order("taobao", total="10.00", province="新疆喀什地区"), fees=fees, carrier="ems",
                      weight_g=400, scheme="b")
    assert by_account(voucher)["Expenses:L:EMS"] == (Decimal("30.00"), Decimal("0"))
    assert voucher.lines[-1].memo == "EMS 400 g, 新疆喀什 surcharge"
    assert compose(make_order("taobao", total="10.00"), fees=fees, carrier="EMS", weight_g=400, scheme="b",
                   region="新疆").lines[-1].credit == Decimal("15.00")


def test_unknown_channel_carrier_or_scheme_and_negative_weight() -> None:
    with pytest.raises(FeeError, match=r"carrier 'DHL' is not in the fee file .*default.yaml.*SF"):
        compose(carrier="DHL")
    with pytest.raises(FeeError, match=r"account scheme 'sap' .*beancount, kingdee"):
        compose(scheme="sap")
    fees = parse_fees("channels: {jd: {account: JD, commission_rate: 0.08}}\ncarriers: {SF: {first_price: 1}}\n"
                      "schemes: {k: {style: codes, receivable: '1122', revenue: '6001', commission_expense: '6601',"
                      " commission_payable: '2202', logistics_expense: '6601', logistics_payable: '2202'}}\n")
    with pytest.raises(FeeError, match=r"channel 'taobao' is not in the fee file <string> \(channels: jd\)"):
        compose(fees=fees, scheme="k")
    with pytest.raises(FeeError, match="weight must be >= 0"):
        compose(weight_g=-1)


def test_a_carrier_priced_in_another_currency_is_refused() -> None:
    order = make_order("shopify", total="120.00", currency="USD")
    with pytest.raises(FeeError, match="carrier SF is priced in CNY and order shopify:shop-a:1001 is in USD"):
        compose(order)
    data = yaml.safe_load(DEFAULT_FEES.read_text(encoding="utf-8"))
    data["carriers"]["UPS"] = {"currency": "USD", "first_price": "9.50", "additional_per_kg": "1.25"}
    fees = parse_fees(yaml.safe_dump(data, allow_unicode=True))
    voucher = compose(order, fees=fees, carrier="UPS", weight_g=1500)
    assert voucher.currency == "USD" and balanced(voucher)
    assert by_account(voucher)["Expenses:Commission:Shopify"] == (Decimal("2.40"), Decimal("0"))
    assert by_account(voucher)["Expenses:Logistics:UPS"] == (Decimal("10.75"), Decimal("0"))


def test_reversal_of_a_composed_voucher_balances_and_undoes_it() -> None:
    voucher = compose()
    reversal = voucher.reversal("TDX-SHIP-REV", ON + timedelta(days=2))
    assert balanced(reversal) and reversal.reverses == "TDX-SHIP" and reversal.reference == voucher.reference
    net: dict[str, Decimal] = {}
    for line in [*voucher.lines, *reversal.lines]:
        net[line.account] = net.get(line.account, Decimal("0")) + line.debit - line.credit
    assert set(net.values()) == {Decimal("0")}


# --------------------------------------------------------------------------- bad fee files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fees.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = DEFAULT_FEES.read_text(encoding="utf-8")


@pytest.mark.parametrize(("edit", "field", "message"), [
    (("commission_rate: 0.08", "commission_rate: 1.5"), "channels.jd.commission_rate", "less than or equal to 1"),
    (("commission_rate: 0.08", "commission_rate: -0.01"), "channels.jd.commission_rate", "greater than or equal"),
    (("commission_rate: 0.08", "commission_rate: lots"), "channels.jd.commission_rate", "decimal"),
    (("commission_rate: 0.08", "commission_rate: .inf"), "channels.jd.commission_rate", ""),
    (("first_price: 12.00", "first_price: twelve"), "carriers.SF.first_price", "decimal"),
    (("first_weight_g: 1000", "first_weight_g: 0"), "carriers.SF.first_weight_g", "greater than 0"),
    (("新疆: 10.00", "新疆: -1"), "carriers.SF.region_surcharges", "surcharge must be"),
    (("  taobao:\n", "  taobau:\n"), "channels", "unknown channel(s) 'taobau'"),
    (("    account: JD\n", "    acount: JD\n"), "channels.jd.acount", "Extra inputs"),
    (("    account: JD\n", ""), "channels.jd.account", "Field required"),
    (("receivable: Assets:Receivable:{channel}", "receivable: Assets:Receivable:{shop}"),
     "schemes.beancount.receivable", "unknown placeholder(s) 'shop'"),
    (("revenue: Income:Sales:{channel}", "revenue: income:sales:{channel}"),
     "schemes.beancount.revenue", "not a Beancount account"),
    (("    account: Taobao\n", "    account: taobao shop\n"), "schemes.beancount.receivable",
     "with channels.taobao.account 'taobao shop'"),
    (("style: codes", "style: sap"), "schemes.kingdee.style", "'beancount' or 'codes'"),
    (("version: 1", "version: 2"), "version", "1"),
])
def test_bad_fee_file_errors_name_the_file_and_field(tmp_path: Path, edit: tuple[str, str], field: str,
                                                     message: str) -> None:
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(FeeFileError) as info:
        load_fees(path)
    err = info.value
    assert err.source == str(path) and str(path) in str(err)
    assert any(issue.startswith(f"{field}:") and message in issue for issue in err.issues), err.issues


def test_missing_unreadable_and_non_mapping_fee_files(tmp_path: Path) -> None:
    with pytest.raises(FeeFileError, match="cannot read the file") as info:
        load_fees(tmp_path / "nope.yaml")
    assert info.value.source == str(tmp_path / "nope.yaml")
    with pytest.raises(FeeFileError, match="not valid YAML"):
        load_fees(write(tmp_path, "channels: [unclosed\n"))
    with pytest.raises(FeeFileError, match="expected a mapping"):
        load_fees(write(tmp_path, "- a list\n"))
    with pytest.raises(FeeFileError) as info:
        load_fees(write(tmp_path, "carriers: {}\n"))
    assert {i.split(":")[0] for i in info.value.issues} == {"channels", "schemes"}


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = GOOD.replace("commission_rate: 0.08", "commission_rate: 2").replace("first_price: 12.00", "first_price: x")
    with pytest.raises(FeeFileError) as info:
        load_fees(write(tmp_path, text))
    fields = {issue.split(":")[0] for issue in info.value.issues}
    assert {"channels.jd.commission_rate", "carriers.SF.first_price"} <= fields


def test_load_fees_defaults_to_the_shipped_file() -> None:
    assert load_fees(None).model_dump() == load_fees(DEFAULT_FEES).model_dump()
