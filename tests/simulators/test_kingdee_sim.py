"""Tests of the K3Cloud WebAPI simulator: the protocol as documented, not the hub's connector."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from simulators.faults import FaultConfig
from simulators.kingdee import SESSION_COOKIE, SESSION_LOST_MESSAGE, KingdeeSimulator

STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."
LOGIN = STUB + "AuthService.ValidateUser.common.kdsvc"
APP_LOGIN = STUB + "AuthService.LoginByAppSecret.common.kdsvc"
SAVE = STUB + "DynamicFormService.Save.common.kdsvc"
VIEW = STUB + "DynamicFormService.View.common.kdsvc"
QUERY = STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"

ACCT, USER, PASSWORD = "66a1b2c3d4e5f6", "tongdao", "s3cret"
MATERIALS = ["TD-SKU-0001", "TD-SKU-0002", "TD-SKU-0003"]
CUSTOMERS = ["CUST-TMALL", "CUST-JD"]


class FakeClock:
    """Monotonic clock the tests move by hand, so session expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sim(**kwargs: Any) -> KingdeeSimulator:
    kwargs.setdefault("materials", MATERIALS)
    kwargs.setdefault("customers", CUSTOMERS)
    return KingdeeSimulator(ACCT, USER, PASSWORD, app_id="301451_abc", app_secret="app-secret", **kwargs)


