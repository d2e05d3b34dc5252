"""Amazon SP-API connector against a respx-mocked SP-API and Login with Amazon.

Every request the connector sends and every answer the fake gives is validated against Amazon's
official Swagger 2.0 models in ``../shared/specs/amazon/`` (``tests/fixtures/amazon_swagger.py``):
searchOrders/getOrder against ``orders_2026-01-01.json``, confirmShipment against ``ordersV0.json``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from canonical import Shipment, ShipmentLine
from connectors.amazon import AmazonConnector, format_time, package_reference_id
from connectors.amazon.connector import CARRIERS, INCLUDED_DATA, USAGE_PLANS
from connectors.base import PushReceiver, ReceiverSource
from connectors.errors import AuthError, ConfigurationError, InvalidRequestError, NotFoundError, ThrottledError
from connectors.http import RetryPolicy

_spec = importlib.util.spec_from_file_location(
    "amazon_swagger", Path(__file__).resolve().parents[1] / "fixtures" / "amazon_swagger.py")
swagger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(swagger)

API = "https://sp.test"
LWA = "https://lwa.test/auth/o2/token"
CLIENT_ID = "amzn1.application-oa2-client.0123456789abcdef"
CLIENT_SECRET = "amzn1.oa2-cs.v1.client-secret-0042"
REFRESH = "Atzr|IwEBIrefresh-token-of-the-seller"
US = "ATVPDKIKX0DER"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def make_connector(**overrides: Any) -> AmazonConnector:
    settings = {"base_url": API, "lwa_endpoint": LWA, "marketplace_ids": [US], "shop": "amz-us"} | overrides
    secrets = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH}
    conn = AmazonConnector.from_config("amazon-us", settings, secrets)
    for api in (*conn.apis.values(), conn.lwa_api):
        api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=1.0)
    return conn


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def order(order_id: str, updated: datetime, status: str = "UNSHIPPED", items: int = 1, **extra: Any) -> dict[str, Any]:
    """An Order as the 2026-01-01 model defines it (validated on the way out by the fake)."""
    lines = [{"orderItemId": f"{order_id[-7:]}{n:07d}", "quantityOrdered": 2,
              "product": {"asin": f"B0000000{n}", "sellerSku": f"TD-SKU-000{n + 1}", "title": f"Item {n}",
                          "price": {"unitPrice": {"amount": "10.00", "currencyCode": "USD"}}},
              "fulfillment": {"quantityFulfilled": 0, "quantityUnfulfilled": 2}} for n in range(items)]
    body = {"orderId": order_id, "createdTime": iso(updated - timedelta(minutes=5)), "lastUpdatedTime": iso(updated),
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": US, "marketplaceName": "Amazon.com"},
            "fulfillment": {"fulfillmentStatus": status, "fulfilledBy": "MERCHANT"},
            "orderItems": lines, "packages": []}
    return body | extra


class FakeAmazon:
    """LWA + SP-API: checks the token, validates both sides of each exchange against the model."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.tokens_issued: list[str] = []
        self.valid_tokens: set[str] = set()
        self.lwa_forms: list[dict[str, str]] = []
        self.calls: list[httpx.Request] = []
        self.operations: list[str] = []
        self.page_size_seen: list[int] = []
        self.override: dict[str, list[httpx.Response]] = {}  # operationId → answers to give first
        self.confirmed: list[dict[str, Any]] = []
        self.rate_header = True

    # LWA
    def lwa(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
        form = dict(parse_qsl(request.content.decode()))
        self.lwa_forms.append(form)
        if "lwa" in self.override and self.override["lwa"]:
            return self.override["lwa"].pop(0)
        token = f"Atza|token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        self.valid_tokens.add(token)
        return httpx.Response(200, json={"access_token": token, "refresh_token": REFRESH, "token_type": "bearer",
                                         "expires_in": 3600})

    # SP-API
    def sp(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        model = swagger.for_path(request.url.path)
        operation = model.validate_request(request)
        self.operations.append(operation)
        assert "authorization" not in request.headers, "no AWS Signature V4 since October 2023"
        response = self._answer(operation, request)
        if self.rate_header and operation in USAGE_PLANS and "x-amzn-RateLimit-Limit" not in response.headers:
            response.headers["x-amzn-RateLimit-Limit"] = str(USAGE_PLANS[operation][0])
        response.headers["x-amzn-RequestId"] = f"req-{len(self.calls)}"
        body = response.json() if response.content else None
        model.validate_response(request.method, request.url.path, response.status_code, body)
        return response

    def _answer(self, operation: str, request: httpx.Request) -> httpx.Response:
        if self.override.get(operation):
            return self.override[operation].pop(0)
        if request.headers.get("x-amz-access-token") not in self.valid_tokens:
            return httpx.Response(403, json={"errors": [{"code": "Unauthorized", "message": "Access to requested "
                                                         "resource is denied.", "details": "The access token you "
                                                         "provided has expired."}]})
        if operation == "searchOrders":
            return self.search(dict(request.url.params))
        if operation == "getOrder":
            found = self.orders.get(request.url.path.rsplit("/", 1)[-1])
            if found is None:
                return httpx.Response(404, json={"errors": [{"code": "NotFound", "message": "Order not found"}]})
            return httpx.Response(200, json={"order": found})
        body = json.loads(request.content)
        self.confirmed.append(body)
        return httpx.Response(204)

    def search(self, params: dict[str, str]) -> httpx.Response:
        after, before = params["lastUpdatedAfter"], params["lastUpdatedBefore"]
        parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
        rows = sorted((o for o in self.orders.values()
                       if parse(after) <= parse(o["lastUpdatedTime"]) <= parse(before)),
                      key=lambda o: (o["lastUpdatedTime"], o["orderId"]))
        size = int(params.get("maxResultsPerPage", 100))
        self.page_size_seen.append(size)
        start = int(params.get("paginationToken", "0") or 0)
        page = rows[start:start + size]
        answer: dict[str, Any] = {"orders": page}
        if start + size < len(rows):
            answer["pagination"] = {"nextToken": str(start + size)}
        return httpx.Response(200, json=answer)


@pytest.fixture
def amazon():
    fake = FakeAmazon()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(LWA).mock(side_effect=fake.lwa)
        mock.route(host="sp.test").mock(side_effect=fake.sp)
        yield fake


NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(hours=3)


# --- auth: LWA and the access token (known answers) ---------------------------------------------------


async def test_lwa_refresh_token_grant_and_access_token_header(amazon):
    """Known answer, "Connecting to the Selling Partner API" step 1: POST the form grant_type=refresh_token,
    refresh_token, client_id, client_secret; step 3: the token goes in x-amz-access-token. No signature
    ("SP-API no longer requires AWS IAM or AWS Signature Version 4", 2 October 2023)."""
    amazon.orders["902-3159896-1390916"] = order("902-3159896-1390916", OLD)
    conn = make_connector()
    await conn.get_order("902-3159896-1390916")
    await conn.get_order("902-3159896-1390916")
    assert amazon.lwa_forms == [{"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": CLIENT_ID,
                                 "client_secret": CLIENT_SECRET}]  # one exchange, the token is cached
    first = amazon.calls[0]
    assert first.headers["x-amz-access-token"] == "Atza|token-1"
    assert first.headers["user-agent"].startswith("Tongdao/")
    assert "authorization" not in first.headers and "x-amz-security-token" not in first.headers
    assert first.url.path == "/orders/2026-01-01/orders/902-3159896-1390916"
    assert first.url.params["includedData"] == ",".join(INCLUDED_DATA)
    await conn.aclose()


async def test_token_refreshed_before_expiry(amazon):
    amazon.orders["902-3159896-1390916"] = order("902-3159896-1390916", OLD)
    conn = make_connector()
    clock = [1000.0]
    conn.tokens.clock = lambda: clock[0]
    await conn.get_order("902-3159896-1390916")
    clock[0] += 3600 - 59  # within the 60 s refresh margin of the 3600 s lifetime
    await conn.get_order("902-3159896-1390916")
    assert len(amazon.lwa_forms) == 2
    assert [c.headers["x-amz-access-token"] for c in amazon.calls] == ["Atza|token-1", "Atza|token-2"]


async def test_expired_token_is_exchanged_once_then_auth_error(amazon):
    amazon.orders["902-3159896-1390916"] = order("902-3159896-1390916", OLD)
    conn = make_connector()
    await conn.get_order("902-3159896-1390916")
    amazon.valid_tokens.clear()  # Amazon expired it early: 403 Unauthorized "has expired"
    await conn.get_order("902-3159896-1390916")  # refreshed once, then fine
    assert len(amazon.lwa_forms) == 2
    amazon.valid_tokens.clear()
    amazon.lwa = None  # type: ignore[assignment]
    refusal = {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.",
                           "details": "The access token you provided is revoked, malformed or invalid."}]}
    amazon.override["getOrder"] = [httpx.Response(403, json=refusal), httpx.Response(403, json=refusal)]
    with pytest.raises(AuthError) as info:
        await conn.get_order("902-3159896-1390916")
    assert info.value.code == "Unauthorized" and not info.value.retryable


