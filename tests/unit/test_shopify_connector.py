"""Shopify connector against a respx-mocked GraphQL Admin endpoint.

Webhook HMACs are recomputed here with hashlib/hmac/base64 from the documented recipe (base64 of
HMAC-SHA256 over the raw body keyed with the client secret), never with the connector's helper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from canonical import Shipment, ShipmentLine
from connectors.errors import AuthError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy
from connectors.shopify import ShopifyConnector, updated_query, verify_webhook, webhook_hmac

BASE = "https://tongdao-a.myshopify.com"
ENDPOINT = f"{BASE}/admin/api/2025-10/graphql.json"
TOKEN = "shpat_0123456789abcdef"
SECRET = "client-secret-42"
NOW = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)


def doc_hmac(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def cost(requested: int = 10, available: float = 1990.0, rate: float = 100.0) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": requested,
                     "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available,
                                        "restoreRate": rate}}}


def make(**settings: Any) -> ShopifyConnector:
    conn = ShopifyConnector.from_config("shop-a", {"base_url": BASE, "api_version": "2025-10"} | settings,
                                        {"access_token": TOKEN, "client_secret": SECRET})
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2.0)
    return conn


class FakeShopify:
    """Checks the endpoint and token, then answers by operation name via ``handlers``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Shopify-Access-Token"] == TOKEN
        assert request.headers["content-type"].startswith("application/json")
        body = json.loads(request.content)
        operation = body["query"].split("(")[0].split("{")[0].split()[-1]
        self.calls.append((operation, body["variables"]))
        answer = self.handlers[operation](body["variables"])
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer if "errors" in answer else {"data": answer, "extensions": cost()})

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


@pytest.fixture
def shopify():
    with respx.mock(assert_all_called=False) as mock:
        fake = FakeShopify()
        mock.post(ENDPOINT).mock(side_effect=fake)
        yield fake


def order(n: int, updated: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"gid://shopify/Order/{n}", "legacyResourceId": str(n), "updatedAt": updated,
            "lineItems": {"pageInfo": {"hasNextPage": False}, "nodes": []}, **extra}


# --- webhooks ------------------------------------------------------------------------------------


def test_webhook_hmac_known_answer_from_the_official_sdk() -> None:
    # Shopify/shopify-api-js packages/shopify-api/lib/webhooks/__tests__/validate.test.ts: apiSecretKey
    # 'test_secret_key' (lib/__tests__/test-config.ts), rawBody '{"foo": "bar"}'
    expected = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
    assert webhook_hmac(b'{"foo": "bar"}', "test_secret_key") == expected
    assert doc_hmac(b'{"foo": "bar"}', "test_secret_key") == expected
    assert verify_webhook(b'{"foo": "bar"}', "test_secret_key", expected)
    assert not verify_webhook(b'{"foo": "baz"}', "test_secret_key", expected)
    assert not verify_webhook(b'{"foo": "bar"}', "test_secret_key", "not base64 !!")


def hook(topic: str, payload: dict[str, Any], webhook_id: str = "wh-1", event_id: str = "ev-1",
         key: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": doc_hmac(body, key),
               "X-Shopify-Shop-Domain": "tongdao-a.myshopify.com", "X-Shopify-Webhook-Id": webhook_id,
               "X-Shopify-Event-Id": event_id, "X-Shopify-API-Version": "2025-10"}
    return headers, body


async def test_webhook_order_changed_forged_and_redelivered() -> None:
    conn = make()
    headers, body = hook("orders/updated", {"id": 450789469, "updated_at": "2025-06-18T04:00:00Z"})
    result = await conn.handle_push(headers, {}, body)
    assert result.status_code == 200
    assert result.events == [{"type": "order_changed", "external_id": "450789469", "event_id": "ev-1",
                              "record": None, "topic": "orders/updated",
                              "shop_domain": "tongdao-a.myshopify.com"}]
    again = await conn.handle_push(headers, {}, body)  # a redelivery: same webhook id
    assert again.status_code == 200 and again.events == []
    forged_headers, forged = hook("orders/updated", {"id": 1}, webhook_id="wh-9", event_id="ev-9", key="wrong")
    assert (await conn.handle_push(forged_headers, {}, forged)).status_code == 401
    tampered = dict(headers, **{"X-Shopify-Webhook-Id": "wh-2", "X-Shopify-Event-Id": "ev-2"})
    assert (await conn.handle_push(tampered, {}, body.replace(b"450789469", b"450789468"))).status_code == 401


