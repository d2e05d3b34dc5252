"""K3Cloud simulator, part two: sales outbound (销售出库单 ``SAL_OUTSTOCK``) pushed from the sales
order, and accounting vouchers (凭证 ``GL_VOUCHER``). Written from the documentation, like
``simulators/kingdee.py`` (whose session, envelope and status-operation machinery this reuses); it
never imports the hub's connectors.

Protocol modelled (sources, all public):

* ``DynamicFormService.Push`` (下推) ``{"formid": <source form>, "data": {"Ids", "Numbers",
  "EntryIds", "RuleId", "TargetBillTypeId", "TargetOrgId", "TargetFormId", "IsEnableDefaultRule",
  "IsDraftWhenSaveFail", "CustomParams"}}`` -- the parameter list of the K3Cloud WebAPI 下推
  documentation as the official SDKs and client libraries transcribe it: ``Numbers`` an array of
  bill numbers or ``Ids`` a comma-separated string of internal ids; ``EntryIds`` pushes single
  entries (then ids and numbers are not needed); ``RuleId`` is required unless the default rule is
  enabled, ``TargetFormId`` is required when it is; ``IsDraftWhenSaveFail`` keeps a target that
  fails to save as a draft, "暂存的单据是没有编码的" (a draft has no number); ``CustomParams`` only
  reaches conversion plug-ins. The answer is the Save envelope: ``Result.ResponseStatus`` with
  ``SuccessEntitys[{Id, Number, DIndex}]`` naming the *target* bills, plus
  ``Result.ConvertResponseStatus`` (per source bill; its exact shape is the simulator's own).
  Source bills must be audited (已审核), not closed and not voided; a push creates the target
  with the quantity not yet pushed (order quantity minus live outbounds of that entry), saved
  (FDocumentStatus A) and numbered by the coding rule (``XSCKD000001`` ...). A push that cannot
  produce anything fails as a whole and creates nothing. Rules modelled: ``SaleOrder-OutStock``
  (the standard sales order -> sales outbound rule: it is the ``FRuleId`` K3Cloud writes into the
  outbound's link entries ``FEntity_Link_FRuleId``), also found as the default rule for the pair.
* ``SAL_OUTSTOCK`` fields (the form's field list: header ``FID``, ``FBillNo``, ``FDate``,
  ``FDocumentStatus``, ``FCancelStatus``, ``FCustomerID``, ``FSaleOrgId``, ``FStockOrgId``,
  ``FNote`` 备注; entry ``FEntity`` with ``FEntity_FEntryID``, ``FMaterialID``, ``FRealQty`` 实发数量,
  ``FMustQty`` 应发数量, ``FSrcBillNo`` 源单编号, ``FSoorDerno`` 销售订单号, ``FSrcType``). View
  renders the entry as ``SAL_OUTSTOCKENTRY`` (ORM names). Save only *modifies* a pushed outbound
  (``Model.FID``; creating one without a push is not modelled): ``NeedUpDateFields`` limits what
  changes (an entry field needs its entity key too, as documented), ``IsDeleteEntry`` (default
  true) drops the entries the Model does not list; ``FRealQty`` must stay above 0 and within what
  the sales order entry has left (the simulator's stand-in for over-delivery control); a new
  ``FBillNo`` must be unique (the coding-rule uniqueness error). Only bills in Z/A/D can be saved.
  Submit/Audit/UnAudit/CancelAssign/Delete/ExcuteOperation follow the sales order rules of
  ``simulators/kingdee.py``; a sales order with a live outbound counts as having downstream bills
  (UnAudit and Delete refused).
* ``GL_VOUCHER`` (open.kingdee.com API documentation of 凭证, as transcribed: operations Save,
  View, Submit, Audit, UnAudit, Delete, ExecuteBillQuery; Model ``FVOUCHERID``,
  ``FAccountBookID`` 账簿, ``FDate``, ``FBUSDATE``, ``FYEAR``, ``FPERIOD``, ``FVOUCHERGROUPID``
  凭证字, ``FVOUCHERGROUPNO`` 凭证号, ``FATTACHMENTS``, ``FEntity`` with ``FEXPLANATION`` 摘要,
  ``FACCOUNTID`` 科目, ``FCURRENCYID``, ``FEXCHANGERATETYPE``, ``FEXCHANGERATE``, ``FAMOUNTFOR``,
  ``FDEBIT``, ``FCREDIT``; required: account book, date, voucher group, and per entry account,
  currency and rate type). ``FBillNo`` (voucher bill number) and ``FVOUCHERGROUPNO`` differ: the
  number is given by the simulator (``{year}{period}-{group name}-{no}``, its own format), the
  group number counts per book, period and group when not given. Base data: account books
  (``BD_AccountBook``, default ``001``), voucher groups ``PRE001`` 记 / ``PRE002`` 收 / ``PRE003`` 付 /
  ``PRE004`` 转, the preset currencies, rate type ``HLTX01_SYS``, and a small chart of accounts
  (``BD_Account``, see ``DEFAULT_ACCOUNTS``). Rules: an unknown account is refused (MsgCode 11,
  ``FieldName FACCOUNTID``); each entry is a debit or a credit, never both nor neither; the sums of
  ``FDEBIT`` and ``FCREDIT`` must be equal, else the voucher is refused (MsgCode 11, the documented
  error envelope; the message text is the simulator's own); amounts are yuan with 2 decimals.
  Modifying a saved voucher (``FVOUCHERID`` given) is not modelled.

Texts no source pinned down are marked ``# sim text``; clients must branch on ``IsSuccess``,
``MsgCode`` and ``FieldName``, never on message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from simulators.kingdee import (
    ACCOUNT_BOOK_FORM,
    ACCOUNT_FORM,
    AMOUNT_Q,
    CHINA_TZ,
    NOT_AUDITED,
    OUTSTOCK_FORM,
    SALE_ORDER_FORM,
    STATUS_AUDITED,
    BusinessError,
    MasterRecord,
    MsgCode,
    QueryField,
    SaleOrder,
    SaleOrderLine,
    _as_masters,
    as_bool,
    ci_get,
    ci_has,
    error_entry,
    parse_date,
    parse_decimal,
    render_date,
    render_datetime,
    render_value,
    response_status,
    view_ref,
)

if TYPE_CHECKING:
    from simulators.kingdee import KingdeeSimulator

SALE_ORDER_TO_OUTSTOCK = "SaleOrder-OutStock"


@dataclass(frozen=True)
class ConvertRule:
    """A conversion rule (单据转换规则): which source form it pushes to which target form."""

    rule_id: str
    source: str
    target: str


RULES: dict[str, ConvertRule] = {
    SALE_ORDER_TO_OUTSTOCK.lower(): ConvertRule(SALE_ORDER_TO_OUTSTOCK, SALE_ORDER_FORM, OUTSTOCK_FORM),
}

VOUCHER_GROUPS: dict[str, str] = {"PRE001": "记", "PRE002": "收", "PRE003": "付", "PRE004": "转"}
RATE_TYPES: dict[str, str] = {"HLTX01_SYS": "固定汇率"}
DEFAULT_ACCOUNT_BOOKS: dict[str, str] = {"001": "主账簿"}
#: a small chart of accounts (Kingdee 新会计准则 numbers) for tests and the demo
DEFAULT_ACCOUNTS: dict[str, str] = {
    "1002": "银行存款",
    "1122": "应收账款",
    "2202": "应付账款",
    "2221": "应交税费",
    "6001": "主营业务收入",
    "6601": "销售费用",
    "6601.01": "销售费用_平台佣金",
    "6601.02": "销售费用_物流费",
}
ZERO = Decimal("0")


# --- stored records -----------------------------------------------------------------------------


@dataclass
class OutStockLine:
    """One ``FEntity`` row of a sales outbound, linked to its sales order entry."""

    entry_id: int
    seq: int
    material: MasterRecord
    qty: Decimal  # FRealQty 实发数量
    must_qty: Decimal  # FMustQty 应发数量 (what the push proposed)
    tax_price: Decimal
    tax_rate: Decimal
    src_bill_no: str  # FSrcBillNo / FSoorDerno: the sales order number
    so_entry_id: int  # FSOEntryId: the sales order entry it ships

    @property
    def all_amount(self) -> Decimal:
        return (self.tax_price * self.qty).quantize(AMOUNT_Q, ROUND_HALF_UP)


@dataclass
class OutStock:
    """A stored SAL_OUTSTOCK bill (attribute names shared with SaleOrder for the status rules)."""

    id: int
    number: str
    bill_date: date
    customer: MasterRecord
    sale_org: MasterRecord
    note: str
    source: str  # the sales order it was pushed from
    lines: list[OutStockLine]
    created_at: datetime
    modified_at: datetime
    status: str = "A"
    cancel_status: str = "A"
    close_status: str = "A"
    was_audited: bool = False
    downstream: list[str] | None = None


@dataclass
class VoucherEntry:
    """One ``FEntity`` row of a voucher: a debit or a credit on one account."""

    entry_id: int
    seq: int
    explanation: str
    account: MasterRecord
    currency: MasterRecord
    rate_type: MasterRecord
    rate: Decimal
    amount_for: Decimal
    debit: Decimal
    credit: Decimal


@dataclass
class GLVoucher:
    """A stored GL_VOUCHER (``id`` is FVOUCHERID, ``number`` FBillNo)."""

    id: int
    number: str
    book: MasterRecord
    bill_date: date
    year: int
    period: int
    group: MasterRecord
    group_no: int
    attachments: int
    entries: list[VoucherEntry]
    created_at: datetime
    modified_at: datetime
    status: str = "A"
    cancel_status: str = "A"
    close_status: str = "A"
    was_audited: bool = False
    downstream: list[str] | None = None

    @property
    def lines(self) -> list[VoucherEntry]:
        """The entries (the name the query machinery uses for a bill's rows)."""
        return self.entries

    @property
    def debit_total(self) -> Decimal:
        return sum((e.debit for e in self.entries), ZERO)

    @property
    def credit_total(self) -> Decimal:
        return sum((e.credit for e in self.entries), ZERO)


# --- ExecuteBillQuery fields ---------------------------------------------------------------------


def _head(attr: str) -> QueryField:
    return QueryField(lambda bill, _line: getattr(bill, attr))


def _entry(attr: str) -> QueryField:
    return QueryField(lambda _bill, line: getattr(line, attr), True)


def _head_ref(prefix: str, attr: str) -> dict[str, QueryField]:
    """``FKey`` (internal id), ``FKey.FNumber`` and ``FKey.FName`` of a header base-data field."""

    def part(name: str) -> QueryField:
        return QueryField(lambda bill, _line: getattr(getattr(bill, attr), name))

    return {prefix: part("id"), f"{prefix}.fnumber": part("number"), f"{prefix}.fname": part("name")}


def _entry_ref(prefix: str, attr: str) -> dict[str, QueryField]:
    def part(name: str) -> QueryField:
        return QueryField(lambda _bill, line: getattr(getattr(line, attr), name), True)

    return {prefix: part("id"), f"{prefix}.fnumber": part("number"), f"{prefix}.fname": part("name")}


OUTSTOCK_FIELDS: dict[str, QueryField] = {
    "fid": _head("id"),
    "fbillno": _head("number"),
    "fdate": _head("bill_date"),
    "fdocumentstatus": _head("status"),
    "fcancelstatus": _head("cancel_status"),
    "fnote": _head("note"),
    "fcreatedate": _head("created_at"),
    "fmodifydate": _head("modified_at"),
    **_head_ref("fcustomerid", "customer"),
    **_head_ref("fsaleorgid", "sale_org"),
    **_head_ref("fstockorgid", "sale_org"),
    "fentity_fentryid": _entry("entry_id"),
    "fentryid": _entry("entry_id"),
    "fseq": _entry("seq"),
    **_entry_ref("fmaterialid", "material"),
    "frealqty": _entry("qty"),
    "fmustqty": _entry("must_qty"),
    "ftaxprice": _entry("tax_price"),
    "ftaxrate": _entry("tax_rate"),
    "fallamount": QueryField(lambda _bill, line: line.all_amount, True),
    "fsrcbillno": _entry("src_bill_no"),
    "fsoorderno": _entry("src_bill_no"),
    "fsrctype": QueryField(lambda _bill, _line: SALE_ORDER_FORM, True),
    "fsoentryid": _entry("so_entry_id"),
}

VOUCHER_FIELDS: dict[str, QueryField] = {
    "fvoucherid": _head("id"),
    "fbillno": _head("number"),
    "fdate": _head("bill_date"),
    "fbusdate": _head("bill_date"),
    "fyear": _head("year"),
    "fperiod": _head("period"),
    "fvouchergroupno": _head("group_no"),
    "fattachments": _head("attachments"),
    "fdocumentstatus": _head("status"),
    "fdebittotal": QueryField(lambda bill, _line: bill.debit_total),
    "fcredittotal": QueryField(lambda bill, _line: bill.credit_total),
    **_head_ref("faccountbookid", "book"),
    **_head_ref("fvouchergroupid", "group"),
    "fentity_fentryid": _entry("entry_id"),
    "fentryid": _entry("entry_id"),
    "fentity_fentryseq": _entry("seq"),
    "fexplanation": _entry("explanation"),
    **_entry_ref("faccountid", "account"),
    **_entry_ref("fcurrencyid", "currency"),
    **_entry_ref("fexchangeratetype", "rate_type"),
    "fexchangerate": _entry("rate"),
    "famountfor": _entry("amount_for"),
    "fdebit": _entry("debit"),
    "fcredit": _entry("credit"),
}


def _master(id_key: str) -> dict[str, QueryField]:
    return {
        id_key: QueryField(lambda r, _l: r.id),
        "fnumber": QueryField(lambda r, _l: r.number),
        "fname": QueryField(lambda r, _l: r.name),
        "fdocumentstatus": QueryField(lambda _r, _l: "C"),
        "fforbidstatus": QueryField(lambda _r, _l: "A"),
    }


ACCOUNT_FIELDS = _master("facctid")
ACCOUNT_BOOK_FIELDS = _master("fbookid")


# --- the finance forms ------------------------------------------------------------------------------


class FinanceForms:
    """SAL_OUTSTOCK (pushed from SAL_SaleOrder) and GL_VOUCHER for one ``KingdeeSimulator``.

    Every method runs under the simulator's lock (the simulator's dispatcher holds it for business
    calls; the public helpers take it themselves).
    """

    def __init__(
        self,
        sim: KingdeeSimulator,
        accounts: Iterable[str] | Mapping[str, str] | None = None,
        account_books: Iterable[str] | Mapping[str, str] | None = None,
    ) -> None:
        self.sim = sim
        self.accounts = _as_masters(DEFAULT_ACCOUNTS if accounts is None else accounts, 400001, "科目")
        self.books = _as_masters(DEFAULT_ACCOUNT_BOOKS if account_books is None else account_books, 500001, "账簿")
        self.voucher_groups = _as_masters(VOUCHER_GROUPS, 600001, "凭证字")
        self.rate_types = _as_masters(RATE_TYPES, 700001, "汇率类型")
        self.outstocks: list[OutStock] = []
        self.deleted_outstocks: list[OutStock] = []
        self.vouchers: list[GLVoucher] = []
        self.deleted_vouchers: list[GLVoucher] = []
        self._next_outstock_no = 1

    # --- lookups ----------------------------------------------------------------------------------

    def bills(self, form: str) -> list[Any]:
        return self.outstocks if form == OUTSTOCK_FORM.lower() else self.vouchers

    def find(self, form: str, number: str) -> Any:
        wanted = number.lower()
        return next((b for b in self.bills(form) if b.number.lower() == wanted), None)

    def outbounds_of(self, order: SaleOrder) -> list[OutStock]:
        """Live (not voided) outbounds pushed from ``order``: its downstream bills."""
        return [o for o in self.outstocks if o.source.lower() == order.number.lower() and o.cancel_status != "B"]

    def pushed_qty(self, so_entry_id: int, exclude: OutStock | None = None) -> Decimal:
        """Quantity of a sales order entry already on live outbounds (optionally leaving one out)."""
        return sum((ln.qty for o in self.outstocks if o is not exclude and o.cancel_status != "B"
                    for ln in o.lines if ln.so_entry_id == so_entry_id), ZERO)

    def remove(self, bill: Any) -> None:
        """Delete: the bill is gone (kept in the deleted list for assertions)."""
        if isinstance(bill, OutStock):
            self.outstocks.remove(bill)
            self.deleted_outstocks.append(bill)
        else:
            self.vouchers.remove(bill)
            self.deleted_vouchers.append(bill)

    def query_source(self, form: str) -> tuple[dict[str, QueryField], Any]:
        """Field registry and record lister (``per_entry`` -> rows) for ExecuteBillQuery."""
        if form == ACCOUNT_FORM.lower():
            return ACCOUNT_FIELDS, lambda _per_entry: [(a, None) for a in self.accounts.values()]
        if form == ACCOUNT_BOOK_FORM.lower():
            return ACCOUNT_BOOK_FIELDS, lambda _per_entry: [(b, None) for b in self.books.values()]
        registry = OUTSTOCK_FIELDS if form == OUTSTOCK_FORM.lower() else VOUCHER_FIELDS
        bills = self.bills(form)

        def records(per_entry: bool) -> list[tuple[Any, Any]]:
            if per_entry:
                return [(b, ln) for b in bills for ln in b.lines]
            return [(b, None) for b in bills]

        return registry, records

    # --- Push (下推) ------------------------------------------------------------------------------

    def push(self, form_id: Any, data: Any) -> dict[str, Any]:
        """Push audited sales orders (whole, or single entries) to SAL_OUTSTOCK; all or nothing."""
        source = self.sim._require_form(form_id, [SALE_ORDER_FORM])
        if not isinstance(data, dict):
            raise BusinessError(MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])  # sim text
        self._rule(source, data)  # one rule is modelled; this checks RuleId / the default rule
        groups = self._push_sources(data)
        errors: list[dict[str, Any]] = []
        plans: list[tuple[SaleOrder, list[tuple[SaleOrderLine, Decimal]]]] = []
        for index, (label, order, entry_ids) in enumerate(groups):
            try:
                plans.append((order, self._push_plan(label, order, entry_ids)))
            except BusinessError as exc:
                errors.extend({**e, "DIndex": index} for e in exc.errors)
        if errors:
            raise BusinessError(MsgCode.VALIDATION, errors)
        targets = [self._create_outstock(order, plan) for order, plan in plans]
        status = response_status(
            success=True,
            success_entities=[{"Id": o.id, "Number": o.number, "DIndex": i} for i, o in enumerate(targets)])
        convert = response_status(
            success=True,
            success_entities=[{"Id": order.id, "Number": order.number, "DIndex": i}
                              for i, (order, _plan) in enumerate(plans)])
        return {"Result": {"ResponseStatus": status, "ConvertResponseStatus": convert}}

    @staticmethod
    def _rule(source: str, data: dict[str, Any]) -> ConvertRule:
        rule_id = str(ci_get(data, "RuleId") or "").strip()
        target = str(ci_get(data, "TargetFormId") or "").strip()
        if rule_id:
            rule = RULES.get(rule_id.lower())
            if rule is None or rule.source.lower() != source:
                raise BusinessError(MsgCode.EXCEPTION, [error_entry(  # sim text: an unknown rule id
                    f"单据转换规则“{rule_id}”不存在，或者不适用于当前单据。")])
            if target and target.lower() != rule.target.lower():
                raise BusinessError(MsgCode.PARAMETER, [error_entry(  # sim text
                    f"转换规则“{rule.rule_id}”的目标单据是“{rule.target}”，与 TargetFormId“{target}”不一致。")])
            return rule
        if as_bool(ci_get(data, "IsEnableDefaultRule"), False):
            if not target:
                # documented: TargetFormId is required when the default rule is enabled (sim text)
                raise BusinessError(MsgCode.PARAMETER, [error_entry("启用默认转换规则时，TargetFormId 必录。")])
            for rule in RULES.values():
                if rule.source.lower() == source and rule.target.lower() == target.lower():
                    return rule
            raise BusinessError(MsgCode.EXCEPTION, [error_entry(  # sim text
                f"没有从“{SALE_ORDER_FORM}”到“{target}”的默认转换规则。")])
        # documented: RuleId is required unless the default rule is enabled
        raise BusinessError(MsgCode.PARAMETER, [error_entry("未启用默认转换规则时，RuleId 必录。")])  # sim text

    def _push_sources(self, data: dict[str, Any]) -> list[tuple[str, SaleOrder | None, set[int] | None]]:
        """Source orders from ``EntryIds`` (entry push), else ``Ids``/``Numbers`` (whole bills)."""
        raw_entries = ci_get(data, "EntryIds")
        parts = raw_entries if isinstance(raw_entries, list) else str(raw_entries or "").split(",")
        entry_ids = {int(d) for d in (parse_decimal(p) for p in parts if str(p).strip()) if d is not None and d > 0}
        if entry_ids:
            by_order: dict[int, set[int]] = {}
            for order in self.sim.orders:
                hit = {ln.entry_id for ln in order.lines} & entry_ids
                if hit:
                    by_order[order.id] = hit
            missing = entry_ids - {e for hits in by_order.values() for e in hits}
            if missing:
                raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry(  # sim text
                    f"分录内码 {','.join(str(m) for m in sorted(missing))} 对应的源单分录不存在")])
            orders = {o.id: o for o in self.sim.orders}
            return [(orders[oid].number, orders[oid], hits) for oid, hits in by_order.items()]
        return [(label, order, None) for label, order in self.sim._targets(data)]

    def _push_plan(self, label: str, order: SaleOrder | None,
                   entry_ids: set[int] | None) -> list[tuple[SaleOrderLine, Decimal]]:
        """The entries to push and their quantities; refusals name the source bill."""
        if order is None:
            raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry(f"单据“{label}”不存在或已被删除")])  # sim text
        prefix = f"单据编号为“{order.number}”的单据，"
        if order.status != STATUS_AUDITED:
            raise BusinessError(MsgCode.VALIDATION, [error_entry(prefix + "未审核，不允许下推。")])  # sim text
        if order.cancel_status == "B" or order.close_status == "B":
            raise BusinessError(MsgCode.VALIDATION, [error_entry(prefix + "已作废或已关闭，不允许下推。")])  # sim text
        plan = []
        for line in order.lines:
            if entry_ids is not None and line.entry_id not in entry_ids:
                continue
            left = line.qty - self.pushed_qty(line.entry_id)
            if left > 0:
                plan.append((line, left))
        if not plan:
            # sim text: everything already pushed (the order's outbounds cover its quantities)
            raise BusinessError(MsgCode.VALIDATION, [error_entry(prefix + "已全部下推，没有可下推的数据。")])
        return plan

    def _create_outstock(self, order: SaleOrder, plan: list[tuple[SaleOrderLine, Decimal]]) -> OutStock:
        now = datetime.now(CHINA_TZ)
        lines = [OutStockLine(self.sim.new_entry_id(), seq, line.material, qty, qty, line.tax_price, line.tax_rate,
                              order.number, line.entry_id)
                 for seq, (line, qty) in enumerate(plan, start=1)]
        bill = OutStock(id=self.sim.new_bill_id(), number=self._auto_number(), bill_date=now.date(),
                        customer=order.customer, sale_org=order.sale_org,
                        note=order.note,  # assumption: the rule maps 备注 as it does in standard data
                        source=order.number, lines=lines, created_at=now, modified_at=now)
        self.outstocks.append(bill)
        return bill

    def _auto_number(self) -> str:
        taken = {o.number.lower() for o in self.outstocks}
        while True:
            number = f"XSCKD{self._next_outstock_no:06d}"
            self._next_outstock_no += 1
            if number.lower() not in taken:
                return number

    # --- Save -------------------------------------------------------------------------------------

    def save(self, form: str, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(ci_get(data, "Model"), dict):
            raise BusinessError(MsgCode.PARAMETER, [error_entry("data数据包中的参数Model的值不能为空。")])
        if form == OUTSTOCK_FORM.lower():
            return self._save_outstock(data)
        return self._save_voucher(data)

    def _save_outstock(self, data: dict[str, Any]) -> OutStock:
        model = ci_get(data, "Model")
        fid = parse_decimal(ci_get(model, "FID"))
        if fid is None or fid == 0:
            # not modelled: outbounds come from a push here (K3Cloud also saves them with link entries)
            raise BusinessError(MsgCode.PARAMETER, [error_entry(  # sim text
                "模拟器仅支持修改由销售订单下推生成的销售出库单（Model.FID 必录）。", "FID")])
        bill = next((o for o in self.outstocks if o.id == int(fid)), None)
        if bill is None:
            raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry(f"内码为{fid}的单据不存在或已被删除", "FID")])
        if bill.status not in NOT_AUDITED or bill.cancel_status == "B":
            raise BusinessError(MsgCode.VALIDATION, [error_entry(  # sim text
                f"单据编号为“{bill.number}”的单据，当前状态不允许修改。")])
        need = {str(k).lower() for k in ci_get(data, "NeedUpDateFields") or []}

        def wanted(key: str, source: dict[str, Any] = model) -> bool:
            return ci_has(source, key) and (not need or key.lower() in need)

        errors: list[dict[str, Any]] = []
        number, bill_date, note = bill.number, bill.bill_date, bill.note
        if wanted("FBillNo"):
            raw = ci_get(model, "FBillNo")
            number = str(raw).strip() if isinstance(raw, str | int) else ""
            if not number:
                errors.append(error_entry("字段“单据编号”是必填项", "FBillNo"))  # sim text
            elif any(o is not bill and o.number.lower() == number.lower() for o in self.outstocks):
                message = f"违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。"
                errors.append(error_entry(message, "FBillNo"))
        if wanted("FDate"):
            parsed = parse_date(ci_get(model, "FDate"))
            if parsed is None:
                message = f"字段“日期”的值“{ci_get(model, 'FDate')}”不是有效的日期"  # sim text
                errors.append(error_entry(message, "FDate"))
            else:
                bill_date = parsed
        if wanted("FNote"):
            note = str(ci_get(model, "FNote") or "")
        lines = self._outstock_lines(bill, model, data, need, wanted("FEntity"), errors)
        if errors:
            raise BusinessError(MsgCode.VALIDATION, errors)
        bill.number, bill.bill_date, bill.note = number, bill_date, note
        if lines is not None:
            bill.lines = lines
        bill.modified_at = datetime.now(CHINA_TZ)
        return bill

    def _outstock_lines(self, bill: OutStock, model: dict[str, Any], data: dict[str, Any], need: set[str],
                        update: bool, errors: list[dict[str, Any]]) -> list[OutStockLine] | None:
        """The entries after the Save, or None when the Model leaves them alone."""
        if not update:
            return None
        rows = ci_get(model, "FEntity")
        if not isinstance(rows, list):
            errors.append(error_entry("单据体“明细信息”的值格式不正确", "FEntity"))  # sim text
            return None
        by_id = {ln.entry_id: ln for ln in bill.lines}
        qtys: dict[int, Decimal] = {}
        listed: list[int] = []
        for index, row in enumerate(rows):
            row = row if isinstance(row, dict) else {}
            prefix = f"第{index + 1}行"
            entry_id = parse_decimal(ci_get(row, "FEntryID"))
            if entry_id is None or int(entry_id) not in by_id:
                # new entries are not modelled; an unknown entry id is refused
                errors.append(error_entry(f"{prefix}分录内码“{ci_get(row, 'FEntryID')}”不存在", "FEntity"))  # sim text
                continue
            listed.append(int(entry_id))
            if ci_has(row, "FRealQty") and (not need or "frealqty" in need):
                qty = parse_decimal(ci_get(row, "FRealQty"))
                if qty is None or qty <= 0:
                    errors.append(error_entry(f"{prefix}“实发数量”必须大于0", "FRealQty"))  # sim text
                    continue
                qtys[int(entry_id)] = qty
        keep = listed if as_bool(ci_get(data, "IsDeleteEntry"), True) else list(by_id)
        kept = [by_id[e] for e in by_id if e in keep]
        if not kept:
            errors.append(error_entry("单据体“明细信息”至少需要录入一行数据", "FEntity"))  # sim text
            return None
        result = []
        for seq, line in enumerate(kept, start=1):
            qty = qtys.get(line.entry_id, line.qty)
            order_line = self._order_line(line)
            if order_line is not None:
                allowed = order_line.qty - self.pushed_qty(line.so_entry_id, exclude=bill)
                if qty > allowed:
                    errors.append(error_entry(  # sim text: over-delivery control
                        f"第{seq}行“实发数量”{qty}超出销售订单“{line.src_bill_no}”可出库数量{allowed}", "FRealQty"))
            result.append(OutStockLine(line.entry_id, seq, line.material, qty, line.must_qty, line.tax_price,
                                       line.tax_rate, line.src_bill_no, line.so_entry_id))
        return result

    def _order_line(self, line: OutStockLine) -> SaleOrderLine | None:
        for order in self.sim.orders:
            for order_line in order.lines:
                if order_line.entry_id == line.so_entry_id:
                    return order_line
        return None

    def _save_voucher(self, data: dict[str, Any]) -> GLVoucher:
        model = ci_get(data, "Model")
        fid = parse_decimal(ci_get(model, "FVOUCHERID"))
        if fid is not None and fid != 0:
            raise BusinessError(MsgCode.PARAMETER, [error_entry(  # sim text: not modelled
                "模拟器不支持修改已保存的凭证（FVOUCHERID 应为 0）。", "FVOUCHERID")])
        errors: list[dict[str, Any]] = []
        book = self._ref(model, "FAccountBookID", "账簿", self.books, errors)
        bill_date = parse_date(ci_get(model, "FDate"))
        if bill_date is None:
            errors.append(error_entry("字段“日期”是必填项" if not ci_get(model, "FDate")
                                      else f"字段“日期”的值“{ci_get(model, 'FDate')}”不是有效的日期", "FDate"))
        group = self._ref(model, "FVOUCHERGROUPID", "凭证字", self.voucher_groups, errors)
        year, period = self._period(model, bill_date, errors)
        group_no = self._group_no(model, book, year, period, group, errors)
        entries = self._voucher_entries(model, errors)
        if not errors and entries:
            debit = sum((e.debit for e in entries), ZERO)
            credit = sum((e.credit for e in entries), ZERO)
            if debit != credit:
                message = f"凭证借贷方不平衡：借方合计{debit}，贷方合计{credit}。"  # sim text
                errors.append(error_entry(message, "FDEBIT"))
        if errors:
            raise BusinessError(MsgCode.VALIDATION, errors)
        assert book is not None and group is not None and bill_date is not None
        now = datetime.now(CHINA_TZ)
        attachments = int(parse_decimal(ci_get(model, "FATTACHMENTS")) or 0)
        voucher = GLVoucher(id=self.sim.new_bill_id(), number=f"{year}{period:02d}-{group.name}-{group_no:04d}",
                            book=book, bill_date=bill_date, year=year, period=period, group=group,
                            group_no=group_no, attachments=attachments, entries=entries,
                            created_at=now, modified_at=now)
        if as_bool(ci_get(data, "IsAutoSubmitAndAudit"), False):
            voucher.status, voucher.was_audited = STATUS_AUDITED, True
        self.vouchers.append(voucher)
        return voucher

    @staticmethod
    def _ref(source: dict[str, Any], key: str, label: str, master: dict[str, MasterRecord],
             errors: list[dict[str, Any]], prefix: str = "") -> MasterRecord | None:
        value = ci_get(source, key)
        number = ci_get(value, "FNumber") if isinstance(value, dict) else None
        number = str(number).strip() if number not in (None, "") else ""
        if not number:
            errors.append(error_entry(f"{prefix}字段“{label}”是必填项", key))
            return None
        record = master.get(number.lower())
        if record is None:
            errors.append(error_entry(f"{prefix}字段“{label}”的值“{number}”在系统中不存在或未审核", key))  # sim text
        return record

    @staticmethod
    def _period(model: dict[str, Any], bill_date: date | None,
                errors: list[dict[str, Any]]) -> tuple[int, int]:
        """FYEAR/FPERIOD: from the date (a natural-month calendar); when given they must agree."""
        if bill_date is None:
            return 0, 0
        for key, expected in (("FYEAR", bill_date.year), ("FPERIOD", bill_date.month)):
            raw = ci_get(model, key)
            if raw not in (None, "", 0, "0") and parse_decimal(raw) != expected:
                label = "会计年度" if key == "FYEAR" else "期间"
                message = f"字段“{label}”的值“{raw}”与日期{bill_date.isoformat()}不符"  # sim text
                errors.append(error_entry(message, key))
        return bill_date.year, bill_date.month

    def _group_no(self, model: dict[str, Any], book: MasterRecord | None, year: int, period: int,
                  group: MasterRecord | None, errors: list[dict[str, Any]]) -> int:
        """FVOUCHERGROUPNO: the next free number of (book, period, group) unless one is given."""
        same = [v for v in self.vouchers
                if v.book is book and v.group is group and (v.year, v.period) == (year, period)]
        raw = ci_get(model, "FVOUCHERGROUPNO")
        if raw in (None, "", 0, "0"):
            return max((v.group_no for v in same), default=0) + 1
        number = parse_decimal(raw)
        if number is None or number <= 0 or number != number.to_integral_value():
            errors.append(error_entry(f"字段“凭证号”的值“{raw}”不是有效的数值", "FVOUCHERGROUPNO"))  # sim text
            return 0
        if any(v.group_no == int(number) for v in same):
            errors.append(error_entry(f"凭证号{int(number)}已经被使用。", "FVOUCHERGROUPNO"))  # sim text
        return int(number)

    def _voucher_entries(self, model: dict[str, Any], errors: list[dict[str, Any]]) -> list[VoucherEntry]:
        rows = ci_get(model, "FEntity")
        if not isinstance(rows, list) or not rows:
            errors.append(error_entry("单据体“凭证分录”至少需要录入一行数据", "FEntity"))  # sim text
            return []
        entries = []
        for index, row in enumerate(rows):
            row = row if isinstance(row, dict) else {}
            prefix = f"第{index + 1}行"
            account = self._ref(row, "FACCOUNTID", "科目编码", self.accounts, errors, prefix)
            currency = self._ref(row, "FCURRENCYID", "币别", self.sim.currencies, errors, prefix)
            rate_type = self._ref(row, "FEXCHANGERATETYPE", "汇率类型", self.rate_types, errors, prefix)
            amounts: dict[str, Decimal] = {}
            for key, label in (("FDEBIT", "借方金额"), ("FCREDIT", "贷方金额"), ("FEXCHANGERATE", "汇率"),
                               ("FAMOUNTFOR", "原币金额")):
                raw = ci_get(row, key)
                if raw in (None, ""):
                    continue
                value = parse_decimal(raw)
                if value is None:
                    errors.append(error_entry(f"{prefix}字段“{label}”的值“{raw}”不是有效的数值", key))  # sim text
                else:
                    amounts[key] = value
            debit = amounts.get("FDEBIT", ZERO).quantize(AMOUNT_Q, ROUND_HALF_UP)
            credit = amounts.get("FCREDIT", ZERO).quantize(AMOUNT_Q, ROUND_HALF_UP)
            if (debit != 0) == (credit != 0):
                errors.append(error_entry(f"{prefix}借方金额与贷方金额必须且只能录入一个。", "FDEBIT"))  # sim text
            rate = amounts.get("FEXCHANGERATE", Decimal("1"))
            amount_for = amounts.get("FAMOUNTFOR", debit + credit)
            if account is None or currency is None or rate_type is None:
                continue
            entries.append(VoucherEntry(self.sim.new_entry_id(), index + 1, str(ci_get(row, "FEXPLANATION") or ""),
                                        account, currency, rate_type, rate, amount_for, debit, credit))
        return entries

    # --- View -------------------------------------------------------------------------------------

    def view(self, form: str, data: dict[str, Any]) -> dict[str, Any]:
        bill_id = parse_decimal(ci_get(data, "Id"))
        number = str(ci_get(data, "Number") or "").strip()
        if (bill_id is None or bill_id == 0) and not number:
            raise BusinessError(MsgCode.BILL_ID_EMPTY, [error_entry("单据编码或内码不能同时为空")])  # sim text
        for bill in self.bills(form):
            if (bill_id and bill.id == int(bill_id)) or (not bill_id and bill.number.lower() == number.lower()):
                return view_outstock(bill) if isinstance(bill, OutStock) else view_voucher(bill)
        raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry("数据不存在或已被删除！")])  # sim text

    # --- Python API (under the simulator's lock) -----------------------------------------------------

    def outbounds_summary(self) -> dict[str, dict[str, Any]]:
        return {o.number: {
            "Id": o.id,
            "FDocumentStatus": o.status,
            "FCancelStatus": o.cancel_status,
            "FDate": o.bill_date.isoformat(),
            "FNote": o.note,
            "FSrcBillNo": o.source,
            "lines": [{"FMaterialId": ln.material.number, "FRealQty": ln.qty, "FMustQty": ln.must_qty,
                       "FEntryID": ln.entry_id} for ln in o.lines],
        } for o in self.outstocks}

    def vouchers_summary(self) -> dict[str, dict[str, Any]]:
        return {v.number: {
            "Id": v.id,
            "FAccountBookID": v.book.number,
            "FDate": v.bill_date.isoformat(),
            "FVOUCHERGROUPID": v.group.number,
            "FVOUCHERGROUPNO": v.group_no,
            "FDocumentStatus": v.status,
            "explanation": v.entries[0].explanation if v.entries else "",
            "debit": v.debit_total,
            "credit": v.credit_total,
            "entries": [{"FACCOUNTID": e.account.number, "FEXPLANATION": e.explanation, "FDEBIT": e.debit,
                         "FCREDIT": e.credit} for e in v.entries],
        } for v in self.vouchers}

    def totals(self, audited_only: bool) -> dict[str, dict[str, Decimal]]:
        result: dict[str, dict[str, Decimal]] = {}
        for voucher in self.vouchers:
            if audited_only and voucher.status != STATUS_AUDITED:
                continue
            for entry in voucher.entries:
                row = result.setdefault(entry.account.number, {"debit": ZERO, "credit": ZERO, "net": ZERO})
                row["debit"] += entry.debit
                row["credit"] += entry.credit
                row["net"] = row["debit"] - row["credit"]
        return dict(sorted(result.items()))


