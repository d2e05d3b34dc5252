"""The Beancount ledger connector: vouchers appended to a local file that bean-check accepts,
idempotent by voucher number, safe under concurrent writers; and the summary read back from it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from canonical import Order, Voucher, VoucherLine
from connectors import connector_class, load_kinds
from connectors.beancount import BeancountConnector, BeancountLedger, check_ledger, ledger_summary
from connectors.beancount import ledger as ledger_module
from connectors.errors import ConfigurationError, InvalidRequestError
from mappings.vouchers import compose_shipment_voucher, load_fees

BEAN_CHECK = Path(sys.executable).parent / "bean-check"
GMT8 = timezone(timedelta(hours=8))
FEES = load_fees()
D = Decimal


def make_order(channel: str, external_id: str, total: str) -> Order:
    return Order.model_validate({
        "channel": channel, "shop": "shop-a", "external_id": external_id, "status": "paid",
        "created_at": datetime(2026, 11, 11, 0, 0, 5, tzinfo=GMT8),
        "modified_at": datetime(2026, 11, 11, 0, 1, tzinfo=GMT8),
        "item_total": total, "total": total,
        "receiver": {"name": "张三", "address": {"province": "浙江省", "city": "杭州市", "street": "文一西路969号"}},
        "lines": [{"line_id": "1", "sku": "TD-SKU-0001", "quantity": 1, "unit_price": total, "total": total}],
    })


def shipment(channel: str, external_id: str, total: str, carrier: str = "SF", weight_g: int = 1200,
             on: date = date(2026, 11, 12)) -> Voucher:
    return compose_shipment_voucher(make_order(channel, external_id, total), number=f"{channel}-{external_id}-SHIP",
                                    on=on, carrier=carrier, weight_g=weight_g, fees=FEES)


def connector(path: Path, **settings: object) -> BeancountConnector:
    conn = connector_class("beancount").from_config("ledger", {"path": str(path), **settings}, {})
    assert isinstance(conn, BeancountConnector)
    return conn


def bean_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, timeout=120,
                          env={"BEANCOUNT_DISABLE_LOAD_CACHE": "1", "PATH": "/usr/bin:/bin"})


def assert_checks(path: Path) -> None:
    assert check_ledger(path) == []
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def numbers_in(path: Path) -> list[str]:
    return [line.split('"')[1] for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("  voucher: ")]


def test_the_kind_is_discovered_with_the_vouchers_capability(tmp_path: Path) -> None:
    cls = load_kinds()["beancount"]
    assert cls is BeancountConnector and cls.title == "Beancount ledger (local file)"
    assert cls.capabilities == frozenset({"vouchers"})
    conn = connector(tmp_path / "l.beancount")
    assert conn.settings.operating_currency == "CNY" and conn.settings.base_url == ""
    assert conn.describe()["settings"]["path"] == str(tmp_path / "l.beancount")
    with pytest.raises(ConfigurationError, match="path"):
        connector_class("beancount").from_config("ledger", {}, {})


async def test_vouchers_and_a_reversal_make_a_ledger_bean_check_accepts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger" / "tongdao.beancount"  # the directory does not exist yet
    conn = connector(path)
    first = shipment("taobao", "1001", "189.00")
    vouchers = [first, shipment("jd", "2001", "99.90", carrier="JD"),
                shipment("pinduoduo", "3001", "75.00", carrier="ZTO", weight_g=2500),
                shipment("taobao", "1002", "20.00", carrier="YTO", weight_g=300)]
    results = [await conn.post_voucher(v) for v in vouchers]
    assert all(r.created for r in results) and [r.number for r in results] == [v.number for v in vouchers]
    reversal = first.reversal("taobao-1001-SHIP-REV", date(2026, 11, 14))
    rev = await conn.post_voucher(reversal)
    assert rev.created and rev.external_id.startswith("tongdao.beancount:")

    text = path.read_text(encoding="utf-8")
    assert text.startswith("; Tongdao ledger") and 'option "operating_currency" "CNY"' in text
    assert text.count("open Assets:Receivable:Taobao") == 1  # opened once, though used three times
    assert "2000-01-01 open Liabilities:Payable:Logistics:SF" in text
    assert '2026-11-12 * "taobao" "taobao order 1001 shipped by SF (1200 g)"' in text
    assert '  voucher: "taobao-1001-SHIP"\n  reference: "taobao:shop-a:1001"\n' in text
    assert '  reverses: "taobao-1001-SHIP"' in text
    assert "189.00 CNY" in text and "-9.45 CNY" in text
    assert numbers_in(path) == [v.number for v in vouchers] + ["taobao-1001-SHIP-REV"]
    line = int(rev.external_id.rsplit(":", 1)[1])
    assert text.splitlines()[line - 1].startswith("2026-11-14 * \"taobao\"")
    assert_checks(path)

    from beancount import loader

    entries, errors, options = loader.load_file(str(path))
    assert errors == [] and options["operating_currency"] == ["CNY"]
    txns = [e for e in entries if type(e).__name__ == "Transaction"]
    assert {t.meta["voucher"] for t in txns} == {v.number for v in [*vouchers, reversal]}
    for txn in txns:
        assert sum(p.units.number for p in txn.postings) == 0
        assert all(isinstance(p.units.number, Decimal) for p in txn.postings)


async def test_a_repeat_is_not_written_twice(tmp_path: Path) -> None:
    path = tmp_path / "l.beancount"
    voucher = shipment("douyin", "5001", "59.00")
    first = await connector(path).post_voucher(voucher)
    size = path.stat().st_size
    again = await connector(path).post_voucher(voucher)  # a retried activity, another worker process
    same = await connector(path).post_voucher(voucher.model_copy(update={"narration": "changed"}))
    assert first.created and not again.created and not same.created
    assert again.external_id == first.external_id
    assert path.stat().st_size == size and numbers_in(path) == [voucher.number]
    assert_checks(path)


def test_eight_threads_posting_concurrently_write_each_voucher_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / "tongdao.beancount"
    channels = ["taobao", "tmall", "jd", "pinduoduo", "douyin", "shopify", "amazon"]
    carriers = ["SF", "ZTO", "YTO", "YD", "STO", "JD"]
    rng = random.Random(7)
    vouchers = [shipment(channels[i % len(channels)], str(9000 + i), f"{rng.randrange(100, 100000) / 100:.2f}",
                         carrier=carriers[i % len(carriers)], weight_g=rng.randrange(0, 8000),
                         on=date(2026, 11, 11) + timedelta(days=i % 5)) for i in range(40)]
    vouchers += [v.reversal(f"{v.number}-REV", v.date + timedelta(days=1)) for v in vouchers[:6]]
    shared = connector(path)
    created: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        conn = shared if n % 2 else connector(path)  # one shared instance, and instances of their own
        order = vouchers[:]
        random.Random(n).shuffle(order)
        try:
            start.wait()
            for voucher in order:
                result = asyncio.run(conn.post_voucher(voucher))
                if result.created:
                    with lock:
                        created.append(result.number)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(created) == sorted(v.number for v in vouchers)  # each created exactly once
    assert sorted(numbers_in(path)) == sorted(v.number for v in vouchers)
    text = path.read_text(encoding="utf-8")
    assert text.count('option "operating_currency"') == 1
    opens = [line for line in text.splitlines() if " open " in line]
    assert len(opens) == len(set(opens))
    assert_checks(path)


_PROCESS = """
import asyncio, sys
from datetime import date
from decimal import Decimal
from canonical import Voucher, VoucherLine
from connectors import connector_class