async def test_refund_webhook_names_the_order_and_other_topics_are_ignored() -> None:
    conn = make()
    headers, body = hook("refunds/create", {"id": 509562969, "order_id": 450789469}, "wh-3", "ev-3")
    assert (await conn.handle_push(headers, {}, body)).events[0]["external_id"] == "450789469"
    headers, body = hook("products/update", {"id": 7}, "wh-4", "ev-4")
    result = await conn.handle_push(headers, {}, body)
    assert result.status_code == 200 and result.events == []


# --- orders --------------------------------------------------------------------------------------


def test_updated_query_uses_quoted_utc_times() -> None:
    since = datetime(2025, 6, 18, 12, 0, 0, 900000, tzinfo=UTC)
    assert updated_query(since, since + timedelta(hours=1)) == (
        "updated_at:>='2025-06-18T12:00:00Z' updated_at:<'2025-06-18T13:00:00Z'")


async def test_pull_walks_cursor_pages_and_windows(shopify: FakeShopify) -> None:
    pages = {None: ([order(1, "2025-06-18T00:10:00Z"), order(2, "2025-06-18T00:20:00Z")], "c1"),
             "c1": ([order(2, "2025-06-18T00:20:00Z"), order(3, "2025-06-18T00:50:00Z")], None)}
    second_window = [order(4, "2025-06-18T01:05:00Z")]

    def listing(variables: dict[str, Any]) -> dict[str, Any]:
        if variables["query"].startswith("updated_at:>='2025-06-18T01:00:00Z'"):
            nodes, cursor = second_window, None
        else:
            nodes, cursor = pages[variables["after"]]
        return {"orders": {"pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor}, "nodes": nodes}}

    shopify.handlers["OrdersPage"] = listing
    times = {"1": "2025-06-18T00:10:00Z", "2": "2025-06-18T00:20:00Z", "3": "2025-06-18T00:50:00Z",
             "4": "2025-06-18T01:05:00Z"}
    shopify.handlers["Order"] = lambda v: {"order": order(int(v["id"].rsplit("/", 1)[-1]),
                                                          times[v["id"].rsplit("/", 1)[-1]])}
    conn = make(max_window_hours=1, page_size=2)
    batches = [[r.external_id for r in page] async for page in conn.pull_orders(
        datetime(2025, 6, 18, 0, 0, tzinfo=UTC), datetime(2025, 6, 18, 2, 0, tzinfo=UTC))]
    assert batches == [["1", "2"], ["3"], ["4"]]  # order 2 repeated on page 2: handed over once
    queries = [v["query"] for op, v in shopify.calls if op == "OrdersPage"]
    assert queries == ["updated_at:>='2025-06-18T00:00:00Z' updated_at:<'2025-06-18T01:00:00Z'"] * 2 + [
        "updated_at:>='2025-06-18T01:00:00Z' updated_at:<'2025-06-18T02:00:00Z'"]
    assert [v["after"] for op, v in shopify.calls if op == "OrdersPage"] == [None, "c1", None]
    assert all(v["first"] == 2 for op, v in shopify.calls if op == "OrdersPage")


async def test_get_order_not_found_and_auth_error(shopify: FakeShopify) -> None:
    shopify.handlers["Order"] = lambda v: {"order": None}
    conn = make()
    with pytest.raises(NotFoundError):
        await conn.get_order("450789469")
    with pytest.raises(InvalidRequestError):
        await conn.get_order("not-an-id")
    refusal = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    shopify.handlers["Order"] = lambda v: httpx.Response(401, json=refusal)
    with pytest.raises(AuthError):
        await conn.get_order("450789469")


async def test_throttled_short_wait_is_retried_long_wait_goes_to_temporal(shopify: FakeShopify) -> None:
    answers = iter([
        {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
         "extensions": cost(requested=800, available=750, rate=100)},  # 0.5 s: waited out here
    ])

    def once_throttled(variables: dict[str, Any]) -> Any:
        return next(answers, {"order": order(7, "2025-06-18T00:00:00Z")})

    shopify.handlers["Order"] = once_throttled
    conn = make()
    assert (await conn.get_order("7")).external_id == "7"
    assert shopify.ops() == ["Order", "Order"]
    shopify.handlers["Order"] = lambda v: {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                                           "extensions": cost(requested=800, available=0, rate=50)}
    with pytest.raises(ThrottledError) as caught:
        await make().get_order("7")
    assert caught.value.retry_after == pytest.approx(16.0)


# --- write-back ----------------------------------------------------------------------------------


def state(fulfillments: list[dict[str, Any]] | None = None, remaining: tuple[int, int] = (2, 1),
          cancelled: bool = False) -> dict[str, Any]:
    items = [{"id": f"gid://shopify/FulfillmentOrderLineItem/{90 + i}", "remainingQuantity": q, "totalQuantity": 2,
              "lineItem": {"id": f"gid://shopify/LineItem/{466157049 + i}"}} for i, q in enumerate(remaining)]
    return {"order": {"id": "gid://shopify/Order/450789469",
                      "cancelledAt": "2025-06-18T03:00:00Z" if cancelled else None,
                      "displayFulfillmentStatus": "UNFULFILLED", "fulfillments": fulfillments or [],
                      "fulfillmentOrders": {"nodes": [{"id": "gid://shopify/FulfillmentOrder/77", "status": "OPEN",
                                                       "assignedLocation": {"location": {"id": "gid://shopify/Location/1"}},
                                                       "lineItems": {"nodes": items}}]}}}


def shipment(number: str = "SF1234567890", carrier: str = "SF", lines: list[ShipmentLine] | None = None) -> Shipment:
    return Shipment(order_key="shopify:a:450789469", carrier_code=carrier, tracking_number=number, shipped_at=NOW,
                    lines=lines or [])


async def test_whole_order_write_back_then_idempotent_repeat(shopify: FakeShopify) -> None:
    created: list[dict[str, Any]] = []
    shopify.handlers["FulfillmentState"] = lambda v: state(
        [{"id": "f1", "status": "SUCCESS", "trackingInfo": [{"number": c["trackingInfo"]["number"]}]}
         for c in created], remaining=(0, 0) if created else (2, 1))
    shopify.handlers["FulfillmentCreate"] = lambda v: created.append(v["fulfillment"]) or {
        "fulfillmentCreate": {"fulfillment": {"id": "f1"}, "userErrors": []}}
    conn = make()
    first = await conn.push_shipment("450789469", shipment())
    assert first.taken is True
    assert created == [{"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/77"}],
                        "trackingInfo": {"company": "SF Express", "number": "SF1234567890"},
                        "notifyCustomer": False}]
    again = await conn.push_shipment("450789469", shipment())
    assert (again.taken, again.tracking_on_platform) == (False, ["SF1234567890"])
    assert shopify.ops().count("FulfillmentCreate") == 1
    other = await conn.push_shipment("450789469", shipment("YT0000000001", "YTO"))
    assert other.conflicts_with("YT0000000001")  # lines already fulfilled under another number: a conflict


