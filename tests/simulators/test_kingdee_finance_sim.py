"""K3Cloud sales outbound (Push SAL_SaleOrder -> SAL_OUTSTOCK) and vouchers (GL_VOUCHER): the
simulator's own rules over raw WebAPI calls, and the real connector against it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from canonical import Voucher, VoucherLine
from connectors.base import CancelResult
from connectors.errors import ConfigurationError, InvalidRequestError
from connectors.http import RetryPolicy
from connectors.kingdee import KingdeeConnector
from simulators.kingdee import KingdeeSimulator

STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."
LOGIN = STUB + "AuthService.ValidateUser.common.kdsvc"
SAVE = STUB + "DynamicFormService.Save.common.kdsvc"
VIEW = STUB + "DynamicFormService.View.common.kdsvc"
QUERY = STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"
PUSH = STUB + "DynamicFormService.Push.common.kdsvc"
SUBMIT = STUB + "DynamicFormService.Submit.common.kdsvc"
AUDIT = STUB + "DynamicFormService.Audit.common.kdsvc"
UNAUDIT = STUB + "DynamicFormService.UnAudit.common.kdsvc"
DELETE = STUB + "DynamicFormService.Delete.common.kdsvc"

ACCT, USER, PASSWORD = "6600aabbcc", "api_user", "pw-Secret-123"
SIM_BASE = "http://k3.sim/k3cloud/"
SHIPPED = datetime(2024, 5, 20, 17, 30, tzinfo=UTC)  # 2024-05-21 01:30 in China


def make_sim(**kwargs: Any) -> KingdeeSimulator:
    return KingdeeSimulator(ACCT, USER, PASSWORD, materials=["SKU-A", "SKU-B", "SKU-C"], customers=["CUST0001"],
                            **kwargs)


def connector(sim: KingdeeSimulator, **settings: Any) -> KingdeeConnector:
    conn = KingdeeConnector.from_config(
        "erp", {"base_url": SIM_BASE, "acctID": ACCT, "username": USER, "account_book": "001"} | settings,
        {"password": PASSWORD})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.005)
    return conn


def order_model(lines: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    return {
        "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
        "FDate": "2024-05-20",
        "FSaleOrgId": {"FNumber": "100"},
        "FCustId": {"FNumber": "CUST0001"},
        "FNote": "taobao order 123",
        "FSaleOrderEntry": [{"FMaterialId": {"FNumber": sku}, "FQty": qty, "FTaxPrice": 113}
                            for sku, qty in (lines or [("SKU-A", 2), ("SKU-B", 1)])],
    }


async def audited_order(conn: KingdeeConnector, sim: KingdeeSimulator, number: str,
                        lines: list[tuple[str, int]] | None = None) -> None:
    await conn.create_sales_document(order_model(lines), number)
    sim.set_bill_status(number, "C")


@pytest.fixture
def sim() -> KingdeeSimulator:
    return make_sim()


@pytest.fixture
async def conn(sim: KingdeeSimulator) -> AsyncIterator[KingdeeConnector]:
    c = connector(sim)
    yield c
    await c.aclose()


@pytest.fixture
async def raw(sim: KingdeeSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://k3.test") as client:
        resp = await client.post(LOGIN, json={"acctID": ACCT, "username": USER, "password": PASSWORD, "lcid": 2052})
        assert resp.json()["LoginResultType"] == 1
        yield client


async def call(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    resp = await client.post(path, json=body)
    assert resp.status_code == 200
    return resp.json()


def shipment_voucher(number: str = "TD-1001-SHIP", total: str = "113.00") -> Voucher:
    amount = Decimal(total)
    commission = (amount * Decimal("0.05")).quantize(Decimal("0.01"))
    return Voucher(number=number, date=date(2024, 5, 21), reference="taobao:shop-1:1001",
                   narration="taobao order 1001 shipped by SF (1200 g)", lines=[
                       VoucherLine(account="1122", debit=amount, memo="taobao order 1001"),
                       VoucherLine(account="6001", credit=amount, memo="taobao order 1001"),
                       VoucherLine(account="6601.01", debit=commission, memo="taobao commission 5% of 113.00"),
                       VoucherLine(account="2202", credit=commission, memo="taobao commission 5% of 113.00"),
                       VoucherLine(account="6601.02", debit=Decimal("14.00"), memo="SF 1200 g"),
                       VoucherLine(account="2202", credit=Decimal("14.00"), memo="SF 1200 g"),
                   ])


# --- the simulator's own rules (raw WebAPI) ----------------------------------------------------------


async def test_push_refuses_an_unaudited_or_unknown_order_and_needs_a_rule(sim, conn, raw):
    await conn.create_sales_document(order_model(), "SO-1")  # saved, not audited (A)
    push = {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-1"], "RuleId": "SaleOrder-OutStock",
                                                "IsDraftWhenSaveFail": False}}
    status = (await call(raw, PUSH, push))["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["MsgCode"] == 11 and "未审核" in status["Errors"][0]["Message"]
    status = (await call(raw, PUSH, {**push, "data": {**push["data"], "Numbers": ["SO-NONE"]}}))["Result"][
        "ResponseStatus"]
    assert status["IsSuccess"] is False and status["Errors"][0]["DIndex"] == 0
    no_rule = {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-1"]}}
    assert (await call(raw, PUSH, no_rule))["Result"]["ResponseStatus"]["MsgCode"] == 8
    assert sim.outbounds() == {}


async def test_push_creates_an_outbound_with_the_remaining_lines_then_nothing_is_left(sim, conn, raw):
    await audited_order(conn, sim, "SO-2")
    push = {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-2"], "TargetFormId": "SAL_OUTSTOCK",
                                                "IsEnableDefaultRule": True}}
    answer = (await call(raw, PUSH, push))["Result"]
    (target,) = answer["ResponseStatus"]["SuccessEntitys"]
    assert answer["ResponseStatus"]["IsSuccess"] is True and target["Number"] == "XSCKD000001"
    assert answer["ConvertResponseStatus"]["SuccessEntitys"][0]["Number"] == "SO-2"
    bill = sim.outbounds()["XSCKD000001"]
    assert bill["FDocumentStatus"] == "A" and bill["FSrcBillNo"] == "SO-2" and bill["FNote"] == "taobao order 123"
    assert [(ln["FMaterialId"], ln["FRealQty"]) for ln in bill["lines"]] == [("SKU-A", 2), ("SKU-B", 1)]
    again = (await call(raw, PUSH, push))["Result"]["ResponseStatus"]
    assert again["IsSuccess"] is False and "没有可下推" in again["Errors"][0]["Message"]
    # the sales order now has a downstream bill: UnAudit refused
    unaudit = (await call(raw, UNAUDIT, {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-2"]}}))
    assert unaudit["Result"]["ResponseStatus"]["IsSuccess"] is False
    # the outbound is queryable and viewable
    rows = await call(raw, QUERY, {"data": {"FormId": "SAL_OUTSTOCK", "FieldKeys": "FBillNo,FMaterialID.FNumber,"
                                             "FRealQty,FSrcBillNo", "FilterString": "FSrcBillNo='SO-2'"}})
    assert rows == [["XSCKD000001", "SKU-A", 2.0, "SO-2"], ["XSCKD000001", "SKU-B", 1.0, "SO-2"]]
    view = (await call(raw, VIEW, {"formid": "SAL_OUTSTOCK", "data": {"Number": "XSCKD000001"}}))["Result"]["Result"]
    assert [e["RealQty"] for e in view["SAL_OUTSTOCKENTRY"]] == [2.0, 1.0]


async def test_outbound_quantities_are_editable_before_audit_and_capped_by_the_order(sim, conn, raw):
    await audited_order(conn, sim, "SO-3")
    pushed = (await call(raw, PUSH, {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-3"],
                                                                         "RuleId": "SaleOrder-OutStock"}}))
    fid = pushed["Result"]["ResponseStatus"]["SuccessEntitys"][0]["Id"]
    entry_a = sim.outbounds()["XSCKD000001"]["lines"][0]["FEntryID"]
    too_many = {"formid": "SAL_OUTSTOCK", "data": {"NeedUpDateFields": ["FEntity", "FRealQty"], "Model": {
        "FID": fid, "FEntity": [{"FENTRYID": entry_a, "FRealQty": 3}]}}}
    status = (await call(raw, SAVE, too_many))["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["Errors"][0]["FieldName"] == "FRealQty"
    fit = {"formid": "SAL_OUTSTOCK", "data": {"NeedUpDateFields": ["FEntity", "FRealQty"], "IsDeleteEntry": True,
                                              "Model": {"FID": fid, "FEntity": [{"FENTRYID": entry_a, "FRealQty": 1}]}}}
    assert (await call(raw, SAVE, fit))["Result"]["ResponseStatus"]["IsSuccess"] is True
    assert [(ln["FMaterialId"], ln["FRealQty"]) for ln in sim.outbounds()["XSCKD000001"]["lines"]] == [("SKU-A", 1)]
    for path in (SUBMIT, AUDIT):
        assert (await call(raw, path, {"formid": "SAL_OUTSTOCK", "data": {"Ids": str(fid)}}))["Result"][
            "ResponseStatus"]["IsSuccess"] is True
    refused = (await call(raw, SAVE, fit))["Result"]["ResponseStatus"]
    assert refused["IsSuccess"] is False  # audited: no more edits
    # the rest of the order can be pushed: 1 x SKU-A and 1 x SKU-B
    second = (await call(raw, PUSH, {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-3"],
                                                                         "RuleId": "SaleOrder-OutStock"}}))
    number = second["Result"]["ResponseStatus"]["SuccessEntitys"][0]["Number"]
    assert [(ln["FMaterialId"], ln["FRealQty"]) for ln in sim.outbounds()[number]["lines"]] == [
        ("SKU-A", 1), ("SKU-B", 1)]


async def test_voucher_save_refuses_unbalanced_and_unknown_accounts(sim, raw):
    def entry(account: str, debit: str = "0", credit: str = "0") -> dict[str, Any]:
        return {"FEXPLANATION": "test", "FACCOUNTID": {"FNumber": account}, "FCURRENCYID": {"FNumber": "PRE001"},
                "FEXCHANGERATETYPE": {"FNumber": "HLTX01_SYS"}, "FEXCHANGERATE": 1, "FDEBIT": debit,
                "FCREDIT": credit}

    def save(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"formid": "GL_VOUCHER", "data": {"Model": {
            "FVOUCHERID": 0, "FAccountBookID": {"FNumber": "001"}, "FDate": "2024-05-21",
            "FVOUCHERGROUPID": {"FNumber": "PRE001"}, "FEntity": entries}}}

    unbalanced = (await call(raw, SAVE, save([entry("1122", debit="100.00"), entry("6001", credit="99.00")])))
    status = unbalanced["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["MsgCode"] == 11 and "不平衡" in status["Errors"][0]["Message"]
    unknown = (await call(raw, SAVE, save([entry("9999", debit="1.00"), entry("6001", credit="1.00")])))
    status = unknown["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["Errors"][0]["FieldName"] == "FACCOUNTID"
    both = (await call(raw, SAVE, save([entry("1122", debit="1.00", credit="1.00")])))
    assert both["Result"]["ResponseStatus"]["IsSuccess"] is False
    assert sim.vouchers() == {}
    ok = (await call(raw, SAVE, save([entry("1122", debit="100"), entry("6001", credit="100")])))["Result"]
    assert ok["ResponseStatus"]["IsSuccess"] is True and ok["Number"] == "202405-记-0001"
    second = (await call(raw, SAVE, save([entry("1122", debit="5"), entry("6001", credit="5")])))["Result"]
    assert second["Number"] == "202405-记-0002"
    voucher = sim.vouchers()["202405-记-0001"]
    assert voucher["FVOUCHERGROUPNO"] == 1 and voucher["FDocumentStatus"] == "A"
    assert voucher["debit"] == voucher["credit"] == Decimal("100.00")


# --- the connector against the simulator -----------------------------------------------------------------


async def test_outbound_pushed_fitted_and_audited_then_repeat_then_cancel(sim, conn):
    await audited_order(conn, sim, "SO-10", [("SKU-A", 2), ("SKU-B", 1), ("SKU-C", 4)])
    result = await conn.create_sales_outbound("SO-10", "TD-10-OUT1", [{"sku": "SKU-A", "quantity": 1},
                                                                      {"sku": "SKU-C", "quantity": 4}], SHIPPED)
    assert result.created is True and result.number == "XSCKD000001"
    bill = sim.outbounds()["XSCKD000001"]
    assert bill["FDocumentStatus"] == "C" and bill["FNote"] == "tongdao:TD-10-OUT1" and bill["FDate"] == "2024-05-21"
    assert [(ln["FMaterialId"], ln["FRealQty"]) for ln in bill["lines"]] == [("SKU-A", 1), ("SKU-C", 4)]
    assert str(result.external_id) == str(bill["Id"])

    again = await conn.create_sales_outbound("SO-10", "TD-10-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    assert again.created is False and again.external_id == result.external_id and len(sim.outbounds()) == 1

    second = await conn.create_sales_outbound("SO-10", "TD-10-OUT2", [{"sku": "SKU-A", "quantity": 1},
                                                                      {"sku": "SKU-B", "quantity": 1}], SHIPPED)
    assert second.created is True
    assert [(ln["FMaterialId"], ln["FRealQty"]) for ln in sim.outbounds()[second.number]["lines"]] == [
        ("SKU-A", 1), ("SKU-B", 1)]

    cancelled = await conn.cancel_sales_outbound("TD-10-OUT1", reason="parcel lost")
    assert cancelled.outcome == "cancelled" and "un-audited" in cancelled.message and "deleted" in cancelled.message
    assert sim.deleted_outbounds() == ["XSCKD000001"] and "XSCKD000001" not in sim.outbounds()
    assert await conn.cancel_sales_outbound("TD-10-OUT1") == CancelResult(
        outcome="not_found", message="no SAL_OUTSTOCK for TD-10-OUT1")
    # the quantities it held can ship again
    third = await conn.create_sales_outbound("SO-10", "TD-10-OUT3", [{"sku": "SKU-C", "quantity": 4}], SHIPPED)
    assert third.created is True


async def test_outbound_of_a_saved_order_audits_it_first_and_too_much_is_refused_and_leaves_nothing(sim, conn):
    await conn.create_sales_document(order_model(), "SO-11")
    with pytest.raises(InvalidRequestError, match="no SAL_SaleOrder numbered SO-NONE"):
        await conn.create_sales_outbound("SO-NONE", "TD-11-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    # K3Cloud pushes only from an audited sales order: the saved one is submitted and audited first
    with pytest.raises(InvalidRequestError, match="ships 3 of SKU-A but sales order SO-11 has 2 left"):
        await conn.create_sales_outbound("SO-11", "TD-11-OUT1", [{"sku": "SKU-A", "quantity": 3}], SHIPPED)
    assert sim.bill_status("SO-11") == "C"
    assert sim.outbounds() == {} and len(sim.deleted_outbounds()) == 1
    with pytest.raises(InvalidRequestError, match="sku and a positive quantity"):
        await conn.create_sales_outbound("SO-11", "TD-11-OUT1", [{"sku": "SKU-A", "quantity": 0}], SHIPPED)


async def test_a_push_whose_answer_was_lost_is_completed_not_pushed_again(sim, conn, raw):
    """The Push committed but its reply never arrived: the next attempt finds the unmarked bill."""
    await audited_order(conn, sim, "SO-12")
    await call(raw, PUSH, {"formid": "SAL_SaleOrder", "data": {"Numbers": ["SO-12"], "RuleId": "SaleOrder-OutStock"}})
    pushes = sim.state()["push_calls"]
    result = await conn.create_sales_outbound("SO-12", "TD-12-OUT1", [{"sku": "SKU-B", "quantity": 1}], SHIPPED)
    assert result.created is True and result.number == "XSCKD000001" and sim.state()["push_calls"] == pushes
    bill = sim.outbounds()["XSCKD000001"]
    assert bill["FNote"] == "tongdao:TD-12-OUT1" and [ln["FMaterialId"] for ln in bill["lines"]] == ["SKU-B"]


async def test_outbound_bill_no_setting_renames_the_pushed_bill(sim):
    conn = connector(sim, outbound_bill_no=True, outbound_audit=False)
    await audited_order(conn, sim, "SO-13")
    result = await conn.create_sales_outbound("SO-13", "TD-13-OUT1", [{"sku": "SKU-A", "quantity": 2}], SHIPPED)
    assert result.number == "TD-13-OUT1" and sim.outbounds()["TD-13-OUT1"]["FDocumentStatus"] == "A"
    again = await conn.create_sales_outbound("SO-13", "TD-13-OUT1", [{"sku": "SKU-A", "quantity": 2}], SHIPPED)
    assert again.created is False and again.number == "TD-13-OUT1"
    cancelled = await conn.cancel_sales_outbound("TD-13-OUT1")
    assert cancelled.outcome == "cancelled" and cancelled.message == "deleted"
    await conn.aclose()


async def test_voucher_posted_once_audited_and_reversed(sim, conn):
    voucher = shipment_voucher()
    first = await conn.post_voucher(voucher)
    assert first.created is True and first.number == "202405-记-0001"
    again = await conn.post_voucher(voucher)
    assert again.created is False and again.external_id == first.external_id
    (stored,) = sim.vouchers().values()
    assert (stored["FDocumentStatus"], stored["FAccountBookID"], stored["FVOUCHERGROUPID"]) == ("C", "001", "PRE001")
    assert stored["explanation"] == "taobao order 1001 taobao:shop-1:1001 #TD-1001-SHIP"
    assert [(e["FACCOUNTID"], e["FDEBIT"], e["FCREDIT"]) for e in stored["entries"]] == [
        ("1122", Decimal("113.00"), 0), ("6001", 0, Decimal("113.00")), ("6601.01", Decimal("5.65"), 0),
        ("2202", 0, Decimal("5.65")), ("6601.02", Decimal("14.00"), 0), ("2202", 0, Decimal("14.00"))]
    totals = sim.voucher_totals()
    assert totals["1122"]["debit"] == Decimal("113.00") and totals["2202"]["credit"] == Decimal("19.65")

    reversal = voucher.reversal("TD-1001-SHIP-REV", date(2024, 5, 22))
    posted = await conn.post_voucher(reversal)
    assert posted.created is True and posted.number == "202405-记-0002"
    assert (await conn.post_voucher(voucher)).created is False  # "-SHIP" does not match "-SHIP-REV"
    assert len(sim.vouchers()) == 2
    assert all(row["net"] == 0 for row in sim.voucher_totals(audited_only=True).values())


async def test_voucher_unbalanced_or_unknown_account_refused(sim, conn):
    lines = [VoucherLine(account="1122", debit=Decimal("10")), VoucherLine(account="6001", credit=Decimal("9"))]
    unbalanced = Voucher.model_construct(number="TD-X-SHIP", date=date(2024, 5, 21), reference="r", narration="n",
                                         currency="CNY", channel="", lines=lines, reverses="")
    with pytest.raises(InvalidRequestError, match="不平衡"):
        await conn.post_voucher(unbalanced)
    unknown = Voucher(number="TD-Y-SHIP", date=date(2024, 5, 21), reference="r", lines=[
        VoucherLine(account="Assets:Receivable:Taobao", debit=Decimal("10")),
        VoucherLine(account="6001", credit=Decimal("10"))])
    with pytest.raises(InvalidRequestError, match="FACCOUNTID"):
        await conn.post_voucher(unknown)
    assert sim.vouchers() == {}
    mapped = connector(sim, voucher_accounts={"Assets:Receivable:Taobao": "1122"}, voucher_audit=False)
    result = await mapped.post_voucher(unknown)
    assert result.created is True and sim.vouchers()[result.number]["FDocumentStatus"] == "A"
    assert sim.vouchers()[result.number]["entries"][0]["FACCOUNTID"] == "1122"
    await mapped.aclose()


async def test_voucher_needs_an_account_book(sim):
    conn = connector(sim, account_book="")
    with pytest.raises(ConfigurationError, match="account_book"):
        await conn.post_voucher(shipment_voucher())
    await conn.aclose()


def test_state_counts_outbounds_and_vouchers(sim):
    state = sim.state()
    assert state["sales_outbounds"] == 0 and state["vouchers"] == 0 and state["push_calls"] == 0
    json.dumps(state)
