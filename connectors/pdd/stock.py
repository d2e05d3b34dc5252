"""Pinduoduo stock (capability 'stock'): show the hub's absolute quantity for a merchant SKU.

The hub keeps the one stock pool; this mixin only says it to POP, through the 商品 APIs (request
and response fields as the official API pages document them, mirrored as typed interfaces in
github.com/lywzx/pdd-node-sdk ``packages/pdd-origin-api/src/shangPin/``, file named per API):

* ``pdd.goods.list.get`` (商品列表接口, ``PddGoodsListGet.ts``): ``outer_id`` "商品外部编码（sku），同其他接口
  中的outer_id、out_id、out_sku_sn、outer_sku_sn、out_sku_id、outer_sku_id 都为商家编码（sku维度）";
  "outer_id,is_onsale,goods_name三选一，优先级is_onsale>outer_id>goods_name", so only ``outer_id`` is
  sent; ``page`` from 1, ``page_size`` "默认 100，最大100". The answer ``goods_list_get_response``
  carries ``total_count`` and ``goods_list`` of goods {goods_id, is_onsale, sku_list: [{sku_id,
  outer_id, sku_quantity, is_sku_onsale, ...}]}; our SKU is the ``sku_list`` entry whose ``outer_id``
  is our code. Limit: 600 calls per 60 s.
* ``pdd.goods.quantity.update`` (商品库存更新接口, ``PddGoodsQuantityUpdate.ts``, "修改商品sku库存，在资源位上
  的商品不能减少库存"): ``goods_id`` (必填), ``quantity`` ("当全量更新库存时，quantity必须为大于等于0的正整数"),
  ``sku_id`` ("sku_id和outer_id必填一个，优先使用sku_id"), ``update_type`` ("1为全量更新，2为增量更新。如果不
  填，默认为全量更新"). We send ``goods_id`` + ``sku_id`` and ``update_type=1``: the hub's quantity is
  absolute, so a retried write cannot count twice. Answer ``goods_quantity_update_response.is_success``.
* ``pdd.goods.skus.get`` (根据skuId查询sku详情, ``PddGoodsSkusGet.ts``, "接口使用场景：库存同步、改价等场景"):
  ``goods_id``, ``sku_id`` → ``goods_sku_get_response`` {quantity 库存, reserve_quantity 预扣库存, ...},
  for the reconciliation's ``get_stock``.

POP takes no idempotency key and offers no compare-and-set here: ``key`` is logged only and
``previous`` is not used (a full update is idempotent by itself).

Errors are classified by the connector's ``_call`` (:func:`connectors.pdd.connector.classify_error`:
70031/52101 throttled, 52102/52103 and 50000+ transient, 10019 and signature/token messages
``AuthError``, "不存在" ``NotFoundError``, other caller errors ``InvalidRequestError`` -- e.g. lowering
the stock of goods on a promotion slot, "在资源位上的商品不能减少库存").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import InvalidRequestError, NotFoundError, TransientError

log = structlog.get_logger("tongdao.pdd")

PLATFORM = "pdd"

TYPE_GOODS_LIST = "pdd.goods.list.get"
TYPE_QUANTITY_UPDATE = "pdd.goods.quantity.update"
TYPE_SKU_GET = "pdd.goods.skus.get"

#: update_type: "1为全量更新，2为增量更新"
FULL_UPDATE = 1
PAGE_SIZE = 100  # "默认 100，最大100"
#: pages of goods.list.get read for one outer_id before giving up (one code on 1000 goods is a mistake)
MAX_PAGES = 10


class PopSku(BaseModel):
    """One ``sku_list`` entry of ``pdd.goods.list.get``."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    sku_id: str = ""
    outer_id: str = ""
    sku_quantity: int | None = None
    is_sku_onsale: int | None = None


class PopGoods(BaseModel):
    """One ``goods_list`` entry of ``pdd.goods.list.get``."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    goods_id: str = ""
    is_onsale: int | None = None
    sku_list: list[PopSku] = Field(default_factory=list)


class PopSkuDetail(BaseModel):
    """``goods_sku_get_response`` of ``pdd.goods.skus.get``."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    goods_id: str = ""
    sku_id: str = ""
    quantity: int | None = None


