"""The canonical model: one shape for orders, SKUs, stock and shipments that every connector maps to.

Everything imports it from here; connectors translate to and from it through mapping specs.
"""

from canonical.models import (
    Address,
    Buyer,
    Channel,
    InventoryLevel,
    LineRefundStatus,
    Order,
    OrderLine,
    OrderStatus,
    OrderTag,
    Receiver,
    Shipment,
    ShipmentLine,
    Sku,
    Voucher,
    VoucherLine,
    base_code,
    hub_code,
    order_key,
    revision_code,
)
from canonical.validation import Problem, validate_order

__all__ = [
    "Address",
    "base_code",
    "Buyer",
    "Channel",
    "InventoryLevel",
    "LineRefundStatus",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderTag",
    "Problem",
    "Receiver",
    "Shipment",
    "Voucher",
    "VoucherLine",
    "ShipmentLine",
    "Sku",
    "hub_code",
    "order_key",
    "revision_code",
    "validate_order",
]
