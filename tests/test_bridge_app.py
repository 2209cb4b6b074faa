"""The bridge's story on a real store: posts and MAST mail become outbox rows exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.app.upstream import Bridge
from crdswatch.config import UpstreamSettings
from crdswatch.model import Activation, Change, DiffResult
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.store import Store
from tests.support import upstream_mail as um
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2019, 7, 31, tzinfo=UTC)
KEY = "https://jwst-crds.stsci.edu|jwst|latest"
NIRSPEC = UpstreamSettings(name="nirspec_reffiles_upd", address="upstream+nirspec@lists.example.org",
                           list_id=um.LIST_ID, auto_confirm=True)
MAST = UpstreamSettings(name="mast", kind="mast", address="upstream+mast@lists.example.org")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url, Store.open(url, clock=lambda: NOW) as opened:
        opened.upsert_subscriber("nirspec", subscriber_from_json({"email": ["ann@example.org"], "instruments": ["nirspec"]}))
        opened.upsert_subscriber("miri", subscriber_from_json({"email": ["bob@example.org"], "instruments": ["miri"]}))
        opened.upsert_subscriber("prog", subscriber_from_json({"webhook_url": "https://hooks.example.org/x", "webhook_secret": "whsec_c2VjcmV0LTQ3MTU=",
                                          "programs": ["1234"], "instruments": ["miri"]}))
        change = Change(old_mapping="jwst_nirspec_dark_0028.rmap", new_mapping="jwst_nirspec_dark_0029.rmap",
                        level="reference", action="added", line="", new_file="jwst_nirspec_dark_0022.fits")
        diff = DiffResult("jwst_0540.pmap", "jwst_0541.pmap", (change,))
        opened.record_activation(KEY, Activation("2019-07-30T15:06:02+00:00", "jwst_0541.pmap"), "jwst_0540.pmap",
                                 {**diff.to_json(), "catalog": {}}, [], None, now=NOW)
        yield opened


def _bridge(store: Store, sent: list[tuple[str, ...]]) -> Bridge:
    async def forward(subject: str, body: str) -> None:
        sent.append(("admin", subject, body))

    async def reply(upstream: UpstreamSettings, to: str, subject: str, body: str) -> None:
        sent.append(("reply", to, subject, body))

    return Bridge(store, [NIRSPEC, MAST], public_url="https://watch.example.org", forward=forward, reply=reply)


async def test_post_is_queued_once_for_its_audience_and_tied_to_the_activation(store: Store) -> None:
    bridge = _bridge(store, [])
    assert bridge.for_address("UPSTREAM+nirspec@lists.example.org") is NIRSPEC
    first = await bridge.receive_mail(NIRSPEC, um.plain_post(), NOW)
    again = await bridge.receive_mail(NIRSPEC, um.plain_post(), NOW)
    assert (first.outcome, first.queued, again.outcome) == ("post", 1, "duplicate")
    (row,) = store.outbox_rows()
    assert (row.subscriber, row.channel, row.source_key) == ("nirspec", "email:ann@example.org",
                                                            "upstream|nirspec_reffiles_upd")
    notice = row.payload["bridge"]
    assert notice["subject"] == "[nirspec_reffiles_upd] NIRSpec reference files delivered: jwst_0541.pmap"
    text = "\n".join(notice["lines"])
    assert "Active in jwst_0541.pmap" in text and "https://watch.example.org/activations/jwst_0541.pmap" in text


async def test_confirmation_request_is_answered_and_other_mail_goes_to_the_admin(store: Store) -> None:
    sent: list[tuple[str, ...]] = []
    bridge = _bridge(store, sent)
    confirmed = await bridge.receive_mail(NIRSPEC, um.confirmation_request("ABCD1234"), NOW)
    other = await bridge.receive_mail(NIRSPEC.model_copy(update={"auto_confirm": False}),
                                      um.confirmation_request("FFFF0000"), NOW)
    assert confirmed.outcome == "confirmed" and other.outcome == "forwarded"
    assert sent[0] == ("reply", "LISTSERV@LISTSERV.STSCI.EDU", "Re: Command confirmation request (ABCD1234)", "OK\n")
    assert sent[1][0] == "admin" and "FFFF0000" in sent[1][1]
    assert store.outbox_rows() == []


async def test_mast_mail_notifies_program_followers_once_per_new_event(store: Store) -> None:
    bridge = _bridge(store, [])
    first = await bridge.receive_mail(MAST, um.mast_mail(um.mast_events(count=37)), NOW)
    again = await bridge.receive_mail(MAST, um.mast_mail(um.mast_events(count=37), message_id="<m2@x>"), NOW)
    assert (first.outcome, first.queued, again.queued) == ("mast", 1, 0)
    (row,) = store.outbox_rows()
    assert row.subscriber == "prog" and row.channel == "webhook"
    notice = row.payload["bridge"]
    assert notice["subject"] == "[MAST JWST] program 1234: 37 files reprocessed on 2019-08-02"
    assert any("Likely cause: jwst_0541.pmap" in line for line in notice["lines"])


async def test_unreadable_mast_mail_goes_to_the_admin(store: Store) -> None:
    sent: list[tuple[str, ...]] = []
    result = await _bridge(store, sent).receive_mail(MAST, um.plain_post(), NOW)
    assert result.outcome == "rejected" and "no JSON attachment" in sent[0][2]
