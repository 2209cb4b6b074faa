"""The store as the event loop awaits it: every call on a small thread pool, under a deadline.

A SQLite write lock held by another process, or a PostgreSQL server that is slow, stopped or
unreachable, then delays only the work that needs the database: `/healthz`, the other pollers
and the HTTP endpoints keep answering. The driver-level timeouts (busy timeout, connect and
statement timeouts) end the blocked call in its thread; the deadline here is the backstop for
a call that nothing else ends (a server that accepted and went silent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from crdswatch.errors import DatabaseError
from crdswatch.model import SubscriberConfig
from crdswatch.store.records import (
    Cursor,
    Delivery,
    DeliveryStatus,
    NewActivation,
    Outcome,
    SeenActivation,
    Subscriber,
)

if TYPE_CHECKING:
    from crdswatch.store.core import Store

__all__ = ["AsyncStore"]

T = TypeVar("T")
THREADS = 4  # concurrent database calls per process (the drain sends up to 4 at once)


class AsyncStore:
    """Awaitable twins of the `Store` methods the daemon uses."""

    def __init__(self, store: Store, deadline: float) -> None:
        self.store = store
        self.deadline = deadline
        self._inline = store.engine.url.database in (None, "", ":memory:")  # one connection per thread
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._inline:
            return fn(*args)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="crdswatch-db")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, lambda: fn(*args)), self.deadline)
        except TimeoutError:
            raise DatabaseError(f"database call {what} did not finish within {self.deadline:g} s "
                                "(see [limits] db_connect_timeout, db_statement_timeout, db_lock_timeout)") from None

    async def get_cursor(self, source_key: str) -> Cursor | None:
        return await self._run("get_cursor", self.store.get_cursor, source_key)

    async def record_activation(self, *args: Any, **kwargs: Any) -> bool:
        return await self._run("record_activation", lambda: self.store.record_activation(*args, **kwargs))

    async def record_activations(self, source_key: str, items: Sequence[NewActivation],
                                 expected_cursor: Cursor | None, *, now: datetime | None = None) -> Cursor | None:
        return await self._run("record_activations",
                               lambda: self.store.record_activations(source_key, items, expected_cursor, now=now))

    async def list_activations(self, source_key: str | None = None, limit: int = 50) -> list[SeenActivation]:
        return await self._run("list_activations", self.store.list_activations, source_key, limit)

    async def claim(self, worker_id: str, now: datetime, lease_seconds: float, limit: int) -> list[Delivery]:
        return await self._run("claim", self.store.claim, worker_id, now, lease_seconds, limit)

    async def renew(self, worker_id: str, delivery_ids: Sequence[int], now: datetime, lease_seconds: float) -> list[int]:
        return await self._run("renew", self.store.renew, worker_id, delivery_ids, now, lease_seconds)

    async def record_outcomes(self, outcomes: Sequence[Outcome], worker_id: str, now: datetime) -> dict[int, str | None]:
        return await self._run("record_outcomes", self.store.record_outcomes, outcomes, worker_id, now)

    async def get_activations(self, ids: Sequence[int]) -> dict[int, SeenActivation]:
        return await self._run("get_activations", self.store.get_activations, ids)

    async def get_subscribers(self, names: Sequence[str]) -> dict[str, Subscriber]:
        return await self._run("get_subscribers", self.store.get_subscribers, names)

    async def mark_sent(self, delivery_id: int, worker_id: str, now: datetime, detail: str | None = None) -> bool:
        return await self._run("mark_sent", self.store.mark_sent, delivery_id, worker_id, now, detail)

    async def mark_failed(
        self, delivery_id: int, worker_id: str, now: datetime, error: Exception
    ) -> DeliveryStatus | None:
        return await self._run("mark_failed", self.store.mark_failed, delivery_id, worker_id, now, error)

    async def defer(self, delivery_id: int, worker_id: str, until: datetime, now: datetime | None = None) -> bool:
        return await self._run("defer", self.store.defer, delivery_id, worker_id, until, now)

    async def release(self, worker_id: str, now: datetime | None = None) -> int:
        return await self._run("release", self.store.release, worker_id, now)

    async def counts(self) -> dict[str, int]:
        return await self._run("counts", self.store.counts)

    async def outbox_rows(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        return await self._run("outbox_rows", self.store.outbox_rows, status, limit)

    async def get_subscriber(self, name: str) -> Subscriber | None:
        return await self._run("get_subscriber", self.store.get_subscriber, name)

    async def list_subscribers(self) -> list[Subscriber]:
        return await self._run("list_subscribers", self.store.list_subscribers)

    async def upsert_subscriber(self, name: str, config: SubscriberConfig) -> None:
        await self._run("upsert_subscriber", self.store.upsert_subscriber, name, config)

    async def run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Any other synchronous store work, bounded the same way."""
        return await self._run(what, fn, *args)
