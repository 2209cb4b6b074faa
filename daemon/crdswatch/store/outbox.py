"""The durable outbox: lease-based claiming, outcomes with backoff, dead letters, operator views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from sqlalchemy import Connection, Row, and_, func, literal, null, or_, select, update

from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError
from crdswatch.store.records import DELIVERY_FIELDS, STATUSES, Attempt, Delivery, DeliveryStatus, RetryPolicy
from crdswatch.store.schema import attempts, deliveries

__all__ = [
    "claim",
    "counts",
    "get_delivery",
    "list_attempts",
    "mark_failed",
    "mark_sent",
    "mark_sent_many",
    "outbox_rows",
    "release",
    "renew",
    "requeue_dead",
]

_d = deliveries.c
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
_FIELDS = [_d[name] for name in DELIVERY_FIELDS]  # the columns of a Delivery, in its field order


def claim(
    conn: Connection, worker_id: str, now: datetime, lease_seconds: float, limit: int
) -> list[Delivery]:
    """Lease up to `limit` due rows to `worker_id`: pending and due, or leased with an expired lease.

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets replicas claim side by side without blocking or
    overlapping; on SQLite the caller's BEGIN IMMEDIATE serialises claimers instead.
    """
    due = or_(
        and_(_d.status == "pending", _d.next_attempt_at <= now),
        and_(_d.status == "leased", _d.lease_expires_at <= now),
    )
    candidates = conn.execute(
        select(_d.id, _d.status, _d.attempts, _d.max_attempts, _d.lease_owner, _d.claimed_at)
        .where(due)
        .order_by(_d.next_attempt_at, _d.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [row.id for row in candidates if _still_claimable(conn, row, now)]
    if not ids:
        return []
    lease = {"lease_owner": worker_id, "lease_expires_at": now + timedelta(seconds=lease_seconds)}
    rows = conn.execute(  # the claimed rows as they are now, in one statement
        update(deliveries)
        .where(_d.id.in_(ids))
        .values(status="leased", claimed_at=now, updated_at=now, **lease)
        .returning(*_FIELDS)
    ).all()
    return sorted((Delivery(*r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))


def renew(
    conn: Connection, worker_id: str, delivery_ids: Sequence[int], now: datetime, lease_seconds: float
) -> list[int]:
    """Extend the lease of the rows `worker_id` still holds to `now + lease_seconds`; their ids.

    The drain's heartbeat: a row missing from the answer is no longer ours (it was recorded, or
    its lease ran out and another replica claimed it) and must not be sent by us. A lease that ran
    out but nobody re-claimed is still ours, as for recording an outcome (`_owned`).
    """
    if not delivery_ids:
        return []
    stmt = (
        update(deliveries)
        .where(_d.id.in_(list(delivery_ids)), _d.status == "leased", _d.lease_owner == worker_id)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(_d.id)
    )
    return sorted(int(i) for i in conn.execute(stmt).scalars())


def _still_claimable(conn: Connection, row: AnyRow, now: datetime) -> bool:
    """Count an expired lease as an attempt (the worker may have sent before dying); dead-letter at max.

    Without this, a notice that crashes its worker every time would be retried forever.
    """
    if row.status != "leased":
        return True
    attempt = row.attempts + 1
    error = f"lease of worker {row.lease_owner} expired before it reported an outcome"
    _record_attempt(conn, row.id, attempt, row.lease_owner, row.claimed_at, now, "lease_expired", error)
    exhausted = attempt >= row.max_attempts
    values: dict[str, Any] = {"attempts": attempt, "updated_at": now}
    if exhausted:
        values |= {"status": "dead", "last_error": error, **_NO_LEASE}
    conn.execute(update(deliveries).where(_d.id == row.id).values(**values))
    return not exhausted


def mark_sent(conn: Connection, delivery_id: int, worker_id: str, now: datetime, detail: str | None) -> bool:
    """Record success; False when the lease was lost (another worker owns the row now)."""
    row = _owned(conn, delivery_id, worker_id)
    if row is None:
        return False
    attempt = row.attempts + 1
    conn.execute(
        update(deliveries)
        .where(_d.id == delivery_id)
        .values(status="sent", attempts=attempt, sent_at=now, detail=detail, updated_at=now, **_NO_LEASE)
    )
    _record_attempt(conn, delivery_id, attempt, worker_id, row.claimed_at, now, "sent", None, detail)
    return True


def mark_sent_many(
    conn: Connection, delivery_ids: Sequence[int], worker_id: str, now: datetime, detail: str | None = None
) -> list[int]:
    """`mark_sent` for many rows in two statements; returns the ids whose lease was still ours.

    The rows are marked sent only where the lease is still `worker_id`'s (in the UPDATE itself),
    and their attempt log rows are copied from them by the database (INSERT ... SELECT), not
    built row by row here: a fan-out records thousands of these.
    """
    owned = [int(i) for i in conn.execute(
        update(deliveries)
        .where(_d.id.in_(list(delivery_ids)), _d.status == "leased", _d.lease_owner == worker_id)
        .values(status="sent", attempts=_d.attempts + 1, sent_at=now, detail=detail, updated_at=now, **_NO_LEASE)
        .returning(_d.id)
    ).scalars()]
    if not owned:
        return []
    columns = ["delivery_id", "attempt", "worker_id", "started_at", "finished_at", "outcome", "error", "detail"]
    copied = select(_d.id, _d.attempts, literal(worker_id, attempts.c.worker_id.type), _d.claimed_at,
                    literal(now, attempts.c.finished_at.type), literal("sent", attempts.c.outcome.type),
                    null(), literal(detail, attempts.c.detail.type)).where(_d.id.in_(owned))
    conn.execute(attempts.insert().from_select(columns, copied))
    return owned


def mark_failed(
    conn: Connection, delivery_id: int, worker_id: str, now: datetime, error: Exception, policy: RetryPolicy
) -> DeliveryStatus | None:
    """Record a failure; returns the row's new status, or None when the lease was lost.

    Only PermanentDeliveryError is final at once: any other exception (a transient error or an
    unexpected bug) is retried with backoff until max_attempts, then dead-lettered.
    """
    row = _owned(conn, delivery_id, worker_id)
    if row is None:
        return None
    attempt = row.attempts + 1
    code = getattr(error, "code", None)  # the peer's reply code or HTTP status (errors.DeliveryError)
    text = f"{type(error).__name__}" + (f" [{code}]" if isinstance(code, int) else "") + f": {error}"
    permanent = isinstance(error, PermanentDeliveryError)
    values: dict[str, Any] = {"attempts": attempt, "last_error": text, "updated_at": now, **_NO_LEASE}
    status: DeliveryStatus
    if permanent or attempt >= row.max_attempts:
        status = "dead"
    else:
        status = "pending"
        retry_after = error.retry_after if isinstance(error, TransientDeliveryError) else None
        values["next_attempt_at"] = now + policy.delay(attempt, retry_after)
    conn.execute(update(deliveries).where(_d.id == delivery_id).values(status=status, **values))
    outcome = "permanent" if permanent else "transient"
    _record_attempt(conn, delivery_id, attempt, worker_id, row.claimed_at, now, outcome, text)
    return status


def _owned(conn: Connection, delivery_id: int, worker_id: str) -> AnyRow | None:
    # Holding the lease is what entitles a worker to report; an expired but not yet re-claimed
    # lease still counts, since nobody else can have sent in between.
    return conn.execute(
        select(_d.attempts, _d.max_attempts, _d.claimed_at)
        .where(_d.id == delivery_id, _d.status == "leased", _d.lease_owner == worker_id)
        .with_for_update()
    ).first()


def _record_attempt(
    conn: Connection,
    delivery_id: int,
    attempt: int,
    worker_id: str | None,
    started_at: datetime | None,
    now: datetime,
    outcome: str,
    error: str | None,
    detail: str | None = None,
) -> None:
    conn.execute(
        attempts.insert().values(
            delivery_id=delivery_id,
            attempt=attempt,
            worker_id=worker_id or "",
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            error=error,
            detail=detail,
        )
    )


def release(conn: Connection, worker_id: str, now: datetime) -> int:
    """Hand the worker's unfinished leases back (graceful shutdown); they stay due, attempts unchanged."""
    stmt = (
        update(deliveries)
        .where(_d.status == "leased", _d.lease_owner == worker_id)
        .values(status="pending", updated_at=now, **_NO_LEASE)
    )
    return conn.execute(stmt).rowcount


