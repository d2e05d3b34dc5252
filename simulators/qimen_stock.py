"""Stock of the Qimen WMS simulator: batches with expiry, and ``taobao.qimen.stockchange.report`` bodies.

Written from the Qimen warehouse documents, never from the hub's connector:

* ``taobao.qimen.stockchange.report`` (库存异动通知接口, apiId 25996), pushed by the WMS to the ERP:
  ``<request><items><item>..</item></items></request>`` where every item carries ownerCode,
  warehouseCode, orderCode (引起异动的单据编码), outBizCode (消息ID, 用于去重), itemCode and quantity
  (all 必须) and optionally orderType, itemId, inventoryType, batchCode, productDate/expireDate
  (YYYY-MM-DD), produceCode and changeTime (YYYY-MM-DD HH:MM:SS). ``quantity`` is the change,
  "可为正为负": positive when stock came in, negative when it left.
* ``orderType`` codes listed by that document (``STOCK_ORDER_TYPES``); this WMS uses JYCK (and the other
  outbound types of deliveryorder.create) for shipments, CGRK for purchase receipts by default, and
  QTRK/QTCK (其他入库/其他出库) for count corrections - the document lists no count-specific code.
* ``taobao.qimen.inventory.query`` (apiId 25999) rows may carry batchCode, productDate and
  expireDate: an item kept in batches is answered one row per batch.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime

METHOD_STOCK_CHANGE = "taobao.qimen.stockchange.report"

STOCK_ORDER_TYPES = (
    "JYCK", "HHCK", "BFCK", "PTCK", "DBCK", "B2BRK", "B2BCK", "QTCK",
    "SCRK", "LYRK", "CCRK", "CGRK", "DBRK", "QTRK", "XTRK", "HHRK", "CNJG",
)
"""orderType values of stockchange.report (JYCK=一般交易出库单 ... CGRK=采购入库, XTRK=销退入库, CNJG=仓内加工单)."""

INBOUND_TYPES = ("B2BRK", "SCRK", "LYRK", "CCRK", "CGRK", "DBRK", "QTRK", "XTRK", "HHRK")
"""The 入库 (receipt) types among ``STOCK_ORDER_TYPES``: what ``receive`` accepts."""

RECEIPT_TYPE = "CGRK"
COUNT_GAIN_TYPE, COUNT_LOSS_TYPE = "QTRK", "QTCK"
SELLABLE = "ZP"
NO_EXPIRY = "9999-12-31"


@dataclass
class Lot:
    """One batch of an item in a warehouse (批次): its code, dates (YYYY-MM-DD or "") and quantity."""

    batch_code: str
    quantity: int
    expire_date: str = ""
    product_date: str = ""

    def as_state(self) -> dict[str, object]:
        return {"batch_code": self.batch_code, "quantity": self.quantity, "expire_date": self.expire_date,
                "product_date": self.product_date}


@dataclass(frozen=True)
class Taken:
    """What one stock movement took from (or put into) a batch; ``batch_code`` "" = stock without batch."""

    quantity: int
    batch_code: str = ""
    expire_date: str = ""
    product_date: str = ""


@dataclass(frozen=True)
class StockChange:
    """One ``items/item`` of a stockchange.report; ``quantity`` signed (negative = left the warehouse)."""

    owner_code: str
    warehouse_code: str
    order_code: str
    order_type: str
    out_biz_code: str
    item_code: str
    quantity: int
    item_id: str = ""
    inventory_type: str = SELLABLE
    batch_code: str = ""
    product_date: str = ""
    expire_date: str = ""
    change_time: str = ""


def as_date(value: date | datetime | str | None, what: str) -> str:
    """A date as YYYY-MM-DD ("" for None); raises ValueError for anything else."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValueError(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


def batched_total(lots: Iterable[Lot]) -> int:
    return sum(lot.quantity for lot in lots)


def put(lots: MutableMapping[str, Lot], quantity: int, batch_code: str, expire_date: str = "",
        product_date: str = "") -> Taken:
    """Add ``quantity`` to batch ``batch_code`` (created when new); a batch keeps the dates it was
    received with, so a receipt naming other dates for the same batch code is refused."""
    lot = lots.get(batch_code)
    if lot is None:
        lot = lots[batch_code] = Lot(batch_code, 0, expire_date, product_date)
    elif (expire_date and expire_date != lot.expire_date) or (product_date and product_date != lot.product_date):
        raise ValueError(f"batch {batch_code} was received with expire date {lot.expire_date or '(none)'} "
                         f"and product date {lot.product_date or '(none)'}")
    lot.quantity += quantity
    return Taken(quantity, batch_code, lot.expire_date, lot.product_date)


def take(lots: MutableMapping[str, Lot], on_hand: int, quantity: int) -> list[Taken]:
    """Take ``quantity`` (at most ``on_hand``) first-expired-first-out: batches by expiry date (those
    without one after), then the stock held without a batch. Emptied batches are dropped."""
    if quantity > on_hand:
        raise ValueError(f"cannot take {quantity}: only {on_hand} on hand")
    parts: list[Taken] = []
    remaining = quantity
    for lot in sorted(lots.values(), key=lambda lot: (lot.expire_date or NO_EXPIRY, lot.batch_code)):
        if remaining <= 0:
            break
        share = min(remaining, lot.quantity)
        if share > 0:
            lot.quantity -= share
            remaining -= share
            parts.append(Taken(share, lot.batch_code, lot.expire_date, lot.product_date))
    for code in [code for code, lot in lots.items() if lot.quantity <= 0]:
        del lots[code]
    if remaining > 0:
        parts.append(Taken(remaining))
    return parts


def changes_for(
    taken: Iterable[Taken], *, sign: int, owner_code: str, warehouse_code: str, order_code: str, order_type: str,
    out_biz_code: str, item_code: str, item_id: str, change_time: str,
) -> list[StockChange]:
    """One report item per batch a movement touched, quantity signed with ``sign`` (+1 in, -1 out)."""
    return [
        StockChange(owner_code=owner_code, warehouse_code=warehouse_code, order_code=order_code,
                    order_type=order_type, out_biz_code=out_biz_code, item_code=item_code, item_id=item_id,
                    quantity=sign * part.quantity, batch_code=part.batch_code, product_date=part.product_date,
                    expire_date=part.expire_date, change_time=change_time)
        for part in taken
        if part.quantity
    ]


def stock_change_report_xml(changes: Iterable[StockChange]) -> str:
    """The stockchange.report ``<request>`` body, fields in the document's order, empty optional ones left out."""
    root = ET.Element("request")
    items = ET.SubElement(root, "items")
    for change in changes:
        item = ET.SubElement(items, "item")
        for tag, value in (
            ("ownerCode", change.owner_code),
            ("warehouseCode", change.warehouse_code),
            ("orderCode", change.order_code),
            ("orderType", change.order_type),
            ("outBizCode", change.out_biz_code),
            ("itemCode", change.item_code),
            ("itemId", change.item_id),
            ("inventoryType", change.inventory_type),
            ("quantity", str(change.quantity)),
            ("batchCode", change.batch_code),
            ("productDate", change.product_date),
            ("expireDate", change.expire_date),
            ("changeTime", change.change_time),
        ):
            if value:
                ET.SubElement(item, tag).text = value
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")
