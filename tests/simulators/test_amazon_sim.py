"""The Amazon SP-API simulator: protocol rules, lifecycle, faults, and the real connector against it.

Every SP-API answer the simulator gives here (successes and ErrorLists alike) is validated against
Amazon's official Swagger 2.0 models in ``../shared/specs/amazon/``, and so is every request the
connector sends in the contract tests.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from canonical import Shipment
from connectors.amazon import AmazonConnector
from connectors.errors import AuthError, InvalidRequestError, ThrottledError
from connectors.http import RetryPolicy
from mappings import load_spec
from simulators.amazon import AmazonSimulator
from simulators.faults import FaultConfig

_spec = importlib.util.spec_from_file_location(
    "amazon_swagger", Path(__file__).resolve().parents[1] / "fixtures" / "amazon_swagger.py")
swagger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(swagger)

APPS = {"amzn1.application-oa2-client.demo": "demo-client-secret"}
SHOPS = {"Atzr|refresh-shop-a": "amz-a", "Atzr|refresh-shop-b": "amz-b"}
BASE = "http://amazon.sim"
SEARCH = "/orders/2026-01-01/orders"


class Validating(httpx.AsyncBaseTransport):
    """ASGI transport that validates every SP-API exchange against the official model."""

    def __init__(self, app: Any, check_requests: bool = True) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.check_requests = check_requests
        self.operations: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.startswith("/orders/"):
            await response.aread()
            if self.check_requests:
                self.operations.append(swagger.validate_exchange(request, response))
            else:  # a test sending deliberately wrong requests: only the answer must match the model
                body = response.json() if response.content else None
                swagger.for_path(request.url.path).validate_response(request.method, request.url.path,
                                                                     response.status_code, body)
        return response


def sim(**kwargs: Any) -> AmazonSimulator:
    return AmazonSimulator(APPS, SHOPS, **({"orders_per_shop": 6, "seed": 5} | kwargs))


def client(s: AmazonSimulator, check_requests: bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Validating(s.app, check_requests), base_url=BASE)


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def token(http: httpx.AsyncClient, refresh: str = "Atzr|refresh-shop-a") -> str:
    (client_id, secret), = APPS.items()
    answer = await http.post("/auth/o2/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                     "client_id": client_id, "client_secret": secret})
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and body["access_token"].startswith("Atza|")
    return body["access_token"]


# --- LWA and the token ---------------------------------------------------------------------------------


async def test_lwa_refusals_in_oauth_form():
    s = sim()
    async with client(s, check_requests=False) as http:
        (client_id, secret), = APPS.items()
        form = {"grant_type": "refresh_token", "refresh_token": "Atzr|refresh-shop-a", "client_id": client_id,
                "client_secret": secret}
        bad_client = await http.post("/auth/o2/token", data=form | {"client_secret": "nope"})
        assert (bad_client.status_code, bad_client.json()["error"]) == (401, "invalid_client")
        bad_grant = await http.post("/auth/o2/token", data=form | {"refresh_token": "Atzr|other"})
        assert (bad_grant.status_code, bad_grant.json()["error"]) == (400, "invalid_grant")
        missing = await http.post("/auth/o2/token", data={"grant_type": "refresh_token"})
        assert missing.json()["error"] == "invalid_request"
        wrong = await http.post("/auth/o2/token", data=form | {"grant_type": "authorization_code"})
        assert wrong.json()["error"] == "unsupported_grant_type"


async def test_missing_forged_and_expired_tokens_are_403_unauthorized():
    s = sim()
    async with client(s) as http:
        params = {"lastUpdatedAfter": ago(600), "marketplaceIds": "ATVPDKIKX0DER"}
        none = await http.get(SEARCH, params=params)
        forged = await http.get(SEARCH, params=params, headers={"x-amz-access-token": "Atza|forged"})
        for answer in (none, forged):
            assert answer.status_code == 403
            assert answer.json()["errors"][0]["code"] == "Unauthorized"
        good = await token(http)
        assert (await http.get(SEARCH, params=params, headers={"x-amz-access-token": good})).status_code == 200
        s.expire_tokens()
        expired = await http.get(SEARCH, params=params, headers={"x-amz-access-token": good})
        assert expired.status_code == 403 and "expired" in expired.json()["errors"][0]["details"]
    assert s.state()["rejected_tokens"] == 3


# --- searchOrders / getOrder --------------------------------------------------------------------------


async def test_search_rules():
    s = sim()
    async with client(s, check_requests=False) as http:
        h = {"x-amz-access-token": await token(http)}
        cases = [
            {},  # neither createdAfter nor lastUpdatedAfter
            {"createdAfter": ago(60), "lastUpdatedAfter": ago(60)},  # both
            {"lastUpdatedAfter": ago(60), "lastUpdatedBefore": ago(1)},  # younger than two minutes
            {"lastUpdatedAfter": ago(60), "lastUpdatedBefore": ago(120)},  # before < after
            {"lastUpdatedAfter": ago(60), "createdBefore": ago(10)},
            {"lastUpdatedAfter": ago(60), "maxResultsPerPage": "101"},
            {"lastUpdatedAfter": ago(60), "fulfillmentStatuses": "SHIPPED,LOST"},
            {"lastUpdatedAfter": "yesterday"},
            {"lastUpdatedAfter": ago(60), "paginationToken": "forged"},
        ]
        for params in cases:
            answer = await http.get(SEARCH, params=params, headers=h)
            assert answer.status_code == 400, params
            assert answer.json()["errors"][0]["code"] == "InvalidInput"
        ok = await http.get(SEARCH, params={"lastUpdatedAfter": ago(600)}, headers=h)
        assert ok.status_code == 200 and len(ok.json()["orders"]) == 6
        assert ok.headers["x-amzn-RateLimit-Limit"] == "0.0056" and ok.headers["x-amzn-RequestId"]


async def test_included_data_and_pii_release():
    s = sim()
    pending = s.make_order("amz-a", status="PENDING", lines=2)
    async with client(s) as http:
        h = {"x-amz-access-token": await token(http)}
        bare = (await http.get(f"{SEARCH}/{pending}", headers=h)).json()["order"]
        assert set(bare) == {"orderId", "createdTime", "lastUpdatedTime", "salesChannel", "orderItems"}
        full = (await http.get(f"{SEARCH}/{pending}", params={"includedData": "BUYER,RECIPIENT,PROCEEDS,FULFILLMENT"},
                               headers=h)).json()["order"]
        address = full["recipient"]["deliveryAddress"]
        assert "name" not in address and "addressLine1" not in address and address["city"]  # not paid: no PII
        assert "proceeds" not in full and "price" not in full["orderItems"][0]["product"]
        mapped = load_spec("amazon_order").apply(full, None, {"shop": "amz-a"})
        assert mapped.ok, mapped.errors
        assert mapped.value.status.value == "pending_payment" and mapped.value.receiver.protected
        s.pay(pending)
        paid = (await http.get(f"{SEARCH}/{pending}", params={"includedData": "RECIPIENT,PROCEEDS,FULFILLMENT"},
                               headers=h)).json()["order"]
        assert paid["recipient"]["deliveryAddress"]["name"] and paid["proceeds"]["grandTotal"]["currencyCode"] == "USD"
        assert paid["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
        assert (await http.get(f"{SEARCH}/999-0000000-0000000", headers=h)).status_code == 404
    no_role = sim(pii_role=False)
    async with client(no_role) as http:
        h = {"x-amz-access-token": await token(http)}
        (first, *_) = (await http.get(SEARCH, params={"lastUpdatedAfter": ago(900), "includedData": "RECIPIENT"},
                                      headers=h)).json()["orders"]
        assert "name" not in first["recipient"]["deliveryAddress"]


async def test_pagination_is_a_stable_cursor():
    s = sim(orders_per_shop=7)
    async with client(s, check_requests=False) as http:
        h = {"x-amz-access-token": await token(http)}
        params = {"lastUpdatedAfter": ago(900), "lastUpdatedBefore": ago(3), "maxResultsPerPage": "3"}
        first = (await http.get(SEARCH, params=params, headers=h)).json()
        seen = [o["orderId"] for o in first["orders"]]
        s.change_address(seen[0], city="Tacoma")  # updated while paging: leaves this window, shifts nothing
        token_ = first["pagination"]["nextToken"]
        other = await http.get(SEARCH, params=params | {"paginationToken": token_, "fulfilledBy": "AMAZON"},
                               headers=h)
        assert other.status_code == 400  # "All other parameters must be provided with the same values"
        while token_:
            page = (await http.get(SEARCH, params=params | {"paginationToken": token_, "maxResultsPerPage": "2"},
                                   headers=h)).json()
            seen += [o["orderId"] for o in page["orders"]]
            token_ = page.get("pagination", {}).get("nextToken")
        assert len(seen) == len(set(seen)) == 7


async def test_usage_plan_throttles_with_quota_exceeded():
    s = sim(usage_plans={"getOrder": (0.001, 2)})
    order_id = s.orders("amz-a")[0]["orderId"]
    async with client(s) as http:
        h = {"x-amz-access-token": await token(http)}
        codes = [(await http.get(f"{SEARCH}/{order_id}", headers=h)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = await http.get(f"{SEARCH}/{order_id}", headers=h)
        assert refused.json()["errors"][0]["code"] == "QuotaExceeded"
        assert refused.headers["x-amzn-RateLimit-Limit"] == "0.001"
        other_seller = {"x-amz-access-token": await token(http, "Atzr|refresh-shop-b")}
        assert (await http.get(SEARCH, params={"lastUpdatedAfter": ago(900)}, headers=other_seller)).status_code == 200
    assert s.state()["rate_limited"] == 2


async def test_faults_are_seeded_and_answer_in_the_platform_format():
    s = sim(faults=FaultConfig(error_5xx_rate=0.5, throttle_rate=0.2, duplicate_rate=1.0, seed=11))
    async with client(s) as http:
        h = {"x-amz-access-token": await token(http)}
        codes = [(await http.get(SEARCH, params={"lastUpdatedAfter": ago(900)}, headers=h)).status_code
                 for _ in range(12)]
    assert {503, 200} <= set(codes) and set(codes) <= {200, 429, 503}
    again = sim(faults=FaultConfig(error_5xx_rate=0.5, throttle_rate=0.2, duplicate_rate=1.0, seed=11))
    async with client(again) as http:
        h = {"x-amz-access-token": await token(http)}
        assert codes == [(await http.get(SEARCH, params={"lastUpdatedAfter": ago(900)}, headers=h)).status_code
                         for _ in range(12)]
        ok = next(r for r in [await http.get(SEARCH, params={"lastUpdatedAfter": ago(900)}, headers=h)
                              for _ in range(6)] if r.status_code == 200)
        ids = [o["orderId"] for o in ok.json()["orders"]]
        assert len(ids) == len(set(ids)) + 1  # one order repeated in the page


# --- confirmShipment and the lifecycle ----------------------------------------------------------------


def package(reference: str, tracking: str, items: list[tuple[str, int]], carrier: str = "SF Express") -> dict:
    return {"marketplaceId": "ATVPDKIKX0DER", "packageDetail": {
        "packageReferenceId": reference, "carrierCode": carrier, "trackingNumber": tracking,
        "shipDate": ago(5), "orderItems": [{"orderItemId": i, "quantity": q} for i, q in items]}}


async def test_confirm_shipment_split_edit_and_refusals():
    s = sim()
    order_id = s.make_order("amz-a", lines=2)
    items = [(i["orderItemId"], i["quantityOrdered"]) for i in s.order(order_id)["orderItems"]]
    url = f"/orders/v0/orders/{order_id}/shipmentConfirmation"
    async with client(s, check_requests=False) as http:
        h = {"x-amz-access-token": await token(http)}
        first = await http.post(url, json=package("101", "SF0001", items[:1]), headers=h)
        assert first.status_code == 204 and s.status(order_id) == "PARTIALLY_SHIPPED"
        edit = await http.post(url, json=package("101", "SF0001X", items[:1]), headers=h)  # same reference: edit
        assert edit.status_code == 204
        assert s.writebacks(order_id) == [("SF0001X", "SF Express", [items[0][0]])]
        too_much = await http.post(url, json=package("102", "SF0002", [(items[0][0], 1)]), headers=h)
        assert too_much.status_code == 400
        other = await http.post(url, json=package("103", "ZT0003", items[1:], carrier="Other"), headers=h)
        assert other.status_code == 400  # carrierName "Required when carrierCode is Other"
        bad_ref = await http.post(url, json=package("A1", "SF0004", items[1:]), headers=h)
        assert bad_ref.status_code == 400
        last = await http.post(url, json=package("104", "SF0004", items[1:]), headers=h)
        assert last.status_code == 204 and s.status(order_id) == "SHIPPED"
        shown = (await http.get(f"{SEARCH}/{order_id}", params={"includedData": "PACKAGES"}, headers=h)).json()
        assert [p["trackingNumber"] for p in shown["order"]["packages"]] == ["SF0001X", "SF0004"]
        cancelled = s.make_order("amz-a")
        s.cancel(cancelled)
        item = s.order(cancelled)["orderItems"][0]
        refused = await http.post(f"/orders/v0/orders/{cancelled}/shipmentConfirmation",
                                  json=package("1", "SF9", [(item["orderItemId"], 1)]), headers=h)
        assert refused.status_code == 400
    state = s.state()
    assert state["shipped_count"] == 1 and state["shipment_attempts"] == 7


def test_lifecycle_methods():
    s = sim()
    pre = s.make_order("amz-a", status="PENDING_AVAILABILITY")
    assert "PREORDER" in s.order(pre)["programs"]
    s.release_preorder(pre)
    assert s.status(pre) == "PENDING"
    s.pay(pre)
    assert s.status(pre) == "UNSHIPPED"
    multi = s.make_order("amz-a", lines=2)
    first, second = (i["orderItemId"] for i in s.order(multi)["orderItems"])
    s.request_cancel(multi, first)
    assert "cancellationRequest" in s.order(multi)["orderItems"][0]["cancellation"]
    s.refund_line(multi, first)
    assert s.status(multi) == "UNSHIPPED"
    s.refund_line(multi, second)
    assert s.status(multi) == "CANCELLED"
    moved = s.make_order("amz-a")
    before = s.order(moved)["lastUpdatedTime"]
    s.advance(60)
    s.change_address(moved, addressLine1="1 New Road")
    assert s.order(moved)["lastUpdatedTime"] > before
    with pytest.raises(ValueError):
        s.pay(moved)
    state = s.state()
    assert state["orders_created"] == 15 and state["orders_malformed"] == 0


def test_malformed_orders_are_counted():
    s = sim(orders_per_shop=10, malformed_per_shop=4)
    state = s.state()
    assert state["orders_created"] == 20 and state["orders_malformed"] == 8
    assert set(state["malformed"].values()) == {"unknown_sku", "missing_sku", "bad_amount", "empty_address"}


# --- contract: the real connector against the simulator -------------------------------------------------


def connector_for(s: AmazonSimulator, transport: httpx.AsyncBaseTransport, refresh: str = "Atzr|refresh-shop-a",
                  **settings: Any) -> AmazonConnector:
    (client_id, secret), = APPS.items()
    conn = AmazonConnector.from_config("amazon-a", {
        "base_url": BASE, "lwa_endpoint": f"{BASE}/auth/o2/token", "marketplace_ids": ["ATVPDKIKX0DER"],
        "shop": "amz-a"} | settings, {"client_id": client_id, "client_secret": secret,
                                      "refresh_token": refresh})
    for api in (*conn.apis.values(), conn.lwa_api):
        api.transport = transport
        api.retry = RetryPolicy(attempts=4, max_elapsed_s=10, initial_s=0.01, max_s=2.0)
    return conn


async def test_contract_pull_get_write_back():
    s = sim(orders_per_shop=12, spread_hours=2)
    transport = Validating(s.app)
    conn = connector_for(s, transport, page_size=5)
    spec = load_spec("amazon_order")
    until = datetime.now(UTC) - timedelta(minutes=3)
    pages = [page async for page in conn.pull_orders(until - timedelta(hours=3), until)]
    records = [r for page in pages for r in page]
    assert len(pages) == 3 and len(records) == 12
    assert {r.external_id for r in records} == {o["orderId"] for o in s.orders("amz-a")}
    for record in records:
        result = spec.apply(record.payload, None, {"shop": conn.shop_of(record.payload)})
        assert result.ok, result.errors
        assert result.value.status.value == "paid" and not result.value.receiver.protected
    listed = await conn.list_order_ids(until - timedelta(hours=3), until)
    assert sorted(i for i, _ in listed) == sorted(r.external_id for r in records)

    multi = s.make_order("amz-a", lines=2)
    record = await conn.get_order(multi)
    order = spec.apply(record.payload, None, {"shop": "amz-a"}).value
    first, second = (line.line_id for line in order.lines)
    sent = Shipment(order_key=order.key, carrier_code="ZTO", tracking_number="ZT100200300",
                    shipped_at=datetime.now(UTC))
    assert (await conn.push_shipment(multi, sent, line_ids=[first])).taken
    assert s.status(multi) == "PARTIALLY_SHIPPED"
    repeat = await conn.push_shipment(multi, sent, line_ids=[first])
    assert (repeat.taken, repeat.tracking_on_platform) == (False, ["ZT100200300"])
    rest = sent.model_copy(update={"tracking_number": "SF55500011", "carrier_code": "SF"})
    assert (await conn.push_shipment(multi, rest, line_ids=[second])).taken
    assert s.status(multi) == "SHIPPED"
    assert s.writebacks(multi) == [("ZT100200300", "Other", [first]), ("SF55500011", "SF Express", [second])]
    conflict = await conn.push_shipment(multi, rest.model_copy(update={"tracking_number": "YT999"}))
    assert conflict.conflicts_with("YT999")
    clear = await conn.shippable_receiver(record.payload)
    assert clear["name"] and clear["street"]
    assert {"searchOrders", "getOrder", "confirmShipment"} <= set(transport.operations)
    assert s.state()["token_exchanges"] == 1
    await conn.aclose()


async def test_contract_token_expiry_throttling_and_refusals():
    s = sim(orders_per_shop=3, usage_plans={"getOrder": (0.001, 1), "searchOrders": (5, 20),
                                            "confirmShipment": (2, 10)})
    transport = Validating(s.app)
    conn = connector_for(s, transport)
    order_id = s.orders("amz-a")[0]["orderId"]
    await conn.get_order(order_id)
    conn.plans["getOrder"].tokens = 5  # our bucket thinks there is room; Amazon's does not
    with pytest.raises(ThrottledError) as info:
        await conn.get_order(order_id)
    assert info.value.retry_after >= 100  # 1 / 0.001 from x-amzn-RateLimit-Limit, capped at 600
    s.expire_tokens()
    until = datetime.now(UTC) - timedelta(minutes=3)
    got = [r async for page in conn.pull_orders(until - timedelta(hours=7), until) for r in page]
    assert len(got) == 3 and s.state()["token_exchanges"] == 2  # refused once, exchanged again
    pending = s.make_order("amz-b", status="PENDING")
    other = connector_for(s, transport, refresh="Atzr|refresh-shop-b")  # another seller: its own buckets
    with pytest.raises(InvalidRequestError, match="not paid"):
        await other.push_shipment(pending, Shipment(order_key="k", carrier_code="SF", tracking_number="SF1",
                                                   shipped_at=datetime.now(UTC)))
    wrong = connector_for(s, transport)
    wrong.tokens.refresh_token = "Atzr|revoked"
    with pytest.raises(AuthError):
        await wrong.get_order(order_id)
