"""Taobao / Tmall (TOP) connector: incremental order pull and tracking write-back."""

from connectors.taobao.connector import (
    DEFAULT_FULLINFO_FIELDS,
    DEFAULT_GATEWAY,
    TaobaoConnector,
    TaobaoSecrets,
    TaobaoSettings,
    classify_error,
)
from connectors.taobao.signing import format_top_time, parse_top_time, top_sign, top_timestamp

__all__ = [
    "DEFAULT_FULLINFO_FIELDS",
    "DEFAULT_GATEWAY",
    "TaobaoConnector",
    "TaobaoSecrets",
    "TaobaoSettings",
    "classify_error",
    "format_top_time",
    "parse_top_time",
    "top_sign",
    "top_timestamp",
]
