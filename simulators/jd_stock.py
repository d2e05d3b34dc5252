"""The JOS stock APIs of the JD simulator (mixed into :class:`simulators.jd.JdSimulator`), from JD's docs.

Like the rest of the simulator it imports nothing of the hub: it is a second reading of the
documentation. What is served, and where each rule comes from (open.jd.com pages by ``apiId``, with
the request/response fields of JD's SDKs: Java ``com.jd.open.api.sdk.request.ware.*``, the PHP/Python
request classes, the XiBao/jos Go models):

* ``jingdong.sku.read.searchSkuList`` (apiId=1227, "SKU搜索服务"): ``wareId``, ``skuId``, ``outId``
  ("外部ID"; lists, a comma-separated text is taken too), ``skuStatuValue`` ("1:上架 2:下架 4:删除 默认
  查询上架下架商品"), ``pageNo`` ("页码 从1开始"), ``page_size``, ``field`` ("自定义返回字段"); answer
  ``page`` = ``{data: [Sku], pageNo, pageSize, totalItem}``, each ``Sku`` with ``wareId``, ``skuId``,
  ``outerId``, ``status``, ``stockNum`` ("总库存数"), ``skuName``, ``wareTitle``, ``jdPrice``. A code
  nobody sells is an empty page, not an error.
* ``jingdong.stock.write.updateSkuStock`` (apiId=1224, "设置sku库存"): ``skuId`` ("sku编号", required),
  ``stockNum`` ("库存数量", required), ``storeId`` ("仓库编号", optional); sets (not adds) the stock;
  answer ``{success: true}``.
* ``jingdong.stock.read.findSkuStock`` (apiId=1239, "获取sku库存信息"): ``skuId`` (required), ``field``;
  answer ``skuStocks: [{skuId, stockNum, storeId}]``.
* The gateway rules (signature, timestamp, token, the per-app call limit answered with code 2 "App Call
  Limited") are the simulator's own and apply to these methods as to every other.

Choices where the pages are silent (texts marked ``# sim text``): every catalogue SKU is on sale
(status 1) in every shop, with a seeded starting stock; business refusals of these methods are
``error_response`` with code ``SIM_REFUSAL_CODE`` and a Chinese/English reason ("...不存在" when the SKU
is unknown); ``stockNum`` must be a whole number >= 0 (a number or a digit string, as the SDKs send
``Long``); a ``storeId`` other than 0 is refused (the demo merchant has no store stock); ``outId``
matches the whole code; ``page_size`` defaults to 20 and is at most 100.

Python API (on the simulator): ``shown_stock(sku, shop=None)`` (our SKU code -> the quantity JD shows,
None when not listed), ``set_shown_stock(sku, quantity, shop=None)`` (a change made on JD's side, e.g. a
sale), ``stock_updates`` (``(time.monotonic(), sku, quantity)`` per accepted write), ``counters``
(``stock_writes``: writes taken, ``stock_throttled``: stock calls answered "App Call Limited"); state
keys ``stock_writes``, ``stock_throttled`` and ``stock`` (shop -> sku -> quantity). ``shop`` defaults to the
first shop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

METHOD_SKU_SEARCH = "jingdong.sku.read.searchSkuList"
METHOD_STOCK_WRITE = "jingdong.stock.write.updateSkuStock"
METHOD_STOCK_READ = "jingdong.stock.read.findSkuStock"
STOCK_METHODS = frozenset({METHOD_SKU_SEARCH, METHOD_STOCK_WRITE, METHOD_STOCK_READ})

SKU_ON_SALE = 1
SKU_STATUSES = {"1", "2", "4"}
SIM_REFUSAL_CODE = "1000"  # sim code: JOS publishes no business codes for the ware services
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


def initial_stock(index: int) -> int:
    """A stable, varied starting quantity for the catalogue entry at ``index`` (sim choice)."""
    return 20 + (index * 37) % 180


class StockRefusal(Exception):
    """A refusal of a stock method, answered like a gateway error (``error_response``, HTTP 200)."""

    def __init__(self, zh: str, en: str, code: str = SIM_REFUSAL_CODE) -> None:
        super().__init__(f"{code} {en}")
        self.code, self.zh, self.en = code, zh, en

    def body(self) -> dict[str, Any]:
        return {"error_response": {"code": self.code, "zh_desc": self.zh, "en_desc": self.en}}


def _not_found(sku_id: str) -> StockRefusal:
    return StockRefusal(f"skuId:{sku_id} 不存在", f"sku {sku_id} not exist")  # sim text


def _str_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _whole(value: Any, name: str) -> int:
    """A JSON number or digit string that is a whole number (``Long`` in the SDKs)."""
    if isinstance(value, bool) or value in (None, ""):
        raise StockRefusal(f"{name}不能为空且必须为整数", f"invalid {name}")  # sim text
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    raise StockRefusal(f"{name}必须为整数", f"invalid {name}")  # sim text


class JdStockSim:
    """The stock half of the JD simulator. Needs ``items`` (JD item dicts with ``skuId``, ``wareId``,
    ``outerSkuId``), ``vender_ids`` (the shops) and ``_lock`` from the simulator."""

    items: list[dict[str, Any]]
    vender_ids: dict[str, str]
    _lock: threading.RLock

    def _init_stock(self) -> None:
        self._sku_index: dict[str, dict[str, Any]] = {str(i["skuId"]): i for i in self.items}
        self._by_code: dict[str, str] = {str(i["outerSkuId"]): str(i["skuId"]) for i in self.items}
        self._stock: dict[tuple[str, str], int] = {(shop, str(item["skuId"])): initial_stock(index)
                                                   for shop in self.vender_ids
                                                   for index, item in enumerate(self.items)}
        self.counters: Counter[str] = Counter({"stock_writes": 0, "stock_throttled": 0})
        self.stock_updates: list[tuple[float, str, int]] = []

    # -- Python API --------------------------------------------------------------------------

    def _stock_shop(self, shop: str | None) -> str:
        if shop is None:
            return next(iter(self.vender_ids))
        if shop not in self.vender_ids:
            raise KeyError(f"unknown shop {shop!r}")
        return shop

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """The quantity JD shows for our SKU code ``sku`` (its ``outerId``), None if not listed."""
        with self._lock:
            sku_id = self._by_code.get(sku)
            return None if sku_id is None else self._stock[(self._stock_shop(shop), sku_id)]

    def set_shown_stock(self, sku: str, quantity: int, shop: str | None = None) -> None:
        """A change made on JD's side (a sale, a manual edit): not an API write, not in ``stock_updates``."""
        with self._lock:
            sku_id = self._by_code.get(sku)
            if sku_id is None:
                raise KeyError(f"{sku!r} is not listed")
            if quantity < 0:
                raise ValueError("a stock quantity is >= 0")
            self._stock[(self._stock_shop(shop), sku_id)] = int(quantity)

    def _stock_state(self) -> dict[str, Any]:
        codes = {sku_id: code for code, sku_id in self._by_code.items()}
        per_shop: dict[str, dict[str, int]] = {}
        for (shop, sku_id), quantity in self._stock.items():
            per_shop.setdefault(shop, {})[codes[sku_id]] = quantity
        return {"stock_writes": self.counters["stock_writes"],
                "stock_throttled": self.counters["stock_throttled"], "stock": per_shop}

    def _note_throttled(self, method: str) -> None:
        """Called by the gateway when it answers a call with "App Call Limited"."""
        if method in STOCK_METHODS:
            self.counters["stock_throttled"] += 1

    # -- methods -----------------------------------------------------------------------------

    def _stock_handlers(self) -> dict[str, Callable[[dict[str, Any], str], dict[str, Any]]]:
        return {METHOD_SKU_SEARCH: self._search_sku_list, METHOD_STOCK_WRITE: self._update_sku_stock,
                METHOD_STOCK_READ: self._find_sku_stock}

    def _sku_row(self, item: Mapping[str, Any], shop: str) -> dict[str, Any]:
        return {"wareId": int(item["wareId"]), "skuId": int(item["skuId"]), "outerId": str(item["outerSkuId"]),
                "status": SKU_ON_SALE, "stockNum": self._stock[(shop, str(item["skuId"]))],
                "skuName": item.get("skuName", ""), "wareTitle": item.get("skuName", ""),
                "jdPrice": item.get("jdPrice", "")}

    def _search_sku_list(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        out_ids, sku_ids, ware_ids = _str_list(p.get("outId")), _str_list(p.get("skuId")), _str_list(p.get("wareId"))
        statuses = _str_list(p.get("skuStatuValue")) or ["1", "2"]
        if not set(statuses) <= SKU_STATUSES:
            raise StockRefusal("skuStatuValue取值为1、2、4", "invalid skuStatuValue")  # sim text
        page = _whole(p.get("pageNo", 1), "pageNo")
        size = _whole(p.get("page_size", DEFAULT_PAGE_SIZE), "page_size")
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise StockRefusal(f"pageNo从1开始，page_size在1到{MAX_PAGE_SIZE}之间", "invalid page")  # sim text
        fields = {f.strip() for f in str(p.get("field") or "").split(",") if f.strip()}
        rows = [self._sku_row(item, shop) for item in self.items
                if (not out_ids or str(item["outerSkuId"]) in out_ids)
                and (not sku_ids or str(item["skuId"]) in sku_ids)
                and (not ware_ids or str(item["wareId"]) in ware_ids)
                and str(SKU_ON_SALE) in statuses]
        chosen = rows[(page - 1) * size:page * size]
        if fields:
            keep = fields | {"skuId", "wareId"}
            chosen = [{k: v for k, v in row.items() if k in keep} for row in chosen]
        return {"page": {"data": chosen, "pageNo": page, "pageSize": size, "totalItem": len(rows)}}

    def _known_sku(self, p: Mapping[str, Any]) -> str:
        sku_id = str(_whole(p.get("skuId"), "skuId"))
        if sku_id not in self._sku_index:
            raise _not_found(sku_id)
        return sku_id

    def _find_sku_stock(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        sku_id = self._known_sku(p)
        return {"skuStocks": [{"skuId": int(sku_id), "stockNum": self._stock[(shop, sku_id)], "storeId": 0}]}

    def _update_sku_stock(self, p: dict[str, Any], shop: str) -> dict[str, Any]:
        sku_id = self._known_sku(p)
        quantity = _whole(p.get("stockNum"), "stockNum")
        if quantity < 0:
            raise StockRefusal("库存数量不能小于0", "stockNum must not be negative")  # sim text
        if p.get("storeId") not in (None, "", 0, "0"):
            raise StockRefusal(f"仓库编号{p.get('storeId')}不存在", "store not exist")  # sim text
        self._stock[(shop, sku_id)] = quantity
        self.counters["stock_writes"] += 1
        self.stock_updates.append((time.monotonic(), str(self._sku_index[sku_id]["outerSkuId"]), quantity))
        return {"success": True}
