"""Taobao / Tmall stock (capability 'stock'): show the hub's absolute quantity for a merchant SKU.

The hub keeps the one stock pool; this mixin only says it to TOP, through the 商品 APIs the TOP
documentation gives for it (pages quoted as mirrored at open.alitrip.com / developer.alibaba.com
``docs/api.htm``, request fields also as typed by github.com/bububa/opentaobao ``model/product``):

* ``taobao.skus.custom.get`` (根据外部ID取商品SKU, apiId=164): "跟据卖家设定的Sku的外部id获取商品，如果一个
  outer_id对应多个Sku会返回所有符合条件的sku", the seller being the session's; ``outer_id`` (必须) "Sku的外部
  商家ID" = our SKU code (商家编码), ``fields`` (必须) "Sku结构体中的所有字段". The answer ``skus`` holds Sku
  {sku_id, num_iid ("iid标签里是num_iid的值"), outer_id, quantity, status, ...}. Documented error for an
  outer id no SKU carries: ``isv.item-skus-custom-get-service-error:ITEM_NOT_FOUND`` (没有找到宝贝).
* ``taobao.items.custom.get`` (根据外部ID取商品): ``outer_id`` "商品的外部商品ID，支持批量，最多不超过40个",
  ``fields`` of the Item structure (``num_iid``, ``num`` 商品数量, ``outer_id``, ``sku``). Used for a
  listing without SKUs, whose 商家编码 sits on the item itself, and to read such an item's stock.
* ``taobao.item.quantity.update`` (宝贝/SKU库存修改, "提供按照全量或增量形式修改宝贝/SKU库存的功能"):
  ``num_iid`` (必须), ``sku_id`` ("如果不填默认修改宝贝的库存，如果填上则修改该SKU的库存"), ``quantity``
  (必须; "当全量更新库存时，quantity必须为大于等于0的正整数"), ``type`` ("1为全量更新，2为增量更新。如果不填，
  默认为全量更新"). We always send ``type=1``: the hub's quantity is absolute, so a retried write
  cannot count twice. The answer ``item`` carries "iid、numIid、num和modified，skus中每个sku的skuId、
  quantity和modified"; the quantity it shows for our SKU is what ``set_stock`` reports.
* ``taobao.item.sku.get`` (获取SKU): ``fields`` (必须), ``sku_id`` (必须), ``num_iid`` → ``sku`` with
  ``quantity`` ("属于这个sku的商品的数量"), for the reconciliation's ``get_stock``.

TOP takes no idempotency key and offers no compare-and-set on these calls: ``key`` is logged only
and ``previous`` is not used (a full update is idempotent by itself).

Errors come classified by the connector's ``_call`` (code 7 throttled with the ban's seconds,
``isp.*`` transient, signature/session/permission errors ``AuthError``, ``isv.invalid-parameter*``
and other ``isv.*`` refusals ``InvalidRequestError``). On top of that, answers saying the listing
is gone become ``NotFoundError``, so that the hub looks the SKU up again instead of retrying: a
sub code ending in ``:ITEM_NOT_FOUND`` (the documented skus.custom.get code above) and the sub
codes integrators handle for item.quantity.update -- ``isv.item-not-exist:invalid-numIid-or-iid``
(商品id对应的商品不存在), ``isv.item-is-delete:invalid-numIid-or-iid`` (商品已经被删除),
``isv.invalid-parameter:sku-properties`` (传入的sku找不到对应的sku记录), each also with Tmall's
``-tmall`` suffix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.base import ListingRef, StockTarget, StockWrite
from connectors.errors import ConnectorError, InvalidRequestError, NotFoundError, PermanentError, TransientError

log = structlog.get_logger("tongdao.taobao")

PLATFORM = "taobao"

METHOD_SKUS_CUSTOM_GET = "taobao.skus.custom.get"
METHOD_ITEMS_CUSTOM_GET = "taobao.items.custom.get"
METHOD_QUANTITY_UPDATE = "taobao.item.quantity.update"
METHOD_SKU_GET = "taobao.item.sku.get"

#: ``type``: "1为全量更新，2为增量更新"
FULL_UPDATE = 1
SKU_FIELDS = "sku_id,num_iid,outer_id,quantity,status"
ITEM_FIELDS = "num_iid,outer_id,num,approve_status,sku"
#: Sku.status of a SKU that was deleted from its listing (the others are "normal")
DELETED = "delete"

#: sub codes saying the listing (item or SKU) no longer exists, with and without Tmall's suffix
GONE_SUB_CODES = frozenset(
    code + suffix
    for code in ("isv.item-not-exist:invalid-numIid-or-iid", "isv.item-is-delete:invalid-numIid-or-iid",
                 "isv.invalid-parameter:sku-properties")
    for suffix in ("", "-tmall")
)
NOT_FOUND_SUFFIX = ":ITEM_NOT_FOUND"


class TopSku(BaseModel):
    """One Sku structure as TOP answers it (numbers may come as numbers or strings)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    sku_id: str = ""
    num_iid: str = ""
    iid: str = ""
    outer_id: str = ""
    quantity: int | None = None
    status: str = ""

    @property
    def item_id(self) -> str:
        """``num_iid``; the documentation says ``iid`` carries the same value."""
        return self.num_iid or self.iid


