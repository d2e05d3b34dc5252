"""The DingTalk and WeCom robot simulators, and the real notifier connectors against them.

The simulators are a second reading of the platforms' docs (they import no connector): the
connectors are pointed at them in process (httpx ASGI transport) and once over a real socket
(:class:`simulators.server.BackgroundServer`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from connectors.base import Notification
from connectors.dingtalk import DingTalkConnector
from connectors.errors import AuthError, ThrottledError, TransientError
from connectors.http import RetryPolicy
from connectors.wecom import WeComConnector
from simulators.dingtalk import DingTalkSimulator, robot_sign
from simulators.faults import FaultConfig
from simulators.server import BackgroundServer
from simulators.wecom import WeComSimulator

TOKEN = "d1a2b3c4e5f60718293a4b5c6d7e8f90d1a2b3c4e5f60718293a4b5c6d7e8f90"
SECRET = "SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0"
KEY = "5f8e2c1a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"


def note(n: int = 1, mobiles: tuple[str, ...] = ()) -> Notification:
    return Notification(key=f"order:{n}:shipped", title=f"Order {n} shipped", text=f"tracking **SF{n:010d}**",
                        at_mobiles=list(mobiles))


def dingtalk(sim: DingTalkSimulator, *, token: str = TOKEN, secret: str = SECRET, **settings: Any) -> DingTalkConnector:
    conn = DingTalkConnector.from_config("ops-ding", {"base_url": "http://dingtalk.sim"} | settings,
                                         {"access_token": token, "secret": secret})
    assert isinstance(conn, DingTalkConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=2, initial_s=0.001, max_s=0.01)
    return conn


def wecom(sim: WeComSimulator, *, key: str = KEY, **settings: Any) -> WeComConnector:
    conn = WeComConnector.from_config("ops-wecom", {"base_url": "http://wecom.sim"} | settings, {"key": key})
    assert isinstance(conn, WeComConnector)
    conn.api.transport = httpx.ASGITransport(app=sim.app)
    conn.api.retry = RetryPolicy(attempts=2, max_elapsed_s=2, initial_s=0.001, max_s=0.01)
    return conn


# --- DingTalk ----------------------------------------------------------------------------------------


async def test_dingtalk_accepts_a_signed_markdown_message() -> None:
    sim = DingTalkSimulator({TOKEN: SECRET})
    summary = await dingtalk(sim).notify(note(1, ("13800001111",)))
    assert "accepted" in summary
    [message] = sim.received(title_contains="Order 1")
    assert message["msgtype"] == "markdown" and message["robot"] == TOKEN
    assert "SF0000000001" in message["text"] and "@13800001111" in message["text"]
    assert message["at_mobiles"] == ["13800001111"] and message["is_at_all"] is False
    assert sim.received(text_contains="nothing like this") == []
    assert sim.state()["accepted"] == 1


async def test_dingtalk_refuses_a_bad_secret_and_an_unknown_token() -> None:
    sim = DingTalkSimulator({TOKEN: SECRET})
    with pytest.raises(AuthError, match="sign not match"):
        await dingtalk(sim, secret="SECnot-the-right-one").notify(note())
    with pytest.raises(AuthError, match="token is not exist"):
        await dingtalk(sim, token="0" * 64).notify(note())
    state = sim.state()
    assert state["rejected_signatures"] == 1 and state["rejected_tokens"] == 1 and state["accepted"] == 0


@pytest.mark.parametrize("skew_s", [3601, -3601])
async def test_dingtalk_refuses_a_timestamp_more_than_an_hour_off(skew_s: int) -> None:
    sim = DingTalkSimulator({TOKEN: SECRET})
    sim.advance(skew_s)  # the platform's clock moves; the connector stamps its own (now) time
    with pytest.raises(AuthError, match="invalid timestamp"):
        await dingtalk(sim).notify(note())
    assert sim.state()["stale_timestamps"] == 1
    sim.advance(-skew_s + (3500 if skew_s > 0 else -3500))  # 58 min off: still inside the hour
    await dingtalk(sim).notify(note())
    assert sim.state()["accepted"] == 1


async def test_dingtalk_throttles_the_21st_message_of_a_minute_for_ten_minutes() -> None:
    sim = DingTalkSimulator({TOKEN: SECRET})
    conn = dingtalk(sim)
    for n in range(20):
        await conn.notify(note(n))
    with pytest.raises(ThrottledError) as caught:
        await conn.notify(note(20))
    assert caught.value.retry_after == 600.0 and caught.value.code == "130101"
    assert sim.state()["throttled"] == 1 and len(sim.messages) == 20
    sim.advance(120)  # the minute has passed, but the ban lasts 10 minutes
    with pytest.raises(ThrottledError):
        await dingtalk(sim).notify(note(21))
    sim.advance(481)
    await dingtalk(sim).notify(note(22))  # a fresh instance: the old one remembers the ban itself
    assert len(sim.messages) == 21


async def test_dingtalk_keywords_and_faults() -> None:
    sim = DingTalkSimulator({TOKEN: SECRET}, keywords=["通道"])
    with pytest.raises(AuthError, match="keywords not in content"):
        await dingtalk(sim).notify(note())
    await dingtalk(sim, keyword="通道").notify(note())
    assert (await dingtalk(sim, keyword="通道").test()).startswith("ok")
    assert [m["msgtype"] for m in sim.messages] == ["markdown", "text"]
    busy = DingTalkSimulator({TOKEN: SECRET}, faults=FaultConfig(error_5xx_rate=1.0))
    with pytest.raises(TransientError):
        await dingtalk(busy).notify(note())
    assert busy.state()["faults"] == {"error_5xx": 2} and busy.messages == []  # retried once, then raised


async def test_dingtalk_sim_wants_the_sign_url_encoded() -> None:
    """A ``+`` of the base64 sign sent without URL-encoding reads as a space: refused, as documented."""
    sim = DingTalkSimulator({TOKEN: SECRET})
    stamp = int(time.time() * 1000)
    while "+" not in robot_sign(SECRET, stamp):
        stamp += 1
    mac = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    sign = base64.b64encode(mac).decode()
    assert sign == robot_sign(SECRET, stamp)
    body = {"msgtype": "text", "text": {"content": "hello"}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://dingtalk.sim") as c:
        raw = await c.post(f"/robot/send?access_token={TOKEN}&timestamp={stamp}&sign={sign}", json=body)
        assert raw.json() == {"errcode": 310000, "errmsg": "sign not match"}
        good = await c.post(f"/robot/send?access_token={TOKEN}&timestamp={stamp}&sign={quote_plus(sign)}",
                            json=body)
        assert good.json() == {"errcode": 0, "errmsg": "ok"}
        bad = await c.post(f"/robot/send?access_token={TOKEN}&timestamp={stamp}&sign={quote_plus(sign)}",
                           json={"msgtype": "markdown", "markdown": {"text": "no title"}})
        assert bad.json()["errcode"] == 40035
        state = (await c.get("/_sim/state")).json()
    assert state["accepted"] == 1 and state["rejected_signatures"] == 1 and state["bad_requests"] == 1


# --- WeCom ---------------------------------------------------------------------------------------------


async def test_wecom_accepts_markdown_and_the_mention_text() -> None:
    sim = WeComSimulator([KEY])
    summary = await wecom(sim).notify(note(7, ("13800001111",)))
    assert "mentioned 1 by mobile" in summary
    [markdown] = sim.received(title_contains="Order 7", msgtype="markdown")
    assert markdown["text"].startswith("### Order 7 shipped\n") and "SF0000000007" in markdown["text"]
    [mention] = sim.received(msgtype="text")
    assert mention["mentioned_mobile_list"] == ["13800001111"] and mention["robot"] == KEY
    assert sim.state()["by_type"] == {"markdown": 1, "text": 1}


async def test_wecom_refuses_an_unknown_key() -> None:
    sim = WeComSimulator([KEY])
    with pytest.raises(AuthError, match="invalid webhook url") as caught:
        await wecom(sim, key="00000000-0000-0000-0000-000000000000").notify(note())
    assert caught.value.code == "93000" and sim.state()["rejected_keys"] == 1 and sim.messages == []


async def test_wecom_throttles_the_21st_message_of_a_minute() -> None:
    sim = WeComSimulator([KEY])
    conn = wecom(sim)
    for n in range(20):
        await conn.notify(note(n))
    with pytest.raises(ThrottledError) as caught:
        await conn.notify(note(20))
    assert caught.value.retry_after == 60.0 and caught.value.code == "45009"
    assert sim.state()["throttled"] == 1 and len(sim.messages) == 20
    sim.advance(60)  # the oldest messages age out of the minute
    await wecom(sim).notify(note(21))
    assert len(sim.messages) == 21


async def test_wecom_content_limits() -> None:
    sim = WeComSimulator([KEY])
    big = Notification(key="k", title="大", text="库存" * 2000)
    assert "truncated" in await wecom(sim).notify(big)  # the connector cuts it to 4096 bytes
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://wecom.sim") as c:
        too_long = await c.post(f"/cgi-bin/webhook/send?key={KEY}",
                                json={"msgtype": "markdown", "markdown": {"content": "x" * 4097}})
        assert too_long.json()["errcode"] == 40058
        assert too_long.json()["errmsg"].startswith("markdown.content exceed max length 4096")
        unknown = await c.post(f"/cgi-bin/webhook/send?key={KEY}", json={"msgtype": "audio", "audio": {}})
        assert unknown.json()["errcode"] == 40008
    assert sim.state()["accepted"] == 1 and sim.state()["bad_requests"] == 2


# --- over a real socket ---------------------------------------------------------------------------------


async def test_both_connectors_over_http() -> None:
    ding, wx = DingTalkSimulator({TOKEN: SECRET}), WeComSimulator([KEY])
    with BackgroundServer(ding.app) as ding_server, BackgroundServer(wx.app) as wx_server:
        d = DingTalkConnector.from_config("d", {"base_url": ding_server.base_url},
                                          {"access_token": TOKEN, "secret": SECRET})
        w = WeComConnector.from_config("w", {"base_url": wx_server.base_url}, {"key": KEY})
        wrong = DingTalkConnector.from_config("x", {"base_url": ding_server.base_url},
                                              {"access_token": TOKEN, "secret": "SECwrong"})
        try:
            await d.notify(note(1))
            await w.notify(note(2))
            with pytest.raises(AuthError):
                await wrong.notify(note(3))
        finally:
            for conn in (d, w, wrong):
                await conn.aclose()
    assert len(ding.received(title_contains="Order 1")) == 1
    assert len(wx.received(title_contains="Order 2")) == 1
