"""The second half of the story: outbox -> render -> channel (app.poll tells the first).

Top to bottom: `drain_until_idle` (or `drain_once`) opens the channel sessions and runs one
`_Run`: claim due rows (`_claim_and_wait`, at most `limit` held), turn them into notices
(`_dispatch`, through app.outbox_notices: digests merged, each activation decoded once), one
worker per (subscriber, channel) queue in activation order (`_work`), each message sent under its
deadline through the senders (`_send`, `_attempt`; service.runtime renders it and dispatches by
the channel registry), outcomes recorded in group commits (`_Outcomes`) while the next messages
are on their way; a heartbeat renews the leases of the rows still held, so another replica never
re-sends a row this one is working on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from crdswatch.app.delivery_events import DeliveryEvents
from crdswatch.app.outbox_notices import NoticeBuilder, group_key, group_rows
from crdswatch.errors import (
    ChannelPausedError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import BridgeNotice, Notice
from crdswatch.store import Delivery, Outcome, Store

__all__ = ["PAUSE_SECONDS", "DrainReport", "Senders", "drain_once", "drain_until_idle"]

PAUSE_SECONDS = 300.0  # how long a channel rests after an authentication failure
log = structlog.get_logger("crdswatch.delivery")

# Outcomes one write waits for, and for at most how long (seconds). A SQLite commit costs ~3-4 ms
# of CPU whatever it holds (WAL frames, the indexes the status change touches): at 15 rows a
# write that was 200 us per row, at 256 rows ~30 us.
_GROUP, _LINGER = 256, 0.1
_DISPATCH_SLICE = 64  # notices built between two yields to the loop while a claim is dispatched
_LIMIT = 600  # rows held at a time by default: room for a full group of outcomes and the sends behind it


class Senders(Protocol):
    """Sends one rendered notice on one channel of one subscriber (see service.ChannelSenders)."""

    async def send(self, channel: str, subscriber: str, notice: Notice | BridgeNotice, key: str, now: datetime) -> None: ...

    def session(self) -> Any: ...  # async context manager holding shared connections for one drain

    async def prepare(self, subscribers: Collection[str]) -> None: ...  # one read of a batch's subscribers


@dataclass
class DrainReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    claimed: int = 0
    paused: set[str] = field(default_factory=set)
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (channel kind, subscriber, outcome)

    def add(self, other: DrainReport) -> None:
        self.sent, self.failed, self.dead = self.sent + other.sent, self.failed + other.failed, self.dead + other.dead
        self.claimed += other.claimed
        self.paused |= other.paused
        self.outcomes += other.outcomes


async def drain_once(
    store: Store, senders: Senders, worker_id: str, now: datetime, *, lease_seconds: float = 120,
    limit: int = _LIMIT, concurrency: int = 4, paused: Callable[[str], float] = lambda kind: 0.0,
    limits: Mapping[str, int] | None = None, events: DeliveryEvents | None = None,
    send_deadline: float = DEFAULT_LIMITS.send_deadline,
) -> DrainReport:
    """Claim what is due (up to `limit` rows) and send it; every row ends sent, back to pending
    with a delay, or dead.

    `paused(kind)` is how many more seconds a channel kind stays paused (0: not paused); its rows
    are not attempted and wait that long. At most `limits[kind]` (default `concurrency`) sends
    of one channel kind are in flight at a time.
    """
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(senders.session())
        run = _Run(store, senders, worker_id, lambda: now, NoticeBuilder(store), _Gates(concurrency, limits),
                   paused, events, lease_seconds, limit, send_deadline)
        return await run.run(once=True)


async def drain_until_idle(
    store: Store, senders: Senders, worker_id: str, clock: Callable[[], datetime], *,
    lease_seconds: float = 120, limit: int = _LIMIT, concurrency: int = 4,
    paused: Callable[[str], float] = lambda kind: 0.0, limits: Mapping[str, int] | None = None,
    stop: Callable[[], bool] = lambda: False, batch_deadline: float | None = None,
    events: DeliveryEvents | None = None, send_deadline: float = DEFAULT_LIMITS.send_deadline,
    wake: asyncio.Event | None = None, recheck: float | None = None,
) -> DrainReport:
    """Claim and send, over the same channel sessions, until nothing is due and nothing is in
    flight (or `stop()`: no more claims, no further queued sends; what is left stays leased for
    the caller to release).

    Every (subscriber, channel) is its own queue, sent in activation order; the queues run side
    by side, and claiming goes on while they do: a slow receiver delays only its own queue, never
    the e-mail or the other receivers due in the same cycle. At most `limit` rows are held at a
    time; their leases are renewed every lease_seconds / 3 while held (a heartbeat task), so a
    send slower than the lease is never taken over by another replica. A row the heartbeat finds
    no longer ours (the lease ran out while the database was unreachable, and someone else
    claimed it) is not sent here.

    `wake` (set by the caller when new rows were queued) and `recheck` (seconds) make it claim
    again while queues are busy; without them it claims again when half its rows are done.
    `batch_deadline` bounds the time without any progress (no claim, no outcome recorded):
    TimeoutError, the unsent rows stay leased until expiry. `events` hears every row's outcome as
    it is recorded (log lines, dead-row alerts).
    """
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(senders.session())
        run = _Run(store, senders, worker_id, clock, NoticeBuilder(store), _Gates(concurrency, limits),
                   paused, events, lease_seconds, limit, send_deadline)
        return await run.run(stop=stop, deadline=batch_deadline, wake=wake, recheck=recheck)


class _Gates:
    """Bounded concurrency per channel kind: `limits[kind]`, else `default` sends in flight."""

    def __init__(self, default: int, limits: Mapping[str, int] | None) -> None:
        self.default, self.limits = default, dict(limits or {})
        self.gates: dict[str, asyncio.Semaphore] = {}

    def __call__(self, kind: str) -> asyncio.Semaphore:
        if kind not in self.gates:
            self.gates[kind] = asyncio.Semaphore(max(1, self.limits.get(kind, self.default)))
        return self.gates[kind]


@dataclass(eq=False)
class _Job:
    """One message to send: a group of claimed rows (one row, or a digest) and its notice."""

    group: list[Delivery]
    notice: Notice | BridgeNotice | None
    error: Exception | None = None  # the notice could not be built: the rows' outcome


class _Run:
    """One drain: the claims, one worker task per (subscriber, channel) queue, the lease heartbeat."""

    def __init__(
        self, store: Store, senders: Senders, worker_id: str, clock: Callable[[], datetime], notices: NoticeBuilder,
        gates: _Gates, paused: Callable[[str], float], events: DeliveryEvents | None, lease_seconds: float,
        limit: int, send_deadline: float,
    ) -> None:
        self.store, self.senders, self.worker_id, self.clock = store, senders, worker_id, clock
        self.notices, self.gates, self.paused, self.events = notices, gates, paused, events
        self.lease_seconds, self.limit, self.send_deadline = lease_seconds, max(1, limit), send_deadline
        self.report = DrainReport()
        self.loop = asyncio.get_running_loop()
        self.held: dict[int, float] = {}  # claimed row id -> loop time its lease was last taken or renewed
        self.lost: set[int] = set()  # rows the heartbeat found no longer ours
        self.queues: dict[tuple[str, str], deque[_Job]] = {}
        self.workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.changed = asyncio.Event()  # a queue finished a message, a worker ended, or `wake` was set
        self.woken = False
        self.failure: BaseException | None = None  # a worker's unexpected failure (the database)
        self.stopping: Callable[[], bool] = lambda: False
        self.progress = self.loop.time()
        self.outcomes = _Outcomes(store, worker_id, clock, self.report, events, self._recorded)

    async def run(
        self, *, once: bool = False, stop: Callable[[], bool] = lambda: False, deadline: float | None = None,
        wake: asyncio.Event | None = None, recheck: float | None = None,
    ) -> DrainReport:
        self.stopping = stop
        helpers = [self.loop.create_task(self._heartbeat())]
        if wake is not None:
            helpers.append(self.loop.create_task(self._watch(wake)))
        try:
            await self._claim_and_wait(once, stop, deadline, recheck)
        except BaseException:
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(*self.workers.values(), return_exceptions=True)
            raise
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.outcomes.flush()
        return self.report

    async def _claim_and_wait(
        self, once: bool, stop: Callable[[], bool], deadline: float | None, recheck: float | None
    ) -> None:
        exhausted, claimed = False, False
        while True:
            if self.failure is not None:
                raise self.failure
            self.outcomes.check()
            idle = not self.workers
            if stop() or (once and claimed):
                if idle:
                    return
            elif idle or self.woken or (not exhausted and len(self.held) <= self.limit // 2):
                self.woken = False
                room = self.limit - len(self.held)
                rows = await self.store.aio.claim(self.worker_id, self.clock(), self.lease_seconds, room) if room > 0 else []
                claimed = True
                self.report.claimed += len(rows)
                if rows:  # an empty claim (a recheck) is no progress: a hung send must trip the deadline
                    self.progress = self.loop.time()
                if not rows and idle:
                    if not self.held or not self.outcomes.busy():
                        return
                    # Every row is done but some outcomes are not written yet (a group commit): they
                    # still count against `limit`, so the claim had no room. Claim again once written.
                    await self.outcomes.settle()
                    continue
                await self._dispatch(rows)
                exhausted = len(rows) < room
                continue
            self.changed.clear()
            timeout = recheck
            if deadline is not None:
                left = self.progress + deadline - self.loop.time()
                if left <= 0:
                    raise TimeoutError(f"no outbox progress within {deadline:g} s")
                timeout = left if timeout is None else min(timeout, left)
            try:
                async with asyncio.timeout(timeout):
                    await self.changed.wait()
            except TimeoutError:
                self.woken = True  # recheck: claim what came due meanwhile (or give up, see above)

    async def _dispatch(self, rows: Sequence[Delivery]) -> None:
        if not rows:
            return
        now = self.loop.time()
        for row in rows:
            self.held[row.id] = now
        await self.notices.load(rows)
        await self.senders.prepare({r.subscriber for r in rows})
        # One queue per (subscriber, channel), sent in activation order; the queues run in
        # parallel. A webhook receiver or a mailbox then sees jwst_0540 before jwst_0541.
        for n, group in enumerate(group_rows(rows), 1):
            if n % _DISPATCH_SLICE == 0:
                await asyncio.sleep(0)  # let the queues send: building 600 notices at once held the loop
            key = (group[0].subscriber, group[0].channel)
            try:  # built now: a later claim may evict the decoded activations from the cache
                job = _Job(group, self.notices.notice(group))
            except (KeyError, TypeError, ValueError) as exc:  # a row we cannot even read: never retry it
                job = _Job(group, None, PermanentDeliveryError(f"unreadable outbox payload: {exc!r}"))
            except Exception as exc:  # noqa: BLE001 - a bug must not strand the claimed rows
                job = _Job(group, None, exc)  # the store retries it with backoff, then dead-letters it
            self.queues.setdefault(key, deque()).append(job)
            if key not in self.workers:
                self.workers[key] = self.loop.create_task(self._work(key))

    async def _work(self, key: tuple[str, str]) -> None:
        queue = self.queues[key]
        try:
            while queue:
                job = queue.popleft()
                if self.stopping():  # stopping: what is not sent yet stays leased for release()
                    for row in job.group:
                        self.held.pop(row.id, None)
                    continue
                await self._send(job)
                self.changed.set()
        except Exception as exc:  # noqa: BLE001 - the database, mostly: the drain's failure
            self.failure = exc
        finally:
            if self.workers.get(key) is asyncio.current_task():
                del self.workers[key]
                if not queue:
                    del self.queues[key]
            self.changed.set()

    def _ours(self, group: Sequence[Delivery]) -> bool:
        """Still leased to us: not reported lost by the heartbeat, renewed within the lease."""
        now = self.loop.time()
        return all(r.id in self.held and now - self.held[r.id] < self.lease_seconds for r in group)

    async def _send(self, job: _Job) -> None:
        group = job.group
        kind = group[0].channel.split(":", 1)[0]
        async with self.gates(kind):
            now = self.clock()
            if not self._ours(group):  # another replica may be sending these now: not ours to send
                return await self._give_back(kind, group, now)
            wait = PAUSE_SECONDS if kind in self.report.paused else self.paused(kind)
            if wait > 0:  # not attempted: the rows wait for the end of the pause and keep their attempts
                return await self._defer(kind, group, wait, now)
            error = job.error if job.notice is None else await self._attempt(kind, group, job.notice, now)
        if isinstance(error, TransientDeliveryError) and error.retry_after is None and len(group) > 1:
            # One delay for the whole digest: rows retried at different times would go out as
            # several e-mails instead of one.
            delay = self.store.policy.delay(max(r.attempts for r in group) + 1).total_seconds()
            error = error.retry_later(delay)
        for row in group:
            self.outcomes.add(Outcome(row.id, error), row)

    async def _give_back(self, kind: str, group: Sequence[Delivery], now: datetime) -> None:
        """Rows whose lease we may have lost: back to pending untried (if still ours), never sent here."""
        for row in group:
            if row.id in self.held and row.id not in self.lost:
                await self.store.aio.defer(row.id, self.worker_id, now, now)  # back, untried, due now
            self.held.pop(row.id, None)
            if self.events is not None:
                self.events.lease_lost(row)
            self.report.outcomes.append((kind, row.subscriber, "lost"))
        self.progress = self.loop.time()

    async def _defer(self, kind: str, group: Sequence[Delivery], wait: float, now: datetime) -> None:
        """A paused channel's rows: due again when the pause ends, their attempts unchanged."""
        for row in group:
            await self.store.aio.defer(row.id, self.worker_id, now + timedelta(seconds=wait), now)
            self.held.pop(row.id, None)
            if self.events is not None:
                self.events.deferred(row, wait)
            self.report.outcomes.append((kind, row.subscriber, "paused"))
        self.progress = self.loop.time()

    async def _attempt(
        self, kind: str, group: Sequence[Delivery], notice: Notice | BridgeNotice, now: datetime
    ) -> Exception | None:
        """Send one message under send_deadline; the error it ended with (None: sent)."""
        deadline = asyncio.timeout(self.send_deadline)
        try:
            async with deadline:  # the whole send, connect to last byte ([limits] send_deadline)
                await self.senders.send(group[0].channel, group[0].subscriber, notice, group_key(group), now)
        except TimeoutError as exc:
            if deadline.expired():  # ours; a channel's own read timeout is a DeliveryTimeoutError
                return DeliveryTimeoutError(f"{kind}: no complete send within send_deadline ({self.send_deadline:g} s)")
            return exc if isinstance(exc, DeliveryError) else DeliveryTimeoutError(f"{kind}: timed out: {exc!r}")
        except (KeyError, TypeError, ValueError) as exc:  # a row we cannot even read: never retry it
            return PermanentDeliveryError(f"unreadable outbox payload: {exc!r}")
        except DeliveryError as exc:
            if isinstance(exc, ChannelPausedError):
                self.report.paused.add(kind)
                if exc.retry_after is None:
                    return exc.retry_later(PAUSE_SECONDS)
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug must not strand the claimed rows
            return exc  # the store retries it with backoff, then dead-letters it
        return None

    def _recorded(self, ids: Collection[int]) -> None:
        for delivery_id in ids:
            self.held.pop(delivery_id, None)
        self.progress = self.loop.time()
        self.changed.set()

    async def _watch(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            self.woken = True
            self.changed.set()

    async def _heartbeat(self) -> None:
        """Renew the leases of the rows still held, every lease_seconds / 3; drop the ones lost."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ids = sorted(self.held)
            if not ids:
                continue
            started = self.loop.time()
            try:
                kept = set(await self.store.aio.renew(self.worker_id, ids, self.clock(), self.lease_seconds))
            except Exception as exc:  # noqa: BLE001 - the database: rows not renewed in time are not sent
                log.warning("outbox lease renewal failed", error=str(exc) or type(exc).__name__, rows=len(ids))
                continue
            for delivery_id in ids:
                if delivery_id not in self.held:
                    continue  # recorded meanwhile
                if delivery_id in kept:
                    self.held[delivery_id] = started
                else:
                    self.lost.add(delivery_id)
                    del self.held[delivery_id]


class _Outcomes:
    """Group commit of outcomes: they queue up while the previous write runs; one transaction each.

    A write waits up to `_LINGER` seconds for `_GROUP` outcomes before it starts (a fan-out then
    writes a few hundred rows per transaction instead of ~15: the store's per-transaction cost,
    not the rows, dominated the drain), and never when the batch is done (`flush`). A message is recorded
    sent within that wait plus one write of its server's acknowledgement, so a crash re-sends at
    most the messages acknowledged meanwhile (with the same Message-ID).
    """

    def __init__(self, store: Store, worker_id: str, clock: Callable[[], datetime], report: DrainReport,
                 events: DeliveryEvents | None = None,
                 recorded: Callable[[Collection[int]], None] = lambda ids: None) -> None:
        self.store, self.worker_id, self.clock, self.report = store, worker_id, clock, report
        self.events, self.recorded = events, recorded
        self.pending: list[tuple[Outcome, Delivery]] = []
        self.task: asyncio.Task[None] | None = None
        self.full = asyncio.Event()  # enough outcomes for a write, or the batch is over
        self.closing = False

    def add(self, outcome: Outcome, row: Delivery) -> None:
        self.pending.append((outcome, row))
        if len(self.pending) >= _GROUP:
            self.full.set()
        if self.task is None or self.task.done():
            self.check()
            self.task = asyncio.get_running_loop().create_task(self._write())

    def check(self) -> None:
        """Raise the failure of the last write, if it failed (the drain's failure)."""
        if self.task is not None and self.task.done():
            task, self.task = self.task, None
            task.result()

    async def _write(self) -> None:
        while self.pending:
            if not self.closing and len(self.pending) < _GROUP:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_LINGER):
                        await self.full.wait()
            if not self.closing:
                self.full.clear()
            batch, self.pending = self.pending, []
            status = await self.store.aio.record_outcomes([o for o, _ in batch], self.worker_id, self.clock())
            for outcome, row in batch:
                kind, subscriber = row.channel.split(":", 1)[0], row.subscriber
                if self.events is not None:
                    self.events.outcome(row, outcome.error, status.get(outcome.delivery_id))
                if outcome.error is None:
                    self.report.sent += 1
                    self.report.outcomes.append((kind, subscriber, "sent"))
                    continue
                dead = status.get(outcome.delivery_id) == "dead"
                self.report.dead += dead
                self.report.failed += not dead and status.get(outcome.delivery_id) == "pending"
                self.report.outcomes.append((kind, subscriber, "dead" if dead else "retry"))
            self.recorded([o.delivery_id for o, _ in batch])

    def busy(self) -> bool:
        """Outcomes waiting to be written, or a write under way."""
        return bool(self.pending) or (self.task is not None and not self.task.done())

    async def settle(self) -> None:
        """Write what is pending now, without waiting for company; raise a failed write."""
        self.full.set()
        while self.task is not None and not self.task.done():
            await self.task
        self.check()

    async def flush(self) -> None:
        self.closing = True
        self.full.set()  # a write waiting for company starts now
        while self.task is not None and not self.task.done():
            await self.task
        self.check()
        if self.pending:  # added after the last write finished
            await self._write()