path, n = sys.argv[1], int(sys.argv[2])
conn = connector_class("beancount").from_config("ledger", {"path": path}, {})
created = 0
order = list(range(30))[::-1] if n % 2 else list(range(30))
for i in order:
    v = Voucher(number=f"P-{i}", date=date(2026, 1, 1 + i % 28), reference=f"pos:s:{i}", channel="pos",
                lines=[VoucherLine(account="Assets:Receivable:POS", debit=Decimal(i + 1)),
                       VoucherLine(account=f"Income:Sales:Till{i % 3}", credit=Decimal(i + 1))])
    created += asyncio.run(conn.post_voucher(v)).created
print(created)
"""


def test_several_processes_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.beancount"
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(path), str(n)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2]) for n in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum(int(out.strip()) for out in outputs) == 30
    assert sorted(numbers_in(path)) == sorted(f"P-{i}" for i in range(30))
    assert_checks(path)


async def test_summary_figures_per_channel_and_account(tmp_path: Path) -> None:
    path = tmp_path / "l.beancount"
    conn = connector(path)
    a = shipment("taobao", "1001", "189.00")  # commission 9.45, SF 1200 g = 14.00
    b = shipment("taobao", "1002", "20.00", carrier="YTO", weight_g=300)  # commission 1.00, YTO 3.00
    c = shipment("jd", "2001", "99.90", carrier="JD")  # commission 7.99 (7.992), JD 1200 g = 11.00
    for voucher in (a, b, c, b.reversal("taobao-1002-SHIP-REV", date(2026, 11, 13))):
        assert (await conn.post_voucher(voucher)).created
    summary = ledger_summary(path)
    assert summary["errors"] == [] and summary["vouchers"] == 4 and summary["reversals"] == 1
    taobao = summary["channels"]["taobao"]["CNY"]
    assert taobao == {"revenue": D("189.00"), "commission": D("9.45"), "logistics": D("14.00"),
                      "net": D("165.55"), "vouchers": 3, "reversals": 1}
    assert summary["channels"]["jd"]["CNY"] == {"revenue": D("99.90"), "commission": D("7.99"),
                                                "logistics": D("11.00"), "net": D("80.91"), "vouchers": 1,
                                                "reversals": 0}
    balances = summary["balances"]
    assert balances["Assets:Receivable:Taobao"] == {"CNY": D("189.00")}
    assert balances["Income:Sales:JD"] == {"CNY": D("-99.90")}
    assert balances["Liabilities:Payable:Logistics:YTO"] == {"CNY": D("0.00")}  # reversed
    assert balances["Liabilities:Payable:Logistics:SF"] == {"CNY": D("-14.00")}
    assert sum(v for per in balances.values() for v in per.values()) == 0


async def test_vouchers_beancount_cannot_hold_are_refused_permanently(tmp_path: Path) -> None:
    path = tmp_path / "l.beancount"
    conn = connector(path)
    kingdee = compose_shipment_voucher(make_order("taobao", "1", "10.00"), number="K-1", on=date(2026, 1, 2),
                                       carrier="SF", weight_g=100, fees=FEES, scheme="kingdee")
    with pytest.raises(InvalidRequestError, match="'1122'.*not Beancount accounts.*'beancount' account scheme"):
        await conn.post_voucher(kingdee)
    old = shipment("taobao", "1", "10.00", on=date(1999, 12, 31))
    with pytest.raises(InvalidRequestError, match="before the ledger's account open date 2000-01-01"):
        await conn.post_voucher(old)
    assert not path.exists()  # nothing written
    early = connector(tmp_path / "early.beancount", open_date="1990-01-01")
    assert (await early.post_voucher(old)).created
    assert_checks(tmp_path / "early.beancount")


async def test_text_is_escaped_and_memos_are_posting_metadata(tmp_path: Path) -> None:
    path = tmp_path / "l.beancount"
    voucher = Voucher(number='V"1\\x', date=date(2026, 3, 1), reference="shopify:s:#1001", channel="shopify",
                      currency="USD", narration='a "quoted"\nnarration \\ 中文',
                      lines=[VoucherLine(account="Assets:Receivable:Shopify", debit=D("10.1234"), memo='m"1'),
                             VoucherLine(account="Income:Sales:Shopify", credit=D("10.1234"))])
    conn = connector(path)
    assert (await conn.post_voucher(voucher)).created
    assert not (await conn.post_voucher(voucher)).created  # the escaped number is recognised
    assert_checks(path)
    from beancount import loader

    entries, _, _ = loader.load_file(str(path))
    txn = entries[-1]
    assert txn.meta["voucher"] == 'V"1\\x' and txn.narration == 'a "quoted" narration \\ 中文'
    assert txn.postings[0].meta["memo"] == 'm"1' and txn.postings[0].units.number == D("10.1234")
    assert txn.postings[0].units.currency == "USD"


async def test_a_replaced_file_is_rescanned_and_a_torn_line_is_not_glued_onto(tmp_path: Path) -> None:
    path = tmp_path / "l.beancount"
    conn = connector(path)
    assert (await conn.post_voucher(shipment("taobao", "1", "10.00"))).created
    path.unlink()  # someone moved the ledger away: the next post starts a new file with its header and opens
    assert (await conn.post_voucher(shipment("taobao", "2", "10.00"))).created
    assert path.read_text(encoding="utf-8").startswith("; Tongdao ledger")
    assert numbers_in(path) == ["taobao-2-SHIP"]
    assert_checks(path)
    append(path, "; a writer died here")  # no newline
    assert (await conn.post_voucher(shipment("taobao", "3", "10.00"))).created
    assert "\n2026-11-12 * \"taobao\" \"taobao order 3" in path.read_text(encoding="utf-8")
    assert_checks(path)  # the torn line was a comment, so the file still checks


async def test_connection_test_reports_writable_and_clean(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "l.beancount"
    conn = connector(path)
    assert "does not exist yet" in await conn.test()
    await conn.post_voucher(shipment("jd", "1", "10.00"))
    assert "checks clean (1 vouchers)" in await conn.test()
    append(path, '2026-01-01 * "x"\n  Assets:Nowhere  1 CNY\n  Income:Nowhere  -1 CNY\n')
    with pytest.raises(ConfigurationError, match="does not check: .*l.beancount:\\d+: .*Assets:Nowhere"):
        await conn.test()
    assert check_ledger(tmp_path / "missing.beancount") == [f"{tmp_path / 'missing.beancount'}: no such ledger file"]


def test_the_sync_ledger_reports_known_vouchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "l.beancount"
    ledger = BeancountLedger(path, operating_currency="CNY")
    outcome = ledger.post(shipment("tmall", "1", "10.00"))
    assert outcome.created and "Assets:Receivable:Tmall" in outcome.opened
    again = BeancountLedger(path).post(shipment("tmall", "1", "10.00"))
    assert not again.created and again.line == outcome.line and again.opened == ()
    lines = {v.number: ledger.post(v).line for v in (shipment("jd", str(i), "5.00") for i in range(3))}
    expected = {"tmall-1-SHIP": outcome.line, **lines}
    assert BeancountLedger(path).known_vouchers() == expected
    monkeypatch.setattr(ledger_module, "_CHUNK", 13)  # the scan reads a big file in chunks
    assert BeancountLedger(path).known_vouchers() == expected
    assert not BeancountLedger(path).post(shipment("jd", "2", "5.00")).created
