"""Kingdee accounting vouchers (GL_VOUCHER Save, Submit, Audit; lookup by 摘要) against a
respx-mocked K3Cloud: the exact form id and request JSON."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from canonical import Voucher, VoucherLine
from connectors.base import CreateResult
from connectors.errors import ConfigurationError, InvalidRequestError
from connectors.http import RetryPolicy
from connectors.kingdee import KingdeeConnector

BASE = "http://k3.example.com/k3cloud/"
STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."
PASSWORD = "pw-Secret-123"
LOOKUP_KEYS = "FVOUCHERID,FBillNo,FDocumentStatus,FEXPLANATION"


def status(success: bool, *, errors=(), msg_code: int = 0, entities=()) -> dict[str, Any]:
    return {"ErrorCode": 0 if success else 500, "IsSuccess": success,
            "Errors": [{"FieldName": f, "Message": m, "DIndex": 0} for f, m in errors],
            "SuccessEntitys": [{"Id": i, "Number": n, "DIndex": 0} for i, n in entities],
            "SuccessMessages": [], "MsgCode": msg_code}


class FakeGL:
    """Login with a cookie; GL_VOUCHER lookups answer ``rows``, Save answers ``save`` (a list is
    consumed answer by answer), Submit and Audit succeed unless ``refuse`` names them."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.save: list[Any] = []
        self.refuse: dict[str, str] = {}
        self.on_save = None  # optional: called after a Save is answered (a concurrent worker...)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        op = request.url.path.removeprefix(STUB).removesuffix(".common.kdsvc")
        payload = json.loads(request.content)
        if op.startswith("AuthService."):
            return httpx.Response(200, json={"LoginResultType": 1, "KDSVCSessionId": "sid-1"},
                                  headers=[("Set-Cookie", "kdservice-sessionid=sid-1; path=/")])
        op = op.removeprefix("DynamicFormService.")
        self.calls.append((op, payload))
        if op == "ExecuteBillQuery":
            return httpx.Response(200, json=self.rows)
        if op == "Save":
            answer = self.save.pop(0) if self.save else saved()
            if self.on_save is not None:
                self.on_save()
            return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)
        if op in self.refuse:
            return httpx.Response(200, json={"Result": {"ResponseStatus": status(
                False, errors=[(None, self.refuse[op])], msg_code=11)}})
        return httpx.Response(200, json={"Result": {"ResponseStatus": status(True, entities=[(300001, "X")])}})

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def payloads(self, op: str) -> list[dict[str, Any]]:
        return [p for o, p in self.calls if o == op]


def saved(fid: int = 300001, number: str = "202405-记-0001") -> dict[str, Any]:
    return {"Result": {"ResponseStatus": status(True, entities=[(fid, number)]), "Id": fid, "Number": number,
                       "NeedReturnData": [{}]}}


@pytest.fixture
def gl():
    server = FakeGL()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(host="k3.example.com").mock(side_effect=server)
        yield server


def make_connector(**settings: Any) -> KingdeeConnector:
    conn = KingdeeConnector.from_config(
        "erp", {"base_url": BASE, "acctID": "6600aabbcc", "username": "api_user", "account_book": "001"} | settings,
        {"password": PASSWORD})
    conn.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.005)
    return conn


def voucher(number: str = "TD-1-SHIP", **overrides: Any) -> Voucher:
    fields: dict[str, Any] = dict(
        number=number, date=date(2024, 5, 21), reference="taobao:shop-1:1001", narration="order 1001 shipped",
        lines=[VoucherLine(account="1122", debit=Decimal("113.00"), memo="taobao order 1001"),
               VoucherLine(account="6001", credit=Decimal("113.00"), memo="taobao order 1001"),
               VoucherLine(account="6601.01", debit=Decimal("5.65")),
               VoucherLine(account="2202", credit=Decimal("5.65"))])
    return Voucher(**(fields | overrides))


def entry(explanation: str, account: str, debit: str, credit: str) -> dict[str, Any]:
    return {"FEXPLANATION": explanation, "FACCOUNTID": {"FNumber": account}, "FCURRENCYID": {"FNumber": "PRE001"},
            "FEXCHANGERATETYPE": {"FNumber": "HLTX01_SYS"}, "FEXCHANGERATE": 1,
            "FAMOUNTFOR": debit if debit != "0.00" else credit, "FDEBIT": debit, "FCREDIT": credit}