async def test_split_write_back_names_only_its_lines_and_carriers_override(shopify: FakeShopify) -> None:
    created: list[dict[str, Any]] = []
    shopify.handlers["FulfillmentState"] = lambda v: state()
    shopify.handlers["FulfillmentCreate"] = lambda v: created.append(v["fulfillment"]) or {
        "fulfillmentCreate": {"fulfillment": {"id": "f2"}, "userErrors": []}}
    conn = make(carriers={"ZTO": "ZTO Express (CN)"}, notify_customer=True)
    package = shipment("ZT123456", "ZTO", [ShipmentLine(sku="TD-SKU-0002", quantity=1, line_id="466157050")])
    assert (await conn.push_shipment("450789469", package, ["466157050"])).taken
    assert created == [{"lineItemsByFulfillmentOrder": [{
        "fulfillmentOrderId": "gid://shopify/FulfillmentOrder/77",
        "fulfillmentOrderLineItems": [{"id": "gid://shopify/FulfillmentOrderLineItem/91", "quantity": 1}]}],
        "trackingInfo": {"company": "ZTO Express (CN)", "number": "ZT123456"}, "notifyCustomer": True}]


async def test_cancelled_order_and_user_errors_are_refused(shopify: FakeShopify) -> None:
    shopify.handlers["FulfillmentState"] = lambda v: state(cancelled=True)
    with pytest.raises(InvalidRequestError, match="cancelled"):
        await make().push_shipment("450789469", shipment())
    shopify.handlers["FulfillmentState"] = lambda v: state()
    shopify.handlers["FulfillmentCreate"] = lambda v: {"fulfillmentCreate": {"fulfillment": None, "userErrors": [
        {"field": ["fulfillment"], "message": "Invalid fulfillment order line item quantity requested."}]}}
    with pytest.raises(InvalidRequestError, match="quantity"):
        await make().push_shipment("450789469", shipment())
