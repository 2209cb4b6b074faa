"""Engines per dialect (SQLite WAL, busy timeout, BEGIN IMMEDIATE), alembic at open, portable upserts.

Alembic is imported only by `migrate`: read-only commands open a `create_read_only_engine` and
compare the stored revision with `SCHEMA_HEAD` instead (importing alembic costs ~0.2 s).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from crdswatch.errors import SchemaNotReady
from crdswatch.store.pgargs import postgres_args
from crdswatch.store.revision import SCHEMA_HEAD

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "READ_ONLY", "SCHEMA_HEAD", "DbTimeouts", "SchemaNotReady", "check_schema", "create_read_only_engine",
    "create_store_engine", "describe_error", "insert_ignore", "migrate", "upsert",
]

READ_ONLY = "crdswatch_read_only"  # execution option: a SQLite read needs no write lock
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every replica that migrates at start.
MIGRATION_LOCK_ID = 0x63726473  # "crds"


@dataclass(frozen=True)
class DbTimeouts:
    """How long one database call may wait, in seconds ([limits] db_connect_timeout, ...).

    `lock` bounds a SQLite wait for another process's write lock (busy timeout) and a PostgreSQL
    row/table lock wait; `statement` bounds one PostgreSQL statement; `connect` bounds opening a
    connection (an unreachable server, or one that accepts and never answers). 0 means no limit.
    """

    connect: float = 5.0
    statement: float = 30.0
    lock: float = 5.0

    @property
    def deadline(self) -> float:
        """The overall bound on one store call as the daemon awaits it (pool wait included)."""
        return self.connect + max(self.statement, self.lock) + 5.0


def create_store_engine(url: str, timeouts: DbTimeouts | None = None) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and write-locking transactions."""
    limits = timeouts or DbTimeouts()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_timeout=limits.deadline,
                             connect_args=_postgres_args(parsed.query, limits))
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    busy_ms = int(limits.lock * 1000)
    engine = create_engine(parsed, connect_args={"timeout": limits.lock})
    event.listen(engine, "connect", lambda conn, _record: _sqlite_connect(conn, busy_ms))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def create_read_only_engine(url: str, timeouts: DbTimeouts | None = None) -> Engine:
    """An engine that cannot write: SQLite opened with mode=ro (no file is created, the WAL is not
    checkpointed into the database on close), PostgreSQL sessions read-only by default."""
    limits = timeouts or DbTimeouts()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_timeout=limits.deadline,
                             connect_args=_postgres_args(parsed.query, limits, read_only=True))
    database = parsed.database or ""
    if not database or database == ":memory:":
        raise SchemaNotReady(f"{url}: an in-memory database has no crdswatch schema to read")
    path = Path(database)
    if not path.is_file():
        raise SchemaNotReady(f"the state database {path} does not exist yet")
    target = f"file:{quote(str(path.resolve()))}?mode=ro"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
        target, uri=True, timeout=limits.lock, isolation_level=None, check_same_thread=False))
    busy_ms = int(limits.lock * 1000)
    event.listen(engine, "connect", lambda conn, _record: conn.execute(f"PRAGMA busy_timeout={busy_ms}"))
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN DEFERRED"))
    return engine


def check_schema(engine: Engine, where: str) -> None:
    """Raise SchemaNotReady unless the database is migrated to exactly `SCHEMA_HEAD`."""
    with engine.connect() as conn:
        revision = None
        if inspect(conn).has_table("alembic_version"):
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision is None:
        raise SchemaNotReady(f"the state database {where} has not been set up (migrated) yet")
    if revision != SCHEMA_HEAD:
        raise SchemaNotReady(f"the state database {where} is at schema revision {revision}, "
                             f"this crdswatch reads {SCHEMA_HEAD}")


def describe_error(exc: BaseException) -> str:
    """The driver's own message on one line, without SQLAlchemy's statement dump and help link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc) or type(exc).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _postgres_args(query: Any, limits: DbTimeouts, *, read_only: bool = False) -> dict[str, Any]:
    """`pgargs.postgres_args` for an SQLAlchemy URL's query and these timeouts."""
    options = str(query["options"]) if query.get("options") else None
    return postgres_args(options, limits.connect, limits.statement, limits.lock, read_only=read_only)


def _sqlite_connect(dbapi_connection: Any, busy_ms: int) -> None:
    # Take BEGIN away from the sqlite3 module so _sqlite_begin decides the transaction kind.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
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
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A schema change may legitimately take longer than one statement of normal work, and
            # runs before the daemon starts (not on its event loop): no statement limit here.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))  # a replica waits for the one migrating
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


def insert_ignore_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str],
                       chunk: int = 1000) -> None:
    """`insert_ignore` for many rows when nobody needs the count: no RETURNING, so the driver's
    executemany takes the rows as they are (a 10,000-subscriber fan-out queued 4x faster), in
    chunks of `chunk` rows so the statements stay bounded. The caller owns the transaction."""
    if not rows:
        return
    stmt = _dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    for start in range(0, len(rows), chunk):
        conn.execute(stmt, list(rows[start:start + chunk]))


def upsert(
    conn: Connection, table: Table, row: dict[str, Any], keys: Sequence[str], update: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns, on either dialect."""
    stmt = _dialect_insert(conn, table).values(**row)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    )


def _dialect_insert(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    from sqlalchemy.dialects import postgresql, sqlite  # writes only: the PostgreSQL package is ~30 ms

    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"crdswatch store supports SQLite and PostgreSQL, not {name}")
