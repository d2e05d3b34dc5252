"""The string most Chinese open platforms sign (TOP, JOS, POP): every parameter but ``sign``, sorted
by name, as ``name + value`` with no separator, empty values left out. Each platform encodes its
values its own way (times, booleans, JSON) and wraps the string in its own hash; those parts stay
in the platform's ``signing`` module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def concat_sorted(params: Mapping[str, Any], encode: Callable[[Any], str | None] = str) -> str:
    """``name1value1name2value2…`` over the sorted names, skipping ``sign`` and empty values."""
    parts: list[str] = []
    for name in sorted(params):
        if not name or name == "sign":
            continue
        value = None if params[name] is None else encode(params[name])
        if value is None or value == "":
            continue
        parts.append(f"{name}{value}")
    return "".join(parts)