async def test_lwa_invalid_grant_is_permanent(amazon):
    refusal = {"error": "invalid_grant",
               "error_description": "The request has an invalid grant parameter : refresh_token"}
    amazon.override["lwa"] = [httpx.Response(400, json=refusal)]
    conn = make_connector()
    with pytest.raises(AuthError) as info:
        await conn.get_order("902-3159896-1390916")
    assert info.value.code == "invalid_grant" and len(amazon.lwa_forms) == 1
    assert REFRESH not in str(info.value) and CLIENT_SECRET not in str(info.value)


def test_settings_contract_and_secrets_masked():
    conn = make_connector()
    assert conn.kind == "amazon" and conn.channel == "amazon"
    assert conn.capabilities == frozenset({"orders", "shipments", "receivers", "stock"})
    assert not isinstance(conn, PushReceiver)  # SP-API notifications go to SQS/EventBridge, not webhooks
    assert isinstance(conn, ReceiverSource)
    described = conn.describe()
    assert described["secrets"] == {"client_id": "********", "client_secret": "********", "refresh_token": "********"}
    assert described["settings"]["marketplace_ids"] == [US]
    assert described["settings"]["lwa_endpoint"] == LWA
    with pytest.raises(ConfigurationError):
        make_connector(marketplace_ids=[])
    with pytest.raises(ConfigurationError):
        make_connector(marketplace_ids="ATVPDKIKX0DER")  # a list, not a string
    with pytest.raises(ConfigurationError):
        make_connector(page_size=101)
    defaults = AmazonConnector.from_config("x", {"marketplace_ids": [US]}, {
        "client_id": "a", "client_secret": "b", "refresh_token": "c"}).settings
    assert defaults.lwa_endpoint == "https://api.amazon.com/auth/o2/token"
    assert AmazonConnector.ingest_defaults.lag >= timedelta(minutes=2)


