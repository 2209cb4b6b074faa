"""Wiring from settings to live objects: the store, the watched sources, the channel senders."""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from crdswatch.app.poll import Watch
from crdswatch.channels import EmailChannel, SlackChannel, WebhookChannel
from crdswatch.channels import SmtpSettings as ChannelSmtp
from crdswatch.channels.email import EmailSession
from crdswatch.config import Settings, SubscriberSettings
from crdswatch.contexts.parsedcache import default_cache_root
from crdswatch.errors import PermanentDeliveryError
from crdswatch.model import BridgeNotice, Notice
from crdswatch.notices.list_spec import FILTER_KEYS, ListSpec
from crdswatch.notices.unsubscribe import unsubscribe_url
from crdswatch.render import email_message, slack_payloads, webhook_payload
from crdswatch.render.email import EmailTemplate, email_template
from crdswatch.render.email_headers import apply_headers, mailing_list_headers
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import RetryPolicy, Store, message_id
from crdswatch.store.engine import DbTimeouts

if TYPE_CHECKING:
    from crdswatch.app.lists import ListService

__all__ = ["ChannelSenders", "build_watches", "list_service", "open_store", "subscriber_json"]


def list_service(settings: Settings, store: Store) -> ListService | None:
    """The mailing lists of `settings` ([[lists]] at the [inbound] domain); None without [inbound]."""
    inbound = settings.inbound
    if inbound is None:
        return None
    from crdswatch.app.lists import ListPolicy, ListService  # only a daemon with lists needs them

    specs = [ListSpec(item.name, inbound.domain, item.description,
                      {k: v for k, v in item.model_dump(mode="python").items() if k in FILTER_KEYS},
                      item.archive_url) for item in settings.lists]
    http = settings.http
    base = str(http.public_url or f"http://{http.listen}").rstrip("/")
    policy = ListPolicy(
        domain=inbound.domain, secret=inbound.token_secret.get_secret_value().encode(),
        token_ttl=timedelta(hours=inbound.token_ttl_hours), per_address=inbound.max_requests_per_address,
        per_hour=inbound.max_requests_per_hour, confirm_base=f"{base}/confirm",
        admins=tuple(settings.alerts.admin_email))
    return ListService(store, specs, policy)


def subscriber_json(sub: SubscriberSettings) -> dict[str, Any]:
    """The stored form of a configured subscriber: secrets revealed (the database is private)."""
    data = sub.model_dump(mode="python")
    for key, value in list(data.items()):
        if hasattr(value, "get_secret_value"):
            data[key] = value.get_secret_value()
    data.pop("name", None)
    data["origin"] = "config"
    return data


