"""Plain records and pure helpers of the state store: cursors, deliveries, retry policy, keys."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crdswatch.model import Activation, SourceKey, SubscriberConfig, utc_now
from crdswatch.redact import redact_error
from crdswatch.render.email_headers import message_id

__all__ = [
    "DELIVERY_FIELDS",
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
    "Subscriber",
    "activation_ref",
    "idempotency_key",
    "message_id",
    "source_key",
    "utc_now",
]

DeliveryStatus = Literal["pending", "leased", "sent", "dead"]
STATUSES: tuple[DeliveryStatus, ...] = ("pending", "leased", "sent", "dead")


@dataclass(frozen=True)
class Cursor:
    """Where one source stands: the last activation seen; `version` is the compare-and-set token."""

    source_key: str
    context: str
    activation_date: str
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class NewDelivery:
    """One notice to queue for one subscriber on one channel; the store derives its key."""

    subscriber: str
    channel: str
    payload: dict[str, Any] = field(default_factory=dict)
    not_before: datetime | None = None  # digests: held until their slot


@dataclass(frozen=True)
class NewActivation:
    """One activation to record with its outbox rows (`Store.record_activations` takes several).

    `diff`: the seen activation's stored record (JSON); `affected`: program subscribers wait on the
    server's affected datasets for this switch (store.affected).
    """

    activation: Activation
    previous_context: str | None
    diff: dict[str, Any] | None
    deliveries: Sequence[NewDelivery] = ()
    affected: bool = False


@dataclass(frozen=True)
class Delivery:
    """One outbox row as a worker or operator sees it."""

    id: int
    idempotency_key: str
    source_key: str
    context: str
    subscriber: str
    channel: str
    payload: dict[str, Any]  # compact: the selection, reason and digest kind (see notices.codec)
    status: DeliveryStatus
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    detail: str | None
    created_at: datetime
    sent_at: datetime | None
    activation_id: int | None = None  # the seen activation whose notice this row sends

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for `crdswatch outbox --json`: times as ISO-8601 UTC strings, the payload
        as stored (shared with this row)."""
        # Field by field, not dataclasses.asdict: asdict deep-copies through `copy` and was 0.2 ms a
        # row, most of `outbox --json --limit 10000`. The payload (the one nested value) is the
        # row's own, shared, not copied: callers print it or drop it.
        data: dict[str, Any] = {}
        for name in DELIVERY_FIELDS:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, datetime) else value
        return data

    def to_shown_json(self, secret_urls: list[str]) -> dict[str, Any]:
        """The row as `crdswatch outbox --json` shows it (both its paths): no payload (the notice
        is large; `preview` shows it), and the error texts with `secret_urls` and any other
        URL's path masked (`redact.redact_error`)."""
        data = self.to_json()
        data.pop("payload")
        for key in ("last_error", "detail"):
            if data.get(key):
                data[key] = redact_error(data[key], secret_urls)
        return data


DELIVERY_FIELDS = tuple(Delivery.__dataclass_fields__)  # its field names, in order (the outbox's columns)


@dataclass(frozen=True)
class Outcome:
    """How one claimed row ended, for `Store.record_outcomes` (many rows, one transaction)."""

    delivery_id: int
    error: Exception | None = None  # None: sent
    detail: str | None = None


@dataclass(frozen=True)
class Subscriber:
    """A named subscriber and its stored settings (channels, filters; notices.codec is their JSON)."""

    name: str
    config: SubscriberConfig
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SeenActivation:
    """An activation the daemon processed, with the diff it computed (as JSON)."""

    id: int
    source_key: str
    context: str
    activation_date: str
    description: str
    previous_context: str | None
    diff: dict[str, Any] | None
    seen_at: datetime


@dataclass(frozen=True)
class Attempt:
    """One finished try of one delivery; `outcome` is sent, transient, permanent or lease_expired."""

    delivery_id: int
    attempt: int
    worker_id: str
    started_at: datetime | None
    finished_at: datetime
    outcome: str
    error: str | None
    detail: str | None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": half the delay is fixed, half is random.

    `jitter` returns a number in [0, 1); tests inject a constant to get exact times.
    """

    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 8
    jitter: Callable[[], float] = random.random
    # The longest wait a peer's hint may impose ([limits] retry_after_max): the channels cap what
    # they parse already; this is the backstop that keeps `now + delay` a representable date.
    retry_after_max: float = 3600.0

    def delay(self, attempts: int, retry_after: float | None = None) -> timedelta:
        """The wait before the next try after `attempts` failed tries."""
        if retry_after is not None and not math.isnan(retry_after):
            # The peer said when; sooner would only earn another refusal.
            return timedelta(seconds=min(max(0.0, retry_after), self.retry_after_max))
        exp = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=exp / 2 + exp / 2 * self.jitter())


def source_key(server_url: str, observatory: str, state: str) -> str:
    """The stored key of one watched source (one cursor row per server, observatory and state):
    `str(SourceKey.of(...))`, the URL without credentials."""
    return str(SourceKey.of(server_url, observatory, state))


def activation_ref(activation: Activation) -> str:
    """The identity of one activation: a context can be activated twice (a revert), at two dates."""
    return f"{activation.context}@{activation.date}"


def idempotency_key(context: str, source: str, subscriber: str, channel: str) -> str:
    """A stable key for one notice; JSON-encoding the parts keeps separators unambiguous."""
    raw = json.dumps([context, source, subscriber, channel], separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