def test_time_format_and_package_reference():
    assert format_time(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"  # the model's x-example
    moment = datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert format_time(moment) == "2025-01-01T00:00:00.123Z"
    assert format_time(moment, up=True) == "2025-01-01T00:00:00.124Z"
    ref = package_reference_id("SF1234567890")
    assert ref.isdigit() and int(ref) > 0  # PackageReferenceId: "Only positive numeric values are supported"
    assert ref == package_reference_id("SF1234567890") != package_reference_id("SF1234567891")


# --- pulling -----------------------------------------------------------------------------------------


async def test_pull_pages_with_pagination_token_and_same_parameters(amazon):
    for n in range(5):
        oid = f"111-000000{n}-000000{n}"
        amazon.orders[oid] = order(oid, OLD + timedelta(minutes=n))
    conn = make_connector(page_size=2, marketplace_ids=[US, "A2EUQ1WTGCTBG2"])
    pages = []
    async for page in conn.pull_orders(OLD - timedelta(minutes=1), OLD + timedelta(hours=1)):
        pages.append([r.external_id for r in page])
        # handed over as read: the next page has not been asked for yet
        assert len([o for o in amazon.operations if o == "searchOrders"]) == len(pages)
    assert [len(p) for p in pages] == [2, 2, 1]
    searches = [c for c in amazon.calls if c.url.path == "/orders/2026-01-01/orders"]
    first = dict(searches[0].url.params)
    assert "paginationToken" not in first
    assert first["marketplaceIds"] == f"{US},A2EUQ1WTGCTBG2"  # csv, Swagger 2.0's default collectionFormat
    assert first["fulfilledBy"] == "MERCHANT" and first["maxResultsPerPage"] == "2"
    assert first["includedData"] == ",".join(INCLUDED_DATA)
    for later in searches[1:]:
        params = dict(later.url.params)
        assert params.pop("paginationToken")
        assert params == first  # "All other parameters must be provided with the same values"


async def test_window_boundary_is_half_open(amazon):
    since = OLD
    until = OLD + timedelta(hours=1)
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", since)  # at since: in
    amazon.orders["111-0000002-0000002"] = order("111-0000002-0000002", until)  # at until: next window
    amazon.orders["111-0000003-0000003"] = order("111-0000003-0000003", until - timedelta(seconds=1))
    conn = make_connector()
    got = [r.external_id async for page in conn.pull_orders(since, until) for r in page]
    assert got == ["111-0000001-0000001", "111-0000003-0000003"]
    nxt = [r.external_id async for page in conn.pull_orders(until, until + timedelta(hours=1)) for r in page]
    assert nxt == ["111-0000002-0000002"]
    params = dict(amazon.calls[0].url.params)
    assert (params["lastUpdatedAfter"], params["lastUpdatedBefore"]) == (iso(since), iso(until))
    ids = await conn.list_order_ids(since, until)
    assert [i for i, _ in ids] == ["111-0000001-0000001", "111-0000003-0000003"]
    assert "includedData" not in dict(amazon.calls[-1].url.params)


async def test_window_younger_than_two_minutes_is_retried_later(amazon):
    conn = make_connector()
    with pytest.raises(ThrottledError) as info:
        async for _ in conn.pull_orders(NOW - timedelta(minutes=10), datetime.now(UTC) - timedelta(seconds=30)):
            pass
    assert 60 <= info.value.retry_after <= 120 and amazon.calls == []


async def test_unreadable_update_time_becomes_an_error_record(amazon):
    conn = make_connector()
    bad = order("111-0000009-0000009", OLD)
    amazon.override["searchOrders"] = [httpx.Response(200, json={"orders": [bad | {"lastUpdatedTime": "yesterday"}]})]
    with pytest.raises(swagger.SwaggerError):  # the model itself refuses such an answer
        async for _ in conn.pull_orders(OLD - timedelta(minutes=1), OLD + timedelta(minutes=1)):
            pass
    record = conn._record(bad | {"lastUpdatedTime": "yesterday"})
    assert record is not None and record.error and "lastUpdatedTime" in record.error


# --- throttling --------------------------------------------------------------------------------------


async def test_429_uses_the_rate_limit_header_for_retry_after(amazon):
    conn = make_connector()
    quota = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]}
    amazon.override["searchOrders"] = [httpx.Response(429, json=quota, headers={"x-amzn-RateLimit-Limit": "0.0056"})]
    with pytest.raises(ThrottledError) as info:
        async for _ in conn.pull_orders(OLD, OLD + timedelta(hours=1)):
            pass
    assert info.value.retry_after == pytest.approx(1 / 0.0056, rel=0.01)
    assert info.value.code == "QuotaExceeded"
    assert len([o for o in amazon.operations if o == "searchOrders"]) == 1  # not slept out in-process
    with pytest.raises(ThrottledError):  # the ban is remembered: fail fast, no HTTP call
        async for _ in conn.pull_orders(OLD, OLD + timedelta(hours=1)):
            pass
    assert len([o for o in amazon.operations if o == "searchOrders"]) == 1


