"""Alembic environment: migrates the connection Store.open shares, else `sqlalchemy.url`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from crdswatch.store.schema import metadata


def _migrate(connection: Connection) -> None:
    # render_as_batch lets later ALTERs work on SQLite, which rebuilds tables to alter them.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _migrate(shared)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: neither a shared connection nor sqlalchemy.url was given")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _offline()
else:
    _online()
