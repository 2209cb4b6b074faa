"""libpq arguments of crdswatch's PostgreSQL sessions, without SQLAlchemy: the store's engines and
`cli.fast` (which reads the outbox with psycopg alone) open their sessions with the same ones."""

from __future__ import annotations

from typing import Any

__all__ = ["postgres_args"]


def postgres_args(url_options: str | None, connect: float, statement: float, lock: float, *,
                  read_only: bool = False) -> dict[str, Any]:
    """libpq parameters: connect_timeout, and server-side statement/lock timeouts as startup options.

    Options already in the URL (`url_options`, e.g. -csearch_path=...) are kept: these would
    replace them otherwise. 0 means no limit. `read_only`: sessions read-only by default.
    """
    args: dict[str, Any] = {}
    if connect > 0:
        args["connect_timeout"] = max(1, round(connect))  # libpq takes whole seconds (min 2 in effect)
    options = [url_options] if url_options else []
    if statement > 0:
        options.append(f"-c statement_timeout={int(statement * 1000)}")
    if lock > 0:
        options.append(f"-c lock_timeout={int(lock * 1000)}")
    if read_only:
        options.append("-c default_transaction_read_only=on")
    if options:
        args["options"] = " ".join(options)
    # A server that stops answering mid-query (host gone, cable cut): the kernel tells us.
    args.update(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
    return args
