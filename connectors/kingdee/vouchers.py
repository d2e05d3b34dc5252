"""Kingdee K3Cloud accounting vouchers (凭证 ``GL_VOUCHER``): a KingdeeConnector mixin.

Documented calls relied on (open.kingdee.com API documentation of GL_VOUCHER -- operations Save,
View, Submit, Audit, UnAudit, Delete, ExecuteBillQuery -- and the WebAPI 接口说明书):

* ``DynamicFormService.Save`` ``{"formid": "GL_VOUCHER", "data": {"IsVerifyBaseDataField": true,
  "Model": {...}}}`` with the documented Model: ``FVOUCHERID`` 0 (new), ``FAccountBookID``
  {FNumber} 账簿, ``FDate``, ``FBUSDATE``, ``FYEAR``, ``FPERIOD``, ``FVOUCHERGROUPID`` {FNumber}
  凭证字 (``PRE001`` = 记 in the preset data), ``FATTACHMENTS``, ``FISADJUSTVOUCHER``, and
  ``FEntity`` rows with ``FEXPLANATION`` 摘要, ``FACCOUNTID`` {FNumber} 科目, ``FCURRENCYID``
  {FNumber}, ``FEXCHANGERATETYPE`` {FNumber} (``HLTX01_SYS`` 固定汇率), ``FEXCHANGERATE``,
  ``FAMOUNTFOR``, ``FDEBIT``, ``FCREDIT`` (a debit row fills FDEBIT and 0 in FCREDIT, and the
  other way round). ``FVOUCHERGROUPNO`` (凭证号) is left to K3Cloud's numbering. ``FYEAR`` /
  ``FPERIOD`` are the date's year and month (a natural-month accounting calendar).
* ``Submit`` then ``Audit`` with ``{"Ids": "<FVOUCHERID>"}``, as the documentation's example
  does after Save (``voucher_audit``; off leaves the voucher saved for accountants to review).
  The WebAPI documents no posting (过账) operation: posting stays with K3Cloud / the accountants.
* ``ExecuteBillQuery`` on ``FVOUCHERID``, ``FBillNo`` (the voucher's bill number, not the
  凭证号 ``FVOUCHERGROUPNO``), ``FDocumentStatus``, ``FEXPLANATION``, ``FAccountBookID.FNumber``.

Idempotency: ``voucher.number`` cannot live in ``FVOUCHERGROUPNO`` (K3Cloud numbers it per book,
period and 凭证字), and the documented Model has no free header text, so it goes into every
entry's 摘要: ``FEXPLANATION = "{line memo or narration} {reference} #{number}"``. The lookup is
``FAccountBookID.FNumber='{book}' AND FEXPLANATION LIKE '%#{number}'`` (end-anchored, so
``X-SHIP`` never matches ``X-SHIP-REV``), confirmed exactly in Python (``_`` is a LIKE wildcard;
``%``, ``[`` and ``]`` are refused in voucher numbers). A person editing the 摘要 breaks the link.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog

from canonical import Voucher
from connectors.base import CreateResult, VoucherTarget
from connectors.errors import ConfigurationError, ConnectorError, InvalidRequestError, TransientError
from connectors.kingdee.outbound import FormBill, KingdeeFormOps, _kc

log = structlog.get_logger("tongdao.kingdee")

VOUCHER_FORM = "GL_VOUCHER"
#: Kingdee's preset currency numbers (币别), fixed across data centres
CURRENCY_NUMBERS = {"CNY": "PRE001", "HKD": "PRE002", "EUR": "PRE003", "JPY": "PRE004", "TWD": "PRE005",
                    "GBP": "PRE006", "USD": "PRE007"}
#: vouchers are booked in the book's own currency at rate 1; the hub has no exchange rates
BOOK_CURRENCY = "CNY"
EXPLANATION_MAX = 200  # kept well inside the 摘要 field
CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """Yuan with 2 decimals, as a string (the documentation's examples send amounts as strings)."""
    return f"{value.quantize(CENT):f}"


class KingdeeVoucherMixin(KingdeeFormOps, VoucherTarget):
    """Capability 'vouchers': Save a GL_VOUCHER (then Submit and Audit), idempotent by number.
    Settings: ``account_book`` (required), ``voucher_group``, ``voucher_audit``,
    ``voucher_accounts`` (hub account -> K3Cloud account number), ``exchange_rate_type``."""

    @staticmethod
    def _voucher_marker(number: str) -> str:
        return f"#{number}"

    def _voucher_book(self) -> str:
        book = self.settings.account_book
        if not book:
            raise ConfigurationError(f"connector {self.name!r} (kingdee): vouchers need setting 'account_book' "
                                     "(账簿编码, GL_VOUCHER.FAccountBookID.FNumber)", platform=_kc().PLATFORM)
        return _kc().check_bill_number(book)

    @staticmethod
    def _voucher_number(number: str) -> str:
        k = _kc()
        k.check_bill_number(number)
        if any(ch in number for ch in "%[]"):
            raise InvalidRequestError(f"voucher number {number!r} contains %, [ or ]: refused rather than escaped "
                                      "into a LIKE pattern", platform=k.PLATFORM)
        return number

    async def _find_voucher(self, number: str) -> FormBill | None:
        """The voucher of account book ``account_book`` whose 摘要 ends with ``#{number}``."""
        marker = self._voucher_marker(number)
        rows = await self._form_query(
            VOUCHER_FORM, "FVOUCHERID,FBillNo,FDocumentStatus,FEXPLANATION",
            f"FAccountBookID.FNumber='{self._voucher_book()}' AND FEXPLANATION LIKE '%{marker}'")
        found: dict[str, FormBill] = {}
        for row in rows:
            if len(row) < 4 or row[0] in (None, "", 0, "0"):
                continue
            explanation = str(row[3] or "")
            if explanation == marker or explanation.endswith(f" {marker}"):
                fid = str(row[0])
                found.setdefault(fid, FormBill(fid, str(row[1] or ""), str(row[2] or "").upper(), "A", explanation))
        if len(found) > 1:
            log.warning("kingdee: several vouchers carry one hub number", connector=self.name, number=number,
                        ids=sorted(found))
        return min(found.values(), key=lambda b: (len(b.fid), b.fid)) if found else None

    def _explanation(self, voucher: Voucher, text: str) -> str:
        """``{text} {reference} #{number}``, the text shortened when the whole would be too long."""
        tail = " ".join(p for p in (voucher.reference.strip(), self._voucher_marker(voucher.number)) if p)
        text = " ".join(text.split())
        room = EXPLANATION_MAX - len(tail) - 1
        if room < 1:
            return tail[-EXPLANATION_MAX:]
        if len(text) > room:
            text = text[: max(room - 1, 0)] + "…"
        return f"{text} {tail}" if text else tail

    def _voucher_model(self, voucher: Voucher) -> dict[str, Any]:
        """The GL_VOUCHER Save ``data`` for ``voucher`` (validated: currency, cents, accounts)."""
        k = _kc()
        s = self.settings
        if voucher.currency != BOOK_CURRENCY:
            raise InvalidRequestError(
                f"voucher {voucher.number} is in {voucher.currency}: only {BOOK_CURRENCY} vouchers are posted to "
                "K3Cloud (a foreign-currency voucher needs an exchange rate the hub does not have)",
                platform=k.PLATFORM)
        entries = []
        for line in voucher.lines:
            amount = line.debit if line.debit > 0 else line.credit
            if amount != amount.quantize(CENT):
                raise InvalidRequestError(f"voucher {voucher.number}: {line.account} amount {amount} has more than "
                                          "2 decimals; K3Cloud books yuan and fen", platform=k.PLATFORM)
            account = (s.voucher_accounts.get(line.account) or line.account).strip()
            entries.append({
                "FEXPLANATION": self._explanation(voucher, line.memo or voucher.narration),
                "FACCOUNTID": {"FNumber": account},
                "FCURRENCYID": {"FNumber": CURRENCY_NUMBERS[BOOK_CURRENCY]},
                "FEXCHANGERATETYPE": {"FNumber": s.exchange_rate_type},
                "FEXCHANGERATE": 1,
                "FAMOUNTFOR": money(amount),
                "FDEBIT": money(line.debit),
                "FCREDIT": money(line.credit),
            })
        day = voucher.date.isoformat()
        model = {
            "FVOUCHERID": 0,
            "FAccountBookID": {"FNumber": self._voucher_book()},
            "FDate": day,
            "FBUSDATE": day,
            "FYEAR": voucher.date.year,
            "FPERIOD": voucher.date.month,
            "FVOUCHERGROUPID": {"FNumber": s.voucher_group},
            "FATTACHMENTS": 0,
            "FISADJUSTVOUCHER": False,
            "FEntity": entries,
        }
        return {"NeedUpDateFields": [], "NeedReturnFields": [], "IsDeleteEntry": True,
                "IsVerifyBaseDataField": True, "Model": model}

    async def post_voucher(self, voucher: Voucher) -> CreateResult:
        """Save ``voucher`` as a GL_VOUCHER (then Submit and Audit with ``voucher_audit``);
        idempotent by ``voucher.number``: a voucher already carrying it answers ``created=False``
        (and is taken on to 已审核 if an earlier attempt stopped short). ``CreateResult.number`` is
        K3Cloud's ``FBillNo``. K3Cloud refuses unknown accounts and unbalanced vouchers
        (``InvalidRequestError`` with its message)."""
        k = _kc()
        s = self.settings
        number = self._voucher_number(voucher.number)
        data = self._voucher_model(voucher)
        label = f"{VOUCHER_FORM} {number}"

        async def finish(bill: FormBill, created: bool) -> CreateResult:
            if s.voucher_audit:
                await self._submit_and_audit(VOUCHER_FORM, bill.fid, bill.document_status, label)
            return CreateResult(external_id=bill.fid, number=bill.number or number, created=created)

        async def attempt() -> CreateResult:
            existing = await self._find_voucher(number)
            if existing is not None:
                return await finish(existing, False)
            try:
                fid, bill_number = await self._form_save(VOUCHER_FORM, data, f"Save {label}")
            except ConnectorError as exc:
                if exc.retryable:
                    raise
                # refused -- unless an earlier attempt (lost reply) or a concurrent worker saved it
                existing = await self._find_voucher(number)
                if existing is not None:
                    return await finish(existing, False)
                raise
            if not fid:
                found = await self._find_voucher(number)
                if found is None:
                    raise TransientError(f"Save {label} succeeded without returning an Id", platform=k.PLATFORM)
                fid, bill_number = found.fid, found.number
            return await finish(FormBill(fid, bill_number, "A", "A"), True)

        log.info("kingdee post voucher", connector=self.name, number=number, lines=len(voucher.lines))
        return await self._retrying(attempt)
