"""Kingdee sales outbound (Push SAL_SaleOrder -> SAL_OUTSTOCK, Save, Submit, Audit; cancel) against a
respx-mocked K3Cloud: the exact form ids and request JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import CancelResult, CreateResult
from connectors.errors import InvalidRequestError
from connectors.http import RetryPolicy
from connectors.kingdee import KingdeeConnector

BASE = "http://k3.example.com/k3cloud/"
STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."
PASSWORD = "pw-Secret-123"
SHIPPED = datetime.fromisoformat("2024-05-20T17:30:00+00:00")  # 2024-05-21 in China

OUTBOUND_HEAD = "FID,FBillNo,FDocumentStatus,FCancelStatus,FNote"


def status(success: bool, *, errors=(), msg_code: int = 0, entities=()) -> dict[str, Any]:
    return {"ErrorCode": 0 if success else 500, "IsSuccess": success,
            "Errors": [{"FieldName": f, "Message": m, "DIndex": 0} for f, m in errors],
            "SuccessEntitys": [{"Id": i, "Number": n, "DIndex": 0} for i, n in entities],
            "SuccessMessages": [], "MsgCode": msg_code}


def ok(*entities: tuple[Any, str]) -> dict[str, Any]:
    return {"Result": {"ResponseStatus": status(True, entities=entities)}}


def refused(message: str, msg_code: int = 11) -> dict[str, Any]:
    return {"Result": {"ResponseStatus": status(False, errors=[(None, message)], msg_code=msg_code)}}


SESSION_LOST = refused("会话信息已丢失，请重新登录", msg_code=1)


class FakeK3:
    """Login with a cookie; every business call is recorded and answered by ``answer(op, payload)``."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.logins = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        op = request.url.path.removeprefix(STUB).removesuffix(".common.kdsvc")
        payload = json.loads(request.content)
        if op.startswith("AuthService."):
            self.logins += 1
            sid = f"sid-{self.logins}"
            return httpx.Response(200, json={"LoginResultType": 1, "KDSVCSessionId": sid},
                                  headers=[("Set-Cookie", f"kdservice-sessionid={sid}; path=/")])
        op = op.removeprefix("DynamicFormService.")
        self.calls.append((op, payload))
        body = self.answer(op, payload)
        return body if isinstance(body, httpx.Response) else httpx.Response(200, json=body)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def payloads(self, op: str) -> list[dict[str, Any]]:
        return [p for o, p in self.calls if o == op]


def fake(answer: Callable[[str, dict[str, Any]], Any]):
    server = FakeK3(answer)
    mock = respx.mock(assert_all_called=False)
    mock.post(host="k3.example.com").mock(side_effect=server)
    return server, mock


def make_connector(**settings: Any) -> KingdeeConnector:
    conn = KingdeeConnector.from_config(
        "erp", {"base_url": BASE, "acctID": "6600aabbcc", "username": "api_user"} | settings, {"password": PASSWORD})
    conn.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.005)
    return conn


def query(form: str, keys: str, where: str) -> dict[str, Any]:
    return {"data": {"FormId": form, "FieldKeys": keys, "FilterString": where, "OrderString": "",
                     "TopRowCount": 0, "StartRow": 0, "Limit": 2000}}


def operation_data(fid: str, **extra: Any) -> dict[str, Any]:
    return {"CreateOrgId": 0, "Numbers": [], "Ids": fid, "NetworkCtrl": ""} | extra


SUBMIT_EXTRA = {"SelectedPostId": 0, "IgnoreInterationFlag": ""}
AUDIT_EXTRA = {"InterationFlags": "", "IsVerifyProcInst": "", "IgnoreInterationFlag": ""}