def operation(fid: str, **extra: Any) -> dict[str, Any]:
    return {"formid": "GL_VOUCHER", "data": {"CreateOrgId": 0, "Numbers": [], "Ids": fid, "NetworkCtrl": ""} | extra}


async def test_post_voucher_saves_submits_and_audits_with_the_documented_requests(gl):
    conn = make_connector()
    result = await conn.post_voucher(voucher())
    await conn.aclose()
    assert result == CreateResult(external_id="300001", number="202405-记-0001", created=True)
    assert gl.ops() == ["ExecuteBillQuery", "Save", "Submit", "Audit"]
    assert gl.payloads("ExecuteBillQuery") == [{"data": {
        "FormId": "GL_VOUCHER", "FieldKeys": LOOKUP_KEYS,
        "FilterString": "FAccountBookID.FNumber='001' AND FEXPLANATION LIKE '%#TD-1-SHIP'",
        "OrderString": "", "TopRowCount": 0, "StartRow": 0, "Limit": 2000}}]
    tail = "taobao:shop-1:1001 #TD-1-SHIP"
    assert gl.payloads("Save") == [{"formid": "GL_VOUCHER", "data": {
        "NeedUpDateFields": [], "NeedReturnFields": [], "IsDeleteEntry": True, "IsVerifyBaseDataField": True,
        "Model": {
            "FVOUCHERID": 0, "FAccountBookID": {"FNumber": "001"}, "FDate": "2024-05-21", "FBUSDATE": "2024-05-21",
            "FYEAR": 2024, "FPERIOD": 5, "FVOUCHERGROUPID": {"FNumber": "PRE001"}, "FATTACHMENTS": 0,
            "FISADJUSTVOUCHER": False,
            "FEntity": [
                entry(f"taobao order 1001 {tail}", "1122", "113.00", "0.00"),
                entry(f"taobao order 1001 {tail}", "6001", "0.00", "113.00"),
                entry(f"order 1001 shipped {tail}", "6601.01", "5.65", "0.00"),
                entry(f"order 1001 shipped {tail}", "2202", "0.00", "5.65"),
            ]}}}]
    audit_extra = {"InterationFlags": "", "IsVerifyProcInst": "", "IgnoreInterationFlag": ""}
    assert gl.payloads("Submit") == [operation("300001", SelectedPostId=0, IgnoreInterationFlag="")]
    assert gl.payloads("Audit") == [operation("300001", **audit_extra)]


async def test_posted_voucher_is_found_by_its_number_and_not_saved_again(gl):
    gl.rows = [[300001, "202405-记-0001", "C", "taobao order 1001 taobao:shop-1:1001 #TD-1-SHIP"],
               [300001, "202405-记-0001", "C", "order 1001 shipped taobao:shop-1:1001 #TD-1-SHIP"]]
    conn = make_connector()
    result = await conn.post_voucher(voucher())
    assert result == CreateResult(external_id="300001", number="202405-记-0001", created=False)
    assert gl.ops() == ["ExecuteBillQuery"]
    gl.rows = [[300001, "202405-记-0001", "A", "x #TD-1-SHIP"]]  # saved, never submitted
    assert (await conn.post_voucher(voucher())).created is False
    await conn.aclose()
    assert gl.ops() == ["ExecuteBillQuery", "ExecuteBillQuery", "Submit", "Audit"]


async def test_like_matches_are_confirmed_exactly(gl):
    """``_`` is a LIKE wildcard: TD_1-SHIP matches TDX1-SHIP in SQL, not here."""
    gl.rows = [[300009, "202405-记-0009", "C", "other #TDX1-SHIP"], [300010, "202405-记-0010", "C", "x#TD_1-SHIP"]]
    conn = make_connector(voucher_audit=False)
    result = await conn.post_voucher(voucher("TD_1-SHIP"))
    await conn.aclose()
    assert result.created is True and gl.ops() == ["ExecuteBillQuery", "Save"]


