"""Pending lookups of the server's affected datasets (program subscriptions), as functions of one Connection.

A lookup is written in the same transaction as its activation, so a crash between the poll and
the first try loses nothing; its attempts and next try live in the row, so a restart resumes the
backoff where it was. Finishing one (done or given up) and queueing its notices is one
transaction, conditional on the attempt count read: two replicas never both queue, and the
notices' idempotency keys make a repeat harmless anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from crdswatch.store.engine import insert_ignore
from crdswatch.store.records import NewDelivery
from crdswatch.store.schema import affected_lookups
from crdswatch.store.upstream import queue

__all__ = ["AffectedLookup", "add_lookup", "due_lookups", "finish_lookup", "get_lookup", "retry_lookup"]


@dataclass(frozen=True)
class AffectedLookup:
    activation_id: int
    source_key: str
    context: str
    previous_context: str
    status: str  # pending | done | gave_up
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    affected: int | None
    created_at: datetime
    updated_at: datetime


def add_lookup(conn: Connection, activation_id: int, source_key: str, context: str, previous: str,
               now: datetime) -> None:
    row = {"activation_id": activation_id, "source_key": source_key, "context": context,
           "previous_context": previous, "status": "pending", "attempts": 0, "next_attempt_at": now,
           "last_error": None, "affected": None, "created_at": now, "updated_at": now}
    insert_ignore(conn, affected_lookups, [row], ["activation_id"])


def get_lookup(conn: Connection, activation_id: int) -> AffectedLookup | None:
    row = conn.execute(select(affected_lookups).where(affected_lookups.c.activation_id == activation_id)
                       ).mappings().first()
    return None if row is None else AffectedLookup(**row)


def due_lookups(conn: Connection, now: datetime, limit: int) -> list[AffectedLookup]:
    """Pending lookups whose next try is due, oldest activation first."""
    rows = conn.execute(
        select(affected_lookups)
        .where(affected_lookups.c.status == "pending", affected_lookups.c.next_attempt_at <= now)
        .order_by(affected_lookups.c.activation_id).limit(limit)
    ).mappings()
    return [AffectedLookup(**r) for r in rows]


def _claim(lookup: AffectedLookup) -> tuple[object, ...]:
    c = affected_lookups.c
    return (c.activation_id == lookup.activation_id, c.status == "pending", c.attempts == lookup.attempts)


def retry_lookup(conn: Connection, lookup: AffectedLookup, next_at: datetime, error: str, now: datetime) -> bool:
    """One more failed try; the next at `next_at`. False when someone else moved it meanwhile."""
    stmt = (update(affected_lookups).where(*_claim(lookup))  # type: ignore[arg-type]
            .values(attempts=lookup.attempts + 1, next_attempt_at=next_at, last_error=error[:2000],
                    updated_at=now))
    return conn.execute(stmt).rowcount == 1


def finish_lookup(
    conn: Connection, lookup: AffectedLookup, status: str, affected: int | None, error: str | None,
    items: Sequence[NewDelivery], now: datetime, max_attempts: int,
) -> int | None:
    """Mark it done or given up and queue its notices together; None (nothing queued) if lost."""
    stmt = (update(affected_lookups).where(*_claim(lookup))  # type: ignore[arg-type]
            .values(status=status, attempts=lookup.attempts + 1, affected=affected,
                    last_error=error[:2000] if error else None, updated_at=now))
    if conn.execute(stmt).rowcount != 1:
        return None
    ref = f"affected:{lookup.context}:{lookup.activation_id}"
    return queue(conn, lookup.source_key, ref, items, now, max_attempts) if items else 0