async def test_short_429_is_waited_out_and_retried(amazon):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD)
    conn = make_connector()
    quota = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]}
    amazon.override["getOrder"] = [httpx.Response(429, json=quota, headers={"x-amzn-RateLimit-Limit": "5"})]
    record = await conn.get_order("111-0000001-0000001")
    assert record.external_id == "111-0000001-0000001"
    assert amazon.operations == ["getOrder", "getOrder"]


async def test_usage_plan_bucket_spent_fails_fast_with_retry_after(amazon):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD)
    conn = make_connector()
    plan = conn.plans["searchOrders"]
    assert (plan.rate, plan.burst) == (0.0056, 20)  # the model's Usage Plan for searchOrders
    plan.tokens = 0.0
    with pytest.raises(ThrottledError) as info:
        async for _ in conn.pull_orders(OLD - timedelta(minutes=1), OLD + timedelta(minutes=1)):
            pass
    assert info.value.retry_after > 100 and amazon.calls == []
    await conn.get_order("111-0000001-0000001")  # other operations have their own bucket
    assert conn.plans["getOrder"].rate == 0.5


async def test_rate_limit_header_updates_the_plan(amazon):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD)
    amazon.rate_header = False
    conn = make_connector()
    amazon.override["getOrder"] = [httpx.Response(200, json={"order": amazon.orders["111-0000001-0000001"]},
                                                  headers={"x-amzn-RateLimit-Limit": "3.5"})]
    await conn.get_order("111-0000001-0000001")
    assert conn.plans["getOrder"].rate == 3.5


