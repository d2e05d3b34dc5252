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


# --- Temporal owns long waits: the client only sleeps out short ones ---------------------------------


@respx.mock
async def test_long_retry_after_raises_at_once_with_retry_after() -> None:
    import time

    route = respx.get("http://x.test/a").mock(return_value=httpx.Response(429, headers={"Retry-After": "300"}))
    client = ApiClient("p", "http://x.test", retry=RetryPolicy(attempts=4, max_elapsed_s=60, max_s=10))
    started = time.monotonic()
    with pytest.raises(ThrottledError) as info:
        await client.request("GET", "/a")
    assert time.monotonic() - started < 1.0
    assert route.call_count == 1  # not retried: a 300 s wait is Temporal's job
    assert info.value.retry_after == pytest.approx(300, abs=1)
    assert info.value.platform == "p" and info.value.retryable
    app_err = info.value.to_application_error()
    assert not app_err.non_retryable and app_err.next_retry_delay.total_seconds() == pytest.approx(300, abs=1)


@respx.mock
async def test_requests_during_a_long_ban_fail_fast_without_calling_out() -> None:
    import time

    route = respx.get("http://x.test/a").mock(return_value=httpx.Response(429, headers={"Retry-After": "300"}))
    other = respx.get("http://x.test/b").mock(return_value=httpx.Response(200, json={}))
    client = ApiClient("p", "http://x.test", retry=RetryPolicy(attempts=4, max_elapsed_s=60, max_s=10))
    with pytest.raises(ThrottledError):
        await client.request("GET", "/a")
    started = time.monotonic()
    with pytest.raises(ThrottledError) as info:
        await client.request("GET", "/b")
    assert time.monotonic() - started < 0.5
    assert other.call_count == 0 and route.call_count == 1
    assert 295 < info.value.retry_after <= 300 and info.value.platform == "p"
    assert client.limiter.ban_remaining() > 295


@respx.mock
async def test_short_retry_after_is_slept_out_and_succeeds() -> None:
    import time

    route = respx.get("http://x.test/a").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json={"ok": 1})])
    client = ApiClient("p", "http://x.test", retry=RetryPolicy(attempts=3, max_elapsed_s=30, max_s=5))
    started = time.monotonic()
    resp = await client.request("GET", "/a")
    assert resp.json() == {"ok": 1} and route.call_count == 2
    assert time.monotonic() - started >= 0.9  # the limiter and tenacity honoured the 1 s


@respx.mock
async def test_retry_after_beyond_remaining_elapsed_budget_is_not_slept() -> None:
    route = respx.get("http://x.test/a").mock(return_value=httpx.Response(503, headers={"Retry-After": "8"}))
    client = ApiClient("p", "http://x.test", retry=RetryPolicy(attempts=4, max_elapsed_s=5, max_s=10))
    with pytest.raises(TransientError) as info:
        await client.request("GET", "/a")
    assert route.call_count == 1 and info.value.retry_after == 8.0


async def test_limiter_fails_fast_on_long_ban_and_waits_short_one() -> None:
    import time

    limiter = RateLimiter(None)
    limiter.penalize(120)
    with pytest.raises(ThrottledError) as info:
        await limiter.acquire(max_wait_s=10)
    assert 119 < info.value.retry_after <= 120
    short = RateLimiter(None)
    short.penalize(0.05)
    started = time.monotonic()
    await short.acquire(max_wait_s=10)
    assert time.monotonic() - started >= 0.04


def test_wait_budget() -> None:
    policy = RetryPolicy(max_elapsed_s=60, max_s=10)
    assert policy.wait_budget(0) == 10 and policy.wait_budget(55) == 5 and policy.wait_budget(70) == 0
