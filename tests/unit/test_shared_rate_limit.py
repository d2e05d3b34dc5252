"""A platform's rate limit holds across worker processes: their limiters count in one bucket in
the hub's store (two store handles on one database stand for two processes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.errors import ThrottledError
from connectors.ratelimit import RateLimiter
from store import open_store
from store.ratebudget import StoreRateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def two_processes(tmp_path: Path, clock: Callable[[], float]) -> tuple[StoreRateBudget, StoreRateBudget]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    return (StoreRateBudget(open_store(url, None, tmp_path), clock),
            StoreRateBudget(open_store(url, None, tmp_path, run_migrations=False), clock))


def test_two_processes_share_one_bucket(tmp_path: Path) -> None:
    clock = Clock()
    a, b = two_processes(tmp_path, clock)
    # rate 2/s, burst 2: at one instant only two tokens exist, whoever asks
    assert a.take("shop", 2.0, 2.0) == 0.0
    assert b.take("shop", 2.0, 2.0) == 0.0
    wait_a, wait_b = a.take("shop", 2.0, 2.0), b.take("shop", 2.0, 2.0)
    assert wait_a == pytest.approx(0.5) and wait_b == pytest.approx(0.5)
    clock.now += 1.0  # two more tokens in a second, shared
    granted = [p.take("shop", 2.0, 2.0) == 0.0 for p in (a, b, a, b)]
    assert granted.count(True) == 2
    assert a.take("other-shop", 2.0, 2.0) == 0.0  # buckets are per key


def test_a_ban_seen_by_one_process_holds_in_the_other(tmp_path: Path) -> None:
    clock = Clock()
    a, b = two_processes(tmp_path, clock)
    a.ban("shop", clock.now + 300)
    assert b.take("shop", 5.0, 5.0) == pytest.approx(300)
    assert b.banned_until("shop") == clock.now + 300


async def test_limiters_in_two_processes_fail_fast_on_a_shared_long_ban(tmp_path: Path) -> None:
    a, b = two_processes(tmp_path, time.time)  # real time for the limiters
    first, second = RateLimiter(10.0), RateLimiter(10.0)
    first.share("shop", a)
    second.share("shop", b)
    await first.acquire(max_wait_s=1.0)
    first.penalize(300)  # process 1 got a 429 with Retry-After: 300
    with pytest.raises(ThrottledError) as caught:
        await second.acquire(max_wait_s=1.0)  # process 2 does not hammer the platform meanwhile
    assert caught.value.retry_after is not None and caught.value.retry_after > 200
