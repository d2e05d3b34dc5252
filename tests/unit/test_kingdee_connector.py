"""Kingdee K3Cloud WebAPI connector against a respx-mocked K3Cloud with a session cookie."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
import respx

from connectors.base import CancelResult, CreateResult
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy
from connectors.kingdee import KingdeeConnector
from simulators.faults import FaultConfig
from simulators.kingdee import KingdeeSimulator

BASE = "http://k3.example.com/k3cloud/"
PASSWORD = "pw-Secret-123"
APPSECRET = "app-secret-456"
STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."


def status(success: bool, *, errors=(), msg_code: int = 0, entities=()) -> dict[str, Any]:
    return {"ErrorCode": 0 if success else 500, "IsSuccess": success,
            "Errors": [{"FieldName": f, "Message": m, "DIndex": 0} for f, m in errors],
            "SuccessEntitys": [{"Id": i, "Number": n, "DIndex": 0} for i, n in entities],
            "SuccessMessages": [], "MsgCode": msg_code}


SESSION_LOST = {"Result": {"ResponseStatus": status(False, errors=[(None, "会话信息已丢失，请重新登录")], msg_code=1)}}


class FakeK3Cloud:
    """Just enough K3Cloud: login with cookie, ExecuteBillQuery by FBillNo, Save, View."""

    def __init__(self) -> None:
        self.bills: dict[str, dict[str, Any]] = {}
        self.next_id = 100001
        self.valid_sessions: set[str] = set()
        self.logins: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.save_hook = None  # optional: called before a save is processed
        self.query_hook = None  # optional: returns rows to override the query answer

    def _session_ok(self, request: httpx.Request) -> bool:
        match = re.search(r"kdservice-sessionid=([^;]+)", request.headers.get("cookie", ""))
        return bool(match and match.group(1) in self.valid_sessions)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        op = request.url.path.removeprefix(STUB).removesuffix(".common.kdsvc")
        payload = json.loads(request.content)
        if op in ("AuthService.ValidateUser", "AuthService.LoginByAppSecret"):
            self.logins.append((op, payload))
            good = payload.get("password") == PASSWORD or (
                payload.get("appSecret") == APPSECRET and payload.get("appId") == "app-1")
            if not good:
                return httpx.Response(200, json={"LoginResultType": -1, "Message": "用户名或密码错误"})
            sid = f"sid-{len(self.logins)}"
            self.valid_sessions.add(sid)
            return httpx.Response(
                200,
                json={"LoginResultType": 1, "Message": None, "KDSVCSessionId": sid,
                      "Context": {"UserName": payload["username"], "DBid": payload["acctID"]}},
                headers=[("Set-Cookie", f"kdservice-sessionid={sid}; path=/"),
                         ("Set-Cookie", "ASP.NET_SessionId=asp-1; path=/; HttpOnly")],
            )
        self.calls.append((op, payload))
        if not self._session_ok(request):
            body = [[SESSION_LOST]] if op.endswith("ExecuteBillQuery") else SESSION_LOST
            return httpx.Response(200, json=body)
        if op == "DynamicFormService.ExecuteBillQuery":
            data = payload["data"]
            if self.query_hook is not None:
                rows = self.query_hook(data)
                if rows is not None:
                    return httpx.Response(200, json=rows)
            match = re.fullmatch(r"FBillNo='([^']*)'", data["FilterString"])
            if data["FilterString"] and not match:
                return httpx.Response(200, json=[[{"Result": {"ResponseStatus": status(
                    False, errors=[(None, "bad filter")], msg_code=8)}}]])
            numbers = [match.group(1)] if match else list(self.bills)
            rows = [[self.bills[n]["FID"], n] for n in numbers if n in self.bills]
            return httpx.Response(200, json=rows[: data.get("TopRowCount") or None])
        if op == "DynamicFormService.Save":
            if self.save_hook is not None:
                self.save_hook(self, payload)
            model = payload["data"]["Model"]
            number = model["FBillNo"]
            if not model.get("FCustId"):
                return httpx.Response(200, json={"Result": {"ResponseStatus": status(
                    False, errors=[("FCustId", "字段“客户”是必填项")], msg_code=11), "Id": "", "Number": ""}})
            if number in self.bills:
                return httpx.Response(200, json={"Result": {"ResponseStatus": status(
                    False, errors=[("FBillNo", f"单据编号唯一性检查：编号为{number}的单据已存在")], msg_code=11),
                    "Id": "", "Number": ""}})
            fid = self.next_id
            self.next_id += 1
            self.bills[number] = {"FID": fid, "Model": model}
            return httpx.Response(200, json={"Result": {"ResponseStatus": status(True, entities=[(fid, number)]),
                                                        "Id": fid, "Number": number, "NeedReturnData": [{}]}})
        if op == "DynamicFormService.View":
            number = payload["data"]["Number"]
            if number not in self.bills:
                return httpx.Response(200, json={"Result": {"ResponseStatus": status(
                    False, errors=[(None, "单据不存在或已删除")], msg_code=10), "Result": None}})
            bill = self.bills[number]
            return httpx.Response(200, json={"Result": {"ResponseStatus": status(True),
                                                        "Result": {"Id": bill["FID"], "BillNo": number}}})
        return httpx.Response(404)

    def ops(self) -> list[str]:
        return [op.split(".")[-1] for op, _ in self.calls]


@pytest.fixture
def k3():
    server = FakeK3Cloud()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(host="k3.example.com").mock(side_effect=server)
        yield server


def make_connector(settings: dict | None = None, secrets: dict | None = None) -> KingdeeConnector:
    conn = KingdeeConnector.from_config(
        "erp",
        {"base_url": BASE, "acctID": "6600aabbcc", "username": "api_user"} | (settings or {}),
        {"password": PASSWORD} if secrets is None else secrets,
    )
    conn.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=0.005)
    return conn


def model() -> dict[str, Any]:
    return {
        "FBillTypeID": {"FNUMBER": "XSDD01_SYS"},
        "FDate": "2024-05-01",
        "FSaleOrgId": {"FNumber": "100"},
        "FCustId": {"FNumber": "CUST0001"},
        "FSaleOrderFinance": {"FSettleCurrId": {"FNumber": "PRE001"}},
        "FNote": "taobao:shop:123",
        "FSaleOrderEntry": [{"FMaterialId": {"FNumber": "SKU-A"}, "FQty": 2, "FTaxPrice": 99.5}],
    }


async def test_login_and_save_created(k3):
    conn = make_connector()
    result = await conn.create_sales_document(model(), "TD-0001")
    assert result == CreateResult(external_id="100001", number="TD-0001", created=True)

    (op, login), = k3.logins
    assert op == "AuthService.ValidateUser"
    assert login == {"acctID": "6600aabbcc", "username": "api_user", "password": PASSWORD, "lcid": 2052}
    assert k3.ops() == ["ExecuteBillQuery", "Save"]
    query = k3.calls[0][1]["data"]
    assert query == {"FormId": "SAL_SaleOrder", "FieldKeys": "FID,FBillNo", "FilterString": "FBillNo='TD-0001'",
                     "OrderString": "", "TopRowCount": 0, "StartRow": 0, "Limit": 2000}
    save = k3.calls[1][1]
    assert save["formid"] == "SAL_SaleOrder"
    assert {k: save["data"][k] for k in ("NeedUpDateFields", "NeedReturnFields", "IsDeleteEntry",
                                          "IsVerifyBaseDataField")} == {
        "NeedUpDateFields": [], "NeedReturnFields": [], "IsDeleteEntry": True, "IsVerifyBaseDataField": False}
    assert save["data"]["Model"] == model() | {"FBillNo": "TD-0001"}
    await conn.aclose()


async def test_existing_bill_is_not_saved_again(k3):
    conn = make_connector()
    first = await conn.create_sales_document(model(), "TD-0002")
    again = await conn.create_sales_document(model(), "TD-0002")
    assert first.created and not again.created
    assert again == CreateResult(external_id=first.external_id, number="TD-0002", created=False)
    assert k3.ops() == ["ExecuteBillQuery", "Save", "ExecuteBillQuery"]
    assert len(k3.bills) == 1


async def test_save_already_exists_queries_again(k3):
    """A concurrent worker created the bill between our lookup and our Save."""
    looked_up = {"n": 0}

    def stale_first_lookup(data):
        looked_up["n"] += 1
        return [] if looked_up["n"] == 1 else None

    def concurrent_create(server, payload):
        number = payload["data"]["Model"]["FBillNo"]
        server.bills.setdefault(number, {"FID": 424242, "Model": {}})

    k3.query_hook = stale_first_lookup
    k3.save_hook = concurrent_create
    result = await make_connector().create_sales_document(model(), "TD-0003")
    assert result == CreateResult(external_id="424242", number="TD-0003", created=False)
    assert k3.ops() == ["ExecuteBillQuery", "Save", "ExecuteBillQuery"]


async def test_lost_save_reply_does_not_create_a_second_bill(k3):
    """K3Cloud committed the Save, the reply never arrived: the retry finds the bill."""
    def commit_then_drop(server, payload):
        if not server.bills:
            server.bills["TD-0004"] = {"FID": 555, "Model": payload["data"]["Model"]}
            raise httpx.ReadTimeout("reply lost")

    k3.save_hook = commit_then_drop
    result = await make_connector().create_sales_document(model(), "TD-0004")
    assert result == CreateResult(external_id="555", number="TD-0004", created=False)
    assert k3.ops() == ["ExecuteBillQuery", "Save", "ExecuteBillQuery"]
    assert list(k3.bills) == ["TD-0004"]


async def test_session_lost_relogs_in_and_retries_once(k3):
    conn = make_connector()
    await conn.create_sales_document(model(), "TD-0005")
    k3.valid_sessions.clear()  # the server forgot every session (restart, timeout)
    result = await conn.create_sales_document(model(), "TD-0006")
    assert result.created
    assert len(k3.logins) == 2
    assert k3.ops()[2:] == ["ExecuteBillQuery", "ExecuteBillQuery", "Save"]  # lost, re-login, retried


async def test_session_lost_right_after_login_is_retryable_session_expired(k3):
    """An ERP that ends every session at once is a transient condition, not bad credentials."""
    conn = make_connector()
    k3._session_ok = lambda request: False
    with pytest.raises(SessionExpiredError) as info:
        await conn.create_sales_document(model(), "TD-0007")
    assert info.value.retryable and not info.value.to_application_error().non_retryable
    # 3 operation attempts x (session_attempts sends, one re-login between two sends) + the first login
    assert len(k3.logins) == 1 + 3 * (conn.session_attempts - 1)
    assert k3.bills == {}


async def test_concurrent_calls_on_a_lost_session_share_one_relogin(k3):
    conn = make_connector()
    await conn.create_sales_document(model(), "TD-0100")
    k3.valid_sessions.clear()  # the server forgot the session every caller holds
    results = await asyncio.gather(*(conn.get_sales_document("TD-0100") for _ in range(12)))
    assert all(r == {"Id": 100001, "BillNo": "TD-0100"} for r in results)
    assert len(k3.logins) == 2  # single-flight: one re-login for twelve callers


async def test_relogin_rejected_for_credentials_is_auth_error(k3):
    conn = make_connector()
    await conn.create_sales_document(model(), "TD-0101")
    k3.valid_sessions.clear()
    conn.secrets = conn.Secrets.model_validate({"password": "rotated-away-000"})
    with pytest.raises(AuthError) as info:
        await conn.get_sales_document("TD-0101")
    assert not info.value.retryable and len(k3.logins) == 2


async def test_login_keeps_the_old_session_until_the_new_one_exists(k3):
    """A re-login never leaves other calls without a session: nothing is cleared before it succeeds."""
    conn = make_connector()
    await conn.create_sales_document(model(), "TD-0102")
    before = conn._session
    k3.valid_sessions.clear()
    conn.secrets = conn.Secrets.model_validate({"password": "rotated-away-000"})
    with pytest.raises(AuthError):
        await conn.get_sales_document("TD-0102")
    assert conn._session is before  # the failed login took nothing away
    k3.valid_sessions.add(before.session_id)  # e.g. the server had only hiccuped
    assert await conn.get_sales_document("TD-0102") == {"Id": 100001, "BillNo": "TD-0102"}


async def test_bad_password_is_auth_error_without_secret(k3):
    conn = make_connector(secrets={"password": "wrong-password-xyz"})
    with pytest.raises(AuthError) as info:
        await conn.create_sales_document(model(), "TD-0008")
    error = info.value
    assert not error.retryable
    assert "用户名或密码错误" in str(error)
    for text in (str(error), repr(error), str(error.to_application_error()), json.dumps(error.details)):
        assert "wrong-password-xyz" not in text and "sid-" not in text
    assert k3.calls == []


async def test_business_error_names_field_and_message(k3):
    bad = model()
    del bad["FCustId"]
    with pytest.raises(InvalidRequestError) as info:
        await make_connector().create_sales_document(bad, "TD-0009")
    assert "FCustId" in str(info.value) and "必填" in str(info.value)
    assert info.value.details["msg_code"] == 11


async def test_number_with_quote_is_refused(k3):
    with pytest.raises(InvalidRequestError, match="quote"):
        await make_connector().create_sales_document(model(), "X' OR '1'='1")
    assert k3.calls == [] and k3.logins == []


async def test_app_secret_login(k3):
    conn = make_connector(settings={"appid": "app-1"}, secrets={"appsecret": APPSECRET})
    assert (await conn.create_sales_document(model(), "TD-0010")).created
    (op, login), = k3.logins
    assert op == "AuthService.LoginByAppSecret"
    assert login == {"acctID": "6600aabbcc", "username": "api_user", "appId": "app-1", "appSecret": APPSECRET,
                     "lcid": 2052}


async def test_get_sales_document(k3):
    conn = make_connector()
    await conn.create_sales_document(model(), "TD-0011")
    bill = await conn.get_sales_document("TD-0011")
    assert bill == {"Id": 100001, "BillNo": "TD-0011"}
    assert k3.calls[-1] == ("DynamicFormService.View", {"formid": "SAL_SaleOrder", "data": {"Number": "TD-0011"}})
    assert await conn.get_sales_document("TD-404") is None


async def test_http_5xx_is_transient():
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(host="k3.example.com").mock(return_value=httpx.Response(503))
        with pytest.raises(TransientError):
            await make_connector().test()
        assert route.call_count == 3  # retried per the connector's policy


async def test_test_summary(k3):
    summary = await make_connector().test()
    assert "ValidateUser" in summary and "SAL_SaleOrder" in summary
    assert k3.calls[-1][1]["data"]["TopRowCount"] == 1


def test_credentials_validation_and_describe():
    with pytest.raises(ConfigurationError, match="password.*appsecret|appsecret.*password"):
        KingdeeConnector.from_config("erp", {"base_url": BASE, "acctID": "a", "username": "u"}, {})
    with pytest.raises(ConfigurationError, match="appsecret"):
        KingdeeConnector.from_config("erp", {"base_url": BASE, "acctID": "a", "username": "u", "appid": "x"},
                                     {"password": PASSWORD})
    with pytest.raises(ConfigurationError) as info:
        KingdeeConnector.from_config("erp", {"base_url": BASE, "acctID": "a", "username": "u"},
                                     {"password": PASSWORD, "app_secret": "typo-value-789"})
    assert "typo-value-789" not in str(info.value) and PASSWORD not in str(info.value)

    conn = make_connector(secrets={"password": PASSWORD, "appsecret": APPSECRET})
    described = conn.describe()
    assert described["secrets"] == {"password": "********", "appsecret": "********"}
    assert described["capabilities"] == ["sales_documents", "sales_outbound", "vouchers"]
    dumped = json.dumps(described) + repr(conn.secrets) + repr(conn.settings)
    assert PASSWORD not in dumped and APPSECRET not in dumped


# --- against the K3Cloud simulator (an independent reading of the protocol) ----------------------------

SIM_BASE = "http://k3.sim/k3cloud/"


def make_sim(**kwargs: Any) -> KingdeeSimulator:
    return KingdeeSimulator("6600aabbcc", "api_user", PASSWORD, materials=["SKU-A"], customers=["CUST0001"], **kwargs)


def sim_connector(sim: KingdeeSimulator, **settings: Any) -> KingdeeConnector:
    conn = make_connector(settings={"base_url": SIM_BASE, **settings})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    return conn


async def test_40_concurrent_creates_with_sessions_ending_after_a_few_calls():
    """Many orders share one session and the ERP ends sessions after 5 calls: every order lands."""
    # a little latency keeps many calls in flight at once, so one session ending hits several of them
    sim = make_sim(session_max_calls=5, faults=FaultConfig(latency_ms=3))
    conn = sim_connector(sim)
    conn.retry = RetryPolicy(attempts=4, max_elapsed_s=30, initial_s=0.001, max_s=0.01)
    numbers = [f"TD-C{i:03d}" for i in range(40)]
    results = await asyncio.gather(*(conn.create_sales_document(model(), n) for n in numbers),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    state = sim.state()
    assert state["sales_orders"] == 40 and state["duplicates"] == 0 and sorted(state["bills"]) == numbers
    assert state["session_lost_responses"] > 0  # the scenario really happened
    # single-flight: a login per generation of lost sessions, never one per caller per loss
    assert conn.logins == state["logins"] < state["session_lost_responses"]
    served = state["query_calls"] + state["save_calls"]  # calls that got past the session check
    assert state["logins"] <= served // 5 + 2  # one login per 5-call session, not one per lost caller
    print(f"40 concurrent creates: bills={state['sales_orders']} errors={len(errors)} logins={state['logins']} "
          f"session_lost={state['session_lost_responses']} saves={state['save_calls']} queries={state['query_calls']}")
    await conn.aclose()


async def test_cancel_created_bill_deletes_it_and_is_idempotent():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X001")
    assert sim.bill_status("TD-X001") == "A"
    first = await conn.cancel_sales_document("TD-X001", reason="buyer cancelled")
    assert first.outcome == "cancelled" and first.done and "deleted" in first.message
    assert sim.deleted_numbers() == ["TD-X001"] and sim.live_sales_orders() == 0
    again = await conn.cancel_sales_document("TD-X001")
    assert again == CancelResult(outcome="not_found", message="no SAL_SaleOrder numbered TD-X001")
    assert (await conn.cancel_sales_document("TD-NEVER")).outcome == "not_found"


async def test_cancel_bill_in_approval_withdraws_then_deletes():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X002")
    sim.set_bill_status("TD-X002", "B")
    result = await conn.cancel_sales_document("TD-X002")
    assert result.outcome == "cancelled" and "CancelAssign" in result.message
    assert sim.deleted_numbers() == ["TD-X002"]
    state = sim.state()
    assert state["cancel_assign_calls"] == 1 and state["delete_calls"] == 1


async def test_cancel_audited_bill_unaudits_then_deletes():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X003")
    sim.set_bill_status("TD-X003", "C")
    result = await conn.cancel_sales_document("TD-X003")
    assert result.outcome == "cancelled" and result.message == "un-audited, deleted"
    assert sim.deleted_numbers() == ["TD-X003"] and sim.state()["unaudit_calls"] == 1


async def test_cancel_audited_bill_with_downstream_bills_closes_it():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X004")
    sim.set_bill_status("TD-X004", "C")
    sim.add_downstream("TD-X004", "FHTZD000042")
    result = await conn.cancel_sales_document("TD-X004")
    assert result.outcome == "cancelled" and "整单关闭" in result.message and "FHTZD000042" in result.message
    assert sim.closed_numbers() == ["TD-X004"] and sim.deleted_numbers() == []
    assert sim.live_sales_orders() == 0
    again = await conn.cancel_sales_document("TD-X004")
    assert again.outcome == "already_cancelled" and again.done


async def test_cancel_refused_when_no_fallback_is_configured():
    sim = make_sim()
    conn = sim_connector(sim, close_operation="")
    await conn.create_sales_document(model(), "TD-X005")
    sim.set_bill_status("TD-X005", "C")
    sim.add_downstream("TD-X005", "FHTZD000043")
    result = await conn.cancel_sales_document("TD-X005")
    assert result.outcome == "refused" and not result.done
    assert "UnAudit refused" in result.message and "FHTZD000043" in result.message
    assert sim.bill_state("TD-X005") == {"FDocumentStatus": "C", "FCancelStatus": "A", "FCloseStatus": "A"}


async def test_refused_delete_falls_back_to_void():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X006")
    sim.add_downstream("TD-X006")  # not audited, but referenced: Delete is refused, 作废 is allowed
    result = await conn.cancel_sales_document("TD-X006")
    assert result.outcome == "cancelled" and "作废" in result.message and "Delete refused" in result.message
    assert sim.cancelled_numbers() == ["TD-X006"] and sim.live_sales_orders() == 0
    assert (await conn.cancel_sales_document("TD-X006")).outcome == "already_cancelled"
    unknown_op = sim_connector(sim, void_operation="NoSuchOp")
    await unknown_op.create_sales_document(model(), "TD-X007")
    sim.add_downstream("TD-X007")
    refused = await unknown_op.cancel_sales_document("TD-X007")
    assert refused.outcome == "refused" and "NoSuchOp" in refused.message


async def test_cancel_survives_session_loss_and_resumes_after_a_cut_short_attempt():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X008")
    sim.set_bill_status("TD-X008", "C")
    sim.expire_sessions()  # the session is gone before the cancel starts
    # UnAudit went through on an earlier attempt, whose reply was lost: the bill is now D
    sim.set_bill_status("TD-X008", "D")
    result = await conn.cancel_sales_document("TD-X008")
    assert result == CancelResult(outcome="cancelled", message="deleted")
    assert sim.state()["logins"] == 2 and sim.deleted_numbers() == ["TD-X008"]


async def test_cancel_under_sessions_ending_every_few_calls():
    sim = make_sim(session_max_calls=2)
    conn = sim_connector(sim)
    for n in ("TD-X010", "TD-X011", "TD-X012"):
        await conn.create_sales_document(model(), n)
        sim.set_bill_status(n, "C")
    results = await asyncio.gather(*(conn.cancel_sales_document(n) for n in ("TD-X010", "TD-X011", "TD-X012")))
    assert [r.outcome for r in results] == ["cancelled"] * 3
    assert sorted(sim.deleted_numbers()) == ["TD-X010", "TD-X011", "TD-X012"]


async def test_call_limit_longer_than_the_short_budget_goes_to_temporal():
    sim = make_sim()
    conn = sim_connector(sim)
    await conn.create_sales_document(model(), "TD-X020")
    sim.set_faults(FaultConfig(throttle_rate=1.0))  # MsgCode 14: K3Cloud asks to wait ~1 s
    started = time.monotonic()
    with pytest.raises(ThrottledError) as info:
        await conn.cancel_sales_document("TD-X020")  # test policy: max_s 0.005 s, so no in-process wait
    assert time.monotonic() - started < 0.5
    assert info.value.retry_after == 1.0 and info.value.retryable
    assert sim.state()["throttled"] == 1
    assert 0.5 < conn.api.limiter.ban_remaining() <= 1.0  # the whole connector pauses, as for a 429
