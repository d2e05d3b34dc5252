"""A local DingTalk custom group robot endpoint (``oapi.dingtalk.com/robot/send``), written from the docs.

It never imports the hub's connectors: it is a second, independent reading of the documentation, so
a connector that misreads the signing fails here instead of agreeing with itself.

Rules enforced, and where each one comes from (DingTalk open platform, "自定义机器人接入",
"自定义机器人安全设置", "消息类型及数据格式"):

* ``POST /robot/send?access_token=...&timestamp=...&sign=...`` with a JSON body. An unknown or missing
  ``access_token`` answers ``{"errcode": 300001, "errmsg": "token is not exist"}`` (the answer
  integrations report).
* 加签: "timestamp ... 单位是毫秒，与请求调用时间误差不能超过1小时" -> ``310000`` ``invalid timestamp``;
  ``sign`` = urlEncode(base64(HmacSHA256(key=secret, msg=timestamp+"\\n"+secret))), UTF-8 -> the query
  is URL-decoded (a ``+`` left unencoded turns into a space, as on the real server) and compared with
  the expected base64; a mismatch or a missing sign is ``310000`` ``sign not match``.
* 自定义关键词 (optional, ``keywords``): "消息中至少包含其中1个关键词才可以发送成功" -> ``310000``
  ``keywords not in content``.
* Frequency: "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟" -> the 21st message in a
  sliding minute answers ``130101`` ``send too fast, exceed 20 times per minute`` and so does every
  message of the next 10 minutes (the simulator's clock, :class:`~simulators.clock.SimClock`).
* Message types text / link / markdown / actionCard / feedCard; ``markdown`` needs ``title`` and
  ``text``; ``at`` = ``{"atMobiles": [...], "atUserIds": [...], "isAtAll": bool}``.
* Faults (:mod:`simulators.faults`): ``error_5xx`` answers ``-1`` 系统繁忙 (or HTTP 503 with
  ``server_error_style="http503"``), ``throttle`` answers ``130101``.

Simulator choices where the documentation is silent (``# sim text``): a body that is not JSON, or a
message missing a required field, answers ``40035`` ``缺少参数 ...``; an unknown msgtype ``400105``
``不支持的消息类型``; checks run in the order token, timestamp, sign, frequency, body, keywords.

Public API: ``DingTalkSimulator(robots, keywords=(), now=None, faults=None, per_minute=20,
ban_seconds=600, server_error_style="dingtalk")`` with ``robots`` = access_token -> secret; ``.app``
(ASGI: ``POST /robot/send``, ``GET /_sim/state``, ``GET|POST /_sim/faults``); ``.messages`` (every
accepted message: ``robot``, ``msgtype``, ``title``, ``text``, ``at_mobiles``, ``at_user_ids``,
``is_at_all``, ``body``, ``at``); ``received(title_contains=..., text_contains=..., robot=...)``;
``state()``; ``reset()``; clock ``now()``/``set_now()``/``advance()``; helper ``robot_sign(secret,
timestamp)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector

TIMESTAMP_TOLERANCE = timedelta(hours=1)
MESSAGE_TYPES = ("text", "link", "markdown", "actionCard", "feedCard")


def robot_sign(secret: str, timestamp: str | int) -> str:
    """The documented signature before URL-encoding: base64(HmacSHA256(secret, timestamp + "\\n" + secret))."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


