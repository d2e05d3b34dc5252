"""The Yonyou YonSuite simulator: its protocol as documented, and the real connector against it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from canonical import Voucher, VoucherLine
from connectors.errors import AuthError, InvalidRequestError
from connectors.http import RetryPolicy
from connectors.yonyou import YonyouConnector
from simulators.server import BackgroundServer
from simulators.yonyou import APPROVING, AUDITED, YonyouSimulator

APP_KEY, APP_SECRET = "app-key-1", "app-secret-1"
TOKEN = "/iuap-api-auth/open-auth/selfAppAuth/base/v1/getAccessToken"
GW = "/iuap-api-gateway/yonbip"
SHIPPED = datetime(2024, 5, 20, 8, 0, tzinfo=UTC)


def make_sim(**kwargs: Any) -> YonyouSimulator:
    kwargs.setdefault("products", ["SKU-A", "SKU-B"])
    return YonyouSimulator(APP_KEY, APP_SECRET, **kwargs)


@pytest.fixture
def sim() -> YonyouSimulator:
    return make_sim()


@pytest.fixture
async def client(sim: YonyouSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://yy.sim") as c:
        yield c


async def get_token(client: httpx.AsyncClient, sim: YonyouSimulator) -> str:
    answer = (await client.get(f"{TOKEN}?{sim.signed_token_query()}")).json()
    assert answer["code"] == "00000", answer
    return answer["data"]["access_token"]


def so_data(code: str = "SO-1", **overrides: Any) -> dict[str, Any]:
    data = {"salesOrgId": "org01", "transactionTypeId": "SO01", "vouchdate": "2024-05-20 00:00:00", "agentId": "C1",
            "settlementOrgId": "org01", "invoiceAgentId": "C1", "payMoney": 30, "orderPrices!currency": "CNY",
            "code": code, "_status": "Insert",
            "orderDetails": [{"_status": "Insert", "productId": "SKU-A", "qty": 2, "oriSum": 20},
                             {"_status": "Insert", "productId": "SKU-B", "qty": 1, "oriSum": 10}]}
    data.update(overrides)
    return data


def connector_for(sim: YonyouSimulator, base: str = "http://yy.sim", secret: str = APP_SECRET,
                  transport: bool = True) -> YonyouConnector:
    conn = YonyouConnector.from_config("yy", {
        "base_url": base + "/iuap-api-gateway", "auth_url": base + "/iuap-api-auth", "app_key": APP_KEY,
        "accbook_code": sim.accbook_code, "accbook_id": sim.accbook_id, "voucher_type_code": "01",
        "maker_email": "finance@example.com"}, {"app_secret": secret})
    assert isinstance(conn, YonyouConnector)
    conn.retry = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.05)
    if transport:
        conn.api.transport = conn.auth.transport = httpx.ASGITransport(app=sim.app)
    return conn


# --- token ---------------------------------------------------------------------------------------


async def test_signed_token_request_gets_a_token(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    answer = (await client.get(f"{TOKEN}?{sim.signed_token_query()}")).json()
    assert answer["code"] == "00000" and answer["data"]["expire"] == 7200
    assert answer["data"]["access_token"]
    old_path = "/iuap-api-auth/open-auth/selfAppAuth/getAccessToken"
    assert (await client.get(f"{old_path}?{sim.signed_token_query()}")).json()["code"] == "00000"


@pytest.mark.parametrize(("query", "code"), [
    ({"app_secret": "wrong"}, "10019"),
    ({"app_key": "nobody"}, "10018"),
    ({"timestamp_ms": int(time.time() * 1000) - 3_600_000}, "10013"),
])
async def test_token_refusals(client: httpx.AsyncClient, sim: YonyouSimulator, query: dict[str, Any],
                              code: str) -> None:
    answer = (await client.get(f"{TOKEN}?{sim.signed_token_query(**query)}")).json()
    assert answer["code"] == code and answer["message"]
    assert sim.counters["token_refusals"] == 1


async def test_signature_must_be_url_decoded_exactly_once(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    query = sim.signed_token_query().replace("%", "%25")  # encoded twice
    assert (await client.get(f"{TOKEN}?{query}")).json()["code"] == "10019"
    assert (await client.get(f"{TOKEN}?appKey={APP_KEY}")).json()["code"] == "10001"


# --- gateway -------------------------------------------------------------------------------------


async def test_gateway_checks_path_then_token(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    unknown = await client.post(f"{GW}/nowhere/list", json={})
    assert unknown.status_code == 404 and unknown.json()["code"] == "310404"
    assert (await client.post(f"{GW}/scm/salesout/list", json={})).json()["code"] == "310001"
    bogus = (await client.post(f"{GW}/scm/salesout/list", params={"access_token": "nope"}, json={})).json()
    assert bogus == {"code": "310036", "message": "非法token"}
    token = await get_token(client, sim)
    listing = await client.post(f"{GW}/scm/salesout/list", params={"access_token": token},
                                json={"pageIndex": 1, "pageSize": 10})
    assert listing.json()["code"] == "200" and listing.json()["data"]["recordCount"] == 0


async def test_tokens_expire_by_time_and_on_demand(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    body = {"pageIndex": 1, "pageSize": 10}
    token = await get_token(client, sim)
    sim.advance(7201)
    assert (await client.post(f"{GW}/scm/salesout/list", params={"access_token": token}, json=body)).json()[
        "code"] == "310036"
    sim.set_now(datetime.now(UTC))
    token = await get_token(client, sim)
    assert sim.expire_tokens() == 1
    assert (await client.post(f"{GW}/scm/salesout/list", params={"access_token": token}, json=body)).json()[
        "code"] == "310036"


async def test_calls_are_rate_limited_per_app() -> None:
    sim = make_sim(calls_per_second=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://yy.sim") as client:
        token = await get_token(client, sim)
        codes = [(await client.post(f"{GW}/scm/salesout/list", params={"access_token": token},
                                    json={"pageIndex": 1, "pageSize": 1})).json()["code"] for _ in range(4)]
    assert codes[:2] == ["200", "200"] and "310046" in codes[2:]


# --- documents -----------------------------------------------------------------------------------


async def test_sales_order_save_rules(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    token = await get_token(client, sim)

    async def save(data: dict[str, Any]) -> dict[str, Any]:
        return (await client.post(f"{GW}/sd/voucherorder/singleSave", params={"access_token": token},
                                  json={"data": data})).json()

    assert (await save(so_data(agentId="")))["code"] == "999"
    assert (await save(so_data(payMoney=31)))["code"] == "999"
    assert (await save(so_data(vouchdate="2024-05-20")))["code"] == "999"
    bad_line = so_data(orderDetails=[{"_status": "Insert", "productId": "SKU-X", "qty": 1, "oriSum": 30}])
    assert "SKU-X" in (await save(bad_line))["message"]
    saved = await save(so_data(resubmitCheckKey="k1"))
    assert saved["code"] == "200" and saved["data"]["status"] == 0 and saved["data"]["code"] == "SO-1"
    assert (await save(so_data("SO-2", resubmitCheckKey="k1")))["code"] == "10004"  # MDD 幂等
    assert (await save(so_data()))["code"] == "999"  # duplicate code
    assert [o["code"] for o in sim.sales_orders()] == ["SO-1"]


async def test_outbound_needs_an_audited_source_order(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    token = await get_token(client, sim)
    order = sim.add_sales_order("SO-7", [("SKU-A", 3)], status=0)
    detail = {"_status": "Insert", "qty": 1, "sourceid": order["id"],
              "sourceautoid": order["orderDetails"][0]["id"], "makeRuleCode": "orderTosalesout"}
    data = {"mergeSourceData": True, "bustype": "A30001", "code": "OUT-7", "_status": "Insert", "details": [detail]}

    async def save(payload: dict[str, Any]) -> dict[str, Any]:
        return (await client.post(f"{GW}/scm/salesout/mergeSourceData/save", params={"access_token": token},
                                  json={"data": payload})).json()

    assert "未审核" in (await save(data))["message"]
    sim.set_order_status("SO-7", AUDITED)
    assert (await save({**data, "details": [{**detail, "makeRuleCode": "nope"}]}))["code"] == "999"
    saved = await save(data)
    assert saved["code"] == "200" and saved["data"]["sucessCount"] == 1
    assert saved["data"]["infos"][0]["code"] == "OUT-7"
    assert (await save(data))["code"] == "999"  # the code is taken
    assert [o["code"] for o in sim.outbounds()] == ["OUT-7"]


async def test_voucher_rules(client: httpx.AsyncClient, sim: YonyouSimulator) -> None:
    token = await get_token(client, sim)
    line = {"description": "x", "accsubjectCode": "1122"}
    voucher = {"accbookCode": sim.accbook_code, "voucherTypeCode": "01", "makerMobile": "1", "makeTime": "2024-05-20",
               "bodies": [{**line, "debitOriginal": 10, "debitOrg": 10}, {**line, "creditOriginal": 9,
                                                                            "creditOrg": 9}]}

    async def add(body: dict[str, Any]) -> dict[str, Any]:
        return (await client.post(f"{GW}/fi/ficloud/openapi/voucher/addVoucher", params={"access_token": token},
                                  json=body)).json()

    assert "借贷不平衡" in (await add(voucher))["message"]
    both = {**voucher, "bodies": [{**line, "debitOriginal": 1, "debitOrg": 1, "creditOriginal": 1, "creditOrg": 1}]}
    assert (await add(both))["code"] == "404"
    assert (await add({**voucher, "makerMobile": ""}))["code"] == "404"
    query = await client.post(f"{GW}/fi/ficloud/voucher/queryconditiondetail", params={"access_token": token},
                              json={"accbook": sim.accbook_id, "conditions": []})
    assert query.json()["code"] == "999"


# --- the real connector against the simulator ----------------------------------------------------


async def test_connector_outbound_created_once_then_cancelled(sim: YonyouSimulator) -> None:
    sim.add_sales_order("SO-1", [("SKU-A", 2), ("SKU-B", 1)])
    conn = connector_for(sim)
    lines = [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}]
    first = await conn.create_sales_outbound("SO-1", "SO-1-OUT1", lines, SHIPPED)
    again = await conn.create_sales_outbound("SO-1", "SO-1-OUT1", lines, SHIPPED)
    assert first.created and not again.created and first.external_id == again.external_id
    [bill] = sim.outbounds()
    assert bill["code"] == "SO-1-OUT1" and bill["vouchdate"] == "2024-05-20 16:00:00"
    assert [(d["product_cCode"], d["qty"]) for d in bill["details"]] == [("SKU-A", 2), ("SKU-B", 1)]
    assert sim.counters["outbounds_saved"] == 1

    sim.set_outbound_status("SO-1-OUT1", AUDITED)  # audited in YonSuite: stock moved
    assert [ln["totalOutStockQuantity"] for ln in sim.sales_orders()[0]["orderDetails"]] == [2, 1]
    cancelled = await conn.cancel_sales_outbound("SO-1-OUT1", "order cancelled")
    assert cancelled.outcome == "cancelled" and cancelled.done
    assert sim.outbounds()[0]["status"] == 0
    assert [ln["totalOutStockQuantity"] for ln in sim.sales_orders()[0]["orderDetails"]] == [0, 0]
    assert (await conn.cancel_sales_outbound("SO-1-OUT1")).outcome == "already_cancelled"
    assert (await conn.cancel_sales_outbound("NOPE")).outcome == "not_found"
    await conn.aclose()


async def test_connector_cancel_refused_when_stock_moves_at_save() -> None:
    sim = make_sim(impact_stock_timing="0")
    sim.add_sales_order("SO-1", [("SKU-A", 2)])
    conn = connector_for(sim)
    await conn.create_sales_outbound("SO-1", "OUT-1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    sim.set_outbound_status("OUT-1", APPROVING)
    result = await conn.cancel_sales_outbound("OUT-1")
    assert result.outcome == "refused" and "撤回" in result.message and "delete it in YonSuite" in result.message
    assert sim.outbounds()[0]["status"] == 0


async def test_connector_bad_secret_is_auth_error(sim: YonyouSimulator) -> None:
    conn = connector_for(sim, secret="not-the-secret")
    with pytest.raises(AuthError) as caught:
        await conn.test()
    assert caught.value.code == "10019" and "not-the-secret" not in str(caught.value)
    assert sim.counters["token_refusals"] == 1


async def test_connector_renews_an_expired_token_transparently(sim: YonyouSimulator) -> None:
    sim.add_sales_order("SO-1", [("SKU-A", 5)])
    conn = connector_for(sim)
    assert "token OK" in await conn.test()
    assert sim.expire_tokens() == 1  # YonSuite drops the token before its expire
    result = await conn.create_sales_outbound("SO-1", "OUT-1", [{"sku": "SKU-A", "quantity": 1}], SHIPPED)
    assert result.created
    assert conn.token_fetches == 2 and sim.counters["token_invalid"] == 1


async def test_connector_sales_order_lifecycle(sim: YonyouSimulator) -> None:
    conn = connector_for(sim)
    document = {k: v for k, v in so_data().items() if k not in ("code", "_status")}
    document["orderDetails"] = [{k: v for k, v in ln.items() if k != "_status"} for ln in document["orderDetails"]]
    created = await conn.create_sales_document(document, "TD-100")
    assert created.created and not (await conn.create_sales_document(document, "TD-100")).created
    [order] = sim.sales_orders()
    assert order["code"] == "TD-100" and order["status"] == AUDITED  # saved, then audited
    result = await conn.cancel_sales_document("TD-100", "buyer cancelled")
    assert result.outcome == "cancelled" and "un-audited" in result.message
    assert sim.sales_orders() == []
    assert (await conn.cancel_sales_document("TD-100")).outcome == "not_found"
    with pytest.raises(InvalidRequestError, match="payMoney"):
        await conn.create_sales_document({**document, "payMoney": 1}, "TD-101")


async def test_connector_voucher_posted_once(sim: YonyouSimulator) -> None:
    conn = connector_for(sim)
    voucher = Voucher(number="TD-100-SHIP", date=date(2024, 5, 20), reference="tmall:100", narration="shipped",
                      lines=[VoucherLine(account="1122", debit=Decimal("30.00")),
                             VoucherLine(account="6001", credit=Decimal("30.00"))])
    first = await conn.post_voucher(voucher)
    again = await conn.post_voucher(voucher)
    reversal = await conn.post_voucher(voucher.reversal("TD-100-SHIP-REV", date(2024, 5, 21)))
    assert first.created and not again.created and first.external_id == again.external_id
    assert reversal.created and reversal.external_id != first.external_id
    assert [v["businessId"] for v in sim.vouchers()] == ["TD-100-SHIP", "TD-100-SHIP-REV"]
    assert sim.vouchers()[0]["header"]["totaldebit_org"] == 30


def test_connector_over_real_http() -> None:
    sim = make_sim()
    sim.add_sales_order("SO-9", [("SKU-B", 4)])
    with BackgroundServer(sim.app) as server:
        async def run() -> tuple[bool, bool]:
            conn = connector_for(sim, base=server.base_url, transport=False)
            try:
                first = await conn.create_sales_outbound("SO-9", "OUT-9", [{"sku": "SKU-B", "quantity": 4}], SHIPPED)
                again = await conn.create_sales_outbound("SO-9", "OUT-9", [{"sku": "SKU-B", "quantity": 4}], SHIPPED)
                return first.created, again.created
            finally:
                await conn.aclose()

        assert asyncio.run(run()) == (True, False)
    assert sim.state()["outbounds"] == 1
