"""SQLAlchemy Core tables of the state store; migrations/versions hold the frozen DDL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "UTCDateTime", "activations", "affected_lookups", "attempts", "cursors", "deliveries", "mast_events", "metadata",
    "subscribers",
    "upstream_feeds", "upstream_posts",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC so both dialects compare alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous; refusing it keeps every stored time honest UTC.
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

cursors = Table(
    "cursors",
    metadata,
    Column("source_key", String(512), primary_key=True),
    Column("context", String(255), nullable=False),
    Column("activation_date", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

activations = Table(
    "activations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_key", String(512), nullable=False),
    Column("context", String(255), nullable=False),
    Column("activation_date", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("previous_context", String(255), nullable=True),
    Column("diff", JSON, nullable=True),
    Column("seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("source_key", "context", "activation_date", name="uq_activations_source_context_date"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("name", name="uq_subscribers_name"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(64), nullable=False),
    Column("activation_id", Integer, ForeignKey("activations.id"), nullable=True),
    Column("source_key", String(512), nullable=False),
    Column("context", String(255), nullable=False),
    Column("subscriber", String(255), nullable=False),
    Column("channel", String(255), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("claimed_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    UniqueConstraint("idempotency_key", name="uq_deliveries_idempotency_key"),
    Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_deliveries_status_lease", "status", "lease_expires_at"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", String(255), nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),  # sent | transient | permanent | lease_expired
    Column("error", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_delivery_attempts_delivery", "delivery_id"),
)

# -- the bridge: upstream list posts, archive feed validators, MAST events ----------------------

upstream_posts = Table(
    "upstream_posts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upstream", String(255), nullable=False),
    Column("message_id", String(998), nullable=False),  # RFC 5322's line limit bounds a Message-ID
    Column("kind", String(32), nullable=False),  # post | confirm-request | admin
    Column("post_date", String(64), nullable=False),
    Column("post", JSON, nullable=False),  # codec form of notices.upstream.Post
    Column("names", Text, nullable=False),  # " name name " for LIKE lookups of mentioned names
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("upstream", "message_id", name="uq_upstream_posts_message"),
    Index("ix_upstream_posts_date", "post_date"),
)

upstream_feeds = Table(
    "upstream_feeds",
    metadata,
    Column("upstream", String(255), primary_key=True),
    Column("etag", String(1024), nullable=True),
    Column("last_modified", String(255), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

mast_events = Table(
    "mast_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("upstream", String(255), nullable=False),
    Column("program", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("archived_date", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

# -- program subscriptions: the server's affected datasets, asked for until it has them -------------

affected_lookups = Table(
    "affected_lookups",
    metadata,
    # One per activation whose switch program subscribers wait on; written with the activation.
    Column("activation_id", Integer, ForeignKey("activations.id"), primary_key=True),
    Column("source_key", String(512), nullable=False),
    Column("context", String(255), nullable=False),
    Column("previous_context", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | gave_up
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("affected", Integer, nullable=True),  # how many datasets the server listed
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_affected_lookups_status_next", "status", "next_attempt_at"),
)
