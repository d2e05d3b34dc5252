"""Connectors: one package per platform, each declaring a :class:`connectors.base.Connector` kind.

``load_kinds()`` imports every sub-package so that its ``@connector_kind`` registration runs; a new
platform is added by creating ``connectors/<platform>/`` and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from connectors.base import KINDS, Connector


def load_kinds() -> dict[str, type[Connector]]:
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")
    return KINDS


def connector_class(kind: str) -> type[Connector]:
    kinds = load_kinds()
    if kind not in kinds:
        from connectors.errors import ConfigurationError

        raise ConfigurationError(f"unknown connector kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return kinds[kind]
