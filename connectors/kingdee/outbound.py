"""Kingdee K3Cloud sales outbound (销售出库单 ``SAL_OUTSTOCK``), pushed (下推) from the sales order.

A mixin of :class:`~connectors.kingdee.connector.KingdeeConnector`: it speaks through the
connector's session (``_call``: re-login on a lost session), its error classification
(``error_from_status`` by MsgCode) and its operation retries (``_retrying``).

Documented calls relied on:

* ``DynamicFormService.Push`` (下推) ``{"formid": "SAL_SaleOrder", "data": {"Ids", "Numbers",
  "EntryIds", "RuleId", "TargetBillTypeId", "TargetOrgId", "TargetFormId", "IsEnableDefaultRule",
  "IsDraftWhenSaveFail", "CustomParams"}}`` -- the K3Cloud WebAPI 下推 parameters as the official
  SDKs and client libraries transcribe them (``Numbers``: array of bill numbers; ``RuleId``
  required unless the default rule is enabled; "暂存的单据是没有编码的": a target kept as a draft
  has no number). Answer: the Save envelope, ``SuccessEntitys[{Id, Number}]`` = the new target
  bills. Rule ``SaleOrder-OutStock`` is K3Cloud's standard sales order -> sales outbound rule (the
  ``FRuleId`` of an outbound's link entries); sites with their own rule set ``outbound_rule_id``.
  ``IsDraftWhenSaveFail`` is sent false: a draft has no number and nothing could find it again.
* ``DynamicFormService.Save`` with ``Model.FID`` modifies the pushed bill; ``NeedUpDateFields``
  limits the update ("更新单据体字段得加上单据体key"), ``IsDeleteEntry`` true drops the entries
  not listed. Fields of SAL_OUTSTOCK: header ``FBillNo``, ``FDate``, ``FNote`` (备注),
  ``FDocumentStatus``, ``FCancelStatus``; entry ``FEntity`` with ``FEntryID``, ``FMaterialID``,
  ``FRealQty`` (实发数量), ``FSrcBillNo`` (源单编号).
* ``Submit`` / ``Audit`` / ``UnAudit`` / ``CancelAssign`` / ``Delete`` / ``ExcuteOperation``
  (K3Cloud WebAPI 接口说明书 V2.0 and the SDKs), ``{"formid", "data": {"Ids": "<FID>", ...}}``.

The hub's number: a pushed outbound is numbered by K3Cloud's coding rule, and whether ``FBillNo``
may be overwritten depends on that rule (手工修改), so the hub number is kept in the header remark
``FNote`` as ``tongdao:{number}`` -- the idempotency lookup is ``FNote='tongdao:{number}'``
(``OR FBillNo='{number}'`` when ``outbound_bill_no`` also writes it into ``FBillNo``). The
K3Cloud ``FBillNo`` comes back as ``CreateResult.number`` (hub number <-> K3 bill number).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from connectors.base import CancelResult, CreateResult, SalesOutboundTarget
from connectors.errors import AuthError, ConfigurationError, InvalidRequestError, TransientError

log = structlog.get_logger("tongdao.kingdee")

_STUB = "Kingdee.BOS.WebApi.ServicesStub."
PUSH_PATH = _STUB + "DynamicFormService.Push.common.kdsvc"
SUBMIT_PATH = _STUB + "DynamicFormService.Submit.common.kdsvc"
AUDIT_PATH = _STUB + "DynamicFormService.Audit.common.kdsvc"

#: the hub number in SAL_OUTSTOCK's header remark: ``FNote = "tongdao:{number}"``
NOTE_PREFIX = "tongdao:"
NOT_AUDITED = ("Z", "A", "D")  # FDocumentStatus: 暂存, 创建, 重新审核
CHINA_TZ = timezone(timedelta(hours=8))  # K3Cloud dates are server-local (China) dates


def _kc() -> Any:
    """The connector module, for its helpers and paths. It imports this module (for the mixin), so
    this one imports it only when a method runs, never at import time."""
    from connectors.kingdee import connector

    return connector


@dataclass(frozen=True)
class FormBill:
    """The header of one bill of some form, as ExecuteBillQuery returned it."""

    fid: str
    number: str
    document_status: str
    cancel_status: str
    note: str = ""


def _rows_to_bills(rows: list[list[Any]]) -> list[FormBill]:
    """``FID,FBillNo,FDocumentStatus,FCancelStatus,FNote`` rows (one per entry when the filter
    touches entries) -> one FormBill per FID, in FID order."""
    bills: dict[str, FormBill] = {}
    for row in rows:
        if len(row) < 5 or row[0] in (None, "", 0, "0"):
            continue
        fid = str(row[0])
        bills.setdefault(fid, FormBill(fid, str(row[1] or ""), str(row[2] or "").upper(),
                                       str(row[3] or "").upper(), str(row[4] or "")))
    return sorted(bills.values(), key=lambda b: (len(b.fid), b.fid))


def json_number(value: Decimal) -> int | float:
    """A quantity as a JSON number (K3Cloud answers quantities as numbers too)."""
    return int(value) if value == value.to_integral_value() else float(value)


def china_date(moment: datetime) -> str:
    """The K3Cloud (China) business date of ``moment``; a naive datetime is taken as China time."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(CHINA_TZ)
    return moment.date().isoformat()


