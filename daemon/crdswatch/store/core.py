"""The Store facade: each public method is one transaction over the outbox and state functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Connection, Engine

from crdswatch.model import Activation, DiffResult, SubscriberConfig
from crdswatch.notices.mast import MastEvent
from crdswatch.notices.upstream import Post
from crdswatch.redact import redact_url
from crdswatch.store import affected as lookups
from crdswatch.store import outbox, state, upstream
from crdswatch.store.affected import AffectedLookup
from crdswatch.store.aio import AsyncStore
from crdswatch.store.engine import (
    READ_ONLY,
    DbTimeouts,
    check_schema,
    create_read_only_engine,
    create_store_engine,
    migrate,
)
from crdswatch.store.records import (
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
    utc_now,
)

if TYPE_CHECKING:
    from crdswatch.store.lists import ListStore

__all__ = ["Store"]


class Store:
    """Cursors, seen activations, subscribers and the outbox; each method is one transaction."""

    def __init__(
        self, engine: Engine, *, policy: RetryPolicy | None = None, clock: Callable[[], datetime] = utc_now,
        timeouts: DbTimeouts | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.timeouts = timeouts or DbTimeouts()
        self._aio: AsyncStore | None = None

    @property
    def aio(self) -> AsyncStore:
        """This store for async code: calls run off the event loop, each under a deadline."""
        if self._aio is None:
            self._aio = AsyncStore(self, self.timeouts.deadline)
        return self._aio

    @classmethod
    def open(
        cls,
        url: str,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        run_migrations: bool = True,
        timeouts: DbTimeouts | None = None,
        read_only: bool = False,
    ) -> Store:
        """Connect to `url` (e.g. sqlite:///path/state.db) and migrate the schema to head.

        `read_only`: migrate nothing and create nothing; the database must already be at head
        (else engine.SchemaNotReady), and every write fails in the database itself.
        """
        if read_only:
            engine = create_read_only_engine(url, timeouts)
            try:
                check_schema(engine, redact_url(url))
            except BaseException:
                engine.dispose()
                raise
            return cls(engine, policy=policy, clock=clock, timeouts=timeouts)
        engine = create_store_engine(url, timeouts)
        if run_migrations:
            migrate(engine)
        return cls(engine, policy=policy, clock=clock, timeouts=timeouts)

    def close(self) -> None:
        if self._aio is not None:
            self._aio.close()
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def lists(self) -> ListStore:
        """Mailing-list members, confirmation tokens and the request log (see store.lists)."""
        from crdswatch.store.lists import ListStore

        return ListStore(self)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    # -- cursors and activations -------------------------------------------------------------

    def get_cursor(self, source_key: str) -> Cursor | None:
        with self._read() as conn:
            return state.get_cursor(conn, source_key)

    def record_activation(
        self,
        source_key: str,
        activation: Activation,
        previous_context: str | None,
        diff_json: DiffResult | dict[str, Any] | None,
        deliveries: Sequence[NewDelivery],
        expected_cursor: Cursor | None,
        *,
        now: datetime | None = None,
        affected: bool = False,
    ) -> bool:
        """Commit the new cursor, the seen activation and every outbox row together, or nothing.

        Returns False (and writes nothing) when the cursor is no longer `expected_cursor`: another
        replica processed this source first. Deliveries whose key already exists are skipped.
        `affected` also records a pending lookup of the server's affected datasets (programs).
        """
        diff = diff_json.to_json() if isinstance(diff_json, DiffResult) else diff_json
        with self._write() as conn:
            return state.record_activation(
                conn,
                source_key,
                activation,
                previous_context,
                diff,
                deliveries,
                expected_cursor,
                now or self.clock(),
                self.policy.max_attempts,
                affected,
            )

    def record_activations(
        self, source_key: str, items: Sequence[NewActivation], expected_cursor: Cursor | None,
        *, now: datetime | None = None,
    ) -> Cursor | None:
        """`record_activation` for several activations of one source, in order, in one transaction.

        All of them or nothing; returns the cursor at the last one (no re-read needed), or None
        (nothing written) when another replica moved the cursor first. A backfill passes a few at a
        time (app.poll), so that one transaction holds a bounded number of outbox rows.
        """
        if not items:
            raise ValueError("record_activations: no activations")
        with self._write() as conn:
            return state.record_activations(conn, source_key, items, expected_cursor, now or self.clock(),
                                            self.policy.max_attempts)

    def get_activations(self, ids: Sequence[int]) -> dict[int, SeenActivation]:
        """Seen activations by id (the ones claimed outbox rows refer to)."""
        with self._read() as conn:
            return state.get_activations(conn, ids)

    def list_activations(self, source_key: str | None = None, limit: int = 50) -> list[SeenActivation]:
        with self._read() as conn:
            return state.list_activations(conn, source_key, limit)

    def activations_of_context(self, context: str) -> list[SeenActivation]:
        """The seen activations of one context (one per source that saw it), newest first."""
        with self._read() as conn:
            return state.activations_of_context(conn, context)

    def find_activation(self, context: str) -> SeenActivation | None:
        """The newest seen activation of `context` with a diff (a silent baseline has none), or None."""
        return next((a for a in self.activations_of_context(context) if a.diff), None)

    # -- affected datasets (program subscriptions) -----------------------------------------------

    def due_affected(self, now: datetime, limit: int = 20) -> list[AffectedLookup]:
        with self._read() as conn:
            return lookups.due_lookups(conn, now, limit)

    def get_affected_lookup(self, activation_id: int) -> AffectedLookup | None:
        with self._read() as conn:
            return lookups.get_lookup(conn, activation_id)

    def retry_affected(self, lookup: AffectedLookup, next_at: datetime, error: str, now: datetime) -> bool:
        with self._write() as conn:
            return lookups.retry_lookup(conn, lookup, next_at, error, now)

    def finish_affected(
        self, lookup: AffectedLookup, status: str, count: int | None, error: str | None,
        deliveries: Sequence[NewDelivery], now: datetime,
    ) -> int | None:
        """Done or given up, and its notices queued, in one transaction; None if another got there first."""
        with self._write() as conn:
            return lookups.finish_lookup(conn, lookup, status, count, error, deliveries, now, self.policy.max_attempts)

    # -- outbox --------------------------------------------------------------------------------

    def claim(self, worker_id: str, now: datetime, lease_seconds: float, limit: int) -> list[Delivery]:
        with self._write() as conn:
            return outbox.claim(conn, worker_id, now, lease_seconds, limit)

    def renew(self, worker_id: str, delivery_ids: Sequence[int], now: datetime, lease_seconds: float) -> list[int]:
        """Extend the leases `worker_id` still holds among `delivery_ids`; the ids still held."""
        with self._write() as conn:
            return outbox.renew(conn, worker_id, delivery_ids, now, lease_seconds)

    def mark_sent(self, delivery_id: int, worker_id: str, now: datetime, detail: str | None = None) -> bool:
        with self._write() as conn:
            return outbox.mark_sent(conn, delivery_id, worker_id, now, detail)

    def record_outcomes(self, outcomes: Sequence[Outcome], worker_id: str, now: datetime) -> dict[int, str | None]:
        """Many rows' outcomes in one transaction: each row's new status (None: lease lost)."""
        result: dict[int, str | None] = {o.delivery_id: None for o in outcomes}
        with self._write() as conn:
            sent = [o.delivery_id for o in outcomes if o.error is None]
            for delivery_id in outbox.mark_sent_many(conn, sent, worker_id, now) if sent else []:
                result[delivery_id] = "sent"
            for o in outcomes:
                if o.error is not None:
                    result[o.delivery_id] = outbox.mark_failed(conn, o.delivery_id, worker_id, now, o.error,
                                                               self.policy)
        return result

    def mark_failed(
        self, delivery_id: int, worker_id: str, now: datetime, error: Exception
    ) -> DeliveryStatus | None:
        with self._write() as conn:
            return outbox.mark_failed(conn, delivery_id, worker_id, now, error, self.policy)

    def release(self, worker_id: str, now: datetime | None = None) -> int:
        with self._write() as conn:
            return outbox.release(conn, worker_id, now or self.clock())

    def defer(self, delivery_id: int, worker_id: str, until: datetime, now: datetime | None = None) -> bool:
        """Hand a claimed row back untried, due at `until`; attempts unchanged (False: lease lost)."""
        with self._write() as conn:
            return outbox.defer(conn, delivery_id, worker_id, until, now or self.clock())

    def requeue_dead(self, delivery_id: int, now: datetime | None = None) -> bool:
        with self._write() as conn:
            return outbox.requeue_dead(conn, delivery_id, now or self.clock())

    def outbox_rows(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        with self._read() as conn:
            return outbox.outbox_rows(conn, status, limit)

    def counts(self) -> dict[str, int]:
        with self._read() as conn:
            return outbox.counts(conn)

    def get_delivery(self, delivery_id: int) -> Delivery | None:
        with self._read() as conn:
            return outbox.get_delivery(conn, delivery_id)

    def attempts(self, delivery_id: int) -> list[Attempt]:
        with self._read() as conn:
            return outbox.list_attempts(conn, delivery_id)

    # -- subscribers ---------------------------------------------------------------------------

    def upsert_subscriber(self, name: str, config: SubscriberConfig) -> None:
        with self._write() as conn:
            state.upsert_subscriber(conn, name, config, self.clock())

    def remove_subscriber(self, name: str) -> bool:
        with self._write() as conn:
            return state.remove_subscriber(conn, name)

    def list_subscribers(self) -> list[Subscriber]:
        with self._read() as conn:
            return state.list_subscribers(conn)

    def secret_urls(self) -> set[str]:
        """The stored subscribers' webhook and Slack URLs, for masking them in outputs."""
        with self._read() as conn:
            return state.secret_urls(conn)

    def get_subscribers(self, names: Sequence[str]) -> dict[str, Subscriber]:
        """The named subscribers that exist, in one read."""
        with self._read() as conn:
            return state.get_subscribers(conn, names)

    def get_subscriber(self, name: str) -> Subscriber | None:
        with self._read() as conn:
            return state.get_subscriber(conn, name)

    # -- the bridge (upstream posts, feeds, MAST events) ------------------------------------------

    def add_post(self, post: Post, now: datetime | None = None) -> bool:
        with self._write() as conn:
            return upstream.add_post(conn, post, now or self.clock())

    def posts_naming(self, names: Sequence[str], limit: int = 50) -> list[Post]:
        with self._read() as conn:
            return upstream.posts_naming(conn, names, limit)

    def post_names(self) -> list[tuple[int, str]]:
        """What posts_naming looks in, for `store.upstream.naming` to look in many times."""
        with self._read() as conn:
            return upstream.post_names(conn)

    def posts_by_id(self, ids: Sequence[int]) -> list[Post]:
        with self._read() as conn:
            return upstream.posts_by_id(conn, ids)

    def recent_posts(self, limit: int = 50) -> list[Post]:
        with self._read() as conn:
            return upstream.recent_posts(conn, limit)

    def feed_state(self, name: str) -> tuple[str | None, str | None]:
        with self._read() as conn:
            return upstream.feed_state(conn, name)

    def set_feed_state(self, name: str, etag: str | None, last_modified: str | None) -> None:
        with self._write() as conn:
            upstream.set_feed_state(conn, name, etag, last_modified, self.clock())

    def add_mast_events(self, name: str, events: Sequence[MastEvent]) -> list[MastEvent]:
        with self._write() as conn:
            return upstream.add_mast_events(conn, name, events, self.clock())

    def record_post(self, post: Post, deliveries: Sequence[NewDelivery], now: datetime | None = None) -> bool:
        """Store a new post and queue its notices in one transaction; False (nothing queued) if known."""
        with self._write() as conn:
            return upstream.record_post(conn, post, deliveries, now or self.clock(), self.policy.max_attempts)

    def record_mast_events(
        self, name: str, events: Sequence[MastEvent],
        plan: Callable[[list[MastEvent]], Sequence[tuple[str, Sequence[NewDelivery]]]], now: datetime | None = None,
    ) -> list[MastEvent]:
        with self._write() as conn:
            return upstream.record_mast_events(conn, name, events, plan, now or self.clock(), self.policy.max_attempts)
