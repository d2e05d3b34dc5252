"""Cross-reference lookups: translate a platform's identifiers (a Taobao sku_id) into ours (a SKU code).

The engine only needs ``get(table, key)``; where the tables live (the hub store, a file, a test's
dict) is the caller's business. ``DictLookups`` is the in-memory implementation the workflows and
the CLI use over tables read from the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["DictLookups", "Lookups"]


@runtime_checkable
class Lookups(Protocol):
    """Cross-reference tables: ``get`` returns the mapped value, or None when there is no entry."""

    def get(self, table: str, key: str) -> str | None: ...


class DictLookups:
    """In-memory tables ``{table: {key: value}}``; keys and values compare as text.

    The tables are used as given, not copied: a caller that refreshes them builds new dicts
    (as the workflows' cache does), so a mapping in progress never sees a half-updated table.
    """

    __slots__ = ("_tables",)

    def __init__(self, tables: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._tables: Mapping[str, Mapping[str, str]] = tables if tables is not None else {}

    def get(self, table: str, key: str) -> str | None:
        entries = self._tables.get(table)
        if entries is None:
            return None
        value = entries.get(key)
        return None if value is None else str(value)

    def has_table(self, table: str) -> bool:
        """Lets the engine say "table not loaded" rather than "no entry" (a different fix)."""
        return table in self._tables

    @property
    def tables(self) -> list[str]:
        return sorted(self._tables)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(entries)}" for name, entries in sorted(self._tables.items()))
        return f"DictLookups({sizes})"
