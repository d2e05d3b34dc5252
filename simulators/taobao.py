"""A local TOP gateway (淘宝开放平台, ``/router/rest``) for Taobao/Tmall shops, written from the docs.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the platform's documentation, so that a connector that misreads the protocol
fails here instead of agreeing with itself.

Rules enforced, and where each one comes from:

* Gateway and system parameters -- "API调用方法详解" (open.taobao.com docId=101617, mirrored at
  developer.alibaba.com articleId=101617): ``method``, ``app_key``, ``session`` (APIs marked 需要授权,
  which all three below are), ``timestamp`` "yyyy-MM-dd HH:mm:ss" in GMT+8 -- "淘宝API服务端允许客户端
  请求最大时间误差为10分钟" --, ``v`` = 2.0, ``sign_method`` one of ``hmac``, ``md5``, ``hmac-sha256``,
  ``sign``, ``format`` (xml by default, or json; this simulator speaks json only and refuses the rest),
  optional ``simplify`` (精简JSON), ``partner_id`` and ``target_app_key``. Parameters are read from the
  query string and from a form-encoded body, GET or POST.
* Signature -- same document: every parameter except ``sign`` (and byte[]/file parameters) sorted by
  name in ASCII order, names and values concatenated (``bar2foo1foo_bar3foobar4``), UTF-8; md5 =
  MD5(secret + s + secret), hmac = HMAC_MD5(key=secret, s), hmac-sha256 = HMAC_SHA256(key=secret, s),
  upper-case hex. The official SDKs leave out empty values (``TopUtils.signTopRequest``:
  ``areNotEmpty(key, value)``), so we do too. Documented example: secret ``helloworld``,
  ``taobao.item.seller.get`` ... signs to ``66987CB115214E59E6EC978214934FB8`` (a test checks it).
* Errors -- ``{"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}`` with HTTP 200.
  Platform codes from TOP's 错误码 table: 7 App Call Limited, 15 Remote service error, 21 Missing
  method, 22 Invalid method, 23 Invalid format, 24 Missing signature, 25 Invalid signature, 26 Missing
  session, 27 Invalid session, 28 Missing app key, 29 Invalid app key, 30 Missing timestamp, 31 Invalid
  timestamp, 32 Missing version, 33 Invalid version, 34 Unsupported version, 40 Missing required
  arguments, 41 Invalid arguments. Real captured shapes used verbatim: ``{"code":25,"msg":"Invalid
  signature"}`` (no sub code), ``{"code":27,"msg":"Invalid session","sub_code":"invalid-sessionkey"}``,
  ``{"code":29,"msg":"Invalid app Key","sub_code":"isv.appkey-not-exists"}``, ``{"code":7,"msg":"App
  Call Limited","sub_code":"accesscontrol.limited-by-app-access-count","sub_msg":"This ban will last
  for N more seconds"}`` and ``"msg":"Invalid arguments:cid"`` / ``"Missing required arguments:out_sid"``.
* ``taobao.trades.sold.increment.get`` (apiId=128): "只能获取到三个月以内的交易信息" (older trades are
  invisible), "end_modified - start_modified <= 1天" and end "必须大于修改开始时间", "返回的数据结果是
  以订单的修改时间倒序排列的", only part of each trade ("只包含了订单的部分数据", see
  ``INCREMENT_FIELDS``); ``page_size`` default 40, max 100; ``use_has_next=true`` answers ``has_next``
  and no total ("返回的结果中不包含总记录数"), otherwise ``total_results``. An empty page carries no
  ``trades`` key (TOP leaves out empty values). ``status`` takes one state; ``type`` defaults to the
  five groups guarantee_trade, auto_delivery, ec, cod, step.
* ``taobao.trade.fullinfo.get`` (apiId=54): the Trade structure, limited to ``fields``; goods fields
  on the trade itself only for single-line trades ("只有单笔订单的情况下Trade数据结构中才包含商品相关的
  信息"); an order's ``payment`` includes the post fee only when the trade has one line ("Order中的
  payment字段在单笔子订单时包含物流费用，多笔子订单时不包含物流费用"); Trade ``title`` is the shop name.
  An unknown tid, or one of another shop, is ``isv.trade-not-exist`` / "交易订单不存在" (code 15).
* Trade life (Trade.status "交易状态. 可选值": WAIT_BUYER_PAY 等待买家付款, WAIT_SELLER_SEND_GOODS 等待卖家
  发货, SELLER_CONSIGNED_PART 卖家部分发货, WAIT_BUYER_CONFIRM_GOODS 等待买家确认收货, TRADE_CLOSED 付款以后
  用户退款成功，交易自动关闭, TRADE_CLOSED_BY_TAOBAO 付款以前，卖家或买家主动关闭交易 ...; presale trades are
  type ``step`` with ``step_trade_status`` FRONT_NOPAID_FINAL_NOPAID (定金未付尾款未付) /
  FRONT_PAID_FINAL_NOPAID (定金已付尾款未付) / FRONT_PAID_FINAL_PAID (定金和尾款都付) and ``step_paid_fee``
  (分阶段付款的已付金额); a presale trade stays WAIT_BUYER_PAY until the balance is paid; Order
  ``refund_status`` WAIT_SELLER_AGREE ... SUCCESS 退款成功, NO_REFUND when none). Any change moves
  ``modified`` ("用户对订单的任何修改都会更新此字段").
* ``taobao.logistics.offline.send`` (自己联系物流发货): only a trade waiting for shipment (or partly
  shipped, with ``is_split``/``sub_tid``: "表明是否是拆单，默认值0，1表示拆单", "需要拆单发货的子订单集合 ...
  子订单间用逗号隔开") can be sent; a whole-trade send ships the lines not refunded; the trade then
  waits for the buyer's receipt and its ``modified`` moves, so it shows up again in increment pulls.
  Sub codes from real answers (``isv.logistics-offline-service-error:...``): B01 订单不存在,
  B04 订单状态不对该物流订单已经发货或者已关闭，不能重复发货, B56 没有选择物流公司或者物流公司格式不对,
  B60 运单号不符合规则或已经被使用, CD25 拆单标记和子订单列表两者必须都填或者都不填,
  B06 传入的子订单号必须完全匹配物流包裹中的子订单.

* Masked receivers and OAID (``mask_receivers=True``; off by default, so the demo keeps clear
  receivers): an app on TOP's privacy scheme gets ``receiver_name``/``receiver_mobile``/
  ``receiver_phone``/``receiver_address`` masked (脱敏) in fullinfo, with Trade ``oaid`` when asked in
  ``fields``. 隐私字段名词解释 (articleId=120397): "OAID的生成涉及如下信息:receiver_name(收件人)、
  receiver_mobile(手机号)、receiver_phone(电话)、receiver_address(收件地址)、created(订单创建时间)、
  sellerId(店铺ID)、appkey" -- same receiver, shop, app and natural week → same OAID, another app → another
  OAID; Trade.oaid: "(收货人+手机号+收货地址+create）4字段返回值都都不能为空，否则生成不了oaid"; fullinfo
  ``include_oaid``: "传true，代表必须返回oaid，生成不了就报isv.oaid-field-miss错误".
* ``taobao.top.oaid.decrypt`` (OAID解密, apiId=54714): ``query_list`` ReceiverQuery[] ("解密请求列表,最多
  支持20个"; ``oaid`` 必须 "长度在128个字符之内", ``tid`` 必须, ``scene`` 可选, one of 1001..1007, 2001, 2002)
  answers ``receiver_list`` of Receiver (name, mobile, phone, address_detail, state, city, district,
  town, country, oaid, tid, matched "oaid是否和tid当前的oaid匹配", privacy_protection). An OAID the trade
  had before its receiver changed is answered with that receiver and ``matched=false``. Scenes 2001/2002
  (客户售后服务/客户关怀) give the mobile only (the scene table of the OAID strategy page).

* Stock (商品 APIs ``taobao.skus.custom.get``, ``taobao.items.custom.get``, ``taobao.item.sku.get``,
  ``taobao.item.quantity.update``): every shop lists every catalogue SKU; the rules and their sources
  are in :mod:`simulators.taobao_stock`. A stock write refused by the call limit (code 7) counts as
  ``stock_throttled``.

Choices of the simulator where the documentation is silent (texts marked ``# sim text``): unpaid
trades never close on their own (TOP closes them when the payment time runs out, per item and
activity, shown as Order ``timeout_action_time`` "订单超时到期时间"; no fixed period is documented in the
API), a scenario calls ``close_unpaid``; a presale deposit is a fifth of the price; consigning an
unpaid or closed trade answers the same B04 "订单状态不对..." as a repeat;
the window error is ``15 / isv.invalid-parameter``; unknown ``fields`` names are ignored;
masking keeps the first character of a name ("王**"), the first 3 and last 4 digits of a number
("138****5678", "0571-****6666") and the first 3 characters of an address ("文三路***"); an OAID/tid pair
the trade never had is ``15 / isv.invalid-parameter`` (the 非法参数 example of the privacy API pages); a
session in ``oaid_denied_sessions`` is refused decrypting with TOP's permission error ``11 / Insufficient
isv permissions / isv.permission-api-package-limit`` (错误码一览: "关联的包中不允许访问该API"); decrypt's
``country`` is "中国" when the trade's is empty (the response example's value); windows are
inclusive at both ends; the ``error_5xx`` fault answers ``15 / isp.top-remote-connection-timeout``
(TOP's server-side ``isp.*`` family) by default, or a plain HTTP 503 with
``server_error_style="http503"``.

Public API: ``TaobaoSimulator(apps, shops, orders_per_shop, malformed_per_shop, seed, now,
spread_hours, faults, calls_per_second, catalog, server_error_style, mask_receivers,
oaid_denied_sessions, initial_stock)``; ``.app`` (ASGI: ``/router/rest``
GET/POST, ``GET /_sim/state``, ``GET|POST /_sim/faults`` with a FaultConfig JSON, ``POST /_sim/orders``
with ``{"shop", "n", "malformed", "status", "presale", "lines"}``); ``state()``, ``orders(shop)``, ``get_trade(tid)``,
``add_orders(shop, n, malformed, *, status, presale, lines)``, ``make_trade(shop, *, status, presale,
lines, defect)``; lifecycle ``pay``, ``pay_balance``, ``close_unpaid``, ``refund_all``, ``refund_line``,
``request_refund``, ``change_address`` (also ``POST /_sim/trades/{tid}/{action}``); accessors ``trade(tid)``,
``status(tid)``, ``writebacks(tid)``, ``clear_receiver(tid)``, ``oaid_of(tid, app_key)``;
``now()``/``set_now()``/``advance()``, ``signed_params(...)``; stock: ``shown_stock(sku, shop)``,
``set_shown_stock(sku, quantity, shop)``, ``stock_updates``, ``counters`` (stock_writes, stock_throttled);
module helpers ``top_sign``, ``format_top_time``, ``parse_top_time``.

State lives in memory behind a lock: a test thread may read ``state()`` while the uvicorn thread
serves requests.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.catalog import CATALOG
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector
from simulators.ratelimit import CallBucket
from simulators.taobao_stock import TaobaoStock

GMT8 = timezone(timedelta(hours=8), "GMT+8")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MAX_WINDOW = timedelta(days=1)
HISTORY = timedelta(days=90)  # "三个月以内"
DEFAULT_PAGE_SIZE = 40
MAX_PAGE_SIZE = 100
API_VERSION = "2.0"
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")

METHOD_INCREMENT = "taobao.trades.sold.increment.get"
METHOD_FULLINFO = "taobao.trade.fullinfo.get"
METHOD_OFFLINE_SEND = "taobao.logistics.offline.send"
METHOD_OAID_DECRYPT = "taobao.top.oaid.decrypt"

WAIT_PAY = "WAIT_BUYER_PAY"
WAIT_SEND = "WAIT_SELLER_SEND_GOODS"
PART_SENT = "SELLER_CONSIGNED_PART"
WAIT_CONFIRM = "WAIT_BUYER_CONFIRM_GOODS"
CLOSED = "TRADE_CLOSED"  # "付款以后用户退款成功，交易自动关闭"
CLOSED_BY_TAOBAO = "TRADE_CLOSED_BY_TAOBAO"  # "付款以前，卖家或买家主动关闭交易"
UNPAID = frozenset({WAIT_PAY, "TRADE_NO_CREATE_PAY"})
#: Trade.step_trade_status ("分阶段付款的订单状态"): 定金未付尾款未付 / 定金已付尾款未付 / 定金和尾款都付
STEP_NOTHING_PAID = "FRONT_NOPAID_FINAL_NOPAID"
STEP_DEPOSIT_PAID = "FRONT_PAID_FINAL_NOPAID"
STEP_ALL_PAID = "FRONT_PAID_FINAL_PAID"
STEP_STATUSES = (STEP_NOTHING_PAID, STEP_DEPOSIT_PAID, STEP_ALL_PAID)
#: Order.refund_status values ("WAIT_SELLER_AGREE(买家已经申请退款，等待卖家同意) ... SUCCESS(退款成功)");
#: live answers carry NO_REFUND for a line nobody asked to refund
REFUND_STATUSES = frozenset({"NO_REFUND", "WAIT_SELLER_AGREE", "WAIT_BUYER_RETURN_GOODS", "WAIT_SELLER_CONFIRM_GOODS",
                             "SELLER_REFUSE_BUYER", "CLOSED", "SUCCESS"})
DEPOSIT_SHARE = Decimal("0.2")  # sim choice: a presale deposit is a fifth of the price
#: what change_address may set (the Trade receiver_* fields)
RECEIVER_FIELDS = frozenset({"receiver_name", "receiver_mobile", "receiver_phone", "receiver_country",
                             "receiver_state", "receiver_city", "receiver_district", "receiver_town",
                             "receiver_address", "receiver_zip"})
TRADE_STATUSES = frozenset({
    "TRADE_NO_CREATE_PAY", "WAIT_BUYER_PAY", PART_SENT, WAIT_SEND, WAIT_CONFIRM, "TRADE_BUYER_SIGNED",
    "TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO", "PAY_PENDING", "WAIT_PRE_AUTH_CONFIRM",
    "PAID_FORBID_CONSIGN",
})
STATUS_GROUPS = {
    "ALL_WAIT_PAY": frozenset({"WAIT_BUYER_PAY", "TRADE_NO_CREATE_PAY"}),
    "ALL_CLOSED": frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"}),
}
#: ``type`` query values that stand for several trade types (guarantee_trade = 一口价/拍卖 担保交易)
TYPE_GROUPS = {
    "guarantee_trade": frozenset({"guarantee_trade", "fixed", "auction"}),
    "auto_delivery": frozenset({"auto_delivery"}),
    "ec": frozenset({"ec"}),
    "cod": frozenset({"cod"}),
    "step": frozenset({"step"}),
}
DEFAULT_TYPES = frozenset().union(*TYPE_GROUPS.values())

#: logistics company codes accepted by offline.send (taobao.logistics.companies.get codes)
COMPANIES = {
    "SF": "顺丰速运", "ZTO": "中通快递", "YTO": "圆通速递", "STO": "申通快递", "YUNDA": "韵达快递",
    "EMS": "EMS", "POSTB": "邮政快递包裹", "POST": "中国邮政", "JD": "京东快递", "HTKY": "百世快递",
    "DBKD": "德邦快递", "ZJS": "宅急送", "JTSD": "极兔速递", "OTHER": "其他",
}
_OUT_SID = re.compile(r"^[A-Za-z0-9]{6,30}$")  # sim rule for "运单号不符合规则"

#: fields the increment call answers: the trade's summary, never the receiver (fetch fullinfo for it)
INCREMENT_FIELDS = frozenset({
    "tid", "tid_str", "type", "status", "created", "modified", "pay_time", "consign_time", "payment",
    "total_fee", "post_fee", "discount_fee", "adjust_fee", "buyer_nick", "buyer_open_uid", "seller_nick",
    "title", "num_iid", "num", "price", "step_trade_status", "step_paid_fee", "shipping_type",
    "has_buyer_message", "orders",
})

DEFECT_KINDS = ("empty_address", "invalid_mobile", "unknown_sku", "bad_payment")

#: the receiver fields TOP masks for apps on the privacy scheme (region and zip stay clear)
MASKED_FIELDS = ("receiver_name", "receiver_mobile", "receiver_phone", "receiver_address")
#: ReceiverQuery.scene values documented for taobao.top.oaid.decrypt; 2001/2002 return the phone only
OAID_SCENES = frozenset({"1001", "1002", "1003", "1004", "1005", "1006", "1007", "2001", "2002"})
PHONE_ONLY_SCENES = frozenset({"2001", "2002"})
MAX_DECRYPT_QUERIES = 20  # "解密请求列表,最多支持20个"
MAX_OAID_LENGTH = 128  # "长度在128个字符之内"

CENT = Decimal("0.01")


# --------------------------------------------------------------------------- signing and time


def sign_base_string(params: Mapping[str, str]) -> str:
    """Sorted ``name + value`` pairs; ``sign`` and empty values are left out, as the SDKs do."""
    return "".join(f"{name}{params[name]}" for name in sorted(params) if name != "sign" and name and params[name])


def top_sign(params: Mapping[str, str], secret: str, sign_method: str) -> str:
    """The TOP ``sign`` (upper-case hex) for ``params`` under ``sign_method``."""
    payload = sign_base_string(params).encode("utf-8")
    key = secret.encode("utf-8")
    if sign_method == "md5":
        digest = hashlib.md5(key + payload + key, usedforsecurity=False).digest()
    elif sign_method == "hmac":
        digest = hmac.new(key, payload, hashlib.md5).digest()
    elif sign_method == "hmac-sha256":
        digest = hmac.new(key, payload, hashlib.sha256).digest()
    else:
        raise ValueError(f"unknown sign_method {sign_method!r}")
    return digest.hex().upper()


def format_top_time(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8; naive datetimes are refused so no clock is guessed."""
    if moment.tzinfo is None:
        raise ValueError("TOP times need a timezone-aware datetime")
    return moment.astimezone(GMT8).strftime(TIME_FORMAT)


