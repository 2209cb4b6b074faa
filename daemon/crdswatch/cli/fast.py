"""`crdswatch outbox --json` on SQLite without the settings models, typer or SQLAlchemy.

A look at the outbox is what operators and scripts run most; through the full command line it
loads pydantic's settings tree, typer and SQLAlchemy (~0.5 s) to read two queries. Here it reads
[state] database from the TOML file (or CRDSWATCH_STATE__DATABASE), opens the SQLite file
read-only (`mode=ro`: nothing migrated or rewritten) and prints what `cli.ops.outbox` prints.

Anything not handled exactly like the full command goes to the full command line (None is
returned), which reports every error itself: options other than --json, --config/-c, --status
and --limit, a file that is not valid TOML, other CRDSWATCH_STATE* variables, PostgreSQL, a
database that does not exist or is not at the schema revision this crdswatch reads.
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
_TIMES = ("next_attempt_at", "lease_expires_at", "created_at", "sent_at")


def fast_outbox(argv: list[str]) -> int | None:
    """Exit status, or None when the full command line must handle `argv`."""
    options = _options(argv)
    if options is None:
        return None
    config, status, limit = options
    found = _database_path(config)
    if found is None:
        return None
    path, urls = found
    try:
        data = _read(path, status, limit, urls)
    except (sqlite3.Error, ValueError, TypeError):
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


def _database_path(config: Path | None) -> tuple[Path, list[str]] | None:
    """The SQLite file, and the webhook and Slack URLs of the config's [[subscribers]] (secrets
    that `_read` masks in error texts, as the full command does)."""
    import tomllib

    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(("CRDSWATCH_STATE", "CRDSWATCH_SUB"))}
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
        if not isinstance(table, dict) or not isinstance(subscribers, list):
            return None
        url = table.get("database", url)
        for sub in subscribers:
            if not isinstance(sub, dict):
                return None
            secrets.extend(str(sub[key]) for key in ("webhook_url", "slack_webhook") if sub.get(key))
    url = env.get("CRDSWATCH_STATE__DATABASE", url)
    match = _SQLITE_URL.match(url) if isinstance(url, str) else None
    if match is None or match.group(2) in ("", ":memory:"):
        return None
    path = Path(match.group(2))
    return (path, secrets) if path.is_file() else None


def _read(path: Path, status: str | None, limit: int, secrets: list[str]) -> dict[str, Any] | None:
    import json

    from crdswatch.notices.codec import subscriber_from_json
    from crdswatch.redact import redact_error
    from crdswatch.store.records import STATUSES, Delivery
    from crdswatch.store.revision import SCHEMA_HEAD

    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("BEGIN")  # one snapshot for both queries, as the full command's read transaction
        if conn.execute("SELECT version_num FROM alembic_version").fetchall() != [(SCHEMA_HEAD,)]:
            return None
        where, args = ("WHERE status = ?", [status]) if status is not None else ("", [])
        columns = [f for f in Delivery.__dataclass_fields__ if f != "payload"]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM deliveries {where} ORDER BY id DESC LIMIT ?",
                            [*args, limit]).fetchall()
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for name, n in conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status"):
            counts[name] = int(n)
        urls = set(secrets)
        # Only subscribers with a webhook or Slack URL have a secret to mask: both keys contain
        # "webhook", and the stored JSON is written by json.dumps, which leaves ASCII letters as
        # they are. Decoding all 10,000 subscribers of a community list cost 0.4 s.
        for (stored,) in conn.execute("SELECT config FROM subscribers WHERE instr(config, 'webhook') > 0"):
            data = json.loads(stored) if isinstance(stored, str) else {}
            sub = subscriber_from_json(data if isinstance(data, dict) else {})
            urls.update(value for value in (sub.webhook_url, sub.slack_webhook) if value)
    finally:
        conn.close()
    out = []
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        for name in _TIMES:
            if values[name] is not None:
                values[name] = datetime.fromisoformat(values[name]).replace(tzinfo=UTC)
        data = Delivery(payload={}, **values).to_json()
        data.pop("payload")
        for key in ("last_error", "detail"):  # as cli.ops._row_json
            if data.get(key):
                data[key] = redact_error(data[key], sorted(urls))
        out.append(data)
    return {"counts": counts, "rows": out}
