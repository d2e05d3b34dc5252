"""Douyin shop (抖店开放平台) connector: orders, tracking write-back, receiver decryption, pushes."""

from connectors.douyin.connector import (
    CARRIER_CODES,
    DEFAULT_GATEWAY,
    DouyinConnector,
    DouyinSecrets,
    DouyinSettings,
    classify_error,
)
from connectors.douyin.signing import doudian_sign, param_json, push_sign, sign_pattern, verify_push

__all__ = [
    "CARRIER_CODES",
    "DEFAULT_GATEWAY",
    "DouyinConnector",
    "DouyinSecrets",
    "DouyinSettings",
    "classify_error",
    "doudian_sign",
    "param_json",
    "push_sign",
    "sign_pattern",
    "verify_push",
]
