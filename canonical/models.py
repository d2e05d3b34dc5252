"""Canonical pydantic v2 models.

Rules that hold everywhere: money is ``Decimal`` in the order's ISO-4217 ``currency``; timestamps
are timezone-aware and normalised to UTC on the way in (a naive timestamp is an error, because a
marketplace in GMT+8 and an ERP in UTC would otherwise disagree silently); enums are lower-case
strings so that histories and JSON stay readable.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from datetime import date as datetime_date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, computed_field, model_validator


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, stored in UTC."""

Amount = Annotated[Decimal, Field(max_digits=18, decimal_places=4)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY")]


class Channel(StrEnum):
    """Sales channels Tongdao knows; the value is used in business keys and search attributes."""

    TAOBAO = "taobao"
    TMALL = "tmall"
    JD = "jd"
    PINDUODUO = "pinduoduo"
    DOUYIN = "douyin"
    KUAISHOU = "kuaishou"
    YOUZAN = "youzan"
    WECHAT = "wechat"
    SHOPIFY = "shopify"
    AMAZON = "amazon"
    EBAY = "ebay"
    POS = "pos"


class OrderStatus(StrEnum):
    """Normalised order status; each connector's mapping spec translates its platform's values."""

    PENDING_PAYMENT = "pending_payment"
    DEPOSIT_PAID = "deposit_paid"  # presale: deposit paid, balance not yet (not releasable)
    PAID = "paid"  # paid, waiting to be shipped
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDING = "refunding"


class LineRefundStatus(StrEnum):
    """Refund state of one order line, whatever the platform calls it.

    ``requested``: the buyer asked and the platform has not decided (the line may still ship, but
    an unreleased order waits); ``refunded``: money returned, the line must not ship.
    """

    NONE = "none"
    REQUESTED = "requested"
    REFUNDED = "refunded"


class OrderTag(StrEnum):
    PRESALE = "presale"
    GIFT = "gift"
    URGENT = "urgent"
    CROSS_BORDER = "cross_border"
    COD = "cod"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=False)


class Address(_Model):
    country: str = Field("CN", description="ISO 3166-1 alpha-2")
    province: str = ""
    city: str = ""
    district: str = ""
    town: str = ""
    street: str = Field("", description="street address / detail line")
    postal_code: str = ""


class Buyer(_Model):
    nick: str = ""
    id: str = ""
    email: str = ""


class Receiver(_Model):
    """Who receives the parcel. ``protected``: the values are the platform's ciphertext, masked text
    or index (Pinduoduo, Douyin, Taobao OAID...): they are kept as the platform gave them, and the
    activity that builds the WMS document asks the source connector for a shippable copy."""

    name: str
    mobile: str = ""
    phone: str = ""
    address: Address
    protected: bool = False


class OrderLine(_Model):
    line_id: str = Field(description="the channel's line id (e.g. Taobao oid)")
    sku: str = Field(min_length=1, description="our SKU code, after cross-reference lookup")
    external_sku_id: str = ""
    title: str = ""
    quantity: int = Field(gt=0)
    unit_price: Amount = Field(ge=0)
    discount: Amount = Field(Decimal("0"), ge=0)
    total: Amount = Field(ge=0, description="amount the buyer pays for this line")
    is_gift: bool = False
    refund_status: LineRefundStatus = LineRefundStatus.NONE


def order_key(channel: str, shop: str, external_id: str) -> str:
    """The business key of an order: unique across every channel and shop."""
    return f"{channel}:{shop}:{external_id}"


def hub_code(key: str) -> str:
    """Our own order number, the same in the WMS and the ERP: short, stable, derived from the key.

    An amended order (a line refunded, the address changed) is re-sent under ``revision_code``.
    """
    digest = hashlib.sha256(key.encode()).digest()[:10]
    return "TD" + base64.b32encode(digest).decode().rstrip("=")


def revision_code(code: str, revision: int) -> str:
    """The WMS/ERP document code of an order's ``revision``-th amendment (0 = the original)."""
    return code if revision <= 0 else f"{code}R{revision}"


def base_code(code: str) -> str:
    """The hub code an amendment's document code was derived from (``TD…R2`` → ``TD…``)."""
    head, sep, tail = code.rpartition("R")
    return head if sep and tail.isdigit() and len(head) == 18 and head.startswith("TD") else code


