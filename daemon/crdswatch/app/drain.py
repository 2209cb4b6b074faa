"""Outbox drain: claim due rows, merge digests, render, send through the channels, record the outcome.

At community scale (thousands of rows for one activation) the drain keeps going while rows are
due, one claimed batch after another over the same channel sessions; each activation is decoded
once and each distinct selection built once (rows carry only an index list, see notices.codec);
outcomes are written in group commits while the next messages are already on their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from crdswatch.app.delivery_events import DeliveryEvents
from crdswatch.errors import (
    ChannelPausedError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import Activation, ActivationDiff, BridgeNotice, Notice
from crdswatch.notices.codec import (
    bridge_notice_from_json,
    notice_from_json,
    payload_digest,
    payload_notice_fields,
    selected_diff,
    stored_activation_diff,
)
from crdswatch.store import Delivery, Outcome, SeenActivation, Store

__all__ = [
    "PAUSE_SECONDS", "DrainReport", "NoticeBuilder", "Senders", "drain_once", "drain_until_idle", "group_rows",
    "merge_notices",
]

PAUSE_SECONDS = 300.0  # how long a channel rests after an authentication failure
_CACHE_LIMIT = 512  # decoded activations and selections kept between batches
_GROUP, _LINGER = 128, 0.025  # outcomes one write waits for, and for at most how long (seconds)


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


def group_rows(rows: Sequence[Delivery]) -> list[list[Delivery]]:
    """Rows for the same subscriber and channel claimed together are one message (a digest)."""
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        digest = payload_digest(row.payload) != "immediate"
        key = (row.subscriber, row.channel) if digest else (f"#{row.id}", row.channel)
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def merge_notices(notices: Sequence[Notice]) -> Notice:
    """A digest: every activation of the notices, oldest first."""
    first = notices[0]
    activations = sorted((a for n in notices for a in n.activations), key=lambda a: a.activation.date)
    hits = {name: ids for n in notices for name, ids in n.dataset_hits.items()}
    return replace(first, activations=tuple(activations), dataset_hits=hits)


class NoticeBuilder:
    """Notices from claimed rows: each activation decoded once, each distinct selection built once.

    Rows with the same selection get the very same `activations` tuple, which is what lets the
    e-mail renderer reuse one rendering for all of them.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._diffs: dict[int, ActivationDiff] = {}
        self._shapes: dict[tuple[tuple[int, str], ...], tuple[ActivationDiff, ...]] = {}

    async def load(self, rows: Sequence[Delivery]) -> None:
        """Read and decode, off the event loop, the activations these rows refer to."""
        wanted = {r.activation_id for r in rows
                  if "notice" not in r.payload and "bridge" not in r.payload and r.activation_id is not None}
        missing = sorted(i for i in wanted if i not in self._diffs)
        if not missing:
            return
        if len(self._diffs) + len(missing) > _CACHE_LIMIT:
            self._diffs.clear()
            self._shapes.clear()
        seen = await self.store.aio.get_activations(missing)  # off the loop, bounded
        self._diffs.update(await asyncio.to_thread(self._decode, seen))

    @staticmethod
    def _decode(records: Mapping[int, SeenActivation]) -> dict[int, ActivationDiff]:
        out: dict[int, ActivationDiff] = {}
        for i, seen in records.items():
            activation = Activation(seen.activation_date, seen.context, seen.description)
            out[i] = stored_activation_diff(seen.source_key, activation, seen.previous_context, seen.diff or {})
        return out

    def notice(self, group: Sequence[Delivery]) -> Notice | BridgeNotice:
        """The notice of one group of rows (one row, or a digest); KeyError/ValueError if unreadable."""
        if "bridge" in group[0].payload:  # an upstream post or MAST summary: always one row
            return bridge_notice_from_json(group[0].payload["bridge"])
        if any("notice" in r.payload for r in group):  # rows queued before compact payloads
            return merge_notices([notice_from_json(r.payload["notice"]) for r in group])
        key = tuple((int(r.activation_id or -1), str(r.payload["sel"])) for r in group)
        shape = self._shapes.get(key)
        if shape is None:
            parts = [selected_diff(self._diffs[r.activation_id or -1], r.payload) for r in group]
            shape = self._shapes[key] = tuple(sorted(parts, key=lambda a: a.activation.date))
        fields = payload_notice_fields(group[0].payload)
        if len(group) > 1:
            fields["dataset_hits"] = {k: v for r in group for k, v in payload_notice_fields(r.payload)["dataset_hits"].items()}
        return Notice(group[0].subscriber, shape, **fields)


