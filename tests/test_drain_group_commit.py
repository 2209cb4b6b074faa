"""The drain goes on until the outbox is empty even when outcomes are written late (group commits):
rows whose outcome is not written yet count against `limit`, and must not end the drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crdswatch.app import drain
from crdswatch.model import Activation
from crdswatch.store import Delivery, NewDelivery, Outcome, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Senders:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        yield

    async def prepare(self, subscribers: Collection[str]) -> None:
        pass

    async def send(self, channel: str, subscriber: str, notice: Any, key: str, now: datetime) -> None:
        await asyncio.sleep(0)
        self.sent.append(subscriber)


@pytest.mark.parametrize("limit", [1, 4, 200])
async def test_slow_outcome_writes_do_not_end_the_drain_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               limit: int) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    rows = [NewDelivery(f"s{i:02d}", f"webhook:s{i:02d}", {"sel": [0]}) for i in range(30)]
    assert store.record_activation("k", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"), "jwst_0540.pmap",
                                   {"changes": []}, rows, None, now=T0)
    record = store.record_outcomes

    def slow(outcomes: Sequence[Outcome], worker_id: str, now: datetime) -> dict[int, str | None]:
        time.sleep(0.03)  # a busy database: sends finish long before their outcomes are written
        return record(outcomes, worker_id, now)

    monkeypatch.setattr(store, "record_outcomes", slow)

    async def load(self: drain.NoticeBuilder, rows: Sequence[Delivery]) -> None:
        pass

    monkeypatch.setattr(drain.NoticeBuilder, "load", load)
    monkeypatch.setattr(drain.NoticeBuilder, "notice", lambda self, group: object())
    senders = Senders()
    report = await drain.drain_until_idle(store, senders, "w", lambda: T0, limit=limit)
    assert report.sent == 30 and sorted(senders.sent) == sorted(r.subscriber for r in rows)
    assert store.counts()["sent"] == 30
    store.close()


class BatchSenders(Senders):
    """The batch interface: e-mail in batches of 4; one recipient's send never ends."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def batch_size(self, kind: str) -> int:
        return 4 if kind == "email" else 1

    async def send_many(self, sends: Sequence[tuple[str, str, Any, str]], now: datetime,
                        done: Callable[[int, Exception | None], None]) -> None:
        self.batches.append([s[1] for s in sends])

        async def one(i: int, subscriber: str) -> None:
            if subscriber == "s02":
                await asyncio.sleep(3600)  # a hung send: cut off by send_deadline
            elif subscriber == "s05":
                done(i, ValueError("unreadable"))
                return
            self.sent.append(subscriber)
            done(i, None)

        await asyncio.gather(*(one(i, s[1]) for i, s in enumerate(sends)))


async def test_a_batch_cut_off_by_its_deadline_keeps_what_was_sent(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each send of a batch has its own outcome, recorded as soon as it ends (a crash then re-sends
    nothing acknowledged long ago): the ones done before send_deadline stay sent, the hung one is
    a timeout to retry, an unreadable one is dead; at most limits[kind] in flight."""
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    rows = [NewDelivery(f"s{i:02d}", f"email:s{i:02d}@x.example", {"sel": [0]}) for i in range(10)]
    assert store.record_activation("k", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"), "jwst_0540.pmap",
                                   {"changes": []}, rows, None, now=T0)

    async def load(self: drain.NoticeBuilder, rows: Sequence[Delivery]) -> None:
        pass

    monkeypatch.setattr(drain.NoticeBuilder, "load", load)
    monkeypatch.setattr(drain.NoticeBuilder, "notice", lambda self, group: object())
    senders = BatchSenders()
    seen: dict[str, str] = {}

    async def look() -> None:  # while s02's send hangs: its batch mates are recorded already
        await asyncio.sleep(0.35)
        seen.update({d.subscriber: d.status for d in (store.get_delivery(i) for i in range(1, 11)) if d is not None})

    looking = asyncio.create_task(look())
    report = await drain.drain_until_idle(store, senders, "w", lambda: T0, limits={"email": 8}, send_deadline=0.7)
    await looking
    assert seen["s00"] == "sent" and seen["s02"] == "leased"  # not held back until the whole batch ended
    assert sorted(senders.sent) == [f"s{i:02d}" for i in range(10) if i not in (2, 5)]
    assert all(len(b) <= 4 for b in senders.batches) and sum(map(len, senders.batches)) == 10
    by_name = {d.subscriber: d for d in (store.get_delivery(i) for i in range(1, 11)) if d is not None}
    assert by_name["s02"].status == "pending" and "send_deadline" in (by_name["s02"].last_error or "")
    assert by_name["s05"].status == "dead" and "unreadable" in (by_name["s05"].last_error or "")
    assert report.sent == 8 and store.counts()["sent"] == 8
    store.close()


async def test_the_first_claim_is_small_so_sending_starts_while_the_rest_is_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    rows = [NewDelivery(f"s{i:04d}", f"webhook:s{i:04d}", {"sel": [0]}) for i in range(700)]
    assert store.record_activation("k", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"), "jwst_0540.pmap",
                                   {"changes": []}, rows, None, now=T0)
    claim, asked, sent_before = store.claim, [], []
    senders = Senders()

    def claim_spy(worker_id: str, now: datetime, lease_seconds: float, limit: int) -> list[Delivery]:
        asked.append(limit)
        sent_before.append(len(senders.sent))
        return claim(worker_id, now, lease_seconds, limit)

    monkeypatch.setattr(store, "claim", claim_spy)

    async def load(self: drain.NoticeBuilder, rows: Sequence[Delivery]) -> None:
        pass

    monkeypatch.setattr(drain.NoticeBuilder, "load", load)
    monkeypatch.setattr(drain.NoticeBuilder, "notice", lambda self, group: object())
    report = await drain.drain_until_idle(store, senders, "w", lambda: T0, limit=600)
    assert report.sent == 700 and store.counts()["sent"] == 700
    assert asked[:2] == [64, 256]  # then what the room the held rows leave allows (it depends on timing)
    assert max(asked) <= 600 and sent_before[-1] > 0
    store.close()
    # One claim is all drain_once has: it takes as many rows as it may hold.
    store = Store.open(f"sqlite:///{tmp_path}/once.db")
    claim, asked = store.claim, []
    monkeypatch.setattr(store, "claim", claim_spy)
    assert store.record_activation("k", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"), "jwst_0540.pmap",
                                   {"changes": []}, rows[:100], None, now=T0)
    assert (await drain.drain_once(store, senders, "w", T0, limit=600)).sent == 100
    assert asked == [600]
    store.close()
