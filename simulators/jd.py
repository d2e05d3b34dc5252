"""A local JOS router (京东开放平台, ``/routerjson``) for JD POP shops, written from JD's documentation.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the platform's documentation, so that a connector that misreads the protocol
fails here instead of agreeing with itself.

Rules enforced, and where each one comes from:

* Router and system parameters -- "开放平台-调用API" (open.healthjd.com/docs/接入指南) and "【开发规范】"
  (help.jd.com/jos/question-580.html): ``method``, ``access_token``, ``app_key``, ``timestamp``
  ("yyyy-MM-dd HH:mm:ss"; taken as GMT+8; "允许客户端请求时间误差为10分钟"), ``format`` ("暂时只支持json"),
  ``v`` (2.0), ``sign`` and the business parameters as one JSON text in ``360buy_param_json``. Read from
  the query string and a form-encoded body, GET or POST (the official Java SDK puts the system
  parameters in the URL and ``360buy_param_json`` in the form).
* Signature -- same pages: every parameter but ``sign`` sorted by name, names and values concatenated,
  the app secret on both ends, MD5, upper-case hex. Empty values are left out (as the SDKs do).
* Errors -- ``{"error_response": {"code": "<string>", "zh_desc", "en_desc"}}`` with HTTP 200; codes from
  JOS's 网关系统错误码 table: 2 App Call Limited, 4 Missing Version, 5 Unsupported Version, 7 Missing
  Timestamp, 8 Invalid Timestamp, 11 Missing Signature, 12 Invalid Signature, 14 Missing Method, 15
  Invalid Method; from captured answers 19 "无效access_token / Invalid access_token" and 21 "Invalid
  app_key". Business refusals come inside the method's wrapper (``<method>_responce``, JOS's spelling)
  as ``apiResult``/``..._result`` with ``success: false``, ``chineseErrCode``, ``englishErrCode``.
* ``jingdong.pop.order.enSearch`` (apiId=2388): ``start_date``/``end_date`` at most one month apart
  ("不得相差超过1个月"), ``order_state`` required, comma-separated, among WAIT_SELLER_STOCK_OUT,
  WAIT_GOODS_RECEIVE_CONFIRM, WAIT_SELLER_DELIVERY, PAUSE, FINISHED_L, TRADE_CANCELED, LOCKED,
  POP_ORDER_PAUSE; ``page``, ``page_size`` ("最大page_size 100条"), ``sortType`` ("默认升序,1是降序"),
  ``dateType`` ("默认按修改时间查询。1为按订单创建时间查询"); answer ``searchorderinfo_result`` =
  ``{orderInfoList, orderTotal, apiResult}``. ``modified`` moves only for state and waybill changes
  ("此时间仅针对订单状态及运单号修改的时间"): an address change does not move it.
* ``jingdong.pop.order.enGet``: ``order_id``, ``optional_fields``; answer ``orderDetailInfo`` =
  ``{orderInfo, apiResult}``.
* ``jingdong.pop.order.shipment`` (apiId=1948): ``orderId``, ``logiCoprId`` (ids, ``|``-separated),
  ``logiNo`` (``|`` between companies, ``,`` between waybills of one company; may be empty for 厂家自送
  1274); only an order waiting for ship-out can be shipped, once, as a whole.
* Stock (``jingdong.sku.read.searchSkuList``, ``jingdong.stock.write.updateSkuStock``,
  ``jingdong.stock.read.findSkuStock``): see :mod:`simulators.jd_stock`.
* Encrypted receivers (TDE, the "en" APIs): consignee ``fullname``, ``mobile``, ``telephone``,
  ``fullAddress`` are base64 of ``0x00 0x04 | key id (16) | IV (16) | AES-128-CBC/PKCS#5``; the keys are
  served by ``jingdong.jos.voucher.info.get`` (``response.data.voucher`` = base64url JSON ``{sig, data:
  {id, key, service, act, effective, expired, stype}}``) and ``jingdong.jos.master.key.get`` (``sdk_ver``,
  ``ts``, ``tid``, ``sig`` = base64 HMAC-SHA256 keyed with the voucher key over
  ``{"sdk_ver":2,"ts":<ts>,"tid":"<tid>"}``; answer ``response.service_key_list[].keys[]``), as JD's TDE
  SDK uses them (github.com/XiBao/jos ``sdk/secret``, ``sdk/crypto/aes.go``).

Choices of the simulator where the documentation is silent (texts marked ``# sim text``): the voucher's
``sig`` is not a real RSA signature (nobody here holds JD's key); business refusal texts; an unparsable
``360buy_param_json`` is error code 41; windows are inclusive at both ends; the ``error_5xx`` fault is a
plain HTTP 503; a throttle fault is code 2.

Public API: ``JdSimulator(apps, shops, orders_per_shop, malformed_per_shop, seed, now, spread_hours,
faults, calls_per_second, catalog)``; ``.app`` (ASGI: ``/routerjson`` GET/POST, ``GET /_sim/state``,
``GET|POST /_sim/faults``, ``POST /_sim/orders`` with ``{"shop", "n", "malformed", "status", "lines"}``,
``POST /_sim/orders/{order_id}/{action}``); ``state()``, ``orders(shop)``, ``order(order_id)``,
``status(order_id)``, ``writebacks(order_id)``, ``add_orders(...)``, ``make_order(...)``; lifecycle
``lock``, ``unlock``, ``pause``, ``resume``, ``cancel`` (= ``refund_all``), ``finish``, ``change_address``;
``now()``/``set_now()``/``advance()``; ``signed_params(...)``, ``decrypt(value)`` for tests; stock
``shown_stock(sku)``, ``set_shown_stock(sku, quantity)``, ``stock_updates`` (see :mod:`simulators.jd_stock`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulators.admin import SimAdmin
from simulators.catalog import CATALOG
from simulators.clock import SimClock
from simulators.faults import FaultConfig, FaultInjector
from simulators.jd_stock import JdStockSim, StockRefusal
from simulators.ratelimit import CallBucket

GMT8 = timezone(timedelta(hours=8), "GMT+8")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MAX_WINDOW = timedelta(days=31)  # "不得相差超过1个月"
MAX_PAGE_SIZE = 100
API_VERSION = "2.0"
PARAM_JSON = "360buy_param_json"

METHOD_SEARCH = "jingdong.pop.order.enSearch"
METHOD_GET = "jingdong.pop.order.enGet"
METHOD_SHIPMENT = "jingdong.pop.order.shipment"
METHOD_VOUCHER = "jingdong.jos.voucher.info.get"
METHOD_MASTER_KEY = "jingdong.jos.master.key.get"

STOCK_OUT = "WAIT_SELLER_STOCK_OUT"
DELIVERY = "WAIT_SELLER_DELIVERY"
RECEIVE = "WAIT_GOODS_RECEIVE_CONFIRM"
FINISHED = "FINISHED_L"
CANCELED = "TRADE_CANCELED"
LOCKED = "LOCKED"
PAUSE = "PAUSE"
POP_PAUSE = "POP_ORDER_PAUSE"
ORDER_STATES = (STOCK_OUT, RECEIVE, DELIVERY, PAUSE, FINISHED, CANCELED, LOCKED, POP_PAUSE)
STATE_REMARKS = {STOCK_OUT: "等待出库", RECEIVE: "等待确认收货", DELIVERY: "等待发货", PAUSE: "暂停",
                 FINISHED: "完成", CANCELED: "取消", LOCKED: "已锁定", POP_PAUSE: "POP暂停"}
SHIPPABLE = frozenset({STOCK_OUT, DELIVERY})

#: logistics companies the demo merchant has (``logiCoprId`` → name); 1274 = 厂家自送 (no waybill)
COMPANIES = {"467": "顺丰速运", "1499": "中通快递", "463": "圆通速递", "470": "申通快递", "1327": "韵达快递",
             "465": "邮政EMS", "2087": "京东快递", "3046": "德邦快递", "1274": "厂家自送"}
SELF_DELIVERY = "1274"
_WAYBILL = re.compile(r"^[A-Za-z0-9]{6,30}$")  # sim rule

DEFECT_KINDS = ("empty_address", "no_phone", "unknown_sku", "bad_payment")
CONSIGNEE_SECRET = ("fullname", "mobile", "telephone", "fullAddress")
CENT = Decimal("0.01")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "建华", "晓东", "子涵", "欣怡")
REGIONS = (  # province, city, county, town
    ("北京", "北京市", "大兴区", "亦庄镇"), ("北京", "北京市", "朝阳区", "望京街道"),
    ("上海", "上海市", "浦东新区", "张江镇"), ("广东", "深圳市", "南山区", "粤海街道"),
    ("广东", "广州市", "天河区", "石牌街道"), ("江苏", "南京市", "鼓楼区", "湖南路街道"),
    ("浙江", "杭州市", "西湖区", "文新街道"), ("四川", "成都市", "武侯区", "玉林街道"),
    ("湖北", "武汉市", "洪山区", "珞南街道"),
)
ROADS = ("科创十一街", "建国路", "人民路", "中山路", "解放路", "长江路", "科技园路", "滨江大道")
REMARKS = ("请尽快发货", "周末送货", "放快递柜", "")
FREIGHTS = ("0.00", "0.00", "6.00", "10.00")


# --------------------------------------------------------------------------- signing and time


def jos_sign(params: Mapping[str, str], secret: str) -> str:
    """upper(md5(secret + sorted name+value pairs + secret)); ``sign`` and empty values left out."""
    base = "".join(f"{k}{params[k]}" for k in sorted(params) if k and k != "sign" and params[k])
    return hashlib.md5((secret + base + secret).encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def format_jos_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("JOS times need a timezone-aware datetime")
    return moment.astimezone(GMT8).strftime(TIME_FORMAT)


def parse_jos_time(text: str) -> datetime:
    if not _TIME_SHAPE.match(text or ""):
        raise ValueError(f"not a yyyy-MM-dd HH:mm:ss time: {text!r}")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=GMT8).astimezone(UTC)


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_responce"


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


class JosError(Exception):
    """A gateway refusal, answered as ``error_response`` with HTTP 200."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(f"{code} {en}")
        self.code, self.zh, self.en = code, zh, en

    def body(self) -> dict[str, Any]:
        return {"error_response": {"code": self.code, "zh_desc": self.zh, "en_desc": self.en}}


