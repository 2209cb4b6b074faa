"""Archive feeds over real HTTP on loopback: RSS 2.0 and Atom, 304s, private and broken archives."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from crdswatch.sources.upstream_feed import FeedError, FeedState, fetch_feed
from tests.support.http_sink import ScriptedResponse, running_http_sink

NOW = datetime(2020, 1, 1, tzinfo=UTC)

RSS = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<rss version="2.0"><channel><title>NIRSPEC_REFFILES_UPD Archives</title>
<link>https://listserv.example.invalid/scripts/wa.exe?A0=NIRSPEC_REFFILES_UPD</link>
<description>NIRSpec reference file updates</description>
<item><title>NIRSpec darks delivered in jwst_0541.pmap</title>
<link>https://listserv.example.invalid/scripts/wa.exe?A2=NIRSPEC_REFFILES_UPD;1</link>
<guid>https://listserv.example.invalid/scripts/wa.exe?A2=NIRSPEC_REFFILES_UPD;1</guid>
<author>redcat@stsci.edu (ReDCaT Team)</author>
<pubDate>Tue, 30 Jul 2019 16:00:00 GMT</pubDate>
<description>&lt;p&gt;New file jwst_nirspec_dark_0022.fits, see REDCAT-52. Caf\xe9.&lt;/p&gt;</description></item>
<item><title>Second post</title><link>https://listserv.example.invalid/x;2</link>
<pubDate>Wed, 31 Jul 2019 09:00:00 GMT</pubDate><description>plain</description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>MIRI updates</title><id>urn:miri</id>
<updated>2019-08-01T00:00:00Z</updated>
<entry><id>urn:miri:1</id><title>MIRI flats: jwst_miri_flat_0300.fits</title>
<updated>2019-08-01T00:00:00Z</updated><author><name>ReDCaT</name></author>
<content type="html">&lt;b&gt;CRDS-1234&lt;/b&gt; delivered in jwst_0542.pmap</content></entry></feed>"""

LOGIN = b"<html><body><form action='/login' method='post'><input type='password' name='p'></form></body></html>"


_FRESH = FeedState()


async def _fetch(url: str, state: FeedState = _FRESH, **kw: object):
    async with httpx.AsyncClient() as client:
        return await fetch_feed(client, upstream="nirspec_reffiles_upd", url=url, state=state, now=NOW, **kw)  # type: ignore[arg-type]


async def test_rss_then_304_with_the_validators_sent_back() -> None:
    with running_http_sink() as sink:
        sink.respond(
            ScriptedResponse(200, {"Content-Type": "application/rss+xml", "ETag": '"v1"',
                                   "Last-Modified": "Tue, 30 Jul 2019 16:00:00 GMT"}, RSS),
            ScriptedResponse(304, {"ETag": '"v1"'}, b""),
        )
        first = await _fetch(sink.url_for("/rss"))
        second = await _fetch(sink.url_for("/rss"), first.state)
    assert [p.subject for p in first.posts] == ["NIRSpec darks delivered in jwst_0541.pmap", "Second post"]
    post = first.posts[0]
    assert post.message_id.endswith("NIRSPEC_REFFILES_UPD;1")
    assert post.date == "2019-07-30T16:00:00+00:00"
    assert "Café" in post.body and "<p>" not in post.body
    assert post.references.files == ("jwst_nirspec_dark_0022.fits",)
    assert post.references.contexts == ("jwst_0541.pmap",)
    assert first.state == FeedState(etag='"v1"', last_modified="Tue, 30 Jul 2019 16:00:00 GMT")
    assert second.not_modified and second.posts == []
    sent = sink.requests[1].headers
    assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == "Tue, 30 Jul 2019 16:00:00 GMT"


async def test_atom_feed() -> None:
    with running_http_sink(ScriptedResponse(200, {"Content-Type": "application/atom+xml"}, ATOM)) as sink:
        result = await _fetch(sink.url)
    (post,) = result.posts
    assert post.message_id == "urn:miri:1" and post.sender == "ReDCaT"
    assert post.references.tickets == ("CRDS-1234",) and post.references.contexts == ("jwst_0542.pmap",)


@pytest.mark.parametrize(("response", "message"), [
    (ScriptedResponse(403, {}, b"Forbidden"), "HTTP 403: the archive is private"),
    (ScriptedResponse(200, {"Content-Type": "text/html"}, LOGIN), "login page"),
    (ScriptedResponse(302, {"Location": "https://login.example.invalid/"}, b""), "redirect"),
    (ScriptedResponse(200, {"Content-Type": "text/plain"}, b"{not a feed"), "not an RSS or Atom feed"),
    (ScriptedResponse(500, {}, b"oops"), "HTTP 500"),
])
async def test_private_and_broken_archives_are_clear_errors(response: ScriptedResponse, message: str) -> None:
    with running_http_sink(response) as sink, pytest.raises(FeedError, match=message):
        await _fetch(sink.url)


async def test_oversized_feed_is_aborted() -> None:
    huge = RSS.replace(b"plain", b"x" * 200_000)
    with running_http_sink(ScriptedResponse(200, {"Content-Type": "application/rss+xml"}, huge)) as sink, pytest.raises(FeedError, match="feed_max_bytes"):
        await _fetch(sink.url, max_bytes=100_000)


async def test_slow_feed_hits_the_overall_deadline() -> None:
    with running_http_sink(ScriptedResponse(200, {}, RSS, delay=3.0)) as sink, pytest.raises(FeedError, match="no complete reply within 0.5 s"):
        await _fetch(sink.url, deadline=0.5)
