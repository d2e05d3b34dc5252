"""Kingdee K3Cloud WebAPI connector against a respx-mocked K3Cloud with a session cookie."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import respx

from connectors.base import CreateResult
from connectors.errors import AuthError, ConfigurationError, InvalidRequestError, TransientError
from connectors.http import RetryPolicy
from connectors.kingdee import KingdeeConnector

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


async def test_session_lost_right_after_login_is_auth_error(k3):
    conn = make_connector()
    original = k3._session_ok
    k3._session_ok = lambda request: False
    with pytest.raises(AuthError):
        await conn.create_sales_document(model(), "TD-0007")
    assert len(k3.logins) == 2  # first login, one re-login, then gave up
    k3._session_ok = original


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
    assert described["capabilities"] == ["sales_documents"]
    dumped = json.dumps(described) + repr(conn.secrets) + repr(conn.settings)
    assert PASSWORD not in dumped and APPSECRET not in dumped
