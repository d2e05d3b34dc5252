"""The GraphQL documents the Shopify connector sends (GraphQL Admin API, 2025-10 schema).

Kept in one place so that their calculated cost can be reasoned about: Shopify refuses any single
query whose *requested* cost exceeds 1,000 points ("GraphQL Admin API rate limits",
https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits: objects cost 1, scalars and enums
0, a connection 2 plus ``first`` times the cost of one node). The listing therefore asks only for ids
and ``updatedAt`` (≈ 2 + 250 points), and each order is read on its own (≈ 800 points with 50 line
items, 5 refunds and 10 fulfillments). No fragments are used: the documents are plain selections.

Field names follow the Admin GraphQL reference: ``Order`` (``legacyResourceId``, ``displayFinancialStatus``,
``displayFulfillmentStatus``, ``cancelledAt``, ``cancelReason``, ``closed``, money as ``MoneyBag``
``shopMoney``/``presentmentMoney``), ``LineItem`` (``sku``, ``quantity``, ``currentQuantity``,
``originalUnitPriceSet``, ``discountedTotalSet``, ``totalDiscountSet``, ``sellingPlan``), ``Refund``
(``refundLineItems``), ``Fulfillment`` (``trackingInfo { company number url }``), ``FulfillmentOrder``
(``status``, ``lineItems { remainingQuantity lineItem { id } }``) and the mutation
``fulfillmentCreate(fulfillment: FulfillmentInput!, message: String)`` (FulfillmentInput:
``lineItemsByFulfillmentOrder``, ``trackingInfo``, ``notifyCustomer``).
"""

from __future__ import annotations

MONEY = "shopMoney { amount currencyCode } presentmentMoney { amount currencyCode }"
SHOP_MONEY = "shopMoney { amount currencyCode }"

#: line items read with the order; more are paged with ORDER_LINES_QUERY
LINES_PER_PAGE = 50

LINE_SELECTION = (
    "id sku name title quantity currentQuantity variant { id sku } sellingPlan { name } "
    f"originalUnitPriceSet {{ {MONEY} }} discountedTotalSet {{ {SHOP_MONEY} }} totalDiscountSet {{ {SHOP_MONEY} }}"
)

ORDER_SELECTION = (
    "id legacyResourceId name createdAt updatedAt processedAt closed closedAt cancelledAt cancelReason "
    "displayFinancialStatus displayFulfillmentStatus currencyCode presentmentCurrencyCode test email note tags "
    "paymentGatewayNames "
    f"totalPriceSet {{ {MONEY} }} totalLineItemsPriceSet {{ {MONEY} }} totalDiscountsSet {{ {MONEY} }} "
    f"totalShippingPriceSet {{ {MONEY} }} totalTaxSet {{ {MONEY} }} "
    "customer { id displayName } "
    "shippingAddress { name firstName lastName company address1 address2 city province provinceCode zip "
    "country countryCodeV2 phone } "
    f"lineItems(first: {LINES_PER_PAGE}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_SELECTION} }} }} "
    "refunds(first: 5) { id createdAt refundLineItems(first: 20) { nodes { quantity lineItem { id } } } } "
    "fulfillments(first: 10) { id status createdAt trackingInfo(first: 5) { company number url } }"
)

ORDERS_PAGE_QUERY = (
    "query OrdersPage($first: Int!, $after: String, $query: String) { "
    "orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { "
    "pageInfo { hasNextPage endCursor } nodes { id legacyResourceId updatedAt } } }"
)

ORDER_QUERY = f"query Order($id: ID!) {{ order(id: $id) {{ {ORDER_SELECTION} }} }}"

ORDER_LINES_QUERY = (
    "query OrderLines($id: ID!, $after: String) { order(id: $id) { id "
    f"lineItems(first: {LINES_PER_PAGE}, after: $after) {{ pageInfo {{ hasNextPage endCursor }} "
    f"nodes {{ {LINE_SELECTION} }} }} }} }}"
)

