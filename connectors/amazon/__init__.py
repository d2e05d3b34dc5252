"""Amazon Selling Partner API connector: Orders API v2026-01-01 pull, v0 confirmShipment write-back."""

from connectors.amazon.auth import DEFAULT_LWA_ENDPOINT, LwaTokenSource
from connectors.amazon.connector import (
    CARRIERS,
    DEFAULT_ENDPOINT,
    INCLUDED_DATA,
    USAGE_PLANS,
    AmazonConnector,
    AmazonSecrets,
    AmazonSettings,
    format_time,
    package_reference_id,
    parse_time,
)

__all__ = [
    "CARRIERS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_LWA_ENDPOINT",
    "INCLUDED_DATA",
    "USAGE_PLANS",
    "AmazonConnector",
    "AmazonSecrets",
    "AmazonSettings",
    "LwaTokenSource",
    "format_time",
    "package_reference_id",
    "parse_time",
]