async def test_errors_are_classified(amazon):
    conn = make_connector()
    with pytest.raises(NotFoundError):
        await conn.get_order("111-0000404-0000404")
    amazon.override["getOrder"] = [httpx.Response(400, json={"errors": [{"code": "InvalidInput",
                                                                        "message": "Invalid Input"}]})]
    with pytest.raises(InvalidRequestError):
        await conn.get_order("111-0000400-0000400")
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD)
    amazon.override["getOrder"] = [httpx.Response(503, json={"errors": [{"code": "ServiceUnavailable",
                                                                        "message": "Try later"}]})]
    assert (await conn.get_order("111-0000001-0000001")).external_id == "111-0000001-0000001"  # retried
    with pytest.raises(InvalidRequestError):
        await conn.get_order("not-an-order")


# --- write-back --------------------------------------------------------------------------------------


def shipment(tracking: str = "SF1234567890", carrier: str = "SF", lines: list[ShipmentLine] | None = None) -> Shipment:
    return Shipment(order_key="amazon:amz-us:111-0000001-0000001", carrier_code=carrier, tracking_number=tracking,
                    shipped_at=datetime(2026, 11, 12, 8, 30, tzinfo=UTC), lines=lines or [])


async def test_confirm_shipment_whole_order(amazon):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD, items=2)
    conn = make_connector()
    result = await conn.push_shipment("111-0000001-0000001", shipment())
    assert result.taken
    (body,) = amazon.confirmed
    confirm = amazon.calls[-1]
    assert confirm.url.path == "/orders/v0/orders/111-0000001-0000001/shipmentConfirmation"
    assert body == {"marketplaceId": US, "packageDetail": {
        "packageReferenceId": package_reference_id("SF1234567890"), "carrierCode": "SF Express",
        "trackingNumber": "SF1234567890", "shipDate": "2026-11-12T08:30:00Z",
        "orderItems": [{"orderItemId": "00000010000000", "quantity": 2},
                       {"orderItemId": "00000010000001", "quantity": 2}]}}
    lookup = amazon.calls[-2]
    assert lookup.url.params["includedData"] == "FULFILLMENT,PACKAGES,CANCELLATION"


async def test_split_shipment_and_carrier_table(amazon):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD, items=3)
    conn = make_connector(carriers={"ZTO": "Other:ZTO Express (override)", "SF": "SF Express"})
    await conn.push_shipment("111-0000001-0000001", shipment("ZT998877665", "ZTO"), line_ids=["00000010000001"])
    detail = amazon.confirmed[-1]["packageDetail"]
    assert detail["orderItems"] == [{"orderItemId": "00000010000001", "quantity": 2}]
    assert (detail["carrierCode"], detail["carrierName"]) == ("Other", "ZTO Express (override)")
    await conn.push_shipment("111-0000001-0000001", shipment("YT1", "YTO", [ShipmentLine(
        sku="TD-SKU-0001", quantity=1, line_id="00000010000000")]), line_ids=["00000010000000"])
    detail = amazon.confirmed[-1]["packageDetail"]
    assert detail["orderItems"] == [{"orderItemId": "00000010000000", "quantity": 1}]  # the WMS's quantity
    assert (detail["carrierCode"], detail["carrierName"]) == CARRIERS["YTO"]
    assert conn.carrier("XYZ") == ("Other", "XYZ")
    with pytest.raises(InvalidRequestError):
        await conn.push_shipment("111-0000001-0000001", shipment("T2"), line_ids=["99999999999999"])


