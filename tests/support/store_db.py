"""Database fixtures for the store tests: a tmp SQLite file, or a throwaway PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["BACKENDS", "PG_URL", "database_url", "postgres_schema_url"]

PG_URL = os.environ.get("CRDSWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, uniquely named schema, dropped afterwards.

    A schema per test keeps parallel runs (and other suites sharing the database) apart; an
    unreachable server fails the test rather than skipping it, as the contract asks.
    """
    name = f"crdswatch_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection problem must fail loudly
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_URL} is required for the postgresql params: {exc}")
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    else:
        with postgres_schema_url() as url:
            yield url
