"""The drain goes on until the outbox is empty even when outcomes are written late (group commits):
rows whose outcome is not written yet count against `limit`, and must not end the drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Sequence
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