# --- View rendering -----------------------------------------------------------------------------


def view_outstock(bill: OutStock) -> dict[str, Any]:
    """SAL_OUTSTOCK as View answers it: ORM names, entries under ``SAL_OUTSTOCKENTRY``."""
    return {
        "Id": bill.id,
        "BillNo": bill.number,
        "DocumentStatus": bill.status,
        "CancelStatus": bill.cancel_status,
        "Date": render_date(bill.bill_date),
        "Note": bill.note,
        "CustomerID_Id": bill.customer.id,
        "CustomerID": view_ref(bill.customer),
        "SaleOrgId_Id": bill.sale_org.id,
        "SaleOrgId": view_ref(bill.sale_org),
        "StockOrgId_Id": bill.sale_org.id,
        "StockOrgId": view_ref(bill.sale_org),
        "CreateDate": render_datetime(bill.created_at),
        "ModifyDate": render_datetime(bill.modified_at),
        "SAL_OUTSTOCKENTRY": [{
            "Id": ln.entry_id,
            "Seq": ln.seq,
            "MaterialID_Id": ln.material.id,
            "MaterialID": view_ref(ln.material),
            "RealQty": render_value(ln.qty),
            "MustQty": render_value(ln.must_qty),
            "TaxPrice": render_value(ln.tax_price),
            "TaxRate": render_value(ln.tax_rate),
            "AllAmount": render_value(ln.all_amount),
            "SrcBillNo": ln.src_bill_no,
            "SoorDerno": ln.src_bill_no,
            "SrcType": SALE_ORDER_FORM,
            "SOEntryId": ln.so_entry_id,
        } for ln in bill.lines],
    }