class Order(_Model):
    """A sales order from any channel."""

    channel: Channel
    shop: str = Field(min_length=1)
    external_id: str = Field(min_length=1)
    status: OrderStatus
    created_at: UtcDatetime
    modified_at: UtcDatetime
    paid_at: UtcDatetime | None = None
    currency: Currency = "CNY"
    item_total: Amount = Field(ge=0, description="sum of line prices before discounts")
    discount_total: Amount = Field(Decimal("0"), ge=0)
    shipping_fee: Amount = Field(Decimal("0"), ge=0)
    total: Amount = Field(ge=0, description="amount paid by the buyer")
    buyer: Buyer = Field(default_factory=Buyer)
    receiver: Receiver
    lines: list[OrderLine] = Field(min_length=1)
    tags: list[OrderTag] = Field(default_factory=list)
    buyer_message: str = ""

    @model_validator(mode="before")
    @classmethod
    def _drop_derived_key(cls, data: object) -> object:
        """``key`` is derived and dumped for readers; accept it back from a dump, never trust it."""
        if isinstance(data, dict) and "key" in data:
            data = {k: v for k, v in data.items() if k != "key"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return order_key(self.channel.value, self.shop, self.external_id)

    @property
    def skus(self) -> list[str]:
        return sorted({line.sku for line in self.lines})


class Sku(_Model):
    code: str = Field(min_length=1)
    title: str = ""
    barcode: str = ""
    category: str = ""
    weight_g: int = Field(0, ge=0)
    unit_price: Amount | None = None
    currency: Currency = "CNY"


class InventoryLevel(_Model):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int = 0
    as_of: UtcDatetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class ShipmentLine(_Model):
    sku: str
    quantity: int = Field(gt=0)
    line_id: str = Field("", description="the channel's line id, when known (for split write-back)")


class Shipment(_Model):
    """A parcel that left a warehouse for an order."""

    order_key: str
    warehouse: str = ""
    carrier_code: str = Field(min_length=1, description="e.g. SF, ZTO, YTO")
    tracking_number: str = Field(min_length=1)
    shipped_at: UtcDatetime
    lines: list[ShipmentLine] = Field(default_factory=list)
    package_id: str = Field("", description="the WMS's package id; tracking number when it has none")
    final: bool = Field(True, description="False for a partial confirmation: more packages will follow")


def utcnow() -> datetime:
    return datetime.now(UTC)


class VoucherLine(_Model):
    """One side of a double entry: an account debited or credited (never both on one line)."""

    account: str = Field(min_length=1, description="account code or name, e.g. 1122 or Assets:Receivable:Taobao")
    debit: Amount = Field(Decimal("0"), ge=0)
    credit: Amount = Field(Decimal("0"), ge=0)
    memo: str = ""

    @model_validator(mode="after")
    def _one_side(self) -> VoucherLine:
        if (self.debit > 0) == (self.credit > 0):
            raise ValueError(f"{self.account}: a line is either a debit or a credit (got {self.debit}/{self.credit})")
        return self


class Voucher(_Model):
    """An accounting voucher (记账凭证): balanced double entry, the order as reference.

    ``number`` is the hub's idempotency key for the posting (one per order and step, e.g.
    ``{hub code}-SHIP``; a reversal ``{hub code}-SHIP-REV``); ``reverses`` names the voucher a
    reversal undoes.
    """

    number: str = Field(min_length=1, max_length=60)
    date: datetime_date
    reference: str = Field(description="the order's business key")
    narration: str = ""
    currency: Currency = "CNY"
    channel: str = ""
    lines: list[VoucherLine] = Field(min_length=2)
    reverses: str = ""

    @model_validator(mode="after")
    def _balanced(self) -> Voucher:
        debit = sum((line.debit for line in self.lines), Decimal("0"))
        credit = sum((line.credit for line in self.lines), Decimal("0"))
        if debit != credit:
            raise ValueError(f"voucher {self.number} does not balance: debit {debit} != credit {credit}")
        return self

    def reversal(self, number: str, on: datetime_date) -> Voucher:
        """The voucher that undoes this one (debits and credits swapped), for a cancellation after posting."""
        return Voucher(number=number, date=on, reference=self.reference, narration=f"reversal of {self.number}",
                       currency=self.currency, channel=self.channel, reverses=self.number,
                       lines=[VoucherLine(account=line.account, debit=line.credit, credit=line.debit,
                                          memo=line.memo) for line in self.lines])
