"""A local Douyin shop open platform (抖店开放平台, ``openapi-fxg.jinritemai.com``), written from the docs.

It never imports the hub's connectors, mappings, canonical model, workflows or hub: it is a second,
independent reading of the platform's documentation and official SDKs, so that a connector that
misreads the protocol fails here instead of agreeing with itself.

Rules enforced, and where each one comes from:

* Gateway -- official SDKs (Java ``DefaultDoudianOpClient``, Go ``core/doudian_op_api_client.go``,
  doudian-sdk-golang 1.1.0): ``{host}/{method with / for .}``, system parameters ``app_key``,
  ``method``, ``access_token``, ``timestamp``, ``v`` (2), ``sign``, ``sign_method`` in the query
  string, ``param_json`` as the POST body (or as a query parameter on a GET). ``method`` must match
  the path.
* Signature -- Java ``SignUtil.sign`` / Go ``utils.Sign``: ``secret + "app_key"+k + "method"+m +
  "param_json"+p + "timestamp"+t + "v2" + secret``, MD5 (Java) or HMAC-SHA256 keyed with the secret
  (Go, ``sign_method=hmac-sha256``), lower-case hex. The Java SDK signs a key-sorted re-serialisation
  of the JSON but sends its unsorted text, so the platform must canonicalise: a signature over the text
  as received or over its key-sorted compact form is accepted.
* Errors -- ``{"code", "msg", "sub_code", "sub_msg", "log_id"}`` with HTTP 200, codes of the 平台基础
  错误码 table (guide-docs/212/1427): 10000 success; 20000 服务不可用 (dop.service-error 服务繁忙);
  40001 isv.signature-missing / isv.app-id-missing / isv.access-token-missing; 40003
  isv.signature-invalid / isv.access-token-no-existed / isv.app-id-invalid / isv.timestamp-invalid /
  isv.parameter-invalid; 40004 非法的参数（业务校验）; 50002 业务处理失败 (isv.business-failed:...);
  60000 触发限流，请稍后重试 (isp.traffic-limited:...); 70000 isp.api-service-off.
* ``order.searchList`` -- ``update_time_start``/``update_time_end`` or ``create_time_start``/
  ``create_time_end`` (Unix seconds), ``order_by`` create_time|update_time (default create_time),
  ``order_asc`` (default false: "小到大或大到小，默认大到小"), ``page`` from 0, ``size`` "限制100以内";
  answers ``{page, size, total, shop_order_list}``.
* ``order.orderDetail`` -- ``shop_order_id`` -> ``shop_order_detail``.
* ``order.logisticsAdd`` -- ``order_id``, ``company_code`` (a code of ``order.logisticsCompanyList``),
  ``logistics_code``; ``order.logisticsAddMultiPack`` -- ``order_id``, ``pack_list[{shipped_order_info
  [{shipped_order_id, shipped_num}], logistics_code, company_code}]``, ``request_id`` ("相同request_id
  多次请求，第一次请求成功后，后续的请求会触发幂等，会直接返回第一次请求成功的结果").
* ``order.batchDecrypt`` -- ``cipher_infos[{auth_id, cipher_text}]``, "最大支持一次解密50条"; answers
  ``decrypt_infos[{auth_id, cipher_text, decrypt_text, err_no, err_msg, data_type, is_virtual_tel}]``
  (data_type "1 地址 2 姓名 3 手机号").
* Orders -- order_status "1 待确认/待支付; 105 已支付; 2 备货中; 101 部分发货; 3 已发货（全部发货）;
  4 已取消; 5 已完成", amounts in fen, after_sale_info (refund_status "1-待退款；3-退款成功"),
  given_product_type MASTER/FREE, 定金预售 orders with ``order_phase_list``; the receiver is given
  encrypted (encrypt_post_receiver / encrypt_post_tel / post_addr.encrypt_detail) and masked.
* Pushes -- a JSON array of ``{tag, msg_id, data}`` with ``data`` a JSON string, headers ``app-id`` and
  ``event-sign`` = MD5(app_key + body + app_secret) (github minibear2021/doudian ``callback``,
  zsmhub/doudian-sdk ``message/``); tags 100 订单创建, 101 支付, 102 卖家发货, 103 交易完成, 105 收货信息
  变更, 106 订单取消, 108 部分发货, 200 买家发起售后申请, 206 退款成功.
* SKUs and stock (``sku.detail``, ``sku.list``, ``sku.syncStock``): see :mod:`simulators.douyin_stock`.

Choices of the simulator where the documentation is silent (texts marked ``# sim text``): timestamps
are accepted as Unix seconds, milliseconds or "yyyy-MM-dd HH:mm:ss" (GMT+8) within 10 minutes of the
server clock; the update/create window is inclusive at both ends; an order cannot be shipped unless
it is 备货中 (2) or, for a package of some lines, 部分发货 (101); "already shipped" is 50002
``isv.business-failed:12010`` "订单已发货，不能重复发货"; a package must ship a sku order's whole
quantity; the ciphertext shapes (``~..~1~`` names, ``$..$1$$`` phones, ``#..#1##`` addresses) follow
published examples but the content is a keyed token; paid orders go straight to 备货中.

Public API: ``DouyinSimulator(apps, shops, orders_per_shop, malformed_per_shop, seed, now, spread_hours,
faults, calls_per_second, catalog, server_error_style, push_url)``; ``.app`` (ASGI: ``/{path}`` API,
``GET /_sim/state``, ``GET|POST /_sim/faults``, ``POST /_sim/orders``); ``state()``, ``orders(shop)``,
``order(order_id)``, ``status(order_id)``, ``writebacks(order_id)``, ``add_orders(...)``; lifecycle
``pay``, ``pay_balance``, ``cancel``, ``refund_all``, ``refund_line``, ``request_refund``,
``change_address``, ``complete``; pushes ``drain_pushes()``, ``deliver_pushes()``, ``signed_push(...)``;
clock ``now()``/``set_now()``/``advance()``; helpers ``doudian_sign``, ``push_sign``; stock ``shown_stock(sku)``,
``set_shown_stock(sku, quantity)``, ``stock_updates`` (see :mod:`simulators.douyin_stock`).
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.catalog import CATALOG
from simulators.clock import SimClock
from simulators.douyin_stock import DouyinStockSim, StockRefusal
from simulators.faults import FaultConfig, FaultInjector
from simulators.ratelimit import CallBucket

GMT8 = timezone(timedelta(hours=8), "GMT+8")
TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10  # "默认为10，最大100"
MAX_DECRYPT = 50
SIGN_METHODS = ("md5", "hmac-sha256")

UNPAID, PAID_PENDING, STOCKING, PART_SHIPPED, SHIPPED, CANCELLED, COMPLETED = 1, 105, 2, 101, 3, 4, 5
STATUS_DESC = {UNPAID: "待支付", PAID_PENDING: "已支付", STOCKING: "备货中", PART_SHIPPED: "部分发货",
               SHIPPED: "已发货", CANCELLED: "已取消", COMPLETED: "已完成"}

TAG_CREATED, TAG_PAID, TAG_SHIPPED, TAG_COMPLETED = "100", "101", "102", "103"
TAG_ADDRESS, TAG_CANCELLED, TAG_PART_SHIPPED = "105", "106", "108"
TAG_REFUND_APPLIED, TAG_REFUND_SUCCESS = "200", "206"

#: order.logisticsCompanyList: code -> name
COMPANIES = {
    "shunfeng": "顺丰速运", "zhongtong": "中通快递", "yuantong": "圆通速递", "shentong": "申通快递",
    "yunda": "韵达快递", "ems": "EMS", "youzhengguonei": "邮政快递包裹", "jd": "京东快递",
    "debangwuliu": "德邦物流", "debangkuaidi": "德邦快递", "jtexpress": "极兔速递",
    "huitongkuaidi": "百世快递", "zhaijisong": "宅急送",
}
_WAYBILL = re.compile(r"^[A-Za-z0-9]{6,30}$")  # sim rule
DEFECT_KINDS = ("empty_address", "missing_phone", "unknown_sku", "bad_payment")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "子涵", "欣怡", "浩然", "雨桐")
#: province, city, district (town), street
REGIONS = (
    (("浙江省", "33"), ("杭州市", "330100"), ("西湖区", "330106"), ("文新街道", "330106010")),
    (("上海市", "31"), ("上海市", "310100"), ("浦东新区", "310115"), ("张江镇", "310115125")),
    (("北京市", "11"), ("北京市", "110100"), ("朝阳区", "110105"), ("望京街道", "110105026")),
    (("广东省", "44"), ("深圳市", "440300"), ("南山区", "440305"), ("粤海街道", "440305007")),
    (("江苏省", "32"), ("南京市", "320100"), ("鼓楼区", "320106"), ("湖南路街道", "320106001")),
    (("四川省", "51"), ("成都市", "510100"), ("武侯区", "510107"), ("玉林街道", "510107020")),
)
ROADS = ("文一西路", "科技园路", "建国路", "人民路", "中山路", "长江路")
WORDS = ("请尽快发货", "送人的，不要放发票", "请发顺丰", "")


# --------------------------------------------------------------------------- signing


def doudian_sign(app_key: str, secret: str, method: str, param_json: str, timestamp: str, sign_method: str) -> str:
    """secret + app_key..method..param_json..timestamp..v2 + secret; MD5 or HMAC-SHA256, lower hex."""
    pattern = f"{secret}app_key{app_key}method{method}param_json{param_json}timestamp{timestamp}v2{secret}"
    if sign_method == "md5":
        return hashlib.md5(pattern.encode("utf-8"), usedforsecurity=False).hexdigest()
    if sign_method == "hmac-sha256":
        return hmac.new(secret.encode("utf-8"), pattern.encode("utf-8"), hashlib.sha256).hexdigest()
    raise ValueError(f"unknown sign_method {sign_method!r}")


def canonical_json(value: Any) -> str:
    """The key-sorted compact form the Java SDK signs (``sortParamJson`` + Gson, keys at every depth)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def push_sign(app_key: str, secret: str, body: bytes) -> str:
    """``event-sign`` of a message push: MD5(app_key + body + app_secret), lower-case hex."""
    return hashlib.md5(app_key.encode() + body + secret.encode(), usedforsecurity=False).hexdigest()


