"""A local Pinduoduo open-platform gateway (拼多多开放平台 POP, ``/api/router``), written from the docs.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the platform's documentation.

Rules enforced, and where each one comes from:

* Common parameters -- the POP API pages ("公共参数"): ``type``, ``client_id``, ``access_token``,
  ``timestamp`` ("UNIX时间戳,单位秒,需要与拼多多服务器时间差值在10分钟内"), ``data_type`` (JSON/XML, upper
  case; this simulator answers JSON only), ``version`` (V1), ``sign``. Parameters are read from a
  form-encoded POST body and the query string.
* Signature -- the official PHP SDK ``PopHttpClient::makeSign``: parameters sorted by name, ``sign``
  and empty values left out, ``name + value`` concatenated, ``client_secret`` before and after,
  MD5, upper-case hex.
* ``pdd.order.number.list.increment.get``: ``start_updated_at``/``end_updated_at`` unix seconds,
  "end_updated_at - start_updated_at<= 30min"; only orders of the last three months ("只能获取到成交
  时间三个月以内的交易信息"); ``page`` from 1, ``page_size`` default 100, max 100; ``order_status``
  (1/2/3, 5 = all), ``refund_status`` (1..4, 5 = all), ``is_lucky_flag`` (0 all, 1, 2), ``trade_type``
  (0/1, absent = all), ``use_has_next`` (true: ``has_next`` only, no total). Answer
  ``order_sn_increment_get_response`` {``total_count``, ``has_next``, ``order_sn_list``} with full orders.
* ``pdd.order.information.get``: ``order_sn`` → ``order_info_get_response.order_info``.
* ``pdd.logistics.online.send`` (``order_sn``, ``logistics_id``, ``tracking_number``) → ``is_success``;
  only an order 待发货 that is 已成交 and not refunded can be sent; it then becomes 已发货待签收 with
  ``tracking_number``, ``logistics_id`` and ``shipping_time``.
* ``pdd.order.upload.extra.logistics`` (``order_sn``, ``extra_track_type`` 1 分包发货 / 2 补发 / 3 赠品,
  ``extra_track_list`` JSON of ``{shipping_id, tracking_number}``) → ``success``; the parcels show in
  the order's ``extra_delivery_list`` (分包) / ``resend_delivery_list`` / ``gift_delivery_list``.
* ``pdd.logistics.companies.get`` → ``logistics_companies`` [{id, logistics_company, code, available}].
* ``pdd.open.decrypt.batch``: ``data_list`` JSON of ``{data_tag, encrypted_data}`` (at most 100), answer
  ``data_decrypt_list`` [{data_tag, encrypted_data, decrypted_data, data_type, error_code (0 = 成功),
  error_msg, virtual_number_type}]. Receivers are returned encrypted while the order waits for
  shipment, with ``*_mask`` values; "其余情况返回空字符串" -- after shipment the ciphertext fields are
  empty strings (masks stay).
* Errors: ``{"error_response": {"error_code", "error_msg", "sub_code", "sub_msg", "request_id"}}``,
  HTTP 200. From the SDKs: 70031 调用过于频繁，请调整调用频率 (throttling), 52103 服务暂时不可用，请稍后重试,
  10019 access_token已过期. Codes the stored docs do not list, chosen here (``# sim code``): 10000
  参数错误 (missing/invalid parameters, window too wide, unknown order), 10016 client_id不存在, 20004
  签名校验失败, 20031 用户没有授权访问此接口 (an API not in this simulator).
* Stock (商品 APIs ``pdd.goods.list.get``, ``pdd.goods.skus.get``, ``pdd.goods.quantity.update``): every
  mall lists every catalogue SKU under the goods/sku ids its orders use; rules and sources in
  :mod:`simulators.pdd_stock`. A stock write refused with 70031 counts as ``stock_throttled``.
* Message service (消息服务): POP delivers ``pdd_trade_TradeModified`` frames over WebSocket; here every
  change records such a frame (``messages()``), and ``signed_push(frame)`` gives the HTTP relay of it
  (query ``client_id``, ``timestamp``, ``sign`` over those and ``body``) that a bridge would post.

Choices where the documentation is silent (``# sim choice``): ciphertexts look like ``~base64~n~``
(name, address) and ``$base64$n$`` (phone); the listing is sorted by ``updated_at`` ascending;
windows are inclusive at both ends; unpaid orders never time out by themselves (``cancel`` does it);
an order whose group has not formed (confirm_status 0) is listed like the others.

Public API: ``PddSimulator(clients, shops, orders_per_shop, malformed_per_shop, seed, now,
spread_hours, faults, calls_per_second, catalog, server_error_style, initial_stock)``; ``.app`` (ASGI:
``/api/router``, ``GET /_sim/state``, ``GET|POST /_sim/faults``, ``POST /_sim/orders``
``{"shop", "n", "malformed", "status", "presale", "lines"}``, ``POST /_sim/orders/{order_sn}/{action}``);
``state()``, ``orders(shop)``, ``order(sn)``, ``status(sn)``, ``writebacks(sn)``, ``clear_receiver(sn)``,
``add_orders(...)``, ``make_order(...)``; lifecycle ``confirm``, ``pay_deposit``, ``pay_balance``,
``cancel``, ``request_refund``, ``reject_refund``, ``refund_all``, ``refund_line`` (POP refunds whole
orders: ``refund_all``), ``change_address``, ``receive``; ``messages()``, ``signed_push(frame)``,
``signed_params(api, params)``; ``now()``/``set_now()``/``advance()``; stock: ``shown_stock(sku, shop)``,
``set_shown_stock(sku, quantity, shop)``, ``stock_updates``, ``counters`` (stock_writes, stock_throttled);
module helper ``pdd_sign``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
from simulators.pdd_stock import STOCK_APIS, STOCK_RESPONSE_KEYS, PddStock
from simulators.ratelimit import CallBucket

CST = timezone(timedelta(hours=8), "CST")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_TOLERANCE = 600  # seconds
MAX_WINDOW = 30 * 60
HISTORY = timedelta(days=90)
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE = 100
MAX_DECRYPT = 100

INCREMENT = "pdd.order.number.list.increment.get"
INFORMATION = "pdd.order.information.get"
ONLINE_SEND = "pdd.logistics.online.send"
EXTRA_LOGISTICS = "pdd.order.upload.extra.logistics"
COMPANIES_GET = "pdd.logistics.companies.get"
DECRYPT = "pdd.open.decrypt.batch"
RESPONSE_KEYS = {
    INCREMENT: "order_sn_increment_get_response", INFORMATION: "order_info_get_response",
    ONLINE_SEND: "logistics_online_send_response", EXTRA_LOGISTICS: "upload_extra_logistics_response",
    COMPANIES_GET: "logistics_companies_get_response", DECRYPT: "open_decrypt_batch_response",
    **STOCK_RESPONSE_KEYS,
}
NEEDS_TOKEN = frozenset({INCREMENT, INFORMATION, ONLINE_SEND, EXTRA_LOGISTICS, DECRYPT}) | STOCK_APIS

#: logistics companies as pdd.logistics.companies.get lists them: id, name, code
COMPANIES: tuple[tuple[int, str, str], ...] = (
    (1, "申通快递", "STO"), (3, "百世快递", "HT"), (44, "顺丰快递", "SF"), (85, "圆通快递", "YTO"),
    (115, "中通快递", "ZTO"), (118, "邮政EMS", "EMS"), (120, "京东配送", "JD"), (121, "韵达快递", "YUNDA"),
    (131, "德邦快递", "DEPPON"), (132, "邮政快递包裹", "YZXB"),
)
COMPANY_IDS = frozenset(c[0] for c in COMPANIES)

WAIT_SHIP, SHIPPED, RECEIVED = 1, 2, 3
REFUND_NONE, REFUND_AFTER_SALES, REFUND_REFUNDING, REFUND_DONE = 1, 2, 3, 4
UNCONFIRMED, CONFIRMED, CANCELLED = 0, 1, 2
STEP_NOTHING, STEP_DEPOSIT, STEP_ALL = 0, 1, 2
DEPOSIT_SHARE = Decimal("0.2")  # sim choice
DEFECT_KINDS = ("empty_address", "no_phone", "missing_sku", "bad_amount")
CENT = Decimal("0.01")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰",
         "秀英", "建华", "子涵", "欣怡", "浩然")
REGIONS = (
    ("浙江省", "杭州市", "西湖区"), ("上海市", "上海市", "浦东新区"), ("北京市", "北京市", "朝阳区"),
    ("广东省", "深圳市", "南山区"), ("江苏省", "南京市", "鼓楼区"), ("四川省", "成都市", "武侯区"),
    ("湖北省", "武汉市", "洪山区"), ("山东省", "青岛市", "市南区"), ("河南省", "郑州市", "金水区"),
)
ROADS = ("文一西路", "学院路", "建国路", "人民路", "中山路", "解放路", "长江路", "和平路")
MEMOS = ("请尽快发货，谢谢！", "麻烦包装结实一点", "放快递柜就行", "")


# --------------------------------------------------------------------------- signing and time


def pdd_sign(params: Mapping[str, str], secret: str) -> str:
    """upper(md5(secret + sorted name+value (no sign, no empty) + secret))."""
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and k and params[k] != "")
    return hashlib.md5((secret + text + secret).encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def pdd_time(moment: datetime) -> str:
    return moment.astimezone(CST).strftime(TIME_FORMAT)


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _mask_name(name: str) -> str:
    return name[0] + "*" * max(1, len(name) - 1)


def _mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


def _mask_address(address: str) -> str:
    return address[:2] + "***" + address[-1:] if len(address) > 3 else "***"


class PopError(Exception):
    """A request the gateway refuses: answered as ``error_response`` with HTTP 200."""

    def __init__(self, code: int, msg: str, sub_msg: str = "") -> None:
        super().__init__(f"{code} {msg} {sub_msg}".strip())
        self.code, self.msg, self.sub_msg = code, msg, sub_msg

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error_response": {"error_code": self.code, "error_msg": self.msg, "sub_msg": self.sub_msg,
                                   "sub_code": None, "request_id": request_id}}


def bad_param(name: str, why: str = "") -> PopError:
    return PopError(10000, "参数错误", why or f"{name} 参数不合法")  # sim code


@dataclass
class SimOrder:
    order_sn: str
    shop: str
    created: datetime
    updated: datetime
    data: dict[str, Any]
    clear: dict[str, str]  # the receiver in clear: name, phone, address
    defect: str | None = None

    def touch(self, moment: datetime) -> None:
        self.updated = moment.replace(microsecond=0)
        self.data["updated_at"] = pdd_time(self.updated)




class PddSimulator(SimClock, SimAdmin, PddStock):
    """A POP gateway serving seeded malls; ``app`` is the ASGI app (``/api/router`` + ``/_sim/*``).

    ``clients`` maps client_id → client_secret, ``shops`` maps access_token → our shop (mall) name.
    Each shop starts with ``orders_per_shop`` paid orders waiting for shipment (已成交, 待发货),
    ``malformed_per_shop`` of them deliberately malformed (cycling through ``DEFECT_KINDS``), created
    over the ``spread_hours`` before ``now``. The clock starts at ``now`` and runs with the wall clock.
    Every mall lists every catalogue SKU with ``initial_stock`` units (one number for all, or per SKU
    code); see :mod:`simulators.pdd_stock`.
    """

    # the stock APIs (simulators.pdd_stock, imported by this module) answer in this gateway's words
    _bad_param = staticmethod(bad_param)

    def __init__(
        self,
        clients: Mapping[str, str],
        shops: Mapping[str, str],
        orders_per_shop: int = 20,
        malformed_per_shop: int = 0,
        seed: int = 1,
        now: datetime | None = None,
        spread_hours: float = 6,
        faults: FaultConfig | None = None,
        calls_per_second: float | None = None,
        catalog: Iterable[Mapping[str, Any]] | None = None,
        server_error_style: Literal["platform", "http503"] = "platform",
        initial_stock: int | Mapping[str, int] = 0,
    ) -> None:
        if not clients or not shops:
            raise ValueError("at least one client (client_id -> secret) and one shop (access_token -> name)")
        if not 0 <= malformed_per_shop <= orders_per_shop:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.clients = dict(clients)
        self.tokens = dict(shops)
        self.seed = seed
        self.catalog = [dict(e) for e in (catalog if catalog is not None else CATALOG)]
        self.faults = FaultInjector(faults or FaultConfig())
        self.calls_per_second = calls_per_second
        self.server_error_style = server_error_style
        self.start_clock(now)
        self._lock = threading.RLock()
        self._orders: dict[str, SimOrder] = {}
        self._rngs: dict[str, random.Random] = {}
        self._defect_cycle = itertools.cycle(DEFECT_KINDS)
        self._ciphers: dict[str, tuple[str, str, int]] = {}  # ciphertext -> (order_sn, clear, data_type)
        self._buckets: dict[str, CallBucket] = {}
        self._request_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._messages: list[dict[str, Any]] = []
        self._writebacks: dict[str, list[dict[str, Any]]] = {}
        self._attempts: list[dict[str, Any]] = []
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rejected_signatures = 0
        self._rate_limited = 0
        self._throttle_faults = 0
        self._decrypted = 0
        self._init_stock(initial_stock)
        start = self.now()
        for shop in dict.fromkeys(self.tokens.values()):
            self._seed_shop(shop, orders_per_shop, malformed_per_shop, start, spread_hours)
        self.app = self._build_app()

    # -- data -------------------------------------------------------------------------------

    def _rng(self, shop: str) -> random.Random:
        if shop not in self._rngs:
            self._rngs[shop] = random.Random(f"pdd:{self.seed}:{shop}")
        return self._rngs[shop]

    def _shop_of(self, shop_or_token: str) -> str:
        if shop_or_token in self.tokens:
            return self.tokens[shop_or_token]
        if shop_or_token in self.tokens.values():
            return shop_or_token
        raise KeyError(f"unknown shop or access_token {shop_or_token!r}")

    def _new_sn(self, rng: random.Random, created: datetime) -> str:
        while True:  # "形如：20150909-452750051"; current order_sn: yyMMdd- + 15 digits
            sn = f"{created.astimezone(CST):%y%m%d}-{rng.randrange(10**14, 10**15)}"
            if sn not in self._orders:
                return sn

    def _cipher(self, rng: random.Random, order_sn: str, clear: str, data_type: int) -> str:
        """Ciphertext of one receiver value (data_type 5 name, 6 phone, 8 detailed address)."""
        if not clear:
            return ""
        token = base64.b64encode(hashlib.sha256(f"{self.seed}:{order_sn}:{clear}:{rng.random()}".encode())
                                 .digest()[:24]).decode()
        text = f"${token}$1$" if data_type == 6 else f"~{token}~1~"  # sim choice
        self._ciphers[text] = (order_sn, clear, data_type)
        return text

    def _set_receiver(self, order: SimOrder, rng: random.Random, name: str, phone: str, address: str) -> None:
        order.clear = {"name": name, "phone": phone, "address": address}
        sn, data = order.order_sn, order.data
        data.update(
            receiver_name=self._cipher(rng, sn, name, 5), receiver_name_mask=_mask_name(name) if name else "",
            receiver_phone=self._cipher(rng, sn, phone, 6), receiver_phone_mask=_mask_phone(phone) if phone else "",
            receiver_address=self._cipher(rng, sn, address, 8),
            receiver_address_mask=_mask_address(address) if address else "",
            address=self._cipher(rng, sn, f"{data['province']}{data['city']}{data['town']}{address}", 7),
            address_mask=_mask_address(f"{data['province']}{data['city']}{address}") if address else "",
        )

    def _make(self, shop: str, created: datetime, paid: datetime | None, updated: datetime, defect: str | None,
              *, confirmed: bool = True, presale: str | None = None, lines: int | None = None) -> SimOrder:
        rng = self._rng(shop)
        sn = self._new_sn(rng, created)
        count = lines if lines is not None else rng.choice((1, 1, 1, 2, 2, 3))
        items = []
        for entry in rng.sample(self.catalog, k=min(count, len(self.catalog))):
            items.append({
                "goods_id": int(entry["num_iid"]) % 10**9, "goods_name": str(entry["item_title"]),
                "goods_spec": ",".join(p.split(":", 1)[-1] for p in str(entry["properties"]).split(";") if p),
                "goods_price": money(Decimal(str(entry["price"]))), "goods_count": rng.choice((1, 1, 1, 2, 3)),
                "outer_goods_id": str(entry["outer_iid"]), "outer_id": str(entry["sku"]),
                "sku_id": int(entry["sku_id"]) % 10**10, "goods_img": "",
            })
        goods = sum((Decimal(i["goods_price"]) * i["goods_count"] for i in items), Decimal(0))
        platform_discount = Decimal(rng.choice(("0", "0", "2.00", "3.00")))
        seller_discount = Decimal(rng.choice(("0", "0", "0", "5.00")))
        discount = min(platform_discount + seller_discount, goods)
        postage = Decimal(rng.choice(("0", "0", "0", "8.00")))
        pay = goods - discount + postage
        province, city, town = rng.choice(REGIONS)
        pre_sale = presale is None and rng.random() < 0.08  # presale goods: ship later
        data: dict[str, Any] = {
            "order_sn": sn, "created_time": pdd_time(created), "updated_at": pdd_time(updated),
            "confirm_status": CONFIRMED if (confirmed and paid is not None) else UNCONFIRMED,
            "confirm_time": pdd_time(paid) if (confirmed and paid is not None) else "",
            "pay_time": pdd_time(paid) if paid is not None else "", "pay_type": "WEIXIN",
            "order_status": WAIT_SHIP, "refund_status": REFUND_NONE, "after_sales_status": 0,
            "group_status": 1 if confirmed else 0, "is_lucky_flag": 1, "trade_type": 0, "step_order_info": None,
            "is_pre_sale": 1 if pre_sale else 0,
            "pre_sale_time": pdd_time(created + timedelta(days=7)) if pre_sale else "",
            "goods_amount": money(goods), "discount_amount": money(discount),
            "platform_discount": money(platform_discount), "seller_discount": money(seller_discount),
            "capital_free_discount": "0.00", "order_change_amount": "0.00", "postage": money(postage),
            "pay_amount": money(pay), "item_list": items, "gift_list": [], "buyer_memo": rng.choice(MEMOS),
            "remark": "", "country": "中国", "province": province, "city": city, "town": town,
            "tracking_number": "", "logistics_id": 0, "shipping_time": "", "receive_time": "",
            "extra_delivery_list": [], "resend_delivery_list": [], "gift_delivery_list": [],
            "risk_control_status": 0, "mkt_biz_type": 0, "order_tag_list": [],
        }
        if presale is not None:  # 定金订单
            step = {"nothing": STEP_NOTHING, "deposit": STEP_DEPOSIT, "all": STEP_ALL}[presale]
            paid_fee = {STEP_NOTHING: Decimal(0), STEP_DEPOSIT: (pay * DEPOSIT_SHARE).quantize(CENT)}.get(step, pay)
            data.update(trade_type=1, step_order_info={
                "step_trade_status": step, "step_paid_fee": money(paid_fee),
                "advanced_paid_fee": money((pay * DEPOSIT_SHARE).quantize(CENT)) if step else "0.00",
                "step_discount_amount": "0.00"})
            if step != STEP_ALL:
                data.update(confirm_status=UNCONFIRMED, confirm_time="", pay_time="")
        order = SimOrder(order_sn=sn, shop=shop, created=created, updated=updated, data=data, clear={}, defect=defect)
        address = (f"{rng.choice(ROADS)}{rng.randrange(1, 1200)}号{rng.randrange(1, 30)}幢"
                   f"{rng.randrange(1, 33)}0{rng.randrange(1, 9)}室")
        phone = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
        self._set_receiver(order, rng, rng.choice(SURNAMES) + rng.choice(GIVEN), phone, address)
        self._spoil(order, rng, defect)
        return order

    def _spoil(self, order: SimOrder, rng: random.Random, defect: str | None) -> None:
        """A defect that still makes valid POP JSON."""
        data = order.data
        if defect == "empty_address":
            self._set_receiver(order, rng, order.clear["name"], order.clear["phone"], "")
        elif defect == "no_phone":
            self._set_receiver(order, rng, order.clear["name"], "", order.clear["address"])
        elif defect == "missing_sku":
            data["item_list"][0].update(outer_id="", sku_id=rng.randrange(9 * 10**9, 10**10))
        elif defect == "bad_amount":
            data["pay_amount"] = data["pay_amount"].replace(".", ",")

    def _defects(self, rng: random.Random, total: int, malformed: int) -> list[str | None]:
        positions = set(rng.sample(range(total), k=malformed))
        return [next(self._defect_cycle) if i in positions else None for i in range(total)]

    def _seed_shop(self, shop: str, count: int, malformed: int, now: datetime, spread_hours: float) -> None:
        rng = self._rng(shop)
        spread = max(120.0, spread_hours * 3600)
        end = now.replace(microsecond=0)
        for defect in self._defects(rng, count, malformed):
            created = end - timedelta(seconds=int(rng.uniform(60, spread)))
            paid = min(created + timedelta(seconds=rng.randrange(5, 300)), end)
            updated = min(paid + timedelta(seconds=rng.randrange(1, 60)), end)
            order = self._make(shop, created, paid, updated, defect)
            self._orders[order.order_sn] = order

    def add_orders(self, shop_or_token: str, n: int, malformed: int = 0, *,
                   status: Literal["paid", "unconfirmed"] = "paid",
                   presale: Literal["nothing", "deposit", "all"] | None = None,
                   lines: int | None = None) -> list[str]:
        """Create ``n`` orders now; returns their order_sn. ``status="unconfirmed"``: paid into a group
        that has not formed (confirm_status 0; ``confirm`` forms it). ``presale``: a 定金订单 at that
        step (nothing paid / deposit paid / all paid). ``lines``: that many items."""
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        if status not in ("paid", "unconfirmed"):
            raise ValueError("status is 'paid' or 'unconfirmed'")
        if lines is not None and not 1 <= lines <= len(self.catalog):
            raise ValueError(f"lines must be between 1 and {len(self.catalog)}")
        with self._lock:
            shop = self._shop_of(shop_or_token)
            rng = self._rng(shop)
            end = self.now().replace(microsecond=0)
            sns = []
            for defect in self._defects(rng, n, malformed):
                created = end - timedelta(seconds=rng.randrange(5, 120))
                order = self._make(shop, created, end, end, defect, confirmed=status == "paid",
                                   presale=presale, lines=lines)
                self._orders[order.order_sn] = order
                self._message(order, "pdd_trade_TradeCreated")
                sns.append(order.order_sn)
            return sns

    def make_order(self, shop_or_token: str, *, status: Literal["paid", "unconfirmed"] = "paid",
                   presale: Literal["nothing", "deposit", "all"] | None = None, lines: int | None = None,
                   defect: str | None = None) -> str:
        """One new order now (see ``add_orders``); ``defect`` one of ``DEFECT_KINDS``."""
        if defect is not None and defect not in DEFECT_KINDS:
            raise ValueError(f"defect must be one of {', '.join(DEFECT_KINDS)}")
        with self._lock:
            (sn,) = self.add_orders(shop_or_token, 1, status=status, presale=presale, lines=lines)
            if defect is not None:
                order = self._orders[sn]
                self._spoil(order, self._rng(order.shop), defect)
                order.defect = defect
            return sn

    # -- lifecycle ----------------------------------------------------------------------------
    # Each step moves updated_at ("订单最近一次更新时间") and records a message-service frame.

    def _live(self, sn: str) -> SimOrder:
        order = self._orders.get(str(sn))
        if order is None:
            raise KeyError(f"no order {sn}")
        return order

    def _changed(self, order: SimOrder, kind: str = "pdd_trade_TradeModified") -> None:
        order.touch(self.now())
        self._message(order, kind)

    def _message(self, order: SimOrder, kind: str) -> None:
        content = {"tid": order.order_sn, "mall_id": int(hashlib.sha1(order.shop.encode()).hexdigest()[:8], 16),
                   "order_status": order.data["order_status"], "refund_status": order.data["refund_status"]}
        self._messages.append({"commandType": "Common", "id": next(self._message_ids),
                               "sendTime": int(self.now().timestamp() * 1000),
                               "message": {"type": kind, "mallID": content["mall_id"],
                                           "content": json.dumps(content, ensure_ascii=False)}})

    def _require_open(self, order: SimOrder) -> None:
        if order.data["confirm_status"] == CANCELLED or order.data["refund_status"] == REFUND_DONE:
            raise ValueError(f"order {order.order_sn} is closed")

    def confirm(self, sn: str) -> None:
        """The group forms (成团): confirm_status 0 → 1 (已成交), confirm_time set."""
        with self._lock:
            order = self._live(sn)
            self._require_open(order)
            if order.data["confirm_status"] != UNCONFIRMED or order.data["trade_type"] == 1:
                raise ValueError(f"order {sn} is not an ordinary order waiting for its group")
            moment = pdd_time(self.now())
            order.data.update(confirm_status=CONFIRMED, confirm_time=moment, group_status=1,
                              pay_time=order.data["pay_time"] or moment)
            self._changed(order)

    pay = confirm

    def pay_deposit(self, sn: str) -> None:
        """定金订单: the deposit is paid (step_trade_status 0 → 1)."""
        with self._lock:
            order = self._live(sn)
            step = order.data.get("step_order_info") or {}
            if order.data["trade_type"] != 1 or step.get("step_trade_status") != STEP_NOTHING:
                raise ValueError(f"order {sn} is not a presale order with nothing paid")
            step.update(step_trade_status=STEP_DEPOSIT, step_paid_fee=step["advanced_paid_fee"] or money(
                (Decimal(order.data["pay_amount"]) * DEPOSIT_SHARE).quantize(CENT)))
            self._changed(order)

    def pay_balance(self, sn: str) -> None:
        """定金订单: the balance is paid (1 → 2); the order is 已成交 and can ship."""
        with self._lock:
            order = self._live(sn)
            step = order.data.get("step_order_info") or {}
            if order.data["trade_type"] != 1 or step.get("step_trade_status") != STEP_DEPOSIT:
                raise ValueError(f"order {sn} is not a presale order waiting for its balance")
            moment = pdd_time(self.now())
            step.update(step_trade_status=STEP_ALL, step_paid_fee=order.data["pay_amount"])
            order.data.update(confirm_status=CONFIRMED, confirm_time=moment, pay_time=moment)
            self._changed(order)

    def cancel(self, sn: str) -> None:
        """An order that is not 已成交 (group failed, presale balance never paid) is cancelled:
        confirm_status 2 (已取消)."""
        with self._lock:
            order = self._live(sn)
            if order.data["confirm_status"] != UNCONFIRMED:
                raise ValueError(f"order {sn} is 已成交 or cancelled: refund it instead")
            order.data.update(confirm_status=CANCELLED, group_status=2)
            self._changed(order)

    def request_refund(self, sn: str) -> None:
        """The buyer asks for the money back: refund_status 2 (售后处理中), after_sales_status 2."""
        with self._lock:
            order = self._live(sn)
            self._require_open(order)
            order.data.update(refund_status=REFUND_AFTER_SALES, after_sales_status=2)
            self._changed(order, "pdd_refund_RefundCreated")

    def reject_refund(self, sn: str) -> None:
        """The merchant refuses and the case closes: refund_status 1 (售后关闭)."""
        with self._lock:
            order = self._live(sn)
            if order.data["refund_status"] not in (REFUND_AFTER_SALES, REFUND_REFUNDING):
                raise ValueError(f"order {sn} has no after-sales case open")
            order.data.update(refund_status=REFUND_NONE, after_sales_status=9)
            self._changed(order)

    def refund_all(self, sn: str) -> None:
        """The order is refunded in full: refund_status 4 (退款成功), after_sales_status 10."""
        with self._lock:
            order = self._live(sn)
            self._require_open(order)
            if order.data["confirm_status"] != CONFIRMED:
                raise ValueError(f"order {sn} was never 已成交: cancel it")
            order.data.update(refund_status=REFUND_DONE, after_sales_status=10)
            self._changed(order, "pdd_refund_RefundAgreed")

    def refund_line(self, sn: str, sku_id: int | str | None = None) -> None:
        """POP refunds whole orders (退款状态 is per order): the same as ``refund_all``."""
        self.refund_all(sn)

    def change_address(self, sn: str, *, name: str | None = None, phone: str | None = None,
                       address: str | None = None) -> None:
        """The buyer changes the receiver before shipment: new ciphertexts and masks."""
        with self._lock:
            order = self._live(sn)
            if order.data["order_status"] != WAIT_SHIP:
                raise ValueError(f"order {sn} has shipped: the address can no longer change")
            self._set_receiver(order, self._rng(order.shop), name or order.clear["name"],
                               phone or order.clear["phone"], address or order.clear["address"])
            self._changed(order)

    def receive(self, sn: str) -> None:
        """The buyer signs for the parcel: order_status 3 (已签收)."""
        with self._lock:
            order = self._live(sn)
            if order.data["order_status"] != SHIPPED:
                raise ValueError(f"order {sn} is not 已发货待签收")
            order.data.update(order_status=RECEIVED, receive_time=pdd_time(self.now()))
            self._changed(order)

    # -- accessors ----------------------------------------------------------------------------

    def order(self, sn: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._live(sn).data)

    def status(self, sn: str) -> dict[str, int]:
        with self._lock:
            data = self._live(sn).data
            return {k: data[k] for k in ("confirm_status", "order_status", "refund_status", "trade_type")}

    def clear_receiver(self, sn: str) -> dict[str, str]:
        """What ``pdd.open.decrypt.batch`` reveals for this order (for tests)."""
        with self._lock:
            return dict(self._live(sn).clear)

    def orders(self, shop_or_token: str) -> list[dict[str, Any]]:
        with self._lock:
            shop = self._shop_of(shop_or_token)
            chosen = sorted((o for o in self._orders.values() if o.shop == shop), key=lambda o: (o.created, o.order_sn))
            return [copy.deepcopy(o.data) for o in chosen]

    def writebacks(self, sn: str) -> list[tuple[str, int, str]]:
        """Every parcel POP took for the order, in order: (tracking_number, logistics_id, "send"|"extra")."""
        with self._lock:
            return [(w["tracking_number"], w["logistics_id"], w["kind"]) for w in self._writebacks.get(str(sn), [])]

    def messages(self) -> list[dict[str, Any]]:
        """Message-service frames recorded so far (pdd_trade_TradeModified ...), oldest first."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def signed_push(self, frame: Mapping[str, Any], client_id: str | None = None) -> tuple[dict[str, str], bytes]:
        """The HTTP relay of one frame: (query with client_id, timestamp, sign; body)."""
        client_id = client_id or next(iter(self.clients))
        body = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        query = {"client_id": client_id, "timestamp": str(int(self.now().timestamp()))}
        query["sign"] = pdd_sign({**query, "body": body}, self.clients[client_id])
        return query, body.encode("utf-8")

    def signed_params(self, api: str, params: Mapping[str, Any], *, client_id: str | None = None,
                      access_token: str | None = None) -> dict[str, str]:
        """Common + business parameters stamped with the simulator clock and signed (for tests)."""
        client_id = client_id or next(iter(self.clients))
        merged = {"type": api, "client_id": client_id, "access_token": access_token or next(iter(self.tokens)),
                  "timestamp": str(int(self.now().timestamp())), "data_type": "JSON", "version": "V1",
                  **{k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) if isinstance(v, list | dict)
                     else str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}}
        merged["sign"] = pdd_sign(merged, self.clients[client_id])
        return merged

    def state(self) -> dict[str, Any]:
        """What the platform holds, from its own data (never from the hub)."""
        with self._lock:
            malformed = {sn: o.defect for sn, o in self._orders.items() if o.defect}
            shipped = [sn for sn, o in self._orders.items()
                       if o.data["order_status"] in (SHIPPED, RECEIVED) and self._writebacks.get(sn)]
            return {
                "orders_created": len(self._orders),
                "orders_malformed": len(malformed),
                "malformed_tids": sorted(malformed),
                "malformed": malformed,
                "orders_by_shop": dict(Counter(o.shop for o in self._orders.values())),
                "shipped_count": len(shipped),
                "split_parcels": sum(1 for ws in self._writebacks.values() for w in ws if w["kind"] == "extra"),
                "shipments": copy.deepcopy(self._writebacks),
                "shipment_attempts": len(self._attempts),
                "shipment_attempt_log": copy.deepcopy(self._attempts),
                "decrypted_values": self._decrypted,
                "messages": len(self._messages),
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "errors": dict(self._errors),
                "rejected_signatures": self._rejected_signatures,
                "throttled": self._rate_limited + self._throttle_faults,
                "rate_limited": self._rate_limited,
                "faults": dict(self.faults.injected),
                "now": pdd_time(self.now()),
                **self._stock_state(),
            }

    # -- HTTP -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/router", self._router, methods=["GET", "POST"]),
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/_sim/orders", self._admin_orders, methods=["POST"]),
            Route("/_sim/orders/{sn}/{action}", self._admin_lifecycle, methods=["POST"]),
        ])

    def _request_id(self) -> str:
        return hashlib.sha1(f"{self.seed}:{next(self._request_ids)}".encode()).hexdigest()[:20]

    @staticmethod
    def _json(body: Mapping[str, Any]) -> Response:
        return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                        media_type="application/json;charset=UTF-8")

    def _error(self, error: PopError) -> Response:
        with self._lock:
            self._errors[str(error.code)] += 1
        return self._json(error.body(self._request_id()))

    async def _router(self, request: Request) -> Response:
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            raw = await request.body()
            if raw:
                try:
                    pairs += parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
                except UnicodeDecodeError:
                    return self._error(bad_param("body", "请求体必须是 UTF-8"))  # sim text
        params = dict(pairs)
        with self._lock:
            self._requests[params.get("type") or "<missing>"] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            if self.server_error_style == "http503":
                return PlainTextResponse("Service Unavailable", status_code=503)
            return self._error(PopError(52103, "服务暂时不可用，请稍后重试"))
        if fault == "throttle":
            with self._lock:
                self._throttle_faults += 1
                self._count_stock_throttle(params, 70031)
            return self._error(PopError(70031, "调用过于频繁，请调整调用频率"))
        try:
            with self._lock:
                body = self._dispatch(params)
        except PopError as exc:
            with self._lock:
                self._count_stock_throttle(params, exc.code)
            return self._error(exc)
        return self._json(body)

    def _dispatch(self, params: dict[str, str]) -> dict[str, Any]:
        api = params.get("type", "")
        if not api:
            raise bad_param("type", "缺少公共参数 type")  # sim text
        secret = self.clients.get(params.get("client_id", ""))
        if secret is None:
            raise PopError(10016, "client_id不存在")  # sim code
        stamp = params.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - self.now().timestamp()) > TIMESTAMP_TOLERANCE:
            raise bad_param("timestamp", "timestamp 与服务器时间差值超过10分钟")  # sim text
        if params.get("data_type", "JSON") != "JSON":
            raise bad_param("data_type", "本模拟器只返回 JSON")  # sim text
        sign = params.get("sign", "")
        if not sign or not hmac.compare_digest(sign, pdd_sign(params, secret)):
            self._rejected_signatures += 1
            raise PopError(20004, "签名校验失败")  # sim code
        if self.calls_per_second is not None:
            bucket = self._buckets.setdefault(params["client_id"], CallBucket(self.calls_per_second))
            if not bucket.take():
                self._rate_limited += 1
                raise PopError(70031, "调用过于频繁，请调整调用频率")
        handlers: dict[str, Callable[[dict[str, str], str], dict[str, Any]]] = {
            INCREMENT: self._increment, INFORMATION: self._information, ONLINE_SEND: self._online_send,
            EXTRA_LOGISTICS: self._extra_logistics, COMPANIES_GET: self._companies, DECRYPT: self._decrypt,
            **self._stock_handlers(),
        }
        handler = handlers.get(api)
        if handler is None:
            raise PopError(20031, "用户没有授权访问此接口")  # sim code
        shop = ""
        if api in NEEDS_TOKEN:
            shop = self.tokens.get(params.get("access_token", ""), "")
            if not shop:
                raise PopError(10019, "access_token已过期")
        answer = handler(params, shop)
        answer["request_id"] = self._request_id()
        return {RESPONSE_KEYS[api]: answer}

    # -- handlers -----------------------------------------------------------------------------

    def _increment(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        start = _int_arg(params, "start_updated_at", None, 0)
        end = _int_arg(params, "end_updated_at", None, 0)
        if end < start or end - start > MAX_WINDOW:
            raise bad_param("end_updated_at", "开始时间结束时间间距不超过 30 分钟")  # sim text
        order_status = _int_arg(params, "order_status", None, 1, 5)
        refund_status = _int_arg(params, "refund_status", None, 1, 5)
        lucky = _int_arg(params, "is_lucky_flag", None, 0, 2)
        trade_type = _int_arg(params, "trade_type", -1, 0, 1) if params.get("trade_type") else None
        page = _int_arg(params, "page", 1, 1)
        size = _int_arg(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        has_next_style = params.get("use_has_next", "").lower() == "true"
        oldest = self.now() - HISTORY
        matching = sorted(
            (o for o in self._orders.values()
             if o.shop == shop and start <= o.updated.timestamp() <= end and o.created >= oldest
             and (order_status == 5 or o.data["order_status"] == order_status)
             and (refund_status == 5 or o.data["refund_status"] == refund_status)
             and (lucky == 0 or o.data["is_lucky_flag"] == lucky)
             and (trade_type is None or o.data["trade_type"] == trade_type)),
            key=lambda o: (o.updated, o.order_sn))
        offset = (page - 1) * size
        chunk = [self._render(o) for o in matching[offset:offset + size]]
        if chunk and self.faults.duplicate():
            chunk.append(copy.deepcopy(chunk[0]))
        answer: dict[str, Any] = {"has_next": offset + size < len(matching), "order_sn_list": chunk}
        if not has_next_style:
            answer["total_count"] = len(matching)
        return answer

    def _render(self, order: SimOrder) -> dict[str, Any]:
        data = copy.deepcopy(order.data)
        if data["order_status"] != WAIT_SHIP:  # "其余情况返回空字符串"
            data.update(receiver_name="", receiver_phone="", receiver_address="", address="")
        return data

    def _find(self, params: Mapping[str, str], shop: str) -> SimOrder:
        sn = params.get("order_sn", "").strip()
        if not sn:
            raise bad_param("order_sn", "order_sn 不能为空")  # sim text
        order = self._orders.get(sn)
        if order is None or order.shop != shop:
            raise bad_param("order_sn", "订单不存在")  # sim text
        return order

    def _information(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        return {"order_info": self._render(self._find(params, shop))}

    def _online_send(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        attempt = {"order_sn": params.get("order_sn", ""), "tracking_number": params.get("tracking_number", ""),
                   "logistics_id": params.get("logistics_id", ""), "api": ONLINE_SEND, "ok": False,
                   "at": pdd_time(self.now())}
        self._attempts.append(attempt)
        order = self._find(params, shop)
        logistics_id = _int_arg(params, "logistics_id", None, 1)
        tracking = params.get("tracking_number", "").strip()
        if not tracking:
            raise bad_param("tracking_number", "快递单号不能为空")  # sim text
        if logistics_id not in COMPANY_IDS:
            raise bad_param("logistics_id", "快递公司不存在或不可用")  # sim text
        data = order.data
        if data["order_status"] != WAIT_SHIP:
            raise bad_param("order_sn", "订单已发货，不能重复发货")  # sim text
        if data["confirm_status"] != CONFIRMED or data["refund_status"] == REFUND_DONE:
            raise bad_param("order_sn", "订单状态不允许发货")  # sim text
        moment = self.now()
        data.update(order_status=SHIPPED, tracking_number=tracking, logistics_id=logistics_id,
                    shipping_time=pdd_time(moment))
        self._writebacks.setdefault(order.order_sn, []).append(
            {"tracking_number": tracking, "logistics_id": logistics_id, "kind": "send", "at": pdd_time(moment)})
        self._changed(order)
        attempt["ok"] = True
        return {"is_success": True}

    def _extra_logistics(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        order = self._find(params, shop)
        kind = _int_arg(params, "extra_track_type", 1, 1, 3)
        try:
            tracks = json.loads(params.get("extra_track_list") or "")
        except json.JSONDecodeError:
            raise bad_param("extra_track_list", "extra_track_list 必须是 JSON 数组") from None  # sim text
        if not isinstance(tracks, list) or not tracks:
            raise bad_param("extra_track_list", "extra_track_list 不能为空")  # sim text
        if order.data["order_status"] == WAIT_SHIP:
            raise bad_param("order_sn", "订单未发货，请先调用发货接口")  # sim text
        target = {1: "extra_delivery_list", 2: "resend_delivery_list", 3: "gift_delivery_list"}[kind]
        known = {order.data["tracking_number"]} | {t["tracking_number"] for t in order.data["extra_delivery_list"]}
        for track in tracks:
            sid, number = track.get("shipping_id"), str(track.get("tracking_number") or "")
            if sid not in COMPANY_IDS or not number:
                raise bad_param("extra_track_list", "快递公司或运单号不合法")  # sim text
            self._attempts.append({"order_sn": order.order_sn, "tracking_number": number, "logistics_id": sid,
                                   "api": EXTRA_LOGISTICS, "ok": True, "at": pdd_time(self.now())})
            if number in known:
                continue  # sim choice: a repeat of a known parcel is accepted once, not listed twice
            order.data[target].append({"logistics_id": sid, "tracking_number": number})
            self._writebacks.setdefault(order.order_sn, []).append(
                {"tracking_number": number, "logistics_id": sid, "kind": "extra", "at": pdd_time(self.now())})
        self._changed(order)
        return {"success": True}

    def _companies(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        return {"logistics_companies": [{"id": i, "logistics_company": n, "code": c, "available": 1}
                                        for i, n, c in COMPANIES]}

    def _decrypt(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        try:
            items = json.loads(params.get("data_list") or "")
        except json.JSONDecodeError:
            raise bad_param("data_list", "data_list 必须是 JSON 数组") from None  # sim text
        if not isinstance(items, list) or not items or len(items) > MAX_DECRYPT:
            raise bad_param("data_list", "data_list 大小需在 1 到 100 之间")  # sim text
        out = []
        for item in items:
            tag, cipher = str(item.get("data_tag") or ""), str(item.get("encrypted_data") or "")
            known = self._ciphers.get(cipher)
            entry: dict[str, Any] = {"data_tag": tag, "encrypted_data": cipher, "virtual_number_type": 0}
            owner = self._orders.get(known[0]) if known else None
            if known is None or known[0] != tag or owner is None or owner.shop != shop:
                entry.update(error_code=1001, error_msg="解密失败，密文或data_tag不正确",  # sim code
                             decrypted_data="", data_type=0)
            else:
                self._decrypted += 1
                entry.update(error_code=0, error_msg="", decrypted_data=known[1], data_type=known[2])
            out.append(entry)
        return {"data_decrypt_list": out}

    # -- admin --------------------------------------------------------------------------------

    async def _admin_orders(self, request: Request) -> Response:
        try:
            body = await request.json()
            lines = body.get("lines")
            sns = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                  status=body.get("status") or "paid", presale=body.get("presale"),
                                  lines=int(lines) if lines is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"order_sns": sns})

    async def _admin_lifecycle(self, request: Request) -> Response:
        actions: dict[str, Callable[..., None]] = {
            "confirm": self.confirm, "pay": self.pay, "pay_deposit": self.pay_deposit, "pay_balance": self.pay_balance,
            "cancel": self.cancel, "request_refund": self.request_refund, "reject_refund": self.reject_refund,
            "refund_all": self.refund_all, "refund_line": self.refund_line, "change_address": self.change_address,
            "receive": self.receive,
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": f"unknown action; one of {', '.join(actions)}"}, status_code=404)
        sn = request.path_params["sn"]
        try:
            body = await request.json() if await request.body() else {}
            action(sn, **(body or {}))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"order_sn": sn, "status": self.status(sn)})


def _int_arg(params: Mapping[str, str], name: str, default: int | None, low: int, high: int | None = None) -> int:
    text = params.get(name, "").strip()
    if not text:
        if default is None:
            raise bad_param(name, f"缺少必填参数 {name}")  # sim text
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_param(name, f"{name} 必须是整数") from None  # sim text
    if value < low or (high is not None and value > high):
        raise bad_param(name, f"{name} 超出范围")  # sim text
    return value


__all__ = ["COMPANIES", "DEFECT_KINDS", "PddSimulator", "pdd_sign"]
