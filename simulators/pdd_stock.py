"""Stock on the local POP gateway: the 商品 APIs a stock sync calls, written from the POP docs.

Mixed into :class:`simulators.pdd.PddSimulator`; like it, it never imports the hub's code. It does
not import ``simulators.pdd`` either (that module imports this one): the gateway hands over its
refusal (``_bad_param``, POP's ``10000 参数错误`` with a sub message) as a class attribute, so every
answer speaks the gateway's one error format.

Listings: every mall sells every catalogue entry (``simulators.catalog``) under the ids the order
factory of ``simulators.pdd`` gives it: ``goods_id`` = num_iid mod 10^9, ``sku_id`` = sku_id mod 10^10,
SKU 商家编码 ``outer_id`` = our SKU code, goods 商家编码 ``outer_goods_id`` = ``outer_iid``. Each mall
keeps its own quantity per SKU code, starting at ``initial_stock`` (sim choice: orders do not take
stock; ``set_shown_stock`` plays a sale).

Rules enforced, and where each one comes from (POP API pages, as typed in github.com/lywzx/
pdd-node-sdk ``packages/pdd-origin-api/src/shangPin/``):

* ``pdd.goods.list.get`` (商品列表接口): ``outer_id`` (SKU 商家编码), ``is_onsale``, ``goods_name``
  "三选一，优先级is_onsale>outer_id>goods_name" (only the first one given counts), ``outer_goods_id``
  "支持多个，用逗号隔开，最多10个", ``page`` "从 1 开始", ``page_size`` "默认 100，最大100". Answer
  ``goods_list_get_response`` {total_count, goods_list: [{goods_id, goods_name, thumb_url, image_url,
  is_more_sku, goods_quantity, is_onsale, goods_reserve_quantity, sku_list: [{spec, sku_id,
  sku_quantity, outer_id, outer_goods_id, is_sku_onsale, reserve_quantity}]}]}; nothing found:
  ``total_count`` 0 and an empty list.
* ``pdd.goods.skus.get`` (根据skuId查询sku详情): ``goods_id``, ``sku_id`` → ``goods_sku_get_response``
  {goods_id, is_onsale, multi_price / single_price (分), out_sku_sn, quantity, reserve_quantity, sku_id,
  spec: [{parent_spec_id, parent_spec_name, spec_id, spec_name}]}.
* ``pdd.goods.quantity.update`` (商品库存更新接口): ``goods_id`` (必填), ``quantity`` (必填; "当全量更新库存
  时，quantity必须为大于等于0的正整数；当增量更新库存时，quantity为整数，可小于等于0。若增量更新时传入的库存为负
  数，则负数与实际库存之和不能小于0"), ``sku_id`` / ``outer_id`` ("sku_id和outer_id必填一个，优先使用sku_id"),
  ``update_type`` ("1为全量更新，2为增量更新。如果不填，默认为全量更新"). Answer
  ``goods_quantity_update_response`` {is_success: true}.

Where the documentation is silent (``# sim``): every refusal is ``10000 参数错误`` with a sub message
naming the problem ("商品不存在", "sku不存在..."), goods are listed by ``goods_id``, all goods are on
sale with nothing reserved (预扣库存 0), prices in 分 are the catalogue's, single price = group price,
spec ids are CRC32 of the names.

Python API (on the simulator): ``shown_stock(sku, shop=None)``, ``set_shown_stock(sku, quantity,
shop=None)``, ``stock_updates`` -- ``(time.monotonic(), sku, quantity)`` per accepted write --,
``counters`` (also as attributes): ``stock_writes`` writes taken, ``stock_throttled`` writes refused
with 70031; and ``stock``/``stock_writes``/``stock_throttled``/``stock_updates`` (count) in ``state()``.
"""

from __future__ import annotations

import copy
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

GOODS_LIST_GET = "pdd.goods.list.get"
SKUS_GET = "pdd.goods.skus.get"
QUANTITY_UPDATE = "pdd.goods.quantity.update"
STOCK_RESPONSE_KEYS = {
    GOODS_LIST_GET: "goods_list_get_response", SKUS_GET: "goods_sku_get_response",
    QUANTITY_UPDATE: "goods_quantity_update_response",
}
STOCK_APIS = frozenset(STOCK_RESPONSE_KEYS)
STOCK_WRITE_APIS = frozenset({QUANTITY_UPDATE})

FULL, DELTA = 1, 2  # update_type: 1 全量更新, 2 增量更新
MAX_PAGE_SIZE = 100  # "默认 100，最大100"
MAX_OUTER_GOODS_IDS = 10  # "支持多个，用逗号隔开，最多10个"
THROTTLE_CODE = 70031  # 调用过于频繁，请调整调用频率


@dataclass
class Goods:
    """One POP goods (商品) and its SKUs, from the catalogue rows that share a ``num_iid``."""

    goods_id: int
    name: str
    outer_goods_id: str
    skus: list[GoodsSku]


