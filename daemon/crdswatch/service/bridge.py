"""The bridge in the daemon: upstream addresses on the inbound listener, feed polls, admin mail.

The daemon owns the process; this module only adapts `app.upstream.Bridge` to it: which
inbound address belongs to which [[upstream]], one scheduler job per archive feed (failures
counted and alerted like a CRDS source), and how admin notes and LISTSERV answers are mailed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from crdswatch.app.upstream import Bridge
from crdswatch.channels.mail import message_id_domain
from crdswatch.config import UpstreamSettings

if TYPE_CHECKING:
    from crdswatch.service.daemon import Daemon

__all__ = ["BridgeService"]

log = structlog.get_logger("crdswatch.bridge")


class BridgeService:
    """What `crdswatch run` does with [[upstream]]; inert when there is none."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        settings = daemon.settings
        self.bridge = Bridge(daemon.store, settings.upstream, public_url=settings.http.public_url,
                             forward=self._forward, reply=self._reply)
        self.failures: dict[str, int] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def active(self) -> bool:
        return bool(self.daemon.settings.upstream)

    # -- inbound mail -----------------------------------------------------------------------------

    def owner(self, address: str) -> Callable[[str, bytes], Awaitable[None]] | None:
        """The inbound listener's hook: a handler for an upstream's address, else None (550)."""
        upstream = self.bridge.for_address(address)
        if upstream is None:
            return None

        async def handle(mail_from: str, raw: bytes) -> None:
            result = await self.bridge.receive_mail(upstream, raw, self.daemon.clock())
            log.info("upstream mail", upstream=upstream.name, outcome=result.outcome, queued=result.queued,
                     mail_from=mail_from[:200])
            if result.queued:
                await self.daemon.drain_soon()

        return handle

    # -- archive feeds ----------------------------------------------------------------------------

    def schedule(self, scheduler: Any) -> None:
        for upstream in self.daemon.settings.upstream:
            if upstream.feed_url:
                scheduler.add_job(self.poll_feed, "interval", args=[upstream], seconds=upstream.feed_interval,
                                  coalesce=True, max_instances=1, next_run_time=datetime.now(UTC),
                                  id=f"feed {upstream.name}")

    async def poll_feed(self, upstream: UpstreamSettings) -> None:
        limits = self.daemon.settings.limits
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": "crdswatch"}, follow_redirects=False)
        try:
            result = await self.bridge.poll_feed(self._client, upstream, self.daemon.clock(),
                                                 max_bytes=limits.feed_max_bytes, deadline=limits.feed_deadline)
        except Exception as exc:  # noqa: BLE001 - a private, broken or slow archive: counted, alerted
            count = self.failures.get(upstream.name, 0) + 1
            self.failures[upstream.name] = count
            log.warning("feed poll failed", upstream=upstream.name, error=str(exc), consecutive=count)
            if count == limits.feed_alert_after:
                self.daemon.alert("upstream", f"{upstream.name}: {count} consecutive failed feed polls; "
                                  f"last error: {exc}")
            return
        self.failures[upstream.name] = 0
        log.info("feed polled", upstream=upstream.name, outcome=result.outcome, queued=result.queued)
        if result.queued:
            await self.daemon.drain_soon()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # -- mail the bridge sends ----------------------------------------------------------------------

    async def _mail(self, to: list[str], subject: str, body: str, *, sender: str | None = None,
                    auto: str = "auto-generated") -> None:
        smtp = self.daemon.settings.smtp
        if smtp is None or not to:
            log.warning("bridge mail not sent: no [smtp] or no recipient", subject=subject)
            return
        from crdswatch.app.lists import Outgoing

        msg = EmailMessage()
        msg["From"] = sender or smtp.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self.daemon.clock())
        msg["Message-ID"] = make_msgid(domain=message_id_domain(sender or smtp.sender, smtp.message_id_domain))
        msg["Auto-Submitted"] = auto  # RFC 3834: no auto-reply loops with the list server
        msg.set_content(body)
        await self.daemon.send_list_mail([Outgoing(msg, sender or smtp.sender, tuple(to))])

    async def _forward(self, subject: str, body: str) -> None:
        await self._mail(list(self.daemon.settings.alerts.admin_email), subject, body)

    async def _reply(self, upstream: UpstreamSettings, to: str, subject: str, body: str) -> None:
        # From the subscribed address itself: LISTSERV matches the confirmation to it.
        await self._mail([to], subject, body, sender=upstream.address, auto="auto-replied")