class PddStock(StockTarget):
    """Capability 'stock' for :class:`~connectors.pdd.PddConnector`; it uses the connector's signed
    ``_call`` (one fresh timestamp and signature per attempt, errors classified)."""

    if TYPE_CHECKING:  # provided by PddConnector
        name: str

        async def _call(self, api: str, params: Mapping[str, Any]) -> dict[str, Any]: ...

    async def find_listing(self, sku: str) -> ListingRef | None:
        """The (goods_id, sku_id) whose SKU 商家编码 is ``sku``, from ``pdd.goods.list.get`` by
        ``outer_id``; None when this shop sells no such code. When the code is on several SKUs, the
        ones on sale win; several on sale are refused (one quantity shown on two listings sells
        twice)."""
        code = str(sku or "").strip()
        if not code:
            raise InvalidRequestError("an empty SKU code has no listing", platform=PLATFORM)
        found: list[tuple[PopGoods, PopSku]] = []
        page, seen = 1, 0
        while page <= MAX_PAGES:
            answer = await self._call(TYPE_GOODS_LIST, {"outer_id": code, "page": page, "page_size": PAGE_SIZE})
            rows = answer.get("goods_list")
            goods = [PopGoods.model_validate(g) for g in rows if isinstance(g, dict)] if isinstance(rows, list) else []
            found += [(g, s) for g in goods for s in g.sku_list if s.outer_id == code and g.goods_id and s.sku_id]
            seen += len(goods)
            total = _int(answer.get("total_count")) or 0
            if not goods or seen >= total:
                break
            page += 1
        on_sale = [(g, s) for g, s in found if g.is_onsale != 0 and s.is_sku_onsale != 0]
        chosen = list({(g.goods_id, s.sku_id): (g, s) for g, s in (on_sale or found)}.values())
        if not chosen:
            return None
        if len(chosen) > 1:
            where = ", ".join(f"goods_id {g.goods_id} sku_id {s.sku_id}" for g, s in chosen)
            raise InvalidRequestError(f"merchant code {code!r} is on {len(chosen)} Pinduoduo SKUs ({where}); give "
                                      "each its own 商家编码 so that its stock can be pushed",
                                      code="ambiguous-outer-id", platform=PLATFORM)
        goods, item = chosen[0]
        return ListingRef(sku=code, item_id=goods.goods_id, sku_id=item.sku_id)

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """``pdd.goods.quantity.update`` with ``update_type=1`` (全量更新): POP shows ``quantity``."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise InvalidRequestError(f"a POP stock quantity is an integer >= 0, not {quantity!r}", platform=PLATFORM)
        goods_id, sku_id = _ids(listing)
        answer = await self._call(TYPE_QUANTITY_UPDATE, {"goods_id": goods_id, "sku_id": sku_id,
                                                         "quantity": quantity, "update_type": FULL_UPDATE})
        if answer.get("is_success") in (False, "false"):
            raise InvalidRequestError(f"{TYPE_QUANTITY_UPDATE}: POP did not take the stock of {listing.sku!r}",
                                      platform=PLATFORM)
        log.info("pdd.stock_set", connector=self.name, sku=listing.sku, goods_id=goods_id, sku_id=sku_id,
                 quantity=quantity, key=key)
        return StockWrite(quantity=quantity)

    async def get_stock(self, listing: ListingRef) -> int:
        """The ``quantity`` (库存) ``pdd.goods.skus.get`` shows for the SKU now."""
        goods_id, sku_id = _ids(listing)
        answer = await self._call(TYPE_SKU_GET, {"goods_id": goods_id, "sku_id": sku_id})
        detail = PopSkuDetail.model_validate(answer)
        if detail.sku_id and detail.sku_id != sku_id:
            raise NotFoundError(f"{TYPE_SKU_GET}: asked for sku_id {sku_id}, got {detail.sku_id}", platform=PLATFORM)
        if detail.quantity is None:
            raise TransientError(f"{TYPE_SKU_GET}: no quantity for sku_id {sku_id}", platform=PLATFORM)
        return detail.quantity


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _ids(listing: ListingRef) -> tuple[str, str]:
    """(goods_id, sku_id): POP ids are numbers, and a stock write needs both."""
    goods_id, sku_id = listing.item_id.strip(), listing.sku_id.strip()
    if not goods_id.isdigit() or not sku_id.isdigit():
        raise InvalidRequestError(f"Pinduoduo listing ids are numbers, not goods_id={listing.item_id!r} "
                                  f"sku_id={listing.sku_id!r} (SKU {listing.sku!r})", platform=PLATFORM)
    return goods_id, sku_id
