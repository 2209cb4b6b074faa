"""The second half of the story: outbox -> render -> channel (app.poll tells the first).

Top to bottom: `drain_until_idle` (or `drain_once`) opens the channel sessions and runs one
`_Run`: claim due rows (`_claim_and_wait`, at most `limit` held), turn them into notices
(`_dispatch`, through app.outbox_notices: digests merged, each activation decoded once), one
queue per (subscriber, channel) in activation order, whose next messages a few lanes per channel
kind (`_lane`) send in batches under one deadline through the senders (`_send`, `_attempt`;
service.runtime renders and dispatches by the channel registry, e-mail for a whole batch at
once), outcomes recorded in group commits (`_Outcomes`) while the next messages
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
# The first claim of a run takes at most this many rows, each next one up to four times more: the
# first messages go while the rest is claimed. Claiming, decoding and preparing 600 rows took
# ~90 ms before anything was sent (bench/fanout.py, PostgreSQL, 1,000 subscribers).
_FIRST_CLAIM = 64


class Senders(Protocol):
    """Sends one rendered notice on one channel of one subscriber (see service.ChannelSenders).

    A senders object may also offer the batch interface the drain prefers when present:
    `batch_size(kind)` (messages of a kind sent together) and `send_many(sends, now, done)`,
    which sends each (channel, subscriber, notice, key) and calls `done(i, outcome)` (None or the
    exception) as each ends; a batch cut off by its deadline leaves the rest unreported.
    """

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
    """Bounded concurrency per channel kind: `limits[kind]`, else `default` sends in flight (the
    lanes of a kind times its batch size never exceed it)."""

    def __init__(self, default: int, limits: Mapping[str, int] | None) -> None:
        self.default, self.limits = default, dict(limits or {})

    def limit(self, kind: str) -> int:
        return max(1, self.limits.get(kind, self.default))


class _Unset:
    """A batch's send with no outcome yet (cut off by send_deadline)."""


_UNSET = _Unset()


def _kind(channel: str) -> str:
    return channel.split(":", 1)[0]


@dataclass(eq=False)
class _Job:
    """One message to send: a group of claimed rows (one row, or a digest) and its notice."""

    group: list[Delivery]
    notice: Notice | BridgeNotice | None
    error: Exception | None = None  # the notice could not be built: the rows' outcome