class RobotError(Exception):
    def __init__(self, errcode: int, errmsg: str, counter: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode, self.errmsg, self.counter = errcode, errmsg, counter


class DingTalkSimulator(SimClock, SimAdmin):
    """Custom robots with 加签: ``robots`` maps each webhook's access_token to its ``SEC...`` secret."""

    def __init__(
        self,
        robots: Mapping[str, str],
        keywords: Iterable[str] = (),
        now: datetime | None = None,
        faults: FaultConfig | None = None,
        per_minute: int = 20,
        ban_seconds: float = 600.0,
        server_error_style: Literal["dingtalk", "http503"] = "dingtalk",
    ) -> None:
        if not robots:
            raise ValueError("at least one robot (access_token -> secret) is needed")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.robots = {str(k): str(v) for k, v in robots.items()}
        self.keywords = tuple(keywords)
        self.per_minute = per_minute
        self.ban_seconds = ban_seconds
        self.server_error_style = server_error_style
        self.faults = FaultInjector(faults or FaultConfig())
        self.start_clock(now)
        self._lock = threading.RLock()
        self.messages: list[dict[str, Any]] = []
        self._sent: dict[str, deque[datetime]] = {}
        self._banned_until: dict[str, datetime] = {}
        self._counters: Counter[str] = Counter()
        self.app = self._build_app()

    # -- inspection -----------------------------------------------------------------------------

    def received(self, title_contains: str | None = None, text_contains: str | None = None,
                 robot: str | None = None) -> list[dict[str, Any]]:
        """Accepted messages whose title / text contain the given strings (and of one robot)."""
        with self._lock:
            return [m for m in self.messages
                    if (title_contains is None or title_contains in m["title"])
                    and (text_contains is None or text_contains in m["text"])
                    and (robot is None or m["robot"] == robot)]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": len(self.messages),
                "by_robot": dict(Counter(m["robot"] for m in self.messages)),
                "requests": self._counters["requests"],
                "rejected_tokens": self._counters["rejected_tokens"],
                "stale_timestamps": self._counters["stale_timestamps"],
                "rejected_signatures": self._counters["rejected_signatures"],
                "missing_keywords": self._counters["missing_keywords"],
                "throttled": self._counters["throttled"],
                "bad_requests": self._counters["bad_requests"],
                "faults": dict(self.faults.injected),
            }

    def reset(self) -> None:
        """Forget received messages, counters and frequency windows (the robots stay)."""
        with self._lock:
            self.messages.clear()
            self._sent.clear()
            self._banned_until.clear()
            self._counters.clear()

    # -- rules ------------------------------------------------------------------------------------

    def _check_timestamp(self, text: str) -> None:
        try:
            moment = datetime.fromtimestamp(int(text) / 1000, self.now().tzinfo)
        except (TypeError, ValueError, OverflowError, OSError):
            raise RobotError(310000, "invalid timestamp", "stale_timestamps") from None
        if abs(self.now() - moment) > TIMESTAMP_TOLERANCE:
            raise RobotError(310000, "invalid timestamp", "stale_timestamps")

    def _check_sign(self, secret: str, timestamp: str, sign: str) -> None:
        expected = robot_sign(secret, timestamp)
        if not sign or not hmac.compare_digest(expected.encode(), sign.encode()):
            raise RobotError(310000, "sign not match", "rejected_signatures")

    def _take_slot(self, token: str) -> None:
        """The sliding-minute limit; the 21st message bans the robot for ``ban_seconds``."""
        now = self.now()
        banned = self._banned_until.get(token)
        if banned is not None and now < banned:
            raise RobotError(130101, f"send too fast, exceed {self.per_minute} times per minute", "throttled")
        window = self._sent.setdefault(token, deque())
        while window and now - window[0] >= timedelta(minutes=1):
            window.popleft()
        if len(window) >= self.per_minute:
            self._banned_until[token] = now + timedelta(seconds=self.ban_seconds)
            raise RobotError(130101, f"send too fast, exceed {self.per_minute} times per minute", "throttled")
        window.append(now)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RobotError(40035, "缺少参数 json", "bad_requests") from None  # sim text
        if not isinstance(body, dict):
            raise RobotError(40035, "缺少参数 json", "bad_requests")  # sim text
        msgtype = body.get("msgtype")
        if msgtype not in MESSAGE_TYPES:
            raise RobotError(400105, "不支持的消息类型", "bad_requests")  # sim text
        part = body.get(msgtype)
        if not isinstance(part, dict):
            raise RobotError(40035, f"缺少参数 {msgtype}", "bad_requests")  # sim text
        required = {"text": ("content",), "markdown": ("title", "text"), "link": ("title", "text", "messageUrl"),
                    "actionCard": ("title", "text")}.get(msgtype, ())
        for name in required:
            if not isinstance(part.get(name), str) or not part[name].strip():
                raise RobotError(40035, f"缺少参数 {msgtype}.{name}", "bad_requests")  # sim text
        at = body.get("at", {})
        if not isinstance(at, dict) or not isinstance(at.get("atMobiles", []), list) \
                or not isinstance(at.get("isAtAll", False), bool):
            raise RobotError(40035, "缺少参数 at", "bad_requests")  # sim text
        return body

    def _accept(self, token: str, query: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        secret = self.robots.get(token)
        if secret is None:
            raise RobotError(300001, "token is not exist", "rejected_tokens")
        timestamp = query.get("timestamp", "")
        self._check_timestamp(timestamp)
        self._check_sign(secret, timestamp, query.get("sign", ""))
        body = self._parse(raw)
        msgtype = body["msgtype"]
        part = body[msgtype]
        title = str(part.get("title") or "")
        text = str(part.get("text") or part.get("content") or "")
        if self.keywords and not any(k in f"{title}\n{text}" for k in self.keywords):
            raise RobotError(310000, "keywords not in content", "missing_keywords")
        self._take_slot(token)
        at = body.get("at") or {}
        message = {"robot": token, "msgtype": msgtype, "title": title, "text": text,
                   "at_mobiles": [str(m) for m in at.get("atMobiles") or []],
                   "at_user_ids": [str(u) for u in at.get("atUserIds") or []],
                   "is_at_all": bool(at.get("isAtAll", False)), "at": at, "body": body,
                   "received_at": self.now()}
        self.messages.append(message)
        return message

    # -- the ASGI app -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/robot/send", self._send, methods=["POST"]),
        ])

    async def _send(self, request: Request) -> Response:
        with self._lock:
            self._counters["requests"] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            if self.server_error_style == "http503":
                return Response("Service Unavailable", status_code=503)
            return JSONResponse({"errcode": -1, "errmsg": "系统繁忙"})
        if fault == "throttle":
            return JSONResponse({"errcode": 130101, "errmsg": f"send too fast, exceed {self.per_minute} times per "
                                                              "minute"})
        query = dict(request.query_params)
        raw = await request.body()
        try:
            with self._lock:
                self._accept(query.get("access_token", ""), query, raw)
        except RobotError as exc:
            with self._lock:
                self._counters[exc.counter] += 1
            return JSONResponse({"errcode": exc.errcode, "errmsg": exc.errmsg})
        return JSONResponse({"errcode": 0, "errmsg": "ok"})
