"""WeCom group robot connector against a respx-mocked ``/cgi-bin/webhook/send``.

WeCom robots have no signing: the webhook ``key`` in the query string is the credential, so the
tests check the exact URL and that the key never reaches error texts or logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from connectors.base import Notification
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    PermanentError,
    ThrottledError,
)
from connectors.http import RetryPolicy
from connectors.wecom import WeComConnector, truncate_utf8

BASE = "http://wecom.test"
KEY = "693a91f6-7b2c-4bc4-97a0-0ec2a1fa5aaa"

NOTE = Notification(key="order:jd:9:exception", title="Order 9 blocked", text="> WMS refused: **stock short**",
                    at_mobiles=["13800001111", "13900002222"])


class FakeWebhook:
    def __init__(self) -> None:
        self.answers: list[Callable[[], httpx.Response]] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert str(request.url) == f"{BASE}/cgi-bin/webhook/send?key={KEY}"
        assert request.headers["content-type"] == "application/json"
        self.bodies.append(json.loads(request.content.decode("utf-8")))
        if self.answers:
            return self.answers.pop(0)()
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    fake = FakeWebhook()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="wecom.test").mock(side_effect=fake)
        yield fake


def make_connector(**settings: Any) -> WeComConnector:
    conn = WeComConnector.from_config("ops-wecom", {"base_url": BASE} | settings, {"key": KEY})
    assert isinstance(conn, WeComConnector)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2)
    return conn


def answer(errcode: int, errmsg: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(200, json={"errcode": errcode, "errmsg": errmsg})


async def test_notify_sends_markdown_then_a_text_mentioning_mobiles(webhook: FakeWebhook) -> None:
    conn = make_connector()
    summary = await conn.notify(NOTE)
    assert webhook.bodies == [
        {"msgtype": "markdown", "markdown": {"content": "### Order 9 blocked\n> WMS refused: **stock short**"}},
        {"msgtype": "text", "text": {"content": "Order 9 blocked",
                                     "mentioned_mobile_list": ["13800001111", "13900002222"]}},
    ]
    assert "accepted" in summary and "mentioned 2 by mobile" in summary


async def test_without_mentions_or_with_mentions_ignored_one_message_is_sent(webhook: FakeWebhook) -> None:
    await make_connector().notify(Notification(key="k", title="t", text="body"))
    await make_connector(mobile_mentions="ignore").notify(NOTE)
    assert [b["msgtype"] for b in webhook.bodies] == ["markdown", "markdown"]


async def test_long_content_is_cut_within_4096_bytes_at_a_character_boundary(webhook: FakeWebhook) -> None:
    note = Notification(key="k", title="长", text="库存" * 2000)  # 12 000 bytes of UTF-8
    summary = await make_connector().notify(note)
    content = webhook.bodies[0]["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096 and content.endswith("\n…") and "truncated" in summary
    assert truncate_utf8("ab", 10) == ("ab", False)
    cut, was_cut = truncate_utf8("é" * 10, 7, mark="")
    assert was_cut and cut == "é" * 3


async def test_a_failed_mention_does_not_fail_the_delivered_notification(webhook: FakeWebhook) -> None:
    webhook.answers = [answer(0, "ok"), answer(45009, "api freq out of limit")]
    summary = await make_connector().notify(NOTE)
    assert "mentions not delivered" in summary and "45009" in summary
    assert len(webhook.bodies) == 2


async def test_freq_limit_is_throttled_for_a_minute_and_later_sends_fail_fast(webhook: FakeWebhook) -> None:
    webhook.answers = [answer(45009, "api freq out of limit, hint: [1], more info at "
                                     "https://open.work.weixin.qq.com/devtool/query?e=45009")]
    conn = make_connector()
    with pytest.raises(ThrottledError) as caught:
        await conn.notify(NOTE)
    assert caught.value.retry_after == 60.0 and caught.value.code == "45009"
    with pytest.raises(ThrottledError):
        await conn.notify(NOTE)
    assert len(webhook.bodies) == 1


@pytest.mark.parametrize(("errcode", "errmsg", "error"), [
    (93000, "invalid webhook url, hint: [1], from ip: 1.2.3.4", AuthError),
    (40008, "invalid message type", InvalidRequestError),
    (40058, "markdown.content exceed max length 4096. invalid Request Parameter", InvalidRequestError),
    (40035, "invalid parameter", InvalidRequestError),
    (93004, "robot disabled", PermanentError),
])
async def test_errcodes_are_classified(webhook: FakeWebhook, errcode: int, errmsg: str,
                                       error: type[Exception]) -> None:
    webhook.answers = [answer(errcode, errmsg)]
    with pytest.raises(error) as caught:
        await make_connector().notify(NOTE)
    assert caught.value.code == str(errcode) and not caught.value.retryable
    assert len(webhook.bodies) == 1


async def test_system_busy_is_retried(webhook: FakeWebhook) -> None:
    webhook.answers = [answer(-1, "system busy")]
    await make_connector(mobile_mentions="ignore").notify(NOTE)
    assert len(webhook.bodies) == 2


async def test_key_stays_out_of_errors_and_logs(webhook: FakeWebhook, caplog: pytest.LogCaptureFixture) -> None:
    webhook.answers = [answer(93000, f"invalid webhook url /cgi-bin/webhook/send?key={KEY}")]
    conn = make_connector()
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events, pytest.raises(AuthError) as caught:
        await conn.notify(NOTE)
    shown = " ".join([str(caught.value), repr(conn), str(conn.describe()), str(caught.value.to_application_error()),
                      caplog.text, json.dumps(events, default=str)])
    assert KEY not in shown
    assert "webhook/send?***" in caplog.text


async def test_test_posts_a_connection_test_text(webhook: FakeWebhook) -> None:
    assert (await make_connector().test()).startswith("ok")
    assert webhook.bodies == [{"msgtype": "text", "text": {"content": "Tongdao connection test (ops-wecom)"}}]


@pytest.mark.parametrize(("settings", "secrets", "needle"), [
    ({"base_url": BASE}, {"key": " "}, "must not be empty"),
    ({"base_url": BASE}, {"key": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"}, "not the URL"),
    ({"base_url": f"{BASE}/cgi-bin/webhook/send?key={KEY}"}, {"key": KEY}, "without a query"),
    ({"base_url": BASE, "mobile_mentions": "always"}, {"key": KEY}, "mobile_mentions"),
])
def test_configuration_errors(settings: dict[str, Any], secrets: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        WeComConnector.from_config("x", settings, secrets)
    assert needle in str(caught.value) and KEY not in str(caught.value)


def test_default_base_url_is_the_real_host() -> None:
    conn = WeComConnector.from_config("x", {}, {"key": KEY})
    assert conn.settings.base_url == "https://qyapi.weixin.qq.com"
    assert conn.capabilities == frozenset({"notify"})