class _Run:
    """One drain: the claims, the queues and the lanes that send them, the lease heartbeat."""

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
        # One queue per (subscriber, channel), sent in activation order: a key is in `busy` while
        # its queue has a message in `ready` (its kind's keys whose next message may go) or in a
        # batch under way, so a key's messages never overlap. Lanes (tasks) take batches of keys.
        self.queues: dict[tuple[str, str], deque[_Job]] = {}
        self.busy: set[tuple[str, str]] = set()
        self.ready: dict[str, deque[tuple[str, str]]] = {}
        self.lanes: dict[str, set[asyncio.Task[None]]] = {}
        self.batch: Callable[[str], int] = getattr(senders, "batch_size", lambda kind: 1)
        self.changed = asyncio.Event()  # a lane finished a batch or ended, or `wake` was set
        self.woken = False
        self.failure: BaseException | None = None  # a lane's unexpected failure (the database)
        self.stopping: Callable[[], bool] = lambda: False
        self.progress = self.loop.time()
        self.ramp = min(self.limit, _FIRST_CLAIM)  # rows the next claim may take at most
        self.outcomes = _Outcomes(store, worker_id, clock, self.report, events, self._recorded)

    async def run(
        self, *, once: bool = False, stop: Callable[[], bool] = lambda: False, deadline: float | None = None,
        wake: asyncio.Event | None = None, recheck: float | None = None,
    ) -> DrainReport:
        self.stopping = stop
        if once:  # one claim is all there is: as many rows as it may hold
            self.ramp = self.limit
        helpers = [self.loop.create_task(self._heartbeat())]
        if wake is not None:
            helpers.append(self.loop.create_task(self._watch(wake)))
        try:
            await self._claim_and_wait(once, stop, deadline, recheck)
        except BaseException:
            lanes = [task for tasks in self.lanes.values() for task in tasks]
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
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
            idle = not any(self.lanes.values())
            if stop() or (once and claimed):
                if idle:
                    return
            elif idle or self.woken or (not exhausted and len(self.held) <= self.limit // 2):
                self.woken = False
                room = min(self.limit - len(self.held), self.ramp)
                self.ramp = min(self.limit, self.ramp * 4)
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
                self._start_lanes()
                await asyncio.sleep(0)  # let the lanes send: building 600 notices at once held the loop
            key = (group[0].subscriber, group[0].channel)
            try:  # built now: a later claim may evict the decoded activations from the cache
                job = _Job(group, self.notices.notice(group))
            except (KeyError, TypeError, ValueError) as exc:  # a row we cannot even read: never retry it
                job = _Job(group, None, PermanentDeliveryError(f"unreadable outbox payload: {exc!r}"))
            except Exception as exc:  # noqa: BLE001 - a bug must not strand the claimed rows
                job = _Job(group, None, exc)  # the store retries it with backoff, then dead-letters it
            self.queues.setdefault(key, deque()).append(job)
            if key not in self.busy:
                self.busy.add(key)
                self.ready.setdefault(_kind(key[1]), deque()).append(key)
        self._start_lanes()

    def _start_lanes(self) -> None:
        """Enough lanes for what is ready, up to the kind's bound of sends in flight (`limits`)."""
        for kind, ready in self.ready.items():
            lanes, size = self.lanes.setdefault(kind, set()), max(1, self.batch(kind))
            most = max(1, -(-self.gates.limit(kind) // size))
            while ready and len(lanes) < min(most, -(-len(ready) // size)):
                lanes.add(self.loop.create_task(self._lane(kind, size)))

    async def _lane(self, kind: str, size: int) -> None:
        """Send batches of up to `size` ready keys' next messages until none is ready."""
        ready = self.ready[kind]
        try:
            while ready:
                keys = [ready.popleft() for _ in range(min(size, len(ready)))]
                jobs = [self.queues[key].popleft() for key in keys]
                if self.stopping():  # stopping: what is not sent yet stays leased for release()
                    for row in (r for job in jobs for r in job.group):
                        self.held.pop(row.id, None)
                else:
                    await self._send(kind, jobs)
                for key in keys:
                    if self.queues[key]:
                        ready.append(key)  # its next message, behind the keys already waiting
                    else:
                        del self.queues[key]
                        self.busy.discard(key)
                self.changed.set()
        except Exception as exc:  # noqa: BLE001 - the database, mostly: the drain's failure
            self.failure = exc
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.lanes[kind].discard(task)
            self.changed.set()

    def _ours(self, group: Sequence[Delivery]) -> bool:
        """Still leased to us: not reported lost by the heartbeat, renewed within the lease."""
        now = self.loop.time()
        return all(r.id in self.held and now - self.held[r.id] < self.lease_seconds for r in group)

    async def _send(self, kind: str, jobs: Sequence[_Job]) -> None:
        """One batch of a kind (distinct keys): checked, sent together, each outcome recorded."""
        now = self.clock()
        mine = []
        for job in jobs:
            if self._ours(job.group):
                mine.append(job)
            else:  # another replica may be sending these now: not ours to send
                await self._give_back(kind, job.group, now)
        wait = PAUSE_SECONDS if kind in self.report.paused else self.paused(kind)
        if wait > 0:  # not attempted: the rows wait for the end of the pause and keep their attempts
            for job in mine:
                await self._defer(kind, job.group, wait, now)
            return
        for job in mine:
            if job.notice is None:
                self._record(job, job.error)
        await self._attempt(kind, [job for job in mine if job.notice is not None], now)

    def _record(self, job: _Job, error: Exception | None) -> None:
        """A message's outcome, for its group commit: as soon as it is known, so that a crash
        re-sends no message that was acknowledged a while ago (other sends of its batch may
        still be under way)."""
        group = job.group
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

    async def _attempt(self, kind: str, jobs: Sequence[_Job], now: datetime) -> None:
        """Send a batch's messages under one send_deadline, each outcome recorded as it ends (cut off
        by the deadline: a timeout)."""
        sends = [(j.group[0].channel, j.group[0].subscriber, j.notice, group_key(j.group)) for j in jobs]
        ended = [False] * len(jobs)

        def done(i: int, result: BaseException | None | _Unset) -> None:
            if not ended[i]:
                ended[i] = True
                self._record(jobs[i], self._outcome(kind, result))

        deadline = asyncio.timeout(self.send_deadline)
        try:
            async with deadline:  # the whole send, connect to last byte ([limits] send_deadline)
                send_many = getattr(self.senders, "send_many", None)
                if send_many is not None:
                    await send_many(sends, now, done)
                else:
                    await asyncio.gather(*(self._one(sends[i], now, done, i) for i in range(len(sends))))
        except TimeoutError:
            if not deadline.expired():  # pragma: no cover - every send reports its own outcome
                raise
        for i in range(len(jobs)):
            done(i, _UNSET)  # no-op for the ones that ended

    async def _one(self, send: tuple[str, str, Any, str], now: datetime, done: Callable[[int, Any], None],
                   i: int) -> None:
        try:
            await self.senders.send(*send, now)
        except Exception as exc:  # noqa: BLE001 - the outcome, mapped by _outcome
            done(i, exc)
        else:
            done(i, None)

    def _outcome(self, kind: str, result: BaseException | None | _Unset) -> Exception | None:
        """A send's stored outcome as the rows record it."""
        if result is None:
            return None
        if isinstance(result, _Unset):  # cut off by send_deadline
            return DeliveryTimeoutError(f"{kind}: no complete send within send_deadline ({self.send_deadline:g} s)")
        if isinstance(result, TimeoutError):  # a channel's own read timeout is a DeliveryTimeoutError
            return result if isinstance(result, DeliveryError) else DeliveryTimeoutError(f"{kind}: timed out: {result!r}")
        if isinstance(result, KeyError | TypeError | ValueError):  # a row we cannot even read: never retry it
            return PermanentDeliveryError(f"unreadable outbox payload: {result!r}")
        if isinstance(result, ChannelPausedError):
            self.report.paused.add(kind)
            if result.retry_after is None:
                return result.retry_later(PAUSE_SECONDS)
        if isinstance(result, Exception):
            return result  # a bug: the store retries it with backoff, then dead-letters it
        raise result  # pragma: no cover - send_many stores Exceptions only

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
