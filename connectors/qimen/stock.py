"""Qimen (奇门) stock: ``taobao.qimen.stockchange.report`` pushes and batch rows of ``inventory.query``.

``taobao.qimen.stockchange.report`` (库存异动通知接口, open platform apiId 25996; "WMS调用奇门的接口,
将库存异动信息回传给ERP") carries ``<request><items><item>..</item></items></request>``, every field
on the item itself:

* ``ownerCode`` (货主编码, 必须), ``warehouseCode`` (仓库编码, 必须), ``orderCode`` (引起异动的单据编码, 必须),
  ``orderType`` (单据类型, optional: JYCK 一般交易出库, HHCK, BFCK, PTCK, DBCK, B2BRK, B2BCK, QTCK,
  SCRK, LYRK, CCRK, CGRK 采购入库, DBRK, QTRK, XTRK 销退入库, HHRK, CNJG),
* ``outBizCode`` (外部业务编码, 必须: "消息ID, 用于去重"), ``itemCode`` (商品编码, 必须), ``itemId``,
  ``inventoryType`` (ZP 正品, CC 残次, JS 机损, XS 箱损, ZT 在途),
* ``quantity`` (商品变化量, 必须, "可为正为负": signed, negative = stock left the warehouse),
* ``batchCode``, ``productDate`` / ``expireDate`` (YYYY-MM-DD), ``produceCode``, ``changeTime``
  (异动时间, YYYY-MM-DD HH:MM:SS, GMT+8).

The answer is the usual ``<response><flag/><code/><message/></response>``.

``taobao.qimen.inventory.query`` (apiId 25999) answers ``items/item`` with warehouseCode, itemCode,
itemId, inventoryType, quantity (未冻结库存数量), lockQuantity (冻结库存数量) and, for batch-managed
items, batchCode, productDate and expireDate per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element

from pydantic import BaseModel

from connectors.qimen import xml as qx

METHOD_STOCK_CHANGE_REPORT = "taobao.qimen.stockchange.report"
#: as for deliveryorder.confirm, the gateway may hand the receiver the short name
STOCK_CHANGE_METHODS = frozenset({METHOD_STOCK_CHANGE_REPORT, "stockchange.report"})
#: inventoryType of sellable stock (正品); an item without one is taken as ZP
SELLABLE = "ZP"

_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")


class StockReportError(ValueError):
    """A stockchange.report that cannot be read; the message names the offending field."""


class StockBatch(BaseModel):
    """Sellable (ZP) stock of one batch of a SKU in a warehouse, from ``inventory.query``.

    ``batch_code`` is "" for stock the WMS reports without batch fields (not batch-managed);
    ``expire_date``/``product_date`` are ISO dates or "".
    """

    sku: str
    warehouse: str
    batch_code: str = ""
    expire_date: str = ""
    product_date: str = ""
    quantity: int = 0


def iso_date(value: str, where: str) -> str:
    """``YYYY-MM-DD`` (also with ``/`` or a trailing time, as some WMSs send it) -> ISO date; "" stays ""."""
    value = (value or "").strip()
    if not value:
        return ""
    match = _DATE.match(value)
    try:
        if match is None:
            raise ValueError(value)
        return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError:
        raise StockReportError(f"{where} must be a date YYYY-MM-DD, got {value!r}") from None


def signed_quantity(value: str, where: str) -> int:
    """The documented signed change (正为入, 负为出) as an int; "12", "-3" and "12.0000" are accepted."""
    text = (value or "").strip()
    if not text:
        raise StockReportError(f"{where} is required")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise StockReportError(f"{where} must be a whole number, got {text!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise StockReportError(f"{where} must be a whole number, got {text!r}")
    return int(number)


def change_id(out_biz_code: str, line: int, sku: str) -> str:
    """Stable de-duplication id of one reported line: the message id (outBizCode), the line's position
    in the report and the SKU - the document has no id per item, and a redelivery repeats all three."""
    return f"{out_biz_code}:{line}:{sku}"


def parse_stock_change_report(
    root: Element, *, owner_code: str = "", sent_at: datetime | None = None
) -> tuple[list[dict[str, object]], list[str]]:
    """``stock_change`` events (one per item) of a stockchange.report ``<request>``, and the SKUs left out
    because another owner's.

    Raises :class:`StockReportError` (nothing is returned) when any item misses a required field or
    carries an unreadable quantity, date or time. An item whose ``ownerCode`` is not ``owner_code``
    (when both are set) is another owner's stock in a shared warehouse and gives no event; a zero
    change gives none either. ``changed_at`` is ``changeTime``, else ``sent_at`` (the push's signed
    timestamp), in UTC.
    """
    if root.tag != "request":
        raise StockReportError(f"the body must be a <request> document, got <{root.tag}>")
    items = qx.entries(root, "items")
    if not items:
        raise StockReportError("items/item is required (at least one changed item)")
    fallback = (sent_at or datetime.now(UTC)).astimezone(UTC)
    events: list[dict[str, object]] = []
    foreign: list[str] = []
    for line, item in enumerate(items, start=1):
        where = f"items.item[{line}]"
        values = {name: qx.text(item, name) for name in ("warehouseCode", "orderCode", "outBizCode", "itemCode")}
        for name, value in values.items():
            if not value:
                raise StockReportError(f"{where}.{name} is required")
        quantity = signed_quantity(qx.text(item, "quantity"), f"{where}.quantity")
        expire_date = iso_date(qx.text(item, "expireDate"), f"{where}.expireDate")
        iso_date(qx.text(item, "productDate"), f"{where}.productDate")
        raw_time = qx.text(item, "changeTime")
        when = qx.parse_time(raw_time)
        if raw_time and when is None:
            raise StockReportError(f"{where}.changeTime must be YYYY-MM-DD HH:MM:SS (GMT+8), got {raw_time!r}")
        owner = qx.text(item, "ownerCode")
        if owner_code and owner and owner != owner_code:
            foreign.append(values["itemCode"])
            continue
        if quantity == 0:
            continue
        events.append(
            {
                "type": "stock_change",
                "change_id": change_id(values["outBizCode"], line, values["itemCode"]),
                "warehouse": values["warehouseCode"],
                "sku": values["itemCode"],
                "quantity": quantity,
                "order_code": values["orderCode"],
                "order_type": qx.text(item, "orderType").upper(),
                "inventory_type": (qx.text(item, "inventoryType") or SELLABLE).upper(),
                "batch_code": qx.text(item, "batchCode"),
                "expire_date": expire_date,
                "changed_at": (when.astimezone(UTC) if when is not None else fallback).isoformat(),
            }
        )
    return events, foreign


def batches_from_items(items: Iterable[Element], wanted: set[str], default_warehouse: str) -> list[StockBatch]:
    """Sellable stock per (sku, warehouse, batch) of ``inventory.query`` rows for the ``wanted`` SKUs.

    Rows of another inventoryType are skipped; rows of the same batch are added up. A row with an
    unreadable date keeps the batch with that date empty rather than failing the whole answer.
    """
    found: dict[tuple[str, str, str], StockBatch] = {}
    for item in items:
        sku = qx.text(item, "itemCode")
        kind = qx.text(item, "inventoryType").upper()
        if not sku or sku not in wanted or (kind and kind != SELLABLE):
            continue
        warehouse = qx.text(item, "warehouseCode") or default_warehouse
        batch_code = qx.text(item, "batchCode")
        key = (sku, warehouse, batch_code)
        entry = found.get(key)
        if entry is None:
            entry = found[key] = StockBatch(sku=sku, warehouse=warehouse, batch_code=batch_code,
                                            expire_date=_lenient_date(qx.text(item, "expireDate")),
                                            product_date=_lenient_date(qx.text(item, "productDate")))
        entry.quantity += _whole(qx.text(item, "quantity"))
    return list(found.values())


def _lenient_date(value: str) -> str:
    try:
        return iso_date(value, "date")
    except StockReportError:
        return ""


def _whole(value: str) -> int:
    try:
        return int(Decimal(value)) if value else 0
    except (InvalidOperation, ValueError, OverflowError):
        return 0