def parse_top_time(text: str) -> datetime:
    """Strict ``yyyy-MM-dd HH:mm:ss`` (GMT+8) to an aware UTC datetime; ValueError otherwise."""
    if not _TIME_SHAPE.match(text or ""):
        raise ValueError(f"not a yyyy-MM-dd HH:mm:ss time: {text!r}")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=GMT8).astimezone(UTC)


def response_key(method: str) -> str:
    """``taobao.trade.fullinfo.get`` -> ``trade_fullinfo_get_response``."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


def money(value: Decimal) -> str:
    """CNY with two decimals, the way TOP writes every fee."""
    return str(value.quantize(CENT))


def deposit(payment: Decimal) -> Decimal:
    """The presale deposit (定金) of a trade that costs ``payment``."""
    return (payment * DEPOSIT_SHARE).quantize(CENT)


# --------------------------------------------------------------------------- errors


class TopError(Exception):
    """A request the gateway refuses: answered as ``error_response`` with HTTP 200."""

    def __init__(self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> None:
        super().__init__(f"{code} {msg} {sub_code or ''} {sub_msg or ''}".strip())
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.sub_code:
            error["sub_code"] = self.sub_code
        if self.sub_msg:
            error["sub_msg"] = self.sub_msg
        error["request_id"] = request_id
        return {"error_response": error}


def missing_argument(name: str) -> TopError:
    return TopError(40, f"Missing required arguments:{name}", "isv.missing-parameter",
                    f"缺少必选参数 {name}")  # sim text


def invalid_argument(name: str, why: str) -> TopError:
    return TopError(41, f"Invalid arguments:{name}", "isv.invalid-parameter", why)  # sim text (sub_msg)


def call_limited(seconds: int) -> TopError:
    return TopError(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                    f"This ban will last for {seconds} more seconds")


def remote_error(sub_code: str, sub_msg: str) -> TopError:
    return TopError(15, "Remote service error", sub_code, sub_msg)


def logistics_error(code: str, sub_msg: str) -> TopError:
    return remote_error(f"isv.logistics-offline-service-error:{code}", sub_msg)


# --------------------------------------------------------------------------- data model


@dataclass
class SimTrade:
    """One trade: the TOP representation (``data``) plus what the gateway needs to filter it."""

    tid: int
    shop: str
    created: datetime
    modified: datetime
    data: dict[str, Any]
    defect: str | None = None
    #: with mask_receivers: the real receiver_* values (``data`` holds the masked ones) ...
    clear: dict[str, Any] | None = None
    #: ... and the receivers the trade had before each change_address (their OAIDs are stale)
    former: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def lines(self) -> list[dict[str, Any]]:
        return list(self.data["orders"]["order"])

    def touch(self, moment: datetime) -> None:
        """Move ``modified`` (kept at whole seconds, as clients see it) to ``moment``."""
        self.modified = moment.replace(microsecond=0)
        self.data["modified"] = format_top_time(self.modified)




# --------------------------------------------------------------------------- demo data

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚"
GIVEN_NAMES = (
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超",
    "秀英", "桂英", "建华", "晓东", "子涵", "欣怡", "浩然", "雨桐", "思远", "梓萱", "一鸣", "佳琪", "宇轩",
)
NICK_WORDS = ("小鱼", "阿木", "橙子", "豆豆", "星河", "晴天", "南风", "糖糖", "木木", "花卷", "大熊", "柚子")
#: province, city, district, town, zip
REGIONS = (
    ("浙江省", "杭州市", "西湖区", "文新街道", "310012"),
    ("浙江省", "杭州市", "余杭区", "五常街道", "311121"),
    ("浙江省", "宁波市", "鄞州区", "首南街道", "315100"),
    ("上海", "上海市", "浦东新区", "张江镇", "201203"),
    ("上海", "上海市", "徐汇区", "漕河泾街道", "200233"),
    ("北京", "北京市", "朝阳区", "望京街道", "100102"),
    ("北京", "北京市", "海淀区", "中关村街道", "100080"),
    ("广东省", "深圳市", "南山区", "粤海街道", "518057"),
    ("广东省", "广州市", "天河区", "石牌街道", "510630"),
    ("江苏省", "南京市", "鼓楼区", "湖南路街道", "210009"),
    ("江苏省", "苏州市", "吴中区", "长桥街道", "215128"),
    ("四川省", "成都市", "武侯区", "玉林街道", "610041"),
    ("湖北省", "武汉市", "洪山区", "珞南街道", "430070"),
    ("山东省", "青岛市", "市南区", "八大关街道", "266071"),
    ("福建省", "厦门市", "思明区", "鹭江街道", "361001"),
    ("陕西省", "西安市", "雁塔区", "小寨路街道", "710061"),
    ("湖南省", "长沙市", "岳麓区", "望月湖街道", "410006"),
    ("重庆", "重庆市", "渝中区", "解放碑街道", "400010"),
)
ROADS = ("文一西路", "学院路", "建国路", "人民路", "中山路", "解放路", "长江路", "和平路", "科技园路", "滨江大道")
BUYER_MESSAGES = ("请尽快发货，谢谢！", "工作日白天家里没人，请放快递柜", "麻烦包装结实一点", "送人的，请不要放发票",
                  "请发顺丰", "尺码拍错了可以换吗")
POST_FEES = ("8.00", "10.00", "12.00")
LINE_DISCOUNTS = ("5.00", "10.00", "20.00")


def _catalog_line(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The goods part of an order line for a catalogue entry."""
    return {
        "num_iid": int(entry["num_iid"]),
        "sku_id": str(entry["sku_id"]),  # Order.sku_id is a String in the TOP Trade structure
        "outer_iid": str(entry.get("outer_iid") or ""),
        "outer_sku_id": str(entry.get("outer_sku_id") or entry.get("sku") or ""),
        "title": str(entry.get("item_title") or entry.get("title") or ""),
        "sku_properties_name": str(entry.get("properties") or ""),
        "price": money(Decimal(str(entry["price"]))),
    }