def client_for(sim: KingdeeSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://k3.test")


@pytest.fixture
def sim() -> KingdeeSimulator:
    return make_sim()


@pytest.fixture
async def client(sim: KingdeeSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sim) as c:
        yield c


async def login(client: httpx.AsyncClient, password: str = PASSWORD) -> dict[str, Any]:
    resp = await client.post(LOGIN, json={"acctID": ACCT, "username": USER, "password": password, "lcid": 2052})
    assert resp.status_code == 200
    return resp.json()


def model(bill_no: str | None = "TD-SO-0001", **overrides: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "FID": 0,
        "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
        "FDate": "2024-05-20",
        "FSaleOrgId": {"FNumber": "100"},
        "FCustId": {"FNumber": "CUST-TMALL"},
        "FSaleOrderFinance": {"FSettleCurrId": {"FNumber": "PRE001"}},
        "FNote": "tmall order 123",
        "FSaleOrderEntry": [
            {"FMaterialId": {"FNumber": "TD-SKU-0001"}, "FQty": 2, "FTaxPrice": "113.00", "FEntryTaxRate": 13},
            {"FMaterialId": {"FNumber": "TD-SKU-0002"}, "FQty": "1", "FPrice": 50, "FEntryNote": "gift wrap"},
        ],
    }
    if bill_no is not None:
        m["FBillNo"] = bill_no
    m.update(overrides)
    return m


async def save(client: httpx.AsyncClient, m: dict[str, Any], *, as_string: bool = False, **flags: Any) -> Any:
    data: dict[str, Any] = {"NeedUpDateFields": [], "NeedReturnFields": [], "IsDeleteEntry": True, "Model": m}
    data.update(flags)
    body = {"formid": "SAL_SaleOrder", "data": json.dumps(data) if as_string else data}
    return await client.post(SAVE, json=body)


def status_of(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["Result"]["ResponseStatus"]


# --- login ---------------------------------------------------------------------------------------


async def test_login_ok_returns_session_and_cookies(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    result = await login(client)
    assert result["LoginResultType"] == 1
    assert result["IsSuccessByAPI"] is True
    assert result["KDSVCSessionId"] == client.cookies[SESSION_COOKIE]
    assert result["Context"]["SessionId"] == client.cookies["ASP.NET_SessionId"]
    assert result["Context"]["UserName"] == USER
    assert sim.state()["logins"] == 1


async def test_login_bad_password_is_login_result_type_0(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    result = await login(client, password="wrong")
    assert result["LoginResultType"] == 0
    assert result["Context"] is None and result["KDSVCSessionId"] is None
    assert result["Message"]
    assert SESSION_COOKIE not in client.cookies
    assert sim.state()["login_failures"] == 1


async def test_login_positional_parameters_and_app_secret(client: httpx.AsyncClient) -> None:
    old = await client.post(LOGIN, json={"format": 1, "parameters": json.dumps([ACCT, USER, PASSWORD, 2052])})
    assert old.json()["LoginResultType"] == 1
    app = await client.post(
        APP_LOGIN, json={"acctid": ACCT, "username": USER, "appid": "301451_abc", "appsecret": "app-secret"}
    )
    assert app.json()["LoginResultType"] == 1
    bad = await client.post(APP_LOGIN, json={"parameters": [ACCT, USER, "301451_abc", "nope", 2052]})
    assert bad.json()["LoginResultType"] == 0


# --- session --------------------------------------------------------------------------------------


async def test_save_without_session_is_session_lost(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    resp = await save(client, model())
    assert resp.status_code == 200
    st = status_of(resp.json())
    assert st["IsSuccess"] is False and st["MsgCode"] == 1 and st["ErrorCode"] == 500
    assert st["Errors"] == [{"FieldName": None, "Message": SESSION_LOST_MESSAGE, "DIndex": 0}]
    assert sim.state()["session_lost_responses"] == 1
    assert sim.state()["sales_orders"] == 0


async def test_query_without_session_is_wrapped_session_lost(client: httpx.AsyncClient) -> None:
    resp = await client.post(QUERY, json={"data": {"FormId": "SAL_SaleOrder", "FieldKeys": "FBillNo"}})
    payload = resp.json()
    assert isinstance(payload, list) and payload[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 1


async def test_session_header_is_accepted(sim: KingdeeSimulator) -> None:
    async with client_for(sim) as first:
        sid = (await login(first))["KDSVCSessionId"]
    async with client_for(sim) as other:
        resp = await other.post(
            QUERY, json={"data": {"FormId": "BD_MATERIAL", "FieldKeys": "FNumber"}}, headers={SESSION_COOKIE: sid}
        )
        assert resp.json() == [["TD-SKU-0001"], ["TD-SKU-0002"], ["TD-SKU-0003"]]


async def test_session_expiry_forces_relogin() -> None:
    clock = FakeClock()
    sim = make_sim(session_ttl_s=60, clock=clock)
    async with client_for(sim) as client:
        await login(client)
        clock.now += 59  # used within the idle window: still alive, and the window slides
        assert status_of((await save(client, model("A-1"))).json())["IsSuccess"] is True
        clock.now += 59
        assert status_of((await save(client, model("A-2"))).json())["IsSuccess"] is True
        clock.now += 61
        lost = status_of((await save(client, model("A-3"))).json())
        assert lost["MsgCode"] == 1
        await login(client)
        assert status_of((await save(client, model("A-3"))).json())["IsSuccess"] is True
    assert sim.state()["logins"] == 2 and sim.state()["sales_orders"] == 3


# --- Save -------------------------------------------------------------------------------------------


async def test_save_returns_id_and_number(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    first = (await save(client, model("TD-SO-0001"), NeedReturnFields=["FBillNo", "FSaleOrderEntry.FQty"])).json()
    st = status_of(first)
    assert st["IsSuccess"] is True and st["MsgCode"] == 0 and st["Errors"] == []
    assert st["SuccessEntitys"] == [{"Id": 100001, "Number": "TD-SO-0001", "DIndex": 0}]
    assert first["Result"]["Id"] == 100001 and first["Result"]["Number"] == "TD-SO-0001"
    assert first["Result"]["NeedReturnData"] == [
        {"FBillNo": "TD-SO-0001", "FSaleOrderEntry": [{"FQty": 2.0}, {"FQty": 1.0}]}
    ]
    auto = (await save(client, model(None), as_string=True)).json()  # data as a JSON string, no FBillNo
    assert auto["Result"]["Id"] == 100002 and auto["Result"]["Number"] == "XSDD000001"
    bill = sim.state()["bills"]["TD-SO-0001"]
    assert bill["FBillAllAmount"] == "282.50"  # 2 x 113.00 + 1 x 50 x 1.13
    assert [ln["FMaterialId"] for ln in bill["lines"]] == ["TD-SKU-0001", "TD-SKU-0002"]


async def test_duplicate_bill_no_rejected_when_unique(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    assert status_of((await save(client, model("TD-SO-0007"))).json())["IsSuccess"] is True
    st = status_of((await save(client, model("TD-SO-0007"))).json())
    assert st["IsSuccess"] is False and st["MsgCode"] == 11
    assert st["Errors"][0]["FieldName"] == "FBillNo"
    assert "TD-SO-0007" in st["Errors"][0]["Message"] and "已经被使用" in st["Errors"][0]["Message"]
    state = sim.state()
    assert state["sales_orders"] == 1 and state["duplicate_bill_no_rejected"] == 1 and state["duplicates"] == 0


async def test_duplicate_bill_no_accepted_and_counted_when_not_unique() -> None:
    sim = make_sim(unique_bill_no=False)
    async with client_for(sim) as client:
        await login(client)
        ids = [(await save(client, model("TD-SO-0007"))).json()["Result"]["Id"] for _ in range(3)]
    assert ids == [100001, 100002, 100003]
    state = sim.state()
    assert state["sales_orders"] == 3 and state["duplicates"] == 2
    assert state["bills"]["TD-SO-0007"]["Ids"] == ids


@pytest.mark.parametrize(
    ("overrides", "field", "verify"),
    [
        ({"FCustId": {"FNumber": "CUST-NOPE"}}, "FCustId", False),
        ({"FCustId": {"FNumber": "CUST-NOPE"}}, "FCustId", True),
        ({"FSaleOrderEntry": [{"FMaterialId": {"FNumber": "NOPE"}, "FQty": 1, "FTaxPrice": 1}]}, "FMaterialId", True),
        ({"FSaleOrderEntry": [{"FMaterialId": {"FNumber": "NOPE"}, "FQty": 1, "FTaxPrice": 1}]}, "FMaterialId", False),
        ({"FSaleOrderFinance": {"FSettleCurrId": {"FNumber": "XXX"}}}, "FSettleCurrId", True),
    ],
)
async def test_unknown_base_data_rejected_naming_field(
    client: httpx.AsyncClient, sim: KingdeeSimulator, overrides: dict[str, Any], field: str, verify: bool
) -> None:
    await login(client)
    st = status_of((await save(client, model(**overrides), IsVerifyBaseDataField=verify)).json())
    assert st["IsSuccess"] is False and st["MsgCode"] == 11
    assert [e["FieldName"] for e in st["Errors"]] == [field]
    assert sim.state()["sales_orders"] == 0 and sim.state()["validation_failures"] == 1


async def test_missing_and_invalid_fields_are_all_reported(client: httpx.AsyncClient) -> None:
    await login(client)
    bad = model(FDate="not-a-date")
    del bad["FCustId"]
    bad["FSaleOrderEntry"] = [{"FMaterialId": {"FNumber": "TD-SKU-0001"}, "FQty": 0, "FTaxPrice": 1}, {"FQty": 1}]
    st = status_of((await save(client, bad)).json())
    assert st["IsSuccess"] is False
    assert {e["FieldName"] for e in st["Errors"]} == {"FDate", "FCustId", "FQty", "FMaterialId", "FTaxPrice"}
    no_lines = status_of((await save(client, model(FSaleOrderEntry=[]))).json())
    assert [e["FieldName"] for e in no_lines["Errors"]] == ["FSaleOrderEntry"]


async def test_unknown_form_is_msgcode_4(client: httpx.AsyncClient) -> None:
    await login(client)
    resp = await client.post(SAVE, json={"formid": "NO_SUCH_FORM", "data": {"Model": {}}})
    assert status_of(resp.json())["MsgCode"] == 4


# --- View ------------------------------------------------------------------------------------------


async def test_view_by_number_and_by_id(client: httpx.AsyncClient) -> None:
    await login(client)
    saved = (await save(client, model("TD-SO-0042"))).json()["Result"]
    by_number = (await client.post(VIEW, json={"formid": "SAL_SaleOrder", "data": {"Number": "TD-SO-0042"}})).json()
    assert by_number["Result"]["ResponseStatus"] is None
    bill = by_number["Result"]["Result"]
    assert bill["Id"] == saved["Id"] and bill["BillNo"] == "TD-SO-0042" and bill["Date"] == "2024-05-20T00:00:00"
    assert bill["CustId"]["Number"] == "CUST-TMALL" and bill["SaleOrgId"]["Number"] == "100"
    assert bill["SaleOrderFinance"][0]["SettleCurrId"]["Number"] == "PRE001"
    assert [(e["MaterialId"]["Number"], e["Qty"]) for e in bill["SaleOrderEntry"]] == [
        ("TD-SKU-0001", 2.0),
        ("TD-SKU-0002", 1.0),
    ]
    by_id = await client.post(VIEW, json={"parameters": ["SAL_SaleOrder", json.dumps({"Id": str(saved["Id"])})]})
    assert by_id.json()["Result"]["Result"]["BillNo"] == "TD-SO-0042"


async def test_view_not_found(client: httpx.AsyncClient) -> None:
    await login(client)
    resp = await client.post(VIEW, json={"formid": "SAL_SaleOrder", "data": {"Number": "NOPE", "Id": ""}})
    st = status_of(resp.json())
    assert st["IsSuccess"] is False and st["MsgCode"] == 10


# --- ExecuteBillQuery -----------------------------------------------------------------------------


async def test_execute_bill_query_filters(client: httpx.AsyncClient) -> None:
    await login(client)
    for no in ("TD-SO-1", "TD-SO-2", "TD-SO-3"):
        await save(client, model(no))

    async def query(**data: Any) -> Any:
        body = {
            "data": {
                "FormId": "SAL_SaleOrder",
                "OrderString": "",
                "TopRowCount": 0,
                "StartRow": 0,
                "Limit": 2000,
                **data,
            }
        }
        return (await client.post(QUERY, json=body)).json()

    assert await query(FieldKeys="FID,FBillNo,FDate,FCustId.FNumber", FilterString="FBillNo='TD-SO-2'") == [
        [100002, "TD-SO-2", "2024-05-20T00:00:00", "CUST-TMALL"]
    ]
    assert await query(FieldKeys="FBillNo", FilterString="FBillNo in ('TD-SO-1','TD-SO-3')") == [
        ["TD-SO-1"],
        ["TD-SO-3"],
    ]
    assert await query(FieldKeys="FBillNo", FilterString="", OrderString="FBillNo DESC", Limit=2) == [
        ["TD-SO-3"],
        ["TD-SO-2"],
    ]
    lines = await query(FieldKeys="FBillNo,FMaterialId.FNumber,FQty,FTaxPrice", FilterString="fbillno = 'TD-SO-1'")
    assert lines == [["TD-SO-1", "TD-SKU-0001", 2.0, 113.0], ["TD-SO-1", "TD-SKU-0002", 1.0, 56.5]]


async def test_execute_bill_query_errors_are_wrapped(client: httpx.AsyncClient) -> None:
    await login(client)

    async def code(**data: Any) -> int:
        resp = await client.post(QUERY, json={"data": {"FormId": "SAL_SaleOrder", **data}})
        return int(resp.json()[0][0]["Result"]["ResponseStatus"]["MsgCode"])

    assert await code(FieldKeys="FBillNo,FNoSuchField") == 9
    assert await code(FieldKeys="") == 8
    assert await code(FieldKeys="FBillNo", FilterString="FBillNo = ") == 4


# --- faults -----------------------------------------------------------------------------------------


async def test_lost_response_fault_keeps_the_bill(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    sim.set_faults(FaultConfig(duplicate_rate=1.0))
    resp = await save(client, model("TD-SO-0099"))
    assert resp.status_code == 502
    sim.set_faults(FaultConfig())
    state = sim.state()
    assert state["lost_responses"] == 1 and state["sales_orders"] == 1 and "TD-SO-0099" in state["bills"]
    found = await client.post(
        QUERY, json={"data": {"FormId": "SAL_SaleOrder", "FieldKeys": "FID", "FilterString": "FBillNo='TD-SO-0099'"}}
    )
    assert found.json() == [[100001]]
    retry = status_of((await save(client, model("TD-SO-0099"))).json())  # a blind retry is refused
    assert retry["IsSuccess"] is False and retry["Errors"][0]["FieldName"] == "FBillNo"


async def test_5xx_and_throttle_faults(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    sim.set_faults(FaultConfig(error_5xx_rate=1.0))
    assert (await save(client, model())).status_code == 503
    sim.set_faults(FaultConfig(throttle_rate=1.0))
    assert status_of((await save(client, model())).json())["MsgCode"] == 14
    sim.throttle_style = "http429"
    resp = await save(client, model())
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    state = sim.state()
    assert state["errors_5xx"] == 1 and state["throttled"] == 2 and state["sales_orders"] == 0


async def test_admin_routes(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    resp = await client.post("/_sim/faults", json={"throttle_rate": 1.0, "retry_after_s": 3})
    assert resp.status_code == 200 and sim.faults.config.throttle_rate == 1.0
    await client.post("/_sim/faults", json={})
    await save(client, model("TD-SO-5"))
    state = (await client.get("/_sim/state")).json()
    assert state["sales_orders"] == 1 and state["save_calls"] == 1 and state["logins"] == 1
    assert (await client.post("/_sim/expire_sessions")).json() == {"expired": 1}
    assert status_of((await save(client, model("TD-SO-6"))).json())["MsgCode"] == 1


async def test_unknown_service_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.post(STUB + "DynamicFormService.Nope.common.kdsvc", json={})).status_code == 404


async def test_save_with_fid_updates_the_bill(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    bill_id = (await save(client, model("TD-SO-0300"))).json()["Result"]["Id"]
    updated = (await save(client, model("TD-SO-0300", FID=bill_id, FNote="changed"))).json()
    assert status_of(updated)["IsSuccess"] is True and updated["Result"]["Id"] == bill_id
    assert sim.state()["sales_orders"] == 1 and sim.state()["bills"]["TD-SO-0300"]["FNote"] == "changed"
    missing = status_of((await save(client, model("TD-SO-0301", FID=999))).json())
    assert missing["MsgCode"] == 10


# --- status operations: Submit / Audit / UnAudit / CancelAssign / Delete / ExcuteOperation -------------

SUBMIT = STUB + "DynamicFormService.Submit.common.kdsvc"
AUDIT = STUB + "DynamicFormService.Audit.common.kdsvc"
UNAUDIT = STUB + "DynamicFormService.UnAudit.common.kdsvc"
DELETE = STUB + "DynamicFormService.Delete.common.kdsvc"
CANCEL_ASSIGN = STUB + "DynamicFormService.CancelAssign.common.kdsvc"
OPERATION = STUB + "DynamicFormService.ExcuteOperation.common.kdsvc"


async def op(client: httpx.AsyncClient, path: str, *, op_number: str | None = None, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"formid": "SAL_SaleOrder", "data": {"CreateOrgId": 0, "Numbers": [], "Ids": "", **data}}
    if op_number is not None:
        body["opNumber"] = op_number
    resp = await client.post(path, json=body)
    assert resp.status_code == 200
    return status_of(resp.json())


async def test_submit_audit_unaudit_delete_lifecycle(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    bill_id = (await save(client, model("TD-SO-0400"))).json()["Result"]["Id"]
    assert sim.bill_status("TD-SO-0400") == "A"
    assert (await op(client, SUBMIT, Numbers=["TD-SO-0400"]))["IsSuccess"] is True
    assert sim.bill_status("TD-SO-0400") == "B"
    refused = await op(client, DELETE, Numbers=["TD-SO-0400"])  # in approval: not deletable
    assert refused["IsSuccess"] is False and refused["MsgCode"] == 11 and refused["Errors"][0]["DIndex"] == 0
    assert (await op(client, AUDIT, Ids=str(bill_id)))["IsSuccess"] is True
    assert sim.bill_status("TD-SO-0400") == "C"
    assert (await op(client, DELETE, Ids=str(bill_id)))["IsSuccess"] is False  # audited: UnAudit first
    unaudit = await op(client, UNAUDIT, Ids=str(bill_id))
    assert unaudit["IsSuccess"] is True
    assert unaudit["SuccessEntitys"] == [{"Id": bill_id, "Number": "TD-SO-0400", "DIndex": 0}]
    assert sim.bill_status("TD-SO-0400") == "D"
    assert (await op(client, DELETE, Numbers=["TD-SO-0400"]))["IsSuccess"] is True
    assert sim.bill_status("TD-SO-0400") is None and sim.deleted_numbers() == ["TD-SO-0400"]
    gone = await op(client, DELETE, Numbers=["TD-SO-0400"])
    assert gone["IsSuccess"] is False and gone["MsgCode"] == 10
    state = sim.state()
    assert state["sales_orders"] == 0 and state["live_sales_orders"] == 0 and state["delete_calls"] == 4


async def test_cancel_assign_returns_to_created_or_reaudit(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    await save(client, model("TD-SO-0410"))
    await op(client, SUBMIT, Numbers=["TD-SO-0410"])
    assert (await op(client, CANCEL_ASSIGN, Numbers=["TD-SO-0410"]))["IsSuccess"] is True
    assert sim.bill_status("TD-SO-0410") == "A"
    assert (await op(client, CANCEL_ASSIGN, Numbers=["TD-SO-0410"]))["IsSuccess"] is False  # not in approval
    sim.set_bill_status("TD-SO-0410", "D")  # audited once, un-audited, submitted again
    sim.set_bill_status("TD-SO-0410", "B")
    await op(client, CANCEL_ASSIGN, Numbers=["TD-SO-0410"])
    assert sim.bill_status("TD-SO-0410") == "D"


async def test_downstream_bill_blocks_unaudit_and_delete(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    await save(client, model("TD-SO-0420"), IsAutoSubmitAndAudit=True)
    sim.add_downstream("TD-SO-0420", "FHTZD000001")
    refused = await op(client, UNAUDIT, Numbers=["TD-SO-0420"])
    assert refused["IsSuccess"] is False and "FHTZD000001" in refused["Errors"][0]["Message"]
    assert sim.bill_status("TD-SO-0420") == "C"
    # void (作废) is only for bills that are not audited; a whole-bill close is what is left
    assert (await op(client, OPERATION, op_number="Cancel", Numbers=["TD-SO-0420"]))["IsSuccess"] is False
    assert (await op(client, OPERATION, op_number="BillClose", Numbers=["TD-SO-0420"]))["IsSuccess"] is True
    assert sim.bill_state("TD-SO-0420") == {"FDocumentStatus": "C", "FCancelStatus": "A", "FCloseStatus": "B"}
    assert sim.closed_numbers() == ["TD-SO-0420"] and sim.live_sales_orders() == 0
    again = await op(client, OPERATION, op_number="BillClose", Numbers=["TD-SO-0420"])
    assert again["IsSuccess"] is False
    assert (await op(client, OPERATION, op_number="UnBillClose", Numbers=["TD-SO-0420"]))["IsSuccess"] is True


async def test_void_operation_and_query_of_cancel_status(client: httpx.AsyncClient, sim: KingdeeSimulator) -> None:
    await login(client)
    await save(client, model("TD-SO-0430"))
    await save(client, model("TD-SO-0431"))
    # positional form, as the older clients send it
    body = {"parameters": ["SAL_SaleOrder", "Cancel", json.dumps({"Numbers": ["TD-SO-0430", "NOPE"]})]}
    st = status_of((await client.post(OPERATION, json=body)).json())
    assert st["IsSuccess"] is False  # one of the two failed ...
    assert [e["Number"] for e in st["SuccessEntitys"]] == ["TD-SO-0430"]  # ... the other one passed
    assert st["Errors"][0]["DIndex"] == 1 and st["MsgCode"] == 10
    assert sim.cancelled_numbers() == ["TD-SO-0430"] and sim.live_sales_orders() == 1
    rows = (await client.post(QUERY, json={"data": {
        "FormId": "SAL_SaleOrder", "FieldKeys": "FBillNo,FDocumentStatus,FCancelStatus,FCloseStatus",
        "FilterString": "FCancelStatus='B'"}})).json()
    assert rows == [["TD-SO-0430", "A", "B", "A"]]
    view = (await client.post(VIEW, json={"formid": "SAL_SaleOrder", "data": {"Number": "TD-SO-0430"}})).json()
    assert view["Result"]["Result"]["CancelStatus"] == "B"
    unknown = await op(client, OPERATION, op_number="Explode", Numbers=["TD-SO-0431"])
    assert unknown["IsSuccess"] is False and unknown["MsgCode"] == 4
    newer = await client.post(
        STUB + "DynamicFormService.ExecuteOperation.common.kdsvc",
        json={"formid": "SAL_SaleOrder", "opNumber": "Cancel", "data": {"Numbers": ["TD-SO-0431"]}},
    )
    assert status_of(newer.json())["IsSuccess"] is True


async def test_status_operations_need_a_session_and_bill_names(client: httpx.AsyncClient) -> None:
    assert (await op(client, DELETE, Numbers=["X"]))["MsgCode"] == 1
    await login(client)
    assert (await op(client, DELETE))["MsgCode"] == 8


async def test_session_ends_after_max_calls() -> None:
    sim = make_sim(session_max_calls=2)
    async with client_for(sim) as client:
        await login(client)
        assert status_of((await save(client, model("M-1"))).json())["IsSuccess"] is True
        assert status_of((await save(client, model("M-2"))).json())["IsSuccess"] is True
        assert status_of((await save(client, model("M-3"))).json())["MsgCode"] == 1
        assert status_of((await save(client, model("M-3"))).json())["MsgCode"] == 1  # the session is gone
        await login(client)
        assert status_of((await save(client, model("M-3"))).json())["IsSuccess"] is True
    assert sim.state()["sales_orders"] == 3 and sim.state()["session_lost_responses"] == 2
