"""The 抖店 SKU stock APIs of the Douyin simulator (mixed into :class:`simulators.douyin.DouyinSimulator`).

Written from the platform's documentation and official SDK models (doudian-sdk-golang ``api/sku_*``,
mirrored by zsmhub/doudian-sdk and westng/doudian-sdk; the page "全量/增量更新商品sku库存" as mirrored
by doc.fw199.com), importing nothing of the hub:

* ``sku.detail`` (``/sku/detail``): ``sku_id`` or ``code`` -> ``{id, open_user_id, out_sku_id, product_id,
  product_id_str, spec_detail_name1..3, price (fen), create_time, code ("sku外部编码"), sku_type ("0-普通
  1-区域库存"), supplier_id, stock_num, prehold_stock_num, prom_stock_num, step_stock_num, ...}``.
* ``sku.list`` (``/sku/list``): ``product_id`` or ``out_product_id`` -> the product's SKUs (a list).
* ``sku.syncStock`` (``/sku/syncStock``): ``code`` ("sku编码") or ``sku_id`` ("规格id；抖店系统生成，商品
  id下唯一", so with ``product_id``), ``product_id``, ``out_warehouse_id`` ("如传入传值表示更新区域库存，
  不传默认更新普通库存"), ``incremental`` ("true-增量更新，同时idempotent_id字段必填；false-全量更新；默认为
  false"), ``idempotent_id`` ("幂等ID，当incremental=true时该参数必传"), ``stock_num`` ("库存值；可以设置
  为0"); in an increment it adds or takes away, and taking away below zero fails ("商品现库存-即将减少
  库存数不能<0，否则会报错 ... 更新库存数失败"). Answers an empty ``data``.
* The gateway (signature, timestamp, token, flow control 60000 ``isp.traffic-limited``) is the
  simulator's own and applies to these methods as to every other.

Choices where the documentation is silent (texts marked ``# sim text``): every catalogue SKU is listed
in every shop (ordinary stock, ``sku_type`` 0) under the same ids the orders carry (``product_id`` = the
catalogue's ``num_iid``, ``id`` = its ``sku_id``, ``code`` = our SKU code) with a seeded starting stock;
an unknown SKU or product is 50002 ``isv.business-failed:12101`` "sku不存在"/"商品不存在"; a
``sku_id`` of another product is 50002 ``...:12102``; an ``idempotent_id`` seen before is a no-op
success when the request is the same and 50002 ``...:12103`` when it differs (an ``idempotent_id`` sent
with a full update is honoured the same way); ``out_warehouse_id`` is refused (no area stock here);
``stock_num`` must be a JSON integer.

Python API (on the simulator): ``shown_stock(sku, shop=None)``, ``set_shown_stock(sku, quantity,
shop=None)`` (a change on the platform's side, e.g. a sale), ``stock_updates`` (``(time.monotonic(), sku,
quantity)`` per accepted write); ``counters`` (the simulator's counters: ``stock_writes`` writes taken,
``stock_throttled`` stock calls answered with flow control, ``stock_repeats`` idempotent repeats), and
those with ``stock`` (shop -> sku -> quantity) in ``state()``. ``shop`` defaults to the first shop.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

METHOD_SKU_DETAIL = "sku.detail"
METHOD_SKU_LIST = "sku.list"
METHOD_SYNC_STOCK = "sku.syncStock"
STOCK_METHODS = frozenset({METHOD_SKU_DETAIL, METHOD_SKU_LIST, METHOD_SYNC_STOCK})


def initial_stock(index: int) -> int:
    """A stable, varied starting quantity for the catalogue entry at ``index`` (sim choice)."""
    return 20 + (index * 37) % 180


class StockRefusal(Exception):
    """A refusal, answered with the platform's error body (``code``, ``msg``, ``sub_code``, ``sub_msg``)."""

    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(f"{code} {msg} {sub_code} {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg

    def body(self, log_id: str) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, "sub_code": self.sub_code, "sub_msg": self.sub_msg,
                "log_id": log_id}


def _missing(name: str, why: str = "") -> StockRefusal:
    return StockRefusal(40002, "缺少必选参数", f"isv.parameter-missing:{name}", why or f"缺少参数{name}")  # sim text


