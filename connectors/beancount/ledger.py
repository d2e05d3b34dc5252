"""A Beancount ledger file that several activities and processes append vouchers to.

File format (plain Beancount, readable by ``bean-check``, Fava, ``bean-query``)::

    ; Tongdao ledger: vouchers appended by the hub (connector kind "beancount"). Append-only: ...
    option "title" "Tongdao ledger"
    option "operating_currency" "CNY"

    2000-01-01 open Assets:Receivable:Taobao
    2000-01-01 open Income:Sales:Taobao

    2025-06-18 * "taobao" "taobao order 1001 shipped by SF (1200 g)"
      voucher: "TDABC...-SHIP"
      reference: "taobao:shop-a:1001"
      Assets:Receivable:Taobao                      100.00 CNY
        memo: "taobao order 1001"
      Income:Sales:Taobao                          -100.00 CNY

* one transaction per voucher: date, flag ``*``, payee = the voucher's channel, narration; metadata
  ``voucher`` (the number, the idempotency key), ``reference`` (the order key), ``reverses`` (for
  a reversal); a debit is a positive posting, a credit a negative one; a line memo is posting
  metadata ``memo``;
* an ``open`` directive for each account the first time a voucher uses it, dated ``open_date``
  (2000-01-01 by default, so it precedes every posting; a voucher dated earlier is refused);
* a voucher number already in the file is not written again (``created=False``).

Concurrency: every append takes an exclusive ``fcntl.flock`` on the ledger file (separate opens
exclude each other, in one process as across processes), reads what others appended since its
last look (an incremental scan for ``voucher:`` metadata and ``open`` directives, from the byte
offset it had reached), decides, appends the whole entry with one write, and ``fsync``\\ s before
releasing the lock. A file replaced or truncated behind its back is re-scanned from the start.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from canonical import Voucher

__all__ = ["DEFAULT_OPEN_DATE", "BeancountLedger", "LedgerError", "LockTimeout", "PostOutcome", "check_ledger",
           "format_voucher", "ledger_summary", "quote"]

DEFAULT_OPEN_DATE = date(2000, 1, 1)
_VOUCHER_META = re.compile(r'^[ \t]+voucher:[ \t]*"((?:[^"\\]|\\.)*)"')
_OPEN = re.compile(r"^\d{4}-\d{2}-\d{2}[ \t]+open[ \t]+(\S+)")
_TXN = re.compile(r"^\d{4}-\d{2}-\d{2}[ \t]+(?:\*|!|txn\b)")
_UNESCAPE = re.compile(r"\\(.)")
_ACCOUNT_WIDTH = 48
_CHUNK = 1 << 20


class LedgerError(ValueError):
    """The voucher cannot be written to this ledger as it is (an invalid account, a date before
    the accounts' open date...): writing it again will not help."""


class LockTimeout(TimeoutError):
    """Another writer held the ledger lock for longer than the timeout."""


def quote(text: str) -> str:
    """A Beancount string literal (one line; quotes and backslashes escaped)."""
    flat = " ".join(str(text).split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _valid_account(name: str) -> bool:
    from beancount.core import account  # lazy: importing beancount costs ~80 ms

    return account.is_valid(name)


def format_voucher(voucher: Voucher) -> str:
    """The Beancount transaction of a voucher (ends with a blank line)."""
    head = f"{voucher.date.isoformat()} *"
    if voucher.channel:
        head += f" {quote(voucher.channel)}"
    head += f" {quote(voucher.narration)}"
    lines = [head, f"  voucher: {quote(voucher.number)}", f"  reference: {quote(voucher.reference)}"]
    if voucher.reverses:
        lines.append(f"  reverses: {quote(voucher.reverses)}")
    for line in voucher.lines:
        amount = line.debit if line.debit > 0 else -line.credit
        lines.append(f"  {line.account:<{_ACCOUNT_WIDTH}} {_amount(amount):>16} {voucher.currency}")
        if line.memo:
            lines.append(f"    memo: {quote(line.memo)}")
    return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class PostOutcome:
    created: bool
    line: int  # 1-based line of the voucher's transaction in the file (0 when unknown)
    opened: tuple[str, ...] = ()


@dataclass
class _Index:
    file_id: tuple[int, int] | None = None
    offset: int = 0
    lines: int = 0
    last_txn_line: int = 0
    vouchers: dict[str, int] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)


class BeancountLedger:
    """Appends vouchers to one Beancount file, idempotently and safely under concurrency.

    One instance may be shared by threads; several instances (other processes) may write the same
    file. ``post`` blocks (file lock, fsync): call it from a thread in async code.
    """

    def __init__(self, path: str | Path, *, operating_currency: str = "CNY", title: str = "Tongdao ledger",
                 open_date: date = DEFAULT_OPEN_DATE, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(os.path.expandvars(str(path))).expanduser()
        self.operating_currency = operating_currency
        self.title = title
        self.open_date = open_date
        self.lock_timeout_s = lock_timeout_s
        self._index = _Index()
        self._mutex = threading.Lock()

    # ----------------------------------------------------------------- writing

    def header(self) -> str:
        return (f"; {self.title}: vouchers appended by the Tongdao hub (connector kind \"beancount\").\n"
                "; Append-only: the hub locks this file while it writes; check it with `bean-check <file>`.\n"
                f"option \"title\" {quote(self.title)}\n"
                f"option \"operating_currency\" {quote(self.operating_currency)}\n\n")

    def validate(self, voucher: Voucher) -> None:
        """Raise :class:`LedgerError` when the voucher cannot be written as Beancount."""
        bad = sorted({line.account for line in voucher.lines if not _valid_account(line.account)})
        if bad:
            raise LedgerError(f"voucher {voucher.number}: {', '.join(map(repr, bad))} "
                              f"{'is not a Beancount account' if len(bad) == 1 else 'are not Beancount accounts'} "
                              "(Assets|Liabilities|Equity|Income|Expenses:Component..., components start with a "
                              "capital letter or digit); compose it with the 'beancount' account scheme")
        if voucher.date < self.open_date:
            raise LedgerError(f"voucher {voucher.number} is dated {voucher.date}, before the ledger's account open "
                              f"date {self.open_date} (setting open_date)")

    def post(self, voucher: Voucher) -> PostOutcome:
        """Append ``voucher`` unless its number is already in the file."""
        self.validate(voucher)
        with self._mutex:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created_file = not self.path.exists()
            with open(self.path, "a+b", buffering=0) as fh:
                if created_file:
                    _fsync_dir(self.path.parent)
                self._lock(fh.fileno())
                try:
                    return self._post_locked(fh, voucher)
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _post_locked(self, fh: Any, voucher: Voucher) -> PostOutcome:
        fd = fh.fileno()
        self._scan(fh)
        known = self._index.vouchers.get(voucher.number)
        if known is not None:
            return PostOutcome(created=False, line=known)
        size = os.fstat(fd).st_size
        parts: list[str] = []
        if size == 0:
            parts.append(self.header())
        elif os.pread(fd, 1, size - 1) != b"\n":
            parts.append("\n")  # a torn last line (a writer died mid-write): do not glue onto it
        known_accounts = self._index.accounts
        opened = tuple(dict.fromkeys(line.account for line in voucher.lines if line.account not in known_accounts))
        if opened:
            parts.append("".join(f"{self.open_date.isoformat()} open {account}\n" for account in opened) + "\n")
        parts.append(format_voucher(voucher))
        _write_all(fd, "".join(parts).encode("utf-8"))
        os.fsync(fd)
        self._scan(fh)
        return PostOutcome(created=True, line=self._index.vouchers.get(voucher.number, 0), opened=opened)

    def _lock(self, fd: int) -> None:
        deadline = time.monotonic() + self.lock_timeout_s
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{self.path}: another writer held the ledger lock for more than "
                                      f"{self.lock_timeout_s:g} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    # ----------------------------------------------------------------- index

    def _scan(self, fh: Any) -> None:
        """Read what was appended since the last scan (everything, if the file was replaced)."""
        st = os.fstat(fh.fileno())
        file_id = (st.st_dev, st.st_ino)
        index = self._index
        if index.file_id != file_id or st.st_size < index.offset:
            index = self._index = _Index(file_id=file_id)
        if st.st_size == index.offset:
            return
        fh.seek(index.offset)
        pending = b""
        while index.offset + len(pending) < st.st_size:
            chunk = fh.read(min(_CHUNK, st.st_size - index.offset - len(pending)))
            if not chunk:
                break
            data = pending + chunk
            end = data.rfind(b"\n")
            if end < 0:
                pending = data  # a line longer than the chunk, or a partial last line
                continue
            for raw in data[: end + 1].split(b"\n")[:-1]:
                index.lines += 1
                text = raw.decode("utf-8", errors="replace")
                if _TXN.match(text):
                    index.last_txn_line = index.lines
                elif match := _VOUCHER_META.match(text):
                    index.vouchers.setdefault(_UNESCAPE.sub(r"\1", match.group(1)), index.last_txn_line)
                elif match := _OPEN.match(text):
                    index.accounts.add(match.group(1))
            index.offset += end + 1
            pending = data[end + 1:]

    def known_vouchers(self) -> dict[str, int]:
        """Voucher numbers in the file (as of the last post or scan) → line of their transaction."""
        with self._mutex:
            if self.path.exists():
                with open(self.path, "rb") as fh:
                    self._scan(fh)
            return dict(self._index.vouchers)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


def _load(path: str | Path) -> tuple[list[Any], list[str], dict[str, Any]]:
    from beancount import loader  # lazy: importing beancount costs ~80 ms

    file = Path(path)
    if not file.is_file():
        return [], [f"{file}: no such ledger file"], {}
    entries, errors, options = loader.load_file(str(file))
    messages = []
    for error in errors:
        source = error.source or {}
        where = f"{source.get('filename', file)}:{source.get('lineno', '?')}"
        messages.append(f"{where}: {error.message}")
    return entries, messages, options


def check_ledger(path: str | Path) -> list[str]:
    """Beancount's loader on the file: the error messages (``file:line: message``); empty means
    ``bean-check`` passes."""
    return _load(path)[1]


def _zero() -> dict[str, Any]:
    return {"revenue": Decimal("0"), "commission": Decimal("0"), "logistics": Decimal("0"), "net": Decimal("0"),
            "vouchers": 0, "reversals": 0}


def ledger_summary(path: str | Path) -> dict[str, Any]:
    """Figures of the ledger, via Beancount's loader.

    ``{"path", "errors": [...], "vouchers": n, "reversals": n,
    "channels": {channel: {currency: {"revenue", "commission", "logistics", "net", "vouchers", "reversals"}}},
    "balances": {account: {currency: Decimal}}}`` -- amounts are ``Decimal``; a channel is a
    transaction's payee; revenue is the credit to ``Income:`` accounts, commission / logistics the
    debits to ``Expenses:`` accounts with a ``Commission`` / ``Logistics`` component (the shipped
    ``beancount`` scheme); a reversal nets its voucher out.
    """
    from beancount.core import data

    entries, errors, _ = _load(path)
    channels: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(_zero))
    balances: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: Decimal("0")))
    vouchers = reversals = 0
    for entry in entries:
        if not isinstance(entry, data.Transaction):
            continue
        is_voucher = "voucher" in entry.meta
        is_reversal = bool(entry.meta.get("reverses"))
        vouchers += is_voucher
        reversals += is_reversal
        counted: set[str] = set()
        for posting in entry.postings:
            if posting.units is None or posting.units.number is None:
                continue
            number, currency = posting.units.number, posting.units.currency
            balances[posting.account][currency] += number
            if not entry.payee:
                continue
            figures = channels[entry.payee][currency]
            if currency not in counted:
                counted.add(currency)
                figures["vouchers"] += is_voucher
                figures["reversals"] += is_reversal
            parts = posting.account.split(":")
            if parts[0] == "Income":
                figures["revenue"] -= number
            elif parts[0] == "Expenses" and "Commission" in parts[1:]:
                figures["commission"] += number
            elif parts[0] == "Expenses" and "Logistics" in parts[1:]:
                figures["logistics"] += number
    for per_currency in channels.values():
        for figures in per_currency.values():
            figures["net"] = figures["revenue"] - figures["commission"] - figures["logistics"]
    return {
        "path": str(path),
        "errors": errors,
        "vouchers": vouchers,
        "reversals": reversals,
        "channels": {name: {cur: dict(fig) for cur, fig in sorted(per.items())}
                     for name, per in sorted(channels.items())},
        "balances": {acc: dict(sorted(per.items())) for acc, per in sorted(balances.items())},
    }
