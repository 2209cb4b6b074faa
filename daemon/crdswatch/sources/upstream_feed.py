"""Upstream list archive feeds (RSS 2.0 / Atom): conditional GET, bounded, parsed by feedparser.

LISTSERV publishes `wa.exe?RSS&L=<LIST>&v=2.0` for public archives. Private archives answer
403 or a login page; that is an operator error with a clear message, never a crash, and it
counts toward the source alert like any failed poll.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from crdswatch.errors import FeedError
from crdswatch.notices.upstream import Post, post_from_feed_entry

__all__ = ["FeedError", "FeedResult", "FeedState", "fetch_feed"]

_FEED_TYPES = ("xml", "rss", "atom")


@dataclass(frozen=True)
class FeedState:
    """Validators from the last 200 reply, sent back as If-None-Match / If-Modified-Since."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FeedResult:
    state: FeedState
    not_modified: bool = False
    posts: list[Post] = field(default_factory=list)


async def _read_bounded(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(f"feed {url}: {declared} bytes declared, limit [limits] feed_max_bytes={max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f"feed {url}: body over the limit [limits] feed_max_bytes={max_bytes}; aborted")
        chunks.append(chunk)
    return b"".join(chunks)


async def _get(client: httpx.AsyncClient, url: str, state: FeedState, max_bytes: int) -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1"}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            body = await _read_bounded(response, url, max_bytes) if response.status_code == 200 else b""
            return response.status_code, dict(response.headers), body
    except httpx.HTTPError as exc:
        raise FeedError(f"feed {url}: {type(exc).__name__}: {exc}") from exc


def _status_error(url: str, status: int, headers: dict[str, str]) -> FeedError:
    if status in (401, 403):
        return FeedError(f"feed {url}: HTTP {status}: the archive is private; deliver the list by mail "
                         "to the upstream's address instead (README: Bridge in)")
    if status in (301, 302, 303, 307, 308):
        return FeedError(f"feed {url}: HTTP {status} redirect to {headers.get('location', '?')!r} "
                         "(often a login page); set feed_url to the final address if it is a feed")
    return FeedError(f"feed {url}: HTTP {status}")


def _looks_like_login(body: bytes) -> bool:
    head = body[:65536].lower()
    return b"<form" in head and (b"password" in head or b"login" in head)


def _published(entry: Any, now: datetime) -> datetime:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else now


def _posts(upstream: str, parsed: Any, now: datetime, max_entries: int) -> list[Post]:
    posts = []
    for entry in list(parsed.entries)[:max_entries]:
        content = entry.get("content") or []
        html = content[0].get("value", "") if content else entry.get("summary", "")
        link = entry.get("link")
        entry_id = entry.get("id") or link or hashlib.sha256(
            f"{entry.get('title', '')}|{entry.get('published', '')}".encode()).hexdigest()
        posts.append(post_from_feed_entry(
            upstream=upstream, entry_id=str(entry_id), title=str(entry.get("title", "")),
            author=str(entry.get("author", "")), published=_published(entry, now),
            summary_html=str(html), link=str(link) if link else None,
        ))
    return posts


def _parse(upstream: str, url: str, body: bytes, headers: dict[str, str], now: datetime, max_entries: int) -> list[Post]:
    import feedparser  # only the bridge needs it

    parsed = feedparser.parse(body, response_headers={k.lower(): v for k, v in headers.items()})
    if not parsed.get("version"):
        if _looks_like_login(body):
            raise FeedError(f"feed {url}: answered with a login page: the archive is private; deliver "
                            "the list by mail to the upstream's address instead")
        reason = parsed.get("bozo_exception") or "no RSS or Atom document"
        raise FeedError(f"feed {url}: not an RSS or Atom feed ({reason})")
    return _posts(upstream, parsed, now, max_entries)


async def fetch_feed(
    client: httpx.AsyncClient, *, upstream: str, url: str, state: FeedState, now: datetime,
    max_bytes: int = 4_000_000, deadline: float = 60.0, max_entries: int = 500,
) -> FeedResult:
    """One conditional GET of the feed, within `deadline` seconds overall (not per read)."""
    try:
        async with asyncio.timeout(deadline):
            status, headers, body = await _get(client, url, state, max_bytes)
    except TimeoutError as exc:
        raise FeedError(f"feed {url}: no complete reply within {deadline:g} s ([limits] feed_deadline)") from exc
    if status == 304:
        return FeedResult(state=state, not_modified=True)
    if status != 200:
        raise _status_error(url, status, headers)
    # feedparser is pure Python and a large feed takes a while: keep it off the event loop.
    posts = await asyncio.to_thread(_parse, upstream, url, body, headers, now, max_entries)
    fresh = FeedState(etag=headers.get("etag"), last_modified=headers.get("last-modified"))
    return FeedResult(state=fresh, posts=posts)
