"""Start-up failures, in one place: each becomes ONE line (what failed, where, what to do), exit 2.

The daemon wraps each start-up step in `step(where, settings)`; whatever that step raises comes
out as a `StartupError` whose message `explain` wrote. `crdswatch run` prints it (`report`) as
one line on stderr — plain text, or one JSON object under `--log-format json` — with no traceback.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from crdswatch.errors import ConfigError, CrdswatchError, DatabaseError, StartupError
from crdswatch.redact import redact_url

__all__ = ["EXIT_CODE", "explain", "report", "step"]

EXIT_CODE = 2

_BIND = {
    errno.EADDRINUSE: "address already in use (another crdswatch, or another program, listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
}


@contextmanager
def step(where: str, settings: Any) -> Iterator[None]:
    """Turn any failure of the start-up step `where` (database, smtp, http, inbound, daemon) into a
    StartupError."""
    try:
        yield
    except StartupError:
        raise
    except Exception as exc:  # every start-up failure gets its one line
        raise StartupError(explain(exc, settings, where)) from exc


def explain(exc: BaseException, settings: Any, where: str = "daemon") -> str:
    """One line for `exc`, raised while starting step `where`: what, where, what to do."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if where in ("http", "inbound") and isinstance(exc, OSError):
        return _bind_line(exc, settings, where)
    ca_file = _ca_file(settings)
    if ca_file is not None and isinstance(exc, OSError) and (where == "smtp" or _names_file(exc, ca_file)):
        return (f"[smtp] ca_file {str(ca_file)!r}: {_os_reason(exc)}; point it at a readable PEM file of CA "
                "certificates, or remove the key to trust the system's")
    if where == "database" or _is_database(exc):
        return _database_line(exc, settings)
    return f"cannot start: {type(exc).__name__}: {_one_line(str(exc))}"


def _bind_line(exc: OSError, settings: Any, where: str) -> str:
    if where == "http":
        at, key = settings.http.listen, "[http] listen"
    else:
        at, key = settings.inbound.listen, "[inbound] listen"
    reason = _BIND.get(exc.errno or 0, _one_line(exc.strerror or str(exc)))
    return f"{key} {at}: cannot listen on port {at.rpartition(':')[2]}: {reason}; stop what holds it or change {key}"


def _database_line(exc: BaseException, settings: Any) -> str:
    from crdswatch.store.engine import describe_error

    url = settings.state.database
    if isinstance(exc, OSError):
        reason = _os_reason(exc) + (f" ({exc.filename})" if exc.filename else "")
    else:
        reason = describe_error(exc)
    if url.startswith("sqlite"):
        hint = "check that the folder exists (or can be created) and is writable by the daemon's user"
    else:
        hint = "check the URL and that the database server is running and reachable"
    return f"[state] database {redact_url(url)!r}: cannot open the state database: {_one_line(reason)}; {hint}"


def _is_database(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseError | sqlite3.Error):
        return True
    return type(exc).__module__.startswith(("sqlalchemy", "psycopg", "alembic"))


def _ca_file(settings: Any) -> Path | None:
    smtp = getattr(settings, "smtp", None)
    return getattr(smtp, "ca_file", None) if smtp is not None else None


def _names_file(exc: BaseException, path: Path) -> bool:
    return isinstance(exc, OSError) and exc.filename is not None and Path(str(exc.filename)) == path


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a CA certificate file ({_one_line(exc.reason or str(exc))})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(str(exc))


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "unknown error"


def report(message: str, fmt: str | None) -> NoReturn:
    """Print the one start-up failure line on stderr (a JSON object under json) and exit 2."""
    if fmt == "json":
        line = json.dumps({"event": "cannot start", "error": message, "level": "critical", "logger": "crdswatch",
                           "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")})
    else:
        line = f"crdswatch: error: {message}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CODE)


def config_line(exc: CrdswatchError) -> str:
    """A configuration error is already one line naming the key path."""
    return _one_line(str(exc))
