"""The bridge's state: upstream posts (deduped by Message-ID), feed validators, MAST events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from crdswatch.notices.mast import MastEvent
from crdswatch.notices.upstream import Post, post_from_json, post_to_json
from crdswatch.store.engine import insert_ignore, upsert
from crdswatch.store.records import NewDelivery, idempotency_key
from crdswatch.store.schema import deliveries, mast_events, upstream_feeds, upstream_posts

__all__ = [
    "add_mast_events", "add_post", "feed_state", "naming", "post_names", "posts_by_id", "posts_naming", "queue",
    "recent_posts", "record_mast_events", "record_post", "set_feed_state",
]

_MAX_NAMES = 200  # names looked up at once; a post naming more is looked up by its first 200


def add_post(conn: Connection, post: Post, now: datetime) -> bool:
    """Store `post` unless its (upstream, Message-ID) is known; True when it is new."""
    names = " ".join(post.references.names())
    row = {"upstream": post.upstream, "message_id": post.message_id[:998], "kind": post.kind,
           "post_date": post.date, "post": post_to_json(post), "names": f" {names} ", "received_at": now}
    return insert_ignore(conn, upstream_posts, [row], ["upstream", "message_id"]) == 1


def posts_naming(conn: Connection, names: Sequence[str], limit: int = 50) -> list[Post]:
    """Posts (kind "post") that mention any of `names`, oldest first."""
    if not any(names[:_MAX_NAMES]):
        return []
    return posts_by_id(conn, naming(post_names(conn), names, limit))


def post_names(conn: Connection) -> list[tuple[int, str]]:
    """(id, the names it mentions) of every post (kind "post"), oldest first: what `naming` looks in.

    The names each post mentions (lower case, one space apart) are matched in Python, in one
    statement whatever the names: an OR of one LIKE per name was a new statement to build and
    compile for every activation the poll looked up (~7 ms for 200 names, ~1 s of a whole-history
    backfill), and scanned every post as this does.
    """
    found = conn.execute(
        select(upstream_posts.c.id, upstream_posts.c.names)
        .where(upstream_posts.c.kind == "post")
        .order_by(upstream_posts.c.post_date, upstream_posts.c.id)
    ).all()
    return [(row.id, row.names) for row in found]


def naming(found: Sequence[tuple[int, str]], names: Sequence[str], limit: int = 50) -> list[int]:
    """The ids, among `found` (post_names), of the posts that mention any of `names`, oldest first."""
    wanted = {n.lower() for n in names[:_MAX_NAMES] if n}
    if not wanted:
        return []
    return [post_id for post_id, mentioned in found if not wanted.isdisjoint(mentioned.split())][:limit]


def posts_by_id(conn: Connection, ids: Sequence[int]) -> list[Post]:
    """The posts of `ids`, in that order."""
    if not ids:
        return []
    posts = dict(conn.execute(select(upstream_posts.c.id, upstream_posts.c.post).where(upstream_posts.c.id.in_(ids))).all())
    return [post_from_json(posts[i]) for i in ids]


def recent_posts(conn: Connection, limit: int = 50) -> list[Post]:
    rows = conn.execute(
        select(upstream_posts.c.post).where(upstream_posts.c.kind == "post")
        .order_by(upstream_posts.c.post_date.desc(), upstream_posts.c.id.desc()).limit(limit)
    ).all()
    return [post_from_json(row.post) for row in rows]


def feed_state(conn: Connection, upstream: str) -> tuple[str | None, str | None]:
    row = conn.execute(select(upstream_feeds).where(upstream_feeds.c.upstream == upstream)).first()
    return (row.etag, row.last_modified) if row else (None, None)


def set_feed_state(conn: Connection, upstream: str, etag: str | None, last_modified: str | None, now: datetime) -> None:
    upsert(conn, upstream_feeds, {"upstream": upstream, "etag": etag, "last_modified": last_modified,
                                  "updated_at": now}, ["upstream"], ["etag", "last_modified", "updated_at"])


def add_mast_events(conn: Connection, upstream: str, events: Sequence[MastEvent], now: datetime) -> list[MastEvent]:
    """Store the events not seen before (by event_id) and return exactly those."""
    fresh = []
    for event in events:
        row = {"event_id": event.event_id[:255], "upstream": upstream, "program": event.program,
               "event_type": event.event_type, "archived_date": event.archived_date, "received_at": now}
        if insert_ignore(conn, mast_events, [row], ["event_id"]) == 1:
            fresh.append(event)
    return fresh


def queue(
    conn: Connection, source_key: str, ref: str, items: Sequence[NewDelivery], now: datetime, max_attempts: int
) -> int:
    """Outbox rows for bridge notices (no activation): keyed by (ref, source, subscriber, channel)."""
    rows: list[dict[str, Any]] = [
        {"idempotency_key": idempotency_key(ref, source_key, d.subscriber, d.channel), "activation_id": None,
         "source_key": source_key, "context": ref[:255], "subscriber": d.subscriber, "channel": d.channel,
         "payload": d.payload, "status": "pending", "attempts": 0, "max_attempts": max_attempts,
         "next_attempt_at": d.not_before or now, "created_at": now, "updated_at": now}
        for d in items
    ]
    return insert_ignore(conn, deliveries, rows, ["idempotency_key"])


def record_post(
    conn: Connection, post: Post, items: Sequence[NewDelivery], now: datetime, max_attempts: int
) -> bool:
    """The post and its notices together: a redelivered post (same Message-ID) queues nothing."""
    if not add_post(conn, post, now):
        return False
    queue(conn, f"upstream|{post.upstream}", f"post:{post.message_id}", items, now, max_attempts)
    return True


def record_mast_events(
    conn: Connection, upstream: str, events: Sequence[MastEvent],
    plan: Callable[[list[MastEvent]], Sequence[tuple[str, Sequence[NewDelivery]]]], now: datetime,
    max_attempts: int,
) -> list[MastEvent]:
    """Store the new events and queue what `plan` makes of exactly those ((ref, deliveries) pairs)."""
    fresh = add_mast_events(conn, upstream, events, now)
    for ref, items in plan(fresh) if fresh else ():
        queue(conn, f"upstream|{upstream}", ref, items, now, max_attempts)
    return fresh