class _TradeFactory:
    """Makes seeded, deterministic trades; one instance (and one RNG stream) per shop."""

    def __init__(self, shop: str, seed: int, catalog: list[dict[str, Any]],
                 new_id: Callable[[random.Random], int]) -> None:
        self.shop = shop
        self.rng = random.Random(f"taobao:{seed}:{shop}")
        self.catalog = catalog
        self.new_id = new_id
        self.known_num_iids = {int(entry["num_iid"]) for entry in catalog}
        self.known_sku_ids = {str(entry["sku_id"]) for entry in catalog}

    # -- people and places ------------------------------------------------------------------

    def _name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)

    def _mobile(self) -> str:
        return "1" + self.rng.choice("3456789") + "".join(self.rng.choice("0123456789") for _ in range(9))

    def _nick(self) -> str:
        if self.rng.random() < 0.5:
            return f"tb{self.rng.randrange(10_000_000, 100_000_000)}"
        return f"{self.rng.choice(NICK_WORDS)}{self.rng.randrange(100, 10_000)}"

    def _receiver(self) -> dict[str, Any]:
        state, city, district, town, zip_code = self.rng.choice(REGIONS)
        address = (f"{self.rng.choice(ROADS)}{self.rng.randrange(1, 1200)}号{self.rng.randrange(1, 30)}幢"
                   f"{self.rng.randrange(1, 6)}单元{self.rng.randrange(1, 33)}0{self.rng.randrange(1, 9)}室")
        receiver: dict[str, Any] = {
            "receiver_name": self._name(),
            "receiver_country": "",
            "receiver_state": state,
            "receiver_city": city,
            "receiver_district": district,
            "receiver_town": town,
            "receiver_address": address,
            "receiver_zip": zip_code,
            "receiver_mobile": self._mobile(),
        }
        if self.rng.random() < 0.2:
            area = self.rng.choice(("010", "021", "020", "025", "028", "0571", "0755", "0532"))
            receiver["receiver_phone"] = f"{area}-{self.rng.randrange(10**7, 10**8)}"
        return receiver

    # -- goods and money --------------------------------------------------------------------

    def _unknown_goods(self) -> dict[str, Any]:
        """An order line for goods the catalogue does not know (a defect a hub must catch)."""
        num_iid = self.rng.randrange(700_000_000_000, 800_000_000_000)
        while num_iid in self.known_num_iids:
            num_iid += 1
        sku_id = str(self.rng.randrange(6_000_000_000_000, 7_000_000_000_000))
        while sku_id in self.known_sku_ids:
            sku_id = str(int(sku_id) + 1)
        code = f"TD-SKU-9{self.rng.randrange(100, 1000)}"
        return {"num_iid": num_iid, "sku_id": sku_id, "outer_iid": "TD-SPU-999", "outer_sku_id": code,
                "title": "清仓下架款 未登记商品", "sku_properties_name": "", "price": "49.00"}

    def _lines(self, tid: int, unknown_goods: bool, count: int | None = None) -> list[dict[str, Any]]:
        if count is None:
            count = self.rng.choice((1, 1, 1, 2, 2, 3))
        goods = [_catalog_line(entry) for entry in self.rng.sample(self.catalog, k=min(count, len(self.catalog)))]
        if unknown_goods:
            goods[self.rng.randrange(len(goods))] = self._unknown_goods()
        lines = []
        for item in goods:
            num = self.rng.choice((1, 1, 1, 2, 3))
            total = Decimal(item["price"]) * num
            discount = Decimal(self.rng.choice(LINE_DISCOUNTS)) if self.rng.random() < 0.25 else Decimal(0)
            if discount >= total:
                discount = Decimal(0)
            oid = tid if len(goods) == 1 else self.new_id(self.rng)
            line = {
                "oid": oid, "oid_str": str(oid), **item, "num": num, "total_fee": money(total),
                "discount_fee": money(discount), "adjust_fee": "0.00", "payment": money(total - discount),
                "status": WAIT_SEND, "refund_status": "NO_REFUND",
            }
            if not line["sku_properties_name"]:
                del line["sku_properties_name"]  # TOP leaves out empty values
            lines.append(line)
        return lines

    # -- the trade --------------------------------------------------------------------------

    def trade(self, created: datetime, paid: datetime | None, modified: datetime, defect: str | None, *,
              step: str | None = None, line_count: int | None = None) -> SimTrade:
        """One trade; ``defect`` makes it deliberately malformed.

        By default a paid trade waiting for shipment (a few are presale trades with both parts
        paid). ``paid=None``: not paid yet (WAIT_BUYER_PAY). ``step``: a presale (type ``step``)
        trade at that step_trade_status: FRONT_NOPAID_FINAL_NOPAID and FRONT_PAID_FINAL_NOPAID stay
        WAIT_BUYER_PAY (the balance is due; step_paid_fee is what was paid), FRONT_PAID_FINAL_PAID
        waits for shipment. ``line_count``: exactly that many order lines.
        """
        tid = self.new_id(self.rng)
        lines = self._lines(tid, unknown_goods=defect == "unknown_sku", count=line_count)
        goods_total = sum((Decimal(line["total_fee"]) for line in lines), Decimal(0))
        discount = sum((Decimal(line["discount_fee"]) for line in lines), Decimal(0))
        post_fee = Decimal(self.rng.choice(POST_FEES)) if self.rng.random() < 0.3 else Decimal(0)
        payment = goods_total + post_fee - discount
        if len(lines) == 1:  # single line: the order's payment includes the post fee
            lines[0]["payment"] = money(Decimal(lines[0]["payment"]) + post_fee)
        presale = self.rng.random() < 0.08
        if step is not None:
            presale = True
        elif presale:
            step = STEP_ALL_PAID
        if step in (STEP_NOTHING_PAID, STEP_DEPOSIT_PAID):
            paid = None  # pay_time comes with the balance: the trade cannot ship before
        status = WAIT_SEND if paid is not None else WAIT_PAY
        data: dict[str, Any] = {
            "tid": tid, "tid_str": str(tid), "type": "step" if presale else "fixed", "status": status,
            "title": self.shop, "seller_nick": self.shop, "buyer_nick": self._nick(),
            "buyer_open_uid": "AAH" + "".join(self.rng.choice("0123456789abcdefghijklmnopqrstuvwxyz-_")
                                              for _ in range(21)),
            "created": format_top_time(created), "modified": format_top_time(modified),
            "payment": money(payment), "total_fee": money(goods_total), "post_fee": money(post_fee),
            "discount_fee": money(discount), "adjust_fee": "0.00", "shipping_type": "express",
        }
        if len(lines) == 1:  # goods fields on the trade only for single-line trades
            data.update(num_iid=lines[0]["num_iid"], num=lines[0]["num"], price=lines[0]["price"])
        data.update(self._receiver())
        message = self.rng.choice(BUYER_MESSAGES) if self.rng.random() < 0.25 else ""
        data["has_buyer_message"] = bool(message)
        if message:
            data["buyer_message"] = message
        if paid is not None:
            data["pay_time"] = format_top_time(paid)
        for line in lines:
            line["status"] = status
        if presale:
            paid_fee = {STEP_NOTHING_PAID: Decimal(0), STEP_DEPOSIT_PAID: deposit(payment)}.get(step or "", payment)
            data.update(step_trade_status=step, step_paid_fee=money(paid_fee))
        data["orders"] = {"order": lines}
        self._spoil(data, defect)
        return SimTrade(tid=tid, shop=self.shop, created=created, modified=modified, data=data, defect=defect)

    def _spoil(self, data: dict[str, Any], defect: str | None) -> None:
        """Apply a defect that still makes valid TOP JSON (strings stay strings)."""
        if defect == "empty_address":
            data["receiver_address"] = ""
        elif defect == "invalid_mobile":
            data["receiver_mobile"] = self.rng.choice(("1381234", "138abcd5678", "0571-8888"))
        elif defect == "bad_payment":
            data["payment"] = data["payment"].replace(".", ",")  # "129,00": a decimal comma