class TopItem(BaseModel):
    """The part of an Item structure a stock sync needs."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    num_iid: str = ""
    outer_id: str = ""
    num: int | None = None
    approve_status: str = ""
    skus: list[TopSku] = Field(default_factory=list)

    @field_validator("skus", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        return _listed(value, "sku")


class TaobaoStock(StockTarget):
    """Capability 'stock' for :class:`~connectors.taobao.TaobaoConnector`; it uses the connector's
    signed ``_call`` (one fresh timestamp and signature per attempt, errors classified)."""

    if TYPE_CHECKING:  # provided by TaobaoConnector
        name: str

        async def _call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]: ...

    async def find_listing(self, sku: str) -> ListingRef | None:
        """The listing of merchant SKU code ``sku``: ``taobao.skus.custom.get`` by ``outer_id``, and
        for a listing without SKUs ``taobao.items.custom.get`` (its 商家编码 is the item's). None when
        this shop sells no such code. A code on several live listings is refused: pushing the one
        quantity to each would sell it twice, pushing to one would leave the others wrong."""
        code = _code(sku)
        skus = [s for s in await self._skus_by_code(code)
                if s.outer_id == code and s.sku_id and s.item_id and s.status != DELETED]
        if skus:
            return _single(code, [ListingRef(sku=code, item_id=s.item_id, sku_id=s.sku_id) for s in skus])
        items = [i for i in await self._items_by_code(code) if i.outer_id == code and i.num_iid and not i.skus]
        if items:
            return _single(code, [ListingRef(sku=code, item_id=i.num_iid) for i in items])
        return None

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """``taobao.item.quantity.update`` with ``type=1`` (全量更新): TOP shows ``quantity`` from now
        on. Without a ``sku_id`` the item's own stock is set (a listing without SKUs)."""
        shown = _quantity(quantity)
        num_iid, sku_id = _ids(listing)
        answer = await self._stock_call(METHOD_QUANTITY_UPDATE, {
            "num_iid": num_iid, "sku_id": sku_id or None, "quantity": shown, "type": FULL_UPDATE})
        item = answer.get("item")
        now = _shown(TopItem.model_validate(item), sku_id) if isinstance(item, Mapping) else None
        log.info("taobao.stock_set", connector=self.name, sku=listing.sku, num_iid=num_iid, sku_id=sku_id or None,
                 quantity=shown, shown=now, key=key)
        return StockWrite(quantity=shown if now is None else now)

    async def get_stock(self, listing: ListingRef) -> int:
        """What TOP shows now: ``taobao.item.sku.get`` for a SKU, the item's ``num`` through
        ``taobao.items.custom.get`` for a listing without SKUs."""
        num_iid, sku_id = _ids(listing)
        if sku_id:
            answer = await self._stock_call(METHOD_SKU_GET, {"fields": SKU_FIELDS, "sku_id": sku_id,
                                                             "num_iid": num_iid})
            found = answer.get("sku")
            if not isinstance(found, Mapping):
                raise NotFoundError(f"{METHOD_SKU_GET}: no SKU {sku_id} of item {num_iid}", platform=PLATFORM)
            quantity = TopSku.model_validate(found).quantity
        else:
            items = [i for i in await self._items_by_code(_code(listing.sku)) if i.num_iid == num_iid]
            if not items:
                raise NotFoundError(f"{METHOD_ITEMS_CUSTOM_GET}: no item {num_iid} with outer_id {listing.sku!r}",
                                    platform=PLATFORM)
            quantity = items[0].num
        if quantity is None:
            raise TransientError(f"TOP answered no quantity for {listing.sku!r}", platform=PLATFORM)
        return quantity

    # --- calls -------------------------------------------------------------------------------------

    async def _skus_by_code(self, code: str) -> list[TopSku]:
        try:
            answer = await self._stock_call(METHOD_SKUS_CUSTOM_GET, {"fields": SKU_FIELDS, "outer_id": code})
        except NotFoundError:
            return []  # ITEM_NOT_FOUND: no SKU carries this code
        return [TopSku.model_validate(s) for s in _listed(answer.get("skus"), "sku")]

    async def _items_by_code(self, code: str) -> list[TopItem]:
        try:
            answer = await self._stock_call(METHOD_ITEMS_CUSTOM_GET, {"fields": ITEM_FIELDS, "outer_id": code})
        except NotFoundError:
            return []
        return [TopItem.model_validate(i) for i in _listed(answer.get("items"), "item")]

    async def _stock_call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``_call``, with "this listing is gone" answers turned into ``NotFoundError``."""
        try:
            return await self._call(method, params)
        except PermanentError as exc:
            if isinstance(exc, NotFoundError) or not _gone(exc):
                raise
            raise NotFoundError(exc.message, code=exc.code, platform=PLATFORM, details=exc.details) from None


# --- helpers --------------------------------------------------------------------------------------


def _listed(container: Any, item: str) -> list[dict[str, Any]]:
    """TOP JSON lists come as ``{"skus": {"sku": [...]}}`` (or a bare list when simplified)."""
    if isinstance(container, Mapping):
        container = container.get(item)
    if isinstance(container, Mapping):
        container = [container]
    return [x for x in container if isinstance(x, dict)] if isinstance(container, list) else []


def _gone(exc: ConnectorError) -> bool:
    sub_code = str(exc.details.get("sub_code") or exc.code or "")
    return sub_code in GONE_SUB_CODES or sub_code.endswith(NOT_FOUND_SUFFIX)


def _code(sku: str) -> str:
    code = str(sku or "").strip()
    if not code:
        raise InvalidRequestError("an empty SKU code has no listing", platform=PLATFORM)
    return code


def _quantity(quantity: int) -> int:
    """TOP's rule for a full update: "quantity必须为大于等于0的正整数"."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise InvalidRequestError(f"a TOP stock quantity is an integer >= 0, not {quantity!r}", platform=PLATFORM)
    return quantity


def _ids(listing: ListingRef) -> tuple[str, str]:
    """(num_iid, sku_id) as TOP takes them: numbers; sku_id empty for a listing without SKUs."""
    num_iid, sku_id = listing.item_id.strip(), listing.sku_id.strip()
    if not num_iid.isdigit() or (sku_id and not sku_id.isdigit()):
        raise InvalidRequestError(f"Taobao listing ids are numbers, not num_iid={listing.item_id!r} "
                                  f"sku_id={listing.sku_id!r} (SKU {listing.sku!r})", platform=PLATFORM)
    return num_iid, sku_id


def _single(code: str, refs: list[ListingRef]) -> ListingRef:
    unique = list({(r.item_id, r.sku_id): r for r in refs}.values())
    if len(unique) > 1:
        where = ", ".join(f"num_iid {r.item_id}" + (f" sku_id {r.sku_id}" if r.sku_id else "") for r in unique)
        raise InvalidRequestError(f"merchant code {code!r} is on {len(unique)} Taobao listings ({where}); "
                                  "give each listing its own 商家编码 so that its stock can be pushed",
                                  code="ambiguous-outer-id", platform=PLATFORM)
    return unique[0]


def _shown(item: TopItem, sku_id: str) -> int | None:
    """The quantity the update answer shows for our SKU (the item's ``num`` without a SKU)."""
    if not sku_id:
        return item.num
    return next((s.quantity for s in item.skus if s.sku_id == sku_id), None)
