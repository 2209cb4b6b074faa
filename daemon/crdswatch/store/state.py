"""Cursor compare-and-set, seen activations and subscribers, as functions of one Connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, String, cast, delete, select, update

from crdswatch.model import Activation, SubscriberConfig
from crdswatch.notices.codec import subscriber_from_json, subscriber_to_json
from crdswatch.store.engine import insert_ignore, insert_ignore_many, upsert
from crdswatch.store.records import (
    Cursor,
    NewActivation,
    NewDelivery,
    SeenActivation,
    Subscriber,
    activation_ref,
    idempotency_key,
)
from crdswatch.store.schema import activations, cursors, deliveries, subscribers

__all__ = [
    "get_activations",
    "get_cursor",
    "get_subscriber",
    "get_subscribers",
    "list_activations",
    "list_subscribers",
    "record_activation",
    "record_activations",
    "remove_subscriber",
    "upsert_subscriber",
]


def get_cursor(conn: Connection, source_key: str) -> Cursor | None:
    row = conn.execute(select(cursors).where(cursors.c.source_key == source_key)).mappings().first()
    return None if row is None else Cursor(**row)


def record_activation(
    conn: Connection,
    source_key: str,
    activation: Activation,
    previous_context: str | None,
    diff: dict[str, Any] | None,
    new_deliveries: Sequence[NewDelivery],
    expected: Cursor | None,
    now: datetime,
    max_attempts: int,
    affected: bool = False,
) -> bool:
    """Advance the cursor, store the activation and queue the deliveries; False if another won.

    `affected`: program subscribers wait on the server's affected datasets for this switch; the
    lookup is written here, with the activation (store.affected). The caller owns the
    transaction, so a failure at any step leaves nothing behind.
    """
    item = NewActivation(activation, previous_context, diff, new_deliveries, affected)
    return record_activations(conn, source_key, [item], expected, now, max_attempts) is not None


def record_activations(
    conn: Connection,
    source_key: str,
    items: Sequence[NewActivation],
    expected: Cursor | None,
    now: datetime,
    max_attempts: int,
) -> Cursor | None:
    """`record_activation` for each of `items` in order, the cursor moving from one to the next.

    Returns the cursor as the last one left it, or None (nothing written) when the first
    compare-and-set finds the cursor is no longer `expected`: another replica got there first.
    Once it has won, the transaction holds the cursor's row (or SQLite's write lock) until it
    ends, so the later ones cannot lose. The caller owns the transaction.
    """
    cursor = expected
    for item in items:
        if not _advance_cursor(conn, source_key, item.activation, cursor, now):
            if cursor is not expected:  # cannot happen in one transaction; never commit half of it
                raise RuntimeError(f"{source_key}: the cursor moved within one transaction")
            return None
        version = 1 if cursor is None else cursor.version + 1
        cursor = Cursor(source_key, item.activation.context, item.activation.date, version, now)
        _record_one(conn, source_key, item, now, max_attempts)
    return cursor


def _record_one(conn: Connection, source_key: str, item: NewActivation, now: datetime, max_attempts: int) -> None:
    activation = item.activation
    activation_id = _insert_activation(conn, source_key, activation, item.previous_context, item.diff, now)
    rows = [_delivery_row(source_key, activation, d, activation_id, now, max_attempts) for d in item.deliveries]
    insert_ignore_many(conn, deliveries, rows, ["idempotency_key"])
    if item.affected and item.previous_context:
        from crdswatch.store.affected import add_lookup

        add_lookup(conn, activation_id, source_key, activation.context, item.previous_context, now)


def _advance_cursor(
    conn: Connection, source_key: str, activation: Activation, expected: Cursor | None, now: datetime
) -> bool:
    values = {"context": activation.context, "activation_date": activation.date, "updated_at": now}
    if expected is None:
        # First sighting of this source: the unique key makes exactly one inserter win.
        row = {"source_key": source_key, "version": 1, **values}
        return insert_ignore(conn, cursors, [row], ["source_key"]) == 1
    stmt = (
        update(cursors)
        .where(cursors.c.source_key == source_key, cursors.c.version == expected.version)
        .values(version=cursors.c.version + 1, **values)
    )
    return conn.execute(stmt).rowcount == 1


def _insert_activation(
    conn: Connection,
    source_key: str,
    activation: Activation,
    previous_context: str | None,
    diff: dict[str, Any] | None,
    now: datetime,
) -> int:
    row = {
        "source_key": source_key,
        "context": activation.context,
        "activation_date": activation.date,
        "description": activation.description,
        "previous_context": previous_context,
        "diff": diff,
        "seen_at": now,
    }
    insert_ignore(conn, activations, [row], ["source_key", "context", "activation_date"])
    # Re-read rather than trust RETURNING: on a conflict the existing row's id is the one we want.
    # The date is part of the identity: a revert re-activates an old context, and that is news too.
    found = conn.execute(
        select(activations.c.id).where(
            activations.c.source_key == source_key,
            activations.c.context == activation.context,
            activations.c.activation_date == activation.date,
        )
    ).scalar_one()
    return int(found)


def _delivery_row(
    source_key: str, activation: Activation, d: NewDelivery, activation_id: int, now: datetime, max_attempts: int
) -> dict[str, Any]:
    # Keyed by context *and* activation date, so re-activating a context (a revert) is a new notice.
    return {
        "idempotency_key": idempotency_key(activation_ref(activation), source_key, d.subscriber, d.channel),
        "activation_id": activation_id,
        "source_key": source_key,
        "context": activation.context,
        "subscriber": d.subscriber,
        "channel": d.channel,
        "payload": d.payload,
        "status": "pending",
        "attempts": 0,
        "max_attempts": max_attempts,
        # A digest waits for its slot; immediate notices are due at once.
        "next_attempt_at": d.not_before or now,
        "created_at": now,
        "updated_at": now,
    }


def list_activations(conn: Connection, source_key: str | None, limit: int) -> list[SeenActivation]:
    stmt = select(activations).order_by(activations.c.id.desc()).limit(limit)
    if source_key is not None:
        stmt = stmt.where(activations.c.source_key == source_key)
    return [SeenActivation(**m) for m in conn.execute(stmt).mappings()]


def activations_of_context(conn: Connection, context: str) -> list[SeenActivation]:
    """Every source's seen activation of `context`, newest first."""
    stmt = select(activations).where(activations.c.context == context).order_by(activations.c.id.desc())
    return [SeenActivation(**m) for m in conn.execute(stmt).mappings()]


