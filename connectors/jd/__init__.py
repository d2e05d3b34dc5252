"""JD (京东 JOS) POP connector: incremental order pull, tracking write-back, TDE receiver decryption."""

from connectors.jd.connector import (
    CARRIER_IDS,
    DEFAULT_GATEWAY,
    JdConnector,
    JdSecrets,
    JdSettings,
    classify_error,
    classify_result,
    response_key,
    waybills,
)
from connectors.jd.signing import format_jos_time, jos_sign, jos_timestamp, param_json, parse_jos_time

__all__ = [
    "CARRIER_IDS",
    "DEFAULT_GATEWAY",
    "JdConnector",
    "JdSecrets",
    "JdSettings",
    "classify_error",
    "classify_result",
    "format_jos_time",
    "jos_sign",
    "jos_timestamp",
    "param_json",
    "parse_jos_time",
    "response_key",
    "waybills",
]
