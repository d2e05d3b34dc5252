"""A local WeCom (企业微信) group robot webhook (``qyapi.weixin.qq.com/cgi-bin/webhook/send``), from the docs.

It never imports the hub's connectors: it is a second, independent reading of the documentation.

Rules enforced, and where each one comes from (WeCom "群机器人配置说明", document/path/91770; 全局错误码,
path/90455):

* ``POST /cgi-bin/webhook/send?key=KEY`` with a JSON body. The key is the robot's only credential (no
  signing): an unknown or missing key answers ``93000`` ``invalid webhook url`` (机器人webhookurl不合法
  或者机器人已经被移除出群).
* "每个机器人发送的消息不能超过20条/分钟" -> the 21st message in a sliding minute answers ``45009``
  ``api freq out of limit`` (no longer ban is documented for robots: a slot frees when the oldest
  message of the minute ages out; the simulator's clock, :class:`~simulators.clock.SimClock`).
* ``text``: ``content`` "最长不超过2048个字节，必须是utf8编码", ``mentioned_list`` (userids, "@all"),
  ``mentioned_mobile_list`` (mobiles, "@all"); ``markdown``: ``content`` "最长不超过4096个字节"; both
  support ``<@userid>`` in the content. An oversized content answers ``40058`` ``{type}.content exceed
  max length {n}. invalid Request Parameter`` (as the real server answers it), an unknown msgtype
  ``40008`` ``invalid message type``.
* Errors carry WeCom's shape: ``errmsg`` followed by ``, hint: [...], from ip: ..., more info at
  https://open.work.weixin.qq.com/devtool/query?e=CODE``.
* Faults (:mod:`simulators.faults`): ``error_5xx`` answers ``-1`` 系统繁忙 (or HTTP 503 with
  ``server_error_style="http503"``), ``throttle`` answers ``45009``.

Simulator choices where the documentation is silent (``# sim text``): a body that is not a JSON object
answers ``40035`` (不合法的参数); a missing or empty content answers ``40058``; checks run in the order
key, body, frequency.

Public API: ``WeComSimulator(keys, now=None, faults=None, per_minute=20, server_error_style="wecom")``;
``.app`` (ASGI: ``POST /cgi-bin/webhook/send``, ``GET /_sim/state``, ``GET|POST /_sim/faults``);
``.messages`` (every accepted message: ``robot`` (the key), ``msgtype``, ``title`` (the first line of the
content without its ``#`` heading marks), ``text`` (the whole content), ``mentioned_list``,
``mentioned_mobile_list``, ``body``); ``received(title_contains=..., text_contains=..., robot=...,
msgtype=...)``; ``state()``; ``reset()``; clock ``now()``/``set_now()``/``advance()``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector

MAX_BYTES = {"text": 2048, "markdown": 4096}
MESSAGE_TYPES = ("text", "markdown", "image", "news", "file", "voice", "template_card")


class WebhookError(Exception):
    def __init__(self, errcode: int, errmsg: str, counter: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode, self.errmsg, self.counter = errcode, errmsg, counter


def first_line_title(content: str) -> str:
    """A markdown message's "title": its first non-empty line without heading marks."""
    for line in content.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


