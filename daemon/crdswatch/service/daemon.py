"""The daemon: scheduler, pollers, outbox drain, operator alerts, HTTP endpoints, signals, systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from crdswatch.app.delivery_events import ChannelHealth, DeliveryEvents, dead_alert_text
from crdswatch.app.drain import PAUSE_SECONDS, drain_until_idle
from crdswatch.app.poll import Watch, poll_once
from crdswatch.config import Settings
from crdswatch.limits import DEFAULT_LIMITS, Limits, stale_after
from crdswatch.model import utc_now
from crdswatch.notices.match import set_regex_timeout
from crdswatch.service import startup
from crdswatch.service import systemd as notify
from crdswatch.service.collector import settle_collector
from crdswatch.service.metrics import Metrics
from crdswatch.service.runtime import ChannelSenders, build_watches, list_service, open_store

if TYPE_CHECKING:
    from crdswatch.app.lists import Outgoing
    from crdswatch.service.inbound import InboundServer
    from crdswatch.service.web.server import WebServer

__all__ = ["Daemon", "Health"]

log = structlog.get_logger("crdswatch")


@dataclass
class Health:
    """What /healthz reports: every source polled successfully lately, and the loop is alive.

    `healthy` is the whole rule (the web layer only calls it): a source is unhealthy while its
    last poll failed, before its first success, and whenever its last success (or the start) is
    older than `stale_polls` x its poll_interval, whatever the counters say (a poll hung on a
    slow peer fails nothing, it just never ends). A channel kind is unhealthy while it has rows
    waiting for a retry and no successful send for more than `channel_stale_after` seconds
    (`channels`, fed by the drain's outcomes through app.delivery_events).
    """

    last_ok: dict[str, float] = field(default_factory=dict)  # wall clock, for display
    failures: dict[str, int] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)
    heartbeat: float = field(default_factory=time.monotonic)
    drain_failures: int = 0  # consecutive outbox drains that failed (the database, mostly)
    drain_error: str = ""
    stale_polls: int = DEFAULT_LIMITS.stale_polls
    started: float = field(default_factory=time.monotonic)
    ok_at: dict[str, float] = field(default_factory=dict)  # monotonic, for staleness
    stale_alerted: set[str] = field(default_factory=set)
    channel_stale_after: float = DEFAULT_LIMITS.channel_stale_after
    channels: ChannelHealth = field(default_factory=ChannelHealth)

    def succeeded(self, key: str) -> None:
        self.failures[key] = 0
        self.alerted.discard(key)
        self.stale_alerted.discard(key)
        self.last_ok[key] = time.time()
        self.ok_at[key] = time.monotonic()

    def stale(self, watches: list[Watch], now: float) -> list[tuple[Watch, float, float]]:
        """(watch, seconds since its last success or the start, the bound) for each stale source."""
        out = []
        for w in watches:
            age = now - self.ok_at.get(w.key, self.started)
            bound = stale_after(Limits(stale_polls=self.stale_polls), w.poll_interval)
            if age > bound:
                out.append((w, age, bound))
        return out

    def healthy(self, watches: list[Watch], now: float) -> tuple[bool, str]:
        if now - self.heartbeat > 60:
            return False, "event loop stalled"
        if self.drain_failures:
            return False, f"outbox: {self.drain_failures} consecutive failed drains; last error: {self.drain_error}"
        for w, age, bound in self.stale(watches, now):
            return False, f"{w.key}: no successful poll for {age:.0f} s (bound {bound:.0f} s)"
        for w in watches:
            if self.failures.get(w.key, 0) > 0:
                return False, f"{w.key}: {self.failures[w.key]} consecutive failed polls"
            if w.key not in self.last_ok:  # not healthy before it has shown it can reach its server
                return False, f"{w.key}: no successful poll yet"
        for kind, age, _state in self.channels.stale(now, self.channel_stale_after):
            return False, self.channels.reason(kind, age, self.channel_stale_after)
        return True, "ok"


class Daemon:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        with startup.step("database", settings):  # start-up failures: one line each (service.startup)
            self.store = open_store(settings)
        self.watches = build_watches(settings)
        with startup.step("smtp", settings):
            self.senders = ChannelSenders(settings, self.store)
        self.lists = list_service(settings, self.store)  # None without [inbound]
        self.senders.lists = self.lists
        if self.lists is not None:
            self.lists.sync_members(self.clock())  # members follow their list's current filters
        self.inbound: InboundServer | None = None
        from crdswatch.service.bridge import BridgeService

        self.bridge = BridgeService(self)  # [[upstream]]: list posts, archive feeds, MAST mail
        self.metrics = Metrics()
        self.limits = settings.limits.to_limits()
        self.health = Health(stale_polls=self.limits.stale_polls,
                             channel_stale_after=self.limits.channel_stale_after)
        from crdswatch.app.narrowing import NarrowingOffers

        # The subscribe form's narrowing offer per list, read once per context (see app.narrowing).
        self.narrowing = NarrowingOffers(lambda: self.store, self.watches, self.limits)
        self._warming: set[asyncio.Task[None]] = set()
        set_regex_timeout(self.limits.regex_timeout)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = asyncio.Event()
        self.paused_until: dict[str, float] = {}
        # a log line per send, retry and death; dead rows alerted; each channel kind's health
        self.delivery_events = DeliveryEvents(self.health.channels)
        self.web: WebServer | None = None
        self._busy = asyncio.Lock()
        self._drain_wake = asyncio.Event()  # new rows queued: a running drain claims them at once
        self._drain_task: asyncio.Task[None] | None = None
        self._background = False  # run(): drains are tasks of their own, never awaited by a poll
        self._tasks: set[asyncio.Task[None]] = set()  # alert e-mails in flight (the loop keeps weak refs)

    # -- jobs ---------------------------------------------------------------------------------

    async def poll(self, watch: Watch) -> None:
        client = watch.source.client
        client.reset_counters()
        deadline = self.limits.poll_deadline
        try:
            async with asyncio.timeout(deadline):  # the whole cycle, whatever each request allows
                report = await poll_once(watch, self.store, self.clock())
        except TimeoutError:
            self._poll_failed(watch, TimeoutError(f"poll took longer than poll_deadline ({deadline:g} s)"))
            return
        except Exception as exc:  # noqa: BLE001 - server, mapping or database: all count, all alert
            self._poll_failed(watch, exc)
            return
        self.health.succeeded(watch.key)
        self.metrics.polls.labels(watch.key, "ok").inc()
        self.metrics.failures.labels(watch.key).set(0)
        self.metrics.last_poll.labels(watch.key).set(time.time())
        self.metrics.poll_bytes.labels(watch.key).set(client.bytes_received)
        if report.processed:
            self.metrics.activations.labels(watch.key).inc(len(report.processed))
            log.info("activations", source=watch.key, contexts=report.processed, queued=report.queued)
            await self.drain_soon()  # immediate notices go out now, not at the next drain tick
        elif report.baseline:
            log.info("baseline recorded", source=watch.key, context=report.context)
        if self.lists is not None and not self._warming:  # cheap once read: a lookup per list
            task = asyncio.get_running_loop().create_task(self.warm_narrowing())
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def warm_narrowing(self) -> None:
        """Read the new context's narrowing offer for every list, so /lists has it at hand."""
        if self.lists is None:
            return
        for spec in self.lists.specs.values():
            try:
                await self.narrowing.offer(spec.filters, warm=True)
            except Exception as exc:  # noqa: BLE001 - the page falls back to what the archive knows
                log.warning("narrowing offer not read", list=spec.name, error=str(exc))

    def _poll_failed(self, watch: Watch, exc: Exception) -> None:
        count = self.health.failures.get(watch.key, 0) + 1
        self.health.failures[watch.key] = count
        self.metrics.polls.labels(watch.key, "error").inc()
        self.metrics.failures.labels(watch.key).set(count)
        log.warning("poll failed", source=watch.key, error=str(exc), consecutive=count)
        if count >= watch.alert_after and watch.key not in self.health.alerted:
            self.health.alerted.add(watch.key)
            self.alert("source", f"{watch.key}: {count} consecutive failed polls; last error: {exc}")

    def alert(self, kind: str, message: str) -> None:
        """Tell the operator: always in the log and metrics; by e-mail when an admin is configured."""
        self.metrics.alerts.labels(kind).inc()
        log.error("ALERT", kind=kind, message=message)
        admins = self.settings.alerts.admin_email
        if admins and self.settings.smtp is not None and self.senders.email is not None:
            msg = EmailMessage()
            msg["Subject"] = f"[crdswatch] alert: {kind}"
            msg["From"] = self.settings.smtp.sender
            msg["To"] = ", ".join(admins)
            msg["Date"] = format_datetime(self.clock())
            msg["Message-ID"] = make_msgid("crdswatch.alert", domain=self.senders.domain)
            msg["Auto-Submitted"] = "auto-generated"
            msg.set_content(message + "\n")
            task = asyncio.get_running_loop().create_task(self._send_alert(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_alert(self, msg: EmailMessage) -> None:
        deadline = self.limits.send_deadline
        try:
            assert self.senders.email is not None
            async with asyncio.timeout(deadline):  # the whole send, as for a notice
                await self.senders.email.send(msg)
        except TimeoutError as exc:
            log.error("alert e-mail failed", error=str(exc) or f"no complete send within send_deadline ({deadline:g} s)")
        except Exception as exc:  # noqa: BLE001 - an alert that cannot be sent is still logged
            log.error("alert e-mail failed", error=str(exc))

    async def drain_soon(self) -> None:
        """New rows were queued: drain now. Under run() the drain is a task of its own (or the
        running one is woken to claim them), so a poll, a feed or the scheduler never waits for a
        slow receiver and never piles up as "skipped"; called directly (tests, tools) it drains
        before returning."""
        if not self._background:
            await self.drain()
            return
        self._drain_wake.set()
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> None:
        if self.stop_event.is_set():
            return
        if self._busy.locked():  # a drain is running: it claims the new rows as soon as it hears
            self._drain_wake.set()
            return
        deadline = self.limits.drain_deadline
        async with self._busy:  # one drain at a time per process; replicas share via leases
            o = self.settings.outbox
            # Batch after batch while rows are due (a fan-out to thousands goes out at the speed
            # of the channels, not at one batch per drain_interval); a stop ends it between
            # batches, and the deadline bounds each batch (its claimed rows and their sends).
            limits = self.senders.concurrency()  # as each channel kind declares
            try:
                report = await drain_until_idle(self.store, self.senders, self.worker_id, self.clock,
                                                lease_seconds=o.lease_seconds, paused=self._paused, limits=limits,
                                                stop=self.stop_event.is_set, batch_deadline=deadline,
                                                events=self.delivery_events,
                                                send_deadline=self.limits.send_deadline,
                                                wake=self._drain_wake, recheck=o.drain_interval)
            except TimeoutError:  # rows left claimed go back when their lease ends
                self._drain_failed(TimeoutError(f"outbox drain cut short after drain_deadline ({deadline:g} s) "
                                                "without progress; unsent notices stay pending"))
                return
            except Exception as exc:  # noqa: BLE001 - the database, mostly: health, log and alert say so
                self._drain_failed(exc)
                return
            finally:  # rows that died in this cycle, even one cut short: one alert names them all
                dead = self.delivery_events.take_dead()
                if dead:
                    self.alert("dead", dead_alert_text(dead))
        if self.health.drain_failures:
            log.info("outbox drain recovered", after=self.health.drain_failures)
        self.health.drain_failures = 0
        for kind, _subscriber, outcome in report.outcomes:
            self.metrics.notices.labels(kind, outcome).inc()
        for kind in report.paused:
            self.paused_until[kind] = time.monotonic() + PAUSE_SECONDS
            self.alert("channel", f"{kind} channel paused for {PAUSE_SECONDS / 60:.0f} minutes: "
                       "authentication failed")
        await self._update_outbox_gauge()

    async def affected(self) -> None:
        """Program subscriptions: ask the servers for the affected datasets of due lookups."""
        if self.stop_event.is_set():
            return
        from crdswatch.app.affected import resolve_affected

        sources = {w.key: w.source for w in self.watches}
        try:
            async with asyncio.timeout(self.limits.poll_deadline):
                report = await resolve_affected(self.store, sources, self.clock(), self.limits,
                                                public_url=self.settings.http.public_url)
        except Exception as exc:  # noqa: BLE001 - the database or a bug: logged; the lookups stay due
            log.warning("affected datasets lookup failed", error=str(exc) or type(exc).__name__)
            return
        if report.queued:
            await self.drain_soon()

    def _drain_failed(self, exc: Exception) -> None:
        self.health.drain_failures += 1
        self.health.drain_error = str(exc) or type(exc).__name__
        count = self.health.drain_failures
        log.warning("outbox drain failed", error=self.health.drain_error, consecutive=count)
        if count == 3:  # once per outage, like a source's alert_after
            self.alert("outbox", f"{count} consecutive outbox drains failed; last error: {self.health.drain_error}")

    def _paused(self, kind: str) -> float:
        """Seconds the channel kind stays paused; 0 when it is not."""
        return max(0.0, self.paused_until.get(kind, 0) - time.monotonic())

    async def _update_outbox_gauge(self) -> None:
        for status, count in (await self.store.aio.counts()).items():
            self.metrics.outbox.labels(status).set(count)

    async def _heartbeat(self) -> None:
        self.health.heartbeat = time.monotonic()
        self._check_stale()
        if notify.watchdog_interval() is not None:
            notify.watchdog()

    async def list_checks(self) -> None:
        """The periodic bounce pass: warn delivery-disabled members, remove them after the last warning."""
        if self.lists is None or self.stop_event.is_set():
            return
        from crdswatch.app.list_bounces import run_bounce_checks

        await self.send_list_mail(await asyncio.to_thread(run_bounce_checks, self.lists, self.clock()))

    async def send_list_mail(self, outgoing: Sequence[Outgoing]) -> None:
        """Send confirmations, replies, warnings and admin notes of the lists (failures logged)."""
        if outgoing and self.senders.email is not None:
            from crdswatch.service.inbound import deliver

            await deliver(self.senders.email, outgoing, self.limits.send_deadline)

    async def start_inbound(self) -> None:
        inbound = self.settings.inbound
        if inbound is None or self.lists is None:
            return
        from crdswatch.service.inbound import InboundHandler, InboundServer

        handler = InboundHandler(self.lists, self.send_list_mail, self.clock, extra=self.bridge.owner)
        handler.count = lambda outcome: self.metrics.inbound.labels(outcome).inc()
        handler.tripped = lambda reason: self.metrics.inbound_trips.labels(reason).inc()
        self.lists.on_trip = handler.trip
        self.inbound = InboundServer(handler, inbound.host, inbound.port, protocol=inbound.protocol,
                                     max_message_bytes=inbound.max_message_bytes,
                                     session_timeout=inbound.session_timeout)
        await self.inbound.start()

    def _check_stale(self) -> None:
        """Alert once per episode for each source that has gone stale_polls intervals without success."""
        for w, age, bound in self.health.stale(self.watches, time.monotonic()):
            if w.key not in self.health.stale_alerted:
                self.health.stale_alerted.add(w.key)
                self.alert("stale", f"{w.key}: no successful poll for {age:.0f} s (more than stale_polls "
                           f"x poll_interval = {bound:.0f} s); consecutive failures: "
                           f"{self.health.failures.get(w.key, 0)}")
        self._check_channels()

    def _check_channels(self) -> None:
        """Alert once per episode for each channel kind with rows waiting and no successful send
        for channel_stale_after; the gauge says how long each kind has gone so."""
        channels, bound, now = self.health.channels, self.health.channel_stale_after, time.monotonic()
        for kind, state in channels.kinds.items():
            self.metrics.channel_unsent.labels(kind).set(state.unsent_for(now))
        for kind, age, state in channels.stale(now, bound):
            if not state.alerted:
                state.alerted = True
                reason = channels.reason(kind, age, bound)
                log.warning("channel stale", channel=kind, unsent_for=round(age), rows_waiting=len(state.waiting),
                            last_error=state.last_error)
                self.alert("channel-stale", reason)

    # -- what the web side asks ------------------------------------------------------------------

    def health_check(self) -> tuple[bool, str]:
        return self.health.healthy(self.watches, time.monotonic())

    async def metrics_page(self) -> bytes:
        await self._update_outbox_gauge()
        now = time.monotonic()
        for kind, state in self.health.channels.kinds.items():
            self.metrics.channel_unsent.labels(kind).set(state.unsent_for(now))
        if self.web is not None:
            self.metrics.http_connections.set(self.web.open_connections)
        return self.metrics.render()

    def bounds_status(self) -> dict[str, Any]:
        """Bounds tripped since start by peers of the daemon's listeners (per listener), and the
        delivery channels' staleness (channel_stale_after)."""
        inbound = self.inbound
        return {"inbound": {"listening": inbound is not None and inbound.server is not None,
                            **(inbound.handler.bounds() if inbound is not None
                               else {"trips": {}, "last_trip": None})},
                # channel_stale_after: each channel kind this process has sent on, and whether it is stale
                "channels": self.health.channels.status(time.monotonic(), self.health.channel_stale_after)}

    def source_status(self, key: str) -> dict[str, Any]:
        last_ok = self.health.last_ok.get(key)
        return {"last_ok": datetime.fromtimestamp(last_ok, UTC) if last_ok else None,
                "consecutive_failures": self.health.failures.get(key, 0), "alerted": key in self.health.alerted}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_http(self) -> None:
        from crdswatch.service.web.app import create_app
        from crdswatch.service.web.server import WebLimits, WebServer, WebStats

        h = self.settings.http
        limits = WebLimits(max_connections=h.max_connections, header_timeout=h.header_timeout,
                           keepalive_timeout=h.keepalive_timeout, request_deadline=h.request_deadline,
                           max_body_bytes=h.max_body_bytes)
        stats = WebStats(listener=lambda reason: self.metrics.http_cut.labels(reason).inc())
        self.web = WebServer(create_app(self, limits), h.host, h.port, limits, stats)
        await self.web.start()

    async def run(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_event.set)
        with startup.step("http", self.settings):  # a busy port: one line, exit 2 (service.startup)
            await self.start_http()
        with startup.step("inbound", self.settings):
            await self.start_inbound()
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        for w in self.watches:
            interval = w.poll_interval
            scheduler.add_job(self.poll, "interval", args=[w], seconds=interval, jitter=min(30, interval // 10),
                              coalesce=True, max_instances=1, next_run_time=datetime.now(UTC), id=f"poll {w.key}")
        self._background = True
        scheduler.add_job(self.drain_soon, "interval", seconds=self.settings.outbox.drain_interval, coalesce=True,
                          max_instances=1, id="drain")
        # Lookups wait in the database with their own next try; this only looks for due ones.
        scheduler.add_job(self.affected, "interval", seconds=max(1.0, min(60.0, self.limits.affected_backoff)),
                          coalesce=True, max_instances=1, id="affected datasets")
        if self.lists is not None:
            scheduler.add_job(self.list_checks, "interval", seconds=3600, coalesce=True, max_instances=1,
                              next_run_time=datetime.now(UTC), id="list bounce checks")
        self.bridge.schedule(scheduler)
        scheduler.add_job(self._heartbeat, "interval", seconds=notify.watchdog_interval() or 5,
                          coalesce=True, max_instances=1, id="heartbeat")
        # The notice templates compiled now (52-89 ms of CPU), off the loop: not by the first drain.
        from crdswatch.render.email import warm_templates

        await asyncio.to_thread(warm_templates)
        settle_collector()
        scheduler.start()
        notify.ready("watching " + ", ".join(w.key for w in self.watches))
        log.info("started", sources=[w.key for w in self.watches], listen=self.settings.http.listen)
        await self.stop_event.wait()
        await self.shutdown(scheduler)

    async def shutdown(self, scheduler: Any = None, grace: float = 20.0) -> None:
        """Stop claiming, let in-flight sends finish (bounded), release leases, close."""
        notify.stopping()
        log.info("stopping")
        self.stop_event.set()  # a drain that has not started yet must not claim anything now
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        try:
            await asyncio.wait_for(self._busy.acquire(), grace)
        except TimeoutError:
            log.warning("in-flight sends did not finish in time", grace=grace)
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()  # past the grace: its rows are released below
            await asyncio.gather(self._drain_task, return_exceptions=True)
        try:
            released = await self.store.aio.release(self.worker_id)
        except Exception as exc:  # noqa: BLE001 - leases expire by themselves; stopping must not hang
            log.warning("could not release leases", error=str(exc))
            released = 0
        if self._tasks:  # an alert being sent is worth a moment
            await asyncio.wait(self._tasks, timeout=grace)
        for task in list(self._warming):  # reading a context for the subscribe form can wait
            task.cancel()
        await self.narrowing.aclose()
        if self.inbound is not None:
            await self.inbound.stop()
        if self.web is not None:
            await self.web.stop()
        for w in self.watches:
            await w.source.aclose()
        await self.senders.aclose()
        await self.bridge.aclose()
        self.store.close()
        log.info("stopped", released=released)

