"""Personal data at rest: field-level encryption of orders' receivers and buyers in the hub store.

A live run used to leave every buyer's name, phone and address in clear text in ``tongdao.db``
(``raw_documents.payload`` and ``orders.canonical``). Now each personal field is replaced, inside the
same JSON, by a marker holding its ciphertext, sealed with the hub's secret key ring
(``store.secrets.SecretBox``, MultiFernet), and opened only when an activity reads the document
through ``Store.get_raw`` / ``Store.get_order``. Everything else (ids, amounts, SKUs, statuses)
stays readable, so the store is still a useful record for operators and auditors.

**Which fields.** One rule for every platform, by field name, with the redaction policy's
vocabulary (:func:`canonical.redact.is_personal`), so a field is encrypted at rest exactly when it
is masked in logs:

* a key that is personal (``receiver_mobile``, ``buyer_nick``, ``email``, ``consigneeInfo``,
  ``shippingAddress``, ``recipient``, ``post_addr``, ``receiver``...): its value is encrypted; a
  dict or list under it is personal as a whole (a ``receiver``'s province too), leaf by leaf;
* a bare ``name`` (``firstName``, ``displayName``...) is personal when its dict hangs under a
  person (``customer``, ``buyer``...): Shopify's ``customer.displayName``; a top-level ``name`` is
  not (Shopify's order ``name`` is the order number ``#1001``);
* :data:`EXTRA_PERSONAL`: platform fields whose name says nothing (JD's ``pin``, the buyer account);
* not the merchant's own fields (``seller_nick``, ``shop_name``): a business is not a natural person.

Booleans, ``None`` and empty strings are left as they are: a flag (``receiver.protected``) or an
absence is not personal, and the activities read the flag. A platform's own ciphertext (Pinduoduo,
Douyin, JD) is encrypted again, deliberately: whoever holds the shop's app credentials (in this
same store) could have it decrypted by the platform.

**Format.** A sealed field is ``{"$enc": "v1:<Fernet token>"}`` where the token encrypts the JSON of
the original value (so a number comes back a number). A dict marker, not a prefixed string, so a
reader that forgot to decrypt fails loudly (a dict where a string belongs) instead of sending a
ciphertext to a warehouse as a phone number. A purged field is ``{"$purged": "<date>"}`` and reads
back as ``""``.

**Dedupe.** ``Store.put_raw`` hashes the *clear* payload before sealing it: Fernet tokens are
randomised (a fresh IV each time), so a hash of the sealed payload would never repeat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from canonical.redact import PERSON_QUALIFIERS, is_personal, redact, words
from store.secrets import SecretBox
from store.tables import OrderRow, RawDocument, TaskRow

ENC = "$enc"
PURGED = "$purged"
VERSION = "v1:"
PURGED_VALUE = ""
"""What a purged field reads as: empty, as if the platform had not given it."""

EXTRA_PERSONAL = frozenset({"pin", "buyer_pin", "open_id_buyer_nick"})
"""Platform fields that are personal although no word of their name says so (JD's buyer ``pin``)."""

_BUSINESS_OWNERS = frozenset({"seller", "shop", "store", "merchant"})
_PERSON_PARENTS = PERSON_QUALIFIERS | frozenset({"customer", "customers", "buyer", "buyers"})


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is an encrypted field marker."""
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get(ENC), str)


def is_purged(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and PURGED in value


def _marker(value: Any) -> bool:
    return is_sealed(value) or is_purged(value)


def personal_key(key: str, parent: str | None) -> bool:
    """Whether the field ``key`` of a dict found under ``parent`` (None at the top) holds personal data."""
    if key.lower() in EXTRA_PERSONAL:
        return True
    parts = words(key)
    if parts and parts[0] in _BUSINESS_OWNERS:
        return False  # the merchant's own fields (seller_nick, the shop's name): a business, not a person
    person_parent = parent is not None and any(p in _PERSON_PARENTS for p in words(parent))
    if parts in (["name"], ["names"]):
        return person_parent  # a bare name is a person's only under one (Shopify's order "name" is "#1001")
    if is_personal(key):
        return True
    return bool(parts) and parts[-1] in ("name", "names") and person_parent


def _sensitive_leaf(value: Any) -> bool:
    """A leaf worth sealing: text and numbers (a phone may be a number); not flags, not absences."""
    if isinstance(value, bool) or value is None:
        return False
    return (isinstance(value, str) and value != "") or isinstance(value, int | float)


def _walk(value: Any, leaf: Callable[[Any], Any], parent: str | None = None, inside: bool = False) -> Any:
    """A copy of ``value`` where every personal leaf (or marker) went through ``leaf``."""
    if _marker(value):
        return leaf(value) if inside else value
    if isinstance(value, Mapping):
        return {k: _walk(v, leaf, str(k), inside or personal_key(str(k), parent)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, leaf, parent, inside) for v in value]
    if inside and _sensitive_leaf(value):
        return leaf(value)
    return value


class FieldCipher:
    """Seals and opens the personal fields of a JSON document with the hub's key ring."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    # -- one value ------------------------------------------------------------------------------------
    def seal_value(self, value: Any) -> Any:
        if _marker(value):
            return value  # already sealed (a document read back and stored again) or purged
        token = self.box.encrypt(json.dumps(value, ensure_ascii=False).encode())
        return {ENC: VERSION + token}

    def open_value(self, value: Any) -> Any:
        if is_purged(value):
            return PURGED_VALUE
        if not is_sealed(value):
            return value  # stored before encryption existed: clear, as it was
        text: str = value[ENC]
        if not text.startswith(VERSION):
            raise ValueError(f"unknown personal-data marker version {text.split(':', 1)[0]!r}")
        return json.loads(self.box.decrypt(text[len(VERSION):]))

    # -- whole documents ------------------------------------------------------------------------------
    def seal(self, document: Any) -> Any:
        """A copy of ``document`` with its personal fields encrypted (idempotent on sealed fields)."""
        return _walk(document, self.seal_value)

    def open(self, document: Any) -> Any:
        """A copy of ``document`` with its personal fields in clear (purged ones empty)."""
        return _walk(document, self.open_value)

    def masked(self, document: Any) -> Any:
        """What an auditor may see: the clear document through the one redaction policy (``138****78``)."""
        return redact(self.open(document))

    def rotate(self, document: Any, counts: dict[str, int]) -> Any:
        """``document`` with every sealed field re-encrypted with the first key of the ring, and every
        personal field still in clear (stored before encryption existed) sealed; ``counts`` gets
        ``fields_rotated`` and ``fields_sealed``."""
        def leaf(value: Any) -> Any:
            if is_purged(value):
                return value
            if is_sealed(value):
                counts["fields_rotated"] = counts.get("fields_rotated", 0) + 1
                token = self.box.rotate(value[ENC][len(VERSION):], "personal data").decode()
                return {ENC: VERSION + token}
            counts["fields_sealed"] = counts.get("fields_sealed", 0) + 1
            return self.seal_value(value)

        return _walk(document, leaf)

    @staticmethod
    def purge(document: Any, when: datetime | None = None) -> tuple[Any, int]:
        """``document`` with every personal field (sealed or clear) replaced by the purge marker, and
        how many were purged (0: nothing personal left)."""
        stamp = (when or datetime.now(UTC)).date().isoformat()
        count = 0

        def leaf(value: Any) -> Any:
            nonlocal count
            if is_purged(value):
                return value
            count += 1
            return {PURGED: stamp}

        return _walk(document, leaf), count




# -- retention: purging the personal data of finished orders ---------------------------------------
FINAL_STAGES = frozenset({"completed", "closed"})
"""Stages an order's workflow ends in (``workflows/order/workflow.py``: ``_finish``)."""

FINAL_OUTCOMES = frozenset({
    "shipped", "split_shipments", "released", "closed_unpaid", "cancelled_before_shipment", "shipped_outside_hub",
    "cancelled_by_wms",
})
"""Outcomes after which the hub never sends the receiver anywhere again. ``after_sales`` is final only
once no task of the order is open: a person handling the return may still need the address."""

_AGE = re.compile(r"^\s*(\d+)\s*([dhwm]?)\s*$", re.I)
_UNITS = {"": 1.0, "d": 1.0, "w": 7.0, "h": 1 / 24, "m": 30.0}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``6m`` (30-day months) or a bare number of days → a timedelta."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 2w or 6m")
    return timedelta(days=int(match.group(1)) * _UNITS[match.group(2).lower()])