class Scenario:
    """A K3Cloud with one audited sales order SO-1 (FID 100001; entries SKU-A x2, SKU-B x1 pushed
    as outbound 200001 / XSCKD000007, entries 9001 and 9002)."""

    def __init__(self) -> None:
        self.marked: list[list[Any]] = []  # rows for the hub-number lookup
        self.unmarked: list[list[Any]] = []  # rows for the interrupted-attempt lookup
        self.order = [[100001, "SO-1", "C", "A", "A"]]
        self.push: Any = {"Result": {"ResponseStatus": status(True, entities=[(200001, "XSCKD000007")]),
                                     "ConvertResponseStatus": status(True, entities=[(100001, "SO-1")])}}
        self.entries = [[200001, 9001, "SKU-A", 2.0], [200001, 9002, "SKU-B", 1.0]]
        self.save: Any = {"Result": {"ResponseStatus": status(True, entities=[(200001, "XSCKD000007")]),
                                     "Id": 200001, "Number": "XSCKD000007", "NeedReturnData": [{}]}}
        self.ops: dict[str, Any] = {}

    def __call__(self, op: str, payload: dict[str, Any]) -> Any:
        if op == "ExecuteBillQuery":
            data = payload["data"]
            if data["FormId"] == "SAL_SaleOrder":
                return self.order
            if data["FieldKeys"].startswith("FID,FEntity_FEntryID"):
                return self.entries
            return self.unmarked if "FSrcBillNo" in data["FilterString"] else self.marked
        if op == "Push":
            return self.push
        if op == "Save":
            return self.save
        queued = self.ops.get(op) or []  # queued answers first, then success
        return queued.pop(0) if queued else ok((200001, "XSCKD000007"))


async def test_push_fit_submit_audit_with_the_documented_requests():
    scenario = Scenario()
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result == CreateResult(external_id="200001", number="XSCKD000007", created=True)
    assert server.ops() == ["ExecuteBillQuery", "ExecuteBillQuery", "ExecuteBillQuery", "Push", "ExecuteBillQuery",
                            "Save", "Submit", "Audit"]
    q = server.payloads("ExecuteBillQuery")
    assert q[0] == query("SAL_OUTSTOCK", OUTBOUND_HEAD, "FNote='tongdao:TD-1-OUT1'")
    assert q[1] == query("SAL_SaleOrder", "FID,FBillNo,FDocumentStatus,FCancelStatus,FCloseStatus", "FBillNo='SO-1'")
    assert q[2] == query("SAL_OUTSTOCK", OUTBOUND_HEAD,
                         "FSrcBillNo='SO-1' AND FDocumentStatus IN ('Z','A') AND FCancelStatus='A'")
    assert q[3] == query("SAL_OUTSTOCK", "FID,FEntity_FEntryID,FMaterialID.FNumber,FRealQty", "FID=200001")
    assert server.payloads("Push") == [{"formid": "SAL_SaleOrder", "data": {
        "Ids": "", "Numbers": ["SO-1"], "EntryIds": "", "RuleId": "SaleOrder-OutStock", "TargetBillTypeId": "",
        "TargetOrgId": 0, "TargetFormId": "SAL_OUTSTOCK", "IsEnableDefaultRule": False,
        "IsDraftWhenSaveFail": False, "CustomParams": {}}}]
    assert server.payloads("Save") == [{"formid": "SAL_OUTSTOCK", "data": {
        "NeedUpDateFields": ["FDate", "FNote", "FEntity", "FRealQty"], "NeedReturnFields": [], "IsDeleteEntry": True,
        "IsVerifyBaseDataField": False, "Model": {
            "FID": 200001, "FDate": "2024-05-21", "FNote": "tongdao:TD-1-OUT1",
            "FEntity": [{"FENTRYID": 9001, "FRealQty": 1}]}}}]
    assert server.payloads("Submit") == [{"formid": "SAL_OUTSTOCK", "data": operation_data("200001", **SUBMIT_EXTRA)}]
    assert server.payloads("Audit") == [{"formid": "SAL_OUTSTOCK", "data": operation_data("200001", **AUDIT_EXTRA)}]