def get_activations(conn: Connection, ids: Sequence[int]) -> dict[int, SeenActivation]:
    stmt = select(activations).where(activations.c.id.in_(list(ids)))
    return {m["id"]: SeenActivation(**m) for m in conn.execute(stmt).mappings()}


def get_subscribers(conn: Connection, names: Sequence[str]) -> dict[str, Subscriber]:
    found: dict[str, Subscriber] = {}
    for start in range(0, len(names), 500):  # bounded IN lists
        stmt = select(subscribers).where(subscribers.c.name.in_(list(names[start:start + 500])))
        found.update((m["name"], _subscriber(m)) for m in conn.execute(stmt).mappings())
    return found


def upsert_subscriber(conn: Connection, name: str, config: SubscriberConfig, now: datetime) -> None:
    row = {"name": name, "config": subscriber_to_json(config), "created_at": now, "updated_at": now}
    upsert(conn, subscribers, row, ["name"], ["config", "updated_at"])


def remove_subscriber(conn: Connection, name: str) -> bool:
    return conn.execute(delete(subscribers).where(subscribers.c.name == name)).rowcount == 1


def list_subscribers(conn: Connection) -> list[Subscriber]:
    rows = conn.execute(select(subscribers).order_by(subscribers.c.name)).mappings()
    return [_subscriber(m) for m in rows]


def secret_urls(conn: Connection) -> set[str]:
    """The webhook and Slack URLs of the stored subscribers (secrets that outputs mask)."""
    # Only the subscribers that have one are decoded: both keys contain "webhook", and the stored
    # JSON is written by json.dumps, which leaves ASCII letters as they are. Decoding every
    # subscriber of a 10,000-member list cost `crdswatch outbox` about a second.
    stmt = select(subscribers.c.config).where(cast(subscribers.c.config, String).contains("webhook"))
    urls: set[str] = set()
    for (stored,) in conn.execute(stmt):
        sub = subscriber_from_json(stored)
        urls.update(value for value in (sub.webhook_url, sub.slack_webhook) if value)
    return urls


def get_subscriber(conn: Connection, name: str) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.name == name)).mappings().first()
    return None if row is None else _subscriber(row)


def _subscriber(m: RowMapping) -> Subscriber:
    return Subscriber(name=m["name"], config=subscriber_from_json(m["config"]), created_at=m["created_at"],
                      updated_at=m["updated_at"])
