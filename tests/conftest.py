"""Shared fixtures. Integration fixtures (embedded Temporal server) live in tests/integration."""
