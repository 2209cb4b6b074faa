"""Outbox drain: claim due rows, merge digests, render, send through the channels, record the outcome."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from crdswatch.channels.base import ChannelPausedError
from crdswatch.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from crdswatch.model import Notice
from crdswatch.notices.codec import notice_from_json
from crdswatch.store import Delivery, Store

__all__ = ["PAUSE_SECONDS", "DrainReport", "Senders", "drain_once", "group_rows", "merge_notices"]

PAUSE_SECONDS = 300.0  # how long a channel rests after an authentication failure


class Senders(Protocol):
    """Sends one rendered notice on one channel of one subscriber (see service.ChannelSenders)."""

    async def send(self, channel: str, subscriber: str, notice: Notice, key: str, now: datetime) -> None: ...

    def session(self) -> Any: ...  # async context manager holding shared connections for one drain


@dataclass
class DrainReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    paused: set[str] = field(default_factory=set)
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (channel kind, subscriber, outcome)


def group_rows(rows: Sequence[Delivery]) -> list[list[Delivery]]:
    """Rows for the same subscriber and channel claimed together are one message (a digest)."""
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        digest = row.payload.get("notice", {}).get("digest", "immediate") != "immediate"
        key = (row.subscriber, row.channel) if digest else (f"#{row.id}", row.channel)
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def merge_notices(notices: Sequence[Notice]) -> Notice:
    """A digest: every activation of the notices, oldest first."""
    first = notices[0]
    activations = sorted((a for n in notices for a in n.activations), key=lambda a: a.activation.date)
    hits = {name: ids for n in notices for name, ids in n.dataset_hits.items()}
    return replace(first, activations=tuple(activations), dataset_hits=hits)


def _group_key(rows: Sequence[Delivery]) -> str:
    if len(rows) == 1:
        return rows[0].idempotency_key
    joined = "+".join(sorted(r.idempotency_key for r in rows))
    return hashlib.sha256(joined.encode()).hexdigest()


async def drain_once(
    store: Store, senders: Senders, worker_id: str, now: datetime, *, lease_seconds: float = 120,
    limit: int = 200, concurrency: int = 4, paused: Callable[[str], float] = lambda kind: 0.0,
) -> DrainReport:
    """Claim what is due and send it; every row ends sent, back to pending with a delay, or dead.

    `paused(kind)` is how many more seconds a channel kind stays paused (0: not paused); its rows
    are not attempted and wait that long.
    """
    report = DrainReport()
    rows = await store.aio.claim(worker_id, now, lease_seconds, limit)  # off the loop, bounded
    if not rows:
        return report
    gate = asyncio.Semaphore(concurrency)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(senders.session())
        # One queue per (subscriber, channel), sent in activation order; the queues run in
        # parallel. A webhook receiver or a mailbox then sees jwst_0540 before jwst_0541.
        queues: dict[tuple[str, str], list[list[Delivery]]] = {}
        for group in group_rows(rows):
            queues.setdefault((group[0].subscriber, group[0].channel), []).append(group)

        async def run(queue: list[list[Delivery]]) -> None:
            for group in queue:
                await _send_group(store, senders, worker_id, now, group, report, gate, paused)

        jobs: list[Awaitable[None]] = [run(queue) for queue in queues.values()]
        await asyncio.gather(*jobs)
    return report


async def _send_group(
    store: Store, senders: Senders, worker_id: str, now: datetime, group: list[Delivery],
    report: DrainReport, gate: asyncio.Semaphore, paused: Callable[[str], float],
) -> None:
    kind = group[0].channel.split(":", 1)[0]
    async with gate:
        error: Exception | None = None
        wait = PAUSE_SECONDS if kind in report.paused else paused(kind)
        if wait > 0:  # not attempted: the rows wait for the end of the pause and keep their attempts
            for row in group:
                await store.aio.defer(row.id, worker_id, now + timedelta(seconds=wait), now)
                report.outcomes.append((kind, row.subscriber, "paused"))
            return
        try:
            notice = merge_notices([notice_from_json(r.payload["notice"]) for r in group])
            await senders.send(group[0].channel, group[0].subscriber, notice, _group_key(group), now)
        except (KeyError, TypeError, ValueError) as exc:  # a row we cannot even read: never retry it
            error = PermanentDeliveryError(f"unreadable outbox payload: {exc!r}")
        except DeliveryError as exc:
            error = exc
            if isinstance(exc, ChannelPausedError):
                report.paused.add(kind)
                if exc.retry_after is None:
                    error = ChannelPausedError(str(exc), retry_after=PAUSE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a bug must not strand the claimed rows
            error = exc  # the store retries it with backoff, then dead-letters it
        if isinstance(error, TransientDeliveryError) and error.retry_after is None and len(group) > 1:
            # One delay for the whole digest: rows retried at different times would go out as
            # several e-mails instead of one.
            delay = store.policy.delay(max(r.attempts for r in group) + 1).total_seconds()
            error = type(error)(str(error), retry_after=delay)
        for row in group:
            if error is None:
                await store.aio.mark_sent(row.id, worker_id, now)
                report.sent += 1
                report.outcomes.append((kind, row.subscriber, "sent"))
            else:
                status = await store.aio.mark_failed(row.id, worker_id, now, error)
                report.dead += status == "dead"
                report.failed += status == "pending"
                report.outcomes.append((kind, row.subscriber, "dead" if status == "dead" else "retry"))
