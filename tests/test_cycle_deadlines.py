"""Issue 9, class 2: the whole cycle has a deadline, not only each request. A poll whose every
download answers within request_deadline but which together take longer than poll_deadline ends
as a failed poll (counted, logged, alerted, /healthz says so); an outbox drain held by a send that
never finishes (send_deadline longer than drain_deadline) is cut short at drain_deadline and counts
as failed. Afterwards nothing is lost: the next poll processes the activation, the next drain sends
the row. Real peers on loopback: the hostile CRDS server and the trickling HTTP sink."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

import structlog

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import Clock, make_daemon, write_config
from tests.support.fixtures_channels import http_sink  # noqa: F401
from tests.support.hostile_crds import hostile_crds, rmap
from tests.support.http_sink import HttpSink, ScriptedResponse
from tests.test_service import NOW

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_a_poll_of_many_slow_downloads_ends_at_poll_deadline(tmp_path: Path) -> None:
    with hostile_crds() as crds:
        config = write_config(tmp_path, server_url=crds.url, source_extra="alert_after = 1",
                              extra="[limits]\nrequest_deadline = 10\npoll_deadline = 2\ndownload_concurrency = 1\n")
        daemon = make_daemon(config, Clock(NOW))
        watch = daemon.watches[0]
        try:
            await daemon.poll(watch)  # baseline: jwst_0001.pmap, no download
            assert daemon.health.failures[watch.key] == 0
            rmaps = {f"jwst_nircam_t{i}_0002.rmap": rmap(f"jwst_nircam_t{i}_0002.rmap", "nircam", f"t{i}",
                                                         {"NRCA1": f"t{i}.fits"}) for i in range(4)}
            context = crds.context_with_rmap(2, rmaps)
            crds.activate(context, "2024-05-01 00:00:00")
            crds.download_delay = 0.8  # each download well within request_deadline, all of them not
            with structlog.testing.capture_logs() as logs:
                await asyncio.wait_for(daemon.poll(watch), 60)
            failed = [e for e in logs if e["event"] == "poll failed"]
            assert failed and "poll_deadline (2 s)" in failed[0]["error"], logs
            assert any(e["event"] == "ALERT" and e["kind"] == "source" for e in logs), logs
            assert daemon.health.failures[watch.key] == 1
            assert daemon.health_check() == (False, f"{watch.key}: 1 consecutive failed polls")
            assert daemon.store.list_activations(watch.key)[0].context == "jwst_0001.pmap"  # not half-recorded
            crds.download_delay = 0.0
            await daemon.poll(watch)  # the peer is quick again: the activation is not lost
            assert daemon.health.failures[watch.key] == 0
            assert daemon.store.list_activations(watch.key)[0].context == context
        finally:
            await daemon.shutdown()


async def test_a_drain_held_by_a_send_that_never_ends_is_cut_at_drain_deadline(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    hold = threading.Event()
    http_sink.route("/hook", ScriptedResponse(200, {"Content-Type": "text/plain"}, b"ok", trickle=0.2, hold=hold))
    subs = f'\n[[subscribers]]\nname = "hook"\nwebhook_url = "{http_sink.url_for("/hook")}"\nwebhook_secret = "{SECRET}"\n'
    clock = Clock(NOW)
    config = write_config(tmp_path, server_url=replay.url, subscribers=subs,
                          extra="[limits]\nsend_deadline = 600\ndrain_deadline = 2\n")
    daemon = make_daemon(config, clock)
    try:
        await daemon.poll(daemon.watches[0])  # baseline
        replay.activate_next()
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(daemon.poll(daemon.watches[0]), 60)  # queues the row, drains at once
        assert daemon.health.drain_failures == 1
        assert "cut short after drain_deadline (2 s)" in daemon.health.drain_error
        healthy, reason = daemon.health_check()
        assert not healthy and reason.startswith("outbox: 1 consecutive failed drains"), reason
        assert any(e["event"] == "outbox drain failed" for e in logs), logs
        [row] = daemon.store.outbox_rows()
        assert row.status in ("leased", "pending") and row.sent_at is None  # held, not lost, not sent
        hold.set()  # the receiver answers again; the lease ends, the row goes out
        http_sink.route("/hook", ScriptedResponse())
        clock.now += timedelta(seconds=daemon.settings.outbox.lease_seconds + 1)
        await daemon.drain()
        [row] = daemon.store.outbox_rows()
        assert row.status == "sent", row
        assert daemon.health.drain_failures == 0
    finally:
        hold.set()
        await daemon.shutdown()
