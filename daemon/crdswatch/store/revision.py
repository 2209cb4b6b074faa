"""The schema revision this crdswatch reads, importable without SQLAlchemy (cli.fast checks it too)."""

from __future__ import annotations

__all__ = ["SCHEMA_HEAD"]

# The newest revision in migrations/versions (tests/test_store.py checks it against alembic's head):
# what a read-only open requires, without loading alembic to find out.
SCHEMA_HEAD = "0005_token_narrowing"