def open_store(settings: Settings) -> Store:
    """Open (and migrate) the database; configured subscribers are (re)written on every start.

    The config file is authoritative for the subscribers it names, except for channels someone
    unsubscribed from through a link: those stay unsubscribed.
    """
    _ensure_sqlite_folder(settings.state.database)
    o = settings.outbox
    lim = settings.limits
    store = Store.open(settings.state.database, policy=RetryPolicy(o.backoff_base, o.backoff_max, o.max_attempts),
                       timeouts=DbTimeouts(lim.db_connect_timeout, lim.db_statement_timeout, lim.db_lock_timeout))
    configured = {sub.name for sub in settings.subscribers}
    for sub in settings.subscribers:
        data = subscriber_json(sub)
        existing = store.get_subscriber(sub.name)
        if existing is not None and existing.config.get("unsubscribed"):
            data["unsubscribed"] = existing.config["unsubscribed"]
        store.upsert_subscriber(sub.name, data)
    # Taken out of the config file: gone. Added with `crdswatch subscribers add`: kept.
    for stale in store.list_subscribers():
        if stale.config.get("origin") == "config" and stale.name not in configured:
            store.remove_subscriber(stale.name)
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

    E-mail is rendered once per notice shape (the same selection of the same activations) and
    personalised per recipient; subscribers are read once per claimed batch (`prepare`).
    """

    def __init__(self, settings: Settings, store: Store, domain: str = "crdswatch.invalid") -> None:
        self.settings = settings
        self.store = store
        self.domain = domain
        self.http = httpx.AsyncClient(timeout=30.0, follow_redirects=False)
        smtp = settings.smtp
        self.email = EmailChannel(ChannelSmtp(
            host=smtp.host, port=smtp.port, security=smtp.security, username=smtp.username,
            password=smtp.password, timeout=smtp.timeout, ca_file=str(smtp.ca_file) if smtp.ca_file else None, verify=smtp.verify,
            max_connections=smtp.max_connections,
        )) if smtp is not None else None
        self._pool: list[tuple[EmailSession, asyncio.Lock]] = []
        self.lists: ListService | None = None  # set by the daemon when [[lists]] are configured
        self._turn = itertools.count()
        self._envelope_from = parseaddr(smtp.sender)[1] if smtp is not None else ""
        self._configs: dict[str, dict[str, Any] | None] = {}
        self._templates: OrderedDict[int, tuple[Any, Any, EmailTemplate]] = OrderedDict()

    async def aclose(self) -> None:
        await self.http.aclose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """SMTP connections for one drain cycle: up to `max_connections`, each carrying many messages.

        Sessions connect lazily, on their first message, so a cycle without e-mail opens none.
        """
        if self.email is not None and self.settings.smtp is not None:
            self._pool = [(EmailSession(self.email), asyncio.Lock())
                          for _ in range(self.settings.smtp.max_connections)]
        try:
            yield
        finally:
            pool, self._pool = self._pool, []
            self._configs.clear()
            for session, _lock in pool:
                await session.close()

    async def prepare(self, subscribers: Collection[str]) -> None:
        """Read the configs of a claimed batch's subscribers in one query (off the event loop)."""
        names = sorted(subscribers)
        found = await self.store.aio.get_subscribers(names)
        self._configs = {name: (found[name].config if name in found else None) for name in names}

    def _unsubscribe(self, subscriber: str, channel: str) -> str | None:
        http = self.settings.http
        if http.public_url is None or http.unsubscribe_secret is None:
            return None
        secret = http.unsubscribe_secret.get_secret_value().encode()
        return unsubscribe_url(str(http.public_url), secret, subscriber, channel)

    def _manage(self, subscriber: str, now: datetime) -> str | None:
        http = self.settings.http
        if http.public_url is None or http.unsubscribe_secret is None:
            return None
        from crdswatch.notices.manage_token import manage_url

        return manage_url(str(http.public_url), http.unsubscribe_secret.get_secret_value().encode(), subscriber, now)

    async def send(self, channel: str, subscriber: str, notice: Notice | BridgeNotice, key: str,
                   now: datetime) -> None:
        config = await self._config(subscriber, channel)
        url = self._unsubscribe(subscriber, channel)
        if isinstance(notice, BridgeNotice):
            await self._send_bridge(replace(notice, unsubscribe_url=url), channel, config, key, now)
            return
        public = self.settings.http.public_url
        notice = replace(notice, unsubscribe_url=url, public_url=str(public) if public else None,
                         manage_url=self._manage(subscriber, now))
        kind, _, target = channel.partition(":")
        if kind == "email" and config.get("list"):
            await self._send_list_email(notice, str(config["list"]), target, key, now, url)
        elif kind == "email":
            await self._send_email(notice, target, key, now, url)
        elif kind == "slack":
            slack = SlackChannel(str(config["slack_webhook"]), self.http)
            for payload in slack_payloads(notice, SlackChannel.budget):  # the budget Slack declares
                await slack.send(payload)
        elif kind == "webhook":
            hook = WebhookChannel(str(config["webhook_url"]), str(config.get("webhook_secret") or ""), self.http)
            await hook.send(webhook_payload(notice), idempotency_key=key, timestamp=now)
        else:
            raise PermanentDeliveryError(f"unknown channel {channel!r}")

    async def _config(self, subscriber: str, channel: str) -> dict[str, Any]:
        if subscriber in self._configs:
            config = self._configs[subscriber]
        else:  # outside a prepared batch (send-test): read it now
            found = await self.store.aio.get_subscriber(subscriber)
            config = found.config if found is not None else None
        if config is None:
            raise PermanentDeliveryError(f"subscriber {subscriber!r} no longer exists")
        if channel in (config.get("unsubscribed") or ()):
            raise PermanentDeliveryError(f"{subscriber!r} unsubscribed {channel!r}")
        if config.get("delivery_disabled"):
            raise PermanentDeliveryError(f"{subscriber!r}: delivery disabled by bounces")
        return config

    async def _send_list_email(
        self, notice: Notice, list_name: str, to: str, key: str, now: datetime, url: str | None
    ) -> None:
        """A notice to a list member: the list's headers, and the VERP envelope sender that makes
        its bounce name the member; a 5xx here scores as a bounce too."""
        from crdswatch.app.list_bounces import record_bounce
        from crdswatch.service.inbound import deliver

        service = self.lists
        if service is None or list_name not in service.specs:
            raise PermanentDeliveryError(f"list {list_name!r} is not configured")
        spec = service.specs[list_name]
        reason = notice.reason.replace(f"subscriber {notice.subscriber!r}", f"the {list_name} list")
        notice = replace(notice, reason=reason)
        assert self.settings.smtp is not None
        msg = email_message(notice, sender=self.settings.smtp.sender, to=[to], message_id=message_id(key, self.domain),
                            date=now, list_id=spec.list_id, unsubscribe_url=url, budget=EmailChannel.budget)
        archive = spec.archive_url or f"{self._public_base()}/lists/{spec.name}/feed.atom"
        apply_headers(msg, mailing_list_headers(name=spec.name, domain=spec.domain, description=spec.description,
                                                archive_url=archive, unsubscribe_url=url))
        try:
            await self._transmit(msg, spec.verp(to))
        except PermanentDeliveryError as exc:
            notes = await asyncio.to_thread(record_bounce, service, list_name, to, now, f"SMTP at send time: {exc}")
            if self.email is not None:
                await deliver(self.email, notes)
            raise

    async def _send_bridge(self, notice: BridgeNotice, channel: str, config: dict[str, Any], key: str,
                           now: datetime) -> None:
        """An upstream post or MAST summary, rendered by render.bridge on each kind of channel."""
        from crdswatch.render.bridge import bridge_email, bridge_slack, bridge_webhook

        kind, _, target = channel.partition(":")
        if kind == "email":
            if self.settings.smtp is None:
                raise PermanentDeliveryError("no [smtp] configured for e-mail delivery")
            msg = bridge_email(notice, sender=self.settings.smtp.sender, to=[target],
                               message_id=message_id(key, self.domain), date=now,
                               list_id=f"crdswatch-{notice.subscriber}.{self.domain}")
            await self._transmit(msg)
        elif kind == "slack":
            slack = SlackChannel(str(config["slack_webhook"]), self.http)
            for payload in bridge_slack(notice):
                await slack.send(payload)
        elif kind == "webhook":
            hook = WebhookChannel(str(config["webhook_url"]), str(config.get("webhook_secret") or ""), self.http)
            await hook.send(bridge_webhook(notice), idempotency_key=key, timestamp=now)
        else:
            raise PermanentDeliveryError(f"unknown channel {channel!r}")

    def _public_base(self) -> str:
        http = self.settings.http
        return str(http.public_url or f"http://{http.listen}").rstrip("/")

    def _template(self, notice: Notice, with_unsubscribe: bool, with_manage: bool) -> EmailTemplate:
        """One rendering per notice shape: the drain hands rows with the same selection the same
        `activations` tuple, kept alive here so its id cannot be reused while cached."""
        assert self.settings.smtp is not None
        # Everything a rendering depends on but the reason line and the link, which it stands in for.
        shape = (notice.digest, notice.interest, tuple(sorted(notice.dataset_hits.items())), notice.public_url,
                 notice.test, with_unsubscribe, with_manage)
        key = hash((id(notice.activations), shape))
        cached = self._templates.get(key)
        if cached is not None and cached[0] is notice.activations and cached[1] == shape:
            self._templates.move_to_end(key)
            return cached[2]
        template = email_template(notice, sender=self.settings.smtp.sender, with_unsubscribe=with_unsubscribe,
                                  budget=EmailChannel.budget,
                                  with_manage=with_manage)
        self._templates[key] = (notice.activations, shape, template)
        while len(self._templates) > _TEMPLATES:
            self._templates.popitem(last=False)
        return template

    async def _send_email(self, notice: Notice, to: str, key: str, now: datetime, url: str | None) -> None:
        if self.email is None or self.settings.smtp is None:
            raise PermanentDeliveryError("no [smtp] configured for e-mail delivery")
        list_id = f"crdswatch-{notice.subscriber}.{self.domain}"
        mid = message_id(key, self.domain)
        if not self._pool:  # outside a drain (send-test): a connection of its own, the stdlib message
            await self._transmit(email_message(notice, sender=self.settings.smtp.sender, to=[to], message_id=mid,
                                               date=now, list_id=list_id, unsubscribe_url=url,
                                               budget=EmailChannel.budget))
            return
        template = self._template(notice, url is not None, notice.manage_url is not None)
        session, lock = self._pool[next(self._turn) % len(self._pool)]
        async with lock:  # one SMTP transaction at a time per connection
            if template.eightbit and to.isascii() and self._envelope_from.isascii() and await session.eightbit():
                raw = template.render(reason=notice.reason, to=[to], message_id=mid, date=now, list_id=list_id,
                                      unsubscribe_url=url, manage_url=notice.manage_url)
                await session.send_raw(self._envelope_from, [to], raw)
                return
            # A server without 8BITMIME (or an address that needs SMTPUTF8): the stdlib message,
            # its bodies base64 (7-bit safe, and far cheaper to encode than quoted-printable).
            await session.send(email_message(notice, sender=self.settings.smtp.sender, to=[to], message_id=mid,
                                             date=now, list_id=list_id, unsubscribe_url=url, cte="base64",
                                             budget=EmailChannel.budget))

    async def _transmit(self, msg: EmailMessage, envelope_from: str | None = None) -> None:
        if self.email is None:
            raise PermanentDeliveryError("no [smtp] configured for e-mail delivery")
        if not self._pool:  # outside a drain cycle (send-test): a connection of its own
            await self.email.send(msg, sender=envelope_from)
            return
        session, lock = self._pool[next(self._turn) % len(self._pool)]
        async with lock:  # one SMTP transaction at a time per connection
            await session.send(msg, sender=envelope_from)


_TEMPLATES = 64  # renderings kept: one per notice shape of the activations being sent