def _group_key(rows: Sequence[Delivery]) -> str:
    if len(rows) == 1:
        return rows[0].idempotency_key
    joined = "+".join(sorted(r.idempotency_key for r in rows))
    return hashlib.sha256(joined.encode()).hexdigest()


async def drain_once(
    store: Store, senders: Senders, worker_id: str, now: datetime, *, lease_seconds: float = 120,
    limit: int = 200, concurrency: int = 4, paused: Callable[[str], float] = lambda kind: 0.0,
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
        return await _drain_batch(store, senders, worker_id, now, NoticeBuilder(store), lease_seconds, limit,
                                  _Gates(concurrency, limits), paused, events, send_deadline)


async def drain_until_idle(
    store: Store, senders: Senders, worker_id: str, clock: Callable[[], datetime], *,
    lease_seconds: float = 120, limit: int = 200, concurrency: int = 4,
    paused: Callable[[str], float] = lambda kind: 0.0, limits: Mapping[str, int] | None = None,
    stop: Callable[[], bool] = lambda: False, batch_deadline: float | None = None,
    events: DeliveryEvents | None = None, send_deadline: float = DEFAULT_LIMITS.send_deadline,
) -> DrainReport:
    """Batch after batch over the same channel sessions, until nothing is due (or `stop()`).

    A claim never holds more than `limit` rows, so a lease covers what one batch can send;
    `batch_deadline` bounds each batch (TimeoutError; its unsent rows stay leased until expiry).
    `events` hears every row's outcome as it is recorded (log lines, dead-row alerts).
    """
    report = DrainReport()
    notices = NoticeBuilder(store)
    gates = _Gates(concurrency, limits)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(senders.session())
        while not stop():
            async with asyncio.timeout(batch_deadline):
                batch = await _drain_batch(store, senders, worker_id, clock(), notices, lease_seconds, limit,
                                           gates, paused, events, send_deadline)
            report.add(batch)
            if batch.claimed == 0:
                break
    return report


class _Gates:
    """Bounded concurrency per channel kind: `limits[kind]`, else `default` sends in flight."""

    def __init__(self, default: int, limits: Mapping[str, int] | None) -> None:
        self.default, self.limits = default, dict(limits or {})
        self.gates: dict[str, asyncio.Semaphore] = {}

    def __call__(self, kind: str) -> asyncio.Semaphore:
        if kind not in self.gates:
            self.gates[kind] = asyncio.Semaphore(max(1, self.limits.get(kind, self.default)))
        return self.gates[kind]


async def _drain_batch(
    store: Store, senders: Senders, worker_id: str, now: datetime, notices: NoticeBuilder, lease_seconds: float,
    limit: int, gates: _Gates, paused: Callable[[str], float], events: DeliveryEvents | None = None,
    send_deadline: float = DEFAULT_LIMITS.send_deadline,
) -> DrainReport:
    report = DrainReport()
    rows = await store.aio.claim(worker_id, now, lease_seconds, limit)  # off the loop, bounded
    report.claimed = len(rows)
    if not rows:
        return report
    await notices.load(rows)
    await senders.prepare({r.subscriber for r in rows})
    outcomes = _Outcomes(store, worker_id, now, report, events)
    # One queue per (subscriber, channel), sent in activation order; the queues run in
    # parallel. A webhook receiver or a mailbox then sees jwst_0540 before jwst_0541.
    queues: dict[tuple[str, str], list[list[Delivery]]] = {}
    for group in group_rows(rows):
        queues.setdefault((group[0].subscriber, group[0].channel), []).append(group)

    async def run(queue: list[list[Delivery]]) -> None:
        for group in queue:
            await _send_group(store, senders, worker_id, now, group, report, gates, paused, notices, outcomes,
                              send_deadline)

    jobs: list[Awaitable[None]] = [run(queue) for queue in queues.values()]
    try:
        await asyncio.gather(*jobs)
    finally:
        await outcomes.flush()
    return report


class _Outcomes:
    """Group commit of outcomes: they queue up while the previous write runs; one transaction each.

    A write waits up to `_LINGER` seconds for `_GROUP` outcomes before it starts (a fan-out then
    writes ~100 rows per transaction instead of ~10: the store's per-transaction cost, not the
    rows, dominated the drain), and never when the batch is done (`flush`). A message is recorded
    sent within that wait plus one write of its server's acknowledgement, so a crash re-sends at
    most the messages acknowledged meanwhile (with the same Message-ID).
    """

    def __init__(self, store: Store, worker_id: str, now: datetime, report: DrainReport,
                 events: DeliveryEvents | None = None) -> None:
        self.store, self.worker_id, self.now, self.report = store, worker_id, now, report
        self.events = events
        self.pending: list[tuple[Outcome, Delivery]] = []
        self.task: asyncio.Task[None] | None = None
        self.full = asyncio.Event()  # enough outcomes for a write, or the batch is over
        self.closing = False

    def add(self, outcome: Outcome, row: Delivery) -> None:
        self.pending.append((outcome, row))
        if len(self.pending) >= _GROUP:
            self.full.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self.pending:
            if not self.closing and len(self.pending) < _GROUP:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_LINGER):
                        await self.full.wait()
            if not self.closing:
                self.full.clear()
            batch, self.pending = self.pending, []
            status = await self.store.aio.record_outcomes([o for o, _ in batch], self.worker_id, self.now)
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

    async def flush(self) -> None:
        self.closing = True
        self.full.set()  # a write waiting for company starts now
        while self.task is not None and not self.task.done():
            await self.task
        if self.task is not None:
            self.task.result()  # a failed write is the drain's failure
        if self.pending:  # added after the last write finished
            self.task = None
            await self._write()