def fen(value: str | float) -> int:
    """Yuan (the catalogue's "59.00") to fen."""
    return int(round(float(value) * 100))


# --------------------------------------------------------------------------- errors


class DoudianError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(f"{code} {msg} {sub_code} {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg

    def body(self, log_id: str) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, "sub_code": self.sub_code, "sub_msg": self.sub_msg,
                "log_id": log_id}


def invalid(name: str, why: str) -> DoudianError:
    return DoudianError(40004, "非法的参数", f"isv.parameter-invalid:{name}", why)  # sim sub text


def business(code: int, why: str) -> DoudianError:
    return DoudianError(50002, "业务处理失败", f"isv.business-failed:{code}", why)


# --------------------------------------------------------------------------- data


@dataclass
class SimOrder:
    order_id: str
    shop_id: str
    data: dict[str, Any]
    clear: dict[str, str]  # the receiver in clear (name, tel, detail), for batchDecrypt only
    defect: str | None = None

    @property
    def status(self) -> int:
        return int(self.data["order_status"])

    @property
    def skus(self) -> list[dict[str, Any]]:
        return list(self.data["sku_order_list"])

    @property
    def update_time(self) -> int:
        return int(self.data["update_time"])




class DouyinSimulator(SimClock, DouyinStockSim):
    """A Douyin open platform serving seeded shops; ``app`` is the ASGI app.

    ``apps`` maps app_key -> app_secret, ``shops`` maps access_token -> shop_id. Each distinct shop
    starts with ``orders_per_shop`` paid orders in 备货中, ``malformed_per_shop`` of them deliberately
    malformed (cycling through ``DEFECT_KINDS``), created over the ``spread_hours`` before ``now``.
    The clock starts at ``now`` (default: the real time) and runs with the wall clock.
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
        server_error_style: Literal["dop", "http503"] = "dop",
        push_url: str | None = None,
    ) -> None:
        if not apps or not shops:
            raise ValueError("at least one app (app_key -> secret) and one shop (access_token -> shop_id) are needed")
        if not 0 <= malformed_per_shop <= orders_per_shop:
            raise ValueError("need 0 <= malformed_per_shop <= orders_per_shop")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.apps = dict(apps)
        self.tokens = {str(k): str(v) for k, v in shops.items()}
        self.seed = seed
        self.catalog = [dict(e) for e in (catalog if catalog is not None else CATALOG)]
        self.faults = FaultInjector(faults or FaultConfig())
        self.calls_per_second = calls_per_second
        self.server_error_style = server_error_style
        self.push_url = push_url
        self.start_clock(now)
        self._lock = threading.RLock()
        self._orders: dict[str, SimOrder] = {}
        self._ciphers: dict[str, tuple[str, int, str]] = {}  # cipher -> (order_id, data_type, clear)
        self._ids: set[int] = set()
        self._rngs: dict[str, random.Random] = {}
        self._defect_cycle = itertools.cycle(DEFECT_KINDS)
        self._buckets: dict[str, CallBucket] = {}
        self._log_ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._packages: dict[str, list[dict[str, Any]]] = {}
        self._request_ids: dict[str, dict[str, Any]] = {}
        self._waybills: dict[tuple[str, str], str] = {}
        self._outbox: list[tuple[str, list[dict[str, Any]]]] = []  # (app_key, messages)
        self._counters: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._created = 0
        self._malformed: list[str] = []
        self._init_stock()
        start = self.now()
        for shop in dict.fromkeys(self.tokens.values()):
            self._seed_shop(shop, orders_per_shop, malformed_per_shop, start, spread_hours)
        self.app = self._build_app()

    # -- clock ------------------------------------------------------------------------------

    def _epoch(self) -> int:
        return int(self.now().timestamp())

    # -- data -------------------------------------------------------------------------------

    def _rng(self, shop: str) -> random.Random:
        if shop not in self._rngs:
            self._rngs[shop] = random.Random(f"douyin:{self.seed}:{shop}")
        return self._rngs[shop]

    def _new_id(self, rng: random.Random) -> int:
        while True:
            value = rng.randrange(4_900_000_000_000_000_000, 6_900_000_000_000_000_000)
            if value not in self._ids and value + 1 not in self._ids:
                self._ids.add(value)
                return value

    def _cipher(self, order_id: str, data_type: int, clear: str) -> str:
        """A keyed token in the platform's shape: ``~..~1~`` name, ``$..$1$$`` phone, ``#..#1##`` address."""
        digest = hashlib.sha256(f"{self.seed}|{order_id}|{data_type}|{clear}".encode()).digest()
        token = base64.b64encode(digest).decode()
        cipher = {1: f"#{token}#1##", 2: f"~{token}~1~", 3: f"$${token}$1$$"}[data_type]
        self._ciphers[cipher] = (order_id, data_type, clear)
        return cipher

    def _receiver(self, rng: random.Random) -> tuple[tuple[Any, ...], dict[str, str]]:
        region = rng.choice(REGIONS)
        clear = {
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
            "tel": "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)),
            "detail": (f"{rng.choice(ROADS)}{rng.randrange(1, 999)}号{rng.randrange(1, 30)}幢"
                       f"{rng.randrange(101, 2999)}室"),
        }
        return region, clear

    def _apply_receiver(self, order: SimOrder, region: tuple[Any, ...], clear: dict[str, str]) -> None:
        names = ("province", "city", "town", "street")
        addr = {key: {"name": n, "id": i} for key, (n, i) in zip(names, region, strict=True)}
        data = order.data
        order.clear = dict(clear)
        data["encrypt_post_receiver"] = self._cipher(order.order_id, 2, clear["name"]) if clear["name"] else ""
        data["encrypt_post_tel"] = self._cipher(order.order_id, 3, clear["tel"]) if clear["tel"] else ""
        data["post_receiver"], data["post_tel"] = "", ""
        data["post_addr"] = {**copy.deepcopy(addr), "detail": "",
                             "encrypt_detail": self._cipher(order.order_id, 1, clear["detail"]) if clear["detail"]
                             else ""}
        data["mask_post_receiver"] = (clear["name"][:1] + "*") if clear["name"] else ""
        data["mask_post_tel"] = (clear["tel"][:3] + "****" + clear["tel"][-4:]) if clear["tel"] else ""
        data["mask_post_addr"] = {**copy.deepcopy(addr), "detail": (clear["detail"][:4] + "****") if clear["detail"]
                                  else ""}

    def _make_order(self, shop: str, created: int, paid: int | None, defect: str | None, *,
                    presale: str | None = None, lines: int | None = None, gift: bool = False) -> SimOrder:
        rng = self._rng(shop)
        order_id = str(self._new_id(rng))
        count = lines if lines is not None else rng.choice((1, 1, 1, 2, 2, 3))
        goods = rng.sample(self.catalog, k=min(count, len(self.catalog)))
        skus: list[dict[str, Any]] = []
        for index, entry in enumerate(goods):
            num = rng.choice((1, 1, 2, 3))
            price = fen(entry["price"])
            promo = rng.choice((0, 0, 0, 500, 1000)) if price * num > 1000 else 0
            code = str(entry["sku"])
            if defect == "unknown_sku" and index == 0:
                code = ""  # no merchant code, and a sku_id nobody maps (a hub must catch it)
            sku_id = int(entry["sku_id"]) if code else rng.randrange(9_000_000_000_000, 9_999_999_999_999)
            skus.append({
                "order_id": str(self._new_id(rng)),
                "parent_order_id": order_id, "order_level": 3, "biz": 2, "order_type": 0,
                "trade_type": 2 if presale else 0, "trade_type_desc": "定金预售" if presale else "普通",
                "product_id": int(entry["num_iid"]), "product_id_str": str(entry["num_iid"]),
                "product_name": str(entry.get("item_title") or entry.get("title") or ""),
                "sku_id": sku_id, "code": code, "out_sku_id": "", "out_product_id": str(entry.get("outer_iid") or ""),
                "spec": [{"name": p.split(":", 1)[0], "value": p.split(":", 1)[-1]}
                         for p in str(entry.get("properties") or "").split(";") if p],
                "item_num": num, "origin_amount": price, "sum_amount": price * num, "order_amount": price * num,
                "promotion_amount": promo, "pay_amount": price * num - promo, "post_amount": 0,
                "pre_sale_type": 0, "given_product_type": "MASTER",
                "after_sale_info": {"after_sale_status": 0, "after_sale_type": 0, "refund_status": 0},
            })
        if gift:
            entry = rng.choice(self.catalog)
            skus.append({**copy.deepcopy(skus[0]), "order_id": str(self._new_id(rng)), "sku_id": int(entry["sku_id"]),
                         "code": str(entry["sku"]), "product_name": str(entry.get("item_title") or ""),
                         "item_num": 1, "origin_amount": 0, "sum_amount": 0, "order_amount": 0,
                         "promotion_amount": 0, "pay_amount": 0, "given_product_type": "FREE",
                         "master_sku_order_id_list": [skus[0]["order_id"]]})
        post = rng.choice((0, 0, 0, 800, 1000))
        goods_total = sum(s["sum_amount"] for s in skus)
        promo_total = sum(s["promotion_amount"] for s in skus)
        status = STOCKING if paid is not None else UNPAID
        data: dict[str, Any] = {
            "shop_id": int(shop) if shop.isdigit() else shop, "order_id": order_id, "order_level": 2, "biz": 2,
            "order_type": 0, "order_status": status, "order_status_desc": STATUS_DESC[status],
            "pay_time": paid or 0, "create_time": created, "update_time": paid or created, "finish_time": 0,
            "order_expire_time": 1800, "cancel_reason": "", "buyer_words": rng.choice(WORDS), "seller_words": "",
            "b_type": 2, "b_type_desc": "抖音", "pay_type": rng.choice((1, 2)),
            "order_amount": goods_total + post, "post_amount": post, "promotion_amount": promo_total,
            "pay_amount": goods_total + post - promo_total, "promotion_shop_amount": promo_total,
            "promotion_platform_amount": 0, "promotion_talent_amount": 0, "modify_amount": 0,
            "doudian_open_id": "1@#" + base64.b64encode(rng.randbytes(18)).decode(),
            "ship_time": 0, "logistics_info": [], "order_phase_list": [], "sku_order_list": skus,
        }
        for sku in skus:
            sku.update(order_status=status, create_time=created, update_time=data["update_time"], pay_time=paid or 0)
        order = SimOrder(order_id=order_id, shop_id=shop, data=data, clear={}, defect=defect)
        region, clear = self._receiver(rng)
        if defect == "empty_address":
            clear["detail"] = ""
        elif defect == "missing_phone":
            clear["tel"] = ""
        self._apply_receiver(order, region, clear)
        if defect == "bad_payment":
            data["pay_amount"] = -data["pay_amount"]  # a negative payment, impossible
        if presale:
            deposit = max(1, data["pay_amount"] // 5)  # sim choice: a fifth as deposit
            data["order_phase_list"] = [
                {"phase_order_id": str(self._new_id(rng)), "total_phase": 2, "current_phase": 1,
                 "pay_success": presale in ("deposit", "paid"), "sku_order_id": skus[0]["order_id"],
                 "phase_pay_amount": deposit, "phase_pay_time": created if presale in ("deposit", "paid") else 0},
                {"phase_order_id": str(self._new_id(rng)), "total_phase": 2, "current_phase": 2,
                 "pay_success": presale == "paid", "sku_order_id": skus[0]["order_id"],
                 "phase_pay_amount": data["pay_amount"] - deposit, "phase_pay_time": paid or 0},
            ]
        return order

    def _seed_shop(self, shop: str, count: int, malformed: int, now: datetime, spread_hours: float) -> None:
        rng = self._rng(shop)
        end = int(now.timestamp())
        spread = max(120, int(spread_hours * 3600))
        bad = set(rng.sample(range(count), k=malformed))
        for index in range(count):
            defect = next(self._defect_cycle) if index in bad else None
            created = end - rng.randrange(60, spread)
            paid = min(created + rng.randrange(5, 600), end)
            self._add(self._make_order(shop, created, paid, defect))

    def _add(self, order: SimOrder) -> None:
        self._orders[order.order_id] = order
        self._created += 1
        if order.defect:
            self._malformed.append(order.order_id)

    def _shop(self, shop_or_token: str) -> str:
        if shop_or_token in self.tokens:
            return self.tokens[shop_or_token]
        if shop_or_token in self.tokens.values():
            return shop_or_token
        raise KeyError(f"unknown shop or access token {shop_or_token!r}")

    def add_orders(self, shop_or_token: str, n: int, malformed: int = 0, *, status: str = "paid",
                   presale: bool | str = False, lines: int | None = None, gift: bool = False) -> list[str]:
        """Create ``n`` orders now (``malformed`` of them defective); returns their ids.

        ``status``: "paid" (备货中), "unpaid" (待支付) or "paid_pending" (105 已支付). ``presale``: True =
        定金预售 with the deposit paid and the balance due (status 待支付, phase 1 paid); "unpaid" = nothing
        paid yet. ``lines``: that many sku orders; ``gift``: add a free gift line.
        """
        if not 0 <= malformed <= n:
            raise ValueError("need 0 <= malformed <= n")
        if status not in ("paid", "unpaid", "paid_pending"):
            raise ValueError("status is paid, unpaid or paid_pending")
        phase = {True: "deposit", "deposit": "deposit", "unpaid": "none"}.get(presale) if presale else None
        if presale and phase is None:
            raise ValueError("presale is True/'deposit' (deposit paid) or 'unpaid'")
        with self._lock:
            shop = self._shop(shop_or_token)
            rng = self._rng(shop)
            now = self._epoch()
            bad = set(rng.sample(range(n), k=malformed))
            ids = []
            for index in range(n):
                defect = next(self._defect_cycle) if index in bad else None
                paid = now if status != "unpaid" and not phase else None
                order = self._make_order(shop, now - rng.randrange(5, 60), paid, defect, presale=phase, lines=lines,
                                         gift=gift)
                if status == "paid_pending" and not phase:
                    self._set_status(order, PAID_PENDING)
                self._add(order)
                self._push(order, TAG_CREATED)
                if order.data["pay_time"]:
                    self._push(order, TAG_PAID)
                ids.append(order.order_id)
            return ids

    # -- accessors ----------------------------------------------------------------------------

    def orders(self, shop_or_token: str | None = None) -> list[str]:
        with self._lock:
            shop = self._shop(shop_or_token) if shop_or_token else None
            return [o.order_id for o in self._orders.values() if shop is None or o.shop_id == shop]

    def order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get(order_id).data)

    def status(self, order_id: str) -> int:
        with self._lock:
            return self._get(order_id).status

    def writebacks(self, order_id: str) -> list[dict[str, Any]]:
        """The packages recorded for an order (one per successful logisticsAdd / multi-pack package)."""
        with self._lock:
            return copy.deepcopy(self._packages.get(str(order_id), []))

    def state(self) -> dict[str, Any]:
        with self._lock:
            statuses = Counter(o.status for o in self._orders.values())
            return {
                "orders_created": self._created,
                "orders_malformed": len(self._malformed),
                "malformed_tids": list(self._malformed),
                "shipped_count": sum(1 for p in self._packages.values() if p),
                "packages": sum(len(p) for p in self._packages.values()),
                "repeat_writebacks": self._counters["repeat_writebacks"],
                "decrypted_fields": self._counters["decrypted_fields"],
                "pushes_sent": self._counters["pushes_sent"],
                "pushes_pending": len(self._outbox),
                "rejected_signatures": self._counters["rejected_signatures"],
                "rate_limited": self._counters["rate_limited"],
                "requests": dict(self._requests),
                "errors": dict(self._errors),
                "faults": dict(self.faults.injected),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "shops": sorted(set(self.tokens.values())),
                **self._stock_state(),
            }

    def _get(self, order_id: str) -> SimOrder:
        order = self._orders.get(str(order_id))
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    # -- lifecycle ----------------------------------------------------------------------------

    def _touch(self, order: SimOrder) -> None:
        moment = max(self._epoch(), order.update_time + 1)  # every change moves update_time
        order.data["update_time"] = moment
        for sku in order.data["sku_order_list"]:
            sku["update_time"] = moment

    def _set_status(self, order: SimOrder, status: int, skus: bool = True) -> None:
        order.data["order_status"] = status
        order.data["order_status_desc"] = STATUS_DESC[status]
        if skus:
            for sku in order.data["sku_order_list"]:
                if sku["after_sale_info"]["refund_status"] != 3:
                    sku["order_status"] = status

    def pay(self, order_id: str) -> None:
        """The buyer pays an unpaid order: 备货中."""
        with self._lock:
            order = self._get(order_id)
            if order.status not in (UNPAID, PAID_PENDING) or order.data["order_phase_list"]:
                raise ValueError(f"order {order_id} cannot be paid now (status {order.status})")
            order.data["pay_time"] = self._epoch()
            for sku in order.data["sku_order_list"]:
                sku["pay_time"] = order.data["pay_time"]
            self._set_status(order, STOCKING)
            self._touch(order)
            self._push(order, TAG_PAID)

    def pay_balance(self, order_id: str) -> None:
        """The buyer pays the balance (尾款) of a 定金预售 order whose deposit is paid."""
        with self._lock:
            order = self._get(order_id)
            phases = order.data["order_phase_list"]
            if order.status != UNPAID or not phases or not phases[0]["pay_success"]:
                raise ValueError(f"order {order_id} has no deposit paid and balance due")
            if not phases[0]["pay_success"]:
                phases[0].update(pay_success=True, phase_pay_time=self._epoch())
            phases[1].update(pay_success=True, phase_pay_time=self._epoch())
            order.data["pay_time"] = self._epoch()
            self._set_status(order, STOCKING)
            self._touch(order)
            self._push(order, TAG_PAID)

    def pay_deposit(self, order_id: str) -> None:
        with self._lock:
            order = self._get(order_id)
            phases = order.data["order_phase_list"]
            if order.status != UNPAID or not phases or phases[0]["pay_success"]:
                raise ValueError(f"order {order_id} is not a presale with the deposit due")
            phases[0].update(pay_success=True, phase_pay_time=self._epoch())
            self._touch(order)
            self._push(order, TAG_PAID)

    def cancel(self, order_id: str, reason: str = "买家取消订单") -> None:
        """Cancel an order not shipped yet (unpaid: closed; paid: refunded in full)."""
        with self._lock:
            order = self._get(order_id)
            if order.status not in (UNPAID, PAID_PENDING, STOCKING):
                raise ValueError(f"order {order_id} cannot be cancelled (status {order.status})")
            if order.data["pay_time"]:
                for sku in order.data["sku_order_list"]:
                    sku["after_sale_info"] = {"after_sale_status": 12, "after_sale_type": 2, "refund_status": 3}
            self._set_status(order, CANCELLED)
            order.data["cancel_reason"] = reason
            self._touch(order)
            self._push(order, TAG_CANCELLED)

    def refund_all(self, order_id: str) -> None:
        """Every line refunded before shipment (售前退款): the order is cancelled."""
        self.cancel(order_id, reason="售前退款")

    def request_refund(self, order_id: str, sku_order_id: str) -> None:
        """The buyer asks for a refund of one line (售后申请 waiting for the seller)."""
        with self._lock:
            order = self._get(order_id)
            sku = self._sku(order, sku_order_id)
            sku["after_sale_info"] = {"after_sale_status": 6, "after_sale_type": 2, "refund_status": 1}
            self._touch(order)
            self._push(order, TAG_REFUND_APPLIED, s_id=sku_order_id)

    def refund_line(self, order_id: str, sku_order_id: str) -> None:
        """One line refunded (退款成功); when every line is, the order is cancelled."""
        with self._lock:
            order = self._get(order_id)
            sku = self._sku(order, sku_order_id)
            sku["after_sale_info"] = {"after_sale_status": 12, "after_sale_type": 2, "refund_status": 3}
            sku["order_status"] = CANCELLED
            if all(s["after_sale_info"]["refund_status"] == 3 for s in order.skus):
                self._set_status(order, CANCELLED)
            self._touch(order)
            self._push(order, TAG_REFUND_SUCCESS, s_id=sku_order_id)

    def change_address(self, order_id: str, **fields: str) -> None:
        """New receiver values (``name``, ``tel``, ``detail``): new ciphertexts, message 105."""
        with self._lock:
            order = self._get(order_id)
            unknown = set(fields) - {"name", "tel", "detail"}
            if unknown:
                raise ValueError(f"change_address takes name, tel, detail, not {sorted(unknown)}")
            addr = order.data["post_addr"]
            region = tuple((addr[k]["name"], addr[k]["id"]) for k in ("province", "city", "town", "street"))
            self._apply_receiver(order, region, {**order.clear, **fields})
            self._touch(order)
            self._push(order, TAG_ADDRESS)

    def complete(self, order_id: str) -> None:
        """The buyer confirms receipt of a shipped order: 已完成."""
        with self._lock:
            order = self._get(order_id)
            if order.status != SHIPPED:
                raise ValueError(f"order {order_id} is not shipped")
            self._set_status(order, COMPLETED)
            order.data["finish_time"] = self._epoch()
            self._touch(order)
            self._push(order, TAG_COMPLETED)

    @staticmethod
    def _sku(order: SimOrder, sku_order_id: str) -> dict[str, Any]:
        for sku in order.data["sku_order_list"]:
            if sku["order_id"] == str(sku_order_id):
                return sku
        raise KeyError(f"order {order.order_id} has no sku order {sku_order_id}")

    # -- pushes -------------------------------------------------------------------------------

    def _push(self, order: SimOrder, tag: str, s_id: str | None = None) -> None:
        data: dict[str, Any] = {"p_id": int(order.order_id), "shop_id": order.data["shop_id"],
                                "order_status": order.status, "order_type": 0, "biz": 2,
                                "update_time": order.update_time}
        if s_id is not None:
            data["s_id"] = int(s_id)
        else:
            data["s_ids"] = [int(s["order_id"]) for s in order.skus]
        message = {"tag": tag, "msg_id": f"{self.seed}{next(self._msg_ids):011d}",
                   "data": json.dumps(data, ensure_ascii=False, separators=(",", ":"))}
        app_key = next(iter(self.apps))
        self._outbox.append((app_key, [message]))

    def signed_push(self, messages: list[dict[str, Any]], app_key: str | None = None,
                    secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of a push of ``messages`` signed as the platform does."""
        app_key = app_key or next(iter(self.apps))
        secret = secret if secret is not None else self.apps[app_key]
        body = json.dumps(messages, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "app-id": app_key,
                   "event-sign": push_sign(app_key, secret, body)}
        return headers, body

    def drain_pushes(self) -> list[tuple[dict[str, str], bytes]]:
        """The signed pushes waiting to be delivered (a duplicate fault repeats one), then forgotten."""
        with self._lock:
            out = []
            for app_key, messages in self._outbox:
                push = self.signed_push(messages, app_key)
                out.append(push)
                if self.faults.duplicate():
                    out.append(push)  # at-least-once delivery: the same msg_id again
            self._outbox.clear()
            self._counters["pushes_sent"] += len(out)
            return out

    def deliver_pushes(self, url: str | None = None, timeout: float = 10.0) -> int:
        """POST the pending pushes to ``url`` (default ``push_url``, a hub's /hooks/{connector});
        returns how many were answered ``{"code": 0}``. Undelivered ones are kept for a retry."""
        target = url or self.push_url
        if not target:
            raise ValueError("no push_url")
        pushes = self.drain_pushes()
        done = 0
        with httpx.Client(timeout=timeout) as client:
            for headers, body in pushes:
                try:
                    answer = client.post(target, content=body, headers=headers)
                    ok = answer.status_code == 200 and answer.json().get("code") == 0
                except (httpx.HTTPError, ValueError):
                    ok = False
                if ok:
                    done += 1
                else:
                    with self._lock:
                        self._outbox.append((headers["app-id"], json.loads(body)))
        return done

    # -- the ASGI app -------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/_sim/state", self._state_endpoint, methods=["GET"]),
            Route("/_sim/faults", self._faults_endpoint, methods=["GET", "POST"]),
            Route("/_sim/orders", self._orders_endpoint, methods=["POST"]),
            Route("/{path:path}", self._api, methods=["GET", "POST"]),
        ])

    async def _state_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.state())

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.reconfigure(FaultConfig.model_validate(await request.json()))
            except (ValidationError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.config.model_dump())

    async def _orders_endpoint(self, request: Request) -> Response:
        try:
            body = await request.json()
            ids = self.add_orders(str(body["shop"]), int(body.get("n", 1)), int(body.get("malformed", 0)),
                                  status=str(body.get("status", "paid")), presale=body.get("presale", False),
                                  lines=body.get("lines"))
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"order_ids": ids})

    async def _api(self, request: Request) -> Response:
        log_id = f"{self._epoch()}{next(self._log_ids):010d}"
        method = request.path_params["path"].strip("/").replace("/", ".")
        self._requests[method] += 1
        fault = await self.faults.before_request()
        try:
            if fault == "error_5xx":
                if self.server_error_style == "http503":
                    return Response("Service Unavailable", status_code=503)
                raise DoudianError(20000, "服务不可用", "dop.service-error", "服务繁忙")
            if fault == "throttle":
                with self._lock:
                    self._note_throttled(method)
                raise DoudianError(60000, "触发限流，请稍后重试", "isp.traffic-limited:1000", "请求过于频繁")
            query = dict(request.query_params)
            raw = (await request.body()).decode("utf-8") if request.method == "POST" else ""
            text = raw if raw.strip() else query.get("param_json", "")
            with self._lock:
                data = self._dispatch(method, query, text)
            return JSONResponse({"code": 10000, "msg": "success", "sub_code": "", "sub_msg": "", "log_id": log_id,
                                 "data": data})
        except (DoudianError, StockRefusal) as exc:
            self._errors[exc.sub_code.split(":")[0] or str(exc.code)] += 1
            return JSONResponse(exc.body(log_id))
        except UnicodeDecodeError:
            return JSONResponse(DoudianError(40003, "非法的参数", "isv.parameter-format-invalid",
                                             "业务参数json解析失败").body(log_id))

    def _dispatch(self, method: str, query: Mapping[str, str], text: str) -> Any:
        app_key = query.get("app_key", "")
        if not app_key:
            raise DoudianError(40001, "缺少必选参数", "isv.app-id-missing", "认证失败，app_key不存在")
        secret = self.apps.get(app_key)
        if secret is None:
            raise DoudianError(40003, "非法的参数", "isv.app-id-invalid", "认证失败，app_key不存在")  # sim text
        if query.get("method", "") != method:
            raise DoudianError(40003, "非法的参数", "isv.parameter-invalid", "method与请求路径不一致")  # sim text
        if query.get("v", "") != "2":
            raise DoudianError(40003, "非法的参数", "isv.parameter-invalid", "v必须为2")  # sim text
        self._check_timestamp(query.get("timestamp", ""))
        self._check_sign(query, secret, method, text)
        if self.calls_per_second is not None:
            bucket = self._buckets.setdefault(app_key, CallBucket(self.calls_per_second))
            if not bucket.take():
                self._counters["rate_limited"] += 1
                self._note_throttled(method)
                raise DoudianError(60000, "触发限流，请稍后重试", "isp.traffic-limited:1000", "请求过于频繁")
        token = query.get("access_token", "")
        if not token:
            raise DoudianError(40001, "缺少必选参数", "isv.access-token-missing", "认证失败，access_token不能为空")
        shop = self.tokens.get(token)
        if shop is None:
            raise DoudianError(40003, "非法的参数", "isv.access-token-no-existed",
                               "access_token不存在，请使用最新的access_token访问")
        handler = {
            "order.searchList": self._search_list, "order.orderDetail": self._order_detail,
            "order.logisticsAdd": self._logistics_add, "order.logisticsAddMultiPack": self._multi_pack,
            "order.batchDecrypt": self._batch_decrypt, "order.logisticsCompanyList": self._companies,
            **self._stock_handlers(),
        }.get(method)
        if handler is None:
            raise DoudianError(70000, "接口服务已下线", "isp.api-service-off", "API不存在或API已下线")
        try:
            params = json.loads(text) if text.strip() else {}
        except ValueError:
            raise DoudianError(40003, "非法的参数", "isv.parameter-format-invalid", "业务参数json解析失败") from None
        if not isinstance(params, dict):
            raise DoudianError(40003, "非法的参数", "isv.parameter-format-invalid", "业务参数json解析失败")
        return handler(params, shop)

    def _check_timestamp(self, text: str) -> None:
        if not text:
            raise DoudianError(40001, "缺少必选参数", "isv.parameter-missing", "缺少参数timestamp")  # sim text
        try:
            if text.isdigit():
                value = int(text)
                moment = datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
            else:
                moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8)
        except (ValueError, OverflowError, OSError):
            raise DoudianError(40003, "非法的参数", "isv.timestamp-format-error", "时间戳格式错误") from None
        if abs(moment - self.now()) > TIMESTAMP_TOLERANCE:
            raise DoudianError(40003, "非法的参数", "isv.timestamp-invalid", "时间戳不合法")

    def _check_sign(self, query: Mapping[str, str], secret: str, method: str, text: str) -> None:
        sign = query.get("sign", "")
        if not sign:
            raise DoudianError(40001, "缺少必选参数", "isv.signature-missing",
                               "获取签名失败，请根据文档确保参数拼装正确")
        sign_method = query.get("sign_method", "") or "md5"  # the Java SDK sends none: MD5
        if sign_method not in SIGN_METHODS:
            self._counters["rejected_signatures"] += 1
            raise DoudianError(40003, "非法的参数", "isv.signature-invalid", "签名校验失败")
        candidates = {text or "{}"}
        try:
            candidates.add(canonical_json(json.loads(text)) if text.strip() else "{}")
        except ValueError:
            pass
        app_key, stamp = query.get("app_key", ""), query.get("timestamp", "")
        if not any(hmac.compare_digest(sign.lower(), doudian_sign(app_key, secret, method, c, stamp, sign_method))
                   for c in candidates):
            self._counters["rejected_signatures"] += 1
            raise DoudianError(40003, "非法的参数", "isv.signature-invalid", "签名校验失败")

    # -- handlers -----------------------------------------------------------------------------

    def _search_list(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        page = _int_param(params, "page", 0, low=0)
        size = _int_param(params, "size", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        order_by = str(params.get("order_by") or "create_time")
        if order_by not in ("create_time", "update_time"):
            raise invalid("order_by", "order_by 只支持 create_time、update_time")  # sim text
        asc = _bool_param(params, "order_asc")
        ranges = []
        for key in ("create_time", "update_time"):
            start, end = params.get(f"{key}_start"), params.get(f"{key}_end")
            if start is not None or end is not None:
                low = _int_param(params, f"{key}_start", 0, low=0)
                high = _int_param(params, f"{key}_end", 2**62, low=0)
                if high < low:
                    raise invalid(f"{key}_end", f"{key}_end 不能小于 {key}_start")  # sim text
                ranges.append((key, low, high))
        statuses = None
        combine = params.get("combine_status")
        if isinstance(combine, list) and combine and isinstance(combine[0], dict) and combine[0].get("order_status"):
            statuses = {int(s) for s in str(combine[0]["order_status"]).split(",") if s.strip().isdigit()}
        matching = [o for o in self._orders.values() if o.shop_id == shop
                    and all(lo <= int(o.data[k]) <= hi for k, lo, hi in ranges)
                    and (statuses is None or o.status in statuses)]
        matching.sort(key=lambda o: (int(o.data[order_by]), o.order_id), reverse=not asc)
        chosen = matching[page * size:(page + 1) * size]
        listed = [copy.deepcopy(o.data) for o in chosen]
        if listed and self.faults.duplicate():
            listed.append(copy.deepcopy(listed[0]))  # a repeated row, as search pages sometimes have
        return {"page": page, "size": size, "total": len(matching), "shop_order_list": listed}

    def _order_detail(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        order_id = _id_param(params, "shop_order_id")
        order = self._orders.get(order_id)
        if order is None or order.shop_id != shop:
            raise business(10003, "订单不存在")  # sim code
        return {"shop_order_detail": copy.deepcopy(order.data)}

    def _companies(self, params: dict[str, Any], shop: str) -> list[dict[str, Any]]:
        return [{"id": i + 1, "code": code, "name": name} for i, (code, name) in enumerate(COMPANIES.items())]

    def _check_waybill(self, order: SimOrder, company: str, waybill: str) -> None:
        if company not in COMPANIES:
            raise invalid("company_code", "物流公司code不存在，请从order.logisticsCompanyList获取")  # sim text
        if not _WAYBILL.match(waybill):
            raise invalid("logistics_code", "运单号格式不正确")  # sim text
        owner = self._waybills.get((company, waybill))
        if owner is not None and owner != order.order_id:
            raise business(12011, "运单号已被其他订单使用")  # sim text

    def _ship(self, order: SimOrder, skus: list[dict[str, Any]], company: str, waybill: str) -> dict[str, Any]:
        moment = self._epoch()
        pack_id = str(self._new_id(self._rng(order.shop_id)))
        package = {
            "tracking_no": waybill, "company": company, "company_name": COMPANIES[company], "ship_time": moment,
            "delivery_id": pack_id,
            "product_info": [{"sku_order_id": s["order_id"], "product_name": s["product_name"], "sku_id": s["sku_id"],
                              "outer_sku_id": s["code"], "product_count": s["item_num"],
                              "product_id": s["product_id"], "price": s["origin_amount"]} for s in skus],
        }
        for sku in skus:
            sku["order_status"] = SHIPPED
        order.data["logistics_info"].append(package)
        order.data["ship_time"] = order.data["ship_time"] or moment
        open_lines = [s for s in order.skus if s["after_sale_info"]["refund_status"] != 3]
        done = all(s["order_status"] == SHIPPED for s in open_lines)
        self._set_status(order, SHIPPED if done else PART_SHIPPED, skus=False)
        self._touch(order)
        self._waybills[(company, waybill)] = order.order_id
        record = {"order_id": order.order_id, "logistics_code": waybill, "company_code": company,
                  "at": moment, "pack_id": pack_id, "sku_order_ids": [s["order_id"] for s in skus]}
        self._packages.setdefault(order.order_id, []).append(record)
        self._push(order, TAG_SHIPPED if done else TAG_PART_SHIPPED)
        return package

    def _shippable(self, order: SimOrder, split: bool) -> None:
        if order.status in (SHIPPED, COMPLETED) or (not split and order.status == PART_SHIPPED):
            if order.order_id in self._packages:
                self._counters["repeat_writebacks"] += 1
            raise business(12010, "订单已发货，不能重复发货")  # sim text
        allowed = (STOCKING, PART_SHIPPED) if split else (STOCKING,)
        if order.status not in allowed:
            raise business(12012, f"订单状态为{STATUS_DESC[order.status]}，不允许发货")  # sim text

    def _logistics_add(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        order_id = _id_param(params, "order_id")
        company = _str_param(params, "company_code")
        waybill = _str_param(params, "logistics_code")
        order = self._orders.get(order_id)
        if order is None or order.shop_id != shop:
            raise business(10003, "订单不存在")
        self._shippable(order, split=False)
        self._check_waybill(order, company, waybill)
        skus = [s for s in order.skus if s["after_sale_info"]["refund_status"] != 3]
        self._ship(order, skus, company, waybill)
        return {}

    def _multi_pack(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        order_id = _id_param(params, "order_id")
        request_id = str(params.get("request_id") or "")
        if request_id and request_id in self._request_ids:
            return copy.deepcopy(self._request_ids[request_id])  # "触发幂等，直接返回第一次请求成功的结果"
        packs = params.get("pack_list")
        if not isinstance(packs, list) or not packs:
            raise DoudianError(40002, "缺少必选参数", "isv.parameter-missing:pack_list", "pack_list不能为空")  # sim
        order = self._orders.get(order_id)
        if order is None or order.shop_id != shop:
            raise business(10003, "订单不存在")
        self._shippable(order, split=True)
        by_id = {s["order_id"]: s for s in order.skus}
        plans = []
        for pack in packs:
            if not isinstance(pack, dict):
                raise invalid("pack_list", "pack_list 格式错误")  # sim text
            company = _str_param(pack, "company_code")
            waybill = _str_param(pack, "logistics_code")
            self._check_waybill(order, company, waybill)
            infos = pack.get("shipped_order_info")
            if not isinstance(infos, list) or not infos:
                raise DoudianError(40002, "缺少必选参数", "isv.parameter-missing:shipped_order_info",
                                   "shipped_order_info不能为空")  # sim text
            skus = []
            for info in infos:
                sku = by_id.get(str(info.get("shipped_order_id") if isinstance(info, dict) else ""))
                if sku is None:
                    raise invalid("shipped_order_id", "子订单不属于该订单")  # sim text
                if sku["order_status"] in (SHIPPED, COMPLETED):
                    self._counters["repeat_writebacks"] += 1
                    raise business(12010, "订单已发货，不能重复发货")
                if sku["after_sale_info"]["refund_status"] == 3:
                    raise business(12013, "子订单已退款，不能发货")  # sim text
                if _as_int(info.get("shipped_num")) != sku["item_num"]:
                    raise invalid("shipped_num", "发货数量必须等于子订单待发货数")  # sim text
                skus.append(sku)
            plans.append((skus, company, waybill))
        result = {"pack_list": []}
        for skus, company, waybill in plans:
            package = self._ship(order, skus, company, waybill)
            result["pack_list"].append({"logistics_code": waybill, "pack_id": package["delivery_id"],
                                        "shipped_order_info": [{"shipped_order_id": s["order_id"],
                                                                "shipped_num": s["item_num"]} for s in skus]})
        if request_id:
            self._request_ids[request_id] = copy.deepcopy(result)
        return result

    def _batch_decrypt(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        infos = params.get("cipher_infos")
        if not isinstance(infos, list) or not infos:
            raise DoudianError(40002, "缺少必选参数", "isv.parameter-missing:cipher_infos", "cipher_infos不能为空")
        if len(infos) > MAX_DECRYPT:
            raise invalid("cipher_infos", "最大支持一次解密50条")
        out = []
        for info in infos:
            info = info if isinstance(info, dict) else {}
            cipher, auth_id = str(info.get("cipher_text") or ""), str(info.get("auth_id") or "")
            known = self._ciphers.get(cipher)
            owner = self._orders.get(known[0]) if known else None
            if known is None or owner is None or owner.shop_id != shop or auth_id != known[0]:
                out.append({"auth_id": auth_id, "cipher_text": cipher, "decrypt_text": "", "err_no": 300008,
                            "err_msg": "密文不存在或无权限解密", "data_type": 0, "is_virtual_tel": False})  # sim
                continue
            self._counters["decrypted_fields"] += 1
            out.append({"auth_id": auth_id, "cipher_text": cipher, "decrypt_text": known[2], "err_no": 0,
                        "err_msg": "", "data_type": known[1], "is_virtual_tel": False})
        return {"decrypt_infos": out, "custom_err": {"err_code": 0, "err_msg": ""}}


# --------------------------------------------------------------------------- parameter helpers


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int | None = None) -> int:
    if params.get(name) in (None, ""):
        return default
    value = _as_int(params[name])
    if value is None or value < low or (high is not None and value > high):
        raise invalid(name, f"{name} 取值范围 {low}..{high}" if high is not None else f"{name} >= {low}")  # sim
    return value


def _bool_param(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if value in (None, "", False, "false", 0, "0"):
        return False
    if value in (True, "true", 1, "1"):
        return True
    raise invalid(name, f"{name} 必须为布尔值")  # sim text


def _str_param(params: Mapping[str, Any], name: str) -> str:
    value = str(params.get(name) or "").strip()
    if not value:
        raise DoudianError(40002, "缺少必选参数", f"isv.parameter-missing:{name}", f"缺少参数{name}")  # sim text
    return value


def _id_param(params: Mapping[str, Any], name: str) -> str:
    value = _str_param(params, name)
    if not value.isdigit():
        raise invalid(name, f"{name} 必须为数字字符串")  # sim text
    return value


__all__ = ["COMPANIES", "DEFECT_KINDS", "DoudianError", "DouyinSimulator", "canonical_json", "doudian_sign",
           "push_sign"]