async def test_write_back_is_idempotent_and_reports_conflicts(amazon):
    oid = "111-0000001-0000001"
    amazon.orders[oid] = order(oid, OLD, status="SHIPPED", packages=[{
        "packageReferenceId": package_reference_id("SF1234567890"), "trackingNumber": "SF1234567890",
        "carrier": "SF Express", "packageItems": [{"orderItemId": "00000010000000", "quantity": 2}]}])
    amazon.orders[oid]["orderItems"][0]["fulfillment"] = {"quantityFulfilled": 2, "quantityUnfulfilled": 0}
    conn = make_connector()
    same = await conn.push_shipment(oid, shipment())
    assert (same.taken, same.tracking_on_platform) == (False, ["SF1234567890"])
    assert not same.conflicts_with("SF1234567890")
    other = await conn.push_shipment(oid, shipment("YT000111222", "YTO"))
    assert not other.taken and other.conflicts_with("YT000111222")
    assert amazon.confirmed == []  # nothing was sent twice


async def test_lost_answer_then_retry_is_recognised(amazon):
    """The first confirmShipment went through but its answer was lost; Amazon refuses the repeat."""
    oid = "111-0000001-0000001"
    amazon.orders[oid] = order(oid, OLD)
    conn = make_connector()
    shipped = order(oid, OLD, status="SHIPPED", packages=[{"packageReferenceId": "7", "trackingNumber": "SF1234567890",
                                                           "packageItems": [{"orderItemId": "00000010000000",
                                                                             "quantity": 2}]}])
    shipped["orderItems"][0]["fulfillment"] = {"quantityFulfilled": 2, "quantityUnfulfilled": 0}
    amazon.override["confirmShipment"] = [httpx.Response(400, json={"errors": [{"code": "InvalidInput",
                                                                               "message": "Already shipped"}]})]
    amazon.override["getOrder"] = [httpx.Response(200, json={"order": amazon.orders[oid]}),
                                   httpx.Response(200, json={"order": shipped})]
    result = await conn.push_shipment(oid, shipment())
    assert (result.taken, result.tracking_on_platform) == (False, ["SF1234567890"])


@pytest.mark.parametrize(("status", "message"), [("CANCELLED", "nothing to ship"), ("PENDING", "not paid")])
async def test_write_back_refused_for_closed_or_unpaid(amazon, status, message):
    amazon.orders["111-0000001-0000001"] = order("111-0000001-0000001", OLD, status=status)
    conn = make_connector()
    with pytest.raises(InvalidRequestError, match=message):
        await conn.push_shipment("111-0000001-0000001", shipment())
    assert amazon.confirmed == []


# --- receivers ---------------------------------------------------------------------------------------


async def test_shippable_receiver_reads_the_recipient_again(amazon):
    oid = "111-0000001-0000001"
    amazon.orders[oid] = order(oid, OLD, recipient={"deliveryAddress": {
        "name": "John Smith", "addressLine1": "123 Main Street", "addressLine2": "Suite 456", "city": "Seattle",
        "stateOrRegion": "WA", "postalCode": "98101", "countryCode": "US", "phone": "555-123-4567"}})
    conn = make_connector()
    clear = await conn.shippable_receiver({"orderId": oid, "recipient": {"deliveryAddress": {"city": "Seattle"}}})
    assert clear == {"name": "John Smith", "phone": "555-123-4567", "mobile": "555-123-4567", "province": "WA",
                     "city": "Seattle", "street": "123 Main Street Suite 456", "postal_code": "98101"}
    assert amazon.calls[-1].url.params["includedData"] == "RECIPIENT"
    amazon.orders[oid]["recipient"] = {"deliveryAddress": {"city": "Seattle", "countryCode": "US"}}
    with pytest.raises(AuthError, match="Direct-to-Consumer Delivery"):
        await conn.shippable_receiver({"orderId": oid})


async def test_concurrent_calls_share_one_token_exchange(amazon):
    for n in range(6):
        amazon.orders[f"111-000000{n}-0000001"] = order(f"111-000000{n}-0000001", OLD)
    conn = make_connector()
    await asyncio.gather(*(conn.get_order(f"111-000000{n}-0000001") for n in range(6)))
    assert len(amazon.lwa_forms) == 1


def test_fixture_example_is_valid_against_the_model():
    for name, path in (("amazon_get_order.json", "/orders/2026-01-01/orders/202-1234567-8901234"),
                       ("amazon_search_orders.json", "/orders/2026-01-01/orders")):
        body = json.loads((FIXTURES / name).read_text())
        swagger.for_path(path).validate_response("GET", path, 200, body)
        assert body == swagger.for_path(path).example("GET", path)
