"""DingTalk custom robot connector against a respx-mocked ``/robot/send``.

The fake endpoint recomputes the 加签 signature by hand from the documented rule ("把timestamp+"\\n"+密钥
当做签名字符串，使用HmacSHA256算法计算签名，然后进行Base64 encode，最后再把签名参数再进行urlEncode"),
never with the connector's helper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from connectors.base import Notification
from connectors.dingtalk import DingTalkConnector, dingtalk_sign, signed_query
from connectors.errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy

BASE = "http://dingtalk.test"
TOKEN = "6d3b7a1f0c9e4d2aa7b1c3e5f7091b2d4f6a8c0e2b4d6f8a0c2e4f6a8b0d2f4e"
SECRET = "SECtest-secret-0123456789"

# Known answer computed outside Python with the documented rule:
#   printf '%s\n%s' 1700000000005 SECtest-secret-0123456789 \
#     | openssl dgst -sha256 -hmac SECtest-secret-0123456789 -binary | base64
KAT_TS = 1700000000005
KAT_SIGN = "+PDOG0kze7g6Yz/pU6zHLFVqToQHVeP6TDctiLwQxa4="
KAT_SIGN_URLENCODED = "%2BPDOG0kze7g6Yz%2FpU6zHLFVqToQHVeP6TDctiLwQxa4%3D"


def hand_sign(timestamp: str) -> str:
    mac = hmac.new(SECRET.encode("utf-8"), (timestamp + "\n" + SECRET).encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_sign_known_answer() -> None:
    assert dingtalk_sign(SECRET, KAT_TS) == KAT_SIGN == hand_sign(str(KAT_TS))
    assert signed_query(TOKEN, SECRET, KAT_TS) == (
        f"access_token={TOKEN}&timestamp={KAT_TS}&sign={KAT_SIGN_URLENCODED}")
    assert quote_plus(KAT_SIGN) == KAT_SIGN_URLENCODED


class FakeRobot:
    """Checks the URL, query and signature exactly, then answers from ``answers`` (default ok)."""

    def __init__(self) -> None:
        self.answers: list[Callable[[], httpx.Response]] = []
        self.bodies: list[dict[str, Any]] = []
        self.raw_queries: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == "/robot/send"
        raw = request.url.query.decode()
        self.raw_queries.append(raw)
        names = [pair.split("=", 1)[0] for pair in raw.split("&")]
        assert names == ["access_token", "timestamp", "sign"]
        params = dict(pair.split("=", 1) for pair in raw.split("&"))
        assert params["access_token"] == TOKEN
        timestamp = params["timestamp"]
        assert timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 10_000, "milliseconds, now"
        assert params["sign"] == quote_plus(hand_sign(timestamp)), "sign must be base64 then URL-encoded"
        assert request.headers["content-type"] == "application/json;charset=utf-8"
        self.bodies.append(json.loads(request.content.decode("utf-8")))
        if self.answers:
            return self.answers.pop(0)()
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})


@pytest.fixture
def robot() -> Iterator[FakeRobot]:
    fake = FakeRobot()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="dingtalk.test").mock(side_effect=fake)
        yield fake


def make_connector(**settings: Any) -> DingTalkConnector:
    conn = DingTalkConnector.from_config("ops-dingtalk", {"base_url": BASE} | settings,
                                         {"access_token": TOKEN, "secret": SECRET})
    assert isinstance(conn, DingTalkConnector)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2)
    return conn


def answer(errcode: int, errmsg: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(200, json={"errcode": errcode, "errmsg": errmsg})


NOTE = Notification(key="order:tmall:1:shipped", title="Order 1 shipped", text="**SF1234567890** left WH-HZ01",
                    at_mobiles=["13800001111"])


async def test_notify_posts_the_documented_markdown_message(robot: FakeRobot) -> None:
    conn = make_connector()
    result = await conn.notify(NOTE)
    assert "accepted" in result and "Order 1 shipped" in result
    assert robot.bodies == [{
        "msgtype": "markdown",
        "markdown": {"title": "Order 1 shipped",
                     "text": "### Order 1 shipped\n\n**SF1234567890** left WH-HZ01\n\n@13800001111"},
        "at": {"atMobiles": ["13800001111"], "isAtAll": False},
    }]
    assert conn.capabilities == frozenset({"notify"})


async def test_mentions_already_in_the_text_and_keyword(robot: FakeRobot) -> None:
    conn = make_connector(keyword="通道")
    note = Notification(key="k", title="Stock low", text="cc @13800001111 please", at_mobiles=["13800001111", " "])
    await conn.notify(note)
    body = robot.bodies[0]
    assert body["markdown"]["text"] == "### Stock low\n\ncc @13800001111 please\n\n通道"
    assert body["at"] == {"atMobiles": ["13800001111"], "isAtAll": False}


async def test_each_attempt_is_signed_afresh_and_system_busy_is_retried(robot: FakeRobot) -> None:
    robot.answers = [answer(-1, "系统繁忙")]
    conn = make_connector()
    await conn.notify(NOTE)
    assert len(robot.bodies) == 2 and len(robot.raw_queries) == 2  # the fake checked both signatures


async def test_throttle_sets_the_documented_ban_and_later_sends_fail_fast(robot: FakeRobot) -> None:
    robot.answers = [answer(130101, "send too fast, exceed 20 times per minute")]
    conn = make_connector()
    with pytest.raises(ThrottledError) as caught:
        await conn.notify(NOTE)
    assert caught.value.retry_after == 600.0 and caught.value.code == "130101"
    assert caught.value.to_application_error().next_retry_delay.total_seconds() == 600.0
    with pytest.raises(ThrottledError):  # the limiter remembers the 10-minute ban: nothing is sent
        await conn.notify(NOTE)
    assert len(robot.bodies) == 1


@pytest.mark.parametrize(("errcode", "errmsg", "error"), [
    (310000, "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]", AuthError),
    (310000, "invalid timestamp", AuthError),
    (310000, "keywords not in content", AuthError),
    (310000, "ip 1.2.3.4 not in whitelist", AuthError),
    (300001, "token is not exist", AuthError),
    (300005, "token is not exist", AuthError),
    (400102, "机器人已停用", AuthError),
    (410100, "发送速度太快而限流", ThrottledError),
    (90030, "webhook over limit", ThrottledError),
    (400013, "群已被解散", ConfigurationError),
    (400105, "不支持的消息类型", InvalidRequestError),
    (430102, "含有不合适的文本", InvalidRequestError),
    (88, "unknown", PermanentError),
])
async def test_errcodes_are_classified(robot: FakeRobot, errcode: int, errmsg: str, error: type[Exception]) -> None:
    robot.answers = [answer(errcode, errmsg)]
    conn = make_connector()
    with pytest.raises(error) as caught:
        await conn.notify(NOTE)
    assert caught.value.code == str(errcode)
    if error is not ThrottledError:
        assert len(robot.bodies) == 1  # permanent: not retried
        assert not caught.value.retryable


async def test_stale_timestamp_hint() -> None:
    conn = make_connector()
    with respx.mock() as mock:
        mock.post(f"{BASE}/robot/send").respond(200, json={"errcode": 310000, "errmsg": "invalid timestamp"})
        with pytest.raises(AuthError, match="clock of this host"):
            await conn.notify(NOTE)


@pytest.mark.parametrize(("status", "error"), [(404, ConfigurationError), (403, AuthError),
                                               (400, InvalidRequestError), (503, TransientError)])
async def test_http_statuses(status: int, error: type[Exception]) -> None:
    conn = make_connector()
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=1, initial_s=0.001, max_s=0.01)
    with respx.mock() as mock:
        mock.post(f"{BASE}/robot/send").respond(status, text="nope")
        with pytest.raises(error):
            await conn.notify(NOTE)


async def test_secrets_stay_out_of_errors_and_logs(robot: FakeRobot, caplog: pytest.LogCaptureFixture) -> None:
    echo = f"sign not match: access_token={TOKEN} secret={SECRET} url=/robot/send?access_token={TOKEN}"
    robot.answers = [answer(310000, echo)]
    conn = make_connector()
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events, pytest.raises(AuthError) as caught:
        await conn.notify(NOTE)
    shown = " ".join([str(caught.value), repr(conn), str(conn.describe()),
                      str(caught.value.to_application_error()), caplog.text, json.dumps(events, default=str)])
    assert TOKEN not in shown and SECRET not in shown
    assert "sign not match" in str(caught.value)
    assert "robot/send?***" in caplog.text  # httpx's own request line, query hidden


async def test_test_posts_a_connection_test_text(robot: FakeRobot) -> None:
    conn = make_connector(keyword="通道")
    summary = await conn.test()
    assert summary.startswith("ok")
    assert robot.bodies[0]["msgtype"] == "text"
    assert "connection test" in robot.bodies[0]["text"]["content"] and "通道" in robot.bodies[0]["text"]["content"]


@pytest.mark.parametrize(("settings", "secrets", "needle"), [
    ({"base_url": BASE}, {"access_token": "", "secret": SECRET}, "must not be empty"),
    ({"base_url": BASE}, {"access_token": f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}",
                          "secret": SECRET}, "not the URL"),
    ({"base_url": f"{BASE}/robot/send?access_token={TOKEN}"}, {"access_token": TOKEN, "secret": SECRET},
     "without a query"),
    ({"base_url": BASE}, {"access_token": TOKEN}, "secret"),
])
def test_configuration_errors(settings: dict[str, Any], secrets: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DingTalkConnector.from_config("x", settings, secrets)
    assert needle in str(caught.value)
    assert SECRET not in str(caught.value) and TOKEN not in str(caught.value)


def test_default_base_url_is_the_real_host() -> None:
    conn = DingTalkConnector.from_config("x", {}, {"access_token": TOKEN, "secret": SECRET})
    assert conn.settings.base_url == "https://oapi.dingtalk.com"