# --------------------------------------------------------------------------- the simulator


class TaobaoSimulator(SimClock, SimAdmin, TaobaoStock):
    """A TOP gateway serving seeded shops; ``app`` is the ASGI app (``/router/rest`` + ``/_sim/*``).

    ``apps`` maps app_key -> app_secret, ``shops`` maps session -> seller nick. Each distinct shop
    starts with ``orders_per_shop`` paid trades waiting for shipment, ``malformed_per_shop`` of them
    deliberately malformed (cycling through ``DEFECT_KINDS``), created over the ``spread_hours``
    before ``now``. The simulator's clock starts at ``now`` (default: the real UTC time) and runs
    with the wall clock; ``set_now``/``advance`` move it. Every shop lists every catalogue SKU with
    ``initial_stock`` units (one number for all, or per SKU code); see :mod:`simulators.taobao_stock`.
    """

    # the stock APIs (simulators.taobao_stock, imported by this module) answer in this gateway's words
    _missing_argument = staticmethod(missing_argument)
    _invalid_argument = staticmethod(invalid_argument)
    _remote_error = staticmethod(remote_error)
    _format_time = staticmethod(format_top_time)

    def __init__(
        self,
        apps: Mapping[str, str],
        shops: Mapping[str, str],
        orders_per_shop: int = 20,
        malformed_per_shop: int = 0,
        seed: int = 1,
        now: datetime | None = None,
        spread_hours: float = 6,
        faults: FaultConfig | None = None,
        calls_per_second: float | None = None,
        catalog: Iterable[Mapping[str, Any]] | None = None,
        server_error_style: Literal["isp", "http503"] = "isp",
        mask_receivers: bool = False,
        oaid_denied_sessions: Iterable[str] = (),
        initial_stock: int | Mapping[str, int] = 0,
    ) -> None:
        if not apps or not shops:
            raise ValueError("at least one app (app_key -> secret) and one shop (session -> nick) are needed")
        if malformed_per_shop > orders_per_shop or min(orders_per_shop, malformed_per_shop) < 0:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if calls_per_second is not None and calls_per_second <= 0:
            raise ValueError("calls_per_second must be > 0 (or None for no limit)")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.apps = dict(apps)
        self.sessions = dict(shops)
        self.seed = seed
        self.catalog = [dict(entry) for entry in (catalog if catalog is not None else CATALOG)]
        if not self.catalog:
            raise ValueError("the catalogue is empty")
        self.faults = FaultInjector(faults or FaultConfig())
        self.calls_per_second = calls_per_second
        self.server_error_style = server_error_style
        self.mask_receivers = mask_receivers
        self.oaid_denied_sessions = frozenset(oaid_denied_sessions)
        self.start_clock(now)
        self._lock = threading.RLock()
        self._ids: set[int] = set()
        self._trades: dict[int, SimTrade] = {}
        self._factories: dict[str, _TradeFactory] = {}
        self._defect_cycle = itertools.cycle(DEFECT_KINDS)
        self._buckets: dict[str, CallBucket] = {}
        self._request_ids = itertools.count(1)
        self._shipments: dict[int, dict[str, Any]] = {}
        self._used_waybills: dict[tuple[str, str], int] = {}
        self._attempts: list[dict[str, Any]] = []
        self._repeat_attempts = 0
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rejected_signatures = 0
        self._rate_limited = 0
        self._throttle_faults = 0
        self._decrypted = 0
        self._decrypt_refused = 0
        self._init_stock(initial_stock)
        start = self.now()
        for shop in dict.fromkeys(self.sessions.values()):
            self._seed_shop(shop, orders_per_shop, malformed_per_shop, start, spread_hours)
        self.app = self._build_app()

    # -- data -------------------------------------------------------------------------------

    def _new_id(self, rng: random.Random) -> int:
        """A fresh 19-digit id (real tids are 18-19 digits), unique in this simulator."""
        while True:
            value = rng.randrange(2_000_000_000_000_000_000, 4_000_000_000_000_000_000)
            if value not in self._ids:
                self._ids.add(value)
                return value

    def _factory(self, shop: str) -> _TradeFactory:
        if shop not in self._factories:
            self._factories[shop] = _TradeFactory(shop, self.seed, self.catalog, self._new_id)
        return self._factories[shop]

    def _defects(self, rng: random.Random, total: int, malformed: int) -> list[str | None]:
        """Which of ``total`` new trades are malformed, and how (kinds cycle simulator-wide)."""
        positions = set(rng.sample(range(total), k=malformed))
        return [next(self._defect_cycle) if index in positions else None for index in range(total)]

    def _seed_shop(self, shop: str, count: int, malformed: int, now: datetime, spread_hours: float) -> None:
        factory = self._factory(shop)
        rng = factory.rng
        spread = max(120.0, spread_hours * 3600)
        end = now.replace(microsecond=0)
        for defect in self._defects(rng, count, malformed):
            created = end - timedelta(seconds=int(rng.uniform(60, spread)))
            paid = min(created + timedelta(seconds=rng.randrange(5, 900)), end)
            modified = min(paid + timedelta(seconds=rng.randrange(0, 40)), end)
            self._add(factory.trade(created, paid, modified, defect))

    def _add(self, trade: SimTrade) -> None:
        self._trades[trade.tid] = trade
        if self.mask_receivers:
            self._mask(trade)

    @staticmethod
    def _mask(trade: SimTrade) -> None:
        """Keep the real receiver aside (once) and show TOP's masked values in ``data``."""
        if trade.clear is None:
            trade.clear = {key: trade.data[key] for key in RECEIVER_FIELDS if key in trade.data}
        for key in MASKED_FIELDS:
            if key in trade.clear:
                value = str(trade.clear[key] or "")
                trade.data[key] = _masked(key, value) if value else ""
            else:
                trade.data.pop(key, None)

    @staticmethod
    def _unmask(trade: SimTrade) -> None:
        """Put the real receiver back into ``data`` (before changing it); ``_mask`` hides it again."""
        if trade.clear is not None:
            trade.data.update(trade.clear)
            trade.clear = None

    def _shop_of(self, shop_or_session: str) -> str:
        if shop_or_session in self.sessions:
            return self.sessions[shop_or_session]
        if shop_or_session in self.sessions.values():
            return shop_or_session
        raise KeyError(f"unknown shop or session {shop_or_session!r}")

    def add_orders(self, shop_or_session: str, n: int, malformed: int = 0, *, status: str = WAIT_SEND,
                   presale: bool | str = False, lines: int | None = None) -> list[int]:
        """Create ``n`` new trades now (``malformed`` of them defective); returns their tids.

        Default: paid trades waiting for shipment. ``status="WAIT_BUYER_PAY"``: not paid yet (drive
        them on with ``pay``/``close_unpaid``). ``presale``: presale (step) trades, True meaning
        deposit paid and balance due (FRONT_PAID_FINAL_NOPAID), or a step_trade_status value.
        ``lines``: that many order lines per trade (≥ 2 makes split shipments possible).
        """
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        if status not in (WAIT_SEND, WAIT_PAY):
            raise ValueError(f"new trades start as {WAIT_PAY} or {WAIT_SEND}, not {status!r}")
        step = STEP_DEPOSIT_PAID if presale is True else (presale or None)
        if step is not None and step not in STEP_STATUSES:
            raise ValueError(f"presale must be True or one of {', '.join(STEP_STATUSES)}")
        if lines is not None and not 1 <= lines <= len(self.catalog):
            raise ValueError(f"lines must be between 1 and {len(self.catalog)}")
        with self._lock:
            factory = self._factory(self._shop_of(shop_or_session))
            end = self.now().replace(microsecond=0)
            tids = []
            for defect in self._defects(factory.rng, n, malformed):
                created = end - timedelta(seconds=factory.rng.randrange(5, 120))
                paid = end if status == WAIT_SEND else None
                trade = factory.trade(created, paid, end, defect, step=step, line_count=lines)
                self._add(trade)
                tids.append(trade.tid)
            return tids

    def make_trade(self, shop_or_session: str, *, status: str = WAIT_SEND, presale: bool | str = False,
                   lines: int | None = None, defect: str | None = None) -> int:
        """One new trade now (see ``add_orders`` for the options); returns its tid."""
        if defect is not None and defect not in DEFECT_KINDS:
            raise ValueError(f"defect must be one of {', '.join(DEFECT_KINDS)}")
        with self._lock:
            (tid,) = self.add_orders(shop_or_session, 1, status=status, presale=presale, lines=lines)
            if defect is not None:
                trade = self._trades[tid]
                masked = trade.clear is not None
                self._unmask(trade)  # a receiver defect spoils the real receiver, as the buyer typed it
                self._factory(trade.shop)._spoil(trade.data, defect)
                trade.defect = defect
                if masked:
                    self._mask(trade)
            return tid

    # -- lifecycle: what buyers and the platform do to a trade --------------------------------
    #
    # Each step moves ``modified`` to now, as TOP does for any change ("交易修改时间(用户对订单的任何
    # 修改都会更新此字段)"), so the trade shows up again in increment pulls.

    def _live(self, tid: int | str) -> SimTrade:
        trade = self._trades.get(int(tid))
        if trade is None:
            raise KeyError(f"no trade {tid}")
        return trade

    def _line(self, trade: SimTrade, oid: int | str) -> dict[str, Any]:
        for line in trade.data["orders"]["order"]:
            if line["oid"] == int(oid):
                return line
        raise KeyError(f"trade {trade.tid} has no order line {oid}")

    @staticmethod
    def _set_status(trade: SimTrade, status: str, lines: Iterable[dict[str, Any]] | None = None) -> None:
        trade.data["status"] = status
        for line in trade.data["orders"]["order"] if lines is None else lines:
            line["status"] = status

    def pay(self, tid: int | str) -> None:
        """The buyer pays an unpaid trade: WAIT_BUYER_PAY → WAIT_SELLER_SEND_GOODS with pay_time. For a
        presale trade with nothing paid this pays the deposit only (FRONT_PAID_FINAL_NOPAID, the
        status stays WAIT_BUYER_PAY); ``pay_balance`` pays the rest."""
        with self._lock:
            trade = self._live(tid)
            if trade.status not in UNPAID:
                raise ValueError(f"trade {tid} is {trade.status}, not waiting for payment")
            moment = self.now()
            step = trade.data.get("step_trade_status")
            if step == STEP_NOTHING_PAID:
                trade.data.update(step_trade_status=STEP_DEPOSIT_PAID,
                                  step_paid_fee=money(deposit(Decimal(trade.data["payment"]))))
            elif step == STEP_DEPOSIT_PAID:
                raise ValueError(f"trade {tid} is a presale trade with its deposit paid: use pay_balance")
            else:
                trade.data["pay_time"] = format_top_time(moment)
                self._set_status(trade, WAIT_SEND)
            trade.touch(moment)

    def pay_balance(self, tid: int | str) -> None:
        """The buyer pays the balance (尾款) of a presale trade whose deposit is paid:
        FRONT_PAID_FINAL_NOPAID → FRONT_PAID_FINAL_PAID, WAIT_BUYER_PAY → WAIT_SELLER_SEND_GOODS."""
        with self._lock:
            trade = self._live(tid)
            if trade.data.get("step_trade_status") != STEP_DEPOSIT_PAID or trade.status not in UNPAID:
                raise ValueError(f"trade {tid} is not a presale trade waiting for its balance")
            moment = self.now()
            trade.data.update(step_trade_status=STEP_ALL_PAID, step_paid_fee=trade.data["payment"],
                              pay_time=format_top_time(moment))
            self._set_status(trade, WAIT_SEND)
            trade.touch(moment)

    def close_unpaid(self, tid: int | str) -> None:
        """An unpaid trade times out or the buyer cancels it: TRADE_CLOSED_BY_TAOBAO ("付款以前，卖家或
        买家主动关闭交易"). A presale trade whose balance never came closes the same way."""
        with self._lock:
            trade = self._live(tid)
            if trade.status not in UNPAID:
                raise ValueError(f"trade {tid} is {trade.status}: only an unpaid trade closes unpaid")
            moment = self.now()
            self._set_status(trade, CLOSED_BY_TAOBAO)
            trade.data["end_time"] = format_top_time(moment)
            trade.touch(moment)

    def refund_all(self, tid: int | str) -> None:
        """Every line refunded (refund_status SUCCESS) and the trade TRADE_CLOSED ("付款以后用户退款成功，
        交易自动关闭")."""
        with self._lock:
            trade = self._live(tid)
            self._require_paid(trade)
            moment = self.now()
            for line in trade.data["orders"]["order"]:
                line["refund_status"] = "SUCCESS"
            self._set_status(trade, CLOSED)
            trade.data["end_time"] = format_top_time(moment)
            trade.touch(moment)

    def refund_line(self, tid: int | str, oid: int | str) -> None:
        """One line refunded: its refund_status SUCCESS and its own status TRADE_CLOSED; the trade
        keeps its status, unless no line is left to ship (then it closes, or, when the others are
        all consigned, waits for the buyer's receipt)."""
        with self._lock:
            trade = self._live(tid)
            self._require_paid(trade)
            line = self._line(trade, oid)
            line.update(refund_status="SUCCESS", status=CLOSED)
            open_lines = [item for item in trade.lines if item["status"] != CLOSED]
            moment = self.now()
            if not open_lines:
                trade.data.update(status=CLOSED, end_time=format_top_time(moment))
            elif trade.status == PART_SENT and all(item["status"] == WAIT_CONFIRM for item in open_lines):
                trade.data["status"] = WAIT_CONFIRM
            trade.touch(moment)

    def request_refund(self, tid: int | str, oid: int | str) -> None:
        """The buyer asks for a line's money back: refund_status WAIT_SELLER_AGREE, nothing else moves."""
        with self._lock:
            trade = self._live(tid)
            self._require_paid(trade)
            line = self._line(trade, oid)
            if line.get("refund_status") == "SUCCESS":
                raise ValueError(f"order line {oid} of trade {tid} is already refunded")
            line["refund_status"] = "WAIT_SELLER_AGREE"
            trade.touch(self.now())

    def change_address(self, tid: int | str, **fields: str) -> None:
        """The buyer changes the receiver before shipment: ``address="..."`` or ``receiver_address="..."``
        (any Trade receiver_* field)."""
        with self._lock:
            trade = self._live(tid)
            if trade.status not in (UNPAID | {WAIT_SEND}):
                raise ValueError(f"trade {tid} is {trade.status}: the address can change only before shipment")
            changes: dict[str, str] = {}
            for name, value in fields.items():
                key = name if name.startswith("receiver_") else f"receiver_{name}"
                if key not in RECEIVER_FIELDS:
                    raise ValueError(f"{name!r} is not a receiver field ({', '.join(sorted(RECEIVER_FIELDS))})")
                changes[key] = str(value)
            if not changes:
                raise ValueError("change_address needs at least one field")
            masked = trade.clear is not None
            if masked:
                trade.former.append(dict(trade.clear or {}))  # its OAID now answers matched=false
                self._unmask(trade)
            trade.data.update(changes)
            if masked:
                self._mask(trade)
            trade.touch(self.now())

    @staticmethod
    def _require_paid(trade: SimTrade) -> None:
        if trade.status in UNPAID or trade.status == CLOSED_BY_TAOBAO:
            raise ValueError(f"trade {trade.tid} is {trade.status}: nothing was paid, nothing to refund")
        if trade.status == CLOSED:
            raise ValueError(f"trade {trade.tid} is already closed")

    # -- accessors --------------------------------------------------------------------------

    def trade(self, tid: int | str) -> dict[str, Any]:
        """A copy of one trade in its full TOP representation (KeyError when unknown)."""
        with self._lock:
            return copy.deepcopy(self._live(tid).data)

    def status(self, tid: int | str) -> str:
        """The trade's TOP status."""
        with self._lock:
            return self._live(tid).status

    def writebacks(self, tid: int | str) -> list[tuple[str, str, list[int]]]:
        """Every package offline.send took for the trade, in order: (out_sid, company_code, oids)."""
        with self._lock:
            record = self._shipments.get(int(tid))
            packages = record["packages"] if record else []
            return [(p["out_sid"], p["company_code"], list(p["oids"])) for p in packages]

    def clear_receiver(self, tid: int | str) -> dict[str, Any]:
        """The trade's real receiver_* fields (what decrypt gives back), masked or not."""
        with self._lock:
            trade = self._live(tid)
            source = trade.clear if trade.clear is not None else trade.data
            return {key: source[key] for key in RECEIVER_FIELDS if key in source}

    def oaid_of(self, tid: int | str, app_key: str | None = None) -> str | None:
        """The OAID fullinfo shows the app for this trade now (None: not masked, or not generable)."""
        with self._lock:
            trade = self._live(tid)
            if trade.clear is None:
                return None
            return self._oaid(trade, trade.clear, app_key or next(iter(self.apps)))

    def _oaid(self, trade: SimTrade, receiver: Mapping[str, Any], app_key: str) -> str | None:
        """OAID of one receiver of a trade for one app: derived from the receiver, the shop, the app
        and the natural week of ``created``, as 隐私字段名词解释 lists; None when a part is empty."""
        parts = [str(receiver.get(key) or "") for key in ("receiver_name", "receiver_mobile", "receiver_address")]
        if not all(parts):
            return None
        year, week, _ = trade.created.astimezone(GMT8).isocalendar()
        text = "|".join([app_key, trade.shop, *parts, str(receiver.get("receiver_phone") or ""), f"{year}W{week}"])
        digest = hmac.new(f"oaid:{self.seed}".encode(), text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:30]).decode()

    def orders(self, shop_or_session: str) -> list[dict[str, Any]]:
        """Copies of every trade of a shop (full TOP representation), oldest created first."""
        with self._lock:
            shop = self._shop_of(shop_or_session)
            trades = sorted((t for t in self._trades.values() if t.shop == shop), key=lambda t: (t.created, t.tid))
            return [copy.deepcopy(t.data) for t in trades]

    def get_trade(self, tid: int | str) -> dict[str, Any] | None:
        """A copy of one trade in its full TOP representation, or None."""
        with self._lock:
            trade = self._trades.get(int(tid))
            return copy.deepcopy(trade.data) if trade else None

    def signed_params(self, method: str, params: Mapping[str, Any], *, app_key: str | None = None,
                      session: str | None = None, sign_method: str = "md5") -> dict[str, str]:
        """System + business parameters stamped with the simulator clock and signed (for tests)."""
        app_key = app_key or next(iter(self.apps))
        merged = {
            "method": method, "app_key": app_key, "session": session or next(iter(self.sessions)),
            "timestamp": format_top_time(self.now()), "format": "json", "v": API_VERSION,
            "sign_method": sign_method, **{k: str(v) for k, v in params.items()},
        }
        merged["sign"] = top_sign(merged, self.apps[app_key], sign_method)
        return merged

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the platform holds, from its own data (never from the hub)."""
        with self._lock:
            malformed = {t.tid: t.defect for t in self._trades.values() if t.defect}
            by_shop = Counter(t.shop for t in self._trades.values())
            shipped = [tid for tid, t in self._trades.items() if tid in self._shipments and t.status == WAIT_CONFIRM]
            return {
                "orders_created": len(self._trades),
                "orders_malformed": len(malformed),
                "malformed_tids": sorted(malformed),
                "malformed": malformed,
                "orders_by_shop": dict(by_shop),
                "shipments": copy.deepcopy(self._shipments),
                "shipped_count": len(shipped),
                "shipment_attempts": len(self._attempts),
                "shipment_attempt_log": copy.deepcopy(self._attempts),
                "shipment_repeat_attempts": self._repeat_attempts,
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "errors": dict(self._errors),
                "rejected_signatures": self._rejected_signatures,
                "throttled": self._rate_limited + self._throttle_faults,
                "rate_limited": self._rate_limited,
                "oaid_decrypted": self._decrypted,
                "oaid_decrypt_refused": self._decrypt_refused,
                "faults": dict(self.faults.injected),
                "fault_config": self.faults.config.model_dump(),
                "now": format_top_time(self.now()),
                **self._stock_state(),
            }

    # -- HTTP -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/router/rest", self._router, methods=["GET", "POST"]),
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/_sim/orders", self._admin_orders, methods=["POST"]),
            Route("/_sim/trades/{tid:int}/{action}", self._admin_lifecycle, methods=["POST"]),
        ])

    def _request_id(self) -> str:
        number = next(self._request_ids)
        return hashlib.sha1(f"{self.seed}:{number}".encode()).hexdigest()[:13]

    def _json(self, body: Mapping[str, Any]) -> Response:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return Response(text, media_type="application/json;charset=UTF-8")

    def _error(self, error: TopError) -> Response:
        with self._lock:
            self._errors[str(error.code)] += 1
        return self._json(error.body(self._request_id()))

    async def _router(self, request: Request) -> Response:
        try:
            params = await _read_params(request)
        except TopError as exc:
            with self._lock:
                self._requests["<unreadable>"] += 1
            return self._error(exc)
        with self._lock:
            self._requests[params.get("method") or "<missing>"] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            if self.server_error_style == "http503":
                return PlainTextResponse("Service Unavailable", status_code=503)
            return self._error(remote_error("isp.top-remote-connection-timeout",
                                            "远程服务调用超时，请稍后重试"))  # sim text
        if fault == "throttle":
            with self._lock:
                self._throttle_faults += 1
                self._count_stock_throttle(params, 7)
            return self._error(call_limited(self.faults.config.retry_after_s))
        try:
            with self._lock:
                body = self._dispatch(params)
        except TopError as exc:
            with self._lock:
                self._count_stock_throttle(params, exc.code)
            return self._error(exc)
        return self._json(body)

    async def _admin_orders(self, request: Request) -> Response:
        try:
            body = await request.json()
            lines = body.get("lines")
            tids = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                   status=str(body.get("status") or WAIT_SEND), presale=body.get("presale", False),
                                   lines=int(lines) if lines is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"tids": [str(tid) for tid in tids]})

    async def _admin_lifecycle(self, request: Request) -> Response:
        """``POST /_sim/trades/{tid}/{action}`` with the method's keyword arguments as JSON
        (``{"oid": ...}`` for refund_line/request_refund, receiver fields for change_address)."""
        actions: dict[str, Callable[..., None]] = {
            "pay": self.pay, "pay_balance": self.pay_balance, "close_unpaid": self.close_unpaid,
            "refund_all": self.refund_all, "refund_line": self.refund_line, "request_refund": self.request_refund,
            "change_address": self.change_address,
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": f"unknown action; one of {', '.join(actions)}"}, status_code=404)
        try:
            body = await request.json() if await request.body() else {}
            action(request.path_params["tid"], **(body or {}))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"tid": str(request.path_params["tid"]), "status": self.status(request.path_params["tid"])})

    # -- gateway checks ---------------------------------------------------------------------

    def _dispatch(self, params: dict[str, str]) -> dict[str, Any]:
        """System-parameter checks in gateway order, then the business handler."""
        method = params.get("method", "")
        if not method:
            raise TopError(21, "Missing method")
        app_key = params.get("app_key", "")
        if not app_key:
            raise TopError(28, "Missing app key")
        secret = self.apps.get(app_key)
        if secret is None:
            raise TopError(29, "Invalid app Key", "isv.appkey-not-exists")
        self._check_timestamp(params.get("timestamp", ""))
        self._check_version(params.get("v", ""))
        if params.get("format", "xml").lower() != "json":
            raise TopError(23, "Invalid format", None,
                           "this simulator answers format=json only (TOP's default is xml)")  # sim text
        self._check_signature(params, secret)
        self._check_rate(app_key)
        handler = self._handlers().get(method)
        if handler is None:
            raise TopError(22, "Invalid method")
        session = params.get("session", "")
        if not session:
            raise TopError(26, "Missing session")
        shop = self.sessions.get(session)
        if shop is None:
            raise TopError(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
        answer = handler(params, shop)
        answer["request_id"] = self._request_id()
        if params.get("simplify", "").lower() == "true":
            return _simplified(answer)
        return {response_key(method): answer}

    def _handlers(self) -> dict[str, Callable[[dict[str, str], str], dict[str, Any]]]:
        return {
            METHOD_INCREMENT: self._increment_get,
            METHOD_FULLINFO: self._fullinfo_get,
            METHOD_OFFLINE_SEND: self._offline_send,
            METHOD_OAID_DECRYPT: self._oaid_decrypt,
            **self._stock_handlers(),
        }

    def _check_timestamp(self, text: str) -> None:
        if not text:
            raise TopError(30, "Missing timestamp")
        try:
            stamp = parse_top_time(text)
        except ValueError:
            raise TopError(31, "Invalid timestamp", None, "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)") from None
        if abs(stamp - self.now()) > TIMESTAMP_TOLERANCE:
            raise TopError(31, "Invalid timestamp", None,
                           "timestamp differs from the server time by more than 10 minutes")  # sim text

    @staticmethod
    def _check_version(version: str) -> None:
        if not version:
            raise TopError(32, "Missing version")
        if version == API_VERSION:
            return
        if re.fullmatch(r"\d+(\.\d+)?", version):
            raise TopError(34, "Unsupported version")
        raise TopError(33, "Invalid version")

    def _check_signature(self, params: Mapping[str, str], secret: str) -> None:
        sign = params.get("sign", "")
        if not sign:
            raise TopError(24, "Missing signature")
        sign_method = params.get("sign_method", "")
        if sign_method not in SIGN_METHODS:
            self._rejected_signatures += 1
            raise TopError(25, "Invalid signature", None,
                           f"sign_method must be one of {', '.join(SIGN_METHODS)}")  # sim text
        if not hmac.compare_digest(sign, top_sign(params, secret, sign_method)):
            self._rejected_signatures += 1
            raise TopError(25, "Invalid signature")

    def _check_rate(self, app_key: str) -> None:
        if self.calls_per_second is None:
            return
        bucket = self._buckets.setdefault(app_key, CallBucket(self.calls_per_second))
        wait = bucket.wait()
        if wait > 0:
            self._rate_limited += 1
            raise call_limited(max(1, math.ceil(wait)))

    # -- taobao.trades.sold.increment.get ---------------------------------------------------

    def _increment_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        fields = _fields(_required(params, "fields"))
        start = _time_arg(params, "start_modified")
        end = _time_arg(params, "end_modified")
        if end <= start or end - start > MAX_WINDOW:
            raise remote_error("isv.invalid-parameter",
                               "end_modified必须大于start_modified，且修改时间跨度不能大于一天")  # sim text
        statuses = _status_filter(params.get("status", ""))
        types = _type_filter(params.get("type", ""))
        buyer = params.get("buyer_nick", "")
        page_no = _int_arg(params, "page_no", 1, low=1)
        page_size = _int_arg(params, "page_size", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        use_has_next = _bool_arg(params, "use_has_next")
        oldest = self.now() - HISTORY
        matching = sorted(
            (t for t in self._trades.values()
             if t.shop == shop and start <= t.modified <= end and t.modified >= oldest
             and (statuses is None or t.status in statuses) and t.data["type"] in types
             and (not buyer or t.data["buyer_nick"] == buyer)),
            key=lambda t: (t.modified, t.tid), reverse=True,
        )
        offset = (page_no - 1) * page_size
        page = matching[offset:offset + page_size]
        if page and self.faults.duplicate():
            page = [*page, page[0]]  # an overlap, as real pages sometimes repeat a trade
        answer: dict[str, Any] = {}
        if use_has_next:
            answer["has_next"] = offset + page_size < len(matching)
        else:
            answer["total_results"] = len(matching)
        if page:
            answer["trades"] = {"trade": [_render(t.data, fields, INCREMENT_FIELDS) for t in page]}
        return answer

    # -- taobao.trade.fullinfo.get ----------------------------------------------------------

    def _fullinfo_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        fields = _fields(_required(params, "fields"))
        tid = _tid_arg(params, "tid")
        trade = self._trades.get(tid)
        if trade is None or trade.shop != shop:
            raise remote_error("isv.trade-not-exist", "交易订单不存在")
        rendered = _render(trade.data, fields, None)
        if trade.clear is not None:  # an app on the privacy scheme: the OAID comes with the masked receiver
            oaid = self._oaid(trade, trade.clear, params["app_key"])
            if oaid is None and _bool_arg(params, "include_oaid"):
                raise remote_error("isv.oaid-field-miss",
                                   "收货人、手机号、收货地址或创建时间为空，无法生成oaid")  # sim text
            if oaid is not None and "oaid" in fields:
                rendered["oaid"] = oaid
        return {"trade": rendered}

    # -- taobao.top.oaid.decrypt ------------------------------------------------------------

    def _oaid_decrypt(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        if params["session"] in self.oaid_denied_sessions or shop in self.oaid_denied_sessions:
            self._decrypt_refused += 1
            raise TopError(11, "Insufficient isv permissions", "isv.permission-api-package-limit",
                           "the app's API packages do not include taobao.top.oaid.decrypt")  # sim text
        try:
            queries = json.loads(_required(params, "query_list"))
        except json.JSONDecodeError:
            raise invalid_argument("query_list", "query_list must be a JSON list of ReceiverQuery") from None
        if not isinstance(queries, list) or not queries or not all(isinstance(q, dict) for q in queries):
            raise invalid_argument("query_list", "query_list must be a JSON list of ReceiverQuery")
        if len(queries) > MAX_DECRYPT_QUERIES:
            raise invalid_argument("query_list", f"at most {MAX_DECRYPT_QUERIES} queries per request")
        receivers = [self._decrypt_one(query, shop, params["app_key"]) for query in queries]
        self._decrypted += len(receivers)
        return {"receiver_list": {"receiver": receivers}}

    def _decrypt_one(self, query: Mapping[str, Any], shop: str, app_key: str) -> dict[str, Any]:
        oaid = str(query.get("oaid") or "").strip()
        tid_text = str(query.get("tid") or "").strip()
        scene = str(query.get("scene") or "").strip()
        if not oaid:
            raise missing_argument("query_list.oaid")
        if not tid_text:
            raise missing_argument("query_list.tid")
        if len(oaid) > MAX_OAID_LENGTH:
            raise invalid_argument("query_list.oaid", f"oaid is longer than {MAX_OAID_LENGTH} characters")
        if not tid_text.isdigit():
            raise invalid_argument("query_list.tid", "tid must be a number")
        if scene and scene not in OAID_SCENES:
            raise invalid_argument("query_list.scene", f"unknown scene {scene}")
        trade = self._trades.get(int(tid_text))
        if trade is None or trade.shop != shop or trade.clear is None:
            raise remote_error("isv.invalid-parameter", "非法参数: oaid与tid不匹配")  # sim text
        current = self._oaid(trade, trade.clear, app_key)
        receiver = next((r for r in [trade.clear, *reversed(trade.former)] if self._oaid(trade, r, app_key) == oaid),
                        None)
        if receiver is None:
            raise remote_error("isv.invalid-parameter", "非法参数: oaid与tid不匹配")  # sim text
        answer: dict[str, Any] = {"tid": tid_text, "oaid": oaid, "matched": oaid == current,
                                  "privacy_protection": False}
        if scene in PHONE_ONLY_SCENES:
            answer["mobile"] = receiver.get("receiver_mobile", "")
            return answer
        for ours, theirs in (("name", "receiver_name"), ("mobile", "receiver_mobile"), ("phone", "receiver_phone"),
                             ("address_detail", "receiver_address"), ("state", "receiver_state"),
                             ("city", "receiver_city"), ("district", "receiver_district"), ("town", "receiver_town")):
            if receiver.get(theirs):
                answer[ours] = receiver[theirs]
        answer["country"] = receiver.get("receiver_country") or "中国"
        return answer

    # -- taobao.logistics.offline.send ------------------------------------------------------

    def _offline_send(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        tid = _tid_arg(params, "tid")
        out_sid = _required(params, "out_sid").strip()
        company = _required(params, "company_code").strip()
        attempt = {"tid": tid, "out_sid": out_sid, "company_code": company, "at": format_top_time(self.now()),
                   "sub_tid": params.get("sub_tid", ""), "ok": False, "sub_code": None}
        self._attempts.append(attempt)
        try:
            self._ship(tid, shop, out_sid, company, params)
        except TopError as exc:
            attempt["sub_code"] = exc.sub_code or str(exc.code)
            raise
        attempt["ok"] = True
        return {"shipping": {"is_success": True}}

    def _ship(self, tid: int, shop: str, out_sid: str, company: str, params: Mapping[str, str]) -> None:
        trade = self._trades.get(tid)
        if trade is None or trade.shop != shop:
            raise logistics_error("B01", "订单不存在")
        split = bool(params.get("sub_tid", "").strip())
        lines = self._lines_to_ship(trade, params.get("is_split", ""), params.get("sub_tid", ""))
        if not split:  # the whole trade: what is left of it once refunded lines are taken out
            lines = [line for line in lines if line["status"] != CLOSED]
        # Only a paid trade waiting for shipment (or partly shipped, for a split package) can be sent;
        # closed, unpaid, shipped trades and lines already sent or refunded are refused with B04
        # (the captured answer names "已经发货或者已关闭"; unpaid trades get the same "订单状态不对").
        allowed = (WAIT_SEND, PART_SENT) if split else (WAIT_SEND,)
        if trade.status not in allowed or not lines or any(line["status"] != WAIT_SEND for line in lines):
            if tid in self._shipments:
                self._repeat_attempts += 1
            raise logistics_error("B04", "订单状态不对该物流订单已经发货或者已关闭，不能重复发货")
        if company not in COMPANIES:
            raise logistics_error("B56", "没有选择物流公司或者物流公司格式不对")
        if not _OUT_SID.match(out_sid) or self._used_waybills.get((company, out_sid), tid) != tid:
            raise logistics_error("B60", "运单号不符合规则或已经被使用")
        moment = self.now()
        for line in lines:
            line.update(status=WAIT_CONFIRM, consign_time=format_top_time(moment), invoice_no=out_sid,
                        logistics_company=COMPANIES[company])
        done = all(line["status"] in (WAIT_CONFIRM, CLOSED) for line in trade.lines)
        trade.data["status"] = WAIT_CONFIRM if done else PART_SENT
        trade.data["consign_time"] = format_top_time(moment)
        trade.touch(moment)
        self._used_waybills[(company, out_sid)] = tid
        package = {"out_sid": out_sid, "company_code": company, "at": format_top_time(moment),
                   "oids": [line["oid"] for line in lines]}
        record = self._shipments.setdefault(tid, {**package, "packages": []})
        record["packages"].append(package)

    @staticmethod
    def _lines_to_ship(trade: SimTrade, is_split: str, sub_tid: str) -> list[dict[str, Any]]:
        """All lines, or with ``is_split=1`` the ``sub_tid`` ones (both or neither must be given)."""
        if bool(is_split.strip() and is_split.strip() != "0") != bool(sub_tid.strip()):
            raise logistics_error("CD25", "拆单标记和子订单列表两者必须都填或者都不填")
        if not sub_tid.strip():
            return trade.lines
        try:
            wanted = {int(part) for part in sub_tid.split(",") if part.strip()}
        except ValueError:
            raise invalid_argument("sub_tid", "sub_tid must be comma-separated order ids") from None
        chosen = [line for line in trade.lines if line["oid"] in wanted]
        if len(chosen) != len(wanted):
            raise logistics_error("B06", "传入的子订单号必须完全匹配物流包裹中的子订单")
        return chosen


# --------------------------------------------------------------------------- masking


def _masked(key: str, value: str) -> str:
    """TOP-style 脱敏 of one receiver field (sim rule: "王**", "138****5678", "0571-****6666", "文三路***")."""
    if key == "receiver_name":
        return value[:1] + "**"
    if key == "receiver_address":
        return value[:3] + "***"
    area, dash, number = value.rpartition("-")
    if dash and area:
        return f"{area}-****{number[-4:]}"
    return f"{value[:3]}****{value[-4:]}" if len(value) >= 7 else "****"


# --------------------------------------------------------------------------- request helpers


async def _read_params(request: Request) -> dict[str, str]:
    """Query string and form body merged; a name given twice with different values is refused."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type.startswith("multipart/"):
            raise invalid_argument("body", "multipart bodies (file uploads) are not supported here")  # sim text
        if body and content_type in ("", "application/x-www-form-urlencoded", "text/plain"):
            try:
                pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise invalid_argument("body", "the body must be UTF-8") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params and params[name] != value:
            raise invalid_argument(name, f"parameter {name} given twice with different values")  # sim text
        params[name] = value
    return params


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value.strip():
        raise missing_argument(name)
    return value