class PersonalDataQueries:
    """Methods of :class:`store.Store` over every stored document: purge and key rotation. They work in
    batches (one transaction each), so a large store is never loaded whole and an interrupted run can
    simply be run again."""

    cipher: FieldCipher
    BATCH = 500

    def session(self) -> AbstractContextManager[Session]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    def purgeable_orders(self, older_than: datetime) -> list[tuple[str, str, str]]:
        """(key, source connector, external id) of finished orders last changed before ``older_than``."""
        with self.session() as s:
            rows = s.execute(
                select(OrderRow.key, OrderRow.source_connector, OrderRow.external_id, OrderRow.outcome)
                .where(OrderRow.stage.in_(FINAL_STAGES), OrderRow.updated_at < older_than,
                       OrderRow.outcome.in_(FINAL_OUTCOMES | {"after_sales"}))
                .order_by(OrderRow.key)).all()
            open_tasks = set(s.scalars(select(TaskRow.order_key).where(TaskRow.status != "done")))
        return [(key, connector, ext) for key, connector, ext, outcome in rows
                if outcome != "after_sales" or key not in open_tasks]

    def purge_personal_data(self, older_than: datetime, dry_run: bool = False) -> dict[str, int]:
        """Replace every personal field of finished orders older than ``older_than`` (their canonical
        order and all their raw documents) by the purge marker. Counts what was (or, with ``dry_run``,
        would be) purged; purging twice finds nothing the second time."""
        counts = {"orders_eligible": 0, "orders_purged": 0, "raw_documents_purged": 0, "fields_purged": 0}
        when = datetime.now(UTC)
        eligible = self.purgeable_orders(older_than)
        counts["orders_eligible"] = len(eligible)
        for start in range(0, len(eligible), self.BATCH):
            batch = eligible[start:start + self.BATCH]
            with self.session() as s:
                for key, connector, external_id in batch:
                    row = s.get(OrderRow, key)
                    if row is not None and row.canonical is not None:
                        purged, n = FieldCipher.purge(row.canonical, when)
                        if n:
                            counts["orders_purged"] += 1
                            counts["fields_purged"] += n
                            if not dry_run:
                                row.canonical = purged
                    for raw in s.scalars(select(RawDocument).filter_by(connector=connector,
                                                                       external_id=external_id)):
                        purged, n = FieldCipher.purge(raw.payload, when)
                        if n:
                            counts["raw_documents_purged"] += 1
                            counts["fields_purged"] += n
                            if not dry_run:
                                raw.payload = purged
        return counts

    def rotate_personal_data(self) -> dict[str, int]:
        """Re-encrypt every sealed personal field with the first key of the ring (and seal those still
        in clear, stored before encryption existed)."""
        counts = {"raw_documents": 0, "orders": 0, "fields_rotated": 0, "fields_sealed": 0}
        last_id = 0
        while True:
            with self.session() as s:
                raws = list(s.scalars(select(RawDocument).where(RawDocument.id > last_id)
                                      .order_by(RawDocument.id).limit(self.BATCH)))
                for raw in raws:
                    before = dict(counts)
                    rotated = self.cipher.rotate(raw.payload, counts)
                    if counts != before:
                        raw.payload = rotated
                        counts["raw_documents"] += 1
            if len(raws) < self.BATCH:
                break
            last_id = raws[-1].id
        last_key = ""
        while True:
            with self.session() as s:
                orders = list(s.scalars(select(OrderRow).where(OrderRow.key > last_key)
                                        .order_by(OrderRow.key).limit(self.BATCH)))
                for order in orders:
                    if order.canonical is None:
                        continue
                    before = dict(counts)
                    rotated = self.cipher.rotate(order.canonical, counts)
                    if counts != before:
                        order.canonical = rotated
                        counts["orders"] += 1
            if len(orders) < self.BATCH:
                break
            last_key = orders[-1].key
        return counts


__all__ = ["ENC", "FINAL_OUTCOMES", "FINAL_STAGES", "PURGED", "FieldCipher", "PersonalDataQueries", "is_purged",
           "is_sealed", "parse_age", "personal_key"]
