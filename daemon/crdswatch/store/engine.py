"""Engines per dialect (SQLite WAL, busy timeout, BEGIN IMMEDIATE), alembic at open, portable upserts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

__all__ = ["READ_ONLY", "create_store_engine", "insert_ignore", "migrate", "upsert"]

READ_ONLY = "crdswatch_read_only"  # execution option: a SQLite read needs no write lock
BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every replica that migrates at start.
MIGRATION_LOCK_ID = 0x63726473  # "crds"


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module so _sqlite_begin decides the transaction kind.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction would fail
    # with SQLITE_BUSY_SNAPSHOT (no busy wait) when another writer commits in between.
    kind = "DEFERRED" if conn.get_execution_options().get(READ_ONLY) else "IMMEDIATE"
    conn.exec_driver_sql(f"BEGIN {kind}")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, on one connection and in one transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together would race to CREATE TABLE; the first one migrates.
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> int:
    """INSERT … ON CONFLICT (keys) DO NOTHING on either dialect; returns how many rows went in."""
    if not rows:
        return 0
    stmt = _dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING yields only the inserted rows; cursor.rowcount is -1 for this on psycopg.
    returning = stmt.returning(table.c[keys[0]])
    if len(rows) == 1:
        return len(conn.execute(returning.values(**rows[0])).all())
    return len(conn.execute(returning, list(rows)).all())


def upsert(
    conn: Connection, table: Table, row: dict[str, Any], keys: Sequence[str], update: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns, on either dialect."""
    stmt = _dialect_insert(conn, table).values(**row)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    )


def _dialect_insert(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"crdswatch store supports SQLite and PostgreSQL, not {name}")
