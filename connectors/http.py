"""The one HTTP client every connector uses.

It adds what each platform would otherwise re-implement: a request-signing hook, a shared rate
limiter that honours throttling signals, tenacity retries for transient failures with the
platform's Retry-After respected, and logging that never prints secrets (only method, path,
status and timing are logged; query strings and bodies are not).

Temporal owns long retries, the HTTP client only short ones. A retry here happens inside one
activity attempt, invisible to the workflow history and holding a worker slot, so it is only
worth it for blips: the client sleeps at most ``RetryPolicy.max_s`` per wait and never past
``max_elapsed_s``. When the platform asks for a longer wait (``429`` with ``Retry-After: 300``,
a platform ban) the ``ThrottledError`` is raised at once with ``retry_after`` set; the activity
layer turns it into ``ApplicationError(next_retry_delay=...)`` and Temporal waits durably. The
shared limiter remembers the ban, so the connector's other requests fail fast the same way
instead of each sleeping out the ban (see ``connectors/ratelimit.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from connectors.errors import ConnectorError, ThrottledError, TransientError
from connectors.ratelimit import RateLimiter

log = structlog.get_logger("tongdao.http")

Signer = Callable[[httpx.Request], Awaitable[None] | None]
"""Mutates a request in place (adds query params, headers or a signature) just before it is sent."""

ResponseCheck = Callable[[httpx.Response], None]
"""Raises a ConnectorError for a platform-level error inside an HTTP 200 answer."""


@dataclass
class RetryPolicy:
    """Short, in-process retries. ``max_s`` is also the longest Retry-After the client sleeps out."""

    attempts: int = 4
    max_elapsed_s: float = 60.0
    initial_s: float = 0.2
    max_s: float = 10.0

    def wait_budget(self, elapsed_s: float) -> float:
        """Longest sleep still allowed after ``elapsed_s``: ``max_s``, capped by what is left of
        ``max_elapsed_s`` (a wait that would overrun the budget is Temporal's job, not ours)."""
        return max(0.0, min(self.max_s, self.max_elapsed_s - elapsed_s))


def short_retrying(policy: RetryPolicy) -> AsyncRetrying:
    """Tenacity loop for retryable ConnectorErrors whose wait fits the short-retry budget.

    A Retry-After within the budget is slept out exactly; one beyond it ends the loop at once and
    re-raises the error (with its ``retry_after``) so Temporal's activity retry takes over.
    Shared by the ApiClient and connectors that retry whole operations themselves (Kingdee).
    """

    def should_retry(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
        if not isinstance(exc, ConnectorError) or not exc.retryable:
            return False
        if exc.retry_after is not None:
            elapsed = state.seconds_since_start or 0.0
            return exc.retry_after <= policy.wait_budget(elapsed)
        return True

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
        if isinstance(exc, ConnectorError) and exc.retry_after is not None:
            return float(exc.retry_after)
        return wait_exponential_jitter(multiplier=policy.initial_s, max=policy.max_s, jitter=policy.initial_s)(state)

    return AsyncRetrying(
        retry=should_retry,
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_elapsed_s),
        wait=wait,
        reraise=True,
    )


@dataclass
class ApiClient:
    """Shared client: ``await client.send(request)`` signs, throttles, retries and classifies.

    Retries here cover short blips inside one activity attempt; longer outages are left to the
    Temporal activity retry policy, which is durable and visible in the history.
    """

    platform: str
    base_url: str
    signer: Signer | None = None
    check: ResponseCheck | None = None
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(None))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout_s,
                transport=self.transport,
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def build(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        return self.client.build_request(method, url, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Build and send; ``kwargs`` as for ``httpx.AsyncClient.build_request``."""
        return await self.send_with_retry(lambda: self.build(method, url, **kwargs))

    async def send_with_retry(self, make_request: Callable[[], httpx.Request]) -> httpx.Response:
        """Send a freshly built (and freshly signed) request per attempt.

        A new request per attempt matters: signatures usually cover a timestamp that the
        platform checks, so re-sending an old signed request would be rejected.
        """
        started = time.monotonic()
        async for attempt in short_retrying(self.retry):
            with attempt:
                budget = self.retry.wait_budget(time.monotonic() - started)
                return await self._send_once(make_request(), max_wait_s=budget)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, request: httpx.Request, max_wait_s: float | None = None) -> httpx.Response:
        try:
            await self.limiter.acquire(max_wait_s)
        except ThrottledError as exc:  # a ban longer than we may sleep: fail fast, Temporal waits
            exc.platform = exc.platform or self.platform
            raise
        if self.signer is not None:
            maybe = self.signer(request)
            if maybe is not None:
                await maybe
        started = time.perf_counter()
        try:
            response = await self.client.send(request)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timeout calling {request.url.path}", platform=self.platform) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"transport error: {type(exc).__name__}", platform=self.platform) from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        log.debug(
            "http",
            platform=self.platform,
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            ms=elapsed_ms,
        )
        self._raise_for_status(response)
        if self.check is not None:
            try:
                self.check(response)
            except ThrottledError as exc:
                self.limiter.penalize(exc.retry_after if exc.retry_after is not None else 1.0)
                raise
        return response

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            retry_after = 1.0 if retry_after is None else retry_after  # an explicit 0 means "now"
            self.limiter.penalize(retry_after)
            raise ThrottledError("HTTP 429 Too Many Requests", code="429", platform=self.platform,
                                 retry_after=retry_after)
        if status >= 500 or status == 408:
            raise TransientError(f"HTTP {status}", code=str(status), platform=self.platform,
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date; we honour the seconds form and cap at 10 min."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 600.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        from datetime import UTC, datetime

        return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), 600.0)
