"""Stock on the local TOP gateway: the 商品 APIs a stock sync calls, written from the TOP docs.

Mixed into :class:`simulators.taobao.TaobaoSimulator`; like it, it never imports the hub's code. It
does not import ``simulators.taobao`` either (that module imports this one): the gateway hands over
its error helpers (``_missing_argument``, ``_invalid_argument``, ``_remote_error``) and its time
format as class attributes, so every answer speaks the gateway's one error format.

Listings: every shop sells every catalogue entry (``simulators.catalog``: ``num_iid``, ``sku_id``,
商家编码 ``sku``), as the order factory does; an entry without ``sku_id`` is a listing without SKUs
whose item carries the 商家编码. Each shop keeps its own quantity per SKU code, starting at
``initial_stock`` (sim choice: orders do not take stock; ``set_shown_stock`` plays a sale).

Rules enforced, and where each one comes from (TOP pages as mirrored at open.alitrip.com /
developer.alibaba.com ``docs/api.htm``):

* ``taobao.skus.custom.get`` (apiId=164): ``fields`` and ``outer_id`` 必须; "如果一个outer_id对应多个Sku
  会返回所有符合条件的sku"; the seller is the session's; answer ``skus`` {``sku``: [Sku]} limited to
  ``fields`` (Sku: sku_id, iid -- "iid标签里是num_iid的值" --, num_iid, quantity, price, outer_id,
  created, modified, status ``normal``); an outer id no SKU has is the documented error
  ``isv.item-skus-custom-get-service-error:ITEM_NOT_FOUND`` 没有找到宝贝.
* ``taobao.items.custom.get``: ``fields`` and ``outer_id`` 必须, "商品的外部商品ID，支持批量，最多不超过40个";
  answer ``items`` {``item``: [Item]} (num_iid, title, num 商品数量, outer_id, approve_status, modified,
  ``sku`` → ``skus``); nothing found: no ``items`` key (TOP leaves out empty values).
* ``taobao.item.sku.get``: ``fields`` and ``sku_id`` 必须, ``num_iid`` 可选 → ``sku``.
* ``taobao.item.quantity.update``: ``num_iid`` 必须; ``sku_id`` "如果不填默认修改宝贝的库存，如果填上则修改该
  SKU的库存"; ``outer_id`` "如果填了则按照商家编码搜索出对应的SKU并修改库存。当sku_id和本字段都填写时以sku_id为准";
  ``quantity`` 必须, "当全量更新库存时，quantity必须为大于等于0的正整数；当增量更新库存时，quantity为整数，可小于
  等于0。若增量更新时传入的库存为负数，则负数与实际库存之和不能小于0"; ``type`` "1为全量更新，2为增量更新。如果不
  填，默认为全量更新". Answer ``item`` with "iid、numIid、num和modified，skus中每个sku的skuId、quantity和
  modified". Refusals use the sub codes integrators handle for this call:
  ``isv.item-not-exist:invalid-numIid-or-iid`` (商品id对应的商品不存在), ``isv.invalid-parameter:sku-properties``
  (the SKU is not found on the item), ``isv.invalid-parameter:quantity`` (库存数量不能为负数) and
  ``isv.item-quantity-item-update-service-error`` (item stock of a listing with SKUs: 商品库存更新失败,
  可能含有销售属性). Missing / malformed parameters: 40 / 41 as everywhere on the gateway.

Where the documentation is silent (``# sim``): sub messages; an unknown SKU on item.sku.get is
``isv.item-sku-get-service-error:ITEM_NOT_FOUND`` (named after its documented sibling above); SKUs
are listed in catalogue order; ``created`` is the simulator's start.

Python API (on the simulator): ``shown_stock(sku, shop=None)``, ``set_shown_stock(sku, quantity,
shop=None)``, ``stock_updates`` -- ``(time.monotonic(), sku, quantity)`` per accepted write --,
``counters`` (also as attributes): ``stock_writes`` writes taken, ``stock_throttled`` writes refused
with code 7; and ``stock``/``stock_writes``/``stock_throttled``/``stock_updates`` (count) in ``state()``.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

METHOD_SKUS_CUSTOM_GET = "taobao.skus.custom.get"
METHOD_ITEMS_CUSTOM_GET = "taobao.items.custom.get"
METHOD_SKU_GET = "taobao.item.sku.get"
METHOD_QUANTITY_UPDATE = "taobao.item.quantity.update"
STOCK_WRITE_METHODS = frozenset({METHOD_QUANTITY_UPDATE})

FULL, DELTA = 1, 2  # type: 1 全量更新, 2 增量更新
MAX_OUTER_IDS = 40  # "支持批量，最多不超过40个"
THROTTLE_CODE = 7  # App Call Limited
SKU_FIELDS = frozenset({"sku_id", "iid", "num_iid", "properties_name", "quantity", "price", "outer_id", "created",
                        "modified", "status"})
ITEM_FIELDS = frozenset({"num_iid", "iid", "title", "num", "price", "outer_id", "approve_status", "modified"})


@dataclass
class Listing:
    """One sellable unit: a SKU of an item, or an item without SKUs (``sku_id`` None)."""

    sku: str  # our SKU code = the 商家编码 (outer_id) of the SKU, or of the item without SKUs
    num_iid: int
    sku_id: int | None
    title: str
    price: str
    properties: str
    outer_iid: str  # the item's 商家编码 when it has SKUs


class TaobaoStock:
    """The stock APIs of the TOP gateway; ``_init_stock`` in the simulator's ``__init__``."""

    if TYPE_CHECKING:  # provided by TaobaoSimulator
        _lock: threading.RLock
        catalog: list[dict[str, Any]]
        sessions: dict[str, str]

        def now(self) -> datetime: ...

    _missing_argument: Callable[[str], Exception]
    _invalid_argument: Callable[[str, str], Exception]
    _remote_error: Callable[[str, str], Exception]
    _format_time: Callable[[datetime], str]

    def _init_stock(self, initial: int | Mapping[str, int]) -> None:
        self._listings: list[Listing] = [
            Listing(sku=str(e["sku"]), num_iid=int(e["num_iid"]), sku_id=int(e["sku_id"]) if e.get("sku_id") else None,
                    title=str(e.get("item_title") or e.get("title") or ""), price=str(e.get("price") or "0.00"),
                    properties=str(e.get("properties") or ""), outer_iid=str(e.get("outer_iid") or ""))
            for e in self.catalog
        ]
        self._by_code = {listing.sku: listing for listing in self._listings}
        shops = list(dict.fromkeys(self.sessions.values()))
        self._stock: dict[str, dict[str, int]] = {shop: {code: _start(initial, code) for code in self._by_code}
                                                  for shop in shops}
        started = self.now()
        self._stock_created = started
        self._stock_modified: dict[tuple[str, str], datetime] = {}
        self.stock_updates: list[tuple[float, str, int]] = []
        self.counters: Counter[str] = Counter({"stock_writes": 0, "stock_throttled": 0})

    def _stock_handlers(self) -> dict[str, Callable[[dict[str, str], str], dict[str, Any]]]:
        return {
            METHOD_SKUS_CUSTOM_GET: self._skus_custom_get,
            METHOD_ITEMS_CUSTOM_GET: self._items_custom_get,
            METHOD_SKU_GET: self._item_sku_get,
            METHOD_QUANTITY_UPDATE: self._quantity_update,
        }

    # -- Python API -------------------------------------------------------------------------------

    def shown_stock(self, sku: str, shop: str | None = None) -> int | None:
        """The quantity the shop (default: the first) shows for SKU code ``sku``; None: not listed."""
        with self._lock:
            return self._stock[self._stock_shop(shop)].get(sku)

    def set_shown_stock(self, sku: str, quantity: int, shop: str | None = None) -> None:
        """Change what the shop shows without an API write (a sale, or the seller editing it in the
        seller centre): not counted, not in ``stock_updates``."""
        if quantity < 0:
            raise ValueError("quantity must be >= 0")
        with self._lock:
            if sku not in self._by_code:
                raise KeyError(f"{sku!r} is not in the catalogue")
            shop = self._stock_shop(shop)
            self._stock[shop][sku] = int(quantity)
            self._stock_modified[(shop, sku)] = self.now()

    def _stock_shop(self, shop: str | None) -> str:
        if shop is None:
            return next(iter(self._stock))
        if shop in self.sessions:  # a session names its shop
            return self.sessions[shop]
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
        """Called by the gateway for every refused request: a stock write refused with code 7."""
        if code == THROTTLE_CODE and params.get("method") in STOCK_WRITE_METHODS:
            self.counters["stock_throttled"] += 1

    # -- rendering --------------------------------------------------------------------------------

    def _modified(self, shop: str, listing: Listing) -> str:
        return self._format_time(self._stock_modified.get((shop, listing.sku), self._stock_created))

    def _sku(self, shop: str, listing: Listing, fields: set[str]) -> dict[str, Any]:
        full = {"sku_id": listing.sku_id, "iid": str(listing.num_iid), "num_iid": listing.num_iid,
                "properties_name": listing.properties, "quantity": self._stock[shop][listing.sku],
                "price": listing.price, "outer_id": listing.sku, "created": self._format_time(self._stock_created),
                "modified": self._modified(shop, listing), "status": "normal"}
        return {k: v for k, v in full.items() if k in fields and k in SKU_FIELDS and v not in ("", None)}

    def _item(self, shop: str, num_iid: int, fields: set[str]) -> dict[str, Any]:
        rows = [listing for listing in self._listings if listing.num_iid == num_iid]
        with_skus = [listing for listing in rows if listing.sku_id is not None]
        first = rows[0]
        changed = max((self._modified(shop, listing) for listing in rows), default="")
        full: dict[str, Any] = {
            "num_iid": num_iid, "iid": str(num_iid), "title": first.title, "price": first.price,
            "num": sum(self._stock[shop][listing.sku] for listing in rows), "approve_status": "onsale",
            "outer_id": first.outer_iid if with_skus else first.sku, "modified": changed,
        }
        item = {k: v for k, v in full.items() if k in fields and k in ITEM_FIELDS and v not in ("", None)}
        if with_skus and ("sku" in fields or "skus" in fields):
            item["skus"] = {"sku": [self._sku(shop, listing, SKU_FIELDS) for listing in with_skus]}
        return item

    # -- taobao.skus.custom.get / taobao.items.custom.get / taobao.item.sku.get ------------------

    def _skus_custom_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        fields = _fields(self._required(params, "fields"))
        code = self._required(params, "outer_id").strip()
        found = [listing for listing in self._listings if listing.sku == code and listing.sku_id is not None]
        if not found:
            raise self._remote_error("isv.item-skus-custom-get-service-error:ITEM_NOT_FOUND", "没有找到宝贝")
        return {"skus": {"sku": [self._sku(shop, listing, fields) for listing in found]}}

    def _items_custom_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        fields = _fields(self._required(params, "fields"))
        codes = [c.strip() for c in self._required(params, "outer_id").split(",") if c.strip()]
        if len(codes) > MAX_OUTER_IDS:
            raise self._invalid_argument("outer_id", f"at most {MAX_OUTER_IDS} outer ids")  # sim text
        wanted = set(codes)
        items = []
        for num_iid in dict.fromkeys(listing.num_iid for listing in self._listings):
            rows = [listing for listing in self._listings if listing.num_iid == num_iid]
            outer = rows[0].outer_iid if any(r.sku_id is not None for r in rows) else rows[0].sku
            if outer in wanted:
                items.append(self._item(shop, num_iid, fields))
        return {"items": {"item": items}} if items else {}

    def _item_sku_get(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        fields = _fields(self._required(params, "fields"))
        sku_id = self._number(params, "sku_id", required=True)
        num_iid = self._number(params, "num_iid", required=False)
        listing = next((x for x in self._listings if x.sku_id == sku_id
                        and (num_iid is None or x.num_iid == num_iid)), None)
        if listing is None:
            raise self._remote_error("isv.item-sku-get-service-error:ITEM_NOT_FOUND", "没有找到该SKU")  # sim code
        return {"sku": self._sku(shop, listing, fields)}

    # -- taobao.item.quantity.update ----------------------------------------------------------------

    def _quantity_update(self, params: dict[str, str], shop: str) -> dict[str, Any]:
        num_iid = self._number(params, "num_iid", required=True)
        sku_id = self._number(params, "sku_id", required=False)
        quantity_text = self._required(params, "quantity").strip()
        try:
            quantity = int(quantity_text)
        except ValueError:
            raise self._invalid_argument("quantity", "quantity must be an integer") from None  # sim text
        kind_text = params.get("type", "").strip() or str(FULL)
        if kind_text not in (str(FULL), str(DELTA)):
            raise self._invalid_argument("type", "type: 1 全量更新 or 2 增量更新")  # sim text
        kind = int(kind_text)
        rows = [listing for listing in self._listings if listing.num_iid == num_iid]
        if not rows:
            raise self._remote_error("isv.item-not-exist:invalid-numIid-or-iid", "商品id对应的商品不存在")
        listing = self._target(rows, sku_id, params.get("outer_id", "").strip())
        current = self._stock[shop][listing.sku]
        if kind == FULL and quantity < 0:
            raise self._remote_error("isv.invalid-parameter:quantity",
                                     "全量更新库存时，quantity必须为大于等于0的正整数")  # sim text
        new = quantity if kind == FULL else current + quantity
        if new < 0:
            raise self._remote_error("isv.invalid-parameter:quantity", "增量更新后库存不能小于0")  # sim text
        self._stock[shop][listing.sku] = new
        self._stock_modified[(shop, listing.sku)] = self.now()
        self.stock_updates.append((time.monotonic(), listing.sku, new))
        self.counters["stock_writes"] += 1
        item = self._item(shop, num_iid, {"num_iid", "iid", "num", "modified"})
        item_rows = [x for x in rows if x.sku_id is not None]
        if item_rows:
            item["skus"] = {"sku": [self._sku(shop, x, {"sku_id", "quantity", "modified"}) for x in item_rows]}
        return {"item": item}

    def _target(self, rows: list[Listing], sku_id: int | None, outer_id: str) -> Listing:
        """The SKU a write names (sku_id first, then outer_id), or the item without SKUs."""
        with_skus = [listing for listing in rows if listing.sku_id is not None]
        if sku_id is not None:
            chosen = next((listing for listing in with_skus if listing.sku_id == sku_id), None)
        elif outer_id:
            chosen = next((listing for listing in with_skus if listing.sku == outer_id), None)
        elif with_skus:
            raise self._remote_error("isv.item-quantity-item-update-service-error",
                                     "商品库存更新失败，该商品含有销售属性，请指定sku_id")  # sim text
        else:
            chosen = rows[0]
        if chosen is None:
            raise self._remote_error("isv.invalid-parameter:sku-properties",
                                     "传入的sku找不到对应的sku记录")  # sim text
        return chosen

    # -- parameters -------------------------------------------------------------------------------

    def _required(self, params: Mapping[str, str], name: str) -> str:
        value = params.get(name, "")
        if not value.strip():
            raise self._missing_argument(name)
        return value

    def _number(self, params: Mapping[str, str], name: str, *, required: bool) -> int | None:
        text = self._required(params, name).strip() if required else params.get(name, "").strip()
        if not text:
            return None
        if not text.isdigit():
            raise self._invalid_argument(name, f"{name} must be a number")  # sim text
        return int(text)


def _start(initial: int | Mapping[str, int], code: str) -> int:
    value = initial.get(code, 0) if isinstance(initial, Mapping) else initial
    if int(value) < 0:
        raise ValueError(f"initial stock of {code} must be >= 0")
    return int(value)


def _fields(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}

