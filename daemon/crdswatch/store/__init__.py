"""The state store and durable outbox: one Store over SQLite or PostgreSQL, migrated at open.

Records and key helpers import without SQLAlchemy; `Store` (and with it SQLAlchemy) loads on first
use, so channels and the CLI can use `message_id` cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdswatch.store.records import (
    STATUSES,
    Attempt,
    Cursor,
    Delivery,
    DeliveryStatus,
    NewActivation,
    NewDelivery,
    Outcome,
    RetryPolicy,
    SeenActivation,
    Subscriber,
    activation_ref,
    idempotency_key,
    message_id,
    source_key,
    utc_now,
)

if TYPE_CHECKING:
    from crdswatch.store.core import Store

__all__ = [
    "STATUSES",
    "Attempt",
    "Cursor",
    "Delivery",
    "DeliveryStatus",
    "NewActivation",
    "NewDelivery",
    "Outcome",
    "RetryPolicy",
    "SeenActivation",
    "Store",
    "Subscriber",
    "activation_ref",
    "idempotency_key",
    "message_id",
    "source_key",
    "utc_now",
]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from crdswatch.store.core import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
