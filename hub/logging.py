"""structlog configuration: JSON in production, readable in a terminal, secrets redacted.

Redaction follows the one policy in :mod:`canonical.redact`, applied to every event and at every
depth, so a developer who logs a dict carrying a secret or a phone number still does not leak it;
the message text, tracebacks and the standard library's log lines (Temporal's SDK, uvicorn) are
scrubbed of phone numbers and ``secret=value`` pairs too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from canonical.redact import redact_value, scrub_text

# structlog's own bookkeeping: left alone (exc_info is a tuple the next processor formats)
_PASS_THROUGH = frozenset({"level", "timestamp", "logger", "exc_info", "stack_info", "_record", "_from_structlog"})
_TEXT = frozenset({"event", "exception", "stack"})
_STDLIB_FORMAT = "%(levelname)s %(name)s: %(message)s"


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every field as :func:`canonical.redact.redact_value` allows it to be shown."""
    for key, value in list(event.items()):
        if key in _PASS_THROUGH:
            continue
        if key in _TEXT and isinstance(value, str):
            event[key] = scrub_text(value)
        else:
            event[key] = redact_value(key, value)
    return event


class ScrubbingFormatter(logging.Formatter):
    """Standard-library records (the Temporal SDK's activity failures, uvicorn) carry free text:
    scrub the formatted line, traceback included, before it is written."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # JSON: format the traceback first, so that its text is scrubbed as well
            *([structlog.processors.format_exc_info, redact] if use_json
              else [redact, structlog.processors.StackInfoRenderer()]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # resolve sys.stderr per logger, not once: test runners and daemons swap it
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=_STDLIB_FORMAT)
    for handler in logging.getLogger().handlers:  # basicConfig's own (it adds none when the root has some)
        if type(handler.formatter) is logging.Formatter and handler.formatter._fmt == _STDLIB_FORMAT:
            handler.setFormatter(ScrubbingFormatter(_STDLIB_FORMAT))
