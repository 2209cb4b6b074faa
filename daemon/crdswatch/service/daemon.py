"""The daemon: scheduler, pollers, outbox drain, operator alerts, HTTP endpoints, signals, systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from crdswatch.app.drain import PAUSE_SECONDS, drain_once
from crdswatch.app.poll import Watch, poll_once
from crdswatch.config import Settings
from crdswatch.notices.unsubscribe import BadToken, read_token
from crdswatch.render.atom import atom_feed
from crdswatch.service import systemd as notify
from crdswatch.service.http import Request, Response, start_http_server
from crdswatch.service.metrics import Metrics
from crdswatch.service.runtime import ChannelSenders, build_watches, open_store

__all__ = ["Daemon", "Health"]

log = structlog.get_logger("crdswatch")


@dataclass
class Health:
    """What /healthz reports: every source polled successfully lately, and the loop is alive."""

    last_ok: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)
    heartbeat: float = field(default_factory=time.monotonic)

    def healthy(self, watches: list[Watch], now: float) -> tuple[bool, str]:
        if now - self.heartbeat > 60:
            return False, "event loop stalled"
        for w in watches:
            if self.failures.get(w.key, 0) > 0:
                return False, f"{w.key}: {self.failures[w.key]} consecutive failed polls"
            if w.key not in self.last_ok:  # not healthy before it has shown it can reach its server
                return False, f"{w.key}: no successful poll yet"
        return True, "ok"


class Daemon:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock
        self.store = open_store(settings)
        self.watches = build_watches(settings)
        self.senders = ChannelSenders(settings, self.store)
        self.metrics = Metrics()
        self.health = Health()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = asyncio.Event()
        self.paused_until: dict[str, float] = {}
        self.http_server: asyncio.Server | None = None
        self._busy = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # alert e-mails in flight (the loop keeps weak refs)

    # -- jobs ---------------------------------------------------------------------------------

    async def poll(self, watch: Watch) -> None:
        client = watch.source.client
        client.reset_counters()
        try:
            report = await poll_once(watch, self.store, self.clock())
        except Exception as exc:  # noqa: BLE001 - server, mapping or database: all count, all alert
            self._poll_failed(watch, exc)
            return
        self.health.failures[watch.key] = 0
        self.health.alerted.discard(watch.key)
        self.health.last_ok[watch.key] = time.time()
        self.metrics.polls.labels(watch.key, "ok").inc()
        self.metrics.failures.labels(watch.key).set(0)
        self.metrics.last_poll.labels(watch.key).set(time.time())
        self.metrics.poll_bytes.labels(watch.key).set(client.bytes_received)
        if report.processed:
            self.metrics.activations.labels(watch.key).inc(len(report.processed))
            log.info("activations", source=watch.key, contexts=report.processed, queued=report.queued)
            await self.drain()  # immediate notices go out now, not at the next drain tick
        elif report.baseline:
            log.info("baseline recorded", source=watch.key, context=report.context)

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
            msg["Auto-Submitted"] = "auto-generated"
            msg.set_content(message + "\n")
            task = asyncio.get_running_loop().create_task(self._send_alert(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_alert(self, msg: EmailMessage) -> None:
        try:
            assert self.senders.email is not None
            await self.senders.email.send(msg)
        except Exception as exc:  # noqa: BLE001 - an alert that cannot be sent is still logged
            log.error("alert e-mail failed", error=str(exc))

    async def drain(self) -> None:
        if self.stop_event.is_set():
            return
        async with self._busy:  # one drain at a time per process; replicas share via leases
            o = self.settings.outbox
            report = await drain_once(self.store, self.senders, self.worker_id, self.clock(),
                                      lease_seconds=o.lease_seconds, paused=self._paused)
        for kind, _subscriber, outcome in report.outcomes:
            self.metrics.notices.labels(kind, outcome).inc()
        for kind in report.paused:
            self.paused_until[kind] = time.monotonic() + PAUSE_SECONDS
            self.alert("channel", f"{kind} channel paused for {PAUSE_SECONDS / 60:.0f} minutes: "
                       "authentication failed")
        self._update_outbox_gauge()

    def _paused(self, kind: str) -> float:
        """Seconds the channel kind stays paused; 0 when it is not."""
        return max(0.0, self.paused_until.get(kind, 0) - time.monotonic())

    def _update_outbox_gauge(self) -> None:
        for status, count in self.store.counts().items():
            self.metrics.outbox.labels(status).set(count)

    async def _heartbeat(self) -> None:
        self.health.heartbeat = time.monotonic()
        if notify.watchdog_interval() is not None:
            notify.watchdog()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _healthz(self, _req: Request) -> Response:
        ok, why = self.health.healthy(self.watches, time.monotonic())
        return Response(200 if ok else 503, (why + "\n").encode())

    async def _metrics(self, _req: Request) -> Response:
        self._update_outbox_gauge()
        return Response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    async def _feed(self, _req: Request) -> Response:
        base = str(self.settings.http.public_url or f"http://{self.settings.http.listen}").rstrip("/")
        names = {w.key: w.key.split("|", 1)[0] for w in self.watches}  # keys hold no credentials
        body = atom_feed(self.store.list_activations(limit=50), feed_url=f"{base}/feed.atom",
                         server_names=names, updated=self.clock())
        return Response(200, body, "application/atom+xml; charset=utf-8")

    async def _unsubscribe(self, req: Request) -> Response:
        secret = self.settings.http.unsubscribe_secret
        token = req.param("token") or ""
        try:
            if secret is None:
                raise BadToken("unsubscribe links are not configured")
            subscriber, channel = read_token(secret.get_secret_value().encode(), token)
        except BadToken as exc:
            return Response(400, f"{exc}\n".encode())
        if req.method in ("GET", "HEAD"):  # a confirmation page: mail scanners follow links, never POST
            page = _confirm_page(subscriber, channel, token)
            return Response(200, page.encode(), "text/html; charset=utf-8")
        if req.method != "POST":
            return Response(405, b"use POST to unsubscribe\n", headers={"Allow": "GET, HEAD, POST"})
        found = self.store.get_subscriber(subscriber)
        if found is not None:
            config = dict(found.config)
            config["unsubscribed"] = sorted(set(config.get("unsubscribed") or ()) | {channel})
            self.store.upsert_subscriber(subscriber, config)
            log.info("unsubscribed", subscriber=subscriber, channel=channel)
        return Response(200, b"You are unsubscribed.\n")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_http(self) -> None:
        host, _, port = self.settings.http.listen.rpartition(":")
        routes = {"/healthz": self._healthz, "/metrics": self._metrics, "/feed.atom": self._feed,
                  "/unsubscribe": self._unsubscribe}
        self.http_server = await start_http_server(host.strip("[]"), int(port), routes)

    async def run(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_event.set)
        await self.start_http()
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        for w in self.watches:
            interval = w.poll_interval
            scheduler.add_job(self.poll, "interval", args=[w], seconds=interval, jitter=min(30, interval // 10),
                              coalesce=True, max_instances=1, next_run_time=datetime.now(UTC), id=f"poll {w.key}")
        scheduler.add_job(self.drain, "interval", seconds=self.settings.outbox.drain_interval, coalesce=True,
                          max_instances=1, id="drain")
        scheduler.add_job(self._heartbeat, "interval", seconds=notify.watchdog_interval() or 5,
                          coalesce=True, max_instances=1, id="heartbeat")
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
        released = self.store.release(self.worker_id)
        if self._tasks:  # an alert being sent is worth a moment
            await asyncio.wait(self._tasks, timeout=grace)
        if self.http_server is not None:
            self.http_server.close()
        for w in self.watches:
            await w.source.aclose()
        await self.senders.aclose()
        self.store.close()
        log.info("stopped", released=released)


def _confirm_page(subscriber: str, channel: str, token: str) -> str:
    from html import escape

    # The form's action is relative: behind a proxy, public_url may carry a path prefix.
    return (
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop CRDS notices for <b>{escape(subscriber)}</b> on <b>{escape(channel)}</b>?</p>"
        f"<form method=post action=unsubscribe><input type=hidden name=token value=\"{escape(token)}\">"
        "<button type=submit>Unsubscribe</button></form>"
    )
