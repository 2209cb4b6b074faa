"""The bridge's store on SQLite and PostgreSQL: posts deduped and found by name, feeds, MAST events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.notices.mast import parse_mast_mail
from crdswatch.notices.upstream import parse_post
from crdswatch.store import Store
from tests.support import upstream_mail as um
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url, Store.open(url, clock=lambda: NOW) as opened:
        yield opened


def _post(raw: bytes):
    return parse_post(raw, upstream="nirspec_reffiles_upd", list_id=um.LIST_ID, received=NOW)


def test_posts_are_deduped_and_found_by_the_names_they_mention(store: Store) -> None:
    assert store.add_post(_post(um.plain_post()))
    assert not store.add_post(_post(um.plain_post()))  # redelivered: same Message-ID
    assert store.add_post(_post(um.html_only_post()))
    found = store.posts_naming(["jwst_nirspec_dark_0022.fits"])
    assert [p.message_id for p in found] == ["<post-1@listserv.stsci.edu>", "<post-3@listserv.stsci.edu>"]
    assert found[0] == _post(um.plain_post())  # round-trips whole
    assert store.posts_naming(["jwst_0541.pmap"])
    assert store.posts_naming(["jwst_nirspec_dark_0023.fits", "jwst_%"]) == []
    assert [p.message_id for p in store.posts_naming(["JWST_NIRSPEC_DARK_0022.FITS", "jwst_0541.pmap"], limit=1)] == [
        "<post-1@listserv.stsci.edu>"]  # names as the posts have them (lower case); oldest first, `limit` of them
    assert store.posts_naming(["nirspec_dark_0022.fits", "jwst_nirspec_dark"]) == []  # whole names only
    assert store.posts_naming([]) == []
    assert [p.message_id for p in store.recent_posts()] == ["<post-3@listserv.stsci.edu>", "<post-1@listserv.stsci.edu>"]


def test_admin_mail_is_kept_but_never_found_as_a_post(store: Store) -> None:
    request = parse_post(um.confirmation_request(), upstream="nirspec_reffiles_upd", list_id=None, received=NOW)
    assert store.add_post(request)
    assert store.recent_posts() == []


def test_feed_validators_and_mast_events(store: Store) -> None:
    assert store.feed_state("miri") == (None, None)
    store.set_feed_state("miri", '"v1"', "Tue, 30 Jul 2019 16:00:00 GMT")
    store.set_feed_state("miri", '"v2"', None)
    assert store.feed_state("miri") == ('"v2"', None)
    events = parse_mast_mail(um.mast_mail(um.mast_events(count=5)))
    assert store.add_mast_events("mast", events[:3]) == events[:3]
    assert store.add_mast_events("mast", events) == events[3:]
