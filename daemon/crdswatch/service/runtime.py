"""Wiring from settings to live objects: the store, the watched sources, the channel senders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from crdswatch.app.poll import Watch
from crdswatch.channels import CHANNELS, EmailChannel, MailChannel, MailWiring, Wiring
from crdswatch.channels import SmtpSettings as ChannelSmtp
from crdswatch.channels.mail import Outgoing
from crdswatch.config import Settings
from crdswatch.contexts.parsedcache import default_cache_root
from crdswatch.errors import PermanentDeliveryError
from crdswatch.model import BridgeNotice, Notice, SubscriberConfig
from crdswatch.notices.manage_token import manage_url
from crdswatch.notices.subscriptions import unsubscribed
from crdswatch.notices.unsubscribe import unsubscribe_url
from crdswatch.render.email_headers import mailing_list_headers
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import RetryPolicy, Store
from crdswatch.store.configured import configured_subscribers, subscriber_config, sync_configured
from crdswatch.store.engine import DbTimeouts

if TYPE_CHECKING:
    from crdswatch.app.lists import ListService

__all__ = ["ChannelSenders", "build_watches", "list_service", "open_store", "subscriber_config"]


def list_service(settings: Settings, store: Store) -> ListService | None:
    """The mailing lists of `settings` ([[lists]] at the [inbound] domain); None without [inbound]."""
    if settings.inbound is None:
        return None
    from crdswatch.app.lists import list_service as build  # only a daemon with lists needs them

    return build(settings, store)


def open_store(settings: Settings) -> Store:
    """Open (and migrate) the database; configured subscribers are (re)written on every start
    (store.configured has the rule; read-only commands open `Store.open(..., read_only=True)`)."""
    _ensure_sqlite_folder(settings.state.database)
    o = settings.outbox
    lim = settings.limits
    policy = RetryPolicy(o.backoff_base, o.backoff_max, o.max_attempts, retry_after_max=lim.retry_after_max)
    store = Store.open(settings.state.database, policy=policy,
                       timeouts=DbTimeouts(lim.db_connect_timeout, lim.db_statement_timeout, lim.db_lock_timeout))
    sync_configured(store, configured_subscribers(settings))
    return store


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


def build_watches(settings: Settings, cache_root: Path | None = None) -> list[Watch]:
    root = cache_root or default_cache_root()
    watches: list[Watch] = []
    limits = settings.limits.to_limits()
    for src in settings.sources:
        source = CrdsSource(str(src.server_url), src.observatory, root, timeout=src.timeout, limits=limits,
                            fits_fallback=src.fits_fallback)
        watches.extend(Watch(source, state, src.since, src.poll_interval, src.alert_after) for state in src.states)
    return watches


class ChannelSenders:
    """Render and send one notice on one channel of one subscriber (the drain.Senders protocol).

    Every row goes through the channel registry (`crdswatch.channels.CHANNELS`): the row's kind
    picks the class, which opens the subscriber's destination, renders and sends. Subscribers are
    read once per claimed batch (`prepare`); e-mail is rendered once per notice shape and
    personalised per recipient (channels.mail).
    """

    def __init__(self, settings: Settings, store: Store, domain: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.http = httpx.AsyncClient(timeout=30.0, follow_redirects=False)
        smtp = settings.smtp
        self.email = EmailChannel(ChannelSmtp.from_config(smtp)) if smtp is not None else None
        # Message-IDs: `domain` (tests), else [smtp] message_id_domain, else the sender's domain.
        mail = (MailWiring(self.email, smtp.sender, domain or smtp.message_id_domain)
                if self.email is not None and smtp is not None else None)
        self.wiring = Wiring(self.http, mail, settings.limits.to_limits())
        self.domain = mail.domain if mail is not None else (domain or "localhost")
        self.lists: ListService | None = None  # set by the daemon when [[lists]] are configured
        self._configs: dict[str, SubscriberConfig | None] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    def concurrency(self) -> dict[str, int]:
        """Sends in flight per channel kind, as each kind declares (the drain's gates)."""
        return {kind: cls.limits(self.wiring).max_concurrency for kind, cls in CHANNELS.items()}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Shared connections for one drain cycle (the e-mail sessions); subscriber reads reset."""
        async with AsyncExitStack() as stack:
            if self.wiring.mail is not None:
                await stack.enter_async_context(self.wiring.mail.cycle())
            try:
                yield
            finally:
                self._configs.clear()

    async def prepare(self, subscribers: Collection[str]) -> None:
        """Read the configs of a claimed batch's subscribers in one query (off the event loop),
        kept with the earlier batches' for the rest of the drain (their rows may still be queued)."""
        names = sorted(subscribers)
        found = await self.store.aio.get_subscribers(names)
        self._configs.update({name: (found[name].config if name in found else None) for name in names})

    @cached_property
    def _links(self) -> tuple[str, bytes] | None:
        """(public URL, signing secret) of the unsubscribe and manage links, or None without them:
        read off the settings once, not twice per message."""
        http = self.settings.http
        if http.public_url is None or http.unsubscribe_secret is None:
            return None
        return str(http.public_url), http.unsubscribe_secret.get_secret_value().encode()

    def _unsubscribe(self, subscriber: str, channel: str) -> str | None:
        if self._links is None:
            return None
        return unsubscribe_url(*self._links, subscriber, channel)

    def _manage(self, subscriber: str, now: datetime) -> str | None:
        if self._links is None:
            return None
        return manage_url(*self._links, subscriber, now)

    def batch_size(self, kind: str) -> int:
        """Messages of a kind the drain hands over together (`send_many`). E-mail: half of what
        the sessions take in flight, so two lanes alternate, one filling the sessions while the
        other's replies come back; every other kind one at a time (a slow receiver then holds up
        only its own send)."""
        if kind != "email" or self.wiring.mail is None:
            return 1
        return max(1, MailChannel.limits(self.wiring).max_concurrency // 2)

    async def send_many(self, sends: Sequence[tuple[str, str, Notice | BridgeNotice, str]], now: datetime,
                        done: Callable[[int, Exception | None], None]) -> None:
        """Send a batch (app.drain's batch interface): plain e-mail notices to subscribers read by
        `prepare`, list members' too, go together through `MailWiring.send_many`; anything else
        (bridge posts, other kinds, a subscriber not read yet) one by one through `send`. Each
        outcome, None or the exception, is reported as `done(i, outcome)` as soon as it is known."""
        mail, batch, single = self.wiring.mail, [], []
        members: dict[int, tuple[str, str]] = {}  # batch index -> (list, member address) of a list member's mail
        bounced: list[tuple[int, PermanentDeliveryError]] = []

        def mail_done(i: int, result: Exception | None) -> None:
            if i in members and isinstance(result, PermanentDeliveryError):
                bounced.append((i, result))  # reported once the bounce is recorded
            else:
                done(i, result)

        for i, (channel, subscriber, notice, key) in enumerate(sends):
            kind, _, to = channel.partition(":")
            config = self._configs.get(subscriber)
            if kind != "email" or mail is None or mail.pool is None or not isinstance(notice, Notice) or not to \
                    or config is None:
                single.append(self._send_one(i, sends[i], now, done))
                continue
            try:
                self._check(config, subscriber, channel)
                out = self._outgoing(notice, config, channel, to, key, now)
            except Exception as exc:  # noqa: BLE001 - this message's outcome, never the whole batch's
                done(i, exc)
                continue
            if config.list_name:
                members[i] = (config.list_name, to)
            batch.append((i, out))
        if batch:
            assert mail is not None
            single.append(mail.send_many(batch, self._public, now, mail_done))
        await asyncio.gather(*single)
        for i, error in bounced:
            try:
                await self._bounced(*members[i], error, now)
            except Exception as exc:  # noqa: BLE001 - the outcome: the drain maps it
                done(i, exc)
            else:
                done(i, error)

    async def _send_one(self, i: int, send: tuple[str, str, Notice | BridgeNotice, str], now: datetime,
                        done: Callable[[int, Exception | None], None]) -> None:
        try:
            await self.send(*send, now)
        except Exception as exc:  # noqa: BLE001 - the outcome: the drain maps it
            done(i, exc)
        else:
            done(i, None)

    @cached_property
    def _public(self) -> str | None:
        return str(self.settings.http.public_url) if self.settings.http.public_url else None

    def _outgoing(self, notice: Notice, config: SubscriberConfig, channel: str, to: str, key: str,
                  now: datetime) -> Outgoing:
        """One e-mail notice as MailWiring.send_many sends it: the recipient's links, and for a list
        member the list's headers, reason line and VERP envelope sender (its bounces name the
        member)."""
        subscriber = notice.subscriber
        url, manage = self._unsubscribe(subscriber, channel), self._manage(subscriber, now)
        if not config.list_name:
            return Outgoing(to, notice, key, url, manage)
        service, list_name = self.lists, config.list_name
        if service is None or list_name not in service.specs:
            raise PermanentDeliveryError(f"list {list_name!r} is not configured")
        spec = service.specs[list_name]
        reason = notice.reason.replace(f"subscriber {subscriber!r}", f"the {list_name} list")
        archive = spec.archive_url or f"{self._public_base()}/lists/{spec.name}/feed.atom"
        headers = mailing_list_headers(name=spec.name, domain=spec.domain, description=spec.description,
                                       archive_url=archive, unsubscribe_url=url)
        return Outgoing(to, replace(notice, reason=reason), key, url, manage, spec.list_id, headers, spec.verp(to))

    async def _bounced(self, list_name: str, to: str, error: PermanentDeliveryError, now: datetime) -> None:
        """A 5xx at send time to a list member scores as a bounce too (the list's notes go out)."""
        from crdswatch.app.list_bounces import record_bounce
        from crdswatch.service.inbound import deliver

        assert self.lists is not None and self.wiring.mail is not None
        notes = await asyncio.to_thread(record_bounce, self.lists, list_name, to, now, f"SMTP at send time: {error}")
        await deliver(self.wiring.mail.transport, notes)

    async def send(self, channel: str, subscriber: str, notice: Notice | BridgeNotice, key: str,
                   now: datetime) -> None:
        config = await self._config(subscriber, channel)
        kind, _, target = channel.partition(":")
        if isinstance(notice, Notice) and config.list_name:  # a list member: the list's headers and VERP
            await self._send_list_email(notice, config, channel, target, key, now)
            return
        url = self._unsubscribe(subscriber, channel)
        item: Notice | BridgeNotice
        if isinstance(notice, BridgeNotice):
            item = replace(notice, unsubscribe_url=url)
        else:
            item = replace(notice, unsubscribe_url=url, public_url=self._public, manage_url=self._manage(subscriber, now))
        cls = CHANNELS.get(kind)
        if cls is None:
            raise PermanentDeliveryError(f"unknown channel {channel!r}")
        sender = cls.open(target, config, self.wiring)
        await sender.send(sender.render(item, key, now), key, now)

    async def _config(self, subscriber: str, channel: str) -> SubscriberConfig:
        if subscriber in self._configs:
            config = self._configs[subscriber]
        else:  # outside a prepared batch (send-test): read it now
            found = await self.store.aio.get_subscriber(subscriber)
            config = found.config if found is not None else None
        if config is None:
            raise PermanentDeliveryError(f"subscriber {subscriber!r} no longer exists")
        self._check(config, subscriber, channel)
        return config

    @staticmethod
    def _check(config: SubscriberConfig, subscriber: str, channel: str) -> None:
        """A subscriber that left this channel, or whose delivery bounces disabled, gets nothing."""
        if channel in unsubscribed(config):
            raise PermanentDeliveryError(f"{subscriber!r} unsubscribed {channel!r}")
        if config.delivery_disabled:
            raise PermanentDeliveryError(f"{subscriber!r}: delivery disabled by bounces")

    async def _send_list_email(self, notice: Notice, config: SubscriberConfig, channel: str, to: str, key: str,
                               now: datetime) -> None:
        """A notice to a list member on its own (outside a batch): the way send_many sends it."""
        mail = self.wiring.mail
        if mail is None:
            raise PermanentDeliveryError("no [smtp] configured for e-mail delivery")
        try:
            await mail.send_one(self._outgoing(notice, config, channel, to, key, now), self._public, now)
        except PermanentDeliveryError as exc:
            await self._bounced(str(config.list_name), to, exc, now)
            raise

    def _public_base(self) -> str:
        http = self.settings.http
        return str(http.public_url or f"http://{http.listen}").rstrip("/")
