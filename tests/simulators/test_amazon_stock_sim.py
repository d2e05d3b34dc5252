"""The Amazon simulator's listings (getListingsItem / patchListingsItem) and the real connector's 'stock'
capability against it. Every listings exchange is validated against Amazon's official model
``listingsItems_2021-08-01.json`` (requests too, except where a test sends a wrong one on purpose)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.amazon import AmazonConnector
from connectors.base import ListingRef
from connectors.errors import AuthError, InvalidRequestError, ThrottledError
from connectors.http import RetryPolicy
from simulators.amazon import AmazonSimulator
from simulators.catalog import CATALOG

_spec = importlib.util.spec_from_file_location(
    "amazon_swagger", Path(__file__).resolve().parents[1] / "fixtures" / "amazon_swagger.py")
swagger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(swagger)
LISTINGS = swagger.model("listingsItems_2021-08-01.json")

APPS = {"amzn1.application-oa2-client.demo": "demo-client-secret"}
SHOPS = {"Atzr|refresh-shop-a": "amz-a", "Atzr|refresh-shop-b": "amz-b"}
BASE = "http://amazon.sim"
US = "ATVPDKIKX0DER"
SKU = "TD-SKU-0007"
#: room for the protocol tests' bursts (the documented 5/10 and 5/5 are checked in their own test)
ROOMY = {"getListingsItem": (100.0, 100), "patchListingsItem": (100.0, 100)}


class Validating(httpx.AsyncBaseTransport):
    """ASGI transport validating every listings exchange against the official model."""

    def __init__(self, app: Any, check_requests: bool = True) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.check_requests = check_requests
        self.operations: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.startswith("/listings/"):
            await response.aread()
            if self.check_requests:
                self.operations.append(LISTINGS.validate_request(request))
            body = response.json() if response.content else None
            LISTINGS.validate_response(request.method, request.url.path, response.status_code, body)
            assert response.headers["x-amzn-RequestId"]
        return response


def sim(**kwargs: Any) -> AmazonSimulator:
    return AmazonSimulator(APPS, SHOPS, **({"orders_per_shop": 1, "seed": 5} | kwargs))


async def token(http: httpx.AsyncClient, refresh: str = "Atzr|refresh-shop-a") -> str:
    (client_id, secret), = APPS.items()
    answer = await http.post("/auth/o2/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                     "client_id": client_id, "client_secret": secret})
    return answer.json()["access_token"]


def path(s: AmazonSimulator, sku: str = SKU, shop: str = "amz-a") -> str:
    return f"/listings/2021-08-01/items/{s.seller_id(shop)}/{sku}"


def patch_body(quantity: Any, op: str = "replace", product_type: str = "APPAREL", **entry: Any) -> dict[str, Any]:
    value = {"fulfillment_channel_code": "DEFAULT", "quantity": quantity, **entry}
    return {"productType": product_type,
            "patches": [{"op": op, "path": "/attributes/fulfillment_availability", "value": [value]}]}


# --- the simulator, spoken to directly -------------------------------------------------------------


async def test_every_catalogue_sku_is_a_listing_with_a_quantity() -> None:
    s = sim(usage_plans=ROOMY)
    async with httpx.AsyncClient(transport=Validating(s.app), base_url=BASE) as http:
        headers = {"x-amz-access-token": await token(http)}
        for entry in CATALOG:
            answer = await http.get(path(s, entry["sku"]), headers=headers, params={
                "marketplaceIds": US, "includedData": "summaries,fulfillmentAvailability,productTypes,attributes"})
            assert answer.status_code == 200 and answer.headers["x-amzn-RateLimit-Limit"] == "100"
            body = answer.json()
            (summary,) = body["summaries"]
            assert summary["marketplaceId"] == US and summary["asin"].startswith("B0") and summary["productType"]
            assert body["productTypes"] == [{"marketplaceId": US, "productType": summary["productType"]}]
            (available,) = body["fulfillmentAvailability"]
            assert available == {"fulfillmentChannelCode": "DEFAULT", "quantity": s.shown_stock(entry["sku"])}
            assert body["attributes"]["fulfillment_availability"] == [
                {"fulfillment_channel_code": "DEFAULT", "quantity": s.shown_stock(entry["sku"])}]
        default = await http.get(path(s), headers=headers, params={"marketplaceIds": US})
        assert set(default.json()) == {"sku", "summaries"}  # includedData defaults to summaries
        missing = await http.get(path(s, "TD-SKU-9999"), headers=headers, params={"marketplaceIds": US})
        assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "NOT_FOUND"
    assert s.shown_stock("TD-SKU-9999") is None and s.seller_id("amz-a") != s.seller_id("amz-b")


async def test_patch_validation_and_operations() -> None:
    s = sim(usage_plans=ROOMY)
    async with httpx.AsyncClient(transport=Validating(s.app, check_requests=False), base_url=BASE) as http:
        headers = {"x-amz-access-token": await token(http)}
        params = {"marketplaceIds": US}

        async def patch(body: Any, **extra: str) -> httpx.Response:
            return await http.patch(path(s), headers=headers, params=params | extra, json=body)

        assert (await patch({"patches": patch_body(1)["patches"]})).status_code == 400  # productType required
        assert (await patch({"productType": "APPAREL", "patches": []})).status_code == 400
        bad_op = patch_body(1)
        bad_op["patches"][0]["op"] = "move"
        assert (await patch(bad_op)).json()["errors"][0]["code"] == "InvalidInput"
        assert (await http.patch(path(s), headers=headers, json=patch_body(1))).status_code == 400  # marketplaceIds
        for wrong in (-1, 1.5, "3", True):
            answer = (await patch(patch_body(wrong))).json()
            assert answer["status"] == "INVALID" and answer["issues"][0]["severity"] == "ERROR"
            assert answer["issues"][0]["attributeNames"] == ["fulfillment_availability"]
        assert (await patch(patch_body(1, product_type="SHOES"))).json()["status"] == "INVALID"
        nested = patch_body(1)
        nested["patches"][0]["path"] = "/attributes/fulfillment_availability/0/quantity"
        assert (await patch(nested)).json()["status"] == "INVALID"
        before = s.shown_stock(SKU)
        preview = (await patch(patch_body(3), mode="VALIDATION_PREVIEW", includedData="identifiers,issues")).json()
        assert preview["status"] == "VALID" and preview["identifiers"][0]["asin"].startswith("B0")
        assert s.shown_stock(SKU) == before and s.stock_updates == []
        done = (await patch(patch_body(3, lead_time_to_ship_max_days=2))).json()
        assert done["status"] == "ACCEPTED" and done["submissionId"] and done["issues"] == []
        merged = (await patch(patch_body(9, op="merge"))).json()
        assert merged["status"] == "ACCEPTED" and s.shown_stock(SKU) == 9
        attributes = (await http.get(path(s), headers=headers, params=params | {"includedData": "attributes"})).json()
        assert attributes["attributes"]["fulfillment_availability"] == [
            {"fulfillment_channel_code": "DEFAULT", "quantity": 9, "lead_time_to_ship_max_days": 2}]  # kept
        await patch(patch_body(4))  # replace: the whole attribute
        assert [u[1:] for u in s.stock_updates] == [(SKU, 3), (SKU, 9), (SKU, 4)]
        unknown = (await http.patch(path(s, "TD-SKU-9999"), headers=headers, params=params,
                                    json=patch_body(1))).json()
        assert unknown["status"] == "INVALID"
        other_seller = await http.patch(path(s, shop="amz-b"), headers=headers, params=params, json=patch_body(1))
        assert other_seller.status_code == 403
    state = s.state()
    assert state["stock_writes"] == 3 and state["stock"]["amz-a"][SKU] == 4 and state["stock_refusals"] >= 7


async def test_sale_on_the_channel() -> None:
    s = sim()
    before, other = s.shown_stock(SKU), s.shown_stock(SKU, "amz-b")
    assert s.sell_on_channel(SKU, 2) == before - 2 == s.shown_stock(SKU)
    assert s.shown_stock(SKU, "amz-b") == other  # each seller has its own listings
    with pytest.raises(ValueError):
        s.sell_on_channel(SKU, 10_000)
    with pytest.raises(KeyError):
        s.sell_on_channel("TD-SKU-9999")


# --- the real connector against it -----------------------------------------------------------------


def connector_for(s: AmazonSimulator, transport: httpx.AsyncBaseTransport, refresh: str = "Atzr|refresh-shop-a",
                  **settings: Any) -> AmazonConnector:
    (client_id, secret), = APPS.items()
    conn = AmazonConnector.from_config("amazon-a", {
        "base_url": BASE, "lwa_endpoint": f"{BASE}/auth/o2/token", "marketplace_ids": [US],
        "seller_id": s.seller_id(SHOPS[refresh])} | settings,
        {"client_id": client_id, "client_secret": secret, "refresh_token": refresh})
    for api in (*conn.apis.values(), conn.lwa_api):
        api.transport = transport
        api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.01, max_s=1.0)
    return conn


async def test_contract_find_write_read_and_sale() -> None:
    s = sim()
    transport = Validating(s.app)
    conn = connector_for(s, transport)
    assert await conn.find_listing("TD-SKU-9999") is None
    listing = await conn.find_listing(SKU)
    assert listing is not None and listing.sku_id == SKU and listing.item_id.startswith("B0")
    assert listing.extra == {"marketplace_id": US, "product_type": "APPAREL"}
    assert await conn.get_stock(listing) == s.shown_stock(SKU)
    written = await conn.set_stock(listing, 25, key="push-1", previous=None)
    assert written.quantity == 25 and s.shown_stock(SKU) == 25 == await conn.get_stock(listing)
    s.sell_on_channel(SKU, 4)  # a sale on Amazon: no compare-and-set there, the next push is absolute
    assert await conn.get_stock(listing) == 21
    await conn.set_stock(listing, 18, key="push-2", previous=25)
    again = await conn.set_stock(listing, 18, key="push-2", previous=25)  # a retried activity: harmless
    assert again.quantity == 18 and s.shown_stock(SKU) == 18
    assert [u[1:] for u in s.stock_updates] == [(SKU, 25), (SKU, 18), (SKU, 18)]
    bare = await conn.set_stock(ListingRef(sku=SKU), 0, key="push-3")  # product type looked up first
    assert bare.quantity == 0 and s.shown_stock(SKU) == 0
    assert set(transport.operations) == {"getListingsItem", "patchListingsItem"}
    assert s.state()["stock_writes"] == 4 and s.state()["token_exchanges"] == 1
    await conn.aclose()


async def test_contract_refused_values_and_wrong_seller() -> None:
    s = sim()
    transport = Validating(s.app)
    conn = connector_for(s, transport)
    listing = await conn.find_listing(SKU)
    assert listing is not None
    with pytest.raises(InvalidRequestError, match="PRODUCT_TYPE_MISMATCH"):
        await conn.set_stock(listing.model_copy(update={"extra": {"product_type": "SHOES"}}), 1, key="k")
    wrong = connector_for(s, transport, seller_id=s.seller_id("amz-b"))  # another seller's id
    with pytest.raises(AuthError):
        await wrong.get_stock(listing)


async def test_documented_usage_plans_are_enforced() -> None:
    s = sim()
    assert (s.usage_plans["getListingsItem"], s.usage_plans["patchListingsItem"]) == ((5.0, 10), (5.0, 5))
    async with httpx.AsyncClient(transport=Validating(s.app, check_requests=False), base_url=BASE) as http:
        headers = {"x-amz-access-token": await token(http)}
        statuses = [(await http.patch(path(s), headers=headers, params={"marketplaceIds": US},
                                      json=patch_body(n))).status_code for n in range(7)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    assert s.state()["stock_throttled"] >= 1


async def test_contract_throttled_by_the_usage_plan() -> None:
    s = sim(usage_plans={"patchListingsItem": (0.001, 1), "getListingsItem": (5, 10)})
    conn = connector_for(s, Validating(s.app))
    listing = await conn.find_listing(SKU)
    assert listing is not None
    await conn.set_stock(listing, 5, key="k1")
    conn.plans["patchListingsItem"].tokens = 5  # our bucket thinks there is room; Amazon's does not
    with pytest.raises(ThrottledError) as info:
        await conn.set_stock(listing, 6, key="k2")
    assert info.value.retry_after >= 100  # 1 / 0.001 from x-amzn-RateLimit-Limit, capped at 600
    assert s.shown_stock(SKU) == 5
    state = s.state()
    assert state["stock_throttled"] == 1 and state["rate_limited"] == 1