class BizError(Exception):
    """A business refusal, answered inside the method's wrapper with ``success: false``."""

    def __init__(self, zh: str, en: str, number: int = 1) -> None:
        super().__init__(en)
        self.zh, self.en, self.number = zh, en, number

    def result(self) -> dict[str, Any]:
        return {"success": False, "chineseErrCode": self.zh, "englishErrCode": self.en, "numberCode": self.number}


def call_limited() -> JosError:
    return JosError("2", "限制时间内调用失败次数", "App Call Limited")


# --------------------------------------------------------------------------- TDE


class Tde:
    """One merchant key store: AES-128 keys by 16-byte id, a voucher and its HMAC key."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.key_id = bytes(rng.randrange(256) for _ in range(16))
        self.key = bytes(rng.randrange(256) for _ in range(16))
        self.voucher_id = f"tde-{rng.randrange(10**8, 10**9)}"
        self.voucher_key = bytes(rng.randrange(256) for _ in range(32))
        self.service = "sim-jd-tde"

    @property
    def key_id_b64(self) -> str:
        return base64.b64encode(self.key_id).decode()

    def encrypt(self, text: str) -> str:
        if not text:
            return ""  # the SDK leaves empty values empty
        data = text.encode("utf-8")
        pad = 16 - len(data) % 16
        iv = bytes(self.rng.randrange(256) for _ in range(16))
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        body = encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(b"\x00\x04" + self.key_id + iv + body).decode()

    def decrypt(self, value: str) -> str:
        raw = base64.b64decode(value)
        if raw[:2] != b"\x00\x04" or raw[2:18] != self.key_id:
            raise ValueError("not a ciphertext of this key")
        iv, body = raw[18:34], raw[34:]
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        return padded[:-padded[-1]].decode("utf-8")

    def voucher(self, now_ms: int) -> str:
        data = {"act": "D", "effective": now_ms - 60_000, "expired": now_ms + 86_400_000, "id": self.voucher_id,
                "key": base64.b64encode(self.voucher_key).decode(), "service": self.service, "stype": 1}
        body = {"sig": "sim-not-rsa-signed", "data": data}  # sim choice: nobody here holds JD's RSA key
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()

    def expected_sig(self, sdk_ver: Any, ts: Any, tid: str) -> str:
        message = f'{{"sdk_ver":{sdk_ver},"ts":{ts},"tid":"{tid}"}}'.encode()
        return base64.b64encode(hmac.new(self.voucher_key, message, hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- data


@dataclass
class SimOrder:
    order_id: str
    shop: str
    created: datetime
    modified: datetime
    data: dict[str, Any]
    clear: dict[str, str]
    defect: str | None = None

    @property
    def state(self) -> str:
        return str(self.data["orderState"])

    def set_state(self, state: str, moment: datetime) -> None:
        self.data["orderState"] = state
        self.data["orderStateRemark"] = STATE_REMARKS.get(state, state)
        self.touch(moment)

    def touch(self, moment: datetime) -> None:
        self.modified = moment.replace(microsecond=0)
        self.data["modified"] = format_jos_time(self.modified)




def _jd_item(entry: Mapping[str, Any], index: int) -> dict[str, Any]:
    """A catalogue entry as a JD item: JD ids derived from the entry's position (stable)."""
    return {"skuId": str(100012000000 + index * 7919), "wareId": str(10020000000 + int(entry["num_iid"]) % 100000),
            "outerSkuId": str(entry["sku"]), "productNo": str(entry.get("outer_iid") or ""),
            "skuName": str(entry.get("title") or ""), "jdPrice": money(Decimal(str(entry["price"])))}