async def test_refused_save_raises_with_k3clouds_message_unless_it_exists_meanwhile(gl):
    gl.save = [{"Result": {"ResponseStatus": status(False, errors=[("FDEBIT", "凭证借贷方不平衡")], msg_code=11)}}]
    conn = make_connector()
    with pytest.raises(InvalidRequestError, match="不平衡") as info:
        await conn.post_voucher(voucher())
    assert info.value.code == "11" and gl.ops() == ["ExecuteBillQuery", "Save", "ExecuteBillQuery"]

    calls = len(gl.calls)
    gl.save = [{"Result": {"ResponseStatus": status(False, errors=[("FBillNo", "单据编号重复")], msg_code=11)}}]

    def concurrent() -> None:  # a concurrent worker saved the same voucher just before ours
        gl.rows = [[300002, "202405-记-0002", "C", "x #TD-1-SHIP"]]

    gl.on_save = concurrent
    result = await conn.post_voucher(voucher())
    await conn.aclose()
    assert result == CreateResult(external_id="300002", number="202405-记-0002", created=False)
    assert gl.ops()[calls:] == ["ExecuteBillQuery", "Save", "ExecuteBillQuery"]


async def test_lost_save_reply_is_answered_from_the_lookup(gl):
    """Save committed, the reply was a 502: the retried attempt finds the voucher by its 摘要."""
    gl.save = [httpx.Response(502, text="Bad Gateway")]

    def committed() -> None:
        gl.rows = [[300001, "202405-记-0001", "A", "x #TD-1-SHIP"]]

    gl.on_save = committed
    conn = make_connector()
    result = await conn.post_voucher(voucher())
    await conn.aclose()
    assert result == CreateResult(external_id="300001", number="202405-记-0001", created=False)
    assert gl.ops() == ["ExecuteBillQuery", "Save", "ExecuteBillQuery", "Submit", "Audit"]


async def test_audit_refusal_raises(gl):
    gl.refuse["Audit"] = "审批流程中，不允许审核"
    conn = make_connector()
    with pytest.raises(InvalidRequestError, match="Audit was refused"):
        await conn.post_voucher(voucher())
    await conn.aclose()


async def test_settings_group_accounts_rate_type_and_no_audit(gl):
    conn = make_connector(voucher_group="PRE004", voucher_audit=False, exchange_rate_type="HLTX02_SYS",
                          voucher_accounts={"Assets:Receivable:Taobao": "1122.01"})
    v = voucher(lines=[VoucherLine(account="Assets:Receivable:Taobao", debit=Decimal("1")),
                       VoucherLine(account="6001", credit=Decimal("1"))])
    await conn.post_voucher(v)
    await conn.aclose()
    model = gl.payloads("Save")[0]["data"]["Model"]
    assert model["FVOUCHERGROUPID"] == {"FNumber": "PRE004"}
    assert [e["FACCOUNTID"]["FNumber"] for e in model["FEntity"]] == ["1122.01", "6001"]
    assert {e["FEXCHANGERATETYPE"]["FNumber"] for e in model["FEntity"]} == {"HLTX02_SYS"}
    assert gl.ops() == ["ExecuteBillQuery", "Save"]


async def test_long_narration_is_shortened_and_the_number_kept(gl):
    conn = make_connector(voucher_audit=False)
    await conn.post_voucher(voucher(narration="很长的摘要" * 100, lines=[
        VoucherLine(account="1122", debit=Decimal("1")), VoucherLine(account="6001", credit=Decimal("1"))]))
    await conn.aclose()
    explanation = gl.payloads("Save")[0]["data"]["Model"]["FEntity"][0]["FEXPLANATION"]
    assert len(explanation) == 200 and explanation.endswith("… taobao:shop-1:1001 #TD-1-SHIP")


async def test_invalid_vouchers_and_settings_are_refused_before_any_call(gl):
    conn = make_connector()
    with pytest.raises(InvalidRequestError, match="only CNY"):
        await conn.post_voucher(voucher(currency="USD"))
    with pytest.raises(InvalidRequestError, match="2 decimals"):
        await conn.post_voucher(voucher(lines=[VoucherLine(account="1122", debit=Decimal("1.005")),
                                               VoucherLine(account="6001", credit=Decimal("1.005"))]))
    for bad in ("TD-1%", "TD-[1]", "TD-1'"):
        with pytest.raises(InvalidRequestError):
            await conn.post_voucher(voucher(bad))
    await conn.aclose()
    no_book = make_connector(account_book="")
    with pytest.raises(ConfigurationError, match="account_book"):
        await no_book.post_voucher(voucher())
    await no_book.aclose()
    assert gl.calls == []