def defer(conn: Connection, delivery_id: int, worker_id: str, until: datetime, now: datetime) -> bool:
    """Put a claimed row back untried until `until` (a paused channel): no attempt is spent."""
    stmt = (
        update(deliveries)
        .where(_d.id == delivery_id, _d.status == "leased", _d.lease_owner == worker_id)
        .values(status="pending", next_attempt_at=until, updated_at=now, **_NO_LEASE)
    )
    return conn.execute(stmt).rowcount == 1


def requeue_dead(conn: Connection, delivery_id: int, now: datetime) -> bool:
    """Give a dead letter a fresh set of attempts, due now; the last error is kept for reference."""
    stmt = (
        update(deliveries)
        .where(_d.id == delivery_id, _d.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now, **_NO_LEASE)
    )
    return conn.execute(stmt).rowcount == 1


def outbox_rows(conn: Connection, status: DeliveryStatus | None, limit: int) -> list[Delivery]:
    """Newest first, optionally of one status; for `crdswatch outbox`."""
    stmt = select(deliveries).order_by(_d.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(_d.status == status)
    return [_delivery(r) for r in conn.execute(stmt)]


def counts(conn: Connection) -> dict[str, int]:
    """Rows per status, every status present (zero when empty)."""
    result: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status, n in conn.execute(select(_d.status, func.count()).group_by(_d.status)):
        result[status] = int(n)
    return result


def get_delivery(conn: Connection, delivery_id: int) -> Delivery | None:
    row = conn.execute(select(deliveries).where(_d.id == delivery_id)).first()
    return None if row is None else _delivery(row)


def list_attempts(conn: Connection, delivery_id: int) -> list[Attempt]:
    stmt = select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
    return [Attempt(**{f.name: m[f.name] for f in fields(Attempt)}) for m in conn.execute(stmt).mappings()]


def _delivery(row: AnyRow) -> Delivery:
    m = row._mapping  # DELIVERY_FIELDS computed once: fields() per row was a tenth of `outbox`
    return Delivery(**{name: m[name] for name in DELIVERY_FIELDS})
