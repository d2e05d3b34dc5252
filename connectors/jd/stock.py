"""JD (JOS) capability 'stock': find a merchant SKU's JD ids, show an absolute quantity, read it back.

Calls used (documentation pages named by their open.jd.com ``apiId``; request/response fields as the
official SDKs model them: Java ``com.jd.open.api.sdk.request.ware.*`` / ``response.ware.*``, JD's
PHP/Python SDK request classes, and the XiBao/jos Go models):

* ``jingdong.sku.read.searchSkuList`` (apiId=1227, "SKU搜索服务"): ``outId`` ("外部ID", a list of the
  merchant codes, ``string[]``), ``wareId``/``skuId`` (lists), ``skuStatuValue`` ("SKU状态：1:上架 2:下架
  4:删除 默认查询上架下架商品"), ``pageNo`` ("页码 从1开始"), ``page_size``, ``field`` ("自定义返回字段").
  Answers ``jingdong_sku_read_searchSkuList_responce`` = ``{code, page: {data: [Sku], pageNo, pageSize,
  totalItem}}`` where each ``Sku`` has ``wareId``, ``skuId``, ``outerId`` ("外部ID" = our SKU code,
  商家编码), ``status`` (1 上架, 2 下架, 4 删除) and ``stockNum`` ("总库存数").
* ``jingdong.stock.write.updateSkuStock`` (apiId=1224, "设置sku库存"): ``skuId`` ("sku编号", required),
  ``stockNum`` ("库存数量", required), ``storeId`` ("仓库编号", optional; not sent: the SKU's own stock).
  Setting, not adding: the write is absolute. Answers ``{code, success: bool}``.
* ``jingdong.stock.read.findSkuStock`` (apiId=1239, "获取sku库存信息"): ``skuId`` (required), ``field``
  (optional, e.g. ``detailStock``); answers ``skuStocks: [{skuId, stockNum, storeId, detailStock}]``.

JOS takes no idempotency key and no compare-and-set on these calls: the hub's ``key`` is not sent (an
absolute write repeated is harmless) and ``previous`` is not used. A third-party integration notes that
JD marks ``updateSkuStock`` as due to be retired in favour of ``jingdong.ware.stock.sku.set``; the
method name is one constant here (``METHOD_STOCK_WRITE``) should a shop's app be moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import InvalidRequestError, NotFoundError, TransientError

log = structlog.get_logger("tongdao.jd")

PLATFORM = "jd"  # the same value as connectors.jd.connector.PLATFORM (that module imports this one)

METHOD_SKU_SEARCH = "jingdong.sku.read.searchSkuList"
METHOD_STOCK_WRITE = "jingdong.stock.write.updateSkuStock"
METHOD_STOCK_READ = "jingdong.stock.read.findSkuStock"

SKU_FIELDS = "wareId,skuId,outerId,status,stockNum"
SKU_ON_SALE, SKU_OFF_SALE, SKU_DELETED = 1, 2, 4
#: one merchant code should be one SKU; a page this size shows every duplicate there may be
SEARCH_PAGE_SIZE = 20


class _JosModel(BaseModel):
    """JOS answers carry ids as JSON numbers (Java ``Long``) or strings; keep them as strings."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)


class JdSku(_JosModel):
    """One ``Sku`` of a ``searchSkuList`` page (only the fields this capability asks for)."""

    sku_id: str = Field(alias="skuId", min_length=1)
    ware_id: str = Field("", alias="wareId")
    outer_id: str = Field("", alias="outerId")
    status: int | None = None
    stock_num: int | None = Field(None, alias="stockNum")


class JdSkuPage(_JosModel):
    data: list[JdSku] = Field(default_factory=list)
    total_item: int | None = Field(None, alias="totalItem")


class JdSkuStock(_JosModel):
    """One ``SkuStock`` of ``findSkuStock`` (``com.jd...StockReadService.response.findSkuStock.SkuStock``)."""

    sku_id: str = Field("", alias="skuId")
    stock_num: int = Field(alias="stockNum")
    store_id: str | None = Field(None, alias="storeId")


