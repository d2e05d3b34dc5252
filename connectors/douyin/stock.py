"""Douyin shop (抖店) capability 'stock': find a merchant SKU's ids, show an absolute quantity, read it.

Calls used (request/response fields from the official SDK models, doudian-sdk-golang ``api/sku_*``
as mirrored by zsmhub/doudian-sdk and westng/doudian-sdk, and the 抖店 page "全量/增量更新商品sku库存"
as mirrored by doc.fw199.com):

* ``sku.detail`` (``/sku/detail``): ``sku_id`` or ``code`` ("sku code", the merchant's 商家编码) ->
  ``data`` = ``{id (the sku id), product_id, product_id_str, code ("sku外部编码"), sku_type ("0-普通
  1-区域库存"), stock_num ("sku_type=0时，表示库存数量"), prehold_stock_num, ...}``.
* ``sku.syncStock`` (``/sku/syncStock``): ``product_id`` ("商品ID，抖店系统生成，店铺下唯一"),
  ``sku_id`` ("规格id；抖店系统生成，商品id下唯一") or ``code`` ("sku编码"), ``stock_num`` ("库存值；可以
  设置为0"), ``incremental`` ("true-增量更新，同时idempotent_id字段必填；false-全量更新；默认为false"),
  ``idempotent_id`` ("幂等ID，当incremental=true时该参数必传"), ``out_warehouse_id`` ("如传入传值表示更新
  区域库存，不传默认更新普通库存"); answers an empty ``data``.
* ``sku.list`` (``/sku/list``, ``product_id``) lists a product's SKUs with the same fields; not needed
  here, ``sku.detail`` finds one SKU by its code in one call.

We always write the ordinary stock in full (``incremental=false``) and still send the hub's ``key``
as ``idempotent_id``: a retried write is then recognised by the platform as well as being harmless.
Douyin has no compare-and-set, so ``previous`` is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import InvalidRequestError, NotFoundError, TransientError

log = structlog.get_logger("tongdao.douyin")

PLATFORM = "douyin"  # the same value as connectors.douyin.connector.PLATFORM (that module imports this one)

METHOD_SKU_DETAIL = "sku.detail"
METHOD_SYNC_STOCK = "sku.syncStock"
SKU_TYPE_NORMAL, SKU_TYPE_AREA = 0, 1


class DouyinSkuDetail(BaseModel):
    """``sku.detail``'s ``data`` (the fields this capability reads). Ids are int64 on the wire."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    product_id: str = ""
    product_id_str: str = ""
    code: str = ""
    sku_type: int = SKU_TYPE_NORMAL
    stock_num: int = 0

    @property
    def product(self) -> str:
        return self.product_id_str or self.product_id


class DouyinStock(StockTarget):
    """Mixed into :class:`~connectors.douyin.connector.DouyinConnector`; uses its signed ``_call``."""

    if TYPE_CHECKING:
        name: str

        async def _call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]: ...

    async def _sku_detail(self, params: Mapping[str, Any]) -> DouyinSkuDetail | None:
        data = await self._call(METHOD_SKU_DETAIL, params)
        if not data or data.get("id") in (None, "", 0, "0"):
            return None
        try:
            return DouyinSkuDetail.model_validate(data)
        except ValidationError as exc:
            raise TransientError(f"{METHOD_SKU_DETAIL}: unexpected data ({exc.error_count()} errors)",
                                 platform=PLATFORM) from None

    async def find_listing(self, sku: str) -> ListingRef | None:
        """``sku.detail`` with ``code`` = our SKU code; None when the shop has no such code (the
        platform's "not found" refusal or an empty answer)."""
        code = str(sku).strip()
        if not code:
            raise InvalidRequestError("find_listing needs a merchant SKU code", platform=PLATFORM)
        try:
            detail = await self._sku_detail({"code": code})
        except NotFoundError:
            return None
        if detail is None or (detail.code and detail.code != code):
            return None
        if not detail.product:
            raise TransientError(f"{METHOD_SKU_DETAIL}: sku {detail.id} came without product_id", platform=PLATFORM)
        if detail.sku_type == SKU_TYPE_AREA:
            log.warning("douyin.area_stock_sku", connector=self.name, sku=code, sku_id=detail.id)
        return ListingRef(sku=code, item_id=detail.product, sku_id=detail.id)

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """``sku.syncStock`` with ``product_id``, ``sku_id``, ``stock_num`` = ``quantity``,
        ``incremental=false`` (a full update) and ``idempotent_id`` = ``key``."""
        amount = _quantity(quantity)
        product_id, sku_id = _id(listing.item_id, "product_id", listing), _id(listing.sku_id, "sku_id", listing)
        params: dict[str, Any] = {"product_id": int(product_id), "sku_id": int(sku_id), "stock_num": amount,
                                  "incremental": False}
        if key:
            params["idempotent_id"] = key
        await self._call(METHOD_SYNC_STOCK, params)
        log.info("douyin.stock_set", connector=self.name, sku=listing.sku, sku_id=sku_id, quantity=amount, key=key)
        return StockWrite(quantity=amount)

    async def get_stock(self, listing: ListingRef) -> int:
        """``sku.detail`` by ``sku_id``: its ``stock_num`` (the ordinary stock ``set_stock`` writes)."""
        sku_id = _id(listing.sku_id, "sku_id", listing)
        detail = await self._sku_detail({"sku_id": int(sku_id)})
        if detail is None:
            raise NotFoundError(f"{METHOD_SKU_DETAIL}: no sku {sku_id} (sku {listing.sku})", platform=PLATFORM)
        return detail.stock_num


def _quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise InvalidRequestError(f"a stock quantity is a whole number >= 0, not {quantity!r}", platform=PLATFORM)
    return quantity


def _id(value: str, what: str, listing: ListingRef) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidRequestError(f"a Douyin {what} is a number, not {value!r} (sku {listing.sku})",
                                  platform=PLATFORM)
    return text
