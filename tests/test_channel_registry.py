"""One Channel protocol, one registry: the senders dispatch every row through `CHANNELS`.

A channel the daemon has never heard of is one class and one registry line; rows of its kind then
go out through it (here to a real HTTP receiver on loopback), notices and bridge notices alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crdswatch.channels import (
    CHANNELS,
    Channel,
    ChannelLimits,
    MailChannel,
    SlackChannel,
    WebhookChannel,
    Wiring,
)
from crdswatch.channels.base import Item, config_value, post_bytes, raise_for_status
from crdswatch.config import load_settings
from crdswatch.errors import PermanentDeliveryError
from crdswatch.model import BridgeNotice
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.render import sample_notice
from crdswatch.render.budget import WEBHOOK_BUDGET, Budget
from crdswatch.service.runtime import ChannelSenders, open_store
from crdswatch.store import Store
from tests.support.fixtures_channels import http_sink  # noqa: F401
from tests.support.http_sink import HttpSink

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class MemoChannel:
    """A channel the daemon does not ship: POSTs `{"subject", "key"}` to the subscriber's memo_url."""

    kind: ClassVar[str] = "memo"
    budget: ClassVar[Budget] = WEBHOOK_BUDGET

    def __init__(self, url: str, wiring: Wiring, target: str) -> None:
        self.url, self.wiring, self.target = url, wiring, target

    @classmethod
    def limits(cls, wiring: Wiring) -> ChannelLimits:
        return ChannelLimits(max_concurrency=1)

    @classmethod
    def open(cls, target: str, config: Mapping[str, Any], wiring: Wiring) -> MemoChannel:
        return cls(config_value(config, "memo_url", cls.kind), wiring, target)

    def render(self, item: Item, key: str, now: datetime) -> bytes:
        subject = item.subject if isinstance(item, BridgeNotice) else f"{len(item.activations)} activation(s)"
        return json.dumps({"subject": subject, "target": self.target, "key": key}).encode()

    async def send(self, rendered: bytes, key: str, now: datetime) -> None:
        response = await post_bytes(self.wiring.http, self.url, rendered, {"content-type": "application/json"}, "memo")
        raise_for_status(response, "memo", now)


def _conforms(cls: type[Channel[Any]]) -> type[Channel[Any]]:
    return cls  # mypy checks each registered class against the protocol here


@pytest.fixture
def senders(tmp_path: Path) -> Iterator[tuple[ChannelSenders, Store]]:
    path = tmp_path / "c.toml"
    path.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/state.db"\n')
    settings = load_settings(path, {})
    store = open_store(settings)
    yield ChannelSenders(settings, store), store
    store.close()


def test_the_registry_holds_the_shipped_channels_and_each_declares_its_limits() -> None:
    assert {kind: cls for kind, cls in CHANNELS.items()} == {
        "email": MailChannel, "slack": SlackChannel, "webhook": WebhookChannel}
    for kind, cls in CHANNELS.items():
        assert _conforms(cls).kind == kind
        assert cls.limits(Wiring(http=None)).max_concurrency >= 1  # type: ignore[arg-type]


async def test_a_new_channel_is_one_class_and_one_registry_line(
    senders: tuple[ChannelSenders, Store], http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    sender, store = senders
    monkeypatch.setitem(CHANNELS, MemoChannel.kind, _conforms(MemoChannel))  # the one registry line
    store.upsert_subscriber("ann", subscriber_from_json({"memo_url": http_sink.url_for("/memo"), "origin": "cli"}))
    bridge = BridgeNotice("ann", "post", "nirspec_reffiles_upd", "New NIRSpec flats", ("line",), "you follow it")
    try:
        async with sender.session():
            await sender.send("memo:desk-7", "ann", sample_notice(NOW), "k1", NOW)
            await sender.send("memo:desk-7", "ann", bridge, "k2", NOW)
        assert sender.concurrency()["memo"] == 1
        with pytest.raises(PermanentDeliveryError, match="unknown channel"):
            await sender.send("pager:1", "ann", bridge, "k3", NOW)
    finally:
        await sender.aclose()
    got = [r.json() for r in http_sink.requests]
    assert [r.path for r in http_sink.requests] == ["/memo", "/memo"]
    assert got[0]["target"] == "desk-7" and got[0]["key"] == "k1" and "activation" in got[0]["subject"]
    assert got[1] == {"subject": "New NIRSpec flats", "target": "desk-7", "key": "k2"}


async def test_a_subscriber_missing_the_channels_setting_is_a_permanent_failure(
    senders: tuple[ChannelSenders, Store],
) -> None:
    sender, store = senders
    store.upsert_subscriber("bob", subscriber_from_json({"origin": "cli"}))
    try:
        with pytest.raises(PermanentDeliveryError, match="slack_webhook"):
            await sender.send("slack", "bob", sample_notice(NOW), "k", NOW)
        with pytest.raises(PermanentDeliveryError, match="webhook_secret"):
            store.upsert_subscriber("bob", subscriber_from_json({"origin": "cli", "webhook_url": "http://127.0.0.1:9/"}))
            await sender.send("webhook", "bob", sample_notice(NOW), "k", NOW)
        with pytest.raises(PermanentDeliveryError, match=r"no \[smtp\]"):
            await sender.send("email:bob@example.org", "bob", sample_notice(NOW), "k", NOW)
    finally:
        await sender.aclose()
