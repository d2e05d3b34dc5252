"""The small XML dialect Qimen (奇门) speaks: ``<request>`` in, ``<response>`` out.

Qimen's warehouse API (奇门仓储 API, format=xml) nests plain elements with camelCase names, and
every list is a wrapper element holding repeated singular children, e.g.
``<orderLines><orderLine>..</orderLine><orderLine>..</orderLine></orderLines>``. That is all this
module needs to know, so it builds XML by hand (with escaping) and reads it with ElementTree after
refusing any ``<!DOCTYPE``/``<!ENTITY`` (the only way to smuggle entity-expansion or external-entity
attacks into expat).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: N817 - the conventional alias
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

GMT8 = timezone(timedelta(hours=8), "GMT+8")
"""Qimen timestamps ("yyyy-MM-dd HH:mm:ss") are Beijing time."""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: wrapper element -> repeated child element, as in the Qimen warehouse API documents
LIST_ITEM_NAMES: dict[str, str] = {
    "orderLines": "orderLine",
    "packages": "package",
    "items": "item",
    "criteriaList": "criteria",
    "invoices": "invoice",
    "relatedOrders": "relatedOrder",
    "packageMaterialList": "packageMaterial",
    "snList": "sn",
    "batchs": "batch",
    "batches": "batch",
    "deliveryOrders": "deliveryOrder",
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# characters XML 1.0 cannot carry at all (C0 controls except tab/CR/LF, lone surrogates, U+FFFE/F)
_ILLEGAL_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class UnsafeXmlError(ValueError):
    """The document carries a DTD/entity declaration or is not well-formed."""


def item_name(list_name: str) -> str:
    """The element name of one entry of the list wrapper ``list_name``."""
    if list_name in LIST_ITEM_NAMES:
        return LIST_ITEM_NAMES[list_name]
    if list_name.endswith("List") and len(list_name) > 4:
        return list_name[:-4]
    if list_name.endswith("s") and len(list_name) > 1:
        return list_name[:-1]
    return list_name


def format_value(value: Any) -> str:
    """Render a scalar as Qimen expects it (times as GMT+8 "yyyy-MM-dd HH:mm:ss")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(GMT8)
        return value.strftime(TIME_FORMAT)
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _text(value: Any) -> str:
    return escape(_ILLEGAL_XML_CHARS.sub("", format_value(value)))


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.lower().startswith("xml"):
        raise ValueError(f"not a usable XML element name: {name!r}")
    return name


def _write(out: list[str], name: str, value: Any) -> None:
    if value is None:
        return
    _check_name(name)
    if isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, child in value.items():
            _write(out, key, child)
        out.append(f"</{name}>")
    elif isinstance(value, list | tuple):
        child_name = item_name(name)
        out.append(f"<{name}>")
        for entry in value:
            _write(out, child_name, entry)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_text(value)}</{name}>")


def to_xml(root: str, data: Mapping[str, Any]) -> bytes:
    """Serialize ``data`` under ``<root>``: dicts nest, lists become wrapper + singular children.

    ``None`` values are omitted; text is escaped (``& < >``) and stripped of characters XML cannot
    carry. Raises ``ValueError`` for a key that is not an XML name.
    """
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    _write(out, root, dict(data))
    return "".join(out).encode("utf-8")


def parse(body: bytes) -> ET.Element:
    """Parse an XML document, refusing DTDs and entity declarations outright."""
    if not body or not body.strip():
        raise UnsafeXmlError("empty XML document")
    if b"\x00" in body:  # UTF-16/32 would hide a DOCTYPE from the check below; Qimen speaks UTF-8
        raise UnsafeXmlError("XML must be UTF-8 encoded")
    lowered = body.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise UnsafeXmlError("XML with a DOCTYPE or ENTITY declaration is refused")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise UnsafeXmlError(f"malformed XML: {exc}") from None


def text(element: ET.Element | None, path: str, default: str = "") -> str:
    """Stripped text of the first element at ``path`` (ElementTree path), or ``default``."""
    if element is None:
        return default
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def entries(element: ET.Element | None, list_name: str) -> list[ET.Element]:
    """The repeated children of the wrapper ``list_name`` directly under ``element``."""
    if element is None:
        return []
    wrapper = element.find(list_name)
    if wrapper is None:
        return []
    return list(wrapper.findall(item_name(list_name)))


def to_dict(element: ET.Element) -> Any:
    """A plain-data view of an element (for raw payloads in events and logs of the WMS answer)."""
    children = list(element)
    if not children:
        return (element.text or "").strip()
    singular = item_name(element.tag)
    if all(child.tag == singular for child in children) and singular != element.tag:
        return [to_dict(child) for child in children]
    result: dict[str, Any] = {}
    for child in children:
        value = to_dict(child)
        if child.tag in result:
            existing = result[child.tag]
            if not isinstance(existing, list):
                result[child.tag] = existing = [existing]
            existing.append(value)
        else:
            result[child.tag] = value
    return result


def parse_time(value: str) -> datetime | None:
    """Parse a Qimen "yyyy-MM-dd HH:mm:ss" (GMT+8) time; an explicit offset is honoured."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("/", "-"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=GMT8)
    return parsed


def response_xml(flag: str, code: str, message: str, extra: Iterable[tuple[str, str]] = ()) -> str:
    """A ``<response>`` answer as the Qimen SPI expects it from the receiving system."""
    parts = [f"<flag>{_text(flag)}</flag>", f"<code>{_text(code)}</code>", f"<message>{_text(message)}</message>"]
    parts.extend(f"<{_check_name(k)}>{_text(v)}</{k}>" for k, v in extra)
    return '<?xml version="1.0" encoding="utf-8"?><response>' + "".join(parts) + "</response>"
