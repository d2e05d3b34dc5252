"""Shared test setup: quiet, readable logs. Integration fixtures live in tests/integration."""

from hub.logging import configure

configure("console", "WARNING")