async def _send_group(
    store: Store, senders: Senders, worker_id: str, now: datetime, group: list[Delivery], report: DrainReport,
    gates: _Gates, paused: Callable[[str], float], notices: NoticeBuilder,
    outcomes: _Outcomes, send_deadline: float = DEFAULT_LIMITS.send_deadline,
) -> None:
    kind = group[0].channel.split(":", 1)[0]
    async with gates(kind):
        error: Exception | None = None
        wait = PAUSE_SECONDS if kind in report.paused else paused(kind)
        if wait > 0:  # not attempted: the rows wait for the end of the pause and keep their attempts
            for row in group:
                await store.aio.defer(row.id, worker_id, now + timedelta(seconds=wait), now)
                if outcomes.events is not None:
                    outcomes.events.deferred(row, wait)
                report.outcomes.append((kind, row.subscriber, "paused"))
            return
        deadline = asyncio.timeout(send_deadline)
        try:
            notice = notices.notice(group)
            async with deadline:  # the whole send, connect to last byte ([limits] send_deadline)
                await senders.send(group[0].channel, group[0].subscriber, notice, _group_key(group), now)
        except TimeoutError as exc:
            if deadline.expired():  # ours; a channel's own read timeout is a DeliveryTimeoutError
                error = DeliveryTimeoutError(f"{kind}: no complete send within send_deadline ({send_deadline:g} s)")
            elif isinstance(exc, DeliveryError):
                error = exc
            else:
                error = DeliveryTimeoutError(f"{kind}: timed out: {exc!r}")
        except (KeyError, TypeError, ValueError) as exc:  # a row we cannot even read: never retry it
            error = PermanentDeliveryError(f"unreadable outbox payload: {exc!r}")
        except DeliveryError as exc:
            error = exc
            if isinstance(exc, ChannelPausedError):
                report.paused.add(kind)
                if exc.retry_after is None:
                    error = exc.retry_later(PAUSE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a bug must not strand the claimed rows
            error = exc  # the store retries it with backoff, then dead-letters it
        if isinstance(error, TransientDeliveryError) and error.retry_after is None and len(group) > 1:
            # One delay for the whole digest: rows retried at different times would go out as
            # several e-mails instead of one.
            delay = store.policy.delay(max(r.attempts for r in group) + 1).total_seconds()
            error = error.retry_later(delay)
        for row in group:
            outcomes.add(Outcome(row.id, error), row)