@dataclass
class GoodsSku:
    sku: str  # our SKU code = the SKU's 商家编码 (outer_id)
    sku_id: int
    spec: list[tuple[str, str]]  # (规格项, 规格值), from the catalogue's "颜色分类:白色;尺码:M"
    price_fen: int


class PddStock:
    """The stock APIs of the POP gateway; ``_init_stock`` in the simulator's ``__init__``."""

    if TYPE_CHECKING:  # provided by PddSimulator
        _lock: threading.RLock
        catalog: list[dict[str, Any]]
        tokens: dict[str, str]

    _bad_param: Callable[[str, str], Exception]

    def _init_stock(self, initial: int | Mapping[str, int]) -> None:
        goods: dict[int, Goods] = {}
        for entry in self.catalog:
            if not entry.get("sku_id"):
                continue  # POP goods always have SKUs; the order factory needs one too
            goods_id = int(entry["num_iid"]) % 10**9
            spec = [tuple(pair.split(":", 1)) for pair in str(entry.get("properties") or "").split(";") if ":" in pair]
            row = goods.setdefault(goods_id, Goods(goods_id, str(entry.get("item_title") or entry.get("title") or ""),
                                                   str(entry.get("outer_iid") or ""), []))
            row.skus.append(GoodsSku(sku=str(entry["sku"]), sku_id=int(entry["sku_id"]) % 10**10,
                                     spec=[(str(a), str(b)) for a, b in spec],
                                     price_fen=int(Decimal(str(entry.get("price") or "0")) * 100)))
        self._goods = dict(sorted(goods.items()))
        codes = [sku.sku for g in self._goods.values() for sku in g.skus]
        self._stock: dict[str, dict[str, int]] = {shop: {code: _start(initial, code) for code in codes}
                                                  for shop in dict.fromkeys(self.tokens.values())}
        self.stock_updates: list[tuple[float, str, int]] = []
        self.counters: Counter[str] = Counter({"stock_writes": 0, "stock_throttled": 0})

    def _stock_handlers(self) -> dict[str, Callable[[dict[str, str], str], dict[str, Any]]]:
        return {GOODS_LIST_GET: self._goods_list, SKUS_GET: self._skus_get, QUANTITY_UPDATE: self._quantity_update}

    # -- Python API -------------------------------------------------------------------------------

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """The quantity the mall (default: the first) shows for SKU code ``sku``; None: not listed."""
        with self._lock:
            return self._stock[self._stock_shop(shop)].get(sku)

    def set_shown_stock(self, sku: str, quantity: int, shop: str | None = None) -> None:
        """Change what the mall shows without an API write (a sale, or the merchant editing it in
        the back office): not counted, not in ``stock_updates``."""
        if quantity < 0:
            raise ValueError("quantity must be >= 0")
        with self._lock:
            stock = self._stock[self._stock_shop(shop)]
            if sku not in stock:
                raise KeyError(f"{sku!r} is not listed")
            stock[sku] = int(quantity)

    def _stock_shop(self, shop: str | None) -> str:
        if shop is None:
            return next(iter(self._stock))
        if shop in self.tokens:  # an access_token names its mall
            return self.tokens[shop]
        if shop not in self._stock:
            raise KeyError(f"unknown shop {shop!r}")
        return shop

    @property
    def stock_writes(self) -> int:
        """Stock writes taken (``counters["stock_writes"]``)."""
        return self.counters["stock_writes"]

    @property
    def stock_throttled(self) -> int:
        """Stock writes refused by throttling (``counters["stock_throttled"]``)."""
        return self.counters["stock_throttled"]

    def _stock_state(self) -> dict[str, Any]:
        return {"stock": copy.deepcopy(self._stock), "stock_writes": self.counters["stock_writes"],
                "stock_throttled": self.counters["stock_throttled"], "stock_updates": len(self.stock_updates)}

    def _count_stock_throttle(self, params: Mapping[str, str], code: int) -> None:
        """Called by the gateway for every refused request: a stock write refused with 70031."""
        if code == THROTTLE_CODE and params.get("type") in STOCK_WRITE_APIS:
            self.counters["stock_throttled"] += 1

    # -- pdd.goods.list.get -----------------------------------------------------------------------

    def _goods_list(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        page = self._int(params, "page", 1, low=1)
        size = self._int(params, "page_size", MAX_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        chosen = list(self._goods.values())
        onsale, outer_id, name = (params.get(k, "").strip() for k in ("is_onsale", "outer_id", "goods_name"))
        if onsale:  # "三选一，优先级is_onsale>outer_id>goods_name"
            flag = self._int(params, "is_onsale", 1, low=0, high=1)
            chosen = chosen if flag == 1 else []  # every simulated goods is on sale
        elif outer_id:
            chosen = [g for g in chosen if any(s.sku == outer_id for s in g.skus)]
        elif name:
            chosen = [g for g in chosen if name in g.name]
        outer_goods = [c.strip() for c in params.get("outer_goods_id", "").split(",") if c.strip()]
        if len(outer_goods) > MAX_OUTER_GOODS_IDS:
            raise self._bad_param("outer_goods_id", f"outer_goods_id 最多{MAX_OUTER_GOODS_IDS}个")  # sim text
        if outer_goods:
            chosen = [g for g in chosen if g.outer_goods_id in outer_goods]
        offset = (page - 1) * size
        return {"total_count": len(chosen),
                "goods_list": [self._render_goods(shop, g) for g in chosen[offset:offset + size]]}

    def _render_goods(self, shop: str, goods: Goods) -> dict[str, Any]:
        stock = self._stock[shop]
        return {
            "goods_id": goods.goods_id, "goods_name": goods.name, "thumb_url": "", "image_url": "",
            "is_more_sku": 1 if len(goods.skus) > 1 else 0, "is_onsale": 1,
            "goods_quantity": sum(stock[s.sku] for s in goods.skus), "goods_reserve_quantity": 0,
            "sku_list": [{"spec": ",".join(value for _, value in s.spec), "sku_id": s.sku_id,
                          "sku_quantity": stock[s.sku], "outer_id": s.sku, "outer_goods_id": goods.outer_goods_id,
                          "is_sku_onsale": 1, "reserve_quantity": 0} for s in goods.skus],
        }

    # -- pdd.goods.skus.get -----------------------------------------------------------------------

    def _skus_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        goods = self._find_goods(params)
        sku_id = self._int(params, "sku_id", None, low=1)
        item = next((s for s in goods.skus if s.sku_id == sku_id), None)
        if item is None:
            raise self._bad_param("sku_id", "sku不存在或不属于该商品")  # sim text
        return {
            "goods_id": goods.goods_id, "sku_id": item.sku_id, "is_onsale": 1, "out_sku_sn": item.sku,
            "quantity": self._stock[shop][item.sku], "reserve_quantity": 0,
            "multi_price": item.price_fen, "single_price": item.price_fen,
            "spec": [{"parent_spec_id": _crc(parent), "parent_spec_name": parent, "spec_id": _crc(f"{parent}:{value}"),
                      "spec_name": value} for parent, value in item.spec],
        }

    # -- pdd.goods.quantity.update ----------------------------------------------------------------

    def _quantity_update(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        goods = self._find_goods(params)
        quantity = self._int(params, "quantity", None, low=None)
        kind = self._int(params, "update_type", FULL, low=FULL, high=DELTA)
        sku_text, outer_id = params.get("sku_id", "").strip(), params.get("outer_id", "").strip()
        if sku_text:  # "优先使用sku_id"
            sku_id = self._int(params, "sku_id", None, low=1)
            item = next((s for s in goods.skus if s.sku_id == sku_id), None)
            if item is None:
                raise self._bad_param("sku_id", "sku不存在或不属于该商品")  # sim text
        elif outer_id:
            item = next((s for s in goods.skus if s.sku == outer_id), None)
            if item is None:
                raise self._bad_param("outer_id", "商家编码对应的sku不存在")  # sim text
        else:
            raise self._bad_param("sku_id", "sku_id和outer_id必填一个")
        current = self._stock[shop][item.sku]
        if kind == FULL and quantity < 0:
            raise self._bad_param("quantity", "全量更新库存时，quantity必须为大于等于0的正整数")
        new = quantity if kind == FULL else current + quantity
        if new < 0:
            raise self._bad_param("quantity", "增量更新时负数与实际库存之和不能小于0")
        self._stock[shop][item.sku] = new
        self.stock_updates.append((time.monotonic(), item.sku, new))
        self.counters["stock_writes"] += 1
        return {"is_success": True}

    # -- parameters -------------------------------------------------------------------------------

    def _find_goods(self, params: Mapping[str, str]) -> Goods:
        goods = self._goods.get(self._int(params, "goods_id", None, low=1))
        if goods is None:
            raise self._bad_param("goods_id", "商品不存在")  # sim text
        return goods

    def _int(self, params: Mapping[str, str], name: str, default: int | None, *, low: int | None,
             high: int | None = None) -> int:
        text = params.get(name, "").strip()
        if not text:
            if default is None:
                raise self._bad_param(name, f"缺少必填参数 {name}")  # sim text
            return default
        try:
            value = int(text)
        except ValueError:
            raise self._bad_param(name, f"{name} 必须是整数") from None  # sim text
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._bad_param(name, f"{name} 超出范围")  # sim text
        return value


def _start(initial: int | Mapping[str, int], code: str) -> int:
    value = initial.get(code, 0) if isinstance(initial, Mapping) else initial
    if int(value) < 0:
        raise ValueError(f"initial stock of {code} must be >= 0")
    return int(value)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) % 10**6
