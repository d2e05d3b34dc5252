"""Amazon 'stock' capability (Listings Items API v2021-08-01) against a respx-mocked SP-API.

Every listings request the connector sends, and every answer the fake gives, is validated against
Amazon's official model ``listingsItems_2021-08-01.json`` in ``../shared/specs/amazon/``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from connectors.amazon import AmazonConnector
from connectors.amazon.stock import LISTINGS_USAGE_PLANS
from connectors.base import ListingRef
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy

_spec = importlib.util.spec_from_file_location(
    "amazon_swagger", Path(__file__).resolve().parents[1] / "fixtures" / "amazon_swagger.py")
swagger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(swagger)
LISTINGS = swagger.model("listingsItems_2021-08-01.json")

API = "https://sp.test"
LWA = "https://lwa.test/auth/o2/token"
SELLER = "A2EUQ1WTGCTBG2"
US = "ATVPDKIKX0DER"
PATH = f"/listings/2021-08-01/items/{SELLER}/TD-SKU-0001"


def make(**overrides: Any) -> AmazonConnector:
    settings = {"base_url": API, "lwa_endpoint": LWA, "marketplace_ids": [US], "seller_id": SELLER} | overrides
    conn = AmazonConnector.from_config("amazon-us", settings, {"client_id": "amzn1.application-oa2-client.1",
                                                               "client_secret": "secret-0042",
                                                               "refresh_token": "Atzr|refresh"})
    for api in (*conn.apis.values(), conn.lwa_api):
        api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=1.0)
    return conn


def item(sku: str = "TD-SKU-0001", **datasets: Any) -> dict[str, Any]:
    return {"sku": sku, **datasets}


SUMMARY = {"marketplaceId": US, "asin": "B0CAFE1234", "productType": "APPAREL", "conditionType": "new_new",
           "status": ["BUYABLE"], "itemName": "T-shirt", "createdDate": "2025-06-01T00:00:00Z",
           "lastUpdatedDate": "2025-06-18T00:00:00Z"}


class FakeListings:
    """Model-validated getListingsItem / patchListingsItem; answers queued per operation."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.operations: list[str] = []
        self.answers: dict[str, list[httpx.Response]] = {"getListingsItem": [], "patchListingsItem": []}

    def lwa(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "Atza|token", "token_type": "bearer", "expires_in": 3600})

    def sp(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        operation = LISTINGS.validate_request(request)
        self.operations.append(operation)
        assert request.headers["x-amz-access-token"] == "Atza|token"
        response = self.answers[operation].pop(0)
        response.headers.setdefault("x-amzn-RateLimit-Limit", "5")
        body = response.json() if response.content else None
        LISTINGS.validate_response(request.method, request.url.path, response.status_code, body)
        return response

    def body(self, index: int = -1) -> Any:
        return json.loads(self.calls[index].content)


@pytest.fixture
def amazon():
    fake = FakeListings()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(LWA).mock(side_effect=fake.lwa)
        mock.route(host="sp.test").mock(side_effect=fake.sp)
        yield fake


def listing() -> ListingRef:
    return ListingRef(sku="TD-SKU-0001", item_id="B0CAFE1234", sku_id="TD-SKU-0001",
                      extra={"product_type": "APPAREL", "marketplace_id": US})


# --- find_listing ----------------------------------------------------------------------------------


async def test_find_listing_reads_summaries(amazon: FakeListings) -> None:
    amazon.answers["getListingsItem"].append(httpx.Response(200, json=item(summaries=[SUMMARY])))
    found = await make().find_listing("TD-SKU-0001")
    assert found == ListingRef(sku="TD-SKU-0001", item_id="B0CAFE1234", sku_id="TD-SKU-0001",
                               extra={"marketplace_id": US, "product_type": "APPAREL"})
    (call,) = amazon.calls
    assert (call.method, call.url.path) == ("GET", PATH)
    assert dict(call.url.params) == {"marketplaceIds": US, "includedData": "summaries"}
    assert amazon.operations == ["getListingsItem"]


async def test_find_listing_is_none_on_404_and_url_encodes_the_sku(amazon: FakeListings) -> None:
    amazon.answers["getListingsItem"].append(httpx.Response(404, json={"errors": [
        {"code": "NOT_FOUND", "message": "SKU 'TD SKU+1' not found in marketplace ATVPDKIKX0DER"}]}))
    assert await make().find_listing("TD SKU+1") is None
    assert amazon.calls[0].url.raw_path.decode().startswith(f"/listings/2021-08-01/items/{SELLER}/TD%20SKU%2B1?")


async def test_seller_id_is_required_for_stock(amazon: FakeListings) -> None:
    with pytest.raises(ConfigurationError, match="seller_id"):
        await make(seller_id="").find_listing("TD-SKU-0001")
    assert amazon.calls == []


# --- set_stock -------------------------------------------------------------------------------------


async def test_set_stock_patches_fulfillment_availability(amazon: FakeListings) -> None:
    amazon.answers["patchListingsItem"].append(httpx.Response(200, json={
        "sku": "TD-SKU-0001", "status": "ACCEPTED", "submissionId": "f1dc2914-75dd-11ea-bc55-0242ac130003",
        "issues": []}))
    written = await make().set_stock(listing(), 17, key="hub-key", previous=3)
    assert (written.quantity, written.previous) == (17, None)
    (call,) = amazon.calls
    assert (call.method, call.url.path) == ("PATCH", PATH)
    assert dict(call.url.params) == {"marketplaceIds": US, "includedData": "issues"}
    assert amazon.body() == {"productType": "APPAREL", "patches": [
        {"op": "replace", "path": "/attributes/fulfillment_availability",
         "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 17}]}]}
    assert "hub-key" not in call.content.decode() and "hub-key" not in str(call.url)  # SP-API takes no key


async def test_invalid_submission_is_permanent_with_its_issues(amazon: FakeListings) -> None:
    amazon.answers["patchListingsItem"].append(httpx.Response(200, json={
        "sku": "TD-SKU-0001", "status": "INVALID", "submissionId": "sub-2",
        "issues": [{"code": "90220", "message": "'quantity' is invalid.", "severity": "ERROR",
                    "categories": ["INVALID_ATTRIBUTE"], "attributeNames": ["fulfillment_availability"]},
                   {"code": "18155", "message": "just a warning", "severity": "WARNING", "categories": []}]}))
    with pytest.raises(InvalidRequestError) as info:
        await make().set_stock(listing(), 17, key="k")
    assert info.value.code == "90220" and not info.value.retryable
    assert info.value.details["issues"] == ["90220", "18155"] and "is invalid" in str(info.value)


async def test_missing_product_type_is_looked_up_first(amazon: FakeListings) -> None:
    amazon.answers["getListingsItem"].append(httpx.Response(200, json=item(
        summaries=[SUMMARY], productTypes=[{"marketplaceId": US, "productType": "APPAREL"}])))
    amazon.answers["patchListingsItem"].append(httpx.Response(200, json={
        "sku": "TD-SKU-0001", "status": "ACCEPTED", "submissionId": "sub-3"}))
    await make().set_stock(ListingRef(sku="TD-SKU-0001"), 0, key="k")
    assert amazon.operations == ["getListingsItem", "patchListingsItem"]
    assert amazon.calls[0].url.params["includedData"] == "summaries,productTypes"
    assert amazon.body()["productType"] == "APPAREL"
    assert amazon.body()["patches"][0]["value"] == [{"fulfillment_channel_code": "DEFAULT", "quantity": 0}]


async def test_bad_quantity_is_refused_before_any_call(amazon: FakeListings) -> None:
    for bad in (-1, True, 2.0):
        with pytest.raises(InvalidRequestError):
            await make().set_stock(listing(), bad, key="k")  # type: ignore[arg-type]
    assert amazon.calls == []


# --- errors and usage plans ------------------------------------------------------------------------


async def test_429_is_throttled_at_the_reported_rate(amazon: FakeListings) -> None:
    amazon.answers["patchListingsItem"].append(httpx.Response(429, headers={"x-amzn-RateLimit-Limit": "0.005"},
                                                              json={"errors": [{"code": "QuotaExceeded",
                                                                                "message": "quota"}]}))
    conn = make()
    with pytest.raises(ThrottledError) as info:
        await conn.set_stock(listing(), 5, key="k")
    assert info.value.code == "QuotaExceeded" and info.value.retry_after == 200.0
    assert conn.plans["patchListingsItem"].rate == 0.005 and conn.plans["patchListingsItem"].tokens <= 0


async def test_usage_plans_are_the_documented_ones_and_client_side(amazon: FakeListings) -> None:
    assert LISTINGS_USAGE_PLANS == {"getListingsItem": (5.0, 10), "patchListingsItem": (5.0, 5)}
    conn = make()
    for _ in range(5):
        amazon.answers["patchListingsItem"].append(httpx.Response(
            200, json={"sku": "TD-SKU-0001", "status": "ACCEPTED", "submissionId": "s"},
            headers={"x-amzn-RateLimit-Limit": "0.01"}))
        await conn.set_stock(listing(), 5, key="k")
    with pytest.raises(ThrottledError) as info:  # burst 5 spent, refilling at the reported 0.01/s
        await conn.set_stock(listing(), 5, key="k")
    assert info.value.code == "usage_plan" and len(amazon.calls) == 5
    assert conn.apis["patchListingsItem"].retry == conn.apis["searchOrders"].retry


@pytest.mark.parametrize(("status", "code", "error"), [
    (400, "InvalidInput", InvalidRequestError),
    (403, "Forbidden", AuthError),
    (500, "InternalFailure", TransientError),
])
async def test_error_lists_map_to_the_taxonomy(amazon: FakeListings, status: int, code: str,
                                               error: type[Exception]) -> None:
    answers = [httpx.Response(status, json={"errors": [{"code": code, "message": "m"}]}) for _ in range(3)]
    amazon.answers["getListingsItem"].extend(answers)
    with pytest.raises(error):
        await make().get_stock(listing())


# --- get_stock -------------------------------------------------------------------------------------


async def test_get_stock_reads_the_default_channel(amazon: FakeListings) -> None:
    amazon.answers["getListingsItem"].append(httpx.Response(200, json=item(fulfillmentAvailability=[
        {"fulfillmentChannelCode": "AMAZON_NA", "quantity": 400},
        {"fulfillmentChannelCode": "DEFAULT", "quantity": 12}])))
    assert await make().get_stock(listing()) == 12
    assert dict(amazon.calls[0].url.params) == {"marketplaceIds": US, "includedData": "fulfillmentAvailability"}
    amazon.answers["getListingsItem"].append(httpx.Response(200, json=item(fulfillmentAvailability=[
        {"fulfillmentChannelCode": "AMAZON_NA", "quantity": 400}])))
    assert await make().get_stock(listing()) == 0  # no merchant-fulfilled availability
    amazon.answers["getListingsItem"].append(httpx.Response(404, json={"errors": [{"code": "NOT_FOUND",
                                                                                  "message": "gone"}]}))
    with pytest.raises(NotFoundError):
        await make().get_stock(listing())


def test_stock_capability_and_seller_setting() -> None:
    conn = make()
    assert "stock" in conn.capabilities and conn.settings.seller_id == SELLER
    assert make(seller_id="").describe()["settings"]["seller_id"] == ""