class WeComSimulator(SimClock, SimAdmin):
    """Group robots identified by their webhook ``keys``."""

    def __init__(
        self,
        keys: Iterable[str],
        now: datetime | None = None,
        faults: FaultConfig | None = None,
        per_minute: int = 20,
        server_error_style: Literal["wecom", "http503"] = "wecom",
    ) -> None:
        self.keys = {str(k) for k in keys}
        if not self.keys:
            raise ValueError("at least one robot key is needed")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.per_minute = per_minute
        self.server_error_style = server_error_style
        self.faults = FaultInjector(faults or FaultConfig())
        self.start_clock(now)
        self._lock = threading.RLock()
        self.messages: list[dict[str, Any]] = []
        self._sent: dict[str, deque[datetime]] = {}
        self._counters: Counter[str] = Counter()
        self._hints = itertools.count(1)
        self.app = self._build_app()

    # -- inspection -----------------------------------------------------------------------------

    def received(self, title_contains: str | None = None, text_contains: str | None = None,
                 robot: str | None = None, msgtype: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages
                    if (title_contains is None or title_contains in m["title"])
                    and (text_contains is None or text_contains in m["text"])
                    and (robot is None or m["robot"] == robot)
                    and (msgtype is None or m["msgtype"] == msgtype)]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": len(self.messages),
                "by_type": dict(Counter(m["msgtype"] for m in self.messages)),
                "requests": self._counters["requests"],
                "rejected_keys": self._counters["rejected_keys"],
                "throttled": self._counters["throttled"],
                "bad_requests": self._counters["bad_requests"],
                "faults": dict(self.faults.injected),
            }

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self._sent.clear()
            self._counters.clear()

    # -- rules ------------------------------------------------------------------------------------

    def _errmsg(self, errcode: int, text: str) -> str:
        hint = f"{int(self.now().timestamp())}{next(self._hints):010d}"
        return (f"{text}, hint: [{hint}], from ip: 127.0.0.1, more info at "
                f"https://open.work.weixin.qq.com/devtool/query?e={errcode}")

    def _take_slot(self, key: str) -> None:
        now = self.now()
        window = self._sent.setdefault(key, deque())
        while window and now - window[0] >= timedelta(minutes=1):
            window.popleft()
        if len(window) >= self.per_minute:
            raise WebhookError(45009, "api freq out of limit", "throttled")
        window.append(now)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WebhookError(40035, "invalid parameter. Warning: wrong json format.", "bad_requests") from None
        if not isinstance(body, dict):
            raise WebhookError(40035, "invalid parameter", "bad_requests")  # sim text
        msgtype = body.get("msgtype")
        if msgtype not in MESSAGE_TYPES:
            raise WebhookError(40008, "invalid message type", "bad_requests")
        part = body.get(msgtype)
        if not isinstance(part, dict):
            raise WebhookError(40058, f"{msgtype} missing. invalid Request Parameter", "bad_requests")  # sim text
        if msgtype in MAX_BYTES:
            content = part.get("content")
            if not isinstance(content, str) or not content.strip():
                raise WebhookError(40058, f"{msgtype}.content missing. invalid Request Parameter",  # sim text
                                   "bad_requests")
            limit = MAX_BYTES[msgtype]
            if len(content.encode("utf-8")) > limit:
                raise WebhookError(40058, f"{msgtype}.content exceed max length {limit}. invalid Request Parameter",
                                   "bad_requests")
            for name in ("mentioned_list", "mentioned_mobile_list"):
                value = part.get(name, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise WebhookError(40058, f"{msgtype}.{name} invalid. invalid Request Parameter",  # sim text
                                       "bad_requests")
        return body

    def _accept(self, key: str, raw: bytes) -> dict[str, Any]:
        if key not in self.keys:
            raise WebhookError(93000, "invalid webhook url", "rejected_keys")
        body = self._parse(raw)
        self._take_slot(key)
        msgtype = body["msgtype"]
        part = body[msgtype]
        content = str(part.get("content") or "")
        message = {"robot": key, "msgtype": msgtype, "title": first_line_title(content), "text": content,
                   "mentioned_list": list(part.get("mentioned_list") or []),
                   "mentioned_mobile_list": list(part.get("mentioned_mobile_list") or []),
                   "body": body, "received_at": self.now()}
        self.messages.append(message)
        return message

    # -- the ASGI app -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/cgi-bin/webhook/send", self._send, methods=["POST"]),
        ])

    async def _send(self, request: Request) -> Response:
        with self._lock:
            self._counters["requests"] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            if self.server_error_style == "http503":
                return Response("Service Unavailable", status_code=503)
            return JSONResponse({"errcode": -1, "errmsg": self._errmsg(-1, "system busy")})
        if fault == "throttle":
            return JSONResponse({"errcode": 45009, "errmsg": self._errmsg(45009, "api freq out of limit")})
        raw = await request.body()
        try:
            with self._lock:
                self._accept(request.query_params.get("key", ""), raw)
        except WebhookError as exc:
            with self._lock:
                self._counters[exc.counter] += 1
                errmsg = self._errmsg(exc.errcode, exc.errmsg)
            return JSONResponse({"errcode": exc.errcode, "errmsg": errmsg})
        return JSONResponse({"errcode": 0, "errmsg": "ok"})