class KingdeeFormOps:
    """Query, save and status operations on any form (the connector's own helpers are bound to its
    sales order ``form_id``). Methods of the connector used: ``_call``."""

    async def _form_query(self, form: str, field_keys: str, filter_string: str, limit: int = 2000,
                          top: int = 0) -> list[list[Any]]:
        k = _kc()
        payload = {"data": {"FormId": form, "FieldKeys": field_keys, "FilterString": filter_string,
                            "OrderString": "", "TopRowCount": top, "StartRow": 0, "Limit": limit}}
        data = await self._call(k.QUERY_PATH, payload)
        status = k._response_status(data)
        if status is not None:
            raise k.error_from_status(status, f"ExecuteBillQuery {form}")
        if not isinstance(data, list):
            raise TransientError(f"unexpected ExecuteBillQuery answer for {form}", platform=k.PLATFORM)
        return [row for row in data if isinstance(row, list)]

    async def _form_save(self, form: str, data: dict[str, Any], what: str) -> tuple[str, str]:
        """Save; ``(Id, Number)`` of the bill, or the classified error."""
        k = _kc()
        answer = await self._call(k.SAVE_PATH, {"formid": form, "data": data})
        status = k._response_status(answer)
        if status is None:
            raise TransientError(f"{what}: Save answered without a ResponseStatus", platform=k.PLATFORM)
        if not k._truthy(status.get("IsSuccess")):
            raise k.error_from_status(status, what)
        result = answer["Result"] if isinstance(answer, dict) else {}
        entity = next(iter(status.get("SuccessEntitys") or []), {}) or {}
        bill_id = result.get("Id") or entity.get("Id")
        number = result.get("Number") or entity.get("Number")
        return ("" if bill_id in (None, 0, "0") else str(bill_id)), str(number or "")

    async def _form_operation(self, form: str, path: str, fid: str, what: str, op_number: str = "") -> Any:
        """One status operation on bill ``fid`` of ``form``: an ``_OpOutcome`` for an answer (a
        refusal comes back), raised errors for throttling, lost sessions, permissions."""
        k = _kc()
        data: dict[str, Any] = {"CreateOrgId": 0, "Numbers": [], "Ids": fid, "NetworkCtrl": ""}
        if path == SUBMIT_PATH:
            data |= {"SelectedPostId": 0, "IgnoreInterationFlag": ""}
        elif path in (AUDIT_PATH, k.UNAUDIT_PATH):
            data |= {"InterationFlags": "", "IsVerifyProcInst": "", "IgnoreInterationFlag": ""}
        payload: dict[str, Any] = {"formid": form, "data": data}
        if path == k.OPERATION_PATH:
            payload["opNumber"] = op_number
            data |= {"PkEntryIds": [], "IgnoreInterationFlag": ""}
        answer = await self._call(path, payload)
        status = k._response_status(answer)
        if status is None:
            raise TransientError(f"{what} answered without a ResponseStatus", platform=k.PLATFORM)
        if k._truthy(status.get("IsSuccess")):
            return k._OpOutcome(True)
        error = k.error_from_status(status, f"{what} {form} FID {fid}")
        if error.retryable or isinstance(error, AuthError | ConfigurationError):
            raise error
        return k._OpOutcome(False, k._msg_code(status), k._error_text(status))

    async def _submit_and_audit(self, form: str, fid: str, status: str, label: str) -> None:
        """From ``status`` to 已审核 (C): Submit (Z/A/D -> B), then Audit (B -> C); a refusal raises."""
        k = _kc()
        if status in NOT_AUDITED:
            outcome = await self._form_operation(form, SUBMIT_PATH, fid, "Submit")
            if not outcome.ok:
                raise InvalidRequestError(f"{label} saved, but Submit was refused: {outcome.text}",
                                          code=str(outcome.msg_code), platform=k.PLATFORM)
            status = "B"
        if status == "B":
            outcome = await self._form_operation(form, AUDIT_PATH, fid, "Audit")
            if not outcome.ok:
                raise InvalidRequestError(f"{label} submitted, but Audit was refused: {outcome.text}",
                                          code=str(outcome.msg_code), platform=k.PLATFORM)

    async def _cancel_bill(self, form: str, bill: FormBill, label: str) -> CancelResult:
        """Take a bill out the documented way: CancelAssign (B) / UnAudit (C), then Delete; a refused
        Delete falls back to void (作废, ``void_operation``)."""
        k = _kc()
        if bill.cancel_status == "B":
            return CancelResult(outcome="already_cancelled", message=f"{label} is voided (作废)")
        done: list[str] = []
        status = bill.document_status
        if status == "B":
            outcome = await self._form_operation(form, k.CANCEL_ASSIGN_PATH, bill.fid, "CancelAssign")
            if not outcome.ok:
                return CancelResult(outcome="refused", message=f"CancelAssign (撤销) refused: {outcome.text}")
            done.append("withdrawn from approval (CancelAssign)")
        elif status == "C":
            outcome = await self._form_operation(form, k.UNAUDIT_PATH, bill.fid, "UnAudit")
            if not outcome.ok:
                # e.g. receivables (应收单) were pushed from it: a person reverses those first
                return CancelResult(outcome="refused", message=f"UnAudit refused: {outcome.text}")
            done.append("un-audited")
        elif status not in NOT_AUDITED:
            return CancelResult(outcome="refused", message=f"{label} has FDocumentStatus {status!r}; "
                                "not a status K3Cloud documents a cancellation for")
        outcome = await self._form_operation(form, k.DELETE_PATH, bill.fid, "Delete")
        if outcome.ok or outcome.msg_code == k.MSG_NOT_FOUND:
            return CancelResult(outcome="cancelled", message=", ".join([*done, "deleted"]))
        why = f"Delete refused: {outcome.text}"
        prefix = f"{', '.join(done)}; " if done else ""
        op = self.settings.void_operation
        if not op:
            return CancelResult(outcome="refused", message=prefix + why)
        voided = await self._form_operation(form, k.OPERATION_PATH, bill.fid, f"ExcuteOperation {op}", op)
        if voided.ok:
            return CancelResult(outcome="cancelled", message=f"{prefix}voided (作废, {op}); {why}")
        return CancelResult(outcome="refused", message=f"{prefix}{why}; {op} (作废) refused: {voided.text}")