#: what a write-back needs: the order's state, the fulfillments already made (tracking numbers and
#: lines) and the fulfillment orders still open with their line items
FULFILLMENT_STATE_QUERY = (
    "query FulfillmentState($id: ID!) { order(id: $id) { id legacyResourceId cancelledAt "
    "displayFinancialStatus displayFulfillmentStatus "
    "fulfillments(first: 10) { id status trackingInfo(first: 3) { company number url } "
    "fulfillmentLineItems(first: 10) { nodes { quantity lineItem { id } } } } "
    "fulfillmentOrders(first: 5) { nodes { id status assignedLocation { location { id } } "
    "lineItems(first: 50) { nodes { id remainingQuantity totalQuantity lineItem { id } } } } } } }"
)

FULFILLMENT_CREATE_MUTATION = (
    "mutation FulfillmentCreate($fulfillment: FulfillmentInput!, $message: String) { "
    "fulfillmentCreate(fulfillment: $fulfillment, message: $message) { "
    "fulfillment { id status trackingInfo(first: 3) { company number url } } "
    "userErrors { field message } } }"
)

SHOP_QUERY = "query Shop { shop { name myshopifyDomain currencyCode } }"

# --- stock (the 'stock' capability, connectors/shopify/stock.py) ------------------------------------
#
# ``productVariants(first, query)`` with the search syntax ``sku:"…"``, the shop's primary location
# (``location`` without ``id``: "If no ID is provided, the primary location of the Shop is returned"),
# ``inventoryItem(id) { inventoryLevel(locationId) { quantities(names) } }`` and the mutation
# ``inventorySetQuantities(input: InventorySetQuantitiesInput!)`` (``name``, ``reason``,
# ``quantities [{inventoryItemId, locationId, quantity, …}]``), whose ``inventoryAdjustmentGroup``
# lists the ``changes { name delta quantityAfterChange }`` and whose refusals are ``userErrors``
# with an ``InventorySetQuantitiesUserErrorCode``. Costs: the listing ≈ 2 + 5 × 2 + 1 points.

#: variants read per SKU lookup: Shopify does not make SKUs unique, and the search is not documented
#: as an exact match, so a few are read and filtered on the exact ``sku``
STOCK_VARIANTS_PER_SKU = 5

STOCK_LISTING_QUERY = (
    "query StockListing($query: String!) { "
    f"productVariants(first: {STOCK_VARIANTS_PER_SKU}, query: $query) {{ "
    "nodes { id sku inventoryItem { id tracked } } } "
    "location { id isActive } }"
)

#: the location to write when neither the listing nor the ``location_id`` setting names one
PRIMARY_LOCATION_QUERY = "query PrimaryLocation { location { id isActive } }"

STOCK_LEVEL_QUERY = (
    "query StockLevel($item: ID!, $location: ID!) { inventoryItem(id: $item) { id "
    'inventoryLevel(locationId: $location) { id quantities(names: ["available"]) { name quantity } } } }'
)

_STOCK_SET_SELECTION = (
    'inventoryAdjustmentGroup { createdAt reason changes(quantityNames: ["available"]) '
    "{ name delta quantityAfterChange } } userErrors { field message code }"
)

#: 2026-01 and later: ``changeFromQuantity`` per quantity and the ``@idempotent(key:)`` directive
#: (optional in 2026-01, required from 2026-04)
STOCK_SET_MUTATION = (
    "mutation StockSet($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) { "
    f"inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {{ {_STOCK_SET_SELECTION} }} }}"
)

#: before 2026-01 (e.g. 2025-10): ``compareQuantity`` / ``ignoreCompareQuantity``; the schema has
#: no ``@idempotent`` directive for this mutation
STOCK_SET_MUTATION_LEGACY = (
    "mutation StockSet($input: InventorySetQuantitiesInput!) { "
    f"inventorySetQuantities(input: $input) {{ {_STOCK_SET_SELECTION} }} }}"
)
