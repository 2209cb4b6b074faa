"""The bridge's story: upstream mail or feed entries -> posts tied to CRDS -> audience -> outbox.

One post or one MAST mail is handled in one store transaction (the post or events and every
notice they cause), so a redelivered mail queues nothing twice and a crash loses nothing: the
MTA redelivers what we did not accept. Mail that is not a post goes to the admin, never to
subscribers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx
import structlog

from crdswatch.config import UpstreamSettings
from crdswatch.model import BridgeNotice, SourceKey
from crdswatch.notices.bridge import mast_notice, post_audience, post_notice, program_audience
from crdswatch.notices.codec import bridge_notice_to_json
from crdswatch.notices.correlate import SeenNames, correlate, names_from_record
from crdswatch.notices.mast import MastEvent, MastFormatError, likely_cause, parse_mast_mail, summarise_events
from crdswatch.notices.subscriptions import Subscription, subscription_from_config
from crdswatch.notices.upstream import Post, parse_post
from crdswatch.sources.upstream_feed import FeedState, fetch_feed
from crdswatch.store import NewDelivery, SeenActivation, Store

__all__ = ["Bridge", "Received", "bridge_payload"]

log = structlog.get_logger("crdswatch.bridge")

Outcome = Literal["post", "duplicate", "forwarded", "confirmed", "mast", "rejected", "not-modified"]


@dataclass(frozen=True)
class Received:
    outcome: Outcome
    queued: int = 0
    detail: str = ""


def bridge_payload(notice: BridgeNotice) -> dict[str, object]:
    """The outbox payload of a bridge notice (the drain renders it with render.bridge)."""
    return {"bridge": bridge_notice_to_json(notice)}


@dataclass
class Bridge:
    """Everything the bridge needs from the process, passed in (no globals, no clock)."""

    store: Store
    upstreams: Sequence[UpstreamSettings]
    public_url: str | None = None
    # Sends one message to the admin: (subject, body). The daemon wires it to [alerts] admin_email.
    forward: Callable[[str, str], Awaitable[None]] | None = None
    # Answers LISTSERV: (upstream, to, subject, body); only used for upstreams with auto_confirm.
    reply: Callable[[UpstreamSettings, str, str, str], Awaitable[None]] | None = None
    seen_limit: int = 500

    def for_address(self, address: str) -> UpstreamSettings | None:
        wanted = address.strip().lower()
        return next((u for u in self.upstreams if u.address and u.address.lower() == wanted), None)

    # -- what the store knows -------------------------------------------------------------------

    async def _subscriptions(self) -> list[Subscription]:
        return [subscription_from_config(s.name, s.config) for s in await self.store.aio.list_subscribers()]

    async def _history(self) -> list[SeenActivation]:
        return await self.store.aio.list_activations(limit=self.seen_limit)

    @staticmethod
    def _seen(rows: list[SeenActivation], observatory: str) -> list[SeenNames]:
        return [names_from_record(r.context, r.activation_date, r.diff) for r in rows
                if SourceKey.parse(r.source_key).observatory == observatory]

    # -- list posts -------------------------------------------------------------------------------

    async def _post_deliveries(self, upstream: UpstreamSettings, post: Post, now: datetime) -> list[NewDelivery]:
        correlation = correlate(post.references, self._seen(await self._history(), upstream.observatory))
        subs = await self._subscriptions()
        out = []
        for sub, reason in post_audience(subs, upstream.observatory, tuple(upstream.instruments)):
            notice = post_notice(post, correlation, subscriber=sub.name, reason=reason, checked=now.isoformat(),
                                 public_url=self.public_url)
            out += [NewDelivery(sub.name, channel, bridge_payload(notice)) for channel in sub.channels]
        return out

    async def _admin(self, subject: str, body: str) -> None:
        if self.forward is not None:
            await self.forward(subject, body)

    async def _not_a_post(self, upstream: UpstreamSettings, post: Post) -> Received:
        confirm = post.confirmation
        if confirm is not None and upstream.auto_confirm and self.reply is not None and confirm.reply_to:
            await self.reply(upstream, confirm.reply_to, f"Re: {confirm.subject}", "OK\n")
            log.info("upstream confirmation answered", upstream=upstream.name, to=confirm.reply_to)
            return Received("confirmed", detail=confirm.reply_to)
        await self._admin(f"[crdswatch] mail for upstream {upstream.name}: {post.subject}",
                          f"From: {post.sender}\nDate: {post.date}\nSubject: {post.subject}\n\n{post.body}\n")
        log.info("upstream mail forwarded to the admin", upstream=upstream.name, kind=post.kind, subject=post.subject)
        return Received("forwarded", detail=post.kind)

    async def _record_post(self, upstream: UpstreamSettings, post: Post, now: datetime) -> Received:
        deliveries = await self._post_deliveries(upstream, post, now)
        if not await self.store.aio.run("record_post", self.store.record_post, post, deliveries, now):
            return Received("duplicate", detail=post.message_id)
        log.info("upstream post", upstream=upstream.name, subject=post.subject, queued=len(deliveries),
                 contexts=list(post.references.contexts), files=len(post.references.files))
        return Received("post", queued=len(deliveries), detail=post.message_id)

    async def receive_mail(self, upstream: UpstreamSettings, raw: bytes, now: datetime) -> Received:
        """One message delivered to an upstream's address."""
        if upstream.kind == "mast":
            return await self._receive_mast(upstream, raw, now)
        post = parse_post(raw, upstream=upstream.name, list_id=upstream.list_id, received=now)
        if post.kind != "post":
            return await self._not_a_post(upstream, post)
        return await self._record_post(upstream, post, now)

    # -- archive feeds ----------------------------------------------------------------------------

    async def poll_feed(self, client: httpx.AsyncClient, upstream: UpstreamSettings, now: datetime, *,
                        max_bytes: int, deadline: float) -> Received:
        """One conditional GET; each new entry is a post. FeedError propagates (counts as a failure)."""
        assert upstream.feed_url is not None
        etag, modified = await self.store.aio.run("feed_state", self.store.feed_state, upstream.name)
        result = await fetch_feed(client, upstream=upstream.name, url=upstream.feed_url,
                                  state=FeedState(etag, modified), now=now, max_bytes=max_bytes, deadline=deadline)
        if result.not_modified:
            return Received("not-modified")
        queued = 0
        for post in result.posts:
            queued += (await self._record_post(upstream, post, now)).queued
        await self.store.aio.run("set_feed_state", self.store.set_feed_state, upstream.name, result.state.etag,
                                 result.state.last_modified)
        return Received("post", queued=queued, detail=f"{len(result.posts)} entries")

    # -- MAST -------------------------------------------------------------------------------------

    def _mast_plan(
        self, upstream: UpstreamSettings, fresh: list[MastEvent], subs: list[Subscription],
        history: list[tuple[str, str]],
    ) -> list[tuple[str, list[NewDelivery]]]:
        plan = []
        for summary in summarise_events(fresh):
            cause = likely_cause(summary.last_archived, [h for h in history if h[1].startswith(summary.mission)]
                                 or history)
            items = []
            for sub, reason in program_audience(subs, summary.program):
                notice = mast_notice(summary, cause, source=upstream.name, subscriber=sub.name, reason=reason,
                                     public_url=self.public_url)
                items += [NewDelivery(sub.name, channel, bridge_payload(notice)) for channel in sub.channels]
            ref = f"mast:{summary.program}:{summary.event_type}:{summary.day}:{summary.last_archived}"
            plan.append((ref, items))
        return plan

    async def _receive_mast(self, upstream: UpstreamSettings, raw: bytes, now: datetime) -> Received:
        try:
            events = parse_mast_mail(raw)
        except MastFormatError as exc:
            await self._admin(f"[crdswatch] unreadable MAST mail for {upstream.name}", f"{exc}\n")
            log.warning("MAST mail not readable", upstream=upstream.name, error=str(exc))
            return Received("rejected", detail=str(exc))
        # Read first: the plan runs inside the write transaction and must not touch the store.
        subs = await self._subscriptions()
        history = [(r.activation_date, r.context) for r in await self._history()]
        queued: list[int] = []

        def plan(new: list[MastEvent]) -> list[tuple[str, list[NewDelivery]]]:
            planned = self._mast_plan(upstream, new, subs, history)
            queued.append(sum(len(items) for _, items in planned))
            return planned

        fresh = await self.store.aio.run("record_mast_events", self.store.record_mast_events, upstream.name, events, plan,
                                        now)
        log.info("MAST events", upstream=upstream.name, events=len(events), new=len(fresh))
        return Received("mast", queued=sum(queued), detail=f"{len(fresh)} new of {len(events)} events")