class JdStock(StockTarget):
    """Mixed into :class:`~connectors.jd.connector.JdConnector`; uses its signed ``_call``."""

    if TYPE_CHECKING:
        name: str

        async def _call(self, method: str, business: Mapping[str, Any]) -> dict[str, Any]: ...

    async def find_listing(self, sku: str) -> ListingRef | None:
        """``searchSkuList`` by ``outId`` (the merchant code), on-sale and off-sale SKUs (JD's default).

        The search is filtered again here on an exact ``outerId`` (the pages do not say the match
        is exact). Two live SKUs with one merchant code is a catalogue mistake JD allows: the
        on-sale one is taken (then the lowest skuId) and the others are logged."""
        code = str(sku).strip()
        if not code:
            raise InvalidRequestError("find_listing needs a merchant SKU code", platform=PLATFORM)
        answer = await self._call(METHOD_SKU_SEARCH, {"outId": [code], "field": SKU_FIELDS, "pageNo": 1,
                                                      "page_size": SEARCH_PAGE_SIZE})
        _raise_unless_ok(answer, METHOD_SKU_SEARCH)
        try:
            page = JdSkuPage.model_validate(answer.get("page") or {})
        except ValidationError as exc:
            raise TransientError(f"{METHOD_SKU_SEARCH}: unexpected page ({exc.error_count()} errors)",
                                 platform=PLATFORM) from None
        found = [s for s in page.data if s.outer_id == code and s.status != SKU_DELETED]
        if not found:
            return None
        found.sort(key=lambda s: (s.status != SKU_ON_SALE, int(s.sku_id) if s.sku_id.isdigit() else 0))
        chosen = found[0]
        if len(found) > 1:
            log.warning("jd.duplicate_outer_id", connector=self.name, sku=code, chosen=chosen.sku_id,
                        others=[s.sku_id for s in found[1:]])
        return ListingRef(sku=code, item_id=chosen.ware_id, sku_id=chosen.sku_id)

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """``updateSkuStock`` with ``skuId`` and ``stockNum`` = ``quantity`` (absolute).

        ``key`` and ``previous`` are not sent: JOS takes neither, and setting the same number twice
        is the same as once. ``success: false`` without a reason is a refusal (permanent)."""
        amount = _quantity(quantity)
        sku_id = _sku_id(listing)
        answer = await self._call(METHOD_STOCK_WRITE, {"skuId": int(sku_id), "stockNum": amount})
        _raise_unless_ok(answer, METHOD_STOCK_WRITE)
        if answer.get("success") not in (True, "true"):
            raise InvalidRequestError(f"{METHOD_STOCK_WRITE}: JD did not take stockNum={amount} for skuId {sku_id}",
                                      platform=PLATFORM, details={"sku": listing.sku, "sku_id": sku_id})
        log.info("jd.stock_set", connector=self.name, sku=listing.sku, sku_id=sku_id, quantity=amount, key=key)
        return StockWrite(quantity=amount)

    async def get_stock(self, listing: ListingRef) -> int:
        """``findSkuStock`` for the listing's ``skuId``.

        JD may answer one ``SkuStock`` per warehouse (``storeId``); the write above sets the SKU's
        own stock (no ``storeId``), so the entry without a store (or store 0) is read, else the sum."""
        sku_id = _sku_id(listing)
        answer = await self._call(METHOD_STOCK_READ, {"skuId": int(sku_id)})
        _raise_unless_ok(answer, METHOD_STOCK_READ)
        try:
            rows = [JdSkuStock.model_validate(r) for r in answer.get("skuStocks") or []]
        except ValidationError as exc:
            raise TransientError(f"{METHOD_STOCK_READ}: unexpected skuStocks ({exc.error_count()} errors)",
                                 platform=PLATFORM) from None
        mine = [r for r in rows if r.sku_id in ("", sku_id)]
        if not mine:
            raise NotFoundError(f"{METHOD_STOCK_READ}: no stock for skuId {sku_id}", platform=PLATFORM)
        own = [r for r in mine if r.store_id in (None, "", "0")]
        return own[0].stock_num if own else sum(r.stock_num for r in mine)


def _quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise InvalidRequestError(f"a stock quantity is a whole number >= 0, not {quantity!r}", platform=PLATFORM)
    return quantity


def _sku_id(listing: ListingRef) -> str:
    sku_id = listing.sku_id.strip()
    if not sku_id.isdigit():
        raise InvalidRequestError(f"a JD skuId is a number, not {listing.sku_id!r} (sku {listing.sku})",
                                  platform=PLATFORM)
    return sku_id


def _raise_unless_ok(answer: Mapping[str, Any], method: str) -> None:
    """The ware services say a refusal inside the wrapper too: ``code`` other than "0" with
    ``error_description`` (as the Go SDK reads ``searchSkuList``), or ``success: false`` with the
    ``chineseErrCode``/``englishErrCode`` pair the order services use."""
    from connectors.jd.connector import classify_error, classify_result  # the connector imports this module

    code = str(answer.get("code", "0") or "0").strip()
    if code != "0":
        raise classify_error({"code": code, "zh_desc": answer.get("error_description") or answer.get("zh_desc"),
                              "en_desc": answer.get("en_desc")}, method=method)
    if answer.get("success") in (False, "false") and (answer.get("chineseErrCode") or answer.get("englishErrCode")):
        raise classify_result(answer, method=method)
