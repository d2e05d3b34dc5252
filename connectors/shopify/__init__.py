"""Shopify connector (GraphQL Admin API): incremental order pull, fulfillment write-back, webhooks."""

from connectors.shopify.connector import (
    DEFAULT_API_VERSION,
    DEFAULT_CARRIERS,
    ShopifyConnector,
    ShopifySecrets,
    ShopifySettings,
    bucket_wait,
    classify_graphql_errors,
    format_search_time,
    order_gid,
    updated_query,
)
from connectors.shopify.webhooks import verify_webhook, webhook_hmac

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_CARRIERS",
    "ShopifyConnector",
    "ShopifySecrets",
    "ShopifySettings",
    "bucket_wait",
    "classify_graphql_errors",
    "format_search_time",
    "order_gid",
    "updated_query",
    "verify_webhook",
    "webhook_hmac",
]
