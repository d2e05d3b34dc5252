"""Tests of the Shopify GraphQL Admin simulator, and the contract test of the real connector against it.

Webhook signatures are checked here with hashlib/hmac/base64 written out by hand (base64 of
HMAC-SHA256 over the raw body, keyed with the client secret), not with either side's helper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canonical import Shipment, ShipmentLine
from connectors.shopify import ShopifyConnector
from connectors.shopify.queries import ORDER_QUERY
from mappings import load_spec
from simulators.faults import FaultConfig
from simulators.shopify import ShopifySimulator

TOKEN_A, TOKEN_B = "shpat_a", "shpat_b"
SHOP_A, SHOP_B = "tongdao-a.myshopify.com", "tongdao-b.myshopify.com"
SECRET = "shpss_test"
NOW = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)
URL = "http://sim.test/admin/api/2025-10/graphql.json"


def make_sim(**overrides: Any) -> ShopifySimulator:
    options: dict[str, Any] = {"stores": {TOKEN_A: SHOP_A, TOKEN_B: SHOP_B}, "client_secret": SECRET,
                               "orders_per_shop": 12, "malformed_per_shop": 4, "seed": 5, "now": NOW}
    return ShopifySimulator(**(options | overrides))


async def gql(sim: ShopifySimulator, query: str, variables: dict[str, Any] | None = None,
              token: str = TOKEN_A) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as client:
        return await client.post(URL, json={"query": query, "variables": variables or {}},
                                 headers={"X-Shopify-Access-Token": token})


LIST = ("query L($first: Int!, $after: String, $query: String) { orders(first: $first, after: $after, "
        "query: $query, sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } nodes { legacyResourceId "
        "updatedAt } } }")


async def test_token_is_required_and_answers_carry_cost() -> None:
    sim = make_sim()
    refused = await gql(sim, "{ shop { name } }", token="wrong")
    assert refused.status_code == 401 and "Invalid API key or access token" in refused.json()["errors"]
    answer = (await gql(sim, "{ shop { name myshopifyDomain } }")).json()
    assert answer["data"] == {"shop": {"name": "tongdao-a", "myshopifyDomain": SHOP_A}}
    status = answer["extensions"]["cost"]["throttleStatus"]
    assert answer["extensions"]["cost"]["requestedQueryCost"] == 1
    assert (status["maximumAvailable"], status["restoreRate"]) == (2000.0, 100.0)


async def test_unknown_field_missing_first_and_max_cost_are_refused() -> None:
    sim = make_sim()
    gid = sim.orders(SHOP_A)[0]["id"]
    unknown = (await gql(sim, '{ order(id: "' + gid + '") { id tid } }')).json()
    assert unknown["errors"][0]["extensions"]["code"] == "undefinedField"
    no_first = (await gql(sim, "{ orders { nodes { id } } }")).json()
    assert no_first["errors"][0]["extensions"]["code"] == "argumentMissing"
    big = (await gql(sim, "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }")).json()
    assert big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_cost_bucket_throttles_and_refills() -> None:
    sim = make_sim(bucket_size=1000, restore_rate=50)
    gid = sim.orders(SHOP_A)[0]["id"]
    first = (await gql(sim, ORDER_QUERY, {"id": gid})).json()
    assert first["extensions"]["cost"]["requestedQueryCost"] == 795  # what connectors/shopify/queries.py costs
    sim._buckets[TOKEN_A].level = 100  # drain the bucket
    throttled = (await gql(sim, ORDER_QUERY, {"id": gid})).json()
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert throttled["extensions"]["cost"]["actualQueryCost"] is None
    assert sim.state()["throttled"] == 1


async def test_paging_filters_and_store_isolation() -> None:
    sim = make_sim(orders_per_shop=25, malformed_per_shop=0)
    seen, after = [], None
    query = "updated_at:>='2025-06-17T00:00:00Z' updated_at:<'2025-06-18T05:00:00Z'"
    while True:
        page = (await gql(sim, LIST, {"first": 10, "after": after, "query": query})).json()["data"]["orders"]
        seen += [n["legacyResourceId"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 25
    times = [o["updatedAt"] for o in sim.orders(SHOP_A)]
    assert sorted(seen) == sorted(o["legacyResourceId"] for o in sim.orders(SHOP_A))
    cut = sorted(times)[10]
    narrow = (await gql(sim, LIST, {"first": 250, "query": f"updated_at:<'{cut}'"})).json()["data"]["orders"]
    assert len(narrow["nodes"]) == sum(1 for t in times if t < cut)
    other = sim.orders(SHOP_B)[0]["id"]
    assert (await gql(sim, '{ order(id: "' + other + '") { id } }')).json()["data"]["order"] is None


def test_seeded_data_malformed_and_reproducible() -> None:
    a, b = make_sim(), make_sim()
    assert a.orders(SHOP_A) == b.orders(SHOP_A)
    state = a.state()
    assert (state["orders_created"], state["orders_malformed"]) == (24, 8)
    spec = load_spec("shopify_order")
    errors = [spec.apply(a.order(oid), context={"shop": SHOP_A}).ok for oid in state["malformed_tids"]]
    assert errors.count(False) == 4  # missing_sku and bad_amount fail mapping; address/mobile fail validation


def test_lifecycle_and_signed_webhooks() -> None:
    sim = make_sim()
    paid, unpaid = sim.add_orders(SHOP_A, 2, financial="PENDING", lines=2)
    sim.pay(paid)
    assert sim.status(paid) == ("PAID", "UNFULFILLED", False)
    sim.cancel(unpaid)
    assert sim.status(unpaid) == ("VOIDED", "UNFULFILLED", True)
    line = sim.order(paid)["lineItems"]["nodes"][0]["id"]
    sim.refund_line(paid, line)
    assert sim.status(paid)[0] == "PARTIALLY_REFUNDED"
    assert sim.order(paid)["lineItems"]["nodes"][0]["currentQuantity"] == 0
    hooks = sim.webhooks()
    assert [h["topic"] for h in hooks] == ["orders/create", "orders/create", "orders/paid", "orders/updated",
                                           "orders/cancelled", "orders/updated", "refunds/create", "orders/updated"]
    for h in hooks:
        expected = base64.b64encode(hmac.new(SECRET.encode(), h["body"], hashlib.sha256).digest()).decode()
        assert h["headers"]["X-Shopify-Hmac-Sha256"] == expected
    assert json.loads(hooks[6]["body"])["order_id"] == int(paid)
    with pytest.raises(ValueError):
        sim.pay(paid)


async def test_fulfillment_create_refuses_closed_fulfillment_orders() -> None:
    sim = make_sim()
    (oid,) = sim.add_orders(SHOP_A, 1)
    sim.cancel(oid)
    fo = sim._orders[oid].fulfillment_orders[0]["id"]
    mutation = ("mutation F($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { fulfillment { id } "
                "userErrors { field message } } }")
    answer = (await gql(sim, mutation, {"f": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo}],
                                              "trackingInfo": {"company": "SF Express", "number": "SF1"}}})).json()
    assert answer["data"]["fulfillmentCreate"]["fulfillment"] is None
    assert "unfulfillable status" in answer["data"]["fulfillmentCreate"]["userErrors"][0]["message"]


# --- contract: the real connector against the simulator --------------------------------------------


def connector(sim: ShopifySimulator) -> ShopifyConnector:
    conn = ShopifyConnector.from_config("shop-a", {"base_url": "https://tongdao-a.myshopify.com", "page_size": 5},
                                        {"access_token": TOKEN_A, "client_secret": SECRET})
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    return conn


async def test_contract_pull_get_split_write_back_and_webhook() -> None:
    sim = make_sim(faults=FaultConfig(duplicate_rate=0.3, seed=11))
    conn = connector(sim)
    pulled = [r async for page in conn.pull_orders(NOW - timedelta(days=1), NOW + timedelta(seconds=1)) for r in page]
    assert sorted(r.external_id for r in pulled) == sorted(o["legacyResourceId"] for o in sim.orders(SHOP_A))
    assert len({r.external_id for r in pulled}) == len(pulled)  # duplicated listing nodes handed over once
    spec = load_spec("shopify_order")
    (oid,) = sim.add_orders(SHOP_A, 1, lines=2)
    record = await conn.get_order(oid)
    order = spec.apply(record.payload, context={"shop": conn.shop_of(record.payload)}).value
    assert order.status.value == "paid" and len(order.lines) == 2
    first, second = order.lines
    one = Shipment(order_key=order.key, carrier_code="ZTO", tracking_number="ZT1000000001", shipped_at=NOW,
                   lines=[ShipmentLine(sku=first.sku, quantity=first.quantity, line_id=first.line_id)], final=False)
    assert (await conn.push_shipment(oid, one, [first.line_id])).taken
    assert sim.status(oid)[1] == "PARTIALLY_FULFILLED"
    repeat = await conn.push_shipment(oid, one, [first.line_id])
    assert (repeat.taken, repeat.tracking_on_platform) == (False, ["ZT1000000001"])
    two = Shipment(order_key=order.key, carrier_code="SF", tracking_number="SF2000000002", shipped_at=NOW,
                   lines=[ShipmentLine(sku=second.sku, quantity=second.quantity, line_id=second.line_id)])
    assert (await conn.push_shipment(oid, two, [second.line_id])).taken
    assert sim.writebacks(oid) == [("ZT1000000001", "ZTO Express", [first.line_id.rsplit("/", 1)[-1]]),
                                   ("SF2000000002", "SF Express", [second.line_id.rsplit("/", 1)[-1]])]
    assert sim.status(oid)[1] == "FULFILLED" and sim.state()["shipped_count"] == 1
    again = spec.apply((await conn.get_order(oid)).payload, context={"shop": SHOP_A}).value
    assert again.status.value == "shipped"
    hook = next(h for h in sim.webhooks() if h["topic"] == "orders/fulfilled")
    result = await conn.handle_push(hook["headers"], {}, hook["body"])
    assert result.events[0]["external_id"] == oid and result.events[0]["event_id"]
    assert (await conn.handle_push(hook["headers"], {}, hook["body"])).events == []
