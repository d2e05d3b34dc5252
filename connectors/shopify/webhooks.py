"""Shopify webhook signatures: ``X-Shopify-Hmac-Sha256`` = base64(HMAC-SHA256(raw body, client secret)).

Where it comes from:

* shopify.dev "Verify webhook deliveries" (https://shopify.dev/docs/apps/build/webhooks/verify-deliveries):
  "Each HTTPS delivery includes a base64-encoded HMAC signature in the X-Shopify-Hmac-SHA256 header,
  generated using your app's client secret and the raw request body ... compute HMAC-SHA256 of the raw
  request body using your app's client secret as the key, then compare it to the decoded header value."
  The same page: a delivery id (``X-Shopify-Webhook-Id``) detects duplicates; "Ignore duplicate webhooks"
  (https://shopify.dev/apps/build/webhooks/ignore-duplicates): the same ``X-Shopify-Event-Id`` across
  more than one webhook indicates a duplicate (one per subscription for the same event).
* The official Node SDK, Shopify/shopify-api-js ``packages/shopify-api/lib/webhooks/validate.ts``
  (``createSHA256HMAC(secret, rawBody, HashFormat.Base64)`` then ``safeCompare``), whose test
  ``lib/webhooks/__tests__/validate.test.ts`` gives the known answer used in our tests: secret
  ``test_secret_key`` (``lib/__tests__/test-config.ts``), body ``{"foo": "bar"}`` →
  ``B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=``.

The comparison is made on the decoded bytes in constant time; a header that is not base64 is simply
a mismatch (a forged request, answered 401 by the connector).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

HMAC_HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
SHOP_HEADER = "x-shopify-shop-domain"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
EVENT_ID_HEADER = "x-shopify-event-id"
API_VERSION_HEADER = "x-shopify-api-version"
TRIGGERED_AT_HEADER = "x-shopify-triggered-at"


def webhook_hmac(body: bytes, client_secret: str) -> str:
    """The value Shopify puts in ``X-Shopify-Hmac-Sha256`` for ``body`` (base64, not hex)."""
    digest = hmac.new(client_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook(body: bytes, client_secret: str, header_value: str | None) -> bool:
    """True when ``header_value`` is the HMAC of the raw ``body``; constant time, never raises."""
    if not header_value or not client_secret:
        return False
    try:
        claimed = base64.b64decode(header_value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(client_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return hmac.compare_digest(claimed, expected)
