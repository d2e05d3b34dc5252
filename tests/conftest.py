"""Shared test setup: quiet, readable logs; the PostgreSQL store. Integration fixtures live in tests/integration."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hub.logging import configure
from store import open_store

configure("console", "WARNING")

PG_URL_VAR = "TONGDAO_TEST_PG_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The URL of a PostgreSQL server the tests may create databases on (``TONGDAO_TEST_PG_URL``,
    e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/tongdao_test``; ``.ci/pg start DIR`` starts a
    throw-away one and prints it). Unset: the test is skipped on a laptop, and fails in CI (``CI`` set),
    where PostgreSQL must be proven, not silently left out."""
    url = os.environ.get(PG_URL_VAR, "").strip()
    if not url:
        message = f"{PG_URL_VAR} is not set (start a server with .ci/pg start DIR and export the URL it prints)"
        if _in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {message}")
        pytest.skip(message)
    return url


@pytest.fixture
def pg_store(pg_url: str, tmp_path: Path) -> Iterator:
    """A migrated :class:`store.Store` on a fresh, empty PostgreSQL database of its own (created on the
    ``pg_url`` server, dropped afterwards), so tests neither see nor disturb each other."""
    name = f"tongdao_t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    store = None
    try:
        store = open_store(url, None, tmp_path)
        yield store
    finally:
        if store is not None:
            store.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