def _invalid(name: str, why: str) -> StockRefusal:
    return StockRefusal(40004, "非法的参数", f"isv.parameter-invalid:{name}", why)  # sim sub text


def _business(code: int, why: str) -> StockRefusal:
    return StockRefusal(50002, "业务处理失败", f"isv.business-failed:{code}", why)


def _id(params: Mapping[str, Any], name: str) -> int | None:
    """An int64 id given as a JSON number or a digit string; None when absent (or 0, the SDKs' empty)."""
    value = params.get(name)
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise _invalid(name, f"{name} 必须为数字")  # sim text
    return int(str(value).strip())


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if value in (None, False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise _invalid(name, f"{name} 必须为布尔值")  # sim text


class DouyinStockSim:
    """The SKU/stock half of the Douyin simulator. Needs ``catalog``, ``tokens`` (access token ->
    shop id), ``_lock`` and the ``_counters`` Counter of the simulator."""

    catalog: list[dict[str, Any]]
    tokens: dict[str, str]
    _lock: threading.RLock
    _counters: Counter[str]

    def _init_stock(self) -> None:
        self._skus: dict[str, dict[str, Any]] = {}  # our SKU code -> the platform's sku record
        for entry in self.catalog:
            values = [p.split(":", 1)[-1] for p in str(entry.get("properties") or "").split(";") if p]
            values += [""] * (3 - len(values))
            self._skus[str(entry["sku"])] = {
                "id": int(entry["sku_id"]), "open_user_id": 0, "out_sku_id": 0,
                "product_id": int(entry["num_iid"]), "product_id_str": str(entry["num_iid"]),
                "spec_detail_name1": values[0], "spec_detail_name2": values[1], "spec_detail_name3": values[2],
                "price": int(round(float(entry["price"]) * 100)), "settlement_price": 0, "create_time": 1735660800,
                "code": str(entry["sku"]), "sku_type": 0, "supplier_id": "", "prehold_stock_num": 0,
                "prom_stock_num": 0, "step_stock_num": 0, "prehold_step_stock_num": 0, "prom_step_stock_num": 0,
                "is_suit": 0, "suit_num": 0, "volume": 0}
        self._by_sku_id: dict[int, str] = {r["id"]: code for code, r in self._skus.items()}
        shops = list(dict.fromkeys(self.tokens.values()))
        self._stock: dict[tuple[str, str], int] = {(shop, code): initial_stock(index) for shop in shops
                                                   for index, code in enumerate(self._skus)}
        self._idempotent: dict[tuple[str, str], str] = {}  # (shop, idempotent_id) -> the request, canonical
        self.stock_updates: list[tuple[float, str, int]] = []

    # -- Python API --------------------------------------------------------------------------

    @property
    def counters(self) -> Counter[str]:
        """The simulator's counters (``stock_writes``, ``stock_throttled``, ``stock_repeats``, ...)."""
        return self._counters

    def _stock_shop(self, shop: str | None) -> str:
        shops = list(dict.fromkeys(self.tokens.values()))
        if shop is None:
            return shops[0]
        if shop not in shops:
            raise KeyError(f"unknown shop {shop!r}")
        return shop

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """The ordinary stock the platform shows for our SKU code ``sku``, None if not listed."""
        with self._lock:
            return self._stock.get((self._stock_shop(shop), sku)) if sku in self._skus else None

    def set_shown_stock(self, sku: str, quantity: int, shop: str | None = None) -> None:
        """A change on the platform's side (a sale, an edit in the back office): not in ``stock_updates``."""
        with self._lock:
            if sku not in self._skus:
                raise KeyError(f"{sku!r} is not listed")
            if quantity < 0:
                raise ValueError("a stock quantity is >= 0")
            self._stock[(self._stock_shop(shop), sku)] = int(quantity)

    def _stock_state(self) -> dict[str, Any]:
        per_shop: dict[str, dict[str, int]] = {}
        for (shop, code), quantity in self._stock.items():
            per_shop.setdefault(shop, {})[code] = quantity
        return {"stock_writes": self._counters["stock_writes"], "stock_throttled": self._counters["stock_throttled"],
                "stock_repeats": self._counters["stock_repeats"], "stock": per_shop}

    def _note_throttled(self, method: str) -> None:
        """Called by the gateway when it answers a call with flow control (60000)."""
        if method in STOCK_METHODS:
            self._counters["stock_throttled"] += 1

    # -- methods -----------------------------------------------------------------------------

    def _stock_handlers(self) -> dict[str, Callable[[dict[str, Any], str], Any]]:
        return {METHOD_SKU_DETAIL: self._sku_detail, METHOD_SKU_LIST: self._sku_list,
                METHOD_SYNC_STOCK: self._sync_stock}

    def _record(self, code: str, shop: str) -> dict[str, Any]:
        return {**self._skus[code], "stock_num": self._stock[(shop, code)]}

    def _locate(self, params: Mapping[str, Any], *, need_product: bool) -> str:
        """Our SKU code of the sku named by ``sku_id`` (+ ``product_id``) or ``code``."""
        sku_id, product_id = _id(params, "sku_id"), _id(params, "product_id")
        code = str(params.get("code") or "").strip()
        if sku_id is not None:
            if need_product and product_id is None:
                raise _missing("product_id", "按sku_id更新库存时product_id不能为空")  # sim text
            found = self._by_sku_id.get(sku_id)
            if found is None or (code and code != found):
                raise _business(12101, f"sku不存在: {sku_id}")  # sim text
        elif code:
            if code not in self._skus:
                raise _business(12101, f"sku不存在: {code}")  # sim text
            found = code
        else:
            raise _missing("sku_id", "sku_id和code不能同时为空")  # sim text
        if product_id is not None and product_id != self._skus[found]["product_id"]:
            raise _business(12102, f"sku {self._skus[found]['id']} 不属于商品 {product_id}")  # sim text
        return found

    def _sku_detail(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        return self._record(self._locate(params, need_product=False), shop)

    def _sku_list(self, params: dict[str, Any], shop: str) -> list[dict[str, Any]]:
        product_id = _id(params, "product_id")
        if product_id is None:
            if params.get("out_product_id") not in (None, "", 0, "0"):
                raise _business(12101, "商品不存在")  # no listing has an out_product_id here; sim text
            raise _missing("product_id", "product_id和out_product_id不能同时为空")  # sim text
        rows = [self._record(code, shop) for code, r in self._skus.items() if r["product_id"] == product_id]
        if not rows:
            raise _business(12101, f"商品不存在: {product_id}")  # sim text
        return rows

    def _sync_stock(self, params: dict[str, Any], shop: str) -> dict[str, Any]:
        incremental = _flag(params, "incremental")
        idempotent_id = str(params.get("idempotent_id") or "").strip()
        if incremental and not idempotent_id:
            raise _missing("idempotent_id", "incremental=true时idempotent_id必传")
        if params.get("out_warehouse_id") not in (None, ""):
            raise _invalid("out_warehouse_id", "该商品未开通区域库存")  # sim text
        if "stock_num" not in params:
            raise _missing("stock_num")
        amount = params["stock_num"]
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _invalid("stock_num", "stock_num 必须为整数")  # sim text
        if not incremental and amount < 0:
            raise _invalid("stock_num", "全量更新时库存值不能小于0")  # sim text
        code = self._locate(params, need_product=True)
        fingerprint = json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        if idempotent_id:
            seen = self._idempotent.get((shop, idempotent_id))
            if seen == fingerprint:
                self._counters["stock_repeats"] += 1
                return {}
            if seen is not None:
                raise _business(12103, f"幂等ID {idempotent_id} 已被使用，请求内容不一致")  # sim text
        current = self._stock[(shop, code)]
        quantity = current + amount if incremental else amount
        if quantity < 0:
            raise _business(31055, "系统错误:更新库存数失败")  # the documented failure of a too-large decrement
        self._stock[(shop, code)] = quantity
        if idempotent_id:
            self._idempotent[(shop, idempotent_id)] = fingerprint
        self._counters["stock_writes"] += 1
        self.stock_updates.append((time.monotonic(), code, quantity))
        return {}