class KingdeeOutboundMixin(KingdeeFormOps, SalesOutboundTarget):
    """Capability 'sales_outbound': push the sales order to SAL_OUTSTOCK, fit it to the package,
    mark it with the hub number, Submit and Audit. Settings: ``outbound_form_id``,
    ``outbound_rule_id``, ``outbound_bill_no``, ``outbound_audit``."""

    def _outbound_marker(self, number: str) -> str:
        return f"{NOTE_PREFIX}{number}"

    async def _find_outbound(self, number: str) -> FormBill | None:
        """The outbound carrying hub number ``number`` (``FNote``, or ``FBillNo`` when written there)."""
        s = self.settings
        where = f"FNote='{self._outbound_marker(number)}'"
        if s.outbound_bill_no:
            where = f"({where} OR FBillNo='{number}')"
        rows = await self._form_query(s.outbound_form_id, "FID,FBillNo,FDocumentStatus,FCancelStatus,FNote", where)
        bills = _rows_to_bills(rows)
        return bills[0] if bills else None

    async def _unmarked_outbound(self, sales_number: str) -> FormBill | None:
        """An outbound pushed from ``sales_number`` that an interrupted attempt left behind: not
        audited (Z/A), not voided, and not (yet) marked with a hub number."""
        rows = await self._form_query(
            self.settings.outbound_form_id, "FID,FBillNo,FDocumentStatus,FCancelStatus,FNote",
            f"FSrcBillNo='{sales_number}' AND FDocumentStatus IN ('Z','A') AND FCancelStatus='A'")
        for bill in _rows_to_bills(rows):
            if not bill.note.startswith(NOTE_PREFIX):
                return bill
        return None

    async def _push_outbound(self, sales_number: str) -> tuple[str, str]:
        """Push the whole (remaining) sales order to the outbound form: ``(FID, FBillNo)``."""
        k = _kc()
        s = self.settings
        payload = {"formid": s.form_id, "data": {
            "Ids": "", "Numbers": [sales_number], "EntryIds": "", "RuleId": s.outbound_rule_id,
            "TargetBillTypeId": "", "TargetOrgId": 0, "TargetFormId": s.outbound_form_id,
            "IsEnableDefaultRule": False, "IsDraftWhenSaveFail": False, "CustomParams": {}}}
        answer = await self._call(PUSH_PATH, payload)
        status = k._response_status(answer)
        if status is None:
            raise TransientError("Push answered without a ResponseStatus", platform=k.PLATFORM)
        if not k._truthy(status.get("IsSuccess")):
            raise k.error_from_status(status, f"Push {s.form_id} {sales_number} -> {s.outbound_form_id}")
        targets = [e for e in status.get("SuccessEntitys") or [] if isinstance(e, dict)]
        if not targets or targets[0].get("Id") in (None, "", 0, "0"):
            # pushed, but we cannot tell which bill: the next attempt finds it as unmarked
            raise TransientError(f"Push of {sales_number} succeeded without naming the target bill",
                                 platform=k.PLATFORM)
        return str(targets[0]["Id"]), str(targets[0].get("Number") or "")

    async def _outbound_entries(self, fid: str) -> list[tuple[str, str, Decimal]]:
        """``(FEntryID, material number, FRealQty)`` of the outbound's entries, in entry order."""
        rows = await self._form_query(self.settings.outbound_form_id,
                                      "FID,FEntity_FEntryID,FMaterialID.FNumber,FRealQty", f"FID={int(fid)}")
        entries = []
        for row in rows:
            if len(row) >= 4 and str(row[0]) == fid and row[1] not in (None, "", 0, "0"):
                entries.append((str(row[1]), str(row[2] or ""), Decimal(str(row[3] or 0))))
        return entries

    @staticmethod
    def _allocate(number: str, sales_number: str, package: dict[str, Decimal],
                  entries: list[tuple[str, str, Decimal]]) -> list[tuple[str, Decimal]]:
        """Spread the package's quantities over the pushed entries of each SKU (each entry holds what
        the sales order line had left): ``[(FEntryID, FRealQty)]`` for the entries to keep."""
        k = _kc()
        kept: list[tuple[str, Decimal]] = []
        for sku, wanted in package.items():
            left = wanted
            for entry_id, material, qty in entries:
                if material != sku or left <= 0:
                    continue
                take = min(left, qty)
                kept.append((entry_id, take))
                left -= take
            if left > 0:
                have = sum((q for _e, m, q in entries if m == sku), Decimal("0"))
                raise InvalidRequestError(
                    f"outbound {number}: the package ships {wanted.normalize():f} of {sku} but sales order "
                    f"{sales_number} has {have.normalize():f} left to ship", platform=k.PLATFORM)
        order = {entry_id: i for i, (entry_id, _m, _q) in enumerate(entries)}
        return sorted(kept, key=lambda item: order[item[0]])

    async def create_sales_outbound(self, sales_number: str, number: str, lines: list[dict[str, Any]],
                                    shipped_at: datetime) -> CreateResult:
        """Push sales order ``sales_number`` to SAL_OUTSTOCK for one package; idempotent by ``number``.

        Each attempt: look the outbound up by the hub number (found: finish Submit/Audit if needed,
        ``created=False``); else check the sales order is audited, take the unmarked outbound an
        interrupted attempt left (a Push whose answer was lost) or Push; then one Save sets the
        package quantities (entries not shipped are dropped), ``FDate`` = ``shipped_at`` and the
        hub number (``FNote``, also ``FBillNo`` with ``outbound_bill_no``); then Submit and Audit
        (``outbound_audit``). A package the order cannot cover deletes the pushed bill and raises.
        Outbounds of one sales order are meant to be created one after the other.
        """
        k = _kc()
        s = self.settings
        k.check_bill_number(sales_number)
        k.check_bill_number(number)
        package = self._package(number, lines)
        form = s.outbound_form_id
        label = f"{form} for {number}"

        async def finish(bill_id: str, bill_number: str, status: str, created: bool) -> CreateResult:
            if s.outbound_audit:
                await self._submit_and_audit(form, bill_id, status, label)
            return CreateResult(external_id=bill_id, number=bill_number, created=created)

        async def attempt() -> CreateResult:
            existing = await self._find_outbound(number)
            if existing is not None:
                if existing.cancel_status == "B":  # voided earlier: it exists, it is not re-created
                    return CreateResult(external_id=existing.fid, number=existing.number, created=False)
                return await finish(existing.fid, existing.number, existing.document_status, False)
            order = await self._bill_state(sales_number)
            if order is None:
                raise InvalidRequestError(f"outbound {number}: no {s.form_id} numbered {sales_number}",
                                          platform=k.PLATFORM)
            if order.document_status in (*NOT_AUDITED, "B") and order.cancel_status != "B" \
                    and order.close_status != "B":
                # K3Cloud pushes only from an audited sales order: a saved one is submitted and
                # audited first, as the sales order flow itself would
                await self._submit_and_audit(s.form_id, order.fid, order.document_status,
                                             f"{s.form_id} {sales_number}")
                order = await self._bill_state(sales_number) or order
            if order.document_status != "C" or order.cancel_status == "B" or order.close_status == "B":
                raise InvalidRequestError(
                    f"outbound {number}: {s.form_id} {sales_number} must be audited (FDocumentStatus C, not voided "
                    f"or closed) to push an outbound from it; it is {order.document_status}/{order.cancel_status}/"
                    f"{order.close_status}", platform=k.PLATFORM)
            orphan = await self._unmarked_outbound(sales_number)
            if orphan is not None:
                log.info("kingdee outbound: completing an unmarked pushed bill", connector=self.name,
                         number=number, fid=orphan.fid, bill_no=orphan.number)
                fid, bill_number = orphan.fid, orphan.number
            else:
                fid, bill_number = await self._push_outbound(sales_number)
            entries = await self._outbound_entries(fid)
            try:
                kept = self._allocate(number, sales_number, package, entries)
            except InvalidRequestError:
                await self._form_operation(form, k.DELETE_PATH, fid, "Delete")  # ours, never audited
                raise
            model: dict[str, Any] = {
                "FID": int(fid), "FDate": china_date(shipped_at), "FNote": self._outbound_marker(number),
                "FEntity": [{"FENTRYID": int(entry_id), "FRealQty": json_number(qty)} for entry_id, qty in kept]}
            fields = ["FDate", "FNote", "FEntity", "FRealQty"]
            if s.outbound_bill_no:
                model["FBillNo"] = number
                fields.append("FBillNo")
            data = {"NeedUpDateFields": fields, "NeedReturnFields": [], "IsDeleteEntry": True,
                    "IsVerifyBaseDataField": False, "Model": model}
            _id, saved_number = await self._form_save(form, data, f"Save {form} {bill_number} ({number})")
            bill_number = number if s.outbound_bill_no else (saved_number or bill_number)
            return await finish(fid, bill_number, "A", True)

        return await self._retrying(attempt)

    @staticmethod
    def _package(number: str, lines: list[dict[str, Any]]) -> dict[str, Decimal]:
        """``{"sku", "quantity"}`` lines -> quantity per SKU (the material number), positive."""
        k = _kc()
        package: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
        for line in lines or []:
            sku = str((line or {}).get("sku") or "").strip()
            try:
                quantity = Decimal(str((line or {}).get("quantity")))
            except (InvalidOperation, ValueError):
                quantity = Decimal("0")
            if not sku or not quantity.is_finite() or quantity <= 0:
                raise InvalidRequestError(f"outbound {number}: each line needs a sku and a positive quantity",
                                          platform=k.PLATFORM)
            package[sku] += quantity
        if not package:
            raise InvalidRequestError(f"outbound {number}: no lines", platform=k.PLATFORM)
        return dict(package)

    async def cancel_sales_outbound(self, number: str, reason: str = "") -> CancelResult:
        """Cancel outbound ``number``: UnAudit (or CancelAssign) then Delete, void when Delete is
        refused; idempotent (gone: ``not_found``; voided: ``already_cancelled``). An audited
        outbound that receivables were pushed from cannot be un-audited: ``refused``."""
        _kc().check_bill_number(number)
        form = self.settings.outbound_form_id

        async def attempt() -> CancelResult:
            bill = await self._find_outbound(number)
            if bill is None:
                return CancelResult(outcome="not_found", message=f"no {form} for {number}")
            return await self._cancel_bill(form, bill, f"{form} {bill.number} ({number})")

        log.info("kingdee cancel outbound", connector=self.name, number=number, reason=reason)
        return await self._retrying(attempt)
