"""Login with Amazon (LWA): the refresh-token grant that every SP-API call rests on.

What the documentation says, and where:

* "Connecting to the Selling Partner API" (developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api,
  step 1 "Request a Login with Amazon access token"): ``POST https://api.amazon.com/auth/o2/token`` with the
  form fields ``grant_type=refresh_token``, ``refresh_token``, ``client_id``, ``client_secret``; the answer is
  JSON with ``access_token``, ``token_type`` (bearer), ``expires_in`` (seconds) and ``refresh_token``; "An
  LWA access token expires one hour after it is issued". Step 3 of the same page: the token travels in the
  ``x-amz-access-token`` request header.
* "SP-API no longer requires AWS IAM or AWS Signature Version 4" (developer-docs.amazon.com/sp-api/changelog/
  sp-api-will-no-longer-require-aws-iam-or-aws-signature-version-4): since 2 October 2023 "SP-API will
  continue to use Login with Amazon (LWA) access tokens for each SP-API request" and signatures are
  disregarded, so no request is signed here: the access token *is* the credential.
* LWA errors follow OAuth 2.0 (RFC 6749 section 5.2): ``{"error": "invalid_grant" | "invalid_client" |
  "unauthorized_client" | "invalid_request" | "unsupported_grant_type", "error_description": ...}`` with HTTP
  400 (401 for ``invalid_client``). A refused grant or client is permanent (``AuthError``): the selling
  partner must authorise the application again.

The token is cached until shortly before it expires (``REFRESH_MARGIN``) and fetched by one caller at a
time (single flight), so a burst of concurrent activities costs one token request, not one each. When an
SP-API call answers 401/403 ``Unauthorized`` the connector calls :meth:`LwaTokenSource.invalidate` with
the rejected token and retries once with a fresh one (a token revoked or expired early).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from connectors.errors import AuthError, ConnectorError, InvalidRequestError, TransientError
from connectors.http import ApiClient

DEFAULT_LWA_ENDPOINT = "https://api.amazon.com/auth/o2/token"
#: refresh this long before ``expires_in`` runs out, so a token never expires in flight
REFRESH_MARGIN = 60.0
#: when LWA leaves out ``expires_in``: the documented lifetime ("expires one hour after it is issued")
DEFAULT_TTL = 3600.0
AUTH_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "access_denied",
                         "invalid_scope"})


@dataclass
class LwaTokenSource:
    """Exchanges the refresh token for access tokens and keeps the current one."""

    api: ApiClient
    endpoint: str
    client_id: str
    client_secret: str
    refresh_token: str
    clock: Callable[[], float] = time.monotonic
    _token: str = field(default="", init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    exchanges: int = field(default=0, init=False)

    def _valid(self) -> bool:
        return bool(self._token) and self.clock() < self._expires_at - REFRESH_MARGIN

    async def token(self) -> str:
        """The current access token, exchanged again when missing or about to expire."""
        if self._valid():
            return self._token
        async with self._lock:
            if not self._valid():  # another caller may have refreshed it while we waited
                self._token, ttl = await self._exchange()
                self._expires_at = self.clock() + ttl
            return self._token

    def invalidate(self, rejected: str) -> None:
        """The platform refused ``rejected``: forget it (unless a newer token replaced it already)."""
        if rejected and rejected == self._token:
            self._token = ""
            self._expires_at = 0.0

    async def _exchange(self) -> tuple[str, float]:
        form = {"grant_type": "refresh_token", "refresh_token": self.refresh_token,
                "client_id": self.client_id, "client_secret": self.client_secret}
        response = await self.api.request("POST", self.endpoint, data=form,
                                          headers={"Accept": "application/json"})
        self.exchanges += 1
        try:
            answer = response.json()
        except ValueError:
            raise TransientError(f"LWA answered HTTP {response.status_code} without JSON",
                                 platform="amazon") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError("LWA answered without an access_token", platform="amazon")
        try:
            ttl = float(answer.get("expires_in") or DEFAULT_TTL)
        except (TypeError, ValueError):
            ttl = DEFAULT_TTL
        return token, max(ttl, REFRESH_MARGIN + 1)


def check_lwa_response(response: httpx.Response) -> None:
    """Classify an LWA error answer (OAuth 2.0 error codes); 429/5xx are handled by the ApiClient."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    text = f"LWA token exchange refused: {code or response.status_code}"
    if description:
        text += f" ({description})"
    error: type[ConnectorError]
    if code in AUTH_ERRORS or response.status_code in (401, 403):
        error = AuthError
    else:
        error = InvalidRequestError
    raise error(text, code=code or str(response.status_code), platform="amazon")