def view_voucher(voucher: GLVoucher) -> dict[str, Any]:
    """GL_VOUCHER as View answers it (ORM names as the simulator renders them)."""
    return {
        "Id": voucher.id,
        "BillNo": voucher.number,
        "AccountBookID_Id": voucher.book.id,
        "AccountBookID": view_ref(voucher.book),
        "Date": render_date(voucher.bill_date),
        "YEAR": voucher.year,
        "PERIOD": voucher.period,
        "VOUCHERGROUPID_Id": voucher.group.id,
        "VOUCHERGROUPID": view_ref(voucher.group),
        "VOUCHERGROUPNO": str(voucher.group_no),
        "ATTACHMENTS": voucher.attachments,
        "DocumentStatus": voucher.status,
        "DEBITTOTAL": render_value(voucher.debit_total),
        "CREDITTOTAL": render_value(voucher.credit_total),
        "CreateDate": render_datetime(voucher.created_at),
        "Entity": [{
            "Id": e.entry_id,
            "Seq": e.seq,
            "EXPLANATION": e.explanation,
            "ACCOUNTID_Id": e.account.id,
            "ACCOUNTID": view_ref(e.account),
            "CURRENCYID": view_ref(e.currency),
            "EXCHANGERATETYPE": view_ref(e.rate_type),
            "EXCHANGERATE": render_value(e.rate),
            "AMOUNTFOR": render_value(e.amount_for),
            "DEBIT": render_value(e.debit),
            "CREDIT": render_value(e.credit),
        } for e in voucher.entries],
    }


__all__ = [
    "DEFAULT_ACCOUNTS",
    "SALE_ORDER_TO_OUTSTOCK",
    "FinanceForms",
]
