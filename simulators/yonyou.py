"""A local Yonyou YonBIP / YonSuite open platform (用友开放平台), written from Yonyou's documentation.

It never imports the hub's connectors, mappings or canonical model: a second, independent reading
of the protocol, so a connector that misreads it fails here instead of agreeing with itself.

Rules enforced, and where each one comes from (open.yonyoucloud.com 文档中心 pages, as copied):

* Token -- "获取 access_token": ``GET /iuap-api-auth/open-auth/selfAppAuth/base/v1/getAccessToken`` (and
  the pre-2023-07-21 ``/open-auth/selfAppAuth/getAccessToken``) with ``appKey``, ``timestamp`` (ms) and
  ``signature`` = URLEncode(Base64(HmacSHA256(appSecret, sorted name+value pairs without signature)));
  answer ``{"code": "00000", "message": "成功！", "data": {"access_token", "expire": 7200}}``. An unknown
  app key is answered ``10018 应用不存在或appKey已停用`` (as probed by others). The documentation gives no
  timestamp window nor codes for a bad signature or timestamp: ``timestamp_tolerance_s`` (5 minutes)
  and the codes ``10013`` / ``10019`` are this simulator's choice (``# sim``).
* Gateway -- ``/iuap-api-gateway/yonbip/...?access_token=...``: an unregistered path is HTTP 404
  ``310404`` before any token check; no token ``310001``; an unknown, expired or revoked token
  ``{"code": "310036", "message": "非法token"}`` with HTTP 200. Call limits answer ``310046`` (one of the
  documented limit codes; which one means what is not documented) -- per app, ``calls_per_second``.
* Answers ``{"code": "200", "message": "操作成功", "data"}``; refusals ``{"code": "999", "message"}`` (the
  documented 服务端逻辑异常 / 保存失败 code) or ``1002 数据不存在``. Batch operations answer code 200 with
  ``data: {count, sucessCount (sic), failCount, messages, infos, failInfos}``.
* 销售订单 (``/yonbip/sd/voucherorder/``): ``singleSave`` (``{"data": {..., "_status": "Insert"}}``; header
  ``salesOrgId``, ``transactionTypeId``, ``vouchdate`` as ``yyyy-MM-dd HH:mm:ss``, ``agentId``,
  ``settlementOrgId``, ``invoiceAgentId``, ``payMoney`` equal to the lines' ``oriSum``,
  ``orderPrices!currency``; lines ``_status``, ``productId``, ``qty``, ``oriSum``), ``list`` (``pageIndex``,
  ``pageSize`` required; ``code``; ``isSum`` = header rows only), ``detail?id=``, ``batchaudit``,
  ``batchunaudit``, ``batchunsubmit``, ``delete`` (``{"data": {"id": [...], "code": [...]}}``). Status 0 开立,
  3 审核中, 1 已审核, 2 已关闭.
* 销售出库单 (``/yonbip/scm/salesout/``): ``mergeSourceData/save`` (``mergeSourceData: true``, ``bustype``,
  ``details[]`` with ``_status``, ``qty``, ``sourceid``, ``sourceautoid``, ``makeRuleCode``; ``code`` may be
  left out: numbered XSCK...), ``list``, ``detail?id=`` (with ``impactStockTiming`` 0 save / 1 audit),
  ``batchunaudit``, ``batchunsubmit``. MDD idempotency: a ``resubmitCheckKey`` used before on the same API
  is refused (``10004`` 重复提交, the code-table spelling).
* Vouchers: ``/yonbip/fi/ficloud/openapi/voucher/addVoucher`` (top-level fields: ``accbookCode``,
  ``voucherTypeCode``, ``makerMobile``/``makerEmail`` "不能同时为空", ``bodies[]`` with ``description``,
  ``accsubjectCode`` and debit xor credit, "原币本币都要填写"; ``businessId`` 业务幂等校验; errors code
  ``404`` 凭证保存不成功) and 凭证列表查询 ``/yonbip/fi/ficloud/voucher/queryconditiondetail`` (``accbook``
  id, ``conditions`` that must include ``period``; answer ``{totalcount, code: 200, data: [{header, body}]}``).

Rules the documentation leaves open, chosen here (``# sim``): a source order must be audited before
an outbound is made from it; a sales order with live outbounds cannot be un-audited or deleted; the
refusal texts; bill ids are large integers as in the documented examples.

Public API: ``YonyouSimulator(app_key, app_secret, *, token_ttl_s, timestamp_tolerance_s,
calls_per_second, products, impact_stock_timing, accbook_code, accbook_id, voucher_types, now,
faults)``; ``.app`` (ASGI, also ``GET /_sim/state``, ``POST /_sim/expire_tokens``); ``state()``,
``sales_orders()``, ``outbounds()``, ``vouchers()``, ``expire_tokens()``, ``add_sales_order(...)``,
``set_order_status(code, status)``, ``set_outbound_status(code, status)``, ``signed_token_query(...)``,
counters in ``.counters``; ``now()``/``set_now()``/``advance()`` from :class:`SimClock`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector
from simulators.ratelimit import CallBucket

AUTH_PREFIX = "/iuap-api-auth"
GATEWAY_PREFIX = "/iuap-api-gateway"
TOKEN_PATHS = ("/open-auth/selfAppAuth/base/v1/getAccessToken", "/open-auth/selfAppAuth/getAccessToken")
CHINA = timezone(timedelta(hours=8))
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CENT = Decimal("0.01")

OPEN, AUDITED, CLOSED, APPROVING = 0, 1, 2, 3
MAKE_RULES = frozenset({"orderTosalesout"})


class Refusal(Exception):
    """A business refusal: ``{"code": code, "message": message}`` with HTTP 200."""

    def __init__(self, message: str, code: str = "999") -> None:
        super().__init__(message)
        self.code, self.message = code, message


def token_signature(params: Mapping[str, str], app_secret: str) -> str:
    """Base64(HmacSHA256(secret, name+value pairs sorted by name, ``signature`` left out))."""
    plain = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "signature")
    return base64.b64encode(hmac.new(app_secret.encode(), plain.encode(), hashlib.sha256).digest()).decode()


def _dec(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Refusal(f"{what}不是有效数字: {value!r}") from None  # sim text
    if not number.is_finite():
        raise Refusal(f"{what}不是有效数字: {value!r}")
    return number


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def ok(data: Any) -> JSONResponse:
    return JSONResponse({"code": "200", "message": "操作成功", "data": data})


def batch_answer(infos: list[dict[str, Any]], fails: list[dict[str, Any]]) -> JSONResponse:
    return ok({"count": len(infos) + len(fails), "sucessCount": len(infos), "failCount": len(fails),
               "messages": [f["message"] for f in fails], "infos": infos, "failInfos": fails})


class YonyouSimulator(SimClock):
    def __init__(
        self,
        app_key: str = "sim-app-key",
        app_secret: str = "sim-app-secret",
        *,
        token_ttl_s: int = 7200,
        timestamp_tolerance_s: float = 300.0,
        calls_per_second: float = 50.0,
        products: Iterable[str] | None = None,
        impact_stock_timing: str = "1",
        accbook_code: str = "book001",
        accbook_id: str = "F87D4834-27D4-4A30-A931-2497105F475B",
        voucher_types: Iterable[str] = ("01",),
        now: datetime | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        self.start_clock(now)
        self.apps = {app_key: app_secret}
        self.token_ttl_s = token_ttl_s
        self.timestamp_tolerance = timedelta(seconds=timestamp_tolerance_s)
        self.calls_per_second = calls_per_second
        self.products = None if products is None else set(products)
        self.impact_stock_timing = impact_stock_timing
        self.accbook_code, self.accbook_id = accbook_code, accbook_id
        self.voucher_types = set(voucher_types)
        self.faults = FaultInjector(faults or FaultConfig())
        self.counters: Counter[str] = Counter()
        self._tokens: dict[str, tuple[str, datetime]] = {}  # token -> (app key, expires)
        self._buckets: dict[str, CallBucket] = {}
        self._orders: dict[int, dict[str, Any]] = {}
        self._outbounds: dict[int, dict[str, Any]] = {}
        self._vouchers: dict[str, dict[str, Any]] = {}
        self._resubmit: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(2561615199786496)
        self._outbound_seq = itertools.count(1)
        self._bill_codes: Counter[str] = Counter()
        self._lock = threading.RLock()
        self.app = self._build_app()

    # --- Python API ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": dict(self.counters), "tokens": len(self._tokens),
                    "sales_orders": len(self._orders), "outbounds": len(self._outbounds),
                    "vouchers": len(self._vouchers), "faults": dict(self.faults.injected)}

    def sales_orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._orders.values()]

    def outbounds(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._outbounds.values()]

    def vouchers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(v) for v in self._vouchers.values()]

    def expire_tokens(self) -> int:
        """Revoke every issued token now (as an early expiry); returns how many there were."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    def set_faults(self, config: FaultConfig) -> None:
        self.faults.reconfigure(config)

    def signed_token_query(self, app_key: str | None = None, timestamp_ms: int | None = None,
                           app_secret: str | None = None) -> str:
        """A token request query string as the documentation builds it (for tests)."""
        key = app_key or next(iter(self.apps))
        ts = timestamp_ms if timestamp_ms is not None else int(self.now().timestamp() * 1000)
        sig = token_signature({"appKey": key, "timestamp": str(ts)}, app_secret or self.apps.get(key, ""))
        return f"appKey={quote(key, safe='')}&timestamp={ts}&signature={quote(sig, safe='')}"

    def add_sales_order(self, code: str, lines: Iterable[tuple[str, float | int]], *, status: int = AUDITED,
                        agent: str = "CUST001") -> dict[str, Any]:
        """Seed a sales order (``lines``: (product code, quantity)); audited unless told."""
        data = {"salesOrgId": "org01", "transactionTypeId": "SO01", "agentId": agent, "settlementOrgId": "org01",
                "invoiceAgentId": agent, "vouchdate": self.now().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "code": code, "orderPrices!currency": "CNY", "_status": "Insert",
                "orderDetails": [{"_status": "Insert", "productId": sku, "qty": qty, "oriSum": 0}
                                 for sku, qty in lines],
                "payMoney": 0}
        with self._lock:
            order = self._create_order(data)
            order["status"] = status
            return copy.deepcopy(order)

    def set_order_status(self, code: str, status: int) -> None:
        with self._lock:
            self._order_by_code(code)["status"] = status

    def set_outbound_status(self, code: str, status: int) -> None:
        with self._lock:
            bill = next((o for o in self._outbounds.values() if o["code"] == code), None)
            if bill is None:
                raise KeyError(code)
            if status == AUDITED and bill["status"] != AUDITED and bill["impactStockTiming"] == "1":
                self._move_stock(bill, +1)
            if status != AUDITED and bill["status"] == AUDITED and bill["impactStockTiming"] == "1":
                self._move_stock(bill, -1)
            bill["status"] = status

    # --- app -----------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        async def sim_state(request: Request) -> Response:
            return JSONResponse(self.state())

        async def sim_expire(request: Request) -> Response:
            return JSONResponse({"expired": self.expire_tokens()})

        routes = [Route(AUTH_PREFIX + path, self._token_endpoint, methods=["GET"]) for path in TOKEN_PATHS]
        routes += [Route("/_sim/state", sim_state, methods=["GET"]),
                   Route("/_sim/expire_tokens", sim_expire, methods=["POST"]),
                   Route(GATEWAY_PREFIX + "/{path:path}", self._gateway, methods=["GET", "POST"])]
        return Starlette(routes=routes)

    async def _token_endpoint(self, request: Request) -> Response:
        self.counters["token_requests"] += 1
        q = request.query_params
        app_key, timestamp, signature = q.get("appKey", ""), q.get("timestamp", ""), q.get("signature", "")
        with self._lock:
            if not app_key or not timestamp or not signature:
                return self._token_refusal("10001", "参数不完整：appKey、timestamp、signature 必填")  # sim
            app_secret = self.apps.get(app_key)
            if app_secret is None:
                return self._token_refusal("10018", "应用不存在或appKey已停用")
            if not timestamp.isdigit():
                return self._token_refusal("10013", "时间戳格式错误，应为毫秒时间戳")  # sim
            sent = datetime.fromtimestamp(int(timestamp) / 1000, tz=CHINA)
            if abs(sent - self.now()) > self.timestamp_tolerance:
                return self._token_refusal("10013", "时间戳已过期")  # sim
            params = {k: v for k, v in q.items() if k != "signature"}
            if not hmac.compare_digest(token_signature(params, app_secret), signature):
                return self._token_refusal("10019", "签名校验失败")  # sim
            token = secrets.token_urlsafe(24) + "+/="  # new tokens are long and carry special characters
            self._tokens[token] = (app_key, self.now() + timedelta(seconds=self.token_ttl_s))
            self.counters["tokens_issued"] += 1
        return JSONResponse({"code": "00000", "message": "成功！",
                             "data": {"access_token": token, "expire": self.token_ttl_s}})

    def _token_refusal(self, code: str, message: str) -> Response:
        self.counters["token_refusals"] += 1
        return JSONResponse({"code": code, "message": message, "data": None})

    async def _gateway(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        handler = self._handlers().get((request.method, path))
        if handler is None:
            self.counters["unregistered"] += 1
            return JSONResponse({"code": "310404", "message": f"API不存在: /{path}"}, status_code=404)
        token = request.query_params.get("access_token", "")
        with self._lock:
            if not token:
                self.counters["token_missing"] += 1
                return JSONResponse({"code": "310001", "message": "缺少access_token"})  # sim text
            issued = self._tokens.get(token)
            if issued is None or issued[1] <= self.now():
                self._tokens.pop(token, None)
                self.counters["token_invalid"] += 1
                return JSONResponse({"code": "310036", "message": "非法token"})
            bucket = self._buckets.setdefault(issued[0], CallBucket(self.calls_per_second))
            if not bucket.take():
                self.counters["throttled"] += 1
                return JSONResponse({"code": "310046", "message": "API调用频率超过限制"})  # sim text
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            return JSONResponse({"code": "500", "message": "服务暂不可用"}, status_code=503)
        if fault == "throttle":
            self.counters["throttled"] += 1
            return JSONResponse({"code": "310046", "message": "API调用频率超过限制"})
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"code": "999", "message": "请求体不是合法的JSON"})  # sim text
        self.counters[f"{request.method} /{path}"] += 1
        try:
            with self._lock:
                return handler(body, request.query_params)
        except Refusal as refusal:
            self.counters["refusals"] += 1
            return JSONResponse({"code": refusal.code, "message": refusal.message})

    def _handlers(self) -> dict[tuple[str, str], Any]:
        so, out = "yonbip/sd/voucherorder/", "yonbip/scm/salesout/"
        return {
            ("POST", so + "singleSave"): self._so_save,
            ("POST", so + "list"): self._so_list,
            ("GET", so + "detail"): self._so_detail,
            ("POST", so + "batchaudit"): lambda b, q: self._so_transition(b, {OPEN: AUDITED}, "审核"),
            ("POST", so + "batchunaudit"): lambda b, q: self._so_transition(b, {AUDITED: OPEN}, "弃审"),
            ("POST", so + "batchunsubmit"): lambda b, q: self._so_transition(b, {APPROVING: OPEN}, "撤回"),
            ("POST", so + "delete"): self._so_delete,
            ("POST", out + "mergeSourceData/save"): self._out_save,
            ("POST", out + "list"): self._out_list,
            ("GET", out + "detail"): self._out_detail,
            ("POST", out + "batchunaudit"): lambda b, q: self._out_transition(b, {AUDITED: OPEN}, "弃审"),
            ("POST", out + "batchunsubmit"): lambda b, q: self._out_transition(b, {APPROVING: OPEN}, "撤回"),
            ("POST", "yonbip/fi/ficloud/openapi/voucher/addVoucher"): self._voucher_add,
            ("POST", "yonbip/fi/ficloud/voucher/queryconditiondetail"): self._voucher_query,
        }

    # --- shared ----------------------------------------------------------------------------------

    @staticmethod
    def _data_object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise Refusal("请求参数data不能为空")  # sim text
        return body["data"]

    @staticmethod
    def _id_list(body: Any) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
            raise Refusal("请求参数data不能为空")
        return [item.get("id") if isinstance(item, dict) else None for item in body["data"]]

    def _check_resubmit(self, api: str, data: dict[str, Any]) -> None:
        key = data.get("resubmitCheckKey")
        if key in (None, ""):
            return
        if not isinstance(key, str) or len(key) > 32:
            raise Refusal("resubmitCheckKey长度不能超过32位")
        if (api, key) in self._resubmit:
            raise Refusal("重复提交", code="10004")

    @staticmethod
    def _page(body: Any) -> tuple[int, int]:
        if not isinstance(body, dict):
            raise Refusal("请求体不能为空")
        try:
            index, size = int(body["pageIndex"]), int(body["pageSize"])
        except (KeyError, TypeError, ValueError):
            raise Refusal("pageIndex、pageSize必填") from None
        if index < 1 or not 1 <= size <= 500:
            raise Refusal("分页参数不合法")
        return index, size

    @staticmethod
    def _paged(rows: list[dict[str, Any]], index: int, size: int) -> dict[str, Any]:
        pages = max(1, -(-len(rows) // size))
        return {"pageIndex": index, "pageSize": size, "recordCount": len(rows),
                "recordList": rows[(index - 1) * size: index * size], "pageCount": pages,
                "beginPageIndex": 1, "endPageIndex": pages}

    def _find_id(self, store: dict[int, dict[str, Any]], value: Any) -> dict[str, Any] | None:
        try:
            return store.get(int(str(value)))
        except ValueError:
            return None

    # --- sales orders ----------------------------------------------------------------------------

    def _order_by_code(self, code: str) -> dict[str, Any]:
        order = next((o for o in self._orders.values() if o["code"] == code), None)
        if order is None:
            raise KeyError(code)
        return order

    def _live_outbounds(self, order_id: int) -> list[dict[str, Any]]:
        return [o for o in self._outbounds.values() if any(d["sourceid"] == order_id for d in o["details"])]

    def _create_order(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("_status") != "Insert":
            raise Refusal("_status必须为Insert（新增）")  # the only operation modelled
        for key in ("salesOrgId", "transactionTypeId", "vouchdate", "agentId", "settlementOrgId",
                    "invoiceAgentId", "orderPrices!currency"):
            if data.get(key) in (None, ""):
                raise Refusal(f"{key}不能为空")
        if not _TIME.match(str(data["vouchdate"])):
            raise Refusal("vouchdate格式应为yyyy-MM-dd HH:mm:ss")
        code = str(data.get("code") or "")
        if not code:
            raise Refusal("单据编码不能为空（编码规则为手工编号）")  # sim: manual numbering
        if any(o["code"] == code for o in self._orders.values()):
            raise Refusal(f"单据编号[{code}]已存在")  # sim text
        details = data.get("orderDetails")
        if not isinstance(details, list) or not details:
            raise Refusal("orderDetails不能为空")
        order_id = next(self._ids)
        lines, total = [], Decimal(0)
        for n, line in enumerate(details, 1):
            if not isinstance(line, dict) or line.get("_status") != "Insert":
                raise Refusal(f"第{n}行_status必须为Insert")
            product = str(line.get("productId") or "")
            if not product:
                raise Refusal(f"第{n}行productId不能为空")
            if self.products is not None and product not in self.products:
                raise Refusal(f"第{n}行物料[{product}]不存在")  # sim text
            qty = _dec(line.get("qty"), f"第{n}行qty")
            if qty <= 0:
                raise Refusal(f"第{n}行数量必须大于0")
            ori_sum = _dec(line.get("oriSum", 0), f"第{n}行oriSum")
            total += ori_sum
            lines.append({"id": next(self._ids), "orderId": order_id, "productId": product, "productCode": product,
                          "skuCode": str(line.get("skuId") or product), "qty": _json_number(qty),
                          "oriSum": _json_number(ori_sum), "totalOutStockQuantity": 0})
        pay = _dec(data.get("payMoney", 0), "payMoney")
        if abs(pay - total) > CENT:
            raise Refusal(f"payMoney[{pay}]与表体含税金额合计[{total}]不一致")  # sim text
        order = {"id": order_id, "code": code, "status": OPEN, "nextStatus": "CONFIRMORDER",
                 "vouchdate": data["vouchdate"], "agentId": data["agentId"], "salesOrgId": data["salesOrgId"],
                 "transactionTypeId": data["transactionTypeId"], "payMoney": _json_number(pay),
                 "pubts": self.now().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"), "orderDetails": lines}
        self._orders[order_id] = order
        return order

    def _so_save(self, body: Any, query: Any) -> Response:
        data = self._data_object(body)
        self._check_resubmit("voucherorder/singleSave", data)
        order = self._create_order(data)
        if data.get("resubmitCheckKey"):
            self._resubmit[("voucherorder/singleSave", data["resubmitCheckKey"])] = order["code"]
        self.counters["sales_orders_saved"] += 1
        return ok(copy.deepcopy(order))

    def _so_list(self, body: Any, query: Any) -> Response:
        index, size = self._page(body)
        code = str(body.get("code") or "")
        rows: list[dict[str, Any]] = []
        for order in sorted(self._orders.values(), key=lambda o: o["id"]):
            if code and code not in order["code"]:  # sim: the code condition matches like a "contains"
                continue
            head = {k: v for k, v in order.items() if k != "orderDetails"}
            if body.get("isSum"):
                rows.append(head)
            else:
                rows.extend({**head, **{f"orderDetails_{k}": v for k, v in line.items()}}
                            for line in order["orderDetails"])
        return ok(self._paged(copy.deepcopy(rows), index, size))

    def _so_detail(self, body: Any, query: Any) -> Response:
        order = self._find_id(self._orders, query.get("id"))
        if order is None:
            raise Refusal("数据不存在", code="1002")
        return ok(copy.deepcopy(order))

    def _so_transition(self, body: Any, moves: dict[int, int], what: str) -> Response:
        infos, fails = [], []
        for raw in self._id_list(body):
            order = self._find_id(self._orders, raw)
            if order is None:
                fails.append({"id": raw, "message": f"未找到id为 {raw} 的单据，请重新确认"})
            elif order["status"] not in moves:
                fails.append({"id": raw, "message": f"单据[{order['code']}]当前状态不能{what}"})  # sim text
            elif what == "弃审" and self._live_outbounds(order["id"]):
                fails.append({"id": raw, "message": f"单据[{order['code']}]存在下游销售出库单，不能弃审"})  # sim
            else:
                order["status"] = moves[order["status"]]
                order["nextStatus"] = "DELIVERGOODS" if order["status"] == AUDITED else "CONFIRMORDER"
                infos.append({"id": order["id"], "code": order["code"], "status": order["status"]})
        return batch_answer(infos, fails)

    def _so_delete(self, body: Any, query: Any) -> Response:
        data = self._data_object(body)
        ids, codes = data.get("id") or [], data.get("code") or []
        if not isinstance(ids, list) or not isinstance(codes, list) or not (ids or codes):
            raise Refusal("id和code不能同时为空")
        targets = [self._find_id(self._orders, i) for i in ids] if ids else \
            [next((o for o in self._orders.values() if o["code"] == c), None) for c in codes]
        infos, fails = [], []
        for raw, order in zip(ids or codes, targets, strict=True):
            if order is None:
                fails.append({"id": raw, "message": "数据不存在"})
            elif order["status"] != OPEN:
                fails.append({"id": order["id"], "message": f"单据[{order['code']}]已审核，删除失败！"})  # sim
            elif self._live_outbounds(order["id"]):
                fails.append({"id": order["id"], "message": f"单据[{order['code']}]存在下游单据，删除失败！"})
            else:
                del self._orders[order["id"]]
                infos.append({"id": order["id"], "code": order["code"]})
        return batch_answer(infos, fails)

    # --- sales outbounds -------------------------------------------------------------------------

    def _move_stock(self, bill: dict[str, Any], sign: int) -> None:
        """Record (sign +1) or undo (-1) the shipped quantities on the source order lines."""
        for detail in bill["details"]:
            order = self._orders.get(detail["sourceid"])
            line = next((ln for ln in (order or {}).get("orderDetails", []) if ln["id"] == detail["sourceautoid"]),
                        None)
            if line is not None:
                shipped = Decimal(str(line["totalOutStockQuantity"])) + sign * Decimal(str(detail["qty"]))
                line["totalOutStockQuantity"] = _json_number(shipped)

    def _out_save(self, body: Any, query: Any) -> Response:
        data = self._data_object(body)
        self._check_resubmit("salesout/mergeSourceData/save", data)
        if data.get("mergeSourceData") is not True and str(data.get("mergeSourceData")).lower() != "true":
            raise Refusal("mergeSourceData必须为true")
        if data.get("_status") != "Insert":
            raise Refusal("_status必须为Insert")
        if not data.get("bustype"):
            raise Refusal("交易类型bustype不能为空")
        if data.get("vouchdate") not in (None, "") and not _TIME.match(str(data["vouchdate"])):
            raise Refusal("vouchdate格式应为yyyy-MM-dd HH:mm:ss")
        details = data.get("details")
        if not isinstance(details, list) or not details:
            raise Refusal("details不能为空")
        code = str(data.get("code") or "")
        if code and any(o["code"] == code for o in self._outbounds.values()):
            raise Refusal(f"单据编号[{code}]已存在")  # sim text
        rows = []
        for n, detail in enumerate(details, 1):
            if not isinstance(detail, dict) or detail.get("_status") != "Insert":
                raise Refusal(f"第{n}行_status不能为空")
            if detail.get("makeRuleCode") not in MAKE_RULES:
                raise Refusal(f"第{n}行单据转换规则makeRuleCode[{detail.get('makeRuleCode')}]不存在")  # sim
            order = self._find_id(self._orders, detail.get("sourceid"))
            if order is None:
                raise Refusal(f"第{n}行来源单据不存在", code="1002")
            line = next((ln for ln in order["orderDetails"] if str(ln["id"]) == str(detail.get("sourceautoid"))), None)
            if line is None:
                raise Refusal(f"第{n}行来源单据行不存在", code="1002")
            if order["status"] != AUDITED:
                raise Refusal(f"来源销售订单[{order['code']}]未审核，不能生成销售出库单")  # sim
            qty = _dec(detail.get("qty"), f"第{n}行qty")
            if qty <= 0:
                raise Refusal(f"第{n}行数量必须大于0")
            rows.append({"id": next(self._ids), "sourceid": order["id"], "sourceautoid": line["id"],
                         "upcode": order["code"], "product_cCode": line["productCode"],
                         "productsku_cCode": line["skuCode"], "qty": _json_number(qty),
                         "makeRuleCode": detail["makeRuleCode"]})
        bill_id = next(self._ids)
        for row in rows:
            row["mainid"] = bill_id
        if not code:
            code = f"XSCK{self.now().astimezone(CHINA):%Y%m%d}{next(self._outbound_seq):06d}"
        first = self._orders[rows[0]["sourceid"]]
        bill = {"id": bill_id, "code": code, "status": OPEN, "bustype": data["bustype"],
                "vouchdate": data.get("vouchdate") or self.now().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "warehouse": data.get("warehouse") or "", "cust": first["agentId"], "srcBillType": "2",
                "srcBillNO": first["code"], "impactStockTiming": self.impact_stock_timing, "details": rows}
        self._outbounds[bill_id] = bill
        if self.impact_stock_timing == "0":
            self._move_stock(bill, +1)
        if data.get("resubmitCheckKey"):
            self._resubmit[("salesout/mergeSourceData/save", data["resubmitCheckKey"])] = code
        self.counters["outbounds_saved"] += 1
        return batch_answer([copy.deepcopy(bill)], [])

    def _out_list(self, body: Any, query: Any) -> Response:
        index, size = self._page(body)
        code = str(body.get("code") or "")
        rows: list[dict[str, Any]] = []
        for bill in sorted(self._outbounds.values(), key=lambda b: b["id"]):
            if code and code not in bill["code"]:
                continue
            head = {k: v for k, v in bill.items() if k != "details"}
            if body.get("isSum"):
                rows.append(head)
            else:
                rows.extend({**head, **{f"details_{k}": v for k, v in d.items()}} for d in bill["details"])
        return ok(self._paged(copy.deepcopy(rows), index, size))

    def _out_detail(self, body: Any, query: Any) -> Response:
        bill = self._find_id(self._outbounds, query.get("id"))
        if bill is None:
            raise Refusal("单据未找到", code="999")
        return ok(copy.deepcopy(bill))

    def _out_transition(self, body: Any, moves: dict[int, int], what: str) -> Response:
        infos, fails = [], []
        for raw in self._id_list(body):
            bill = self._find_id(self._outbounds, raw)
            if bill is None:
                fails.append({"id": raw, "message": f"未找到id为 {raw} 的单据，请重新确认"})
            elif bill["status"] not in moves:
                fails.append({"id": raw, "message": f"单据[{bill['code']}]当前状态不能{what}"})  # sim text
            else:
                if bill["status"] == AUDITED and bill["impactStockTiming"] == "1":
                    self._move_stock(bill, -1)
                bill["status"] = moves[bill["status"]]
                infos.append({"id": bill["id"], "code": bill["code"], "status": bill["status"], "verifystate": 0})
        return batch_answer(infos, fails)

    # --- vouchers --------------------------------------------------------------------------------

    def _voucher_add(self, body: Any, query: Any) -> Response:
        def refuse(message: str) -> Refusal:
            return Refusal(f"凭证保存不成功：{message}", code="404")

        if not isinstance(body, dict):
            raise refuse("请求体不能为空")
        if body.get("accbookCode") != self.accbook_code:
            raise refuse(f"账簿[{body.get('accbookCode')}]不存在")  # sim text
        if body.get("voucherTypeCode") not in self.voucher_types:
            raise refuse(f"凭证类型[{body.get('voucherTypeCode')}]不存在")
        if not body.get("makerMobile") and not body.get("makerEmail"):
            raise refuse("制单人手机号和邮箱不能同时为空")
        make_time = str(body.get("makeTime") or self.now().astimezone(CHINA).date().isoformat())
        if not _DATE.match(make_time):
            raise refuse("制单日期格式应为yyyy-MM-dd")
        period = str(body.get("period") or make_time[:7])
        business_id = str(body.get("businessId") or "")
        if business_id and any(v["businessId"] == business_id for v in self._vouchers.values()):
            raise refuse(f"业务唯一标识[{business_id}]重复")  # sim text
        bodies = body.get("bodies")
        if not isinstance(bodies, list) or len(bodies) < 1:
            raise refuse("凭证分录不能为空")
        debit = credit = Decimal(0)
        entries = []
        for n, entry in enumerate(bodies, 1):
            if not isinstance(entry, dict) or not entry.get("description") or not entry.get("accsubjectCode"):
                raise refuse(f"第{n}行摘要和科目编码不能为空")
            d_ori, d_org = entry.get("debitOriginal"), entry.get("debitOrg")
            c_ori, c_org = entry.get("creditOriginal"), entry.get("creditOrg")
            has_debit = d_ori not in (None, "", 0) or d_org not in (None, "", 0)
            has_credit = c_ori not in (None, "", 0) or c_org not in (None, "", 0)
            if has_debit == has_credit:
                raise refuse(f"第{n}行借贷不能同时填写，也不能同时为空")
            pair = (d_ori, d_org) if has_debit else (c_ori, c_org)
            if None in pair or "" in pair:
                raise refuse(f"第{n}行原币本币都要填写")
            amount = _dec(pair[1], f"第{n}行金额")
            if has_debit:
                debit += amount
            else:
                credit += amount
            entries.append({"description": entry["description"], "accsubject": {"code": entry["accsubjectCode"]},
                            "debit_org": _json_number(amount) if has_debit else 0,
                            "credit_org": 0 if has_debit else _json_number(amount),
                            "currency": {"code": entry.get("currencyCode") or "CNY"}, "recordnumber": n})
        if debit != credit:
            raise refuse(f"借贷不平衡：借方{debit}，贷方{credit}")  # sim text
        self._bill_codes[period] += 1
        voucher_id = str(uuid.uuid4()).upper()
        header = {"id": voucher_id, "description": str(body.get("description") or ""), "period": period,
                  "voucherstatus": "01", "billcode": self._bill_codes[period], "maketime": make_time,
                  "accbook": {"id": self.accbook_id, "code": self.accbook_code, "name": "模拟账簿"},
                  "totaldebit_org": _json_number(debit), "totalcredit_org": _json_number(credit)}
        self._vouchers[voucher_id] = {"businessId": business_id, "header": header, "body": entries,
                                      "voucherTypeCode": body["voucherTypeCode"]}
        self.counters["vouchers_saved"] += 1
        return ok({"voucherId": voucher_id, "voucherStatus": "01", "period": period,
                   "totalDebitOrg": _json_number(debit), "totalCreditOrg": _json_number(credit),
                   "billCode": header["billcode"], "accbook": header["accbook"],
                   "voucherType": {"code": body["voucherTypeCode"]}})

    def _voucher_query(self, body: Any, query: Any) -> Response:
        if not isinstance(body, dict) or body.get("accbook") != self.accbook_id:
            raise Refusal("账簿ID不存在", code="1002")  # sim text
        conditions = body.get("conditions")
        if not isinstance(conditions, list) or not any(
                isinstance(c, dict) and c.get("field") == "period" and c.get("value") for c in conditions):
            raise Refusal("查询条件必须录入会计期间")
        rows = []
        for voucher in self._vouchers.values():
            header = voucher["header"]
            if all(self._matches(header, c) for c in conditions if isinstance(c, dict)):
                rows.append({"voucherType": voucher["voucherTypeCode"], "header": copy.deepcopy(header),
                             "body": copy.deepcopy(voucher["body"])})
        begin, groupnum = int(body.get("begin") or 0), int(body.get("groupnum") or 20)
        page = rows[begin: begin + groupnum]
        return JSONResponse({"totalcount": len(rows), "code": 200, "data": page, "success": True,
                             "totalPage": max(1, -(-len(rows) // max(groupnum, 1))), "message": "操作成功."})

    @staticmethod
    def _matches(header: dict[str, Any], condition: dict[str, Any]) -> bool:
        field, value = condition.get("field"), str(condition.get("value") or "")
        if condition.get("part", "header") != "header":
            return True  # body conditions are not modelled
        actual = {"period": header["period"], "description": header["description"],
                  "voucherStatus": header["voucherstatus"], "billcode": str(header["billcode"]),
                  "maketime": header["maketime"]}.get(str(field))
        if actual is None:
            return True
        if condition.get("operator") == "like":
            return value in str(actual)
        return str(actual) == value