def _time_arg(params: Mapping[str, str], name: str) -> datetime:
    try:
        return parse_top_time(_required(params, name))
    except ValueError:
        raise invalid_argument(name, f"{name} must be yyyy-MM-dd HH:mm:ss") from None


def _int_arg(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise invalid_argument(name, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise invalid_argument(name, f"{name} must be between {low} and {high}" if high else f"{name} >= {low}")
    return value


def _tid_arg(params: Mapping[str, str], name: str) -> int:
    text = _required(params, name).strip()
    if not text.isdigit():
        raise invalid_argument(name, f"{name} must be a number")
    return int(text)


def _bool_arg(params: Mapping[str, str], name: str) -> bool:
    text = params.get(name, "").strip().lower()
    if text in ("", "false"):
        return False
    if text == "true":
        return True
    raise invalid_argument(name, f"{name} must be true or false")


def _status_filter(status: str) -> frozenset[str] | None:
    """One state (or one documented group) per query, as the documentation says; None = all."""
    status = status.strip()
    if not status:
        return None
    if status in STATUS_GROUPS:
        return STATUS_GROUPS[status]
    if status in TRADE_STATUSES:
        return frozenset({status})
    raise invalid_argument("status", f"unknown trade status {status!r}")


def _type_filter(types: str) -> frozenset[str]:
    names = [name.strip() for name in types.split(",") if name.strip()]
    if not names:
        return DEFAULT_TYPES
    return frozenset().union(*(TYPE_GROUPS.get(name, frozenset({name})) for name in names))


def _fields(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def _render(data: Mapping[str, Any], fields: set[str], allowed: frozenset[str] | None) -> dict[str, Any]:
    """The trade limited to ``fields`` (and to ``allowed``); ``orders.x`` picks order sub-fields."""
    top = {name for name in fields if "." not in name and (allowed is None or name in allowed)}
    sub = {name.split(".", 1)[1] for name in fields if name.startswith("orders.")}
    out = {key: copy.deepcopy(value) for key, value in data.items() if key in top and key != "orders"}
    if ("orders" in top or sub) and (allowed is None or "orders" in allowed):
        lines = data["orders"]["order"]
        if "orders" not in top:
            lines = [{key: value for key, value in line.items() if key in sub} for line in lines]
        out["orders"] = {"order": copy.deepcopy(list(lines))}
    return out


def _simplified(answer: Any) -> Any:
    """TOP's 精简JSON (simplify=true): no list wrappers such as ``{"trade": [...]}``."""
    if isinstance(answer, dict):
        if len(answer) == 1:
            (only,) = answer.values()
            if isinstance(only, list):
                return [_simplified(item) for item in only]
        return {key: _simplified(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [_simplified(item) for item in answer]
    return answer