async def test_quantities_spread_over_entries_of_one_sku_and_fractional_quantities():
    scenario = Scenario()
    scenario.entries = [[200001, 9001, "SKU-A", 2.0], [200001, 9002, "SKU-B", 1.0], [200001, 9003, "SKU-A", 1.5]]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector(outbound_audit=False)
        await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1},
                                                               {"sku": "SKU-A", "quantity": "2.5"}], SHIPPED)
        await conn.aclose()
    (save,) = server.payloads("Save")
    assert save["data"]["Model"]["FEntity"] == [{"FENTRYID": 9001, "FRealQty": 2}, {"FENTRYID": 9003, "FRealQty": 1.5}]
    assert "Submit" not in server.ops() and "Audit" not in server.ops()


async def test_existing_outbound_is_not_pushed_again():
    scenario = Scenario()
    scenario.marked = [[200001, "XSCKD000007", "C", "A", "tongdao:TD-1-OUT1"]]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result == CreateResult(external_id="200001", number="XSCKD000007", created=False)
    assert server.ops() == ["ExecuteBillQuery"]


async def test_saved_but_not_audited_outbound_is_finished():
    scenario = Scenario()
    scenario.marked = [[200001, "XSCKD000007", "A", "A", "tongdao:TD-1-OUT1"]]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result.created is False
    assert server.ops() == ["ExecuteBillQuery", "Submit", "Audit"]


async def test_unmarked_outbound_of_an_interrupted_attempt_is_completed_instead_of_pushing():
    scenario = Scenario()
    scenario.unmarked = [[200005, "XSCKD000009", "A", "A", "tongdao:TD-1-OUT0"],  # another package's, mid-way
                         [200001, "XSCKD000007", "A", "A", "taobao order 123"],
                         [200001, "XSCKD000007", "A", "A", "taobao order 123"]]  # one row per entry
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-B", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result == CreateResult(external_id="200001", number="XSCKD000007", created=True)
    assert "Push" not in server.ops()
    assert server.payloads("Save")[0]["data"]["Model"]["FEntity"] == [{"FENTRYID": 9002, "FRealQty": 1}]


async def test_outbound_bill_no_setting_writes_and_finds_the_hub_number():
    scenario = Scenario()
    server, mock = fake(scenario)
    with mock:
        conn = make_connector(outbound_bill_no=True)
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 2}], SHIPPED)
        await conn.aclose()
    assert result.number == "TD-1-OUT1"
    first = server.payloads("ExecuteBillQuery")[0]["data"]["FilterString"]
    assert first == "(FNote='tongdao:TD-1-OUT1' OR FBillNo='TD-1-OUT1')"
    save = server.payloads("Save")[0]["data"]
    assert save["NeedUpDateFields"] == ["FDate", "FNote", "FEntity", "FRealQty", "FBillNo"]
    assert save["Model"]["FBillNo"] == "TD-1-OUT1"


async def test_unaudited_sales_order_push_refusal_and_too_large_package():
    scenario = Scenario()
    scenario.order = [[100001, "SO-1", "A", "A", "A"]]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        with pytest.raises(InvalidRequestError, match="must be audited"):
            await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        assert "Push" not in server.ops()

        scenario.order = [[100001, "SO-1", "C", "A", "A"]]
        scenario.push = refused("单据编号为“SO-1”的单据，已全部下推，没有可下推的数据。")
        with pytest.raises(InvalidRequestError, match="没有可下推的数据") as info:
            await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        assert info.value.code == "11" and "Save" not in server.ops()

        scenario.push = ok((200001, "XSCKD000007"))
        with pytest.raises(InvalidRequestError, match="ships 3 of SKU-A but sales order SO-1 has 2 left"):
            await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 3}], SHIPPED)
        # the pushed bill was ours and never audited: it is deleted, nothing is saved
        assert server.payloads("Delete") == [{"formid": "SAL_OUTSTOCK", "data": operation_data("200001")}]
        assert "Save" not in server.ops()
        with pytest.raises(InvalidRequestError, match="SKU-Z"):
            await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-Z", "quantity": 1}], SHIPPED)
        await conn.aclose()


