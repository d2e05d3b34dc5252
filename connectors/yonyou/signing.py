"""The access-token signature of the Yonyou open platform (用友开放平台, YonBIP / YonSuite).

Yonyou's "获取 access_token" page (自建应用 getAccessToken): the request carries ``appKey``,
``timestamp`` (unix time in milliseconds) and ``signature``, where

    signature = URLEncode( Base64( HmacSHA256( parameterMap ) ) )

``parameterMap`` is every parameter but ``signature``, sorted by name, each name followed directly
by its value (no ``=``, no ``&``): for appKey ``41832a3d2df94989b500da6a22268747`` and timestamp
``1568098531823`` the string to sign is
``appKey41832a3d2df94989b500da6a22268747timestamp1568098531823``. The HMAC key is the app secret;
the binary digest is Base64-encoded, then URL-encoded once (the documented example URL carries
``signature=5emnxzmPp%2FCFvb2hcddwtMVgfKUARq9DGQZOjxqe%2Fp8%3D``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote


def string_to_sign(params: Mapping[str, str]) -> str:
    """Names sorted, each name followed by its value; ``signature`` itself left out."""
    return "".join(f"{name}{params[name]}" for name in sorted(params) if name != "signature")


def sign(params: Mapping[str, str], app_secret: str) -> str:
    """Base64 of HmacSHA256(app secret, string to sign): the signature before URL-encoding."""
    digest = hmac.new(app_secret.encode("utf-8"), string_to_sign(params).encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def token_query(app_key: str, timestamp_ms: int, app_secret: str) -> str:
    """The query string of the token request, signature URL-encoded once as documented."""
    params = {"appKey": app_key, "timestamp": str(timestamp_ms)}
    signature = sign(params, app_secret)
    return f"appKey={quote(app_key, safe='')}&timestamp={timestamp_ms}&signature={quote(signature, safe='')}"
