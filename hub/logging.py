"""structlog configuration: JSON in production, readable in a terminal, secrets redacted.

Redaction is by key name, applied to every event, so a developer who logs a dict carrying a
secret or a phone number still does not leak it.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(secret|password|passwd|token|session|sign|authorization|cookie|app_key_secret)", re.I)
_PERSONAL_KEYS = re.compile(r"(mobile|phone|receiver_name|address|street|email)", re.I)


def _mask(value: Any) -> str:
    text = str(value)
    return text[:2] + "****" + text[-2:] if len(text) > 6 else "****"


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key == "event":
            continue
        if _SECRET_KEYS.search(key):
            event[key] = "********"
        elif _PERSONAL_KEYS.search(key):
            event[key] = _mask(event[key])
    return event


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # resolve sys.stderr per logger, not once: test runners and daemons swap it
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
