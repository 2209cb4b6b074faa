"""`crdswatch outbox --json` without the settings models, typer or SQLAlchemy.

A look at the outbox is what operators and scripts run most; through the full command line it
loads pydantic's settings tree, typer and SQLAlchemy (~0.5-1 s) to read two queries. Here it reads
[state] database from the TOML file (or CRDSWATCH_STATE__DATABASE), opens the database read-only
(SQLite with `mode=ro`; PostgreSQL with psycopg alone, `default_transaction_read_only`, and the
default [limits] db_* timeouts): nothing is migrated or rewritten, and it prints what
`cli.ops.outbox` prints.

Anything not handled exactly like the full command goes to the full command line (None is
returned), which reports every error itself: options other than --json, --config/-c, --status
and --limit, a file that is not valid TOML, other CRDSWATCH_STATE* variables, [limits] db_* keys
(or their variables), a PostgreSQL URL with query options or without psycopg, a database that
cannot be opened, does not exist or is not at the schema revision this crdswatch reads.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["fast_outbox"]

_DEFAULT_PATHS = (Path("config/crdswatch.toml"), Path("/etc/crdswatch/crdswatch.toml"))  # as config.loader
_DEFAULT_DATABASE = "sqlite:////var/lib/crdswatch/state.db"  # as config.models.StateSettings
_SQLITE_URL = re.compile(r"^sqlite(\+pysqlite)?:///([^?]+)$")
_PG_URL = re.compile(r"^postgresql(\+psycopg)?://([^?#]*)(?:\?([^#]*))?$")
_TIMES = ("next_attempt_at", "lease_expires_at", "created_at", "sent_at")


def fast_outbox(argv: list[str]) -> int | None:
    """Exit status, or None when the full command line must handle `argv`."""
    options = _options(argv)
    if options is None:
        return None
    config, status, limit = options
    found = _database(config)
    if found is None:
        return None
    where, urls = found
    errors: tuple[type[Exception], ...] = (*_database_errors(where), ValueError, TypeError)
    try:
        data = _read(where, status, limit, urls)
    except errors:
        return None  # the full command says what is wrong
    if data is None:
        return None
    import json

    from crdswatch.render.clean import clean_data

    indent = 2 if sys.stdout.isatty() else None  # as cli.diffcmd.emit_json
    sys.stdout.write(json.dumps(clean_data(data), indent=indent, ensure_ascii=False) + "\n")
    return 0


def _options(argv: list[str]) -> tuple[Path | None, str | None, int] | None:
    if not argv or argv[0] != "outbox" or "--json" not in argv:
        return None
    config: Path | None = None
    status: str | None = None
    limit = 50
    seen: set[str] = set()
    rest = argv[1:]
    while rest:
        option = rest.pop(0)
        name = "--config" if option == "-c" else option
        if name in seen:
            return None
        seen.add(name)
        if name == "--json":
            continue
        if name not in ("--config", "--status", "--limit") or not rest:
            return None
        value = rest.pop(0)
        if name == "--config":
            config = Path(value)
        elif name == "--status":
            if value not in ("pending", "leased", "sent", "dead"):
                return None
            status = value
        else:
            if not value.isdigit():
                return None
            limit = int(value)
    return config, status, limit


def _database(config: Path | None) -> tuple[Path | str, list[str]] | None:
    """The SQLite file or the PostgreSQL conninfo, and the webhook and Slack URLs of the config's
    [[subscribers]] (secrets that `_read` masks in error texts, as the full command does)."""
    import tomllib

    env = {k.upper(): v for k, v in os.environ.items()
           if k.upper().startswith(("CRDSWATCH_STATE", "CRDSWATCH_SUB", "CRDSWATCH_LIMITS__DB"))}
    if set(env) - {"CRDSWATCH_STATE__DATABASE"}:
        return None
    if config is None:
        config = next((p for p in _DEFAULT_PATHS if p.is_file()), None)
    elif not config.is_file():
        return None
    url = _DEFAULT_DATABASE
    secrets: list[str] = []
    if config is not None:
        try:
            with config.open("rb") as handle:
                document = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None
        table, subscribers = document.get("state", {}), document.get("subscribers", [])
        limits = document.get("limits", {})
        if not isinstance(table, dict) or not isinstance(subscribers, list) or not isinstance(limits, dict):
            return None
        if any(str(key).startswith("db_") for key in limits):
            return None  # the database timeouts are the full command's to apply
        url = table.get("database", url)
        for sub in subscribers:
            if not isinstance(sub, dict):
                return None
            secrets.extend(str(sub[key]) for key in ("webhook_url", "slack_webhook") if sub.get(key))
    url = env.get("CRDSWATCH_STATE__DATABASE", url)
    if not isinstance(url, str):
        return None
    postgres = _PG_URL.match(url)
    if postgres is not None:
        return "postgresql://" + postgres.group(2) + (f"?{postgres.group(3)}" if postgres.group(3) else ""), secrets
    match = _SQLITE_URL.match(url)
    if match is None or match.group(2) in ("", ":memory:"):
        return None
    path = Path(match.group(2))
    return (path, secrets) if path.is_file() else None


class _PgError(Exception):
    """psycopg is missing or cannot connect: the full command reports it."""


def _database_errors(where: Path | str) -> tuple[type[Exception], ...]:
    if isinstance(where, Path):
        return (sqlite3.Error,)
    try:
        import psycopg
    except ImportError:
        return (_PgError,)
    return (_PgError, psycopg.Error)


def _connect(where: Path | str) -> Any:
    """A read-only DB-API connection with `.execute`; `_read` writes its placeholders."""
    if isinstance(where, Path):
        return sqlite3.connect(f"file:{quote(str(where.resolve()))}?mode=ro", uri=True, timeout=30)
    try:
        import psycopg
    except ImportError as exc:
        raise _PgError(str(exc)) from exc
    from urllib.parse import parse_qsl

    from crdswatch.limits import DEFAULT_LIMITS as lim
    from crdswatch.store.pgargs import postgres_args

    # As store.engine's read-only engine: the URL's query items are psycopg's keyword arguments
    # (SQLAlchemy passes them so), its options kept and the default timeouts added to them.
    conninfo, _, query = where.partition("?")
    kwargs: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kwargs.update(postgres_args(kwargs.pop("options", None), lim.db_connect_timeout, lim.db_statement_timeout,
                                lim.db_lock_timeout, read_only=True))
    try:
        # autocommit: `_read` opens its own transaction (psycopg would otherwise open one itself).
        return psycopg.connect(conninfo, autocommit=True, **kwargs)
    except psycopg.Error as exc:
        raise _PgError(str(exc)) from exc


def _read(where: Path | str, status: str | None, limit: int, secrets: list[str]) -> dict[str, Any] | None:
    import json

    from crdswatch.notices.codec import subscriber_from_json
    from crdswatch.store.records import DELIVERY_FIELDS, STATUSES, Delivery
    from crdswatch.store.revision import SCHEMA_HEAD

    mark = "?" if isinstance(where, Path) else "%s"
    conn = _connect(where)
    try:
        # One snapshot for both queries, as the full command's read transaction.
        conn.execute("BEGIN" if isinstance(where, Path) else "BEGIN ISOLATION LEVEL REPEATABLE READ")
        if conn.execute("SELECT version_num FROM alembic_version").fetchall() != [(SCHEMA_HEAD,)]:
            return None
        where_sql, args = (f"WHERE status = {mark}", [status]) if status is not None else ("", [])
        columns = [f for f in DELIVERY_FIELDS if f != "payload"]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM deliveries {where_sql} ORDER BY id DESC LIMIT {mark}",
                            [*args, limit]).fetchall()
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for name, n in conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status"):
            counts[name] = int(n)
        urls = set(secrets)
        # Only subscribers with a webhook or Slack URL have a secret to mask: both keys contain
        # "webhook", and the stored JSON is written by json.dumps, which leaves ASCII letters as
        # they are (see store.state.secret_urls). Decoding all 10,000 subscribers of a community
        # list cost 0.4 s.
        for (stored,) in conn.execute("SELECT config FROM subscribers WHERE CAST(config AS TEXT) LIKE '%webhook%'"):
            data = json.loads(stored) if isinstance(stored, str) else stored
            sub = subscriber_from_json(data if isinstance(data, dict) else {})
            urls.update(value for value in (sub.webhook_url, sub.slack_webhook) if value)
    finally:
        conn.close()
    out = []
    shown_urls = sorted(urls)
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        for name in _TIMES:
            value = values[name]
            if value is not None:  # SQLite gives the text, psycopg a naive datetime; both are UTC
                value = datetime.fromisoformat(value) if isinstance(value, str) else value
                values[name] = value.replace(tzinfo=UTC)
        out.append(Delivery(payload={}, **values).to_shown_json(shown_urls))
    return {"counts": counts, "rows": out}
