"""The drain's lease heartbeat with the real drain and store: rows still held are renewed while a
slow send goes on, and rows another worker took over meanwhile are not sent here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from crdswatch.app import drain
from crdswatch.model import Activation
from crdswatch.store import Delivery, NewDelivery, Store
from crdswatch.store.schema import deliveries

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = 1.5


class SlowFirst:
    """Senders whose first send waits for the test; the rest go at once."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        yield

    async def prepare(self, subscribers: Collection[str]) -> None:
        pass

    async def send(self, channel: str, subscriber: str, notice: Any, key: str, now: datetime) -> None:
        if not self.sent and not self.started.is_set():
            self.started.set()
            await self.release.wait()
        self.sent.append(key)


async def test_held_rows_are_renewed_and_rows_taken_over_are_not_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    # one subscriber, one channel: one queue, sent one after the other in order
    for i in range(3):  # three activations, one row each
        activation = Activation(f"2026-03-01T0{i}:00:00+00:00", f"jwst_054{i + 1}.pmap")
        assert store.record_activation("k", activation, f"jwst_054{i}.pmap", {"changes": []},
                                       [NewDelivery("s", "webhook:s", {"sel": [0]})], store.get_cursor("k"), now=T0)

    async def load(self: drain.NoticeBuilder, rows: Sequence[Delivery]) -> None:
        pass

    monkeypatch.setattr(drain.NoticeBuilder, "load", load)
    monkeypatch.setattr(drain.NoticeBuilder, "notice", lambda self, group: object())
    renewals: asyncio.Queue[list[int]] = asyncio.Queue()
    renew = store.aio.renew

    async def watched(worker_id: str, ids: Sequence[int], now: datetime, lease_seconds: float) -> list[int]:
        kept = await renew(worker_id, ids, now, lease_seconds)
        renewals.put_nowait(kept)  # heard by the test only after the heartbeat has acted on it
        return kept

    monkeypatch.setattr(store.aio, "renew", watched)
    clock = [T0]
    senders = SlowFirst()
    task = asyncio.create_task(drain.drain_until_idle(store, senders, "A", lambda: clock[0], lease_seconds=LEASE))
    try:
        await asyncio.wait_for(senders.started.wait(), 30)
        first, second, third = sorted(store.outbox_rows(limit=10), key=lambda r: r.id)
        assert {r.lease_owner for r in (first, second, third)} == {"A"}
        # the heartbeat keeps all three (the first mid-send, two queued behind it) ours
        clock[0] = T0 + timedelta(seconds=10)
        renewed = clock[0] + timedelta(seconds=LEASE)
        while {r.lease_expires_at for r in store.outbox_rows(limit=10)} != {renewed}:  # a renewal since the move
            assert await asyncio.wait_for(renewals.get(), 30) == [first.id, second.id, third.id]
        # as if A's leases had run out and B claimed the two queued rows: A must not send them
        with store.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id.in_([second.id, third.id]))
                         .values(lease_owner="B"))
        while await asyncio.wait_for(renewals.get(), 30) != [first.id]:  # the heartbeat hears it
            pass
        senders.release.set()
        report = await asyncio.wait_for(task, 30)
    finally:
        senders.release.set()
        if not task.done():
            task.cancel()
    assert senders.sent == [first.idempotency_key]  # only the row A still held
    assert report.sent == 1
    after = {r.id: r for r in store.outbox_rows(limit=10)}
    assert after[first.id].status == "sent"
    assert [(after[i].status, after[i].lease_owner, after[i].attempts) for i in (second.id, third.id)] == [
        ("leased", "B", 0)] * 2  # untouched: B's to send and record
    assert store.attempts(second.id) == [] and store.attempts(third.id) == []
    store.close()