# --------------------------------------------------------------------------- the simulator


class JdSimulator(SimClock, SimAdmin, JdStockSim):
    """A JOS router serving seeded POP shops; ``app`` is the ASGI app (``/routerjson`` + ``/_sim/*``).

    ``apps`` maps app_key → app_secret, ``shops`` maps access_token → shop name (each shop gets a
    stable numeric ``venderId``). Each shop starts with ``orders_per_shop`` paid orders waiting for
    ship-out, ``malformed_per_shop`` of them deliberately malformed (cycling ``DEFECT_KINDS``), created
    over the ``spread_hours`` before ``now``. The clock starts at ``now`` (default: real UTC time) and
    runs with the wall clock; ``set_now``/``advance`` move it.
    """

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
    ) -> None:
        if not apps or not shops:
            raise ValueError("at least one app (app_key -> secret) and one shop (access_token -> name) are needed")
        if malformed_per_shop > orders_per_shop or min(orders_per_shop, malformed_per_shop) < 0:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.apps = dict(apps)
        self.tokens = dict(shops)
        self.seed = seed
        self.catalog = [dict(e) for e in (catalog if catalog is not None else CATALOG)]
        self.items = [_jd_item(e, i) for i, e in enumerate(self.catalog)]
        self.faults = FaultInjector(faults or FaultConfig())
        self.calls_per_second = calls_per_second
        self.start_clock(now)
        self._lock = threading.RLock()
        self._rng = random.Random(f"jd:{seed}")
        self.tde = Tde(random.Random(f"jd-tde:{seed}"))
        self.vender_ids = {shop: str(10_000 + int(hashlib.sha1(shop.encode()).hexdigest()[:6], 16) % 900_000)
                           for shop in dict.fromkeys(self.tokens.values())}
        self._orders: dict[str, SimOrder] = {}
        self._defects = itertools.cycle(DEFECT_KINDS)
        self._buckets: dict[str, CallBucket] = {}
        self._shipments: dict[str, list[tuple[str, str, list[str]]]] = {}
        self._attempts: list[dict[str, Any]] = []
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rejected_signatures = 0
        self._rate_limited = 0
        self._throttle_faults = 0
        self._keys_served = 0
        self._init_stock()
        start = self.now().replace(microsecond=0)
        spread = max(120.0, spread_hours * 3600)
        for shop in self.vender_ids:
            for defect in self._defect_plan(orders_per_shop, malformed_per_shop):
                created = start - timedelta(seconds=int(self._rng.uniform(60, spread)))
                paid = min(created + timedelta(seconds=self._rng.randrange(5, 900)), start)
                self._make(shop, created, paid, defect)
        self.app = self._build_app()

    # -- data -------------------------------------------------------------------------------

    def _defect_plan(self, total: int, malformed: int) -> list[str | None]:
        positions = set(self._rng.sample(range(total), k=malformed))
        return [next(self._defects) if i in positions else None for i in range(total)]

    def _new_id(self) -> str:
        while True:
            value = str(self._rng.randrange(250_000_000_000, 350_000_000_000))
            if value not in self._orders:
                return value

    def _make(self, shop: str, created: datetime, paid: datetime, defect: str | None, *,
              lines: int | None = None, state: str = STOCK_OUT) -> SimOrder:
        rng = self._rng
        count = lines or rng.choice((1, 1, 1, 2, 2, 3))
        picks = rng.sample(range(len(self.items)), k=min(count, len(self.items)))
        items = []
        for index in picks:
            item = {**self.items[index], "itemTotal": str(rng.choice((1, 1, 1, 2, 3))), "giftPoint": "0",
                    "newStoreId": "0", "serviceName": ""}
            items.append(item)
        if defect == "unknown_sku":
            items[0] = {**items[0], "skuId": str(rng.randrange(900_000_000_000, 999_999_999_999)),
                        "outerSkuId": f"TD-SKU-9{rng.randrange(100, 1000)}", "skuName": "清仓下架款 未登记商品"}
        total = sum((Decimal(i["jdPrice"]) * int(i["itemTotal"]) for i in items), Decimal(0))
        discount = Decimal(rng.choice(("5.00", "10.00"))) if rng.random() < 0.25 and total > 20 else Decimal(0)
        freight = Decimal(rng.choice(FREIGHTS))
        payment = total - discount + freight
        province, city, county, town = rng.choice(REGIONS)
        clear = {
            "fullname": rng.choice(SURNAMES) + rng.choice(GIVEN),
            "mobile": "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)),
            "telephone": "",
            "fullAddress": f"{province}{city}{county}{town}{rng.choice(ROADS)}{rng.randrange(1, 999)}号"
                           f"{rng.randrange(1, 30)}栋{rng.randrange(1, 30)}0{rng.randrange(1, 9)}室",
        }
        if defect == "empty_address":
            clear["fullAddress"] = ""
        elif defect == "no_phone":
            clear["mobile"] = ""
        order_id = self._new_id()
        data: dict[str, Any] = {
            "orderId": order_id, "venderId": self.vender_ids[shop], "orderType": "22", "payType": "4",
            "orderTotalPrice": money(total), "orderSellerPrice": money(total - discount),
            "orderPayment": money(payment), "freightPrice": money(freight), "sellerDiscount": money(discount),
            "orderState": state, "orderStateRemark": STATE_REMARKS[state], "deliveryType": "任意时间",
            "orderRemark": rng.choice(REMARKS), "orderStartTime": format_jos_time(created),
            "orderEndTime": "0001-01-01 00:00:00", "modified": format_jos_time(paid),
            "paymentConfirmTime": format_jos_time(paid), "venderRemark": "", "waybill": "", "logisticsId": "",
            "parentOrderId": "0", "pin": "jd_" + "*" * 6, "open_id_buyer": f"o{rng.randrange(10**15, 10**16)}",
            "consigneeInfo": {**{k: self.tde.encrypt(v) for k, v in clear.items()},
                              "province": province, "city": city, "county": county, "town": town,
                              "provinceId": "1", "cityId": "2", "countyId": "3", "townId": "4"},
            "itemInfoList": items, "couponDetailList": [],
        }
        if defect == "bad_payment":
            data["orderPayment"] = data["orderPayment"].replace(".", ",")
        order = SimOrder(order_id=order_id, shop=shop, created=created, modified=paid.replace(microsecond=0),
                         data=data, clear=clear, defect=defect)
        self._orders[order_id] = order
        return order

    def _shop_of(self, shop_or_token: str) -> str:
        if shop_or_token in self.tokens:
            return self.tokens[shop_or_token]
        if shop_or_token in self.vender_ids:
            return shop_or_token
        raise KeyError(f"unknown shop or access_token {shop_or_token!r}")

    def add_orders(self, shop_or_token: str, n: int, malformed: int = 0, *, status: str = STOCK_OUT,
                   lines: int | None = None) -> list[str]:
        """Create ``n`` orders now (``malformed`` of them defective); returns their ids.
        ``status``: WAIT_SELLER_STOCK_OUT (default), LOCKED, PAUSE or WAIT_SELLER_DELIVERY."""
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        if status not in (STOCK_OUT, LOCKED, PAUSE, DELIVERY, POP_PAUSE):
            raise ValueError(f"new orders start waiting for ship-out (or locked/paused), not {status!r}")
        if lines is not None and not 1 <= lines <= len(self.items):
            raise ValueError(f"lines must be between 1 and {len(self.items)}")
        with self._lock:
            shop = self._shop_of(shop_or_token)
            end = self.now().replace(microsecond=0)
            ids = []
            for defect in self._defect_plan(n, malformed):
                created = end - timedelta(seconds=self._rng.randrange(5, 120))
                ids.append(self._make(shop, created, end, defect, lines=lines, state=status).order_id)
            return ids

    def make_order(self, shop_or_token: str, *, status: str = STOCK_OUT, lines: int | None = None,
                   defect: str | None = None) -> str:
        if defect is not None and defect not in DEFECT_KINDS:
            raise ValueError(f"defect must be one of {', '.join(DEFECT_KINDS)}")
        with self._lock:
            shop = self._shop_of(shop_or_token)
            end = self.now().replace(microsecond=0)
            return self._make(shop, end - timedelta(seconds=30), end, defect, lines=lines, state=status).order_id

    # -- lifecycle (each state change moves ``modified``, as JOS documents) ------------------

    def _live(self, order_id: int | str) -> SimOrder:
        order = self._orders.get(str(order_id))
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    def _move(self, order_id: int | str, allowed: Iterable[str], to: str) -> None:
        with self._lock:
            order = self._live(order_id)
            if order.state not in set(allowed):
                raise ValueError(f"order {order_id} is {order.state}, cannot become {to}")
            order.set_state(to, self.now())
            if to in (FINISHED, CANCELED):
                order.data["orderEndTime"] = format_jos_time(self.now())

    def lock(self, order_id: int | str) -> None:
        """The buyer asks to cancel before ship-out: LOCKED (已锁定) until the seller decides."""
        self._move(order_id, (STOCK_OUT, DELIVERY), LOCKED)

    def unlock(self, order_id: int | str) -> None:
        """The cancellation request is withdrawn or refused: back to WAIT_SELLER_STOCK_OUT."""
        self._move(order_id, (LOCKED,), STOCK_OUT)

    def pause(self, order_id: int | str) -> None:
        self._move(order_id, (STOCK_OUT, DELIVERY), PAUSE)

    def resume(self, order_id: int | str) -> None:
        self._move(order_id, (PAUSE, POP_PAUSE), STOCK_OUT)

    def cancel(self, order_id: int | str) -> None:
        """The order is cancelled (and refunded) before ship-out: TRADE_CANCELED."""
        self._move(order_id, (STOCK_OUT, DELIVERY, LOCKED, PAUSE, POP_PAUSE), CANCELED)

    refund_all = cancel

    def finish(self, order_id: int | str) -> None:
        """The buyer confirms receipt: FINISHED_L."""
        self._move(order_id, (RECEIVE,), FINISHED)

    def change_address(self, order_id: int | str, **fields: str) -> None:
        """The receiver changes before ship-out (``fullname``, ``mobile``, ``telephone``,
        ``fullAddress`` or ``address``). ``modified`` does NOT move: JOS's time only tracks state
        and waybill changes ("此时间仅针对订单状态及运单号修改的时间")."""
        with self._lock:
            order = self._live(order_id)
            if order.state not in SHIPPABLE | {LOCKED, PAUSE}:
                raise ValueError(f"order {order_id} is {order.state}: the address can change only before ship-out")
            for name, value in fields.items():
                key = "fullAddress" if name == "address" else name
                if key not in CONSIGNEE_SECRET:
                    raise ValueError(f"{name!r} is not a consignee field ({', '.join(CONSIGNEE_SECRET)})")
                order.clear[key] = str(value)
                order.data["consigneeInfo"][key] = self.tde.encrypt(str(value))

    # -- accessors --------------------------------------------------------------------------

    def order(self, order_id: int | str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._live(order_id).data)

    def status(self, order_id: int | str) -> str:
        with self._lock:
            return self._live(order_id).state

    def receiver(self, order_id: int | str) -> dict[str, str]:
        """The clear consignee (what a correct decryption must give)."""
        with self._lock:
            return dict(self._live(order_id).clear)

    def decrypt(self, value: str) -> str:
        return self.tde.decrypt(value)

    def writebacks(self, order_id: int | str) -> list[tuple[str, str, list[str]]]:
        """Every shipment JOS took for the order: (logiNo, logiCoprId, skuIds shipped)."""
        with self._lock:
            return list(self._shipments.get(str(order_id), []))

    def orders(self, shop_or_token: str) -> list[dict[str, Any]]:
        with self._lock:
            shop = self._shop_of(shop_or_token)
            rows = sorted((o for o in self._orders.values() if o.shop == shop), key=lambda o: (o.created, o.order_id))
            return [copy.deepcopy(o.data) for o in rows]

    def signed_params(self, method: str, business: Mapping[str, Any], *, app_key: str | None = None,
                      access_token: str | None = None) -> dict[str, str]:
        app_key = app_key or next(iter(self.apps))
        merged = {"method": method, "app_key": app_key, "access_token": access_token or next(iter(self.tokens)),
                  "timestamp": format_jos_time(self.now()), "format": "json", "v": API_VERSION,
                  PARAM_JSON: json.dumps(dict(business), ensure_ascii=False, separators=(",", ":"))}
        merged["sign"] = jos_sign(merged, self.apps[app_key])
        return merged

    def state(self) -> dict[str, Any]:
        with self._lock:
            malformed = {oid: o.defect for oid, o in self._orders.items() if o.defect}
            shipped = [oid for oid, o in self._orders.items()
                       if oid in self._shipments and o.state in (RECEIVE, FINISHED)]
            return {
                "orders_created": len(self._orders),
                "orders_malformed": len(malformed),
                "malformed_tids": sorted(malformed),
                "malformed": malformed,
                "orders_by_shop": dict(Counter(o.shop for o in self._orders.values())),
                "vender_ids": dict(self.vender_ids),
                "states": dict(Counter(o.state for o in self._orders.values())),
                "shipments": {k: [list(p) for p in v] for k, v in self._shipments.items()},
                "shipped_count": len(shipped),
                "shipment_attempts": len(self._attempts),
                "shipment_attempt_log": copy.deepcopy(self._attempts),
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "errors": dict(self._errors),
                "rejected_signatures": self._rejected_signatures,
                "throttled": self._rate_limited + self._throttle_faults,
                "rate_limited": self._rate_limited,
                "keys_served": self._keys_served,
                **self._stock_state(),
                "faults": dict(self.faults.injected),
                "now": format_jos_time(self.now()),
            }

    # -- gateway ----------------------------------------------------------------------------

    def _dispatch(self, params: dict[str, str]) -> dict[str, Any]:
        method = params.get("method", "")
        if not method:
            raise JosError("14", "缺少方法名参数", "Missing Method")
        app_key = params.get("app_key", "")
        secret = self.apps.get(app_key)
        if secret is None:
            raise JosError("21", f"key={app_key or 0} 信息无效", "Invalid app_key")
        self._check_timestamp(params.get("timestamp", ""))
        version = params.get("v", "")
        if not version:
            raise JosError("4", "缺少版本参数", "Missing Version")
        if version != API_VERSION:
            raise JosError("5", "不支持的版本号", "Unsupported Version")
        sign = params.get("sign", "")
        if not sign:
            raise JosError("11", "缺少签名参数", "Missing Signature")
        if not hmac.compare_digest(sign.upper(), jos_sign(params, secret)):
            self._rejected_signatures += 1
            raise JosError("12", "无效签名", "Invalid Signature")
        if self.calls_per_second is not None:
            bucket = self._buckets.setdefault(app_key, CallBucket(self.calls_per_second))
            if not bucket.take():
                self._rate_limited += 1
                self._note_throttled(method)
                raise call_limited()
        handler = self._handlers().get(method)
        if handler is None:
            raise JosError("15", "不存在的方法名", "Invalid Method")
        shop = self.tokens.get(params.get("access_token", ""))
        if shop is None:
            raise JosError("19", "无效access_token", "Invalid access_token")
        try:
            business = json.loads(params.get(PARAM_JSON) or "{}")
        except json.JSONDecodeError:
            raise JosError("41", "360buy_param_json 不是合法的json", "Invalid arguments") from None  # sim text
        if not isinstance(business, dict):
            raise JosError("41", "360buy_param_json 必须是json对象", "Invalid arguments")  # sim text
        return {response_key(method): {"code": "0", **handler(business, shop)}}

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], str], dict[str, Any]]]:
        return {METHOD_SEARCH: self._search, METHOD_GET: self._get, METHOD_SHIPMENT: self._shipment,
                METHOD_VOUCHER: self._voucher, METHOD_MASTER_KEY: self._master_key, **self._stock_handlers()}

    def _check_timestamp(self, text: str) -> None:
        if not text:
            raise JosError("7", "缺少时间戳参数", "Missing Timestamp")
        try:
            stamp = parse_jos_time(text)
        except ValueError:
            raise JosError("8", "非法的时间戳参数", "Invalid Timestamp") from None
        if abs(stamp - self.now()) > TIMESTAMP_TOLERANCE:
            raise JosError("8", "非法的时间戳参数", "Invalid Timestamp")

    # -- orders -----------------------------------------------------------------------------

    def _search(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        try:
            result = self._search_result(p, shop)
        except BizError as exc:
            result = {"apiResult": exc.result(), "orderTotal": 0, "orderInfoList": []}
        return {"searchorderinfo_result": result}

    def _search_result(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        states = [s.strip() for s in str(p.get("order_state") or "").split(",") if s.strip()]
        if not states:
            raise BizError("order_state不能为空", "order_state is required")  # sim text
        unknown = [s for s in states if s not in ORDER_STATES]
        if unknown:
            raise BizError(f"订单状态不正确:{unknown[0]}", "invalid order_state")  # sim text
        try:
            start = parse_jos_time(str(p.get("start_date") or ""))
            end = parse_jos_time(str(p.get("end_date") or ""))
        except ValueError:
            raise BizError("start_date/end_date 格式应为yyyy-MM-dd HH:mm:ss", "invalid date") from None  # sim text
        if end < start or end - start > MAX_WINDOW:
            raise BizError("开始时间和结束时间，不得相差超过1个月", "date range exceeds one month")  # sim text
        page = _int(p.get("page"), 1, 1)
        size = _int(p.get("page_size"), 20, 1, MAX_PAGE_SIZE)
        by_created = str(p.get("dateType", "0")) == "1"
        desc = str(p.get("sortType", "0")) == "1"
        fields = {f.strip() for f in str(p.get("optional_fields") or "").split(",") if f.strip()}

        def moment(o: SimOrder) -> datetime:
            return o.created if by_created else o.modified

        matching = sorted((o for o in self._orders.values()
                           if o.shop == shop and o.state in states and start <= moment(o) <= end),
                          key=lambda o: (moment(o), o.order_id), reverse=desc)
        rows = matching[(page - 1) * size:page * size]
        if rows and self.faults.duplicate():
            rows = [*rows, rows[0]]
        return {"apiResult": {"success": True, "chineseErrCode": "成功", "englishErrCode": "success", "numberCode": 0},
                "orderTotal": len(matching), "orderInfoList": [_render(o.data, fields) for o in rows]}

    def _get(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        order = self._orders.get(str(p.get("order_id") or "").strip())
        fields = {f.strip() for f in str(p.get("optional_fields") or "").split(",") if f.strip()}
        if order is None or order.shop != shop:
            missing = BizError("订单不存在", "order not exist", 100)  # sim text
            return {"orderDetailInfo": {"apiResult": missing.result()}}
        return {"orderDetailInfo": {"apiResult": {"success": True, "numberCode": 0},
                                    "orderInfo": _render(order.data, fields)}}

    def _shipment(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        attempt = {"orderId": str(p.get("orderId") or ""), "logiCoprId": str(p.get("logiCoprId") or ""),
                   "logiNo": str(p.get("logiNo") or ""), "at": format_jos_time(self.now()), "ok": False}
        self._attempts.append(attempt)
        try:
            self._ship(p, shop)
        except BizError as exc:
            attempt["error"] = exc.zh
            return {"sopjosshipment_result": exc.result()}
        attempt["ok"] = True
        return {"sopjosshipment_result": {"success": True, "chineseErrCode": "成功", "englishErrCode": "success"}}

    def _ship(self, p: dict[str, Any], shop: str) -> None:
        order = self._orders.get(str(p.get("orderId") or "").strip())
        if order is None or order.shop != shop:
            raise BizError("订单不存在", "order not exist", 100)  # sim text
        companies = [c.strip() for c in str(p.get("logiCoprId") or "").split("|")]
        numbers = [n.strip() for n in str(p.get("logiNo") or "").split("|")] if p.get("logiNo") else []
        if not companies or any(c not in COMPANIES for c in companies):
            raise BizError("物流公司ID不正确", "invalid logiCoprId", 201)  # sim text
        if order.state not in SHIPPABLE:
            raise BizError(f"订单状态为{STATE_REMARKS.get(order.state, order.state)}，不能出库发货",
                           "order state does not allow shipment", 202)  # sim text
        if companies != [SELF_DELIVERY]:
            if len(numbers) != len(companies) or not all(
                    _WAYBILL.match(w.strip()) for part in numbers for w in part.split(",")):
                raise BizError("运单号不正确", "invalid logiNo", 203)  # sim text
        order.data["waybill"] = "|".join(numbers)
        order.data["logisticsId"] = "|".join(companies)
        order.set_state(RECEIVE, self.now())
        skus = [str(i["skuId"]) for i in order.data["itemInfoList"]]
        self._shipments.setdefault(order.order_id, []).append(("|".join(numbers), "|".join(companies), skus))

    # -- TDE keys ---------------------------------------------------------------------------

    def _voucher(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        voucher = self.tde.voucher(int(self.now().timestamp() * 1000))
        return {"response": {"errorCode": "0", "errorMsg": "", "data": {"voucher": voucher}}}

    def _master_key(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        tid = str(p.get("tid") or "")
        if tid != self.tde.voucher_id or not hmac.compare_digest(
                str(p.get("sig") or ""), self.tde.expected_sig(p.get("sdk_ver"), p.get("ts"), tid)):
            return {"response": {"status_code": 403, "errorMsg": "sig校验失败"}}  # sim text
        self._keys_served += 1
        key = {"id": self.tde.key_id_b64, "key_string": base64.b64encode(self.tde.key).decode(), "key_type": "AES",
               "key_digest": hashlib.sha256(self.tde.key).hexdigest(), "version": 0, "key_status": 0}
        return {"response": {"status_code": 0, "tid": tid, "ts": p.get("ts"), "enc_service": self.tde.service,
                             "service_key_list": [{"service": self.tde.service, "grant_usage": "D", "keys": [key],
                                                   "current_key_version": 0}]}}

    # -- HTTP -------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/routerjson", self._router, methods=["GET", "POST"]),
            Route("/_sim/state", self._admin_state, methods=["GET"]),
            Route("/_sim/faults", self._admin_faults, methods=["GET", "POST"]),
            Route("/_sim/orders", self._admin_orders, methods=["POST"]),
            Route("/_sim/orders/{order_id}/{action}", self._admin_lifecycle, methods=["POST"]),
        ])

    @staticmethod
    def _json(body: Mapping[str, Any]) -> Response:
        return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                        media_type="application/json;charset=UTF-8")

    def _error(self, error: JosError | StockRefusal) -> Response:
        with self._lock:
            self._errors[error.code] += 1
        return self._json(error.body())

    async def _router(self, request: Request) -> Response:
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await request.body()
            if body:
                pairs += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        params = dict(pairs)
        with self._lock:
            self._requests[params.get("method") or "<missing>"] += 1
        fault = await self.faults.before_request()
        if fault == "error_5xx":
            return PlainTextResponse("Service Unavailable", status_code=503)
        if fault == "throttle":
            with self._lock:
                self._throttle_faults += 1
                self._note_throttled(params.get("method", ""))
            return self._error(call_limited())
        try:
            with self._lock:
                body = self._dispatch(params)
        except (JosError, StockRefusal) as exc:
            return self._error(exc)
        return self._json(body)

    async def _admin_orders(self, request: Request) -> Response:
        try:
            body = await request.json()
            lines = body.get("lines")
            ids = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                  status=str(body.get("status") or STOCK_OUT),
                                  lines=int(lines) if lines is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"order_ids": ids})

    async def _admin_lifecycle(self, request: Request) -> Response:
        actions: dict[str, Callable[..., None]] = {
            "lock": self.lock, "unlock": self.unlock, "pause": self.pause, "resume": self.resume,
            "cancel": self.cancel, "refund_all": self.cancel, "finish": self.finish,
            "change_address": self.change_address,
        }
        order_id = request.path_params["order_id"]
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": f"unknown action; one of {', '.join(actions)}"}, status_code=404)
        try:
            body = await request.json() if await request.body() else {}
            action(order_id, **(body or {}))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"order_id": order_id, "status": self.status(order_id)})


def _int(value: Any, default: int, low: int, high: int | None = None) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise BizError("分页参数不正确", "invalid page parameter") from None  # sim text
    if number < low or (high is not None and number > high):
        raise BizError(f"分页参数应在{low}到{high}之间", "page parameter out of range")  # sim text
    return number


def _render(data: Mapping[str, Any], fields: set[str]) -> dict[str, Any]:
    """The orderInfo limited to ``optional_fields`` (all of it when none are named)."""
    keep = fields or set(data)
    return {k: copy.deepcopy(v) for k, v in data.items() if k in keep}


__all__ = ["JdSimulator", "jos_sign", "format_jos_time", "parse_jos_time", "response_key", "DEFECT_KINDS",
           "ORDER_STATES", "COMPANIES"]
