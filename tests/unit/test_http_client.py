"""The shared HTTP client: retries, throttling signals, error classification."""

from __future__ import annotations

import httpx
import pytest
import respx

from connectors.errors import AuthError, ThrottledError, TransientError
from connectors.http import ApiClient, RetryPolicy, parse_retry_after
from connectors.pagination import time_windows
from connectors.ratelimit import RateLimiter

FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.01)


@respx.mock
async def test_retries_transient_then_succeeds() -> None:
    route = respx.get("http://x.test/a").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={"ok": 1})])
    client = ApiClient("p", "http://x.test", retry=FAST)
    resp = await client.request("GET", "/a")
    assert resp.json() == {"ok": 1}
    assert route.call_count == 2


@respx.mock
async def test_429_honours_retry_after_and_gives_up_after_attempts() -> None:
    route = respx.get("http://x.test/a").mock(return_value=httpx.Response(429, headers={"Retry-After": "0"}))
    client = ApiClient("p", "http://x.test", retry=FAST)
    with pytest.raises(ThrottledError):
        await client.request("GET", "/a")
    assert route.call_count == 3


@respx.mock
async def test_permanent_error_from_check_is_not_retried() -> None:
    route = respx.get("http://x.test/a").mock(return_value=httpx.Response(200, json={"err": "sign"}))

    def check(resp: httpx.Response) -> None:
        raise AuthError("bad sign", code="25")

    client = ApiClient("p", "http://x.test", retry=FAST, check=check)
    with pytest.raises(AuthError) as info:
        await client.request("GET", "/a")
    assert route.call_count == 1
    app_err = info.value.to_application_error()
    assert app_err.non_retryable and app_err.type == "AuthError"


@respx.mock
async def test_signer_runs_per_attempt() -> None:
    seen: list[str] = []
    respx.get("http://x.test/a").mock(side_effect=[httpx.Response(500), httpx.Response(200)])

    def signer(req: httpx.Request) -> None:
        seen.append("signed")
        req.headers["X-Sign"] = str(len(seen))

    await ApiClient("p", "http://x.test", retry=FAST, signer=signer).request("GET", "/a")
    assert seen == ["signed", "signed"]


@respx.mock
async def test_transport_error_is_transient() -> None:
    respx.get("http://x.test/a").mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(TransientError):
        await ApiClient("p", "http://x.test", retry=FAST).request("GET", "/a")


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_rate_limiter_penalty_blocks() -> None:
    import time

    limiter = RateLimiter(None)
    limiter.penalize(0.05)
    start = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - start >= 0.04


def test_time_windows_cover_range_without_gaps() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 1, tzinfo=UTC)
    windows = list(time_windows(start, start + timedelta(hours=60), timedelta(days=1)))
    assert len(windows) == 3
    assert windows[0][0] == start and windows[-1][1] == start + timedelta(hours=60)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
