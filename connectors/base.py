"""How a connector is declared: a settings model, a secrets model, and a few methods per capability.

A connector kind is a subclass of :class:`Connector` decorated with :func:`connector_kind`, living
in its own package under ``connectors/`` (``connectors/taobao/`` ...). The engine only speaks to
the capability methods below, so adding a platform never touches workflows or the registry.

Connectors speak in *platform documents* (plain dicts as the platform sends or expects them);
translating those to and from the canonical model is the job of the mapping specs in
``mappings/``. That keeps field choices declarative and previewable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from canonical import InventoryLevel, Shipment, Voucher
from connectors.errors import ConfigurationError


class ConnectorSettings(BaseModel):
    """Non-secret settings. Every kind accepts ``base_url`` to point it at a sandbox or simulator."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    rate_limit_per_s: float | None = Field(None, gt=0, description="client-side cap; None = platform default")
    timeout_s: float = Field(30.0, gt=0)


class ConnectorSecrets(BaseModel):
    """Secret values; every field must be a ``SecretStr`` so it never prints in clear."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class RawRecord(BaseModel):
    """One record as the platform sent it, plus the keys the engine needs without parsing it.

    ``error`` is set (and ``payload`` is what the listing gave) when this one record could not be
    fetched for a permanent reason: the engine parks it in quarantine and the window moves on.
    """

    external_id: str
    modified_at: datetime | None = None
    payload: dict[str, Any]
    error: str | None = None


class IngestDefaults(BaseModel):
    """How a kind's incremental pull is best run; a flow may override each value per source.

    ``lag``: stay this far behind now (platforms that index ``modified`` late need more);
    ``overlap``: re-read this much before the cursor; ``chunk``: one activity per chunk;
    ``window``: the engine calls ``pull_orders`` per window of this width and checkpoints after
    each one, so a retried activity resumes instead of starting the chunk again.
    """

    lag: timedelta = timedelta(seconds=5)
    overlap: timedelta = timedelta(minutes=5)
    chunk: timedelta = timedelta(hours=6)
    window: timedelta = timedelta(hours=1)


class PushResult(BaseModel):
    """What an inbound push (webhook / message) carried, and what to answer the platform."""

    events: list[dict[str, Any]] = Field(default_factory=list)
    status_code: int = 200
    media_type: str = "application/json"
    body: str = ""


class CancelResult(BaseModel):
    """Outcome of cancelling a document on a target system (idempotent: a repeat is ``already_cancelled``).

    ``refused``: the target will not cancel (the parcel left, the bill was audited and cannot be
    reversed); ``message`` says what it answered. ``not_found``: the target never had it.
    """

    outcome: Literal["cancelled", "already_cancelled", "refused", "not_found"]
    message: str = ""

    @property
    def done(self) -> bool:
        return self.outcome in ("cancelled", "already_cancelled", "not_found")


class OutboundState(BaseModel):
    """What a WMS says about one outbound order (``deliveryorder.query`` and the like).

    ``status`` is normalised: accepted (created, not shipped), partially_shipped, shipped,
    cancelled, or other (``raw_status`` says which); ``shipments`` has one entry per package.
    """

    status: Literal["accepted", "partially_shipped", "shipped", "cancelled", "other"]
    raw_status: str = ""
    shipments: list[Shipment] = Field(default_factory=list)


class WriteBackResult(BaseModel):
    """Outcome of writing a shipment back to the channel.

    ``taken``: the platform recorded it now; otherwise it was already recorded. ``tracking_on_platform``
    lists the tracking numbers the platform shows for the order (when it had to look): one that
    differs from ours is a conflict a person must look at.
    """

    taken: bool
    tracking_on_platform: list[str] = Field(default_factory=list)

    def conflicts_with(self, tracking_number: str) -> bool:
        return (not self.taken and bool(self.tracking_on_platform)
                and tracking_number not in self.tracking_on_platform)


class CreateResult(BaseModel):
    """Outcome of an idempotent create on the target system."""

    external_id: str = Field(description="the target's id for the created document")
    number: str = ""
    created: bool = Field(True, description="False when the document already existed (a retry)")


class Connector:
    """Base class. Subclasses set ``kind``, ``Settings``, ``Secrets`` and implement capabilities."""

    kind: ClassVar[str]
    title: ClassVar[str] = ""
    #: the canonical ``Channel`` value of this kind's orders (part of the business key); "" = kind
    channel: ClassVar[str] = ""
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    Secrets: ClassVar[type[ConnectorSecrets]] = ConnectorSecrets
    #: capability names this kind implements, e.g. {"orders", "shipments"}; filled by connector_kind
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, settings: ConnectorSettings, secrets: ConnectorSecrets) -> None:
        self.name = name
        self.settings = settings
        self.secrets = secrets

    @classmethod
    def from_config(cls, name: str, settings: dict[str, Any], secrets: dict[str, Any]) -> Connector:
        try:
            return cls(name, cls.Settings.model_validate(settings), cls.Secrets.model_validate(secrets))
        except Exception as exc:  # pydantic.ValidationError, with the field named
            raise ConfigurationError(f"connector {name!r} ({cls.kind}): {exc}") from exc

    async def aclose(self) -> None:
        """Release the HTTP clients this connector holds (attributes, or values of dict attributes,
        that are :class:`~connectors.http.ApiClient`); called when a worker shuts down or a
        registration changes."""
        from connectors.http import ApiClient

        for value in list(vars(self).values()):
            for candidate in (value.values() if isinstance(value, dict) else (value,)):
                if isinstance(candidate, ApiClient):
                    await candidate.aclose()

    async def test(self) -> str:
        """Make one cheap authenticated call; return a human summary or raise a ConnectorError."""
        raise NotImplementedError

    def shop_of(self, payload: dict[str, Any]) -> str:
        """Our name for the shop a pulled document belongs to (part of the order's business key).

        Default: the ``shop`` setting, else the connector's name; platforms whose documents name
        the shop override this.
        """
        return str(getattr(self.settings, "shop", "") or self.name)

    def redact_secrets(self, text: str, *extra: str) -> str:
        """``text`` with every secret of this connector (and ``extra`` values) replaced by ``***``:
        platforms echo request parameters in their error messages, which end up in logs."""
        values = [secret(v) for v in vars(self.secrets).values() if isinstance(v, SecretStr)]
        for value in (*values, *extra):
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def describe(self) -> dict[str, Any]:
        """Settings as shown to people: secrets masked."""
        return {
            "name": self.name,
            "kind": self.kind,
            "capabilities": sorted(self.capabilities),
            "settings": self.settings.model_dump(mode="json"),
            "secrets": {k: "********" for k in type(self.secrets).model_fields},
        }


class OrderSource:
    """Capability 'orders': pull orders incrementally and fetch one in full."""

    ingest_defaults: ClassVar[IngestDefaults] = IngestDefaults()

    async def pull_orders(self, since: datetime, until: datetime) -> AsyncIterator[list[RawRecord]]:
        """Yield pages of full order documents modified in [since, until), each page as soon as it
        is read (the engine hands it over and heartbeats before asking for the next one)."""
        raise NotImplementedError
        yield []  # pragma: no cover

    async def get_order(self, external_id: str) -> RawRecord:
        raise NotImplementedError


class ShipmentSink:
    """Capability 'shipments': write a shipment's tracking number back to the channel."""

    async def push_shipment(self, external_order_id: str, shipment: Shipment,
                            line_ids: list[str] | None = None) -> WriteBackResult:
        """Record one package. ``line_ids``: the channel's line ids in this package when the order
        ships in several packages (split shipment); None = the whole order. Idempotent."""
        raise NotImplementedError


class OutboundOrderTarget:
    """Capability 'outbound_orders': a WMS creates an outbound (delivery) order."""

    async def create_outbound_order(self, document: dict[str, Any]) -> CreateResult:
        """Idempotent by the document's own order code."""
        raise NotImplementedError

    async def get_shipment(self, order_code: str) -> Shipment | None:
        """Poll for the shipment of an outbound order (fallback when no push arrives)."""
        state = await self.get_outbound(order_code)
        return state.shipments[0] if state is not None and state.shipments else None

    async def get_outbound(self, order_code: str) -> OutboundState | None:
        """The WMS's view of an outbound order, None when it does not know the code."""
        raise NotImplementedError

    async def cancel_outbound_order(self, order_code: str, warehouse: str = "", reason: str = "") -> CancelResult:
        """Cancel (intercept) an outbound order; ``refused`` when it already left the warehouse."""
        raise NotImplementedError


class InventorySource:
    """Capability 'inventory': read stock levels."""

    async def query_inventory(self, skus: list[str], warehouse: str) -> list[InventoryLevel]:
        raise NotImplementedError


class ListingRef(BaseModel):
    """Where one merchant SKU (our SKU code, the platform's 商家编码 / outer id / seller SKU) is
    sold on a channel, in the platform's own ids: what its stock write needs.

    ``item_id``/``sku_id`` are the platform's listing and SKU ids (Taobao ``num_iid``/``sku_id``,
    Pinduoduo ``goods_id``/``sku_id``, JD ``wareId``/``skuId``, Douyin ``product_id``/``sku_id``,
    Shopify inventory item gid, Amazon the seller SKU); ``extra`` holds anything else a platform
    needs (Shopify ``location_id``, Amazon ``product_type``...).
    """

    sku: str
    item_id: str = ""
    sku_id: str = ""
    extra: dict[str, str] = Field(default_factory=dict)


class StockWrite(BaseModel):
    """Outcome of an absolute stock write: what the channel shows now and, when it told, before."""

    quantity: int
    previous: int | None = None


class StockWriteRequest(BaseModel):
    """One absolute write of a batch (see :meth:`StockTarget.set_stocks`)."""

    listing: ListingRef
    quantity: int
    key: str
    previous: int | None = None


class StockTarget:
    """Capability 'stock': show an absolute sellable quantity for a merchant SKU on a channel.

    The hub keeps the one stock pool and pushes each channel the quantity its allocation policy
    gives; a connector only translates that into the platform's documented inventory API.
    Writes are absolute (full update, never a delta), so a retried write cannot count twice.
    """

    #: stock writes per second the platform's documented limit leaves room for (None: the
    #: connector's own request limiter is enough); the hub paces each channel to it, across workers
    stock_writes_per_s: ClassVar[float | None] = None
    #: how many SKUs one write call may carry (platforms with a batch write: Shopify's
    #: ``inventorySetQuantities`` takes many quantities for one cost)
    max_stock_batch: ClassVar[int] = 1

    async def find_listing(self, sku: str) -> ListingRef | None:
        """The platform's ids for the merchant SKU code ``sku``; None when this channel does not
        sell it (nothing is pushed there). The hub caches the answer."""
        raise NotImplementedError

    async def set_stock(self, listing: ListingRef, quantity: int, *, key: str,
                        previous: int | None = None) -> StockWrite:
        """Show ``quantity`` (absolute, >= 0). ``key`` is the hub's idempotency key for this write
        (sent where the platform takes one); ``previous`` is the quantity the hub last pushed, for
        platforms with compare-and-set (Shopify ``changeFromQuantity``): when the channel moved
        meanwhile (a sale there), the connector re-reads and writes again rather than failing."""
        raise NotImplementedError

    async def get_stock(self, listing: ListingRef) -> int:
        """The sellable quantity the channel shows now (for the reconciliation)."""
        raise NotImplementedError

    async def set_stocks(self, writes: list[StockWriteRequest]) -> list[StockWrite | Exception]:
        """Several writes, one result (or the error) per write, in order. Default: one call each;
        a platform with a batch write overrides this and raises ``max_stock_batch``."""
        out: list[StockWrite | Exception] = []
        for w in writes:
            try:
                out.append(await self.set_stock(w.listing, w.quantity, key=w.key, previous=w.previous))
            except Exception as exc:  # noqa: BLE001 - handed back per write, the caller classifies
                out.append(exc)
        return out


class Notification(BaseModel):
    """A message for people (operations groups, approvers; the buyer where a channel allows it).

    ``key`` is the hub's idempotency key (order + step): robots take no such key, so the hub records
    what it sent and never sends the same key twice; connectors may log it."""

    key: str
    title: str
    text: str = Field(description="markdown body")
    at_mobiles: list[str] = Field(default_factory=list, description="people to @-mention (robots that support it)")


class NotificationSink:
    """Capability 'notify': deliver a :class:`Notification` (a DingTalk or WeCom group robot...)."""

    async def notify(self, message: Notification) -> str:
        """Send it; returns the platform's answer in a few words. Raises a ConnectorError on failure."""
        raise NotImplementedError


class SalesOutboundTarget:
    """Capability 'sales_outbound': an ERP records goods leaving against its sales order (销售出库单),
    created from the sales order the way the ERP documents it (K3Cloud: push SAL_SaleOrder →
    SAL_OUTSTOCK)."""

    async def create_sales_outbound(self, sales_number: str, number: str, lines: list[dict[str, Any]],
                                    shipped_at: datetime) -> CreateResult:
        """Idempotent by ``number`` (the hub's outbound number, e.g. ``{hub code}-OUT{n}``);
        ``lines``: ``{"sku", "quantity"}`` shipped in this package."""
        raise NotImplementedError

    async def cancel_sales_outbound(self, number: str, reason: str = "") -> CancelResult:
        raise NotImplementedError


class VoucherTarget:
    """Capability 'vouchers': post a balanced accounting voucher (Kingdee GL_VOUCHER, a Beancount file...)."""

    async def post_voucher(self, voucher: Voucher) -> CreateResult:
        """Idempotent by ``voucher.number``: posting it again answers ``created=False``."""
        raise NotImplementedError


class SalesDocumentTarget:
    """Capability 'sales_documents': an ERP records a sales order."""

    async def create_sales_document(self, document: dict[str, Any], number: str) -> CreateResult:
        """Idempotent by ``number`` (our bill number)."""
        raise NotImplementedError

    async def cancel_sales_document(self, number: str, reason: str = "") -> CancelResult:
        """Void the sales document ``number`` the way the ERP documents it; idempotent."""
        raise NotImplementedError


class ReceiverSource:
    """Capability 'receivers': the platform returns receivers encrypted or masked (Pinduoduo,
    Douyin, JD, Taobao OAID) and documents a way to get a shippable copy (``pdd.open.decrypt.batch``,
    ``order.batchDecrypt``...).

    Called only inside the activity that builds the WMS document, never stored or logged: the
    store keeps the platform's ciphertext or index (``Receiver.protected``).
    """

    async def shippable_receiver(self, payload: dict[str, Any]) -> dict[str, str]:
        """Clear receiver fields for one order's raw payload: any of ``name``, ``mobile``,
        ``phone``, ``province``, ``city``, ``district``, ``town``, ``street``, ``postal_code``."""
        raise NotImplementedError


class PushReceiver:
    """Capability 'push': verify and parse an inbound push on ``POST /hooks/{connector}``.

    Events are dicts the engine understands:

    * ``{"type": "shipment", "order_code", "shipment": Shipment as JSON}`` - one per package;
      ``shipment.final`` is False for a partial confirmation (more packages follow);
    * ``{"type": "outbound_status", "order_code", "status": "cancelled"|"closed"|..., "raw_status"}``
      - the WMS cancelled or closed the outbound order;
    * ``{"type": "order_changed", "external_id", "event_id", "record": RawRecord as JSON or None}`` -
      a marketplace says an order changed (Shopify webhooks, Douyin messages...); without
      ``record`` the engine fetches the order with ``get_order``. ``event_id`` deduplicates
      redeliveries;
    * ``{"type": "stock_change", "change_id", "warehouse", "sku", "quantity", "order_code",
      "order_type", "inventory_type", "batch_code", "expire_date", "changed_at"}`` - a WMS reports a
      stock movement (Qimen ``stockchange.report``): ``quantity`` is the signed change of on-hand
      (negative for an outbound), ``order_type`` the WMS's code (JYCK sale outbound, CGRK purchase
      receipt, XTRK sales return, QTRK/QTCK other in/out...), ``change_id`` deduplicates redeliveries, ``expire_date``
      (ISO date) is set for perishable batches.
    """

    async def handle_push(self, headers: dict[str, str], query: dict[str, str], body: bytes) -> PushResult:
        raise NotImplementedError


_CAPABILITIES: dict[type, str] = {
    OrderSource: "orders",
    ShipmentSink: "shipments",
    OutboundOrderTarget: "outbound_orders",
    InventorySource: "inventory",
    SalesDocumentTarget: "sales_documents",
    PushReceiver: "push",
    ReceiverSource: "receivers",
    StockTarget: "stock",
    NotificationSink: "notify",
    SalesOutboundTarget: "sales_outbound",
    VoucherTarget: "vouchers",
}

KINDS: dict[str, type[Connector]] = {}


def connector_kind(kind: str, title: str = ""):  # noqa: ANN201 - decorator
    """Register a connector class under ``kind`` (the ``kind:`` of a registration file)."""

    def decorate(cls: type[Connector]) -> type[Connector]:
        cls.kind = kind
        cls.title = title or kind
        cls.channel = cls.__dict__.get("channel") or kind
        cls.capabilities = frozenset(name for base, name in _CAPABILITIES.items() if issubclass(cls, base))
        KINDS[kind] = cls
        return cls

    return decorate


def default_order_mapping(kind: str) -> str:
    """The mapping spec for a kind's orders when nobody names one: ``mappings/specs/{kind}_order.yaml``."""
    return f"{kind}_order"


def secret(value: SecretStr | None) -> str:
    """Reveal a secret only where it is used (signing), never where it is printed."""
    return value.get_secret_value() if value is not None else ""
