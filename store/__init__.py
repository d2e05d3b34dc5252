"""The hub's own store (SQLite by default, PostgreSQL in production) via SQLAlchemy 2 + Alembic."""

from store.db import Store, open_store

__all__ = ["Store", "open_store"]
