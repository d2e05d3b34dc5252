"""Pinduoduo (拼多多开放平台, POP) connector: incremental order pull, write-back, receiver decryption."""

from connectors.pdd.connector import (
    CARRIERS,
    DEFAULT_GATEWAY,
    PddConnector,
    PddSecrets,
    PddSettings,
    classify_error,
)
from connectors.pdd.signing import param_value, parse_pdd_time, pdd_sign, pdd_timestamp, sign_base_string

__all__ = [
    "CARRIERS",
    "DEFAULT_GATEWAY",
    "PddConnector",
    "PddSecrets",
    "PddSettings",
    "classify_error",
    "param_value",
    "parse_pdd_time",
    "pdd_sign",
    "pdd_timestamp",
    "sign_base_string",
]