async def test_bad_lines_and_numbers_are_refused_before_any_call():
    server, mock = fake(Scenario())
    with mock:
        conn = make_connector()
        for lines in ([], [{"sku": "SKU-A", "quantity": 0}], [{"sku": "", "quantity": 1}],
                      [{"sku": "SKU-A", "quantity": "x"}]):
            with pytest.raises(InvalidRequestError):
                await conn.create_sales_outbound("SO-1", "TD-1-OUT1", lines, SHIPPED)
        with pytest.raises(InvalidRequestError, match="quote"):
            await conn.create_sales_outbound("SO-1", "TD-1'OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert server.calls == []


async def test_session_lost_on_push_logs_in_again_and_resends():
    scenario = Scenario()
    pushes = [SESSION_LOST]

    def answer(op: str, payload: dict[str, Any]) -> Any:
        if op == "Push" and pushes:
            return pushes.pop(0)
        return scenario(op, payload)

    server, mock = fake(answer)
    with mock:
        conn = make_connector()
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result.created is True and server.logins == 2 and server.ops().count("Push") == 2


async def test_audit_refused_raises_and_the_next_attempt_finishes():
    scenario = Scenario()
    scenario.ops["Audit"] = [refused("审批流程中，不允许审核")]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        with pytest.raises(InvalidRequestError, match="Audit was refused"):
            await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        scenario.marked = [[200001, "XSCKD000007", "B", "A", "tongdao:TD-1-OUT1"]]
        result = await conn.create_sales_outbound("SO-1", "TD-1-OUT1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
        await conn.aclose()
    assert result.created is False and server.ops()[-2:] == ["ExecuteBillQuery", "Audit"]


# --- cancel -----------------------------------------------------------------------------------------------


async def test_cancel_audited_outbound_unaudits_then_deletes():
    scenario = Scenario()
    scenario.marked = [[200001, "XSCKD000007", "C", "A", "tongdao:TD-1-OUT1"]]
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        result = await conn.cancel_sales_outbound("TD-1-OUT1", reason="parcel lost")
        await conn.aclose()
    assert result == CancelResult(outcome="cancelled", message="un-audited, deleted")
    assert server.ops() == ["ExecuteBillQuery", "UnAudit", "Delete"]
    assert server.payloads("UnAudit") == [{"formid": "SAL_OUTSTOCK", "data": operation_data("200001", **AUDIT_EXTRA)}]
    assert server.payloads("Delete") == [{"formid": "SAL_OUTSTOCK", "data": operation_data("200001")}]


async def test_cancel_outcomes_not_found_voided_refused_and_void_fallback():
    scenario = Scenario()
    server, mock = fake(scenario)
    with mock:
        conn = make_connector()
        assert (await conn.cancel_sales_outbound("TD-1-OUT1")).outcome == "not_found"

        scenario.marked = [[200001, "XSCKD000007", "A", "B", "tongdao:TD-1-OUT1"]]
        assert (await conn.cancel_sales_outbound("TD-1-OUT1")).outcome == "already_cancelled"

        scenario.marked = [[200001, "XSCKD000007", "C", "A", "tongdao:TD-1-OUT1"]]
        scenario.ops["UnAudit"] = [refused("已经存在下游单据（AR00001），不允许反审核。")]
        result = await conn.cancel_sales_outbound("TD-1-OUT1")
        assert result.outcome == "refused" and "AR00001" in result.message

        scenario.marked = [[200001, "XSCKD000007", "B", "A", "tongdao:TD-1-OUT1"]]
        scenario.ops["Delete"] = [refused("不允许删除")]
        result = await conn.cancel_sales_outbound("TD-1-OUT1")
        await conn.aclose()
    assert result.outcome == "cancelled" and "CancelAssign" in result.message and "voided" in result.message
    (void,) = server.payloads("ExcuteOperation")
    assert void == {"formid": "SAL_OUTSTOCK", "opNumber": "Cancel", "data": operation_data(
        "200001", PkEntryIds=[], IgnoreInterationFlag="")}
